//! The programs. Each assembles a record (header, body, payloads) in a per-CPU scratch area and
//! copies it to `EVENTS` (or, for enforcement records, `DECISIONS`) in one
//! `bpf_ringbuf_output`; a failed output is counted in `DROPS` per event kind, so userspace
//! can account for every record it did not get.

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
        generated::{bpf_probe_read_kernel_str, bpf_probe_read_user, bpf_probe_read_user_str},
    },
    macros::{lsm, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::{LsmContext, RawTracePointContext, TracePointContext},
};
use guard_ebpf::{
    CONNECT_NET_KEY_BYTES, CONNECT_PORT_SLOTS, DECISION_RING_BYTES, DEFAULT_RING_BYTES, DROP_SLOTS,
    DROP_SYSCALL_UNPAIRED, EventHeader, EventKind, ExecBody, ExecDeniedBody, ExitBody, FLAG_FAULT0,
    FLAG_FAULT1, FLAG_TRUNCATED0, FLAG_TRUNCATED1, ForkBody, KernelOffsets, MAX_CONNECT_NETS,
    MAX_OPEN_PREFIXES, MAX_PENDING_SYSCALLS, MAX_POLICY_CGROUPS, MAX_SYSCALL_NR, OFFSET_ABSENT,
    OPEN_PREFIX_BYTES, PAYLOAD_MAX, PREFILTERED_CONNECTS, PREFILTERED_OPENS, PendingSyscall,
    SCRATCH_LEN, SyscallBody, TS_COMPAT, open_prefix_bits, settings, syscall_filter, syscalls,
    syscalls::{Payload, spec},
};

const EPERM: i32 = 1;
const HDR: usize = size_of::<EventHeader>();
/// Masks that keep variable offsets provably inside the scratch area for the verifier.
const PAYLOAD_MASK: usize = 2 * PAYLOAD_MAX - 1;
const SCRATCH_MASK: usize = SCRATCH_LEN - 1;

/// Patched by userspace at load time from the running kernel's BTF.
#[unsafe(no_mangle)]
static KERNEL_OFFSETS: KernelOffsets = KernelOffsets::UNSET;

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

#[map]
static DECISIONS: RingBuf = RingBuf::with_byte_size(DECISION_RING_BYTES, 0);

#[map]
static DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DROP_SLOTS, 0);

#[map]
static SCRATCH: PerCpuArray<[u8; SCRATCH_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// Agent settings written by userspace (indices in `guard_ebpf::settings`).
#[map]
static SETTINGS: Array<u64> = Array::with_max_entries(settings::COUNT, 0);

/// Syscall number -> non-zero when traced; filled by userspace.
#[map]
static SYSCALL_FILTER: Array<u8> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Syscall arguments from `sys_enter`, keyed by thread id, until `sys_exit`.
#[map]
static PENDING: LruHashMap<u32, PendingSyscall> =
    LruHashMap::with_max_entries(MAX_PENDING_SYSCALLS, 0);

/// cgroup id -> policy id, for cgroups whose execs are denied.
#[map]
static EXEC_DENY_CGROUPS: HashMap<u64, u32> =
    HashMap::with_max_entries(MAX_POLICY_CGROUPS, BPF_F_NO_PREALLOC);

#[inline(always)]
fn offsets() -> KernelOffsets {
    // SAFETY: reading our own static; volatile so the compiler does not fold the default value.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

#[inline(always)]
fn setting(idx: u32) -> u64 {
    SETTINGS.get(idx).copied().unwrap_or(0)
}

/// Whether the current task is traced: never the agent itself (its activity would feed back
/// into itself), and only the selected cgroup when one is set.
#[inline(always)]
fn traced(tgid: u32) -> bool {
    let agent = setting(settings::AGENT_TGID);
    if agent != 0 && agent == tgid as u64 {
        return false;
    }
    let only = setting(settings::ONLY_CGROUP);
    // SAFETY: helper with no preconditions.
    only == 0 || only == unsafe { bpf_get_current_cgroup_id() }
}

#[inline(always)]
fn count_drop(kind: EventKind) {
    count_drop_slot(kind as u32)
}

#[inline(always)]
fn count_drop_slot(idx: u32) {
    if let Some(slot) = DROPS.get_ptr_mut(idx) {
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

/// A record being assembled in this CPU's scratch area.
struct Record {
    base: *mut u8,
    body_len: usize,
    kind: EventKind,
}

impl Record {
    /// Starts a record of `kind` with a `body_len`-byte body, filling the header from `current`.
    #[inline(always)]
    fn begin(kind: EventKind, body_len: usize, off: &KernelOffsets) -> Option<Record> {
        let Some(base) = SCRATCH.get_ptr_mut(0) else {
            count_drop(kind);
            return None;
        };
        let base = base as *mut u8;
        // SAFETY: the scratch area is SCRATCH_LEN bytes; the header fits at its start.
        let h = unsafe { &mut *(base as *mut EventHeader) };
        let pid_tgid = bpf_get_current_pid_tgid();
        let uid_gid = bpf_get_current_uid_gid();
        h.kind = kind as u16;
        h.flags = 0;
        // SAFETY: helpers with no preconditions.
        unsafe {
            h.cpu = bpf_get_smp_processor_id();
            h.boot_ns = bpf_ktime_get_boot_ns();
            h.cgroup_id = bpf_get_current_cgroup_id();
        }
        h.pid = (pid_tgid >> 32) as u32;
        h.tid = pid_tgid as u32;
        h.uid = uid_gid as u32;
        h.gid = (uid_gid >> 32) as u32;
        h.ret = 0;
        h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
        h.len0 = 0;
        h.len1 = 0;
        h.body_len = body_len as u32;
        // SAFETY: helper with no preconditions.
        let task = unsafe { bpf_get_current_task() } as *const u8;
        // SAFETY: offsets come from this kernel's BTF; reads go through probe_read.
        let parent: Option<*const u8> = unsafe { read_field(task, off.task_real_parent) };
        h.ppid = match parent {
            // SAFETY: as above.
            Some(p) => unsafe { read_field::<u32>(p, off.task_tgid) }.unwrap_or(0),
            None => 0,
        };
        // SAFETY: as above.
        h.loginuid = unsafe { read_field::<u32>(task, off.task_loginuid) }.unwrap_or(u32::MAX);
        Some(Record {
            base,
            body_len,
            kind,
        })
    }

    #[inline(always)]
    fn header(&mut self) -> &mut EventHeader {
        // SAFETY: begin() placed the header at the start of the scratch area.
        unsafe { &mut *(self.base as *mut EventHeader) }
    }

    /// The body, which starts right after the header.
    #[inline(always)]
    fn body<T>(&mut self) -> &mut T {
        // SAFETY: every body is far smaller than the scratch area; the offset is constant.
        unsafe { &mut *(self.base.add(HDR) as *mut T) }
    }

    /// Where payload `slot` goes: right after the body, or after payload 0.
    #[inline(always)]
    fn payload_dst(&mut self, slot: usize) -> *mut u8 {
        let len0 = self.header().len0 as usize;
        let mut off = HDR + self.body_len;
        if slot == 1 {
            off += len0 & PAYLOAD_MASK;
        }
        // SAFETY: off <= HDR + body + 2*PAYLOAD_MAX - 1, and SCRATCH_LEN leaves room for
        // another PAYLOAD_MAX bytes after that.
        unsafe { self.base.add(off & SCRATCH_MASK) }
    }

    #[inline(always)]
    fn set_len(&mut self, slot: usize, len: usize, truncated: bool, fault: bool) {
        let h = self.header();
        let len = (len & PAYLOAD_MASK).min(PAYLOAD_MAX) as u16;
        if slot == 0 {
            h.len0 = len;
            h.flags |=
                if truncated { FLAG_TRUNCATED0 } else { 0 } | if fault { FLAG_FAULT0 } else { 0 };
        } else {
            h.len1 = len;
            h.flags |=
                if truncated { FLAG_TRUNCATED1 } else { 0 } | if fault { FLAG_FAULT1 } else { 0 };
        }
    }

    /// Copies a NUL-terminated string (user or kernel memory) into payload `slot`, without the NUL.
    #[inline(always)]
    fn str_payload(&mut self, slot: usize, src: *const u8, user: bool) {
        if src.is_null() {
            self.set_len(slot, 0, false, true);
            return;
        }
        let dst = self.payload_dst(slot);
        // SAFETY: dst has PAYLOAD_MAX bytes of scratch after it; the helpers bound the copy.
        let n = unsafe {
            if user {
                bpf_probe_read_user_str(dst as *mut _, PAYLOAD_MAX as u32, src as *const _)
            } else {
                bpf_probe_read_kernel_str(dst as *mut _, PAYLOAD_MAX as u32, src as *const _)
            }
        };
        if n <= 0 {
            self.set_len(slot, 0, false, true);
        } else {
            // n counts the NUL; a full buffer means the string may have been cut.
            let n = n as usize;
            self.set_len(slot, n - 1, n >= PAYLOAD_MAX, false);
        }
    }

    /// Copies up to `len` (at most PAYLOAD_MAX) bytes of user memory into payload `slot`.
    #[inline(always)]
    fn bytes_payload(&mut self, slot: usize, src: *const u8, len: u64) {
        if src.is_null() || len == 0 {
            self.set_len(slot, 0, false, src.is_null());
            return;
        }
        let truncated = len > PAYLOAD_MAX as u64;
        let n = (len as usize).min(PAYLOAD_MAX) & (PAYLOAD_MAX - 1 | PAYLOAD_MAX);
        if n == 0 {
            self.set_len(slot, 0, false, false);
            return;
        }
        let dst = self.payload_dst(slot);
        // SAFETY: n <= PAYLOAD_MAX and dst has that much scratch after it.
        let r = unsafe { bpf_probe_read_user(dst as *mut _, n as u32, src as *const _) };
        if r < 0 {
            self.set_len(slot, 0, false, true);
        } else {
            self.set_len(slot, n, truncated, false);
        }
    }

    /// Copies the record to the ring buffer; counts a drop when it is full.
    #[inline(always)]
    fn submit(mut self) {
        let body_len = self.body_len;
        let h = self.header();
        let total =
            HDR + body_len + (h.len0 as usize & PAYLOAD_MASK) + (h.len1 as usize & PAYLOAD_MASK);
        let total = total & SCRATCH_MASK;
        if total < HDR {
            count_drop(self.kind);
            return;
        }
        // SAFETY: total <= SCRATCH_LEN - 1, within the per-CPU scratch value.
        let bytes = unsafe { core::slice::from_raw_parts(self.base as *const u8, total) };
        let ring = match self.kind {
            EventKind::Decision | EventKind::ExecDenied => &DECISIONS,
            _ => &EVENTS,
        };
        if ring.output::<[u8]>(bytes, 0).is_err() {
            count_drop(self.kind);
        }
    }
}

#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn sched_process_exec(ctx: TracePointContext) -> u32 {
    let off = offsets();
    if !traced((bpf_get_current_pid_tgid() >> 32) as u32) {
        return 0;
    }
    let Some(mut rec) = Record::begin(EventKind::Exec, size_of::<ExecBody>(), &off) else {
        return 0;
    };
    *rec.body::<ExecBody>() = ExecBody::default();
    // __data_loc: the low 16 bits are the string's offset from the start of the record.
    // SAFETY: read through the checked tracepoint accessor.
    match unsafe { ctx.read_at::<u32>(off.tp_exec_filename_loc as usize) } {
        Ok(loc) if off.tp_exec_filename_loc != OFFSET_ABSENT => {
            // SAFETY: pointer arithmetic within the tracepoint record; the read is checked.
            let src = unsafe { (ctx.as_ptr() as *const u8).add((loc & 0xffff) as usize) };
            rec.str_payload(0, src, false);
        }
        _ => rec.set_len(0, 0, false, true),
    }
    // argv of the new image, straight from its memory.
    // SAFETY: helper with no preconditions; reads below go through probe_read.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let mm: Option<*const u8> = unsafe { read_field(task, off.task_mm) };
    let (start, end) = match mm {
        // SAFETY: as above.
        Some(mm) => unsafe {
            (
                read_field::<u64>(mm, off.mm_arg_start).unwrap_or(0),
                read_field::<u64>(mm, off.mm_arg_end).unwrap_or(0),
            )
        },
        None => (0, 0),
    };
    if start != 0 && end > start {
        rec.body::<ExecBody>().args_total = (end - start).min(u32::MAX as u64) as u32;
        rec.bytes_payload(1, start as *const u8, end - start);
    }
    rec.submit();
    0
}

#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> i32 {
    let off = offsets();
    if !traced((bpf_get_current_pid_tgid() >> 32) as u32) {
        return 0;
    }
    // TP_PROTO(struct task_struct *parent, struct task_struct *child)
    let child = raw_arg(&ctx, 1) as *const u8;
    let Some(mut rec) = Record::begin(EventKind::Fork, size_of::<ForkBody>(), &off) else {
        return 0;
    };
    // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
    let body = ForkBody {
        child_pid: unsafe { read_field::<u32>(child, off.task_tgid) }.unwrap_or(0),
        child_tid: unsafe { read_field::<u32>(child, off.task_pid) }.unwrap_or(0),
    };
    *rec.body::<ForkBody>() = body;
    rec.submit();
    0
}

#[tracepoint(category = "sched", name = "sched_process_exit")]
pub fn sched_process_exit(_ctx: TracePointContext) -> u32 {
    let off = offsets();
    if !traced((bpf_get_current_pid_tgid() >> 32) as u32) {
        return 0;
    }
    let Some(mut rec) = Record::begin(EventKind::Exit, size_of::<ExitBody>(), &off) else {
        return 0;
    };
    // SAFETY: helper with no preconditions; the field read goes through probe_read.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    let code = unsafe { read_field::<i32>(task, off.task_exit_code) }.unwrap_or(0);
    *rec.body::<ExitBody>() = ExitBody {
        exit_code: code,
        _pad: 0,
    };
    rec.submit();
    0
}

/// Raw tracepoint argument `n` (the tracepoint's `TP_PROTO` arguments, as words).
#[inline(always)]
fn raw_arg(ctx: &RawTracePointContext, n: usize) -> u64 {
    // SAFETY: `bpf_raw_tracepoint_args` is an array of the prototype's arguments; every
    // tracepoint we attach to has more than `n` of them.
    unsafe { *(ctx.as_ptr() as *const u64).add(n) }
}

/// Whether the current task is inside a 32-bit syscall, whose numbers are not x86_64's.
#[inline(always)]
fn in_compat_syscall(off: &KernelOffsets) -> bool {
    // SAFETY: helper with no preconditions; the offset comes from BTF.
    let task = unsafe { bpf_get_current_task() } as *const u8;
    unsafe { read_field::<u32>(task, off.task_ti_status) }.unwrap_or(0) & TS_COMPAT != 0
}

/// The `syscall_filter` bits userspace set for syscall `nr` (`SYSCALL_FILTER`).
#[inline(always)]
fn syscall_bits(nr: u64) -> u8 {
    if nr >= MAX_SYSCALL_NR as u64 {
        return 0;
    }
    SYSCALL_FILTER.get(nr as u32).copied().unwrap_or(0)
}

#[inline(always)]
fn syscall_wanted(nr: u64) -> bool {
    syscall_bits(nr) & syscall_filter::TRACE != 0
}

/// `raw_syscalls/sys_enter`, for every syscall on the host: remembers the arguments of the
/// traced ones until their exit. Unlike `syscalls/sys_enter_<name>`, it exists for every
/// syscall on every kernel; runs the kernel skips (recursion) are counted in the program's
/// `recursion_misses`.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sys_enter(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct pt_regs *regs, long id)
    let nr = raw_arg(&ctx, 1);
    if !syscall_wanted(nr) {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    let off = offsets();
    if !traced((pid_tgid >> 32) as u32) || in_compat_syscall(&off) {
        return 0;
    }
    let regs = raw_arg(&ctx, 0) as *const u8;
    let mut p = PendingSyscall {
        nr: nr as u32,
        _pad: 0,
        args: [0; 6],
    };
    let mut i = 0;
    while i < 6 {
        // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
        p.args[i] = unsafe { read_field::<u64>(regs, off.regs_args[i]) }.unwrap_or(0);
        i += 1;
    }
    let tid = pid_tgid as u32;
    if PENDING.insert(&tid, &p, 0).is_err() {
        // The exit then finds no entry and counts the drop; never leave it an older one.
        let _ = PENDING.remove(&tid);
    }
    0
}

/// `raw_syscalls/sys_exit`: emits a traced syscall with its result and payloads. A traced
/// syscall whose entry was not recorded is counted as a drop, never lost silently.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct pt_regs *regs, long ret)
    let off = offsets();
    let regs = raw_arg(&ctx, 0) as *const u8;
    // SAFETY: offset from BTF; probe_read tolerates bad pointers.
    let nr = unsafe { read_field::<u64>(regs, off.regs_orig_ax) }.unwrap_or(u64::MAX);
    if !syscall_wanted(nr) {
        return 0;
    }
    let pid_tgid = bpf_get_current_pid_tgid();
    if !traced((pid_tgid >> 32) as u32) || in_compat_syscall(&off) {
        return 0;
    }
    let tid = pid_tgid as u32;
    // SAFETY: the value is copied out before the entry is removed.
    let Some(p) = (unsafe { PENDING.get(&tid) }).copied() else {
        count_drop_slot(DROP_SYSCALL_UNPAIRED);
        return 0;
    };
    let _ = PENDING.remove(&tid);
    let Some(payloads) = spec(p.nr) else {
        return 0;
    };
    let ret = raw_arg(&ctx, 1) as i64;
    let Some(mut rec) = Record::begin(EventKind::Syscall, size_of::<SyscallBody>(), &off) else {
        return 0;
    };
    rec.header().ret = ret;
    *rec.body::<SyscallBody>() = SyscallBody {
        nr: p.nr,
        _pad: 0,
        args: p.args,
    };
    fill_payload(&mut rec, 0, payloads[0], &p.args);
    fill_payload(&mut rec, 1, payloads[1], &p.args);
    // The prefilter looks at what was captured, so it judges exactly what userspace would see.
    let bits = syscall_bits(p.nr as u64);
    if bits & syscall_filter::OPEN_PATHS != 0 && !open_wanted(&mut rec, &p) {
        count_drop_slot(PREFILTERED_OPENS);
        return 0;
    }
    if bits & syscall_filter::CONNECT_DEST != 0 && !connect_wanted(&mut rec) {
        count_drop_slot(PREFILTERED_CONNECTS);
        return 0;
    }
    rec.submit();
    0
}

/// Connect prefilter: 1 for ports no rule can match a connect to.
#[map]
static CONNECT_PORTS: Array<u8> = Array::with_max_entries(CONNECT_PORT_SLOTS, 0);

/// Connect prefilter: destination networks no rule can match.
#[map]
static CONNECT_NETS: LpmTrie<[u8; CONNECT_NET_KEY_BYTES], u8> =
    LpmTrie::with_max_entries(MAX_CONNECT_NETS, BPF_F_NO_PREALLOC);

/// Whether a connect record (payload 0: the sockaddr as passed; `prefilter::passes_connect`
/// states the same check) is one some rule may need: anything but a whole IPv4 or IPv6
/// address passes; one passes unless its port or its network is excluded.
#[inline(always)]
fn connect_wanted(rec: &mut Record) -> bool {
    let len = rec.header().len0 as usize;
    let sa = rec.payload_dst(0);
    // SAFETY: reads within payload 0 (checked against its length) of the scratch area.
    unsafe {
        let Ok(family) = bpf_probe_read_kernel(sa as *const u16) else {
            return true;
        };
        let port = u16::from_be(bpf_probe_read_kernel(sa.add(2) as *const u16).unwrap_or(0));
        let mut key = LpmKey::new(
            8 * CONNECT_NET_KEY_BYTES as u32,
            [0u8; CONNECT_NET_KEY_BYTES],
        );
        if family == AF_INET && len >= 8 {
            key.data[0] = 4;
            let a = bpf_probe_read_kernel(sa.add(4) as *const [u8; 4]).unwrap_or([0; 4]);
            key.data[1..5].copy_from_slice(&a);
        } else if family == AF_INET6 && len >= 24 {
            key.data[0] = 6;
            let a = bpf_probe_read_kernel(sa.add(8) as *const [u8; 16]).unwrap_or([0; 16]);
            key.data[1..17].copy_from_slice(&a);
        } else {
            return true;
        }
        if CONNECT_PORTS.get(port as u32).is_some_and(|v| *v != 0) {
            return false;
        }
        CONNECT_NETS.get(&key).is_none()
    }
}

/// Open prefilter: path prefixes (LPM key bytes, no NUL) some rule can match on an open.
#[map]
static OPEN_PREFIXES: LpmTrie<[u8; OPEN_PREFIX_BYTES], u8> =
    LpmTrie::with_max_entries(MAX_OPEN_PREFIXES, BPF_F_NO_PREALLOC);

/// Per-CPU LPM key for `OPEN_PREFIXES` lookups.
#[map]
static OPEN_KEY: PerCpuArray<LpmKey<[u8; OPEN_PREFIX_BYTES]>> = PerCpuArray::with_max_entries(1, 0);

/// Whether an open record (payload 0: the path as passed; see `guard/src/prefilter.rs`, whose
/// `passes_open` states the same check) is one some rule may need: any path that is not
/// absolute and plain (a `.`, `..` or empty component, which the agent normalises), too long,
/// cut or unreadable passes; a plain absolute path passes when its longest prefix in
/// `OPEN_PREFIXES` admits the open's access.
#[inline(always)]
fn open_wanted(rec: &mut Record, p: &PendingSyscall) -> bool {
    let h = rec.header();
    let len = h.len0 as usize;
    if h.flags & (FLAG_TRUNCATED0 | FLAG_FAULT0) != 0 || len == 0 || len >= OPEN_PREFIX_BYTES {
        return true;
    }
    let write = match p.nr {
        syscalls::CREAT => true,
        syscalls::OPEN => p.args[1] & 3 != 0,
        syscalls::OPENAT => p.args[2] & 3 != 0,
        // openat2: `open_how.flags` leads payload 1.
        _ => {
            if (h.len1 as usize) < 8 {
                return true;
            }
            let at = rec.payload_dst(1);
            // SAFETY: payload 1 holds at least 8 bytes of the scratch area.
            unsafe { bpf_probe_read_kernel(at as *const u64) }.map_or(true, |f| f & 3 != 0)
        }
    };
    let Some(key) = OPEN_KEY.get_ptr_mut(0) else {
        return true;
    };
    let src = rec.payload_dst(0);
    // SAFETY: the key is per-CPU map memory; the copy reads OPEN_PREFIX_BYTES of the scratch
    // area after payload 0 (it has PAYLOAD_MAX bytes after it), which includes the path's NUL.
    unsafe {
        (*key).prefix_len = 8 * OPEN_PREFIX_BYTES as u32;
        let dst = core::ptr::addr_of_mut!((*key).data) as *mut _;
        if raw_probe_read_kernel(dst, OPEN_PREFIX_BYTES as u32, src as *const _) != 0 {
            return true;
        }
        let path = &(*key).data;
        if path[0] != b'/' {
            return true;
        }
        let mut prev = 0u8;
        for i in 0..OPEN_PREFIX_BYTES {
            let b = path[i];
            if b == 0 {
                break;
            }
            if prev == b'/' && (b == b'.' || b == b'/') {
                return true;
            }
            prev = b;
        }
        let bits = OPEN_PREFIXES.get(&*key).copied().unwrap_or(0);
        bits & open_prefix_bits::ANY != 0 || (write && bits & open_prefix_bits::WRITE != 0)
    }
}

#[inline(always)]
fn fill_payload(rec: &mut Record, slot: usize, what: Payload, args: &[u64; 6]) {
    match what {
        Payload::None => {}
        Payload::Str { arg } => {
            rec.str_payload(slot, args[(arg & 7) as usize % 6] as *const u8, true)
        }
        Payload::Bytes { arg, len_arg, max } => {
            let len = args[(len_arg & 7) as usize % 6].min(max as u64);
            rec.bytes_payload(slot, args[(arg & 7) as usize % 6] as *const u8, len)
        }
        Payload::Fixed { arg, len } => {
            rec.bytes_payload(slot, args[(arg & 7) as usize % 6] as *const u8, len as u64)
        }
    }
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
    if let Some(mut rec) = Record::begin(EventKind::ExecDenied, size_of::<ExecDeniedBody>(), &off) {
        rec.header().ret = -(EPERM as i64);
        *rec.body::<ExecDeniedBody>() = ExecDeniedBody {
            policy_id: policy,
            _pad: 0,
        };
        rec.submit();
    }
    -EPERM
}

// ================================================================================================
// Network quarantine (response engine, `quarantine_network`).
//
// Attached to the cgroup v2 root for ingress and egress. A packet whose socket belongs to a
// cgroup in `QUARANTINE`, or to a descendant of one (up to QUARANTINE_ANCESTOR_LEVELS deep), is
// dropped. Userspace pins the map and both links under /sys/fs/bpf/guard, so a quarantine
// outlives the agent.
// ================================================================================================

mod quarantine {
    use aya_ebpf::{
        bindings::BPF_F_NO_PREALLOC,
        helpers::{
            bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
            generated::{
                bpf_get_current_ancestor_cgroup_id, bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id,
            },
        },
        macros::{cgroup_skb, lsm, map},
        maps::HashMap,
        programs::{LsmContext, SkBuffContext},
    };

    use super::EPERM;

    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    use guard_ebpf::{MAX_QUARANTINED_CGROUPS, QUARANTINE_ANCESTOR_LEVELS, QuarantineEntry};

    const DROP: i32 = 0;
    const PASS: i32 = 1;

    #[map]
    static QUARANTINE: HashMap<u64, QuarantineEntry> =
        HashMap::with_max_entries(MAX_QUARANTINED_CGROUPS, BPF_F_NO_PREALLOC);

    #[inline(always)]
    fn in_force(cgroup: u64, now: u64) -> bool {
        if cgroup == 0 {
            return false;
        }
        // SAFETY: the value is read-only here and copied out at once.
        match unsafe { QUARANTINE.get(&cgroup) } {
            Some(e) => e.until_boot_ns == 0 || now < e.until_boot_ns,
            None => false,
        }
    }

    #[inline(always)]
    fn verdict(ctx: &SkBuffContext) -> i32 {
        let skb = ctx.skb.skb;
        // SAFETY: helpers allowed for cgroup_skb programs; `skb` is the program's context.
        let own = unsafe { bpf_skb_cgroup_id(skb) };
        // SAFETY: helper with no preconditions.
        let now = unsafe { bpf_ktime_get_boot_ns() };
        if in_force(own, now) {
            return DROP;
        }
        let mut level = 1;
        while level <= QUARANTINE_ANCESTOR_LEVELS {
            // SAFETY: as above; returns 0 past the socket's own depth.
            let id = unsafe { bpf_skb_ancestor_cgroup_id(skb, level as i32) };
            if id == 0 || id == own {
                break;
            }
            if in_force(id, now) {
                return DROP;
            }
            level += 1;
        }
        PASS
    }

    /// The current task's cgroup, or one of its ancestors, is quarantined.
    #[inline(always)]
    fn current_quarantined(now: u64) -> bool {
        // SAFETY: helper with no preconditions.
        let own = unsafe { bpf_get_current_cgroup_id() };
        if in_force(own, now) {
            return true;
        }
        let mut level = 1;
        while level <= QUARANTINE_ANCESTOR_LEVELS {
            // SAFETY: as above; returns 0 past the task's own depth.
            let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
            if id == 0 || id == own {
                break;
            }
            if in_force(id, now) {
                return true;
            }
            level += 1;
        }
        false
    }

    /// Where BPF LSM exists, a quarantined workload's IPv4/IPv6 `connect` fails with EPERM
    /// before any packet exists, UDP included (its connect sends nothing for cgroup_skb to
    /// drop). Unix sockets stay usable: the quarantine cuts the network, not local IPC.
    #[lsm(hook = "socket_connect")]
    pub fn quarantine_connect(ctx: LsmContext) -> i32 {
        // int socket_connect(struct socket *sock, struct sockaddr *address, int addrlen, int ret)
        // Argument 3 is the verdict of BPF LSM programs that ran before us; never weaken it.
        let prev: i32 = ctx.arg(3);
        if prev != 0 {
            return prev;
        }
        // SAFETY: helper with no preconditions.
        if !current_quarantined(unsafe { bpf_ktime_get_boot_ns() }) {
            return 0;
        }
        let addr: *const u16 = ctx.arg(1);
        // SAFETY: probe_read tolerates bad pointers; sa_family is the first u16 of a sockaddr.
        let family = unsafe { bpf_probe_read_kernel(addr) }.unwrap_or(0);
        if family == AF_INET || family == AF_INET6 {
            -EPERM
        } else {
            0
        }
    }

    #[cgroup_skb(ingress)]
    pub fn quarantine_ingress(ctx: SkBuffContext) -> i32 {
        verdict(&ctx)
    }

    #[cgroup_skb(egress)]
    pub fn quarantine_egress(ctx: SkBuffContext) -> i32 {
        verdict(&ctx)
    }
}

// ================================================================================================
// Per-workload policy enforcement (issue 5): BPF LSM programs for exec, open and connect, drift
// prevention, and the SIGKILL fallback for kernels without BPF LSM. Every decision rests on the
// real object: the path `bpf_d_path` resolves from the opened `struct file` (relative paths, `..`,
// symlinks and dirfds are already resolved by the kernel), the inode, or the kernel's copy of
// the socket address. Maps are filled by `guard/src/policy/kernel.rs`.
// ================================================================================================

use aya_ebpf::{
    bindings::path as kernel_path,
    helpers::generated::{
        bpf_d_path, bpf_probe_read_kernel as raw_probe_read_kernel, bpf_send_signal,
    },
    maps::lpm_trie::{Key as LpmKey, LpmTrie},
};
use guard_ebpf::{
    CONTAINER_ID_BYTES, CgroupPolicy, DecisionBody, InodeKey, MAX_NET_ENTRIES, MAX_NEW_FILES,
    MAX_PATH_ENTRIES, MAX_PENDING_CONTAINERS, MKDIR_PATH_BYTES, NET_KEY_FIXED_BITS, NetKeyData,
    PATH_KEY_BYTES, PATH_KEY_FIXED_BITS, PathKeyData, decision_op, net_bits, path_bits, path_kind,
    policy_flags as pf, reason, verdict,
};

// These maps are pinned by userspace (`guard/src/probes.rs`, `map_pin_path`) when policies are
// enforced, so that enforcement outlives the agent and a restarted agent adopts them.

/// cgroup id -> the policy that applies there.
#[map]
static POLICY_CGROUPS: HashMap<u64, CgroupPolicy> =
    HashMap::with_max_entries(MAX_POLICY_CGROUPS, BPF_F_NO_PREALLOC);

/// Exec and open path rules (see `PathKeyData`).
#[map]
static POLICY_PATHS: LpmTrie<PathKeyData, u32> =
    LpmTrie::with_max_entries(MAX_PATH_ENTRIES, BPF_F_NO_PREALLOC);

/// Connect rules (see `NetKeyData`).
#[map]
static POLICY_NETS: LpmTrie<NetKeyData, u32> =
    LpmTrie::with_max_entries(MAX_NET_ENTRIES, BPF_F_NO_PREALLOC);

/// Inodes opened for writing inside drift-protected workloads; value: the policy id.
#[map]
static NEW_FILES: LruHashMap<InodeKey, u32> = LruHashMap::with_max_entries(MAX_NEW_FILES, 0);

/// Per-CPU area for `bpf_d_path` output and the LPM lookup key.
const PATH_BUF: usize = 4096;
const KEY_AT: usize = PATH_BUF;
#[map]
static POLICY_SCRATCH: PerCpuArray<[u8; 2 * PATH_BUF]> = PerCpuArray::with_max_entries(1, 0);

const FMODE_READ: u32 = 1;
const FMODE_WRITE: u32 = 2;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
const SIGKILL: u32 = 9;

/// One field of the load-time offsets. Read on its own (not as a struct copy) so the verifier
/// sees a constant from the frozen read-only map, as direct BTF pointer loads require.
macro_rules! koff {
    ($field:ident) => {{
        // SAFETY: reading our own static; volatile so the default is not folded in.
        #[allow(unused_unsafe)]
        let v = unsafe { core::ptr::read_volatile(core::ptr::addr_of!(KERNEL_OFFSETS.$field)) };
        v
    }};
}

#[inline(always)]
fn cgroup_policy() -> Option<CgroupPolicy> {
    // SAFETY: helper with no preconditions; the value is copied out.
    let cg = unsafe { bpf_get_current_cgroup_id() };
    unsafe { POLICY_CGROUPS.get(&cg) }.copied()
}

/// Resolves `path` (a BTF pointer to a `struct path`) with `bpf_d_path` into the scratch area
/// and fills the LPM key after it. Returns the scratch base, or None if it cannot be resolved.
#[inline(always)]
fn resolve_path(path: *const u8, policy_id: u32, kind: u8) -> Option<*mut u8> {
    let base = POLICY_SCRATCH.get_ptr_mut(0)? as *mut u8;
    // SAFETY: PATH_BUF bytes at base; bpf_d_path bounds its write to that.
    let n = unsafe { bpf_d_path(path as *mut kernel_path, base as *mut _, PATH_BUF as u32) };
    if n <= 0 {
        return None;
    }
    // SAFETY: the key (4 + 256 bytes) lies within the second half of the scratch value.
    unsafe {
        let key = base.add(KEY_AT) as *mut LpmKey<PathKeyData>;
        (*key).prefix_len = PATH_KEY_FIXED_BITS + 8 * PATH_KEY_BYTES as u32;
        (*key).data.policy_id = policy_id;
        (*key).data.kind = kind;
        // Bytes after the NUL are left over from earlier paths; an entry never spans a NUL
        // (exact entries end with theirs), so they cannot cause a match.
        let dst = core::ptr::addr_of_mut!((*key).data.path) as *mut _;
        if raw_probe_read_kernel(dst, PATH_KEY_BYTES as u32, base as *const _) != 0 {
            return None;
        }
    }
    Some(base)
}

#[inline(always)]
fn path_rule(base: *mut u8) -> u32 {
    // SAFETY: resolve_path filled the key at KEY_AT.
    let key = unsafe { &*(base.add(KEY_AT) as *const LpmKey<PathKeyData>) };
    POLICY_PATHS.get(key).copied().unwrap_or(0)
}

#[inline(always)]
unsafe fn inode_of(file: *const u8) -> InodeKey {
    // SAFETY: offsets from BTF; reads go through probe_read, which tolerates bad pointers.
    unsafe {
        let inode: *const u8 = read_field(file, koff!(file_f_inode)).unwrap_or(core::ptr::null());
        let sb: *const u8 = read_field(inode, koff!(inode_i_sb)).unwrap_or(core::ptr::null());
        InodeKey {
            dev: read_field::<u32>(sb, koff!(sb_s_dev)).unwrap_or(0) as u64,
            ino: read_field::<u64>(inode, koff!(inode_i_ino)).unwrap_or(0),
        }
    }
}

/// Sends a `Decision` record; `path` is a kernel string (the d_path buffer) or null.
#[inline(always)]
fn report(body: &DecisionBody, path: *const u8, ret: i64) {
    let off = offsets();
    if let Some(mut rec) = Record::begin(EventKind::Decision, size_of::<DecisionBody>(), &off) {
        rec.header().ret = ret;
        *rec.body::<DecisionBody>() = *body;
        if !path.is_null() {
            rec.str_payload(0, path, false);
        }
        rec.submit();
    }
}

/// Returns the hook's verdict for a decision and reports it.
#[inline(always)]
fn decide(pol: &CgroupPolicy, mut body: DecisionBody, path: *const u8) -> i32 {
    body.policy_id = pol.policy_id;
    if pol.flags & pf::ENFORCE != 0 {
        body.verdict = verdict::DENY;
        report(&body, path, -(EPERM as i64));
        -EPERM
    } else {
        body.verdict = verdict::WOULD_DENY;
        report(&body, path, 0);
        0
    }
}

#[lsm(hook = "bprm_check_security")]
pub fn policy_exec(ctx: LsmContext) -> i32 {
    // bprm_check_security(bprm): argument 1 is the verdict of earlier BPF LSM programs.
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW | pf::DENY_NEW_BINARIES) == 0 {
        return 0;
    }
    let bprm: *const u8 = ctx.arg(0);
    let off_file = koff!(bprm_file);
    let off_path = koff!(file_f_path);
    if off_file == OFFSET_ABSENT || off_path == OFFSET_ABSENT || bprm.is_null() {
        return 0;
    }
    // A direct load (not probe_read) keeps the BTF type, which bpf_d_path requires.
    // SAFETY: the offset is a verifier-known constant into `struct linux_binprm`.
    let file = unsafe { core::ptr::read_volatile(bprm.add(off_file as usize) as *const *const u8) };
    if file.is_null() {
        return 0;
    }
    let mut body = DecisionBody {
        op: decision_op::EXEC,
        ..DecisionBody::default()
    };
    if pol.flags & pf::DENY_NEW_BINARIES != 0 {
        // SAFETY: see inode_of.
        let ino = unsafe { inode_of(file) };
        body.dev = ino.dev;
        body.ino = ino.ino;
        // SAFETY: the value is not used beyond the check.
        if unsafe { NEW_FILES.get(&ino) }.is_some() {
            body.reason = reason::NEW_BINARY;
            let base = resolve_path(
                unsafe { file.add(off_path as usize) },
                pol.policy_id,
                path_kind::EXEC,
            );
            return decide(
                &pol,
                body,
                base.map_or(core::ptr::null(), |b| b as *const u8),
            );
        }
    }
    if pol.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW) == 0 {
        return 0;
    }
    // SAFETY: constant offset into `struct file`; the result is a BTF pointer to `struct path`.
    let Some(base) = resolve_path(
        unsafe { file.add(off_path as usize) },
        pol.policy_id,
        path_kind::EXEC,
    ) else {
        // Unresolvable path: an allow list cannot admit it.
        if pol.flags & pf::EXEC_ALLOW != 0 {
            body.reason = reason::NOT_ALLOWED;
            return decide(&pol, body, core::ptr::null());
        }
        return 0;
    };
    let hit = path_rule(base) & path_bits::EXEC_MATCH != 0;
    if pol.flags & pf::EXEC_DENY != 0 && hit {
        body.reason = reason::DENY_LIST;
        return decide(&pol, body, base);
    }
    if pol.flags & pf::EXEC_ALLOW != 0 && !hit {
        body.reason = reason::NOT_ALLOWED;
        return decide(&pol, body, base);
    }
    0
}

#[lsm(hook = "file_open")]
pub fn policy_open(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & (pf::OPEN_RULES | pf::DENY_NEW_BINARIES) == 0 {
        return 0;
    }
    let file: *const u8 = ctx.arg(0);
    let off_path = koff!(file_f_path);
    if off_path == OFFSET_ABSENT || file.is_null() {
        return 0;
    }
    // SAFETY: probe_read of a field of the file being opened.
    let mode: u32 = unsafe { read_field(file, koff!(file_f_mode)) }.unwrap_or(0);
    if pol.flags & pf::OPEN_RULES != 0 {
        // SAFETY: constant offset into `struct file`; a BTF pointer to its `struct path`.
        if let Some(base) = resolve_path(
            unsafe { file.add(off_path as usize) },
            pol.policy_id,
            path_kind::OPEN,
        ) {
            let bits = path_rule(base);
            let denied = (mode & FMODE_READ != 0 && bits & path_bits::DENY_READ != 0)
                || (mode & FMODE_WRITE != 0 && bits & path_bits::DENY_WRITE != 0);
            if denied {
                let mut body = DecisionBody {
                    op: decision_op::OPEN,
                    reason: reason::DENY_LIST,
                    access: mode & (FMODE_READ | FMODE_WRITE),
                    ..DecisionBody::default()
                };
                // SAFETY: see inode_of.
                let ino = unsafe { inode_of(file) };
                body.dev = ino.dev;
                body.ino = ino.ino;
                let r = decide(&pol, body, base);
                if r != 0 {
                    return r;
                }
            }
        }
    }
    if pol.flags & pf::DENY_NEW_BINARIES != 0 && mode & FMODE_WRITE != 0 {
        // SAFETY: see inode_of.
        let ino = unsafe { inode_of(file) };
        if ino.ino != 0 {
            let _ = NEW_FILES.insert(&ino, &pol.policy_id, 0);
        }
    }
    0
}

#[lsm(hook = "socket_connect")]
pub fn policy_connect(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & (pf::CONNECT_DENY | pf::CONNECT_ALLOW) == 0 {
        return 0;
    }
    let addr: *const u8 = ctx.arg(1);
    let addrlen: i32 = ctx.arg(2);
    // SAFETY: the kernel's copy of the caller's sockaddr; probe_read tolerates bad pointers.
    let Ok(family) = (unsafe { bpf_probe_read_kernel(addr as *const u16) }) else {
        return 0;
    };
    let mut key = LpmKey::new(
        NET_KEY_FIXED_BITS + 128,
        NetKeyData {
            policy_id: pol.policy_id,
            ..NetKeyData::default()
        },
    );
    // sockaddr_in: port at 2, address at 4; sockaddr_in6: port at 2, address at 8 (UAPI).
    let port_be: u16;
    if family == AF_INET && addrlen >= 8 {
        port_be = unsafe { bpf_probe_read_kernel(addr.add(2) as *const u16) }.unwrap_or(0);
        let a = unsafe { bpf_probe_read_kernel(addr.add(4) as *const [u8; 4]) }.unwrap_or([0; 4]);
        key.data.family = 4;
        key.data.addr[..4].copy_from_slice(&a);
    } else if family == AF_INET6 && addrlen >= 24 {
        port_be = unsafe { bpf_probe_read_kernel(addr.add(2) as *const u16) }.unwrap_or(0);
        let a = unsafe { bpf_probe_read_kernel(addr.add(8) as *const [u8; 16]) }.unwrap_or([0; 16]);
        // An IPv4-mapped address reaches the IPv4 destination: match it as IPv4.
        let mapped = a[..10].iter().all(|&b| b == 0) && a[10] == 0xff && a[11] == 0xff;
        if mapped {
            key.data.family = 4;
            key.data.addr[..4].copy_from_slice(&a[12..16]);
        } else {
            key.data.family = 6;
            key.data.addr = a;
        }
    } else {
        return 0;
    }
    let port = u16::from_be(port_be);
    key.data.port = port;
    let mut bits = POLICY_NETS.get(&key).copied().unwrap_or(0);
    key.data.port = 0;
    bits |= POLICY_NETS.get(&key).copied().unwrap_or(0);
    let why = if bits & net_bits::DENY != 0 {
        reason::DENY_LIST
    } else if pol.flags & pf::CONNECT_ALLOW != 0 && bits & net_bits::ALLOW == 0 {
        reason::NOT_ALLOWED
    } else {
        return 0;
    };
    let body = DecisionBody {
        op: decision_op::CONNECT,
        reason: why,
        family: key.data.family,
        port,
        addr: key.data.addr,
        ..DecisionBody::default()
    };
    decide(&pol, body, core::ptr::null())
}

/// Fallback for kernels without BPF LSM, attached to `sched/sched_process_exec`: the new image
/// is in place but has not run an instruction yet; a denied exec gets SIGKILL, which is
/// delivered before the return to user space. It matches the filename given to execve (an
/// absolute path; see docs/policies.md for what this backend cannot see).
#[tracepoint(category = "sched", name = "sched_process_exec")]
pub fn policy_exec_fallback(ctx: TracePointContext) -> u32 {
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW) == 0 {
        return 0;
    }
    let loc_off = koff!(tp_exec_filename_loc);
    if loc_off == OFFSET_ABSENT {
        return 0;
    }
    let Some(base) = POLICY_SCRATCH.get_ptr_mut(0) else {
        return 0;
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
        ..DecisionBody::default()
    };
    let hit = if n > 1 {
        // SAFETY: as in resolve_path.
        unsafe {
            let key = base.add(KEY_AT) as *mut LpmKey<PathKeyData>;
            (*key).prefix_len = PATH_KEY_FIXED_BITS + 8 * PATH_KEY_BYTES as u32;
            (*key).data.policy_id = pol.policy_id;
            (*key).data.kind = path_kind::EXEC;
            let dst = core::ptr::addr_of_mut!((*key).data.path) as *mut _;
            raw_probe_read_kernel(dst, PATH_KEY_BYTES as u32, base as *const _);
        }
        path_rule(base) & path_bits::EXEC_MATCH != 0
    } else {
        false
    };
    if pol.flags & pf::EXEC_DENY != 0 && hit {
        body.reason = reason::DENY_LIST;
    } else if pol.flags & pf::EXEC_ALLOW != 0 && !hit {
        body.reason = reason::NOT_ALLOWED;
    } else {
        return 0;
    }
    body.policy_id = pol.policy_id;
    if pol.flags & pf::ENFORCE != 0 {
        // SAFETY: helper with no preconditions; it signals the current task.
        unsafe { bpf_send_signal(SIGKILL) };
        body.verdict = verdict::KILL;
    } else {
        body.verdict = verdict::WOULD_DENY;
    }
    report(&body, base, 0);
    0
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

// ================================================================================================
// Self-protection of the agent from containers (issue 9; docs/self-protection.md). BPF LSM only.
//
// A task is "in a container" when it is not the agent and either its pid namespace is not the
// host's (checked with `bpf_get_ns_current_pid_tgid` against PID 1's pid namespace) or its mount
// namespace is not the host's (`task->nsproxy->mnt_ns->ns.inum`, offsets from BTF). Such a task
// cannot signal or ptrace the agent, cannot get read or write permission on a protected inode
// (guard's config, policies, audit log, pin directory and pins: opens, directory changes and
// `BPF_OBJ_GET` all ask `inode_permission`), and cannot get a file descriptor for one of guard's
// BPF objects by id. Every denial is a `Decision` record (reason `SELF_PROTECT`). The agent fills
// the maps (`guard/src/selfprotect.rs`); these programs are not pinned: they live with the agent.
// ================================================================================================

use guard_ebpf::{
    InodeKey as SpInodeKey, MAX_PROTECTED_BPF_IDS, MAX_PROTECTED_INODES, SelfProtectConfig,
    bpf_id_key, bpf_obj_kind,
};

#[map]
static SELF_PROTECT: Array<SelfProtectConfig> = Array::with_max_entries(1, 0);

#[map]
static PROTECTED_INODES: HashMap<SpInodeKey, u32> =
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
fn self_protect_deny(op: u8, access: u32, dev: u64, ino: u64, class: u8) -> i32 {
    let mut body = DecisionBody {
        op,
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
    self_protect_deny(decision_op::SIGNAL, sig as u32, 0, tgid as u64, 0)
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
    self_protect_deny(decision_op::PTRACE, mode, 0, tgid as u64, 0)
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
    let key = unsafe {
        let sb: *const u8 = read_field(inode, koff!(inode_i_sb)).unwrap_or(core::ptr::null());
        SpInodeKey {
            dev: read_field::<u32>(sb, koff!(sb_s_dev)).unwrap_or(0) as u64,
            ino: read_field::<u64>(inode, koff!(inode_i_ino)).unwrap_or(0),
        }
    };
    // SAFETY: the value is copied out at once.
    let Some(class) = (unsafe { PROTECTED_INODES.get(&key) }).copied() else {
        return 0;
    };
    if !in_container(&cfg) {
        return 0;
    }
    self_protect_deny(
        decision_op::PROTECTED_FILE,
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
    self_protect_deny(decision_op::BPF_OBJECT, cmd as u32, 0, key, 0)
}
