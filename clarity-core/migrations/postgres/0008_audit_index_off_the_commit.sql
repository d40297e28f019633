-- The audit trail's indexes by patient and by actor leave the events table:
-- each event dirtied a random page of them inside the audit commit. They
-- become tables of their own, filled off the commit path in sorted batches
-- behind a per-chain mark (`audit_index_marks`): a query reads the index up
-- to the marks and each chain's events past them. The events table keeps
-- only keys that grow at their end.

DROP INDEX audit_events_patient;
DROP INDEX audit_events_actor;

CREATE TABLE audit_by_patient (
    patient_id uuid NOT NULL,
    id         uuid NOT NULL,
    PRIMARY KEY (patient_id, id)
);

CREATE TABLE audit_by_actor (
    actor_id uuid NOT NULL,
    id       uuid NOT NULL,
    PRIMARY KEY (actor_id, id)
);

CREATE TABLE audit_index_marks (
    chain_id uuid PRIMARY KEY,
    seq      bigint NOT NULL
);

INSERT INTO audit_by_patient (patient_id, id)
    SELECT patient_id, id FROM audit_events WHERE patient_id IS NOT NULL;
INSERT INTO audit_by_actor (actor_id, id)
    SELECT actor_id, id FROM audit_events WHERE actor_id IS NOT NULL;
INSERT INTO audit_index_marks (chain_id, seq)
    SELECT chain_id, max(seq) FROM audit_events GROUP BY chain_id;
