//! The kernel prefilter on the real kernel: the same scripted workload, run under an agent with
//! the prefilter and under one without it (`--no-prefilter`), gives the same alerts, while the
//! prefiltered agent receives fewer events and counts the opens it skipped.

use std::{process::Command, time::Duration};

use guard_tests::harness::{Agent, TestCgroup, agent_lock, can_run, is_root};

/// Reads and writes of sensitive and ordinary files through absolute, relative, `..` and `//`
/// paths, symlinks, /proc/self/fd, /proc/self/root and a bind mount, loopback connects (a
/// destination guard's only connect rule ignores), and an exec from /tmp. Fixed names, so both
/// runs produce identical alerts.
const SCRIPT: &str = "
for i in 1 2 3; do
  cat /etc/shadow >/dev/null
  cat /etc/hostname /etc/hosts >/dev/null
  (cd /etc && cat shadow >/dev/null)
  cat /tmp/../etc/shadow >/dev/null
  cat //etc//shadow >/dev/null
  echo x > /etc/guard-prefilter-test; rm -f /etc/guard-prefilter-test
  echo x > /tmp/guard-prefilter-ok; cat /tmp/guard-prefilter-ok >/dev/null
  ls /usr/bin >/dev/null
  head -c 16 /usr/bin/env >/dev/null
  cat /proc/self/status >/dev/null
  for f in /usr/share/doc/*; do :; done
  cat /usr/lib/os-release >/dev/null 2>&1
  nc -w 1 127.0.0.1 9 </dev/null >/dev/null 2>&1
done
cp /bin/busybox /tmp/guard-prefilter-bb && /tmp/guard-prefilter-bb true
rm -f /tmp/guard-prefilter-bb /tmp/guard-prefilter-ok
mkdir -p /tmp/guard-prefilter-d/.key && echo k > /tmp/guard-prefilter-d/.key/k && echo p > /tmp/guard-prefilter-d/p
ln -sf /tmp/guard-prefilter-d/.key/k /tmp/guard-prefilter-lnk && cat /tmp/guard-prefilter-lnk >/dev/null
ln -sf /tmp/guard-prefilter-d/p /tmp/guard-prefilter-lnk2 && cat /tmp/guard-prefilter-lnk2 >/dev/null
ln -sf /tmp/guard-prefilter-d/p /etc/guard-prefilter-lnk && cat /etc/guard-prefilter-lnk >/dev/null
ln -sf /etc/shadow /tmp/guard-prefilter-lnk3 && cat /tmp/guard-prefilter-lnk3 >/dev/null
(exec 3</etc/shadow && cat /proc/self/fd/3 >/dev/null)
cat /proc/self/root/etc/shadow >/dev/null
mkdir -p /tmp/guard-prefilter-bind && mount --bind /etc /tmp/guard-prefilter-bind
cat /tmp/guard-prefilter-bind/shadow >/dev/null; umount /tmp/guard-prefilter-bind; rmdir /tmp/guard-prefilter-bind
rm -rf /tmp/guard-prefilter-d /tmp/guard-prefilter-lnk /tmp/guard-prefilter-lnk2 /tmp/guard-prefilter-lnk3 /etc/guard-prefilter-lnk
";

/// A rule only the kernel-resolved path can reach: a dot directory's file opened through a
/// symlink (`contains "/.key/"` is no prefix, so the kernel must pass a resolved path with a
/// component starting with `.`).
const DOT_RULE: &str = r#"
- rule: Dot key read through any name
  desc: test rule
  condition: evt.type in (open, openat) and proc.name = cat and fd.name contains "/.key/" and fd.name startswith /tmp/guard-prefilter-d
  output: dot key read (evt=%evt.type proc=%proc.name file=%fd.name raw=%fd.nameraw)
  priority: WARNING
"#;

/// Runs the workload in `cg` under a fresh agent; returns the alerts' identifying fields and
/// the agent's final counters.
fn run(cg: &TestCgroup, extra: &[&str]) -> (Vec<String>, u64, u64, u64) {
    // Info level: the final counters are on the `guard stopping` line.
    let mut args = vec![
        "--log",
        "info",
        "--only-cgroup",
        cg.path.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let agent = Agent::run(&args);
    let st = Command::new(env!("CARGO_BIN_EXE_guard-testkit"))
        .args(["cgroup-run", cg.path.to_str().expect("utf8"), "--"])
        .args(["/bin/busybox", "sh", "-c", SCRIPT])
        .status()
        .expect("workload");
    assert!(st.success(), "workload failed: {st:?}");
    // Let the agent drain; it processes in order, so a quiet second means it is done.
    let mut alerts = agent.collect_until(Duration::from_secs(3), |_| false);
    let (rest, stderr) = agent.stop_with_stderr();
    alerts.extend(rest);
    let mut keys: Vec<String> = alerts
        .iter()
        .filter(|v| v["rule"].is_string())
        .map(|v| {
            let f = &v["output_fields"];
            format!(
                "{} | {} | {} | {}",
                v["rule"], f["evt.type"], f["proc.name"], f["fd.name"]
            )
        })
        .collect();
    keys.sort();
    let stop = stderr
        .iter()
        .rev()
        .find(|l| l.contains("guard stopping"))
        .unwrap_or_else(|| panic!("no `guard stopping` line: {stderr:?}"));
    let num = |key: &str| -> u64 {
        stop.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in {stop:?}"))
    };
    (
        keys,
        num("events="),
        num("prefiltered_opens="),
        num("prefiltered_connects="),
    )
}

#[test]
fn the_prefilter_changes_no_alert_and_skips_opens() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let cg = TestCgroup::new("prefilter");
    let dir = guard_tests::respond_util::TempDir::new("prefilter-rules");
    let dot_rules = dir.0.join("dot.yaml");
    std::fs::write(&dot_rules, DOT_RULE).expect("rule file");
    let dot = ["--rules", dot_rules.to_str().expect("utf8")];
    let (full, full_events, full_skipped, full_connects) =
        run(&cg, &[&dot[..], &["--no-prefilter"]].concat());
    let (filtered, filtered_events, skipped, skipped_connects) = run(&cg, &dot);
    assert!(
        full.len() >= 6,
        "the workload should raise alerts (sensitive reads, writes below /etc, exec from /tmp): {full:#?}"
    );
    let dot_key = "\"Dot key read through any name\" | \"openat\" | \"cat\" | \"/tmp/guard-prefilter-d/.key/k\"";
    assert!(
        full.iter().any(|k| k == dot_key),
        "the read through a symlink of a dot directory's file should alert: {full:#?}"
    );
    assert_eq!(
        full.iter().filter(|k| k.contains("Dot key")).count(),
        1,
        "only that read (not the plain file's, control): {full:#?}"
    );
    // /etc/shadow by every name the script uses: 4 in each of 3 rounds, then a symlink in
    // /tmp, /proc/self/fd/3, /proc/self/root and a bind mount of /etc; each is the file's own
    // path to the rule. (`full == filtered` below: the same with the prefilter.)
    let shadow = "\"Read sensitive file\" | null | \"cat\" | \"/etc/shadow\"";
    assert_eq!(
        full.iter().filter(|k| *k == shadow).count(),
        16,
        "reads of /etc/shadow by its other names: {full:#?}"
    );
    assert_eq!(full, filtered, "alerts differ with the prefilter");
    assert_eq!(
        (full_skipped, full_connects),
        (0, 0),
        "--no-prefilter skipped events"
    );
    assert!(skipped > 0, "the prefilter skipped no open");
    assert!(skipped_connects > 0, "the prefilter skipped no connect");
    assert!(
        filtered_events < full_events,
        "prefiltered agent received {filtered_events} events, unfiltered {full_events}"
    );
    eprintln!(
        "prefilter: {} alerts identical; events {full_events} -> {filtered_events}; {skipped} opens and {skipped_connects} connects skipped in the kernel",
        full.len()
    );
}

/// Run counts of guard's newest program named `name` (stats must be enabled).
/// `guard run` with only the rules in `rules` (no responses, no audit log), plus `extra`.
fn rules_only(rules: &std::path::Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(guard_tests::harness::guard_bin());
    cmd.args([
        "run",
        "--format",
        "json",
        "--no-responses",
        "--no-audit",
        "--rules",
        rules.to_str().expect("utf8"),
    ]);
    cmd.args(extra);
    cmd
}

fn run_count(name: &str) -> Option<u64> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .filter(|p| p.name_as_str() == Some(name))
        .max_by_key(|p| p.id())
        .map(|p| p.run_count())
}

/// Issue 18: the capture programs sit on the tracepoints of the syscalls the prefilter keeps,
/// so a syscall no rule needs runs no guard program. With one rule on `openat`, 200,000
/// `getppid` calls (a syscall guard never traces) and 200,000 `read`s add (almost) nothing to
/// the exit program's run count, while 20,000 `openat`s add at least 20,000; the
/// `raw_syscalls` program, which would run for every syscall, is not attached at all.
#[test]
fn untraced_syscalls_run_no_guard_program() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF run-time stats");
    let dir = std::env::temp_dir().join(format!("guard-attach-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "- rule: Shadow opened\n  desc: t\n  condition: evt.type = openat and fd.name = /etc/shadow\n  output: shadow %proc.name\n  priority: WARNING\n",
    )
    .expect("rules");
    let agent = Agent::spawn(rules_only(&rules, &[]));
    // The exit program that walks open paths with typed loads, wherever the kernel has the
    // kfunc it needs (its name cut to the kernel's 15 bytes).
    let kfunc = guard::btf::kernel().is_ok_and(|b| b.func_id("bpf_rdonly_cast").is_some());
    let (exit_one, other) = if kfunc {
        ("sys_exit_one_ty", "sys_exit_one")
    } else {
        ("sys_exit_one", "sys_exit_one_ty")
    };
    let other_before = run_count(other);
    let runs = || run_count(exit_one).unwrap_or_else(|| panic!("{exit_one} not loaded"));
    let burst = |f: &dyn Fn()| {
        let before = runs();
        for _ in 0..200_000 {
            f();
        }
        runs() - before
    };
    let raw_before = run_count("sys_exit");
    let getppid = burst(&|| unsafe {
        libc::getppid();
    });
    let fd = unsafe { libc::open(c"/dev/zero".as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let mut b = [0u8; 1];
    let buf = b.as_mut_ptr();
    let read = burst(&|| unsafe {
        libc::read(fd, buf.cast(), 1);
    });
    unsafe { libc::close(fd) };
    let before = runs();
    for _ in 0..20_000 {
        let fd = unsafe { libc::openat(libc::AT_FDCWD, c"/etc/hostname".as_ptr(), libc::O_RDONLY) };
        unsafe { libc::close(fd) };
    }
    let openat = runs() - before;
    let raw_after = run_count("sys_exit");
    let other_after = run_count(other);
    agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "{exit_one} runs: 200k getppid +{getppid}, 200k read +{read}, 20k openat +{openat}; raw sys_exit {raw_before:?} -> {raw_after:?}"
    );
    // Other processes on the host keep making traced syscalls meanwhile: allow that noise,
    // which is far below one run per call.
    assert!(
        getppid < 5_000,
        "getppid ran the exit program {getppid} times"
    );
    assert!(read < 5_000, "read ran the exit program {read} times");
    assert!(
        openat >= 20_000,
        "20000 openat ran the exit program {openat} times"
    );
    assert_eq!(
        raw_before, raw_after,
        "the raw_syscalls program ran (it should not be attached for these rules)"
    );
    assert_eq!(
        other_before, other_after,
        "{other} ran: {exit_one} is the one attached"
    );
}

/// Calls init_module and finit_module (both fail: no module image; ENOSYS without module
/// support) from this process; returns their results.
fn module_load_attempts() -> (i64, i64) {
    let image = [0u8; 64];
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY) };
    assert!(fd >= 0);
    let r = unsafe {
        (
            libc::syscall(
                libc::SYS_init_module,
                image.as_ptr(),
                image.len(),
                c"guard=1".as_ptr(),
            ),
            libc::syscall(libc::SYS_finit_module, fd, c"guard=1".as_ptr(), 0),
        )
    };
    unsafe { libc::close(fd) };
    assert!(r.0 < 0 && r.1 < 0, "a module load succeeded: {r:?}");
    r
}

/// `int 0x80` with eax 175: ia32 `rt_sigprocmask(0, NULL, NULL, 8)`, which changes nothing;
/// returns its result.
fn ia32_syscall_175() -> i64 {
    let mut ret: i64 = 175;
    // SAFETY: an ia32 syscall that reads and writes no memory (NULL sets); rbx is saved
    // around it (LLVM reserves it).
    unsafe {
        core::arch::asm!(
            "push rbx",
            "xor ebx, ebx",
            "int 0x80",
            "pop rbx",
            inlateout("rax") ret,
            in("rcx") 0u64,
            in("rdx") 0u64,
            in("rsi") 8u64,
        );
    }
    ret
}

/// Issue 18: with guard's default rules no guard program runs on every syscall. On this host
/// init_module/finit_module have no tracepoints (no module support: only ENOSYS stubs); guard's
/// only rule on them needs a successful load, which such a kernel cannot perform, so they are
/// not traced and the `raw_syscalls` program is not attached: 200,000 `getppid` calls and the
/// module calls leave its run count unchanged.
#[test]
fn default_rules_run_no_program_on_every_syscall() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF run-time stats");
    let agent = Agent::run(&["--no-audit", "--log", "info"]);
    let raw_before = run_count("sys_exit");
    for _ in 0..200_000 {
        unsafe { libc::getppid() };
    }
    module_load_attempts();
    let raw_after = run_count("sys_exit");
    let (_, stderr) = agent.stop_with_stderr();
    eprintln!("raw sys_exit {raw_before:?} -> {raw_after:?}");
    assert!(
        raw_before.is_some(),
        "the raw_syscalls program is not even loaded"
    );
    assert_eq!(
        raw_before, raw_after,
        "the raw_syscalls program ran (it should not be attached for the default rules)"
    );
    let raw_lines: Vec<&String> = stderr
        .iter()
        .filter(|l| l.contains("through raw_syscalls"))
        .collect();
    assert!(raw_lines.is_empty(), "{raw_lines:?}");
    assert!(
        stderr.iter().any(|l| l.contains("kernel prefilter:")),
        "no prefilter line: {stderr:?}"
    );
}

/// Issue 18, the other side: a rule that matches failed module loads still gets every attempt,
/// with its result and parameters (`uargs`, from the saved registers). Where the kernel lets guard attach an fexit program to the stub, that
/// program captures them (and the raw program stays detached); where it does not (this host
/// refuses fexit: EPERM), the `raw_syscalls/sys_exit` program (BTF-typed) does, and is seen
/// running.
#[test]
fn module_load_attempts_reach_a_rule_that_wants_them() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    module_attempts_reach_the_rule(None, "sys_exit");
}

/// The same through the plain raw tracepoint guard falls back to where the kernel refuses
/// BTF-typed programs (forced here with `GUARD_RAW_EXIT=raw_tracepoint`): the attempts still
/// reach the rule, captured by that program.
#[test]
fn module_load_attempts_reach_the_rule_through_the_plain_raw_tracepoint() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    module_attempts_reach_the_rule(Some("raw_tracepoint"), "sys_exit_raw");
}

/// Starts an agent (with `GUARD_RAW_EXIT` set to `raw_exit` when given) whose rule takes
/// module load attempts, makes both, and checks they reach the rule, and that an ia32 syscall
/// sharing init_module's x86_64 number does not; `raw_prog` is the
/// `raw_syscalls/sys_exit` program expected to capture them where fexit is refused.
fn module_attempts_reach_the_rule(raw_exit: Option<&str>, raw_prog: &str) {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF run-time stats");
    let dir = std::env::temp_dir().join(format!("guard-modules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        format!(
            "- rule: Module load attempt\n  desc: t\n  condition: evt.type in (init_module, finit_module) and proc.pid = {}\n  output: attempt %evt.type res=%evt.res uargs=%evt.arg.uargs\n  priority: WARNING\n",
            std::process::id()
        ),
    )
    .expect("rules");
    let mut cmd = rules_only(&rules, &["--log", "info"]);
    if let Some(v) = raw_exit {
        cmd.env("GUARD_RAW_EXIT", v);
    }
    let agent = Agent::spawn(cmd);
    let without_modules =
        !std::path::Path::new("/sys/kernel/tracing/events/syscalls/sys_enter_init_module").exists();
    let (raw_before, fexit_before) = (run_count(raw_prog), run_count("sys_fexit_init_module"));
    // An ia32 syscall whose number is x86_64's init_module (ia32 175 is rt_sigprocmask): the
    // raw_syscalls programs see it too and must not take it for a module load.
    let ia32 = ia32_syscall_175();
    let (init, finit) = module_load_attempts();
    let (raw_after, fexit_after) = (run_count(raw_prog), run_count("sys_fexit_init_module"));
    let mut seen = std::collections::BTreeMap::new();
    let alerts = agent.collect_until(Duration::from_secs(10), |v| {
        if v["rule"] == "Module load attempt" {
            let f = &v["output_fields"];
            seen.insert(
                f["evt.type"].as_str().unwrap_or("").to_owned(),
                (
                    f["evt.res"].as_str().unwrap_or("").to_owned(),
                    f["evt.arg.uargs"].as_str().unwrap_or("").to_owned(),
                ),
            );
        }
        seen.len() == 2
    });
    let (_, stderr) = agent.stop_with_stderr();
    let _ = std::fs::remove_dir_all(&dir);
    let init_alerts = alerts
        .iter()
        .filter(|v| {
            v["rule"] == "Module load attempt" && v["output_fields"]["evt.type"] == "init_module"
        })
        .count();
    assert_eq!(ia32, 0, "the ia32 rt_sigprocmask call failed");
    assert_eq!(
        init_alerts, 1,
        "init_module alerts (the ia32 call with its number must not be one): {alerts:?}"
    );
    let via_raw = stderr
        .iter()
        .any(|l| l.contains("capturing them through raw_syscalls"));
    eprintln!(
        "module attempts {init} {finit}: {seen:?}; via raw {via_raw}; raw {raw_prog} {raw_before:?} -> {raw_after:?}; fexit init_module {fexit_before:?} -> {fexit_after:?}"
    );
    for ty in ["init_module", "finit_module"] {
        let got = seen
            .get(ty)
            .unwrap_or_else(|| panic!("no alert for the {ty} attempt: {alerts:?}"));
        // The arguments, read from the saved registers by whichever program captured it.
        assert_eq!(got.1, "guard=1", "{ty} parameters");
        let got = &got.0;
        if without_modules {
            assert_eq!(got, "ENOSYS", "{ty} result");
            assert_eq!((init, finit), (-1, -1));
        } else {
            assert_ne!(got, "SUCCESS", "{ty} result");
        }
    }
    if without_modules && via_raw {
        assert!(
            raw_after > raw_before,
            "captured through raw_syscalls, whose {raw_prog} did not run"
        );
    } else if without_modules {
        assert_eq!(
            raw_before, raw_after,
            "the raw_syscalls program ran beside the fexit"
        );
        assert!(
            fexit_after > fexit_before,
            "the init_module fexit program did not run ({fexit_before:?} -> {fexit_after:?})"
        );
    }
}

/// Issue 18: one program per syscall, at its exit, with the arguments read from the user
/// registers the entry saved (nothing kept between entry and exit). An `openat` already
/// blocked when the agent starts (`cat` on a FIFO without a writer) is recorded with its path
/// when it returns; under the earlier entry+exit pair it had no recorded entry and was lost.
#[test]
fn a_syscall_blocked_before_the_agent_started_is_recorded_at_its_exit() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let dir = std::env::temp_dir().join(format!("guard-blocked-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let fifo = dir.join("fifo");
    let fifo_s = fifo.to_str().expect("utf8").to_owned();
    let c = std::ffi::CString::new(fifo_s.clone()).expect("cstring");
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        format!(
            "- rule: Fifo opened\n  desc: t\n  condition: evt.type = openat and fd.name = {fifo_s} and proc.name = cat\n  output: fifo %fd.name flags=%evt.arg.flags by %proc.name\n  priority: WARNING\n"
        ),
    )
    .expect("rules");
    let mut reader = Command::new("cat")
        .arg(&fifo)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("cat");
    // Blocked in openat(2) (257) on the FIFO before any guard program is attached.
    let syscall_file = format!("/proc/{}/syscall", reader.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = std::fs::read_to_string(&syscall_file).unwrap_or_default();
        if s.split_whitespace().next() == Some("257") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cat not blocked in openat: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let agent = Agent::spawn(rules_only(&rules, &[]));
    let still = std::fs::read_to_string(&syscall_file).unwrap_or_default();
    assert_eq!(
        still.split_whitespace().next(),
        Some("257"),
        "cat left openat before the agent was ready: {still:?}"
    );
    // The writer's open lets the reader's return; closing it gives the reader EOF.
    drop(
        std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .expect("open fifo for write"),
    );
    assert!(reader.wait().expect("wait cat").success(), "cat failed");
    let mut seen = Vec::new();
    agent.collect_until(Duration::from_secs(10), |v| {
        if v["rule"] == "Fifo opened" {
            seen.push(v["output_fields"].clone());
        }
        !seen.is_empty()
    });
    let rest = agent.stop();
    let _ = std::fs::remove_dir_all(&dir);
    seen.extend(
        rest.iter()
            .filter(|v| v["rule"] == "Fifo opened")
            .map(|v| v["output_fields"].clone()),
    );
    eprintln!("{seen:?}");
    assert_eq!(seen.len(), 1, "one alert for the blocked open: {seen:?}");
    assert_eq!(seen[0]["fd.name"], fifo_s.as_str(), "{seen:?}");
    assert_eq!(seen[0]["proc.name"], "cat", "{seen:?}");
    assert!(
        seen[0]["evt.arg.flags"]
            .as_str()
            .is_some_and(|f| f.contains("O_RDONLY")),
        "the flags argument from the saved registers: {seen:?}"
    );
}
