//! `switchyard audit verify|report`: arguments, output and exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::{report_with, verify_with, VerifyOptions};

/// Exit code: the chain is broken (tampering or damage), or the report's chain is.
const EXIT_BROKEN: u8 = 1;
/// Exit code: the files or the key could not be read.
const EXIT_UNREADABLE: u8 = 2;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check audit files as one hash chain from seq 1 (or --from-seq): exit 0 if intact
    /// (warnings aside), else name the first bad line and exit 1. Files may be given in any
    /// order (rotated ones included).
    Verify(AuditVerifyArgs),
    /// Per class and upstream, how many requests went where; verifies the chain first and
    /// exits 1 (after printing) if it is broken.
    Report(AuditReportArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// The audit files: the current one and any rotated ones.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Environment variable holding the HMAC key (`audit.key`) of a keyed log.
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// The seq the chain is expected to start at, when older files were deleted
    /// (`audit.max_files`) or archived: the first record must have exactly this seq. Without
    /// it a chain must start at seq 1. Take it from a record kept outside the log (one more
    /// than the last seq of the files archived or verified before they were deleted), not
    /// from the files themselves.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub from_seq: Option<u64>,
}

#[derive(Debug, Args)]
pub struct AuditReportArgs {
    /// The audit files: the current one and any rotated ones.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Environment variable holding the HMAC key (`audit.key`) of a keyed log.
    #[arg(long, value_name = "VAR")]
    pub key_env: Option<String>,
    /// The seq the chain is expected to start at, when older files were deleted
    /// (`audit.max_files`) or archived: the first record must have exactly this seq. Without
    /// it a chain must start at seq 1. Take it from a record kept outside the log (one more
    /// than the last seq of the files archived or verified before they were deleted), not
    /// from the files themselves.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub from_seq: Option<u64>,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What a command prints, and how it exits.
#[derive(Debug, Default)]
pub struct CommandOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: u8,
}

impl CommandOutput {
    fn failed(code: u8, message: impl std::fmt::Display) -> CommandOutput {
        CommandOutput {
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
            code,
        }
    }

    /// Print to stdout and stderr, and give the exit code.
    pub fn print(self) -> ExitCode {
        print!("{}", self.stdout);
        eprint!("{}", self.stderr);
        ExitCode::from(self.code)
    }
}

/// The key in `var`, as its bytes (the same bytes `audit.key = "${VAR}"` gives the gateway).
fn key_from_env(var: Option<&str>) -> Result<Option<Vec<u8>>, String> {
    let Some(var) = var else { return Ok(None) };
    match std::env::var_os(var) {
        Some(value) if !value.is_empty() => Ok(Some(value.into_encoded_bytes())),
        _ => Err(format!(
            "--key-env {var}: the environment variable is not set"
        )),
    }
}

impl AuditCommand {
    pub fn run(&self) -> CommandOutput {
        match self {
            AuditCommand::Verify(args) => {
                let key = match key_from_env(args.key_env.as_deref()) {
                    Ok(key) => key,
                    Err(e) => return CommandOutput::failed(EXIT_UNREADABLE, e),
                };
                let options = VerifyOptions {
                    key: key.as_deref(),
                    from_seq: args.from_seq,
                };
                match verify_with(&args.files, &options) {
                    Ok(summary) => CommandOutput {
                        stdout: summary.to_string(),
                        ..CommandOutput::default()
                    },
                    Err(e @ super::VerifyError::Bad { .. }) => {
                        CommandOutput::failed(EXIT_BROKEN, e)
                    }
                    Err(e) => CommandOutput::failed(EXIT_UNREADABLE, e),
                }
            }
            AuditCommand::Report(args) => {
                let key = match key_from_env(args.key_env.as_deref()) {
                    Ok(key) => key,
                    Err(e) => return CommandOutput::failed(EXIT_UNREADABLE, e),
                };
                let options = VerifyOptions {
                    key: key.as_deref(),
                    from_seq: args.from_seq,
                };
                let report = match report_with(&args.files, &options) {
                    Ok(report) => report,
                    Err(e) => return CommandOutput::failed(EXIT_UNREADABLE, e),
                };
                let stdout = if args.json {
                    match serde_json::to_string_pretty(&report) {
                        Ok(json) => json + "\n",
                        Err(e) => return CommandOutput::failed(EXIT_UNREADABLE, e),
                    }
                } else {
                    report.to_string()
                };
                let (stderr, code) = match &report.verify_error {
                    None => (String::new(), 0),
                    Some(e) => (format!("error: chain not verified: {e}\n"), EXIT_BROKEN),
                };
                CommandOutput {
                    stdout,
                    stderr,
                    code,
                }
            }
        }
    }
}
