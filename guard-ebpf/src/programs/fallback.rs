//! Fallback for kernels without BPF LSM: the `sched_process_exec` SIGKILL backstop for exec
//! policies, and the `cgroup_mkdir` binding of a new container cgroup to its policy (which
//! serves every backend: it runs before any process can enter the cgroup).

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_PREALLOC,
    helpers::generated::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_get_current_task,
        bpf_ktime_get_boot_ns, bpf_ktime_get_ns, bpf_probe_read_kernel as raw_probe_read_kernel,
        bpf_probe_read_kernel_str, bpf_send_signal,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{HashMap, LruHashMap, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use guard_ebpf::{
    CONTAINER_ID_BYTES, CgroupPolicy, DecisionBody, HOLD_RING_BYTES, HeldTask, HoldRecord,
    MAX_HELD_TASKS, MAX_PENDING_CONTAINERS, MAX_POLICY_CGROUPS, MKDIR_PATH_BYTES, OFFSET_ABSENT,
    decision_op, hook, path_bits, path_kind, policy_flags as pf, reason, settings, verdict,
};

use super::{
    identity::unlinked,
    policy::NEW_FILES,
    shared::{
        KEY_AT, PATH_BUF, POLICY_CGROUPS, POLICY_SCRATCH, cgroup_policy, fill_path_key, inode_of,
        inode_rule, koff, path_rule, read_field, report, setting,
    },
};

/// `BPF_NOEXIST` map update flag: insert only.
const BPF_NOEXIST: u64 = 1;

const SIGKILL: u32 = 9;
const SIGSTOP: u32 = 19;

/// Fallback for kernels without BPF LSM, attached to `sched/sched_process_exec`: the new image
/// is in place but has not run an instruction yet; a denied exec gets SIGKILL, which is
/// delivered before the return to user space. It matches the filename given to execve (an
/// absolute path) and the executed file's identity (`POLICY_INODES`, resolved by the agent in
/// the workload's root); see docs/policies.md.
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn policy_exec_fallback(ctx: TracePointContext) -> u32 {
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if !exec_backstop(&ctx, &pol) {
        hold_if_unmarked(&pol);
    }
    0
}

/// Cgroups whose workload's files the fanotify listener has marked. Not pinned: the marks
/// close with the agent, and so does this map.
#[map]
static FAN_READY: HashMap<u64, u8> =
    HashMap::with_max_entries(MAX_POLICY_CGROUPS, BPF_F_NO_PREALLOC);

#[map]
static HOLDS: RingBuf = RingBuf::with_byte_size(HOLD_RING_BYTES, 0);

/// The holds not resumed yet; pinned (the ring is not), so a restarted agent finds what was
/// held while no agent read the ring, or read but not resumed.
#[map]
static HELD: LruHashMap<u32, HeldTask> = LruHashMap::with_max_entries(MAX_HELD_TASKS, 0);

/// The `fanotify` backend's start window: a container's first exec runs before the agent has
/// marked its filesystem, so its opens would not be asked. An exec in an enforced cgroup with
/// open rules (or `deny_new_binaries`) that is not yet in `FAN_READY` stops the task before its
/// first instruction; the agent marks the workload, adds the cgroup and sends SIGCONT. Only
/// while the agent renews `HOLD_UNTIL` (3 s past a dead agent's last renewal, no more), and only
/// an exec in another mount namespace than the parent's: a container's entrypoint (its parent
/// is the runtime's shim, on the host), never runc's own `runc init` exec (same namespace as
/// runc, before the container's root exists).
#[inline(always)]
fn hold_if_unmarked(pol: &CgroupPolicy) {
    if pol.flags & pf::ENFORCE == 0 || pol.flags & (pf::OPEN_RULES | pf::DENY_NEW_BINARIES) == 0 {
        return;
    }
    let until = setting(settings::HOLD_UNTIL);
    // SAFETY: helpers with no preconditions.
    if until == 0 || unsafe { bpf_ktime_get_ns() } >= until {
        return;
    }
    let cg = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value is not kept.
    if unsafe { FAN_READY.get(&cg) }.is_some() {
        return;
    }
    // SAFETY: helper with no preconditions; offsets from BTF, reads tolerate bad pointers.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let parent = unsafe { read_field::<*const u8>(task, koff!(task_real_parent)) };
    match (mnt_ns(task), parent.and_then(mnt_ns)) {
        (Some(own), Some(theirs)) if own != theirs => {}
        _ => return,
    }
    let Some(mut rec) = HOLDS.reserve::<HoldRecord>(0) else {
        return;
    };
    // SAFETY: helper with no preconditions.
    let pid = (unsafe { bpf_get_current_pid_tgid() } >> 32) as u32;
    rec.write(HoldRecord {
        cgroup_id: cg,
        pid,
        _pad: 0,
    });
    let held = HeldTask {
        cgroup_id: cg,
        // SAFETY: helper with no preconditions.
        held_at_boot_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    // Recorded before the stop: a task that is not in `HELD` is never left stopped.
    if HELD.insert(&pid, &held, 0).is_err() {
        rec.discard(0);
        return;
    }
    // SAFETY: helper with no preconditions; it signals the current thread group.
    if unsafe { bpf_send_signal(SIGSTOP) } == 0 {
        rec.submit(0);
    } else {
        let _ = HELD.remove(&pid);
        rec.discard(0);
    }
}

/// The inode number of a task's mount namespace.
#[inline(always)]
fn mnt_ns(task: *const u8) -> Option<u32> {
    // SAFETY: offsets from BTF; reads tolerate bad pointers.
    unsafe {
        read_field::<*const u8>(task, koff!(task_nsproxy))
            .and_then(|nsp| read_field::<*const u8>(nsp, koff!(nsproxy_mnt_ns)))
            .and_then(|m| read_field::<u32>(m, koff!(mnt_ns_inum)))
    }
}

/// The exec rules: SIGKILL (enforce) or a would-deny record. True when it acted.
#[inline(always)]
fn exec_backstop(ctx: &TracePointContext, pol: &CgroupPolicy) -> bool {
    let drift = pol.flags & pf::DENY_NEW_BINARIES != 0;
    if pol.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW) == 0 && !drift {
        return false;
    }
    let loc_off = koff!(tp_exec_filename_loc);
    if loc_off == OFFSET_ABSENT {
        return false;
    }
    let Some(base) = POLICY_SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    let base = base as *mut u8;
    // SAFETY: checked tracepoint read; the string copy is bounded by PATH_BUF.
    let n = unsafe {
        match ctx.read_at::<u32>(loc_off as usize) {
            Ok(loc) => {
                let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
                bpf_probe_read_kernel_str(base as *mut _, PATH_BUF as u32, src as *const _)
            }
            Err(_) => -1,
        }
    };
    let mut body = DecisionBody {
        op: decision_op::EXEC,
        hook: hook::SCHED_PROCESS_EXEC,
        ..DecisionBody::default()
    };
    // The executed file itself (`current->mm->exe_file`, the new image by now).
    // SAFETY: helper with no preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: offsets from BTF; reads tolerate bad pointers.
    let file: *const u8 = unsafe {
        let mm: *const u8 = read_field(task, koff!(task_mm)).unwrap_or(core::ptr::null());
        read_field(mm, koff!(mm_exe_file)).unwrap_or(core::ptr::null())
    };
    // SAFETY: see inode_of; a null file reads as inode 0.
    let ino = unsafe { inode_of(file) };
    // Drift: written inside a drift-protected workload (`drift.rs`, any filesystem), or
    // without a name (a memfd, an unlinked O_TMPFILE file).
    // SAFETY: the value is not used beyond the check; offsets from BTF.
    let new_binary = drift
        && !file.is_null()
        && (unsafe { NEW_FILES.get(&ino) }.is_some()
            || unlinked(
                unsafe { read_field(file, koff!(file_f_inode)) }.unwrap_or(core::ptr::null()),
            ));
    if new_binary {
        body.reason = reason::NEW_BINARY;
        body.dev = ino.dev;
        body.ino = ino.ino;
    } else {
        if pol.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW) == 0 {
            return false;
        }
        let by_name = if n > 1 {
            // A failed copy leaves the key as it was; the lookup then decides on it, as before.
            let _ = fill_path_key(base, pol.policy_id, path_kind::EXEC);
            path_rule(base) & path_bits::EXEC_MATCH != 0
        } else {
            false
        };
        // A rule holds on the file whatever name, link, relative path or `/proc/self/fd/N`
        // reached it (`POLICY_INODES`).
        let by_inode = setting(settings::EXEC_BY_INODE) != 0
            && !file.is_null()
            && inode_rule(pol.policy_id, ino) & path_bits::EXEC_MATCH != 0;
        let hit = by_name || by_inode;
        if pol.flags & pf::EXEC_DENY != 0 && hit {
            body.reason = reason::DENY_LIST;
        } else if pol.flags & pf::EXEC_ALLOW != 0 && !hit {
            body.reason = reason::NOT_ALLOWED;
        } else {
            return false;
        }
    }
    body.policy_id = pol.policy_id;
    if pol.flags & pf::ENFORCE != 0 {
        // SAFETY: helper with no preconditions; it signals the current task.
        let r = unsafe { bpf_send_signal(SIGKILL) };
        if r == 0 {
            body.verdict = verdict::KILL;
        } else {
            // Not sent (e.g. EPERM, EBUSY in an NMI context): say so, never `kill`.
            body.verdict = verdict::KILL_FAILED;
            body.access = r.unsigned_abs() as u32;
        }
    } else {
        body.verdict = verdict::WOULD_DENY;
        report(&body, base, 0);
        return false;
    }
    report(&body, base, 0);
    true
}

/// Container id (64 hex bytes) -> the policy its cgroup gets. Filled by the agent from Docker's
/// create event (the container exists, its cgroup does not yet); pinned like the other maps.
#[map]
static POLICY_PENDING: HashMap<[u8; CONTAINER_ID_BYTES], CgroupPolicy> =
    HashMap::with_max_entries(MAX_PENDING_CONTAINERS, BPF_F_NO_PREALLOC);

/// Where the container id is assembled in the scratch area (after the LPM key).
const MKDIR_KEY_AT: usize = KEY_AT + 1024;
const MKDIR_MASK: usize = MKDIR_PATH_BYTES - 1;

#[inline(always)]
fn is_hex_lower(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

/// `cgroup/cgroup_mkdir`: a new cgroup whose last path component names a container that the
/// agent learnt at Docker's create event (`docker-<id>.scope`, `<runtime>-<id>.scope` or
/// `.../<id>`) is bound to that container's policy here, before any process can enter it, so
/// the container's first exec (its entrypoint) is already under policy.
#[tracepoint(category = "cgroup", name = "cgroup_mkdir")]
pub fn policy_cgroup_mkdir(ctx: TracePointContext) -> u32 {
    let off_id = koff!(tp_cgroup_id);
    let off_loc = koff!(tp_cgroup_path_loc);
    if off_id == OFFSET_ABSENT || off_loc == OFFSET_ABSENT {
        return 0;
    }
    // SAFETY: checked tracepoint reads at offsets from BTF.
    let (Ok(id), Ok(loc)) = (unsafe { ctx.read_at::<u64>(off_id as usize) }, unsafe {
        ctx.read_at::<u32>(off_loc as usize)
    }) else {
        return 0;
    };
    let Some(base) = POLICY_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    let base = base as *mut u8;
    // SAFETY: the copy is bounded by MKDIR_PATH_BYTES, inside the scratch value.
    let n = unsafe {
        let src = (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize);
        bpf_probe_read_kernel_str(base as *mut _, MKDIR_PATH_BYTES as u32, src as *const _)
    };
    if n <= 1 {
        return 0;
    }
    let mut end = (n - 1) as usize & MKDIR_MASK;
    // SAFETY (all byte reads below): indices are masked into the first MKDIR_PATH_BYTES bytes.
    let at = |i: usize| unsafe { *base.add(i & MKDIR_MASK) };
    if end >= 6
        && at(end - 6) == b'.'
        && at(end - 5) == b's'
        && at(end - 4) == b'c'
        && at(end - 3) == b'o'
        && at(end - 2) == b'p'
        && at(end - 1) == b'e'
    {
        end -= 6;
    }
    if end < CONTAINER_ID_BYTES + 1 {
        return 0;
    }
    let start = end - CONTAINER_ID_BYTES;
    let before = at(start - 1);
    if before != b'/' && before != b'-' {
        return 0;
    }
    let mut i = 0;
    while i < CONTAINER_ID_BYTES {
        if !is_hex_lower(at(start + i)) {
            return 0;
        }
        i += 1;
    }
    // SAFETY: MKDIR_KEY_AT + 64 lies inside the scratch value; the source was checked above.
    let key = unsafe {
        let dst = base.add(MKDIR_KEY_AT);
        if raw_probe_read_kernel(
            dst as *mut _,
            CONTAINER_ID_BYTES as u32,
            base.add(start & MKDIR_MASK) as *const _,
        ) != 0
        {
            return 0;
        }
        &*(dst as *const [u8; CONTAINER_ID_BYTES])
    };
    // SAFETY: the value is copied out at once.
    let Some(pol) = (unsafe { POLICY_PENDING.get(key) }).copied() else {
        return 0;
    };
    let _ = POLICY_CGROUPS.insert(&id, &pol, 0);
    0
}

/// Parent cgroup id -> the policy a new child of it gets: filled by the agent's cgroup walk for
/// parents whose children a policy's glob selects (`cgroup: /x/*`), so a child is under policy
/// from its creation, not from the next walk. Pinned like the other maps.
#[map]
static POLICY_CHILDREN: HashMap<u64, CgroupPolicy> =
    HashMap::with_max_entries(MAX_POLICY_CGROUPS, BPF_F_NO_PREALLOC);

/// Raw tracepoint `cgroup_mkdir(cgrp, path)`: a new cgroup inherits its parent's policy (so a
/// workload cannot leave its policy by creating a child cgroup and moving into it; by
/// induction every descendant of a bound cgroup is bound), or gets the policy the agent set
/// for its parent's children. It runs before any process can enter the cgroup. Never
/// overwrites: a container's own binding (`policy_cgroup_mkdir`) wins.
#[raw_tracepoint(tracepoint = "cgroup_mkdir")]
pub fn policy_cgroup_inherit(ctx: RawTracePointContext) -> i32 {
    let (off_kn, off_parent, off_id) = (
        koff!(cgroup_kn),
        koff!(kernfs_node_parent),
        koff!(kernfs_node_id),
    );
    // SAFETY: argument 0 of the tracepoint is the new `struct cgroup *`.
    let cgrp = unsafe { *(ctx.as_ptr() as *const *const u8) };
    // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
    let (id, parent_id) = unsafe {
        let kn: *const u8 = read_field(cgrp, off_kn).unwrap_or(core::ptr::null());
        let parent: *const u8 = read_field(kn, off_parent).unwrap_or(core::ptr::null());
        (
            read_field::<u64>(kn, off_id).unwrap_or(0),
            read_field::<u64>(parent, off_id).unwrap_or(0),
        )
    };
    if id == 0 || parent_id == 0 {
        return 0;
    }
    // SAFETY: values are copied out at once.
    let pol = match unsafe { POLICY_CGROUPS.get(&parent_id) }.copied() {
        Some(p) => p,
        None => match unsafe { POLICY_CHILDREN.get(&parent_id) }.copied() {
            Some(p) => p,
            None => return 0,
        },
    };
    let _ = POLICY_CGROUPS.insert(&id, &pol, BPF_NOEXIST);
    0
}
