-- Service accounts' client secrets, as SHA-256 hashes: the current one and,
-- while a rotation's overlap lasts, the previous one. A service account is a
-- user row whose password cannot be used; these are its only credentials.
CREATE TABLE service_secrets (
    user_id        uuid PRIMARY KEY REFERENCES users (id),
    secret_hash    bytea NOT NULL,
    previous_hash  bytea,
    previous_until timestamptz,
    rotated_at     timestamptz NOT NULL
);
