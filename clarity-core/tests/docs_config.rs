//! Every TOML block of the authentication documentation is a configuration
//! Clarity accepts: an operator copying one gets a server that starts
//! (S-ID-1: the `[[auth.oidc]]` examples of docs/authentication.md and the
//! provider pages); the audit page's sinks and disclosure, and each key
//! provider page's settings (S-KEY-4), are accepted too; and so is every
//! TOML block of README.md and docs/*.md (`scripts/check-docs` holds each
//! block to this test).

use std::path::Path;

fn toml_blocks(text: &str) -> Vec<String> {
    fenced_blocks(text, "toml")
        .into_iter()
        .map(|(_, block)| block)
        .collect()
}

/// docs/`page`: its text, and each of its TOML blocks as the configuration
/// Clarity loads and validates from it (a refusal fails the test, naming
/// the page and the block). At least one block.
fn documented_configs(page: &str) -> (String, Vec<(String, clarity_core::Config)>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(page);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
    let configs: Vec<_> = toml_blocks(&text)
        .into_iter()
        .map(|block| {
            let config = clarity_core::Config::from_toml(&block)
                .unwrap_or_else(|e| panic!("{page}: {e}\n{block}"));
            config
                .validate()
                .unwrap_or_else(|e| panic!("{page}: {e}\n{block}"));
            (block, config)
        })
        .collect();
    assert!(!configs.is_empty(), "{page} has no TOML example");
    (text, configs)
}

/// The code blocks of `text` fenced as `lang`, each with the line number of
/// its opening fence. A fence may be indented (a block inside a list item);
/// the block's lines lose that indentation.
fn fenced_blocks(text: &str, lang: &str) -> Vec<(usize, String)> {
    let opening = format!("```{lang}");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, usize, String)> = None;
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start().len();
        match (&mut current, line.trim()) {
            (None, fence) if fence == opening => {
                current = Some((number + 1, indent, String::new()));
            }
            (Some((start, _, block)), "```") => {
                blocks.push((*start, std::mem::take(block)));
                current = None;
            }
            (Some((_, indent, block)), _) => {
                block.push_str(line.get(*indent..).unwrap_or(line.trim_start()));
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Every page with documentation: README.md and docs/*.md, sorted.
fn documentation_pages() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("a docs/ entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// `block` with each certificate or key file it names (the settings
/// validation requires to be readable files) pointed at `present`.
fn with_files_at(block: &str, present: &Path) -> String {
    const FILES: [&str; 4] = ["tls_cert", "tls_key", "postgres_ca_cert", "transit_ca_cert"];
    block
        .lines()
        .map(|line| match line.split_once('=') {
            Some((key, _)) if FILES.contains(&key.trim()) => {
                format!("{} = \"{}\"\n", key.trim(), present.display())
            }
            _ => format!("{line}\n"),
        })
        .collect()
}

// Every TOML block of the documentation is a configuration Clarity loads
// and validates as it stands, except README.md's `[dependencies]` (a
// Cargo.toml, built by scripts/check-rust-api). The certificate and key
// files a block names exist on the operator's machine, not here: each is
// pointed at a scratch file, so that validation judges everything else.
// Each accepted block is printed as `page:line accepted`, which
// scripts/check-docs reads.
#[test]
fn every_documented_toml_block_is_accepted() {
    let scratch = tempfile::NamedTempFile::new().expect("a scratch file");
    let mut accepted = 0;
    for path in documentation_pages() {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        let page = match path.parent().and_then(Path::file_name) {
            Some(dir) if dir == "docs" => {
                format!("docs/{}", path.file_name().expect("a page").display())
            }
            _ => "README.md".to_string(),
        };
        for (line, block) in fenced_blocks(&text, "toml") {
            if page == "README.md" && block.starts_with("[dependencies]") {
                continue;
            }
            // Loading validates too.
            clarity_core::Config::from_toml(&with_files_at(&block, scratch.path()))
                .unwrap_or_else(|e| panic!("{page}:{line}: {e}\n{block}"));
            println!("{page}:{line} accepted");
            accepted += 1;
        }
    }
    assert!(accepted > 0, "no TOML block in the documentation");
}

// S-ID-1
#[test]
fn the_documented_identity_provider_settings_are_accepted() {
    let mut providers = 0;
    for page in ["authentication.md", "oidc-keycloak.md", "oidc-entra.md"] {
        for (_, config) in documented_configs(page).1 {
            providers += config.auth.oidc.len();
        }
    }
    assert!(providers >= 3, "each page shows a provider");
}

// S-AUD-8: the `[[audit.sinks]]` example of docs/audit.md is a
// configuration Clarity accepts, with each kind of sink.
#[test]
fn s_aud_8_the_documented_audit_sinks_are_accepted() {
    let mut kinds = std::collections::BTreeSet::new();
    for (_, config) in documented_configs("audit.md").1 {
        kinds.extend(
            config
                .audit
                .sinks
                .iter()
                .map(|s| s.kind.as_str().to_string()),
        );
    }
    assert!(
        ["syslog", "http", "file"]
            .iter()
            .all(|k| kinds.contains(*k)),
        "{kinds:?}"
    );
}

// S-AUD-9: the disclosure of docs/audit.md is one Clarity records as it
// stands.
#[test]
fn s_aud_9_the_documented_disclosure_is_accepted() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let text = std::fs::read_to_string(docs.join("audit.md")).expect("audit.md");
    let blocks = fenced_blocks(&text, "json");
    assert_eq!(blocks.len(), 1, "audit.md shows one disclosure");
    let disclosure: clarity_core::model::NewDisclosure =
        clarity_core::model::parse_json(&blocks[0].1).expect("a disclosure");
    disclosure
        .details
        .expose()
        .validate()
        .expect("valid details");
    assert!(disclosure.disclosed_at.is_some());
}

// S-KEY-4: each token shown on docs/keys-pkcs11.md (SoftHSM2, YubiHSM 2,
// AWS CloudHSM, Thales Luna) is a configuration Clarity accepts as it stands.
#[test]
fn s_key_4_the_documented_pkcs11_tokens_are_accepted() {
    use clarity_core::config::KeyProviderKind;
    let mut modules = Vec::new();
    for (block, config) in documented_configs("keys-pkcs11.md").1 {
        assert_eq!(config.keys.provider, KeyProviderKind::Pkcs11, "{block}");
        let module = config.keys.pkcs11_module.expect("pkcs11_module");
        modules.push(
            module
                .file_name()
                .expect("a file")
                .to_string_lossy()
                .into_owned(),
        );
    }
    assert_eq!(
        modules,
        [
            "libsofthsm2.so",
            "yubihsm_pkcs11.so",
            "libcloudhsm_pkcs11.so",
            "libCryptoki2_64.so"
        ]
    );
}

// S-KEY-4: each login method shown on docs/keys-openbao.md is a
// configuration Clarity accepts as it stands.
#[test]
fn s_key_4_the_documented_transit_logins_are_accepted() {
    use clarity_core::config::TransitAuthMethod;
    let methods: Vec<_> = documented_configs("keys-openbao.md")
        .1
        .into_iter()
        .map(|(_, config)| config.keys.transit_auth)
        .collect();
    assert_eq!(
        methods,
        [
            TransitAuthMethod::Token,
            TransitAuthMethod::Approle,
            TransitAuthMethod::Kubernetes
        ]
    );
}

// S-KEY-4: each configuration shown on docs/keys-kms.md is one Clarity
// accepts as it stands, and the IAM policy shown there grants exactly the
// KMS actions the provider calls.
#[test]
fn s_key_4_the_documented_kms_configuration_and_policy_are_accepted() {
    use clarity_core::config::KeyProviderKind;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (text, configs) = documented_configs("keys-kms.md");
    assert_eq!(configs.len(), 2, "keys-kms.md shows two configurations");
    for (block, config) in &configs {
        assert_eq!(config.keys.provider, KeyProviderKind::Kms, "{block}");
        assert!(config.keys.kms_key_id.is_some(), "{block}");
    }

    let policies = fenced_blocks(&text, "json");
    assert_eq!(policies.len(), 1, "keys-kms.md shows one IAM policy");
    let policy: serde_json::Value =
        serde_json::from_str(&policies[0].1).expect("the policy parses");
    assert_eq!(policy["Version"], "2012-10-17");
    let mut granted = std::collections::BTreeSet::new();
    for statement in policy["Statement"].as_array().expect("statements") {
        assert_eq!(statement["Effect"], "Allow");
        match &statement["Action"] {
            serde_json::Value::String(action) => {
                granted.insert(action.clone());
            }
            serde_json::Value::Array(actions) => {
                granted.extend(
                    actions
                        .iter()
                        .map(|a| a.as_str().expect("action").to_string()),
                );
            }
            other => panic!("an action list: {other}"),
        }
    }
    // The SDK operations the provider's source calls (the test helpers
    // after `#[cfg(feature = "testing")]` excepted), and their IAM actions.
    let source = std::fs::read_to_string(root.join("src/crypto/kms/mod.rs")).expect("source");
    let provider = source
        .split("#[cfg(feature = \"testing\")]")
        .next()
        .expect("source");
    let operations = [
        ("encrypt", &["kms:Encrypt"][..]),
        ("decrypt", &["kms:Decrypt"]),
        ("re_encrypt", &["kms:ReEncryptFrom", "kms:ReEncryptTo"]),
        ("describe_key", &["kms:DescribeKey"]),
        ("generate_data_key", &["kms:GenerateDataKey"]),
        ("rotate_key_on_demand", &["kms:RotateKeyOnDemand"]),
    ];
    let called: std::collections::BTreeSet<String> = operations
        .iter()
        .filter(|(op, _)| provider.contains(&format!(".{op}()")))
        .flat_map(|(_, actions)| actions.iter().map(|a| a.to_string()))
        .collect();
    assert_eq!(granted, called, "the policy grants what the provider calls");
}
