-- The audit trail: one HMAC chain per writer, with signed checkpoints.

CREATE TABLE audit_events (
    id             uuid PRIMARY KEY,
    chain_id       uuid NOT NULL,
    seq            bigint NOT NULL,
    recorded       timestamptz NOT NULL,
    event_type     text NOT NULL,
    subtype        text NOT NULL,
    action         text NOT NULL,
    outcome        text NOT NULL,
    purpose        text,
    actor_id       uuid,
    actor_roles    text,
    client_address text,
    patient_id     uuid,
    entity_id      uuid,
    query_hash     text,
    reason         text,
    request_id     text,
    prev_mac       bytea NOT NULL,
    mac            bytea NOT NULL,
    UNIQUE (chain_id, seq)
);

CREATE INDEX audit_events_patient ON audit_events (patient_id, id) WHERE patient_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor_id, id) WHERE actor_id IS NOT NULL;
CREATE INDEX audit_events_recorded ON audit_events (recorded);

CREATE TABLE audit_checkpoints (
    chain_id  uuid NOT NULL,
    seq       bigint NOT NULL,
    mac       bytea NOT NULL,
    signed_at timestamptz NOT NULL,
    signature bytea NOT NULL,
    PRIMARY KEY (chain_id, seq)
);
