//! `guard replay EVENTS.jsonl`: runs the rules on recorded events (the JSON-lines schema of
//! `docs/event-schema.md`) and prints the alerts. No root, no kernel.

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::ExitCode,
};

use crate::{
    alert::Alert,
    model::ModelError,
    rules::{Engine, Matcher, output::text_line},
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events as JSON lines; `-` reads stdin.
    pub events: PathBuf,
    /// Rules files or directories, loaded in order (repeatable). Default: $GUARD_RULES, else
    /// /etc/falco/falco_rules.yaml if present, then ./policies or /etc/guard/policies.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Output format: `json` (Falco's alert JSON, one per line) or `text`.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    pub format: String,
    /// Host name to put in alerts (default: this host's).
    #[arg(long)]
    pub hostname: Option<String>,
}

/// Evaluates every event of `input`, calling `on_alert` for each alert. Stops at the first bad
/// line, with its line number.
pub fn replay(
    engine: &Engine,
    input: impl BufRead,
    mut on_alert: impl FnMut(Alert),
) -> Result<u64, ModelError> {
    let mut m = Matcher::default();
    let mut count = 0u64;
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        count += 1;
        let ev = crate::model::parse_line(&line, count)
            .map_err(|msg| ModelError::Line { line: i + 1, msg })?;
        for a in engine.alerts(&ev, &mut m) {
            on_alert(a);
        }
    }
    Ok(count)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let engine = super::load_engine(&args.rules, args.hostname.clone())?;
    let input: Box<dyn BufRead> = if args.events.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(&args.events)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.events.display()))?;
        Box::new(BufReader::new(f))
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut alerts = 0u64;
    let mut write_err = None;
    let result = replay(&engine, input, |a| {
        alerts += 1;
        let line = if args.format == "text" {
            text_line(&a)
        } else {
            serde_json::to_string(&a).unwrap_or_default()
        };
        if let Err(e) = writeln!(out, "{line}") {
            write_err.get_or_insert(e);
        }
    });
    if let Some(e) = write_err
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(e.into());
    }
    let events = result.map_err(|e| anyhow::anyhow!("{}: {e}", args.events.display()))?;
    eprintln!("{events} events, {alerts} alerts");
    Ok(ExitCode::SUCCESS)
}
