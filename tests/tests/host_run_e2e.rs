//! Host layer, the whole agent: a shell in a container raises a Critical alert (guard's rule,
//! its priority raised by a user override), the response engine kills the container, and the
//! alert and the action are in a verifiable audit log.

use std::time::{Duration, Instant};

use guard_tests::harness::{Agent, Docker, agent_lock, can_run, guard_bin, is_root, repo_root};

#[test]
fn shell_in_container_under_kill_on_critical_leaves_it_exited() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let tmp = std::env::temp_dir().join(format!("guard-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("responses")).expect("tmp");
    std::fs::write(
        tmp.join("override.yaml"),
        "- rule: Shell spawned in container\n  priority: CRITICAL\n  override:\n    priority: replace\n",
    )
    .expect("override");
    std::fs::write(
        tmp.join("responses/kill.yaml"),
        "- response: kill-on-critical\n  match:\n    priority: \">= Critical\"\n  actions:\n    - kill_container: {}\n",
    )
    .expect("responses");

    let alerts_file = tmp.join("alerts.jsonl");
    std::fs::write(
        tmp.join("outputs.yaml"),
        format!(
            "- {{type: stdout, format: json}}\n- {{type: file, path: {}, format: json, min_priority: Critical}}\n",
            alerts_file.display()
        ),
    )
    .expect("outputs");
    let c = docker.run(&["--label", "guard-e2e=kill"], &["sleep", "600"]);
    let audit = tmp.join("audit");
    let policies = repo_root().join("policies");
    let agent = Agent::start_cmd(&[
        "run",
        "--format",
        "json",
        "--rules",
        policies.to_str().expect("utf8"),
        "--rules",
        tmp.join("override.yaml").to_str().expect("utf8"),
        "--responses",
        tmp.join("responses").to_str().expect("utf8"),
        "--audit-dir",
        audit.to_str().expect("utf8"),
        "--outputs",
        tmp.join("outputs.yaml").to_str().expect("utf8"),
    ]);
    let t0 = Instant::now();
    // The shell may be killed mid-run with the container: its exit status is not the point.
    let _ = c.exec(&["sh", "-c", "sleep 30"]);
    let alert = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["rule"] == "Shell spawned in container"
        })
        .expect("alert for the shell");
    assert_eq!(alert["priority"], "Critical");
    assert_eq!(alert["output_fields"]["container.id"], &c.id[..12]);
    let mut running = true;
    while t0.elapsed() < Duration::from_secs(20) {
        running = docker.cmd(&["inspect", "-f", "{{.State.Running}}", &c.id]) == "true";
        if !running {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running, "the container was not killed");
    drop(agent);
    // The file channel got the Critical alert, and only Critical-or-worse ones.
    let file = std::fs::read_to_string(&alerts_file).expect("alerts file");
    let lines: Vec<serde_json::Value> = file
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        lines
            .iter()
            .any(|a| a["rule"] == "Shell spawned in container"),
        "{file}"
    );
    assert!(lines.iter().all(|a| {
        ["Critical", "Alert", "Emergency"].contains(&a["priority"].as_str().unwrap_or(""))
    }));

    let out = std::process::Command::new(guard_bin())
        .args(["audit", "verify"])
        .arg(&audit)
        .output()
        .expect("guard audit verify");
    assert!(
        out.status.success(),
        "audit verify: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let log: String = std::fs::read_dir(&audit)
        .expect("audit dir")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    let records: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        records.iter().any(|r| r["kind"] == "alert"),
        "alert audited"
    );
    let done = records
        .iter()
        .find(|r| r["kind"] == "response" && r["outcome"] == "done")
        .unwrap_or_else(|| panic!("no done response record in {log}"));
    assert_eq!(done["action"], "kill_container");
    let _ = std::fs::remove_dir_all(&tmp);
}
