//! "Would have been denied since it was learned": for each detect-mode policy written by
//! `guard policy learn` (its `policy_load` item carries `learned_to`), the would-deny decisions
//! taken after its learning window, per workload. Empty means the policy is ready to enforce.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Serialize;

use super::{Count, escape::escape_html as h, sorted_counts};
use crate::audit::{Decision, DecisionKind, LoadInfo};

/// Distinct targets listed per workload.
const MAX_TARGETS: usize = 20;

#[derive(Debug, Clone, Serialize)]
pub struct LearnedWorkload {
    pub workload: String,
    pub would_deny: u64,
    /// `exec /bin/sh`, `open (write) /etc/x`, `connect 1.2.3.4:22`, most frequent first.
    pub targets: Vec<Count>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LearnedPolicy {
    pub policy: String,
    /// End of the learning window (RFC 3339).
    pub learned_to: String,
    pub would_deny: u64,
    pub workloads: Vec<LearnedWorkload>,
    /// No would-deny since it was learned: ready to enforce.
    pub ready: bool,
}

#[derive(Default)]
pub(super) struct Acc {
    /// Policy -> (mode, learned_to text and ns) of its latest load.
    loads: BTreeMap<String, (String, Option<(String, i64)>)>,
    /// Policy -> workload -> (would-deny, target -> count).
    seen: BTreeMap<String, BTreeMap<String, (u64, HashMap<String, u64>)>>,
}

impl Acc {
    /// A `policy_load` up to the report's end.
    pub(super) fn load(&mut self, p: &LoadInfo) {
        for it in &p.items {
            let learned = it
                .learned_to
                .as_ref()
                .and_then(|t| crate::rfc3339::parse(t).map(|ns| (t.clone(), ns)));
            self.loads
                .insert(it.name.clone(), (it.mode.clone(), learned));
        }
    }

    /// A decision in the report's scope, at `t` (ns).
    pub(super) fn decision(&mut self, d: &Decision, t: i64) {
        if d.decision != DecisionKind::WouldDeny {
            return;
        }
        let Some((_, Some((_, since)))) = self.loads.get(&d.policy) else {
            return;
        };
        if t < *since {
            return;
        }
        let w = self
            .seen
            .entry(d.policy.clone())
            .or_default()
            .entry(d.workload.label())
            .or_default();
        w.0 += 1;
        let what = match &d.access {
            Some(a) => format!("{} ({a}) {}", d.op.as_str(), d.target),
            None => format!("{} {}", d.op.as_str(), d.target),
        };
        if let Some(n) = w.1.get_mut(&what) {
            *n += 1;
        } else if w.1.len() < MAX_TARGETS {
            w.1.insert(what, 1);
        }
    }

    pub(super) fn finish(mut self) -> Vec<LearnedPolicy> {
        let mut out = Vec::new();
        for (policy, (mode, learned)) in self.loads {
            let Some((learned_to, _)) = learned else {
                continue;
            };
            if mode != "detect" {
                continue;
            }
            let workloads: Vec<LearnedWorkload> = self
                .seen
                .remove(&policy)
                .unwrap_or_default()
                .into_iter()
                .map(|(workload, (n, targets))| LearnedWorkload {
                    workload,
                    would_deny: n,
                    targets: sorted_counts(targets),
                })
                .collect();
            let would_deny = workloads.iter().map(|w| w.would_deny).sum();
            out.push(LearnedPolicy {
                policy,
                learned_to,
                would_deny,
                workloads,
                ready: would_deny == 0,
            });
        }
        out
    }
}

fn verdict(p: &LearnedPolicy) -> String {
    if p.ready {
        format!(
            "ready to enforce: nothing would have been denied since {}",
            p.learned_to
        )
    } else {
        format!(
            "not ready: {} would-deny since it was learned ({})",
            p.would_deny, p.learned_to
        )
    }
}

/// The text and markdown section (`md` escapes for markdown, `tx` for text).
pub(super) fn render_lines(
    o: &mut String,
    v: &[LearnedPolicy],
    markdown: bool,
    esc: fn(&str) -> String,
) {
    let title = "Would have been denied since it was learned";
    if markdown {
        let _ = writeln!(o, "\n## {title}");
    } else {
        let _ = writeln!(o, "\n{title}: {} learned detect-mode policies", v.len());
    }
    for p in v {
        if markdown {
            let _ = writeln!(o, "\n### Policy {}\n", esc(&p.policy));
            let _ = writeln!(o, "- **Verdict:** {}", esc(&verdict(p)));
        } else {
            let _ = writeln!(o, "  Policy {}: {}", esc(&p.policy), esc(&verdict(p)));
        }
        for w in &p.workloads {
            if markdown {
                let _ = writeln!(o, "- {}: {}", esc(&w.workload), w.would_deny);
            } else {
                let _ = writeln!(o, "    {}: {}", esc(&w.workload), w.would_deny);
            }
            for c in &w.targets {
                let pad = if markdown { "  - " } else { "      " };
                let _ = writeln!(o, "{pad}{:>7}  {}", c.count, esc(&c.key));
            }
        }
    }
}

/// The HTML section: one article per policy, one table per workload.
pub(super) fn render_html(o: &mut String, v: &[LearnedPolicy]) {
    let _ = write!(
        o,
        "<section id=\"learned\"><h2>Would have been denied since it was learned</h2>"
    );
    if v.is_empty() {
        let _ = write!(
            o,
            "<p class=\"empty\">no detect-mode policy from <code>guard policy learn</code></p>"
        );
    }
    for p in v {
        let _ = write!(
            o,
            "<article><h3>Policy {}</h3><p><span class=\"verdict {}\">{}</span></p>",
            h(&p.policy),
            if p.ready { "ok" } else { "bad" },
            h(&verdict(p))
        );
        for w in &p.workloads {
            let _ = write!(
                o,
                "<h4>{}: {}</h4><table><thead><tr><th class=\"n\">count</th><th>would deny</th></tr></thead><tbody>",
                h(&w.workload),
                w.would_deny
            );
            for c in &w.targets {
                let _ = write!(
                    o,
                    "<tr><td class=\"n\">{}</td><td>{}</td></tr>",
                    c.count,
                    h(&c.key)
                );
            }
            let _ = write!(o, "</tbody></table>");
        }
        let _ = write!(o, "</article>");
    }
    let _ = write!(o, "</section>");
}
