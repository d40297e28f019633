//! Access control: roles, the facts about a caller's relationship to a
//! patient, and [`decide`], the one policy point every operation goes through.
//!
//! [`decide`] is pure: the service gathers the facts (care-team membership,
//! break-glass grants, the caller's own patient link) and asks. Deny by
//! default: an action is allowed only by a rule below that names it.

mod deid;
mod settings;

use std::fmt;

use serde::Serialize;
use uuid::Uuid;

pub use crate::model::{Role, RoleSet};
pub use deid::{DeidentifiedPatient, deidentify};
pub use settings::AccessConfig;

use crate::model::{ExternalIdentity, RecordKind, RequestContext};

/// Who is calling: established by authentication, carried into every operation.
///
/// A `Principal` cannot be built outside this crate: it comes only from
/// `Clarity::authenticate` (a live session's access token) or from
/// `Clarity::operator` (the audited local operator, who holds the
/// data directory and keys). Its fields are read through methods.
///
/// A principal is what authentication found at that moment: hold it for one
/// request, and authenticate the next one again (as the HTTP server and the
/// C ABI do), so that a logout, a disabled account or a change of roles
/// takes effect at once.
///
/// ```compile_fail,E0451
/// // S-API-1: no struct literal from outside the crate (private fields).
/// let forged = clarity_core::access::Principal {
///     user_id: uuid::Uuid::now_v7(),
///     session_id: uuid::Uuid::now_v7(),
///     roles: clarity_core::model::RoleSet::from_roles([clarity_core::model::Role::Admin]),
///     patient_id: None,
///     mfa: true,
///     context: Default::default(),
///     identity: None,
/// };
/// ```
///
/// ```compile_fail,E0616
/// // S-API-1: fields are not public; a principal's roles cannot be edited.
/// fn promote(p: &mut clarity_core::access::Principal) {
///     p.roles = clarity_core::model::RoleSet::from_roles([clarity_core::model::Role::Clinician]);
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The user's id.
    pub(crate) user_id: Uuid,
    /// The session the caller's token belongs to.
    pub(crate) session_id: Uuid,
    /// The user's roles.
    pub(crate) roles: RoleSet,
    /// For a user with the `patient` role: the patient record that is theirs.
    pub(crate) patient_id: Option<Uuid>,
    /// Whether the session was established with a second factor.
    pub(crate) mfa: bool,
    /// The request being served (purpose of use, client address, request
    /// id), recorded in audit events. Set by authentication per request.
    pub(crate) context: RequestContext,
    /// For a caller who came with an OpenID Connect provider's token: the
    /// provider and subject (named in audit events).
    pub(crate) identity: Option<std::sync::Arc<ExternalIdentity>>,
}

impl Principal {
    /// The user's id.
    pub fn user_id(&self) -> Uuid {
        self.user_id
    }

    /// The session the caller's token belongs to (nil for the operator).
    pub fn session_id(&self) -> Uuid {
        self.session_id
    }

    /// The user's roles.
    pub fn roles(&self) -> RoleSet {
        self.roles
    }

    /// For a user with the `patient` role: the patient record that is theirs.
    pub fn patient_id(&self) -> Option<Uuid> {
        self.patient_id
    }

    /// Whether the session was established with a second factor.
    pub fn mfa(&self) -> bool {
        self.mfa
    }

    /// The request being served, as recorded in audit events.
    pub fn context(&self) -> &RequestContext {
        &self.context
    }

    /// The identity provider and subject the caller came with, if the
    /// caller authenticated with a provider's token.
    pub fn identity(&self) -> Option<&ExternalIdentity> {
        self.identity.as_deref()
    }
}

/// What the caller wants to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Create a patient.
    CreatePatient,
    /// Read a patient's profile.
    ReadPatient,
    /// Change a patient's profile.
    UpdatePatient,
    /// Erase a patient (destroys its data key).
    ErasePatient,
    /// Create a record of this kind for a patient.
    CreateRecord(RecordKind),
    /// Read a patient's records (one or a list).
    ReadRecords,
    /// Change a record of this kind.
    UpdateRecord(RecordKind),
    /// Delete a record.
    DeleteRecord,
    /// Create, list, change or disable users.
    ManageUsers,
    /// Assign or remove care-team members.
    ManageCareTeam,
    /// Ask for emergency access to a patient.
    BreakGlass,
    /// List and review break-glass grants.
    ReviewGrants,
    /// Read de-identified patient data.
    ReadResearch,
    /// Query, verify and export the audit log.
    ReadAudit,
    /// Rotate keys and see their status.
    ManageKeys,
    /// Delete audit events past their retention.
    PurgeAudit,
    /// See who accessed a patient's record (S-AUD-9).
    ReadAccessLog,
    /// Record a disclosure of a patient's information to an outside recipient.
    RecordDisclosure,
    /// List a patient's disclosures and produce their accounting.
    ReadDisclosures,
}

impl Action {
    /// A short stable name, used in decisions and audit events.
    pub fn name(&self) -> &'static str {
        match self {
            Action::CreatePatient => "patient.create",
            Action::ReadPatient => "patient.read",
            Action::UpdatePatient => "patient.update",
            Action::ErasePatient => "patient.erase",
            Action::CreateRecord(_) => "record.create",
            Action::ReadRecords => "record.read",
            Action::UpdateRecord(_) => "record.update",
            Action::DeleteRecord => "record.delete",
            Action::ManageUsers => "user.manage",
            Action::ManageCareTeam => "care_team.manage",
            Action::BreakGlass => "break_glass",
            Action::ReviewGrants => "grant.review",
            Action::ReadResearch => "research.read",
            Action::ReadAudit => "audit.read",
            Action::ManageKeys => "keys.manage",
            Action::PurgeAudit => "audit.purge",
            Action::ReadAccessLog => "access_log.read",
            Action::RecordDisclosure => "disclosure.create",
            Action::ReadDisclosures => "disclosure.read",
        }
    }
}

/// What is known about the caller's relationship to the patient an action
/// concerns. Gathered by the service; absent for actions on no patient.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Relation {
    /// On the patient's care team, with an assignment not yet expired.
    pub care_team: bool,
    /// Holds an unexpired break-glass grant for the patient.
    pub break_glass: bool,
    /// The patient is the caller's own record (the user ↔ patient link).
    pub own_record: bool,
}

/// Why a decision went the way it did; recorded in audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Allowed: the role grants it on any resource.
    Role,
    /// Allowed: the caller is on the care team.
    CareTeam,
    /// Allowed: through a break-glass grant.
    BreakGlass,
    /// Allowed: the caller's own record.
    OwnRecord,
    /// Denied: no role of the caller grants this action.
    NoRole,
    /// Denied: the role grants it, but not for this patient.
    NoRelationship,
    /// Denied: nurses may not write records of this kind.
    KindNotAllowed,
}

impl Reason {
    /// The reason's stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Role => "role",
            Reason::CareTeam => "care_team",
            Reason::BreakGlass => "break_glass",
            Reason::OwnRecord => "own_record",
            Reason::NoRole => "no_role",
            Reason::NoRelationship => "no_relationship",
            Reason::KindNotAllowed => "kind_not_allowed",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the action may go ahead.
    pub allow: bool,
    /// Why.
    pub reason: Reason,
}

impl Decision {
    fn allow(reason: Reason) -> Self {
        Decision {
            allow: true,
            reason,
        }
    }

    fn deny(reason: Reason) -> Self {
        Decision {
            allow: false,
            reason,
        }
    }
}

/// Settings the policy depends on.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Record kinds a nurse may create and update.
    pub nurse_writable_kinds: Vec<RecordKind>,
}

impl Default for Policy {
    fn default() -> Self {
        let kinds = AccessConfig::default().nurse_writable_kinds;
        Policy::from_kinds(&kinds)
    }
}

impl Policy {
    /// A policy from the configured nurse-writable kinds (invalid kinds are
    /// rejected by configuration validation and skipped here).
    pub fn from_kinds(kinds: &[String]) -> Self {
        Policy {
            nurse_writable_kinds: kinds
                .iter()
                .filter_map(|k| RecordKind::new(k).ok())
                .collect(),
        }
    }
}

/// The policy point: may `principal` do `action`, given its `relation` to the
/// patient concerned (`None` when the action concerns no patient)?
///
/// Roles (a user may hold several; any role that allows wins):
/// - `admin`: users, care teams, grant review, keys, audit, erasure. Reads no PHI.
/// - `clinician`: creates patients; reads and writes patients and records on
///   its care team or under a break-glass grant; may ask for break-glass.
/// - `nurse`: reads patients and records on its care team; creates and
///   updates records of the configured kinds there.
/// - `patient`: reads its own profile and records.
/// - `researcher`: de-identified data only.
/// - `auditor`: the audit log only, and for any patient its access log,
///   disclosures and their accounting (the privacy office's duties).
///
/// A patient sees its own access log, disclosures and accounting.
/// Disclosures are recorded by those who hold the patient's PHI (clinicians
/// and nurses on the care team, clinicians under break-glass) and by the
/// privacy office (auditors), which answers legal requests; the care team
/// may read the disclosures it and the privacy office recorded.
pub fn decide(
    policy: &Policy,
    principal: &Principal,
    action: &Action,
    relation: Option<Relation>,
) -> Decision {
    let rel = relation.unwrap_or_default();
    // S-AC-8: admin is never combined with a PHI role, even on an account
    // made before the rule.
    let roles = &principal.roles.effective();
    let clinical = |allow_nurse: bool| -> Decision {
        let clinician = roles.contains(Role::Clinician);
        let nurse = allow_nurse && roles.contains(Role::Nurse);
        if !clinician && !nurse {
            return Decision::deny(Reason::NoRole);
        }
        if rel.care_team {
            Decision::allow(Reason::CareTeam)
        } else if clinician && rel.break_glass {
            Decision::allow(Reason::BreakGlass)
        } else {
            Decision::deny(Reason::NoRelationship)
        }
    };
    let read = || -> Decision {
        let decision = clinical(true);
        if decision.allow || !roles.contains(Role::Patient) {
            decision
        } else if rel.own_record {
            Decision::allow(Reason::OwnRecord)
        } else {
            Decision::deny(Reason::NoRelationship)
        }
    };
    let write = |kind: &RecordKind| -> Decision {
        let decision = clinical(policy.nurse_writable_kinds.contains(kind));
        if decision.reason == Reason::NoRole && roles.contains(Role::Nurse) {
            Decision::deny(Reason::KindNotAllowed)
        } else {
            decision
        }
    };
    // The privacy office (auditors) may, whatever `first` says.
    let or_auditor = |first: Decision| -> Decision {
        if !first.allow && roles.contains(Role::Auditor) {
            Decision::allow(Reason::Role)
        } else {
            first
        }
    };
    let own_only = || -> Decision {
        if !roles.contains(Role::Patient) {
            Decision::deny(Reason::NoRole)
        } else if rel.own_record {
            Decision::allow(Reason::OwnRecord)
        } else {
            Decision::deny(Reason::NoRelationship)
        }
    };
    let role_only = |role: Role| {
        if roles.contains(role) {
            Decision::allow(Reason::Role)
        } else {
            Decision::deny(Reason::NoRole)
        }
    };
    match action {
        Action::CreatePatient => role_only(Role::Clinician),
        Action::ReadPatient | Action::ReadRecords => read(),
        Action::UpdatePatient | Action::DeleteRecord => clinical(false),
        Action::CreateRecord(kind) | Action::UpdateRecord(kind) => write(kind),
        Action::ErasePatient
        | Action::ManageUsers
        | Action::ManageCareTeam
        | Action::ReviewGrants
        | Action::ManageKeys
        | Action::PurgeAudit => role_only(Role::Admin),
        Action::BreakGlass => role_only(Role::Clinician),
        Action::ReadResearch => role_only(Role::Researcher),
        Action::ReadAudit => {
            if roles.contains(Role::Auditor) || roles.contains(Role::Admin) {
                Decision::allow(Reason::Role)
            } else {
                Decision::deny(Reason::NoRole)
            }
        }
        Action::ReadAccessLog => or_auditor(own_only()),
        Action::RecordDisclosure => or_auditor(clinical(true)),
        Action::ReadDisclosures => or_auditor(read()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(roles: &[Role]) -> Principal {
        Principal {
            user_id: Uuid::nil(),
            session_id: Uuid::nil(),
            roles: RoleSet::from_roles(roles.iter().copied()),
            patient_id: None,
            mfa: false,
            context: Default::default(),
            identity: None,
        }
    }

    fn kind(k: &str) -> RecordKind {
        RecordKind::new(k).expect("kind")
    }

    const TEAM: Relation = Relation {
        care_team: true,
        break_glass: false,
        own_record: false,
    };
    const GLASS: Relation = Relation {
        care_team: false,
        break_glass: true,
        own_record: false,
    };
    const OWN: Relation = Relation {
        care_team: false,
        break_glass: false,
        own_record: true,
    };

    // S-AC-1: deny by default.
    #[test]
    fn nobody_without_a_role_may_do_anything() {
        let policy = Policy::default();
        let nobody = principal(&[]);
        for action in [
            Action::CreatePatient,
            Action::ReadPatient,
            Action::ReadRecords,
            Action::ManageUsers,
            Action::ReadAudit,
            Action::BreakGlass,
        ] {
            for rel in [None, Some(TEAM), Some(GLASS), Some(OWN)] {
                assert!(!decide(&policy, &nobody, &action, rel).allow, "{action:?}");
            }
        }
    }

    #[test]
    // S-AC-8: an admin reads no PHI, even an account that also holds a PHI
    // role (made before the rule refused such sets).
    fn admin_reads_no_phi_even_with_a_phi_role() {
        let policy = Policy::default();
        let admin = principal(&[Role::Admin]);
        assert!(!decide(&policy, &admin, &Action::ReadPatient, Some(TEAM)).allow);
        assert!(decide(&policy, &admin, &Action::ManageUsers, None).allow);
        for phi_role in [
            Role::Clinician,
            Role::Nurse,
            Role::Patient,
            Role::Researcher,
        ] {
            let both = principal(&[Role::Admin, phi_role]);
            let own = Relation {
                own_record: true,
                ..TEAM
            };
            for action in [
                Action::ReadPatient,
                Action::ReadRecords,
                Action::ReadResearch,
            ] {
                assert!(
                    !decide(&policy, &both, &action, Some(own)).allow,
                    "{phi_role} {action:?}"
                );
            }
            assert!(decide(&policy, &both, &Action::ManageUsers, None).allow);
        }
    }

    #[test]
    fn nurses_write_only_allowed_kinds_and_never_break_glass() {
        let policy = Policy::default();
        let nurse = principal(&[Role::Nurse]);
        let ok = decide(
            &policy,
            &nurse,
            &Action::CreateRecord(kind("note")),
            Some(TEAM),
        );
        assert_eq!(ok, Decision::allow(Reason::CareTeam));
        let denied = decide(
            &policy,
            &nurse,
            &Action::CreateRecord(kind("prescription")),
            Some(TEAM),
        );
        assert_eq!(denied, Decision::deny(Reason::KindNotAllowed));
        assert!(!decide(&policy, &nurse, &Action::ReadPatient, Some(GLASS)).allow);
        assert!(!decide(&policy, &nurse, &Action::DeleteRecord, Some(TEAM)).allow);
    }

    #[test]
    fn patients_read_only_their_own_record() {
        let policy = Policy::default();
        let patient = principal(&[Role::Patient]);
        assert_eq!(
            decide(&policy, &patient, &Action::ReadRecords, Some(OWN)),
            Decision::allow(Reason::OwnRecord)
        );
        assert!(!decide(&policy, &patient, &Action::ReadRecords, Some(TEAM)).allow);
        assert!(!decide(&policy, &patient, &Action::UpdatePatient, Some(OWN)).allow);
    }

    // S-AUD-9: a patient sees its own access log and disclosures; the
    // privacy office (auditors) any patient's; those who treat the patient
    // record disclosures; nobody else, and no admin.
    #[test]
    fn the_patients_view_and_disclosures_follow_the_patient_and_the_care_team() {
        let policy = Policy::default();
        let allowed = |roles: &[Role], action: Action, rel: Relation| {
            decide(&policy, &principal(roles), &action, Some(rel)).allow
        };
        let patient = [Role::Patient];
        assert!(allowed(&patient, Action::ReadAccessLog, OWN));
        assert!(allowed(&patient, Action::ReadDisclosures, OWN));
        assert!(!allowed(&patient, Action::RecordDisclosure, OWN));
        let stranger = Relation::default();
        assert!(!allowed(&patient, Action::ReadAccessLog, stranger));
        assert!(!allowed(&patient, Action::ReadDisclosures, stranger));

        let auditor = [Role::Auditor];
        assert!(allowed(&auditor, Action::ReadAccessLog, stranger));
        assert!(allowed(&auditor, Action::ReadDisclosures, stranger));
        assert!(allowed(&auditor, Action::RecordDisclosure, stranger));

        for clinical in [[Role::Clinician], [Role::Nurse]] {
            assert!(allowed(&clinical, Action::RecordDisclosure, TEAM));
            assert!(allowed(&clinical, Action::ReadDisclosures, TEAM));
            assert!(!allowed(&clinical, Action::RecordDisclosure, stranger));
            assert!(!allowed(&clinical, Action::ReadAccessLog, TEAM));
        }
        assert!(allowed(&[Role::Clinician], Action::RecordDisclosure, GLASS));
        assert!(!allowed(&[Role::Nurse], Action::RecordDisclosure, GLASS));

        for other in [[Role::Admin], [Role::Researcher]] {
            for action in [
                Action::ReadAccessLog,
                Action::RecordDisclosure,
                Action::ReadDisclosures,
            ] {
                assert!(
                    !allowed(&other, action.clone(), TEAM),
                    "{other:?} {action:?}"
                );
            }
        }
    }
}
