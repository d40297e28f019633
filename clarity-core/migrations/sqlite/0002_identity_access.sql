-- Users, sessions, refresh tokens, login failures, care teams and break-glass grants.

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email_index   BLOB NOT NULL UNIQUE,
    profile       BLOB NOT NULL,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0,
    patient_id    BLOB REFERENCES patients (id),
    mfa_secret    BLOB,
    mfa_enabled   INTEGER NOT NULL DEFAULT 0,
    mfa_last_step INTEGER,
    version       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE login_failures (
    user_id      BLOB PRIMARY KEY REFERENCES users (id),
    count        INTEGER NOT NULL,
    window_start INTEGER NOT NULL,
    last_at      INTEGER NOT NULL
) STRICT;

CREATE TABLE sessions (
    id           BLOB PRIMARY KEY,
    user_id      BLOB NOT NULL REFERENCES users (id),
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    revoked_at   INTEGER,
    mfa          INTEGER NOT NULL
) STRICT;

CREATE INDEX sessions_user ON sessions (user_id) WHERE revoked_at IS NULL;

CREATE TABLE refresh_tokens (
    hash       BLOB PRIMARY KEY,
    session_id BLOB NOT NULL REFERENCES sessions (id),
    created_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;

CREATE TABLE care_team (
    patient_id   BLOB NOT NULL REFERENCES patients (id),
    user_id      BLOB NOT NULL REFERENCES users (id),
    relationship TEXT NOT NULL,
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (patient_id, user_id)
) STRICT;

CREATE INDEX care_team_user ON care_team (user_id, patient_id);

CREATE TABLE access_grants (
    id          BLOB PRIMARY KEY,
    user_id     BLOB NOT NULL REFERENCES users (id),
    patient_id  BLOB NOT NULL REFERENCES patients (id),
    reason      BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    reviewed_at INTEGER,
    reviewed_by BLOB REFERENCES users (id)
) STRICT;

CREATE INDEX access_grants_user ON access_grants (user_id, patient_id);
CREATE INDEX access_grants_unreviewed ON access_grants (id) WHERE reviewed_at IS NULL;
