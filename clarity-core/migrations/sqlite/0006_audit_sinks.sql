-- Audit sinks (S-AUD-8): per sink and chain, the last sequence number
-- delivered, so that a restart resumes where delivery stopped; and which
-- instance delivers for a sink now, so that several instances on one store
-- do not each send every event.

CREATE TABLE audit_sink_cursors (
    sink       TEXT NOT NULL,
    chain_id   BLOB NOT NULL,
    seq        INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (sink, chain_id)
) STRICT;

CREATE TABLE audit_sink_leases (
    sink       TEXT PRIMARY KEY,
    holder     BLOB NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
