//! The plaintext shapes of patients and records, and their validation.

use super::json_input::parse_json;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::Zeroize;

use crate::crypto::{Json, Phi};
use crate::error::{Error, Result};

/// Longest accepted text field (names, address lines, ...), in characters.
const MAX_TEXT: usize = 256;
/// Deepest accepted nesting of a JSON document.
pub(crate) const MAX_DEPTH: usize = 32;
/// Largest page of a list.
pub const MAX_PAGE: usize = 1000;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;

/// A patient's profile: everything about the patient, encrypted as one document.
///
/// The JSON shape is the API's: unknown fields are rejected.
#[derive(Clone, PartialEq, Serialize, Deserialize, Zeroize)]
#[serde(deny_unknown_fields)]
pub struct PatientProfile {
    /// Medical record number; unique among live patients.
    pub mrn: String,
    /// Given name(s).
    pub given_name: String,
    /// Family name.
    pub family_name: String,
    /// Birth date, `YYYY-MM-DD`.
    pub birth_date: String,
    /// Administrative sex: `female`, `male`, `other` or `unknown` (FHIR).
    pub sex: String,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Postal address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// Any further data, as a JSON object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Json>,
}

/// A postal address.
#[derive(Clone, PartialEq, Serialize, Deserialize, Zeroize, Default)]
#[serde(deny_unknown_fields)]
pub struct Address {
    /// Street lines.
    #[serde(default)]
    pub line: Vec<String>,
    /// City.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    /// State or region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Postal code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    /// Country.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

impl std::fmt::Debug for PatientProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientProfile([REDACTED])")
    }
}

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Address([REDACTED])")
    }
}

impl PatientProfile {
    /// Parses a profile from JSON text. Error messages give the position and
    /// field names, never the values.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for malformed JSON, a wrong shape or invalid values.
    pub fn from_json(text: &str) -> Result<PatientProfile> {
        let profile: PatientProfile = parse_json(text)?;
        profile.validate()?;
        Ok(profile)
    }

    /// Checks every field. Messages name the field, never its value.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the first bad field.
    pub fn validate(&self) -> Result<()> {
        check_text("mrn", &self.mrn, 64)?;
        check_text("given_name", &self.given_name, MAX_TEXT)?;
        check_text("family_name", &self.family_name, MAX_TEXT)?;
        let birth = NaiveDate::parse_from_str(&self.birth_date, "%Y-%m-%d")
            .ok()
            .filter(|_| self.birth_date.len() == 10)
            .ok_or_else(|| Error::invalid("birth_date must be a date written YYYY-MM-DD"))?;
        if birth > Utc::now().date_naive() {
            return Err(Error::invalid("birth_date must not be in the future"));
        }
        if birth < NaiveDate::from_ymd_opt(1850, 1, 1).unwrap_or(NaiveDate::MIN) {
            return Err(Error::invalid("birth_date must be after 1850-01-01"));
        }
        if !matches!(self.sex.as_str(), "female" | "male" | "other" | "unknown") {
            return Err(Error::invalid(
                "sex must be one of: female, male, other, unknown",
            ));
        }
        if let Some(email) = &self.email {
            check_text("email", email, 254)?;
            let (local, domain) = email
                .split_once('@')
                .ok_or_else(|| Error::invalid("email must be an email address"))?;
            if local.is_empty()
                || domain.is_empty()
                || domain.contains('@')
                || email.contains(char::is_whitespace)
            {
                return Err(Error::invalid("email must be an email address"));
            }
        }
        if let Some(phone) = &self.phone {
            check_text("phone", phone, 32)?;
        }
        if let Some(address) = &self.address {
            if address.line.len() > 8 {
                return Err(Error::invalid("address.line must have at most 8 lines"));
            }
            for line in &address.line {
                check_text("address.line", line, MAX_TEXT)?;
            }
            for (name, value) in [
                ("address.city", &address.city),
                ("address.state", &address.state),
                ("address.postal_code", &address.postal_code),
                ("address.country", &address.country),
            ] {
                if let Some(value) = value {
                    check_text(name, value, MAX_TEXT)?;
                }
            }
        }
        if let Some(data) = &self.data {
            check_document("data", &data.0, false)?;
        }
        Ok(())
    }
}

/// A lookup of patients by an exact value of an indexed field.
#[derive(Clone)]
#[non_exhaustive]
pub enum PatientLookup {
    /// By medical record number.
    Mrn(String),
    /// By email address.
    Email(String),
    /// By family name and birth date (`YYYY-MM-DD`).
    NameBirthDate {
        /// Family name.
        family_name: String,
        /// Birth date, `YYYY-MM-DD`.
        birth_date: String,
    },
}

/// A patient search as clients send it (the HTTP body of
/// `POST /v1/patients/search`, the C ABI's JSON): exactly one of `mrn`,
/// `email`, or `family_name` with `birth_date`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientSearch {
    /// Medical record number.
    #[serde(default)]
    pub mrn: Option<String>,
    /// Email address.
    #[serde(default)]
    pub email: Option<String>,
    /// Family name (with `birth_date`).
    #[serde(default)]
    pub family_name: Option<String>,
    /// Birth date, `YYYY-MM-DD` (with `family_name`).
    #[serde(default)]
    pub birth_date: Option<String>,
}

impl PatientSearch {
    /// The lookup this search asks for.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for any other combination of fields.
    pub fn into_lookup(self) -> Result<PatientLookup> {
        match (self.mrn, self.email, self.family_name, self.birth_date) {
            (Some(mrn), None, None, None) => Ok(PatientLookup::Mrn(mrn)),
            (None, Some(email), None, None) => Ok(PatientLookup::Email(email)),
            (None, None, Some(family_name), Some(birth_date)) => Ok(PatientLookup::NameBirthDate {
                family_name,
                birth_date,
            }),
            _ => Err(Error::invalid(
                "search by one of: mrn, email, or family_name with birth_date",
            )),
        }
    }
}

impl std::fmt::Debug for PatientSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The values are PHI.
        f.debug_struct("PatientSearch").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PatientLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let field = match self {
            PatientLookup::Mrn(_) => "Mrn",
            PatientLookup::Email(_) => "Email",
            PatientLookup::NameBirthDate { .. } => "NameBirthDate",
        };
        write!(f, "PatientLookup::{field}([REDACTED])")
    }
}

impl Drop for PatientLookup {
    fn drop(&mut self) {
        match self {
            PatientLookup::Mrn(v) | PatientLookup::Email(v) => v.zeroize(),
            PatientLookup::NameBirthDate {
                family_name,
                birth_date,
            } => {
                family_name.zeroize();
                birth_date.zeroize();
            }
        }
    }
}

/// A patient as returned to an authorised caller.
#[derive(Debug, Clone, Serialize)]
pub struct Patient {
    /// Patient id.
    pub id: Uuid,
    /// Current version; send it back as the expected version of an update.
    pub version: i64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
    /// The profile (PHI).
    #[serde(flatten)]
    pub profile: Phi<PatientProfile>,
}

/// A record's kind: a lowercase category such as `observation` or
/// `medication-request`. Stored in the clear (access rules use it), so it
/// must name a category, never carry PHI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RecordKind(String);

impl RecordKind {
    /// Validates a kind: 1–64 characters of `a-z`, `0-9`, `-`, `_`, `.`, starting with a letter.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when it does not match.
    pub fn new(kind: &str) -> Result<RecordKind> {
        let mut chars = kind.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
        let rest_ok = chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
        if first_ok && rest_ok && kind.len() <= 64 {
            Ok(RecordKind(kind.to_string()))
        } else {
            Err(Error::invalid(
                "kind must be 1-64 characters of a-z, 0-9, '-', '_' or '.', starting with a letter",
            ))
        }
    }

    /// The kind as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A clinical record as returned to an authorised caller.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Record id.
    pub id: Uuid,
    /// The patient it belongs to.
    pub patient_id: Uuid,
    /// Its kind.
    pub kind: RecordKind,
    /// The body (PHI): a JSON object.
    pub data: Phi<Json>,
    /// Current version.
    pub version: i64,
    /// Who created it.
    pub created_by: Uuid,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update.
    pub updated_at: DateTime<Utc>,
}

/// Which page of a list to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Page size (default 50, at most 1000).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: usize) -> Self {
        PageRequest {
            limit: Some(limit),
            cursor: None,
        }
    }

    /// The checked page size.
    pub(crate) fn limit(&self) -> Result<usize> {
        match self.limit {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            Some(_) => Err(Error::invalid(format!(
                "limit must be between 1 and {MAX_PAGE}"
            ))),
        }
    }

    /// The decoded cursor: the id after which the page starts.
    pub(crate) fn after(&self) -> Result<Option<Uuid>> {
        self.cursor
            .as_deref()
            .map(|c| Uuid::try_parse(c).map_err(|_| Error::invalid("cursor is not valid")))
            .transpose()
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// The items, in order.
    pub items: Vec<T>,
    /// The cursor of the next page, `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Checks a JSON document: an object (non-empty unless `allow_empty`),
/// nested at most [`MAX_DEPTH`] deep.
pub(crate) fn check_document(
    name: &str,
    value: &serde_json::Value,
    allow_empty: bool,
) -> Result<()> {
    let Some(object) = value.as_object() else {
        return Err(Error::invalid(format!("{name} must be a JSON object")));
    };
    if object.is_empty() && !allow_empty {
        return Err(Error::invalid(format!("{name} must not be empty")));
    }
    if depth(value) > MAX_DEPTH {
        return Err(Error::invalid(format!(
            "{name} is nested more than {MAX_DEPTH} levels deep"
        )));
    }
    Ok(())
}

fn depth(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

pub(super) fn check_text(name: &str, value: &str, max_chars: usize) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(format!("{name} must not be empty")));
    }
    if value.chars().count() > max_chars {
        return Err(Error::invalid(format!(
            "{name} must be at most {max_chars} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(format!(
            "{name} must not contain control characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> PatientProfile {
        PatientProfile {
            mrn: "MRN-1".into(),
            given_name: "Jane".into(),
            family_name: "Doe".into(),
            birth_date: "1980-02-29".into(),
            sex: "female".into(),
            email: Some("jane@example.org".into()),
            phone: None,
            address: None,
            data: None,
        }
    }

    #[test]
    fn valid_profile_passes() {
        profile().validate().expect("valid");
    }

    #[test]
    fn each_bad_field_is_named_without_its_value() {
        type Mutation = fn(&mut PatientProfile);
        let cases: Vec<(Mutation, &str)> = vec![
            (|p| p.mrn = " ".into(), "mrn"),
            (|p| p.given_name = "x".repeat(300), "given_name"),
            (|p| p.family_name = "Doe\u{1b}[31m".into(), "family_name"),
            (|p| p.birth_date = "1980-02-30".into(), "birth_date"),
            (|p| p.birth_date = "3000-01-01".into(), "birth_date"),
            (|p| p.sex = "secretvalue".into(), "sex"),
            (|p| p.email = Some("secretvalue".into()), "email"),
            (|p| p.data = Some(Json(serde_json::json!([1]))), "data"),
        ];
        for (mutate, field) in cases {
            let mut p = profile();
            mutate(&mut p);
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
            assert!(!err.contains("secretvalue"), "{err}");
        }
    }

    #[test]
    fn json_errors_never_quote_values() {
        let err = PatientProfile::from_json(r#"{"mrn": 12345678, "x": "canary-value"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("12345678") && !err.contains("canary"),
            "{err}"
        );
        let err = PatientProfile::from_json(r#"{"mrn":"a","given_name":"b","family_name":"c","birth_date":"2000-01-01","sex":"male","shoe":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `shoe`"), "{err}");
        let err = PatientProfile::from_json("{not json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid JSON"), "{err}");
    }

    #[test]
    fn documents_are_checked() {
        assert!(check_document("data", &serde_json::json!({}), false).is_err());
        assert!(check_document("data", &serde_json::json!("x"), false).is_err());
        let mut deep = serde_json::json!(1);
        for _ in 0..40 {
            deep = serde_json::json!({ "a": deep });
        }
        assert!(
            check_document("data", &deep, false)
                .unwrap_err()
                .to_string()
                .contains("nested")
        );
    }

    #[test]
    fn kinds_and_pages_are_checked() {
        assert!(RecordKind::new("observation").is_ok());
        for bad in ["", "Observation", "1x", "a b", &"a".repeat(65)] {
            assert!(RecordKind::new(bad).is_err(), "{bad}");
        }
        assert!(PageRequest::first(0).limit().is_err());
        assert!(PageRequest::first(1001).limit().is_err());
        let bad_cursor = PageRequest {
            limit: None,
            cursor: Some("nope".into()),
        };
        assert!(bad_cursor.after().is_err());
    }
}
