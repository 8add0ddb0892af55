-- Rate-limit and budget counters: one row per subject, metric and window.
-- A reservation adds to every counter it draws on in one transaction.
CREATE TABLE limit_counters (
    subject text NOT NULL,
    metric text NOT NULL,
    window_start bigint NOT NULL,
    window_end bigint NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (subject, metric, window_start)
);
CREATE INDEX limit_counters_end ON limit_counters (window_end);
