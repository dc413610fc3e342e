//! Fault tests (issue 9), host layer: root, real dockerd. The agent must keep running,
//! enforcing and alerting when the world around it fails:
//! - dockerd stopped and restarted under it (reconnect, metadata again);
//! - the ring buffer saturated (drops counted, still responsive);
//! - the audit log's disk full (keeps enforcing, screams, recovers, chain verifies);
//! - edge inputs: huge argv, paths at PATH_MAX, non-UTF-8 names, 10,000 short-lived cgroups.
//!
//! Everything a test creates (cgroups, tmpfs mounts, pins, containers, a stopped dockerd) is
//! undone by a Drop guard, so a failing test leaves the host as it found it.

use std::{
    ffi::{CString, OsStr, OsString},
    os::unix::ffi::{OsStrExt, OsStringExt},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use guard_tests::harness::{
    Agent, Docker, TestCgroup, agent_lock, can_run, cgroup2_mount, fork_in_cgroup,
    free_metrics_addr, guard_bin, http_get, is_root, metric,
};

/// A scratch directory, pin directory and metrics address for one test.
struct Scratch {
    dir: PathBuf,
    pins: String,
    metrics: String,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("guard-fault-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch {
            dir,
            pins: format!("/sys/fs/bpf/guard-fault-{tag}-{}", std::process::id()),
            metrics: free_metrics_addr(),
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// A policy killing exec of `binary` in the test cgroup (the fallback backend on this
    /// kernel: SIGKILL at sched_process_exec).
    fn deny_exec_policy(&self, cg: &TestCgroup, binary: &str) -> String {
        let rel = cg
            .path
            .strip_prefix(cgroup2_mount())
            .expect("test cgroup under the cgroup2 mount");
        let p = self.dir.join("policy.yaml");
        std::fs::write(
            &p,
            format!(
                "- policy: fault-deny\n  workload: {{cgroup: \"/{}\"}}\n  mode: enforce\n  enforce:\n    exec: {{deny: [{binary}]}}\n",
                rel.display()
            ),
        )
        .expect("write policy");
        p.display().to_string()
    }

    fn metrics(&self) -> String {
        http_get(&self.metrics, "/metrics")
            .expect("scrape /metrics")
            .1
    }

    fn gauge(&self, series: &str) -> f64 {
        let body = self.metrics();
        metric(&body, series).unwrap_or_else(|| panic!("no {series} in the scrape:\n{body}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = Command::new(guard_bin())
            .args(["run", "--cleanup", "--pin-dir", &self.pins])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Waits for a child and returns its raw wait status.
fn wait_status(pid: u32) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert_eq!(r, pid as i32, "waitpid");
    status
}

fn killed_by_sigkill(status: i32) -> bool {
    libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL
}

fn exited_ok(status: i32) -> bool {
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// An argv for execv, built before the fork (the child may not allocate).
struct ExecArgs {
    path: CString,
    _args: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl ExecArgs {
    fn new(path: &str, args: Vec<Vec<u8>>) -> ExecArgs {
        let path = CString::new(path).expect("path");
        let mut all = vec![path.clone()];
        all.extend(args.into_iter().map(|a| CString::new(a).expect("no NUL")));
        let mut ptrs: Vec<*const libc::c_char> = all.iter().map(|a| a.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        ExecArgs {
            path,
            _args: all,
            ptrs,
        }
    }

    /// In the forked child: exec, or exit with the errno.
    fn exec(&self) -> i32 {
        // SAFETY: pointers into CStrings that outlive the call; the array ends with NULL.
        unsafe {
            libc::execv(self.path.as_ptr(), self.ptrs.as_ptr());
            *libc::__errno_location()
        }
    }
}

/// Runs `exe` in `cg` and returns the wait status.
fn exec_in(cg: &TestCgroup, exe: &ExecArgs) -> i32 {
    wait_status(fork_in_cgroup(cg, || exe.exec()))
}

/// The allowed control run next to denied execs: a policy that killed every exec would
/// otherwise pass. `/bin/sleep 0` is not the denied binary and must exit 0.
fn control_exec() -> ExecArgs {
    ExecArgs::new("/bin/sleep", vec![b"0".to_vec()])
}

fn assert_control_runs(cg: &TestCgroup, control: &ExecArgs, when: &str) {
    let st = exec_in(cg, control);
    assert!(
        exited_ok(st),
        "allowed control exec (/bin/sleep 0) did not run {when}: wait status {st:#x}"
    );
}

/// Opens `path` (read-only) from a child in `cg`; the child exits 0 when the open succeeded,
/// else with the errno.
fn open_in(cg: &TestCgroup, path: &CString) -> i32 {
    let pid = fork_in_cgroup(cg, || {
        // SAFETY: raw syscalls on a buffer built before the fork.
        unsafe {
            let fd = libc::open(path.as_ptr(), libc::O_RDONLY);
            if fd < 0 {
                return *libc::__errno_location();
            }
            libc::close(fd);
        }
        0
    });
    wait_status(pid)
}

// ---------------------------------------------------------------------------------------
// 1. dockerd stopped and restarted while the agent runs
// ---------------------------------------------------------------------------------------

/// The running dockerd, stopped by PID and restored with the same argv, environment and
/// working directory (and the fixture's pid file updated) on `restart` or on drop.
struct StoppedDockerd {
    argv: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    cwd: PathBuf,
    /// `integration/docker.sh`'s pid file, when the fixture owns this dockerd.
    fixture_pidfile: Option<PathBuf>,
    log: PathBuf,
    /// The daemon's nice value (the test itself may run niced).
    nice: i32,
    running: bool,
}

fn fixture_state_dir() -> PathBuf {
    std::env::var_os("GUARD_TEST_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/guard-test"))
}

fn is_dockerd(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "dockerd")
}

fn read_pid(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

fn current_nice() -> i32 {
    // SAFETY: getpriority has no preconditions (errno is not needed: -1 is a valid answer here).
    unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
}

fn docker_up() -> bool {
    Command::new("timeout")
        .args(["5", "docker", "info"])
        .output()
        .is_ok_and(|o| o.status.success())
}

impl StoppedDockerd {
    /// Stops the dockerd that serves the tests (the fixture's, else the one named by
    /// /var/run/docker.pid) with SIGTERM, by PID, and waits until it is gone.
    fn stop() -> StoppedDockerd {
        let fixture = fixture_state_dir().join("dockerd.pid");
        let (pid, fixture_pidfile) = match read_pid(&fixture).filter(|&p| is_dockerd(p)) {
            Some(p) => (p, Some(fixture)),
            None => (
                read_pid(Path::new("/var/run/docker.pid"))
                    .filter(|&p| is_dockerd(p))
                    .expect("no running dockerd found by pid file"),
                None,
            ),
        };
        let split = |b: Vec<u8>| -> Vec<OsString> {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| OsString::from_vec(s.to_vec()))
                .collect()
        };
        let argv = split(std::fs::read(format!("/proc/{pid}/cmdline")).expect("dockerd cmdline"));
        let env = split(std::fs::read(format!("/proc/{pid}/environ")).expect("dockerd environ"))
            .into_iter()
            .filter_map(|kv| {
                let b = kv.into_vec();
                let eq = b.iter().position(|&c| c == b'=')?;
                Some((
                    OsString::from_vec(b[..eq].to_vec()),
                    OsString::from_vec(b[eq + 1..].to_vec()),
                ))
            })
            .collect();
        // A daemon started from a directory removed since ("… (deleted)") restarts from `/`.
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"))
            .ok()
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| "/".into());
        // Field 19 of /proc/PID/stat, counted after the `)` that ends the command name.
        let nice = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(16)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        let log = if fixture_pidfile.is_some() {
            fixture_state_dir().join("dockerd.log")
        } else {
            std::env::temp_dir().join("guard-fault-dockerd.log")
        };
        eprintln!("fault: stopping dockerd pid {pid}: {argv:?}");
        // SAFETY: signalling the dockerd found by its pid file, checked by comm just above.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && is_dockerd(pid) {
            assert!(Instant::now() < deadline, "dockerd {pid} did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
        StoppedDockerd {
            argv,
            env,
            cwd,
            fixture_pidfile,
            log,
            nice,
            running: false,
        }
    }

    /// Starts dockerd again, as it was, and waits until it answers.
    fn restart(&mut self) {
        if self.running {
            return;
        }
        self.running = true;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("dockerd log");
        // `setsid -f`: dockerd is not our child (no zombie), like the fixture's `setsid &`.
        let mut cmd = Command::new("nice");
        cmd.arg("-n")
            .arg((self.nice - current_nice()).to_string())
            .args(["setsid", "-f"])
            .args(&self.argv)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log);
        // dockerd outlives this test: it must not inherit descriptors beyond 0-2, such as the
        // `flock` lock of the privileged-test runs, which it would otherwise hold forever.
        // SAFETY: close_range is async-signal-safe; CLOSE_RANGE_CLOEXEC only marks descriptors.
        unsafe {
            cmd.pre_exec(|| {
                if libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let st = cmd.status().expect("restarting dockerd");
        assert!(st.success(), "setsid -f dockerd failed");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker_up() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s after the restart (log: {})",
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        let pid = read_pid(&self.own_pidfile()).filter(|&p| is_dockerd(p));
        if let (Some(f), Some(pid)) = (&self.fixture_pidfile, pid) {
            // `integration/docker.sh down` stops the daemon by this pid.
            let _ = std::fs::write(f, format!("{pid}\n"));
        }
        eprintln!("fault: dockerd restarted (pid {pid:?})");
    }

    /// The pid file dockerd itself writes: `--pidfile X`, or its default.
    fn own_pidfile(&self) -> PathBuf {
        let mut args = self.argv.iter();
        while let Some(a) = args.next() {
            let a = a.to_string_lossy();
            if a == "--pidfile" || a == "-p" {
                if let Some(v) = args.next() {
                    return PathBuf::from(v);
                }
            } else if let Some(v) = a.strip_prefix("--pidfile=") {
                return PathBuf::from(v);
            }
        }
        PathBuf::from("/var/run/docker.pid")
    }
}

impl Drop for StoppedDockerd {
    fn drop(&mut self) {
        if !self.running {
            // Later tests need the daemon: restore it even when the test failed.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.restart())).is_err() {
                eprintln!("fault: could not restore dockerd");
            }
        }
    }
}

fn is_shell_alert(v: &serde_json::Value, id: &str, name: &str) -> bool {
    v["rule"] == "Shell spawned in container"
        && v["output_fields"]["container.id"] == id
        && v["output_fields"]["container.name"] == name
}

fn is_shadow_alert(v: &serde_json::Value) -> bool {
    v["rule"] == "Read sensitive file" && v["output_fields"]["fd.name"] == "/etc/shadow"
}

/// A host process reads /etc/shadow from a test cgroup until the alert arrives (bounded).
fn host_alert_arrives(agent: &Agent, cg: &TestCgroup, within: Duration) -> bool {
    let shadow = CString::new("/etc/shadow").expect("cstring");
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        assert!(
            exited_ok(open_in(cg, &shadow)),
            "reading /etc/shadow failed"
        );
        if agent
            .wait_for(Duration::from_millis(300), is_shadow_alert)
            .is_some()
        {
            return true;
        }
    }
    false
}

/// dockerd goes away under a running agent and comes back: the agent says so on stderr, stays
/// healthy and keeps alerting on host events meanwhile, then reconnects (bounded backoff, at
/// most 5 s between attempts) so that a container started afterwards is enriched with its id
/// and name again. The daemon is the one `integration/docker.sh` started (or, outside the
/// fixture, the one named by /var/run/docker.pid; a systemd-managed daemon would come back
/// outside its unit): stopped by PID and started again with the same command line,
/// environment, directory and nice value, also when the test fails.
#[test]
fn dockerd_stopped_and_restarted_agent_keeps_alerting_and_reconnects() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else { return };
    let _lock = agent_lock();
    let started = Instant::now();
    let s = Scratch::new("dockerd");
    let cg = TestCgroup::new("fault-dockerd");
    let audit = s.path("audit");
    let mut agent = Agent::run(&["--metrics-addr", &s.metrics, "--audit-dir", &audit]);

    // Before: a container's shell alert carries its id and name.
    let tag = std::process::id();
    let n1 = format!("guard-fault-before-{tag}");
    let c1 = docker.run(&["--name", &n1], &["sleep", "300"]);
    let before = (0..20).find_map(|_| {
        let (ok, _) = c1.exec(&["sh", "-c", "true"]);
        assert!(ok, "docker exec before the stop");
        agent.wait_for(Duration::from_millis(500), |v| {
            is_shell_alert(v, &c1.id[..12], &n1)
        })
    });
    assert!(before.is_some(), "no enriched shell alert before the stop");

    // Removed first: dockerd would wait 10 s for its `sleep` to stop.
    drop(c1);
    // Other test processes on this host may be using the daemon: let their containers finish
    // (bounded) before taking it away.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if docker
            .cmd(&["ps", "-q", "--filter", "label=guard-test=1"])
            .is_empty()
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("fault: {:?}: stopping dockerd", started.elapsed());
    let mut dockerd = StoppedDockerd::stop();
    eprintln!("fault: {:?}: dockerd stopped", started.elapsed());
    // The agent notices and says so on stderr.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !agent
        .stderr_so_far()
        .iter()
        .any(|l| l.contains("docker daemon") && (l.contains("lost") || l.contains("unreachable")))
    {
        assert!(
            Instant::now() < deadline,
            "no warning on stderr about the lost Docker daemon: {:?}",
            agent.stderr_so_far()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // While Docker is down: alive, healthy, and host events still alert.
    assert!(
        host_alert_arrives(&agent, &cg, Duration::from_secs(10)),
        "no host alert while dockerd was down"
    );
    let (status, _) = http_get(&s.metrics, "/healthz").expect("/healthz while dockerd is down");
    assert_eq!(status, "HTTP/1.1 200 OK");
    std::thread::sleep(Duration::from_secs(2));
    assert!(agent.alive(), "the agent exited while dockerd was down");

    eprintln!("fault: {:?}: host alert seen while down", started.elapsed());
    dockerd.restart();
    eprintln!("fault: {:?}: dockerd answers", started.elapsed());
    // A container started after the restart: its events are enriched again (reconnected).
    let n2 = format!("guard-fault-after-{tag}");
    let c2 = docker.run(&["--name", &n2], &["sleep", "300"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = None;
    while after.is_none() && Instant::now() < deadline {
        let (ok, _) = c2.exec(&["sh", "-c", "true"]);
        assert!(ok, "docker exec after the restart");
        after = agent.wait_for(Duration::from_millis(500), |v| {
            is_shell_alert(v, &c2.id[..12], &n2)
        });
    }
    assert!(
        after.is_some(),
        "no shell alert with container.id and container.name after dockerd came back: the agent did not reconnect"
    );
    assert!(agent.alive(), "the agent exited");
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        stderr.iter().all(|l| !l.contains("panicked")),
        "the agent panicked: {stderr:?}"
    );
    eprintln!("fault: dockerd test took {:?}", started.elapsed());
}

// ---------------------------------------------------------------------------------------
// 2. Ring buffer saturated
// ---------------------------------------------------------------------------------------

/// Opens a relative path (never skipped by the prefilter) in a loop for `secs` seconds.
fn flood(cg: &TestCgroup, secs: i64) -> u32 {
    let rel = CString::new("guard-fault-flood-nonexistent").expect("cstring");
    fork_in_cgroup(cg, move || {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime (vDSO) and openat on buffers built before the fork.
        unsafe {
            libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            let end = now.tv_sec + secs;
            while now.tv_sec < end {
                for _ in 0..1000 {
                    libc::openat(libc::AT_FDCWD, rel.as_ptr(), libc::O_RDONLY);
                }
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
            }
        }
        0
    })
}

/// A one-page ring buffer flooded by two processes for 6 s (host_drops checks the exact drop
/// accounting; this checks the agent under saturation): drops are counted in metrics and
/// reported on stderr, `/healthz` answers promptly, a denied exec is killed and its decision
/// alerted (the decision ring is separate), and a rule alert for a distinct event gets through.
#[test]
fn saturated_ring_counts_drops_and_the_agent_stays_responsive() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let s = Scratch::new("ring");
    let cg = TestCgroup::new("fault-ring");
    let policy = s.deny_exec_policy(&cg, "/bin/true");
    let audit = s.path("audit");
    let agent = Agent::run(&[
        "--only-cgroup",
        cg.path.to_str().expect("utf8"),
        "--ring-bytes",
        "4096",
        "--drop-report-secs",
        "1",
        "--metrics-addr",
        &s.metrics,
        "--policy",
        &policy,
        "--pin-dir",
        &s.pins,
        "--audit-dir",
        &audit,
    ]);
    let floods = [flood(&cg, 6), flood(&cg, 6)];
    std::thread::sleep(Duration::from_millis(500));

    // /healthz answers promptly under the flood.
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let t = Instant::now();
        let (status, _) = http_get(&s.metrics, "/healthz").expect("/healthz under the flood");
        assert_eq!(status, "HTTP/1.1 200 OK");
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("fault: slowest /healthz under the flood: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "/healthz took {slowest:?} under the flood"
    );
    // A denied exec is killed and its decision alerted while the event ring overflows.
    let t = Instant::now();
    let denied = ExecArgs::new("/bin/true", vec![]);
    assert!(
        killed_by_sigkill(exec_in(&cg, &denied)),
        "denied exec not killed under the flood"
    );
    assert_control_runs(&cg, &control_exec(), "under the flood");
    let decision = agent.wait_for(Duration::from_secs(5), |v| {
        v["source"] == "guard_policy" && v["output_fields"]["guard.target"] == "/bin/true"
    });
    assert!(
        decision.is_some(),
        "no decision alert within 5 s under the flood"
    );
    eprintln!("fault: decision alert {:?} after the exec", t.elapsed());
    // A rule alert for a distinct event gets through (retried: the event ring is full).
    assert!(
        host_alert_arrives(&agent, &cg, Duration::from_secs(8)),
        "no rule alert for a distinct event under the flood"
    );
    let dropped_during = s.gauge("guard_events_dropped_total{kind=\"syscall\"}") as u64;
    for pid in floods {
        assert!(exited_ok(wait_status(pid)), "flood child failed");
    }
    std::thread::sleep(Duration::from_millis(1500));
    let dropped = s.gauge("guard_events_dropped_total{kind=\"syscall\"}") as u64;
    let received = s.gauge("guard_events_received_total{kind=\"syscall\"}") as u64;
    let (_, stderr) = agent.stop_with_stderr();
    eprintln!("fault: flood: {received} syscall records received, {dropped} dropped");
    assert!(
        dropped_during > 0,
        "the ring never overflowed during the flood"
    );
    assert!(dropped >= dropped_during, "drop counter went back");
    assert!(received > 0, "nothing received");
    assert!(
        stderr.iter().any(|l| l.contains("events lost")),
        "no drop report on stderr: {stderr:?}"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Audit log disk full
// ---------------------------------------------------------------------------------------

/// A small tmpfs mounted on a fresh directory; unmounted (lazily if busy) on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&dir).expect("mount point");
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .expect("mount");
        assert!(st.success(), "mounting a tmpfs on {}", dir.display());
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Writes `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("filler");
    let mut n = 0u64;
    for chunk in [65536usize, 4096, 512, 1] {
        let buf = vec![0x55u8; chunk];
        loop {
            match f.write(&buf) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "filling: {e}");
                    break;
                }
            }
        }
    }
    let _ = f.sync_all();
    n
}

fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("audit dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("audit file")
                .lines()
                .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The audit log on a 1 MiB tmpfs that fills up under a running agent (docs/audit.md, "When the
/// log cannot be written"): denied execs are still killed, stderr names the directory and
/// ENOSPC a bounded number of times, metrics say unhealthy, and once space returns the log is
/// written again, the loss is recorded as an `audit_gap` whose counts add up, and
/// `guard audit verify` passes.
#[test]
fn audit_disk_full_keeps_enforcing_screams_and_recovers() {
    if !can_run(
        is_root(),
        "needs root to load eBPF programs and mount tmpfs",
    ) {
        return;
    }
    let _lock = agent_lock();
    let s = Scratch::new("audit-full");
    let cg = TestCgroup::new("fault-audit");
    let policy = s.deny_exec_policy(&cg, "/bin/true");
    let mnt = Tmpfs::mount(s.dir.join("mnt"), "1m");
    let audit_dir = mnt.dir.join("audit");
    let audit = audit_dir.display().to_string();
    let mut agent = Agent::run(&[
        "--only-cgroup",
        cg.path.to_str().expect("utf8"),
        "--metrics-addr",
        &s.metrics,
        "--policy",
        &policy,
        "--pin-dir",
        &s.pins,
        "--audit-dir",
        &audit,
    ]);
    let denied = ExecArgs::new("/bin/true", vec![]);
    let control = control_exec();
    let mut execs = 0u64;
    // Control: with room, a denied exec is killed and its decision is in the log.
    assert!(
        killed_by_sigkill(exec_in(&cg, &denied)),
        "denied exec not killed"
    );
    execs += 1;
    assert_control_runs(&cg, &control, "with room on the audit disk");
    assert_eq!(s.gauge("guard_audit_healthy"), 1.0);

    let filler = mnt.dir.join("filler");
    let filled = fill(&filler);
    eprintln!("fault: filler took {filled} bytes");
    // Disk full: enforcement goes on; every decision fails to be written.
    for _ in 0..60 {
        assert!(
            killed_by_sigkill(exec_in(&cg, &denied)),
            "denied exec not killed while the audit disk is full"
        );
        execs += 1;
        assert_control_runs(&cg, &control, "while the audit disk is full");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    let full = s.metrics();
    let errors = metric(&full, "guard_audit_write_errors_total").expect("write errors metric");
    let lost_full = metric(&full, "guard_audit_records_lost_total").expect("lost metric");
    assert_eq!(
        metric(&full, "guard_audit_healthy"),
        Some(0.0),
        "audit not reported unhealthy while the disk is full"
    );
    assert!(errors >= 3.0, "only {errors} write errors counted");
    assert!(lost_full >= 1.0, "no lost record counted");
    assert!(agent.alive(), "the agent exited on a full audit disk");
    let (status, _) = http_get(&s.metrics, "/healthz").expect("/healthz");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let screams: Vec<String> = agent
        .stderr_so_far()
        .into_iter()
        .filter(|l| l.contains("audit") && l.contains("cannot write"))
        .collect();
    assert!(
        screams
            .iter()
            .any(|l| l.contains(&audit) && l.contains("ENOSPC")),
        "no stderr error naming the audit dir and ENOSPC: {screams:?}"
    );
    assert!(
        (screams.len() as f64) < errors && screams.len() <= 2,
        "{} stderr lines for {errors} failures: not rate-limited",
        screams.len()
    );

    // Space returns: new records are written again and the gap is recorded.
    std::fs::remove_file(&filler).expect("remove filler");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(
            killed_by_sigkill(exec_in(&cg, &denied)),
            "denied exec not killed"
        );
        execs += 1;
        assert_control_runs(&cg, &control, "after space returned");
        std::thread::sleep(Duration::from_millis(300));
        if s.gauge("guard_audit_healthy") == 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "the audit log did not recover");
    }
    std::thread::sleep(Duration::from_millis(500));
    let lost = s.gauge("guard_audit_records_lost_total") as u64;
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("writing the audit log") && l.contains("again")),
        "no recovery message on stderr"
    );

    let records = audit_records(&audit_dir);
    let logged = records
        .iter()
        .filter(|r| r["kind"] == "decision" && r["policy"] == "fault-deny")
        .count() as u64;
    let summaries: Vec<_> = records
        .iter()
        .filter(|r| r["kind"] == "drop_summary")
        .collect();
    let counted = |kind: &str| -> u64 {
        summaries
            .iter()
            .filter_map(|r| r["audit"][kind].as_u64())
            .sum()
    };
    let all_counted: u64 = summaries
        .iter()
        .filter_map(|r| r["audit"].as_object())
        .flat_map(|m| m.values().filter_map(|v| v.as_u64()))
        .sum();
    let gap = summaries
        .iter()
        .find_map(|r| r.get("audit_gap"))
        .unwrap_or_else(|| panic!("no audit_gap record: {summaries:?}"));
    assert_eq!(gap["errno"], "ENOSPC", "{gap}");
    assert!(gap["lost"].as_u64().is_some_and(|n| n >= 1), "{gap}");
    assert!(
        gap["error"].as_str().is_some_and(|e| e.contains(&audit)),
        "{gap}"
    );
    eprintln!(
        "fault: {execs} denied execs: {logged} decisions logged + {} counted lost; {lost} lost in all",
        counted("decision")
    );
    assert_eq!(
        logged + counted("decision"),
        execs,
        "every decision is in the log or counted as lost"
    );
    assert_eq!(all_counted, lost, "log's loss counts match the metric");
    assert!(
        records.last().is_some_and(|r| r["kind"] == "agent_stop"),
        "agent_stop not written after recovery"
    );
    let out = Command::new(guard_bin())
        .args(["audit", "verify"])
        .arg(&audit_dir)
        .output()
        .expect("guard audit verify");
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// 4. Edge inputs
// ---------------------------------------------------------------------------------------

/// `dir/ddd…/ddd…/…` (components of 200 bytes) such that `chain + "/" + name` can be exactly
/// `total` bytes with a name of 1..=255 bytes; returns the chain.
fn dir_chain(base: &Path, total: usize) -> PathBuf {
    let mut p = base.to_path_buf();
    while total - p.as_os_str().len() > 1 + 255 {
        p.push("d".repeat(200));
    }
    p
}

fn record_of(
    lines: &[serde_json::Value],
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<&serde_json::Value> {
    lines.iter().find(|v| pred(v))
}

/// Huge argv, paths at PATH_MAX and non-UTF-8 names and arguments, traced by
/// `guard record --raw` from a test cgroup: the kernel-side copy is bounded and flagged as
/// docs/event-schema.md ("Long strings and non-UTF-8 bytes") says, every stdout line is valid
/// JSON, and the agent runs on.
#[test]
fn edge_inputs_are_bounded_flagged_and_valid_json() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let s = Scratch::new("edge");
    let cg = TestCgroup::new("fault-edge");
    let mut agent = Agent::start(&["--only-cgroup", cg.path.to_str().expect("utf8")]);

    // Huge argv: 2000 arguments, and one argument of 100 KiB; both execs succeed. One of
    // 200 KiB is over the kernel's MAX_ARG_STRLEN (128 KiB): E2BIG.
    let many: Vec<Vec<u8>> = (0..2000)
        .map(|i| format!("arg-{i:04}").into_bytes())
        .collect();
    let many = ExecArgs::new("/bin/true", many);
    assert!(exited_ok(exec_in(&cg, &many)), "exec with 2000 args failed");
    let big = ExecArgs::new("/bin/true", vec![vec![b'x'; 100 * 1024]]);
    assert!(
        exited_ok(exec_in(&cg, &big)),
        "exec with a 100 KiB arg failed"
    );
    let too_big = ExecArgs::new("/bin/true", vec![vec![b'y'; 200 * 1024]]);
    let st = exec_in(&cg, &too_big);
    assert!(
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == libc::E2BIG,
        "a 200 KiB argument should fail with E2BIG"
    );

    // Paths of 4094, 4095 (the longest the kernel accepts) and 5000 bytes.
    let base = s.dir.join("paths");
    let chain = dir_chain(&base, 4095);
    std::fs::create_dir_all(&chain).expect("nested dirs");
    let name_len = |total: usize| total - chain.as_os_str().len() - 1;
    let p4094 = chain.join("a".repeat(name_len(4094)));
    let p4095 = chain.join("b".repeat(name_len(4095)));
    for p in [&p4094, &p4095] {
        std::fs::write(p, b"x").expect("file at PATH_MAX");
    }
    assert_eq!(p4095.as_os_str().len(), 4095);
    let p5000 = format!(
        "{}/{}",
        chain.display(),
        "c".repeat(5000 - chain.as_os_str().len() - 1)
    );
    let c = |p: &[u8]| CString::new(p).expect("no NUL");
    assert!(exited_ok(open_in(&cg, &c(p4094.as_os_str().as_bytes()))));
    assert!(exited_ok(open_in(&cg, &c(p4095.as_os_str().as_bytes()))));
    let st = open_in(&cg, &c(p5000.as_bytes()));
    assert_eq!(libc::WEXITSTATUS(st), libc::ENAMETOOLONG);

    // Non-UTF-8 and control bytes in a file name and in an argument.
    let odd_dir = s.dir.join("odd");
    std::fs::create_dir_all(&odd_dir).expect("dir");
    let odd = odd_dir.join(OsStr::from_bytes(b"name-\xff\xfe-\n\x1b-end"));
    std::fs::write(&odd, b"x").expect("non-UTF-8 file");
    assert!(exited_ok(open_in(&cg, &c(odd.as_os_str().as_bytes()))));
    let odd_arg = ExecArgs::new(
        "/bin/true",
        vec![b"\xff\xfeok".to_vec(), b"tab\there".to_vec()],
    );
    assert!(exited_ok(exec_in(&cg, &odd_arg)));

    // The last exec marks the end of the sequence.
    let raw = agent.raw_lines_until(Duration::from_secs(20), |l| l.contains("tab\\there"));
    assert!(agent.alive(), "the agent exited");
    let lines: Vec<serde_json::Value> = raw
        .iter()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
        })
        .collect();

    let execs = |first: &str| {
        record_of(&lines, |v| v["kind"] == "exec" && v["argv"][1] == first)
            .unwrap_or_else(|| panic!("no exec record with argv[1] = {first:.40}"))
            .clone()
    };
    let e = execs("arg-0000");
    assert_eq!(e["argv_truncated"], true, "2000 args: not flagged");
    let argv: Vec<&str> = e["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|a| a.as_str().expect("str"))
        .collect();
    assert!(
        argv.len() < 2001 && argv.len() > 100,
        "{} args kept",
        argv.len()
    );
    assert_eq!(argv[0], "/bin/true");
    for (i, a) in argv[1..argv.len() - 1].iter().enumerate() {
        assert_eq!(*a, format!("arg-{i:04}"), "argument {i} altered");
    }
    let kept: usize = argv.iter().map(|a| a.len() + 1).sum();
    assert!(kept <= 4096, "{kept} bytes of argv kept (bound: 4096)");

    let big_rec = record_of(&lines, |v| {
        v["kind"] == "exec" && v["argv"][1].as_str().is_some_and(|a| a.starts_with("xxxx"))
    })
    .expect("exec record of the 100 KiB argument");
    assert_eq!(big_rec["argv_truncated"], true);
    let a1 = big_rec["argv"][1].as_str().expect("argv[1]");
    assert!(
        a1.len() < 4096 && a1.bytes().all(|b| b == b'x'),
        "{} bytes",
        a1.len()
    );

    let open_of = |want: &str| {
        record_of(&lines, |v| {
            v["kind"] == "open" && v["path"]["text"].as_str().is_some_and(|t| t == want)
        })
        .unwrap_or_else(|| panic!("no open record for the {}-byte path", want.len()))
        .clone()
    };
    let o = open_of(p4094.to_str().expect("ascii"));
    assert!(
        o["path"].get("truncated").is_none(),
        "4094 bytes: flagged: {}",
        o["path"]
    );
    assert!(o["ret"].as_i64().is_some_and(|r| r >= 0));
    // 4095 bytes fill the 4096-byte buffer with the NUL: complete, and flagged because the
    // kernel's copy cannot tell it from a longer string.
    let o = open_of(p4095.to_str().expect("ascii"));
    assert_eq!(o["path"]["truncated"], true, "4095 bytes: not flagged");
    assert!(o["ret"].as_i64().is_some_and(|r| r >= 0));
    let o = open_of(&p5000[..4095]);
    assert_eq!(o["path"]["truncated"], true, "5000 bytes: not flagged");
    assert_eq!(o["ret"], -i64::from(libc::ENAMETOOLONG));

    let odd_text = format!("{}/name-\u{fffd}\u{fffd}-\n\u{1b}-end", odd_dir.display());
    let _ = open_of(&odd_text);
    let odd_line = raw
        .iter()
        .find(|l| l.contains("name-\u{fffd}\u{fffd}"))
        .expect("line of the non-UTF-8 open");
    assert!(
        odd_line.contains("-\\n\\u001b-end"),
        "control bytes not escaped as \\n and \\u001b: {odd_line}"
    );
    let e = execs("\u{fffd}\u{fffd}ok");
    assert_eq!(e["argv"][2], "tab\there");
    assert!(e.get("argv_truncated").is_none_or(|t| t == false));
    let (_, stderr) = agent.stop_with_stderr();
    assert!(
        stderr.iter().all(|l| !l.contains("panicked")),
        "the agent panicked: {stderr:?}"
    );
}

fn vm_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("agent status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// A pipe whose write end the parent closes to release every child blocked on its read end.
struct Gate {
    read: i32,
    write: i32,
}

impl Gate {
    fn new() -> Gate {
        let mut fds = [0i32; 2];
        // SAFETY: pipe2 fills the two descriptors.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        Gate {
            read: fds[0],
            write: fds[1],
        }
    }
}

/// Dropping the gate releases the children (so a failing test leaves no blocked process).
impl Drop for Gate {
    fn drop(&mut self) {
        // SAFETY: closing our own descriptors, once.
        unsafe {
            libc::close(self.write);
            libc::close(self.read);
        }
    }
}

const CGROUPS: usize = 10_000;
const BATCH: usize = 100;
/// One cgroup in this many gets a process (the others are only created and removed): keeps the
/// test near half a minute on a loaded two-core CI machine.
const WITH_PROCESS_EVERY: usize = 2;

/// 10,000 short-lived containers' worth of cgroups (named as containerd names them), every
/// other one with a process that reads /etc/shadow (an alert: the agent resolves the cgroup
/// while the process lives) and exits: the agent keeps up, its memory stays bounded, and its
/// cgroup, container and process tables come back to their size before.
#[test]
fn ten_thousand_short_lived_cgroups_do_not_leak() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let started = Instant::now();
    let s = Scratch::new("cgroups");
    let parent = TestCgroup::new("fault-many");
    let mut agent = Agent::run(&["--metrics-addr", &s.metrics, "--no-audit"]);
    // Warm up, then the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let rss_before = vm_rss_kib(agent.pid());
    let cgroups_before = s.gauge("guard_tracked_cgroups");
    let procs_before = s.gauge("guard_tracked_processes");
    let containers_before = s.gauge("guard_tracked_containers");
    let mut containers_peak = 0f64;
    let shadow = CString::new("/etc/shadow").expect("cstring");
    let mut peak = 0f64;
    let mut alerts = 0usize;
    for b in 0..CGROUPS / BATCH {
        let cgs: Vec<TestCgroup> = (0..BATCH)
            .map(|i| {
                // Named as containerd names a Kubernetes container's cgroup (systemd driver):
                // the agent takes each for a container the Docker daemon does not know.
                let n = (u128::from(std::process::id()) << 64) | (b * BATCH + i) as u128;
                let path = parent.path.join(format!("cri-containerd-{n:064x}.scope"));
                std::fs::create_dir(&path).expect("child cgroup");
                TestCgroup { path }
            })
            .collect();
        // After `cgs`, so that on a panic it is dropped (children released) before them.
        let gate = Gate::new();
        let (r, w) = (gate.read, gate.write);
        let pids: Vec<u32> = cgs
            .iter()
            .step_by(WITH_PROCESS_EVERY)
            .map(|cg| {
                fork_in_cgroup(cg, || {
                    let mut byte = 0u8;
                    // SAFETY: raw syscalls on buffers built before the fork.
                    unsafe {
                        libc::close(w);
                        let fd = libc::open(shadow.as_ptr(), libc::O_RDONLY);
                        if fd >= 0 {
                            libc::close(fd);
                        }
                        libc::read(r, (&mut byte as *mut u8).cast(), 1);
                    }
                    0
                })
            })
            .collect();
        // Every process's alert before they exit: each cgroup was seen alive.
        let want = (b + 1) * BATCH / WITH_PROCESS_EVERY;
        let deadline = Instant::now() + Duration::from_secs(10);
        while alerts < want && Instant::now() < deadline {
            if agent
                .wait_for(Duration::from_millis(200), is_shadow_alert)
                .is_some()
            {
                alerts += 1;
            }
        }
        // While this batch lives (the gauges lag by up to a second and removed cgroups are
        // pruned every 5 s: the peak over all batches shows what was tracked).
        peak = peak.max(s.gauge("guard_tracked_cgroups"));
        containers_peak = containers_peak.max(s.gauge("guard_tracked_containers"));
        drop(gate);
        for pid in pids {
            assert!(exited_ok(wait_status(pid)), "cgroup child failed");
        }
        drop(cgs);
        if b % 20 == 19 {
            let (status, _) = http_get(&s.metrics, "/healthz").expect("/healthz");
            assert_eq!(status, "HTTP/1.1 200 OK");
        }
    }
    let created = Instant::now();
    eprintln!(
        "fault: {CGROUPS} cgroups, a process in 1 of {WITH_PROCESS_EVERY}, in {:?}; {alerts} alerts; tracked cgroups peak {peak}",
        created - started
    );
    assert_eq!(
        alerts,
        CGROUPS / WITH_PROCESS_EVERY,
        "the agent did not alert for every cgroup's process"
    );
    assert!(
        peak >= cgroups_before + (BATCH / WITH_PROCESS_EVERY) as f64,
        "the cgroups were never tracked (peak {peak}, before {cgroups_before})"
    );
    assert!(
        containers_peak >= containers_before + (BATCH / WITH_PROCESS_EVERY) as f64,
        "the cgroups were never taken for containers (peak {containers_peak}, before {containers_before})"
    );
    // Removed cgroups, their containers and exited processes are forgotten.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (cgroups, procs, containers) = loop {
        let c = s.gauge("guard_tracked_cgroups");
        let p = s.gauge("guard_tracked_processes");
        let k = s.gauge("guard_tracked_containers");
        if (c <= cgroups_before + 50.0
            && p <= procs_before + 200.0
            && k <= containers_before + 50.0)
            || Instant::now() > deadline
        {
            break (c, p, k);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let rss_after = vm_rss_kib(agent.pid());
    eprintln!(
        "fault: tracked cgroups {cgroups_before} -> {cgroups} (peak {peak}), containers {containers_before} -> {containers} (peak {containers_peak}), processes {procs_before} -> {procs}, VmRSS {rss_before} -> {rss_after} KiB"
    );
    assert!(agent.alive(), "the agent exited");
    assert!(
        cgroups <= cgroups_before + 50.0,
        "removed cgroups still tracked: {cgroups_before} -> {cgroups}"
    );
    assert!(
        containers <= containers_before + 50.0,
        "containers of removed cgroups still tracked: {containers_before} -> {containers}"
    );
    assert!(
        procs <= procs_before + 200.0,
        "exited processes still tracked: {procs_before} -> {procs}"
    );
    assert!(
        rss_after <= rss_before + 32 * 1024,
        "VmRSS grew from {rss_before} to {rss_after} KiB"
    );
    agent.stop();
}

/// A non-UTF-8 (and control-character) executable name through the whole agent: the rule
/// still fires, and the alert line is valid JSON with U+FFFD and escaped control bytes, in
/// `output` and `output_fields` alike.
#[test]
fn non_utf8_names_in_alerts_are_valid_json() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let s = Scratch::new("alert-utf8");
    let cg = TestCgroup::new("fault-utf8");
    // Under /tmp: "Execution from temporary directory".
    let exe = s.dir.join(OsStr::from_bytes(b"true-\xff\xfe-\x1b"));
    std::fs::copy("/bin/true", &exe).expect("copy /bin/true");
    let agent = Agent::run(&[
        "--only-cgroup",
        cg.path.to_str().expect("utf8"),
        "--metrics-addr",
        &s.metrics,
        "--audit-dir",
        &s.path("audit"),
    ]);
    // A non-UTF-8 path: built by hand (ExecArgs takes a str).
    let path = CString::new(exe.as_os_str().as_bytes()).expect("no NUL");
    let argv = [path.as_ptr(), std::ptr::null()];
    let pid = fork_in_cgroup(&cg, || {
        // SAFETY: pointers into a CString that outlives the call; the array ends with NULL.
        unsafe {
            libc::execv(path.as_ptr(), argv.as_ptr());
            *libc::__errno_location()
        }
    });
    assert!(exited_ok(wait_status(pid)), "the copied binary did not run");
    let lines = agent.raw_lines_until(Duration::from_secs(15), |l| {
        l.contains("Execution from temporary directory")
    });
    let line = lines
        .iter()
        .find(|l| l.contains("Execution from temporary directory"))
        .unwrap_or_else(|| panic!("no alert for the non-UTF-8 executable: {lines:?}"));
    let v: serde_json::Value = serde_json::from_str(line).expect("alert line is valid JSON");
    let want = format!("{}/true-\u{fffd}\u{fffd}-\u{1b}", s.dir.display());
    assert_eq!(v["output_fields"]["proc.exepath"], want.as_str(), "{line}");
    assert!(
        v["output"].as_str().is_some_and(|o| o.contains(&want)),
        "{line}"
    );
    assert!(line.contains("\\u001b"), "control byte not escaped: {line}");
    agent.stop();
}
