//! Traced syscalls this kernel has no `syscalls/sys_*_<name>` tracepoints for. A kernel built
//! without a syscall's subsystem (`init_module`/`finit_module` without module support) keeps it
//! as a weak `__x64_sys_<name>` stub returning ENOSYS, with no tracepoints; an attempt is still
//! worth an alert. An fexit program on the stub runs for that syscall only (where the
//! `raw_syscalls` fallback runs for every syscall) and sees the arguments (the inner `pt_regs`)
//! and the result together, as the exit tracepoint's program does.
//! Userspace loads and attaches one only when the tracepoints are missing
//! (`guard_ebpf::syscalls::VIA_FEXIT`).

use aya_ebpf::{macros::fexit, programs::FExitContext};
use guard_ebpf::syscalls;

use super::capture::{Regs, capture, syscall_wanted};

/// The record of syscall `nr` from an fexit on `long __x64_sys_<name>(const struct pt_regs *)`:
/// the context holds the argument, then the return value.
#[inline(always)]
fn on_exit(ctx: &FExitContext, nr: u32) -> i32 {
    if !syscall_wanted(nr as u64) {
        return 0;
    }
    let regs: *const u8 = ctx.arg(0);
    capture::<false>(nr, ctx.arg(1), false, |_| Regs::Typed(regs));
    0
}

#[fexit(function = "__x64_sys_init_module")]
pub fn sys_fexit_init_module(ctx: FExitContext) -> i32 {
    on_exit(&ctx, syscalls::INIT_MODULE)
}

#[fexit(function = "__x64_sys_finit_module")]
pub fn sys_fexit_finit_module(ctx: FExitContext) -> i32 {
    on_exit(&ctx, syscalls::FINIT_MODULE)
}

#[fexit(function = "__x64_sys_memfd_create")]
pub fn sys_fexit_memfd_create(ctx: FExitContext) -> i32 {
    on_exit(&ctx, syscalls::MEMFD_CREATE)
}
