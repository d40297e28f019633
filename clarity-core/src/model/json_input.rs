//! Parsing JSON input with errors that say where and what, never quoting a
//! value (values may be PHI): `` `roles`: invalid input: unknown role; roles
//! are admin, ... (line 1, column 88)``.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

use crate::{Error, Result};

/// Longest field name or map key an error message repeats.
const MAX_NAME: usize = 64;
/// Longest path an error message repeats (then it ends with `…`).
const MAX_PATH: usize = 200;

/// Parses JSON text into `T`. The error names the position, the path of the
/// offending field (`roles`, `address.postal_code`, `items[2]`) and what was
/// expected there, and never quotes the input.
///
/// # Errors
/// [`Error::InvalidInput`] for malformed JSON or a wrong shape.
pub fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let mut segments: Vec<&Segment> = e.path().iter().collect();
        // The path of an unknown field ends with that field: name where it is.
        if e.inner().to_string().starts_with("unknown field `") {
            segments.pop();
        }
        describe(&path_of(&segments), e.inner())
    })?;
    // Nothing may follow the document (what serde_json::from_str checks).
    de.end().map_err(|e| describe("", &e))?;
    Ok(value)
}

/// The error for `err` at `path` ("" for the document itself).
fn describe(path: &str, err: &serde_json::Error) -> Error {
    use serde_json::error::Category;
    let (what, path) = match err.classify() {
        // Not JSON at all: the position says where.
        Category::Syntax | Category::Eof | Category::Io => ("is not valid JSON".to_string(), ""),
        Category::Data => (data_problem(&err.to_string()), path),
    };
    let at = if path.is_empty() {
        "document".to_string()
    } else {
        format!("`{path}`")
    };
    Error::invalid(format!(
        "{at} {what} (line {}, column {})",
        err.line(),
        err.column()
    ))
}

/// What serde found wrong, keeping only what cannot be a client's value:
/// field names (bounded), what was expected, and Clarity's own messages.
fn data_problem(message: &str) -> String {
    // serde_json appends the position, which the caller adds back.
    let message = message
        .rsplit_once(" at line ")
        .map_or(message, |(head, _)| head);
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
    };
    if let Some(name) = named("unknown field `") {
        // A client's name for a field is repeated only when it is a plain name.
        let name = if is_plain_name(name) {
            format!(" `{name}`")
        } else {
            String::new()
        };
        return match expectation(message) {
            Some(expected) => format!("has an unknown field{name}; expected {expected}"),
            None => format!("has an unknown field{name}"),
        };
    }
    if let Some(name) = named("missing field `") {
        return format!("lacks the required field `{name}`");
    }
    // Clarity's own checks (Error::InvalidInput) never quote values.
    if let Some(own) = message.strip_prefix("invalid input: ") {
        return format!("is invalid: {own}");
    }
    match expectation(message) {
        Some(expected) => format!("is not valid here; expected {expected}"),
        None => "does not have the expected type or format".to_string(),
    }
}

/// serde's "expected …" part: the type's own description, up to anything
/// that reports what was found.
fn expectation(message: &str) -> Option<&str> {
    let (_, rest) = message.split_once("expected ")?;
    let rest = rest.split(", found").next().unwrap_or(rest);
    (!rest.is_empty() && rest.len() <= 200).then_some(rest.trim_end())
}

/// A short name of letters, digits, `_` and `-`: what a field is called,
/// not a sentence a client wrote.
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `roles[0]`, `address.city`: field names and indices; a map key that is
/// not a short plain name is shown as `…`, since keys can be client data.
fn path_of(segments: &[&Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        if out.len() > MAX_PATH {
            out.push('…');
            break;
        }
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(if is_plain_name(key) { key } else { "…" });
            }
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::parse_json;
    use crate::model::RoleSet;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Address {
        city: String,
        postal_code: u32,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        email: String,
        roles: RoleSet,
        #[serde(default)]
        addresses: Vec<Address>,
        #[serde(default)]
        id: Option<uuid::Uuid>,
        #[serde(default)]
        tags: std::collections::BTreeMap<String, u8>,
    }

    fn error(text: &str) -> String {
        parse_json::<Body>(text).expect_err(text).to_string()
    }

    #[test]
    fn errors_name_the_field_path_and_never_a_value() {
        let e = error(r#"{"email":"ada@example.org","roles":["clinician","rooot"]}"#);
        assert!(
            e.contains("`roles` is invalid: unknown role; roles are admin"),
            "{e}"
        );
        assert!(!e.contains("rooot"), "{e}");

        let e = error(
            r#"{"email":"a@b.org","roles":[],"addresses":[{"city":"Secret Town","postal_code":"SW1A"}]}"#,
        );
        assert!(
            e.starts_with(
                "invalid input: `addresses[0].postal_code` is not valid here; expected u32"
            ),
            "{e}"
        );
        assert!(!e.contains("SW1A") && !e.contains("Secret"), "{e}");

        let e = error(r#"{"email":"a@b.org","roles":[],"id":"not-a-uuid-Ada"}"#);
        assert!(e.contains("`id`"), "{e}");
        assert!(!e.contains("Ada") && !e.contains("not-a-uuid"), "{e}");

        let e = error(r#"{"email":"a@b.org","roles":[],"tags":{"Ada Lovelace's diagnosis":300}}"#);
        assert!(e.contains("`tags.…`"), "{e}");
        assert!(!e.contains("Lovelace") && !e.contains("300"), "{e}");

        let e = error(r#"{"email":"a@b.org","roles":[],"emial":"x"}"#);
        assert!(
            e.contains("document has an unknown field `emial`; expected one of `email`"),
            "{e}"
        );
        let e = error(r#"{"email":"a@b.org","roles":[],"Ada Lovelace's diagnosis":1}"#);
        assert!(
            e.contains("document has an unknown field; expected one of `email`"),
            "{e}"
        );
        assert!(!e.contains("Lovelace"), "{e}");
        let e = error(r#"{"roles":[]}"#);
        assert!(
            e.contains("document lacks the required field `email`"),
            "{e}"
        );
        let e = error(r#"{"email":"Ada"#);
        assert!(e.contains("document is not valid JSON (line 1"), "{e}");
        assert!(!e.contains("Ada"), "{e}");
        let e = error(r#"{"email":"a@b.org","roles":[]} trailing"#);
        assert!(e.contains("document is not valid JSON"), "{e}");
    }

    #[test]
    fn valid_documents_parse() {
        let body: Body = parse_json(r#"{"email":"a@b.org","roles":["nurse"]}"#).expect("parses");
        assert_eq!(body.email, "a@b.org");
    }
}
