//! The command line. Progress and status go to stderr, data to stdout.
//!
//! Exit codes: 0 success; 1 a check or command failed (for `doctor`: at least one FAIL);
//! 2 usage error (clap). `audit verify` and `report`: see `audit_cmd`.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "guard",
    version,
    about = "Runtime security engine for container hosts"
)]
pub struct Cli {
    /// Log filter for stderr (tracing's EnvFilter syntax), e.g. `info` or `guard=debug`.
    #[arg(long, global = true, env = "GUARD_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: capture events and print them as JSON lines on stdout.
    Run(RunArgs),
    /// Check what this host supports (kernel, BTF, BPF LSM, cgroup v2, capabilities, Docker).
    Doctor,
    /// Audit log tools (`guard audit verify`).
    #[command(subcommand)]
    Audit(crate::audit_cmd::AuditCommand),
    /// Write a report (text, md, json, html) from the audit log.
    Report(crate::audit_cmd::ReportArgs),
    /// Run the response engine alone, taking Falco alerts on `POST /falco`.
    Respond(crate::respond_cmd::RespondArgs),
    /// Network quarantine tools (`guard quarantine lift <container>`, `list`).
    #[command(subcommand)]
    Quarantine(crate::respond_cmd::QuarantineCommand),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// Never deny or kill: every decision is only reported.
    #[arg(long)]
    pub detect_only: bool,
    /// Ring-buffer size in bytes (rounded up to a power of two).
    #[arg(long, default_value_t = guard_ebpf::DEFAULT_RING_BYTES)]
    pub ring_bytes: u32,
    /// Deny every exec in this cgroup v2 directory (BPF LSM only). Repeatable.
    #[arg(long, value_name = "CGROUP_DIR")]
    pub deny_exec_cgroup: Vec<PathBuf>,
    /// Trace only this cgroup v2 directory instead of the whole host.
    #[arg(long, value_name = "CGROUP_DIR")]
    pub only_cgroup: Option<PathBuf>,
    /// Seconds between drop reports (a `drops` line on stdout when counts changed).
    #[arg(long, default_value_t = 5)]
    pub drop_report_secs: u64,
    /// Stop after this many events (for tests and scripts).
    #[arg(long)]
    pub max_events: Option<u64>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli.log);
    let result = match cli.command {
        Command::Run(args) => crate::agent::run(args),
        Command::Doctor => crate::doctor::run(),
        Command::Audit(crate::audit_cmd::AuditCommand::Verify(a)) => crate::audit_cmd::verify(a),
        Command::Report(a) => crate::audit_cmd::report(a),
        Command::Respond(a) => crate::respond_cmd::respond(a),
        Command::Quarantine(c) => crate::respond_cmd::quarantine(c),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guard: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
