//! Host layer for issue 5, on this kernel (no BPF LSM): the `sigkill-fallback` backend kills a
//! denied exec inside a real container before the binary runs an instruction.

use std::time::Duration;

use guard_tests::harness::{
    Agent, Docker, agent_lock, can_run, cgroup_v2_dir, cgroup2_mount, is_root,
};

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
    let tmp = std::env::temp_dir().join(format!("guard-host-policy-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("tmp dir");
    let policy = tmp.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "- policy: host-fallback\n  workload: {{cgroup: \"{rel}\"}}\n  mode: enforce\n  enforce:\n    exec: {{deny: [/bin/touch]}}\n"
        ),
    )
    .expect("write policy");
    let pins = format!("/sys/fs/bpf/guard-test-{}", std::process::id());

    // Control before guard: the same exec runs and writes its file.
    let (ok, _) = c.exec(&["/bin/touch", "/tmp/control"]);
    assert!(ok, "control exec failed before guard ran");

    let agent = Agent::start(&[
        "--policy",
        policy.to_str().expect("utf8"),
        "--pin-dir",
        &pins,
    ]);
    // The agent binds existing cgroups at start; give the 1 s rescan a moment on a loaded host.
    std::thread::sleep(Duration::from_millis(1500));
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

    let rec = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["kind"] == "policy_decision" && v["audit"]["target"] == "/bin/touch"
        })
        .expect("no policy_decision record for /bin/touch");
    assert_eq!(rec["guard"]["backend"], "sigkill-fallback");
    assert_eq!(rec["guard"]["decision"], "kill");
    assert_eq!(rec["audit"]["policy"], "host-fallback");
    assert_eq!(rec["audit"]["decision"], "deny");
    agent.stop();
    let st = std::process::Command::new(guard_tests::harness::guard_bin())
        .args(["run", "--cleanup", "--pin-dir", &pins])
        .status()
        .expect("guard run --cleanup");
    assert!(st.success());
    assert!(!std::path::Path::new(&pins).exists(), "pins left behind");
    // After cleanup nothing enforces: the exec runs again.
    let (ok, _) = c.exec(&["/bin/touch", "/tmp/after-cleanup"]);
    assert!(ok, "exec still killed after --cleanup");
    let _ = std::fs::remove_dir_all(&tmp);
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
        let out = std::process::Command::new(guard_tests::harness::guard_bin())
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
