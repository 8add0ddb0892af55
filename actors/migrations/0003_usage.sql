-- Usage records: one row per proxied model call (no prompt or completion
-- text). Unlike the other tables these are plain columns, not a JSON record,
-- because summaries aggregate them in SQL. There is no foreign key to users:
-- usage history outlives the user, so the username is kept with each row.
-- Counts are u64 in the model, stored saturated at the bigint maximum.
CREATE TABLE usage (
    id                bigserial PRIMARY KEY,
    at                timestamptz NOT NULL,
    user_id           text NOT NULL,
    username          text NOT NULL,
    token_id          text,
    provider          text NOT NULL,
    model             text NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    status            int NOT NULL,
    latency_ms        bigint NOT NULL,
    cost              double precision NOT NULL
);
CREATE INDEX usage_at_idx ON usage (at);
CREATE INDEX usage_username_at_idx ON usage (username, at);
