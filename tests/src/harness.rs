//! Fixtures for root, Docker and agent tests.
//!
//! A test that cannot run prints why. Under `CI=true` or `CI=1` ([`in_ci`], the one check every
//! test uses) it fails instead: privileged layers are mandatory in CI and must never pass silently.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, ChildStdout, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        mpsc::{Receiver, channel},
    },
    time::{Duration, Instant},
};

/// True when running in CI, where every privileged layer is mandatory.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Returns false (after printing why) when the test cannot run here; panics in CI instead.
pub fn can_run(ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    if in_ci() {
        panic!("required test layer unavailable in CI: {why}");
    }
    eprintln!("SKIP (not CI): {why}");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The repository root (parent of the `tests` crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Path of the `guard` binary, built on first use (cargo does not build another package's
/// binaries for this crate's tests).
pub fn guard_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("GUARD_BIN") {
            return PathBuf::from(p);
        }
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "guard", "--bin", "guard"])
            .current_dir(repo_root())
            .status()
            .expect("running cargo build for the guard binary");
        assert!(status.success(), "cargo build -p guard failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target"));
        let bin = target.join("debug").join("guard");
        assert!(bin.exists(), "guard binary not found at {}", bin.display());
        bin
    })
    .clone()
}

/// Serialises tests that load probes or start agents: they share kernel-wide attach points.
pub fn agent_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The start of a host test with Docker and an agent: root, the Docker fixture, the agent
/// lock. `None` (outside CI) when it cannot run here.
pub fn docker_and_agent() -> Option<(Docker, std::sync::MutexGuard<'static, ()>)> {
    if !can_run(
        is_root(),
        "needs root to load eBPF programs and run containers",
    ) {
        return None;
    }
    let docker = Docker::get()?;
    Some((docker, agent_lock()))
}

/// A running `guard run` or `guard record` with its stdout lines delivered through a channel.
pub struct Agent {
    child: Child,
    lines: Receiver<String>,
    /// Every stderr line, complete once the stderr thread has ended.
    stderr: std::sync::Arc<Mutex<Vec<String>>>,
    stderr_thread: Option<std::thread::JoinHandle<()>>,
    /// Set once the child has been reaped: its pid may be reused, so never signal it again.
    reaped: bool,
}

impl Agent {
    /// Starts `guard record --raw ARGS` (decoded kernel records on stdout) and waits for its
    /// `guard: ready` line on stderr.
    pub fn start(args: &[&str]) -> Agent {
        let mut full = vec!["record", "--raw"];
        full.extend_from_slice(args);
        Agent::start_cmd(&full)
    }

    /// Starts `guard run` with JSON alerts, no responses, the repository's rules and `extra`
    /// options, and waits for `guard: ready`.
    pub fn run(extra: &[&str]) -> Agent {
        let rules = repo_root().join("policies");
        let mut args = vec![
            "run",
            "--format",
            "json",
            "--no-responses",
            "--rules",
            rules.to_str().expect("utf8"),
        ];
        args.extend_from_slice(extra);
        Agent::start_cmd(&args)
    }

    /// Starts `guard run` with JSON alerts, no responses, no self-protection and only the
    /// rules in `rules`, and waits for `guard: ready`.
    pub fn run_rules(rules: &Path) -> Agent {
        Agent::start_cmd(&[
            "run",
            "--format",
            "json",
            "--no-responses",
            "--no-self-protect",
            "--rules",
            rules.to_str().expect("utf8 rules path"),
        ])
    }

    /// Starts `guard ARGS` (a subcommand and its options) and waits for `guard: ready`.
    pub fn start_cmd(args: &[&str]) -> Agent {
        let mut cmd = Command::new(guard_bin());
        cmd.args(args);
        Agent::spawn(cmd)
    }

    /// Starts `cmd` (which runs `guard run` or `record`, possibly through a wrapper that
    /// execs it, keeping the pid) and waits for `guard: ready`.
    pub fn spawn(mut cmd: Command) -> Agent {
        // The policy tests written for the filename-matching `sigkill-fallback` backend keep
        // it on this host (where `auto` picks fanotify); host_fanotify passes its flag.
        if std::env::var_os("GUARD_POLICY_BACKEND").is_none() {
            cmd.env("GUARD_POLICY_BACKEND", "sigkill-fallback");
        }
        let mut child = cmd
            .env("GUARD_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning guard run");
        let stderr = child.stderr.take().expect("stderr piped");
        let (ready_tx, ready_rx) = channel();
        let stderr_lines = std::sync::Arc::new(Mutex::new(Vec::new()));
        let keep = stderr_lines.clone();
        let stderr_thread = std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[guard] {line}");
                if let Ok(mut v) = keep.lock() {
                    v.push(line.clone());
                }
                if line.contains("guard: ready")
                    && let Some(tx) = ready_tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        let stdout: ChildStdout = child.stdout.take().expect("stdout piped");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        if ready_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            let _ = child.kill();
            panic!("guard run did not become ready within 30 s");
        }
        Agent {
            child,
            lines,
            stderr: stderr_lines,
            stderr_thread: Some(stderr_thread),
            reaped: false,
        }
    }

    /// The agent's process id (valid until it is stopped).
    pub fn pid(&self) -> u32 {
        assert!(!self.reaped, "the agent was reaped");
        self.child.id()
    }

    /// Waits for a stdout JSON line satisfying `pred`.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&serde_json::Value) -> bool,
    ) -> Option<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let line = self.lines.recv_timeout(left).ok()?;
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                && pred(&v)
            {
                return Some(v);
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: signalling our own, not yet reaped, child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.reaped = true;
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Docker fixture: dockerd (started by `integration/docker.sh up` or already running) and
/// the locally imported busybox image.
pub struct Docker;

pub const TEST_IMAGE: &str = "guard-test-busybox:latest";

impl Docker {
    /// Brings the fixture up once per test process. `None` (outside CI) when Docker is unusable.
    pub fn get() -> Option<Docker> {
        static UP: OnceLock<Result<(), String>> = OnceLock::new();
        let up = UP.get_or_init(|| {
            if !is_root() {
                return Err("Docker tests need root".into());
            }
            let out = Command::new("bash")
                .arg(repo_root().join("integration/docker.sh"))
                .arg("up")
                .output()
                .map_err(|e| format!("running integration/docker.sh: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "integration/docker.sh up failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        });
        match up {
            Ok(()) => Some(Docker),
            Err(why) => {
                can_run(false, why);
                None
            }
        }
    }

    /// `docker ARGS`, returning trimmed stdout; panics with stderr on failure.
    pub fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("docker")
            .args(args)
            .output()
            .expect("running docker");
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs a detached test container (labelled for cleanup); removed on drop.
    pub fn run(&self, extra: &[&str], cmd: &[&str]) -> Container {
        let mut args = vec!["run", "-d", "--label", "guard-test=1"];
        if !extra.iter().any(|a| a.starts_with("--network")) {
            args.push("--network=none");
        }
        args.extend_from_slice(extra);
        args.push(TEST_IMAGE);
        args.extend_from_slice(cmd);
        let id = self.cmd(&args);
        Container { id }
    }
}

pub struct Container {
    pub id: String,
}

impl Container {
    pub fn pid(&self) -> u32 {
        Docker
            .cmd(&["inspect", "-f", "{{.State.Pid}}", &self.id])
            .parse()
            .expect("container pid")
    }

    pub fn name(&self) -> String {
        Docker
            .cmd(&["inspect", "-f", "{{.Name}}", &self.id])
            .trim_start_matches('/')
            .to_owned()
    }

    /// `docker exec` in the container; returns (exit success, stdout).
    pub fn exec(&self, cmd: &[&str]) -> (bool, String) {
        let out = Command::new("docker")
            .arg("exec")
            .arg(&self.id)
            .args(cmd)
            .output()
            .expect("docker exec");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Container {
    /// `docker exec C sh -c SCRIPT`: exit code, stdout, stderr.
    pub fn sh(&self, script: &str) -> (Option<i32>, String, String) {
        let out = Command::new("docker")
            .args(["exec", &self.id, "sh", "-c", script])
            .output()
            .expect("docker exec");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Compiles a freestanding C program (`-nostdlib -static`, its own `_start`) into `dir/name`:
/// a static binary that runs in the busybox test image.
pub fn static_c(dir: &Path, name: &str, src: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    let bin = dir.join(name);
    std::fs::write(&c, src).expect("write the C source");
    let out = Command::new("cc")
        .args(["-nostdlib", "-static", "-O1", "-fno-builtin", "-o"])
        .arg(&bin)
        .arg(&c)
        .output()
        .expect("cc (the Rust toolchain's linker)");
    assert!(
        out.status.success(),
        "cc {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", &self.id]).output();
    }
}

/// Path of the cgroup v2 directory of `pid` (cgroup2 may be mounted at /sys/fs/cgroup or, in
/// hybrid mode, elsewhere such as /sys/fs/cgroup/unified).
pub fn cgroup_v2_dir(pid: u32) -> PathBuf {
    let mount = cgroup2_mount();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("/proc/pid/cgroup");
    let rel = cg
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .expect("no cgroup v2 line");
    mount.join(rel.trim_start_matches('/'))
}

/// The cgroup2 mount point (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid hosts).
pub fn cgroup2_mount() -> PathBuf {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    guard::state::procfs::parse_cgroup2_mount(&mountinfo)
        .expect("no cgroup2 mount")
        .mount_point
}

/// A cgroup v2 directory made for one test; removed on drop (after its tasks have exited).
pub struct TestCgroup {
    pub path: PathBuf,
}

impl TestCgroup {
    pub fn new(tag: &str) -> TestCgroup {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = cgroup2_mount().join(format!("guard-test-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir(&path).expect("creating test cgroup");
        TestCgroup { path }
    }

    pub fn id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&self.path).expect("stat cgroup").ino()
    }

    /// `cgroup.procs` of this cgroup as a C string, for use after fork.
    pub fn procs_cstring(&self) -> std::ffi::CString {
        std::ffi::CString::new(
            self.path
                .join("cgroup.procs")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .expect("no NUL in path")
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Forks a child that moves itself into `cgroup` and runs `body`, then `_exit(status)`.
///
/// `body` runs after fork in a multi-threaded process: it must only make raw syscalls on
/// data prepared before the fork (no allocation, no locks).
pub fn fork_in_cgroup(cgroup: &TestCgroup, body: impl FnOnce() -> i32) -> u32 {
    let procs = cgroup.procs_cstring();
    // SAFETY: the child only makes raw syscalls on pre-built data and ends with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: raw syscalls on pre-built buffers.
        unsafe {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::write(fd, b"0\n".as_ptr() as *const _, 2) != 2 {
                libc::_exit(120);
            }
            libc::close(fd);
        }
        let status = body();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(status) };
    }
    pid as u32
}

/// Waits for a child; returns its exit status.
pub fn wait_child(pid: u32) -> i32 {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert_eq!(r, pid as i32, "waitpid");
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

impl Agent {
    /// Collects stdout JSON lines until `done` matches one (included) or the timeout.
    pub fn collect_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                let stop = done(&v);
                out.push(v);
                if stop {
                    break;
                }
            }
        }
        out
    }

    /// Sends `sig` to the (not yet reaped) agent.
    pub fn signal(&self, sig: i32) {
        assert!(!self.reaped);
        // SAFETY: signalling our own, not yet reaped, child by its pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Stops the agent with SIGTERM and returns every stdout line it printed until it exited.
    /// Like [`Agent::stop`], also returning every line the agent wrote on stderr.
    pub fn stop_with_stderr(mut self) -> (Vec<serde_json::Value>, Vec<String>) {
        let thread = self.stderr_thread.take();
        let stderr = self.stderr.clone();
        let out = self.stop();
        if let Some(t) = thread {
            let _ = t.join();
        }
        let lines = stderr.lock().map(|v| v.clone()).unwrap_or_default();
        (out, lines)
    }

    pub fn stop(mut self) -> Vec<serde_json::Value> {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        self.reaped = true;
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            if let Ok(v) = serde_json::from_str(&line) {
                out.push(v);
            }
        }
        out
    }
}

/// The (policy id, kernel dev, inode) -> bits entries of the `POLICY_INODES` map pinned under `pins`.
pub fn pinned_inode_rules(pins: &str) -> Vec<(u32, u64, u64, u32)> {
    let md = aya::maps::MapData::from_pin(Path::new(pins).join(guard_ebpf::names::POLICY_INODES))
        .unwrap_or_else(|e| panic!("pinned map POLICY_INODES: {e}"));
    let m: aya::maps::HashMap<_, guard_ebpf::InodeRuleKey, u32> =
        aya::maps::HashMap::try_from(aya::maps::Map::HashMap(md))
            .expect("POLICY_INODES is a hash map");
    m.iter()
        .filter_map(|kv| kv.ok())
        .map(|(k, v)| (k.policy_id, k.dev, k.ino, v))
        .collect()
}

/// A file's identity inside a container (symlinks followed there), as guard's kernel
/// programs key it: (kernel dev encoding, inode).
pub fn kernel_file_id_in(c: &Container, path: &str) -> (u64, u64) {
    let (ok, out) = c.exec(&["/bin/stat", "-L", "-c", "%d %i", path]);
    assert!(ok, "stat {path} in the container: {out}");
    let mut it = out
        .split_whitespace()
        .map(|w| w.parse::<u64>().expect("stat number"));
    let (Some(dev), Some(ino)) = (it.next(), it.next()) else {
        panic!("stat output {out:?}");
    };
    (guard::policy::resolve::kernel_dev(dev), ino)
}

/// A scratch directory for one test: policy file, pins, audit log, bind mounts.
pub struct Scratch {
    pub dir: PathBuf,
    pub pins: String,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("guard-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("out")).expect("tmp dir");
        Scratch {
            dir,
            pins: format!("/sys/fs/bpf/guard-test-{tag}-{}", std::process::id()),
        }
    }

    pub fn policy(&self, yaml: &str) -> String {
        let p = self.dir.join("policy.yaml");
        std::fs::write(&p, yaml).expect("write policy");
        p.display().to_string()
    }

    pub fn audit_dir(&self) -> String {
        self.dir.join("audit").display().to_string()
    }

    /// `guard run` with the repository's rules, this policy file, our pins and audit log.
    pub fn agent(&self, policy: &str, extra: &[&str]) -> Agent {
        let audit = self.audit_dir();
        let mut args = vec![
            "--policy",
            policy,
            "--pin-dir",
            &self.pins,
            "--audit-dir",
            &audit,
        ];
        args.extend_from_slice(extra);
        Agent::run(&args)
    }

    /// Audit records of kind `decision`.
    pub fn decisions(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.audit_dir())
            .expect("audit dir")
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("audit-") && name.ends_with(".jsonl")) {
                continue;
            }
            for line in std::fs::read_to_string(e.path())
                .expect("audit file")
                .lines()
            {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line)
                    && v["kind"] == "decision"
                {
                    out.push(v);
                }
            }
        }
        out
    }

    pub fn cleanup(&self) {
        let st = std::process::Command::new(guard_bin())
            .args(["run", "--cleanup", "--pin-dir", &self.pins])
            .status()
            .expect("guard run --cleanup");
        assert!(st.success(), "guard run --cleanup failed");
        assert!(!Path::new(&self.pins).exists(), "pins left behind");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::process::Command::new(guard_bin())
            .args(["run", "--cleanup", "--pin-dir", &self.pins])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Agent {
    /// Number of stderr lines so far (a starting point for [`Agent::wait_stderr`]).
    pub fn stderr_len(&self) -> usize {
        self.stderr.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Waits for a stderr line, from line index `from` on, satisfying `pred`; returns its
    /// index and text.
    pub fn wait_stderr(
        &self,
        from: usize,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Option<(usize, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(v) = self.stderr.lock()
                && let Some((i, l)) = v.iter().enumerate().skip(from).find(|(_, l)| pred(l))
            {
                return Some((i, l.clone()));
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Agent {
    /// Whether the agent process is still running.
    pub fn alive(&mut self) -> bool {
        !self.reaped && matches!(self.child.try_wait(), Ok(None))
    }

    /// The stderr lines the agent has written so far.
    pub fn stderr_so_far(&self) -> Vec<String> {
        self.stderr.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Raw stdout lines until `done` matches one (included) or the timeout: for checking that
    /// every line is valid JSON.
    pub fn raw_lines_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&str) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = self.lines.recv_timeout(left) else {
                break;
            };
            let stop = done(&line);
            out.push(line);
            if stop {
                break;
            }
        }
        out
    }
}

/// A free loopback `ADDR:PORT` for `--metrics-addr`.
pub fn free_metrics_addr() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    format!("127.0.0.1:{port}")
}

/// `GET path` on the agent's metrics address: (status line, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(String, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: guard\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let (head, body) = out
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    Ok((
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    ))
}

/// One sample of the text exposition (`name` or `name{labels}`), if present.
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.rsplit_once(' ').filter(|(k, _)| *k == series))
        .and_then(|(_, v)| v.parse().ok())
}

/// `guard_tracked_containers` once it is at most `before` (removals arrive with the runtime's
/// events or poll, cgroups at the next prune), or its value after 15 s.
pub fn tracked_containers_settled(metrics_addr: &str, before: f64) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (_, body) = http_get(metrics_addr, "/metrics").expect("/metrics");
        let after = metric(&body, "guard_tracked_containers").expect("tracked containers");
        if after <= before || std::time::Instant::now() > deadline {
            return after;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How a child ended: `Ok(code)` on exit, `Err(signal)` when killed.
pub fn wait_status(pid: u32) -> Result<i32, i32> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    assert_eq!(r, pid as i32, "waitpid");
    if libc::WIFSIGNALED(status) {
        Err(libc::WTERMSIG(status))
    } else {
        Ok(libc::WEXITSTATUS(status))
    }
}

/// Forks a child into `cg` that execs `argv`; returns how it ended.
pub fn exec_in(cg: &TestCgroup, argv: &[std::ffi::CString]) -> Result<i32, i32> {
    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    let pid = fork_in_cgroup(cg, || {
        // SAFETY: pointers into CStrings built before the fork.
        unsafe { libc::execve(ptrs[0], ptrs.as_ptr(), env.as_ptr()) };
        127
    });
    wait_status(pid)
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_LSM: u32 = 29;
const BPF_LSM_MAC: u32 = 27;

/// An independent probe of BPF LSM (what `guard doctor` and self-protection are checked
/// against): loads `r0 = 0; exit` as an LSM program for `bprm_check_security`; the errno on refusal.
pub fn raw_lsm_load() -> Result<(), i32> {
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let btf_id = btf
        .id_by_type_name_kind("bpf_lsm_bprm_check_security", aya_obj::btf::BtfKind::Func)
        .expect("bpf_lsm_bprm_check_security in BTF");
    let insns: [u64; 2] = [0x0000_0000_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    // union bpf_attr, BPF_PROG_LOAD part (offsets from include/uapi/linux/bpf.h).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_LSM.to_ne_bytes());
    attr[4..8].copy_from_slice(&2u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[68..72].copy_from_slice(&BPF_LSM_MAC.to_ne_bytes());
    attr[108..112].copy_from_slice(&btf_id.to_ne_bytes());
    // SAFETY: attr is a valid, zero-padded bpf_attr whose pointers outlive the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            attr.as_ptr(),
            attr.len() as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: fd is the program descriptor just returned to us.
    unsafe { libc::close(fd as i32) };
    Ok(())
}
