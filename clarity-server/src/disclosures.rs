//! `clarity audit access-log` and `clarity disclosure`: the patient's side of
//! the audit trail (S-AUD-9) for the local operator, who acts as the privacy
//! office (its principal holds the auditor role). Disclosure details are PHI:
//! they are read from standard input, never from the command line, where
//! other users of the machine could see them.

use std::io::Read;

use chrono::{DateTime, Utc};
use clarity_core::model::{NewDisclosure, PageRequest};
use clarity_core::service::AccessLogRange;
use clarity_core::{Config, Error, Result};
use uuid::Uuid;

use crate::ops::{print_json, with_clarity};

/// Prints the patient's access log, one JSON object per line, oldest first.
pub(crate) async fn access_log(
    config: Config,
    patient: Uuid,
    range: AccessLogRange,
    limit: usize,
) -> Result<()> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let mut page = PageRequest::first(limit.clamp(1, 1000));
        let mut printed = 0;
        while printed < limit {
            let log = clarity
                .patient_access_log(&operator, patient, range, &page)
                .await?;
            for entry in log.items.iter().take(limit - printed) {
                print_json(entry)?;
                printed += 1;
            }
            match log.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        Ok(())
    })
    .await
}

/// Records the disclosure described by the JSON object on standard input;
/// prints the recorded disclosure.
pub(crate) async fn record(config: Config, patient: Uuid) -> Result<()> {
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
        print_json(&recorded)
    })
    .await
}

/// Prints the patient's disclosures, one JSON object per line, in the order
/// they were recorded.
pub(crate) async fn list(config: Config, patient: Uuid) -> Result<()> {
    with_clarity(config, async |clarity| {
        let operator = clarity.operator().await?;
        let mut page = PageRequest::first(1000);
        loop {
            let listed = clarity.list_disclosures(&operator, patient, &page).await?;
            for disclosure in &listed.items {
                print_json(disclosure)?;
            }
            match listed.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => return Ok(()),
            }
        }
    })
    .await
}

/// Prints the accounting of disclosures: as text to print (the default) or
/// as one JSON object.
pub(crate) async fn accounting(
    config: Config,
    patient: Uuid,
    from: Option<DateTime<Utc>>,
    json: bool,
) -> Result<()> {
    with_clarity(config, async |clarity| {
        let accounting = clarity
            .disclosure_accounting(&clarity.operator().await?, patient, from)
            .await?;
        if json {
            print_json(&accounting)
        } else {
            print!("{}", accounting.printable());
            Ok(())
        }
    })
    .await
}
