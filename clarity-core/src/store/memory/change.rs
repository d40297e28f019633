//! [`Change`]s on the in-memory tables, each all-or-nothing, with what it
//! takes to undo them when the audit batch they belong to cannot be stored.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Tables, check_version, mrn_taken};
use crate::error::{Error, Result};
use crate::model::{
    CareTeamRow, Change, DataKeyRow, DisclosureRow, GrantRow, PatientRow, RecordRow, UserRow,
};

/// The rows a change may touch, as they were before it.
pub(super) enum Undo {
    Patient(Uuid, Option<PatientRow>),
    DataKey(Uuid, Option<DataKeyRow>),
    Record(Uuid, Option<RecordRow>),
    Disclosure(Uuid, Option<DisclosureRow>),
    CareTeam((Uuid, Uuid), Option<CareTeamRow>),
    Grant(Uuid, Option<GrantRow>),
    User(Uuid, Option<UserRow>),
    /// A patient's tombstone, and the records and memberships erasure removes.
    Erased {
        id: Uuid,
        at: Option<DateTime<Utc>>,
        records: Vec<RecordRow>,
        care_team: Vec<CareTeamRow>,
    },
}

/// What `change` may touch, as it is now.
pub(super) fn before(t: &Tables, change: &Change) -> Vec<Undo> {
    match change {
        Change::InsertPatient {
            patient, creator, ..
        } => {
            let id = patient.id;
            let mut undo = vec![
                Undo::Patient(id, t.patients.get(&id).cloned()),
                Undo::DataKey(id, t.data_keys.get(&id).cloned()),
            ];
            if let Some(m) = creator {
                undo.push(saved_member(t, m.patient_id, m.user_id));
            }
            undo
        }
        Change::UpdatePatient { patient, .. } => {
            vec![Undo::Patient(
                patient.id,
                t.patients.get(&patient.id).cloned(),
            )]
        }
        Change::InsertRecord(record) | Change::UpdateRecord { record, .. } => {
            vec![Undo::Record(record.id, t.records.get(&record.id).cloned())]
        }
        Change::DeleteRecord(id) => vec![Undo::Record(*id, t.records.get(id).cloned())],
        Change::InsertDisclosure(d) => {
            vec![Undo::Disclosure(d.id, t.disclosures.get(&d.id).cloned())]
        }
        Change::AddCareTeamMember(CareTeamRow {
            patient_id,
            user_id,
            ..
        })
        | Change::RemoveCareTeamMember {
            patient_id,
            user_id,
        } => vec![saved_member(t, *patient_id, *user_id)],
        Change::InsertGrant(g) => vec![Undo::Grant(g.id, t.grants.get(&g.id).cloned())],
        Change::InsertUser(user) | Change::UpdateUser { user, .. } => {
            vec![Undo::User(user.id, t.users.get(&user.id).cloned())]
        }
        Change::ErasePatient { id, .. } => vec![
            Undo::Patient(*id, t.patients.get(id).cloned()),
            Undo::DataKey(*id, t.data_keys.get(id).cloned()),
            Undo::Erased {
                id: *id,
                at: t.erased.get(id).copied(),
                records: t
                    .records
                    .values()
                    .filter(|r| r.patient_id == *id)
                    .cloned()
                    .collect(),
                care_team: t
                    .care_team
                    .values()
                    .filter(|m| m.patient_id == *id)
                    .cloned()
                    .collect(),
            },
        ],
    }
}

/// A care-team membership as it is now.
fn saved_member(t: &Tables, patient_id: Uuid, user_id: Uuid) -> Undo {
    let key = (patient_id, user_id);
    Undo::CareTeam(key, t.care_team.get(&key).cloned())
}

/// Puts back what [`before`] saw.
pub(super) fn undo(t: &mut Tables, saved: Vec<Undo>) {
    fn put<K: Ord, V>(map: &mut std::collections::BTreeMap<K, V>, key: K, value: Option<V>) {
        match value {
            Some(v) => map.insert(key, v),
            None => map.remove(&key),
        };
    }
    for u in saved.into_iter().rev() {
        match u {
            Undo::Patient(id, v) => put(&mut t.patients, id, v),
            Undo::DataKey(id, v) => put(&mut t.data_keys, id, v),
            Undo::Record(id, v) => put(&mut t.records, id, v),
            Undo::Disclosure(id, v) => put(&mut t.disclosures, id, v),
            Undo::CareTeam(key, v) => put(&mut t.care_team, key, v),
            Undo::Grant(id, v) => put(&mut t.grants, id, v),
            Undo::User(id, v) => put(&mut t.users, id, v),
            Undo::Erased {
                id,
                at,
                records,
                care_team,
            } => {
                put(&mut t.erased, id, at);
                for r in records {
                    t.records.insert(r.id, r);
                }
                for m in care_team {
                    t.care_team.insert((m.patient_id, m.user_id), m);
                }
            }
        }
    }
}

/// Adds or replaces a care-team membership of a live patient.
pub(super) fn upsert_care_team(t: &mut Tables, member: &CareTeamRow) -> Result<()> {
    if !t.patients.contains_key(&member.patient_id) {
        return Err(Error::NotFound { what: "patient" });
    }
    if !t.users.contains_key(&member.user_id) {
        return Err(Error::NotFound { what: "user" });
    }
    t.care_team
        .insert((member.patient_id, member.user_id), member.clone());
    Ok(())
}

/// Applies `change`: every check first, so a failure changes nothing.
pub(super) fn apply_change(t: &mut Tables, change: &Change) -> Result<()> {
    match change {
        Change::InsertPatient {
            key,
            patient,
            creator,
        } => {
            if t.patients.contains_key(&patient.id)
                || t.erased.contains_key(&patient.id)
                || mrn_taken(t, patient)
            {
                return Err(Error::AlreadyExists { what: "patient" });
            }
            if let Some(m) = creator {
                if m.patient_id != patient.id {
                    return Err(Error::NotFound { what: "patient" });
                }
                if !t.users.contains_key(&m.user_id) {
                    return Err(Error::NotFound { what: "user" });
                }
            }
            t.patients.insert(patient.id, patient.clone());
            t.data_keys.insert(key.patient_id, key.clone());
            if let Some(m) = creator {
                upsert_care_team(t, m)?;
            }
            Ok(())
        }
        Change::UpdatePatient {
            patient,
            expected_version,
        } => {
            let current = t
                .patients
                .get(&patient.id)
                .ok_or(Error::NotFound { what: "patient" })?
                .version;
            check_version("patient", current, *expected_version)?;
            if mrn_taken(t, patient) {
                return Err(Error::AlreadyExists {
                    what: "patient with this MRN",
                });
            }
            t.patients.insert(patient.id, patient.clone());
            Ok(())
        }
        Change::InsertRecord(record) => {
            if !t.patients.contains_key(&record.patient_id) {
                return Err(Error::NotFound { what: "patient" });
            }
            if t.records.contains_key(&record.id) {
                return Err(Error::AlreadyExists { what: "record" });
            }
            t.records.insert(record.id, record.clone());
            Ok(())
        }
        Change::InsertDisclosure(disclosure) => {
            if !t.patients.contains_key(&disclosure.patient_id) {
                return Err(Error::NotFound { what: "patient" });
            }
            if t.disclosures.contains_key(&disclosure.id) {
                return Err(Error::AlreadyExists { what: "disclosure" });
            }
            t.disclosures.insert(disclosure.id, disclosure.clone());
            Ok(())
        }
        Change::UpdateRecord {
            record,
            expected_version,
        } => {
            let stored = t
                .records
                .get_mut(&record.id)
                .ok_or(Error::NotFound { what: "record" })?;
            check_version("record", stored.version, *expected_version)?;
            stored.body = record.body.clone();
            stored.version = record.version;
            stored.updated_at = record.updated_at;
            Ok(())
        }
        Change::DeleteRecord(id) => t
            .records
            .remove(id)
            .map(|_| ())
            .ok_or(Error::NotFound { what: "record" }),
        Change::ErasePatient { id, at } => {
            if t.patients.remove(id).is_none() && !t.erased.contains_key(id) {
                return Err(Error::NotFound { what: "patient" });
            }
            t.erased.entry(*id).or_insert(*at);
            t.data_keys.remove(id);
            t.records.retain(|_, r| r.patient_id != *id);
            t.care_team.retain(|(patient, _), _| patient != id);
            Ok(())
        }
        Change::AddCareTeamMember(member) => upsert_care_team(t, member),
        Change::RemoveCareTeamMember {
            patient_id,
            user_id,
        } => t
            .care_team
            .remove(&(*patient_id, *user_id))
            .map(|_| ())
            .ok_or(Error::NotFound {
                what: "care-team assignment",
            }),
        Change::InsertUser(user) => insert_user_row(t, user),
        Change::UpdateUser {
            user,
            expected_version,
        } => update_user_row(t, user, *expected_version),
        Change::InsertGrant(grant) => {
            if !t.patients.contains_key(&grant.patient_id) {
                return Err(Error::NotFound { what: "patient" });
            }
            t.grants.insert(grant.id, grant.clone());
            Ok(())
        }
    }
}

fn email_taken(t: &Tables, user: &UserRow) -> bool {
    t.users
        .values()
        .any(|u| u.id != user.id && u.email_index == user.email_index)
}

fn patient_link_missing(t: &Tables, user: &UserRow) -> bool {
    user.patient_id
        .is_some_and(|p| !t.patients.contains_key(&p))
}

/// Inserts a user row: its id and email index must be free, its patient
/// link must name a patient.
pub(super) fn insert_user_row(t: &mut Tables, user: &UserRow) -> Result<()> {
    if t.users.contains_key(&user.id) || email_taken(t, user) {
        return Err(Error::AlreadyExists { what: "user" });
    }
    if patient_link_missing(t, user) {
        return Err(Error::NotFound { what: "patient" });
    }
    t.users.insert(user.id, user.clone());
    Ok(())
}

/// Replaces a user row if it is still at `expected_version`.
pub(super) fn update_user_row(t: &mut Tables, user: &UserRow, expected_version: i64) -> Result<()> {
    let current = t
        .users
        .get(&user.id)
        .ok_or(Error::NotFound { what: "user" })?
        .version;
    check_version("user", current, expected_version)?;
    if email_taken(t, user) {
        return Err(Error::AlreadyExists { what: "user" });
    }
    if patient_link_missing(t, user) {
        return Err(Error::NotFound { what: "patient" });
    }
    t.users.insert(user.id, user.clone());
    Ok(())
}
