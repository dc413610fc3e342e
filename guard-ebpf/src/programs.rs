//! The programs themselves. Each one fills a record from `guard_ebpf` (the library target) and
//! hands it to userspace through `EVENTS`; a failed reserve is counted in `DROPS`.

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
    },
    macros::{lsm, map, tracepoint},
    maps::{HashMap, PerCpuArray, RingBuf},
    programs::{LsmContext, TracePointContext},
};
use guard_ebpf::{
    DEFAULT_RING_BYTES, EXEC_FILENAME_LEN, EventHeader, EventKind, ExecDeniedRecord, ExecRecord,
    FLAG_TRUNCATED, KernelOffsets, MAX_POLICY_CGROUPS, OFFSET_ABSENT,
};

const EPERM: i32 = 1;

/// Patched by userspace at load time from the running kernel's BTF.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets::UNSET;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EventKind::COUNT, 0);

/// cgroup id -> policy id, for cgroups whose execs are denied.
#[map]
static EXEC_DENY_CGROUPS: HashMap<u64, u32> = HashMap::with_max_entries(MAX_POLICY_CGROUPS, 0);

#[inline(always)]
fn offsets() -> KernelOffsets {
    // SAFETY: reading our own static; volatile so the compiler does not fold the default value.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

#[inline(always)]
fn count_drop(kind: EventKind) {
    if let Some(slot) = DROPS.get_ptr_mut(kind as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Reads a field at `off` bytes into the kernel object at `base`.
#[inline(always)]
unsafe fn read_field<T>(base: *const u8, off: u32) -> Option<T> {
    if off == OFFSET_ABSENT || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates bad addresses and returns an error.
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T).ok() }
}

#[inline(always)]
fn fill_header(h: &mut EventHeader, kind: EventKind, off: &KernelOffsets) {
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    h.kind = kind as u16;
    h.flags = 0;
    // SAFETY: helper with no preconditions.
    h.cpu = unsafe { bpf_get_smp_processor_id() };
    // SAFETY: helper with no preconditions.
    h.boot_ns = unsafe { bpf_ktime_get_boot_ns() };
    // SAFETY: helper with no preconditions.
    h.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    h.pid = (pid_tgid >> 32) as u32;
    h.tid = pid_tgid as u32;
    h.uid = uid_gid as u32;
    h.gid = (uid_gid >> 32) as u32;
    h.ret = 0;
    h.comm = bpf_get_current_comm().unwrap_or([0; 16]);

    // SAFETY: helper with no preconditions.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    // SAFETY: offsets come from this kernel's BTF; reads go through probe_read.
    let parent: Option<*const u8> = unsafe { read_field(task, off.task_real_parent) };
    // SAFETY: as above.
    h.ppid = parent
        .and_then(|p| unsafe { read_field::<u32>(p, off.task_tgid) })
        .unwrap_or(0);
    // SAFETY: as above.
    h.loginuid = unsafe { read_field::<u32>(task, off.task_loginuid) }.unwrap_or(u32::MAX);
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let off = offsets();
    let Some(mut entry) = EVENTS.reserve::<ExecRecord>(0) else {
        count_drop(EventKind::Exec);
        return 0;
    };
    // SAFETY: the reservation is sized for ExecRecord; every field is written before submit.
    let rec = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut rec.header, EventKind::Exec, &off);
    rec.filename_len = 0;
    rec._pad = 0;
    if off.tp_exec_filename_loc != OFFSET_ABSENT {
        // __data_loc: low 16 bits are the offset of the string from the record start.
        // SAFETY: reads within the tracepoint record through the checked accessor.
        if let Ok(loc) = unsafe { ctx.read_at::<u32>(off.tp_exec_filename_loc as usize) } {
            let data_off = (loc & 0xffff) as usize;
            let src = unsafe { (ctx.as_ptr() as *const u8).add(data_off) };
            // SAFETY: bounded by the destination slice; the helper NUL-terminates.
            if let Ok(bytes) = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut rec.filename) } {
                let n = bytes.len();
                rec.filename_len = n as u32;
                if n >= EXEC_FILENAME_LEN - 1 {
                    rec.header.flags |= FLAG_TRUNCATED;
                }
            }
        }
    }
    entry.submit(0);
    0
}

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    // Argument 1 is the verdict of BPF LSM programs that ran before us; never weaken it.
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    // SAFETY: helper with no preconditions.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value is copied out before any map update can race with it.
    let Some(policy) = (unsafe { EXEC_DENY_CGROUPS.get(&cgroup) }).copied() else {
        return 0;
    };
    let off = offsets();
    match EVENTS.reserve::<ExecDeniedRecord>(0) {
        Some(mut entry) => {
            // SAFETY: sized for ExecDeniedRecord; all fields written before submit.
            let rec = unsafe { &mut *entry.as_mut_ptr() };
            fill_header(&mut rec.header, EventKind::ExecDenied, &off);
            rec.header.ret = -(EPERM as i64);
            rec.policy_id = policy;
            rec._pad = 0;
            entry.submit(0);
        }
        None => count_drop(EventKind::ExecDenied),
    }
    -EPERM
}
