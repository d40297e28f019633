//! The settings named outside the code are the ones [`Config`] accepts:
//! the reference table of `docs/configuration.md`, and every `CLARITY_*`
//! variable that `deploy/` (Compose, Kubernetes, the ECS task of the
//! Terraform module) gives the server.
//!
//! Nothing here is a hand-kept list of settings: the set of keys comes from
//! `Config` itself (its "unknown setting; expected one of: ..." error names
//! every field of a section), and each deployment variable is loaded through
//! `Config::load` exactly as the server would load it. A misspelt, removed or
//! mistyped setting fails here instead of at a customer's first start.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use clarity_core::{Config, Error};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
/// Never a setting: a key that figment reports as unknown.
const PROBE: &str = "zz_not_a_setting";

/// Stand-ins for values a deployment takes from a secret or an operator's
/// input, so that the setting can still be loaded.
const SAMPLES: &[(&str, &str)] = &[
    (
        "CLARITY_STORE_POSTGRES_URL",
        "postgres://clarity:sample@db.example:5432/clarity",
    ),
    (
        "CLARITY_CACHE_REDIS_URL",
        "rediss://:sample@redis.example:6379",
    ),
    ("CLARITY_KEYS_TRANSIT_ADDR", "https://openbao.example:8200"),
    ("CLARITY_AUDIT_SERVER_ADDRESS", "clarity.example"),
];

/// An error raised while reading the settings (a wrong name, type or value
/// syntax), as opposed to one from validating them afterwards (ranges,
/// combinations, files that must exist on the deployment's machine).
fn is_shape_error(message: &str) -> bool {
    [
        "unknown setting",
        "unknown value",
        "expected ",
        "invalid value",
    ]
    .iter()
    .any(|p| message.starts_with(p))
}

/// The names figment lists after "expected one of:".
fn expected_names(err: &Error) -> Vec<String> {
    let Error::Config { message, .. } = err else {
        panic!("not a configuration error: {err}")
    };
    let (_, list) = message
        .split_once("expected one of: ")
        .unwrap_or_else(|| panic!("no list of settings in {message:?}"));
    list.split(", ").map(str::to_string).collect()
}

/// Every key `Config` accepts, dotted (`store.pool_size`), and its sections.
fn config_keys() -> (BTreeSet<String>, Vec<String>) {
    let top = Config::from_toml(&format!("{PROBE} = 1")).expect_err("unknown top-level key");
    let mut keys = BTreeSet::new();
    let mut sections = Vec::new();
    for name in expected_names(&top) {
        match Config::from_toml(&format!("[{name}]\n{PROBE} = 1")) {
            Err(err @ Error::Config { .. })
                if matches!(&err, Error::Config { key, message }
                    if *key == format!("{name}.{PROBE}") && message.starts_with("unknown setting")) =>
            {
                keys.extend(
                    expected_names(&err)
                        .into_iter()
                        .map(|field| format!("{name}.{field}")),
                );
                sections.push(name);
            }
            // A table where a value belongs: a top-level setting.
            _ => {
                keys.insert(name);
            }
        }
    }
    // Longest first, so that no section is mistaken for a prefix of another.
    sections.sort_by_key(|s| std::cmp::Reverse(s.len()));
    (keys, sections)
}

/// `CLARITY_RATE_LIMIT_READ_BURST` → `rate_limit.read_burst`.
fn key_of(var: &str, sections: &[String]) -> String {
    let rest = var
        .strip_prefix("CLARITY_")
        .expect("a CLARITY_ variable")
        .to_ascii_lowercase();
    for section in sections {
        if let Some(field) = rest.strip_prefix(&format!("{section}_")) {
            return format!("{section}.{field}");
        }
    }
    rest
}

/// `store.pool_size` → `CLARITY_STORE_POOL_SIZE`.
fn var_of(key: &str) -> String {
    format!("CLARITY_{}", key.replace('.', "_").to_ascii_uppercase())
}

/// Loads the configuration from exactly these variables, as the server does.
fn load_env(jail: &mut figment::Jail, vars: &BTreeMap<String, String>) -> Result<Config, Error> {
    jail.clear_env();
    for (var, value) in vars {
        jail.set_env(var, value);
    }
    Config::load(None)
}

#[test]
#[allow(
    clippy::result_large_err,
    reason = "figment's Jail API fixes the error type"
)]
fn the_reference_table_documents_every_setting_and_only_those() {
    let text = std::fs::read_to_string(Path::new(ROOT).join("docs/configuration.md"))
        .expect("docs/configuration.md");
    let mut documented = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() > 3 && cells[2].starts_with("`CLARITY_") {
            let key = cells[1].trim_matches('`').to_string();
            let var = cells[2].trim_matches('`').to_string();
            assert!(
                documented.insert(key.clone(), var).is_none(),
                "docs/configuration.md documents {key} twice"
            );
        }
    }
    let (keys, sections) = config_keys();
    let documented_keys: BTreeSet<String> = documented.keys().cloned().collect();
    let missing: Vec<_> = keys.difference(&documented_keys).collect();
    let unknown: Vec<_> = documented_keys.difference(&keys).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "docs/configuration.md is out of date: settings missing from the table {missing:?}; \
         documented settings Config does not have {unknown:?}"
    );
    let mut failures = Vec::new();
    figment::Jail::expect_with(|jail| {
        for (key, var) in &documented {
            if *var != var_of(key) {
                failures.push(format!(
                    "{key}: documented as {var}, the variable is {}",
                    var_of(key)
                ));
                continue;
            }
            if key_of(var, &sections) != *key {
                failures.push(format!(
                    "{var} does not map to {key} (is its section in config::SECTIONS?)"
                ));
                continue;
            }
            // The variable must reach the setting: whatever the value's fate,
            // the name is never unknown.
            let vars = BTreeMap::from([(var.clone(), "1".to_string())]);
            if let Err(Error::Config { key: k, message }) = load_env(jail, &vars)
                && message.starts_with("unknown setting")
            {
                failures.push(format!("{var}: {k}: {message}"));
            }
        }
        Ok(())
    });
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
#[allow(
    clippy::result_large_err,
    reason = "figment's Jail API fixes the error type"
)]
fn deployment_files_set_only_settings_that_config_accepts() {
    let Some(python) = clarity_core::testing::service_var(
        "CLARITY_TEST_DEPLOY_PYTHON",
        "deployment files (PyYAML, python-hcl2)",
    ) else {
        return;
    };
    let output = std::process::Command::new(&python)
        .arg(Path::new(ROOT).join("scripts/check_deploy.py"))
        .arg("env")
        .output()
        .expect("run scripts/check_deploy.py");
    assert!(
        output.status.success(),
        "check_deploy.py env failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entries: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).expect("check_deploy.py prints JSON");
    assert!(entries.len() > 20, "too few settings found: {entries:?}");

    let (_, sections) = config_keys();
    let samples: BTreeMap<&str, &str> = SAMPLES.iter().copied().collect();
    let mut deployments: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut failures = Vec::new();
    for entry in &entries {
        let var = entry["var"].as_str().expect("var").to_string();
        let at = format!(
            "{} ({})",
            entry["file"].as_str().unwrap_or("?"),
            entry["deployment"]
        );
        if var.starts_with("CLARITY_TEST_") {
            failures.push(format!("{at}: {var} belongs to the test suite"));
            continue;
        }
        // The configuration file's path: read by the command line, not a setting.
        if var == "CLARITY_CONFIG" {
            continue;
        }
        // The health check's CA (clarity-probe), which the server ignores.
        if var == "CLARITY_PROBE_CA" {
            continue;
        }
        let value = match entry["value"].as_str() {
            Some(value) => value.to_string(),
            None => match samples.get(var.as_str()) {
                Some(sample) => (*sample).to_string(),
                None => {
                    failures.push(format!(
                        "{at}: {var} comes from a secret or an input; add a sample value to SAMPLES"
                    ));
                    continue;
                }
            },
        };
        let deployment = entry["deployment"]
            .as_str()
            .expect("deployment")
            .to_string();
        let previous = deployments
            .entry(deployment)
            .or_default()
            .insert(var.clone(), value);
        if previous.is_some() {
            failures.push(format!("{at}: {var} is set twice"));
        }
    }

    figment::Jail::expect_with(|jail| {
        for (deployment, vars) in &deployments {
            // Each variable alone: its name is a setting and its value reads.
            for (var, value) in vars {
                let key = key_of(var, &sections);
                let one = BTreeMap::from([(var.clone(), value.clone())]);
                match load_env(jail, &one) {
                    Err(Error::Config { key: k, message })
                        if k == key && is_shape_error(&message) =>
                    {
                        failures.push(format!("{deployment}: {var}={value:?}: {key}: {message}"));
                    }
                    _ => {}
                }
            }
            // All together, as the deployment starts the server.
            match load_env(jail, vars) {
                Ok(_) => {}
                Err(Error::Config { key, message }) => {
                    // A file the deployment mounts does not exist here.
                    let var = var_of(&key);
                    let is_path = vars.get(&var).is_some_and(|v| v.starts_with('/'));
                    if !is_path || is_shape_error(&message) {
                        failures.push(format!(
                            "{deployment}: the settings together fail: {key}: {message}"
                        ));
                    }
                }
                Err(other) => failures.push(format!("{deployment}: {other}")),
            }
        }
        Ok(())
    });
    assert!(failures.is_empty(), "{failures:#?}");
}
