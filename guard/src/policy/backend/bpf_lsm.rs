//! The `bpf-lsm` backend: programs on `bprm_check_security` and `file_open` decide on the real
//! object in the kernel and refuse with EPERM (docs/policies.md); connect and sendmsg are the
//! cgroup sock_addr programs every backend attaches (`crate::sockaddr`).

use guard_ebpf::names;

use super::{Coverage, Level::*, Op, Spec};

/// The programs and the LSM hooks they attach to; `probes` loads, attaches and pins each.
pub const PROGRAMS: [(&str, &str); 2] = [
    (names::PROG_POLICY_EXEC, "bprm_check_security"),
    (names::PROG_POLICY_OPEN, "file_open"),
];

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
        Op::Connect => super::net::CONNECT,
        Op::Sendmsg => super::net::SENDMSG,
        Op::NewBinaries => c(
            Denied,
            "EPERM at exec of an inode written inside the workload (`NEW_FILES`)",
        ),
    }
}
