use std::path::PathBuf;

use super::*;
use crate::alert::{Alert, GuardInfo, Priority};
use crate::audit::tests::TempDir;
use crate::audit::{AuditConfig, AuditWriter, Decision, LoadInfo, LoadedItem, ProcessInfo};

fn alert_in(container: &str, rule: &str) -> Payload {
    let mut f = std::collections::BTreeMap::new();
    f.insert("container.name".into(), serde_json::json!(container));
    Payload::Alert {
        alert: Box::new(Alert {
            time: crate::alert::rfc3339_ns(0),
            rule: rule.into(),
            priority: Priority::Error,
            source: "syscall".into(),
            hostname: "h".into(),
            output: "o".into(),
            tags: vec![],
            output_fields: f,
            guard: GuardInfo::default(),
        }),
    }
}

fn write(dir: &std::path::Path, ps: Vec<Payload>) {
    let mut w = AuditWriter::open(AuditConfig::new(dir)).expect("open");
    for p in ps {
        w.append(p).expect("append");
    }
}

fn opts() -> ReportOptions {
    ReportOptions {
        now: crate::rfc3339::parse("2030-01-01T00:00:00Z").unwrap_or(0),
        ..Default::default()
    }
}

fn glob_match(pat: &str, s: &str) -> bool {
    WorkloadGlob::new(pat)
        .expect("every pattern compiles")
        .is_match(s)
}

#[test]
fn glob() {
    assert!(glob_match("web-*", "web-1"));
    assert!(glob_match("*", ""));
    assert!(glob_match("w?b*1", "web-01"));
    assert!(!glob_match("web-*", "api-1"));
    assert!(!glob_match("web", "web-1"));
    assert!(glob_match("*-1", "api-1"));
    // Only `*` and `?` are special; `*` crosses `/` (images, cgroup paths).
    assert!(glob_match("reg.io/*:1", "reg.io/team/app:1"));
    assert!(glob_match("a**b", "axyb"));
    assert!(glob_match("[x]{a,b}\\", "[x]{a,b}\\"));
    assert!(!glob_match("[x]", "x"));
    assert!(!glob_match("{a,b}", "a"));
    assert!(!glob_match("w?b", "wb"));
}

#[test]
fn malformed_line_is_an_error_with_file_and_line() {
    let d = TempDir::new("report-bad");
    write(d.path(), vec![alert_in("a", "r"), alert_in("b", "r")]);
    let f = crate::audit::writer::log_files(d.path()).expect("ls")[0]
        .1
        .clone();
    let mut body = std::fs::read_to_string(&f).expect("read");
    body.push_str("{\"seq\":3,\"kind\":\"alert\"}\n");
    std::fs::write(&f, body).expect("write");
    match generate(&[d.path().to_path_buf()], &opts()) {
        Err(ReportError::Malformed { file, line, .. }) => {
            assert_eq!(file, f);
            assert_eq!(line, 3);
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("must fail"),
    }
    std::fs::write(&f, b"\xff\xfe garbage\n").expect("write");
    assert!(matches!(
        generate(&[d.path().to_path_buf()], &opts()),
        Err(ReportError::Malformed { line: 1, .. })
    ));
    assert!(matches!(
        generate(&[PathBuf::from("/nonexistent/guard-audit")], &opts()),
        Err(ReportError::Audit(_))
    ));
}

#[test]
fn workload_and_time_filters() {
    let d = TempDir::new("report-filter");
    write(
        d.path(),
        vec![
            alert_in("web-1", "r1"),
            alert_in("web-2", "r1"),
            alert_in("api-1", "r2"),
        ],
    );
    let paths = [d.path().to_path_buf()];
    let r = generate(
        &paths,
        &ReportOptions {
            workload: Some("web-*".into()),
            ..opts()
        },
    )
    .expect("report");
    assert_eq!(r.alerts.total, 2);
    assert_eq!(
        r.alerts.by_rule,
        vec![Count {
            key: "r1".into(),
            count: 2
        }]
    );
    assert!(r.integrity.verified, "{}", r.integrity.detail);
    // A window entirely in the future holds nothing.
    let r = generate(
        &paths,
        &ReportOptions {
            from: Some(opts().now),
            ..opts()
        },
    )
    .expect("report");
    assert_eq!(r.alerts.total, 0);
    assert_eq!(r.records, 0);
}

#[test]
fn tampered_log_is_flagged_in_the_report() {
    let d = TempDir::new("report-tamper");
    write(
        d.path(),
        vec![alert_in("a", "r"), alert_in("b", "r"), alert_in("c", "r")],
    );
    let f = crate::audit::writer::log_files(d.path()).expect("ls")[0]
        .1
        .clone();
    let body = std::fs::read_to_string(&f)
        .expect("read")
        .replacen("\"a\"", "\"z\"", 1);
    std::fs::write(&f, body).expect("write");
    let r = generate(&[d.path().to_path_buf()], &opts()).expect("report");
    assert!(!r.integrity.verified);
    assert!(
        r.integrity.detail.contains("record seq 1"),
        "{}",
        r.integrity.detail
    );
    assert!(render_text(&r).contains("VERIFICATION FAILED"));
    assert!(render_html(&r).contains("class=\"integrity bad\""));
}

#[test]
fn rollout_verdicts() {
    let d = TempDir::new("report-rollout");
    write(
        d.path(),
        vec![
            Payload::PolicyLoad(LoadInfo {
                files: vec![],
                items: vec![
                    LoadedItem {
                        name: "quiet".into(),
                        mode: "detect".into(),
                        learned_to: None,
                    },
                    LoadedItem {
                        name: "noisy".into(),
                        mode: "detect".into(),
                        learned_to: None,
                    },
                    LoadedItem {
                        name: "prod".into(),
                        mode: "enforce".into(),
                        learned_to: None,
                    },
                ],
                reload: false,
            }),
            Payload::Decision(Decision {
                decision: DecisionKind::WouldDeny,
                op: Operation::Connect,
                policy: "noisy".into(),
                backend: "bpf-lsm".into(),
                target: "10.1.2.3:22".into(),
                access: None,
                hook: None,
                kill_error: None,
                workload: Workload {
                    container_name: Some("db\n| x".into()),
                    ..Default::default()
                },
                process: ProcessInfo::default(),
            }),
        ],
    );
    let now = opts().now;
    let r = generate(
        &[d.path().to_path_buf()],
        &ReportOptions {
            from: Some(now - 3 * time::NS_PER_DAY - 5),
            to: Some(now),
            ..opts()
        },
    )
    .expect("report");
    // The records were written "now" (real clock), before the 2030 window: only the policy load
    // (which applies from before the window) decides which policies are in detect mode.
    let names: Vec<&str> = r.rollout.iter().map(|p| p.policy.as_str()).collect();
    assert_eq!(names, ["noisy", "quiet"]);
    assert_eq!(r.rollout[1].verdict, "no would-deny in 3 days");
    assert!(!r.rollout[1].would_break);

    let r = generate(&[d.path().to_path_buf()], &opts()).expect("report");
    let noisy = &r.rollout[0];
    assert_eq!(noisy.would_deny, 1);
    assert!(noisy.would_break);
    assert_eq!(noisy.destinations, vec!["10.1.2.3:22".to_string()]);
    assert!(
        noisy
            .verdict
            .starts_with("would break: connect 10.1.2.3:22 in db"),
        "{}",
        noisy.verdict
    );
    // A newline in a container name cannot forge a table row or a report line.
    let md = render_markdown(&r);
    // Rendered Markdown shows `db\u{a}| x`: backslash and pipe are escaped.
    assert!(md.contains(r"db\\u{a}\| x"), "{md}");
    assert!(!render_text(&r).contains("db\n"));
}

#[test]
fn from_is_inclusive_to_is_exclusive_at_record_times() {
    let d = TempDir::new("report-window");
    let names = ["web-1", "api-1", "web-2", "web-3", "api-2", "web-4"];
    write(
        d.path(),
        names
            .iter()
            .map(|n| alert_in(n, &format!("rule {n}")))
            .collect(),
    );
    let paths = [d.path().to_path_buf()];
    let times: Vec<i64> = load(&paths)
        .expect("load")
        .iter()
        .map(|l| l.time_ns)
        .collect();
    assert_eq!(times.len(), 6);
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // [t2, t5): the 3rd, 4th and 5th records exactly.
    let window = ReportOptions {
        from: Some(times[2]),
        to: Some(times[5]),
        ..opts()
    };
    let r = generate(&paths, &window).expect("report");
    assert_eq!((r.records, r.alerts.total), (3, 3));
    let rules: Vec<&str> = r.alerts.by_rule.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(rules, ["rule api-2", "rule web-2", "rule web-3"]);
    // With --workload too: only web-2 and web-3 are left.
    let r = generate(
        &paths,
        &ReportOptions {
            workload: Some("web-*".into()),
            ..window
        },
    )
    .expect("report");
    assert_eq!(r.alerts.total, 2);
    let wl: Vec<&str> = r
        .alerts
        .by_workload
        .iter()
        .map(|c| c.key.as_str())
        .collect();
    assert_eq!(wl, ["web-2", "web-3"]);
    // One nanosecond later on either side moves a record out or in.
    let r = generate(
        &paths,
        &ReportOptions {
            from: Some(times[2] + 1),
            to: Some(times[5] + 1),
            ..opts()
        },
    )
    .expect("report");
    let rules: Vec<&str> = r.alerts.by_rule.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(rules, ["rule api-2", "rule web-3", "rule web-4"]);
}

#[test]
fn rollout_binaries_are_paths_not_command_names() {
    let d = TempDir::new("report-binaries");
    let decision = |exe: &str| {
        Payload::Decision(Decision {
            decision: DecisionKind::WouldDeny,
            op: Operation::Exec,
            policy: "p".into(),
            backend: "sigkill-fallback".into(),
            target: "/bin/true".into(),
            access: None,
            hook: None,
            kill_error: None,
            workload: Workload::default(),
            process: ProcessInfo {
                pid: Some(7),
                exe: Some(exe.into()),
                cmdline: None,
            },
        })
    };
    // The kernel knew only the command name once, the path the other time.
    write(d.path(), vec![decision("true"), decision("/usr/bin/env")]);
    let r = generate(&[d.path().to_path_buf()], &opts()).expect("report");
    assert_eq!(r.rollout[0].would_deny, 2);
    assert_eq!(r.rollout[0].binaries, ["/bin/true", "/usr/bin/env"]);
    // The name is still shown where the process is described.
    assert_eq!(r.rollout[0].examples[0].process, "true (pid 7)");
}

fn response(action: &str, outcome: Outcome) -> Payload {
    Payload::Response(crate::audit::ResponseOutcome {
        response: "r".into(),
        action: action.into(),
        outcome,
        rule: Some("rule".into()),
        policy: None,
        mode: Some("enforce".into()),
        workload: Workload::default(),
        process: ProcessInfo::default(),
        error: None,
        detail: None,
        latency_us: None,
    })
}

#[test]
fn action_counts_follow_the_action_kind_table() {
    use crate::respond::ActionKind;
    let d = TempDir::new("report-actions");
    let mut ps: Vec<Payload> = ActionKind::ALL
        .iter()
        .map(|k| response(k.name(), Outcome::Done))
        .collect();
    ps.push(response("*", Outcome::Refused));
    write(d.path(), ps);
    let r = generate(&[d.path().to_path_buf()], &opts()).expect("report");
    let a = &r.actions;
    assert_eq!((a.killed, a.stopped, a.paused, a.quarantined), (2, 1, 1, 1));
    assert_eq!(a.refused, 1);
    let disruptive: Vec<&str> = a.disruptive.iter().map(|e| e.action.as_str()).collect();
    let expected: Vec<&str> = ActionKind::ALL
        .iter()
        .filter(|k| k.is_disruptive())
        .map(|k| k.name())
        .collect();
    assert_eq!(disruptive, expected);
}

#[test]
fn unknown_action_name_is_a_malformed_record() {
    let d = TempDir::new("report-unknown-action");
    write(
        d.path(),
        vec![
            response("kill_process", Outcome::Done),
            response("kill_everything", Outcome::Done),
        ],
    );
    match generate(&[d.path().to_path_buf()], &opts()) {
        Err(ReportError::Malformed {
            line: 2, reason, ..
        }) => {
            assert!(reason.contains("kill_everything"), "{reason}")
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("an unknown action must not be counted"),
    }
}
