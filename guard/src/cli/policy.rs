//! `guard policy learn`: prints a detect-mode policy for a workload, built from the summaries
//! `guard run` wrote into the audit log (or from recorded events). docs/policies.md, "Rollout".

use std::{io::Write, path::PathBuf, process::ExitCode};

use anyhow::Context;

use super::audit::DEFAULT_AUDIT_DIR;
use crate::learn::{self, Inputs, Selector, Sensitive, Window};

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Print a `- policy:` item (detect mode) learned from what a workload did.
    Learn(LearnArgs),
}

#[derive(Debug, clap::Args)]
pub struct LearnArgs {
    /// The workload: a policy's `workload:` mapping (`{image: "nginx:*"}`) or
    /// `KEY=GLOB[,KEY=GLOB…]` with keys image, name, k8s_namespace, labels.NAME.
    #[arg(long, value_name = "SELECTOR")]
    pub workload: String,
    /// Start of the window: RFC 3339, a date (2026-01-02, UTC) or an age (90m, 24h, 7d).
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window (same forms).
    #[arg(long)]
    pub to: Option<String>,
    /// Audit directory holding the summaries (used when no EVENTS files are given).
    #[arg(long, default_value = DEFAULT_AUDIT_DIR, conflicts_with = "events")]
    pub audit_dir: PathBuf,
    /// Recorded events (JSON lines of `guard record`) instead of the audit log.
    #[arg(value_name = "EVENTS.jsonl")]
    pub events: Vec<PathBuf>,
    /// Rules files or directories whose sensitive-file lists give `deny_read` (default: as
    /// `guard run`).
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Policy name (default: `learned-` and the selector's first value).
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(cmd: PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Learn(a) => learn_cmd(a),
    }
}

fn learn_cmd(a: LearnArgs) -> anyhow::Result<ExitCode> {
    let sel = match Selector::parse(&a.workload) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("guard: error: --workload {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let now = now_ns();
    let when = |s: &Option<String>, flag: &str| -> anyhow::Result<Option<i64>> {
        s.as_deref()
            .map(|v| {
                crate::report::time::parse_when(v, now).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
            })
            .transpose()
    };
    let window = Window {
        from: when(&a.from, "--from")?,
        to: when(&a.to, "--to")?,
    };
    if let (Some(f), Some(t)) = (window.from, window.to)
        && f > t
    {
        anyhow::bail!("--from is after --to");
    }
    let rule_paths = if a.rules.is_empty() {
        crate::reload::default_rule_paths()
    } else {
        a.rules.clone()
    };
    let sensitive = Sensitive::from_rules(&rule_paths);
    let (observed, source) = if a.events.is_empty() {
        let paths = vec![a.audit_dir.clone()];
        let o = learn::from_audit(&paths, &sel, window);
        (o, a.audit_dir.display().to_string())
    } else {
        let o = learn::from_events(&a.events, &sel, window, &sensitive);
        let names: Vec<String> = a.events.iter().map(|p| p.display().to_string()).collect();
        (o, names.join(", "))
    };
    let observed = match observed {
        Ok(o) => o,
        Err(d) => {
            eprintln!("{d}");
            return Ok(ExitCode::from(1));
        }
    };
    if observed.records == 0 {
        eprintln!(
            "guard: error: no summary of a workload matching {:?} in {source}{}; check the selector \
             against `guard report` (workloads), and that `guard run` ran with the audit log on \
             (summaries are written every {} s)",
            a.workload,
            match (&a.from, &a.to) {
                (None, None) => String::new(),
                _ => " within --from/--to".into(),
            },
            learn::summary::FLUSH_EVERY.as_secs()
        );
        return Ok(ExitCode::from(1));
    }
    let name = a.name.clone().unwrap_or_else(|| sel.default_name());
    let text = learn::policy::render(
        &observed,
        &Inputs {
            name: &name,
            selector: &sel,
            sensitive: &sensitive,
            source: &source,
        },
    );
    learn::policy::check(&text)
        .map_err(|e| anyhow::anyhow!("internal: the learned policy does not validate:\n{e}"))?;
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .context("write the policy")?;
    Ok(ExitCode::SUCCESS)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}
