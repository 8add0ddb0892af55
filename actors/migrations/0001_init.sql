-- Gatehouse store, PostgreSQL backend: the first schema.
--
-- Each table keeps the record as the JSON the model structs serialise to
-- (the same JSON the sled backend writes), so `record` is the source of
-- truth. The other columns are derived from the record on every write and
-- exist only for uniqueness, foreign keys, sweeps and ordering.
--
-- Applied by PgStore::connect inside one transaction under an advisory lock,
-- with search_path set to the store's schema: no name here is qualified.

CREATE TABLE users (
    id             text PRIMARY KEY,
    username_lower text NOT NULL UNIQUE,
    record         jsonb NOT NULL
);

CREATE TABLE sessions (
    token_hash bytea PRIMARY KEY,
    user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    record     jsonb NOT NULL
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE api_tokens (
    id      text PRIMARY KEY,
    user_id text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    record  jsonb NOT NULL
);
CREATE INDEX api_tokens_user_id_idx ON api_tokens (user_id);

CREATE TABLE oauth_states (
    state      text PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    record     jsonb NOT NULL
);
CREATE INDEX oauth_states_expires_at_idx ON oauth_states (expires_at);

CREATE TABLE audit (
    seq    bigserial PRIMARY KEY,
    at     timestamptz NOT NULL,
    record jsonb NOT NULL
);
CREATE INDEX audit_at_seq_idx ON audit (at DESC, seq DESC);

CREATE TABLE signing_keys (
    kid        text PRIMARY KEY,
    created_at timestamptz NOT NULL,
    record     jsonb NOT NULL
);

CREATE TABLE meta (
    k text PRIMARY KEY,
    v text
);
