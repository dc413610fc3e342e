//! Loading and attaching the eBPF programs: kernel offsets from BTF, ring-buffer sizing, and the
//! choice of what can attach on this kernel.

use anyhow::{Context, Result};
use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    maps::Array,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{Lsm, RawTracePoint, TracePoint},
};
use guard_ebpf::{EventKind, KernelOffsets, OFFSET_ABSENT, names, settings, syscalls};
use tracing::{info, warn};

use crate::btf::Btf;

/// The eBPF object built by `build.rs`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));

/// Reads the struct offsets the programs need from the running kernel's BTF.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets> {
    let need = |s: &str, m: &str| btf.member_offset(s, m).context("kernel BTF");
    Ok(KernelOffsets {
        task_real_parent: need("task_struct", "real_parent")?,
        task_tgid: need("task_struct", "tgid")?,
        task_pid: need("task_struct", "pid")?,
        // Only with CONFIG_AUDITSYSCALL; the programs report loginuid as unknown without it.
        task_loginuid: btf
            .member_offset_opt("task_struct", "loginuid")
            .unwrap_or(OFFSET_ABSENT),
        task_mm: need("task_struct", "mm")?,
        task_exit_code: need("task_struct", "exit_code")?,
        mm_arg_start: need("mm_struct", "arg_start")?,
        mm_arg_end: need("mm_struct", "arg_end")?,
        tp_exec_filename_loc: need("trace_event_raw_sched_process_exec", "__data_loc_filename")?,
        regs_args: [
            need("pt_regs", "di")?,
            need("pt_regs", "si")?,
            need("pt_regs", "dx")?,
            need("pt_regs", "r10")?,
            need("pt_regs", "r8")?,
            need("pt_regs", "r9")?,
        ],
        regs_orig_ax: need("pt_regs", "orig_ax")?,
        // thread_info is embedded in task_struct (CONFIG_THREAD_INFO_IN_TASK, always on x86_64).
        task_ti_status: match (
            btf.member_offset_opt("task_struct", "thread_info"),
            btf.member_offset_opt("thread_info", "status"),
        ) {
            (Some(ti), Some(status)) => ti + status,
            _ => OFFSET_ABSENT,
        },
    })
}

/// aya resolves tracepoint ids through tracefs; mount it where the kernel expects it if absent.
pub fn ensure_tracefs() -> Result<()> {
    let dir = std::path::Path::new("/sys/kernel/tracing");
    if dir.join("events").exists()
        || std::path::Path::new("/sys/kernel/debug/tracing/events").exists()
    {
        return Ok(());
    }
    nix::mount::mount(
        Some("tracefs"),
        dir,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("tracefs is not mounted and mounting it at /sys/kernel/tracing failed")
}

/// Load-time settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Ring-buffer size in bytes; rounded up to a power of two and at least one page.
    pub ring_bytes: u32,
    /// Trace only this cgroup (v2 id) instead of the whole host.
    pub only_cgroup: Option<u64>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            ring_bytes: guard_ebpf::DEFAULT_RING_BYTES,
            only_cgroup: None,
        }
    }
}

/// How exec denial is enforced on this kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecEnforcement {
    /// The BPF LSM program is attached: denied execs fail with EPERM.
    Lsm,
    /// The LSM program could not attach; the reason is kept for the startup log and doctor.
    Unavailable(String),
}

/// The loaded object and what got attached.
pub struct Probes {
    pub ebpf: Ebpf,
    pub offsets: KernelOffsets,
    pub exec_enforcement: ExecEnforcement,
}

/// Rounds to the next power of two, at least one page, as the kernel requires of ring buffers.
pub fn ring_size(requested: u32) -> u32 {
    requested
        .max(4096)
        .checked_next_power_of_two()
        .unwrap_or(1 << 31)
}

fn load_object(cfg: &ProbeConfig) -> Result<(Ebpf, KernelOffsets)> {
    ensure_tracefs()?;
    let btf = Btf::from_sys_fs().context("guard needs kernel BTF (CONFIG_DEBUG_INFO_BTF)")?;
    let offsets = kernel_offsets(&btf)?;
    let ebpf = EbpfLoader::new()
        .override_global(names::KERNEL_OFFSETS, &offsets, true)
        .map_max_entries(names::EVENTS, ring_size(cfg.ring_bytes))
        .load(EBPF_OBJECT)
        .context("loading the eBPF object")?;
    Ok((ebpf, offsets))
}

fn tracepoint<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut TracePoint> {
    let prog: &mut TracePoint = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    Ok(prog)
}

/// Attaches the process lifecycle programs (exec, fork, exit).
fn attach_lifecycle(ebpf: &mut Ebpf) -> Result<()> {
    tracepoint(ebpf, names::PROG_SCHED_PROCESS_EXEC)?
        .attach("sched", "sched_process_exec")
        .context("attaching sched/sched_process_exec")?;
    tracepoint(ebpf, names::PROG_SCHED_PROCESS_EXIT)?
        .attach("sched", "sched_process_exit")
        .context("attaching sched/sched_process_exit")?;
    raw_tracepoint(ebpf, names::PROG_SCHED_PROCESS_FORK)?
        .attach("sched_process_fork")
        .context("attaching raw tracepoint sched_process_fork")?;
    Ok(())
}

fn raw_tracepoint<'a>(ebpf: &'a mut Ebpf, prog: &str) -> Result<&'a mut RawTracePoint> {
    let p: &mut RawTracePoint = ebpf
        .program_mut(prog)
        .with_context(|| format!("program {prog} missing from the object"))?
        .try_into()?;
    if p.fd().is_err() {
        p.load().with_context(|| format!("loading {prog}"))?;
    }
    Ok(p)
}

/// Selects the traced syscalls in `SYSCALL_FILTER`, then attaches the enter/exit programs to
/// `raw_syscalls`, which fire for every syscall: unlike `syscalls/sys_*_<name>`, they need no
/// per-syscall tracepoint (absent for some syscalls on some kernels) and never drop silently.
fn attach_syscalls(ebpf: &mut Ebpf) -> Result<()> {
    {
        let mut filter: Array<&mut MapData, u8> = Array::try_from(
            ebpf.map_mut(names::SYSCALL_FILTER)
                .context("map SYSCALL_FILTER missing from the object")?,
        )?;
        for sc in syscalls::TRACED {
            filter
                .set(sc.nr, 1, 0)
                .with_context(|| format!("selecting syscall {}", sc.name))?;
        }
    }
    // Exit first: an enter without its exit only leaves an LRU entry behind, while an exit
    // without its enter is counted as a drop.
    raw_tracepoint(ebpf, names::PROG_SYS_EXIT)?
        .attach("sys_exit")
        .context("attaching raw tracepoint sys_exit")?;
    raw_tracepoint(ebpf, names::PROG_SYS_ENTER)?
        .attach("sys_enter")
        .context("attaching raw tracepoint sys_enter")?;
    Ok(())
}

impl Probes {
    /// Loads the object and attaches every program this kernel accepts.
    pub fn load(cfg: &ProbeConfig) -> Result<Self> {
        let (mut ebpf, offsets) = load_object(cfg)?;
        {
            let mut settings: Array<&mut MapData, u64> = Array::try_from(
                ebpf.map_mut(names::SETTINGS)
                    .context("map SETTINGS missing from the object")?,
            )?;
            settings.set(settings::AGENT_TGID, u64::from(std::process::id()), 0)?;
            settings.set(settings::ONLY_CGROUP, cfg.only_cgroup.unwrap_or(0), 0)?;
        }
        attach_lifecycle(&mut ebpf)?;
        attach_syscalls(&mut ebpf)?;

        let exec_enforcement = match attach_lsm(&mut ebpf) {
            Ok(()) => ExecEnforcement::Lsm,
            Err(e) => ExecEnforcement::Unavailable(format!("{e:#}")),
        };
        match &exec_enforcement {
            ExecEnforcement::Lsm => info!("BPF LSM exec enforcement attached"),
            ExecEnforcement::Unavailable(why) => {
                warn!("BPF LSM exec enforcement unavailable on this kernel: {why}")
            }
        }
        Ok(Self {
            ebpf,
            offsets,
            exec_enforcement,
        })
    }

    pub fn ring_buf(&mut self) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(names::EVENTS)
            .context("map EVENTS missing from the object")?;
        Ok(RingBuf::try_from(map)?)
    }

    pub fn exec_deny_map(&mut self) -> Result<BpfHashMap<&mut MapData, u64, u32>> {
        let map = self
            .ebpf
            .map_mut(names::EXEC_DENY_CGROUPS)
            .context("map EXEC_DENY_CGROUPS missing from the object")?;
        Ok(BpfHashMap::try_from(map)?)
    }

    /// Runs the kernel skipped, per program: a tracepoint that fires while another BPF program
    /// runs on the same CPU (possible where syscall tracepoints are preemptible) is not run,
    /// and its event is lost. The kernel counts these as `recursion_misses`.
    pub fn missed_runs(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for (name, prog) in self.ebpf.programs() {
            let Ok(fd) = prog.fd() else { continue };
            let raw = std::os::fd::AsRawFd::as_raw_fd(&std::os::fd::AsFd::as_fd(fd));
            if let Some(n) = recursion_misses(raw) {
                out.push((name.to_owned(), n));
            }
        }
        out.sort();
        out
    }

    /// Per-kind count of records the kernel could not deliver, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<(EventKind, u64)>> {
        let map = self
            .ebpf
            .map(names::DROPS)
            .context("map DROPS missing from the object")?;
        let arr: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        let mut out = Vec::new();
        for kind in EventKind::ALL {
            let per_cpu = arr.get(&(kind as u32), 0)?;
            out.push((kind, per_cpu.iter().sum()));
        }
        Ok(out)
    }

    /// Traced syscalls that produced no record because their entry was not recorded.
    pub fn unpaired_syscalls(&self) -> Result<u64> {
        let map = self
            .ebpf
            .map(names::DROPS)
            .context("map DROPS missing from the object")?;
        let arr: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        Ok(arr.get(&guard_ebpf::DROP_SYSCALL_UNPAIRED, 0)?.iter().sum())
    }
}

/// `bpf_prog_info` of a loaded program, by BPF_OBJ_GET_INFO_BY_FD.
fn prog_info(prog_fd: std::os::fd::RawFd) -> Option<aya_obj::generated::bpf_prog_info> {
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: a plain C struct for which all-zero is valid.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    // union bpf_attr, info member: { u32 bpf_fd; u32 info_len; u64 info; }.
    let mut attr = [0u64; 2];
    attr[0] = u64::from(prog_fd as u32) | (u64::from(size_of_val(&info) as u32) << 32);
    attr[1] = &mut info as *mut _ as u64;
    // SAFETY: attr and info outlive the call; the kernel writes at most info_len bytes.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            attr.as_mut_ptr(),
            size_of_val(&attr) as u32,
        )
    };
    (r == 0).then_some(info)
}

/// `bpf_prog_info.recursion_misses` of a loaded program (Linux >= 5.12).
fn recursion_misses(prog_fd: std::os::fd::RawFd) -> Option<u64> {
    prog_info(prog_fd).map(|i| i.recursion_misses)
}

/// Loads and attaches the exec LSM program; fails on kernels without BPF LSM (or that refuse it).
pub fn attach_lsm(ebpf: &mut Ebpf) -> Result<()> {
    let btf = AyaBtf::from_sys_fs().context("reading kernel BTF for the LSM hook")?;
    let prog: &mut Lsm = ebpf
        .program_mut(names::PROG_BPRM_CHECK)
        .context("program bprm_check_security missing from the object")?
        .try_into()?;
    prog.load("bprm_check_security", &btf)
        .context("loading the LSM program bprm_check_security")?;
    prog.attach().context("attaching the LSM program")?;
    Ok(())
}

/// What `guard doctor` learns by actually loading the programs.
pub struct Support {
    pub tracepoint: Result<()>,
    pub lsm: Result<()>,
}

/// Loads the object and tries the tracepoints and the LSM program; all detached on return.
pub fn probe_support(cfg: &ProbeConfig) -> Support {
    let mut ebpf = match load_object(cfg) {
        Ok((e, _)) => e,
        Err(e) => {
            let msg = format!("{e:#}");
            return Support {
                tracepoint: Err(anyhow::anyhow!("{msg}")),
                lsm: Err(anyhow::anyhow!("{msg}")),
            };
        }
    };
    let tracepoint = attach_lifecycle(&mut ebpf).and_then(|()| attach_syscalls(&mut ebpf));
    let lsm = attach_lsm(&mut ebpf);
    Support { tracepoint, lsm }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_are_powers_of_two_of_at_least_a_page() {
        assert_eq!(ring_size(0), 4096);
        assert_eq!(ring_size(4097), 8192);
        assert_eq!(ring_size(1 << 20), 1 << 20);
        assert_eq!(ring_size(u32::MAX), 1 << 31);
    }
}
