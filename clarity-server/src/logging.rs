//! Structured logs on standard error, in UTC, written by a thread of their
//! own: a request hands its log line over and goes on, instead of writing
//! it to standard error under the writer's lock itself. No line is dropped:
//! when the hand-over queue is full, the request waits for room.

use clarity_core::config::{LogConfig, LogFormat};
use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines waiting for the log thread at most before callers wait.
const QUEUED_LINES: usize = 65_536;

/// Installs the global subscriber and returns the guard of its log thread:
/// keep it until the process ends, its drop writes what is queued. Safe to
/// call more than once (later calls install nothing and return `None`).
pub(crate) fn init(config: &LogConfig) -> clarity_core::Result<Option<WorkerGuard>> {
    let filter = EnvFilter::try_new(&config.level)
        .map_err(|_| clarity_core::Error::config("log.level", "is not a valid level or filter"))?;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("clarity-log")
        .finish(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    let json = match config.format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => !std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // An already installed subscriber (tests) is fine.
    Ok(result.is_ok().then_some(guard))
}
