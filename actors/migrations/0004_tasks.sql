-- Durable tasks, their events and idempotency keys. Plain columns, like
-- usage: claims select and order on status, time and claim, and sweeps on
-- expiry. Times are kept to the microsecond (the sled backend keeps
-- nanoseconds). Counts are u64 in the model, stored as bigint.
--
-- Tasks are not cached by actors, so their writes send no notification.

CREATE TABLE tasks (
    id                text PRIMARY KEY,
    kind              text NOT NULL,
    status            text NOT NULL CHECK (status IN
        ('pending_approval', 'queued', 'running', 'succeeded', 'failed', 'cancelled')),
    owner             text NOT NULL,
    owner_name        text NOT NULL,
    token_id          text,
    input             jsonb NOT NULL,
    requires_approval boolean NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    result            jsonb,
    error             jsonb,
    attempts          int NOT NULL,
    external_id       text,
    -- The instance running it, and until when that claim holds.
    claimed_by        text,
    claim_until       timestamptz,
    -- The last event's seq.
    events            bigint NOT NULL,
    -- Grows by one with every write (optimistic concurrency).
    version           bigint NOT NULL
);
CREATE INDEX tasks_status_created_at_idx ON tasks (status, created_at);

CREATE TABLE task_events (
    task_id text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    seq     bigint NOT NULL,
    at      timestamptz NOT NULL,
    kind    text NOT NULL,
    data    jsonb NOT NULL,
    PRIMARY KEY (task_id, seq)
);

-- The first response to a request with an Idempotency-Key, per principal.
CREATE TABLE idempotency_keys (
    principal   text NOT NULL,
    key         text NOT NULL,
    fingerprint text NOT NULL,
    status      int NOT NULL,
    body        jsonb NOT NULL,
    task_id     text,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
