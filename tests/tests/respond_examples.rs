//! The shipped examples are safe to enable: every example of `responses/examples.yaml`, under
//! the whole agent (default rules, enforce mode) over a benign container workload (busybox
//! containers started, exec'd into, stopped), takes no action.
//!
//! All examples are loaded into ONE agent (one start instead of one per example, to keep the
//! test near a minute): a benign workload that matched any example alone leaves a response
//! record here too, since an example that matched and stopped the search (`continue: false`)
//! leaves its own record. A control at the end proves the examples were live: a netcat
//! reverse shell in a container (Critical) makes the kill-container example act.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use guard_tests::{harness::*, respond_util::*};

/// The commented example blocks of `responses/examples.yaml`, uncommented.
fn examples() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo_root().join("responses/examples.yaml"))
        .expect("responses/examples.yaml");
    let mut out: Vec<(String, String)> = Vec::new();
    let mut cur: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# - response:") {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            cur = Some((rest.trim().to_owned(), String::new()));
        }
        match (&mut cur, line.strip_prefix("# ")) {
            (Some((_, body)), Some(l)) if line.starts_with("# - ") || line.starts_with("#   ") => {
                body.push_str(l);
                body.push('\n');
            }
            (Some(_), _) => {
                if let Some(c) = cur.take() {
                    out.push(c);
                }
            }
            _ => {}
        }
    }
    out.extend(cur);
    out
}

#[test]
fn every_example_parses_alone() {
    let ex = examples();
    assert!(ex.len() >= 4, "examples found: {ex:?}");
    for (name, yaml) in &ex {
        let mut set = guard::respond::ResponseSet::default();
        let d = guard::respond::config::parse_str(Path::new(name), yaml, &mut set);
        assert!(d.is_empty(), "example {name} does not parse: {d:?}\n{yaml}");
        assert_eq!(set.responses.len(), 1, "{name}");
    }
}

#[test]
fn benign_container_workload_triggers_no_example() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let tmp = TempDir::new("examples");
    std::fs::create_dir_all(tmp.0.join("responses")).expect("mkdir");
    let all: String = examples().into_iter().map(|(_, y)| y).collect();
    std::fs::write(tmp.0.join("responses/examples.yaml"), &all).expect("write");
    let audit = tmp.0.join("audit");
    let policies = repo_root().join("policies");
    let agent = Agent::start_cmd(&[
        "run",
        "--format",
        "json",
        "--rules",
        policies.to_str().expect("utf8"),
        "--responses",
        tmp.0.join("responses").to_str().expect("utf8"),
        "--audit-dir",
        audit.to_str().expect("utf8"),
    ]);
    let t0 = Instant::now();
    for i in 0..3 {
        let c = docker.run(&["--label", "guard-examples=1"], &["sleep", "600"]);
        for cmd in [
            &["ls", "/"][..],
            &["cat", "/etc/hostname"],
            &["sh", "-c", "echo ok; date; ps"],
            &["id"],
            &[
                "sh",
                "-c",
                "mkdir -p /tmp/w && echo data > /tmp/w/f && cat /tmp/w/f",
            ],
        ] {
            // A failed exec (a container an example killed) is reported with the records below.
            let (ok, _) = c.exec(cmd);
            if !ok {
                eprintln!("benign exec {cmd:?} in round {i} failed");
            }
        }
        let _ = std::process::Command::new("docker")
            .args(["stop", "-t", "1", &c.id])
            .output();
    }
    // Let the last events reach the engine.
    std::thread::sleep(Duration::from_secs(2));
    let records = audit_records(&audit);
    let alerts: Vec<&serde_json::Value> = records.iter().filter(|r| r["kind"] == "alert").collect();
    let acted: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "response").collect();
    eprintln!(
        "benign workload: {:?}, {} alert(s): {:?}",
        t0.elapsed(),
        alerts.len(),
        alerts
            .iter()
            .map(|a| format!("{} ({})", a["alert"]["rule"], a["alert"]["priority"]))
            .collect::<Vec<_>>()
    );
    let why: Vec<String> = acted
        .iter()
        .take(3)
        .map(|r| {
            let alert = records
                .iter()
                .find(|a| a["kind"] == "alert" && a["alert"]["rule"] == r["rule"]);
            format!(
                "{r}\n  alert: {}",
                alert.map(|a| a["alert"].to_string()).unwrap_or_default()
            )
        })
        .collect();
    assert!(
        acted.is_empty(),
        "an example acted on a benign workload ({} records), e.g.:\n{}",
        acted.len(),
        why.join("\n")
    );

    // Control: something an example is for. netcat started to run a shell on its connection
    // (a reverse shell) is Critical; kill-container-on-critical snapshots and kills the
    // container.
    let c = docker.run(&["--label", "guard-examples=1"], &["sleep", "600"]);
    // The exec dies with its container (or nc fails: no network): its status is not the point.
    let _ = c.exec(&["nc", "-e", "/bin/sh", "127.0.0.1", "9"]);
    let killed = wait_audit(&audit, Duration::from_secs(20), |r| {
        r["kind"] == "response" && r["action"] == "kill_container" && r["outcome"] == "done"
    });
    assert!(killed.is_some(), "the control did not make an example act");
    assert_ne!(
        docker.cmd(&["inspect", "-f", "{{.State.Running}}", &c.id]),
        "true",
        "the control's container was killed"
    );
    drop(agent);
}
