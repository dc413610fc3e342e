//! `kill_process` by pidfd, so that a reused PID is never hit.
//!
//! 1. When the alert is handled, [`ProcessHandle::open`] takes a pidfd for the PID at once. A
//!    pidfd names one process for its whole life: once it is open, a signal through it can
//!    only reach that process (or fail with ESRCH when it is gone), never a newer process
//!    that got the same number.
//! 2. The PID may already have been reused between the event and the `pidfd_open`. To catch
//!    that, the handle reads the start time from `/proc/PID/stat` and compares it with the
//!    event's process start time when the caller knows it; then it checks through the pidfd
//!    that the process is still alive, which proves the stat it read was that process's
//!    (a PID is not reused while its process exists, zombies included).
//! 3. The rails refuse PID 1, kernel threads and guard itself.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use tokio::io::unix::AsyncFd;

/// `PF_KTHREAD` in `/proc/PID/stat` field 9.
const PF_KTHREAD: u64 = 0x0020_0000;
/// How far the event's start time and /proc's may differ for the same process: /proc counts
/// in clock ticks, and the fork event is stamped a little after the kernel's start time.
pub const START_TOLERANCE: Duration = Duration::from_millis(50);
/// Most descendants `tree: true` kills.
pub const MAX_TREE: usize = 4096;

/// Fields of `/proc/PID/stat` the rails and identity checks use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: u8,
    pub ppid: u32,
    pub flags: u64,
    pub start_ticks: u64,
}

/// Parses `/proc/PID/stat`, finding the fields after the LAST `)` (comm may contain any byte).
pub fn parse_stat(raw: &[u8]) -> Option<ProcStat> {
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    let f: Vec<&str> = rest.split_ascii_whitespace().take(20).collect();
    Some(ProcStat {
        state: *f.first()?.as_bytes().first()?,
        ppid: f.get(1)?.parse().ok()?,
        flags: f.get(6)?.parse().ok()?,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

pub fn read_stat(pid: u32) -> Option<ProcStat> {
    let raw =
        crate::state::procfs::read_capped(Path::new(&format!("/proc/{pid}/stat")), 4096).ok()?;
    parse_stat(&raw)
}

pub fn clock_ticks() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|t| u64::try_from(t).ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// `CLOCK_BOOTTIME` now, in ns (the clock of event `boot_ns` and /proc start times).
pub fn boot_ns_now() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000) + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// A process's start time in boot ns, from its stat.
pub fn start_boot_ns(stat: &ProcStat) -> u64 {
    (u128::from(stat.start_ticks) * 1_000_000_000 / u128::from(clock_ticks()))
        .min(u128::from(u64::MAX)) as u64
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandleError {
    #[error("process {0} is gone")]
    Gone(u32),
    #[error(
        "pid {pid} now belongs to another process (started at {found_ns} ns after boot, the alert's process at {expected_ns}): refusing to signal a reused PID"
    )]
    Reused {
        pid: u32,
        expected_ns: u64,
        found_ns: u64,
    },
    #[error("pidfd_open({0}): {1}")]
    Open(u32, String),
}

/// A pidfd on one process, plus what the rails need to know about it.
#[derive(Debug)]
pub struct ProcessHandle {
    pub pid: u32,
    fd: OwnedFd,
    pub stat: ProcStat,
    /// `/proc/PID/exe` could be read (kernel threads have none).
    pub has_exe: bool,
    pub exe: Option<String>,
}

fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd to us, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn pidfd_signal(fd: &OwnedFd, sig: i32) -> io::Result<()> {
    // SAFETY: valid pidfd; null siginfo means "as kill(2)".
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ProcessHandle {
    /// Opens a pidfd for `pid` and checks it is the alert's process when `expected_start_ns`
    /// (CLOCK_BOOTTIME ns of its start, as in events) is known.
    pub fn open(pid: u32, expected_start_ns: Option<u64>) -> Result<Self, HandleError> {
        if pid == 0 {
            return Err(HandleError::Gone(pid));
        }
        let fd = pidfd_open(pid).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => HandleError::Gone(pid),
            _ => HandleError::Open(pid, e.to_string()),
        })?;
        let stat = read_stat(pid).ok_or(HandleError::Gone(pid))?;
        let (exe, has_exe) = match std::fs::read_link(format!("/proc/{pid}/exe")) {
            Ok(p) => (Some(p.to_string_lossy().into_owned()), true),
            // Denied, not absent: under `guard run`'s Landlock domain the kernel refuses
            // ptrace-mode access (the exe link) to processes outside it (docs/hardening.md).
            // Kernel threads are still told apart by their stat flags.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM)) => (None, true),
            Err(_) => (None, false),
        };
        // Alive now means the stat above was this pidfd's process.
        pidfd_signal(&fd, 0).map_err(|_| HandleError::Gone(pid))?;
        if let Some(expected) = expected_start_ns {
            let found = start_boot_ns(&stat);
            if found.abs_diff(expected) > START_TOLERANCE.as_nanos() as u64 {
                return Err(HandleError::Reused {
                    pid,
                    expected_ns: expected,
                    found_ns: found,
                });
            }
        }
        Ok(Self {
            pid,
            fd,
            stat,
            has_exe,
            exe,
        })
    }

    /// Why guard must not signal this process, if it must not.
    pub fn rail(&self) -> Option<String> {
        process_rail(self.pid, &self.stat, self.has_exe)
    }

    /// SIGKILL through the pidfd.
    pub fn kill(&self) -> io::Result<()> {
        pidfd_signal(&self.fd, libc::SIGKILL)
    }

    /// Any signal through the pidfd.
    pub fn signal(&self, sig: i32) -> io::Result<()> {
        pidfd_signal(&self.fd, sig)
    }

    /// Whether the process has exited (its pidfd turns readable), waiting at most `timeout`
    /// (zero: a check without waiting). Blocking; for the pipeline's bounded waits.
    pub fn exited_within(&self, timeout: Duration) -> bool {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let wait = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut p, 1, wait) };
            if r > 0 {
                return p.revents & libc::POLLIN != 0;
            }
            if r == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return false;
            }
        }
    }

    pub fn is_alive(&self) -> bool {
        pidfd_signal(&self.fd, 0).is_ok()
    }

    /// Waits until the process has exited (the pidfd turns readable), at most `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> bool {
        let Ok(dup) = self.fd.try_clone() else {
            return false;
        };
        // SAFETY: the AsyncFd owns the duplicated pidfd and deregisters it before closing it.
        let Ok(afd) =
            (unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE) })
        else {
            return false;
        };
        tokio::time::timeout(timeout, afd.readable())
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// SIGKILLs `h`'s process (with `tree`, every descendant first) and waits for its exit;
/// returns how many descendants were killed.
///
/// Tree: SIGSTOP the root and every descendant found (a stopped process cannot fork), scan
/// again for what was forked meanwhile, then SIGKILL them all. Each descendant goes through
/// its own pidfd and the rails.
pub async fn kill(h: &ProcessHandle, tree: bool) -> Result<usize, String> {
    let pid = h.pid;
    let mut found_tree: Vec<ProcessHandle> = Vec::new();
    if tree {
        let _ = h.signal(libc::SIGSTOP);
        for _round in 0..3 {
            let mut found = 0;
            for d in descendants(pid) {
                if found_tree.iter().any(|t| t.pid == d) {
                    continue;
                }
                if let Ok(dh) = ProcessHandle::open(d, None)
                    && dh.rail().is_none()
                {
                    let _ = dh.signal(libc::SIGSTOP);
                    found_tree.push(dh);
                    found += 1;
                }
            }
            if found == 0 {
                break;
            }
        }
        for dh in &found_tree {
            let _ = dh.kill();
        }
    }
    if let Err(e) = h.kill() {
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Err(format!("process {pid} exited before the kill"));
        }
        return Err(format!("pidfd_send_signal: {e}"));
    }
    if !h.wait_exit(Duration::from_secs(2)).await {
        return Err(format!("process {pid} still alive 2 s after SIGKILL"));
    }
    Ok(found_tree.len())
}

/// The rails for one process: never PID 1, never a kernel thread, never guard itself.
pub fn process_rail(pid: u32, stat: &ProcStat, has_exe: bool) -> Option<String> {
    if pid <= 1 {
        return Some(format!("pid {pid} is the host's init"));
    }
    if pid == std::process::id() {
        return Some("the process is guard itself".into());
    }
    if pid == 2 || stat.ppid == 2 || stat.flags & PF_KTHREAD != 0 {
        return Some(format!("pid {pid} is a kernel thread"));
    }
    if !has_exe {
        return Some(format!(
            "pid {pid} has no executable (kernel thread, or already exiting)"
        ));
    }
    None
}

/// Descendants of `root` (children first found by a /proc scan), breadth-first, bounded.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(st) = read_stat(pid) {
            children.entry(st.ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut q = VecDeque::from([root]);
    while let Some(p) = q.pop_front() {
        for &c in children.get(&p).map(Vec::as_slice).unwrap_or(&[]) {
            if out.len() >= MAX_TREE {
                return out;
            }
            if seen.insert(c) {
                out.push(c);
                q.push_back(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let raw = b"42 (a) b (c)) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 12345 0 0";
        let s = parse_stat(raw).expect("stat");
        assert_eq!(
            (s.state, s.ppid, s.flags, s.start_ticks),
            (b'S', 7, 4194560, 12345)
        );
        assert!(parse_stat(b"garbage").is_none());
        assert!(parse_stat(b"1 (x) S").is_none());
    }

    #[test]
    fn rails() {
        let st = ProcStat {
            state: b'S',
            ppid: 100,
            flags: 0,
            start_ticks: 1,
        };
        assert!(process_rail(1, &st, true).is_some());
        assert!(process_rail(std::process::id(), &st, true).is_some());
        assert!(process_rail(500, &ProcStat { ppid: 2, ..st }, true).is_some());
        assert!(
            process_rail(
                500,
                &ProcStat {
                    flags: PF_KTHREAD,
                    ..st
                },
                true
            )
            .is_some()
        );
        assert!(process_rail(500, &st, false).is_some());
        assert!(process_rail(500, &st, true).is_none());
    }

    /// Real processes: our own process is refused; kthreadd (pid 2) is a kernel thread.
    #[test]
    fn live_rails() {
        let me = ProcessHandle::open(std::process::id(), None).expect("self");
        assert!(me.rail().expect("refused").contains("guard itself"));
        if let Ok(k) = ProcessHandle::open(2, None) {
            assert!(k.rail().is_some(), "kthreadd must be refused");
        }
    }

    #[test]
    fn start_time_mismatch_is_refused() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let h = ProcessHandle::open(pid, None).expect("open");
        let real = start_boot_ns(&h.stat);
        assert!(ProcessHandle::open(pid, Some(real)).is_ok());
        let e = ProcessHandle::open(pid, Some(real.saturating_sub(10_000_000_000)))
            .expect_err("stale identity");
        assert!(matches!(e, HandleError::Reused { .. }), "{e}");
        let _ = child.kill();
        let _ = child.wait();
    }
}
