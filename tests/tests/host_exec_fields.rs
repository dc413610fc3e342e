//! Host layer, issue 17: what the kernel captures at exec. `proc.exe_ino`, `proc.exe_ino.ctime`,
//! `proc.exe_ino.mtime` are the executed file's inode number and times (`mm->exe_file`);
//! `proc.env` is the new image's environment, bounded. A process whose exec guard did not see
//! (it predates the agent) has them from /proc: a stat through `/proc/PID/exe`, and
//! `/proc/PID/environ` with the same bound.

use std::{
    io::Write,
    os::unix::fs::MetadataExt,
    process::{Command, Stdio},
    time::Duration,
};

use guard_tests::harness::{Agent, Docker, agent_lock, can_run, is_root};
use serde_json::Value;

/// A child killed and reaped when the test ends, also on a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ns(sec: i64, nsec: i64) -> u64 {
    (sec * 1_000_000_000 + nsec) as u64
}

#[test]
fn a_freshly_copied_binary_has_its_inode_times_and_env_and_an_older_process_has_them_from_proc() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let dir = std::path::PathBuf::from(format!("/tmp/guard-exe-ino-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // A process started before the agent: it opens a file only when told to (the fifo).
    let fifo = dir.join("go");
    let fifo_c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstring");
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0, "mkfifo");
    let marker = dir.join("old-marker");
    std::fs::write(&marker, b"x").expect("marker");
    let old = Command::new("/bin/busybox")
        .args([
            "sh",
            "-c",
            &format!("read x < {}; read y < {}", fifo.display(), marker.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("older process");
    let mut old = KillOnDrop(old);

    let agent = Agent::start_cmd(&["record"]);
    // Named `true`: busybox runs the applet its name says.
    let tool = dir.join("true");
    std::fs::copy("/bin/busybox", &tool).expect("copy busybox");
    let meta = std::fs::metadata(&tool).expect("stat");
    let ran = Command::new(&tool)
        .arg("exe-ino-marker")
        .env_clear()
        .env("GUARD_TEST_VAR", "value with spaces")
        .env("LONG", "x".repeat(5000))
        .env("AFTER", "1")
        .status()
        .expect("run the copy");
    assert!(ran.success());
    let ev = agent
        .wait_for(Duration::from_secs(20), |v| {
            v["type"] == "execve" && v["proc"]["args"] == serde_json::json!(["exe-ino-marker"])
        })
        .expect("exec event of the copied binary");
    assert_eq!(ev["proc"]["exe_ino"], meta.ino(), "{ev}");
    assert_eq!(
        ev["proc"]["exe_ino_ctime"],
        ns(meta.ctime(), meta.ctime_nsec()),
        "{ev}"
    );
    assert_eq!(
        ev["proc"]["exe_ino_mtime"],
        ns(meta.mtime(), meta.mtime_nsec()),
        "{ev}"
    );
    // The copy was made before the process started: a duration, in the process's start.
    let start = ev["proc"]["start_time"].as_u64().expect("start_time");
    assert!(start >= ns(meta.ctime(), meta.ctime_nsec()), "{ev}");
    // The environment (Command passes it sorted by name), up to the 4,096-byte bound: LONG
    // (5,000 bytes) is cut by it, so it is not there at all (never a half value).
    assert_eq!(
        ev["proc"]["env"],
        serde_json::json!(["AFTER=1", "GUARD_TEST_VAR=value with spaces"]),
        "{ev}"
    );

    // A host process: its pid namespace is the initial one, which started at boot (as Falco).
    let boot = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME);
    let ns_start = num(&ev["proc"]["pidns_start"]).expect("pidns_start");
    assert!(
        (ns_start - boot).abs() < 50_000_000,
        "{ns_start} vs boot {boot}"
    );

    // The older process opens its marker: no exec seen, its inode read through /proc.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"go\n"))
        .expect("fifo");
    let marker_s = marker.to_str().expect("utf8").to_owned();
    let open = agent
        .wait_for(Duration::from_secs(20), |v: &Value| {
            v["fd"]["name"] == marker_s.as_str() && v["proc"]["pid"] == old.0.id()
        })
        .expect("open by the older process");
    let bb = std::fs::metadata("/bin/busybox").expect("stat busybox");
    assert_eq!(open["proc"]["exe_ino"], bb.ino(), "{open}");
    assert_eq!(
        open["proc"]["exe_ino_ctime"],
        ns(bb.ctime(), bb.ctime_nsec()),
        "{open}"
    );
    assert!(open["proc"]["env"].is_array(), "{open}");
    let _ = old.0.wait();
    drop(agent);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 17: a process older than the agent gets `proc.env` and `proc.exe_ino*` from /proc in a
/// rule's output: a shell started before the agent with a known variable, that opens a file a
/// rule matches only when told to (a redirect, no exec). Control: a variable it does not have
/// stays `<NA>`.
#[test]
fn a_process_older_than_the_agent_has_env_and_exe_inode_from_proc_in_alerts() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let dir = std::path::PathBuf::from(format!("/tmp/guard-pre-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let fifo = dir.join("go");
    let fifo_c = std::ffi::CString::new(fifo.to_str().expect("utf8")).expect("cstring");
    // SAFETY: a valid path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0, "mkfifo");
    let target = dir.join("target");
    std::fs::write(&target, b"x").expect("target");
    // `env` execs `sh`, which then only waits and redirects: its exec is before the agent.
    let old = Command::new("env")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .args([
            "GUARD_PRE=agent-older",
            "sh",
            "-c",
            &format!("read x < {}; : < {}", fifo.display(), target.display()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("older process");
    let old = KillOnDrop(old);
    // Its exec of sh has happened once its exe link names sh's file.
    let sh = std::fs::canonicalize("/bin/sh").expect("sh");
    let exe_link = format!("/proc/{}/exe", old.0.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&exe_link).ok().as_deref() != Some(sh.as_path()) {
        assert!(std::time::Instant::now() < deadline, "sh never ran");
        std::thread::sleep(Duration::from_millis(20));
    }

    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        format!(
            "- rule: pre-agent open\n  desc: shows what /proc gave\n  condition: evt.type in (open, openat, openat2) and fd.name = {}\n  output: pre (pid=%proc.pid env=%proc.env[GUARD_PRE] absent=%proc.env[GUARD_ABSENT] ino=%proc.exe_ino ctime=%proc.exe_ino.ctime mtime=%proc.exe_ino.mtime)\n  priority: NOTICE\n  source: syscall\n",
            target.display()
        ),
    )
    .expect("rules");
    let agent = Agent::run_rules(&rules);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&fifo)
        .and_then(|mut f| f.write_all(b"go\n"))
        .expect("fifo");
    let alert = agent
        .wait_for(Duration::from_secs(20), |v: &Value| {
            v["rule"] == "pre-agent open" && v["output_fields"]["proc.pid"] == old.0.id()
        })
        .expect("alert for the older process's open");
    let f = &alert["output_fields"];
    let md = std::fs::metadata(&sh).expect("stat sh");
    assert_eq!(f["proc.env[GUARD_PRE]"], "agent-older", "{alert}");
    assert!(f["proc.env[GUARD_ABSENT]"].is_null(), "{alert}");
    assert_eq!(f["proc.exe_ino"], md.ino(), "{alert}");
    assert_eq!(
        f["proc.exe_ino.ctime"],
        ns(md.ctime(), md.ctime_nsec()),
        "{alert}"
    );
    assert_eq!(
        f["proc.exe_ino.mtime"],
        ns(md.mtime(), md.mtime_nsec()),
        "{alert}"
    );
    drop(agent);
    drop(old);
    let _ = std::fs::remove_dir_all(&dir);
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and an out pointer to a timespec.
    assert_eq!(unsafe { libc::clock_gettime(id, &mut ts) }, 0);
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// When process `pid` started, ns since the epoch: `/proc/PID/stat` field 22 (clock ticks of the
/// boot clock) plus the boot clock's offset from the wall clock, as the agent converts.
fn start_wall_ns(pid: u32) -> i128 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let ticks: i128 = rest
        .split(' ')
        .nth(19)
        .and_then(|t| t.parse().ok())
        .expect("starttime");
    // SAFETY: sysconf has no preconditions.
    let hz = i128::from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) });
    let offset = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME);
    offset + ticks * 1_000_000_000 / hz
}

fn num(v: &Value) -> Option<i128> {
    v.as_u64().map(i128::from)
}

/// `proc.exe_ino.ctime_duration_pidns_start`: a binary copied into a container after its init
/// started and then run has a positive duration, its ctime minus the init's start, below the
/// container's age. A host executable older than boot (the initial namespace's start, as
/// Falco) has `<NA>`, while its ctime is known.
#[test]
fn pidns_start_duration_for_a_new_binary_in_a_container_and_na_for_an_old_host_one() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else {
        return;
    };
    let _lock = agent_lock();
    let dir = std::path::PathBuf::from(format!("/tmp/guard-pidns-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "- rule: pidns probe\n  desc: shows the duration\n  condition: evt.type in (execve, execveat) and proc.args contains guard-pidns-marker\n  output: pidns (dur=%proc.exe_ino.ctime_duration_pidns_start ctime=%proc.exe_ino.ctime args=%proc.args exe=%proc.exepath)\n  priority: NOTICE\n  source: syscall\n",
    )
    .expect("rules");
    let c = docker.run(&[], &["sleep", "3600"]);
    let init = c.pid();
    let ns_start = start_wall_ns(init);
    let agent = Agent::run_rules(&rules);
    // Copied after the container's init started: its ctime is later.
    let (ok, out) = c.exec(&[
        "sh",
        "-c",
        "cp /bin/busybox /tmp/busybox && /tmp/busybox true guard-pidns-marker-c && echo ran",
    ]);
    assert!(ok && out.contains("ran"), "{out}");
    let in_c = agent
        .wait_for(Duration::from_secs(20), |v: &Value| {
            // Not the `docker exec` command line, which holds the marker too.
            v["output_fields"]["proc.exepath"] == "/tmp/busybox"
                && v["output_fields"]["proc.args"]
                    .as_str()
                    .is_some_and(|a| a.contains("guard-pidns-marker-c"))
        })
        .expect("alert for the copied binary in the container");
    let f = &in_c["output_fields"];
    assert_eq!(f["proc.exepath"], "/tmp/busybox", "{in_c}");
    let copy = std::fs::metadata(format!("/proc/{init}/root/tmp/busybox")).expect("stat copy");
    let ctime = i128::from(copy.ctime()) * 1_000_000_000 + i128::from(copy.ctime_nsec());
    assert_eq!(num(&f["proc.exe_ino.ctime"]), Some(ctime), "{in_c}");
    let dur = num(&f["proc.exe_ino.ctime_duration_pidns_start"]).expect("a duration");
    let now = clock_ns(libc::CLOCK_REALTIME);
    assert!(
        dur > 0 && dur < now - ns_start,
        "{dur} vs age {}",
        now - ns_start
    );
    // The init's start as /proc tells it (10 ms ticks): the same, within a tick and the
    // clocks' offset read at two moments.
    let want = ctime - ns_start;
    eprintln!(
        "duration {dur} ns, ctime - init start {want} ns, age {}",
        now - ns_start
    );
    assert!(
        (dur - want).abs() <= 20_000_000,
        "duration {dur}, ctime - init start {want}"
    );

    // Control: a host executable changed before boot.
    let old = "/usr/bin/true";
    let md = std::fs::metadata(old).expect("stat");
    let boot = clock_ns(libc::CLOCK_REALTIME) - clock_ns(libc::CLOCK_BOOTTIME);
    let old_ctime = i128::from(md.ctime()) * 1_000_000_000 + i128::from(md.ctime_nsec());
    assert!(
        old_ctime < boot,
        "the control needs {old} changed before boot ({old_ctime} >= {boot})"
    );
    assert!(
        Command::new(old)
            .arg("guard-pidns-marker-h")
            .status()
            .expect("true")
            .success()
    );
    let host = agent
        .wait_for(Duration::from_secs(20), |v: &Value| {
            v["output_fields"]["proc.args"]
                .as_str()
                .is_some_and(|a| a.contains("guard-pidns-marker-h"))
        })
        .expect("alert for the host executable");
    let f = &host["output_fields"];
    assert_eq!(num(&f["proc.exe_ino.ctime"]), Some(old_ctime), "{host}");
    assert!(
        f["proc.exe_ino.ctime_duration_pidns_start"].is_null(),
        "{host}"
    );
    drop(agent);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same duration for a process older than the agent (read from /proc): a container whose
/// init copies busybox, execs the copy, and after the agent started opens a file a rule matches
/// (a redirect, no exec). Its namespace's start is found in /proc (the init itself); the
/// duration is the copy's ctime minus it.
#[test]
fn pidns_start_duration_for_a_container_init_older_than_the_agent() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else {
        return;
    };
    let _lock = agent_lock();
    let dir = std::path::PathBuf::from(format!("/tmp/guard-pidns-old-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let c = docker.run(
        &[],
        &[
            "sh",
            "-c",
            "cp /bin/busybox /tmp/busybox && : > /tmp/pidns-target && exec /tmp/busybox sh -c 'while [ ! -e /tmp/go ]; do /tmp/busybox sleep 0.05; done; : < /tmp/pidns-target; /tmp/busybox sleep 3600'",
        ],
    );
    let init = c.pid();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(format!("/proc/{init}/exe"))
        .ok()
        .is_none_or(|l| l != std::path::Path::new("/tmp/busybox"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the init never ran /tmp/busybox"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let ns_start = start_wall_ns(init);
    let rules = dir.join("rules.yaml");
    std::fs::write(
        &rules,
        "- rule: pidns old probe\n  desc: shows the duration\n  condition: evt.type in (open, openat, openat2) and fd.name endswith /pidns-target\n  output: pidns-old (pid=%proc.pid dur=%proc.exe_ino.ctime_duration_pidns_start ctime=%proc.exe_ino.ctime)\n  priority: NOTICE\n  source: syscall\n",
    )
    .expect("rules");
    let agent = Agent::run_rules(&rules);
    std::fs::write(format!("/proc/{init}/root/tmp/go"), b"").expect("flag");
    let alert = agent
        .wait_for(Duration::from_secs(20), |v: &Value| {
            v["rule"] == "pidns old probe" && v["output_fields"]["proc.pid"] == init
        })
        .expect("alert for the older init's open");
    let f = &alert["output_fields"];
    let copy = std::fs::metadata(format!("/proc/{init}/root/tmp/busybox")).expect("stat copy");
    let ctime = i128::from(copy.ctime()) * 1_000_000_000 + i128::from(copy.ctime_nsec());
    assert_eq!(num(&f["proc.exe_ino.ctime"]), Some(ctime), "{alert}");
    let dur = num(&f["proc.exe_ino.ctime_duration_pidns_start"]).expect("a duration");
    let want = ctime - ns_start;
    eprintln!("older init: duration {dur} ns, ctime - init start {want} ns");
    assert!(dur > 0, "{alert}");
    // The agent converts the same /proc ticks with its own clock offset.
    assert!((dur - want).abs() <= 20_000_000, "{dur} vs {want}");
    drop(agent);
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
}
