//! The typed kinds of a decision record: each byte the kernel writes (`guard_ebpf::decision_op`,
//! `verdict`, `reason`, `hook`, and open's access mode) becomes an enum once, in `decode`. A
//! byte no variant names is an error (`TryFrom`), never a default. `as_str` and the serde form
//! are the strings records, alerts and metrics have always used.

use guard_ebpf::{decision_op, hook, reason, verdict};
use serde::{Deserialize, Serialize};

/// One kind: the enum, its `TryFrom<$raw>` error, `as_str`, `byte` and `Display`. `wire`
/// variants are what kernel records carry; `userspace` variants only the agent produces (they
/// have no byte, so no record can claim them).
macro_rules! kind {
    (
        $(#[$meta:meta])*
        $name:ident($raw:ty), $err:ident, $what:literal,
        wire { $($(#[$wm:meta])* $var:ident = $byte:expr => $s:literal,)* }
        userspace { $($(#[$um:meta])* $uvar:ident => $us:literal,)* }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$wm])* $var,)*
            $($(#[$um])* $uvar,)*
        }

        #[doc = concat!("A ", $what, " value no `", stringify!($name), "` names.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
        #[error("unknown {} {}", $what, .0)]
        pub struct $err(pub $raw);

        impl $name {
            /// Every variant, wire ones first.
            pub const ALL: &[$name] = &[$($name::$var,)* $($name::$uvar,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s,)*
                    $($name::$uvar => $us,)*
                }
            }

            /// The value a kernel record carries for it; `None` for userspace-only variants.
            pub fn byte(self) -> Option<$raw> {
                match self {
                    $($name::$var => Some($byte),)*
                    $($name::$uvar => None,)*
                }
            }
        }

        impl TryFrom<$raw> for $name {
            type Error = $err;

            fn try_from(v: $raw) -> Result<Self, $err> {
                $(if v == $byte {
                    return Ok($name::$var);
                })*
                Err($err(v))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

kind! {
    /// What the decided operation was (`guard_ebpf::decision_op`).
    Operation(u8), UnknownOperation, "decision op",
    wire {
        Exec = decision_op::EXEC => "exec",
        Open = decision_op::OPEN => "open",
        Connect = decision_op::CONNECT => "connect",
        /// Self-protection: a signal to the agent.
        Signal = decision_op::SIGNAL => "signal",
        /// Self-protection: ptrace-class access to the agent.
        Ptrace = decision_op::PTRACE => "ptrace",
        /// Self-protection: read or write permission on a protected inode.
        ProtectedFile = decision_op::PROTECTED_FILE => "protected_file",
        /// Self-protection: a file descriptor for one of guard's BPF objects by id.
        BpfObject = decision_op::BPF_OBJECT => "bpf_object",
        /// A UDP datagram with a destination on an unconnected socket.
        Sendmsg = decision_op::SENDMSG => "sendmsg",
        /// A change other than an open for write (issue 15): truncate, create, link, rename,
        /// unlink, mkdir, rmdir, symlink, mknod, chmod, chown, xattrs; the hook says which.
        Write = decision_op::WRITE => "write",
    }
    userspace {}
}

impl Operation {
    /// One of the self-protection operations (they come with `Reason::SelfProtect` only).
    pub fn is_self_protect(self) -> bool {
        match self {
            Operation::Exec
            | Operation::Open
            | Operation::Connect
            | Operation::Sendmsg
            | Operation::Write => false,
            Operation::Signal
            | Operation::Ptrace
            | Operation::ProtectedFile
            | Operation::BpfObject => true,
        }
    }
}

kind! {
    /// What was done about it (`guard_ebpf::verdict`).
    Verdict(u8), UnknownVerdict, "decision verdict",
    wire {
        /// Enforce mode, BPF LSM: the operation failed with EPERM.
        Deny = verdict::DENY => "deny",
        /// Detect mode: enforce mode would have denied it.
        WouldDeny = verdict::WOULD_DENY => "would_deny",
        /// Enforce mode, fallback backend: the process was sent SIGKILL (by the agent: and
        /// it died).
        Kill = verdict::KILL => "kill",
        /// Enforce mode, fallback backend: the kill was not sent or did not end the process
        /// (`DecisionEvent::kill_error` says why).
        KillFailed = verdict::KILL_FAILED => "kill_failed",
    }
    userspace {}
}

kind! {
    /// Why (`guard_ebpf::reason`).
    Reason(u8), UnknownReason, "decision reason",
    wire {
        DenyList = reason::DENY_LIST => "deny_list",
        NotAllowed = reason::NOT_ALLOWED => "not_allowed",
        NewBinary = reason::NEW_BINARY => "new_binary",
        SelfProtect = reason::SELF_PROTECT => "self_protect",
    }
    userspace {}
}

kind! {
    /// The program that decided (`guard_ebpf::hook`), or the agent itself.
    Hook(u8), UnknownHook, "decision hook",
    wire {
        BprmCheckSecurity = hook::BPRM_CHECK_SECURITY => "bprm_check_security",
        FileOpen = hook::FILE_OPEN => "file_open",
        SocketConnect = hook::SOCKET_CONNECT => "socket_connect",
        /// The fallback backend's SIGKILL at exec.
        SchedProcessExec = hook::SCHED_PROCESS_EXEC => "sched_process_exec",
        TaskKill = hook::TASK_KILL => "task_kill",
        PtraceAccessCheck = hook::PTRACE_ACCESS_CHECK => "ptrace_access_check",
        InodePermission = hook::INODE_PERMISSION => "inode_permission",
        Bpf = hook::BPF => "bpf",
        /// A detect-mode open decision at the open's exit (`fanotify` backend).
        OpenExit = hook::OPEN_EXIT => "open_exit",
        /// cgroup sock_addr programs at the cgroup v2 root (connect and sendmsg policy).
        CgroupConnect4 = hook::CGROUP_CONNECT4 => "cgroup_connect4",
        CgroupConnect6 = hook::CGROUP_CONNECT6 => "cgroup_connect6",
        CgroupSendmsg4 = hook::CGROUP_SENDMSG4 => "cgroup_sendmsg4",
        CgroupSendmsg6 = hook::CGROUP_SENDMSG6 => "cgroup_sendmsg6",
        // Issue 15: every way to modify a file, and executable mappings.
        PathTruncate = hook::PATH_TRUNCATE => "path_truncate",
        FileTruncate = hook::FILE_TRUNCATE => "file_truncate",
        InodeCreate = hook::INODE_CREATE => "inode_create",
        InodeMknod = hook::INODE_MKNOD => "inode_mknod",
        InodeLink = hook::INODE_LINK => "inode_link",
        InodeUnlink = hook::INODE_UNLINK => "inode_unlink",
        InodeSymlink = hook::INODE_SYMLINK => "inode_symlink",
        InodeMkdir = hook::INODE_MKDIR => "inode_mkdir",
        InodeRmdir = hook::INODE_RMDIR => "inode_rmdir",
        InodeRename = hook::INODE_RENAME => "inode_rename",
        PathChmod = hook::PATH_CHMOD => "path_chmod",
        PathChown = hook::PATH_CHOWN => "path_chown",
        InodeSetxattr = hook::INODE_SETXATTR => "inode_setxattr",
        InodeRemovexattr = hook::INODE_REMOVEXATTR => "inode_removexattr",
        MmapFile = hook::MMAP_FILE => "mmap_file",
        FileMprotect = hook::FILE_MPROTECT => "file_mprotect",
    }
    userspace {
        /// The agent, after a traced open or connect completed (fallback backend's open and
        /// connect rules).
        AfterSyscall => "after_syscall",
        /// The `fanotify` backend's answer to an open's permission event.
        FanotifyOpenPerm => "fanotify_open_perm",
        /// The `fanotify` backend's answer to exec's open of the binary.
        FanotifyOpenExecPerm => "fanotify_open_exec_perm",
        /// The `fanotify` backend: the kernel refused a name change (unlink, rename, link,
        /// symlink, create) in a directory the agent sealed (immutable); the agent recorded
        /// the syscall's EPERM.
        SealedDirectory => "sealed_directory",
        /// The `fanotify` backend: the kernel refused a change of a file the agent sealed
        /// (an exact `deny_write` rule's or one below a `DIR/**` rule: open for write,
        /// truncate, unlink, rename, link, chmod); the agent recorded the syscall's EPERM.
        SealedFile => "sealed_file",
        /// The `fanotify` backend: a file the writer's enforced policy denies writing was
        /// modified without an open that asked (truncate(2) by any name, a write through a
        /// descriptor opened before the policy); the agent killed the writer after the fact.
        FanotifyModify => "fanotify_modify",
    }
}

kind! {
    /// The access an open asked for: `file.f_mode & (FMODE_READ | FMODE_WRITE)`.
    Access(u32), UnknownAccess, "open access mode",
    wire {
        None = 0 => "none",
        Read = 1 => "read",
        Write = 2 => "write",
        ReadWrite = 3 => "read_write",
    }
    userspace {}
}

impl Access {
    /// From whether the open reads and whether it writes.
    pub fn from_rw(read: bool, write: bool) -> Self {
        match (read, write) {
            (false, false) => Access::None,
            (true, false) => Access::Read,
            (false, true) => Access::Write,
            (true, true) => Access::ReadWrite,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant with a byte decodes from it, every other byte below `limit` is an error,
    /// and the serde form is `as_str`.
    fn check<K, R>(all: &[K], byte: impl Fn(K) -> Option<R>, limit: R)
    where
        K: Copy + std::fmt::Debug + PartialEq + Serialize + TryFrom<R> + std::fmt::Display,
        <K as TryFrom<R>>::Error: std::fmt::Debug + PartialEq,
        R: Copy + PartialEq + Into<u64> + TryFrom<u64> + std::fmt::Debug,
        <R as TryFrom<u64>>::Error: std::fmt::Debug,
    {
        let mut wire = 0;
        for &k in all {
            assert_eq!(
                serde_json::to_value(k).expect("serializes"),
                serde_json::Value::String(k.to_string()),
                "{k:?}"
            );
            if let Some(b) = byte(k) {
                wire += 1;
                assert_eq!(K::try_from(b).ok(), Some(k), "{k:?} from {b:?}");
            }
        }
        assert!(wire > 0);
        let mut known = 0;
        for v in 0..=limit.into() {
            let raw = R::try_from(v).expect("in range");
            match K::try_from(raw) {
                Ok(k) => {
                    known += 1;
                    assert_eq!(byte(k), Some(raw), "{k:?} is not byte {v}");
                }
                Err(_) => assert!(all.iter().all(|&k| byte(k) != Some(raw)), "byte {v}"),
            }
        }
        assert_eq!(known, wire, "each wire byte decodes to exactly one variant");
    }

    #[test]
    fn operations_round_trip_and_unknown_bytes_fail() {
        check(Operation::ALL, Operation::byte, u8::MAX);
        assert_eq!(Operation::try_from(0), Err(UnknownOperation(0)));
        assert_eq!(Operation::try_from(8), Err(UnknownOperation(8)));
        assert_eq!(Operation::ProtectedFile.as_str(), "protected_file");
        assert!(Operation::BpfObject.is_self_protect());
        assert!(!Operation::Connect.is_self_protect());
        assert!(!Operation::Sendmsg.is_self_protect());
        assert_eq!(Operation::try_from(32), Ok(Operation::Sendmsg));
    }

    #[test]
    fn verdicts_round_trip_and_unknown_bytes_fail() {
        check(Verdict::ALL, Verdict::byte, u8::MAX);
        assert_eq!(Verdict::try_from(0), Err(UnknownVerdict(0)));
        assert_eq!(Verdict::try_from(5), Err(UnknownVerdict(5)));
        assert_eq!(Verdict::WouldDeny.as_str(), "would_deny");
        assert_eq!(Verdict::try_from(4), Ok(Verdict::KillFailed));
        assert_eq!(Verdict::KillFailed.as_str(), "kill_failed");
    }

    #[test]
    fn reasons_round_trip_and_unknown_bytes_fail() {
        check(Reason::ALL, Reason::byte, u8::MAX);
        assert_eq!(Reason::try_from(0), Err(UnknownReason(0)));
        assert_eq!(Reason::try_from(5), Err(UnknownReason(5)));
        assert_eq!(Reason::NotAllowed.as_str(), "not_allowed");
    }

    #[test]
    fn hooks_round_trip_and_unknown_bytes_fail() {
        check(Hook::ALL, Hook::byte, u8::MAX);
        assert_eq!(Hook::try_from(0), Err(UnknownHook(0)));
        assert_eq!(Hook::try_from(9), Ok(Hook::OpenExit));
        assert_eq!(Hook::try_from(10), Err(UnknownHook(10)));
        assert_eq!(Hook::OpenExit.as_str(), "open_exit");
        assert_eq!(Hook::SchedProcessExec.as_str(), "sched_process_exec");
        assert_eq!(Hook::AfterSyscall.byte(), None);
        assert_eq!(Hook::try_from(42), Ok(Hook::CgroupSendmsg4));
        assert_eq!(Hook::CgroupConnect6.as_str(), "cgroup_connect6");
        assert_eq!(
            serde_json::from_str::<Hook>("\"bprm_check_security\"").expect("parses"),
            Hook::BprmCheckSecurity
        );
    }

    #[test]
    fn access_modes_round_trip_and_other_bits_fail() {
        check(Access::ALL, Access::byte, 1024u32);
        assert_eq!(Access::try_from(4), Err(UnknownAccess(4)));
        assert_eq!(Access::from_rw(true, true), Access::ReadWrite);
        assert_eq!(Access::from_rw(false, true).as_str(), "write");
        assert_eq!(Access::from_rw(false, false).as_str(), "none");
    }

    #[test]
    fn errors_name_the_kind_and_value() {
        assert_eq!(UnknownHook(200).to_string(), "unknown decision hook 200");
        assert_eq!(UnknownAccess(7).to_string(), "unknown open access mode 7");
    }
}
