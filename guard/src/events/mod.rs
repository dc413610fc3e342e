//! Decoding ring-buffer records into typed events, one Rust type per kind. Records come from
//! the kernel but are treated as untrusted bytes: a short, inconsistent or unknown record (an
//! unknown kind, or an unknown op, verdict, reason, hook or access byte in a decision) is an
//! error the caller counts and skips, never a panic and never a default.

mod decode;
mod kinds;
#[cfg(test)]
mod tests;

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    sync::atomic::{AtomicU64, Ordering},
};

use guard_ebpf::EventKind;
use serde::Serialize;

pub use decode::{Clock, DecodeError, decode, env as env_entries, wall_now_ns};
pub use kinds::{
    Access, Hook, Operation, Reason, UnknownAccess, UnknownHook, UnknownOperation, UnknownReason,
    UnknownVerdict, Verdict,
};

/// Records that failed to decode (malformed, unknown kind, unknown decision kinds): the
/// agent's decode-error count (`/metrics`, drop reports).
pub static DECODE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// `decode`, counting a failure in `DECODE_ERRORS`: what the agent calls per record.
pub fn decode_counted(buf: &[u8], clock: &Clock) -> Result<Event, DecodeError> {
    decode(buf, clock).inspect_err(|_| {
        DECODE_ERRORS.fetch_add(1, Ordering::Relaxed);
    })
}

/// cgroup v2 id: the inode number of the cgroup directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CgroupId(pub u64);

/// `AT_FDCWD`: a dirfd meaning "relative to the current directory".
pub const AT_FDCWD: i32 = -100;

/// Fields common to every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Common {
    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub cgroup_id: CgroupId,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `None` when unset (`(unsigned)-1`) or when the kernel lacks audit support.
    pub loginuid: Option<u32>,
    pub comm: String,
    /// Return value: fd or 0 on success, `-errno` on failure.
    pub ret: i64,
    pub cpu: u32,
}

/// A user-memory string copied by the kernel side, with what went wrong copying it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Captured {
    /// The bytes as UTF-8; invalid sequences become U+FFFD.
    pub text: String,
    /// Longer than `PAYLOAD_MAX` and cut.
    #[serde(skip_serializing_if = "is_false")]
    pub truncated: bool,
    /// The memory could not be read (bad pointer or page not present).
    #[serde(skip_serializing_if = "is_false")]
    pub fault: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecEvent {
    #[serde(flatten)]
    pub common: Common,
    /// The filename the kernel executed, as given to execve (may be relative).
    pub filename: Captured,
    /// argv of the new image; bounded to `PAYLOAD_MAX` bytes.
    pub argv: Vec<String>,
    pub argv_truncated: bool,
    /// The executed file's inode (`proc.exe_ino*`); None when the kernel could not read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe_inode: Option<ExeInode>,
    /// When the process's pid namespace started, ns since the epoch: its init's start, or
    /// boot for the initial namespace (`proc.exe_ino.ctime_duration_pidns_start`); None when
    /// the kernel could not read it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pidns_start_ns: Option<u64>,
    /// The new image's environment (`NAME=value`), bounded to `PAYLOAD_MAX` bytes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// The environment was longer than the bound (the last entry may be cut), or unreadable.
    #[serde(skip_serializing_if = "is_false")]
    pub env_truncated: bool,
}

/// The executed file's inode at exec: number, change and modification times (ns since the
/// epoch; a time before the epoch is None).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct ExeInode {
    pub ino: u64,
    pub ctime_ns: Option<u64>,
    pub mtime_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecDeniedEvent {
    #[serde(flatten)]
    pub common: Common,
    pub policy_id: u32,
}

/// A policy enforcement decision from the kernel (see `guard_ebpf::DecisionBody`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionEvent {
    #[serde(flatten)]
    pub common: Common,
    pub policy_id: u32,
    pub op: Operation,
    pub verdict: Verdict,
    pub reason: Reason,
    /// The program that decided (or `after_syscall`: the agent).
    pub hook: Hook,
    /// The resolved path (exec, open); empty for connect.
    pub path: Captured,
    /// For open: the access it asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<Access>,
    /// For connect: the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<std::net::SocketAddr>,
    /// Device and inode of the file (exec, open), when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<(u64, u64)>,
    /// Self-protection denials (`op.is_self_protect()`, reason `self_protect`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_protect: Option<SelfProtectDetail>,
    /// For `Verdict::KillFailed`: why the process was not killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kill_error: Option<String>,
}

/// What a self-protection record says besides the op (see `guard_ebpf::decision_op`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SelfProtectDetail {
    /// The signal (signal), the `PTRACE_MODE_*` bits (ptrace), the `MAY_*` mask
    /// (protected_file) or the `bpf` command (bpf_object).
    pub arg: u32,
    /// The agent's thread-group id (signal, ptrace) or the `bpf_id_key` (bpf_object).
    pub target: u64,
    /// `guard_ebpf::protected_class` of the inode (protected_file), else 0.
    pub class: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForkEvent {
    /// The parent (the task that called fork/clone).
    #[serde(flatten)]
    pub common: Common,
    pub child_pid: u32,
    pub child_tid: u32,
}

impl ForkEvent {
    /// A new thread of the same process rather than a new process.
    pub fn is_thread(&self) -> bool {
        self.child_pid == self.common.pid
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitEvent {
    #[serde(flatten)]
    pub common: Common,
    /// Wait-status encoding (`exit_code << 8 | signal`).
    pub exit_code: i32,
}

impl ExitEvent {
    /// The thread-group leader exited, which ends the process for guard's process table.
    pub fn is_process_exit(&self) -> bool {
        self.common.tid == self.common.pid
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenEvent {
    #[serde(flatten)]
    pub common: Common,
    /// open, openat, openat2 or creat.
    pub syscall: &'static str,
    /// Directory the path is relative to (`AT_FDCWD` = -100 for the cwd).
    pub dirfd: i32,
    pub path: Captured,
    /// `O_*` flags (creat is `O_CREAT|O_WRONLY|O_TRUNC`).
    pub flags: u64,
    pub mode: u32,
    /// openat2's `RESOLVE_*` flags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve: Option<u64>,
    /// The opened file's path, resolved in the kernel from the new descriptor.
    #[serde(skip_serializing_if = "KernelPath::is_absent")]
    pub kernel_path: KernelPath,
}

/// What the kernel said about an open's file path (`guard_ebpf::FLAG_KPATH`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KernelPath {
    /// Nothing: the open failed (no file), or the record predates kernel paths.
    #[default]
    Absent,
    /// The walk hit a bound or failed: only the path as written is known.
    Unresolved,
    /// The file's path (docs/rules.md, "fd.name").
    Resolved(String),
}

impl KernelPath {
    pub fn is_absent(&self) -> bool {
        *self == KernelPath::Absent
    }
}

/// A socket address from connect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum SockAddr {
    Inet {
        addr: Ipv4Addr,
        port: u16,
    },
    Inet6 {
        addr: Ipv6Addr,
        port: u16,
    },
    Unix {
        path: String,
        abstract_ns: bool,
    },
    Other {
        af: u16,
    },
    /// Unreadable or shorter than its family requires.
    Invalid,
}

impl SockAddr {
    /// The IP destination, for the inet families.
    pub fn socket_addr(&self) -> Option<std::net::SocketAddr> {
        match *self {
            SockAddr::Inet { addr, port } => Some((addr, port).into()),
            SockAddr::Inet6 { addr, port } => Some((addr, port).into()),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectEvent {
    #[serde(flatten)]
    pub common: Common,
    pub fd: i32,
    pub addr: SockAddr,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SocketEvent {
    #[serde(flatten)]
    pub common: Common,
    pub domain: i32,
    /// Socket type without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`.
    pub sock_type: i32,
    pub protocol: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChdirEvent {
    #[serde(flatten)]
    pub common: Common,
    pub syscall: &'static str,
    /// chdir's path; `None` for fchdir.
    pub path: Option<Captured>,
    /// fchdir's fd.
    pub fd: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetIdEvent {
    #[serde(flatten)]
    pub common: Common,
    /// setuid, setgid, setreuid, setregid, setresuid or setresgid.
    pub syscall: &'static str,
    /// The requested ids in argument order; `None` for -1 ("unchanged").
    pub ids: Vec<Option<u32>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PtraceEvent {
    #[serde(flatten)]
    pub common: Common,
    pub request: i64,
    pub target_pid: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnlinkEvent {
    #[serde(flatten)]
    pub common: Common,
    pub syscall: &'static str,
    pub dirfd: i32,
    pub path: Captured,
    pub flags: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenameEvent {
    #[serde(flatten)]
    pub common: Common,
    pub syscall: &'static str,
    pub old_dirfd: i32,
    pub old_path: Captured,
    pub new_dirfd: i32,
    pub new_path: Captured,
    pub flags: u64,
}

/// mkdir, mkdirat, rmdir, mknod, mknodat: a name made or removed without an open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEvent {
    #[serde(flatten)]
    pub common: Common,
    pub syscall: &'static str,
    pub dirfd: i32,
    pub path: Captured,
    /// The mode asked for (`None` for rmdir).
    pub mode: Option<u32>,
    /// mknod's device number.
    pub dev: Option<u64>,
}

/// truncate(2): a file cut or extended by path, without an open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TruncateEvent {
    #[serde(flatten)]
    pub common: Common,
    pub path: Captured,
    pub length: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChmodEvent {
    #[serde(flatten)]
    pub common: Common,
    pub syscall: &'static str,
    /// dirfd for fchmodat/fchmodat2 and chmod (AT_FDCWD); the file's fd for fchmod.
    pub fd: i32,
    /// `None` for fchmod.
    pub path: Option<Captured>,
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkEvent {
    #[serde(flatten)]
    pub common: Common,
    /// link, linkat, symlink or symlinkat.
    pub syscall: &'static str,
    /// The existing file (hard link) or the symlink's content.
    pub target: Captured,
    pub target_dirfd: i32,
    /// The new name.
    pub link_path: Captured,
    pub link_dirfd: i32,
}

impl LinkEvent {
    pub fn is_symlink(&self) -> bool {
        self.syscall.starts_with("sym")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MountEvent {
    #[serde(flatten)]
    pub common: Common,
    pub source: Captured,
    pub target: Captured,
    pub flags: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleLoadEvent {
    #[serde(flatten)]
    pub common: Common,
    /// init_module or finit_module.
    pub syscall: &'static str,
    /// finit_module's fd.
    pub fd: Option<i32>,
    pub params: Captured,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemfdCreateEvent {
    #[serde(flatten)]
    pub common: Common,
    pub name: Captured,
    pub flags: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DupEvent {
    #[serde(flatten)]
    pub common: Common,
    pub syscall: &'static str,
    pub old_fd: i32,
    /// `None` for dup (the kernel picks it; see `ret`).
    pub new_fd: Option<i32>,
    pub flags: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BpfEvent {
    #[serde(flatten)]
    pub common: Common,
    pub cmd: i32,
}

/// A read, write or send (`read`, `write`, `pread64`, `pwrite64`, `sendto`, `recvfrom`,
/// `sendmsg`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IoEvent {
    #[serde(flatten)]
    pub common: Common,
    /// Falco's event type (`pread`/`pwrite` for pread64/pwrite64).
    pub syscall: &'static str,
    pub fd: i32,
    /// The size the caller passed; `None` for sendmsg (its iovecs are not copied).
    pub size: Option<u64>,
    /// The first bytes moved (at most `guard_ebpf::syscalls::BUFFER_MAX`; the result is the
    /// full count); `None` when the call failed or the memory was unreadable.
    pub data: Option<Vec<u8>>,
    /// pread64/pwrite64's file offset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// sendto's or sendmsg's destination; `None` when it passed none (a connected socket).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<SockAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Exec(ExecEvent),
    ExecDenied(ExecDeniedEvent),
    Decision(DecisionEvent),
    Fork(ForkEvent),
    Exit(ExitEvent),
    Open(OpenEvent),
    Connect(ConnectEvent),
    Socket(SocketEvent),
    Chdir(ChdirEvent),
    SetId(SetIdEvent),
    Ptrace(PtraceEvent),
    Unlink(UnlinkEvent),
    Rename(RenameEvent),
    Chmod(ChmodEvent),
    Truncate(TruncateEvent),
    Node(NodeEvent),
    Link(LinkEvent),
    Mount(MountEvent),
    ModuleLoad(ModuleLoadEvent),
    MemfdCreate(MemfdCreateEvent),
    Dup(DupEvent),
    Bpf(BpfEvent),
    Io(IoEvent),
}

impl Event {
    /// The record kind it came from (the unit of drop accounting).
    pub fn record_kind(&self) -> EventKind {
        match self {
            Event::Exec(_) => EventKind::Exec,
            Event::ExecDenied(_) => EventKind::ExecDenied,
            Event::Decision(_) => EventKind::Decision,
            Event::Fork(_) => EventKind::Fork,
            Event::Exit(_) => EventKind::Exit,
            _ => EventKind::Syscall,
        }
    }

    pub fn common(&self) -> &Common {
        match self {
            Event::Exec(e) => &e.common,
            Event::ExecDenied(e) => &e.common,
            Event::Decision(e) => &e.common,
            Event::Fork(e) => &e.common,
            Event::Exit(e) => &e.common,
            Event::Open(e) => &e.common,
            Event::Connect(e) => &e.common,
            Event::Socket(e) => &e.common,
            Event::Chdir(e) => &e.common,
            Event::SetId(e) => &e.common,
            Event::Ptrace(e) => &e.common,
            Event::Unlink(e) => &e.common,
            Event::Rename(e) => &e.common,
            Event::Chmod(e) => &e.common,
            Event::Truncate(e) => &e.common,
            Event::Node(e) => &e.common,
            Event::Link(e) => &e.common,
            Event::Mount(e) => &e.common,
            Event::ModuleLoad(e) => &e.common,
            Event::MemfdCreate(e) => &e.common,
            Event::Dup(e) => &e.common,
            Event::Bpf(e) => &e.common,
            Event::Io(e) => &e.common,
        }
    }
}
