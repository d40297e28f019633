-- Patients, their data keys and their clinical records.

CREATE TABLE meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);

CREATE TABLE patients (
    id             uuid PRIMARY KEY,
    profile        bytea,
    mrn_index      bytea,
    email_index    bytea,
    name_dob_index bytea,
    version        bigint NOT NULL,
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL,
    erased_at      timestamptz
);

CREATE UNIQUE INDEX patients_mrn ON patients (mrn_index);
CREATE INDEX patients_email ON patients (email_index) WHERE email_index IS NOT NULL;
CREATE INDEX patients_name_dob ON patients (name_dob_index);

-- One data key per patient. Deleting the row is crypto-shredding.
CREATE TABLE data_keys (
    patient_id  uuid PRIMARY KEY REFERENCES patients (id),
    dek_version integer NOT NULL,
    kek_version integer NOT NULL,
    wrapped     bytea NOT NULL,
    created_at  timestamptz NOT NULL
);

CREATE TABLE records (
    id         uuid PRIMARY KEY,
    patient_id uuid NOT NULL REFERENCES patients (id),
    kind       text NOT NULL,
    body       bytea NOT NULL,
    version    bigint NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

CREATE INDEX records_patient ON records (patient_id, id);
