//! Loading and attaching the eBPF programs: kernel offsets from BTF, ring-buffer sizing, and the
//! choice of what can attach on this kernel.

use anyhow::{Context, Result};
use aya::{
    Btf as AyaBtf, Ebpf, EbpfLoader,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{Lsm, TracePoint},
};
use guard_ebpf::{EventKind, KernelOffsets, OFFSET_ABSENT, names};
use tracing::{info, warn};

use crate::btf::Btf;

/// The eBPF object built by `build.rs`.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));

/// Reads the struct offsets the programs need from the running kernel's BTF.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets> {
    Ok(KernelOffsets {
        task_real_parent: btf
            .member_offset("task_struct", "real_parent")
            .context("kernel BTF")?,
        task_tgid: btf
            .member_offset("task_struct", "tgid")
            .context("kernel BTF")?,
        // Only with CONFIG_AUDITSYSCALL; the programs report loginuid as unknown without it.
        task_loginuid: btf
            .member_offset_opt("task_struct", "loginuid")
            .unwrap_or(OFFSET_ABSENT),
        tp_exec_filename_loc: btf
            .member_offset("trace_event_raw_sched_process_exec", "__data_loc_filename")
            .context("kernel BTF")?,
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
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            ring_bytes: guard_ebpf::DEFAULT_RING_BYTES,
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

impl Probes {
    /// Loads the object and attaches every program this kernel accepts.
    pub fn load(cfg: &ProbeConfig) -> Result<Self> {
        ensure_tracefs()?;
        let btf = Btf::from_sys_fs().context("guard needs kernel BTF (CONFIG_DEBUG_INFO_BTF)")?;
        let offsets = kernel_offsets(&btf)?;
        let mut ebpf = EbpfLoader::new()
            .override_global(names::KERNEL_OFFSETS, &offsets, true)
            .map_max_entries(names::EVENTS, ring_size(cfg.ring_bytes))
            .load(EBPF_OBJECT)
            .context("loading the eBPF object")?;

        let tp: &mut TracePoint = ebpf
            .program_mut(names::PROG_SCHED_PROCESS_EXEC)
            .context("program sched_process_exec missing from the object")?
            .try_into()?;
        tp.load().context("loading sched_process_exec")?;
        tp.attach("sched", "sched_process_exec")
            .context("attaching sched/sched_process_exec")?;

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

    /// Per-kind count of records the kernel could not reserve, summed over CPUs.
    pub fn drops(&self) -> Result<Vec<(EventKind, u64)>> {
        let map = self
            .ebpf
            .map(names::DROPS)
            .context("map DROPS missing from the object")?;
        let arr: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        let mut out = Vec::new();
        for k in 1..EventKind::COUNT {
            if let Some(kind) = EventKind::from_u16(k as u16) {
                let per_cpu = arr.get(&k, 0)?;
                out.push((kind, per_cpu.iter().sum()));
            }
        }
        Ok(out)
    }
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

/// What `guard doctor` learns by actually loading the programs.
pub struct Support {
    pub tracepoint: Result<()>,
    pub lsm: Result<()>,
}

/// Loads the object and tries the tracepoint and the LSM program; everything is detached on return.
pub fn probe_support(cfg: &ProbeConfig) -> Support {
    let loaded = (|| -> Result<Ebpf> {
        ensure_tracefs()?;
        let btf = Btf::from_sys_fs()?;
        let offsets = kernel_offsets(&btf)?;
        Ok(EbpfLoader::new()
            .override_global(names::KERNEL_OFFSETS, &offsets, true)
            .map_max_entries(names::EVENTS, ring_size(cfg.ring_bytes))
            .load(EBPF_OBJECT)?)
    })();
    let mut ebpf = match loaded {
        Ok(e) => e,
        Err(e) => {
            let msg = format!("{e:#}");
            return Support {
                tracepoint: Err(anyhow::anyhow!("{msg}")),
                lsm: Err(anyhow::anyhow!("{msg}")),
            };
        }
    };
    let tracepoint = (|| -> Result<()> {
        let tp: &mut TracePoint = ebpf
            .program_mut(names::PROG_SCHED_PROCESS_EXEC)
            .context("program missing")?
            .try_into()?;
        tp.load()?;
        tp.attach("sched", "sched_process_exec")?;
        Ok(())
    })();
    let lsm = attach_lsm(&mut ebpf);
    Support { tracepoint, lsm }
}
