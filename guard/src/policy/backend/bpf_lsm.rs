//! The `bpf-lsm` backend: programs on `bprm_check_security`, `file_open` and `socket_connect`
//! decide on the real object in the kernel and refuse with EPERM (docs/policies.md).

use guard_ebpf::names;

use super::{Coverage, Level::*, Op, Spec};

/// The programs and the LSM hooks they attach to; `probes` loads, attaches and pins each.
pub const PROGRAMS: [(&str, &str); 18] = [
    (names::PROG_POLICY_EXEC, "bprm_check_security"),
    (names::PROG_POLICY_OPEN, "file_open"),
    (names::PROG_POLICY_CONNECT, "socket_connect"),
    // Issue 15: every other way to modify a file under deny_write (guard-ebpf lsm_write.rs).
    ("policy_path_truncate", "path_truncate"),
    ("policy_inode_create", "inode_create"),
    ("policy_inode_mknod", "inode_mknod"),
    ("policy_inode_link", "inode_link"),
    ("policy_inode_unlink", "inode_unlink"),
    ("policy_inode_symlink", "inode_symlink"),
    ("policy_inode_mkdir", "inode_mkdir"),
    ("policy_inode_rmdir", "inode_rmdir"),
    ("policy_inode_rename", "inode_rename"),
    ("policy_path_chmod", "path_chmod"),
    ("policy_path_chown", "path_chown"),
    ("policy_inode_setxattr", "inode_setxattr"),
    ("policy_inode_removexattr", "inode_removexattr"),
    // Executable mappings (lsm_map.rs).
    ("policy_mmap_file", "mmap_file"),
    ("policy_file_mprotect", "file_mprotect"),
];

/// Programs for hooks some supported kernels lack: attached where the hook exists.
/// `file_truncate` (Linux 6.2+) sees ftruncate(2) and `O_TRUNC`; before 6.2 those reach
/// `path_truncate`, so nothing is lost where it is missing.
pub const OPTIONAL_PROGRAMS: [(&str, &str); 1] = [("policy_file_truncate", "file_truncate")];

pub const SPEC: Spec = Spec {
    name: "bpf-lsm",
    when: "`bpf` in `/sys/kernel/security/lsm` and LSM programs load",
    hint: "",
    covers,
};

fn covers(op: Op) -> Coverage {
    let c = Coverage::new;
    match op {
        Op::Exec => c(
            Denied,
            "EPERM before the binary is loaded (`bprm_check_security`, the resolved file)",
        ),
        Op::OpenRead => c(
            Denied,
            "EPERM at `file_open`, by access mode, on the resolved path",
        ),
        Op::OpenWrite => c(
            Denied,
            "EPERM at `file_open`, by access mode; an `O_TRUNC` open is refused before it truncates",
        ),
        Op::Truncate => c(
            NotCovered,
            "truncate(2) and ftruncate(2) do not pass `file_open`",
        ),
        Op::Link => c(
            NotCovered,
            "link(2) is not checked; opens through the new name are matched at that path",
        ),
        Op::Rename => c(
            NotCovered,
            "rename(2) is not checked; the moved file is matched at its new path",
        ),
        Op::Connect => c(
            Denied,
            "EPERM at `socket_connect`, IPv4 and IPv6, address and port",
        ),
        Op::Sendmsg => c(
            NotCovered,
            "a destination given to sendmsg(2)/sendto(2) does not pass `socket_connect`",
        ),
        Op::NewBinaries => c(
            Denied,
            "EPERM at exec of an inode written inside the workload (`NEW_FILES`)",
        ),
    }
}
