//! What a `clarity` command prints, in one place: its result on standard
//! output, as the text an operator reads (`--format text`, the default) or
//! as exactly one JSON document (`--format json`), and its error on
//! standard error in the same format. Progress bars, prompts and notices go
//! to standard error in both formats, so standard output carries the result
//! alone.
//!
//! Commands build an [`Output`] and never print their result themselves:
//! a new command cannot forget the JSON form.

use std::io::Write;
use std::process::ExitCode;

use clarity_core::{Error, Result};
use serde::Serialize;
use zeroize::Zeroizing;

/// `--format`: how a command prints its result and its error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// Lines for a person to read.
    #[default]
    Text,
    /// One JSON document on standard output; an error as one JSON object,
    /// `{"error": {"code", "message"}}`, on standard error.
    Json,
}

/// A command's result, ready in both formats. Both are zeroed when dropped:
/// some results (a reset code, a client secret, a setup code) are secrets
/// printed once by design.
pub(crate) struct Output {
    text: Zeroizing<String>,
    json: Zeroizing<String>,
    /// Printed, and the command still fails with it (a failed verification
    /// prints its report and exits non-zero).
    failure: Option<Error>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The printed forms may hold a secret.
        f.debug_struct("Output")
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

/// Counts what is written, so that a secret can be written once into a
/// buffer of its final size: a buffer that grows leaves copies of what it
/// held in freed memory, where zeroing on drop cannot reach them.
#[derive(Default)]
struct Measure(usize);

impl std::io::Write for Measure {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl std::fmt::Write for Measure {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Zeroizing<String>> {
    let failed =
        |e: serde_json::Error| Error::internal(format!("cannot encode the result as JSON: {e}"));
    let mut size = Measure::default();
    serde_json::to_writer(&mut size, value).map_err(failed)?;
    let mut bytes = Zeroizing::new(Vec::with_capacity(size.0));
    serde_json::to_writer(&mut *bytes, value).map_err(failed)?;
    // serde_json writes UTF-8 only; the check copies nothing.
    let checked = std::str::from_utf8(&bytes)
        .map_err(|_| Error::internal("the JSON encoding is not UTF-8"))?;
    let mut json = Zeroizing::new(String::with_capacity(checked.len()));
    json.push_str(checked);
    Ok(json)
}

/// Formats text that holds a secret (`format_args!`) into a zeroed-on-drop
/// string allocated once, at its final size.
pub(crate) fn secret_text(args: std::fmt::Arguments<'_>) -> Zeroizing<String> {
    use std::fmt::Write;
    let mut size = Measure::default();
    // Writing to a `Measure` or a `String` cannot fail.
    let _ = std::fmt::Write::write_fmt(&mut size, args);
    let mut text = Zeroizing::new(String::with_capacity(size.0));
    let _ = text.write_fmt(args);
    text
}

impl Output {
    /// A result printed as `text` (complete lines, as given), or as `value`
    /// in JSON. Text that holds a secret comes from [`secret_text`].
    pub(crate) fn new<T: Serialize + ?Sized>(
        value: &T,
        text: impl Into<Zeroizing<String>>,
    ) -> Result<Output> {
        Ok(Output {
            text: text.into(),
            json: encode(value)?,
            failure: None,
        })
    }

    /// A result that is one JSON object in both formats.
    pub(crate) fn json<T: Serialize + ?Sized>(value: &T) -> Result<Output> {
        let json = encode(value)?;
        Ok(Output {
            text: secret_text(format_args!("{}\n", json.as_str())),
            json,
            failure: None,
        })
    }

    /// A list: one JSON object per line as text (what the list commands
    /// have always printed), one JSON array in JSON.
    pub(crate) fn lines<T: Serialize>(items: &[T]) -> Result<Output> {
        let mut text = Zeroizing::new(String::new());
        let mut json = Zeroizing::new(String::from("["));
        for (n, item) in items.iter().enumerate() {
            let line = encode(item)?;
            text.push_str(&line);
            text.push('\n');
            if n > 0 {
                json.push(',');
            }
            json.push_str(&line);
        }
        json.push(']');
        Ok(Output {
            text,
            json,
            failure: None,
        })
    }

    /// NDJSON (the FHIR export of `audit export`): its lines as text, one
    /// JSON array of them in JSON.
    pub(crate) fn ndjson(body: String) -> Output {
        let text = Zeroizing::new(body);
        let mut json = Zeroizing::new(String::with_capacity(text.len() + 2));
        json.push('[');
        for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            if n > 0 {
                json.push(',');
            }
            json.push_str(line);
        }
        json.push(']');
        Output {
            text,
            json,
            failure: None,
        }
    }

    /// Nothing on standard output, in either format (`serve`, which runs
    /// until stopped; `completions` and `man`, which print their own).
    pub(crate) fn nothing() -> Output {
        Output {
            text: Zeroizing::new(String::new()),
            json: Zeroizing::new(String::new()),
            failure: None,
        }
    }

    /// This result is printed, then the command fails with `err`.
    pub(crate) fn failing(mut self, err: Error) -> Output {
        self.failure = Some(err);
        self
    }

    /// Prints the result on standard output in `format`.
    ///
    /// # Errors
    /// Standard output cannot be written; or the error this result fails
    /// with ([`Output::failing`]).
    pub(crate) fn print(self, format: Format) -> Result<()> {
        let (body, end) = match format {
            Format::Text => (&self.text, ""),
            // Nothing is nothing in JSON too (`serve`).
            Format::Json if self.json.is_empty() => (&self.json, ""),
            // Written apart: pushing the newline could move (and so copy) a secret.
            Format::Json => (&self.json, "\n"),
        };
        let mut out = std::io::stdout().lock();
        out.write_all(body.as_bytes())
            .and_then(|()| out.write_all(end.as_bytes()))
            .and_then(|()| out.flush())
            .map_err(|e| Error::internal(format!("cannot write to standard output: {e}")))?;
        match self.failure {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

/// Prints a failed command's error on standard error in `format`:
/// `clarity: error: MESSAGE`, or `{"error":{"code":CODE,"message":MESSAGE}}`
/// on one line. Codes are [`clarity_core::ErrorKind::as_str`] names (those
/// of the HTTP API's error bodies), or `usage` for a command line that does
/// not parse.
pub(crate) fn print_error(format: Format, code: &str, message: &str) {
    match format {
        Format::Text => eprintln!("clarity: error: {message}"),
        Format::Json => {
            let body = serde_json::json!({ "error": { "code": code, "message": message } });
            eprintln!("{body}");
        }
    }
}

/// The exit for a command line that does not parse: clap's own text, or in
/// JSON format the error object with clap's first line as its message.
/// `--help` and `--version` print as always. The exit code is clap's.
pub(crate) fn usage_error(err: &clap::Error, format: Format) -> ExitCode {
    let code = u8::try_from(err.exit_code()).unwrap_or(2);
    if format == Format::Text || !err.use_stderr() {
        // Nothing more can be said if the terminal is gone.
        let _ = err.print();
        return ExitCode::from(code);
    }
    let rendered = err.to_string();
    let message = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    print_error(format, "usage", message);
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_lines_as_text_and_an_array_as_json() {
        let items = [serde_json::json!({"a": 1}), serde_json::json!({"b": [2]})];
        let out = Output::lines(&items).expect("encodes");
        assert_eq!(out.text.as_str(), "{\"a\":1}\n{\"b\":[2]}\n");
        assert_eq!(out.json.as_str(), "[{\"a\":1},{\"b\":[2]}]");
        let empty = Output::lines::<u8>(&[]).expect("encodes");
        assert_eq!((empty.text.as_str(), empty.json.as_str()), ("", "[]"));
    }

    #[test]
    fn a_json_result_is_the_same_line_in_both_formats() {
        let out = Output::json(&serde_json::json!({"id": 7})).expect("encodes");
        assert_eq!(out.text.as_str(), "{\"id\":7}\n");
        assert_eq!(out.json.as_str(), "{\"id\":7}");
    }

    #[test]
    fn ndjson_is_one_array_as_json() {
        let out = Output::ndjson("{\"a\":1}\n{\"b\":2}\n".to_string());
        assert_eq!(out.text.as_str(), "{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(out.json.as_str(), "[{\"a\":1},{\"b\":2}]");
        assert_eq!(Output::ndjson(String::new()).json.as_str(), "[]");
    }

    #[test]
    fn secrets_are_written_once_at_their_final_size() {
        let text = secret_text(format_args!("code: {}\n", "1f3a-9c0d"));
        assert_eq!((text.as_str(), text.capacity()), ("code: 1f3a-9c0d\n", 16));
        let json = encode(&serde_json::json!({"code": "1f3a"})).expect("encodes");
        assert_eq!(json.len(), json.capacity());
    }
}
