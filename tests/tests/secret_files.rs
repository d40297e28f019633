//! The secret-file rule as deployments mount secrets (S-KEY-1, S-KEY-4):
//! the real `clarity` binary, running as the container user (uid 65532, as
//! the image does), reads a keyring laid out the way the Compose bootstrap
//! writes it and the way Kubernetes mounts a secret volume (`keys status`,
//! and `serve` comes up listening on each), and refuses the layouts that
//! are wider or unreadable, saying which file and why.
//!
//! Laying files out with other owners and switching user needs root; CI
//! runs as root. Elsewhere the test is skipped with a line that says so.

use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

use clarity_tests::server_binary;

/// The container user of the image (distroless `nonroot`).
const SERVICE: u32 = 65_532;
/// A pod's `fsGroup`.
const FS_GROUP: u32 = 2_000;
/// A host user.
const HOST_USER: u32 = 1_000;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Runs `clarity ARGS` as the service user, in `groups` besides its own,
/// with a keyring at `keyring` when given; returns success and the output.
fn run_as_service(
    clarity: &Path,
    groups: &[u32],
    args: &[&str],
    keyring: Option<&Path>,
) -> (bool, String) {
    let groups = std::iter::once(SERVICE)
        .chain(groups.iter().copied())
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid", &SERVICE.to_string()])
        .args(["--regid", &SERVICE.to_string()])
        .args(["--groups", &groups, "--"])
        .arg(clarity)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin");
    if let Some(keyring) = keyring {
        command.env("CLARITY_KEYS_KEYRING_PATH", keyring);
    }
    let output = command.output().expect("setpriv runs");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// Starts `clarity serve` as the service user (in `groups` too) with the
/// keyring at `keyring`; whether it came up listening (then it is stopped)
/// and what it printed. Bounded: 30 s.
fn serve_as_service(clarity: &Path, groups: &[u32], data: &str, keyring: &Path) -> (bool, String) {
    use std::io::{BufRead, BufReader};
    let groups = std::iter::once(SERVICE)
        .chain(groups.iter().copied())
        .map(|g| g.to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut child = Command::new("setpriv")
        .args(["--reuid", &SERVICE.to_string()])
        .args(["--regid", &SERVICE.to_string()])
        .args(["--groups", &groups, "--"])
        .arg(clarity)
        .args(["--data-dir", data, "serve", "--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CLARITY_KEYS_KEYRING_PATH", keyring)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("setpriv runs");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let listening = line.contains("Listening on");
            if tx.send(line).is_err() || listening {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut printed = String::new();
    let mut listening = false;
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                listening = line.contains("Listening on");
                printed.push_str(&line);
                printed.push('\n');
                if listening {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    printed.push_str(&String::from_utf8_lossy(&output.stderr));
    (listening, printed)
}

/// A copy of `keyring` at `path` with `mode`, `owner` and `group`.
fn place(keyring: &[u8], path: &Path, mode: u32, owner: u32, group: u32) -> PathBuf {
    std::fs::write(path, keyring).expect("write");
    chown(path, Some(owner), Some(group)).expect("chown");
    chmod(path, mode);
    path.to_path_buf()
}

// S-KEY-1, S-KEY-4
#[test]
fn secrets_are_read_as_each_platform_mounts_them() {
    if !is_root() {
        assert!(!in_ci(), "CI runs the secret-file test as root");
        eprintln!("SKIPPED: the secret-file test needs root (to lay out owners and switch user)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    chmod(root, 0o755);
    // The binary where the service user may run it.
    let clarity = root.join("clarity");
    std::fs::copy(server_binary(), &clarity).expect("copy the binary");
    chmod(&clarity, 0o755);
    let data = root.join("data");
    std::fs::create_dir(&data).expect("data dir");
    chown(&data, Some(SERVICE), Some(SERVICE)).expect("chown data");
    chmod(&data, 0o700);
    let data_arg = data.to_str().expect("utf-8");

    // The service user makes its store and keyring, as the image's first start does.
    let (ok, out) = run_as_service(&clarity, &[], &["--data-dir", data_arg, "setup"], None);
    assert!(ok, "{out}");
    let keyring = std::fs::read(data.join("keyring.json")).expect("keyring");
    std::fs::remove_file(data.join("keyring.json")).expect("move it out");
    let secrets = root.join("secrets");
    std::fs::create_dir(&secrets).expect("secrets dir");
    chmod(&secrets, 0o755);

    let status_with = |path: &Path, groups: &[u32]| {
        run_as_service(
            &clarity,
            groups,
            &["--data-dir", data_arg, "keys", "status"],
            Some(path),
        )
    };

    // Compose: the bootstrap service writes the secret for the container
    // user, 0400 (or 0600), in a volume mounted into the container.
    let compose = place(
        &keyring,
        &secrets.join("compose-keyring.json"),
        0o400,
        SERVICE,
        SERVICE,
    );
    let (ok, out) = status_with(&compose, &[]);
    assert!(
        ok && out.contains("provider local: healthy"),
        "Compose layout: {out}"
    );

    // Kubernetes: a secret volume with defaultMode 0400 and fsGroup 2000
    // gives 0440 root:2000, behind the kubelet's `..data` symbolic links.
    let k8s = secrets.join("k8s");
    let stamped = k8s.join("..2026_12_07_00_00_00.000000000");
    std::fs::create_dir_all(&stamped).expect("k8s dirs");
    chmod(&k8s, 0o1777);
    chmod(&stamped, 0o755);
    place(&keyring, &stamped.join("keyring.json"), 0o440, 0, FS_GROUP);
    symlink("..2026_12_07_00_00_00.000000000", k8s.join("..data")).expect("..data");
    symlink("..data/keyring.json", k8s.join("keyring.json")).expect("link");
    let (ok, out) = status_with(&k8s.join("keyring.json"), &[FS_GROUP]);
    assert!(
        ok && out.contains("provider local: healthy"),
        "Kubernetes layout: {out}"
    );
    // The server itself starts on both layouts.
    for (layout, keyring, groups) in [
        ("Compose", compose.as_path(), vec![]),
        (
            "Kubernetes",
            k8s.join("keyring.json").as_path(),
            vec![FS_GROUP],
        ),
    ] {
        let (listening, out) = serve_as_service(&clarity, &groups, data_arg, keyring);
        assert!(listening, "clarity serve on the {layout} layout: {out}");
    }

    // The same mount in a pod without that fsGroup: refused, with the reason.
    let (ok, out) = status_with(&k8s.join("keyring.json"), &[]);
    assert!(!ok && out.contains("Clarity does not run in"), "{out}");

    let parsed: serde_json::Value = serde_json::from_slice(&keyring).expect("keyring JSON");
    let root_secret = parsed["root"]
        .as_str()
        .expect("the keyring holds a root secret");
    let refused = [
        // Readable by everyone (what the Compose bootstrap once wrote).
        ("wide.json", 0o644, SERVICE, "wide.json has mode 644"),
        // A host user's private file, bind-mounted as it is.
        ("host.json", 0o600, HOST_USER, "belongs to uid 1000"),
        // The service user's own file, readable by its group too.
        ("shared.json", 0o640, SERVICE, "chmod 600"),
    ];
    for (name, mode, owner, reason) in refused {
        let path = place(&keyring, &secrets.join(name), mode, owner, owner);
        let (ok, out) = status_with(&path, &[]);
        assert!(!ok && out.contains(reason), "{name}: {out}");
        // The message names the file, never its contents.
        assert!(!out.contains(root_secret), "{out}");
    }
}
