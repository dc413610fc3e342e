//! Which syscall hooks the capture programs run on. Each syscall the prefilter keeps gets the
//! `sys_exit_one` program on its own `syscalls/sys_exit_<name>` tracepoint (one program per
//! syscall: the arguments are read at the exit from the saved user registers), so a syscall no
//! rule or policy needs (`read`, `write`, `close`, `epoll_wait`, …) runs no guard program at
//! all. A traced syscall this kernel has no such tracepoint for but keeps as a stub
//! (`init_module`/`finit_module` without module support: a weak `__x64_sys_<name>` returning
//! ENOSYS; an attempt is still worth an alert) gets an fexit program on that function
//! (`guard_ebpf::syscalls::VIA_FEXIT`), which also runs for that syscall only. Only a traced
//! syscall with neither (e.g. `fchmodat2` before 6.6) is captured through
//! `raw_syscalls/sys_exit` (`syscall_filter::VIA_RAW`), whose program then runs for every
//! syscall. A reload attaches what the new rules need before the filter switches and detaches
//! the rest after, so nothing is missed in between.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    sync::OnceLock,
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{
        BtfTracePoint, FExit, RawTracePoint, TracePoint, fexit::FExitLinkId,
        raw_trace_point::RawTracePointLinkId, tp_btf::BtfTracePointLinkId,
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

/// How a traced syscall is captured on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Its own `syscalls/sys_exit_<name>` tracepoint.
    Tracepoints,
    /// The fexit program of that name on `__x64_sys_<name>` (loaded).
    Fexit(&'static str),
    /// The `raw_syscalls` exit program, which runs for every syscall.
    Raw,
}

#[derive(Default)]
pub struct SyscallLinks {
    /// syscall -> its link on its own exit tracepoint.
    per: BTreeMap<u32, TracePointLinkId>,
    /// syscall -> its fexit link.
    fexit: BTreeMap<u32, (&'static str, FExitLinkId)>,
    /// The program on `raw_syscalls/sys_exit`, while some traced syscall needs it.
    raw: Option<RawLink>,
    /// Which program serves `raw_syscalls/sys_exit` here (decided at `preload`).
    raw_kind: RawExit,
    /// Which program serves `syscalls/sys_exit_<name>` here (decided at `preload`).
    exit_one: ExitOne,
    /// How each syscall is captured here (decided once, or demoted to `Raw` when an attach
    /// is refused).
    routes: BTreeMap<u32, Route>,
}

/// Whether the kernel has tracepoint `category/event`.
pub(crate) fn has_tracepoint(category: &str, event: &str) -> bool {
    events_dir().join(category).join(event).exists()
}

/// Whether syscall `name` has its own exit tracepoint, the only one the capture uses.
fn has_exit_tracepoint(name: &str) -> bool {
    has_tracepoint("syscalls", &format!("sys_exit_{name}"))
}

/// Traced syscalls this kernel only has as stubs that fail with ENOSYS: no tracepoints of their
/// own and no implementation (`__x64_sys_<name>` missing from /proc/kallsyms, or only the weak
/// `sys_ni_syscall` stub, type `W`: `init_module`/`finit_module` without module support). The
/// prefilter traces them only for rules that can match a failed attempt. Read once, at start
/// (kallsyms is out of reach after the privilege drop); empty when kallsyms is unreadable or
/// lists no syscall at all.
pub fn enosys_stubs() -> &'static BTreeSet<u32> {
    static STUBS: OnceLock<BTreeSet<u32>> = OnceLock::new();
    STUBS.get_or_init(|| {
        let Ok(text) = std::fs::read_to_string("/proc/kallsyms") else {
            return BTreeSet::new();
        };
        let mut implemented = BTreeSet::new();
        for line in text.lines() {
            let mut words = line.split_whitespace().skip(1);
            let (Some(kind), Some(sym)) = (words.next(), words.next()) else {
                continue;
            };
            if let Some(name) = sym.strip_prefix(syscalls::KERNEL_FN_PREFIX)
                && !kind.eq_ignore_ascii_case("w")
            {
                implemented.insert(name);
            }
        }
        if !implemented.contains("openat") {
            return BTreeSet::new();
        }
        syscalls::TRACED
            .iter()
            .filter(|s| !implemented.contains(s.name) && !has_exit_tracepoint(s.name))
            .map(|s| s.nr)
            .collect()
    })
}

impl SyscallLinks {
    /// How syscall `nr` is captured: its tracepoints, else its fexit program (loaded here, so
    /// a later attach needs no new load), else `raw_syscalls`.
    fn route(&mut self, ebpf: &mut Ebpf, nr: u32) -> Route {
        if let Some(r) = self.routes.get(&nr) {
            return *r;
        }
        let r = match syscall_name(nr) {
            Some(name) if has_exit_tracepoint(name) => Route::Tracepoints,
            Some(name) => match syscalls::VIA_FEXIT.iter().find(|(n, _)| *n == nr) {
                Some((_, prog)) => match load_fexit(ebpf, prog, name) {
                    Ok(()) => Route::Fexit(prog),
                    Err(e) => {
                        tracing::info!(syscall = name, "no fexit on its kernel function ({e:#})");
                        Route::Raw
                    }
                },
                None => Route::Raw,
            },
            None => Route::Raw,
        };
        self.routes.insert(nr, r);
        r
    }

    /// Whether syscall `nr` is (or was last decided to be) captured through `raw_syscalls`.
    fn via_raw(&self, nr: u32) -> bool {
        self.routes.get(&nr).is_none_or(|r| *r == Route::Raw)
    }

    /// `p` with `VIA_RAW` set on the syscalls captured through `raw_syscalls`.
    pub fn routed(&mut self, p: &Prefilter) -> Prefilter {
        let mut out = p.clone();
        for (nr, bits) in out.syscalls.iter_mut() {
            if self.via_raw(*nr) {
                *bits |= syscall_filter::VIA_RAW;
            }
        }
        out
    }

    /// Attaches the program of every syscall `p` traces that is not attached yet.
    pub fn attach(&mut self, ebpf: &mut Ebpf, p: &Prefilter) -> Result<()> {
        let mut own = Vec::new();
        let mut raw = Vec::new();
        let mut refused = Vec::new();
        for nr in p.syscalls.keys().copied() {
            match self.route(ebpf, nr) {
                Route::Tracepoints => own.push(nr),
                Route::Raw => raw.push(nr),
                Route::Fexit(_) if self.fexit.contains_key(&nr) => {}
                Route::Fexit(prog) => match fexit(ebpf, prog).and_then(|f| Ok(f.attach()?)) {
                    Ok(link) => {
                        self.fexit.insert(nr, (prog, link));
                    }
                    Err(e) => refused.push((nr, syscall_name(nr).unwrap_or("?"), format!("{e:#}"))),
                },
            }
        }
        let new: Vec<(u32, &'static str)> = own
            .into_iter()
            .filter(|nr| !self.per.contains_key(nr))
            .filter_map(|nr| syscall_name(nr).map(|n| (nr, n)))
            .collect();
        let prog = tracepoint(ebpf, self.exit_one.program())?;
        for (nr, name) in new {
            match prog.attach("syscalls", &format!("sys_exit_{name}")) {
                Ok(l) => {
                    self.per.insert(nr, l);
                }
                Err(e) => refused.push((nr, name, e.to_string())),
            }
        }
        // A reload after the agent dropped CAP_PERFMON cannot open new tracepoint events
        // (docs/hardening.md); those syscalls go through raw_syscalls, whose programs were
        // loaded at start and attach without it.
        for (nr, name, why) in refused {
            tracing::warn!(
                syscall = name,
                "its own tracepoints or fexit did not attach ({why}): captured through raw_syscalls until a restart"
            );
            self.routes.insert(nr, Route::Raw);
            raw.push(nr);
        }
        if !raw.is_empty() && self.raw.is_none() {
            let names: Vec<&str> = raw.iter().filter_map(|nr| syscall_name(*nr)).collect();
            tracing::info!(
                syscalls = ?names,
                "neither syscalls/sys_*_<name> tracepoints nor an fexit for these: capturing them through raw_syscalls (a program on every syscall)"
            );
            self.raw = Some(self.raw_kind.attach(ebpf)?);
        }
        Ok(())
    }

    /// Detaches the programs of syscalls `p` does not trace, and the `raw_syscalls` program
    /// when no traced syscall needs it.
    pub fn detach_unused(&mut self, ebpf: &mut Ebpf, p: &Prefilter) -> Result<()> {
        let gone: Vec<u32> = self
            .per
            .keys()
            .filter(|nr| !p.syscalls.contains_key(nr))
            .copied()
            .collect();
        for nr in gone {
            let Some(exit) = self.per.remove(&nr) else {
                continue;
            };
            tracepoint(ebpf, self.exit_one.program())?.detach(exit)?;
        }
        let gone: Vec<u32> = self
            .fexit
            .keys()
            .filter(|nr| !p.syscalls.contains_key(nr))
            .copied()
            .collect();
        for nr in gone {
            if let Some((prog, link)) = self.fexit.remove(&nr) {
                fexit(ebpf, prog)?.detach(link)?;
            }
        }
        let raw_needed = p.syscalls.keys().any(|nr| self.via_raw(*nr));
        if !raw_needed && let Some(link) = self.raw.take() {
            link.detach(ebpf)?;
        }
        Ok(())
    }

    /// Loads the `raw_syscalls` program, and the fexit programs of the syscalls without
    /// tracepoints here, without attaching them, so a later reload can attach them after the
    /// agent dropped its privileges (loading a tracing program needs CAP_PERFMON).
    pub fn preload(&mut self, ebpf: &mut Ebpf) -> Result<()> {
        self.exit_one = ExitOne::load(ebpf)?;
        self.raw_kind = RawExit::load(ebpf)?;
        for (nr, _) in syscalls::VIA_FEXIT {
            self.route(ebpf, *nr);
        }
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

fn fexit<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut FExit> {
    let prog: &mut FExit = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    Ok(prog)
}

/// Loads fexit program `prog` on syscall `name`'s kernel function.
fn load_fexit(ebpf: &mut Ebpf, prog: &str, name: &str) -> Result<()> {
    let btf = crate::btf::kernel_aya().map_err(|e| anyhow::anyhow!("kernel BTF: {e}"))?;
    let p = fexit(ebpf, prog)?;
    if p.fd().is_err() {
        let func = format!("{}{name}", syscalls::KERNEL_FN_PREFIX);
        p.load(&func, btf)
            .with_context(|| format!("loading {prog} on {func}"))?;
    }
    Ok(())
}

/// The program on each traced syscall's exit tracepoint: the one that walks an opened file's
/// path with typed loads (`bpf_rdonly_cast`, Linux 6.2 and later), else the one that walks it
/// with helper reads (or where `GUARD_KPATH_WALK=helpers` asks for it, to test that path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ExitOne {
    Typed,
    #[default]
    Helpers,
}

impl ExitOne {
    fn program(self) -> &'static str {
        match self {
            ExitOne::Typed => names::PROG_SYS_EXIT_ONE_TYPED,
            ExitOne::Helpers => names::PROG_SYS_EXIT_ONE,
        }
    }

    fn load(ebpf: &mut Ebpf) -> Result<ExitOne> {
        let forced = std::env::var("GUARD_KPATH_WALK").is_ok_and(|v| v == "helpers");
        let has_kfunc = crate::btf::kernel().is_ok_and(|b| b.func_id("bpf_rdonly_cast").is_some());
        let why = if forced {
            "GUARD_KPATH_WALK=helpers".to_owned()
        } else if !has_kfunc {
            "the kernel has no bpf_rdonly_cast kfunc".to_owned()
        } else {
            match tracepoint(ebpf, names::PROG_SYS_EXIT_ONE_TYPED) {
                Ok(_) => {
                    tracing::info!("open paths: walked with typed loads (bpf_rdonly_cast)");
                    return Ok(ExitOne::Typed);
                }
                // The verifier's log follows; its start says what was refused.
                Err(e) => format!("{e:#}").chars().take(400).collect(),
            }
        };
        tracing::info!("open paths: walked with helper reads ({why})");
        tracepoint(ebpf, names::PROG_SYS_EXIT_ONE)?;
        Ok(ExitOne::Helpers)
    }
}

/// The program on `raw_syscalls/sys_exit`: BTF-typed (`tp_btf`: a plain load of the syscall
/// number on every syscall), or a plain raw tracepoint where the kernel refuses tracing
/// programs (or `GUARD_RAW_EXIT=raw_tracepoint` asks for it, to test that path).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum RawExit {
    #[default]
    Btf,
    Plain,
}

enum RawLink {
    Btf(BtfTracePointLinkId),
    Plain(RawTracePointLinkId),
}

impl RawExit {
    fn load(ebpf: &mut Ebpf) -> Result<RawExit> {
        let forced = std::env::var("GUARD_RAW_EXIT").is_ok_and(|v| v == "raw_tracepoint");
        if !forced {
            match btf_exit(ebpf) {
                Ok(_) => return Ok(RawExit::Btf),
                Err(e) => tracing::info!(
                    "tp_btf sys_exit refused ({e:#}): the raw_syscalls fallback uses a plain raw tracepoint"
                ),
            }
        }
        raw_tracepoint(ebpf, names::PROG_SYS_EXIT_RAW)?;
        Ok(RawExit::Plain)
    }

    fn attach(self, ebpf: &mut Ebpf) -> Result<RawLink> {
        Ok(match self {
            RawExit::Btf => RawLink::Btf(
                btf_exit(ebpf)?
                    .attach()
                    .context("attaching tp_btf sys_exit")?,
            ),
            RawExit::Plain => RawLink::Plain(
                raw_tracepoint(ebpf, names::PROG_SYS_EXIT_RAW)?
                    .attach("sys_exit")
                    .context("attaching raw tracepoint sys_exit")?,
            ),
        })
    }
}

impl RawLink {
    fn detach(self, ebpf: &mut Ebpf) -> Result<()> {
        match self {
            RawLink::Btf(l) => btf_exit(ebpf)?.detach(l)?,
            RawLink::Plain(l) => raw_tracepoint(ebpf, names::PROG_SYS_EXIT_RAW)?.detach(l)?,
        }
        Ok(())
    }
}

/// The BTF-typed `raw_syscalls/sys_exit` program, loaded.
fn btf_exit(ebpf: &mut Ebpf) -> Result<&mut BtfTracePoint> {
    let p: &mut BtfTracePoint = ebpf
        .program_mut(names::PROG_SYS_EXIT)
        .context("program sys_exit missing from the object")?
        .try_into()?;
    if p.fd().is_err() {
        let btf = crate::btf::kernel_aya().map_err(|e| anyhow::anyhow!("kernel BTF: {e}"))?;
        p.load("sys_exit", btf).context("loading tp_btf sys_exit")?;
    }
    Ok(p)
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
