//! The `fanotify` backend: where BPF LSM programs are refused but fanotify permission events
//! work (`CONFIG_FANOTIFY_ACCESS_PERMISSIONS`, standard in distribution kernels). Opens and
//! execs on a bound workload's files wait for the agent's answer and fail with EPERM when it
//! refuses (`crate::fanotify`). The `sched_process_exec` SIGKILL backstop stays attached, so
//! exec rules hold while no answer thread runs (agent stopped or crashed).

use guard_ebpf::names;

use super::{Coverage, Level::*, Op, Spec};

/// Detect-mode open rules: judged at the open's exit, on the same syscalls' exits as drift
/// tracking (`fallback::DRIFT_EXITS`), so a detect-mode workload's opens never wait for the
/// agent; attached while a detect-mode policy has open rules.
pub const DETECT_PROGRAM: &str = names::PROG_POLICY_OPEN_DETECT;

pub const SPEC: Spec = Spec {
    name: "fanotify",
    when: "no BPF LSM, fanotify permission events available (most distribution kernels; this CI host)",
    hint: "boot with lsm=...,bpf for the bpf-lsm backend (no agent in the answer path)",
    covers,
};

fn covers(op: Op) -> Coverage {
    let c = Coverage::new;
    match op {
        Op::Exec => c(
            Denied,
            "EPERM at exec's open of the binary (`FAN_OPEN_EXEC_PERM`), decided on the file itself (device and inode), whatever name, link or `/proc/self/fd/N` reached it; a dynamic loader run as the program (`ld.so FILE`) gets EPERM reading a denied FILE; SIGKILL backstop at `sched_process_exec` by filename",
        ),
        Op::OpenRead => c(
            Denied,
            "EPERM at open (`FAN_OPEN_PERM`), on the file itself; `DIR/**` by the files found below it and by path",
        ),
        Op::OpenWrite => c(
            Denied,
            "EPERM at open before `O_TRUNC` applies; a new name (`O_CREAT`, mknod, mkdir, symlink) and unlink in a sealed directory (below) EPERM before anything changes, elsewhere an `O_CREAT` open creates the (empty) file before the answer; openat2 counts as read + write",
        ),
        Op::Truncate => c(
            KilledAfter,
            "on a container's own overlay root, the file of an exact `deny_write` rule and the files below a `DIR/**` one (all of them if at most 2,048 and 64 MiB) are sealed (immutable): EPERM in the kernel, by any name; elsewhere truncate(2) by path opens nothing, so no permission event asks: SIGKILL by the agent **after** it succeeded, on the file itself: reported by the file's changes mark through any name (magic links such as `/proc/self/fd/N` included), as is a write through a descriptor opened before the agent; ftruncate needs a descriptor opened for write, which is refused",
        ),
        Op::Link => c(
            Denied,
            "EPERM into a sealed directory (each directory of an enforced `deny_write` `DIR/**` rule on a container's own overlay root gets the immutable attribute) and of a sealed file (an exact `deny_write` rule's or one below a `DIR/**` rule, there); elsewhere (the host root, volumes) not checked, opens through the new name hit the rule for the file",
        ),
        Op::Rename => c(
            Denied,
            "EPERM into, out of or over a sealed directory, and of or over a sealed file (as for link); elsewhere not refused: the moved file's opens for write are, and a moved-in binary written in the workload cannot be executed",
        ),
        Op::Connect => super::net::CONNECT,
        Op::Sendmsg => super::net::SENDMSG,
        Op::NewBinaries => c(
            Denied,
            "EPERM at exec of a file opened for write inside the workload since the agent marked it, on its root filesystem; elsewhere (a tmpfs such as `/dev`, a volume) and for a file without a name (memfd, O_TMPFILE), SIGKILL at `sched_process_exec` before its first instruction",
        ),
    }
}
