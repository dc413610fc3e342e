//! Binding an action to the process an alert names.
//!
//! A PID in an alert is only a number: by the time the action runs it may belong to another
//! process (reuse), and a posted alert may name any PID on the host. Before a process is
//! signalled, what the alert says about it (its [`Claim`]) is checked against the live process
//! ([`Live`], read from /proc after the pidfd is open, so it is the pidfd's process):
//!
//! - start time: guard's own alerts carry it (CLOCK_BOOTTIME ns, 50 ms tolerance: /proc counts
//!   in clock ticks); Falco's carry `proc.pid.ts` (epoch ns; 1 s tolerance, as Falco derives it
//!   from its own estimate of the boot time); every alert's event time (`time`) bounds it: a
//!   process that started after the event is not the event's process;
//! - the container: the one the alert names (`container.id`, or `host`) must be the one the
//!   process is in (its cgroup v2 path, parsed as the capture does); never a PID elsewhere;
//! - `proc.vpid` against the last `NSpid` of /proc/PID/status;
//! - `proc.name` against the comm of one of its threads (Falco reports the thread's);
//! - `proc.exepath` resolved inside the process's root (`openat2` with RESOLVE_IN_ROOT, so a
//!   symlink such as /bin/sh → busybox resolves as the process saw it) against /proc/PID/exe,
//!   by device and inode.
//!
//! A check whose input the alert lacks is skipped; one whose live side cannot be read (the
//! agent's Landlock domain denies /proc/PID/root of processes outside it) is skipped and named
//! in the outcome's detail. Any mismatch refuses the action: recorded and counted in
//! `guard_response_identity_refused_total{check}`.

use std::{
    collections::BTreeMap,
    os::fd::{FromRawFd, OwnedFd},
    path::Path,
    time::Duration,
};

use super::process::{ProcStat, START_TOLERANCE, boot_ns_now, start_boot_ns};
use crate::state::procfs::read_capped;

/// Falco's `proc.pid.ts` is epoch ns computed by Falco from its boot-time estimate.
pub const EPOCH_TOLERANCE: Duration = Duration::from_secs(1);
/// Threads whose comm is compared with `proc.name`.
const MAX_THREADS: usize = 4096;

/// Which container the alert says the process is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerClaim {
    /// The alert has no `container.id` (a Falco rule whose output lacks it): not checked.
    Unnamed,
    Host,
    /// 12 to 64 hex digits (a prefix of the full id).
    Container(String),
}

/// What an alert says about its process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub pid: u32,
    pub start_boot_ns: Option<u64>,
    pub start_epoch_ns: Option<u64>,
    /// The event's time (epoch ns): the process started before it.
    pub event_epoch_ns: Option<u64>,
    pub vpid: Option<u32>,
    pub container: ContainerClaim,
    pub exepath: Option<String>,
    pub name: Option<String>,
}

fn field_u64(fields: &BTreeMap<String, serde_json::Value>, k: &str) -> Option<u64> {
    match fields.get(k)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn field_str(fields: &BTreeMap<String, serde_json::Value>, k: &str) -> Option<String> {
    match fields.get(k)? {
        serde_json::Value::String(s) if !s.is_empty() && s != crate::state::container::NA => {
            Some(s.clone())
        }
        _ => None,
    }
}

impl Claim {
    /// The claim of an alert's output fields (Falco's names, also in guard's alerts) and what
    /// the agent knows besides (`start_boot_ns`; `agent_container`: `Some` when the agent
    /// resolved the event's workload itself, holding its container id or `None` for the host).
    pub fn from_alert(
        pid: u32,
        alert: &crate::alert::Alert,
        start_boot_ns: Option<u64>,
        agent_container: Option<Option<&str>>,
    ) -> Self {
        let f = &alert.output_fields;
        let container = match agent_container {
            Some(Some(id)) => ContainerClaim::Container(id.to_ascii_lowercase()),
            Some(None) => ContainerClaim::Host,
            None => match field_str(f, "container.id").as_deref() {
                None => ContainerClaim::Unnamed,
                Some("host") => ContainerClaim::Host,
                Some(id) => ContainerClaim::Container(id.to_ascii_lowercase()),
            },
        };
        Self {
            pid,
            start_boot_ns,
            start_epoch_ns: field_u64(f, "proc.pid.ts").filter(|&t| t > 0),
            event_epoch_ns: crate::rfc3339::parse(&alert.time)
                .and_then(|t| u64::try_from(t).ok())
                .filter(|&t| t > 0),
            vpid: field_u64(f, "proc.vpid").and_then(|v| u32::try_from(v).ok()),
            container,
            exepath: field_str(f, "proc.exepath"),
            name: field_str(f, "proc.name"),
        }
    }
}

/// The live process, as /proc shows it. `None` fields could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Live {
    pub start_boot_ns: u64,
    /// CLOCK_REALTIME − CLOCK_BOOTTIME now, to put boot times on the epoch.
    pub boot_to_epoch_ns: i128,
    pub vpid: Option<u32>,
    /// `Some(None)`: on the host (no container in its cgroup path).
    pub container: Option<Option<String>>,
    pub comms: Option<Vec<String>>,
    /// Whether `claim.exepath` resolved in its root is its executable; `None`: not checked.
    pub exe_matches: Option<bool>,
}

fn epoch_ns_now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The last pid of `NSpid:` (the pid in the process's own namespace).
pub fn parse_nspid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .and_then(|rest| rest.split_ascii_whitespace().last())
        .and_then(|v| v.parse().ok())
}

fn read_str(path: &str, cap: usize) -> Option<String> {
    read_capped(Path::new(path), cap)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Opens `path` inside the directory `root` with symlinks resolved as if `root` were `/`.
fn open_in_root(root: &Path, path: &str) -> std::io::Result<OwnedFd> {
    let root = std::fs::File::open(root)?;
    let rel = std::ffi::CString::new(path.trim_start_matches('/').as_bytes().to_vec())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_how is plain data; zero is "no flags".
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    use std::os::fd::AsRawFd;
    // SAFETY: valid dirfd, NUL-terminated path, `how` of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            rel.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this fd, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn exe_matches(pid: u32, exepath: &str) -> Option<bool> {
    use std::os::unix::fs::MetadataExt;
    let live = std::fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    let fd = match open_in_root(Path::new(&format!("/proc/{pid}/root")), exepath) {
        Ok(fd) => fd,
        // The path no longer exists there (deleted, replaced): not that executable.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Some(false),
        Err(_) => return None,
    };
    let claimed = std::fs::File::from(fd).metadata().ok()?;
    Some(claimed.dev() == live.dev() && claimed.ino() == live.ino())
}

impl Live {
    /// Reads what the checks of `claim` need. Call with the pidfd open, and check it alive
    /// afterwards: then every read was of that process.
    pub fn read(claim: &Claim, stat: &ProcStat) -> Self {
        let pid = claim.pid;
        let vpid = claim
            .vpid
            .and_then(|_| read_str(&format!("/proc/{pid}/status"), 16 * 1024))
            .and_then(|s| parse_nspid(&s));
        let container = match claim.container {
            ContainerClaim::Unnamed => None,
            _ => read_str(&format!("/proc/{pid}/cgroup"), 64 * 1024).and_then(|raw| {
                let path = crate::state::procfs::parse_cgroup_v2(&raw)?;
                Some(
                    crate::state::container::parse_cgroup_path(path)
                        .map(|c| c.id.as_str().to_ascii_lowercase()),
                )
            }),
        };
        let comms = claim.name.as_ref().and_then(|_| {
            let rd = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
            let v: Vec<String> = rd
                .flatten()
                .take(MAX_THREADS)
                .filter_map(|e| {
                    read_str(&format!("{}/comm", e.path().display()), 64)
                        .map(|c| c.trim_end_matches('\n').to_owned())
                })
                .collect();
            (!v.is_empty()).then_some(v)
        });
        let exe_matches = claim.exepath.as_deref().and_then(|p| exe_matches(pid, p));
        Self {
            start_boot_ns: start_boot_ns(stat),
            boot_to_epoch_ns: epoch_ns_now() - i128::from(boot_ns_now()),
            vpid,
            container,
            comms,
            exe_matches,
        }
    }
}

/// Why the live process is not the alert's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error(
        "pid {pid} now belongs to another process (started at {found_ns} ns after boot, the alert's process at {expected_ns})"
    )]
    StartTime {
        pid: u32,
        expected_ns: u64,
        found_ns: u64,
    },
    #[error(
        "pid {pid} started at {found} (epoch ns), the alert's process (proc.pid.ts) at {expected}"
    )]
    StartEpoch {
        pid: u32,
        expected: u64,
        found: i128,
    },
    #[error("pid {pid} started after the alert's event: it is not the alert's process")]
    StartedAfterEvent { pid: u32 },
    #[error("pid {pid} is in {found}, the alert names {expected}: never acting outside it")]
    Container {
        pid: u32,
        expected: String,
        found: String,
    },
    #[error("pid {pid}'s container could not be read: cannot check it is in {expected}")]
    ContainerUnknown { pid: u32, expected: String },
    #[error("pid {pid} is pid {found:?} in its namespace, the alert's proc.vpid is {expected}")]
    Vpid {
        pid: u32,
        expected: u32,
        found: Option<u32>,
    },
    #[error("pid {pid} is named {found:?}, the alert's proc.name is {expected:?}")]
    Name {
        pid: u32,
        expected: String,
        found: Vec<String>,
    },
    #[error("pid {pid} does not run the alert's proc.exepath {expected:?}")]
    Exe { pid: u32, expected: String },
}

impl Mismatch {
    /// The metric label.
    pub fn check(&self) -> &'static str {
        match self {
            Mismatch::StartTime { .. }
            | Mismatch::StartEpoch { .. }
            | Mismatch::StartedAfterEvent { .. } => "start_time",
            Mismatch::Container { .. } | Mismatch::ContainerUnknown { .. } => "container",
            Mismatch::Vpid { .. } => "vpid",
            Mismatch::Name { .. } => "name",
            Mismatch::Exe { .. } => "exepath",
        }
    }

    /// The process is another one than the alert's (a reused PID, or a made-up alert), as
    /// opposed to the alert's process found in another container than the alert names.
    pub fn is_other_process(&self) -> bool {
        !matches!(
            self,
            Mismatch::Container { .. } | Mismatch::ContainerUnknown { .. }
        )
    }
}

/// Comm is at most 15 bytes; Falco's proc.name may be longer (the exe's basename).
fn comm_matches(comm: &str, name: &str) -> bool {
    comm == name || (comm.len() == 15 && name.starts_with(comm))
}

/// The checks made, for the outcome's detail; `Err` at the first mismatch.
pub fn verify(claim: &Claim, live: &Live) -> Result<Vec<&'static str>, Mismatch> {
    let pid = claim.pid;
    let mut checked = Vec::new();
    if let Some(expected) = claim.start_boot_ns {
        if live.start_boot_ns.abs_diff(expected) > START_TOLERANCE.as_nanos() as u64 {
            return Err(Mismatch::StartTime {
                pid,
                expected_ns: expected,
                found_ns: live.start_boot_ns,
            });
        }
        checked.push("start time");
    }
    let started_epoch = i128::from(live.start_boot_ns) + live.boot_to_epoch_ns;
    if let Some(expected) = claim.start_epoch_ns {
        if (started_epoch - i128::from(expected)).abs() > EPOCH_TOLERANCE.as_nanos() as i128 {
            return Err(Mismatch::StartEpoch {
                pid,
                expected,
                found: started_epoch,
            });
        }
        checked.push("proc.pid.ts");
    }
    if let Some(event) = claim.event_epoch_ns {
        if started_epoch > i128::from(event) + EPOCH_TOLERANCE.as_nanos() as i128 {
            return Err(Mismatch::StartedAfterEvent { pid });
        }
        checked.push("event time");
    }
    let describe = |c: &Option<String>| match c {
        Some(id) => format!("container {}", id.get(..12).unwrap_or(id)),
        None => "the host".to_owned(),
    };
    match (&claim.container, &live.container) {
        (ContainerClaim::Unnamed, _) => {}
        (ContainerClaim::Host, Some(None)) => checked.push("container"),
        (ContainerClaim::Container(want), Some(Some(got))) if got.starts_with(want.as_str()) => {
            checked.push("container")
        }
        (want, Some(got)) => {
            return Err(Mismatch::Container {
                pid,
                expected: match want {
                    ContainerClaim::Container(id) => describe(&Some(id.clone())),
                    _ => describe(&None),
                },
                found: describe(got),
            });
        }
        (want, None) => {
            return Err(Mismatch::ContainerUnknown {
                pid,
                expected: match want {
                    ContainerClaim::Container(id) => describe(&Some(id.clone())),
                    _ => describe(&None),
                },
            });
        }
    }
    if let Some(expected) = claim.vpid {
        if live.vpid != Some(expected) {
            return Err(Mismatch::Vpid {
                pid,
                expected,
                found: live.vpid,
            });
        }
        checked.push("proc.vpid");
    }
    if let (Some(name), Some(comms)) = (&claim.name, &live.comms) {
        if !comms.iter().any(|c| comm_matches(c, name)) {
            return Err(Mismatch::Name {
                pid,
                expected: name.clone(),
                found: comms.iter().take(4).cloned().collect(),
            });
        }
        checked.push("proc.name");
    }
    if let (Some(exe), Some(ok)) = (&claim.exepath, live.exe_matches) {
        if !ok {
            return Err(Mismatch::Exe {
                pid,
                expected: exe.clone(),
            });
        }
        checked.push("proc.exepath");
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim() -> Claim {
        Claim {
            pid: 100,
            start_boot_ns: None,
            start_epoch_ns: None,
            event_epoch_ns: None,
            vpid: None,
            container: ContainerClaim::Unnamed,
            exepath: None,
            name: None,
        }
    }

    fn live() -> Live {
        Live {
            start_boot_ns: 5_000_000_000,
            boot_to_epoch_ns: 1_000_000_000_000_000_000,
            vpid: Some(7),
            container: Some(Some("ab".repeat(32))),
            comms: Some(vec!["sh".into(), "worker-thread-n".into()]),
            exe_matches: Some(true),
        }
    }

    #[test]
    fn matching_claims_pass_and_name_their_checks() {
        let c = Claim {
            start_boot_ns: Some(5_010_000_000),
            start_epoch_ns: Some(1_000_000_005_300_000_000),
            event_epoch_ns: Some(1_000_000_009_000_000_000),
            vpid: Some(7),
            container: ContainerClaim::Container("abababababab".into()),
            exepath: Some("/bin/sh".into()),
            name: Some("worker-thread-name-long".into()),
            ..claim()
        };
        let done = verify(&c, &live()).expect("matches");
        assert_eq!(
            done,
            [
                "start time",
                "proc.pid.ts",
                "event time",
                "container",
                "proc.vpid",
                "proc.name",
                "proc.exepath"
            ]
        );
        // Nothing claimed, nothing checked.
        assert!(verify(&claim(), &live()).expect("ok").is_empty());
    }

    #[test]
    fn each_mismatch_refuses() {
        let l = live();
        let cases: Vec<(Claim, &str)> = vec![
            (
                Claim {
                    start_boot_ns: Some(5_100_000_000),
                    ..claim()
                },
                "start_time",
            ),
            (
                Claim {
                    start_epoch_ns: Some(1_000_000_007_000_000_000),
                    ..claim()
                },
                "start_time",
            ),
            (
                Claim {
                    event_epoch_ns: Some(1_000_000_003_000_000_000),
                    ..claim()
                },
                "start_time",
            ),
            (
                Claim {
                    container: ContainerClaim::Container("cdcdcdcdcdcd".into()),
                    ..claim()
                },
                "container",
            ),
            (
                Claim {
                    container: ContainerClaim::Host,
                    ..claim()
                },
                "container",
            ),
            (
                Claim {
                    vpid: Some(8),
                    ..claim()
                },
                "vpid",
            ),
            (
                Claim {
                    name: Some("bash".into()),
                    ..claim()
                },
                "name",
            ),
            (
                Claim {
                    exepath: Some("/bin/bash".into()),
                    ..claim()
                },
                "exepath",
            ),
        ];
        let l_exe_bad = Live {
            exe_matches: Some(false),
            ..l.clone()
        };
        for (c, check) in cases {
            let against = if check == "exepath" { &l_exe_bad } else { &l };
            let e = verify(&c, against).expect_err(check);
            assert_eq!(e.check(), check, "{e}");
        }
        // A container claim whose live side is unknown is refused, not waved through.
        let unknown = Live {
            container: None,
            ..l.clone()
        };
        let c = Claim {
            container: ContainerClaim::Host,
            ..claim()
        };
        assert!(matches!(
            verify(&c, &unknown),
            Err(Mismatch::ContainerUnknown { .. })
        ));
        // A host process claimed as the host passes.
        let host = Live {
            container: Some(None),
            ..l
        };
        assert!(verify(&c, &host).is_ok());
    }

    #[test]
    fn claim_from_falco_fields() {
        let a = crate::alert::Alert {
            time: "2026-01-01T00:00:00.5Z".into(),
            rule: "r".into(),
            priority: crate::alert::Priority::Critical,
            source: "syscall".into(),
            hostname: String::new(),
            output: String::new(),
            tags: Vec::new(),
            guard: Default::default(),
            output_fields: serde_json::from_value(serde_json::json!({
                "proc.pid": 9, "proc.vpid": "3", "proc.pid.ts": 1767225600000000000u64,
                "container.id": "ABCDEF012345", "proc.name": "sh", "proc.exepath": "<NA>"
            }))
            .expect("fields"),
        };
        let c = Claim::from_alert(9, &a, None, None);
        assert_eq!(c.vpid, Some(3));
        assert_eq!(c.start_epoch_ns, Some(1_767_225_600_000_000_000));
        assert_eq!(c.event_epoch_ns, Some(1_767_225_600_500_000_000));
        assert_eq!(
            c.container,
            ContainerClaim::Container("abcdef012345".into())
        );
        assert_eq!(c.exepath, None, "<NA> is no claim");
        // The agent's own workload wins over the fields.
        let c = Claim::from_alert(9, &a, Some(5), Some(None));
        assert_eq!(
            (c.container, c.start_boot_ns),
            (ContainerClaim::Host, Some(5))
        );
        assert_eq!(parse_nspid("Name:\tx\nNSpid:\t4242\t17\n"), Some(17));
        assert_eq!(parse_nspid("NSpid:\t4242\n"), Some(4242));
    }

    /// A live process: our child `sleep` on the host, by its real identity and a wrong one.
    #[test]
    fn live_child_checks() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn");
        let pid = child.id();
        let stat = super::super::process::read_stat(pid).expect("stat");
        let good = Claim {
            pid,
            start_boot_ns: Some(start_boot_ns(&stat)),
            vpid: Some(pid),
            name: Some("sleep".into()),
            exepath: std::fs::read_link(format!("/proc/{pid}/exe"))
                .ok()
                .map(|p| p.display().to_string()),
            ..claim()
        };
        let live = Live::read(&good, &stat);
        let done = verify(&good, &live).expect("our child is itself");
        assert!(done.contains(&"proc.name"), "{done:?}");
        let bad = Claim {
            exepath: Some("/bin/true".into()),
            ..good.clone()
        };
        let live = Live::read(&bad, &stat);
        if live.exe_matches.is_some() {
            assert_eq!(
                verify(&bad, &live).expect_err("other exe").check(),
                "exepath"
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
