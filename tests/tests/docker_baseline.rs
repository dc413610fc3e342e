//! The benign baseline: guard's default rules plus Falco's stable rules, over an ordinary
//! container workload (20 busybox containers started, exec'd into with everyday commands, a log
//! rotated, stopped and removed), raise no Critical and no Error alert; and with the
//! `kill-container-on-critical` example of `responses/examples.yaml` enabled (enforce mode),
//! no container is killed. Alerts of the containers carry the container fields (Falco's
//! `append_output`).
//!
//! Control: the agent saw the workload (alerts of lower priority name the test's containers,
//! e.g. the shells `docker exec` starts).

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use guard_tests::{harness::*, respond_util::*};

const CONTAINERS: usize = 20;
const THREADS: usize = 4;

/// The `kill-container-on-critical` example block of `responses/examples.yaml`, uncommented.
fn kill_on_critical() -> String {
    let text = std::fs::read_to_string(repo_root().join("responses/examples.yaml"))
        .expect("responses/examples.yaml");
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        if line.starts_with("# - response:") {
            inside = line.contains("kill-container-on-critical");
        } else if !line.starts_with("#   ") {
            if inside && !out.is_empty() {
                break;
            }
            continue;
        }
        if inside && let Some(l) = line.strip_prefix("# ") {
            out.push_str(l);
            out.push('\n');
        }
    }
    assert!(out.contains("kill_container"), "example not found:\n{out}");
    out
}

/// One container's life; returns its id and whether it was running until we stopped it.
fn lifecycle(docker: &Docker, n: usize) -> (String, bool) {
    let c = docker.run(&["--label", "guard-baseline=1"], &["sleep", "600"]);
    let mut alive = true;
    for cmd in [
        &["ls", "/"][..],
        &["cat", "/etc/hostname"],
        &["id"],
        &["sh", "-c", "echo ok; date; ps"],
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/w && echo data > /tmp/w/f && cat /tmp/w/f",
        ],
        // A log rotated the way logrotate's `create` mode does: rename, then a new file.
        &[
            "sh",
            "-c",
            "mkdir -p /var/log/app && echo line >> /var/log/app/app.log && mv /var/log/app/app.log /var/log/app/app.log.1 && touch /var/log/app/app.log && gzip /var/log/app/app.log.1",
        ],
    ] {
        if !c.exec(cmd).0 {
            eprintln!("container {n}: exec {cmd:?} failed");
            alive = false;
        }
    }
    alive &= docker.cmd(&["inspect", "-f", "{{.State.Running}}", &c.id]) == "true";
    let _ = std::process::Command::new("docker")
        .args(["stop", "-t", "1", &c.id])
        .output();
    (c.id.clone(), alive)
    // Dropping `c` removes the container.
}

#[test]
fn benign_container_workload_raises_no_critical_or_error_alert() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let tmp = TempDir::new("baseline");
    std::fs::create_dir_all(tmp.0.join("responses")).expect("mkdir");
    std::fs::write(tmp.0.join("responses/kill.yaml"), kill_on_critical()).expect("write");
    let audit = tmp.0.join("audit");
    let policies = repo_root().join("policies");
    let falco = repo_root().join("../shared/falco-rules");
    let agent = Agent::start_cmd(&[
        "run",
        "--format",
        "json",
        "--rules",
        policies.to_str().expect("utf8"),
        "--rules",
        falco.to_str().expect("utf8"),
        "--responses",
        tmp.0.join("responses").to_str().expect("utf8"),
        "--audit-dir",
        audit.to_str().expect("utf8"),
    ]);
    let t0 = Instant::now();
    let results: Vec<(String, bool)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let docker = &docker;
                s.spawn(move || {
                    (t..CONTAINERS)
                        .step_by(THREADS)
                        .map(|n| lifecycle(docker, n))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("worker"))
            .collect()
    });
    let workload = t0.elapsed();
    // Let the last events reach the engine.
    std::thread::sleep(Duration::from_secs(2));
    let alerts = agent.stop();
    let records = audit_records(&audit);
    let ids: BTreeSet<&str> = results.iter().map(|(id, _)| &id[..12]).collect();
    let ours: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| {
            a["output_fields"]["container.id"]
                .as_str()
                .is_some_and(|id| ids.contains(id))
        })
        .collect();
    let summary: BTreeSet<String> = alerts
        .iter()
        .map(|a| format!("{} ({})", a["rule"], a["priority"]))
        .collect();
    eprintln!(
        "baseline: {CONTAINERS} containers in {workload:?}; {} alert(s), {} of the test's containers: {summary:?}",
        alerts.len(),
        ours.len()
    );
    let severe: Vec<&serde_json::Value> = alerts
        .iter()
        .filter(|a| matches!(a["priority"].as_str(), Some("Critical" | "Error")))
        .collect();
    assert!(
        severe.is_empty(),
        "{} Critical/Error alert(s) on a benign workload, e.g.:\n{}",
        severe.len(),
        severe
            .iter()
            .take(3)
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let killed: Vec<&(String, bool)> = results.iter().filter(|(_, alive)| !alive).collect();
    assert!(killed.is_empty(), "containers died early: {killed:?}");
    let acted: Vec<&serde_json::Value> =
        records.iter().filter(|r| r["kind"] == "response").collect();
    assert!(acted.is_empty(), "the kill response acted: {acted:?}");
    // Control: the workload was seen, and its alerts carry the container fields.
    assert!(
        !ours.is_empty(),
        "no alert names the test's containers: the agent did not see the workload"
    );
    for a in &ours {
        let f = &a["output_fields"];
        assert!(
            f["container.name"].is_string() && f.get("container.image").is_some(),
            "{a}"
        );
    }
    assert!(
        workload < Duration::from_secs(90),
        "the baseline took {workload:?}"
    );
}
