//! The `clarity` command line (clap).

use std::net::SocketAddr;
use std::path::PathBuf;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use clarity_core::Config;

pub(crate) use crate::ops::{AuditFilterArgs, DemoArgs};
use crate::output::{Format, Output};

/// `clarity --version`: the package version and the commit it was built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ")"
);

/// Clarity: encrypted, audited storage of patient data.
///
/// With no command, `clarity` runs `serve`.
#[derive(Debug, Parser)]
#[command(name = "clarity", version = VERSION, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Options every command accepts.
#[derive(Debug, Args)]
struct GlobalArgs {
    /// Configuration file (TOML). Settings in `CLARITY_*` environment variables override it.
    /// Without one, the first of ./clarity.toml, $XDG_CONFIG_HOME/clarity/clarity.toml
    /// (~/.config/...) and /etc/clarity/clarity.toml that exists is read.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "CLARITY_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,
    /// Directory for the SQLite database and the local keyring [default: ./clarity-data].
    #[arg(long, global = true, env = "CLARITY_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How a command prints its result: text to read, or one JSON document
    /// on standard output (an error: `{"error": {"code", "message"}}` on
    /// standard error). `serve`, `completions` and `man` print the same in
    /// both.
    #[arg(
        long,
        global = true,
        env = "CLARITY_FORMAT",
        value_enum,
        default_value_t = Format::Text
    )]
    format: Format,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP server (the default command).
    Serve(ServeArgs),
    /// Apply pending database migrations, then exit.
    Migrate,
    /// Manage users directly (an operator with access to the data directory and keys).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage service accounts: machines that obtain tokens with a client secret.
    #[command(subcommand)]
    ServiceAccount(ServiceAccountCommand),
    /// Query, verify and export the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Disclosures of a patient's information to outside recipients, and
    /// their accounting (45 CFR 164.528).
    #[command(subcommand)]
    Disclosure(DisclosureCommand),
    /// Key-encryption keys: status, rotation and retirement.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Write an encrypted, signed backup of the whole store (or verify one: `backup verify FILE`).
    Backup(BackupArgs),
    /// Restore a backup into an empty store, after verifying its manifest and audit chains.
    Restore(RestoreArgs),
    /// Print a new one-time setup code for the first admin (only while there are no users).
    Setup,
    /// Fill the store with synthetic users of every role, patients, care teams and records.
    Demo(DemoArgs),
    /// Print a shell completion script: `clarity completions bash > /etc/bash_completion.d/clarity`.
    Completions {
        /// The shell: bash, elvish, fish, powershell or zsh.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `clarity man > /usr/local/share/man/man1/clarity.1`.
    Man,
}

#[derive(Debug, Subcommand)]
enum ServiceAccountCommand {
    /// Create a service account; prints its client id and a client secret, once.
    ///
    /// Example: `clarity service-account create --name nightly-export --role auditor`
    Create {
        /// Unique name: a-z, 0-9, '.', '_' and '-'.
        #[arg(long)]
        name: String,
        /// A role: admin, clinician, nurse, researcher or auditor. Repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Give a service account a new client secret; prints it, once.
    Rotate {
        /// The service account's id (its client id).
        #[arg(long)]
        id: uuid::Uuid,
        /// How long the previous secret keeps working, in seconds (default 86400; 0 ends it now).
        #[arg(long)]
        overlap_secs: Option<u64>,
    },
    /// Delete a service account: its secrets are destroyed and its sessions end.
    Delete {
        /// The service account's id (its client id).
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Show KEK versions and how many data keys each wraps.
    Status,
    /// Make a new KEK version current and re-wrap every data key (resumes an interrupted rotation).
    Rotate,
    /// Retire the KEK versions that no longer wrap anything (after a finished rotation).
    ///
    /// Versions that recorded backups still need are kept: the command
    /// refuses and names those backups, unless `--force` is given.
    Retire {
        /// Retire even versions that recorded backups need; keep a copy of
        /// the keys from before the retirement with those backups.
        #[arg(long)]
        force: bool,
    },
    /// Rotate the access-token key; tokens of the previous key stay valid until they expire.
    RotateToken,
    /// Rotate the audit key: chains started from now on use the new version; all keep verifying.
    RotateAudit,
}

/// `clarity backup` arguments.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// Archive to write (must not exist) [default: ./clarity-backup-<UTC time>.cbak].
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Check an archive against its signed manifest with the configured keys; changes nothing.
    Verify {
        /// The archive.
        archive: PathBuf,
    },
}

/// `clarity restore` arguments.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The archive to restore.
    pub(crate) archive: PathBuf,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify every audit chain; exits non-zero if any chain fails.
    Verify,
    /// Export events as FHIR R4 AuditEvent NDJSON (with `--format json`, one
    /// array of them; with --output, a summary of what was written).
    Export {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Write to this file (mode 0600) instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<std::path::PathBuf>,
        /// Export at most this many events.
        #[arg(long, default_value_t = 1_000_000)]
        limit: usize,
    },
    /// Print matching events, one JSON object per line (with `--format json`,
    /// one array), oldest first.
    Query {
        #[command(flatten)]
        filter: AuditFilterArgs,
        /// Print at most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Print who accessed a patient's record, one JSON object per line (with
    /// `--format json`, one array), oldest first (what the patient sees at
    /// `GET /v1/patients/{id}/access-log`).
    AccessLog {
        /// The patient's id.
        patient: uuid::Uuid,
        /// Accesses recorded at or after (RFC 3339).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Accesses recorded before (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// Print at most this many entries.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum DisclosureCommand {
    /// Record a disclosure, described by a JSON object on standard input:
    /// {"recipient", "recipient_address"?, "purpose", "description",
    /// "legal_basis", "disclosed_at"?}. Prints the recorded disclosure.
    Record {
        /// The patient's id.
        patient: uuid::Uuid,
    },
    /// Print a patient's disclosures, one JSON object per line (with
    /// `--format json`, one array).
    List {
        /// The patient's id.
        patient: uuid::Uuid,
    },
    /// Print the accounting of a patient's disclosures over the last six
    /// years (or from --from), as text to print or (`--format json`) as JSON.
    Accounting {
        /// The patient's id.
        patient: uuid::Uuid,
        /// The start of the period (RFC 3339), at most six years back.
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user. The password is asked for twice at a prompt that does
    /// not echo; in scripts, it is the first line of standard input or of
    /// --password-file.
    ///
    /// Example: `printf '%s\n' "$PASSWORD" | clarity user create --email admin@example.org --role admin`
    Create {
        /// Login email.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of this file (readable by its owner only).
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
        /// A role: admin, clinician, nurse, patient, researcher or auditor. Repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List users, one JSON object per line (with `--format json`, one array).
    List,
    /// Disable a user: ends its sessions; it cannot log in.
    Disable {
        /// The user's id.
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Reset a user's password: the old one stops working, its sessions end,
    /// and a one-time code is printed with which the user sets a new one.
    ResetPassword {
        /// The user's id.
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Remove a user's second factor (a lost authenticator): its sessions end.
    ResetMfa {
        /// The user's id.
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Replace a user's roles: ends its sessions.
    SetRoles {
        /// The user's id.
        #[arg(long)]
        id: uuid::Uuid,
        /// A role; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
}

#[derive(Debug, Args, Default)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "CLARITY_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

/// The `clarity` program: parses the command line, runs the command, and
/// prints its error in the format asked for (`--format`); the exit code is
/// 0, 1 for a failed command, or clap's (2) for a command line that does
/// not parse.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return crate::output::usage_error(&err, format_of_unparsed()),
    };
    let format = cli.global.format;
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            crate::output::print_error(format, err.kind().as_str(), &err.to_string());
            ExitCode::FAILURE
        }
    }
}

/// The `--format` of a command line that does not parse, read from the
/// arguments as they are (clap gives no matches for a command line it
/// refuses): the last `--format json`/`--format=json` before `--`, else
/// `CLARITY_FORMAT`.
fn format_of_unparsed() -> Format {
    let mut format = std::env::var("CLARITY_FORMAT").ok();
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--") => break,
            Some("--format") => format = args.next().and_then(|v| v.into_string().ok()),
            Some(arg) => {
                if let Some(value) = arg.strip_prefix("--format=") {
                    format = Some(value.to_string());
                }
            }
            None => {}
        }
    }
    match format.as_deref() {
        Some("json") => Format::Json,
        _ => Format::Text,
    }
}

/// Runs the parsed command line and prints its result ([`Output`]).
///
/// # Errors
/// Whatever stops the command: bad configuration, an unreachable database, a
/// missing keyring. The message is meant for the operator.
pub fn run(cli: Cli) -> clarity_core::Result<()> {
    // Commands about the command line itself touch no configuration.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut command, "clarity", &mut std::io::stdout());
            return Ok(());
        }
        Some(Command::Man) => {
            let page = clap_mangen::Man::new(<Cli as clap::CommandFactory>::command());
            return page.render(&mut std::io::stdout()).map_err(|e| {
                clarity_core::Error::internal(format!("cannot write the manual page: {e}"))
            });
        }
        _ => {}
    }
    let format = cli.global.format;
    let config_file = cli.global.config.clone().or_else(discover_config);
    let mut config = Config::load(config_file.as_deref())?;
    if let Some(dir) = cli.global.data_dir {
        config.data_dir = dir;
    }
    let command = cli.command.unwrap_or(Command::Serve(ServeArgs::default()));
    if let Command::Serve(ServeArgs {
        listen: Some(listen),
    }) = &command
    {
        config.listen = *listen;
    }
    config.validate()?;
    if !matches!(command, Command::Serve(_)) {
        // Audit sinks run in long-lived processes: a one-off command's
        // events are streamed by the server, which finds its chain in the
        // store (S-AUD-8).
        config.audit.sinks.clear();
    }
    // Held to the end: dropping it writes the log lines still queued.
    let _log_thread = crate::logging::init(&config.log)?;
    if let Some(file) = &config_file {
        tracing::info!(file = %file.display(), "configuration file");
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| clarity_core::Error::internal(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(async move {
        let output = match command {
            Command::Serve(_) => crate::serve::serve(config)
                .await
                .map(|()| Output::nothing()),
            Command::Migrate => migrate(&config).await,
            Command::User(UserCommand::Create {
                email,
                password_file,
                roles,
                display_name,
            }) => create_user(config, email, password_file, &roles, display_name).await,
            Command::User(UserCommand::List) => crate::ops::list_users(config).await,
            Command::User(UserCommand::Disable { id }) => {
                crate::ops::disable_user(config, id).await
            }
            Command::User(UserCommand::ResetPassword { id }) => {
                crate::ops::reset_password(config, id).await
            }
            Command::User(UserCommand::ResetMfa { id }) => crate::ops::reset_mfa(config, id).await,
            Command::User(UserCommand::SetRoles { id, roles }) => {
                crate::ops::set_roles(config, id, &roles).await
            }
            Command::ServiceAccount(ServiceAccountCommand::Create {
                name,
                roles,
                display_name,
            }) => crate::service_accounts::create(config, name, &roles, display_name).await,
            Command::ServiceAccount(ServiceAccountCommand::Rotate { id, overlap_secs }) => {
                crate::service_accounts::rotate(config, id, overlap_secs).await
            }
            Command::ServiceAccount(ServiceAccountCommand::Delete { id }) => {
                crate::service_accounts::delete(config, id).await
            }
            Command::Audit(AuditCommand::Verify) => crate::ops::audit_verify(config).await,
            Command::Audit(AuditCommand::Export {
                filter,
                output,
                limit,
            }) => crate::ops::audit_export(config, filter, output, limit).await,
            Command::Audit(AuditCommand::Query { filter, limit }) => {
                crate::ops::audit_query(config, filter, limit).await
            }
            Command::Audit(AuditCommand::AccessLog {
                patient,
                from,
                to,
                limit,
            }) => {
                let range = clarity_core::service::AccessLogRange { from, to };
                crate::disclosures::access_log(config, patient, range, limit).await
            }
            Command::Disclosure(DisclosureCommand::Record { patient }) => {
                crate::disclosures::record(config, patient).await
            }
            Command::Disclosure(DisclosureCommand::List { patient }) => {
                crate::disclosures::list(config, patient).await
            }
            Command::Disclosure(DisclosureCommand::Accounting { patient, from }) => {
                crate::disclosures::accounting(config, patient, from).await
            }
            Command::Setup => crate::ops::setup(config).await,
            Command::Keys(KeysCommand::Status) => crate::ops::key_status(config).await,
            Command::Keys(KeysCommand::Rotate) => crate::ops::rotate_keys(config).await,
            Command::Keys(KeysCommand::Retire { force }) => {
                crate::ops::retire_keys(config, force).await
            }
            Command::Keys(KeysCommand::RotateToken) => crate::ops::rotate_token_key(config).await,
            Command::Keys(KeysCommand::RotateAudit) => crate::ops::rotate_audit_key(config).await,
            Command::Backup(BackupArgs {
                command: Some(BackupCommand::Verify { archive }),
                ..
            }) => crate::backup::verify(config, &archive).await,
            Command::Backup(args) => crate::backup::backup(config, args.output).await,
            Command::Restore(args) => crate::backup::restore(config, &args.archive).await,
            Command::Demo(args) => crate::ops::demo(config, args).await,
            Command::Completions { .. } | Command::Man => Ok(Output::nothing()),
        }?;
        output.print(format)
    })
}

/// The configuration file when none is named: the first that exists of
/// `./clarity.toml`, `$XDG_CONFIG_HOME/clarity/clarity.toml` (or
/// `~/.config/clarity/clarity.toml`) and `/etc/clarity/clarity.toml`.
fn discover_config() -> Option<PathBuf> {
    let home_config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")));
    let mut candidates = vec![PathBuf::from("clarity.toml")];
    candidates.extend(home_config.map(|dir| dir.join("clarity").join("clarity.toml")));
    candidates.push(PathBuf::from("/etc/clarity/clarity.toml"));
    candidates.into_iter().find(|path| path.is_file())
}

async fn create_user(
    config: Config,
    email: String,
    password_file: Option<PathBuf>,
    roles: &[String],
    display_name: Option<String>,
) -> clarity_core::Result<Output> {
    // A bad role or store is refused before anyone types a password.
    let roles = clarity_core::model::RoleSet::parse(roles)?;
    let clarity = clarity_core::Clarity::open(config).await?;
    let password = crate::password_input::new_password(&email, password_file.as_deref())?;
    let user = clarity
        .create_user_as_operator(clarity_core::service::NewUser {
            email,
            password,
            roles,
            display_name,
            patient_id: None,
        })
        .await?;
    let text = format!(
        "created user {} with roles {}\n",
        user.id,
        user.roles.to_csv()
    );
    Output::new(&user, text)
}

async fn migrate(config: &Config) -> clarity_core::Result<Output> {
    let (backend, version) = clarity_core::service::migrate(config).await?;
    Output::new(
        &serde_json::json!({ "backend": backend, "schema_version": version }),
        format!("{backend} schema is at version {version}: nothing pending\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_command_means_serve() {
        let cli = Cli::try_parse_from(["clarity", "--data-dir", "/tmp/x"]).expect("parses");
        assert!(cli.command.is_none());
        assert_eq!(cli.global.data_dir, Some(PathBuf::from("/tmp/x")));
        let cli =
            Cli::try_parse_from(["clarity", "serve", "--listen", "127.0.0.1:0"]).expect("parses");
        assert!(matches!(
            cli.command,
            Some(Command::Serve(ServeArgs { listen: Some(_) }))
        ));
        assert!(Cli::try_parse_from(["clarity", "serve", "--listen", "nowhere"]).is_err());
    }
}
