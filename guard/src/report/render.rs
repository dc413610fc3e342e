//! Text, Markdown and JSON renderings of a [`Report`].

use std::fmt::Write;

use super::escape::{escape_md as md, escape_text as tx};
use super::{Count, Report};

pub fn render_json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"error\":\"cannot encode report: {e}\"}}"));
    s.push('\n');
    s
}

fn text_counts(out: &mut String, title: &str, v: &[Count]) {
    if v.is_empty() {
        return;
    }
    let _ = writeln!(out, "  {title}:");
    for c in v {
        let _ = writeln!(out, "    {:>7}  {}", c.count, tx(&c.key));
    }
}

fn list(v: &[String], esc: fn(&str) -> String) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.iter().map(|s| esc(s)).collect::<Vec<_>>().join(", ")
    }
}

pub fn render_text(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "guard audit report");
    let _ = writeln!(o, "Generated: {}", r.generated_at);
    let _ = writeln!(o, "Sources: {}", tx(&r.sources.join(", ")));
    let _ = writeln!(
        o,
        "Period: {} .. {} ({}); records {} .. {}",
        r.period.from.as_deref().unwrap_or("start"),
        r.period.to.as_deref().unwrap_or("end"),
        r.period.span,
        r.period.first_record.as_deref().unwrap_or("-"),
        r.period.last_record.as_deref().unwrap_or("-"),
    );
    if let Some(w) = &r.workload_filter {
        let _ = writeln!(o, "Workload filter: {}", tx(w));
    }
    let _ = writeln!(o, "Integrity: {}", tx(&r.integrity.detail));
    let _ = writeln!(o, "Records in scope: {}", r.records);
    let a = &r.agent;
    let _ = writeln!(
        o,
        "Agent: {} starts, {} stops, {} policy loads, {} response loads",
        a.starts, a.stops, a.policy_loads, a.response_loads
    );
    for rec in &a.recovery {
        let _ = writeln!(o, "  recovery: {}", tx(rec));
    }

    let _ = writeln!(o, "\nAlerts: {}", r.alerts.total);
    text_counts(&mut o, "by rule", &r.alerts.by_rule);
    text_counts(&mut o, "by priority", &r.alerts.by_priority);
    text_counts(&mut o, "by workload", &r.alerts.by_workload);
    text_counts(&mut o, "by hour (UTC)", &r.alerts.by_hour);

    let _ = writeln!(o, "\nDenied (enforce mode): {}", r.denied.total);
    text_counts(&mut o, "by operation", &r.denied.by_op);
    if !r.denied.top.is_empty() {
        let _ = writeln!(o, "  what was denied:");
        for d in &r.denied.top {
            let _ = writeln!(
                o,
                "    {:>7}  {} {} in {} (policy {})",
                d.count,
                d.op,
                tx(&d.target),
                tx(&d.workload),
                tx(&d.policy)
            );
        }
    }

    let x = &r.actions;
    let _ = writeln!(
        o,
        "\nActions: killed {}, stopped {}, paused {}, quarantined {}, failed {}, refused {}",
        x.killed, x.stopped, x.paused, x.quarantined, x.failed, x.refused
    );
    for row in &x.by_action {
        let _ = writeln!(
            o,
            "    {}: planned {}, dry_run {}, done {}, refused {}, failed {}",
            tx(&row.action),
            row.planned,
            row.dry_run,
            row.done,
            row.refused,
            row.failed
        );
    }
    for (title, evs) in [
        ("done", &x.disruptive),
        ("failures", &x.failures),
        ("refused", &x.refusals),
    ] {
        if evs.is_empty() {
            continue;
        }
        let _ = writeln!(o, "  {title}:");
        for e in evs {
            let _ = writeln!(
                o,
                "    {} {} on {} (response {}): {}",
                e.time,
                tx(&e.action),
                tx(&e.workload),
                tx(&e.response),
                tx(&e.detail)
            );
        }
    }

    let _ = writeln!(o, "\nDrops: {}", r.drops.total);
    text_counts(&mut o, "ring buffer", &r.drops.ringbuf);
    text_counts(&mut o, "outputs", &r.drops.outputs);
    text_counts(&mut o, "audit queue", &r.drops.audit);

    let _ = writeln!(o, "\nRollout (detect-mode policies): {}", r.rollout.len());
    for p in &r.rollout {
        let _ = writeln!(
            o,
            "  Policy {}: would deny {}, would kill {}",
            tx(&p.policy),
            p.would_deny,
            p.would_kill
        );
        let _ = writeln!(o, "    Verdict: {}", tx(&p.verdict));
        for c in &p.by_kind {
            let _ = writeln!(o, "    {:>7}  {}", c.count, tx(&c.key));
        }
        let _ = writeln!(o, "    binaries: {}", list(&p.binaries, tx));
        let _ = writeln!(o, "    paths: {}", list(&p.paths, tx));
        let _ = writeln!(o, "    destinations: {}", list(&p.destinations, tx));
        let _ = writeln!(o, "    workloads: {}", list(&p.workloads, tx));
        for e in &p.examples {
            let _ = writeln!(
                o,
                "    e.g. {} {} {} in {} by {}",
                e.time,
                tx(&e.what),
                tx(&e.target),
                tx(&e.workload),
                tx(&e.process)
            );
        }
    }
    super::learned::render_lines(&mut o, &r.learned, false, tx);
    o
}

fn md_table(o: &mut String, head: &str, v: &[Count]) {
    if v.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n| {head} | count |\n|---|---:|");
    for c in v {
        let _ = writeln!(o, "| {} | {} |", md(&c.key), c.count);
    }
}

pub fn render_markdown(r: &Report) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# guard audit report\n");
    let _ = writeln!(o, "- Generated: {}", r.generated_at);
    let _ = writeln!(o, "- Sources: {}", md(&r.sources.join(", ")));
    let _ = writeln!(
        o,
        "- Period: {} .. {} ({})",
        r.period.from.as_deref().unwrap_or("start"),
        r.period.to.as_deref().unwrap_or("end"),
        r.period.span
    );
    if let Some(w) = &r.workload_filter {
        let _ = writeln!(o, "- Workload filter: {}", md(w));
    }
    let _ = writeln!(o, "- Integrity: {}", md(&r.integrity.detail));
    let _ = writeln!(o, "- Records in scope: {}", r.records);
    let a = &r.agent;
    let _ = writeln!(
        o,
        "- Agent: {} starts, {} stops, {} policy loads, {} response loads",
        a.starts, a.stops, a.policy_loads, a.response_loads
    );
    for rec in &a.recovery {
        let _ = writeln!(o, "- Recovery: {}", md(rec));
    }

    let _ = writeln!(o, "\n## Alerts: {}", r.alerts.total);
    md_table(&mut o, "rule", &r.alerts.by_rule);
    md_table(&mut o, "priority", &r.alerts.by_priority);
    md_table(&mut o, "workload", &r.alerts.by_workload);
    md_table(&mut o, "hour (UTC)", &r.alerts.by_hour);

    let _ = writeln!(o, "\n## Denied (enforce mode): {}", r.denied.total);
    md_table(&mut o, "operation", &r.denied.by_op);
    if !r.denied.top.is_empty() {
        let _ = writeln!(
            o,
            "\n| policy | op | target | workload | count |\n|---|---|---|---|---:|"
        );
        for d in &r.denied.top {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                md(&d.policy),
                d.op,
                md(&d.target),
                md(&d.workload),
                d.count
            );
        }
    }

    let x = &r.actions;
    let _ = writeln!(o, "\n## Actions\n");
    let _ = writeln!(
        o,
        "Killed: {} · Stopped: {} · Paused: {} · Quarantined: {} · Failed: {} · Refused: {}",
        x.killed, x.stopped, x.paused, x.quarantined, x.failed, x.refused
    );
    if !x.by_action.is_empty() {
        let _ = writeln!(
            o,
            "\n| action | planned | dry_run | done | refused | failed |\n|---|---:|---:|---:|---:|---:|"
        );
        for row in &x.by_action {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                md(&row.action),
                row.planned,
                row.dry_run,
                row.done,
                row.refused,
                row.failed
            );
        }
    }
    for (title, evs) in [
        ("Done", &x.disruptive),
        ("Failures", &x.failures),
        ("Refused", &x.refusals),
    ] {
        if evs.is_empty() {
            continue;
        }
        let _ = writeln!(
            o,
            "\n### {title}\n\n| time | action | workload | response | detail |\n|---|---|---|---|---|"
        );
        for e in evs {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                e.time,
                md(&e.action),
                md(&e.workload),
                md(&e.response),
                md(&e.detail)
            );
        }
    }

    let _ = writeln!(o, "\n## Drops: {}", r.drops.total);
    md_table(&mut o, "ring buffer event kind", &r.drops.ringbuf);
    md_table(&mut o, "output channel", &r.drops.outputs);
    md_table(&mut o, "audit record kind", &r.drops.audit);

    let _ = writeln!(o, "\n## Rollout (detect-mode policies)");
    for p in &r.rollout {
        let _ = writeln!(o, "\n### Policy {}\n", md(&p.policy));
        let _ = writeln!(o, "- Would deny: {}", p.would_deny);
        let _ = writeln!(o, "- Would kill: {}", p.would_kill);
        let _ = writeln!(o, "- **Verdict:** {}", md(&p.verdict));
        let _ = writeln!(o, "- Binaries: {}", list(&p.binaries, md));
        let _ = writeln!(o, "- Paths: {}", list(&p.paths, md));
        let _ = writeln!(o, "- Destinations: {}", list(&p.destinations, md));
        let _ = writeln!(o, "- Workloads: {}", list(&p.workloads, md));
        md_table(&mut o, "what", &p.by_kind);
        if !p.examples.is_empty() {
            let _ = writeln!(
                o,
                "\n| time | what | target | workload | process |\n|---|---|---|---|---|"
            );
            for e in &p.examples {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    e.time,
                    md(&e.what),
                    md(&e.target),
                    md(&e.workload),
                    md(&e.process)
                );
            }
        }
    }
    super::learned::render_lines(&mut o, &r.learned, true, md);
    o
}
