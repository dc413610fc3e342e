//! Capture: the `sched` tracepoints (exec with argv, fork, exit) and syscall enter/exit for the
//! traced syscalls (on each one's own `syscalls/sys_*_<name>` tracepoints; `syscall_fexit` for
//! one without them; `raw_syscalls` only when neither exists), with the open and connect
//! prefilters. Records go to `EVENTS`.

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_probe_read_kernel as raw_probe_read_kernel,
            bpf_task_pt_regs,
        },
    },
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{
        Array, PerCpuArray,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use guard_ebpf::{
    CONNECT_NET_KEY_BYTES, CONNECT_PORT_SLOTS, EventKind, ExecBody, ExitBody, FLAG_FAULT0,
    FLAG_TRUNCATED0, ForkBody, KernelOffsets, MAX_CONNECT_NETS, MAX_OPEN_PREFIXES,
    MAX_PID_NS_LEVEL, MAX_SYSCALL_NR, OFFSET_ABSENT, OPEN_PREFIX_BYTES, PREFILTERED_CONNECTS,
    PREFILTERED_OPENS, PREFILTERED_SENDS, REGS_ARG_WORDS, SyscallArgs, SyscallBody, TS_COMPAT,
    exec_flags, open_prefix_bits, syscall_filter, syscalls,
    syscalls::{MSGHDR_IOV, MSGHDR_NAMELEN, Payload, spec},
};

use super::{
    kpath::{self, Kpath},
    shared::{
        AF_INET, AF_INET6, EPERM, Record, count_drop_slot, koff, offsets, read_field, traced,
    },
};

/// `I_CTIME_QUERIED` (include/linux/fs.h): a flag in `inode.i_ctime_nsec`.
const I_CTIME_QUERIED: u32 = 1 << 31;

/// Open flags (the generic values, include/uapi/asm-generic/fcntl.h): the access mode's
/// write bits (`O_WRONLY | O_RDWR`), and those with `O_CREAT` and `O_TRUNC`.
const O_ACCMODE_WRITE: u64 = 0o3;
const OPEN_WRITE_INTENT: u64 = O_ACCMODE_WRITE | 0o100 | 0o1000;

/// Syscall number -> non-zero when traced; filled by userspace.
#[map]
static SYSCALL_FILTER: Array<u8> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Per-CPU landing place of the saved argument registers a syscall exit copies.
#[map]
static REGS_WORDS: PerCpuArray<[u64; REGS_ARG_WORDS]> = PerCpuArray::with_max_entries(1, 0);

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
    // The environment (proc.env), after argv.
    if let Some(mm) = mm {
        // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
        let (es, ee) = unsafe {
            (
                read_field::<u64>(mm, off.mm_env_start).unwrap_or(0),
                read_field::<u64>(mm, off.mm_env_end).unwrap_or(0),
            )
        };
        if es != 0 && ee > es {
            let total = (ee - es).min(u32::MAX as u64) as u32;
            let got = rec.tail_payload(es as *const u8, ee - es);
            let b = rec.body::<ExecBody>();
            b.env_total = total;
            match got {
                Some(n) => b.env_len = n as u32,
                None => b.flags |= exec_flags::ENV_FAULT,
            }
        }
    }
    // The executed file's inode (proc.exe_ino*): the new image's `mm->exe_file`.
    if let Some(mm) = mm {
        // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
        let inode = unsafe {
            read_field::<*const u8>(mm, off.mm_exe_file)
                .and_then(|f| read_field::<*const u8>(f, off.file_f_inode))
        };
        if let Some(inode) = inode {
            // SAFETY: as above.
            let got = unsafe {
                (
                    read_field::<u64>(inode, off.inode_i_ino),
                    read_field::<i64>(inode, off.inode_ctime_sec),
                    read_field::<u32>(inode, off.inode_ctime_nsec),
                    read_field::<i64>(inode, off.inode_mtime_sec),
                    read_field::<u32>(inode, off.inode_mtime_nsec),
                )
            };
            if let (Some(ino), Some(cs), Some(cn), Some(ms), Some(mn)) = got {
                let b = rec.body::<ExecBody>();
                b.flags |= exec_flags::EXE_INODE;
                b.exe_ino = ino;
                b.exe_ctime_sec = cs;
                // Bit 31 of `i_ctime_nsec` is the kernel's I_CTIME_QUERIED flag (multigrain
                // timestamps, 6.13 on), not part of the time.
                b.exe_ctime_nsec = cn & !I_CTIME_QUERIED;
                b.exe_mtime_sec = ms;
                b.exe_mtime_nsec = mn;
            }
        }
    }
    if let Some(t) = pidns_start(task, &off) {
        let b = rec.body::<ExecBody>();
        b.flags |= exec_flags::PIDNS_START;
        b.pidns_start_boot_ns = t;
    }
    rec.submit();
    0
}

/// When `task`'s pid namespace started (boot-clock ns): 0 for the initial namespace (boot, as
/// Falco), else its init's (`child_reaper`) `start_boottime`. None when an offset is absent or
/// a read fails.
#[inline(always)]
fn pidns_start(task: *const u8, off: &KernelOffsets) -> Option<u64> {
    if off.upid_size == OFFSET_ABSENT || off.pid_numbers_ns == OFFSET_ABSENT {
        return None;
    }
    // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
    let pid: *const u8 = unsafe { read_field(task, off.task_thread_pid) }?;
    let level: u32 = unsafe { read_field(pid, off.pid_level) }?;
    if level == 0 {
        return Some(0);
    }
    if level > MAX_PID_NS_LEVEL {
        return None;
    }
    let at = off
        .pid_numbers_ns
        .checked_add(level.checked_mul(off.upid_size)?)?;
    // SAFETY: as above.
    let ns: *const u8 = unsafe { read_field(pid, at) }?;
    let reaper: *const u8 = unsafe { read_field(ns, off.pidns_child_reaper) }?;
    unsafe { read_field::<u64>(reaper, off.task_start_boottime) }
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

/// Whether `task` (the current task, BTF-typed) is inside a 32-bit syscall, whose numbers are
/// not x86_64's.
#[inline(always)]
fn in_compat_syscall(task: *const u8) -> bool {
    let off = koff!(task_ti_status);
    // SAFETY: a load the verifier checks against `task_struct.thread_info.status` (a
    // load-time constant), made only when the offset is known.
    off != OFFSET_ABSENT && unsafe { *(task.add(off as usize) as *const u32) } & TS_COMPAT != 0
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
pub(super) fn syscall_wanted(nr: u64) -> bool {
    syscall_bits(nr) & syscall_filter::TRACE != 0
}

/// Where a syscall's saved user registers are.
#[derive(Clone, Copy)]
pub(super) enum Regs {
    /// A BTF-typed `struct pt_regs *` (`bpf_task_pt_regs`, `tp_btf` and fexit arguments): the
    /// arguments are plain loads the verifier checks, no helper call.
    Typed(*const u8),
    /// An address the verifier does not type (a plain raw tracepoint): one helper copy.
    Plain(*const u8),
}

/// Emits traced syscall `nr` with result `ret` at its exit, its arguments read from the user
/// registers its entry saved (`regs`, asked for only when the caller is traced): x86_64
/// syscalls leave them as they came, and none of the traced ones replaces them (exec, whose
/// success does, is captured by `sched_process_exec`). One program per syscall, no state
/// between entry and exit. `any_abi`: the hook also fires for 32-bit (ia32) syscalls, whose
/// numbers are not x86_64's (`raw_syscalls`; the per-syscall tracepoints and the `__x64_sys_*`
/// functions never see them).
#[inline(always)]
pub(super) fn capture<const TYPED: bool>(
    nr: u32,
    ret: i64,
    any_abi: bool,
    regs: impl FnOnce(*const u8) -> Regs,
) {
    // `current`, typed: its tgid, registers and descriptor table are then plain loads or
    // take it as an argument, with no helper call to find it again.
    // SAFETY: helper with no preconditions.
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    // SAFETY: a load the verifier checks against `task_struct.tgid` (a load-time constant).
    let tgid = unsafe { *(task.add(koff!(task_tgid) as usize) as *const u32) };
    // Single fields, not `offsets()`: copying the whole table costs more than the rest of a
    // run that returns early.
    if !traced(tgid) || (any_abi && in_compat_syscall(task)) {
        return;
    }
    let args = match regs(task) {
        Regs::Typed(regs) => typed_args(regs),
        Regs::Plain(regs) => copied_args(regs),
    };
    let mut p = SyscallArgs { nr, _pad: 0, args };
    msghdr_args(&mut p);
    emit::<TYPED>(&p, ret, task, !any_abi);
}

/// The six argument registers, loaded from a BTF-typed `struct pt_regs *`.
#[inline(always)]
fn typed_args(regs: *const u8) -> [u64; 6] {
    let o = koff!(regs_args);
    // SAFETY: loads the verifier checks against `struct pt_regs` (the offsets are load-time
    // constants from BTF, each an unsigned long member).
    let at = |i: usize| unsafe { *(regs.add(o[i] as usize) as *const u64) };
    [at(0), at(1), at(2), at(3), at(4), at(5)]
}

/// The six argument registers at an untyped address: one copy of the REGS_ARG_WORDS words
/// from the lowest (userspace checked they span no more), not one read per argument.
#[inline(always)]
fn copied_args(regs: *const u8) -> [u64; 6] {
    let o = koff!(regs_args);
    let Some(words) = REGS_WORDS.get_ptr_mut(0) else {
        return [0; 6];
    };
    let words = words as *mut u64;
    let mut base = o[0];
    let mut i = 1;
    while i < 6 {
        base = base.min(o[i]);
        i += 1;
    }
    // SAFETY: the destination is REGS_ARG_WORDS words of map memory; probe_read tolerates
    // bad pointers.
    let r = unsafe {
        raw_probe_read_kernel(
            words as *mut _,
            8 * REGS_ARG_WORDS as u32,
            regs.wrapping_add(base as usize) as *const _,
        )
    };
    let arg = |i: usize| {
        let w = ((o[i].wrapping_sub(base) / 8) as usize).min(REGS_ARG_WORDS - 1);
        // SAFETY: w < REGS_ARG_WORDS.
        if r == 0 { unsafe { *words.add(w) } } else { 0 }
    };
    // Each word written once (a zeroed array first costs a byte-wise memset in BPF).
    [arg(0), arg(1), arg(2), arg(3), arg(4), arg(5)]
}

/// sendmsg: its `struct msghdr`'s name and first iovec, read at entry into the arguments
/// (`syscalls::MSGHDR_IOV` says which); 0 for what cannot be read.
#[inline(always)]
fn msghdr_args(p: &mut SyscallArgs) {
    if p.nr != syscalls::SENDMSG {
        return;
    }
    let msg = p.args[1] as *const u8;
    // SAFETY: probe_read_user tolerates bad pointers; every read is checked.
    unsafe {
        let name = bpf_probe_read_user(msg as *const u64).unwrap_or(0);
        let namelen =
            bpf_probe_read_user(msg.wrapping_add(MSGHDR_NAMELEN) as *const u32).unwrap_or(0);
        let iov = bpf_probe_read_user(msg.wrapping_add(MSGHDR_IOV) as *const u64).unwrap_or(0);
        let (base, len) = if iov == 0 {
            (0, 0)
        } else {
            (
                bpf_probe_read_user(iov as *const u64).unwrap_or(0),
                bpf_probe_read_user((iov as *const u64).wrapping_add(1)).unwrap_or(0),
            )
        };
        p.args[2] = base;
        p.args[3] = name;
        p.args[4] = if name == 0 { 0 } else { namelen as u64 };
        p.args[5] = len;
    }
}

/// The record of syscall `p` with result `ret` of `task` (the current task, BTF-typed),
/// through the open and connect prefilters. `kpath_first`: walk the kernel path first and
/// honour `KPATH_DECIDES`; else (the raw_syscalls programs, which capture an open only on a
/// kernel without its tracepoints, and whose verification the walk's place would blow up)
/// walk it after the copies and take the wider check of both paths, which passes a superset.
#[inline(always)]
fn emit<const TYPED: bool>(p: &SyscallArgs, ret: i64, task: *const u8, kpath_first: bool) {
    let bits = syscall_bits(p.nr as u64);
    // A send without a destination (sendto's `dest_addr`, sendmsg's `msg_name`), before any
    // ring space is taken.
    if bits & syscall_filter::SEND_DEST != 0
        && match p.nr {
            syscalls::SENDTO => p.args[4] == 0,
            syscalls::SENDMSG => p.args[3] == 0,
            _ => false,
        }
    {
        count_drop_slot(PREFILTERED_SENDS);
        return;
    }
    let is_open = matches!(
        p.nr,
        syscalls::OPEN | syscalls::CREAT | syscalls::OPENAT | syscalls::OPENAT2
    );
    // The opened file's own path, so a symlink, `..`, bind mount or chroot cannot hide it.
    let walk = || {
        if is_open && ret >= 0 {
            Some(kpath::open_path::<TYPED>(task, ret))
        } else {
            None
        }
    };
    let mut kpath = None;
    // Judged by that path alone, before the path as passed is copied: most opens are
    // dropped, and the copy is almost a third of their cost.
    let mut wanted = false;
    if kpath_first {
        kpath = walk();
        if bits & syscall_filter::KPATH_DECIDES != 0
            && let Some(Some(k)) = kpath
            && let Some(flags) = open_flags_in_regs(p)
        {
            if !kpath_admits(k, flags & O_ACCMODE_WRITE != 0) {
                count_drop_slot(PREFILTERED_OPENS);
                return;
            }
            wanted = true;
        }
    }
    // What to copy, read only now: values that differ per syscall, live across the walk's
    // loop, would have the verifier walk it once per syscall.
    let Some(payloads) = spec(p.nr) else {
        return;
    };
    let Some(mut rec) = Record::begin_bare(EventKind::Syscall, size_of::<SyscallBody>()) else {
        return;
    };
    rec.header().ret = ret;
    *rec.body::<SyscallBody>() = SyscallBody {
        nr: p.nr,
        _pad: 0,
        args: p.args,
    };
    fill_payload(&mut rec, 0, payloads[0], &p.args, ret);
    fill_payload(&mut rec, 1, payloads[1], &p.args, ret);
    if !kpath_first {
        kpath = walk();
    }
    // The prefilter looks at what is captured, so it judges exactly what userspace would see.
    if bits & syscall_filter::OPEN_PATHS != 0
        && !wanted
        && !open_wanted(&mut rec, p, ret, kpath.flatten())
    {
        count_drop_slot(PREFILTERED_OPENS);
        return;
    }
    if let Some(k) = kpath {
        kpath::attach(&mut rec, k, p.nr == syscalls::OPENAT2);
    }
    if bits & syscall_filter::CONNECT_DEST != 0 && !connect_wanted(&mut rec) {
        count_drop_slot(PREFILTERED_CONNECTS);
        return;
    }
    rec.fill_current(&offsets());
    rec.submit();
}

/// `syscalls/sys_exit_<name>`, attached by userspace to the exit tracepoint of each traced
/// syscall only, so other syscalls run no guard program. Record layout (the same for every
/// syscall): common fields, `int __syscall_nr` at 8, `long ret` at 16; the arguments come
/// from the task's saved user registers (`capture`). An opened file's path is walked with
/// helper reads, which every kernel takes.
#[tracepoint]
pub fn sys_exit_one(ctx: TracePointContext) -> u32 {
    exit_one::<false>(ctx)
}

/// `sys_exit_one` with the opened file's path walked by plain loads from kernel objects typed
/// through the `bpf_rdonly_cast` kfunc (Linux 6.2 and later; userspace loads `sys_exit_one`
/// where this one is refused).
#[tracepoint]
pub fn sys_exit_one_typed(ctx: TracePointContext) -> u32 {
    exit_one::<true>(ctx)
}

#[inline(always)]
fn exit_one<const TYPED: bool>(ctx: TracePointContext) -> u32 {
    // SAFETY: direct loads within the tracepoint record (the verifier checks the context
    // access; no helper call needed).
    let (nr, ret) = unsafe {
        (
            *(ctx.as_ptr().add(8) as *const i32),
            *(ctx.as_ptr().add(16) as *const i64),
        )
    };
    if nr < 0 || !syscall_wanted(nr as u64) {
        return 0;
    }
    // SAFETY: `current` is a valid task; its saved registers live as long as the syscall.
    capture::<TYPED>(nr as u32, ret, false, |task| {
        Regs::Typed(unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8)
    });
    0
}

/// Whether the `raw_syscalls` program captures syscall `nr` (traced, and without a tracepoint
/// of its own on this kernel).
#[inline(always)]
fn raw_wanted(nr: u64) -> bool {
    let bits = syscall_bits(nr);
    bits & syscall_filter::TRACE != 0 && bits & syscall_filter::VIA_RAW != 0
}

/// `raw_syscalls/sys_exit`, BTF-typed (`tp_btf`): attached only when a traced syscall has no
/// tracepoint of its own on this kernel; it runs for every syscall and captures those
/// (`VIA_RAW`). The verifier knows `regs`' type, so `orig_ax` is a plain load, not a helper
/// call, on every syscall. Runs the kernel skips (recursion) are counted in the program's
/// `recursion_misses`.
#[btf_tracepoint(function = "sys_exit")]
pub fn sys_exit(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(struct pt_regs *regs, long ret): `regs` is the task's saved user registers.
    let regs: *const u8 = ctx.arg(0);
    // SAFETY: a load the verifier checks against `struct pt_regs` (the offset is a load-time
    // constant from BTF).
    let nr = unsafe { *(regs.add(koff!(regs_orig_ax) as usize) as *const u64) };
    if !raw_wanted(nr) {
        return 0;
    }
    capture::<false>(nr as u32, ctx.arg::<i64>(1), true, |_| Regs::Typed(regs));
    0
}

/// The same as a plain raw tracepoint, for kernels that refuse BTF-typed (tracing) programs:
/// `orig_ax` through a helper.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn sys_exit_raw(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct pt_regs *regs, long ret)
    let regs = raw_arg(&ctx, 0) as *const u8;
    // SAFETY: offset from BTF; probe_read tolerates bad pointers.
    let nr = unsafe { read_field::<u64>(regs, koff!(regs_orig_ax)) }.unwrap_or(u64::MAX);
    if !raw_wanted(nr) {
        return 0;
    }
    capture::<false>(nr as u32, raw_arg(&ctx, 1) as i64, true, |_| {
        Regs::Plain(regs)
    });
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
    let sa = rec.payload_dst(0) as *const u8;
    if len < 2 {
        return true;
    }
    // Plain loads from the scratch area (map memory): no helper calls.
    // SAFETY: reads within payload 0 (checked against its length) of the scratch area, which
    // follows the 8-byte aligned body.
    unsafe {
        let family = core::ptr::read(sa as *const u16);
        let mut key = LpmKey::new(
            8 * CONNECT_NET_KEY_BYTES as u32,
            [0u8; CONNECT_NET_KEY_BYTES],
        );
        if family == AF_INET && len >= 8 {
            key.data[0] = 4;
            let a = core::ptr::read_unaligned(sa.add(4) as *const [u8; 4]);
            key.data[1..5].copy_from_slice(&a);
        } else if family == AF_INET6 && len >= 24 {
            key.data[0] = 6;
            let a = core::ptr::read_unaligned(sa.add(8) as *const [u8; 16]);
            key.data[1..17].copy_from_slice(&a);
        } else {
            return true;
        }
        let port = u16::from_be(core::ptr::read(sa.add(2) as *const u16));
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

/// An `OPEN_PREFIXES` key.
type PrefixKey = LpmKey<[u8; OPEN_PREFIX_BYTES]>;

/// Whether an open record (payload 0: the path as passed; see `guard/src/prefilter.rs`, whose
/// `passes_open_resolved` states the same check) is one some rule may need: it passes when
/// the path as passed passes, or the opened file's kernel-resolved path `kpath` does. A path
/// that is not plain (`prefix_admits`, `kpath_admits`), a path as passed that is too long,
/// cut or unreadable, and a kernel path too long for a key pass; a plain path passes when its
/// longest prefix in `OPEN_PREFIXES` admits the open's access. An open for write (or
/// truncate, or create) refused with EPERM passes whatever its names: a seal refuses it in
/// the kernel, and only its record tells the agent.
#[inline(always)]
fn open_wanted(rec: &mut Record, p: &SyscallArgs, ret: i64, kpath: Option<Kpath>) -> bool {
    let h = rec.header();
    let len = h.len0 as usize;
    if h.flags & (FLAG_TRUNCATED0 | FLAG_FAULT0) != 0 || len == 0 || len >= OPEN_PREFIX_BYTES {
        return true;
    }
    let flags = match open_flags_in_regs(p) {
        Some(f) => f,
        // openat2: `open_how.flags` leads payload 1.
        None => {
            if (h.len1 as usize) < 8 {
                return true;
            }
            let at = rec.payload_dst(1) as *const u64;
            // SAFETY: payload 1 holds at least 8 bytes of the scratch area (after payload 0,
            // so unaligned).
            unsafe { core::ptr::read_unaligned(at) }
        }
    };
    if ret == -i64::from(EPERM) && flags & OPEN_WRITE_INTENT != 0 {
        return true;
    }
    let write = flags & O_ACCMODE_WRITE != 0;
    // The key in place: the 4 bytes before payload 0 (the end of the body) hold its prefix
    // length for the lookup, then get their value back.
    let key = rec.payload_dst(0).wrapping_sub(4);
    // SAFETY: payload 0 follows the 8-byte aligned body in the scratch area, with
    // PAYLOAD_MAX bytes after it (the path, its NUL, and older bytes).
    let admitted = unsafe {
        let body_end = core::ptr::read(key as *const u32);
        let admitted = prefix_admits(key, write);
        core::ptr::write(key as *mut u32, body_end);
        admitted
    };
    if admitted {
        return true;
    }
    kpath.is_some_and(|k| kpath_admits(k, write))
}

/// The open flags of open, creat and openat, which are in the argument registers (creat's
/// are implied); None for openat2, whose flags are in user memory.
#[inline(always)]
fn open_flags_in_regs(p: &SyscallArgs) -> Option<u64> {
    match p.nr {
        syscalls::CREAT => Some(OPEN_WRITE_INTENT),
        syscalls::OPEN => Some(p.args[1]),
        syscalls::OPENAT => Some(p.args[2]),
        _ => None,
    }
}

/// Whether an opened file's kernel-resolved path `k` passes the open prefilter for an open
/// with `write` access: too long for a key, with a component starting with `.` (a rule's
/// `contains "/."` need not be a prefix), or admitted by its longest prefix.
#[inline(always)]
fn kpath_admits(k: Kpath, write: bool) -> bool {
    // SAFETY: `key` is the 4 free bytes before the path in KPATH_BUF, with more than
    // OPEN_PREFIX_BYTES + 8 after them, a NUL ending the path (shorter than a key here).
    k.len >= OPEN_PREFIX_BYTES || unsafe { !plain(k.src, false) || prefix_lookup(k.key, write) }
}

/// Whether the NUL-terminated path as passed after the 4 bytes at `key` is one some rule may
/// need: a path that is not plain passes (not absolute, or with an empty component, a
/// component starting with `.`, or `..` anywhere, so a rule's `contains "/."` or `".."` need
/// not be a prefix); otherwise its longest prefix in `OPEN_PREFIXES` decides.
///
/// # Safety
/// As `prefix_lookup`.
#[inline(always)]
unsafe fn prefix_admits(key: *mut u8, write: bool) -> bool {
    // SAFETY: per the contract.
    unsafe { !plain(key.add(4), true) || prefix_lookup(key, write) }
}

/// Per byte of `w`, its top bit when the byte is `c` (exact: no borrow crosses bytes).
#[inline(always)]
fn bytes_eq(w: u64, c: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = w ^ (c as u64 * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x) & !LOW7
}

/// Whether the NUL-terminated path at `path` is absolute with no `/.` in it, nor `//` or `..`
/// when `as_passed` (a kernel path has neither as a component, and `..` inside a name is
/// plain). Eight bytes a step, each word beside the one a byte further on (its pairs' second
/// bytes), with no branch on the bytes: the verifier walks 32 short steps, not 256 with a
/// state per previous byte.
///
/// # Safety
/// `path` is followed by readable map memory, `OPEN_PREFIX_BYTES + 8` bytes in all. Without a
/// NUL in its first `OPEN_PREFIX_BYTES` bytes (openat2's `open_how` takes the place of the
/// path's NUL in the record) those are judged whole: a pair the bytes after the path add only
/// makes it pass.
#[inline(always)]
unsafe fn plain(path: *const u8, as_passed: bool) -> bool {
    // SAFETY: per the contract.
    unsafe {
        if *path != b'/' {
            return false;
        }
        let mut k = 0;
        while k < OPEN_PREFIX_BYTES / 8 {
            let w0 = kpath::load_u64(path.add(8 * k));
            let w1 = kpath::load_u64(path.add(8 * k + 1));
            let dot1 = bytes_eq(w1, b'.');
            let pairs = if as_passed {
                (bytes_eq(w0, b'/') & (dot1 | bytes_eq(w1, b'/'))) | (bytes_eq(w0, b'.') & dot1)
            } else {
                bytes_eq(w0, b'/') & dot1
            };
            let nul = bytes_eq(w0, 0);
            // The bytes before the first NUL (all when there is none: 0 - 1 wraps).
            let before = (nul & nul.wrapping_neg()).wrapping_sub(1);
            if pairs & before != 0 {
                return false;
            }
            if nul != 0 {
                return true;
            }
            k += 1;
        }
        true
    }
}

/// Whether the longest prefix in `OPEN_PREFIXES` of the NUL-terminated path after the 4 bytes
/// at `key` admits an open with `write` access. The key is the path in place (no copy): the 4
/// bytes take its prefix length, and what follows the path's NUL cannot match, as no stored
/// prefix holds a NUL.
///
/// # Safety
/// `key` points to 4 writable bytes followed by the path, its NUL, and at least
/// `OPEN_PREFIX_BYTES` readable bytes in all, in map memory.
#[inline(always)]
unsafe fn prefix_lookup(key: *mut u8, write: bool) -> bool {
    // SAFETY: per the contract; unaligned for a kernel path (byte stores).
    unsafe {
        core::ptr::write_unaligned(key as *mut u32, 8 * OPEN_PREFIX_BYTES as u32);
        // The reference only carries the pointer to the lookup helper, which reads bytes.
        let bits = OPEN_PREFIXES
            .get(&*(key as *const PrefixKey))
            .copied()
            .unwrap_or(0);
        bits & open_prefix_bits::ANY != 0 || (write && bits & open_prefix_bits::WRITE != 0)
    }
}

#[inline(always)]
fn fill_payload(rec: &mut Record, slot: usize, what: Payload, args: &[u64; 6], ret: i64) {
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
        // A failed call moved no bytes: nothing is read (the buffer holds stale memory).
        Payload::Result { .. } if ret <= 0 => {}
        Payload::Result { arg, cap_arg, max } => {
            let len = (ret as u64)
                .min(args[(cap_arg & 7) as usize % 6])
                .min(max as u64);
            rec.bytes_payload(slot, args[(arg & 7) as usize % 6] as *const u8, len)
        }
    }
}
