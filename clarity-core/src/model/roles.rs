//! The six roles and a compact set of them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// A role. Deny by default: a role grants only what the policy point
/// (`access::decide`) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Manages users, roles, care teams, keys and backups; reads no PHI.
    Admin,
    /// Treats patients on its care team (and under break-glass).
    Clinician,
    /// Reads patients on its care team; writes records of allowed kinds.
    Nurse,
    /// Reads its own record.
    Patient,
    /// De-identified data only.
    Researcher,
    /// The audit log only.
    Auditor,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Clinician,
        Role::Nurse,
        Role::Patient,
        Role::Researcher,
        Role::Auditor,
    ];

    /// The role's name as the API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Clinician => "clinician",
            Role::Nurse => "nurse",
            Role::Patient => "patient",
            Role::Researcher => "researcher",
            Role::Auditor => "auditor",
        }
    }

    /// Parses a role name.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn parse(name: &str) -> Result<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| {
                Error::invalid(
                    "unknown role; roles are admin, clinician, nurse, patient, researcher, auditor",
                )
            })
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of roles.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleSet(u8);

impl RoleSet {
    /// The set of `roles`.
    pub fn from_roles(roles: impl IntoIterator<Item = Role>) -> Self {
        RoleSet(roles.into_iter().fold(0, |bits, r| bits | r.bit()))
    }

    /// Parses role names; duplicates are harmless.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self> {
        let roles = names
            .iter()
            .map(|n| Role::parse(n.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(RoleSet::from_roles(roles))
    }

    /// Whether `role` is in the set.
    pub fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The roles, in [`Role::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// Whether the set holds a role that reads PHI or data derived from it
    /// (clinician, nurse, patient, researcher).
    pub fn reads_phi(self) -> bool {
        [
            Role::Clinician,
            Role::Nurse,
            Role::Patient,
            Role::Researcher,
        ]
        .into_iter()
        .any(|r| self.contains(r))
    }

    /// Checks that an account may be given this set (S-AC-8): at least one
    /// role, and never `admin` together with a role that reads PHI, so that
    /// whoever manages accounts cannot also read what they protect.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the rule that is broken.
    pub fn check_assignable(self) -> Result<()> {
        if self.is_empty() {
            return Err(Error::invalid("roles must name at least one role"));
        }
        if self.contains(Role::Admin) && self.reads_phi() {
            return Err(Error::invalid(
                "roles: admin cannot be combined with clinician, nurse, patient or researcher \
                 (separation of duties: use two accounts)",
            ));
        }
        Ok(())
    }

    /// The roles that grant anything (S-AC-8): an account that holds
    /// `admin` together with roles that read PHI (possible only for accounts
    /// made before the rule) acts as an admin alone, so admins never read
    /// PHI.
    pub fn effective(self) -> Self {
        if self.contains(Role::Admin) {
            RoleSet::from_roles(
                self.iter()
                    .filter(|r| matches!(r, Role::Admin | Role::Auditor)),
            )
        } else {
            self
        }
    }

    /// The roles as a comma-separated list (storage form).
    pub fn to_csv(self) -> String {
        self.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
    }

    /// Parses the storage form written by [`RoleSet::to_csv`].
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for an unknown name.
    pub fn from_csv(csv: &str) -> Result<Self> {
        let names: Vec<&str> = csv.split(',').filter(|s| !s.is_empty()).collect();
        RoleSet::parse(&names)
    }
}

impl fmt::Debug for RoleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl Serialize for RoleSet {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        // A sequence of known length: compact formats (the cache's) need it.
        let names: Vec<&str> = self.iter().map(Role::as_str).collect();
        names.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for RoleSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let names = Vec::<String>::deserialize(deserializer)?;
        RoleSet::parse(&names).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_storage_and_json() {
        let set = RoleSet::from_roles([Role::Nurse, Role::Admin]);
        assert_eq!(set.to_csv(), "admin,nurse");
        assert_eq!(RoleSet::from_csv("admin,nurse").expect("csv"), set);
        assert_eq!(
            serde_json::to_string(&set).expect("json"),
            r#"["admin","nurse"]"#
        );
        assert!(RoleSet::parse(&["root"]).is_err());
        assert!(RoleSet::from_csv("").expect("empty").is_empty());
    }

    /// S-AC-8: admin never goes with a role that reads PHI.
    #[test]
    fn admin_is_never_combined_with_a_phi_role() {
        for role in [
            Role::Clinician,
            Role::Nurse,
            Role::Patient,
            Role::Researcher,
        ] {
            let set = RoleSet::from_roles([Role::Admin, role]);
            let err = set.check_assignable().expect_err("refused");
            assert_eq!(err.kind(), crate::error::ErrorKind::InvalidInput, "{role}");
            assert!(RoleSet::from_roles([role]).check_assignable().is_ok());
        }
        assert!(
            RoleSet::from_roles([Role::Admin, Role::Auditor])
                .check_assignable()
                .is_ok()
        );
        assert!(RoleSet::default().check_assignable().is_err());
    }
}
