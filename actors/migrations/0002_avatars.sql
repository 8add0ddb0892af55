-- Uploaded avatars (PNG, JPEG or WebP, at most 1 MiB), one per user.
CREATE TABLE avatars (
    user_id text PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    content_type text NOT NULL,
    data bytea NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
