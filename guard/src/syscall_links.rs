//! Which syscall tracepoints the capture programs run on. Each syscall the prefilter keeps gets
//! the `sys_enter_one`/`sys_exit_one` programs on its own `syscalls/sys_enter_<name>` and
//! `sys_exit_<name>` tracepoints, so a syscall no rule or policy needs (`read`, `write`,
//! `close`, `epoll_wait`, …) runs no guard program at all. A traced syscall this kernel has no
//! such tracepoint for (e.g. `init_module` without module support, `fchmodat2` before 6.6) is
//! captured through `raw_syscalls` instead (`syscall_filter::VIA_RAW`), whose programs are then
//! attached too and run for every syscall (an attempt of a syscall the kernel lacks, such as
//! `init_module` without module support, is still worth an alert). A reload attaches what the new rules need before
//! the filter switches and detaches the rest after, so nothing is missed in between.

use std::{collections::BTreeMap, path::Path};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{
        RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId,
        trace_point::TracePointLinkId,
    },
};
use guard_ebpf::{names, syscall_filter, syscalls};

use crate::prefilter::Prefilter;

/// The tracefs events directory (where aya also looks).
fn events_dir() -> &'static Path {
    let d = Path::new("/sys/kernel/tracing/events");
    if d.exists() {
        d
    } else {
        Path::new("/sys/kernel/debug/tracing/events")
    }
}

fn syscall_name(nr: u32) -> Option<&'static str> {
    syscalls::TRACED.iter().find(|s| s.nr == nr).map(|s| s.name)
}

#[derive(Default)]
pub struct SyscallLinks {
    /// syscall -> (exit link, enter link) on its own tracepoints.
    per: BTreeMap<u32, (TracePointLinkId, TracePointLinkId)>,
    /// (exit, enter) on `raw_syscalls`, while some traced syscall needs them.
    raw: Option<(RawTracePointLinkId, RawTracePointLinkId)>,
    /// Whether a syscall has its own enter and exit tracepoints here (looked up once).
    has_own: BTreeMap<u32, bool>,
}

impl SyscallLinks {
    fn has_own_tracepoints(&mut self, nr: u32) -> bool {
        *self.has_own.entry(nr).or_insert_with(|| {
            syscall_name(nr).is_some_and(|name| {
                let dir = events_dir().join("syscalls");
                dir.join(format!("sys_enter_{name}")).exists()
                    && dir.join(format!("sys_exit_{name}")).exists()
            })
        })
    }

    /// `p` with `VIA_RAW` set on the syscalls captured through `raw_syscalls`.
    pub fn routed(&mut self, p: &Prefilter) -> Prefilter {
        let mut out = p.clone();
        for (nr, bits) in out.syscalls.iter_mut() {
            if !self.has_own_tracepoints(*nr) {
                *bits |= syscall_filter::VIA_RAW;
            }
        }
        out
    }

    /// Attaches the programs for every syscall `p` traces that is not attached yet: all exits
    /// before all enters (an enter without its exit only leaves an LRU entry; an exit without
    /// its enter counts a drop).
    pub fn attach(&mut self, ebpf: &mut Ebpf, p: &Prefilter) -> Result<()> {
        let want: Vec<u32> = p.syscalls.keys().copied().collect();
        let (own, raw): (Vec<u32>, Vec<u32>) = want
            .into_iter()
            .partition(|nr| self.has_own_tracepoints(*nr));
        let new: Vec<(u32, &'static str)> = own
            .into_iter()
            .filter(|nr| !self.per.contains_key(nr))
            .filter_map(|nr| syscall_name(nr).map(|n| (nr, n)))
            .collect();
        let mut exits = Vec::with_capacity(new.len());
        let mut refused = Vec::new();
        {
            let prog = tracepoint(ebpf, names::PROG_SYS_EXIT_ONE)?;
            for (nr, name) in &new {
                match prog.attach("syscalls", &format!("sys_exit_{name}")) {
                    Ok(l) => exits.push((*nr, *name, l)),
                    Err(e) => refused.push((*nr, *name, e.to_string())),
                }
            }
        }
        let prog = tracepoint(ebpf, names::PROG_SYS_ENTER_ONE)?;
        let mut orphans = Vec::new();
        for (nr, name, exit) in exits {
            match prog.attach("syscalls", &format!("sys_enter_{name}")) {
                Ok(enter) => {
                    self.per.insert(nr, (exit, enter));
                }
                Err(e) => {
                    orphans.push(exit);
                    refused.push((nr, name, e.to_string()));
                }
            }
        }
        let prog = tracepoint(ebpf, names::PROG_SYS_EXIT_ONE)?;
        for exit in orphans {
            prog.detach(exit)?;
        }
        // A reload after the agent dropped CAP_PERFMON cannot open new tracepoint events
        // (docs/hardening.md); those syscalls go through raw_syscalls, whose programs were
        // loaded at start and attach without it.
        let mut raw = raw;
        for (nr, name, why) in refused {
            tracing::warn!(
                syscall = name,
                "its own tracepoints did not attach ({why}): captured through raw_syscalls until a restart"
            );
            self.has_own.insert(nr, false);
            raw.push(nr);
        }
        if !raw.is_empty() && self.raw.is_none() {
            let names: Vec<&str> = raw.iter().filter_map(|nr| syscall_name(*nr)).collect();
            tracing::info!(
                syscalls = ?names,
                "no syscalls/sys_*_<name> tracepoints for these: capturing them through raw_syscalls (a program on every syscall)"
            );
            let exit = raw_tracepoint(ebpf, names::PROG_SYS_EXIT)?
                .attach("sys_exit")
                .context("attaching raw tracepoint sys_exit")?;
            let enter = raw_tracepoint(ebpf, names::PROG_SYS_ENTER)?
                .attach("sys_enter")
                .context("attaching raw tracepoint sys_enter")?;
            self.raw = Some((exit, enter));
        }
        Ok(())
    }

    /// Detaches the programs of syscalls `p` does not trace (enter before exit), and the
    /// `raw_syscalls` pair when no traced syscall needs it.
    pub fn detach_unused(&mut self, ebpf: &mut Ebpf, p: &Prefilter) -> Result<()> {
        let gone: Vec<u32> = self
            .per
            .keys()
            .filter(|nr| !p.syscalls.contains_key(nr))
            .copied()
            .collect();
        for nr in gone {
            let Some((exit, enter)) = self.per.remove(&nr) else {
                continue;
            };
            tracepoint(ebpf, names::PROG_SYS_ENTER_ONE)?.detach(enter)?;
            tracepoint(ebpf, names::PROG_SYS_EXIT_ONE)?.detach(exit)?;
        }
        let raw_needed = p
            .syscalls
            .keys()
            .any(|nr| !self.has_own.get(nr).copied().unwrap_or(false));
        if !raw_needed && let Some((exit, enter)) = self.raw.take() {
            raw_tracepoint(ebpf, names::PROG_SYS_ENTER)?.detach(enter)?;
            raw_tracepoint(ebpf, names::PROG_SYS_EXIT)?.detach(exit)?;
        }
        Ok(())
    }

    /// Loads the `raw_syscalls` programs without attaching them, so a later reload can attach
    /// them after the agent dropped its privileges.
    pub fn preload_raw(ebpf: &mut Ebpf) -> Result<()> {
        raw_tracepoint(ebpf, names::PROG_SYS_ENTER)?;
        raw_tracepoint(ebpf, names::PROG_SYS_EXIT)?;
        Ok(())
    }
}

pub(crate) fn tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint> {
    let prog: &mut TracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(prog)
}

pub(crate) fn raw_tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut RawTracePoint> {
    let p: &mut RawTracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    if p.fd().is_err() {
        p.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(p)
}
