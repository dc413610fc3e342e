//! Host layer, least privilege (docs/hardening.md): once `guard run` is ready, every thread
//! holds exactly `guard::harden::RUNTIME_CAPS` (effective, permitted, bounding; nothing
//! inheritable or ambient) with `no_new_privs`, and the agent still works: an exec in a
//! container raises its alert, and `kill_process` kills a process of another user (which
//! needs CAP_KILL). Its Landlock domain is proven from the inside: a response script — whose
//! own sandbox lets it read the whole file system — inherits the agent's domain and cannot
//! read a file outside the agent's paths, while it reads the agent's rules; with
//! `--no-landlock` the same script reads the file.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use guard::harden::{RUNTIME_CAPS, START_CAPS, mask_of, thread_creds};
use guard_tests::{
    harness::{Agent, Docker, agent_lock, can_run, guard_bin, is_root, repo_root},
    respond_util::TempDir,
};

/// A pin directory of our own, so no other agent's pins are touched.
const PIN: &str = "/sys/fs/bpf/guard-ops-test";

fn assert_runtime_caps_only(pid: u32) {
    let want = mask_of(RUNTIME_CAPS);
    let creds = thread_creds(pid);
    assert!(
        creds.len() >= 2,
        "the agent should run several threads: {creds:?}"
    );
    for t in &creds {
        assert_eq!(
            (t.eff, t.prm, t.bnd, t.inh, t.amb, t.no_new_privs),
            (want, want, want, 0, 0, true),
            "thread {} of the agent: {t:?} (want {:?})",
            t.tid,
            RUNTIME_CAPS
        );
    }
}

#[test]
fn after_start_every_thread_holds_only_the_runtime_capabilities_and_alerts_still_fire() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let work = TempDir::new("ops-caps");
    let audit = work.0.join("audit");
    let c = docker.run(&["--label", "guard-ops=caps"], &["sleep", "600"]);
    let agent = Agent::run(&[
        "--pin-dir",
        PIN,
        "--audit-dir",
        audit.to_str().expect("utf8"),
        "--metrics-addr",
        "off",
    ]);
    assert_runtime_caps_only(agent.pid());
    let _ = c.exec(&["sh", "-c", "true"]);
    let alert = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["rule"] == "Shell spawned in container"
        })
        .expect("an alert for the shell in the container, after the drop");
    assert_eq!(alert["output_fields"]["container.id"], &c.id[..12]);
    // Still restricted after handling events (threads started since inherit the sets).
    assert_runtime_caps_only(agent.pid());
}

fn wait_file(p: &Path, timeout: Duration) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn responses_still_kill_and_the_agent_cannot_read_outside_its_paths() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let work = TempDir::new("ops-landlock");
    // Outside every path the agent is given.
    let secret_dir = TempDir::new("ops-secret");
    let secret = secret_dir.0.join("secret");
    std::fs::write(&secret, "top secret\n").expect("secret");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    for d in ["rules", "responses", "out", "bin"] {
        std::fs::create_dir_all(work.0.join(d)).expect("mkdir");
    }
    // Traverse for the victim running as nobody.
    std::fs::set_permissions(&work.0, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let rules = work.0.join("rules/ops.yaml");
    std::fs::write(
        &rules,
        "- rule: Ops hardening victim\n  desc: test process for the least-privilege test\n  condition: guard_spawned_process and proc.name = opsvictim\n  output: victim started (pid=%proc.pid)\n  priority: CRITICAL\n",
    )
    .expect("rules");
    let out = work.0.join("out");
    let script = work.0.join("bin/probe.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\ncat {secret} > {out}/secret.txt 2> {out}/secret.err\ncat {rules} > {out}/allowed.txt 2> {out}/allowed.err\necho done > {out}/done\n",
            secret = secret.display(),
            rules = rules.display(),
            out = out.display()
        ),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(
        work.0.join("responses/ops.yaml"),
        format!(
            "- settings: {{dedupe_window: 0s}}\n- response: ops-kill\n  match: {{rules: ['Ops hardening victim']}}\n  actions:\n    - kill_process\n    - exec: {{script: '{}', timeout: 5s, allow_write: ['{}']}}\n",
            script.display(),
            out.display()
        ),
    )
    .expect("responses");
    let victim = work.0.join("bin/opsvictim");
    std::fs::copy(std::fs::canonicalize("/bin/sleep").expect("sleep"), &victim)
        .expect("copy sleep");
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let policies = repo_root().join("policies");

    for landlock in [true, false] {
        for f in [
            "secret.txt",
            "secret.err",
            "allowed.txt",
            "allowed.err",
            "done",
        ] {
            let _ = std::fs::remove_file(out.join(f));
        }
        let audit = work.0.join(format!("audit-{landlock}"));
        let audit = audit.to_str().expect("utf8").to_owned();
        let responses = work.0.join("responses");
        let responses = responses.to_str().expect("utf8").to_owned();
        let mut args = vec![
            "run",
            "--format",
            "json",
            "--rules",
            policies.to_str().expect("utf8"),
            "--rules",
            rules.to_str().expect("utf8"),
            "--responses",
            &responses,
            "--audit-dir",
            &audit,
            "--pin-dir",
            PIN,
            "--metrics-addr",
            "off",
        ];
        if !landlock {
            args.push("--no-landlock");
        }
        let agent = Agent::start_cmd(&args);
        assert_runtime_caps_only(agent.pid());
        // A process of another user: killing it needs CAP_KILL, which the agent kept.
        let mut child = Command::new(&victim)
            .arg("60")
            .uid(65534)
            .gid(65534)
            .spawn()
            .expect("start the victim");
        let alert = agent
            .wait_for(Duration::from_secs(20), |v| {
                v["rule"] == "Ops hardening victim"
            })
            .expect("the victim's alert");
        assert_eq!(alert["priority"], "Critical");
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break Some(s);
            }
            if t0.elapsed() > Duration::from_secs(15) {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let Some(status) = status else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("kill_process did not kill the victim (landlock={landlock})");
        };
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL),
            "the victim was SIGKILLed by the response"
        );
        assert!(
            wait_file(&out.join("done"), Duration::from_secs(15)),
            "the response script did not run (landlock={landlock})"
        );
        let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
        // The agent's own paths stay readable in both modes.
        assert_eq!(
            read("allowed.txt"),
            std::fs::read_to_string(&rules).expect("rules"),
            "allowed.err: {}",
            read("allowed.err")
        );
        if landlock {
            assert_eq!(
                read("secret.txt"),
                "",
                "the secret leaked through the agent"
            );
            assert!(
                read("secret.err").contains("Permission denied"),
                "secret.err: {}",
                read("secret.err")
            );
        } else {
            assert_eq!(
                read("secret.txt"),
                "top secret\n",
                "without Landlock the same script reads the file: secret.err {}",
                read("secret.err")
            );
        }
        drop(agent);
    }
}

/// The deployments (systemd unit, DaemonSet) give guard only `START_CAPS`: it starts with
/// exactly those (setpriv sets the bounding, inheritable and ambient sets, then execs guard
/// as root) and ends with the runtime set.
#[test]
fn the_start_capabilities_are_enough_to_start() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let have = Command::new("setpriv")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_run(have, "setpriv (util-linux) not installed") {
        return;
    }
    let _lock = agent_lock();
    let work = TempDir::new("ops-start-caps");
    let caps: Vec<String> = START_CAPS
        .iter()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--inh-caps=-all,{caps}"))
        .arg(format!("--ambient-caps=-all,{caps}"))
        .arg(format!("--bounding-set=-all,{caps}"))
        .arg("--")
        .arg(guard_bin())
        .args([
            "run",
            "--format",
            "json",
            "--no-responses",
            "--rules",
            repo_root().join("policies").to_str().expect("utf8"),
            "--audit-dir",
            work.0.join("audit").to_str().expect("utf8"),
            "--pin-dir",
            PIN,
            "--metrics-addr",
            "off",
        ]);
    let agent = Agent::spawn(cmd);
    assert_runtime_caps_only(agent.pid());
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        stderr.iter().all(|l| !l.contains("ERROR")),
        "errors under the start set: {stderr:?}"
    );
}
