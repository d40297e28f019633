//! Reading a new password for a command: from a file, at a prompt that does
//! not echo (confirmed by typing it twice), or from standard input when that
//! is not a terminal (scripts).

use std::io::IsTerminal;
use std::path::Path;

use clarity_core::crypto::SecretString;
use clarity_core::{Error, Result};
use zeroize::Zeroizing;

/// The password for `account`: the first line of `file` when given (a
/// secret file, under the same rule as the keyring), else typed twice at a
/// prompt on the terminal with echo off, else the first line of standard
/// input. A trailing `\r\n` or `\n` is not part of it.
///
/// # Errors
/// [`Error::InvalidInput`] when the two entries differ, nothing was given,
/// or standard input cannot be read; [`Error::Key`] when `file` fails the
/// secret-file rule or cannot be read.
pub(crate) fn new_password(account: &str, file: Option<&Path>) -> Result<SecretString> {
    let line = match file {
        Some(path) => {
            let bytes = clarity_core::crypto::read_secret_file("--password-file", path)?;
            let text = std::str::from_utf8(&bytes)
                .map_err(|_| Error::invalid("--password-file: the password is not UTF-8 text"))?;
            Zeroizing::new(first_line(text).to_string())
        }
        None if std::io::stdin().is_terminal() => prompt_twice(account)?,
        None => {
            let mut line = Zeroizing::new(String::new());
            std::io::stdin().read_line(&mut line).map_err(|e| {
                Error::invalid(format!("cannot read the password from standard input: {e}"))
            })?;
            Zeroizing::new(first_line(&line).to_string())
        }
    };
    if line.is_empty() {
        return Err(Error::invalid(
            "no password given: type it at the prompt, pipe it on standard input, or name a file with --password-file",
        ));
    }
    Ok(SecretString::new(line.as_str()))
}

/// The text up to the first line break.
fn first_line(text: &str) -> &str {
    text.split(['\n'])
        .next()
        .unwrap_or_default()
        .trim_end_matches('\r')
}

/// Asks twice on the terminal, echo off.
fn prompt_twice(account: &str) -> Result<Zeroizing<String>> {
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| Error::invalid(format!("cannot read the password at the prompt: {e}")))
    };
    let first = ask(&format!("New password for {account}: "))?;
    let second = ask("Type it again: ")?;
    if *first != *second {
        return Err(Error::invalid(
            "the two passwords differ; run the command again",
        ));
    }
    Ok(first)
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn the_first_line_without_its_line_break() {
        assert_eq!(first_line("pass phrase\n"), "pass phrase");
        assert_eq!(first_line("pass phrase\r\nsecond"), "pass phrase");
        assert_eq!(first_line("no newline"), "no newline");
        assert_eq!(first_line(""), "");
    }
}
