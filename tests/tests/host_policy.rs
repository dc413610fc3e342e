//! Host layer for issue 5, on this kernel (no BPF LSM): the `sigkill-fallback` backend kills a
//! denied exec inside a real container before the binary runs an instruction.

use std::time::Duration;

use guard_tests::harness::{
    Docker, Scratch, TEST_IMAGE, agent_lock, can_run, cgroup_v2_dir, cgroup2_mount, guard_bin,
    is_root, kernel_file_id_in, pinned_inode_rules,
};

fn is_policy_alert(v: &serde_json::Value, target: &str) -> bool {
    v["source"] == "guard_policy" && v["output_fields"]["guard.target"] == target
}

/// `docker run --rm ARGS IMAGE CMD`, returning the exit code.
fn docker_run(args: &[&str], cmd: &[&str]) -> Option<i32> {
    std::process::Command::new("docker")
        .args(["run", "--rm", "--network=none", "--label", "guard-test=1"])
        .args(args)
        .arg(TEST_IMAGE)
        .args(cmd)
        .output()
        .expect("docker run")
        .status
        .code()
}

#[test]
fn fallback_kills_a_denied_exec_in_a_container_before_it_runs() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let c = docker.run(&[], &["sleep", "300"]);
    let dir = cgroup_v2_dir(c.pid());
    let rel = format!(
        "/{}",
        dir.strip_prefix(cgroup2_mount())
            .expect("container cgroup under the cgroup2 mount")
            .display()
    );
    let s = Scratch::new("fallback");
    let policy = s.policy(&format!(
        "- policy: host-fallback\n  workload: {{cgroup: \"{rel}\"}}\n  mode: enforce\n  enforce:\n    exec: {{deny: [/bin/touch]}}\n"
    ));

    // Control before guard: the same exec runs and writes its file.
    let (ok, _) = c.exec(&["/bin/touch", "/tmp/control"]);
    assert!(ok, "control exec failed before guard ran");

    let agent = s.agent(&policy, &[]);
    // Existing cgroups are bound before `guard: ready`.
    let out = std::process::Command::new("docker")
        .args(["exec", &c.id, "/bin/touch", "/tmp/ran"])
        .output()
        .expect("docker exec");
    // SIGKILL: docker exec reports 128 + 9.
    assert_eq!(
        out.status.code(),
        Some(137),
        "denied exec was not killed: {out:?}"
    );
    let (exists, _) = c.exec(&["/bin/test", "-e", "/tmp/ran"]);
    assert!(
        !exists,
        "/tmp/ran exists: the denied binary ran before the kill"
    );
    // Other binaries still run in the container.
    let (ok, _) = c.exec(&["/bin/true"]);
    assert!(ok, "an exec not in the deny list failed");

    let alert = agent
        .wait_for(Duration::from_secs(20), |v| {
            is_policy_alert(v, "/bin/touch")
        })
        .expect("no guard_policy alert for /bin/touch");
    assert_eq!(alert["guard"]["backend"], "sigkill-fallback");
    assert_eq!(alert["guard"]["decision"], "kill");
    assert_eq!(alert["output_fields"]["guard.hook"], "sched_process_exec");
    assert_eq!(alert["guard"]["policy"], "host-fallback");
    assert_eq!(alert["priority"], "Critical");
    assert_eq!(alert["output_fields"]["container.id"], &c.id[..12]);
    agent.stop();
    let d = s.decisions();
    let rec = d
        .iter()
        .find(|v| v["target"] == "/bin/touch")
        .unwrap_or_else(|| panic!("no audit decision for /bin/touch: {d:?}"));
    assert_eq!(rec["decision"], "deny");
    assert_eq!(rec["op"], "exec");
    assert_eq!(rec["policy"], "host-fallback");
    assert_eq!(rec["backend"], "sigkill-fallback");
    assert_eq!(rec["hook"], "sched_process_exec");
    assert_eq!(rec["workload"]["container_id"], c.id.as_str());
    s.cleanup();
    // After cleanup nothing enforces: the exec runs again.
    let (ok, _) = c.exec(&["/bin/touch", "/tmp/after-cleanup"]);
    assert!(ok, "exec still killed after --cleanup");
}

/// Name and label selectors bind through the container table (Docker metadata), for a
/// container that was running before the agent started; a container that does not match is
/// left alone.
#[test]
fn name_and_label_selectors_bind_running_containers() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let tag = std::process::id().to_string();
    let name = format!("guard-pol-web-{tag}");
    let other_name = format!("guard-pol-db-{tag}");
    let c = docker.run(&["--name", &name, "--label", "tier=web"], &["sleep", "300"]);
    let other = docker.run(
        &["--name", &other_name, "--label", "tier=db"],
        &["sleep", "300"],
    );
    let s = Scratch::new("selectors");
    let policy = s.policy(
        "- policy: web-by-name-and-label\n  workload: {name: \"guard-pol-web-*\", labels: {tier: web}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/bin/touch]}\n",
    );
    // The identity of /bin/touch in each container, taken before the policy applies (in a
    // busybox image it is /bin/busybox, which runs `stat` too). Resolved inside the container:
    // from the host, /proc/<pid>/root/bin/touch -> /bin/busybox would reach the host's busybox.
    let (dev, ino) = kernel_file_id_in(&c, "/bin/touch");
    let (odev, oino) = kernel_file_id_in(&other, "/bin/touch");
    let agent = s.agent(&policy, &[]);
    // Metadata comes from Docker asynchronously; the cgroup walk binds once it is there.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        let out = std::process::Command::new("docker")
            .args(["exec", &c.id, "/bin/touch", "/tmp/ran"])
            .output()
            .expect("docker exec");
        if out.status.code() == Some(137) || std::time::Instant::now() > deadline {
            break out.status.code();
        }
        // Not bound yet: undo the file so the final check stays meaningful.
        c.exec(&["/bin/rm", "-f", "/tmp/ran"]);
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        code,
        Some(137),
        "exec in the selected container was not killed"
    );
    let (exists, _) = c.exec(&["/bin/test", "-e", "/tmp/ran"]);
    assert!(!exists, "the killed exec wrote its file");
    let (ok, _) = other.exec(&["/bin/touch", "/tmp/ran"]);
    assert!(
        ok,
        "exec in a container the policy does not select was killed"
    );
    // The rule also holds on the file itself: /bin/touch resolved in the container's root
    // (busybox: the same inode as every applet) is in POLICY_INODES, for the bound container
    // only (the other container's busybox has another overlay device).
    let rules = pinned_inode_rules(&s.pins);
    assert!(
        rules.iter().any(|&(_, d, i, bits)| (d, i) == (dev, ino)
            && bits & guard_ebpf::path_bits::EXEC_MATCH != 0),
        "/bin/touch of the bound container ({dev}:{ino}) not in POLICY_INODES: {rules:?}"
    );
    assert!(
        !rules.iter().any(|&(_, d, i, _)| (d, i) == (odev, oino)),
        "the unselected container's /bin/touch is in POLICY_INODES: {rules:?}"
    );
    let alert = agent
        .wait_for(Duration::from_secs(20), |v| {
            is_policy_alert(v, "/bin/touch")
        })
        .expect("no guard_policy alert");
    assert_eq!(alert["guard"]["policy"], "web-by-name-and-label");
    assert_eq!(alert["output_fields"]["container.name"], name.as_str());
    agent.stop();
    s.cleanup();
}

/// A container created after the agent started is under policy from its entrypoint: the
/// policy is learnt at Docker's create event and bound in the kernel at `cgroup_mkdir`, so
/// `docker run IMAGE /bin/touch ...` under a policy denying /bin/touch fails to start and the
/// file is never written. Repeated, because it is a race by design, and run while a flood of
/// opens keeps the agent's pipeline busy: the binding must not wait behind events.
#[test]
fn container_start_denied_entrypoint_never_runs() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(_docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let s = Scratch::new("start");
    let policy = s.policy(
        "- policy: start-window\n  workload: {labels: {guard-start: deny}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/bin/touch]}\n",
    );
    let agent = s.agent(&policy, &[]);
    let out = s.dir.join("out");
    let mount = format!("{}:/out", out.display());
    // Bounded: at most 5M opens, stopped (by PID) when the runs are done.
    let mut flood = std::process::Command::new(env!("CARGO_BIN_EXE_guard-testkit"))
        .args(["bench", "open", "5000000", "/etc/hostname"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the open flood");
    std::thread::sleep(Duration::from_millis(500));
    const RUNS: usize = 10;
    for i in 0..RUNS {
        let file = format!("/out/ran-{i}");
        let code = docker_run(
            &["-v", &mount, "--label", "guard-start=deny"],
            &["/bin/touch", &file],
        );
        assert_eq!(
            code,
            Some(137),
            "run {i}: the container's denied entrypoint was not killed"
        );
        assert!(
            !out.join(format!("ran-{i}")).exists(),
            "run {i}: the denied entrypoint ran and wrote its file"
        );
    }
    let _ = flood.kill();
    let _ = flood.wait();
    // Control: the same container without the label runs its entrypoint.
    let code = docker_run(&["-v", &mount], &["/bin/touch", "/out/control"]);
    assert_eq!(code, Some(0), "unlabelled container failed");
    assert!(out.join("control").exists(), "control file missing");
    let alerts = agent.collect_until(Duration::from_secs(10), |_| false);
    let n = alerts
        .iter()
        .filter(|v| v["source"] == "guard_policy" && v["guard"]["policy"] == "start-window")
        .count();
    assert_eq!(n, RUNS, "one alert per killed entrypoint");
    agent.stop();
    assert_eq!(
        s.decisions()
            .iter()
            .filter(|v| v["policy"] == "start-window" && v["decision"] == "deny")
            .count(),
        RUNS,
        "one audit decision per killed entrypoint"
    );
    s.cleanup();
}

/// `docker exec CONTAINER sh -c SCRIPT`: exit code and stdout.
fn sh_in(
    c: &guard_tests::harness::Container,
    workdir: &str,
    script: &str,
) -> (Option<i32>, String) {
    let out = std::process::Command::new("docker")
        .args(["exec", "-w", workdir, &c.id, "sh", "-c", script])
        .output()
        .expect("docker exec");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The shell opens the file itself (a redirection), then outlives the open by 3 s: a kill
/// after the fact ends it with SIGKILL before `survived` is printed.
const OPEN_AND_LINGER: &str = "exec 3<{}; sleep 3; echo survived";
/// On this host (no BPF LSM) open rules are enforced after the fact: the process that opened
/// a denied file, through an absolute or a relative path, is SIGKILLed and the decision is
/// alerted and audited; the same opens in a container the policy does not select are left
/// alone. (Connect rules are refused up front: `host_net_policy`.)
#[test]
fn fallback_kills_after_a_denied_open() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let c = docker.run(&["--label", "guard-fb=1"], &["sleep", "300"]);
    let other = docker.run(&[], &["sleep", "300"]);
    for k in [&c, &other] {
        let (ok, _) = k.exec(&["sh", "-c", "echo secret > /tmp/secret"]);
        assert!(ok, "creating /tmp/secret in the container failed");
    }
    let s = Scratch::new("after-fact");
    let policy = s.policy(
        "- policy: after-fact\n  workload: {labels: {guard-fb: \"1\"}}\n  mode: enforce\n  enforce:\n    open: {deny_read: [/tmp/secret]}\n",
    );
    let agent = s.agent(&policy, &[]);
    let open_abs = OPEN_AND_LINGER.replace("{}", "/tmp/secret");
    let open_rel = OPEN_AND_LINGER.replace("{}", "../tmp/secret");

    // Controls first: the unselected container, and an allowed read in the selected one.
    assert_eq!(
        sh_in(&other, "/", &open_abs),
        (Some(0), "survived\n".into()),
        "open in a container without the policy was killed"
    );
    assert_eq!(
        sh_in(&c, "/", &OPEN_AND_LINGER.replace("{}", "/etc/passwd")),
        (Some(0), "survived\n".into()),
        "an open the policy does not deny was killed"
    );

    let (code, out) = sh_in(&c, "/", &open_abs);
    assert_eq!(
        (code, out.as_str()),
        (Some(137), ""),
        "denied open (absolute path) was not killed"
    );
    let (code, out) = sh_in(&c, "/etc", &open_rel);
    assert_eq!(
        (code, out.as_str()),
        (Some(137), ""),
        "denied open (relative path with ..) was not killed"
    );

    let alerts = agent.collect_until(Duration::from_secs(10), |_| false);
    let policy_alerts: Vec<_> = alerts
        .iter()
        .filter(|v| v["source"] == "guard_policy")
        .collect();
    let opens: Vec<_> = policy_alerts
        .iter()
        .filter(|v| is_policy_alert(v, "/tmp/secret"))
        .collect();
    assert_eq!(
        opens.len(),
        2,
        "one alert per denied open: {policy_alerts:?}"
    );
    for a in &opens {
        assert_eq!(a["guard"]["decision"], "kill");
        assert_eq!(a["guard"]["backend"], "sigkill-fallback");
        assert_eq!(a["output_fields"]["guard.access"], "read");
        assert_eq!(a["output_fields"]["guard.hook"], "after_syscall");
        assert_eq!(a["output_fields"]["container.id"], &c.id[..12]);
    }
    assert_eq!(
        policy_alerts.len(),
        2,
        "decisions for allowed actions or the other container: {policy_alerts:?}"
    );
    agent.stop();
    let d = s.decisions();
    let count = |op: &str| {
        d.iter()
            .filter(|v| {
                v["op"] == op
                    && v["decision"] == "deny"
                    && v["policy"] == "after-fact"
                    && v["hook"] == "after_syscall"
            })
            .count()
    };
    assert_eq!(
        (count("open"), count("connect")),
        (2, 0),
        "audit decisions: {d:?}"
    );
    s.cleanup();
}

/// Truthful records (issue 16): the after-the-fact kill is recorded `kill` only when the
/// process it signalled is gone afterwards; a process that had exited 0 before the signal is
/// `kill-failed` with the reason, in the alert and the audit record.
#[test]
fn fallback_records_kill_failed_for_a_process_that_exited_first() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let c = docker.run(&["--label", "guard-kf=1"], &["sleep", "300"]);
    let gone = ["/tmp/gone1", "/tmp/gone2", "/tmp/gone3"];
    let (ok, _) = c.exec(&[
        "sh",
        "-c",
        "for f in live gone1 gone2 gone3; do echo secret > /tmp/$f; done",
    ]);
    assert!(ok, "creating the files failed");
    let s = Scratch::new("kill-failed");
    let policy = s.policy(
        "- policy: kill-failed\n  workload: {labels: {guard-kf: \"1\"}}\n  mode: enforce\n  enforce:\n    open: {deny_read: [/tmp/live, /tmp/gone1, /tmp/gone2, /tmp/gone3]}\n",
    );
    let agent = s.agent(&policy, &[]);
    // Alive when the agent acts: killed.
    let (code, out) = sh_in(&c, "/", &OPEN_AND_LINGER.replace("{}", "/tmp/live"));
    assert_eq!(
        (code, out.as_str()),
        (Some(137), ""),
        "the lingering opener was not killed"
    );
    // Opens and exits 0 at once: the agent's kill comes after the exit.
    let codes: Vec<Option<i32>> = gone
        .iter()
        .map(|f| sh_in(&c, "/", &format!("exec 3<{f}; exit 0")).0)
        .collect();
    let alerts = agent.collect_until(Duration::from_secs(10), |_| false);
    let alert_of = |target: &str| {
        let a: Vec<_> = alerts
            .iter()
            .filter(|v| is_policy_alert(v, target))
            .collect();
        assert_eq!(a.len(), 1, "alerts for {target}: {alerts:?}");
        a[0].clone()
    };
    let live = alert_of("/tmp/live");
    assert_eq!(live["guard"]["decision"], "kill");
    assert!(
        live["output_fields"].get("guard.kill_error").is_none(),
        "{live}"
    );
    let mut exited_first = 0;
    for (f, code) in gone.iter().zip(&codes) {
        let a = alert_of(f);
        // Whatever the race gave, the record says what happened to the process.
        match code {
            Some(0) => {
                exited_first += 1;
                assert_eq!(a["guard"]["decision"], "kill-failed", "{f}: {a}");
                assert_eq!(
                    a["output_fields"]["guard.kill_error"], "exited before the signal",
                    "{f}: {a}"
                );
            }
            Some(137) => assert_eq!(a["guard"]["decision"], "kill", "{f}: {a}"),
            other => panic!("{f}: exit {other:?}"),
        }
    }
    assert!(
        exited_first > 0,
        "no opener exited before the kill: {codes:?}"
    );
    agent.stop();
    let d = s.decisions();
    let failed: Vec<_> = d
        .iter()
        .filter(|v| v["kill_error"] == "exited before the signal")
        .collect();
    assert_eq!(failed.len(), exited_first, "audit decisions: {d:?}");
    assert!(
        d.iter()
            .any(|v| v["target"] == "/tmp/live" && v["kill_error"].is_null()),
        "audit decisions: {d:?}"
    );
    s.cleanup();
}

/// A policy's `rules:` selection decides which detection rules apply to its workload: a
/// container whose policy excludes "Shell spawned in container" gets no such alert, while a
/// container without a policy does.
#[test]
fn policy_rule_selection_filters_alerts_per_workload() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let quiet = docker.run(&["--label", "guard-sel=quiet"], &["sleep", "300"]);
    let loud = docker.run(&[], &["sleep", "300"]);
    let s = Scratch::new("selection");
    let policy = s.policy(
        "- policy: quiet-shells\n  workload: {labels: {guard-sel: quiet}}\n  mode: detect\n  rules: {exclude_names: [\"Shell spawned in container\"]}\n",
    );
    let agent = s.agent(&policy, &[]);
    let shell = |c: &guard_tests::harness::Container| {
        let (ok, _) = c.exec(&["sh", "-c", "true"]);
        assert!(ok, "sh -c true failed");
    };
    // The quiet container's shells first, so the loud one's alert marks when they are done.
    for _ in 0..3 {
        shell(&quiet);
    }
    shell(&loud);
    let alerts = agent.collect_until(Duration::from_secs(15), |v| {
        v["rule"] == "Shell spawned in container"
            && v["output_fields"]["container.id"] == loud.id[..12]
    });
    agent.stop();
    let shells: Vec<_> = alerts
        .iter()
        .filter(|v| v["rule"] == "Shell spawned in container")
        .collect();
    assert!(
        shells
            .iter()
            .any(|v| v["output_fields"]["container.id"] == loud.id[..12]),
        "no shell alert for the container without a policy: {alerts:?}"
    );
    assert!(
        shells
            .iter()
            .all(|v| v["output_fields"]["container.id"] != quiet.id[..12]),
        "shell alert for a container whose policy excludes the rule: {shells:?}"
    );
    s.cleanup();
}

/// `guard run --detect-only` turns an enforce policy into would-deny: nothing is killed, the
/// exec runs, and a would-deny alert and audit record are produced.
#[test]
fn detect_only_reports_would_deny_and_kills_nothing() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let c = docker.run(&["--label", "guard-detect=1"], &["sleep", "300"]);
    let s = Scratch::new("detect");
    let policy = s.policy(
        "- policy: detect-forced\n  workload: {labels: {guard-detect: \"1\"}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/bin/touch]}\n    open: {deny_read: [/etc/passwd]}\n",
    );
    let agent = s.agent(&policy, &["--detect-only"]);
    // The fallback's after-the-fact open check reports and kills nothing.
    assert_eq!(
        sh_in(
            &c,
            "/",
            &OPEN_AND_LINGER
                .replace("{}", "/etc/passwd")
                .replace("sleep 3", "sleep 1")
        ),
        (Some(0), "survived\n".into()),
        "a denied open was killed under --detect-only"
    );
    let open_alert = agent
        .wait_for(Duration::from_secs(10), |v| {
            is_policy_alert(v, "/etc/passwd")
        })
        .expect("no would-deny alert for the open");
    assert_eq!(open_alert["guard"]["decision"], "would-deny");
    let alert = (0..50).find_map(|_| {
        let (ok, _) = c.exec(&["/bin/touch", "/tmp/ran"]);
        assert!(ok, "exec failed under --detect-only");
        agent.wait_for(Duration::from_millis(200), |v| {
            is_policy_alert(v, "/bin/touch")
        })
    });
    let alert = alert.expect("no would-deny alert within 10 s");
    assert_eq!(alert["guard"]["decision"], "would-deny");
    assert_eq!(alert["guard"]["mode"], "detect");
    assert_eq!(alert["priority"], "Warning");
    let (exists, _) = c.exec(&["/bin/test", "-e", "/tmp/ran"]);
    assert!(exists, "the exec did not run under --detect-only");
    agent.stop();
    let d = s.decisions();
    assert!(
        d.iter()
            .any(|v| v["policy"] == "detect-forced" && v["decision"] == "would_deny"),
        "no would_deny audit record: {d:?}"
    );
    assert!(
        d.iter().all(|v| v["decision"] != "deny"),
        "deny record under --detect-only: {d:?}"
    );
    s.cleanup();
}

/// `guard exec --policy`: Landlock denies (EACCES) what the policy's open and exec rules deny,
/// through absolute, relative and `..` paths, and allows the rest. Needs no root.
#[test]
fn guard_exec_applies_the_policy_with_landlock() {
    let landlock = std::fs::read_to_string("/sys/kernel/security/lsm")
        .map(|l| l.split(',').any(|m| m.trim() == "landlock"))
        .unwrap_or(false);
    if !can_run(landlock, "Landlock is not an active LSM on this kernel") {
        return;
    }
    let testkit = env!("CARGO_BIN_EXE_guard-testkit");
    let tmp = std::env::temp_dir().join(format!("guard-landlock-{}", std::process::id()));
    std::fs::create_dir_all(tmp.join("sub")).expect("tmp dir");
    std::fs::write(tmp.join("secret"), "s").expect("secret");
    std::fs::write(tmp.join("fine"), "f").expect("fine");
    let d = tmp.display();
    let policy = tmp.join("p.yaml");
    std::fs::write(
        &policy,
        format!(
            "- policy: ll\n  workload: {{}}\n  enforce:\n    open: {{deny_read: [{d}/secret], deny_write: [\"{d}/**\"]}}\n    exec: {{deny: [/bin/true]}}\n"
        ),
    )
    .expect("policy");
    let run = |cwd: &std::path::Path, args: &[&str]| -> String {
        let out = std::process::Command::new(guard_bin())
            .current_dir(cwd)
            .args(["exec", "--policy", policy.to_str().expect("utf8"), "--"])
            .args(args)
            .output()
            .expect("guard exec");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_owned()
    };
    let secret = format!("{d}/secret");
    let first = |s: String| s.split_whitespace().next().unwrap_or("").to_owned();
    assert_eq!(
        first(run(&tmp, &[testkit, "try-open", &secret, "r"])),
        "errno=13"
    );
    assert_eq!(
        first(run(&tmp, &[testkit, "try-open", "secret", "r"])),
        "errno=13"
    );
    assert_eq!(
        first(run(
            &tmp.join("sub"),
            &[testkit, "try-open", "../secret", "r"]
        )),
        "errno=13"
    );
    assert_eq!(
        first(run(&tmp, &[testkit, "try-open", "fine", "w"])),
        "errno=13"
    );
    assert_eq!(run(&tmp, &[testkit, "try-open", "fine", "r"]), "ok");
    assert_eq!(
        first(run(&tmp, &[testkit, "try-exec", "/bin/true"])),
        "errno=13"
    );
    assert_eq!(run(&tmp, &[testkit, "try-exec", "/bin/echo"]).trim(), "");
    let _ = std::fs::remove_dir_all(&tmp);
}
