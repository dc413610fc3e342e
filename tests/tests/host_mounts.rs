//! Other filesystems and mounts without BPF LSM, on this kernel, in real containers:
//! - `deny_new_binaries`: a binary written inside the workload off its root filesystem (the
//!   container's `/dev` tmpfs, a volume, a hard link or a move there) or without a name (a
//!   memfd) never runs its first instruction, on the `fanotify` and `sigkill-fallback`
//!   backends; a detect-mode workload gets one would-deny record per exec;
//! - the `fanotify` backend through mounts made inside the container (bind mounts of protected
//!   files and directories, a bind mount of the root, a new tmpfs).
//!
//! A container without the policy does each of them.

use guard_tests::harness::{Container, Docker, Scratch, docker_and_agent, static_c};

/// memfd_create, a copy of `/bin/busybox` into it, then `execveat(memfd, "", {"echo", "RAN"},
/// AT_EMPTY_PATH)`: busybox's echo prints RAN if the memfd runs. Exits 2 when it cannot set
/// up, with the errno when execveat fails.
const MEMFD_EXEC_C: &str = r#"
__asm__(".globl _start\n_start:\n mov %rsp, %rdi\n and $-16, %rsp\n call cmain\n");
static long sc(long n, long a, long b, long c, long d, long e) {
    long r;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    __asm__ volatile("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
                     : "rcx", "r11", "memory");
    return r;
}
static char buf[65536];
void cmain(long *sp) {
    long m = sc(319, (long)"x", 0, 0, 0, 0);
    long f = sc(2, (long)"/bin/busybox", 0, 0, 0, 0);
    if (m < 0 || f < 0) sc(60, 2, 0, 0, 0, 0);
    for (;;) {
        long n = sc(0, f, (long)buf, sizeof buf, 0, 0);
        if (n <= 0) break;
        if (sc(1, m, (long)buf, n, 0, 0) != n) sc(60, 2, 0, 0, 0, 0);
    }
    char *argv[3];
    argv[0] = "echo";
    argv[1] = "RAN";
    argv[2] = 0;
    char *envp[1];
    envp[0] = 0;
    long r = sc(322, m, (long)"", (long)argv, (long)envp, 0x1000);
    sc(60, r < 0 ? -r : 0, 0, 0, 0, 0);
    for (;;) {}
}
"#;

/// New binaries written in the workload off its root filesystem. The busybox copies are not
/// named after an applet: one that runs says "applet not found"; the memfd one prints RAN.
const OFF_ROOT: &[&str] = &[
    // The container's /dev (a tmpfs of its own, executable).
    "cp /bin/busybox /dev/nb && /dev/nb echo RAN",
    // A volume (the host's filesystem).
    "cp /bin/busybox /data/nb && /data/nb echo RAN",
    // A hard link keeps the inode written.
    "cp /bin/busybox /data/h1 && ln -f /data/h1 /data/h2 && /data/h2 echo RAN",
    // A move across filesystems is a copy: written again.
    "cp /bin/busybox /dev/m1 && mv -f /dev/m1 /data/m2 && /data/m2 echo RAN",
    // Through its descriptor.
    "cp /bin/busybox /dev/fd3 && exec 3</dev/fd3 && /proc/self/fd/3 echo RAN",
    // Without a name.
    "/tmp/memx",
];

/// The same on the container's root filesystem (its overlay).
const ON_ROOT: &str = "cp /bin/busybox /root/nb && /root/nb echo RAN";

const POLICY: &str = "- policy: drift\n  workload: {labels: {guard-drift: \"on\"}}\n  mode: enforce\n  enforce:\n    exec: {deny_new_binaries: true}\n- policy: drift-detect\n  workload: {labels: {guard-drift-detect: \"on\"}}\n  mode: detect\n  enforce:\n    exec: {deny_new_binaries: true}\n";

fn ran(out: &str, err: &str) -> bool {
    out.contains("RAN") || err.contains("applet not found")
}

fn start(docker: &Docker, s: &Scratch, label: &str, memx: &std::path::Path) -> Container {
    let vol = s.dir.join(format!("vol-{label}"));
    std::fs::create_dir_all(&vol).expect("volume dir");
    let mount = format!("{}:/data", vol.display());
    let mut extra = vec!["-v", &mount];
    let l = format!("{label}=on");
    if !label.is_empty() {
        extra.extend(["--label", &l]);
    }
    let c = docker.run(&extra, &["sleep", "300"]);
    // Copied in by the daemon before any agent runs: not written by the workload.
    docker.cmd(&[
        "cp",
        memx.to_str().expect("utf8"),
        &format!("{}:/tmp/memx", c.id),
    ]);
    c
}

/// Policy alerts by (policy, hook, decision) for `new_binary`, sorted.
fn new_binary_alerts(alerts: &[serde_json::Value]) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = alerts
        .iter()
        .filter(|a| {
            a["source"] == "guard_policy" && a["output_fields"]["guard.reason"] == "new_binary"
        })
        .map(|a| {
            let f = &a["output_fields"];
            (
                f["guard.policy"].as_str().unwrap_or("").to_owned(),
                f["guard.hook"].as_str().unwrap_or("").to_owned(),
                f["guard.decision"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn new_binaries_off_the_root_filesystem_never_run_without_bpf_lsm() {
    let Some((docker, _lock)) = docker_and_agent() else {
        return;
    };
    let s = Scratch::new("drift");
    let memx = static_c(&s.dir, "memx", MEMFD_EXEC_C);
    let enforced = start(&docker, &s, "guard-drift", &memx);
    let detect = start(&docker, &s, "guard-drift-detect", &memx);
    let control = start(&docker, &s, "", &memx);
    let policy = s.policy(POLICY);
    for backend in ["fanotify", "sigkill-fallback"] {
        let agent = s.agent(&policy, &["--policy-backend", backend]);
        for script in OFF_ROOT {
            let (code, out, err) = enforced.sh(script);
            assert!(!ran(&out, &err), "{backend}: {script:?} ran: {out} {err}");
            assert_eq!(code, Some(137), "{backend}: {script:?} not killed: {err}");
            let (code, out, err) = detect.sh(script);
            assert!(
                ran(&out, &err),
                "{backend}: detect {script:?}: {code:?} {err}"
            );
            let (code, out, err) = control.sh(script);
            assert!(
                ran(&out, &err),
                "{backend}: control {script:?}: {code:?} {err}"
            );
        }
        // On the root filesystem: refused at exec's open on fanotify, killed on the fallback.
        let (code, out, err) = enforced.sh(ON_ROOT);
        assert!(!ran(&out, &err), "{backend}: {ON_ROOT:?} ran: {out} {err}");
        if backend == "fanotify" {
            assert_eq!(code, Some(126), "{err}");
            assert!(err.contains("Operation not permitted"), "{err}");
        } else {
            assert_eq!(code, Some(137), "{err}");
        }
        let (code, out, err) = detect.sh(ON_ROOT);
        assert!(
            ran(&out, &err),
            "{backend}: detect {ON_ROOT:?}: {code:?} {err}"
        );
        // The image's own binaries run.
        let (code, out, _) = enforced.sh("/bin/busybox echo OK && cat /etc/hostname >/dev/null");
        assert_eq!((code, out.trim()), (Some(0), "OK"), "{backend}");
        let alerts = agent.stop();
        let got = new_binary_alerts(&alerts);
        // One record per exec that happened.
        let mut want = Vec::new();
        for _ in OFF_ROOT {
            want.push(("drift".into(), "sched_process_exec".into(), "kill".into()));
            want.push((
                "drift-detect".into(),
                "sched_process_exec".into(),
                "would-deny".into(),
            ));
        }
        want.push(if backend == "fanotify" {
            (
                "drift".into(),
                "fanotify_open_exec_perm".into(),
                "deny".into(),
            )
        } else {
            ("drift".into(), "sched_process_exec".into(), "kill".into())
        });
        want.push((
            "drift-detect".into(),
            "sched_process_exec".into(),
            "would-deny".into(),
        ));
        want.sort();
        assert_eq!(got, want, "{backend}");
        // Nothing stays stopped or half-done: the enforced container still works.
        assert!(enforced.exec(&["true"]).0);
        // The agent is down: the pinned programs still record and kill.
        let (code, out, err) = enforced.sh("cp /bin/busybox /dev/down && /dev/down echo RAN");
        assert!(
            !ran(&out, &err),
            "{backend}: ran with the agent down: {out} {err}"
        );
        assert_eq!(code, Some(137), "{backend}: agent down: {err}");
    }
    s.cleanup();
}

/// A container with CAP_SYS_ADMIN (and no seccomp filter) mounts inside itself: bind mounts of
/// a protected file, of protected directories and of the root reach the same files, so the
/// fanotify answer refuses each read, write, new name and exec with EPERM; a binary copied to
/// a new tmpfs is killed before it runs. The control (same privileges, no policy) does all.
#[test]
fn fanotify_holds_through_mounts_made_inside_the_container() {
    let Some((docker, _lock)) = docker_and_agent() else {
        return;
    };
    let s = Scratch::new("fan-mounts");
    // A binary of its own inode for the exec rule: the memfd program, which prints RAN.
    let tool = static_c(&s.dir, "tool", MEMFD_EXEC_C);
    let run = |label: Option<&str>| {
        let mut extra = vec![
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
        ];
        if let Some(l) = label {
            extra.extend(["--label", l]);
        }
        let c = docker.run(&extra, &["sleep", "300"]);
        let (code, _, err) = c.sh("mkdir -p /opt /var/log && echo 'line one' > /var/log/app.log");
        assert_eq!(code, Some(0), "{err}");
        docker.cmd(&[
            "cp",
            tool.to_str().expect("utf8"),
            &format!("{}:/opt/tool", c.id),
        ]);
        c
    };
    let denied = run(Some("guard-mounts=on"));
    let control = run(None);
    let policy = s.policy(MOUNTS_POLICY);
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let digest = |c: &Container| {
        let (code, out, err) = c.sh("sha256sum /etc/passwd /var/log/app.log; ls /etc | wc -l");
        assert_eq!(code, Some(0), "{err}");
        out
    };
    let before = digest(&denied);
    for (script, leak) in MOUNT_ATTACKS {
        let (code, out, err) = denied.sh(script);
        assert!(
            !out.contains(leak),
            "{script:?}: {leak:?} reached stdout: {out}"
        );
        assert_ne!(code, Some(0), "{script:?} succeeded: {out}");
        assert!(
            err.contains("Operation not permitted") || err.contains("Permission denied"),
            "{script:?}: not EPERM: {code:?} {err}"
        );
        assert_eq!(
            digest(&denied),
            before,
            "{script:?} changed a protected file"
        );
        let (code, out, err) = control.sh(script);
        assert_eq!(code, Some(0), "control {script:?}: {err}");
        assert!(out.contains(leak), "control {script:?}: {out}");
    }
    // The refusals came from the files, not from a mount that failed.
    let (_, mounts, _) = denied.sh("cut -d' ' -f5 /proc/self/mountinfo");
    for m in ["/mnt/e", "/tmp/s", "/mnt/r", "/mnt/o"] {
        assert!(mounts.lines().any(|l| l == m), "{m} not mounted: {mounts}");
    }
    // A new filesystem: nothing there is marked, the drift backstop kills the copy.
    let new_fs = "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && cp /bin/busybox /mnt/t/x && /mnt/t/x echo RAN";
    let (code, out, err) = denied.sh(new_fs);
    assert!(!ran(&out, &err), "{new_fs:?} ran: {out} {err}");
    assert_eq!(code, Some(137), "{err}");
    let (_, out, err) = control.sh(new_fs);
    assert!(ran(&out, &err), "control {new_fs:?}: {err}");
    // Allowed through the same mounts: reads of other files, the image's own binaries.
    let (code, out, err) = denied.sh("cat /mnt/e/group >/dev/null && /mnt/r/bin/busybox echo OK");
    assert_eq!((code, out.trim()), (Some(0), "OK"), "{err}");
    agent.stop();
    s.cleanup();
}

const MOUNTS_POLICY: &str = "- policy: mounts\n  workload: {labels: {guard-mounts: \"on\"}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/opt/tool], deny_new_binaries: true}\n    open:\n      deny_read: [/etc/shadow]\n      deny_write: ['/etc/**', /var/log/app.log]\n";

/// Each attack through a mount made in the container, and what its success would print (the
/// control prints it).
const MOUNT_ATTACKS: &[(&str, &str)] = &[
    // Bind mounts of a protected directory and of a protected file.
    (
        "mkdir -p /mnt/e && (mountpoint -q /mnt/e || mount --bind /etc /mnt/e) && cat /mnt/e/shadow",
        "root:",
    ),
    (
        "touch /tmp/s && (mountpoint -q /tmp/s || mount --bind /etc/shadow /tmp/s) && cat /tmp/s",
        "root:",
    ),
    // The root, bound elsewhere, then entered.
    (
        "mkdir -p /mnt/r && (mountpoint -q /mnt/r || mount --bind / /mnt/r) && chroot /mnt/r cat /etc/shadow",
        "root:",
    ),
    // Writes and new names through the bind mount.
    ("echo x >> /mnt/e/passwd && echo WROTE", "WROTE"),
    (": > /mnt/r/var/log/app.log && echo CUT", "CUT"),
    ("touch /mnt/e/newfile && echo MADE", "MADE"),
    (
        "mv /mnt/e/group /mnt/e/group2 && mv /mnt/e/group2 /mnt/e/group && echo MOVED",
        "MOVED",
    ),
    // The denied binary through a bind mount of its directory.
    (
        "mkdir -p /mnt/o && (mountpoint -q /mnt/o || mount --bind /opt /mnt/o) && /mnt/o/tool",
        "RAN",
    ),
];

/// Drift tracking costs a program on every open of the host, so it is attached only while a
/// policy has `deny_new_binaries`; a reload that brings one attaches it before binding it.
#[test]
fn drift_tracking_is_attached_when_a_policy_asks_for_it_and_at_reload() {
    let Some((docker, _lock)) = docker_and_agent() else {
        return;
    };
    let s = Scratch::new("drift-reload");
    let c = docker.run(&["--label", "guard-drift=on"], &["sleep", "300"]);
    let yaml = |exec: &str| {
        format!(
            "- policy: drift\n  workload: {{labels: {{guard-drift: \"on\"}}}}\n  mode: enforce\n  enforce:\n    exec: {exec}\n"
        )
    };
    let policy = s.policy(&yaml("{deny: [/opt/none]}"));
    let agent = s.agent(&policy, &["--policy-backend", "fanotify"]);
    let links = || {
        std::fs::read_dir(&s.pins)
            .expect("pins")
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("link_policy_open_written_")
            })
            .count()
    };
    assert_eq!(
        links(),
        0,
        "drift tracking attached without a policy needing it"
    );
    let (_, out, err) = c.sh("cp /bin/busybox /dev/a && /dev/a echo RAN");
    assert!(ran(&out, &err), "{err}");
    let from = agent.stderr_len();
    let tmp = std::path::Path::new(&policy).with_extension("tmp");
    std::fs::write(&tmp, yaml("{deny_new_binaries: true}")).expect("write policy");
    std::fs::rename(&tmp, &policy).expect("rename policy");
    agent
        .wait_stderr(from, std::time::Duration::from_secs(20), |l| {
            l.contains("guard: reloaded (file change)")
        })
        .expect("no reload");
    // open, openat, openat2, creat, open_by_handle_at (this kernel has all five).
    assert_eq!(links(), 5, "drift tracking not attached at reload");
    let (code, out, err) = c.sh("cp /bin/busybox /dev/b && /dev/b echo RAN");
    assert!(!ran(&out, &err), "ran after the reload: {out} {err}");
    assert_eq!(code, Some(137), "{err}");
    agent.stop();
    s.cleanup();
}
