-- Disclosures of a patient's information to outside recipients (S-AUD-9):
-- when, who recorded it, and the sealed details (recipient, purpose, what
-- was disclosed, legal basis) under the patient's data key. Kept for the
-- six-year accounting of disclosures; an erased patient's stay unreadable.

CREATE TABLE disclosures (
    id           BLOB PRIMARY KEY,
    patient_id   BLOB NOT NULL REFERENCES patients (id),
    disclosed_at INTEGER NOT NULL,
    details      BLOB NOT NULL,
    recorded_by  BLOB NOT NULL,
    recorded_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX disclosures_patient ON disclosures (patient_id, id);
