-- Disclosures of a patient's information to outside recipients (S-AUD-9):
-- when, who recorded it, and the sealed details (recipient, purpose, what
-- was disclosed, legal basis) under the patient's data key. Kept for the
-- six-year accounting of disclosures; an erased patient's stay unreadable.

CREATE TABLE disclosures (
    id           uuid PRIMARY KEY,
    patient_id   uuid NOT NULL REFERENCES patients (id),
    disclosed_at timestamptz NOT NULL,
    details      bytea NOT NULL,
    recorded_by  uuid NOT NULL,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX disclosures_patient ON disclosures (patient_id, id);
