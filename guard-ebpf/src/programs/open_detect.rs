//! Open rules in detect mode without BPF LSM (the `fanotify` backend): nothing is refused, so
//! nothing needs to wait for an answer. At the exit of each open the file it returned is judged
//! as BPF LSM's `file_open` judges it (the file's own inode and the `DIR/**` directories above
//! it, then its path) and a would-deny is reported; the opener never blocks.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_probe_read_kernel_str},
    macros::tracepoint,
    programs::TracePointContext,
};
use guard_ebpf::{
    DecisionBody, decision_op, hook, path_bits, path_kind, policy_flags as pf, reason,
};

use super::{
    identity::{decide, dentry_bits, file_dentry},
    kpath::{file_of, open_path},
    shared::{
        PATH_BUF, POLICY_SCRATCH, cgroup_policy, fill_path_key, inode_of, koff, path_rule,
        read_field,
    },
};

const FMODE_READ: u32 = 1;
const FMODE_WRITE: u32 = 2;

/// `syscalls/sys_exit_{open,openat,openat2,creat,open_by_handle_at}`
/// (`guard/src/policy/backend/fallback.rs` `DRIFT_EXITS`, attached as `fanotify::DETECT_PROGRAM`):
/// a would-deny for an open a detect-mode policy's open rules deny.
#[tracepoint]
pub fn policy_open_detect(ctx: TracePointContext) -> u32 {
    // The exit tracepoint's `ret`, after the common fields and `__syscall_nr`.
    // SAFETY: checked tracepoint read.
    let ret = unsafe { ctx.read_at::<i64>(16) }.unwrap_or(-1);
    if ret < 0 {
        return 0;
    }
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    // Enforced policies are the permission answer's.
    if pol.flags & pf::OPEN_RULES == 0 || pol.flags & pf::ENFORCE != 0 {
        return 0;
    }
    // SAFETY: helper with no preconditions.
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    let Some(file) = file_of(task, ret) else {
        return 0;
    };
    // SAFETY: offset from BTF; probe_read tolerates bad pointers.
    let mode: u32 = unsafe { read_field(file, koff!(file_f_mode)) }.unwrap_or(0);
    let mut bits = dentry_bits(pol.policy_id, file_dentry(file), false);
    // Its path (for the record, and the rules that name a file by path only).
    let mut name: *const u8 = core::ptr::null();
    if let (Some(k), Some(base)) = (open_path::<false>(task, ret), POLICY_SCRATCH.get_ptr_mut(0)) {
        let base = base as *mut u8;
        // SAFETY: the copy is bounded by PATH_BUF, the first half of the scratch value.
        let n = unsafe {
            bpf_probe_read_kernel_str(base as *mut _, PATH_BUF as u32, k.src as *const _)
        };
        if n > 0 && fill_path_key(base, pol.policy_id, path_kind::OPEN) {
            bits |= path_rule(base);
            name = base;
        }
    }
    let denied = (mode & FMODE_READ != 0 && bits & path_bits::DENY_READ != 0)
        || (mode & FMODE_WRITE != 0 && bits & path_bits::DENY_WRITE != 0);
    if !denied {
        return 0;
    }
    let mut body = DecisionBody {
        op: decision_op::OPEN,
        hook: hook::OPEN_EXIT,
        reason: reason::DENY_LIST,
        access: mode & (FMODE_READ | FMODE_WRITE),
        ..DecisionBody::default()
    };
    // SAFETY: see inode_of.
    let ino = unsafe { inode_of(file) };
    body.dev = ino.dev;
    body.ino = ino.ino;
    decide(&pol, body, name);
    0
}
