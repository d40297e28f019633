//! De-identified views for researchers (HIPAA Safe Harbor).
//!
//! Kept: a pseudonym (stable per patient, keyed, so it cannot be reversed or
//! recomputed without the key), the year of birth, an age group for ages
//! over 89, and administrative sex. Removed: names, contact details, every
//! identifier, address below the country, and every full date.

use chrono::{Datelike, NaiveDate};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use uuid::Uuid;

use crate::crypto::Key;
use crate::model::PatientProfile;

/// A patient as a researcher sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeidentifiedPatient {
    /// Keyed pseudonym of the patient id (hex, 128 bits).
    pub pseudonym: String,
    /// Year of birth; `None` for patients over 89 (Safe Harbor groups them).
    pub birth_year: Option<i32>,
    /// `"90+"` for patients over 89, otherwise the age in whole years.
    pub age: String,
    /// Administrative sex.
    pub sex: String,
}

/// Builds the de-identified view of a patient, with ages as of `today`.
pub fn deidentify(
    pseudonym_key: &Key,
    id: Uuid,
    profile: &PatientProfile,
    today: NaiveDate,
) -> DeidentifiedPatient {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(pseudonym_key.expose())
        .expect("HMAC-SHA-256 accepts a 32-byte key");
    mac.update(id.as_bytes());
    let pseudonym = hex::encode(&mac.finalize().into_bytes()[..16]);
    let birth = NaiveDate::parse_from_str(&profile.birth_date, "%Y-%m-%d").ok();
    let age = birth.and_then(|b| today.years_since(b));
    let over_89 = age.is_some_and(|a| a > 89);
    DeidentifiedPatient {
        pseudonym,
        birth_year: if over_89 {
            None
        } else {
            birth.map(|b| b.year())
        },
        age: match age {
            Some(_) if over_89 => "90+".to_string(),
            Some(a) => a.to_string(),
            None => "unknown".to_string(),
        },
        sex: profile.sex.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(birth: &str) -> PatientProfile {
        PatientProfile::from_json(&format!(
            r#"{{"mrn":"M-1","given_name":"Ada","family_name":"Lovelace","birth_date":"{birth}","sex":"female","email":"ada@example.org","phone":"+1 555 0100"}}"#
        ))
        .expect("profile")
    }

    #[test]
    fn safe_harbor_removes_identifiers_and_groups_the_very_old() {
        let key = Key::from_slice(&[9u8; 32]).expect("key");
        let today = NaiveDate::from_ymd_opt(2026, 6, 1).expect("date");
        // A fixed id: the pseudonym is then fixed too, and the checks below
        // cannot meet a digit run that happens to appear in it.
        let id = Uuid::from_u128(0x0191_0000_7000_8000_8000_0000_0000_0042);
        let young = deidentify(&key, id, &profile("1990-07-15"), today);
        assert_eq!(young.birth_year, Some(1990));
        assert_eq!(young.age, "35");
        let json = serde_json::to_string(&young).expect("json");
        for identifier in [
            "Ada",
            "Lovelace",
            "M-1",
            "ada@example.org",
            "555",
            "07-15",
            &id.to_string(),
        ] {
            assert!(!json.contains(identifier), "{identifier} leaked: {json}");
        }
        let old = deidentify(&key, id, &profile("1930-01-01"), today);
        assert_eq!((old.birth_year, old.age.as_str()), (None, "90+"));
        assert_eq!(old.pseudonym, young.pseudonym, "stable per patient");
        let other_key = Key::from_slice(&[8u8; 32]).expect("key");
        assert_ne!(
            deidentify(&other_key, id, &profile("1990-07-15"), today).pseudonym,
            young.pseudonym
        );
    }
}
