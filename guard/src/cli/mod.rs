//! The command line. Progress and status go to stderr, data to stdout.
//!
//! Exit codes: 0 success; 1 a check or command failed (for `doctor`: at least one FAIL);
//! 2 usage error (clap). `audit verify` and `report`: see `audit_cmd`.

use std::process::ExitCode;

use clap::Subcommand;

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
    Run(crate::agent::RunArgs),
    /// Capture events and print them as JSON lines (docs/event-schema.md); no rules.
    Record(crate::agent::RecordArgs),
    /// Check what this host supports (kernel, BTF, BPF LSM, cgroup v2, capabilities, Docker).
    Doctor,
    /// Audit log tools (`guard audit verify`).
    #[command(subcommand)]
    Audit(crate::audit_cmd::AuditCommand),
    /// Write a report (text, md, json, html) from the audit log.
    Report(crate::audit_cmd::ReportArgs),
    /// Lint rules files; lists every error and exits non-zero if there is one.
    Validate(crate::commands::validate::Args),
    /// Inspect the loaded rules.
    #[command(subcommand)]
    Rules(crate::commands::RulesCommand),
    /// Run rules offline on recorded events (JSON lines); no root needed.
    Replay(crate::commands::replay::Args),
    /// Run the response engine alone, taking Falco alerts on `POST /falco`.
    Respond(crate::respond_cmd::RespondArgs),
    /// Network quarantine tools (`guard quarantine lift <container>`, `list`).
    #[command(subcommand)]
    Quarantine(crate::respond_cmd::QuarantineCommand),
    /// Run a command under a Landlock ruleset derived from a policy's open and exec rules.
    Exec(crate::policy::landlock::Args),
    /// Configuration file tools (`guard config show`).
    #[command(subcommand)]
    Config(crate::config::ConfigCommand),
}

pub fn main() -> ExitCode {
    let parsed = match crate::config::parse_from(
        std::env::args_os().collect(),
        Some(std::path::Path::new(crate::config::DEFAULT_PATH)),
    ) {
        Ok(p) => p,
        Err(crate::config::ConfigError::Usage(e)) => e.exit(),
        Err(e) => {
            eprintln!("guard: error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Command::Config(crate::config::ConfigCommand::Show(_)) = &parsed.cli.command {
        return match crate::config::show(&parsed) {
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
        Command::Run(args) => crate::agent::run(args),
        Command::Record(args) => crate::agent::record(args),
        Command::Doctor => crate::doctor::run(),
        Command::Audit(crate::audit_cmd::AuditCommand::Verify(a)) => crate::audit_cmd::verify(a),
        Command::Report(a) => crate::audit_cmd::report(a),
        Command::Validate(args) => crate::commands::validate::run(args),
        Command::Rules(crate::commands::RulesCommand::List(args)) => {
            crate::commands::rules_list::run(args)
        }
        Command::Replay(args) => crate::commands::replay::run(args),
        Command::Respond(a) => crate::respond_cmd::respond(a),
        Command::Quarantine(c) => crate::respond_cmd::quarantine(c),
        Command::Exec(args) => crate::policy::landlock::run(args),
        // Handled above (it needs the matches, not only the arguments).
        Command::Config(crate::config::ConfigCommand::Show(_)) => Ok(ExitCode::SUCCESS),
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
