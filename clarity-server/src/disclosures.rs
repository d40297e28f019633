//! `clarity audit access-log` and `clarity disclosure`: the patient's side of
//! the audit trail (S-AUD-9) for the local operator, who acts as the privacy
//! office (its principal holds the auditor role). Disclosure details are PHI:
//! they are read from standard input, never from the command line, where
//! other users of the machine could see them.

use std::io::Read;

use chrono::{DateTime, Utc};
use clarity_core::model::NewDisclosure;
use clarity_core::service::AccessLogRange;
use clarity_core::{Config, Error, Result};
use uuid::Uuid;

use crate::ops::{collect_pages, with_clarity};
use crate::output::Output;

/// The patient's access log, oldest first: one JSON object per line, or
/// one array.
pub(crate) async fn access_log(
    config: Config,
    patient: Uuid,
    range: AccessLogRange,
    limit: usize,
) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let log = collect_pages(limit, async |page| {
            clarity
                .patient_access_log(&operator, patient, range, page)
                .await
        })
        .await?;
        Output::lines(&log)
    })
    .await
}

/// Records the disclosure described by the JSON object on standard input;
/// prints the recorded disclosure (one JSON object in both formats).
pub(crate) async fn record(config: Config, patient: Uuid) -> Result<Output> {
    let mut input = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(64 * 1024)
        .read_to_string(&mut input)
        .map_err(|_| Error::invalid("cannot read the disclosure from standard input"))?;
    let disclosure: NewDisclosure = clarity_core::model::parse_json(&input)?;
    with_clarity(config, async |clarity| {
        let recorded = clarity
            .record_disclosure(&clarity.operator().await?, patient, disclosure)
            .await?;
        Output::json(&recorded)
    })
    .await
}

/// The patient's disclosures in the order they were recorded: one JSON
/// object per line, or one array.
pub(crate) async fn list(config: Config, patient: Uuid) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let listed = collect_pages(usize::MAX, async |page| {
            clarity.list_disclosures(&operator, patient, page).await
        })
        .await?;
        Output::lines(&listed)
    })
    .await
}

/// The accounting of disclosures: as text to print, or as one JSON object.
pub(crate) async fn accounting(
    config: Config,
    patient: Uuid,
    from: Option<DateTime<Utc>>,
) -> Result<Output> {
    with_clarity(config, async |clarity| {
        let accounting = clarity
            .disclosure_accounting(&clarity.operator().await?, patient, from)
            .await?;
        Output::new(&accounting, accounting.printable())
    })
    .await
}
