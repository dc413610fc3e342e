//! The `bpf-lsm` backend: programs on `bprm_check_security`, `file_open`, the write hooks
//! (truncate, create, link, rename, unlink, mkdir, rmdir, symlink, mknod, chmod, chown, xattrs)
//! and the executable-mapping hooks decide on the real object in the kernel and refuse with
//! EPERM (docs/policies.md); connect and sendmsg are the cgroup sock_addr programs every
//! backend attaches (`crate::sockaddr`).

use guard_ebpf::names;

use super::{Coverage, Level::*, Op, Spec};

/// The programs and the LSM hooks they attach to; `probes` loads, attaches and pins each.
pub const PROGRAMS: [(&str, &str); 17] = [
    (names::PROG_POLICY_EXEC, "bprm_check_security"),
    (names::PROG_POLICY_OPEN, "file_open"),
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
            "EPERM before the binary is loaded (`bprm_check_security`), on the file itself (inode: any name, root or mount) and its path; an executable `mmap`/`mprotect` of a denied file too (`ld.so FILE`)",
        ),
        Op::OpenRead => c(
            Denied,
            "EPERM at `file_open`, by access mode, on the file itself (inode; `DIR/**` by the directory's inode among the file's ancestors) and its path",
        ),
        Op::OpenWrite => c(
            Denied,
            "EPERM at `file_open`, by access mode; `O_CREAT` at `inode_create` (no file is left); unlink, mkdir, rmdir, symlink, mknod, chmod, chown and xattr changes at their hooks",
        ),
        Op::Truncate => c(
            Denied,
            "EPERM at `path_truncate` (truncate(2); ftruncate(2) and `O_TRUNC` before Linux 6.2) and `file_truncate` (6.2+)",
        ),
        Op::Link => c(
            Denied,
            "EPERM at `inode_link`: into a deny_write subtree, or of a file a rule names; a name made before is matched by inode",
        ),
        Op::Rename => c(
            Denied,
            "EPERM at `inode_rename`: into, out of or over a deny_write file or subtree, or of a file a rule names",
        ),
        Op::Connect => super::net::CONNECT,
        Op::Sendmsg => super::net::SENDMSG,
        Op::NewBinaries => c(
            Denied,
            "EPERM at exec and executable `mmap`/`mprotect` of an inode written inside the workload (`NEW_FILES`) or without a name (memfd, O_TMPFILE)",
        ),
    }
}
