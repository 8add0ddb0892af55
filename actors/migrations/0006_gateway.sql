-- Providers, credential profiles (their secrets sealed under the master
-- key, which never enters the database), aliases and settings changed at
-- run time through the admin API or CLI.
CREATE TABLE gateway_items (
    kind text NOT NULL,
    name text NOT NULL,
    record jsonb NOT NULL,
    PRIMARY KEY (kind, name)
);
