//! Another way to run a binary without BPF LSM, on this kernel, in real containers: the
//! dynamic loader run as the program (`ld.so FILE`) reads and maps FILE, so no exec of FILE
//! happens. On the `fanotify` backend the loader's read of an exec-denied file is refused
//! (EPERM) as that exec, whatever name reaches the file; the loader still runs other programs,
//! other processes still read the file, and a container without the policy runs it.

use std::time::Duration;

use guard_tests::harness::{Container, Docker, Scratch, docker_and_agent};

const LOADER: &str = "/lib64/ld-linux-x86-64.so.2";

const POLICY: &str = "- policy: loader\n  workload: {labels: {guard-loader: \"on\"}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/opt/tool]}\n";

/// The loader runs the denied binary (coreutils' echo) by every name; none prints RAN.
const THROUGH_LOADER: &[&str] = &[
    "/lib64/ld-linux-x86-64.so.2 /opt/tool RAN",
    "cd /opt && /lib64/ld-linux-x86-64.so.2 ./tool RAN",
    "ln -sf /opt/tool /tmp/sym && /lib64/ld-linux-x86-64.so.2 /tmp/sym RAN",
    "ln -f /opt/tool /tmp/hard && /lib64/ld-linux-x86-64.so.2 /tmp/hard RAN",
    "exec 3</opt/tool && /lib64/ld-linux-x86-64.so.2 /proc/self/fd/3 RAN",
];

/// The host's dynamic loader, libc and two copies of echo (each its own inode) in `c`, put
/// there by the daemon before any agent runs.
fn provision(docker: &Docker, c: &Container) {
    let (code, _, err) = c.sh("mkdir -p /lib64 /lib/x86_64-linux-gnu /opt");
    assert_eq!(code, Some(0), "{err}");
    let real = |p: &str| {
        std::fs::canonicalize(p)
            .unwrap_or_else(|e| panic!("{p} on the host: {e}"))
            .to_string_lossy()
            .into_owned()
    };
    for (host, inside) in [
        (real(LOADER), LOADER),
        (
            real("/lib/x86_64-linux-gnu/libc.so.6"),
            "/lib/x86_64-linux-gnu/libc.so.6",
        ),
        (real("/usr/bin/echo"), "/opt/tool"),
        (real("/usr/bin/echo"), "/opt/ok"),
    ] {
        docker.cmd(&["cp", &host, &format!("{}:{inside}", c.id)]);
    }
}

#[test]
fn fanotify_refuses_an_exec_denied_binary_run_by_the_dynamic_loader() {
    let Some((docker, _lock)) = docker_and_agent() else {
        return;
    };
    let s = Scratch::new("fan-loader");
    let denied = docker.run(&["--label", "guard-loader=on"], &["sleep", "300"]);
    let control = docker.run(&[], &["sleep", "300"]);
    provision(&docker, &denied);
    provision(&docker, &control);
    let policy = s.policy(POLICY);
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    for script in THROUGH_LOADER {
        let (code, out, err) = denied.sh(script);
        assert!(!out.contains("RAN"), "{script:?} ran: {out}");
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(
            err.contains("Operation not permitted"),
            "{script:?}: not EPERM: {err}"
        );
        let (code, out, err) = control.sh(script);
        assert_eq!(
            (code, out.trim()),
            (Some(0), "RAN"),
            "control {script:?}: {err}"
        );
    }
    // Its direct exec is refused at exec's open, as before.
    let (code, out, err) = denied.sh("/opt/tool RAN");
    assert!(
        !out.contains("RAN") && code == Some(126),
        "{code:?} {out} {err}"
    );
    // Allowed: the loader running another program, that program, a read of the denied file
    // by a process that is not a loader.
    for script in [
        "/lib64/ld-linux-x86-64.so.2 /opt/ok RAN",
        "/opt/ok RAN",
        "cat /opt/tool >/dev/null && echo RAN",
    ] {
        let (code, out, err) = denied.sh(script);
        assert_eq!((code, out.trim()), (Some(0), "RAN"), "{script:?}: {err}");
    }
    let alerts = agent.collect_until(Duration::from_secs(5), |_| false);
    agent.stop();
    let refused: Vec<_> = alerts
        .iter()
        .filter(|a| {
            let f = &a["output_fields"];
            a["source"] == "guard_policy"
                && f["guard.op"] == "exec"
                && f["guard.hook"] == "fanotify_open_perm"
        })
        .map(|a| {
            assert_eq!(a["guard"]["decision"], "deny", "{a}");
            assert_eq!(a["output_fields"]["guard.reason"], "deny_list", "{a}");
            a["output_fields"]["guard.target"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    assert_eq!(
        refused,
        [
            "/opt/tool",
            "/opt/tool",
            "/opt/tool",
            "/tmp/hard",
            "/opt/tool"
        ],
        "one exec record per refused loader run: {alerts:?}"
    );
    s.cleanup();
}
