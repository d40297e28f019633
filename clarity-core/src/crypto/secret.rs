//! Wrappers that keep secrets and PHI out of logs and wipe them from memory.
//!
//! [`SecretString`] and [`Key`] hold secrets (passwords, URLs with credentials,
//! key material); [`Phi`] holds protected health information. All three print
//! as `[REDACTED]` through `Debug` and `Display` and zeroize their memory on
//! drop. Reaching the value takes an explicit `expose()`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

const REDACTED: &str = "[REDACTED]";

/// A secret string: redacted when printed, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself; keep its use short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString)
    }
}

/// A 256-bit symmetric key: redacted when printed, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key(Box<[u8; 32]>);

impl Key {
    /// Length of a key in bytes.
    pub const LEN: usize = 32;

    /// A fresh key from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`crate::error::Error::Internal`] when the OS random source fails.
    pub fn generate() -> crate::error::Result<Key> {
        let mut key = Key(Box::new([0u8; 32]));
        super::fill_random(key.0.as_mut_slice())?;
        Ok(key)
    }

    /// Copies key material from a slice of exactly 32 bytes.
    ///
    /// # Errors
    /// [`crate::error::Error::Key`] when the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> crate::error::Result<Key> {
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| crate::error::Error::key("key material must be 32 bytes"))?;
        let array = Zeroizing::new(array);
        Ok(Key(Box::new(*array)))
    }

    /// The key bytes; keep their use short.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Protected health information: redacted when printed, zeroized on drop.
///
/// `Phi` serializes transparently (that is how PHI reaches an authorised
/// caller) but never prints. Use [`Phi::expose`] to read it.
#[derive(Clone, PartialEq)]
pub struct Phi<T: Zeroize>(T);

impl<T: Zeroize> Phi<T> {
    /// Wraps a value as PHI.
    pub fn new(value: T) -> Self {
        Phi(value)
    }

    /// The PHI itself.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Mutable access to the PHI.
    pub fn expose_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Zeroize> Drop for Phi<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl<T: Zeroize> fmt::Debug for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize> fmt::Display for Phi<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl<T: Zeroize + Serialize> Serialize for Phi<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Zeroize + Deserialize<'de>> Deserialize<'de> for Phi<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Phi)
    }
}

/// A JSON document that can be zeroized: every string, key and number in it is
/// overwritten before its memory is released.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Json(pub serde_json::Value);

impl Zeroize for Json {
    fn zeroize(&mut self) {
        zeroize_value(&mut self.0);
    }
}

impl From<serde_json::Value> for Json {
    fn from(value: serde_json::Value) -> Self {
        Json(value)
    }
}

fn zeroize_value(value: &mut serde_json::Value) {
    use serde_json::Value;
    match std::mem::take(value) {
        Value::String(mut s) => s.zeroize(),
        Value::Array(mut items) => {
            for item in &mut items {
                zeroize_value(item);
            }
        }
        Value::Object(map) => {
            for (mut key, mut item) in map {
                key.zeroize();
                zeroize_value(&mut item);
            }
        }
        // Numbers and booleans are small inline values; `take` already
        // replaced them with `Null` in place.
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_phi_never_print() {
        let secret = SecretString::new("hunter2-is-my-password");
        assert_eq!(format!("{secret:?} {secret}"), "[REDACTED] [REDACTED]");
        let phi = Phi::new(Json(serde_json::json!({"name": "Jane Canary"})));
        assert_eq!(format!("{phi:?} {phi}"), "[REDACTED] [REDACTED]");
        let key = Key::generate().expect("os rng");
        assert_eq!(format!("{key:?}"), "[REDACTED]");
    }

    #[test]
    fn phi_serializes_transparently() {
        let phi = Phi::new(Json(serde_json::json!({"a": 1})));
        assert_eq!(serde_json::to_string(&phi).expect("json"), r#"{"a":1}"#);
    }

    #[test]
    fn json_zeroize_clears_everything() {
        let mut doc = Json(serde_json::json!({"name": ["Jane", {"x": "y"}], "n": 3}));
        doc.zeroize();
        assert_eq!(doc.0, serde_json::Value::Null);
    }

    #[test]
    fn key_from_slice_checks_length() {
        assert!(Key::from_slice(&[0u8; 31]).is_err());
        assert_eq!(
            Key::from_slice(&[7u8; 32]).expect("32").expose(),
            &[7u8; 32]
        );
    }
}
