//! Helpers for the response engine tests (`tests/tests/respond_*.rs`).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use guard::{
    alert::{Alert, Priority},
    audit::{AuditConfig, AuditLog},
    respond::{self, Options, Responder, ResponseSet},
};

/// An alert as the rule engine (or Falco) would produce it.
pub fn alert(rule: &str, priority: Priority, fields: serde_json::Value) -> Alert {
    Alert {
        time: guard::alert::rfc3339_ns(0),
        rule: rule.into(),
        priority,
        source: "syscall".into(),
        hostname: "test".into(),
        output: format!("{rule} (test)"),
        tags: vec!["test".into()],
        output_fields: serde_json::from_value(fields).expect("output fields"),
        guard: Default::default(),
    }
}

/// Parses response YAML (panics with the diagnostics when invalid).
pub fn responses(yaml: &str) -> ResponseSet {
    let mut set = ResponseSet::default();
    let d = respond::config::parse_str(Path::new("test.yaml"), yaml, &mut set);
    assert!(d.is_empty(), "invalid test responses: {d:?}");
    set
}

/// A fresh temporary directory (removed on drop).
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("guard-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("mkdir temp");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A responder with an audit log in `dir`.
pub fn responder_with_audit(set: ResponseSet, opts: Options, dir: &Path) -> Responder {
    let audit = AuditLog::start(AuditConfig::new(dir), 1024).expect("audit log");
    Responder::new(set, opts, Some(Arc::new(audit)))
}

/// Every audit record written so far in `dir`.
pub fn audit_records(dir: &Path) -> Vec<serde_json::Value> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<serde_json::Value>>()
        })
        .collect()
}

/// Waits until an audit record satisfies `pred`.
pub fn wait_audit(
    dir: &Path,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(r) = audit_records(dir).into_iter().find(|r| pred(r)) {
            return Some(r);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (p50, p99, max) of durations.
pub fn percentiles(v: &[Duration]) -> (Duration, Duration, Duration) {
    let mut s = v.to_vec();
    s.sort();
    let at = |q: f64| {
        let i = ((s.len() as f64 - 1.0) * q).round() as usize;
        s.get(i).copied().unwrap_or_default()
    };
    (at(0.50), at(0.99), s.last().copied().unwrap_or_default())
}

/// Start time of a process in CLOCK_BOOTTIME ns, from /proc (what the pipeline would pass).
pub fn start_boot_ns(pid: u32) -> u64 {
    let st = guard::respond::process::read_stat(pid).expect("stat");
    guard::respond::process::start_boot_ns(&st)
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    guard::respond::process::read_stat(pid).is_some_and(|s| s.state != b'Z')
}

/// Waits (bounded) for the pidfd of `pid` to turn readable: the process has exited.
pub fn pidfd_wait(fd: i32, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
    r == 1
}

/// A pidfd on `pid` (the caller closes it).
pub fn pidfd_open(pid: u32) -> i32 {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) } as i32;
    assert!(fd >= 0, "pidfd_open({pid}) failed");
    fd
}

pub fn close(fd: i32) {
    // SAFETY: closing an fd we opened.
    unsafe { libc::close(fd) };
}
