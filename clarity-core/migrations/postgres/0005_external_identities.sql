-- Subjects at OpenID Connect providers linked to Clarity users. The id is a
-- name-based UUID of issuer and subject (ExternalIdentityRow::id_for), so a
-- token's subject is found by primary key. Tokens issued at or before
-- logged_out_at no longer count (a back-channel logout naming the subject).
CREATE TABLE external_identities (
    id            uuid PRIMARY KEY,
    issuer        text NOT NULL,
    subject       text NOT NULL,
    user_id       uuid NOT NULL REFERENCES users (id),
    created_at    timestamptz NOT NULL,
    logged_out_at timestamptz,
    UNIQUE (issuer, subject)
);
CREATE INDEX external_identities_user ON external_identities (user_id);

-- Provider sessions ended by a back-channel logout naming a sid, by a
-- name-based UUID of issuer and sid: tokens carrying that sid no longer count.
CREATE TABLE external_sessions_ended (
    id       uuid PRIMARY KEY,
    ended_at timestamptz NOT NULL
);

-- Audit events name the provider and subject of a caller who came with a
-- provider's token.
ALTER TABLE audit_events ADD COLUMN actor_issuer text;
ALTER TABLE audit_events ADD COLUMN actor_subject text;
