//! Self-protection of the agent from containers (issue 9; docs/self-protection.md). BPF LSM only.
//!
//! A task is "in a container" when it is not the agent and either its pid namespace is not the
//! host's (checked with `bpf_get_ns_current_pid_tgid` against PID 1's pid namespace) or its mount
//! namespace is not the host's (`task->nsproxy->mnt_ns->ns.inum`, offsets from BTF). Such a task
//! cannot signal or ptrace the agent, cannot get read or write permission on a protected inode
//! (guard's config, policies, audit log, pin directory and pins: opens, directory changes and
//! `BPF_OBJ_GET` all ask `inode_permission`), and cannot get a file descriptor for one of guard's
//! BPF objects by id. Every denial is a `Decision` record (reason `SELF_PROTECT`). The agent fills
//! the maps (`guard/src/selfprotect.rs`); these programs are not pinned: they live with the agent.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_kernel},
    macros::{lsm, map},
    maps::{Array, HashMap},
    programs::LsmContext,
};
use guard_ebpf::{
    DecisionBody, InodeKey, MAX_PROTECTED_BPF_IDS, MAX_PROTECTED_INODES, SelfProtectConfig,
    bpf_id_key, bpf_obj_kind, decision_op, hook, reason, verdict,
};

use super::shared::{EPERM, inode_key, koff, read_field, report};

#[map]
static SELF_PROTECT: Array<SelfProtectConfig> = Array::with_max_entries(1, 0);

#[map]
static PROTECTED_INODES: HashMap<InodeKey, u32> =
    HashMap::with_max_entries(MAX_PROTECTED_INODES, BPF_F_NO_PREALLOC);

#[map]
static PROTECTED_BPF_IDS: HashMap<u64, u8> =
    HashMap::with_max_entries(MAX_PROTECTED_BPF_IDS, BPF_F_NO_PREALLOC);

/// `MAY_*` bits of `inode_permission`'s mask that ask for content access.
const MAY_WRITE: i32 = 2;
const MAY_READ: i32 = 4;
const MAY_APPEND: i32 = 8;
/// `enum bpf_cmd` (UAPI): the commands that turn an object id into a file descriptor.
const BPF_PROG_GET_FD_BY_ID: i32 = 13;
const BPF_MAP_GET_FD_BY_ID: i32 = 14;
const BPF_LINK_GET_FD_BY_ID: i32 = 30;

#[inline(always)]
fn self_protect_config() -> Option<SelfProtectConfig> {
    let c = SELF_PROTECT.get(0).copied()?;
    (c.enabled != 0).then_some(c)
}

/// Whether the current task is in a container, as defined above. A namespace that cannot be
/// read counts as "in a container": the check fails closed.
#[inline(always)]
fn in_container(cfg: &SelfProtectConfig) -> bool {
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    if tgid == cfg.agent_tgid {
        return false;
    }
    let mut ns = aya_ebpf::bindings::bpf_pidns_info { pid: 0, tgid: 0 };
    // SAFETY: `ns` is a stack buffer of the size given; the helper fails (non-zero) when the
    // current task's pid namespace is not the one named by dev/ino.
    let r = unsafe {
        aya_ebpf::helpers::generated::bpf_get_ns_current_pid_tgid(
            cfg.pidns_dev,
            cfg.pidns_ino,
            &mut ns as *mut _,
            size_of::<aya_ebpf::bindings::bpf_pidns_info>() as u32,
        )
    };
    if r != 0 {
        return true;
    }
    if cfg.mntns_ino == 0 {
        return false;
    }
    // SAFETY: helper with no preconditions; reads go through probe_read with BTF offsets.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mnt = unsafe {
        read_field::<*const u8>(task, koff!(task_nsproxy))
            .and_then(|nsp| read_field::<*const u8>(nsp, koff!(nsproxy_mnt_ns)))
            .and_then(|m| read_field::<u32>(m, koff!(mnt_ns_inum)))
    };
    match mnt {
        Some(inum) => inum as u64 != cfg.mntns_ino,
        None => true,
    }
}

/// Sends the self-protection denial record and returns -EPERM.
#[inline(always)]
fn self_protect_deny(op: u8, hook: u8, access: u32, dev: u64, ino: u64, class: u8) -> i32 {
    let mut body = DecisionBody {
        op,
        hook,
        verdict: verdict::DENY,
        reason: reason::SELF_PROTECT,
        access,
        dev,
        ino,
        ..DecisionBody::default()
    };
    body.addr[0] = class;
    report(&body, core::ptr::null(), -(EPERM as i64));
    -EPERM
}

/// Whether `task` (a `struct task_struct *`) is a thread of the agent.
#[inline(always)]
fn is_agent(task: *const u8, cfg: &SelfProtectConfig) -> Option<u32> {
    // SAFETY: offset from BTF; probe_read tolerates bad pointers.
    let tgid = unsafe { read_field::<u32>(task, koff!(task_tgid)) }?;
    (tgid == cfg.agent_tgid).then_some(tgid)
}

/// `task_kill(p, info, sig, cred)`: every signal (SIGKILL and SIGSTOP included, and through
/// `kill`, `tgkill`, `rt_sigqueueinfo` or `pidfd_send_signal`) from a container to any thread of
/// the agent fails with EPERM.
#[lsm(hook = "task_kill")]
pub fn selfprot_task_kill(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(4);
    if prev != 0 {
        return prev;
    }
    let Some(cfg) = self_protect_config() else {
        return 0;
    };
    let target: *const u8 = ctx.arg(0);
    let Some(tgid) = is_agent(target, &cfg) else {
        return 0;
    };
    if !in_container(&cfg) {
        return 0;
    }
    let sig: i32 = ctx.arg(2);
    self_protect_deny(
        decision_op::SIGNAL,
        hook::TASK_KILL,
        sig as u32,
        0,
        tgid as u64,
        0,
    )
}

/// `ptrace_access_check(child, mode)`: PTRACE_ATTACH / PTRACE_SEIZE, /proc/<agent>/mem and
/// other ptrace-mode files, process_vm_readv/writev, pidfd_getfd and kcmp on the agent.
#[lsm(hook = "ptrace_access_check")]
pub fn selfprot_ptrace(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return prev;
    }
    let Some(cfg) = self_protect_config() else {
        return 0;
    };
    let child: *const u8 = ctx.arg(0);
    let Some(tgid) = is_agent(child, &cfg) else {
        return 0;
    };
    if !in_container(&cfg) {
        return 0;
    }
    let mode: u32 = ctx.arg(1);
    self_protect_deny(
        decision_op::PTRACE,
        hook::PTRACE_ACCESS_CHECK,
        mode,
        0,
        tgid as u64,
        0,
    )
}

/// `inode_permission(inode, mask)`: read or write permission on a protected inode. This covers
/// open (any flags), listing a protected directory, creating, removing or renaming entries in
/// one (write permission on the directory), truncate, and `BPF_OBJ_GET` of a pin (bpffs asks
/// for read/write permission on the pin's inode). Path walks (MAY_EXEC only) return at once.
#[lsm(hook = "inode_permission")]
pub fn selfprot_inode(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return prev;
    }
    let mask: i32 = ctx.arg(1);
    if mask & (MAY_READ | MAY_WRITE | MAY_APPEND) == 0 {
        return 0;
    }
    let Some(cfg) = self_protect_config() else {
        return 0;
    };
    let inode: *const u8 = ctx.arg(0);
    // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
    let key = unsafe { inode_key(inode) };
    // SAFETY: the value is copied out at once.
    let Some(class) = (unsafe { PROTECTED_INODES.get(&key) }).copied() else {
        return 0;
    };
    if !in_container(&cfg) {
        return 0;
    }
    self_protect_deny(
        decision_op::PROTECTED_FILE,
        hook::INODE_PERMISSION,
        mask as u32,
        key.dev,
        key.ino,
        class as u8,
    )
}

/// `bpf(cmd, attr, size)`: BPF_{MAP,PROG,LINK}_GET_FD_BY_ID for one of guard's objects. (The
/// pins are covered by `selfprot_inode`; this closes the way around them by id.)
#[lsm(hook = "bpf")]
pub fn selfprot_bpf(ctx: LsmContext) -> i32 {
    let cmd: i32 = ctx.arg(0);
    let kind = match cmd {
        BPF_MAP_GET_FD_BY_ID => bpf_obj_kind::MAP,
        BPF_PROG_GET_FD_BY_ID => bpf_obj_kind::PROG,
        BPF_LINK_GET_FD_BY_ID => bpf_obj_kind::LINK,
        _ => return 0,
    };
    let Some(cfg) = self_protect_config() else {
        return 0;
    };
    let attr: *const u32 = ctx.arg(1);
    // SAFETY: the kernel's copy of the caller's `union bpf_attr`; the id is its first member
    // for these commands. probe_read tolerates bad pointers.
    let Ok(id) = (unsafe { bpf_probe_read_kernel(attr) }) else {
        return 0;
    };
    let key = bpf_id_key(kind, id);
    // SAFETY: the value is not used beyond the check.
    if unsafe { PROTECTED_BPF_IDS.get(&key) }.is_none() || !in_container(&cfg) {
        return 0;
    }
    self_protect_deny(decision_op::BPF_OBJECT, hook::BPF, cmd as u32, 0, key, 0)
}
