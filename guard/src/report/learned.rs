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

/// Per workload of a policy: would-denies and target -> count.
type PerWorkload = BTreeMap<String, (u64, HashMap<String, u64>)>;

#[derive(Default)]
pub(super) struct Acc {
    /// Policy -> (mode, learned_to text and ns) of its latest load.
    loads: BTreeMap<String, (String, Option<(String, i64)>)>,
    /// Policy -> workload -> (would-deny, target -> count).
    seen: BTreeMap<String, PerWorkload>,
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

#[cfg(test)]
mod tests {
    use crate::audit::{
        Decision, DecisionKind, LoadInfo, LoadedItem, Operation, Payload, ProcessInfo, Record,
        Workload,
    };
    use crate::report::{Integrity, Loaded, ReportOptions, build, render_html, render_text};

    fn at(t: &str, payload: Payload) -> Loaded {
        Loaded {
            file: "audit.jsonl".into(),
            line: 1,
            time_ns: crate::rfc3339::parse(t).expect("time"),
            record: Record {
                seq: 1,
                time: t.into(),
                payload,
                prev: String::new(),
            },
        }
    }

    fn load(items: &[(&str, &str, Option<&str>)]) -> Payload {
        Payload::PolicyLoad(LoadInfo {
            files: vec![],
            items: items
                .iter()
                .map(|(n, m, l)| LoadedItem {
                    name: (*n).into(),
                    mode: (*m).into(),
                    learned_to: l.map(str::to_owned),
                })
                .collect(),
            reload: false,
        })
    }

    fn would_deny(policy: &str, wl: &str, target: &str) -> Payload {
        Payload::Decision(Decision {
            decision: DecisionKind::WouldDeny,
            op: Operation::Exec,
            policy: policy.into(),
            backend: "sigkill-fallback".into(),
            target: target.into(),
            access: None,
            hook: None,
            kill_error: None,
            workload: Workload {
                container_name: Some(wl.into()),
                ..Workload::default()
            },
            process: ProcessInfo::default(),
        })
    }

    #[test]
    fn counts_would_denies_after_the_learning_window_per_workload() {
        let records = vec![
            at(
                "2026-12-01T00:00:00Z",
                load(&[
                    ("web", "detect", Some("2026-12-01T10:00:00Z")),
                    ("quiet", "detect", Some("2026-12-01T10:00:00Z")),
                    ("hand", "detect", None),
                    ("prod", "enforce", Some("2026-12-01T10:00:00Z")),
                ]),
            ),
            // Before the window's end: part of what was learned from, not counted.
            at(
                "2026-12-01T09:00:00Z",
                would_deny("web", "web-1", "/bin/early"),
            ),
            at(
                "2026-12-01T11:00:00Z",
                would_deny("web", "web-1", "/bin/sh"),
            ),
            at(
                "2026-12-01T11:00:01Z",
                would_deny("web", "web-1", "/bin/sh"),
            ),
            at(
                "2026-12-01T11:00:02Z",
                would_deny("web", "web-2", "/bin/<b>"),
            ),
            at(
                "2026-12-01T11:00:03Z",
                would_deny("hand", "web-3", "/bin/sh"),
            ),
        ];
        let r = build(
            &records,
            &ReportOptions::default(),
            vec![],
            Integrity {
                verified: true,
                detail: String::new(),
            },
        )
        .expect("report");
        let names: Vec<&str> = r.learned.iter().map(|p| p.policy.as_str()).collect();
        assert_eq!(names, ["quiet", "web"], "learned detect-mode policies only");
        let quiet = &r.learned[0];
        assert!(quiet.ready && quiet.would_deny == 0 && quiet.workloads.is_empty());
        let web = &r.learned[1];
        assert_eq!((web.would_deny, web.ready), (3, false));
        assert_eq!(web.workloads.len(), 2);
        assert_eq!(web.workloads[0].workload, "web-1");
        assert_eq!(web.workloads[0].would_deny, 2);
        assert_eq!(web.workloads[0].targets[0].key, "exec /bin/sh");
        let text = render_text(&r);
        assert!(text.contains("Policy quiet: ready to enforce"), "{text}");
        assert!(
            text.contains("Policy web: not ready: 3 would-deny"),
            "{text}"
        );
        let html = render_html(&r);
        assert!(html.contains("<h4>web-2: 1</h4>"), "{html}");
        assert!(html.contains("exec /bin/&lt;b&gt;"), "escaped: {html}");
        assert!(!html.contains("/bin/<b>"), "unescaped target in the HTML");
    }
}
