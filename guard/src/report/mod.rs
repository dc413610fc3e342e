//! `guard report`: reads the audit log and summarises it (alerts, denies, actions, drops) and,
//! per detect-mode policy, what enforce mode would have done (the rollout view).
//!
//! The audit files are untrusted input: a malformed line is an error naming file and line; every
//! string taken from them is escaped by each renderer (see `escape`).

pub mod escape;
mod html;
pub mod learned;
mod render;
pub mod time;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs::File,
    io::{BufRead, BufReader},
    path::PathBuf,
};

use serde::Serialize;

use crate::{
    audit::{self, DecisionKind, Operation, Outcome, Payload, Record, VerifyOptions, Workload},
    respond::action::{ActionKind, UnknownAction},
};

pub use html::render_html;
pub use render::{render_json, render_markdown, render_text};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Md,
    Json,
    Html,
}

pub fn render(r: &Report, f: ReportFormat) -> String {
    match f {
        ReportFormat::Text => render_text(r),
        ReportFormat::Md => render_markdown(r),
        ReportFormat::Json => render_json(r),
        ReportFormat::Html => render_html(r),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}:{line}: {reason}", file.display())]
    Malformed {
        file: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(transparent)]
    Audit(#[from] audit::AuditError),
    #[error("no audit files found in {0}")]
    Empty(String),
    #[error("workload pattern {pattern:?}: {source}")]
    Workload {
        pattern: String,
        source: globset::Error,
    },
}

/// Report scope. Times are Unix nanoseconds; `workload` is a glob (`*`, `?`) matched against
/// container name, id, image, Kubernetes namespace and pod.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub workload: Option<String>,
    /// Stamped into the report; tests pass a fixed value.
    pub now: i64,
}

/// A record with where it came from.
pub struct Loaded {
    pub file: PathBuf,
    pub line: u64,
    pub time_ns: i64,
    pub record: Record,
}

/// Reads audit files (directories expand to their log files in chain order).
pub fn load(paths: &[PathBuf]) -> Result<Vec<Loaded>, ReportError> {
    let (files, _) = audit::verify::expand_paths(paths)?;
    if files.is_empty() {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(ReportError::Empty(names.join(", ")));
    }
    let mut out = Vec::new();
    for file in files {
        let f = File::open(&file).map_err(|e| audit::AuditError::Io {
            op: "open audit file",
            path: file.clone(),
            source: e,
        })?;
        let mut rd = BufReader::new(f);
        let mut buf = Vec::new();
        let mut line = 0u64;
        loop {
            buf.clear();
            let n = rd
                .read_until(b'\n', &mut buf)
                .map_err(|e| audit::AuditError::Io {
                    op: "read audit file",
                    path: file.clone(),
                    source: e,
                })?;
            if n == 0 {
                break;
            }
            line += 1;
            let body = buf.strip_suffix(b"\n").unwrap_or(&buf);
            let malformed = |reason: String| ReportError::Malformed {
                file: file.clone(),
                line,
                reason,
            };
            let record: Record = serde_json::from_slice(body)
                .map_err(|e| malformed(format!("not a valid audit record: {e}")))?;
            let time_ns = crate::rfc3339::parse(&record.time)
                .ok_or_else(|| malformed(format!("bad time {:?}", record.time)))?;
            if let Payload::Response(r) = &record.payload {
                response_action(&r.action).map_err(|e| malformed(e.to_string()))?;
            }
            out.push(Loaded {
                file: file.clone(),
                line,
                time_ns,
                record,
            });
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    pub from: Option<String>,
    pub to: Option<String>,
    pub first_record: Option<String>,
    pub last_record: Option<String>,
    /// The period the verdicts speak for, e.g. "7 days".
    pub span: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Integrity {
    pub verified: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AgentSummary {
    pub starts: u64,
    pub stops: u64,
    pub policy_loads: u64,
    pub response_loads: u64,
    /// Repairs and losses the writer reported at start.
    pub recovery: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertSummary {
    pub total: u64,
    pub by_rule: Vec<Count>,
    /// Most severe first.
    pub by_priority: Vec<Count>,
    pub by_workload: Vec<Count>,
    /// Chronological, `YYYY-MM-DDTHH:00Z`.
    pub by_hour: Vec<Count>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionRow {
    pub policy: String,
    pub op: String,
    pub target: String,
    pub workload: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DenySummary {
    pub total: u64,
    pub by_op: Vec<Count>,
    /// Grouped by policy, operation, target and workload; most frequent first (at most 50).
    pub top: Vec<DecisionRow>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ActionRow {
    pub action: String,
    pub planned: u64,
    pub dry_run: u64,
    pub done: u64,
    pub refused: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActionEvent {
    pub time: String,
    pub response: String,
    pub action: String,
    pub workload: String,
    pub detail: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ActionSummary {
    pub killed: u64,
    pub stopped: u64,
    pub paused: u64,
    pub quarantined: u64,
    pub failed: u64,
    pub refused: u64,
    pub by_action: Vec<ActionRow>,
    /// Done kill/stop/pause/quarantine actions (at most 50, newest last).
    pub disruptive: Vec<ActionEvent>,
    /// Failed actions with their error (at most 50).
    pub failures: Vec<ActionEvent>,
    /// Actions a safety rail refused, with why (at most 50).
    pub refusals: Vec<ActionEvent>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DropTotals {
    pub total: u64,
    pub ringbuf: Vec<Count>,
    pub outputs: Vec<Count>,
    pub audit: Vec<Count>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Example {
    pub time: String,
    pub what: String,
    pub target: String,
    pub workload: String,
    pub process: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyRollout {
    pub policy: String,
    pub would_deny: u64,
    /// Dry-run kill, stop, pause or quarantine actions under this detect-mode policy.
    pub would_kill: u64,
    /// Counts per `would_deny exec`, `would kill_container`, ...
    pub by_kind: Vec<Count>,
    /// First examples (at most 5).
    pub examples: Vec<Example>,
    pub binaries: Vec<String>,
    pub paths: Vec<String>,
    pub destinations: Vec<String>,
    pub workloads: Vec<String>,
    /// True when enforce mode would have denied or killed something.
    pub would_break: bool,
    /// "no would-deny in 7 days" or "would break: ...".
    pub verdict: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub sources: Vec<String>,
    pub workload_filter: Option<String>,
    pub period: Period,
    pub integrity: Integrity,
    /// Records in scope (after time and workload filters).
    pub records: u64,
    pub agent: AgentSummary,
    pub alerts: AlertSummary,
    pub denied: DenySummary,
    pub actions: ActionSummary,
    pub drops: DropTotals,
    pub rollout: Vec<PolicyRollout>,
    /// Learned detect-mode policies: what they would have denied since they were learned.
    pub learned: Vec<learned::LearnedPolicy>,
}

/// A response record's action: a kind, or `None` for `*` (the whole response was refused).
fn response_action(name: &str) -> Result<Option<ActionKind>, UnknownAction> {
    match name {
        "*" => Ok(None),
        _ => name.parse().map(Some),
    }
}

/// A `--workload` pattern: `*` and `?` are wildcards, everything else is literal, and the
/// whole string must match.
pub struct WorkloadGlob(globset::GlobMatcher);

impl WorkloadGlob {
    pub fn new(pat: &str) -> Result<Self, globset::Error> {
        let mut glob = String::with_capacity(pat.len());
        for (i, c) in pat.char_indices() {
            match c {
                // `**` means "any directories" to globset; here it is just `*`.
                '*' if pat[..i].ends_with('*') => {}
                '*' | '?' => glob.push(c),
                c => glob.push_str(&globset::escape(c.encode_utf8(&mut [0; 4]))),
            }
        }
        let g = globset::GlobBuilder::new(&glob)
            .backslash_escape(false)
            .build()?;
        Ok(Self(g.compile_matcher()))
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.0.is_match(s)
    }
}

fn sorted_counts(m: HashMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = m
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    v
}

fn map_counts(m: BTreeMap<String, u64>) -> Vec<Count> {
    sorted_counts(m.into_iter().collect())
}

const MAX_ROWS: usize = 50;
const MAX_EXAMPLES: usize = 5;
const MAX_DISTINCT: usize = 100;

#[derive(Default)]
struct RolloutAcc {
    would_deny: u64,
    would_kill: u64,
    by_kind: HashMap<String, u64>,
    examples: Vec<Example>,
    binaries: BTreeSet<String>,
    paths: BTreeSet<String>,
    destinations: BTreeSet<String>,
    workloads: BTreeSet<String>,
    /// (what, target, workload) -> count, for the verdict.
    breaks: HashMap<(String, String, String), u64>,
}

fn bounded_insert(set: &mut BTreeSet<String>, v: &str) {
    if set.len() < MAX_DISTINCT && !v.is_empty() {
        set.insert(v.to_string());
    }
}

/// The process's executable when it is a path. `exe` falls back to the command name when the
/// kernel had no path (e.g. a decision taken after exec): a name is not a binary, and listing
/// `true` next to `/bin/true` would double-count it in the rollout view.
fn binary_path(p: &audit::ProcessInfo) -> Option<&str> {
    p.exe.as_deref().filter(|e| e.starts_with('/'))
}

fn process_text(p: &audit::ProcessInfo) -> String {
    let mut s = String::new();
    if let Some(c) = p.cmdline.as_deref().or(p.exe.as_deref()) {
        s.push_str(c);
    }
    if let Some(pid) = p.pid {
        s.push_str(&format!(" (pid {pid})"));
    }
    s
}

/// Builds the report from loaded records. `sources` and `integrity` are passed through.
pub fn build(
    records: &[Loaded],
    opts: &ReportOptions,
    sources: Vec<String>,
    integrity: Integrity,
) -> Result<Report, ReportError> {
    let workload = match &opts.workload {
        None => None,
        Some(pat) => Some(
            WorkloadGlob::new(pat).map_err(|source| ReportError::Workload {
                pattern: pat.clone(),
                source,
            })?,
        ),
    };
    let wl_ok = |w: &Workload| match &workload {
        None => true,
        Some(g) => g.is_match(&w.label()) || w.identifiers().iter().any(|s| g.is_match(s)),
    };
    let in_time = |t: i64| opts.from.is_none_or(|f| t >= f) && opts.to.is_none_or(|to| t < to);

    let mut agent = AgentSummary::default();
    let mut alerts = AlertSummary::default();
    let (mut by_rule, mut by_prio, mut by_wl) = (HashMap::new(), BTreeMap::new(), HashMap::new());
    let mut by_hour: BTreeMap<String, u64> = BTreeMap::new();
    let mut denied = DenySummary::default();
    let mut deny_ops: HashMap<String, u64> = HashMap::new();
    let mut deny_rows: HashMap<(String, String, String, String), u64> = HashMap::new();
    let mut actions = ActionSummary::default();
    let mut action_rows: BTreeMap<String, ActionRow> = BTreeMap::new();
    let mut drops: [BTreeMap<String, u64>; 3] = Default::default();
    let mut rollout: BTreeMap<String, RolloutAcc> = BTreeMap::new();
    // Policy name -> latest mode seen in a policy_load (in scope or before it).
    let mut modes: BTreeMap<String, String> = BTreeMap::new();
    let mut since_learned = learned::Acc::default();
    let (mut first, mut last, mut in_scope) = (None::<i64>, None::<i64>, 0u64);

    for l in records {
        let t = l.time_ns;
        if let Payload::PolicyLoad(p) = &l.record.payload
            && opts.to.is_none_or(|to| t < to)
        {
            for it in &p.items {
                modes.insert(it.name.clone(), it.mode.clone());
            }
            since_learned.load(p);
        }
        if !in_time(t) {
            continue;
        }
        let time = l.record.time.clone();
        match &l.record.payload {
            Payload::AgentStart(a) => {
                agent.starts += 1;
                agent.recovery.extend(a.recovery.iter().cloned());
            }
            Payload::AgentStop(_) => agent.stops += 1,
            Payload::PolicyLoad(_) => agent.policy_loads += 1,
            Payload::ResponseLoad(_) => agent.response_loads += 1,
            Payload::Alert { alert } => {
                let w = Workload::from_alert(alert);
                if !wl_ok(&w) {
                    continue;
                }
                alerts.total += 1;
                *by_rule.entry(alert.rule.clone()).or_insert(0u64) += 1;
                *by_prio
                    .entry(std::cmp::Reverse(alert.priority))
                    .or_insert(0u64) += 1;
                *by_wl.entry(w.label()).or_insert(0u64) += 1;
                *by_hour.entry(time::hour_bucket(t)).or_default() += 1;
            }
            Payload::Decision(d) => {
                if !wl_ok(&d.workload) {
                    continue;
                }
                since_learned.decision(d, t);
                let op = d.op.as_str().to_string();
                match d.decision {
                    DecisionKind::Deny => {
                        denied.total += 1;
                        *deny_ops.entry(op.clone()).or_default() += 1;
                        *deny_rows
                            .entry((d.policy.clone(), op, d.target.clone(), d.workload.label()))
                            .or_default() += 1;
                    }
                    DecisionKind::WouldDeny => {
                        let acc = rollout.entry(d.policy.clone()).or_default();
                        acc.would_deny += 1;
                        *acc.by_kind.entry(format!("would deny {op}")).or_default() += 1;
                        match d.op {
                            Operation::Exec => bounded_insert(&mut acc.binaries, &d.target),
                            Operation::Open | Operation::Write => {
                                bounded_insert(&mut acc.paths, &d.target)
                            }
                            Operation::Connect | Operation::Sendmsg => {
                                bounded_insert(&mut acc.destinations, &d.target)
                            }
                            // Self-protection is always enforced; kept for completeness.
                            Operation::SelfProtect => bounded_insert(&mut acc.paths, &d.target),
                        }
                        if let Some(exe) = binary_path(&d.process) {
                            bounded_insert(&mut acc.binaries, exe);
                        }
                        bounded_insert(&mut acc.workloads, &d.workload.label());
                        let what = match &d.access {
                            Some(a) => format!("{op} ({a})"),
                            None => op.clone(),
                        };
                        if acc.examples.len() < MAX_EXAMPLES {
                            acc.examples.push(Example {
                                time: time.clone(),
                                what: format!("would deny {what}"),
                                target: d.target.clone(),
                                workload: d.workload.label(),
                                process: process_text(&d.process),
                            });
                        }
                        *acc.breaks
                            .entry((what, d.target.clone(), d.workload.label()))
                            .or_default() += 1;
                    }
                }
            }
            Payload::Response(r) => {
                if !wl_ok(&r.workload) {
                    continue;
                }
                let row = action_rows
                    .entry(r.action.clone())
                    .or_insert_with(|| ActionRow {
                        action: r.action.clone(),
                        ..Default::default()
                    });
                // `None`: a refusal of the whole response (`*`); load() rejected other names.
                let kind = response_action(&r.action).ok().flatten();
                let disruptive = kind.is_some_and(ActionKind::is_disruptive);
                let ev = |detail: String| ActionEvent {
                    time: time.clone(),
                    response: r.response.clone(),
                    action: r.action.clone(),
                    workload: r.workload.label(),
                    detail,
                };
                match r.outcome {
                    Outcome::Planned => row.planned += 1,
                    Outcome::DryRun => {
                        row.dry_run += 1;
                        if disruptive && r.mode.as_deref() == Some("detect") {
                            let policy = r
                                .policy
                                .clone()
                                .unwrap_or_else(|| "(agent --detect-only)".into());
                            let acc = rollout.entry(policy).or_default();
                            acc.would_kill += 1;
                            *acc.by_kind
                                .entry(format!("would {}", r.action))
                                .or_default() += 1;
                            bounded_insert(&mut acc.workloads, &r.workload.label());
                            if let Some(exe) = binary_path(&r.process) {
                                bounded_insert(&mut acc.binaries, exe);
                            }
                            let target = r.rule.clone().unwrap_or_default();
                            if acc.examples.len() < MAX_EXAMPLES {
                                acc.examples.push(Example {
                                    time: time.clone(),
                                    what: format!("would {}", r.action),
                                    target: format!("rule: {target}"),
                                    workload: r.workload.label(),
                                    process: process_text(&r.process),
                                });
                            }
                            *acc.breaks
                                .entry((
                                    r.action.clone(),
                                    format!("rule {target}"),
                                    r.workload.label(),
                                ))
                                .or_default() += 1;
                        }
                    }
                    Outcome::Done => {
                        row.done += 1;
                        match kind {
                            Some(ActionKind::KillProcess | ActionKind::KillContainer) => {
                                actions.killed += 1
                            }
                            Some(ActionKind::StopContainer) => actions.stopped += 1,
                            Some(ActionKind::PauseContainer) => actions.paused += 1,
                            Some(ActionKind::QuarantineNetwork) => actions.quarantined += 1,
                            Some(ActionKind::Notify | ActionKind::Exec | ActionKind::Snapshot)
                            | None => {}
                        }
                        if disruptive && actions.disruptive.len() < MAX_ROWS {
                            actions.disruptive.push(ev(process_text(&r.process)));
                        }
                    }
                    Outcome::Refused => {
                        row.refused += 1;
                        actions.refused += 1;
                        if actions.refusals.len() < MAX_ROWS {
                            actions
                                .refusals
                                .push(ev(r.error.clone().unwrap_or_default()));
                        }
                    }
                    Outcome::Failed => {
                        row.failed += 1;
                        actions.failed += 1;
                        if actions.failures.len() < MAX_ROWS {
                            actions
                                .failures
                                .push(ev(r.error.clone().unwrap_or_default()));
                        }
                    }
                }
            }
            Payload::Snapshot(_) | Payload::ReloadFailed(_) | Payload::WorkloadSummary(_) => {}
            Payload::DropSummary(d) => {
                for (i, m) in [&d.ringbuf, &d.outputs, &d.audit].into_iter().enumerate() {
                    for (k, v) in m {
                        let e = drops[i].entry(k.clone()).or_default();
                        *e = e.saturating_add(*v);
                    }
                }
            }
        }
        in_scope += 1;
        first = Some(first.map_or(t, |f: i64| f.min(t)));
        last = Some(last.map_or(t, |x: i64| x.max(t)));
    }

    // Detect-mode policies with nothing to show still get a verdict.
    for (name, mode) in &modes {
        if mode == "detect" {
            rollout.entry(name.clone()).or_default();
        }
    }
    let span_start = opts.from.or(first).unwrap_or(0);
    let span_end = opts.to.unwrap_or(opts.now).max(span_start);
    let span_end = if opts.to.is_none() {
        last.unwrap_or(span_end).max(span_start)
    } else {
        span_end
    };
    let span = time::span_text(span_end - span_start);

    alerts.by_rule = sorted_counts(by_rule);
    alerts.by_priority = by_prio
        .into_iter()
        .map(|(p, count)| Count {
            key: p.0.as_str().to_string(),
            count,
        })
        .collect();
    alerts.by_workload = sorted_counts(by_wl);
    alerts.by_hour = by_hour
        .into_iter()
        .map(|(key, count)| Count { key, count })
        .collect();
    denied.by_op = sorted_counts(deny_ops);
    let mut rows: Vec<DecisionRow> = deny_rows
        .into_iter()
        .map(|((policy, op, target, workload), count)| DecisionRow {
            policy,
            op,
            target,
            workload,
            count,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.count.cmp(&a.count).then_with(|| {
            (&a.policy, &a.op, &a.target, &a.workload).cmp(&(
                &b.policy,
                &b.op,
                &b.target,
                &b.workload,
            ))
        })
    });
    rows.truncate(MAX_ROWS);
    denied.top = rows;
    actions.by_action = action_rows.into_values().collect();
    let [ringbuf, outputs, audit_drops] = drops;
    let drops = DropTotals {
        total: ringbuf
            .values()
            .chain(outputs.values())
            .chain(audit_drops.values())
            .fold(0u64, |a, b| a.saturating_add(*b)),
        ringbuf: map_counts(ringbuf),
        outputs: map_counts(outputs),
        audit: map_counts(audit_drops),
    };

    let rollout = rollout
        .into_iter()
        .map(|(policy, acc)| {
            let would_break = acc.would_deny + acc.would_kill > 0;
            let verdict = if would_break {
                let mut b: Vec<_> = acc.breaks.into_iter().collect();
                b.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
                let mut parts: Vec<String> = b
                    .iter()
                    .take(3)
                    .map(|((what, target, wl), n)| format!("{what} {target} in {wl} ({n}x)"))
                    .collect();
                if b.len() > 3 {
                    parts.push(format!("and {} more", b.len() - 3));
                }
                format!("would break: {}", parts.join("; "))
            } else {
                format!("no would-deny in {span}")
            };
            PolicyRollout {
                policy,
                would_deny: acc.would_deny,
                would_kill: acc.would_kill,
                by_kind: sorted_counts(acc.by_kind),
                examples: acc.examples,
                binaries: acc.binaries.into_iter().collect(),
                paths: acc.paths.into_iter().collect(),
                destinations: acc.destinations.into_iter().collect(),
                workloads: acc.workloads.into_iter().collect(),
                would_break,
                verdict,
            }
        })
        .collect();

    Ok(Report {
        generated_at: time::format_ns(opts.now),
        sources,
        workload_filter: opts.workload.clone(),
        period: Period {
            from: opts.from.map(time::format_ns),
            to: opts.to.map(time::format_ns),
            first_record: first.map(time::format_ns),
            last_record: last.map(time::format_ns),
            span,
        },
        integrity,
        records: in_scope,
        agent,
        alerts,
        denied,
        actions,
        drops,
        rollout,
        learned: since_learned.finish(),
    })
}

/// Loads, verifies and builds: what `guard report` does.
pub fn generate(paths: &[PathBuf], opts: &ReportOptions) -> Result<Report, ReportError> {
    let records = load(paths)?;
    let v = audit::verify_paths(paths, &VerifyOptions::default())?;
    let integrity = Integrity {
        verified: v.ok(),
        detail: match &v.failure {
            None => format!(
                "hash chain verified: {} records{}",
                v.records,
                if v.warnings.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", v.warnings.join("; "))
                }
            ),
            Some(f) => format!("VERIFICATION FAILED: {f}"),
        },
    };
    let sources = paths.iter().map(|p| p.display().to_string()).collect();
    build(&records, opts, sources, integrity)
}

#[cfg(test)]
mod tests;
