//! Learning a workload's policy from what it did (docs/policies.md, "Rollout").
//!
//! - [`summary`]: `guard run` keeps, per container, a bounded summary of executed binaries,
//!   written paths, sensitive reads and connect destinations, and writes it into the audit log
//!   every minute (`workload_summary` records).
//! - [`policy`]: summaries of the selected workload over a window become a `- policy:` item in
//!   detect mode (`guard policy learn`).
//! - this module: reading the summaries from the audit log, or building them from recorded
//!   events (`guard record` output), with `file:line` diagnostics for bad input.

pub mod policy;
pub mod summary;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    audit::record::{Payload, Record},
    yaml::{Diagnostic, Pos},
};
pub use policy::{Inputs, Observed, Selector};
pub use summary::{Sensitive, Summaries};

/// The window: summaries whose events lie entirely within `[from, to]` (ns) are used.
#[derive(Debug, Clone, Copy, Default)]
pub struct Window {
    pub from: Option<i64>,
    pub to: Option<i64>,
}

impl Window {
    fn holds(&self, from: i64, to: i64) -> bool {
        self.from.is_none_or(|f| from >= f) && self.to.is_none_or(|t| to <= t)
    }
}

fn diag(file: &Path, line: u64, msg: impl Into<String>) -> Diagnostic {
    let file: Arc<str> = file.display().to_string().into();
    let pos = Pos {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        col: u32::from(line > 0),
    };
    Diagnostic::error(&file, pos, msg)
}

/// Reads lines of `file`, calling `each(line_number, text)`; blank lines are skipped.
fn each_line(
    file: &Path,
    mut each: impl FnMut(u64, &str) -> Result<(), Diagnostic>,
) -> Result<(), Diagnostic> {
    let f = std::fs::File::open(file).map_err(|e| diag(file, 0, format!("cannot open: {e}")))?;
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|e| diag(file, n, format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        each(n, &line)?;
    }
    Ok(())
}

/// The summaries of the workloads `sel` selects, from audit log files (a directory expands to
/// its log files in chain order).
pub fn from_audit(
    paths: &[PathBuf],
    sel: &Selector,
    window: Window,
) -> Result<Observed, Diagnostic> {
    let (files, _) = crate::audit::verify::expand_paths(paths).map_err(|e| {
        diag(
            paths.first().map_or(Path::new("-"), |p| p),
            0,
            e.to_string(),
        )
    })?;
    if files.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(diag(
            Path::new(&names.join(", ")),
            0,
            "no audit files (audit-*.jsonl) found; pass the agent's --audit-dir, or recorded events",
        ));
    }
    let mut o = Observed::default();
    for file in &files {
        each_line(file, |n, line| {
            let r: Record = serde_json::from_str(line).map_err(|e| {
                diag(
                    file,
                    n,
                    format!("not an audit record ({e}); is this an audit log (docs/audit.md)?"),
                )
            })?;
            let Payload::WorkloadSummary(s) = &r.payload else {
                return Ok(());
            };
            let t = |v: &str| {
                crate::rfc3339::parse(v)
                    .ok_or_else(|| diag(file, n, format!("workload_summary: bad time {v:?}")))
            };
            if !window.holds(t(&s.from)?, t(&s.to)?) || !sel.matches(s) {
                return Ok(());
            }
            o.add(s)
                .map_err(|e| diag(file, n, format!("workload_summary: {e}")))
        })?;
    }
    Ok(o)
}

/// The same from recorded events (JSON lines of `guard record`, docs/event-schema.md): they go
/// through the agent's summary code, with its bounds.
pub fn from_events(
    files: &[PathBuf],
    sel: &Selector,
    window: Window,
    sensitive: &Sensitive,
) -> Result<Observed, Diagnostic> {
    let mut s = Summaries::new(sensitive.clone());
    let mut seen = 0u64;
    for file in files {
        each_line(file, |n, line| {
            let ev = crate::model::parse_line(line, n).map_err(|e| {
                diag(
                    file,
                    n,
                    format!(
                        "not an event ({e}); pass events from `guard record` (docs/event-schema.md), or an audit log with --audit-dir"
                    ),
                )
            })?;
            seen += 1;
            let t = i64::try_from(ev.time).unwrap_or(i64::MAX);
            if window.holds(t, t) {
                s.observe(&ev);
            }
            Ok(())
        })?;
    }
    let mut o = Observed::default();
    for r in s.take().iter().filter(|r| sel.matches(r)) {
        o.add(r).map_err(|e| diag(Path::new("-"), 0, e))?;
    }
    if seen == 0 {
        return Err(diag(
            files.first().map_or(Path::new("-"), |p| p),
            0,
            "no events in the input",
        ));
    }
    Ok(o)
}

#[cfg(test)]
mod tests;
