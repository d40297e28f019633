//! Operator commands of the `clarity` CLI: users, the audit trail, setup and
//! demo data. They act as the local operator (`Clarity::operator`), so every
//! action is decided by the core and audited like any other.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use clap::Args;
use clarity_core::audit::AuditFilter;
use clarity_core::crypto::{Json, SecretString};
use clarity_core::model::RoleSet;
use clarity_core::model::{PageRequest, PatientProfile};
use clarity_core::service::{CareTeamAssignment, LoginRequest, NewUser, UserUpdate};
use clarity_core::{Clarity, Config, Error, Result};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};

/// Which audit events.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct AuditFilterArgs {
    /// Events about this patient.
    #[arg(long)]
    pub(crate) patient: Option<uuid::Uuid>,
    /// Events by this user.
    #[arg(long)]
    pub(crate) actor: Option<uuid::Uuid>,
    /// Events of this kind, e.g. `patient.read`.
    #[arg(long)]
    pub(crate) action: Option<String>,
    /// Outcome: 0 (success), 4 (minor failure) or 8 (serious failure).
    #[arg(long, value_parser = ["0", "4", "8"])]
    pub(crate) outcome: Option<String>,
    /// Recorded at or after (RFC 3339).
    #[arg(long)]
    pub(crate) from: Option<chrono::DateTime<chrono::Utc>>,
    /// Recorded before (RFC 3339).
    #[arg(long)]
    pub(crate) to: Option<chrono::DateTime<chrono::Utc>>,
}

/// `clarity demo` settings.
#[derive(Debug, Args, Clone)]
pub(crate) struct DemoArgs {
    /// Synthetic patients to create.
    #[arg(long, default_value_t = 100)]
    pub(crate) patients: usize,
    /// Records per patient.
    #[arg(long, default_value_t = 3)]
    pub(crate) records_per_patient: usize,
    /// Patients created at once (their writes and audit events share commits).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) concurrency: u16,
}

fn filter(args: AuditFilterArgs) -> AuditFilter {
    AuditFilter {
        patient_id: args.patient,
        actor_id: args.actor,
        subtype: args.action,
        outcome: args.outcome,
        from: args.from,
        to: args.to,
    }
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) -> Result<()> {
    let line = serde_json::to_string(value).map_err(|_| Error::internal("encoding"))?;
    println!("{line}");
    Ok(())
}

/// Opens the existing store (never creating one: a mistyped data directory
/// is an error), runs `work`, and writes out the audit trail before returning.
pub(crate) async fn with_clarity<T>(
    config: Config,
    work: impl AsyncFnOnce(&Clarity) -> Result<T>,
) -> Result<T> {
    run_on(Clarity::open_existing(config).await?, work).await
}

/// [`with_clarity`] for the commands that may start a new store (`setup`,
/// `demo`): it is created when missing.
pub(crate) async fn with_new_or_existing<T>(
    config: Config,
    work: impl AsyncFnOnce(&Clarity) -> Result<T>,
) -> Result<T> {
    run_on(Clarity::open(config).await?, work).await
}

async fn run_on<T>(clarity: Clarity, work: impl AsyncFnOnce(&Clarity) -> Result<T>) -> Result<T> {
    let result = work(&clarity).await;
    clarity.shutdown().await;
    result
}

pub(crate) async fn list_users(config: Config) -> Result<()> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let mut page = PageRequest::first(1000);
        loop {
            let users = clarity.list_users(&operator, &page).await?;
            for user in &users.items {
                print_json(user)?;
            }
            match users.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(()),
            }
        }
    })
    .await
}

pub(crate) async fn disable_user(config: Config, id: uuid::Uuid) -> Result<()> {
    with_clarity(config, async |clarity| {
        let update = UserUpdate {
            disabled: Some(true),
            ..UserUpdate::default()
        };
        let user = clarity
            .update_user(&clarity.operator().await?, id, update)
            .await?;
        println!("disabled user {} (its sessions are ended)", user.id);
        Ok(())
    })
    .await
}

pub(crate) async fn reset_password(config: Config, id: uuid::Uuid) -> Result<()> {
    with_clarity(config, async |clarity| {
        let reset = clarity
            .reset_password(&clarity.operator().await?, id)
            .await?;
        println!("reset code: {}", reset.reset_code.expose());
        println!(
            "(the user's password no longer works and its sessions are ended; with this code, \
             valid until {}, the user sets a new one: POST /v1/auth/password-reset)",
            reset
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        Ok(())
    })
    .await
}

pub(crate) async fn reset_mfa(config: Config, id: uuid::Uuid) -> Result<()> {
    with_clarity(config, async |clarity| {
        let user = clarity.reset_mfa(&clarity.operator().await?, id).await?;
        println!(
            "removed the second factor of user {} (its sessions are ended; it may enrol again)",
            user.id
        );
        Ok(())
    })
    .await
}

pub(crate) async fn set_roles(config: Config, id: uuid::Uuid, roles: &[String]) -> Result<()> {
    let roles = RoleSet::parse(roles)?;
    with_clarity(config, async |clarity| {
        let update = UserUpdate {
            roles: Some(roles),
            ..UserUpdate::default()
        };
        let user = clarity
            .update_user(&clarity.operator().await?, id, update)
            .await?;
        println!(
            "user {} now has roles {} (its sessions are ended)",
            user.id,
            user.roles.to_csv()
        );
        Ok(())
    })
    .await
}

pub(crate) async fn audit_verify(config: Config) -> Result<()> {
    with_clarity(config, async |clarity| {
        let reports = clarity.verify_audit(&clarity.operator().await?).await?;
        let mut bad = 0;
        for report in &reports {
            if report.ok {
                println!(
                    "chain {}: ok ({} events, {} checkpoints, last seq {})",
                    report.chain_id, report.events, report.checkpoints, report.last_seq
                );
            } else if report.chain_id.is_nil() {
                bad += 1;
                println!(
                    "store: FAILED: {}",
                    report.problem.as_deref().unwrap_or("unknown")
                );
            } else {
                bad += 1;
                let witnessed = report
                    .witnessed_seq
                    .map(|w| format!(" (last witnessed seq {w})"))
                    .unwrap_or_default();
                println!(
                    "chain {}: FAILED at seq {}{witnessed}: {}",
                    report.chain_id,
                    report.first_bad_seq.unwrap_or_default(),
                    report.problem.as_deref().unwrap_or("unknown")
                );
            }
        }
        if bad > 0 {
            return Err(Error::Integrity);
        }
        println!("{} chains verified", reports.len());
        Ok(())
    })
    .await
}

pub(crate) async fn audit_export(
    config: Config,
    args: AuditFilterArgs,
    output: Option<std::path::PathBuf>,
    limit: usize,
) -> Result<()> {
    with_clarity(config, async |clarity| {
        let ndjson = clarity
            .export_audit_fhir(&clarity.operator().await?, &filter(args), limit)
            .await?;
        match output {
            Some(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| {
                        Error::invalid(format!("cannot create {}: {e}", path.display()))
                    })?;
                file.write_all(ndjson.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| Error::invalid(format!("cannot write {}: {e}", path.display())))?;
                eprintln!(
                    "wrote {} events to {}",
                    ndjson.lines().count(),
                    path.display()
                );
            }
            None => print!("{ndjson}"),
        }
        Ok(())
    })
    .await
}

pub(crate) async fn audit_query(config: Config, args: AuditFilterArgs, limit: usize) -> Result<()> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let filter = filter(args);
        let mut page = PageRequest::first(limit.clamp(1, 1000));
        let mut printed = 0;
        while printed < limit {
            let events = clarity.audit_events(&operator, &filter, &page).await?;
            for event in events.items.iter().take(limit - printed) {
                print_json(event)?;
                printed += 1;
            }
            match events.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        Ok(())
    })
    .await
}

pub(crate) async fn key_status(config: Config) -> Result<()> {
    with_clarity(config, async |clarity| {
        let status = clarity.key_status(&clarity.operator().await?).await?;
        match &status.provider_error {
            None => println!(
                "provider {}: healthy; current KEK version {} (versions held: {:?})",
                status.provider, status.current_kek_version, status.kek_versions
            ),
            Some(why) => println!("provider {}: UNAVAILABLE: {why}", status.provider),
        }
        if let Some(access) = &status.access {
            let expiry = access
                .expires_in_secs
                .map_or("never expires".to_string(), |s| format!("expires in {s} s"));
            println!(
                "  login {}: {}; token {expiry}; {} logins, {} renewals, {} failures",
                access.method,
                if access.healthy { "ok" } else { "FAILING" },
                access.logins,
                access.renewals,
                access.failures
            );
        }
        for usage in &status.usage {
            println!(
                "  KEK version {}: {} data keys",
                usage.kek_version, usage.data_keys
            );
        }
        match status.token_previous_accepted_until {
            Some(until) => println!(
                "token key version {} (version {} accepted until {})",
                status.token_key_version,
                status.token_key_version.saturating_sub(1),
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => println!("token key version {}", status.token_key_version),
        }
        println!(
            "audit key version {} (for chains started from now on)",
            status.audit_key_version
        );
        Ok(())
    })
    .await
}

pub(crate) async fn rotate_keys(config: Config) -> Result<()> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let status = clarity.key_status(&operator).await?;
        let total: u64 = status.usage.iter().map(|u| u.data_keys).sum();
        let bar = ProgressBar::new(total).with_style(
            ProgressStyle::with_template("re-wrapping data keys [{bar:40}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let report = clarity
            .rotate_keys(&operator, &|n| bar.set_position(n))
            .await?;
        bar.finish_and_clear();
        println!(
            "{} KEK version {}: {} data keys re-wrapped",
            if report.new_version {
                "rotated to"
            } else {
                "finished rotating to"
            },
            report.kek_version,
            report.rewrapped
        );
        Ok(())
    })
    .await
}

pub(crate) async fn retire_keys(config: Config, force: bool) -> Result<()> {
    with_clarity(config, async |clarity| {
        let report = clarity
            .retire_keys(&clarity.operator().await?, force)
            .await?;
        if report.retired.is_empty() {
            println!("no KEK version to retire: every old version still wraps data keys (finish the rotation first)");
        } else {
            println!("retired KEK versions {:?}", report.retired);
        }
        for backup in &report.stranded_backups {
            let retired: Vec<i32> = backup
                .kek_versions
                .iter()
                .copied()
                .filter(|v| report.retired.contains(v))
                .collect();
            println!(
                "warning: backup {} ({}) needs retired KEK versions {retired:?}: it restores only with a copy of the keys from before this retirement",
                backup.backup_id, backup.archive
            );
        }
        println!("KEK versions in use: {:?}", report.kek_versions);
        Ok(())
    })
    .await
}

pub(crate) async fn rotate_token_key(config: Config) -> Result<()> {
    with_clarity(config, async |clarity| {
        let report = clarity.rotate_token_key(&clarity.operator().await?).await?;
        println!(
            "access tokens are issued under token key version {}; tokens of the previous version are accepted until {} (restart running servers within that time so that they issue under the new version too)",
            report.version,
            report.previous_accepted_until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        Ok(())
    })
    .await
}

pub(crate) async fn rotate_audit_key(config: Config) -> Result<()> {
    with_clarity(config, async |clarity| {
        let version = clarity.rotate_audit_key(&clarity.operator().await?).await?;
        println!(
            "audit chains started from now on use audit key version {version}; existing chains keep theirs (restart running servers to start chains under it)"
        );
        Ok(())
    })
    .await
}

pub(crate) async fn setup(config: Config) -> Result<()> {
    with_new_or_existing(config, async |clarity| match clarity.issue_setup_code().await? {
        Some(code) => {
            println!("setup code: {}", code.expose());
            println!(
                "(valid for {} minutes: POST it to /v1/setup with the first admin's email and password)",
                clarity.config().auth.setup_code_secs / 60
            );
            Ok(())
        }
        None => Err(Error::invalid(
            "users exist already; setup codes are only for a store without users",
        )),
    })
    .await
}

/// The demo's password for every user it creates; printed, so never for real data.
const DEMO_PASSWORD: &str = "clarity demo passphrase";
const GIVEN: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Tim",
    "Barbara",
    "Edsger",
    "Frances",
];
const FAMILY: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Johnson", "Berners", "Liskov", "Dijkstra", "Allen",
];

pub(crate) async fn demo(config: Config, args: DemoArgs) -> Result<()> {
    with_new_or_existing(config, async |clarity| {
                let operator = clarity.operator().await?;
        // Demo users share a printed password: never beside real accounts.
        if !clarity
            .list_users(&operator, &PageRequest::first(1))
            .await?
            .items
            .is_empty()
        {
            return Err(Error::invalid(
                "demo data goes into a store without users; this one has users",
            ));
        }
        let run = uuid::Uuid::now_v7().simple().to_string();
        let tag = &run[run.len() - 6..];
        let mut logins = Vec::new();
        for role in clarity_core::model::Role::ALL {
            let email = format!("demo-{role}-{tag}@example.org");
            let user = clarity
                .create_user_as_operator(NewUser {
                    email: email.clone(),
                    password: SecretString::new(DEMO_PASSWORD),
                    roles: RoleSet::from_roles([role]),
                    display_name: Some(format!("Demo {role}")),
                    patient_id: None,
                })
                .await?;
            logins.push((role, email, user.id));
        }
        let clinician_email = logins
            .iter()
            .find(|(r, ..)| *r == clarity_core::model::Role::Clinician)
            .map(|(_, e, _)| e.clone())
            .unwrap_or_default();
        let nurse = logins
            .iter()
            .find(|(r, ..)| *r == clarity_core::model::Role::Nurse)
            .map(|(_, _, id)| *id);
        let tokens = clarity
            .login(
                LoginRequest {
                    email: clinician_email,
                    password: SecretString::new(DEMO_PASSWORD),
                    totp: None,
                },
                None,
            )
            .await?;
        let clinician = clarity.authenticate(tokens.access_token.expose()).await?;
        let bar = ProgressBar::new(args.patients as u64).with_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message("patients");
        let one = async |n: usize| -> Result<()> {
            let profile = PatientProfile {
                mrn: format!("DEMO-{tag}-{n:06}"),
                given_name: GIVEN[n % GIVEN.len()].into(),
                family_name: FAMILY[(n / GIVEN.len()) % FAMILY.len()].into(),
                birth_date: format!("{}-{:02}-{:02}", 1930 + n % 90, 1 + n % 12, 1 + n % 28),
                sex: ["female", "male", "other", "unknown"][n % 4].into(),
                email: None,
                phone: None,
                address: None,
                data: None,
            };
            let patient = clarity.create_patient(&clinician, profile).await?;
            if let Some(nurse) = nurse.filter(|_| n.is_multiple_of(2)) {
                let assignment = CareTeamAssignment {
                    user_id: nurse,
                    relationship: Some("primary-nurse".into()),
                    expires_at: None,
                };
                clarity
                    .add_care_team_member(&operator, patient.id, assignment)
                    .await?;
            }
            for r in 0..args.records_per_patient {
                let data = Json(serde_json::json!({
                    "code": "8867-4", "display": "Heart rate", "value": 60 + (n + r) % 40, "unit": "/min"
                }));
                clarity
                    .create_record(&clinician, patient.id, "observation", data)
                    .await?;
            }
            bar.inc(1);
            Ok(())
        };
        // Several patients at once, in this task: their audit events share
        // the writer's commits. The first error stops the fill.
        let mut fill = futures_util::stream::iter(0..args.patients)
            .map(one)
            .buffer_unordered(usize::from(args.concurrency));
        while let Some(done) = fill.next().await {
            done?;
        }
        drop(fill);
        bar.finish_and_clear();
        println!(
            "demo data: {} patients with {} records each; users (password \"{DEMO_PASSWORD}\"):",
            args.patients, args.records_per_patient
        );
        for (role, email, _) in &logins {
            println!("  {role:<10} {email}");
        }
        println!(
            "log in with: curl -X POST http://{}/v1/auth/login -H 'content-type: application/json' -d '{{\"email\":\"<email>\",\"password\":\"{DEMO_PASSWORD}\"}}'",
            clarity.config().listen
        );
        Ok(())
    })
    .await
}
