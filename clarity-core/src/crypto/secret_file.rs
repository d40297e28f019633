//! The one rule for every file that holds a secret (the keyring, the transit
//! token, an AppRole secret id, a service-account token, the server's TLS
//! key), S-KEY-1:
//!
//! - no access at all for other users (no `o` bits), and no write access for
//!   the group;
//! - owned by the user Clarity runs as and readable by that user only
//!   (`0600` or `0400`), as the Compose bootstrap writes them; or
//! - owned by root and readable by a group Clarity runs in (the pod's
//!   `fsGroup`), as Kubernetes mounts secret and projected volumes with
//!   `defaultMode: 0400` (they arrive as `0440 root:<fsGroup>`).
//!
//! Anything wider is refused (`0644`, `0640` of Clarity's own user, a
//! file of another user, a root file for a stranger's group), with a
//! message naming the file and what to change, never its contents.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Whom this process runs as: its effective user and every group it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunsAs {
    /// Effective user id.
    pub(crate) uid: u32,
    /// Effective and supplementary group ids.
    pub(crate) groups: Vec<u32>,
}

impl RunsAs {
    /// This process.
    pub(crate) fn current() -> RunsAs {
        let mut groups: Vec<u32> = rustix::process::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.as_raw())
            .collect();
        groups.push(rustix::process::getegid().as_raw());
        RunsAs {
            uid: rustix::process::geteuid().as_raw(),
            groups,
        }
    }
}

/// What is wrong with a secret file's owner or mode, if anything.
pub(crate) fn judge(mode: u32, owner: u32, group: u32, me: &RunsAs) -> Option<String> {
    let mode = mode & 0o777;
    if mode & 0o007 != 0 {
        return Some(format!(
            "has mode {mode:03o}: other users may use it; a secret file must not be readable by them (chmod 600, or 440 for a group mount)"
        ));
    }
    if mode & 0o020 != 0 {
        return Some(format!(
            "has mode {mode:03o}: its group may write it (chmod g-w)"
        ));
    }
    if owner == me.uid {
        if mode & 0o070 != 0 {
            return Some(format!(
                "has mode {mode:03o}: a secret file of Clarity's own user must be readable by that user only (chmod 600)"
            ));
        }
        if mode & 0o400 == 0 {
            return Some(format!(
                "has mode {mode:03o}: Clarity cannot read it (chmod 600)"
            ));
        }
        return None;
    }
    if owner != 0 {
        return Some(format!(
            "belongs to uid {owner}, but Clarity runs as uid {}: a secret file must belong to that user (chown {} and chmod 600) or be a root-owned mount readable by a group Clarity runs in (440)",
            me.uid, me.uid
        ));
    }
    // Root-owned: a Kubernetes secret or projected volume, read through the
    // pod's fsGroup.
    if mode & 0o040 == 0 {
        return Some(format!(
            "has mode {mode:03o} and belongs to root: Clarity (uid {}) cannot read it (a root-owned mount needs mode 440 and a group Clarity runs in)",
            me.uid
        ));
    }
    if !me.groups.contains(&group) {
        return Some(format!(
            "has mode {mode:03o} for group {group}, which Clarity does not run in: a root-owned secret must be readable by a group Clarity runs in (the pod's fsGroup)"
        ));
    }
    None
}

/// Checks `meta` of the file `path`, named by `setting`, against the rule.
///
/// # Errors
/// [`Error::Key`] naming the setting and the file.
pub(crate) fn check(setting: &str, path: &Path, meta: &Metadata) -> Result<()> {
    match judge(meta.mode(), meta.uid(), meta.gid(), &RunsAs::current()) {
        None => Ok(()),
        Some(why) => Err(Error::key(format!("{setting} {} {why}", path.display()))),
    }
}

/// Reads the secret file `path` (following symbolic links, as Kubernetes'
/// volumes use them) after checking it against the rule.
///
/// # Errors
/// [`Error::Key`] naming `setting` and the file when it is missing,
/// unreadable or fails the rule; never its contents.
pub fn read_secret_file(setting: &str, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let unreadable =
        |e: std::io::Error| Error::key(format!("cannot read {setting} {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Error::key(format!(
            "{setting} {} is not a file",
            path.display()
        )));
    }
    check(setting, path, &meta)?;
    std::fs::read(path).map(Zeroizing::new).map_err(unreadable)
}

/// Reads a secret file that holds one token (a line of printable text, no
/// spaces), trimmed.
///
/// # Errors
/// As [`read_secret_file`]; [`Error::Key`] when it does not hold one token.
pub fn read_token_file(setting: &str, path: &Path) -> Result<super::SecretString> {
    let bytes = read_secret_file(setting, path)?;
    let not_one = || {
        Error::key(format!(
            "{setting} {} does not hold one token",
            path.display()
        ))
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| not_one())?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_control() || c == ' ') {
        return Err(not_one());
    }
    Ok(super::SecretString::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICE: u32 = 65_532;

    fn service() -> RunsAs {
        RunsAs {
            uid: SERVICE,
            groups: vec![SERVICE, 2000],
        }
    }

    // S-KEY-1: the layouts each platform mounts for the container user are
    // accepted, and nothing wider.
    #[test]
    fn the_mounted_layouts_pass_and_wider_ones_do_not() {
        let me = service();
        // Written by the Compose bootstrap for the service user.
        assert_eq!(judge(0o600, SERVICE, SERVICE, &me), None);
        assert_eq!(judge(0o400, SERVICE, SERVICE, &me), None);
        // Kubernetes: defaultMode 0400 with fsGroup 2000 gives 0440 root:2000.
        assert_eq!(judge(0o440, 0, 2000, &me), None);

        let refused = |mode, owner, group| {
            judge(mode, owner, group, &me).unwrap_or_else(|| {
                panic!("mode {mode:o} owner {owner} group {group} must be refused")
            })
        };
        assert!(refused(0o644, SERVICE, SERVICE).contains("other users"));
        assert!(refused(0o604, 0, 2000).contains("other users"));
        assert!(refused(0o660, SERVICE, SERVICE).contains("g-w"));
        assert!(refused(0o640, SERVICE, SERVICE).contains("chmod 600"));
        // A host user's private file: unreadable to the container user.
        assert!(refused(0o600, 1000, 1000).contains("belongs to uid 1000"));
        // Group read for a group the service is not in.
        assert!(refused(0o440, 0, 3000).contains("does not run in"));
        // Root's private file: the service cannot read it.
        assert!(refused(0o600, 0, 0).contains("cannot read"));
        assert!(refused(0o200, SERVICE, SERVICE).contains("cannot read"));
    }

    // S-KEY-1: a token file is read through the rule, trimmed, and never
    // quoted in an error.
    #[test]
    fn a_token_file_is_read_under_the_rule() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        let write = |text: &str| {
            std::fs::write(&path, text).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        };
        write("s.secret-token-value\n");
        let read = |path| read_token_file("keys.transit_token_file", path);
        assert_eq!(
            read(&path).expect("private file").expose(),
            "s.secret-token-value"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = read(&path).expect_err("too wide").to_string();
        assert!(
            err.contains("keys.transit_token_file") && err.contains("chmod 600"),
            "{err}"
        );
        assert!(!err.contains("secret-token"), "{err}");
        write("two tokens");
        let err = read(&path).expect_err("not one token").to_string();
        assert!(
            err.contains("does not hold one token") && !err.contains("two"),
            "{err}"
        );
    }

    #[test]
    fn root_reads_its_own_files() {
        let root = RunsAs {
            uid: 0,
            groups: vec![0],
        };
        assert_eq!(judge(0o600, 0, 0, &root), None);
        assert!(judge(0o644, 0, 0, &root).is_some());
        // Root's own file follows the owner's rule, not the mount's.
        assert!(judge(0o640, 0, 0, &root).is_some());
    }
}
