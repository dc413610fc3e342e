//! A known sequence goes through the agent's audit path; every report format must state the
//! exact counts, and the log must verify across its rotated files.

use guard::audit::{VerifyOptions, verify_paths};
use guard::report::{self, ReportFormat, ReportOptions, time::NS_PER_DAY};
use guard_tests::audit_fixture::{HOSTILE_CMDLINE, HOSTILE_NAME, expect::*, write_sequence};

fn tmp(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("guard-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("mkdir");
    p
}

fn build() -> (std::path::PathBuf, report::Report) {
    let dir = tmp("report-counts");
    write_sequence(&dir);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let opts = ReportOptions {
        from: Some(now - 7 * NS_PER_DAY),
        to: Some(now + 3_600_000_000_000),
        workload: None,
        now,
    };
    let r = report::generate(std::slice::from_ref(&dir), &opts).expect("report");
    (dir, r)
}

#[test]
fn every_format_states_the_exact_counts() {
    let (dir, r) = build();
    // The fixture rotated (4 KiB files) and still verifies as one chain.
    let files = guard::audit::writer::log_files(&dir).expect("ls");
    assert!(files.len() >= 2, "fixture should span rotated files");
    let v = verify_paths(std::slice::from_ref(&dir), &VerifyOptions::default()).expect("verify");
    assert!(v.ok(), "{:?}", v.failure);
    assert!(r.integrity.verified, "{}", r.integrity.detail);

    // JSON: the structure itself.
    let j: serde_json::Value =
        serde_json::from_str(&report::render(&r, ReportFormat::Json)).expect("json report");
    assert_eq!(j["alerts"]["total"], ALERTS);
    assert_eq!(
        j["alerts"]["by_rule"][0]["key"],
        "Terminal shell in container"
    );
    assert_eq!(j["alerts"]["by_rule"][0]["count"], SHELL_ALERTS);
    assert_eq!(j["alerts"]["by_priority"][0]["key"], "Critical");
    assert_eq!(j["alerts"]["by_priority"][0]["count"], 4);
    let hours: u64 = j["alerts"]["by_hour"]
        .as_array()
        .expect("by_hour")
        .iter()
        .map(|c| c["count"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(hours, ALERTS);
    assert_eq!(j["denied"]["total"], DENIED);
    assert_eq!(j["denied"]["by_op"][0]["key"], "exec");
    assert_eq!(j["denied"]["by_op"][0]["count"], DENIED_EXEC);
    assert_eq!(j["denied"]["top"][0]["target"], "/bin/sh");
    assert_eq!(j["actions"]["killed"], KILLED);
    assert_eq!(j["actions"]["paused"], PAUSED);
    assert_eq!(j["actions"]["failed"], FAILED);
    assert_eq!(j["actions"]["refused"], REFUSED);
    assert_eq!(
        j["actions"]["failures"][0]["detail"],
        "docker: connection refused"
    );
    assert_eq!(j["drops"]["total"], DROPS);
    assert_eq!(j["agent"]["starts"], 1);
    assert_eq!(j["agent"]["stops"], 1);
    let rollout = j["rollout"].as_array().expect("rollout");
    assert_eq!(
        rollout.len(),
        2,
        "api and db are in detect mode; web is not"
    );
    assert_eq!(rollout[0]["policy"], "api");
    assert_eq!(rollout[0]["would_deny"], API_WOULD_DENY);
    assert_eq!(rollout[0]["would_kill"], API_WOULD_KILL);
    assert_eq!(
        rollout[0]["binaries"],
        serde_json::json!(["/bin/busybox", "/usr/bin/curl"])
    );
    assert_eq!(
        rollout[0]["destinations"],
        serde_json::json!(["10.0.0.5:22"])
    );
    assert!(
        rollout[0]["verdict"]
            .as_str()
            .expect("verdict")
            .starts_with("would break: ")
    );
    assert_eq!(rollout[1]["policy"], "db");
    assert_eq!(rollout[1]["verdict"], "no would-deny in 7 days");

    // Text.
    let t = report::render(&r, ReportFormat::Text);
    for want in [
        format!("Alerts: {ALERTS}\n"),
        format!("      {SHELL_ALERTS}  Terminal shell in container\n"),
        format!("Denied (enforce mode): {DENIED}\n"),
        format!("      {DENIED_EXEC}  exec /bin/sh in web-1 (policy web)\n"),
        format!(
            "Actions: killed {KILLED}, stopped 0, paused {PAUSED}, quarantined 0, failed {FAILED}, refused {REFUSED}\n"
        ),
        "kill_container: planned 1, dry_run 2, done 2, refused 0, failed 1\n".into(),
        format!("Drops: {DROPS}\n"),
        format!("Policy api: would deny {API_WOULD_DENY}, would kill {API_WOULD_KILL}\n"),
        "Verdict: would break: exec /usr/bin/curl in api-1 (2x); kill_container rule Terminal shell in container in api-1 (2x); connect 10.0.0.5:22 in api-1 (1x)\n".into(),
        "Policy db: would deny 0, would kill 0\n    Verdict: no would-deny in 7 days\n".into(),
    ] {
        assert!(t.contains(&want), "text report lacks {want:?}:\n{t}");
    }

    // Markdown.
    let m = report::render(&r, ReportFormat::Md);
    for want in [
        format!("## Alerts: {ALERTS}\n"),
        format!("| Terminal shell in container | {SHELL_ALERTS} |\n"),
        format!("## Denied (enforce mode): {DENIED}\n"),
        format!("| web | exec | /bin/sh | web-1 | {DENIED_EXEC} |\n"),
        format!(
            "Killed: {KILLED} · Stopped: 0 · Paused: {PAUSED} · Quarantined: 0 · Failed: {FAILED} · Refused: {REFUSED}"
        ),
        "| kill\\_container | 1 | 2 | 2 | 0 | 1 |\n".into(),
        format!("## Drops: {DROPS}\n"),
        format!(
            "### Policy api\n\n- Would deny: {API_WOULD_DENY}\n- Would kill: {API_WOULD_KILL}\n"
        ),
        "- **Verdict:** no would-deny in 7 days\n".into(),
    ] {
        assert!(m.contains(&want), "markdown report lacks {want:?}:\n{m}");
    }
    assert!(
        !m.contains("<script"),
        "markdown passes HTML through: must be escaped"
    );

    // HTML.
    let h = report::render(&r, ReportFormat::Html);
    for want in [
        format!("<h2>Alerts: {ALERTS}</h2>"),
        format!("<tr><td>Terminal shell in container</td><td class=\"n\">{SHELL_ALERTS}</td></tr>"),
        format!("<h2>Denied (enforce mode): {DENIED}</h2>"),
        format!("<div class=\"n\">{KILLED}</div><div class=\"l\">killed</div>"),
        format!("<div class=\"n\">{PAUSED}</div><div class=\"l\">paused</div>"),
        format!("<div class=\"n\">{FAILED}</div><div class=\"l\">action failures</div>"),
        format!("<div class=\"n\">{DROPS}</div><div class=\"l\">drops</div>"),
        "<tr><td>kill_container</td><td class=\"n\">1</td><td class=\"n\">2</td><td class=\"n\">2</td><td class=\"n\">0</td><td class=\"n\">1</td></tr>".into(),
        format!("Would deny: <b>{API_WOULD_DENY}</b> · Would kill: <b>{API_WOULD_KILL}</b>"),
        "<span class=\"verdict ok\">no would-deny in 7 days</span>".into(),
        "&lt;script&gt;document.title=&#39;PWNED&#39;".into(),
    ] {
        assert!(h.contains(&want), "html report lacks {want:?}");
    }
    assert!(!h.contains("<script"), "no script element at all");
    assert!(!h.contains(HOSTILE_NAME));
    assert!(!h.contains(HOSTILE_CMDLINE));
    assert!(!h.contains("<img"), "no element from a command line");
    assert!(
        h.contains("sh -c &quot;&lt;img/src=x onerror=document.body.setAttribute(&#39;data-pwned-cmd&#39;,&#39;1&#39;)&gt;&lt;script&gt;"),
        "the command line is shown as text in the rollout examples"
    );
    for attr in [" src=", " href=", "url(", "@import"] {
        assert!(!h.contains(attr), "no external resources: found {attr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn workload_filter_narrows_every_count() {
    let dir = tmp("report-wl");
    write_sequence(&dir);
    let r = report::generate(
        std::slice::from_ref(&dir),
        &ReportOptions {
            workload: Some("api-*".into()),
            ..Default::default()
        },
    )
    .expect("report");
    assert_eq!(r.alerts.total, 2);
    assert_eq!(r.denied.total, 0);
    assert_eq!(r.actions.killed, 0);
    assert_eq!(
        r.rollout.iter().map(|p| p.would_deny).sum::<u64>(),
        API_WOULD_DENY
    );
    let _ = std::fs::remove_dir_all(dir);
}
