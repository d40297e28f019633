//! Typed arguments built from checked C arguments: ids, JSON documents,
//! pages and versions.

use std::ffi::c_char;

use clarity_core::model::PageRequest;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::error::Failure;
use crate::ffi;

/// A required UUID string argument.
pub(crate) fn uuid(ptr: *const c_char, name: &str) -> Result<Uuid, Failure> {
    let text = ffi::str_arg(ptr, name)?;
    Uuid::try_parse(text.trim()).map_err(|_| Failure::invalid(format!("{name} must be a UUID")))
}

/// A required JSON argument, parsed strictly (unknown fields refused); the
/// error names positions and fields, never values.
pub(crate) fn json<T: DeserializeOwned>(ptr: *const c_char, name: &str) -> Result<T, Failure> {
    let text = ffi::str_arg(ptr, name)?;
    clarity_core::model::parse_json(text)
        .map_err(|e| Failure::new(e.kind().into(), format!("{name}: {e}")))
}

/// An optional JSON argument: NULL is the default value.
pub(crate) fn json_or_default<T: DeserializeOwned + Default>(
    ptr: *const c_char,
    name: &str,
) -> Result<T, Failure> {
    if ptr.is_null() {
        return Ok(T::default());
    }
    json(ptr, name)
}

/// A page: `limit` 0 is the default size; `cursor` NULL is the first page.
pub(crate) fn page(limit: u32, cursor: *const c_char) -> Result<PageRequest, Failure> {
    Ok(PageRequest {
        limit: (limit > 0).then_some(limit as usize),
        cursor: ffi::opt_str_arg(cursor, "cursor")?.map(str::to_string),
    })
}

/// The version an update is based on: at least 1.
pub(crate) fn version(expected: i64) -> Result<i64, Failure> {
    if expected < 1 {
        return Err(Failure::invalid("expected_version must be at least 1"));
    }
    Ok(expected)
}
