//! Host layer for issue 16 on this kernel (no BPF LSM, fanotify permission events): the
//! `fanotify` backend refuses opens and execs in a real container with EPERM, on the file
//! itself whatever name reaches it, while a control container without the policy does all of
//! it. (The network half is host_net_policy.rs.)

use std::{process::Command, time::Duration};

use guard_tests::harness::{
    Docker, Scratch, TEST_IMAGE, agent_lock, can_run, cgroup_v2_dir, docker_and_agent, is_root,
    static_c,
};

/// An image with a binary of its own inode (`/opt/tool`, a copy of busybox: in the busybox
/// image every applet is one file, so a rule on `/bin/x` is a rule on all of them) and an
/// application log with content.
const IMAGE: &str = "guard-test-fanotify:latest";

fn build_image(docker: &Docker) {
    let name = format!("guard-fan-build-{}", std::process::id());
    docker.cmd(&[
        "run",
        "--name",
        &name,
        "--network=none",
        TEST_IMAGE,
        "sh",
        "-c",
        "mkdir -p /opt /var/log /etc/sub /etc/empty && cp /bin/busybox /opt/tool && echo 'line one' > /var/log/app.log",
    ]);
    docker.cmd(&["commit", &name, IMAGE]);
    docker.cmd(&["rm", "-f", &name]);
}

struct Ctr(String);

impl Drop for Ctr {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.0]).output();
    }
}

/// Each test's start: root, Docker, the agent lock, the image. `None` (outside CI) when it
/// cannot run here.
fn ready() -> Option<(Docker, std::sync::MutexGuard<'static, ()>)> {
    let (docker, lock) = docker_and_agent()?;
    build_image(&docker);
    Some((docker, lock))
}

fn start(docker: &Docker, label: bool) -> Ctr {
    let mut args = vec!["run", "-d", "--network=none", "--label", "guard-test=1"];
    if label {
        args.extend(["--label", "guard-fanotify=on"]);
    }
    args.extend([IMAGE, "sleep", "300"]);
    Ctr(docker.cmd(&args))
}

/// `docker exec C sh -c SCRIPT`: exit code, stdout, stderr.
fn sh(c: &Ctr, script: &str) -> (Option<i32>, String, String) {
    let out = Command::new("docker")
        .args(["exec", &c.0, "sh", "-c", script])
        .output()
        .expect("docker exec");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// sha256 and size of files inside the container (reading them is allowed by the policy).
fn digest(c: &Ctr, files: &[&str]) -> String {
    let (code, out, err) = sh(c, &format!("sha256sum {0}; wc -c {0}", files.join(" ")));
    assert_eq!(code, Some(0), "digest: {err}");
    out
}

const POLICY: &str = "- policy: fan\n  workload: {labels: {guard-fanotify: \"on\"}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/opt/tool], deny_new_binaries: true}\n    open:\n      deny_read: [/etc/shadow]\n      deny_write: ['/etc/**', '/bin/**', /var/log/app.log]\n";

/// Reads of /etc/shadow by every route the issue found leaking; none prints its content.
const READS: &[&str] = &[
    "cat /etc/shadow",
    "cd /etc && cat shadow",
    "cd /tmp && cat ../etc/shadow",
    "cat /tmp/../etc/shadow",
    "cat //etc//shadow",
    "busybox cat /etc/shadow",
    "cat < /etc/shadow",
    "cat /etc/shadow > /tmp/copy && cat /tmp/copy",
    "ln -sf /etc/shadow /tmp/sym && cat /tmp/sym",
    "ln -f /etc/shadow /tmp/hard && cat /tmp/hard",
    "exec 3</etc/shadow && cat <&3",
    "cd / && chroot / cat /etc/shadow",
];

/// Writes to protected files; none changes a byte.
const WRITES: &[&str] = &[
    "echo x >> /etc/passwd",
    "echo x > /etc/passwd",
    ": > /var/log/app.log",
    "echo x >> /var/log/app.log",
    "cd /etc && echo x >> ./passwd",
    "ln -sf /etc/passwd /tmp/pw && echo x >> /tmp/pw",
    "ln -f /var/log/app.log /tmp/applog && : > /tmp/applog",
    "sed -i s/root/toor/ /etc/passwd",
];

/// Execs of the denied binary by every name the issue found running; none prints RAN.
const EXECS: &[&str] = &[
    "/opt/tool echo RAN",
    "//opt/tool echo RAN",
    "/opt/../opt/tool echo RAN",
    "cd /opt && ./tool echo RAN",
    "PATH=/opt tool echo RAN",
    "ln -sf /opt/tool /tmp/t && /tmp/t echo RAN",
    "ln -f /opt/tool /tmp/h && /tmp/h echo RAN",
    "exec 3</opt/tool && /proc/self/fd/3 echo RAN",
    "sh -c '/opt/tool echo RAN'",
    // deny_new_binaries: copies, renames and new files written in the workload.
    "cp /bin/busybox /root/b && /root/b echo RAN",
    "cat /bin/busybox > /tmp/c && chmod +x /tmp/c && /tmp/c echo RAN",
    "cp /bin/busybox /tmp/m && mv /tmp/m /root/m && /root/m echo RAN",
];

#[test]
fn fanotify_refuses_reads_writes_and_execs_by_file_not_name() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let denied = start(&docker, true);
    let control = start(&docker, false);
    let s = Scratch::new("fanotify");
    let policy = s.policy(POLICY);
    let files = ["/etc/passwd", "/var/log/app.log"];
    // Before the agent: the control's baseline (the images are the same).
    let before = digest(&control, &files);

    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    // Running containers are marked before `guard: ready`.
    for script in READS {
        let (code, out, err) = sh(&denied, script);
        assert!(
            !out.contains("root:"),
            "{script:?}: /etc/shadow's content reached stdout: {out}"
        );
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(
            err.contains("Operation not permitted") || err.contains("Permission denied"),
            "{script:?}: not EPERM: {err}"
        );
        let (code, out, _) = sh(&control, script);
        assert_eq!(code, Some(0), "control {script:?}");
        assert!(out.contains("root:"), "control {script:?}: {out}");
    }
    for script in WRITES {
        let (code, _, err) = sh(&denied, script);
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(
            err.contains("Operation not permitted") || err.contains("Permission denied"),
            "{script:?}: not EPERM: {err}"
        );
        assert_eq!(
            digest(&denied, &files),
            before,
            "{script:?} changed a protected file"
        );
    }
    // A new file in a protected directory: the O_CREAT open makes an empty file before the
    // answer (docs/policies.md); not one byte lands.
    let (code, _, _) = sh(&denied, "cp /bin/busybox /bin/newtool");
    assert_ne!(code, Some(0), "cp into /bin succeeded");
    let (_, size, _) = sh(&denied, "wc -c < /bin/newtool 2>/dev/null || echo absent");
    assert!(
        size.trim() == "0" || size.trim() == "absent",
        "cp left {size:?} bytes in /bin/newtool"
    );
    // The copies of busybox are not named after an applet: one that runs says "applet not
    // found" (as in the control); a refused one never starts.
    for script in EXECS {
        let (code, out, err) = sh(&denied, script);
        assert!(
            !out.contains("RAN") && !err.contains("applet not found"),
            "{script:?} ran: {out} {err}"
        );
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(
            err.contains("Permission denied") || err.contains("Operation not permitted"),
            "{script:?}: not EPERM: {err}"
        );
    }
    // The control does all of it.
    for script in WRITES {
        // The control starts each attack from the same state.
        let reset = "echo new > /tmp/n && cp /etc/passwd /tmp/p && { [ -e /etc/group ] || cp /tmp/g /etc/group; }";
        assert_eq!(sh(&control, reset).0, Some(0));
        let (code, _, err) = sh(&control, script);
        assert_eq!(code, Some(0), "control {script:?}: {err}");
    }
    for script in EXECS {
        let (_, _, err) = sh(&control, script);
        assert!(
            err.contains("applet not found"),
            "control {script:?} did not run: {err}"
        );
    }
    assert_ne!(
        digest(&control, &files),
        before,
        "control writes did not land"
    );
    // Untouched files in the denied container stay usable.
    let (code, out, _) = sh(
        &denied,
        "cat /etc/hostname >/dev/null && echo ok > /tmp/ok && cat /tmp/ok && /bin/true",
    );
    assert_eq!((code, out.trim()), (Some(0), "ok"));

    let alert = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["source"] == "guard_policy"
                && v["output_fields"]["guard.hook"] == "fanotify_open_perm"
        })
        .expect("no alert from the fanotify answer");
    assert_eq!(alert["guard"]["backend"], "fanotify");
    assert_eq!(alert["guard"]["decision"], "deny");
    agent.stop();
    let d = s.decisions();
    let find = |op: &str, hook: &str, target: &str| {
        d.iter().any(|v| {
            v["op"] == op
                && v["hook"] == hook
                && v["decision"] == "deny"
                && v["backend"] == "fanotify"
                && v["target"] == target
                && v["policy"] == "fan"
        })
    };
    assert!(find("open", "fanotify_open_perm", "/etc/shadow"), "{d:?}");
    // /etc/passwd (below '/etc/**') is sealed: the kernel refuses its opens for write before
    // any permission event, and the agent records them from the failed syscall.
    assert!(find("write", "sealed_file", "/etc/passwd"), "{d:?}");
    assert!(
        find("exec", "fanotify_open_exec_perm", "/opt/tool"),
        "{d:?}"
    );
    assert!(find("exec", "fanotify_open_exec_perm", "/root/b"), "{d:?}");
    assert!(
        d.iter().all(|v| v["decision"] != "kill"),
        "a kill recorded where the kernel refused: {d:?}"
    );
    // The agent is gone, its marks with it: the pinned exec backstop still kills the denied
    // file before it runs, by its identity (a name the filename rule does not know).
    let (code, _, err) = sh(
        &denied,
        "ln -sf /opt/tool /tmp/after && /tmp/after echo RAN",
    );
    assert!(
        !err.contains("applet not found"),
        "ran after the agent stopped: {err}"
    );
    assert_eq!(code, Some(137), "not killed by the backstop");
    s.cleanup();
}

/// A host process opening a file in a loop (the agent's event rings busy), half a second in.
fn open_flood() -> std::process::Child {
    let c = Command::new(env!("CARGO_BIN_EXE_guard-testkit"))
        .args(["bench", "open", "5000000", "/etc/hostname"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the open flood");
    std::thread::sleep(Duration::from_millis(500));
    c
}

/// 10 `docker run` of a denied entrypoint under an open flood: none runs (the container's
/// filesystem is marked at the agent's next walk; until then the `sched_process_exec` backstop
/// kills the denied binary before its first instruction).
#[test]
fn fanotify_start_window_denied_entrypoint_never_runs() {
    let Some((_docker, _lock)) = ready() else {
        return;
    };
    let s = Scratch::new("fanotify-start");
    let policy = s.policy(POLICY);
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let mut flood = open_flood();
    for i in 0..10 {
        let out = Command::new("docker")
            .args(["run", "--rm", "--network=none", "--label", "guard-test=1"])
            .args([
                "--label",
                "guard-fanotify=on",
                IMAGE,
                "/opt/tool",
                "echo",
                "RAN",
            ])
            .output()
            .expect("docker run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("applet not found"),
            "run {i}: the denied entrypoint ran: {stderr}"
        );
        assert_ne!(out.status.code(), Some(0), "run {i}: exit 0");
    }
    let _ = flood.kill();
    let _ = flood.wait();
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network=none",
            "--label",
            "guard-test=1",
            IMAGE,
        ])
        .args(["/opt/tool", "echo", "RAN"])
        .output()
        .expect("docker run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("applet not found"),
        "control: the entrypoint did not run: {out:?}"
    );
    agent.stop();
    s.cleanup();
}

/// A container's first instruction is already covered: the kernel stops the entrypoint at its
/// exec until the agent has marked the container's filesystem (agent/holds.rs). 10 `docker
/// run`s whose entrypoint reads /etc/shadow and appends to /etc/passwd at once, under an open
/// flood: each read and write fails with EPERM, nothing is printed or written; a control
/// container without the policy does both.
#[test]
fn fanotify_container_first_instruction_is_covered() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let s = Scratch::new("fanotify-first");
    let policy = s.policy(POLICY);
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let mut flood = open_flood();
    // Then an allowed exec and read below a `deny_write` subtree (once refused: an open the
    // answer could not classify counted as a write, and poisoned busybox as a new binary).
    // What was written is read from the host (`docker diff`).
    const SCRIPT: &str = "cat /etc/shadow; echo read=$?; echo x >> /etc/passwd; echo write=$?; cat /etc/hostname > /dev/null; echo allowed=$?";
    let run = |label: bool| {
        let name = format!("guard-fan-first-{}-{}", std::process::id(), label);
        let mut args = vec![
            "run",
            "--name",
            &name,
            "--network=none",
            "--label",
            "guard-test=1",
        ];
        if label {
            args.extend(["--label", "guard-fanotify=on"]);
        }
        args.extend([IMAGE, "sh", "-c", SCRIPT]);
        let out = Command::new("docker")
            .args(&args)
            .output()
            .expect("docker run");
        let diff = docker.cmd(&["diff", &name]);
        docker.cmd(&["rm", "-f", &name]);
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            diff,
        )
    };
    for i in 0..10 {
        let (out, err, diff) = run(true);
        assert_eq!(
            out, "read=1\nwrite=1\nallowed=0\n",
            "run {i}: the first read or write was not refused, or the allowed read was: {out:?} {err:?}"
        );
        assert_eq!(
            err.matches("Operation not permitted").count(),
            2,
            "run {i}: {err:?}"
        );
        assert!(!diff.contains("/etc/passwd"), "run {i}: written: {diff}");
    }
    let _ = flood.kill();
    let _ = flood.wait();
    let (out, err, diff) = run(false);
    assert!(
        out.starts_with("root:")
            && out.ends_with("read=0\nwrite=0\nallowed=0\n")
            && diff.contains("/etc/passwd"),
        "control: {out:?} {err:?} {diff}"
    );
    let (_, log) = agent.stop_with_stderr();
    let log = log.join("\n");
    assert!(!log.contains("could not be marked"), "{log}");
    s.cleanup();
}

/// A static program (no libc: the image has none) that calls truncate(2) on `argv[1]` (no
/// open: busybox's and coreutils' `truncate` open the file, which the answer refuses), stays
/// 2 s after a success so the agent's kill finds it, and exits with the errno.
const TRUNCATE_C: &str = r#"
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n");
static long sc(long n, long a, long b) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return r;
}
void cmain(long *sp) {
    long r = sc(76, sp[2], 0);
    struct { long s, ns; } t = {2, 0};
    /* A second argument: exit at once (the agent may read the change after the exit). */
    if (r == 0 && sp[0] < 3) sc(35, (long)&t, 0);
    sc(60, r < 0 ? -r : 0, 0);
    for (;;) {}
}
"#;

/// A shell in `c` that opens `/big/small` for append, says so (`/tmp/held`), waits for
/// `/tmp/go`, appends through that descriptor, then runs `then`.
fn early_writer(c: &Ctr, then: &str) -> std::process::Child {
    let script = format!(
        "exec 4>>/big/small; touch /tmp/held; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo pwn >&4; {then}"
    );
    let child = Command::new("docker")
        .args(["exec", &c.0, "sh", "-c", &script])
        .spawn()
        .expect("docker exec");
    let held = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        sh(c, "test -e /tmp/held").0 == Some(0)
    });
    assert!(held, "the early writer did not start");
    child
}

/// truncate(2) by path opens nothing, so no permission event asks about it. The file of an
/// exact `deny_write` rule is sealed (immutable): its truncate by name, symlink, hard link or
/// relative name is refused with EPERM in the kernel, and so are its replacement by rename,
/// its removal, a new hard link and chmod; each refusal is recorded (`sealed_file`). The files
/// below a `DIR/**` rule are sealed too (`/etc/passwd`), unless the subtree is too big to seal
/// (`/big/**`, over 64 MiB): there a truncate by any name (name, symlink, hard link,
/// `/proc/self/root`, `/proc/self/fd/N`, `/proc/1/root`, `/proc/self/cwd`, relative, `//` and
/// `..`, after chroot) and a write
/// through a descriptor opened before the agent are reported by the file's changes mark and
/// the writer is killed after the fact (SIGKILL, recorded `kill`, hook `fanotify_modify`, the
/// file's own path). A free file's truncate is neither. busybox's `truncate` opens the file
/// first, which is refused outright. In detect mode the same acts run and are each recorded
/// `would-deny` once per process and file (none after that process's recorded open for
/// write), also when the writer exits before the agent reads the change.
#[test]
fn fanotify_truncate_by_path_is_refused_or_enforced_after_the_fact() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let s = Scratch::new("fanotify-truncate");
    let bin = static_c(&s.dir, "trunc", TRUNCATE_C);
    let c = start(&docker, true);
    docker.cmd(&[
        "cp",
        bin.to_str().expect("utf8"),
        &format!("{}:/tmp/trunc", c.0),
    ]);
    let (code, _, err) = sh(
        &c,
        "echo free > /tmp/free && ln -s /var/log/app.log /tmp/alias && ln /var/log/app.log /tmp/hard && echo evil > /tmp/evil \
         && ln /etc/passwd /tmp/pwhard && mkdir /big && dd if=/dev/zero of=/big/blob bs=1M count=65 2>/dev/null && echo small > /big/small",
    );
    assert_eq!(code, Some(0), "{err}");
    let policy = s.policy(&POLICY.replace("/var/log/app.log]", "/var/log/app.log, '/big/**']"));
    // A writer holding a descriptor for append from before the agent: it writes on a signal.
    let early = early_writer(&c, "sleep 5");
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let state = |c: &Ctr| {
        sh(
            c,
            "sha256sum /var/log/app.log /etc/passwd; stat -c '%a %h' /var/log/app.log",
        )
        .1
        .trim()
        .to_string()
    };
    let before = state(&c);
    // Opens the file for write first: refused, nothing cut.
    let (code, _, err) = sh(&c, "truncate -s 0 /var/log/app.log");
    assert_eq!(code, Some(1), "busybox truncate: {err}");
    assert!(err.contains("Operation not permitted"), "{err}");
    assert_eq!(state(&c), before);
    // The sealed file: the last command of `sh -c` is exec'd, the exit status is the
    // program's (the errno, 1 for EPERM).
    for script in [
        "/tmp/trunc /var/log/app.log",
        "/tmp/trunc /tmp/alias",
        "/tmp/trunc /tmp/hard",
        "cd /var/log && exec /tmp/trunc ../log/app.log",
    ] {
        assert_eq!(sh(&c, script).0, Some(1), "{script:?} not refused");
        assert_eq!(state(&c), before, "{script:?} changed the file");
    }
    for script in [
        "mv /tmp/evil /var/log/app.log",
        "rm -f /var/log/app.log",
        "ln /var/log/app.log /tmp/hard2",
        "chmod 777 /var/log/app.log",
    ] {
        let (code, _, err) = sh(&c, script);
        assert_eq!(code, Some(1), "{script:?} not refused: {err}");
        assert!(err.contains("Operation not permitted"), "{script:?}: {err}");
        assert_eq!(state(&c), before, "{script:?} changed the file");
    }
    // Below '/etc/**': sealed as well, refused whatever the name.
    let (code, _, err) = sh(&c, "ln -s /etc/passwd /tmp/pw && ln -s /big/small /tmp/bs");
    assert_eq!(code, Some(0), "{err}");
    for script in [
        "/tmp/trunc /etc/passwd",
        "/tmp/trunc /tmp/pw",
        // A hard link made before the agent, a relative name, /proc/self/root.
        "/tmp/trunc /tmp/pwhard",
        "cd /etc && exec /tmp/trunc ./passwd",
        "/tmp/trunc /proc/self/root/etc/passwd",
    ] {
        assert_eq!(sh(&c, script).0, Some(1), "{script:?} not refused");
        assert_eq!(state(&c), before, "{script:?} changed the file");
    }
    // O_TRUNC and chmod through the hard link: refused by the seal too.
    for script in [": > /tmp/pwhard", "chmod 777 /tmp/pwhard"] {
        let (code, _, err) = sh(&c, script);
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(err.contains("Operation not permitted"), "{script:?}: {err}");
        assert_eq!(state(&c), before, "{script:?} changed the file");
    }
    // Below '/big/**' (too big to seal): killed after the fact, whatever the name. Each
    // truncate cuts the file (it is refilled from the host between them, a writer no policy
    // binds), so each is a change the kernel reports.
    let refill = || {
        let pid = docker.cmd(&["inspect", "-f", "{{.State.Pid}}", &c.0]);
        std::fs::write(format!("/proc/{pid}/root/big/small"), "small\n").expect("refill");
    };
    let (code, _, err) = sh(&c, "ln /big/small /tmp/bighard");
    assert_eq!(code, Some(0), "{err}");
    for (script, how) in [
        ("/tmp/trunc /big/small", "by name"),
        ("/tmp/trunc /tmp/bs", "through a symlink"),
        (
            "/tmp/trunc /proc/self/root/big/small",
            "through /proc/self/root",
        ),
        ("/tmp/trunc /tmp/bighard", "through a hard link"),
        (
            "exec 3</big/small; exec /tmp/trunc /proc/self/fd/3",
            "through /proc/self/fd of a read descriptor",
        ),
        ("/tmp/trunc /proc/1/root/big/small", "through /proc/1/root"),
        (
            "cd /big && exec /tmp/trunc /proc/self/cwd/small",
            "through /proc/self/cwd",
        ),
        ("cd /big && exec /tmp/trunc ./small", "by a relative name"),
        ("/tmp/trunc //big/../big//small", "through // and .."),
        ("chroot / /tmp/trunc /big/small", "after chroot"),
    ] {
        refill();
        assert_eq!(
            sh(&c, script).0,
            Some(137),
            "not killed after truncating {how}"
        );
    }
    let free = sh(&c, "/tmp/trunc /tmp/free").0;
    assert_eq!(free, Some(0), "a free file's truncate");
    // Other syscalls to the same effect are refused outright, the bytes unchanged: an
    // `O_TRUNC` open (a permission event), a rename out of the sealed directory.
    refill();
    for script in [": > /big/small", "mv /big/small /tmp/moved"] {
        let (code, _, err) = sh(&c, script);
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(err.contains("Operation not permitted"), "{script:?}: {err}");
        assert_eq!(
            sh(&c, "cat /big/small").1,
            "small\n",
            "{script:?} changed it"
        );
    }
    // The early writer's append through its old descriptor: killed after it.
    refill();
    assert_eq!(sh(&c, "touch /tmp/go").0, Some(0));
    let early = early.wait_with_output().expect("early writer");
    assert_eq!(
        early.status.code(),
        Some(137),
        "the write through a descriptor opened before the agent was not killed"
    );
    let alerts = agent.collect_until(Duration::from_secs(10), |_| false);
    let by_hook = |hook: &str, decision: &str| -> Vec<String> {
        alerts
            .iter()
            .filter(|v| v["source"] == "guard_policy" && v["output_fields"]["guard.hook"] == hook)
            .map(|v| {
                assert_eq!(v["guard"]["decision"], decision, "{v}");
                assert_eq!(v["output_fields"]["guard.op"], "write", "{v}");
                v["output_fields"]["guard.target"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    assert_eq!(
        by_hook("sealed_file", "deny"),
        [
            // busybox truncate's open for write, then the four truncates, mv, rm, ln, chmod,
            // then the truncates below '/etc/**' (by name, symlink, hard link, relative name
            // resolved, /proc/self/root as written), then the O_TRUNC open and chmod through
            // the hard link (a name outside the rules' paths: the kernel's prefilter keeps an
            // open refused for write).
            "/var/log/app.log",
            "/var/log/app.log",
            "/tmp/alias",
            "/tmp/hard",
            "/var/log/app.log",
            "/var/log/app.log",
            "/var/log/app.log",
            "/var/log/app.log",
            "/var/log/app.log",
            "/etc/passwd",
            "/tmp/pw",
            "/tmp/pwhard",
            "/etc/passwd",
            "/proc/self/root/etc/passwd",
            "/tmp/pwhard",
            "/tmp/pwhard"
        ],
        "{alerts:?}"
    );
    // One record per truncate and one for the early write, each naming the file itself;
    // none from the traced truncate's name (that would be a second record of one act).
    assert_eq!(
        by_hook("fanotify_modify", "kill"),
        ["/big/small"; 11],
        "{alerts:?}"
    );
    assert_eq!(by_hook("after_syscall", "kill"), [""; 0], "{alerts:?}");
    agent.stop();
    // Detect mode (`--detect-only`): nothing is sealed or killed, and what enforce mode kills
    // is recorded `would-deny`: each truncate by any name, also by a writer that exits at
    // once, and a write through a descriptor opened before the agent (once per process and
    // file: its second write adds nothing). A write through an open made under the agent is
    // recorded at that open's exit, not a second time from the change.
    let _ = sh(&c, "rm -f /tmp/go /tmp/held");
    let early = early_writer(&c, "sleep 0.5; echo pwn >&4");
    // Its stop line (an info line) counts the changes looked at.
    let agent = s.agent(
        &policy,
        &[
            "--policy-backend",
            "fanotify",
            "--detect-only",
            "--log",
            "warn,guard::fanotify=info",
        ],
    );
    for (script, how) in [
        ("/tmp/trunc /big/small", "by name"),
        (
            "exec 3</big/small; exec /tmp/trunc /proc/self/fd/3",
            "through /proc/self/fd of a read descriptor",
        ),
        ("/tmp/trunc /proc/1/root/big/small", "through /proc/1/root"),
        (
            "/tmp/trunc /big/small now",
            "by a writer that exits at once",
        ),
        ("echo pwn >> /big/small", "through an open for append"),
        (
            "exec 5>>/big/small; i=0; while [ $i -lt 3000 ]; do echo x >&5; i=$((i+1)); done",
            "3,000 appends through one open",
        ),
    ] {
        refill();
        assert_eq!(sh(&c, script).0, Some(0), "detect mode: {how}");
    }
    refill();
    assert_eq!(sh(&c, "touch /tmp/go").0, Some(0));
    let early = early.wait_with_output().expect("early writer");
    assert_eq!(
        early.status.code(),
        Some(0),
        "detect mode: the early writer"
    );
    let alerts = agent.collect_until(Duration::from_secs(10), |_| false);
    let mut records: Vec<(String, String, String)> = alerts
        .iter()
        .filter(|v| v["source"] == "guard_policy")
        .map(|v| {
            let s = |x: &serde_json::Value| x.as_str().unwrap_or("").to_owned();
            (
                s(&v["guard"]["decision"]),
                s(&v["output_fields"]["guard.hook"]),
                s(&v["output_fields"]["guard.target"]),
            )
        })
        .collect();
    records.sort();
    let want = |hook: &str| {
        (
            "would-deny".to_owned(),
            hook.to_owned(),
            "/big/small".to_owned(),
        )
    };
    let mut expected = vec![want("fanotify_modify"); 5];
    expected.extend([want("open_exit"), want("open_exit")]);
    assert_eq!(records, expected, "{alerts:?}");
    // The appender's thousands of changes cost the agent a look about once a second, not one
    // each: the stop line's "changes N (denied D, ...)" hands D on to the pipeline.
    let (_, stderr) = agent.stop_with_stderr();
    let line = stderr
        .iter()
        .find(|l| l.contains("fanotify: answered"))
        .unwrap_or_else(|| panic!("no fanotify stop line: {stderr:?}"));
    let count = |after: &str| -> u64 {
        let rest = &line[line
            .find(after)
            .unwrap_or_else(|| panic!("{after:?} in {line}"))
            + after.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits
            .parse()
            .unwrap_or_else(|_| panic!("{after:?} in {line}"))
    };
    let (changes, denied) = (count("changes "), count("(denied "));
    // The kernel merges queued changes of one writer, so fewer reports than appends.
    assert!(changes >= 50, "the appends were not reported: {line}");
    assert!(denied <= 20, "looked at each change again: {line}");
    // The seal is gone with the agent; the sigkill-fallback backend (by the name as written)
    // kills after the truncate.
    let agent = s.agent(&policy, &["--policy-backend", "sigkill-fallback"]);
    assert_eq!(sh(&c, "/tmp/trunc /var/log/app.log").0, Some(137));
    let alert = agent
        .wait_for(Duration::from_secs(10), |v| {
            v["source"] == "guard_policy"
                && v["output_fields"]["guard.target"] == "/var/log/app.log"
        })
        .expect("no fallback record of the truncate");
    assert_eq!(alert["guard"]["decision"], "kill", "{alert}");
    assert_eq!(alert["output_fields"]["guard.op"], "write", "{alert}");
    agent.stop();
    docker.cmd(&["rm", "-f", &c.0]);
    s.cleanup();
}

/// The state letter of `/proc/PID/stat` (`T`: stopped), `None` once gone.
fn proc_state(pid: u32) -> Option<char> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    raw.rsplit_once(')')?.1.trim_start().chars().next()
}

/// The pids in the `HELD` map pinned under `pins`.
fn held_pids(pins: &str) -> Vec<u32> {
    let md = aya::maps::MapData::from_pin(std::path::Path::new(pins).join(guard_ebpf::names::HELD))
        .unwrap_or_else(|e| panic!("pinned map HELD: {e}"));
    let m: aya::maps::HashMap<_, u32, guard_ebpf::HeldTask> =
        aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(md)).expect("HELD is an LRU hash");
    m.keys().filter_map(|k| k.ok()).collect()
}

/// The container ids in the `POLICY_PENDING` map pinned under `pins`.
fn pending_ids(pins: &str) -> Vec<String> {
    let md = aya::maps::MapData::from_pin(
        std::path::Path::new(pins).join(guard_ebpf::names::POLICY_PENDING),
    )
    .unwrap_or_else(|e| panic!("pinned map POLICY_PENDING: {e}"));
    let m: aya::maps::HashMap<_, [u8; guard_ebpf::CONTAINER_ID_BYTES], guard_ebpf::CgroupPolicy> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(md)).expect("a hash map");
    m.keys()
        .filter_map(|k| k.ok())
        .map(|k| {
            String::from_utf8_lossy(&k)
                .trim_end_matches('\0')
                .to_string()
        })
        .collect()
}

/// A container started in the seconds after the agent died is held by the still-attached
/// program (its files are not marked: the marks died with the agent). The next agent finds the
/// hold in the pinned `HELD` map, marks the container's filesystem, then resumes it: the
/// entrypoint's read of /etc/shadow is refused and it runs to its end.
#[test]
fn fanotify_hold_made_while_the_agent_was_down_is_resumed_by_the_next() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let s = Scratch::new("fanotify-crash");
    let policy = s.policy(POLICY);
    let name = format!("guard-fan-crash-{}", std::process::id());
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    // Created while the agent runs: its create event puts the policy where the kernel binds
    // the container's cgroup when it is made.
    let id = docker.cmd(&[
        "create",
        "--name",
        &name,
        "--network=none",
        "--label",
        "guard-test=1",
        "--label",
        "guard-fanotify=on",
        IMAGE,
        "sh",
        "-c",
        "cat /etc/shadow; echo read=$?",
    ]);
    let id = id.trim().to_string();
    wait_until("the container's policy pending in the kernel", || {
        pending_ids(&s.pins).contains(&id)
    });
    // Its last renewal let the kernel hold for 3 s: `docker start` of a created container
    // reaches the entrypoint well within that.
    agent.signal(libc::SIGKILL);
    let t0 = std::time::Instant::now();
    docker.cmd(&["start", &name]);
    let took = t0.elapsed();
    let _ = agent.stop();
    let pid: u32 = docker
        .cmd(&["inspect", "-f", "{{.State.Pid}}", &name])
        .trim()
        .parse()
        .expect("container pid");
    assert_ne!(
        pid,
        0,
        "the container is not running (its entrypoint was not held; start took {took:?}): {:?}",
        Command::new("docker").args(["logs", &name]).output()
    );
    wait_until("the entrypoint stopped", || proc_state(pid) == Some('T'));
    // Past the dead agent's last deadline nobody resumes it.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(proc_state(pid), Some('T'), "resumed without an agent");
    assert!(
        held_pids(&s.pins).contains(&pid),
        "{:?}",
        held_pids(&s.pins)
    );
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let out = Command::new("timeout")
        .args(["20", "docker", "wait", &name])
        .output()
        .expect("docker wait");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "0",
        "the held container did not finish after the restart: {out:?}"
    );
    let logs = Command::new("docker")
        .args(["logs", &name])
        .output()
        .expect("docker logs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr),
    );
    assert_eq!(stdout, "read=1\n", "the read was not refused: {stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    assert!(!held_pids(&s.pins).contains(&pid), "still in HELD");
    docker.cmd(&["rm", "-f", &name]);
    agent.stop();
    s.cleanup();
}

/// The inodes (hex, as fdinfo prints them) the agent's fanotify groups hold an ignore mark
/// for (`ignored_mask` other than 0 in `/proc/<agent>/fdinfo/<group>`).
fn ignored_inodes(agent_pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{agent_pid}/fd")) else {
        return out;
    };
    for fd in fds.flatten() {
        let link = std::fs::read_link(fd.path()).unwrap_or_default();
        if link.to_string_lossy() != "anon_inode:[fanotify]" {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{agent_pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        for l in info.lines().filter(|l| l.starts_with("fanotify ino:")) {
            let field = |k: &str| {
                l.split_whitespace()
                    .find_map(|f| f.strip_prefix(k))
                    .map(str::to_owned)
            };
            if field("ignored_mask:").is_some_and(|m| m != "0")
                && let Some(ino) = field("ino:")
            {
                out.push(ino);
            }
        }
    }
    out
}

/// A file's inode inside the container, in hex.
fn ino_hex(c: &Ctr, path: &str) -> String {
    let (code, out, err) = sh(c, &format!("stat -c %i {path}"));
    assert_eq!(code, Some(0), "stat {path}: {err}");
    format!("{:x}", out.trim().parse::<u64>().expect("inode number"))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !f() {
        assert!(t0.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const CACHE_POLICY: &str = "- policy: fan-cache\n  workload: {labels: {guard-fanotify: \"on\"}}\n  mode: enforce\n  enforce:\n    open:\n      deny_read: [/etc/shadow]\n      deny_write: ['/etc/**']\n";
/// The reload: the ignored log becomes unreadable, and new binaries are refused.
const CACHE_POLICY_2: &str = "- policy: fan-cache\n  workload: {labels: {guard-fanotify: \"on\"}}\n  mode: enforce\n  enforce:\n    exec: {deny_new_binaries: true}\n    open:\n      deny_read: [/etc/shadow, /var/log/app.log]\n      deny_write: ['/etc/**']\n";

/// The answer's ignore marks (docs/policies.md "fanotify"): an allowed file no rule names is
/// ignored after its first open, and then asked about again when it becomes ruled: moved
/// into a protected directory (refused at once), named by a reloaded policy (refused), or
/// written under a reloaded `deny_new_binaries` policy (its exec refused).
#[test]
fn fanotify_ignored_files_are_asked_again_once_ruled() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let c = start(&docker, true);
    let s = Scratch::new("fanotify-cache");
    let policy = s.policy(CACHE_POLICY);
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let pid = agent.pid();

    // Allowed and unruled: ignored after the open (the control for what follows).
    let (code, out, err) = sh(&c, "cat /var/log/app.log && cat /opt/tool >/dev/null");
    assert_eq!((code, out.as_str()), (Some(0), "line one\n"), "{err}");
    let (log, tool) = (ino_hex(&c, "/var/log/app.log"), ino_hex(&c, "/opt/tool"));
    wait_until("app.log and /opt/tool ignored", || {
        let ig = ignored_inodes(pid);
        ig.contains(&log) && ig.contains(&tool)
    });
    // Ruled files are never ignored: still refused.
    let (code, _, err) = sh(&c, "cat /etc/shadow");
    assert_ne!(code, Some(0));
    assert!(err.contains("Operation not permitted"), "{err}");

    // Moved or hard-linked into a protected directory right after being ignored: the
    // directory is sealed (rename and link refused, EPERM), so an ignored file never gets a
    // name the rules cover; the file keeps its bytes where it was.
    let (code, _, err) = sh(&c, "cp /var/log/app.log /tmp/x && cat /tmp/x >/dev/null");
    assert_eq!(code, Some(0), "{err}");
    let x = ino_hex(&c, "/tmp/x");
    wait_until("/tmp/x ignored", || ignored_inodes(pid).contains(&x));
    for script in ["mv /tmp/x /etc/x", "ln /tmp/x /etc/x"] {
        let (code, _, err) = sh(&c, script);
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(err.contains("Operation not permitted"), "{script:?}: {err}");
        let (code, _, _) = sh(&c, "test -e /etc/x");
        assert_eq!(code, Some(1), "{script:?} left /etc/x");
    }
    let (_, out, _) = sh(&c, "cat /tmp/x");
    assert_eq!(out, "line one\n", "the ignored file changed");

    // Reload: the ignored log is now denied, the tool's copy will be a new binary.
    let from = agent.stderr_len();
    let tmp = format!("{policy}.tmp");
    std::fs::write(&tmp, CACHE_POLICY_2).expect("write policy");
    std::fs::rename(&tmp, &policy).expect("rename policy");
    agent
        .wait_stderr(from, Duration::from_secs(20), |l| {
            l.contains("guard: reloaded")
        })
        .expect("the policy was not reloaded");
    wait_until("ignore marks dropped after the reload", || {
        let ig = ignored_inodes(pid);
        !ig.contains(&log) && !ig.contains(&tool)
    });
    // The reloaded policy reaches the answer at the agent's next walk (within a second).
    wait_until("the log refused under the reloaded policy", || {
        sh(&c, "cat /var/log/app.log").0 != Some(0)
    });
    let (code, out, err) = sh(&c, "cat /var/log/app.log");
    assert_ne!(code, Some(0), "the formerly ignored log was read: {out}");
    assert!(!out.contains("line one"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    let (code, out, err) = sh(&c, "cat /bin/busybox > /opt/tool && /opt/tool echo RAN");
    assert!(
        !out.contains("RAN") && !err.contains("applet not found"),
        "the rewritten binary ran: {out} {err}"
    );
    assert_ne!(code, Some(0));
    assert!(
        err.contains("Permission denied") || err.contains("Operation not permitted"),
        "{err}"
    );
    // Control: an untouched binary still runs.
    let (code, _, err) = sh(&c, "/bin/true");
    assert_eq!(code, Some(0), "{err}");

    agent.stop();
    let d = s.decisions();
    let count = |op: &str, target: &str| {
        d.iter()
            .filter(|v| v["op"] == op && v["decision"] == "deny" && v["target"] == target)
            .count()
    };
    assert!(count("open", "/var/log/app.log") >= 1, "{d:?}");
    assert!(count("exec", "/opt/tool") >= 1, "{d:?}");
    s.cleanup();
}

/// The permission events the agent answered, from its stop line (`--log` with
/// `guard::fanotify=info`).
fn answered_at_stop(stderr: &[String]) -> u64 {
    stderr
        .iter()
        .find_map(|l| l.split("fanotify: answered ").nth(1))
        .and_then(|t| t.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no answer count at stop: {stderr:?}"))
}

/// How many of the agent's fanotify groups ignore opens of inode `ino` (hex).
fn groups_ignoring(agent_pid: u32, ino: &str) -> usize {
    ignored_inodes(agent_pid)
        .iter()
        .filter(|i| i.as_str() == ino)
        .count()
}

/// The reload of `fanotify_sealed_files_free_to_read_are_not_asked_about`: /etc/group becomes
/// unreadable.
const READ_FREE_POLICY_2: &str = "- policy: fan-cache\n  workload: {labels: {guard-fanotify: \"on\"}}\n  mode: enforce\n  enforce:\n    open:\n      deny_read: [/etc/shadow, /etc/group]\n      deny_write: ['/etc/**']\n";

/// Lifts the immutable attribute of argv[1] (`FS_IOC_SETFLAGS`), then appends to it. Exit 0:
/// written; 1: the lift refused; 2: the open for write refused with EPERM; other: failed else.
const LIFT_C: &str = r#"
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n");
static long sc(long n, long a, long b, long c) {
    long r;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c) : "rcx", "r11", "memory");
    return r;
}
void cmain(long *sp) {
    long p = sp[2];
    long fd = sc(2, p, 0, 0);
    int fl = 0;
    if (fd < 0) sc(60, 10, 0, 0);
    if (sc(16, fd, 0x80086601, (long)&fl) < 0) sc(60, 11, 0, 0);
    fl &= ~0x10;
    if (sc(16, fd, 0x40086602, (long)&fl) < 0) sc(60, 1, 0, 0);
    long w = sc(2, p, 1 | 02000, 0);
    if (w < 0) sc(60, w == -1 ? 2 : 3, 0, 0);
    sc(1, w, (long)"x\n", 2);
    sc(60, 0, 0, 0);
    for (;;) {}
}
"#;

/// A sealed file no policy denies reading (`/etc/group` below `'/etc/**'`): the kernel refuses
/// its writes before any permission event, so after its first read both groups ignore it and
/// its reads no longer wait on the agent; its writes are still refused and recorded. A file a
/// policy denies reading (`/etc/shadow`) is asked about on every open. When a reload makes
/// the file unreadable, the rule group's ignore is dropped and the read refused. A container
/// that may hold `CAP_LINUX_IMMUTABLE` can lift the seal, so its files stay asked: after a
/// read, lifting the seal and appending is still refused by the answer.
#[test]
fn fanotify_sealed_files_free_to_read_are_not_asked_about() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let c = start(&docker, true);
    let s = Scratch::new("fanotify-read-free");
    let lift = static_c(&s.dir, "lift", LIFT_C);
    let lifter = Ctr(docker.cmd(&[
        "run",
        "-d",
        "--network=none",
        "--label",
        "guard-test=1",
        "--label",
        "guard-fanotify=on",
        "--cap-add",
        "LINUX_IMMUTABLE",
        IMAGE,
        "sleep",
        "300",
    ]));
    for ctr in [&c, &lifter] {
        docker.cmd(&[
            "cp",
            lift.to_str().expect("utf8"),
            &format!("{}:/tmp/lift", ctr.0),
        ]);
    }
    let policy = s.policy(CACHE_POLICY);
    // The answer count is logged at stop.
    let agent = s.agent(
        &policy,
        &[
            "--policy-backend",
            "fanotify",
            "--log",
            "warn,guard::fanotify=info",
        ],
    );
    let pid = agent.pid();
    let (group, shadow) = (ino_hex(&c, "/etc/group"), ino_hex(&c, "/etc/shadow"));
    let before = digest(&c, &["/etc/group"]);
    let (code, out, err) = sh(&c, "cat /etc/group");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("root:"), "{out}");
    wait_until("/etc/group ignored in both groups", || {
        groups_ignoring(pid, &group) == 2
    });
    // 2,000 reads: each would wait for an answer in the rule group.
    let (code, out, err) = sh(
        &c,
        "i=0; while [ $i -lt 2000 ]; do : < /etc/group || exit 9; i=$((i+1)); done; echo done",
    );
    assert_eq!((code, out.trim()), (Some(0), "done"), "{err}");
    // Writes: refused by the seal, file unchanged.
    for script in ["echo x >> /etc/group", "echo x > /etc/group"] {
        let (code, _, err) = sh(&c, script);
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(err.contains("Operation not permitted"), "{script:?}: {err}");
        assert_eq!(digest(&c, &["/etc/group"]), before, "{script:?}");
    }
    // Denied reading: asked on every open (the first group defers to the rule group).
    let (code, _, err) = sh(&c, "cat /etc/shadow");
    assert_ne!(code, Some(0));
    assert!(err.contains("Operation not permitted"), "{err}");
    assert!(
        groups_ignoring(pid, &shadow) < 2,
        "/etc/shadow ignored by the rule group"
    );
    // Without CAP_LINUX_IMMUTABLE the seal holds.
    assert_eq!(
        sh(&c, "/tmp/lift /etc/group").0,
        Some(1),
        "the seal was lifted"
    );
    assert_eq!(digest(&c, &["/etc/group"]), before);
    // The container that can lift it: read, let a walk pass, lift, append: still refused.
    let lifted_before = digest(&lifter, &["/etc/group"]);
    assert_eq!(sh(&lifter, "cat /etc/group >/dev/null").0, Some(0));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        sh(&lifter, "/tmp/lift /etc/group").0,
        Some(2),
        "lifting the seal and appending was not refused with EPERM"
    );
    assert_eq!(digest(&lifter, &["/etc/group"]), lifted_before);

    // The reload: /etc/group is no longer free to read.
    let from = agent.stderr_len();
    let tmp = format!("{policy}.tmp");
    std::fs::write(&tmp, READ_FREE_POLICY_2).expect("write policy");
    std::fs::rename(&tmp, &policy).expect("rename policy");
    agent
        .wait_stderr(from, Duration::from_secs(20), |l| {
            l.contains("guard: reloaded")
        })
        .expect("the policy was not reloaded");
    wait_until("/etc/group refused under the reloaded policy", || {
        sh(&c, "cat /etc/group").0 != Some(0)
    });
    // The first group ignores it again at once (it defers to the rule group's mark).
    assert!(
        groups_ignoring(pid, &group) < 2,
        "the rule group's ignore stayed"
    );
    let (code, out, err) = sh(&c, "cat /etc/group");
    assert_ne!(code, Some(0), "read after the reload: {out}");
    assert!(!out.contains("root:"), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");

    let (_, stderr) = agent.stop_with_stderr();
    // The 2,000 reads were not asked about: every answer of the run is far fewer.
    let answered = answered_at_stop(&stderr);
    assert!(
        answered < 1000,
        "{answered} answers: the reads were asked about"
    );
    let d = s.decisions();
    let count = |op: &str, hook: &str, target: &str| {
        d.iter()
            .filter(|v| {
                v["op"] == op
                    && v["hook"] == hook
                    && v["decision"] == "deny"
                    && v["target"] == target
            })
            .count()
    };
    // The two appends the seal refused; the lifter's append was refused by the answer, and
    // recorded by it alone (its seal was lifted: not a seal's refusal).
    assert_eq!(count("write", "sealed_file", "/etc/group"), 2, "{d:?}");
    let lifter_writes = d
        .iter()
        .filter(|v| {
            v["hook"] == "fanotify_open_perm"
                && v["access"] == "write"
                && v["target"] == "/etc/group"
        })
        .count();
    assert_eq!(lifter_writes, 1, "{d:?}");
    assert!(
        count("open", "fanotify_open_perm", "/etc/group") >= 1,
        "{d:?}"
    );
    docker.cmd(&["rm", "-f", &c.0, &lifter.0]);
    s.cleanup();
}

const DETECT_POLICY: &str = "- policy: fan-detect\n  workload: {labels: {guard-fanotify: \"on\"}}\n  mode: detect\n  enforce:\n    open:\n      deny_read: [/etc/shadow]\n      deny_write: ['/etc/**', /var/log/app.log]\n";

/// Detect mode on the `fanotify` backend refuses nothing, so no open waits for the agent: the
/// kernel judges each open at its exit, by the file it returned (its inode, the `DIR/**`
/// directories above it, then its path), and reports one would-deny per denied open, through
/// any name. Allowed opens are not reported, and 2,000 opens of a covered file raise no
/// permission event.
#[test]
fn fanotify_detect_mode_reports_at_the_open_exit_without_waiting() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let c = start(&docker, true);
    let s = Scratch::new("fanotify-detect");
    let (code, _, err) = sh(
        &c,
        "ln -sf /etc/shadow /tmp/sym && ln -f /etc/shadow /tmp/hard && ln -sf /etc/passwd /tmp/pw",
    );
    assert_eq!(code, Some(0), "{err}");
    let policy = s.policy(DETECT_POLICY);
    let agent = s.agent(
        &policy,
        &[
            "--policy-backend",
            "fanotify",
            "--log",
            "warn,guard::fanotify=info",
        ],
    );
    // Each runs (detect mode), and is reported once.
    let reads = [
        ("cat /etc/shadow", "/etc/shadow"),
        ("cat /tmp/sym", "/etc/shadow"),
        ("cd /etc && cat ./shadow", "/etc/shadow"),
        ("cat /tmp/hard", "/tmp/hard"),
        ("cat //etc//shadow", "/etc/shadow"),
        ("cat /tmp/../etc/shadow", "/etc/shadow"),
        ("cat /proc/self/root/etc/shadow", "/etc/shadow"),
        ("chroot / cat /etc/shadow", "/etc/shadow"),
    ];
    for (script, _) in reads {
        let (code, out, err) = sh(&c, script);
        assert_eq!(code, Some(0), "{script:?}: {err}");
        assert!(out.contains("root:"), "{script:?}: {out}");
    }
    let writes = [
        ("echo x >> /etc/passwd", "/etc/passwd"),
        ("echo x >> /tmp/pw", "/etc/passwd"),
        (": > /var/log/app.log", "/var/log/app.log"),
        ("echo new > /etc/newfile", "/etc/newfile"),
    ];
    for (script, _) in writes {
        let (code, _, err) = sh(&c, script);
        assert_eq!(code, Some(0), "{script:?}: {err}");
    }
    // Allowed: not reported, and not asked about.
    let (code, out, err) = sh(
        &c,
        "cat /etc/group >/dev/null && cat /etc/hostname >/dev/null && i=0; while [ $i -lt 2000 ]; do : < /etc/group || exit 9; i=$((i+1)); done; echo done",
    );
    assert_eq!((code, out.trim()), (Some(0), "done"), "{err}");
    // A container without the policy: nothing reported.
    let control = start(&docker, false);
    let (code, out, err) = sh(&control, "cat /etc/shadow && echo x >> /etc/passwd");
    assert_eq!(code, Some(0), "control: {err}");
    assert!(out.contains("root:"), "{out}");
    docker.cmd(&["rm", "-f", &control.0]);
    let want = reads.len() + writes.len();
    let alerts = agent.collect_until(Duration::from_secs(10), |_| false);
    let got: Vec<(String, String)> = alerts
        .iter()
        .filter(|v| v["source"] == "guard_policy")
        .map(|v| {
            assert_eq!(v["guard"]["decision"], "would-deny", "{v}");
            assert_eq!(v["guard"]["backend"], "fanotify", "{v}");
            assert_eq!(v["output_fields"]["guard.hook"], "open_exit", "{v}");
            (
                v["output_fields"]["guard.target"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                v["output_fields"]["guard.access"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
            )
        })
        .collect();
    let expect: Vec<(String, String)> = reads
        .iter()
        .map(|(_, t)| (t.to_string(), "read".to_string()))
        .chain(
            writes
                .iter()
                .map(|(_, t)| (t.to_string(), "write".to_string())),
        )
        .collect();
    assert_eq!(got, expect, "{alerts:?}");
    assert_eq!(got.len(), want);
    let (_, stderr) = agent.stop_with_stderr();
    let answered = answered_at_stop(&stderr);
    assert!(
        answered < 100,
        "{answered} answers: detect-mode opens were asked about"
    );
    docker.cmd(&["rm", "-f", &c.0]);
    s.cleanup();
}

/// The detect-mode judgement at the open's exit is attached only while a detect-mode policy
/// has open rules: not for an enforced one, and at the reload that switches it to detect,
/// before the new bindings. After that reload the workload's old marks still ask, but the
/// answer allows and records nothing: each read is reported once, by the kernel.
#[test]
fn fanotify_detect_judgement_is_attached_when_needed_and_at_reload() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let c = start(&docker, true);
    let s = Scratch::new("fanotify-detect-reload");
    let yaml = |mode: &str| {
        format!(
            "- policy: fan-switch\n  workload: {{labels: {{guard-fanotify: \"on\"}}}}\n  mode: {mode}\n  enforce:\n    open: {{deny_read: [/etc/shadow]}}\n"
        )
    };
    let policy = s.policy(&yaml("enforce"));
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let links = || {
        std::fs::read_dir(&s.pins)
            .expect("pins")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("link_policy_open_detect_")
            })
            .count()
    };
    assert_eq!(links(), 0, "attached without a detect-mode policy");
    let (code, out, err) = sh(&c, "cat /etc/shadow");
    assert_ne!(code, Some(0), "{out}");
    assert!(err.contains("Operation not permitted"), "{err}");
    let from = agent.stderr_len();
    let tmp = format!("{policy}.tmp");
    std::fs::write(&tmp, yaml("detect")).expect("write policy");
    std::fs::rename(&tmp, &policy).expect("rename policy");
    agent
        .wait_stderr(from, Duration::from_secs(20), |l| {
            l.contains("guard: reloaded")
        })
        .expect("the policy was not reloaded");
    // open, openat, openat2, creat, open_by_handle_at (this kernel has all five).
    assert_eq!(links(), 5, "not attached at the reload");
    // The answer sees the new binding within a second (its cache).
    wait_until("the read allowed after the switch to detect", || {
        sh(&c, "cat /etc/shadow").0 == Some(0)
    });
    for _ in 0..3 {
        let (code, out, err) = sh(&c, "cat /etc/shadow");
        assert_eq!(code, Some(0), "detect mode refused: {err}");
        assert!(out.contains("root:"), "{out}");
    }
    agent.stop();
    let d = s.decisions();
    let of = |decision: &str, hook: &str| {
        d.iter()
            .filter(|v| {
                v["decision"] == decision && v["hook"] == hook && v["target"] == "/etc/shadow"
            })
            .count()
    };
    // Refused while enforced (once before the reload, maybe more while the answer's cache
    // still held the enforced binding); then each read that ran reported once, by the kernel.
    assert!(of("deny", "fanotify_open_perm") >= 1, "{d:?}");
    assert_eq!(of("would_deny", "open_exit"), 4, "{d:?}");
    assert_eq!(
        d.len(),
        of("deny", "fanotify_open_perm") + of("would_deny", "open_exit"),
        "{d:?}"
    );
    docker.cmd(&["rm", "-f", &c.0]);
    s.cleanup();
}

/// Sealed directories: what fanotify has no permission event for (rename into, out of and
/// over, link, unlink, rmdir, chmod of the directory, and the creation of a name) is refused with EPERM in a `deny_write`
/// `DIR/**` directory of an enforced container, nothing changes there, and a control container
/// does all of it; a detect-mode container is not sealed; the host's upper directory is not
/// immutable (the container is removed as usual); the seals are lifted when the agent stops.
#[test]
fn fanotify_seals_protected_directories() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let sealed = start(&docker, true);
    let control = start(&docker, false);
    let detect = {
        let args = [
            "run",
            "-d",
            "--network=none",
            "--label",
            "guard-test=1",
            "--label",
            "guard-fanotify-detect=on",
            IMAGE,
            "sleep",
            "300",
        ];
        Ctr(docker.cmd(&args))
    };
    // The files each attack starts from, outside the protected directories.
    let setup = "echo new > /tmp/n && cp /etc/passwd /tmp/p && echo evil >> /tmp/p";
    for c in [&sealed, &control, &detect] {
        let (code, _, err) = sh(c, setup);
        assert_eq!(code, Some(0), "{err}");
    }
    let s = Scratch::new("fanotify-seal");
    let policy = s.policy(SEAL_POLICY);
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let state = "ls -la /etc /etc/sub /bin | sha256sum; sha256sum /etc/passwd /etc/group";
    let before = sh(&sealed, state).1;
    // The first pass seals before `guard: ready`.
    for (script, gone) in SEAL_ATTACKS {
        let (code, _, err) = sh(&sealed, script);
        assert_ne!(code, Some(0), "{script:?} succeeded");
        assert!(err.contains("Operation not permitted"), "{script:?}: {err}");
        if !gone.is_empty() {
            let (code, _, _) = sh(&sealed, &format!("test -e {gone}"));
            assert_eq!(code, Some(1), "{script:?} left {gone}");
        }
        assert_eq!(
            sh(&sealed, state).1,
            before,
            "{script:?} changed a sealed directory"
        );
        // The control starts each attack from the same state.
        let reset = "echo new > /tmp/n && cp /etc/passwd /tmp/p && { [ -e /etc/group ] || cp /tmp/g /etc/group; }";
        assert_eq!(sh(&control, reset).0, Some(0));
        let (code, _, err) = sh(&control, script);
        assert_eq!(code, Some(0), "control {script:?}: {err}");
    }
    // Outside the sealed directories the container works as usual.
    let (code, _, err) = sh(
        &sealed,
        "mkdir /tmp/d && mv /tmp/n /tmp/d/n && ln -s n /tmp/d/s",
    );
    assert_eq!(code, Some(0), "{err}");
    // Detect mode seals nothing.
    let (code, _, err) = sh(&detect, "mv /tmp/n /etc/n && touch /etc/t");
    assert_eq!(code, Some(0), "detect-mode container: {err}");
    // overlayfs keeps the attribute in its own xattr: the host's upper directory is not
    // immutable (so the runtime can remove the container).
    let upper = docker.cmd(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &sealed.0]);
    let o = Command::new("lsattr")
        .args(["-d", &format!("{upper}/etc")])
        .output()
        .expect("lsattr (e2fsprogs)");
    let text = String::from_utf8_lossy(&o.stdout);
    let flags = text.split_whitespace().next().unwrap_or("");
    assert!(
        o.status.success() && !flags.is_empty() && !flags.contains('i'),
        "upper /etc: {text}"
    );
    let (_, log) = agent.stop_with_stderr();
    // The seal's refusals are recorded from the failed syscalls, one each, by the name given.
    let d = s.decisions();
    let mut refused: Vec<&str> = d
        .iter()
        .filter(|v| v["hook"] == "sealed_directory")
        .inspect(|v| {
            assert!(
                v["decision"] == "deny"
                    && v["op"] == "write"
                    && v["policy"] == "fan-seal"
                    && v["backend"] == "fanotify",
                "{v}"
            )
        })
        .filter_map(|v| v["target"].as_str())
        .collect();
    refused.sort();
    let mut want = vec![
        "/etc/n",
        "/etc/sub/n",
        "/etc/passwd",
        // mv of it, rm of it.
        "/etc/group",
        "/etc/group",
        "/etc/new",
        "/bin/newtool",
        "/etc/sub/s",
        "/etc/rel",
        "/etc/slash",
        "/etc/dotdot",
        "/proc/self/root/etc/viaroot",
        "/etc/chrooted",
        "/etc/d",
        "/etc/fifo",
        "/etc/empty",
        // chmod of it, mv of it.
        "/etc/sub",
        "/etc/sub",
    ];
    want.sort();
    assert_eq!(refused, want, "{d:?}\n{}", log.join("\n"));
    // Stopped: the seals are lifted with the agent's marks.
    let (code, _, err) = sh(
        &sealed,
        "mv /tmp/d/n /etc/n && touch /etc/sub/t && rm /etc/n",
    );
    assert_eq!(code, Some(0), "still sealed after the agent stopped: {err}");
    let rm = Command::new("docker")
        .args(["rm", "-f", &sealed.0])
        .output()
        .expect("docker rm");
    assert!(
        rm.status.success(),
        "{}",
        String::from_utf8_lossy(&rm.stderr)
    );
    s.cleanup();
}

const SEAL_POLICY: &str = "- policy: fan-seal\n  workload: {labels: {guard-fanotify: \"on\"}}\n  mode: enforce\n  enforce:\n    open:\n      deny_write: ['/etc/**', '/bin/**']\n- policy: fan-seal-detect\n  workload: {labels: {guard-fanotify-detect: \"on\"}}\n  mode: detect\n  enforce:\n    open:\n      deny_write: ['/etc/**']\n";

/// Each attack, and the name it must not leave behind ("" when the name existed before).
const SEAL_ATTACKS: &[(&str, &str)] = &[
    ("mv /tmp/n /etc/n", "/etc/n"),
    ("ln /tmp/n /etc/sub/n", "/etc/sub/n"),
    ("mv /tmp/p /etc/passwd", ""),
    ("mv /etc/group /tmp/g", ""),
    ("rm /etc/group", ""),
    ("touch /etc/new", "/etc/new"),
    ("cp /bin/busybox /bin/newtool", "/bin/newtool"),
    ("mkdir /etc/d", "/etc/d"),
    ("ln -s /tmp/n /etc/sub/s", "/etc/sub/s"),
    ("mknod /etc/fifo p", "/etc/fifo"),
    // Other names and roots for the same directory: the attribute is on the inode.
    ("cd /etc && touch ./rel", "/etc/rel"),
    ("touch //etc//slash", "/etc/slash"),
    ("mv /tmp/n /etc/sub/../dotdot", "/etc/dotdot"),
    ("touch /proc/self/root/etc/viaroot", "/etc/viaroot"),
    ("chroot / touch /etc/chrooted", "/etc/chrooted"),
    ("chmod 777 /etc/sub", ""),
    ("rmdir /etc/empty", ""),
    ("mv /etc/sub /tmp/sub", ""),
];

/// The ignore marks that keep an allowed file from being asked again, with both flags:
/// Linux 6.0's `FAN_MARK_IGNORE` and the older `FAN_MARK_IGNORED_MASK` the answer falls back to
/// when the first is refused (kernels before 6.0; this kernel accepts both). Under a
/// filesystem mark (as on a container's root), each must stop the file's next opens being
/// asked, leave other files asked, and be dropped by the kernel at the file's first
/// modification, so a file changed since it was allowed is asked again.
#[test]
fn fanotify_ignore_marks_hold_until_the_file_changes_with_either_flag() {
    use guard::fanotify::sys::{self, Borrow, IgnoreStyle, Target};
    use std::os::{fd::AsRawFd, unix::fs::MetadataExt};
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };
    if !can_run(is_root(), "needs root for fanotify permission marks") {
        return;
    }
    let _lock = agent_lock();
    for style in [IgnoreStyle::Ignore, IgnoreStyle::IgnoredMask] {
        let dir =
            std::env::temp_dir().join(format!("guard-fan-ignore-{}-{style:?}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        // A private tmpfs: the filesystem mark asks for its opens only.
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "guard-fan-ignore"])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mount tmpfs");
        let (f, other) = (dir.join("f"), dir.join("g"));
        std::fs::write(&f, b"one\n").expect("write f");
        std::fs::write(&other, b"one\n").expect("write g");
        let (f_ino, g_ino) = (
            std::fs::metadata(&f).expect("f").ino(),
            std::fs::metadata(&other).expect("g").ino(),
        );
        let group = Arc::new(sys::init().expect("fanotify_init"));
        sys::mark_path(group.as_fd_borrowed(), Target::Filesystem, &dir).expect("mark");
        // The answerer: allows every open, ignores the file `f` after it, counts per inode.
        let stop = Arc::new(AtomicBool::new(false));
        let answerer = {
            let (group, stop) = (group.clone(), stop.clone());
            std::thread::spawn(move || {
                let (mut asked_f, mut asked_g) = (0u32, 0u32);
                let mut buf = vec![0u8; 4096];
                let mut other = 0;
                while !stop.load(Ordering::Relaxed) {
                    let mut pfd = libc::pollfd {
                        fd: group.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    unsafe { libc::poll(&mut pfd, 1, 50) };
                    for ev in sys::read_events(group.as_fd_borrowed(), &mut buf, &mut other)
                        .expect("read")
                    {
                        let fd = std::os::fd::AsFd::as_fd(&ev.fd);
                        let ino = std::fs::File::from(fd.try_clone_to_owned().expect("dup"))
                            .metadata()
                            .expect("fstat")
                            .ino();
                        // The ignore before the answer: placed after it, the opener's next
                        // open can race it and be asked once more.
                        if ino == f_ino {
                            asked_f += 1;
                            sys::ignore(group.as_fd_borrowed(), fd, style).expect("ignore mark");
                        } else if ino == g_ino {
                            asked_g += 1;
                        }
                        sys::respond(group.as_fd_borrowed(), fd, true).expect("respond");
                    }
                }
                (asked_f, asked_g)
            })
        };
        let read = |p: &std::path::Path| std::fs::read(p).expect("read");
        read(&f);
        read(&f);
        read(&f);
        read(&other);
        read(&other);
        // A change drops the ignore: the next open is asked again.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&f)
            .and_then(|mut h| std::io::Write::write_all(&mut h, b"two\n"))
            .expect("append");
        assert_eq!(read(&f), b"one\ntwo\n");
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::Relaxed);
        let (asked_f, asked_g) = answerer.join().expect("answerer");
        drop(group);
        // The group's marks go with its descriptor, released by the kernel a little later.
        let umounted = (0..20).any(|_| {
            let ok = Command::new("umount")
                .arg(&dir)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                std::thread::sleep(Duration::from_millis(50));
            }
            ok
        });
        assert!(umounted, "umount {}", dir.display());
        let _ = std::fs::remove_dir(&dir);
        // f: the first read, then (ignored) nothing until the append's open, which is
        // asked only if the ignore was dropped early, and the read after the change.
        assert_eq!(
            (asked_f, asked_g),
            (2, 2),
            "{style:?}: opens of f asked (first read + read after the change), of g (never ignored)"
        );
    }
}

/// A new cgroup: a process moved into a child cgroup of a protected container (made after the
/// agent bound the container) and entering the container's namespaces and root is refused the
/// same reads, writes and execs; a child of the control container is not.
#[test]
fn fanotify_child_cgroup_of_a_container_is_policed() {
    let Some((docker, _lock)) = ready() else {
        return;
    };
    let denied = start(&docker, true);
    let control = start(&docker, false);
    let s = Scratch::new("fanotify-child");
    let policy = s.policy(POLICY);
    let _agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let files = ["/etc/passwd", "/var/log/app.log"];
    let before = digest(&denied, &files);
    // Runs `argv` from the host in a new child cgroup of `c`, in `c`'s namespaces and root.
    let in_child = |c: &Ctr, name: &str, argv: &[&str]| {
        let pid = docker.cmd(&["inspect", "-f", "{{.State.Pid}}", &c.0]);
        let child = cgroup_v2_dir(pid.trim().parse().expect("pid")).join(name);
        std::fs::create_dir(&child).expect("child cgroup");
        let child = child.display().to_string();
        let script = format!(
            "echo $$ > {child}/cgroup.procs && {{ grep -q '^0::.*/{name}$' /proc/self/cgroup || exit 99; }} && exec nsenter -t {pid} -m -u -i -p -r -w -- \"$@\""
        );
        let out = Command::new("sh")
            .args(["-c", &script, "sh"])
            .args(argv)
            .output()
            .expect("sh");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            child,
        )
    };
    let tries: &[(&str, &[&str])] = &[
        ("read", &["/bin/cat", "/etc/shadow"]),
        ("write", &["/bin/sh", "-c", "echo x >> /etc/passwd"]),
        ("truncate", &["/bin/sh", "-c", ": > /var/log/app.log"]),
        ("exec", &["/opt/tool", "echo", "RAN"]),
    ];
    let mut children = Vec::new();
    for (i, (what, argv)) in tries.iter().enumerate() {
        let (code, out, err, child) = in_child(&denied, &format!("guard-child-{i}"), argv);
        children.push(child);
        assert_ne!(code, Some(99), "not moved into the child cgroup: {err}");
        assert_ne!(code, Some(0), "{what} in a child cgroup succeeded: {out}");
        assert!(
            !out.contains("root:") && !err.contains("applet not found"),
            "{what} in a child cgroup: {out}"
        );
        assert!(
            err.contains("Operation not permitted") || err.contains("Permission denied"),
            "{what} in a child cgroup: not EPERM: {err}"
        );
        assert_eq!(digest(&denied, &files), before, "{what} changed a file");
        // The control's child does it.
        let (code, out, err, child) = in_child(&control, &format!("guard-child-{i}"), argv);
        children.push(child);
        // busybox run as `tool` says "applet not found": it ran.
        if *what == "exec" {
            assert!(err.contains("applet not found"), "control exec: {err}");
            continue;
        }
        assert_eq!(code, Some(0), "control {what}: {err}");
        if *what == "read" {
            assert!(out.contains("root:"), "control read: {out}");
        }
    }
    for c in children {
        let _ = std::fs::remove_dir(c);
    }
    s.cleanup();
}
