//! `guard audit verify` and `guard report`: the CLI side of the audit log.
//!
//! Exit codes: `audit verify`: 0 the chain (and tail, when a checkpoint exists) is intact;
//! 1 a record is broken (edited, deleted, reordered, truncated, malformed); 3 the files could not
//! be read. `report`: 0 written; 1 malformed audit input or I/O error. Both: 2 usage error.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;

use crate::audit::{VerifyOptions, verify_paths};
use crate::report::{self, ReportFormat, ReportOptions};

pub const DEFAULT_AUDIT_DIR: &str = "/var/lib/guard/audit";

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain and its tail against the checkpoint.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Audit directories or files, in chain order (default: the agent's audit directory).
    #[arg(value_name = "FILES")]
    pub paths: Vec<PathBuf>,
    /// Checkpoint file to check the tail against (default: audit.checkpoint next to the log).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Ignore the checkpoint (a truncated tail then goes unnoticed).
    #[arg(long, conflicts_with = "checkpoint")]
    pub no_checkpoint: bool,
    /// Accept a chain that starts after seq 1 (when verifying some files of a longer log).
    #[arg(long)]
    pub partial: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Audit directories or files (default: --audit-dir).
    #[arg(value_name = "FILES")]
    pub paths: Vec<PathBuf>,
    /// Audit directory, used when no FILES are given.
    #[arg(long, default_value = DEFAULT_AUDIT_DIR)]
    pub audit_dir: PathBuf,
    /// Start: RFC 3339, a date (2026-01-02, UTC) or an age (90m, 24h, 7d).
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive), same forms as --from.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this workload: a glob over container name, id, image, k8s namespace or pod.
    #[arg(long)]
    pub workload: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
    /// Write to this file instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![PathBuf::from(DEFAULT_AUDIT_DIR)]
    } else {
        args.paths
    };
    let opts = VerifyOptions {
        checkpoint: args.checkpoint,
        no_checkpoint: args.no_checkpoint,
        allow_partial: args.partial,
    };
    let report = match verify_paths(&paths, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("guard: audit verify: {e}");
            return Ok(ExitCode::from(3));
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    match &report.failure {
        None => {
            eprintln!(
                "OK: {} records in {} files, seq {}..{}, head {}{}",
                report.records,
                report.files.len(),
                report.first_seq.unwrap_or(0),
                report.last_seq.unwrap_or(0),
                report.head_hash.as_deref().unwrap_or("-"),
                match &report.checkpoint {
                    Some(c) => format!(", tail matches checkpoint {}", c.display()),
                    None => String::new(),
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(f) => {
            eprintln!("FAILED: {f}");
            if report.records > 0 {
                eprintln!("(the {} records before it verify)", report.records);
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let now = now_ns();
    let when = |s: &Option<String>, flag: &str| -> anyhow::Result<Option<i64>> {
        s.as_deref()
            .map(|v| report::time::parse_when(v, now).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
            .transpose()
    };
    let opts = ReportOptions {
        from: when(&args.from, "--from")?,
        to: when(&args.to, "--to")?,
        workload: args.workload,
        now,
    };
    let paths = if args.paths.is_empty() {
        vec![args.audit_dir]
    } else {
        args.paths
    };
    let r = report::generate(&paths, &opts)?;
    if !r.integrity.verified {
        eprintln!("warning: {}", r.integrity.detail);
    }
    let out = report::render(&r, args.format);
    match args.output {
        Some(p) => std::fs::write(&p, out).with_context(|| format!("write {}", p.display()))?,
        None => {
            use std::io::Write;
            let mut so = std::io::stdout().lock();
            so.write_all(out.as_bytes()).context("write report")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
