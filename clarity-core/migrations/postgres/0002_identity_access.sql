-- Users, sessions, refresh tokens, login failures, care teams and break-glass grants.

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    email_index   bytea NOT NULL UNIQUE,
    profile       bytea NOT NULL,
    password_hash text NOT NULL,
    roles         text NOT NULL,
    disabled      boolean NOT NULL DEFAULT false,
    patient_id    uuid REFERENCES patients (id),
    mfa_secret    bytea,
    mfa_enabled   boolean NOT NULL DEFAULT false,
    mfa_last_step bigint,
    version       bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

CREATE TABLE login_failures (
    user_id      uuid PRIMARY KEY REFERENCES users (id),
    count        integer NOT NULL,
    window_start timestamptz NOT NULL,
    last_at      timestamptz NOT NULL
);

CREATE TABLE sessions (
    id           uuid PRIMARY KEY,
    user_id      uuid NOT NULL REFERENCES users (id),
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked_at   timestamptz,
    mfa          boolean NOT NULL
);

CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    hash       bytea PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES sessions (id),
    created_at timestamptz NOT NULL,
    used_at    timestamptz
);

CREATE TABLE care_team (
    patient_id   uuid NOT NULL REFERENCES patients (id),
    user_id      uuid NOT NULL REFERENCES users (id),
    relationship text NOT NULL,
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (patient_id, user_id)
);

CREATE INDEX care_team_user ON care_team (user_id, patient_id);

CREATE TABLE access_grants (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users (id),
    patient_id  uuid NOT NULL REFERENCES patients (id),
    reason      bytea NOT NULL,
    created_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL,
    reviewed_at timestamptz,
    reviewed_by uuid REFERENCES users (id)
);

CREATE INDEX access_grants_user ON access_grants (user_id, patient_id);
CREATE INDEX access_grants_unreviewed ON access_grants (id) WHERE reviewed_at IS NULL;
