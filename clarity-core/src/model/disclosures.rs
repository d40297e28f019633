//! The patient's side of the audit trail (S-AUD-9): who accessed a record,
//! disclosures of a patient's information to outside recipients, and the
//! accounting of those disclosures a patient may ask for (45 CFR 164.528).

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroize;

use super::documents::check_text;
use crate::crypto::Phi;
use crate::error::{Error, Result};

/// How far back an accounting of disclosures reaches: six years before the
/// day it is asked for (45 CFR 164.528(a)).
pub const ACCOUNTING_YEARS: u32 = 6;

/// Longest recipient name or address, in characters.
const MAX_RECIPIENT: usize = 256;
/// Longest purpose, description or legal basis, in characters.
const MAX_STATEMENT: usize = 2000;

/// What was disclosed, to whom, why and under which legal basis: sealed
/// under the patient's data key, since it describes the patient.
#[derive(Clone, PartialEq, Serialize, Deserialize, Zeroize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureDetails {
    /// The person or organisation that received the information.
    pub recipient: String,
    /// The recipient's address, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_address: Option<String>,
    /// Why it was disclosed.
    pub purpose: String,
    /// What was disclosed (a brief description).
    pub description: String,
    /// The legal basis, e.g. a statute, a court order or the patient's
    /// authorisation.
    pub legal_basis: String,
}

impl std::fmt::Debug for DisclosureDetails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DisclosureDetails([REDACTED])")
    }
}

impl DisclosureDetails {
    /// Checks every field: present, not too long, no control characters.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field.
    pub fn validate(&self) -> Result<()> {
        check_text("recipient", &self.recipient, MAX_RECIPIENT)?;
        if let Some(address) = &self.recipient_address {
            check_text("recipient_address", address, MAX_RECIPIENT)?;
        }
        check_text("purpose", &self.purpose, MAX_STATEMENT)?;
        check_text("description", &self.description, MAX_STATEMENT)?;
        check_text("legal_basis", &self.legal_basis, MAX_STATEMENT)
    }
}

/// `POST /v1/patients/{id}/disclosures`: the details, and when the
/// disclosure happened (now when absent).
#[derive(Debug, Clone, Deserialize)]
#[serde(from = "NewDisclosureWire")]
pub struct NewDisclosure {
    /// When the information was disclosed; not in the future.
    pub disclosed_at: Option<DateTime<Utc>>,
    /// What, to whom, why.
    pub details: Phi<DisclosureDetails>,
}

/// The JSON shape of [`NewDisclosure`]: one flat object.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDisclosureWire {
    #[serde(default)]
    disclosed_at: Option<DateTime<Utc>>,
    recipient: String,
    #[serde(default)]
    recipient_address: Option<String>,
    purpose: String,
    description: String,
    legal_basis: String,
}

impl From<NewDisclosureWire> for NewDisclosure {
    fn from(wire: NewDisclosureWire) -> Self {
        NewDisclosure {
            disclosed_at: wire.disclosed_at,
            details: Phi::new(DisclosureDetails {
                recipient: wire.recipient,
                recipient_address: wire.recipient_address,
                purpose: wire.purpose,
                description: wire.description,
                legal_basis: wire.legal_basis,
            }),
        }
    }
}

/// A recorded disclosure, as its readers see it.
#[derive(Debug, Clone, Serialize)]
pub struct Disclosure {
    /// Disclosure id.
    pub id: Uuid,
    /// The patient whose information was disclosed.
    pub patient_id: Uuid,
    /// When it was disclosed.
    pub disclosed_at: DateTime<Utc>,
    /// What, to whom, why (PHI).
    #[serde(flatten)]
    pub details: Phi<DisclosureDetails>,
    /// Who recorded it.
    pub recorded_by: Uuid,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
}

/// One access to a patient's record, as the patient sees it: an audit
/// event about the patient that succeeded, with the accessor's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLogEntry {
    /// The audit event this entry comes from.
    pub event_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// Who: a user or service account id (absent for the local operator's
    /// maintenance, which names no user).
    pub accessor_id: Option<Uuid>,
    /// The accessor's display name now, if the account has one.
    pub accessor_name: Option<String>,
    /// The accessor's roles at the time.
    pub accessor_roles: Vec<String>,
    /// What was done, e.g. `record.read`, `patient.update`.
    pub action: String,
    /// The FHIR action code: C, R, U, D or E.
    pub action_code: String,
    /// The purpose of use the accessor declared, if any.
    pub purpose: Option<String>,
    /// Whether the access went through a break-glass grant (or asked for one).
    pub break_glass: bool,
    /// The record, grant or user the access concerned, if any.
    pub entity_id: Option<Uuid>,
}

/// An accounting of disclosures for one patient over a period of at most
/// [`ACCOUNTING_YEARS`] years, oldest disclosure first.
#[derive(Debug, Clone, Serialize)]
pub struct Accounting {
    /// The patient.
    pub patient_id: Uuid,
    /// The start of the period.
    pub from: DateTime<Utc>,
    /// The end of the period (when the accounting was produced).
    pub to: DateTime<Utc>,
    /// The disclosures made in the period.
    pub disclosures: Vec<Disclosure>,
}

impl Accounting {
    /// The accounting as plain text for printing or handing to the
    /// patient: a heading with the period, then one numbered entry per
    /// disclosure with its date, recipient, what was disclosed, purpose and
    /// legal basis.
    pub fn printable(&self) -> String {
        let day = |t: &DateTime<Utc>| t.format("%Y-%m-%d").to_string();
        let mut out = String::new();
        let _ = writeln!(out, "ACCOUNTING OF DISCLOSURES");
        let _ = writeln!(out, "Patient:  {}", self.patient_id);
        let _ = writeln!(out, "Period:   {} to {}", day(&self.from), day(&self.to));
        let _ = writeln!(
            out,
            "Produced: {}",
            self.to.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
        let _ = writeln!(out);
        if self.disclosures.is_empty() {
            let _ = writeln!(out, "No disclosures were recorded in this period.");
            return out;
        }
        let _ = writeln!(out, "Disclosures: {}", self.disclosures.len());
        for (n, d) in self.disclosures.iter().enumerate() {
            let details = d.details.expose();
            let _ = writeln!(out);
            let _ = writeln!(out, "{}. Disclosed on {}", n + 1, day(&d.disclosed_at));
            let _ = writeln!(out, "   Recipient:    {}", details.recipient);
            if let Some(address) = &details.recipient_address {
                let _ = writeln!(out, "   Address:      {address}");
            }
            let _ = writeln!(out, "   What:         {}", details.description);
            let _ = writeln!(out, "   Purpose:      {}", details.purpose);
            let _ = writeln!(out, "   Legal basis:  {}", details.legal_basis);
            let _ = writeln!(
                out,
                "   Recorded:     {} by {}",
                day(&d.recorded_at),
                d.recorded_by
            );
        }
        out
    }
}

/// The start of the longest accounting period that ends at `now`.
pub(crate) fn accounting_start(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_sub_months(chrono::Months::new(12 * ACCOUNTING_YEARS))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The period of an accounting asked for at `now` from `from` (the longest
/// one when absent).
///
/// # Errors
/// [`Error::InvalidInput`] for a start more than [`ACCOUNTING_YEARS`]
/// years back or in the future.
pub(crate) fn accounting_period(
    from: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>> {
    let earliest = accounting_start(now);
    match from {
        None => Ok(earliest),
        Some(from) if from < earliest => Err(Error::invalid(
            "from: an accounting of disclosures covers at most the six years before it is asked for",
        )),
        Some(from) if from > now => Err(Error::invalid("from must not be in the future")),
        Some(from) => Ok(from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details() -> DisclosureDetails {
        DisclosureDetails {
            recipient: "County Health Department".into(),
            recipient_address: Some("1 Main St".into()),
            purpose: "public health reporting".into(),
            description: "immunisation history".into(),
            legal_basis: "state reporting statute".into(),
        }
    }

    #[test]
    fn details_name_the_bad_field() {
        let mut d = details();
        assert!(d.validate().is_ok());
        d.legal_basis = "  ".into();
        let err = d.validate().expect_err("blank legal basis").to_string();
        assert!(err.contains("legal_basis"), "{err}");
        let mut d = details();
        d.recipient = "a\u{7}b".into();
        assert!(d.validate().is_err());
    }

    #[test]
    fn a_new_disclosure_is_one_flat_object_and_unknown_fields_are_refused() {
        let json =
            r#"{"recipient":"Zed Clinic","purpose":"P","description":"D","legal_basis":"L"}"#;
        let new: NewDisclosure = serde_json::from_str(json).expect("parses");
        assert_eq!(new.details.expose().recipient, "Zed Clinic");
        assert!(new.disclosed_at.is_none());
        let extra = r#"{"recipient":"R","purpose":"P","description":"D","legal_basis":"L","x":1}"#;
        assert!(serde_json::from_str::<NewDisclosure>(extra).is_err());
        // The details never print.
        assert!(!format!("{new:?}").contains("Zed"));
    }

    // S-AUD-9: the accounting covers six years, and no more.
    #[test]
    fn the_period_reaches_six_years_back_and_no_further() {
        let now = DateTime::parse_from_rfc3339("2026-12-06T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let start = accounting_period(None, now).expect("default");
        assert_eq!(start.to_rfc3339(), "2020-12-06T12:00:00+00:00");
        assert!(accounting_period(Some(start - chrono::Duration::seconds(1)), now).is_err());
        assert!(accounting_period(Some(now + chrono::Duration::seconds(1)), now).is_err());
        assert_eq!(accounting_period(Some(start), now).expect("edge"), start);
    }

    #[test]
    fn the_printable_form_lists_each_disclosure() {
        let now = Utc::now();
        let accounting = Accounting {
            patient_id: Uuid::nil(),
            from: accounting_start(now),
            to: now,
            disclosures: vec![Disclosure {
                id: Uuid::now_v7(),
                patient_id: Uuid::nil(),
                disclosed_at: now,
                details: Phi::new(details()),
                recorded_by: Uuid::nil(),
                recorded_at: now,
            }],
        };
        let text = accounting.printable();
        for needle in [
            "ACCOUNTING OF DISCLOSURES",
            "Disclosures: 1",
            "County Health Department",
            "1 Main St",
            "immunisation history",
            "public health reporting",
            "state reporting statute",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let empty = Accounting {
            disclosures: Vec::new(),
            ..accounting
        };
        assert!(empty.printable().contains("No disclosures"));
    }
}
