//! Records the commit the binary is built from, for `clarity --version`:
//! `CLARITY_BUILD_COMMIT` when set (a build without the repository, such as
//! the container image's), else `git rev-parse`, else "unknown".

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=CLARITY_BUILD_COMMIT");
    let commit = std::env::var("CLARITY_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".to_string());
    // Not a CLARITY_* name: `cargo run` hands rustc-env variables to the
    // program too, and there every CLARITY_* variable is a setting (an
    // unknown one refuses to start, as README's `cargo run --release` did).
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={}", commit.trim());
}

/// The short commit of HEAD, and the files to watch for HEAD moving.
fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = Path::new(&dir);
        let mut watch = vec![dir.join("HEAD"), dir.join("packed-refs")];
        if let Some(head) = git(&["rev-parse", "--symbolic-full-name", "HEAD"]) {
            watch.push(dir.join(head));
        }
        // Only files that exist: cargo reruns every time for one that does not.
        for file in watch.into_iter().filter(|f| f.is_file()) {
            println!("cargo:rerun-if-changed={}", file.display());
        }
    }
    Some(commit)
}
