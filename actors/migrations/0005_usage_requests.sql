-- A usage record may stand for several calls: the gateway folds the calls of
-- one minute with the same user, token, provider, model and status into one
-- record (tokens, latency and cost summed). Earlier records are one call each.
ALTER TABLE usage ADD COLUMN requests bigint NOT NULL DEFAULT 1;
