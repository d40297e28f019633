//! The authorisation matrix (S-AC-1): every role × every operation × every
//! relationship to a patient, with the outcome the specification demands.
//!
//! [`expected`] is the specification, written out rule by rule independently
//! of [`crate::access::decide`]. [`run`] drives the Rust API through every
//! cell; the HTTP and C ABI layers run the same cells against [`expected`].

use std::fmt;

use uuid::Uuid;

use super::{access_token, user_with_role};
use crate::access::Principal;
use crate::crypto::Json;
use crate::error::Error;
use crate::model::{
    CareTeamRow, Change, NewDisclosure, PageRequest, PatientLookup, PatientProfile,
};
use crate::model::{Role, RoleSet};
use crate::service::{
    AccessLogRange, BreakGlassRequest, CareTeamAssignment, Clarity, NewUser, UserUpdate,
};
use crate::store::Store;

/// The caller's relationship to the patient an operation concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    /// The caller's own record (meaningful for `patient` users; none otherwise).
    Own,
    /// On the patient's care team.
    Assigned,
    /// Was on the care team; the assignment has expired.
    ExpiredAssignment,
    /// No relationship.
    Other,
    /// Holds a break-glass grant (only clinicians can get one).
    BreakGlass,
}

impl Relationship {
    /// Every relationship.
    pub const ALL: [Relationship; 5] = [
        Relationship::Own,
        Relationship::Assigned,
        Relationship::ExpiredAssignment,
        Relationship::Other,
        Relationship::BreakGlass,
    ];
}

/// An operation of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Create a patient.
    CreatePatient,
    /// Read the patient.
    ReadPatient,
    /// List patients (does the list contain the patient?).
    ListPatients,
    /// Look the patient up by MRN (is it found?).
    LookupPatient,
    /// Update the patient.
    UpdatePatient,
    /// Read a record of the patient.
    ReadRecord,
    /// List the patient's records.
    ListRecords,
    /// Create a `note` record (a kind nurses may write).
    CreateNote,
    /// Create a `prescription` record (a kind nurses may not write).
    CreatePrescription,
    /// Update a `note` record.
    UpdateRecord,
    /// Delete a record.
    DeleteRecord,
    /// Assign someone to the patient's care team.
    ManageCareTeam,
    /// List users.
    ManageUsers,
    /// List break-glass grants.
    ReviewGrants,
    /// The de-identified research view.
    ResearchView,
    /// Change one's own roles (to `auditor`): refused for everyone, admins
    /// included (S-AC-8).
    ChangeOwnRoles,
    /// Create an account holding `admin` and `clinician` together: refused
    /// as invalid for admins, denied to everyone else (S-AC-8).
    AdminWithPhiRole,
    /// Read who accessed the patient's record (S-AUD-9).
    ReadAccessLog,
    /// List the patient's recorded disclosures (S-AUD-9).
    ListDisclosures,
    /// Record a disclosure of the patient's information (S-AUD-9).
    RecordDisclosure,
    /// Ask for break-glass access to the patient.
    BreakGlass,
    /// Erase the patient.
    ErasePatient,
}

impl Operation {
    /// Every operation, in an order where none changes what a later one sees
    /// (a read comes before the writes that change what it reads, as listing
    /// disclosures before recording one; break-glass and erasure come last).
    pub const ALL: [Operation; 22] = [
        Operation::CreatePatient,
        Operation::ReadPatient,
        Operation::ListPatients,
        Operation::LookupPatient,
        Operation::UpdatePatient,
        Operation::ReadRecord,
        Operation::ListRecords,
        Operation::CreateNote,
        Operation::CreatePrescription,
        Operation::UpdateRecord,
        Operation::DeleteRecord,
        Operation::ManageCareTeam,
        Operation::ManageUsers,
        Operation::ReviewGrants,
        Operation::ResearchView,
        Operation::ChangeOwnRoles,
        Operation::AdminWithPhiRole,
        Operation::ReadAccessLog,
        Operation::ListDisclosures,
        Operation::RecordDisclosure,
        Operation::BreakGlass,
        Operation::ErasePatient,
    ];
}

/// What an operation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded.
    Allowed,
    /// Not found: the caller may not know the patient exists (HTTP 404).
    Hidden,
    /// Permission denied (HTTP 403).
    Denied,
    /// A list or lookup that includes the patient.
    Listed,
    /// A list or lookup that succeeds without the patient.
    NotListed,
    /// Refused as invalid input (HTTP 400): a request no caller may make.
    Refused,
}

/// The specification: what `role` gets for `op` with `rel` to the patient.
pub fn expected(role: Role, op: Operation, rel: Relationship) -> Outcome {
    use Operation as O;
    use Relationship as R;
    let treating = matches!(rel, R::Assigned | R::BreakGlass);
    let can_read = match role {
        Role::Clinician => treating,
        Role::Nurse => rel == R::Assigned,
        Role::Patient => rel == R::Own,
        _ => false,
    };
    let on_patient = |allowed: bool| {
        if allowed {
            Outcome::Allowed
        } else if can_read {
            Outcome::Denied
        } else {
            Outcome::Hidden
        }
    };
    let only = |r: Role| {
        if role == r {
            Outcome::Allowed
        } else {
            Outcome::Denied
        }
    };
    let clinician_treating = role == Role::Clinician && treating;
    match op {
        O::CreatePatient => only(Role::Clinician),
        O::ReadPatient | O::ReadRecord | O::ListRecords => on_patient(can_read),
        O::UpdatePatient | O::DeleteRecord | O::CreatePrescription => {
            on_patient(clinician_treating)
        }
        O::CreateNote | O::UpdateRecord => {
            on_patient(clinician_treating || (role == Role::Nurse && rel == R::Assigned))
        }
        O::ListPatients | O::LookupPatient => match role {
            Role::Clinician | Role::Nurse | Role::Patient if can_read => Outcome::Listed,
            Role::Clinician | Role::Nurse | Role::Patient => Outcome::NotListed,
            _ => Outcome::Denied,
        },
        O::ManageCareTeam | O::ManageUsers | O::ReviewGrants | O::ErasePatient => only(Role::Admin),
        O::BreakGlass => only(Role::Clinician),
        O::ResearchView => only(Role::Researcher),
        // S-AC-8: nobody changes their own roles.
        O::ChangeOwnRoles => Outcome::Denied,
        // S-AC-8: only admins create accounts, and never admin + a PHI role.
        O::AdminWithPhiRole if role == Role::Admin => Outcome::Refused,
        O::AdminWithPhiRole => Outcome::Denied,
        // S-AUD-9: the patient reads its own access log, the privacy office
        // (auditors) any patient's; the care team may not.
        O::ReadAccessLog => {
            on_patient((role == Role::Patient && rel == R::Own) || role == Role::Auditor)
        }
        // S-AUD-9: those who hold the patient's PHI (the care team,
        // clinicians under break-glass) and the privacy office record
        // disclosures; the patient does not.
        O::RecordDisclosure => on_patient(
            clinician_treating
                || (role == Role::Nurse && rel == R::Assigned)
                || role == Role::Auditor,
        ),
        // S-AUD-9: whoever may read the patient, and the privacy office.
        O::ListDisclosures => on_patient(can_read || role == Role::Auditor),
    }
}

/// One cell whose answer differed from the specification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// The caller's role.
    pub role: Role,
    /// The operation.
    pub op: Operation,
    /// The relationship.
    pub rel: Relationship,
    /// What the specification demands.
    pub expected: Outcome,
    /// What happened.
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?} with {:?}: expected {:?}, got {}",
            self.role, self.op, self.rel, self.expected, self.actual
        )
    }
}

fn patient_profile() -> PatientProfile {
    PatientProfile {
        mrn: format!("MX-{}", Uuid::new_v4().simple()),
        given_name: "Matrix".into(),
        family_name: "Cell".into(),
        birth_date: "1970-01-01".into(),
        sex: "unknown".into(),
        email: None,
        phone: None,
        address: None,
        data: None,
    }
}

fn disclosure() -> NewDisclosure {
    serde_json::from_value(serde_json::json!({
        "recipient": "R",
        "purpose": "P",
        "description": "D",
        "legal_basis": "L",
    }))
    .expect("disclosure")
}

fn note() -> Json {
    Json(serde_json::json!({ "text": "seen today" }))
}

fn outcome<T>(result: crate::error::Result<T>) -> Result<Outcome, String> {
    match result {
        Ok(_) => Ok(Outcome::Allowed),
        Err(Error::NotFound { .. }) => Ok(Outcome::Hidden),
        Err(Error::PermissionDenied) => Ok(Outcome::Denied),
        Err(Error::InvalidInput { .. }) => Ok(Outcome::Refused),
        Err(other) => Err(format!("error {other}")),
    }
}

fn listing(result: crate::error::Result<bool>) -> Result<Outcome, String> {
    match result {
        Ok(true) => Ok(Outcome::Listed),
        Ok(false) => Ok(Outcome::NotListed),
        Err(Error::PermissionDenied) => Ok(Outcome::Denied),
        Err(other) => Err(format!("error {other}")),
    }
}

/// Runs every cell through the Rust API and returns the cells that differ
/// from [`expected`]. `rows` must be the store under `clarity` (it plants
/// expired assignments, which the API refuses to make).
pub async fn run(clarity: &Clarity, rows: &dyn Store) -> Vec<Mismatch> {
    let (_, admin_email) = user_with_role(clarity, Role::Admin).await;
    let admin = clarity
        .authenticate(&access_token(clarity, &admin_email).await)
        .await
        .expect("admin");
    let (_, owner_email) = user_with_role(clarity, Role::Clinician).await;
    let owner = clarity
        .authenticate(&access_token(clarity, &owner_email).await)
        .await
        .expect("owner");
    let mut callers = Vec::new();
    for role in Role::ALL {
        let (id, email) = user_with_role(clarity, role).await;
        callers.push((role, id, access_token(clarity, &email).await));
    }
    let mut mismatches = Vec::new();
    for rel in Relationship::ALL {
        for (role, user_id, token) in &callers {
            let patient = clarity
                .create_patient(&owner, patient_profile())
                .await
                .expect("patient");
            let record = clarity
                .create_record(&owner, patient.id, "note", note())
                .await
                .expect("record");
            establish(
                clarity, rows, &admin, *role, *user_id, patient.id, rel, token,
            )
            .await;
            let principal = clarity.authenticate(token).await.expect("authenticate");
            for op in Operation::ALL {
                let actual = perform(
                    clarity,
                    &principal,
                    &owner,
                    op,
                    patient.id,
                    &patient.profile.expose().mrn,
                    record.id,
                )
                .await;
                let want = expected(*role, op, rel);
                match actual {
                    Ok(got) if got == want => {}
                    Ok(got) => mismatches.push(Mismatch {
                        role: *role,
                        op,
                        rel,
                        expected: want,
                        actual: format!("{got:?}"),
                    }),
                    Err(e) => mismatches.push(Mismatch {
                        role: *role,
                        op,
                        rel,
                        expected: want,
                        actual: e,
                    }),
                }
            }
        }
    }
    mismatches
}

#[allow(clippy::too_many_arguments)]
async fn establish(
    clarity: &Clarity,
    rows: &dyn Store,
    admin: &Principal,
    role: Role,
    user_id: Uuid,
    patient: Uuid,
    rel: Relationship,
    token: &str,
) {
    match rel {
        Relationship::Own if role == Role::Patient => {
            let update = UserUpdate {
                patient_id: Some(patient),
                ..UserUpdate::default()
            };
            clarity
                .update_user(admin, user_id, update)
                .await
                .expect("link patient");
        }
        Relationship::Assigned => {
            let assignment = CareTeamAssignment {
                user_id,
                relationship: None,
                expires_at: None,
            };
            clarity
                .add_care_team_member(admin, patient, assignment)
                .await
                .expect("assign");
        }
        Relationship::ExpiredAssignment => {
            let past = chrono::Utc::now() - chrono::Duration::hours(1);
            rows.apply(Change::AddCareTeamMember(CareTeamRow {
                patient_id: patient,
                user_id,
                relationship: "member".into(),
                expires_at: Some(past),
                created_at: past - chrono::Duration::hours(1),
            }))
            .await
            .expect("expired assignment");
        }
        Relationship::BreakGlass if role == Role::Clinician => {
            let principal = clarity.authenticate(token).await.expect("authenticate");
            let request = BreakGlassRequest {
                patient_id: patient,
                reason: "unconscious in the emergency room".into(),
                totp: None,
            };
            clarity
                .break_glass(&principal, request)
                .await
                .expect("break glass");
        }
        _ => {}
    }
}

async fn perform(
    clarity: &Clarity,
    p: &Principal,
    owner: &Principal,
    op: Operation,
    patient: Uuid,
    mrn: &str,
    record: Uuid,
) -> Result<Outcome, String> {
    use Operation as O;
    let page = PageRequest::first(1000);
    match op {
        O::CreatePatient => outcome(clarity.create_patient(p, patient_profile()).await),
        O::ReadPatient => outcome(clarity.get_patient(p, patient).await),
        O::ListPatients => listing(
            clarity
                .list_patients(p, &page)
                .await
                .map(|l| l.items.iter().any(|x| x.id == patient)),
        ),
        O::LookupPatient => listing(
            clarity
                .find_patients(p, &PatientLookup::Mrn(mrn.into()))
                .await
                .map(|ids| ids.contains(&patient)),
        ),
        O::UpdatePatient => {
            let current = clarity
                .get_patient(owner, patient)
                .await
                .expect("owner reads");
            let profile = current.profile.expose().clone();
            outcome(
                clarity
                    .update_patient(p, patient, current.version, profile)
                    .await,
            )
        }
        O::ReadRecord => outcome(clarity.get_record(p, record).await),
        O::ListRecords => outcome(clarity.list_records(p, patient, &page).await),
        O::CreateNote => outcome(clarity.create_record(p, patient, "note", note()).await),
        O::CreatePrescription => outcome(
            clarity
                .create_record(p, patient, "prescription", note())
                .await,
        ),
        O::UpdateRecord => {
            let version = clarity
                .get_record(owner, record)
                .await
                .expect("owner reads")
                .version;
            outcome(clarity.update_record(p, record, version, note()).await)
        }
        O::DeleteRecord => {
            // Delete a fresh record, so the shared one stays for later cells.
            let spare = clarity
                .create_record(owner, patient, "note", note())
                .await
                .expect("spare record");
            outcome(clarity.delete_record(p, spare.id).await)
        }
        O::ManageCareTeam => {
            let assignment = CareTeamAssignment {
                user_id: owner.user_id,
                relationship: Some("attending".into()),
                expires_at: None,
            };
            outcome(clarity.add_care_team_member(p, patient, assignment).await)
        }
        O::ManageUsers => outcome(clarity.list_users(p, &page).await),
        O::ReviewGrants => outcome(clarity.list_grants(p, false, &page).await),
        O::ResearchView => outcome(clarity.research_patients(p, &PageRequest::first(10)).await),
        O::BreakGlass => {
            let request = BreakGlassRequest {
                patient_id: patient,
                reason: "matrix: emergency access check".into(),
                totp: None,
            };
            outcome(clarity.break_glass(p, request).await)
        }
        O::ChangeOwnRoles => {
            let update = UserUpdate {
                roles: Some(RoleSet::from_roles([Role::Auditor])),
                ..UserUpdate::default()
            };
            outcome(clarity.update_user(p, p.user_id, update).await)
        }
        O::AdminWithPhiRole => {
            let user = NewUser {
                email: format!("mixed-{}@test.example", Uuid::new_v4().simple()),
                password: crate::crypto::SecretString::new(super::TEST_PASSWORD),
                roles: RoleSet::from_roles([Role::Admin, Role::Clinician]),
                display_name: None,
                patient_id: None,
            };
            outcome(clarity.create_user(p, user).await)
        }
        O::ReadAccessLog => outcome(
            clarity
                .patient_access_log(p, patient, AccessLogRange::default(), &page)
                .await,
        ),
        O::RecordDisclosure => outcome(clarity.record_disclosure(p, patient, disclosure()).await),
        O::ListDisclosures => outcome(clarity.list_disclosures(p, patient, &page).await),
        O::ErasePatient => outcome(clarity.erase_patient(p, patient).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specification_denies_by_default() {
        // No role other than clinician, nurse and patient sees any patient.
        for role in [Role::Admin, Role::Researcher, Role::Auditor] {
            for rel in Relationship::ALL {
                for op in [
                    Operation::ReadPatient,
                    Operation::ReadRecord,
                    Operation::ListRecords,
                ] {
                    assert_eq!(
                        expected(role, op, rel),
                        Outcome::Hidden,
                        "{role} {op:?} {rel:?}"
                    );
                }
            }
        }
        assert_eq!(
            expected(
                Role::Nurse,
                Operation::CreatePrescription,
                Relationship::Assigned
            ),
            Outcome::Denied
        );
        assert_eq!(
            expected(
                Role::Clinician,
                Operation::ReadPatient,
                Relationship::ExpiredAssignment
            ),
            Outcome::Hidden
        );
    }

    #[test]
    fn the_patients_view_goes_to_the_patient_and_the_privacy_office() {
        use Operation as O;
        use Relationship as R;
        // S-AUD-9: auditors on any patient, for all three.
        for rel in Relationship::ALL {
            for op in [O::ReadAccessLog, O::ListDisclosures, O::RecordDisclosure] {
                assert_eq!(
                    expected(Role::Auditor, op, rel),
                    Outcome::Allowed,
                    "{op:?} {rel:?}"
                );
            }
        }
        let cases = [
            (Role::Patient, O::ReadAccessLog, R::Own, Outcome::Allowed),
            (Role::Patient, O::ListDisclosures, R::Own, Outcome::Allowed),
            (Role::Patient, O::RecordDisclosure, R::Own, Outcome::Denied),
            (Role::Patient, O::ReadAccessLog, R::Other, Outcome::Hidden),
            (
                Role::Clinician,
                O::ReadAccessLog,
                R::Assigned,
                Outcome::Denied,
            ),
            (
                Role::Clinician,
                O::ReadAccessLog,
                R::BreakGlass,
                Outcome::Denied,
            ),
            (Role::Nurse, O::ReadAccessLog, R::Assigned, Outcome::Denied),
            (
                Role::Nurse,
                O::ReadAccessLog,
                R::BreakGlass,
                Outcome::Hidden,
            ),
            (
                Role::Clinician,
                O::RecordDisclosure,
                R::BreakGlass,
                Outcome::Allowed,
            ),
            (
                Role::Nurse,
                O::RecordDisclosure,
                R::Assigned,
                Outcome::Allowed,
            ),
            (
                Role::Clinician,
                O::RecordDisclosure,
                R::ExpiredAssignment,
                Outcome::Hidden,
            ),
            (
                Role::Clinician,
                O::ListDisclosures,
                R::BreakGlass,
                Outcome::Allowed,
            ),
            (Role::Admin, O::ListDisclosures, R::Other, Outcome::Hidden),
            (
                Role::Researcher,
                O::RecordDisclosure,
                R::Assigned,
                Outcome::Hidden,
            ),
        ];
        for (role, op, rel, want) in cases {
            assert_eq!(expected(role, op, rel), want, "{role} {op:?} {rel:?}");
        }
    }
}
