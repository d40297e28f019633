//! `clarity backup`, `clarity backup verify` and `clarity restore`: the
//! operator side of `clarity_core::backup`, with progress bars.

use std::path::{Path, PathBuf};

use clarity_core::backup::Progress;
use clarity_core::{Config, Result};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::Output;

fn rows_spinner() -> ProgressBar {
    ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg}: {pos} rows ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    )
}

fn bytes_bar(what: &'static str) -> ProgressBar {
    ProgressBar::new(0).with_style(
        ProgressStyle::with_template(&format!(
            "{what} [{{bar:40}}] {{bytes}}/{{total_bytes}} ({{eta}} left)"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    )
}

fn show_bytes(bar: &ProgressBar) -> impl Fn(&Progress) + Send + Sync + '_ {
    move |p: &Progress| {
        if let Some(total) = p.total {
            bar.set_length(total);
        }
        bar.set_position(p.done);
    }
}

pub(crate) async fn backup(config: Config, output: Option<PathBuf>) -> Result<Output> {
    let output = output.unwrap_or_else(|| {
        PathBuf::from(format!(
            "clarity-backup-{}.cbak",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    crate::ops::with_clarity(config, async |clarity| {
        let bar = rows_spinner();
        let manifest = clarity
            .backup(&clarity.operator().await?, &output, &|p: &Progress| {
                bar.set_message(p.phase);
                bar.set_position(p.done);
            })
            .await?;
        bar.finish_and_clear();
        let rows: u64 = manifest.tables.iter().map(|t| t.rows).sum();
        let text = format!(
            "backup {} written to {}: {rows} rows in {} tables, schema version {}, KEK version {}\n",
            manifest.backup_id,
            output.display(),
            manifest.tables.len(),
            manifest.schema_version,
            manifest.current_kek_version
        );
        let written = serde_json::json!({
            "archive": output.display().to_string(),
            "rows": rows,
            "manifest": manifest,
        });
        Output::new(&written, text)
    })
    .await
}

pub(crate) async fn verify(config: Config, archive: &Path) -> Result<Output> {
    let bar = bytes_bar("verifying");
    let verified = clarity_core::backup::verify(&config, archive, &show_bytes(&bar)).await;
    bar.finish_and_clear();
    let verified = verified?;
    let manifest = &verified.manifest;
    let text = format!(
        "backup {} is intact: taken {} from {}, signed manifest verified, {} tables, {} rows\n\
         the configured keys can restore it: they hold every KEK version it needs {:?}\n",
        manifest.backup_id,
        manifest
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        manifest.source_backend,
        manifest.tables.len(),
        manifest.tables.iter().map(|t| t.rows).sum::<u64>(),
        verified.kek_versions
    );
    Output::new(&verified, text)
}

pub(crate) async fn restore(config: Config, archive: &Path) -> Result<Output> {
    let bar = bytes_bar("restoring");
    let report = clarity_core::Clarity::restore(&config, archive, &show_bytes(&bar)).await;
    bar.finish_and_clear();
    let report = report?;
    let text = format!(
        "restored backup {} ({} → {}): {} rows, {} audit chains verified\n\
         erased patients skipped: {} (erased after the backup; their data keys were not restored)\n",
        report.backup_id,
        report.source_backend,
        report.target_backend,
        report.tables.iter().map(|t| t.rows).sum::<u64>(),
        report.audit_chains_verified,
        report.erased_patients_skipped
    );
    Output::new(&report, text)
}
