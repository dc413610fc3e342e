//! The traced syscalls (x86_64 numbers) and, for each, which user memory the exit program copies
//! into the record's two payloads. The kernel side and the decoder both read this table.

pub const READ: u32 = 0;
pub const WRITE: u32 = 1;
pub const PREAD64: u32 = 17;
pub const PWRITE64: u32 = 18;
pub const DUP: u32 = 32;
pub const DUP2: u32 = 33;
pub const SOCKET: u32 = 41;
pub const CONNECT: u32 = 42;
pub const SENDTO: u32 = 44;
pub const RECVFROM: u32 = 45;
pub const SENDMSG: u32 = 46;
pub const OPEN: u32 = 2;
pub const TRUNCATE: u32 = 76;
pub const CHDIR: u32 = 80;
pub const FCHDIR: u32 = 81;
pub const RENAME: u32 = 82;
pub const MKDIR: u32 = 83;
pub const RMDIR: u32 = 84;
pub const CREAT: u32 = 85;
pub const LINK: u32 = 86;
pub const UNLINK: u32 = 87;
pub const SYMLINK: u32 = 88;
pub const CHMOD: u32 = 90;
pub const FCHMOD: u32 = 91;
pub const PTRACE: u32 = 101;
pub const SETUID: u32 = 105;
pub const SETGID: u32 = 106;
pub const SETREUID: u32 = 113;
pub const SETREGID: u32 = 114;
pub const SETRESUID: u32 = 117;
pub const SETRESGID: u32 = 119;
pub const MKNOD: u32 = 133;
pub const MOUNT: u32 = 165;
pub const INIT_MODULE: u32 = 175;
pub const OPENAT: u32 = 257;
pub const MKDIRAT: u32 = 258;
pub const MKNODAT: u32 = 259;
pub const UNLINKAT: u32 = 263;
pub const RENAMEAT: u32 = 264;
pub const LINKAT: u32 = 265;
pub const SYMLINKAT: u32 = 266;
pub const FCHMODAT: u32 = 268;
pub const DUP3: u32 = 292;
pub const FINIT_MODULE: u32 = 313;
pub const RENAMEAT2: u32 = 316;
pub const MEMFD_CREATE: u32 = 319;
pub const BPF: u32 = 321;
pub const OPENAT2: u32 = 437;
pub const FCHMODAT2: u32 = 452;

/// Traced syscalls a kernel may be built without (only a weak `__x64_sys_<name>` stub returning
/// ENOSYS, and no `syscalls/sys_*_<name>` tracepoints), with the fexit program on that stub
/// (`programs/syscall_fexit.rs`) that captures them without the `raw_syscalls` pair.
pub const VIA_FEXIT: &[(u32, &str)] = &[
    (INIT_MODULE, "sys_fexit_init_module"),
    (FINIT_MODULE, "sys_fexit_finit_module"),
    (MEMFD_CREATE, "sys_fexit_memfd_create"),
];

/// The kernel function behind x86_64 syscall `name` (what `VIA_FEXIT`'s programs attach to).
pub const KERNEL_FN_PREFIX: &str = "__x64_sys_";

/// Largest sockaddr copied (sockaddr_storage is 128 bytes).
pub const SOCKADDR_MAX: u32 = 128;
/// Bytes of a read or written buffer copied (`evt.buffer`): Falco's default snaplen.
pub const BUFFER_MAX: u32 = 80;
/// Size of `struct open_how` (flags, mode, resolve).
pub const OPEN_HOW_LEN: u32 = 24;

/// What one payload slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    None,
    /// NUL-terminated user string at argument `arg`.
    Str {
        arg: u8,
    },
    /// `len_arg` bytes (at most `max`) of user memory at argument `arg`.
    Bytes {
        arg: u8,
        len_arg: u8,
        max: u32,
    },
    /// Exactly `len` bytes of user memory at argument `arg`.
    Fixed {
        arg: u8,
        len: u32,
    },
    /// The first min(result, argument `cap_arg`, `max`) bytes of user memory at argument
    /// `arg`, read at exit (the bytes a read filled, a write took); nothing when the result is
    /// negative.
    Result {
        arg: u8,
        cap_arg: u8,
        max: u32,
    },
}

/// `struct msghdr` (x86_64): `msg_name` at 0, `msg_namelen` (int) at 8, `msg_iov` at 16; an
/// iovec is `iov_base` at 0, `iov_len` at 8. At sendmsg's entry the capture program reads
/// them into the record's arguments, which it has no other use for: argument 2 (the flags)
/// becomes the first iovec's base, 3 `msg_name`, 4 `msg_namelen`, 5 the first iovec's length
/// (so the exit copies with the plain payload kinds, which keeps the program within the
/// verifier's budget).
pub const MSGHDR_NAMELEN: usize = 8;
pub const MSGHDR_IOV: usize = 16;

/// Syscall name as used in tracefs (`sys_enter_<name>`) and, for most, Falco's `evt.type`.
pub struct Syscall {
    pub nr: u32,
    pub name: &'static str,
    pub payloads: [Payload; 2],
}

const fn s(arg: u8) -> Payload {
    Payload::Str { arg }
}
const N: Payload = Payload::None;
/// The data of a read, write or send: its first bytes, by the result.
const DATA: Payload = Payload::Result {
    arg: 1,
    cap_arg: 2,
    max: BUFFER_MAX,
};
/// sendmsg's data and destination, from the arguments its entry rewrote (`MSGHDR_IOV`).
const MSG_DATA: Payload = Payload::Result {
    arg: 2,
    cap_arg: 5,
    max: BUFFER_MAX,
};
const MSG_NAME: Payload = Payload::Bytes {
    arg: 3,
    len_arg: 4,
    max: SOCKADDR_MAX,
};
/// sendto's destination (arguments 4 and 5).
const SENDTO_ADDR: Payload = Payload::Bytes {
    arg: 4,
    len_arg: 5,
    max: SOCKADDR_MAX,
};

/// Every syscall guard traces besides exec, fork and exit.
pub const TRACED: &[Syscall] = &[
    Syscall {
        nr: OPEN,
        name: "open",
        payloads: [s(0), N],
    },
    Syscall {
        nr: CREAT,
        name: "creat",
        payloads: [s(0), N],
    },
    Syscall {
        nr: OPENAT,
        name: "openat",
        payloads: [s(1), N],
    },
    Syscall {
        nr: OPENAT2,
        name: "openat2",
        payloads: [
            s(1),
            Payload::Fixed {
                arg: 2,
                len: OPEN_HOW_LEN,
            },
        ],
    },
    Syscall {
        nr: CONNECT,
        name: "connect",
        payloads: [
            Payload::Bytes {
                arg: 1,
                len_arg: 2,
                max: SOCKADDR_MAX,
            },
            N,
        ],
    },
    Syscall {
        nr: SOCKET,
        name: "socket",
        payloads: [N, N],
    },
    Syscall {
        nr: CHDIR,
        name: "chdir",
        payloads: [s(0), N],
    },
    Syscall {
        nr: FCHDIR,
        name: "fchdir",
        payloads: [N, N],
    },
    Syscall {
        nr: SETUID,
        name: "setuid",
        payloads: [N, N],
    },
    Syscall {
        nr: SETGID,
        name: "setgid",
        payloads: [N, N],
    },
    Syscall {
        nr: SETREUID,
        name: "setreuid",
        payloads: [N, N],
    },
    Syscall {
        nr: SETREGID,
        name: "setregid",
        payloads: [N, N],
    },
    Syscall {
        nr: SETRESUID,
        name: "setresuid",
        payloads: [N, N],
    },
    Syscall {
        nr: SETRESGID,
        name: "setresgid",
        payloads: [N, N],
    },
    Syscall {
        nr: PTRACE,
        name: "ptrace",
        payloads: [N, N],
    },
    Syscall {
        nr: UNLINK,
        name: "unlink",
        payloads: [s(0), N],
    },
    Syscall {
        nr: UNLINKAT,
        name: "unlinkat",
        payloads: [s(1), N],
    },
    Syscall {
        nr: RENAME,
        name: "rename",
        payloads: [s(0), s(1)],
    },
    Syscall {
        nr: RENAMEAT,
        name: "renameat",
        payloads: [s(1), s(3)],
    },
    Syscall {
        nr: RENAMEAT2,
        name: "renameat2",
        payloads: [s(1), s(3)],
    },
    Syscall {
        nr: CHMOD,
        name: "chmod",
        payloads: [s(0), N],
    },
    Syscall {
        nr: TRUNCATE,
        name: "truncate",
        payloads: [s(0), N],
    },
    Syscall {
        nr: MKDIR,
        name: "mkdir",
        payloads: [s(0), N],
    },
    Syscall {
        nr: MKDIRAT,
        name: "mkdirat",
        payloads: [s(1), N],
    },
    Syscall {
        nr: RMDIR,
        name: "rmdir",
        payloads: [s(0), N],
    },
    Syscall {
        nr: MKNOD,
        name: "mknod",
        payloads: [s(0), N],
    },
    Syscall {
        nr: MKNODAT,
        name: "mknodat",
        payloads: [s(1), N],
    },
    Syscall {
        nr: FCHMOD,
        name: "fchmod",
        payloads: [N, N],
    },
    Syscall {
        nr: FCHMODAT,
        name: "fchmodat",
        payloads: [s(1), N],
    },
    Syscall {
        nr: FCHMODAT2,
        name: "fchmodat2",
        payloads: [s(1), N],
    },
    Syscall {
        nr: SYMLINK,
        name: "symlink",
        payloads: [s(0), s(1)],
    },
    Syscall {
        nr: SYMLINKAT,
        name: "symlinkat",
        payloads: [s(0), s(2)],
    },
    Syscall {
        nr: LINK,
        name: "link",
        payloads: [s(0), s(1)],
    },
    Syscall {
        nr: LINKAT,
        name: "linkat",
        payloads: [s(1), s(3)],
    },
    Syscall {
        nr: MOUNT,
        name: "mount",
        payloads: [s(0), s(1)],
    },
    Syscall {
        nr: INIT_MODULE,
        name: "init_module",
        payloads: [s(2), N],
    },
    Syscall {
        nr: FINIT_MODULE,
        name: "finit_module",
        payloads: [s(1), N],
    },
    Syscall {
        nr: MEMFD_CREATE,
        name: "memfd_create",
        payloads: [s(0), N],
    },
    Syscall {
        nr: DUP,
        name: "dup",
        payloads: [N, N],
    },
    Syscall {
        nr: DUP2,
        name: "dup2",
        payloads: [N, N],
    },
    Syscall {
        nr: DUP3,
        name: "dup3",
        payloads: [N, N],
    },
    Syscall {
        nr: BPF,
        name: "bpf",
        payloads: [N, N],
    },
    Syscall {
        nr: READ,
        name: "read",
        payloads: [DATA, N],
    },
    Syscall {
        nr: WRITE,
        name: "write",
        payloads: [DATA, N],
    },
    Syscall {
        nr: PREAD64,
        name: "pread64",
        payloads: [DATA, N],
    },
    Syscall {
        nr: PWRITE64,
        name: "pwrite64",
        payloads: [DATA, N],
    },
    Syscall {
        nr: SENDTO,
        name: "sendto",
        payloads: [DATA, SENDTO_ADDR],
    },
    Syscall {
        nr: RECVFROM,
        name: "recvfrom",
        payloads: [DATA, N],
    },
    Syscall {
        nr: SENDMSG,
        name: "sendmsg",
        payloads: [MSG_DATA, MSG_NAME],
    },
];

/// The data syscalls (`evt.buffer`): traced only for a rule that names their type, since
/// they are the busiest syscalls of most hosts.
pub const DATA_SYSCALLS: [u32; 7] = [READ, WRITE, PREAD64, PWRITE64, SENDTO, RECVFROM, SENDMSG];

/// The payload spec of a syscall; `None` for syscalls guard does not trace.
///
/// A `match` rather than a search of `TRACED` so that the eBPF program compiles it to a few
/// comparisons the verifier can follow.
#[inline(always)]
pub const fn spec(nr: u32) -> Option<[Payload; 2]> {
    Some(match nr {
        OPEN | CREAT | CHDIR | UNLINK | CHMOD | TRUNCATE | MKDIR | RMDIR | MKNOD | MEMFD_CREATE => {
            [s(0), N]
        }
        OPENAT | UNLINKAT | FCHMODAT | FCHMODAT2 | MKDIRAT | MKNODAT | FINIT_MODULE => [s(1), N],
        OPENAT2 => [
            s(1),
            Payload::Fixed {
                arg: 2,
                len: OPEN_HOW_LEN,
            },
        ],
        CONNECT => [
            Payload::Bytes {
                arg: 1,
                len_arg: 2,
                max: SOCKADDR_MAX,
            },
            N,
        ],
        RENAME | SYMLINK | LINK | MOUNT => [s(0), s(1)],
        RENAMEAT | RENAMEAT2 | LINKAT => [s(1), s(3)],
        SYMLINKAT => [s(0), s(2)],
        INIT_MODULE => [s(2), N],
        READ | WRITE | PREAD64 | PWRITE64 | RECVFROM => [DATA, N],
        SENDTO => [DATA, SENDTO_ADDR],
        SENDMSG => [MSG_DATA, MSG_NAME],
        SOCKET | FCHDIR | SETUID | SETGID | SETREUID | SETREGID | SETRESUID | SETRESGID
        | PTRACE | FCHMOD | DUP | DUP2 | DUP3 | BPF => [N, N],
        _ => return None,
    })
}

/// Falco's `evt.type` of a traced syscall named `name` (its tracefs name but for
/// pread64/pwrite64, which Falco calls pread/pwrite).
pub fn event_type(name: &str) -> &str {
    match name {
        "pread64" => "pread",
        "pwrite64" => "pwrite",
        other => other,
    }
}

/// The tracefs name of a traced syscall.
pub fn name(nr: u32) -> Option<&'static str> {
    TRACED.iter().find(|s| s.nr == nr).map(|s| s.name)
}
