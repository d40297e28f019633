//! The bodies of the fuzz targets (`fuzz/`, cargo-fuzz / libFuzzer), kept
//! here so that the committed corpora and every crash ever found also run
//! as plain tests on stable Rust (`clarity-core/tests/fuzz_corpus.rs`).
//!
//! Each function takes arbitrary bytes and must never panic; it also
//! asserts the property its input path promises: one uniform error kind
//! (S-AUTH-3, S-INT-1), 4xx-class errors only for bad input (S-IN-1), and
//! error messages that do not echo the input (S-ERR-1).

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::config::{AuthConfig, TokenPurpose};
use crate::crypto::envelope::{self, RowBinding};
use crate::crypto::{Json, Key};
use crate::error::ErrorKind;
use crate::model::{PatientProfile, check_document, parse_json};
use crate::service::{
    BreakGlassRequest, CareTeamAssignment, LoginRequest, MAX_REQUEST_BODY, MfaCode, NewRecord,
    NewUser, RecordUpdate, RefreshRequest, SetupRequest, UserUpdate,
};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets, by name: the name of the corpus directory under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("token", token),
    ("envelope", envelope),
    ("config", config),
    ("request_body", request_body),
    ("ffi_json", ffi_json),
];

/// The fixed key every target uses (fuzzing needs determinism).
pub fn fixed_key() -> Key {
    // Infallible: 32 bytes are a key.
    Key::from_slice(&[0x5a; 32]).unwrap_or_else(|_| unreachable!())
}

/// The fixed "now" of token verification: seeds issued at this instant verify.
pub fn fixed_now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

/// Token keys for `v4.local` and `v4.public`, derived from [`fixed_key`].
pub fn token_keys() -> &'static [TokenKeys; 2] {
    static KEYS: OnceLock<[TokenKeys; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = |purpose| {
            let config = AuthConfig {
                token_purpose: purpose,
                ..AuthConfig::default()
            };
            TokenKeys::new(&fixed_key(), &config).unwrap_or_else(|e| panic!("token keys: {e}"))
        };
        [keys(TokenPurpose::Local), keys(TokenPurpose::Public)]
    })
}

/// Token parsing and verification: any string is either a valid token or
/// `Unauthenticated`, whatever was wrong with it (S-AUTH-3).
pub fn token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    for keys in token_keys() {
        if let Err(e) = keys.verify(&text, fixed_now()) {
            assert_eq!(e.kind(), ErrorKind::Unauthenticated, "token error kind");
        }
    }
}

/// The envelope decoder: any bytes open to `Integrity` or to plaintext
/// (only a genuine envelope), and sealing then opening round-trips (S-INT-1).
pub fn envelope(data: &[u8]) {
    let key = fixed_key();
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (aad, body) = data.split_at(split);
    if let Err(e) = envelope::open(&key, aad, body) {
        assert_eq!(e.kind(), ErrorKind::Integrity, "envelope error kind");
    }
    let binding = RowBinding {
        table: "records",
        row_id: Uuid::from_u128(1),
        patient_id: Uuid::from_u128(2),
        version: 1,
        dek_version: 1,
    };
    if let Err(e) = envelope::open_row(&key, &binding, data) {
        assert_eq!(e.kind(), ErrorKind::Integrity, "envelope error kind");
    }
    let sealed = envelope::seal_row(&key, &binding, data).unwrap_or_else(|e| panic!("seal: {e}"));
    let opened =
        envelope::open_row(&key, &binding, &sealed).unwrap_or_else(|e| panic!("open: {e}"));
    assert_eq!(opened.as_slice(), data, "round trip");
}

/// Configuration files: parsed and validated, or a `Config` error.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::from_toml(text) {
        assert_eq!(e.kind(), ErrorKind::Config, "config error kind");
    }
}

/// Parses like the server does (size limit, UTF-8, strict JSON); a failure
/// must be `InvalidInput` — the server's 400 — with a short message that
/// names fields at most, never values (S-IN-1, S-ERR-1).
fn parse_like_server<T: serde::de::DeserializeOwned>(data: &[u8]) -> Option<T> {
    if data.len() > MAX_REQUEST_BODY {
        return None;
    }
    let text = std::str::from_utf8(data).ok()?;
    match parse_json::<T>(text) {
        Ok(value) => Some(value),
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "body error kind");
            // Bounded: names of at most 64 characters, the path, and what
            // the type expects there (its own field names or variants).
            let message = e.to_string();
            assert!(message.len() < 600, "short error message: {message}");
            None
        }
    }
}

/// Record bodies also pass the document checks (object, depth).
fn check_data(data: &Json) {
    if let Err(e) = check_document("data", &data.0, false) {
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}

/// Every JSON body the HTTP server accepts; the first byte picks the route.
pub fn request_body(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 13 {
        0 => drop(parse_like_server::<SetupRequest>(body)),
        1 => drop(parse_like_server::<LoginRequest>(body)),
        2 => drop(parse_like_server::<RefreshRequest>(body)),
        3 => drop(parse_like_server::<NewUser>(body)),
        4 => drop(parse_like_server::<UserUpdate>(body)),
        5 => {
            if let Some(Err(e)) = parse_like_server::<PatientProfile>(body).map(|p| p.validate()) {
                assert_eq!(e.kind(), ErrorKind::InvalidInput);
            }
        }
        6 => drop(parse_like_server::<crate::model::PatientSearch>(body)),
        7 => drop(parse_like_server::<CareTeamAssignment>(body)),
        8 => {
            if let Some(record) = parse_like_server::<NewRecord>(body) {
                check_data(&record.data);
            }
        }
        9 => {
            if let Some(update) = parse_like_server::<RecordUpdate>(body) {
                check_data(&update.data);
            }
        }
        10 => drop(parse_like_server::<BreakGlassRequest>(body)),
        11 => drop(parse_like_server::<MfaCode>(body)),
        _ => drop(parse_like_server::<Json>(body)),
    }
}

/// The JSON request types the C ABI deserialises (the core's serde request
/// types): any bytes parse or fail with an error, never a panic; what parses
/// serialises and parses again to the same text.
pub fn ffi_json(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return;
    };
    fn parse<T: serde::de::DeserializeOwned>(text: &str) -> bool {
        serde_json::from_str::<T>(text).is_ok()
    }
    let parsed = match which % 8 {
        0 => parse::<NewUser>(text),
        1 => parse::<LoginRequest>(text),
        2 => parse::<UserUpdate>(text),
        3 => parse::<BreakGlassRequest>(text),
        4 => parse::<SetupRequest>(text),
        5 => parse::<CareTeamAssignment>(text),
        6 => parse::<PatientProfile>(text),
        _ => parse::<Json>(text),
    };
    if parsed {
        let value: Json = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("parsed as a type but not as JSON: {e}"));
        let again = serde_json::to_string(&value).unwrap_or_else(|e| panic!("serialise: {e}"));
        let back: Json = serde_json::from_str(&again).unwrap_or_else(|e| panic!("reparse: {e}"));
        let third = serde_json::to_string(&back).unwrap_or_else(|e| panic!("serialise: {e}"));
        assert_eq!(third, again, "JSON round trip is stable");
    }
}
