//! Logging setup: `tracing` to stdout through a non-blocking writer, human or JSON.

use std::io::IsTerminal;

use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

/// The AWS SDK crates log every credential lookup at `info` (access key ids included); they
/// speak at `warn` unless `log.level` names them.
const QUIET_DEPENDENCIES: &str =
    "aws_config=warn,aws_smithy_runtime=warn,aws_smithy_http_client=warn";

/// `log.level` plus the quieted dependencies it does not mention.
fn directives(level: &str) -> String {
    if level.contains("aws_") {
        level.to_owned()
    } else {
        format!("{level},{QUIET_DEPENDENCIES}")
    }
}

/// Install the global subscriber. Keep the guard alive: dropping it flushes the log.
/// `RUST_LOG`, when set, overrides `log.level`.
pub fn init(log: &Log) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(directives(&log.level)))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(writer);
    let result = match log.format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging was already set up: {e}");
    }
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_crates_are_quiet_unless_named() {
        assert_eq!(
            directives("info"),
            "info,aws_config=warn,aws_smithy_runtime=warn,aws_smithy_http_client=warn"
        );
        assert_eq!(directives("info,aws_config=debug"), "info,aws_config=debug");
        assert!(EnvFilter::try_new(directives("switchyard=debug,warn")).is_ok());
    }
}
