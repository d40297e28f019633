-- The audit trail: one HMAC chain per writer, with signed checkpoints.

CREATE TABLE audit_events (
    id             BLOB PRIMARY KEY,
    chain_id       BLOB NOT NULL,
    seq            INTEGER NOT NULL,
    recorded       INTEGER NOT NULL,
    event_type     TEXT NOT NULL,
    subtype        TEXT NOT NULL,
    action         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    purpose        TEXT,
    actor_id       BLOB,
    actor_roles    TEXT,
    client_address TEXT,
    patient_id     BLOB,
    entity_id      BLOB,
    query_hash     TEXT,
    reason         TEXT,
    request_id     TEXT,
    prev_mac       BLOB NOT NULL,
    mac            BLOB NOT NULL,
    UNIQUE (chain_id, seq)
) STRICT;

CREATE INDEX audit_events_patient ON audit_events (patient_id, id) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor_id, id) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_recorded ON audit_events (recorded);

CREATE TABLE audit_checkpoints (
    chain_id  BLOB NOT NULL,
    seq       INTEGER NOT NULL,
    mac       BLOB NOT NULL,
    signed_at INTEGER NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (chain_id, seq)
) STRICT;
