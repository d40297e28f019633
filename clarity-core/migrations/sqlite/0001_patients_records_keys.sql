-- Patients, their data keys and their clinical records.
-- Ids are UUIDs stored as 16-byte blobs; times are microseconds since the Unix epoch (UTC).

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE patients (
    id             BLOB PRIMARY KEY,
    profile        BLOB,
    mrn_index      BLOB,
    email_index    BLOB,
    name_dob_index BLOB,
    version        INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    erased_at      INTEGER
) STRICT;

CREATE UNIQUE INDEX patients_mrn ON patients (mrn_index);
CREATE INDEX patients_email ON patients (email_index) WHERE email_index IS NOT NULL;
CREATE INDEX patients_name_dob ON patients (name_dob_index);

-- One data key per patient. Deleting the row is crypto-shredding.
CREATE TABLE data_keys (
    patient_id  BLOB PRIMARY KEY REFERENCES patients (id),
    dek_version INTEGER NOT NULL,
    kek_version INTEGER NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE records (
    id         BLOB PRIMARY KEY,
    patient_id BLOB NOT NULL REFERENCES patients (id),
    kind       TEXT NOT NULL,
    body       BLOB NOT NULL,
    version    INTEGER NOT NULL,
    created_by BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE INDEX records_patient ON records (patient_id, id);
