//! The command line: the clap definition and the dispatch; one module per subcommand (or
//! small group). Nothing below imports it. Progress and status go to stderr, data to stdout.
//!
//! Exit codes: 0 success; 1 a check or command failed (for `doctor`: at least one FAIL);
//! 2 usage error (clap). `audit verify` and `report`: see `audit`.

pub mod audit;
pub mod config_show;
pub mod doctor;
pub mod exec;
pub mod policy;
pub mod quarantine;
pub mod replay;
pub mod respond;
pub mod rules;
pub mod run;
pub mod validate;

use std::{ffi::OsString, path::Path, process::ExitCode};

use clap::Subcommand;

use crate::{
    config::{ConfigError, RecordArgs, RunArgs},
    rules::{Diagnostic, Engine, Loader},
};
use config_show::ConfigCommand;

#[derive(Debug, clap::Parser)]
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
    /// Run the agent: capture, evaluate rules, print and audit alerts.
    Run(RunArgs),
    /// Capture events and print them as JSON lines (docs/event-schema.md); no rules.
    Record(RecordArgs),
    /// Check what this host supports (kernel, BTF, BPF LSM, cgroup v2, capabilities, Docker,
    /// the CRI runtime).
    Doctor(doctor::DoctorArgs),
    /// Audit log tools (`guard audit verify`).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Write a report (text, md, json, html) from the audit log.
    Report(audit::ReportArgs),
    /// Lint rules files; lists every error and exits non-zero if there is one.
    Validate(validate::Args),
    /// Inspect the loaded rules.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Run rules offline on recorded events (JSON lines); no root needed.
    Replay(replay::Args),
    /// Run the response engine alone, taking Falco alerts on `POST /falco`.
    Respond(respond::RespondArgs),
    /// Network quarantine tools (`guard quarantine lift <container>`, `list`).
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Run a command under a Landlock ruleset derived from a policy's open and exec rules.
    Exec(exec::Args),
    /// Configuration file tools (`guard config show`).
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Internal: the agent's `/proc/<pid>/root` opener (started by `guard run`; see procroot.rs).
    #[command(name = "root-opener", hide = true)]
    RootOpener,
    /// Policy tools (`guard policy learn`).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
}

/// The command line with the config file applied (`crate::config`).
pub type Parsed = crate::config::Parsed<Cli>;

/// Parses `argv` (with the program name); for `run` and `config show`, applies the config file
/// (`default` is the path read when none is given and it exists).
pub fn parse_from(argv: Vec<OsString>, default: Option<&Path>) -> Result<Parsed, ConfigError> {
    crate::config::parse_from(argv, default)
}

pub fn main() -> ExitCode {
    let parsed = match parse_from(
        std::env::args_os().collect(),
        Some(Path::new(crate::config::DEFAULT_PATH)),
    ) {
        Ok(p) => p,
        Err(ConfigError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("guard: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config(ConfigCommand::Show(_)) = &parsed.cli.command {
        return match config_show::show(&parsed) {
            Ok(code) => code,
            Err(e) => {
                eprintln!("guard: error: {e:#}");
                ExitCode::from(1)
            }
        };
    }
    let cli = parsed.cli;
    init_logging(&cli.log);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Record(args) => run::record(args),
        Command::Doctor(a) => doctor::run(&a),
        Command::Audit(audit::AuditCommand::Verify(a)) => audit::verify(a),
        Command::Report(a) => audit::report(a),
        Command::Validate(args) => validate::run(args),
        Command::Rules(rules::RulesCommand::List(args)) => rules::run(args),
        Command::Replay(args) => replay::run(args),
        Command::Respond(a) => respond::respond(a),
        Command::Quarantine(c) => quarantine::quarantine(c),
        Command::Exec(args) => exec::run(args),
        Command::RootOpener => crate::procroot::serve().map(|()| ExitCode::SUCCESS),
        Command::Policy(c) => policy::run(c),
        // Handled above (it needs the matches, not only the arguments).
        Command::Config(ConfigCommand::Show(_)) => Ok(ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("guard: error: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Loads rules from `paths` (or the defaults); prints diagnostics to stderr.
/// Errors are fatal here: running with a partly loaded rule set would hide detections.
pub fn load_engine(
    paths: &[std::path::PathBuf],
    hostname: Option<String>,
) -> anyhow::Result<Engine> {
    load_engine_and_policies(paths, hostname).map(|(e, _)| e)
}

/// [`load_engine`], also returning the `- policy:` items found in the same files.
pub fn load_engine_and_policies(
    paths: &[std::path::PathBuf],
    hostname: Option<String>,
) -> anyhow::Result<(Engine, Vec<crate::policy::Policy>)> {
    let paths = if paths.is_empty() {
        crate::reload::default_rule_paths()
    } else {
        paths.to_vec()
    };
    if paths.is_empty() {
        anyhow::bail!(
            "no rules: pass --rules PATH, set GUARD_RULES, or run from a directory with policies/"
        );
    }
    let mut loader = Loader::new();
    let sink = crate::policy::register(&mut loader);
    for p in &paths {
        loader.add_path(p);
    }
    let (set, diags) = loader.finish();
    let errors = report(&diags, false);
    if errors > 0 {
        anyhow::bail!("{errors} error(s) in rules files; run `guard validate` for details");
    }
    let hostname = hostname.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into())
    });
    let policies = sink.lock().map(|v| v.clone()).unwrap_or_default();
    Ok((Engine::new(set, hostname), policies))
}

/// Prints diagnostics to stderr (warnings only if `warnings`); returns the error count.
fn report(diags: &[Diagnostic], warnings: bool) -> usize {
    let mut errors = 0;
    for d in diags {
        if d.is_error() {
            errors += 1;
        }
        if d.is_error() || warnings {
            eprintln!("{d}");
        }
    }
    errors
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

#[cfg(test)]
mod config_tests;

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// clap checks the definitions (types, defaults, conflicts) only at run time: a mistake
    /// would panic on every start.
    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["guard", "run", "--detect-only"]).expect("parse");
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(
            args.metrics_addr.0,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        let cli = Cli::try_parse_from(["guard", "run", "--metrics-addr", "off"]).expect("parse");
        let Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(args.metrics_addr.0, None);
        let e = Cli::try_parse_from(["guard", "run", "--metrics-addr", "nowhere"])
            .expect_err("bad address accepted");
        assert!(e.to_string().contains("ADDR:PORT"), "{e}");
    }
}
