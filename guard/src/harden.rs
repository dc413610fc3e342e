//! Least privilege for `guard run` once its probes are loaded, attached and pinned
//! (docs/hardening.md):
//! - every capability but [`RUNTIME_CAPS`] leaves the effective, permitted, inheritable,
//!   ambient and bounding sets; `no_new_privs` is set;
//! - Landlock restricts the agent's own filesystem access to what it uses afterwards
//!   ([`agent_grants`]).
//!
//! Capability sets, `no_new_privs` and Landlock domains belong to a thread, and the agent
//! already runs several (the async runtime's worker, output and audit writers, ...). So the
//! restriction is applied on every thread: the calling one directly, each other one from a
//! signal handler that makes the same raw system calls (the way libpsx does), until every
//! thread listed in `/proc/self/task` has done it. Threads started later inherit the
//! restricted sets from their creator. [`verify`] reads each thread's `status` afterwards.

use std::{
    collections::BTreeSet,
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use landlock::{ABI, Access, AccessFs, BitFlags};

use crate::policy::landlock::Grants;

/// Capabilities a deployment gives `guard run` (systemd unit, DaemonSet): what loading,
/// attaching and pinning the probes needs, plus [`RUNTIME_CAPS`]. docs/hardening.md gives the
/// reason for each; deploy/ and its test compare against this list.
pub const START_CAPS: &[&str] = &[
    "CAP_BPF",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_KILL",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_ADMIN",
    "CAP_PERFMON",
    "CAP_SETPCAP",
    "CAP_SYS_ADMIN",
    "CAP_SYS_PTRACE",
];

/// Capabilities the agent keeps after start (docs/hardening.md says why):
/// - `CAP_BPF`: every `bpf()` call once unprivileged BPF is disabled — policy bindings and the
///   exec deny map (map updates through the fds it holds), the quarantine map, drop counters;
/// - `CAP_DAC_READ_SEARCH`: reading `/proc/<pid>/…` files of processes of other users
///   (environ, cmdline of hidepid mounts) and cgroup directories;
/// - `CAP_KILL`: `kill_process`, the fallback backend's kills, for processes of other users;
/// - `CAP_SYS_PTRACE`: `/proc/<pid>/exe`, `cwd`, `root`, `fd/` of other users' and
///   non-dumpable processes (process table, snapshots, PID-reuse checks).
///
/// On kernels without `CAP_BPF` (before 5.8) `CAP_SYS_ADMIN` is kept instead of it; with a
/// metrics port below 1024, `CAP_NET_BIND_SERVICE` too.
pub const RUNTIME_CAPS: &[&str] = &[
    "CAP_BPF",
    "CAP_DAC_READ_SEARCH",
    "CAP_KILL",
    "CAP_SYS_PTRACE",
];

/// Signal used to run the restriction on the other threads.
fn broadcast_signal() -> i32 {
    libc::SIGRTMIN() + 7
}

fn cap_index(name: &str) -> Option<u32> {
    name.parse::<caps::Capability>()
        .ok()
        .map(|c| u32::from(c.index()))
}

/// Bit mask of capability names (unknown names are ignored).
pub fn mask_of(names: &[&str]) -> u64 {
    names
        .iter()
        .filter_map(|n| cap_index(n))
        .fold(0, |m, i| m | (1u64 << i))
}

/// Capability names of a mask, sorted.
pub fn names_of(mask: u64) -> Vec<String> {
    let mut v: Vec<String> = caps::all()
        .into_iter()
        .filter(|c| mask & (1u64 << c.index()) != 0)
        .map(|c| c.to_string())
        .collect();
    v.sort();
    v
}

/// The capabilities to keep on this host (see [`RUNTIME_CAPS`]).
pub fn runtime_mask(metrics_port: Option<u16>) -> u64 {
    let mut m = mask_of(RUNTIME_CAPS);
    let last_cap: u8 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    if last_cap < caps::Capability::CAP_BPF.index() {
        m &= !mask_of(&["CAP_BPF"]);
        m |= mask_of(&["CAP_SYS_ADMIN"]);
    }
    if metrics_port.is_some_and(|p| p < 1024) {
        m |= mask_of(&["CAP_NET_BIND_SERVICE"]);
    }
    m
}

/// What the agent reads and writes after start.
#[derive(Debug, Clone, Default)]
pub struct AgentPaths {
    /// Read (files and directories beneath).
    pub read: Vec<PathBuf>,
    /// Read and write, create, remove beneath.
    pub write: Vec<PathBuf>,
    /// Read and execute beneath.
    pub exec: Vec<PathBuf>,
    /// Write to existing files beneath (cgroup control files), no create or remove.
    pub write_files: Vec<PathBuf>,
}

/// Read-only system files the agent (name resolution for http outputs and notify) and the
/// response scripts it starts need, besides the system binary and library directories.
const SYSTEM_READ: &[&str] = &[
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/host.conf",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/passwd",
    "/etc/group",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/dev/urandom",
    "/proc",
    "/sys",
];

/// Binaries and libraries (response scripts and their interpreters).
const SYSTEM_EXEC: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64"];

/// A file is granted through its directory (an editor or a reload may replace it by a
/// rename, which gives a new inode), unless that directory is `/`.
fn file_or_dir(p: &Path) -> PathBuf {
    if p.is_dir() {
        return p.to_path_buf();
    }
    match p.parent() {
        Some(d) if d != Path::new("/") && !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => p.to_path_buf(),
    }
}

/// The directory, if it exists (and is not `/`).
fn existing_dir(p: &Path) -> Option<PathBuf> {
    (p.is_dir() && p != Path::new("/")).then(|| p.to_path_buf())
}

/// Inputs of [`agent_paths`].
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub config_file: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub policies: Vec<PathBuf>,
    pub responses: Option<PathBuf>,
    pub outputs_file: Option<PathBuf>,
    /// Files written by file output channels.
    pub output_files: Vec<PathBuf>,
    pub audit_dir: Option<PathBuf>,
    pub pin_dirs: Vec<PathBuf>,
    /// `None`: the default sockets (`state::docker::DEFAULT_SOCKETS`).
    pub docker_socket: Option<PathBuf>,
    /// Podman's events log, read as it grows (`None`: not followed).
    pub podman_events: Option<PathBuf>,
    pub cgroup_root: PathBuf,
    /// Response scripts and their `allow_write` directories.
    pub scripts: Vec<PathBuf>,
    pub script_writes: Vec<PathBuf>,
}

/// What the agent may touch once running.
pub fn agent_paths(i: &Inputs) -> AgentPaths {
    let mut p = AgentPaths::default();
    p.read.extend(SYSTEM_READ.iter().map(PathBuf::from));
    p.exec.extend(SYSTEM_EXEC.iter().map(PathBuf::from));
    // Configuration, rules, policies and responses: hot reload reads them again.
    p.read.push(PathBuf::from("/etc/guard"));
    for f in i
        .config_file
        .iter()
        .chain(&i.rules)
        .chain(&i.policies)
        .chain(&i.responses)
        .chain(&i.outputs_file)
    {
        p.read.push(file_or_dir(f));
    }
    // Through its directory: Podman may replace the file.
    p.read.extend(i.podman_events.as_deref().map(file_or_dir));
    match &i.docker_socket {
        Some(s) => p.read.push(s.clone()),
        None => p.read.extend(
            crate::state::docker::DEFAULT_SOCKETS
                .iter()
                .map(PathBuf::from),
        ),
    }
    for f in &i.output_files {
        // Rotation renames `path` to `path.1`...: the channel's directory.
        if let Some(d) = f.parent().and_then(existing_dir) {
            p.write.push(d);
        }
    }
    if let Some(a) = &i.audit_dir {
        p.write.extend(existing_dir(a));
    }
    for d in &i.pin_dirs {
        p.write.extend(existing_dir(d));
    }
    p.write.push(PathBuf::from("/dev/null"));
    p.write_files.push(i.cgroup_root.clone());
    p.write_files.push(PathBuf::from("/sys/fs/cgroup"));
    for s in &i.scripts {
        p.exec.push(s.clone());
    }
    p.write.extend(i.script_writes.iter().cloned());
    p
}

/// The Landlock ABI the agent asks for (best effort on older kernels).
pub const ABI_WANTED: ABI = ABI::V5;

/// Landlock grants (path -> rights) for [`AgentPaths`], and the rights handled.
pub fn agent_grants(p: &AgentPaths) -> (BitFlags<AccessFs>, Grants) {
    let read = AccessFs::from_read(ABI_WANTED) & !AccessFs::Execute;
    let exec = AccessFs::from_read(ABI_WANTED);
    let all = AccessFs::from_all(ABI_WANTED);
    let write = all & !AccessFs::Execute;
    let write_file = read | AccessFs::WriteFile;
    let mut g = Grants::new();
    let mut add = |path: &PathBuf, rights: BitFlags<AccessFs>| {
        *g.entry(path.clone()).or_default() |= rights;
    };
    p.read.iter().for_each(|x| add(x, read));
    p.exec.iter().for_each(|x| add(x, exec));
    p.write_files.iter().for_each(|x| add(x, write_file));
    p.write.iter().for_each(|x| add(x, write));
    (all, g)
}

/// Whether `grants` give `right` on `path` (a grant covers its path and everything beneath).
pub fn allows(grants: &Grants, path: &Path, right: AccessFs) -> bool {
    path.ancestors()
        .any(|a| grants.get(a).is_some_and(|r| r.contains(right)))
}

// --- applying on every thread -----------------------------------------------------------------

static KEEP: AtomicU64 = AtomicU64::new(0);
static DROP_CAPS: AtomicBool = AtomicBool::new(false);
/// Whether the bounding set can be reduced (needs `CAP_SETPCAP`).
static DROP_BOUNDING: AtomicBool = AtomicBool::new(false);
static SET_NNP: AtomicBool = AtomicBool::new(false);
static LANDLOCK_FD: AtomicI32 = AtomicI32::new(-1);
static LAST_CAP: AtomicU32 = AtomicU32::new(40);
/// First failure: step number * 1000 + errno.
static FAILURE: AtomicI32 = AtomicI32::new(0);
const MAX_THREADS: usize = 4096;
static ACKED: [AtomicI32; MAX_THREADS] = [const { AtomicI32::new(0) }; MAX_THREADS];
static ACKED_N: AtomicUsize = AtomicUsize::new(0);

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

fn errno() -> i32 {
    // SAFETY: errno is thread-local; reading it has no precondition.
    unsafe { *libc::__errno_location() }
}

fn fail(step: i32) {
    let _ = FAILURE.compare_exchange(0, step * 1000 + errno(), Ordering::SeqCst, Ordering::SeqCst);
}

/// The restriction for the calling thread: raw system calls only (async-signal-safe).
fn apply_here() {
    if DROP_CAPS.load(Ordering::SeqCst) {
        let keep = KEEP.load(Ordering::SeqCst);
        let bounding = DROP_BOUNDING.load(Ordering::SeqCst);
        for cap in 0..=LAST_CAP.load(Ordering::SeqCst).min(63) {
            if !bounding || keep & (1u64 << cap) != 0 {
                continue;
            }
            // SAFETY: prctl with integer arguments.
            let inset =
                unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
            if inset == 1 {
                // SAFETY: as above.
                let r =
                    unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
                if r != 0 {
                    fail(1);
                }
            }
        }
        // SAFETY: as above. EINVAL on kernels without ambient capabilities is fine.
        unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        let mut hdr = CapHeader {
            version: CAP_V3,
            pid: 0,
        };
        let data = [
            CapData {
                effective: keep as u32,
                permitted: keep as u32,
                inheritable: 0,
            },
            CapData {
                effective: (keep >> 32) as u32,
                permitted: (keep >> 32) as u32,
                inheritable: 0,
            },
        ];
        // SAFETY: capset with a valid v3 header and two data structs.
        let r =
            unsafe { libc::syscall(libc::SYS_capset, &mut hdr as *mut CapHeader, data.as_ptr()) };
        if r != 0 {
            fail(2);
        }
    }
    if SET_NNP.load(Ordering::SeqCst) {
        // SAFETY: prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
            fail(3);
        }
    }
    let fd = LANDLOCK_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: landlock_restrict_self with a ruleset fd that stays open until every thread
        // has acknowledged.
        if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0) } != 0 {
            fail(4);
        }
    }
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

fn acked(tid: i32) -> bool {
    let n = ACKED_N.load(Ordering::SeqCst).min(MAX_THREADS);
    ACKED[..n].iter().any(|a| a.load(Ordering::SeqCst) == tid)
}

fn ack(tid: i32) {
    let i = ACKED_N.fetch_add(1, Ordering::SeqCst);
    if let Some(slot) = ACKED.get(i) {
        slot.store(tid, Ordering::SeqCst);
    } else {
        let _ = FAILURE.compare_exchange(0, 9000, Ordering::SeqCst, Ordering::SeqCst);
    }
}

extern "C" fn on_signal(_sig: libc::c_int) {
    // SAFETY: errno is thread-local; restored before returning.
    let saved = unsafe { *libc::__errno_location() };
    let tid = gettid();
    if !acked(tid) {
        apply_here();
        ack(tid);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

fn tasks() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Applies the plan on every thread of the process.
fn apply_everywhere(keep: Option<u64>, ruleset: Option<OwnedFd>) -> Result<()> {
    DROP_CAPS.store(keep.is_some(), Ordering::SeqCst);
    DROP_BOUNDING.store(
        caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
            .unwrap_or(false),
        Ordering::SeqCst,
    );
    KEEP.store(keep.unwrap_or(0), Ordering::SeqCst);
    SET_NNP.store(true, Ordering::SeqCst);
    LANDLOCK_FD.store(
        ruleset.as_ref().map_or(-1, |f| f.as_raw_fd()),
        Ordering::SeqCst,
    );
    if let Some(last) = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
    {
        LAST_CAP.store(last, Ordering::SeqCst);
    }
    let sig = broadcast_signal();
    // SAFETY: installing a handler that only makes raw system calls and touches atomics; it
    // stays installed (a late signal must not take the default action, which terminates).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
            bail!(
                "installing the signal handler: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    let me = gettid();
    apply_here();
    ack(me);
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let pending: Vec<i32> = tasks().into_iter().filter(|t| !acked(*t)).collect();
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("threads {pending:?} did not apply the restriction within 5 s");
        }
        for t in &pending {
            // SAFETY: tgkill to a thread of this process; ESRCH when it has exited.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, *t, sig) };
        }
        let until = Instant::now() + Duration::from_millis(200);
        while Instant::now() < until
            && pending
                .iter()
                .any(|t| !acked(*t) && Path::new(&format!("/proc/self/task/{t}")).exists())
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    drop(ruleset);
    LANDLOCK_FD.store(-1, Ordering::SeqCst);
    let f = FAILURE.load(Ordering::SeqCst);
    if f != 0 {
        let step = match f / 1000 {
            1 => "dropping from the bounding set",
            2 => "capset",
            3 => "setting no_new_privs",
            4 => "landlock_restrict_self",
            _ => "recording a thread (too many threads)",
        };
        bail!(
            "{step} failed on some thread: {}",
            std::io::Error::from_raw_os_error(f % 1000)
        );
    }
    Ok(())
}

/// What one thread's `/proc/.../status` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCreds {
    pub tid: i32,
    pub eff: u64,
    pub prm: u64,
    pub inh: u64,
    pub bnd: u64,
    pub amb: u64,
    pub no_new_privs: bool,
}

/// Parses the capability and `NoNewPrivs` lines of a `status` file.
pub fn parse_status(tid: i32, text: &str) -> Option<ThreadCreds> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let hex = |name: &str| field(name).and_then(|v| u64::from_str_radix(v, 16).ok());
    Some(ThreadCreds {
        tid,
        eff: hex("CapEff:")?,
        prm: hex("CapPrm:")?,
        inh: hex("CapInh:")?,
        bnd: hex("CapBnd:")?,
        amb: hex("CapAmb:").unwrap_or(0),
        no_new_privs: field("NoNewPrivs:") == Some("1"),
    })
}

/// Every thread's credentials of process `pid`.
pub fn thread_creds(pid: u32) -> Vec<ThreadCreds> {
    let dir = format!("/proc/{pid}/task");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if let Ok(text) = std::fs::read_to_string(e.path().join("status"))
            && let Some(c) = parse_status(tid, &text)
        {
            out.push(c);
        }
    }
    out
}

/// Checks that every thread holds no more than `keep` (when capabilities were dropped; the
/// bounding set only when it could be reduced) and has `no_new_privs`.
fn verify(keep: Option<u64>) -> Result<()> {
    let bounding = DROP_BOUNDING.load(Ordering::SeqCst);
    let creds = thread_creds(std::process::id());
    anyhow::ensure!(!creds.is_empty(), "cannot read /proc/self/task/*/status");
    for c in creds {
        anyhow::ensure!(c.no_new_privs, "thread {} lacks no_new_privs", c.tid);
        if let Some(k) = keep {
            let bnd = if bounding { c.bnd } else { 0 };
            let bad = [c.eff, c.prm, bnd].iter().any(|m| *m & !k != 0) || c.inh != 0 || c.amb != 0;
            anyhow::ensure!(!bad, "thread {} still holds capabilities: {c:?}", c.tid);
        }
    }
    Ok(())
}

/// What [`lock_down`] did, for the log.
#[derive(Debug, Default)]
pub struct Report {
    pub kept: Option<Vec<String>>,
    pub landlock: Option<String>,
    pub threads: usize,
    pub bounding: bool,
}

/// Drops capabilities (unless `keep_caps`) and applies Landlock (unless `no_landlock`) on
/// every thread. Landlock missing from the kernel is reported, not an error: the capability
/// drop does not depend on it.
pub fn apply(
    keep_caps: bool,
    no_landlock: bool,
    metrics_port: Option<u16>,
    inputs: &Inputs,
) -> Result<Report> {
    let mut report = Report::default();
    let keep = if keep_caps {
        None
    } else {
        let have = caps::read(None, caps::CapSet::Permitted)
            .context("reading the permitted capabilities")?
            .into_iter()
            .fold(0u64, |m, c| m | (1u64 << c.index()));
        let mut keep = runtime_mask(metrics_port);
        if crate::fanotify::in_force() {
            // Marks on new workloads' filesystems; sealing their directories (immutable
            // attribute, of any owner) (docs/hardening.md).
            keep |= mask_of(&["CAP_SYS_ADMIN", "CAP_LINUX_IMMUTABLE", "CAP_FOWNER"]);
        }
        let keep = keep & have;
        report.kept = Some(names_of(keep));
        Some(keep)
    };
    let ruleset = if no_landlock {
        None
    } else if crate::fanotify::in_force() {
        // The answer reads `/proc/<tid>/syscall` and the marker `/proc/<pid>/root` of every
        // workload (ptrace-class access Landlock refuses outside the agent's domain), and the
        // kernel opens each event's file as the agent (docs/hardening.md).
        report.landlock = Some("off: the fanotify backend reaches into every workload".into());
        None
    } else {
        let paths = agent_paths(inputs);
        let (handled, grants) = agent_grants(&paths);
        let rs = crate::policy::landlock::create_ruleset(handled, &grants, ABI_WANTED)
            .context("building the agent's Landlock ruleset")?;
        let fd: Option<OwnedFd> = rs.into();
        match fd {
            Some(fd) => {
                report.landlock = Some(format!("{} rules", grants.len()));
                Some(fd)
            }
            None => {
                report.landlock = Some("not available on this kernel".into());
                None
            }
        }
    };
    if keep.is_none() && ruleset.is_none() && no_landlock {
        return Ok(report);
    }
    apply_everywhere(keep, ruleset)?;
    verify(keep)?;
    report.threads = tasks().len();
    report.bounding = DROP_BOUNDING.load(Ordering::SeqCst);
    Ok(report)
}

/// `guard run`, after the pipeline started (probes loaded, attached, pinned) and before
/// `guard: ready`: quarantine programs are attached now if a response may need them (loading
/// them needs capabilities dropped next), then [`apply`].
pub async fn after_start(
    args: &crate::config::RunArgs,
    rule_paths: &[PathBuf],
    output_files: Vec<PathBuf>,
    responder: Option<&crate::respond::Responder>,
) -> Result<()> {
    if args.keep_caps && args.no_landlock {
        tracing::warn!("--keep-caps and --no-landlock: the agent keeps every privilege");
        return Ok(());
    }
    if !args.no_landlock
        && let Err(e) = crate::procroot::spawn()
    {
        tracing::warn!(
            "policy path rules hold by name only (no inode identity): the /proc/<pid>/root opener did not start: {e:#}"
        );
    }
    if let Some(r) = responder
        && let Some(e) = r.prepare_quarantine().await
    {
        tracing::warn!("attaching the quarantine programs before dropping privileges: {e}");
    }
    let (scripts, script_writes) = script_paths(responder);
    let mut pin_dirs = vec![args.pin_dir.clone()];
    if let Some(r) = responder {
        pin_dirs.push(r.pin_dir().to_path_buf());
    }
    let inputs = Inputs {
        config_file: args.config.clone(),
        rules: rule_paths.to_vec(),
        policies: args.policy.clone(),
        responses: args.responses_path(),
        outputs_file: args.outputs.clone(),
        output_files,
        audit_dir: (!args.no_audit).then(|| args.audit_dir.clone()),
        pin_dirs,
        docker_socket: args.capture.docker_socket.clone(),
        podman_events: match args.capture.podman_events_file.as_deref() {
            Some(f) if f.as_os_str() == "off" => None,
            Some(f) => Some(f.to_path_buf()),
            None => Some(crate::state::podman::DEFAULT_EVENTS_FILE.into()),
        },
        cgroup_root: crate::sysfs::cgroup2_mount()
            .map_or_else(|| PathBuf::from("/sys/fs/cgroup"), PathBuf::from),
        scripts,
        script_writes,
    };
    let report = apply(
        args.keep_caps,
        args.no_landlock,
        args.metrics_addr.0.map(|a| a.port()),
        &inputs,
    )?;
    tracing::info!(
        capabilities = report
            .kept
            .as_ref()
            .map_or_else(|| "all kept (--keep-caps)".to_owned(), |k| k.join(",")),
        bounding_set_reduced = report.bounding,
        landlock = report.landlock.as_deref().unwrap_or("off (--no-landlock)"),
        threads = report.threads,
        "privileges dropped"
    );
    Ok(())
}

/// The files of the file output channels.
pub fn output_files(channels: &[crate::output::ChannelConfig]) -> Vec<PathBuf> {
    channels
        .iter()
        .filter_map(|c| match &c.kind {
            crate::output::ChannelKind::File { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect()
}

/// Response scripts and their writable directories.
pub fn script_paths(r: Option<&crate::respond::Responder>) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut scripts = Vec::new();
    let mut writes = Vec::new();
    let active = r.map(|r| r.active());
    for resp in active.iter().flat_map(|a| a.responses.iter()) {
        for a in &resp.actions {
            if let crate::respond::config::Action::Exec(e) = a {
                scripts.push(e.script.clone());
                writes.extend(e.allow_write.iter().cloned());
            }
        }
    }
    (scripts, writes)
}

/// The set of capability names of a list (for comparisons in tests and docs).
pub fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests;
