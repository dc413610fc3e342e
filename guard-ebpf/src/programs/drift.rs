//! Drift prevention without BPF LSM (`deny_new_binaries` on the `fanotify` and
//! `sigkill-fallback` backends): a file that a drift-protected workload opened for writing is
//! remembered in `NEW_FILES` at the open's exit, on whatever filesystem it lives (the
//! container's overlay, a tmpfs such as its `/dev`, a volume); the `sched_process_exec`
//! backstop (`fallback.rs`) kills an exec of such a file, or of a file without a name (a memfd),
//! before its first instruction.

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use guard_ebpf::policy_flags as pf;

use super::{
    kpath::current_file,
    policy::NEW_FILES,
    shared::{cgroup_policy, inode_of, koff, read_field},
};

const FMODE_WRITE: u32 = 2;

/// `syscalls/sys_exit_{open,openat,openat2,creat,open_by_handle_at}`
/// (`guard/src/policy/backend/fallback.rs` `DRIFT_EXITS`): the new descriptor's file, when it was
/// opened for writing inside a `deny_new_binaries` workload (detect mode too: its would-deny
/// records need the mark).
#[tracepoint]
pub fn policy_open_written(ctx: TracePointContext) -> u32 {
    // The exit tracepoint's `ret`, after the common fields and `__syscall_nr`.
    // SAFETY: checked tracepoint read.
    let ret = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1);
    if ret < 0 {
        return 0;
    }
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & pf::DENY_NEW_BINARIES == 0 {
        return 0;
    }
    let Some(file) = current_file(ret) else {
        return 0;
    };
    // SAFETY: offset from BTF; probe_read tolerates bad pointers.
    let mode: u32 = unsafe { read_field(file, koff!(file_f_mode)) }.unwrap_or(0);
    if mode & FMODE_WRITE == 0 {
        return 0;
    }
    // SAFETY: see inode_of.
    let ino = unsafe { inode_of(file) };
    if ino.ino != 0 {
        let _ = NEW_FILES.insert(&ino, &pol.policy_id, 0);
    }
    0
}
