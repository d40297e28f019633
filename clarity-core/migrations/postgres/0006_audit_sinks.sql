-- Audit sinks (S-AUD-8): per sink and chain, the last sequence number
-- delivered, so that a restart resumes where delivery stopped; and which
-- instance delivers for a sink now, so that several instances on one store
-- do not each send every event.

CREATE TABLE audit_sink_cursors (
    sink       text NOT NULL,
    chain_id   uuid NOT NULL,
    seq        bigint NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (sink, chain_id)
);

CREATE TABLE audit_sink_leases (
    sink       text PRIMARY KEY,
    holder     uuid NOT NULL,
    expires_at timestamptz NOT NULL
);
