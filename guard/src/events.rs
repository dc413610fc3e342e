//! Decoding ring-buffer records into typed events, one Rust type per kind. Records come from
//! the kernel but are treated as untrusted bytes: a short, inconsistent or unknown record is an
//! error the caller counts and skips, never a panic.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::{SystemTime, UNIX_EPOCH},
};

use guard_ebpf::{
    EventHeader, EventKind, ExecBody, ExecDeniedBody, ExitBody, FLAG_FAULT0, FLAG_FAULT1,
    FLAG_TRUNCATED0, FLAG_TRUNCATED1, ForkBody, PAYLOAD_MAX, SyscallBody, syscalls as sc,
};
use serde::Serialize;

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
    /// `exec`, `open` or `connect`.
    pub op: &'static str,
    /// `deny` (EPERM), `would_deny` (detect mode) or `kill` (fallback backend: SIGKILL).
    pub verdict: &'static str,
    /// `deny_list`, `not_allowed` or `new_binary`.
    pub reason: &'static str,
    /// The resolved path (exec, open); empty for connect.
    pub path: Captured,
    /// For open: `read`, `write` or `read_write`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<&'static str>,
    /// For connect: the destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest: Option<std::net::SocketAddr>,
    /// Device and inode of the file (exec, open), when read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inode: Option<(u64, u64)>,
    /// Self-protection denials (`op` is `signal`, `ptrace`, `protected_file` or `bpf_object`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_protect: Option<SelfProtectDetail>,
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
    Link(LinkEvent),
    Mount(MountEvent),
    ModuleLoad(ModuleLoadEvent),
    MemfdCreate(MemfdCreateEvent),
    Dup(DupEvent),
    Bpf(BpfEvent),
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
            Event::Link(e) => &e.common,
            Event::Mount(e) => &e.common,
            Event::ModuleLoad(e) => &e.common,
            Event::MemfdCreate(e) => &e.common,
            Event::Dup(e) => &e.common,
            Event::Bpf(e) => &e.common,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need} bytes it declares")]
    Short { got: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("record kind {kind} declares a {got}-byte body, expected {want}")]
    BodyLen { kind: u16, got: u32, want: usize },
    #[error("payload length {0} exceeds the maximum")]
    PayloadLen(u16),
    #[error("syscall number {0} is not traced")]
    UnknownSyscall(u32),
}

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime - boottime, in ns, sampled once at start.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
            .unwrap_or(0);
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            offset_ns: real - boot,
        }
    }

    /// For tests and replay: a clock with a known offset.
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// The inverse of `wall_ns`.
    pub fn boot_ns(&self, wall_ns: u64) -> u64 {
        (wall_ns as i128 - self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }

    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        (boot_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }
}

fn read<T: Copy>(buf: &[u8], at: usize) -> Result<T, DecodeError> {
    let need = at.saturating_add(size_of::<T>());
    let bytes = buf.get(at..need).ok_or(DecodeError::Short {
        got: buf.len(),
        need,
    })?;
    // SAFETY: length checked; T is a plain #[repr(C)] record valid for any bytes;
    // read_unaligned because nothing guarantees the slice's alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr() as *const T) })
}

fn cstr_lossy(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn common(h: &EventHeader, clock: &Clock) -> Common {
    Common {
        time_ns: clock.wall_ns(h.boot_ns),
        cgroup_id: CgroupId(h.cgroup_id),
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        loginuid: (h.loginuid != u32::MAX).then_some(h.loginuid),
        comm: cstr_lossy(&h.comm),
        ret: h.ret,
        cpu: h.cpu,
    }
}

/// A validated record: header, body bytes and the two payloads.
struct Parts<'a> {
    header: EventHeader,
    body: &'a [u8],
    p0: &'a [u8],
    p1: &'a [u8],
}

impl Parts<'_> {
    fn captured(&self, slot: usize) -> Captured {
        let (bytes, trunc, fault) = if slot == 0 {
            (self.p0, FLAG_TRUNCATED0, FLAG_FAULT0)
        } else {
            (self.p1, FLAG_TRUNCATED1, FLAG_FAULT1)
        };
        Captured {
            text: cstr_lossy(bytes),
            truncated: self.header.flags & trunc != 0,
            fault: self.header.flags & fault != 0,
        }
    }

    fn body<T: Copy>(&self) -> Result<T, DecodeError> {
        if self.body.len() != size_of::<T>() {
            return Err(DecodeError::BodyLen {
                kind: self.header.kind,
                got: self.header.body_len,
                want: size_of::<T>(),
            });
        }
        read(self.body, 0)
    }
}

fn split(buf: &[u8]) -> Result<Parts<'_>, DecodeError> {
    let header: EventHeader = read(buf, 0)?;
    for len in [header.len0, header.len1] {
        if len as usize > PAYLOAD_MAX {
            return Err(DecodeError::PayloadLen(len));
        }
    }
    let hdr = size_of::<EventHeader>();
    let body_end = hdr.saturating_add(header.body_len as usize);
    let p0_end = body_end.saturating_add(header.len0 as usize);
    let p1_end = p0_end.saturating_add(header.len1 as usize);
    if buf.len() < p1_end {
        return Err(DecodeError::Short {
            got: buf.len(),
            need: p1_end,
        });
    }
    Ok(Parts {
        header,
        body: &buf[hdr..body_end],
        p0: &buf[body_end..p0_end],
        p1: &buf[p0_end..p1_end],
    })
}

fn decode_sockaddr(b: &[u8]) -> SockAddr {
    const AF_UNIX: u16 = 1;
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    let Some(fam) = b.get(0..2).map(|f| u16::from_ne_bytes([f[0], f[1]])) else {
        return SockAddr::Invalid;
    };
    let port = |b: &[u8]| b.get(2..4).map(|p| u16::from_be_bytes([p[0], p[1]]));
    match fam {
        AF_INET => match (port(b), b.get(4..8)) {
            (Some(port), Some(a)) => SockAddr::Inet {
                addr: Ipv4Addr::new(a[0], a[1], a[2], a[3]),
                port,
            },
            _ => SockAddr::Invalid,
        },
        AF_INET6 => match (port(b), b.get(8..24)) {
            (Some(port), Some(a)) => {
                let mut o = [0u8; 16];
                o.copy_from_slice(a);
                SockAddr::Inet6 {
                    addr: Ipv6Addr::from(o),
                    port,
                }
            }
            _ => SockAddr::Invalid,
        },
        AF_UNIX => {
            let path = b.get(2..).unwrap_or(&[]);
            match path.first() {
                // Abstract socket: leading NUL, name is the rest (not NUL-terminated).
                Some(0) => SockAddr::Unix {
                    path: String::from_utf8_lossy(&path[1..])
                        .trim_end_matches('\0')
                        .to_owned(),
                    abstract_ns: true,
                },
                _ => SockAddr::Unix {
                    path: cstr_lossy(path),
                    abstract_ns: false,
                },
            }
        }
        other => SockAddr::Other { af: other },
    }
}

/// A dirfd argument as the kernel reads it (an int in a 64-bit register).
fn fd(v: u64) -> i32 {
    v as u32 as i32
}

/// An id argument to the setid family; -1 means "leave unchanged".
fn id(v: u64) -> Option<u32> {
    let v = v as u32;
    (v != u32::MAX).then_some(v)
}

fn decode_syscall(p: &Parts<'_>, c: Common) -> Result<Event, DecodeError> {
    let body: SyscallBody = p.body()?;
    let a = body.args;
    let name = sc::name(body.nr).ok_or(DecodeError::UnknownSyscall(body.nr))?;
    Ok(match body.nr {
        sc::OPEN | sc::CREAT | sc::OPENAT | sc::OPENAT2 => {
            const O_CREAT_WRONLY_TRUNC: u64 = 0o100 | 0o1 | 0o1000;
            let (dirfd, flags, mode, resolve) = match body.nr {
                sc::OPEN => (AT_FDCWD, a[1], a[2] as u32, None),
                sc::CREAT => (AT_FDCWD, O_CREAT_WRONLY_TRUNC, a[1] as u32, None),
                sc::OPENAT => (fd(a[0]), a[2], a[3] as u32, None),
                _ => {
                    // struct open_how { u64 flags; u64 mode; u64 resolve; }
                    let how = |i: usize| read::<u64>(p.p1, 8 * i).unwrap_or(0);
                    (fd(a[0]), how(0), how(1) as u32, Some(how(2)))
                }
            };
            Event::Open(OpenEvent {
                common: c,
                syscall: name,
                dirfd,
                path: p.captured(0),
                flags,
                mode,
                resolve,
            })
        }
        sc::CONNECT => Event::Connect(ConnectEvent {
            common: c,
            fd: fd(a[0]),
            addr: if p.header.flags & FLAG_FAULT0 != 0 {
                SockAddr::Invalid
            } else {
                decode_sockaddr(p.p0)
            },
        }),
        sc::SOCKET => Event::Socket(SocketEvent {
            common: c,
            domain: a[0] as i32,
            sock_type: (a[1] as i32) & 0xf,
            protocol: a[2] as i32,
        }),
        sc::CHDIR => Event::Chdir(ChdirEvent {
            common: c,
            syscall: name,
            path: Some(p.captured(0)),
            fd: None,
        }),
        sc::FCHDIR => Event::Chdir(ChdirEvent {
            common: c,
            syscall: name,
            path: None,
            fd: Some(fd(a[0])),
        }),
        sc::SETUID | sc::SETGID => Event::SetId(SetIdEvent {
            common: c,
            syscall: name,
            ids: vec![id(a[0])],
        }),
        sc::SETREUID | sc::SETREGID => Event::SetId(SetIdEvent {
            common: c,
            syscall: name,
            ids: vec![id(a[0]), id(a[1])],
        }),
        sc::SETRESUID | sc::SETRESGID => Event::SetId(SetIdEvent {
            common: c,
            syscall: name,
            ids: vec![id(a[0]), id(a[1]), id(a[2])],
        }),
        sc::PTRACE => Event::Ptrace(PtraceEvent {
            common: c,
            request: a[0] as i64,
            target_pid: a[1] as i32,
        }),
        sc::UNLINK | sc::UNLINKAT => {
            let (dirfd, flags) = if body.nr == sc::UNLINK {
                (AT_FDCWD, 0)
            } else {
                (fd(a[0]), a[2])
            };
            Event::Unlink(UnlinkEvent {
                common: c,
                syscall: name,
                dirfd,
                path: p.captured(0),
                flags,
            })
        }
        sc::RENAME | sc::RENAMEAT | sc::RENAMEAT2 => {
            let (od, nd, flags) = match body.nr {
                sc::RENAME => (AT_FDCWD, AT_FDCWD, 0),
                sc::RENAMEAT => (fd(a[0]), fd(a[2]), 0),
                _ => (fd(a[0]), fd(a[2]), a[4]),
            };
            Event::Rename(RenameEvent {
                common: c,
                syscall: name,
                old_dirfd: od,
                old_path: p.captured(0),
                new_dirfd: nd,
                new_path: p.captured(1),
                flags,
            })
        }
        sc::CHMOD => Event::Chmod(ChmodEvent {
            common: c,
            syscall: name,
            fd: AT_FDCWD,
            path: Some(p.captured(0)),
            mode: a[1] as u32,
        }),
        sc::FCHMOD => Event::Chmod(ChmodEvent {
            common: c,
            syscall: name,
            fd: fd(a[0]),
            path: None,
            mode: a[1] as u32,
        }),
        sc::FCHMODAT | sc::FCHMODAT2 => Event::Chmod(ChmodEvent {
            common: c,
            syscall: name,
            fd: fd(a[0]),
            path: Some(p.captured(0)),
            mode: a[2] as u32,
        }),
        sc::LINK | sc::LINKAT | sc::SYMLINK | sc::SYMLINKAT => {
            let (td, ld) = match body.nr {
                sc::LINKAT => (fd(a[0]), fd(a[2])),
                sc::SYMLINKAT => (AT_FDCWD, fd(a[1])),
                _ => (AT_FDCWD, AT_FDCWD),
            };
            Event::Link(LinkEvent {
                common: c,
                syscall: name,
                target: p.captured(0),
                target_dirfd: td,
                link_path: p.captured(1),
                link_dirfd: ld,
            })
        }
        sc::MOUNT => Event::Mount(MountEvent {
            common: c,
            source: p.captured(0),
            target: p.captured(1),
            flags: a[3],
        }),
        sc::INIT_MODULE | sc::FINIT_MODULE => Event::ModuleLoad(ModuleLoadEvent {
            common: c,
            syscall: name,
            fd: (body.nr == sc::FINIT_MODULE).then(|| fd(a[0])),
            params: p.captured(0),
        }),
        sc::MEMFD_CREATE => Event::MemfdCreate(MemfdCreateEvent {
            common: c,
            name: p.captured(0),
            flags: a[1],
        }),
        sc::DUP | sc::DUP2 | sc::DUP3 => Event::Dup(DupEvent {
            common: c,
            syscall: name,
            old_fd: fd(a[0]),
            new_fd: (body.nr != sc::DUP).then(|| fd(a[1])),
            flags: if body.nr == sc::DUP3 { a[2] } else { 0 },
        }),
        sc::BPF => Event::Bpf(BpfEvent {
            common: c,
            cmd: a[0] as i32,
        }),
        other => return Err(DecodeError::UnknownSyscall(other)),
    })
}

fn decision_event(common: Common, b: &guard_ebpf::DecisionBody, path: Captured) -> DecisionEvent {
    use guard_ebpf::{decision_op, reason, verdict};
    let op = match b.op {
        decision_op::EXEC => "exec",
        decision_op::OPEN => "open",
        decision_op::CONNECT => "connect",
        decision_op::SIGNAL => "signal",
        decision_op::PTRACE => "ptrace",
        decision_op::PROTECTED_FILE => "protected_file",
        decision_op::BPF_OBJECT => "bpf_object",
        _ => "unknown",
    };
    let self_protect = (b.reason == reason::SELF_PROTECT).then_some(SelfProtectDetail {
        arg: b.access,
        target: b.ino,
        class: b.addr[0],
    });
    let dest = (b.op == decision_op::CONNECT).then(|| {
        let ip: std::net::IpAddr = if b.family == 4 {
            std::net::Ipv4Addr::new(b.addr[0], b.addr[1], b.addr[2], b.addr[3]).into()
        } else {
            std::net::Ipv6Addr::from(b.addr).into()
        };
        std::net::SocketAddr::new(ip, b.port)
    });
    DecisionEvent {
        common,
        policy_id: b.policy_id,
        op,
        verdict: match b.verdict {
            verdict::DENY => "deny",
            verdict::WOULD_DENY => "would_deny",
            verdict::KILL => "kill",
            _ => "unknown",
        },
        reason: match b.reason {
            reason::DENY_LIST => "deny_list",
            reason::NOT_ALLOWED => "not_allowed",
            reason::NEW_BINARY => "new_binary",
            reason::SELF_PROTECT => "self_protect",
            _ => "unknown",
        },
        path,
        access: (b.op == decision_op::OPEN).then_some(match b.access & 3 {
            1 => "read",
            2 => "write",
            3 => "read_write",
            _ => "none",
        }),
        dest,
        inode: (b.ino != 0
            && matches!(
                b.op,
                decision_op::EXEC | decision_op::OPEN | decision_op::PROTECTED_FILE
            ))
        .then_some((b.dev, b.ino)),
        self_protect,
    }
}

/// Decodes one ring-buffer record.
pub fn decode(buf: &[u8], clock: &Clock) -> Result<Event, DecodeError> {
    let p = split(buf)?;
    let c = common(&p.header, clock);
    match EventKind::from_u16(p.header.kind) {
        Some(EventKind::Exec) => {
            let body: ExecBody = p.body()?;
            // argv strings are NUL-terminated; empty arguments are real arguments.
            let raw = p.p1.strip_suffix(b"\0").unwrap_or(p.p1);
            let argv = if raw.is_empty() {
                Vec::new()
            } else {
                raw.split(|&b| b == 0)
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect()
            };
            Ok(Event::Exec(ExecEvent {
                common: c,
                filename: p.captured(0),
                argv,
                argv_truncated: p.header.flags & FLAG_TRUNCATED1 != 0
                    || body.args_total as usize > p.p1.len(),
            }))
        }
        Some(EventKind::ExecDenied) => {
            let body: ExecDeniedBody = p.body()?;
            Ok(Event::ExecDenied(ExecDeniedEvent {
                common: c,
                policy_id: body.policy_id,
            }))
        }
        Some(EventKind::Decision) => {
            let body: guard_ebpf::DecisionBody = p.body()?;
            Ok(Event::Decision(decision_event(c, &body, p.captured(0))))
        }
        Some(EventKind::Fork) => {
            let body: ForkBody = p.body()?;
            Ok(Event::Fork(ForkEvent {
                common: c,
                child_pid: body.child_pid,
                child_tid: body.child_tid,
            }))
        }
        Some(EventKind::Exit) => {
            let body: ExitBody = p.body()?;
            Ok(Event::Exit(ExitEvent {
                common: c,
                exit_code: body.exit_code,
            }))
        }
        Some(EventKind::Syscall) => decode_syscall(&p, c),
        None => Err(DecodeError::UnknownKind(p.header.kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T>(v: &T) -> &[u8] {
        // SAFETY: viewing a repr(C) value as bytes.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
    }

    fn header(kind: EventKind, body_len: usize, len0: usize, len1: usize) -> EventHeader {
        // SAFETY: all-zero is a valid header.
        let mut h: EventHeader = unsafe { std::mem::zeroed() };
        h.kind = kind as u16;
        h.pid = 42;
        h.tid = 42;
        h.cgroup_id = 7;
        h.boot_ns = 1_000;
        h.loginuid = u32::MAX;
        h.comm[..2].copy_from_slice(b"sh");
        h.body_len = body_len as u32;
        h.len0 = len0 as u16;
        h.len1 = len1 as u16;
        h
    }

    fn record<B>(kind: EventKind, body: &B, p0: &[u8], p1: &[u8]) -> Vec<u8> {
        let h = header(kind, size_of::<B>(), p0.len(), p1.len());
        let mut v = as_bytes(&h).to_vec();
        v.extend_from_slice(as_bytes(body));
        v.extend_from_slice(p0);
        v.extend_from_slice(p1);
        v
    }

    fn syscall(nr: u32, args: [u64; 6], p0: &[u8], p1: &[u8]) -> Vec<u8> {
        record(
            EventKind::Syscall,
            &SyscallBody { nr, _pad: 0, args },
            p0,
            p1,
        )
    }

    fn clock() -> Clock {
        Clock::with_offset(5)
    }

    #[test]
    fn decodes_exec_with_argv() {
        let rec = record(
            EventKind::Exec,
            &ExecBody {
                args_total: 12,
                _pad: 0,
            },
            b"/bin/sh",
            b"sh\0-c\0\0echo\0",
        );
        let ev = decode(&rec, &clock()).expect("decode");
        let Event::Exec(e) = ev else {
            panic!("wrong kind: {ev:?}")
        };
        assert_eq!(e.filename.text, "/bin/sh");
        assert_eq!(e.argv, ["sh", "-c", "", "echo"]);
        assert!(!e.argv_truncated);
        assert_eq!(e.common.pid, 42);
        assert_eq!(e.common.cgroup_id, CgroupId(7));
        assert_eq!(e.common.time_ns, 1_005);
        assert_eq!(e.common.comm, "sh");
        assert_eq!(e.common.loginuid, None);
    }

    #[test]
    fn decodes_openat_and_creat() {
        let rec = syscall(
            sc::OPENAT,
            [AT_FDCWD as u32 as u64, 0, 0o2001, 0o644, 0, 0],
            b"shadow",
            b"",
        );
        let Ok(Event::Open(o)) = decode(&rec, &clock()) else {
            panic!("not an open")
        };
        assert_eq!(
            (o.syscall, o.dirfd, o.flags, o.mode),
            ("openat", AT_FDCWD, 0o2001, 0o644)
        );
        assert_eq!(o.path.text, "shadow");
        let rec = syscall(sc::CREAT, [0, 0o600, 0, 0, 0, 0], b"/tmp/x", b"");
        let Ok(Event::Open(o)) = decode(&rec, &clock()) else {
            panic!("not an open")
        };
        assert_eq!(o.flags, 0o1101);
    }

    #[test]
    fn decodes_connect_families() {
        let mut v4 = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
        v4.extend_from_slice(&[0; 8]);
        let Ok(Event::Connect(c)) = decode(
            &syscall(sc::CONNECT, [3, 0, 16, 0, 0, 0], &v4, b""),
            &clock(),
        ) else {
            panic!("not a connect")
        };
        assert_eq!(
            c.addr,
            SockAddr::Inet {
                addr: Ipv4Addr::LOCALHOST,
                port: 8080
            }
        );
        let mut v6 = vec![10u8, 0, 0, 80, 0, 0, 0, 0];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0; 4]);
        let Ok(Event::Connect(c)) = decode(
            &syscall(sc::CONNECT, [3, 0, 28, 0, 0, 0], &v6, b""),
            &clock(),
        ) else {
            panic!("not a connect")
        };
        assert_eq!(
            c.addr,
            SockAddr::Inet6 {
                addr: Ipv6Addr::LOCALHOST,
                port: 80
            }
        );
        let un = b"\x01\x00/run/x.sock\0";
        let Ok(Event::Connect(c)) = decode(
            &syscall(sc::CONNECT, [3, 0, 14, 0, 0, 0], un, b""),
            &clock(),
        ) else {
            panic!("not a connect")
        };
        assert_eq!(
            c.addr,
            SockAddr::Unix {
                path: "/run/x.sock".into(),
                abstract_ns: false
            }
        );
        let Ok(Event::Connect(c)) = decode(
            &syscall(sc::CONNECT, [3, 0, 1, 0, 0, 0], b"\x02", b""),
            &clock(),
        ) else {
            panic!("not a connect")
        };
        assert_eq!(c.addr, SockAddr::Invalid);
    }

    #[test]
    fn decodes_rename_and_setid() {
        let rec = syscall(
            sc::RENAMEAT2,
            [AT_FDCWD as u32 as u64, 0, 5, 0, 1, 0],
            b"a",
            b"b",
        );
        let Ok(Event::Rename(r)) = decode(&rec, &clock()) else {
            panic!("not a rename")
        };
        assert_eq!(
            (
                r.old_path.text.as_str(),
                r.new_path.text.as_str(),
                r.new_dirfd,
                r.flags
            ),
            ("a", "b", 5, 1)
        );
        let rec = syscall(sc::SETRESUID, [0, u32::MAX as u64, 1000, 0, 0, 0], b"", b"");
        let Ok(Event::SetId(s)) = decode(&rec, &clock()) else {
            panic!("not setid")
        };
        assert_eq!(s.ids, vec![Some(0), None, Some(1000)]);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        let rec = syscall(sc::OPENAT, [0; 6], b"/etc/passwd", b"");
        for cut in 0..rec.len() {
            assert!(decode(&rec[..cut], &clock()).is_err(), "cut at {cut}");
        }
        // Unknown kind.
        let mut bad = rec.clone();
        bad[0] = 0xff;
        bad[1] = 0x7f;
        assert_eq!(
            decode(&bad, &clock()),
            Err(DecodeError::UnknownKind(0x7fff))
        );
        // Payload length beyond the maximum.
        let mut bad = rec.clone();
        let off = std::mem::offset_of!(EventHeader, len0);
        bad[off..off + 2].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(
            decode(&bad, &clock()),
            Err(DecodeError::PayloadLen(u16::MAX))
        );
        // Body length that does not match the kind.
        let mut bad = rec.clone();
        let off = std::mem::offset_of!(EventHeader, body_len);
        bad[off..off + 4].copy_from_slice(&8u32.to_le_bytes());
        assert!(matches!(
            decode(&bad, &clock()),
            Err(DecodeError::BodyLen { .. })
        ));
        // Untraced syscall number.
        let rec = syscall(9999, [0; 6], b"", b"");
        assert_eq!(
            decode(&rec, &clock()),
            Err(DecodeError::UnknownSyscall(9999))
        );
        // Random bytes never panic.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..600 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&buf, &clock());
        }
    }
}
