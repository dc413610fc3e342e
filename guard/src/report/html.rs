//! The self-contained HTML report: inline CSS and SVG, no script, no external resource (a CSP
//! meta tag forbids both as a second line of defence). Every string from the audit log goes
//! through `escape_html` (`h` below) before it is placed in the page.

use std::fmt::Write;

use super::escape::escape_html as h;
use super::{ActionEvent, Count, Report};

const CSS: &str = r#"
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dee7;--bg:#ffffff;--accent:#2f6fdd;--bad:#c62828;--ok:#2e7d32;--warn:#b26a00}
*{box-sizing:border-box}
body{margin:0;padding:24px 32px;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid var(--line);padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
.meta{color:var(--muted);font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;min-width:120px;background:#f7f9fc}
.card .n{font-size:24px;font-weight:700}.card .l{color:var(--muted);font-size:12px}
.card.bad .n{color:var(--bad)}.card.ok .n{color:var(--ok)}
table{border-collapse:collapse;margin:8px 0;min-width:320px;max-width:100%}
th,td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top;word-break:break-word}
th{background:#eef2f8}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;padding:4px 10px;border-radius:6px;font-weight:600}
.verdict.bad{background:#fdecea;color:var(--bad);border:1px solid var(--bad)}
.verdict.ok{background:#e8f5e9;color:var(--ok);border:1px solid var(--ok)}
.integrity.bad{color:var(--bad);font-weight:700}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
figure{margin:0;border:1px solid var(--line);border-radius:8px;padding:8px}
figcaption{font-weight:600;font-size:13px;margin-bottom:4px}
svg text{font:11px system-ui,sans-serif;fill:var(--fg)}
.empty{color:var(--muted);font-style:italic}
@media print{body{padding:0;font-size:10pt}.card,figure,table,section{break-inside:avoid}
 *{-webkit-print-color-adjust:exact;print-color-adjust:exact}a{color:inherit}}
"#;

const PALETTE: [&str; 6] = [
    "#2f6fdd", "#7b4fd6", "#d6336c", "#e8590c", "#2b8a3e", "#1098ad",
];

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// Horizontal bar chart of the first 12 counts.
fn bar_chart(o: &mut String, title: &str, v: &[Count], color: &str) {
    let _ = write!(o, "<figure><figcaption>{}</figcaption>", h(title));
    if v.is_empty() {
        let _ = write!(o, "<p class=\"empty\">none</p></figure>");
        return;
    }
    let items = &v[..v.len().min(12)];
    let max = items.iter().map(|c| c.count).max().unwrap_or(1).max(1);
    let (w, label_w, row) = (520u64, 200u64, 22u64);
    let height = row * items.len() as u64 + 4;
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"{}\">",
        h(title)
    );
    for (i, c) in items.iter().enumerate() {
        let y = i as u64 * row + 2;
        let bw = ((w - label_w - 60) * c.count / max).max(1);
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><rect x=\"{label_w}\" y=\"{y}\" width=\"{bw}\" height=\"{}\" fill=\"{color}\" rx=\"2\"><title>{}: {}</title></rect><text x=\"{}\" y=\"{}\">{}</text>",
            label_w - 6,
            y + 14,
            h(&cut(&c.key, 30)),
            row - 6,
            h(&c.key),
            c.count,
            label_w + bw + 4,
            y + 14,
            c.count
        );
    }
    let _ = write!(o, "</svg></figure>");
}

/// Column chart over time buckets (last 168 shown).
fn column_chart(o: &mut String, title: &str, v: &[Count]) {
    let _ = write!(o, "<figure><figcaption>{}</figcaption>", h(title));
    if v.is_empty() {
        let _ = write!(o, "<p class=\"empty\">none</p></figure>");
        return;
    }
    let items = &v[v.len().saturating_sub(168)..];
    let max = items.iter().map(|c| c.count).max().unwrap_or(1).max(1);
    let (plot_h, top, bottom) = (140u64, 14u64, 30u64);
    let bar = (600 / items.len() as u64).clamp(3, 40);
    // Wide enough for the two axis labels.
    let w = (40 + bar * items.len() as u64 + 10).max(300);
    let height = top + plot_h + bottom;
    let _ = write!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" viewBox=\"0 0 {w} {height}\" role=\"img\" aria-label=\"{}\"><line x1=\"38\" y1=\"{}\" x2=\"{w}\" y2=\"{}\" stroke=\"#9aa3b2\"/><text x=\"34\" y=\"{}\" text-anchor=\"end\">{max}</text><text x=\"34\" y=\"{}\" text-anchor=\"end\">0</text>",
        h(title),
        top + plot_h,
        top + plot_h,
        top + 8,
        top + plot_h
    );
    for (i, c) in items.iter().enumerate() {
        let bh = (plot_h * c.count / max).max(1);
        let x = 40 + i as u64 * bar;
        let _ = write!(
            o,
            "<rect x=\"{x}\" y=\"{}\" width=\"{}\" height=\"{bh}\" fill=\"{}\"><title>{}: {}</title></rect>",
            top + plot_h - bh,
            bar.saturating_sub(1).max(1),
            PALETTE[0],
            h(&c.key),
            c.count
        );
    }
    if let Some(f) = items.first() {
        let _ = write!(
            o,
            "<text x=\"40\" y=\"{}\">{}</text>",
            top + plot_h + 16,
            h(&f.key)
        );
    }
    if let (true, Some(l)) = (items.len() > 1, items.last()) {
        let _ = write!(
            o,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            w - 4,
            top + plot_h + 28,
            h(&l.key)
        );
    }
    let _ = write!(o, "</svg></figure>");
}

fn count_table(o: &mut String, head: &str, v: &[Count]) {
    if v.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "<table><thead><tr><th>{}</th><th class=\"n\">count</th></tr></thead><tbody>",
        h(head)
    );
    for c in v {
        let _ = write!(
            o,
            "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
            h(&c.key),
            c.count
        );
    }
    let _ = write!(o, "</tbody></table>");
}

fn card(o: &mut String, label: &str, n: u64, class: &str) {
    let _ = write!(
        o,
        "<div class=\"card {class}\"><div class=\"n\">{n}</div><div class=\"l\">{}</div></div>",
        h(label)
    );
}

fn events_table(o: &mut String, title: &str, evs: &[ActionEvent]) {
    if evs.is_empty() {
        return;
    }
    let _ = write!(
        o,
        "<h3>{}</h3><table><thead><tr><th>time</th><th>action</th><th>workload</th><th>response</th><th>detail</th></tr></thead><tbody>",
        h(title)
    );
    for e in evs {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            h(&e.time),
            h(&e.action),
            h(&e.workload),
            h(&e.response),
            h(&e.detail)
        );
    }
    let _ = write!(o, "</tbody></table>");
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "<span class=\"empty\">none</span>".into()
    } else {
        v.iter()
            .map(|s| format!("<code>{}</code>", h(s)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

pub fn render_html(r: &Report) -> String {
    let mut o = String::with_capacity(32 * 1024);
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>guard audit report</title><style>{CSS}</style></head><body>"
    );
    let _ = write!(
        o,
        "<header><h1>guard audit report</h1><div class=\"meta\">Generated {} · Period {} .. {} ({}) · Sources: {}{}</div>",
        h(&r.generated_at),
        h(r.period.from.as_deref().unwrap_or("start")),
        h(r.period.to.as_deref().unwrap_or("end")),
        h(&r.period.span),
        h(&r.sources.join(", ")),
        match &r.workload_filter {
            Some(w) => format!(" · Workload filter: {}", h(w)),
            None => String::new(),
        },
    );
    let _ = write!(
        o,
        "<p class=\"integrity {}\" id=\"integrity\">{}</p></header>",
        if r.integrity.verified { "ok" } else { "bad" },
        h(&r.integrity.detail)
    );

    let would_deny: u64 = r.rollout.iter().map(|p| p.would_deny).sum();
    let would_kill: u64 = r.rollout.iter().map(|p| p.would_kill).sum();
    let _ = write!(o, "<section class=\"cards\" id=\"summary\">");
    card(&mut o, "alerts", r.alerts.total, "");
    card(
        &mut o,
        "denied",
        r.denied.total,
        if r.denied.total > 0 { "bad" } else { "ok" },
    );
    card(
        &mut o,
        "killed",
        r.actions.killed,
        if r.actions.killed > 0 { "bad" } else { "" },
    );
    card(&mut o, "paused", r.actions.paused, "");
    card(&mut o, "stopped", r.actions.stopped, "");
    card(&mut o, "quarantined", r.actions.quarantined, "");
    card(
        &mut o,
        "action failures",
        r.actions.failed,
        if r.actions.failed > 0 { "bad" } else { "ok" },
    );
    card(&mut o, "would deny", would_deny, "");
    card(&mut o, "would kill", would_kill, "");
    card(
        &mut o,
        "drops",
        r.drops.total,
        if r.drops.total > 0 { "bad" } else { "ok" },
    );
    let _ = write!(o, "</section>");

    let _ = write!(
        o,
        "<section id=\"alerts\"><h2>Alerts: {}</h2><div class=\"charts\">",
        r.alerts.total
    );
    column_chart(&mut o, "Alerts per hour (UTC)", &r.alerts.by_hour);
    bar_chart(&mut o, "By priority", &r.alerts.by_priority, PALETTE[2]);
    bar_chart(&mut o, "By rule", &r.alerts.by_rule, PALETTE[1]);
    bar_chart(&mut o, "By workload", &r.alerts.by_workload, PALETTE[5]);
    let _ = write!(o, "</div>");
    count_table(&mut o, "rule", &r.alerts.by_rule);
    count_table(&mut o, "priority", &r.alerts.by_priority);
    count_table(&mut o, "workload", &r.alerts.by_workload);
    let _ = write!(o, "</section>");

    let _ = write!(
        o,
        "<section id=\"denied\"><h2>Denied (enforce mode): {}</h2>",
        r.denied.total
    );
    count_table(&mut o, "operation", &r.denied.by_op);
    if !r.denied.top.is_empty() {
        let _ = write!(
            o,
            "<table><thead><tr><th>policy</th><th>op</th><th>target</th><th>workload</th><th class=\"n\">count</th></tr></thead><tbody>"
        );
        for d in &r.denied.top {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                h(&d.policy),
                h(&d.op),
                h(&d.target),
                h(&d.workload),
                d.count
            );
        }
        let _ = write!(o, "</tbody></table>");
    }
    let _ = write!(o, "</section>");

    let x = &r.actions;
    let _ = write!(o, "<section id=\"actions\"><h2>Actions</h2>");
    if !x.by_action.is_empty() {
        let _ = write!(
            o,
            "<table><thead><tr><th>action</th><th class=\"n\">planned</th><th class=\"n\">dry run</th><th class=\"n\">done</th><th class=\"n\">refused</th><th class=\"n\">failed</th></tr></thead><tbody>"
        );
        for a in &x.by_action {
            let _ = write!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                h(&a.action),
                a.planned,
                a.dry_run,
                a.done,
                a.refused,
                a.failed
            );
        }
        let _ = write!(o, "</tbody></table>");
    } else {
        let _ = write!(o, "<p class=\"empty\">no response actions</p>");
    }
    events_table(
        &mut o,
        "Killed, stopped, paused, quarantined",
        &x.disruptive,
    );
    events_table(&mut o, "Failures", &x.failures);
    events_table(&mut o, "Refused by safety rails", &x.refusals);
    let _ = write!(o, "</section>");

    let _ = write!(o, "<section id=\"drops\"><h2>Drops: {}</h2>", r.drops.total);
    count_table(&mut o, "ring buffer event kind", &r.drops.ringbuf);
    count_table(&mut o, "output channel", &r.drops.outputs);
    count_table(&mut o, "audit record kind", &r.drops.audit);
    let _ = write!(o, "</section>");

    let _ = write!(
        o,
        "<section id=\"rollout\"><h2>Rollout: detect-mode policies</h2>"
    );
    if r.rollout.is_empty() {
        let _ = write!(o, "<p class=\"empty\">no detect-mode policy</p>");
    }
    for p in &r.rollout {
        let _ = write!(
            o,
            "<article><h3>Policy {}</h3><p><span class=\"verdict {}\">{}</span></p>\
<p>Would deny: <b>{}</b> · Would kill: <b>{}</b></p>",
            h(&p.policy),
            if p.would_break { "bad" } else { "ok" },
            h(&p.verdict),
            p.would_deny,
            p.would_kill
        );
        count_table(&mut o, "what enforce mode would have done", &p.by_kind);
        let _ = write!(
            o,
            "<p>Binaries: {}</p><p>Paths: {}</p><p>Destinations: {}</p><p>Workloads: {}</p>",
            list(&p.binaries),
            list(&p.paths),
            list(&p.destinations),
            list(&p.workloads)
        );
        if !p.examples.is_empty() {
            let _ = write!(
                o,
                "<table><thead><tr><th>time</th><th>what</th><th>target</th><th>workload</th><th>process</th></tr></thead><tbody>"
            );
            for e in &p.examples {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    h(&e.time),
                    h(&e.what),
                    h(&e.target),
                    h(&e.workload),
                    h(&e.process)
                );
            }
            let _ = write!(o, "</tbody></table>");
        }
        let _ = write!(o, "</article>");
    }
    let _ = write!(o, "</section>");
    super::learned::render_html(&mut o, &r.learned);
    let _ = writeln!(o, "</body></html>");
    o
}
