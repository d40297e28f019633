//! Operator commands of the `clarity` CLI: users, the audit trail, setup and
//! demo data. They act as the local operator (`Clarity::operator`), so every
//! action is decided by the core and audited like any other.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

use clap::Args;
use clarity_core::audit::AuditFilter;
use clarity_core::crypto::{Json, SecretString};
use clarity_core::model::RoleSet;
use clarity_core::model::{Page, PageRequest, PatientProfile};
use clarity_core::service::{CareTeamAssignment, LoginRequest, NewUser, UserUpdate};
use clarity_core::{Clarity, Config, Error, Result};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::output::{Output, secret_text};

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

/// The items of a paged list, at most `limit`, fetched up to 1000 at a time.
pub(crate) async fn collect_pages<T>(
    limit: usize,
    mut fetch: impl AsyncFnMut(&PageRequest) -> Result<Page<T>>,
) -> Result<Vec<T>> {
    let mut page = PageRequest::first(limit.clamp(1, 1000));
    let mut all = Vec::new();
    while all.len() < limit {
        let fetched = fetch(&page).await?;
        let room = limit - all.len();
        all.extend(fetched.items.into_iter().take(room));
        match fetched.next_cursor {
            Some(cursor) => page.cursor = Some(cursor),
            None => break,
        }
    }
    Ok(all)
}

pub(crate) async fn list_users(config: Config) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let users = collect_pages(usize::MAX, async |page| {
            clarity.list_users(&operator, page).await
        })
        .await?;
        Output::lines(&users)
    })
    .await
}

pub(crate) async fn disable_user(config: Config, id: uuid::Uuid) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let update = UserUpdate {
            disabled: Some(true),
            ..UserUpdate::default()
        };
        let user = clarity
            .update_user(&clarity.operator().await?, id, update)
            .await?;
        let text = format!("disabled user {} (its sessions are ended)\n", user.id);
        Output::new(&user, text)
    })
    .await
}

pub(crate) async fn reset_password(config: Config, id: uuid::Uuid) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let reset = clarity
            .reset_password(&clarity.operator().await?, id)
            .await?;
        let text = secret_text(format_args!(
            "reset code: {}\n(the user's password no longer works and its sessions are ended; \
             with this code, valid until {}, the user sets a new one: POST /v1/auth/password-reset)\n",
            reset.reset_code.expose(),
            reset
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
        Output::new(&reset, text)
    })
    .await
}

pub(crate) async fn reset_mfa(config: Config, id: uuid::Uuid) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let user = clarity.reset_mfa(&clarity.operator().await?, id).await?;
        let text = format!(
            "removed the second factor of user {} (its sessions are ended; it may enrol again)\n",
            user.id
        );
        Output::new(&user, text)
    })
    .await
}

pub(crate) async fn set_roles(config: Config, id: uuid::Uuid, roles: &[String]) -> Result<Output> {
    let roles = RoleSet::parse(roles)?;
    with_clarity(config, async |clarity| {
        let update = UserUpdate {
            roles: Some(roles),
            ..UserUpdate::default()
        };
        let user = clarity
            .update_user(&clarity.operator().await?, id, update)
            .await?;
        let text = format!(
            "user {} now has roles {} (its sessions are ended)\n",
            user.id,
            user.roles.to_csv()
        );
        Output::new(&user, text)
    })
    .await
}

pub(crate) async fn audit_verify(config: Config) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let reports = clarity.verify_audit(&clarity.operator().await?).await?;
        let mut text = String::new();
        for report in &reports {
            let problem = report.problem.as_deref().unwrap_or("unknown");
            if report.ok {
                text.push_str(&format!(
                    "chain {}: ok ({} events, {} checkpoints, last seq {})\n",
                    report.chain_id, report.events, report.checkpoints, report.last_seq
                ));
            } else if report.chain_id.is_nil() {
                text.push_str(&format!("store: FAILED: {problem}\n"));
            } else {
                let witnessed = report
                    .witnessed_seq
                    .map(|w| format!(" (last witnessed seq {w})"))
                    .unwrap_or_default();
                text.push_str(&format!(
                    "chain {}: FAILED at seq {}{witnessed}: {problem}\n",
                    report.chain_id,
                    report.first_bad_seq.unwrap_or_default(),
                ));
            }
        }
        let ok = reports.iter().all(|report| report.ok);
        if ok {
            text.push_str(&format!("{} chains verified\n", reports.len()));
        }
        // The shape of `GET /v1/audit/verify`.
        let output = Output::new(&json!({ "ok": ok, "chains": reports }), text)?;
        Ok(if ok {
            output
        } else {
            output.failing(Error::Integrity)
        })
    })
    .await
}

pub(crate) async fn audit_export(
    config: Config,
    args: AuditFilterArgs,
    output: Option<std::path::PathBuf>,
    limit: usize,
) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let ndjson = clarity
            .export_audit_fhir(&clarity.operator().await?, &filter(args), limit)
            .await?;
        let Some(path) = output else {
            return Ok(Output::ndjson(ndjson));
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::invalid(format!("cannot create {}: {e}", path.display())))?;
        file.write_all(ndjson.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::invalid(format!("cannot write {}: {e}", path.display())))?;
        let events = ndjson.lines().count();
        // A notice, not the result: text mode prints nothing on standard output.
        eprintln!("wrote {events} events to {}", path.display());
        let written = json!({ "events": events, "output": path.display().to_string() });
        Output::new(&written, String::new())
    })
    .await
}

pub(crate) async fn audit_query(
    config: Config,
    args: AuditFilterArgs,
    limit: usize,
) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let filter = filter(args);
        let events = collect_pages(limit, async |page| {
            clarity.audit_events(&operator, &filter, page).await
        })
        .await?;
        Output::lines(&events)
    })
    .await
}

pub(crate) async fn key_status(config: Config) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let status = clarity.key_status(&clarity.operator().await?).await?;
        let mut text = match &status.provider_error {
            None => format!(
                "provider {}: healthy; current KEK version {} (versions held: {:?})\n",
                status.provider, status.current_kek_version, status.kek_versions
            ),
            Some(why) => format!("provider {}: UNAVAILABLE: {why}\n", status.provider),
        };
        if let Some(access) = &status.access {
            let expiry = access
                .expires_in_secs
                .map_or("never expires".to_string(), |s| format!("expires in {s} s"));
            text.push_str(&format!(
                "  login {}: {}; token {expiry}; {} logins, {} renewals, {} failures\n",
                access.method,
                if access.healthy { "ok" } else { "FAILING" },
                access.logins,
                access.renewals,
                access.failures
            ));
        }
        for usage in &status.usage {
            text.push_str(&format!(
                "  KEK version {}: {} data keys\n",
                usage.kek_version, usage.data_keys
            ));
        }
        text.push_str(&match status.token_previous_accepted_until {
            Some(until) => format!(
                "token key version {} (version {} accepted until {})\n",
                status.token_key_version,
                status.token_key_version.saturating_sub(1),
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => format!("token key version {}\n", status.token_key_version),
        });
        text.push_str(&format!(
            "audit key version {} (for chains started from now on)\n",
            status.audit_key_version
        ));
        Output::new(&status, text)
    })
    .await
}

pub(crate) async fn rotate_keys(config: Config) -> Result<Output> {
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
        let text = format!(
            "{} KEK version {}: {} data keys re-wrapped\n",
            if report.new_version {
                "rotated to"
            } else {
                "finished rotating to"
            },
            report.kek_version,
            report.rewrapped
        );
        Output::new(&report, text)
    })
    .await
}

pub(crate) async fn retire_keys(config: Config, force: bool) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let report = clarity
            .retire_keys(&clarity.operator().await?, force)
            .await?;
        let mut text = if report.retired.is_empty() {
            "no KEK version to retire: every old version still wraps data keys (finish the rotation first)\n".to_string()
        } else {
            format!("retired KEK versions {:?}\n", report.retired)
        };
        for backup in &report.stranded_backups {
            let retired: Vec<i32> = backup
                .kek_versions
                .iter()
                .copied()
                .filter(|v| report.retired.contains(v))
                .collect();
            text.push_str(&format!(
                "warning: backup {} ({}) needs retired KEK versions {retired:?}: it restores only with a copy of the keys from before this retirement\n",
                backup.backup_id, backup.archive
            ));
        }
        text.push_str(&format!("KEK versions in use: {:?}\n", report.kek_versions));
        Output::new(&report, text)
    })
    .await
}

pub(crate) async fn rotate_token_key(config: Config) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let report = clarity.rotate_token_key(&clarity.operator().await?).await?;
        let text = format!(
            "access tokens are issued under token key version {}; tokens of the previous version are accepted until {} (restart running servers within that time so that they issue under the new version too)\n",
            report.version,
            report.previous_accepted_until
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        Output::new(&report, text)
    })
    .await
}

pub(crate) async fn rotate_audit_key(config: Config) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let version = clarity.rotate_audit_key(&clarity.operator().await?).await?;
        let text = format!(
            "audit chains started from now on use audit key version {version}; existing chains keep theirs (restart running servers to start chains under it)\n"
        );
        Output::new(&json!({ "audit_key_version": version }), text)
    })
    .await
}

pub(crate) async fn setup(config: Config) -> Result<Output> {
    with_new_or_existing(config, async |clarity| match clarity.issue_setup_code().await? {
        Some(code) => {
            let secs = clarity.config().auth.setup_code_secs;
            let text = secret_text(format_args!(
                "setup code: {}\n(valid for {} minutes: POST it to /v1/setup with the first admin's email and password)\n",
                code.expose(),
                secs / 60
            ));
            let issued = SetupCode {
                setup_code: code.expose(),
                valid_for_secs: secs,
            };
            Output::new(&issued, text)
        }
        None => Err(Error::invalid(
            "users exist already; setup codes are only for a store without users",
        )),
    })
    .await
}

/// `clarity setup --format json`. Borrowed, so the code is copied only into
/// the printed (and zeroed) forms.
#[derive(serde::Serialize)]
struct SetupCode<'a> {
    setup_code: &'a str,
    valid_for_secs: u64,
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

pub(crate) async fn demo(config: Config, args: DemoArgs) -> Result<Output> {
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
        let mut text = format!(
            "demo data: {} patients with {} records each; users (password \"{DEMO_PASSWORD}\"):\n",
            args.patients, args.records_per_patient
        );
        for (role, email, _) in &logins {
            text.push_str(&format!("  {role:<10} {email}\n"));
        }
        let login_url = format!("http://{}/v1/auth/login", clarity.config().listen);
        text.push_str(&format!(
            "log in with: curl -X POST {login_url} -H 'content-type: application/json' -d '{{\"email\":\"<email>\",\"password\":\"{DEMO_PASSWORD}\"}}'\n"
        ));
        let users: Vec<_> = logins
            .iter()
            .map(|(role, email, id)| json!({ "role": role.to_string(), "email": email, "id": id }))
            .collect();
        let filled = json!({
            "patients": args.patients,
            "records_per_patient": args.records_per_patient,
            "password": DEMO_PASSWORD,
            "users": users,
            "login_url": login_url,
        });
        Output::new(&filled, text)
    })
    .await
}
