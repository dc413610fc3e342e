//! Records to events: the header and payload checks, one decoder per kind, and the decision
//! record's typed kinds (an unknown byte is a `DecodeError`, counted by the caller).

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    time::{SystemTime, UNIX_EPOCH},
};

use guard_ebpf::{
    EventHeader, EventKind, ExecBody, ExecDeniedBody, ExitBody, FLAG_FAULT0, FLAG_FAULT1,
    FLAG_KPATH, FLAG_KPATH_CUT, FLAG_TRUNCATED0, FLAG_TRUNCATED1, ForkBody, PAYLOAD_MAX,
    SyscallBody, exec_flags, syscalls as sc,
};

use super::{
    AT_FDCWD, Access, BpfEvent, Captured, CgroupId, ChdirEvent, ChmodEvent, Common, ConnectEvent,
    DecisionEvent, DupEvent, Event, ExeInode, ExecDeniedEvent, ExecEvent, ExitEvent, ForkEvent,
    Hook, IoEvent, KernelPath, LinkEvent, MemfdCreateEvent, ModuleLoadEvent, MountEvent, NodeEvent,
    OpenEvent, Operation, PtraceEvent, Reason, RenameEvent, SelfProtectDetail, SetIdEvent,
    SockAddr, SocketEvent, TruncateEvent, UnknownAccess, UnknownHook, UnknownOperation,
    UnknownReason, UnknownVerdict, UnlinkEvent, Verdict,
};

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
    #[error("exec record with flags {0:#x} or an out-of-range inode time")]
    ExecFlags(u32),
    #[error("open record's kernel path: {0}")]
    KernelPath(&'static str),
    #[error("{got}-byte buffer for a result of {ret}")]
    BufferLen { got: usize, ret: i64 },
    #[error("syscall number {0} is not traced")]
    UnknownSyscall(u32),
    #[error(transparent)]
    UnknownOp(#[from] UnknownOperation),
    #[error(transparent)]
    UnknownVerdict(#[from] UnknownVerdict),
    #[error(transparent)]
    UnknownReason(#[from] UnknownReason),
    #[error(transparent)]
    UnknownHook(#[from] UnknownHook),
    #[error(transparent)]
    UnknownAccess(#[from] UnknownAccess),
    /// Self-protection ops come with reason `self_protect`, and only they do.
    #[error("decision op {op} with reason {reason}")]
    OpReasonMismatch { op: Operation, reason: Reason },
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

/// Now, wall-clock ns since the epoch (0 before it; saturated far after).
pub fn wall_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

pub(super) fn read<T: Copy>(buf: &[u8], at: usize) -> Result<T, DecodeError> {
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
    /// What follows payload 1 (exec's environment; its length is in the body).
    tail: &'a [u8],
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
        tail: &buf[p1_end..],
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

/// The kernel-resolved path of an open record: payload 1 (after openat2's `open_how`) when
/// `FLAG_KPATH` is set. Both flags at once, or a path that is empty, not absolute, or holds a
/// NUL, is a malformed record.
fn kernel_path(p: &Parts<'_>, openat2: bool) -> Result<KernelPath, DecodeError> {
    let f = p.header.flags;
    match (f & FLAG_KPATH != 0, f & FLAG_KPATH_CUT != 0) {
        (false, false) => Ok(KernelPath::Absent),
        (false, true) => Ok(KernelPath::Unresolved),
        (true, true) => Err(DecodeError::KernelPath("both resolved and cut")),
        (true, false) => {
            let skip = if openat2 {
                sc::OPEN_HOW_LEN as usize
            } else {
                0
            };
            let b =
                p.p1.get(skip..)
                    .ok_or(DecodeError::KernelPath("shorter than open_how"))?;
            if b.first() != Some(&b'/') || b.contains(&0) {
                return Err(DecodeError::KernelPath("not an absolute path"));
            }
            Ok(KernelPath::Resolved(
                String::from_utf8_lossy(b).into_owned(),
            ))
        }
    }
}

/// NUL-terminated strings (argv, the environment); empty ones are real entries.
fn nul_separated(b: &[u8]) -> Vec<String> {
    let raw = b.strip_suffix(b"\0").unwrap_or(b);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// The environment's entries; when it was cut (at `PAYLOAD_MAX` bytes, by the kernel at exec
/// or by the agent reading `/proc/PID/environ`), without the last entry unless the cut fell
/// right after a NUL (a cut entry would be a made-up value).
pub fn env(b: &[u8], cut: bool) -> Vec<String> {
    let mut v = nul_separated(b);
    if cut && !b.ends_with(b"\0") {
        v.pop();
    }
    v
}

/// The executed file's inode of an exec record. Unknown flag bits, or nanoseconds of a
/// second or more, are a malformed record.
fn exe_inode(b: &ExecBody) -> Result<Option<ExeInode>, DecodeError> {
    if b.flags & !(exec_flags::EXE_INODE | exec_flags::ENV_FAULT | exec_flags::PIDNS_START) != 0 {
        return Err(DecodeError::ExecFlags(b.flags));
    }
    if b.flags & exec_flags::EXE_INODE == 0 {
        return Ok(None);
    }
    let ns = |sec: i64, nsec: u32| -> Result<Option<u64>, DecodeError> {
        if nsec >= 1_000_000_000 {
            return Err(DecodeError::ExecFlags(b.flags));
        }
        Ok(u64::try_from(sec)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .and_then(|s| s.checked_add(nsec.into())))
    };
    Ok(Some(ExeInode {
        ino: b.exe_ino,
        ctime_ns: ns(b.exe_ctime_sec, b.exe_ctime_nsec)?,
        mtime_ns: ns(b.exe_mtime_sec, b.exe_mtime_nsec)?,
    }))
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
            let kernel_path = kernel_path(p, body.nr == sc::OPENAT2)?;
            Event::Open(OpenEvent {
                common: c,
                syscall: name,
                dirfd,
                path: p.captured(0),
                flags,
                mode,
                resolve,
                kernel_path,
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
        sc::MKDIR | sc::MKDIRAT | sc::RMDIR | sc::MKNOD | sc::MKNODAT => {
            let at = matches!(body.nr, sc::MKDIRAT | sc::MKNODAT);
            // The arguments after the path: (mode) for mkdir, (mode, dev) for mknod.
            let rest = if at { &a[2..] } else { &a[1..] };
            Event::Node(NodeEvent {
                common: c,
                syscall: name,
                dirfd: if at { fd(a[0]) } else { AT_FDCWD },
                path: p.captured(0),
                mode: (body.nr != sc::RMDIR).then_some(rest[0] as u32),
                dev: matches!(body.nr, sc::MKNOD | sc::MKNODAT).then_some(rest[1]),
            })
        }
        sc::TRUNCATE => Event::Truncate(TruncateEvent {
            common: c,
            path: p.captured(0),
            length: a[1] as i64,
        }),
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
        sc::READ
        | sc::WRITE
        | sc::PREAD64
        | sc::PWRITE64
        | sc::SENDTO
        | sc::RECVFROM
        | sc::SENDMSG => {
            let data = io_data(p, body.nr == sc::SENDMSG)?;
            let fault = p.header.flags & FLAG_FAULT1 != 0;
            // The destination, when the call passed one: a null pointer or length 0 is none.
            // (sendmsg's entry put `msg_name` and its length in arguments 3 and 4.)
            let given = match body.nr {
                sc::SENDTO => a[4] != 0 && a[5] != 0,
                sc::SENDMSG => a[3] != 0 && a[4] != 0,
                _ => false,
            };
            let dest = given.then(|| {
                if fault {
                    SockAddr::Invalid
                } else {
                    decode_sockaddr(p.p1)
                }
            });
            Event::Io(IoEvent {
                fd: fd(a[0]),
                syscall: sc::event_type(name),
                size: (body.nr != sc::SENDMSG).then_some(a[2]),
                data,
                offset: matches!(body.nr, sc::PREAD64 | sc::PWRITE64).then_some(a[3]),
                dest,
                common: c,
            })
        }
        other => return Err(DecodeError::UnknownSyscall(other)),
    })
}

/// The data payload of a read, write or send: exactly min(result, `BUFFER_MAX`) bytes (at
/// most that for sendmsg, whose first iovec may hold fewer), none for a failed call; anything
/// else is a malformed record.
fn io_data(p: &Parts<'_>, at_most: bool) -> Result<Option<Vec<u8>>, DecodeError> {
    let ret = p.header.ret;
    let bad = || DecodeError::BufferLen {
        got: p.p0.len(),
        ret,
    };
    if ret < 0 {
        return if p.p0.is_empty() {
            Ok(None)
        } else {
            Err(bad())
        };
    }
    if p.header.flags & FLAG_FAULT0 != 0 {
        return if p.p0.is_empty() {
            Ok(None)
        } else {
            Err(bad())
        };
    }
    let want = ret.min(i64::from(sc::BUFFER_MAX)) as usize;
    if p.p0.len() > want || (p.p0.len() < want && !at_most) {
        return Err(bad());
    }
    Ok(Some(p.p0.to_vec()))
}

fn decision_event(
    common: Common,
    b: &guard_ebpf::DecisionBody,
    path: Captured,
) -> Result<DecisionEvent, DecodeError> {
    let op = Operation::try_from(b.op)?;
    let verdict = Verdict::try_from(b.verdict)?;
    let reason = Reason::try_from(b.reason)?;
    let hook = Hook::try_from(b.hook)?;
    let self_protect = reason == Reason::SelfProtect;
    if op.is_self_protect() != self_protect {
        return Err(DecodeError::OpReasonMismatch { op, reason });
    }
    let access = match op {
        Operation::Open => Some(Access::try_from(b.access)?),
        _ => None,
    };
    let dest = matches!(op, Operation::Connect | Operation::Sendmsg).then(|| {
        let ip: std::net::IpAddr = if b.family == 4 {
            Ipv4Addr::new(b.addr[0], b.addr[1], b.addr[2], b.addr[3]).into()
        } else {
            Ipv6Addr::from(b.addr).into()
        };
        std::net::SocketAddr::new(ip, b.port)
    });
    let has_inode = matches!(
        op,
        Operation::Exec | Operation::Open | Operation::ProtectedFile
    );
    Ok(DecisionEvent {
        common,
        policy_id: b.policy_id,
        op,
        verdict,
        reason,
        hook,
        path,
        access,
        dest,
        inode: (b.ino != 0 && has_inode).then_some((b.dev, b.ino)),
        self_protect: self_protect.then_some(SelfProtectDetail {
            arg: b.access,
            target: b.ino,
            class: b.addr[0],
        }),
        kill_error: (verdict == Verdict::KillFailed).then(|| {
            let errno = i32::try_from(b.access).unwrap_or(i32::MAX);
            format!(
                "bpf_send_signal: {}",
                std::io::Error::from_raw_os_error(errno)
            )
        }),
    })
}

/// Decodes one ring-buffer record.
pub fn decode(buf: &[u8], clock: &Clock) -> Result<Event, DecodeError> {
    let p = split(buf)?;
    let c = common(&p.header, clock);
    match EventKind::from_u16(p.header.kind) {
        Some(EventKind::Exec) => {
            let body: ExecBody = p.body()?;
            let argv = nul_separated(p.p1);
            let env_len = body.env_len as usize;
            if env_len > PAYLOAD_MAX || env_len > body.env_total as usize {
                return Err(DecodeError::ExecFlags(body.flags));
            }
            let env_bytes = p.tail.get(..env_len).ok_or(DecodeError::Short {
                got: p.tail.len(),
                need: env_len,
            })?;
            Ok(Event::Exec(ExecEvent {
                common: c,
                filename: p.captured(0),
                argv,
                argv_truncated: p.header.flags & FLAG_TRUNCATED1 != 0
                    || body.args_total as usize > p.p1.len(),
                exe_inode: exe_inode(&body)?,
                pidns_start_ns: (body.flags & exec_flags::PIDNS_START != 0)
                    .then(|| clock.wall_ns(body.pidns_start_boot_ns)),
                env: env(env_bytes, body.env_len < body.env_total),
                env_truncated: body.flags & exec_flags::ENV_FAULT != 0
                    || body.env_len < body.env_total,
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
            Ok(Event::Decision(decision_event(c, &body, p.captured(0))?))
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
