-- The audit trail's indexes by patient and by actor leave the events table:
-- each event dirtied a random page of them inside the audit commit. They
-- are now kept in a database of their own beside this one
-- (`<file>-audit-index`), filled off the commit path in sorted batches
-- behind a per-chain mark, and rebuilt from the events whenever that file
-- is missing. The events table keeps only keys that grow at their end.

DROP INDEX audit_events_patient;
DROP INDEX audit_events_actor;
