//! S-AC-1, S-AC-3: the authorisation matrix — every role × operation ×
//! relationship — through the Rust API, on every backend.

use clarity_core::testing::{self, Harness, matrix};

async fn run(h: Harness) {
    let clarity = h.clarity().await;
    let mismatches = matrix::run(&clarity, h.store().as_ref()).await;
    let report: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
    assert!(
        report.is_empty(),
        "{} cells differ from the specification:\n{}",
        report.len(),
        report.join("\n")
    );
}

// S-AC-1 S-AC-3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_on_memory() {
    run(testing::memory().await.expect("memory")).await;
}

// S-AC-1 S-AC-3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_on_sqlite() {
    run(testing::sqlite().await.expect("sqlite")).await;
}

// S-AC-1 S-AC-3
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_on_postgres() {
    let Some(h) = testing::postgres().await else {
        return;
    };
    run(h).await;
}
