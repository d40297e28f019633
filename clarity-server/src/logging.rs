//! Structured logs on standard error, in UTC.

use clarity_core::config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub(crate) fn init(config: &LogConfig) -> clarity_core::Result<()> {
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|_| clarity_core::Error::config("log.level", "is not a valid level or filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let result = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // An already installed subscriber (tests) is fine.
    drop(result);
    Ok(())
}
