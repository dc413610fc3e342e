//! Issue 19: learn a workload's policy from what it did, then roll it out.
//!
//! A busybox container runs a fixed loop (date, cat, touch under /tmp, an nc listener and an nc
//! client on loopback port 9999, sleep), started before any agent so the loop's own shell is
//! not among what is learned. Three agents in turn:
//! 1. no policy: the agent writes the container's summary into its audit log; `guard policy
//!    learn` turns it into a detect-mode policy (stable, valid);
//! 2. that policy in detect mode over more of the same loop: `guard report` says nothing would
//!    have been denied since it was learned (and, after a control exec, that something would);
//! 3. the same policy in enforce mode: the loop goes on unchanged, while a shell, a write to
//!    /etc and a connect to another port from the same container are stopped.
//!
//! This host has no BPF LSM: the backend is `sigkill-fallback`, so the shell is killed before
//! it runs, the /etc write and the connect are killed after the fact (docs/policies.md,
//! Backends). The assertions follow the backend each decision names.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use guard_tests::harness::{
    Agent, Container, Docker, Scratch, agent_lock, can_run, guard_bin, is_root, repo_root,
};

/// The workload: each round runs date, cat and touch, writes under /tmp, and sends one line
/// through a loopback nc pair; `/tmp/progress` holds the round and what the listener got. The
/// binaries are copies of busybox under /w, made before any agent runs: in the image every
/// applet is a symlink to one file, so a rule on the file itself (BPF LSM, inode rules) could
/// not tell `cat` from `sh`.
const LOOP: &str = "mkdir /w && for b in date cat touch nc sleep tee; do cp /bin/busybox /w/$b; done; \
i=0; while :; do i=$((i+1)); \
/w/date > /tmp/date.txt; /w/cat /tmp/date.txt > /tmp/copy.txt; /w/touch /tmp/stamp; echo $i | /w/tee /tmp/tee.txt > /dev/null; \
/w/nc -l -p 9999 > /tmp/got.txt & /w/sleep 0.3; echo ping$i | /w/nc 127.0.0.1 9999; wait; \
echo \"$i $(/w/cat /tmp/got.txt)\" > /tmp/progress; /w/sleep 0.3; done";

/// The loop's progress, read through the container's root from the host (a `docker exec`
/// would be an exec the policy does not allow).
fn progress(root: &Path) -> Option<(u64, String)> {
    let text = std::fs::read_to_string(root.join("tmp/progress")).ok()?;
    let (n, got) = text.trim().split_once(' ')?;
    Some((n.parse().ok()?, got.to_string()))
}

/// Waits until the loop has done `rounds` more rounds, each one receiving its own line.
fn wait_rounds(root: &Path, rounds: u64) -> u64 {
    let start = progress(root).map_or(0, |p| p.0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((n, got)) = progress(root)
            && n >= start + rounds
        {
            assert_eq!(got, format!("ping{n}"), "the listener got the wrong line");
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the loop stalled at {:?}",
            progress(root)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn guard(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(guard_bin())
        .args(args)
        .env("GUARD_LOG", "warn")
        .output()
        .expect("running guard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `docker exec C ARGS`: exit code.
fn exec_in(c: &Container, args: &[&str]) -> Option<i32> {
    Command::new("docker")
        .arg("exec")
        .arg(&c.id)
        .args(args)
        .output()
        .expect("docker exec")
        .status
        .code()
}

/// `docker exec -i C ARGS` with its stdin held open for up to 5 s (a process that outlives its
/// syscall, so an after-the-fact kill finds it): exit code.
fn linger_in(c: &Container, args: &[&str]) -> Option<i32> {
    let mut child = Command::new("docker")
        .args(["exec", "-i", &c.id])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("docker exec");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(st)) = child.try_wait() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(child.stdin.take());
    child.wait().expect("docker exec").code()
}

fn agent(policy: Option<&str>, audit: &Path, pins: &str) -> Agent {
    let audit = audit.display().to_string();
    let mut args = vec!["--audit-dir", audit.as_str(), "--pin-dir", pins];
    if policy.is_none() {
        args.push("--learn");
    }
    if let Some(p) = policy {
        args.extend(["--policy", p]);
    }
    Agent::run(&args)
}

fn decisions(audit: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(audit)
        .expect("audit dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        for line in std::fs::read_to_string(f).expect("audit file").lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("audit line");
            if v["kind"] == "decision" {
                out.push(v);
            }
        }
    }
    out
}

/// The report's "since learned" entry for `policy`.
fn since_learned(audit: &Path, policy: &str) -> serde_json::Value {
    let (code, out, err) = guard(&["report", "--format", "json", audit.to_str().expect("utf8")]);
    assert_eq!(code, 0, "guard report failed: {err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("report json");
    r["learned"]
        .as_array()
        .expect("learned section")
        .iter()
        .find(|p| p["policy"] == policy)
        .unwrap_or_else(|| panic!("no learned entry for {policy}: {}", r["learned"]))
        .clone()
}

#[test]
fn learn_then_detect_then_enforce() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let c = docker.run(&["--label", "guard-learn=1"], &["sh", "-c", LOOP]);
    let root = PathBuf::from(format!("/proc/{}/root", c.pid()));
    wait_rounds(&root, 1);
    let s = Scratch::new("learn");
    let rules = repo_root().join("policies");
    let rules = rules.to_str().expect("utf8");

    // 1. Learn: summaries of a few rounds go into the audit log (the final flush at stop).
    let learn_audit = s.dir.join("learn-audit");
    let a = agent(None, &learn_audit, &s.pins);
    wait_rounds(&root, 4);
    drop(a.stop());
    let learn = |workload: &str, extra: &[&str]| {
        let mut args = vec![
            "policy",
            "learn",
            "--workload",
            workload,
            "--rules",
            rules,
            "--name",
            "learned-loop",
        ];
        args.extend_from_slice(extra);
        guard(&args)
    };
    let audit_arg = learn_audit.display().to_string();
    let (code, text, err) = learn("labels.guard-learn=1", &["--audit-dir", &audit_arg]);
    assert_eq!(code, 0, "guard policy learn failed: {err}");
    eprintln!("learned:\n{text}");
    let (_, again, _) = learn("labels.guard-learn=1", &["--audit-dir", &audit_arg]);
    assert_eq!(text, again, "same audit log, different policy");
    for want in [
        "\"/w/date\"",
        "\"/w/cat\"",
        "\"/w/touch\"",
        "\"/w/nc\"",
        "\"/w/sleep\"",
        "\"/w/tee\"",
        "deny_new_binaries: true",
        "\"/etc/**\"  # never written",
        "\"/etc/shadow\"",
        "\"127.0.0.1/32:9999\"",
        "mode: detect",
    ] {
        assert!(
            text.contains(want),
            "{want} missing from the learned policy"
        );
    }
    for before in ["/bin/sh", "/bin/cp", "/bin/mkdir"] {
        assert!(
            !text.contains(&format!("\"{before}\"")),
            "{before} ran before learning, yet it is in the policy"
        );
    }
    let (code, _, err) = learn("name=nope", &["--audit-dir", &audit_arg]);
    assert_eq!(code, 1, "an unknown workload must fail");
    assert!(err.contains("no summary of a workload"), "{err}");
    let learned = s.dir.join("learned.yaml");
    std::fs::write(&learned, &text).expect("write policy");
    let (code, _, err) = guard(&["validate", learned.to_str().expect("utf8")]);
    assert_eq!(code, 0, "guard validate rejects the learned policy: {err}");

    // 2. Detect mode over more of the same loop: nothing would have been denied.
    let detect_audit = s.dir.join("detect-audit");
    let a = agent(learned.to_str(), &detect_audit, &s.pins);
    wait_rounds(&root, 4);
    let quiet = since_learned(&detect_audit, "learned-loop");
    assert_eq!(quiet["would_deny"], 0, "{quiet}");
    assert_eq!(quiet["ready"], true, "{quiet}");
    // Control: an exec it never did is a would-deny (and it runs: detect mode).
    assert_eq!(exec_in(&c, &["/bin/touch", "/tmp/detect-control"]), Some(0));
    assert!(root.join("tmp/detect-control").exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    let noisy = loop {
        let v = since_learned(&detect_audit, "learned-loop");
        if v["would_deny"] != 0 || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    drop(a.stop());
    assert_eq!(noisy["ready"], false, "{noisy}");
    let targets = noisy["workloads"][0]["targets"].to_string();
    assert!(targets.contains("exec /bin/touch"), "{noisy}");
    s.cleanup();

    // 3. Enforce: the loop runs unchanged; a shell, a write to /etc and another port are not.
    let enforce_yaml = text.replace("  mode: detect\n", "  mode: enforce\n");
    assert_ne!(enforce_yaml, text);
    let enforced = s.dir.join("enforced.yaml");
    std::fs::write(&enforced, enforce_yaml).expect("write policy");
    let enforce_audit = s.dir.join("enforce-audit");
    let a = agent(enforced.to_str(), &enforce_audit, &s.pins);
    let before = wait_rounds(&root, 1);
    // Controls: an allowed binary runs and writes under /tmp; the loop's port is reachable.
    assert_eq!(exec_in(&c, &["/w/touch", "/tmp/allowed"]), Some(0));
    assert!(root.join("tmp/allowed").exists());

    let shell = exec_in(&c, &["/bin/sh", "-c", "/w/touch /tmp/shell-ran"]);
    // tee opens its file for writing, then waits on its stdin.
    let etc = linger_in(&c, &["/w/tee", "/etc/learned-probe"]);
    // A listener on the other port, and a client that stays connected until guard acts.
    let mut listener = Command::new("docker")
        .args(["exec", "-i", &c.id, "/w/nc", "-l", "-p", "9998"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("listener");
    std::thread::sleep(Duration::from_millis(500));
    let port = linger_in(&c, &["/w/nc", "127.0.0.1", "9998"]);
    let _ = listener.kill();
    let _ = listener.wait();
    let after = wait_rounds(&root, 3);
    assert!(after >= before + 3);
    drop(a.stop());

    let d = decisions(&enforce_audit);
    let of = |op: &str, target: &str| {
        d.iter()
            .find(|v| v["op"] == op && v["target"] == target && v["policy"] == "learned-loop")
            .unwrap_or_else(|| panic!("no {op} decision for {target}: {d:?}"))
            .clone()
    };
    let sh = of("exec", "/bin/sh");
    assert_eq!(sh["decision"], "deny");
    assert!(!root.join("tmp/shell-ran").exists(), "the denied shell ran");
    let w = of("open", "/etc/learned-probe");
    assert_eq!(
        (w["decision"].as_str(), w["access"].as_str()),
        (Some("deny"), Some("write"))
    );
    let p = of("connect", "127.0.0.1:9998");
    assert_eq!(p["decision"], "deny");
    for (code, v) in [(shell, &sh), (etc, &w), (port, &p)] {
        // The hook says how it was stopped, whatever the backend (connect is refused by the
        // sock_addr programs on every kernel).
        match v["hook"].as_str() {
            // Killed (exec: before it ran; open: after the syscall).
            Some("sched_process_exec" | "after_syscall") => assert_eq!(code, Some(137), "{v}"),
            // Refused in the kernel.
            _ => assert_ne!(code, Some(0), "{v}"),
        }
    }
    if w["hook"] != "after_syscall" {
        assert!(
            !root.join("etc/learned-probe").exists(),
            "the /etc write happened"
        );
    }
    // Nothing else was denied: the loop itself ran unchanged under the policy.
    let others: Vec<_> = d
        .iter()
        .filter(|v| {
            ![&sh, &w, &p]
                .iter()
                .any(|x| x["op"] == v["op"] && x["target"] == v["target"])
        })
        .collect();
    assert!(others.is_empty(), "the workload was denied: {others:?}");
    s.cleanup();
}
