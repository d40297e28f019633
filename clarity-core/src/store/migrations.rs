//! Embedded, versioned schema migrations, one list per backend.
//!
//! Migrations are SQL files under `migrations/<backend>/`, compiled into the
//! binary, applied in version order inside one transaction each, and recorded
//! in `schema_migrations` with a checksum. A recorded migration whose checksum
//! differs from the embedded one, or a database newer than this build, is an
//! error: Clarity never runs against a schema it does not know.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// One schema migration.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Version, starting at 1, without gaps.
    pub version: i64,
    /// Short name.
    pub name: &'static str,
    /// The SQL to run.
    pub sql: &'static str,
}

impl Migration {
    /// Hex SHA-256 of the SQL, recorded when applied.
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        name: "patients_records_keys",
        sql: include_str!("../../migrations/sqlite/0001_patients_records_keys.sql"),
    },
    Migration {
        version: 2,
        name: "identity_access",
        sql: include_str!("../../migrations/sqlite/0002_identity_access.sql"),
    },
    Migration {
        version: 3,
        name: "audit",
        sql: include_str!("../../migrations/sqlite/0003_audit.sql"),
    },
    Migration {
        version: 4,
        name: "service_accounts",
        sql: include_str!("../../migrations/sqlite/0004_service_accounts.sql"),
    },
    Migration {
        version: 5,
        name: "external_identities",
        sql: include_str!("../../migrations/sqlite/0005_external_identities.sql"),
    },
    Migration {
        version: 6,
        name: "audit_sinks",
        sql: include_str!("../../migrations/sqlite/0006_audit_sinks.sql"),
    },
    Migration {
        version: 7,
        name: "disclosures",
        sql: include_str!("../../migrations/sqlite/0007_disclosures.sql"),
    },
    Migration {
        version: 8,
        name: "audit_index_off_the_commit",
        sql: include_str!("../../migrations/sqlite/0008_audit_index_off_the_commit.sql"),
    },
];

const POSTGRES: &[Migration] = &[
    Migration {
        version: 1,
        name: "patients_records_keys",
        sql: include_str!("../../migrations/postgres/0001_patients_records_keys.sql"),
    },
    Migration {
        version: 2,
        name: "identity_access",
        sql: include_str!("../../migrations/postgres/0002_identity_access.sql"),
    },
    Migration {
        version: 3,
        name: "audit",
        sql: include_str!("../../migrations/postgres/0003_audit.sql"),
    },
    Migration {
        version: 4,
        name: "service_accounts",
        sql: include_str!("../../migrations/postgres/0004_service_accounts.sql"),
    },
    Migration {
        version: 5,
        name: "external_identities",
        sql: include_str!("../../migrations/postgres/0005_external_identities.sql"),
    },
    Migration {
        version: 6,
        name: "audit_sinks",
        sql: include_str!("../../migrations/postgres/0006_audit_sinks.sql"),
    },
    Migration {
        version: 7,
        name: "disclosures",
        sql: include_str!("../../migrations/postgres/0007_disclosures.sql"),
    },
    Migration {
        version: 8,
        name: "audit_index_off_the_commit",
        sql: include_str!("../../migrations/postgres/0008_audit_index_off_the_commit.sql"),
    },
];

/// The migrations of a backend (`sqlite` or `postgres`), in order.
pub fn migrations_for(backend: &str) -> &'static [Migration] {
    match backend {
        "sqlite" => SQLITE,
        "postgres" => POSTGRES,
        _ => &[],
    }
}

/// Decides which migrations to run, given those already applied
/// (`(version, checksum)` in any order).
pub(crate) fn pending(
    backend: &'static str,
    applied: &[(i64, String)],
) -> Result<Vec<&'static Migration>> {
    let known = migrations_for(backend);
    let latest = known.last().map_or(0, |m| m.version);
    for (version, checksum) in applied {
        let Some(migration) = known.iter().find(|m| m.version == *version) else {
            return Err(Error::internal(format!(
                "the {backend} database has schema version {version}, newer than this build knows ({latest}); upgrade Clarity"
            )));
        };
        if &migration.checksum() != checksum {
            return Err(Error::internal(format!(
                "{backend} migration {version} ({}) was applied with different SQL than this build embeds",
                migration.name
            )));
        }
    }
    Ok(known
        .iter()
        .filter(|m| !applied.iter().any(|(v, _)| *v == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_and_backends_agree() {
        for backend in ["sqlite", "postgres"] {
            for (i, m) in migrations_for(backend).iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1, "{backend} {}", m.name);
            }
        }
        let names = |b| migrations_for(b).iter().map(|m| m.name).collect::<Vec<_>>();
        assert_eq!(names("sqlite"), names("postgres"));
    }

    #[test]
    fn unknown_or_changed_migrations_are_refused() {
        let m = &migrations_for("sqlite")[0];
        assert_eq!(pending("sqlite", &[]).expect("ok").len(), SQLITE.len());
        let all: Vec<_> = SQLITE.iter().map(|m| (m.version, m.checksum())).collect();
        assert!(pending("sqlite", &all).expect("ok").is_empty());
        assert_eq!(
            pending("sqlite", &[(1, m.checksum())]).expect("ok").len(),
            SQLITE.len() - 1
        );
        assert!(pending("sqlite", &[(1, "x".into())]).is_err());
        assert!(
            pending("sqlite", &[(999, "x".into())])
                .unwrap_err()
                .to_string()
                .contains("newer")
        );
    }
}
