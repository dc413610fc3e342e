//! Loading and attaching the eBPF programs: kernel offsets from BTF, ring-buffer sizing, and the
//! choice of what can attach on this kernel.

use anyhow::{Context, Result};
use aya::{
    Ebpf, EbpfLoader,
    maps::Array,
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::links::{FdLink, PinnedLink},
};
use guard_ebpf::{EventKind, KernelOffsets, OFFSET_ABSENT, names, settings};
use tracing::{info, warn};

use std::path::{Path, PathBuf};

use crate::{
    btf::Btf,
    object,
    policy::backend::{
        Backend, Choice, Kind,
        fallback::{DRIFT_EXITS, DRIFT_PROGRAM},
        fanotify::DETECT_PROGRAM,
    },
    syscall_links::{SyscallLinks, raw_tracepoint, tracepoint},
    sysfs::ensure_tracefs,
};

/// Where policy enforcement state is pinned by default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/guard";

/// The maps that hold policy state; pinned so enforcement survives the agent.
const POLICY_MAPS: [&str; 8] = [
    names::POLICY_CGROUPS,
    names::POLICY_PATHS,
    names::POLICY_INODES,
    names::POLICY_CHILDREN,
    names::POLICY_NETS,
    names::NEW_FILES,
    names::POLICY_PENDING,
    names::HELD,
];

/// Reads the struct offsets the programs need from the running kernel's BTF.
pub fn kernel_offsets(btf: &Btf) -> Result<KernelOffsets> {
    let need = |s: &str, m: &str| btf.member_offset(s, m).context("kernel BTF");
    let opt = |s: &str, m: &str| btf.member_offset_opt(s, m).unwrap_or(OFFSET_ABSENT);
    let reg = |m: &str| -> Result<u32> {
        let off = need("pt_regs", m)?;
        anyhow::ensure!(
            off % 8 == 0,
            "kernel BTF: pt_regs.{m} at byte {off}, not a word"
        );
        Ok(off)
    };
    let offsets = KernelOffsets {
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
            reg("di")?,
            reg("si")?,
            reg("dx")?,
            reg("r10")?,
            reg("r8")?,
            reg("r9")?,
        ],
        regs_orig_ax: reg("orig_ax")?,
        // thread_info is embedded in task_struct (CONFIG_THREAD_INFO_IN_TASK, always on x86_64).
        task_ti_status: match (
            btf.member_offset_opt("task_struct", "thread_info"),
            btf.member_offset_opt("thread_info", "status"),
        ) {
            (Some(ti), Some(status)) => ti + status,
            _ => OFFSET_ABSENT,
        },
        bprm_file: need("linux_binprm", "file")?,
        file_f_path: need("file", "f_path")?,
        file_f_mode: need("file", "f_mode")?,
        file_f_inode: need("file", "f_inode")?,
        inode_i_ino: need("inode", "i_ino")?,
        inode_i_sb: need("inode", "i_sb")?,
        sb_s_dev: need("super_block", "s_dev")?,
        mm_exe_file: need("mm_struct", "exe_file")?,
        tp_cgroup_id: btf
            .member_offset_opt("trace_event_raw_cgroup", "id")
            .unwrap_or(OFFSET_ABSENT),
        tp_cgroup_path_loc: btf
            .member_offset_opt("trace_event_raw_cgroup", "__data_loc_path")
            .unwrap_or(OFFSET_ABSENT),
        // Self-protection compares the caller's mount namespace with the host's; without
        // these (a kernel whose BTF lacks `struct mnt_namespace`) only pid namespaces are.
        task_nsproxy: btf
            .member_offset_opt("task_struct", "nsproxy")
            .unwrap_or(OFFSET_ABSENT),
        nsproxy_mnt_ns: btf
            .member_offset_opt("nsproxy", "mnt_ns")
            .unwrap_or(OFFSET_ABSENT),
        mnt_ns_inum: match (
            btf.member_offset_opt("mnt_namespace", "ns"),
            btf.member_offset_opt("ns_common", "inum"),
        ) {
            (Some(ns), Some(inum)) => ns + inum,
            _ => OFFSET_ABSENT,
        },
        // Issue 15: the file's identity in the write, mapping and exec hooks, and a new
        // cgroup's parent at cgroup_mkdir.
        dentry_d_parent: need("dentry", "d_parent")?,
        dentry_d_inode: need("dentry", "d_inode")?,
        dentry_d_name_name: need("dentry", "d_name")? + need("qstr", "name")?,
        path_dentry: need("path", "dentry")?,
        inode_i_nlink: need("inode", "i_nlink")?,
        vma_vm_file: need("vm_area_struct", "vm_file")?,
        cgroup_kn: btf
            .member_offset_opt("cgroup", "kn")
            .unwrap_or(OFFSET_ABSENT),
        // Renamed `__parent` in 6.15.
        kernfs_node_parent: btf
            .member_offset_opt("kernfs_node", "parent")
            .or_else(|| btf.member_offset_opt("kernfs_node", "__parent"))
            .unwrap_or(OFFSET_ABSENT),
        kernfs_node_id: btf
            .member_offset_opt("kernfs_node", "id")
            .unwrap_or(OFFSET_ABSENT),
        // Issue 17: the opened file's path. Without one of these the programs send no kernel
        // path (FLAG_KPATH_CUT) and fd.name falls back to the path as written.
        task_files: opt("task_struct", "files"),
        files_fdt: opt("files_struct", "fdt"),
        fdtable_fd: opt("fdtable", "fd"),
        fdtable_max_fds: opt("fdtable", "max_fds"),
        path_mnt: opt("path", "mnt"),
        mount_mnt: opt("mount", "mnt"),
        mount_mnt_parent: opt("mount", "mnt_parent"),
        mount_mnt_mountpoint: opt("mount", "mnt_mountpoint"),
        vfsmount_mnt_root: opt("vfsmount", "mnt_root"),
        vfsmount_mnt_sb: opt("vfsmount", "mnt_sb"),
        dentry_d_name_len: match (
            btf.member_offset_opt("dentry", "d_name"),
            btf.member_offset_opt("qstr", "len"),
        ) {
            (Some(d), Some(l)) => d + l,
            _ => OFFSET_ABSENT,
        },
        inode_ctime_sec: inode_time(btf, "ctime").0,
        inode_ctime_nsec: inode_time(btf, "ctime").1,
        inode_mtime_sec: inode_time(btf, "mtime").0,
        inode_mtime_nsec: inode_time(btf, "mtime").1,
        mm_env_start: need("mm_struct", "env_start")?,
        mm_env_end: need("mm_struct", "env_end")?,
        // proc.exe_ino.ctime_duration_pidns_start: without one of these the field is <NA>.
        task_thread_pid: opt("task_struct", "thread_pid"),
        pid_level: opt("pid", "level"),
        pid_numbers_ns: match (
            btf.member_offset_opt("pid", "numbers"),
            btf.member_offset_opt("upid", "ns"),
        ) {
            (Some(n), Some(ns)) => n + ns,
            _ => OFFSET_ABSENT,
        },
        upid_size: btf
            .struct_size_opt("upid")
            .filter(|&s| s > 0)
            .unwrap_or(OFFSET_ABSENT),
        pidns_child_reaper: opt("pid_namespace", "child_reaper"),
        task_start_boottime: opt("task_struct", "start_boottime"),
        // Typed loads of a short name stay within its bytes (`d_shortname` since 6.14).
        dentry_d_iname: btf
            .member_offset_opt("dentry", "d_shortname")
            .or_else(|| btf.member_offset_opt("dentry", "d_iname"))
            .unwrap_or(OFFSET_ABSENT),
        dentry_iname_len: btf
            .member_span_opt("dentry", "d_shortname")
            .or_else(|| btf.member_span_opt("dentry", "d_iname"))
            .unwrap_or(OFFSET_ABSENT),
        btf_dentry: btf.struct_id("dentry").unwrap_or(OFFSET_ABSENT),
        btf_file: btf.struct_id("file").unwrap_or(OFFSET_ABSENT),
        btf_mount: btf.struct_id("mount").unwrap_or(OFFSET_ABSENT),
        kfunc_rdonly_cast: btf.func_id("bpf_rdonly_cast").unwrap_or(OFFSET_ABSENT),
    };
    // The exit programs copy REGS_ARG_WORDS words from the lowest argument register.
    let (lo, hi) = (
        offsets.regs_args.iter().min().copied().unwrap_or(0),
        offsets.regs_args.iter().max().copied().unwrap_or(0),
    );
    anyhow::ensure!(
        hi - lo < 8 * guard_ebpf::REGS_ARG_WORDS as u32,
        "kernel BTF: the pt_regs argument registers span bytes {lo}..{hi}, more than the {} words the programs copy",
        guard_ebpf::REGS_ARG_WORDS
    );
    Ok(offsets)
}

/// Offsets of an inode time (`what`: `ctime` or `mtime`), seconds and nanoseconds, in the
/// layouts kernels have had: `i_ctime_sec` + `i_ctime_nsec` (6.11 on), a `struct timespec64`
/// named `__i_ctime` (6.6 to 6.10; `__i_mtime` from 6.7) or `i_ctime` (before). Absent: none.
pub fn inode_time(btf: &Btf, what: &str) -> (u32, u32) {
    if let (Some(s), Some(n)) = (
        btf.member_offset_opt("inode", &format!("i_{what}_sec")),
        btf.member_offset_opt("inode", &format!("i_{what}_nsec")),
    ) {
        return (s, n);
    }
    let ts = btf
        .member_offset_opt("inode", &format!("__i_{what}"))
        .or_else(|| btf.member_offset_opt("inode", &format!("i_{what}")));
    match (
        ts,
        btf.member_offset_opt("timespec64", "tv_sec"),
        btf.member_offset_opt("timespec64", "tv_nsec"),
    ) {
        (Some(t), Some(s), Some(n)) => (t + s, t + n),
        _ => (OFFSET_ABSENT, OFFSET_ABSENT),
    }
}

/// Load-time settings.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Ring-buffer size in bytes; rounded up to a power of two and at least one page.
    pub ring_bytes: u32,
    /// Trace only this cgroup (v2 id) instead of the whole host.
    pub only_cgroup: Option<u64>,
    /// Policy enforcement: attach the policy programs and pin them, their links and the policy
    /// maps in this bpffs directory (adopting what an earlier agent pinned there).
    pub policy_pins: Option<PathBuf>,
    /// Which syscalls are traced and which opens produce records.
    pub prefilter: crate::prefilter::Prefilter,
    /// Self-protection from containers (BPF LSM only): what to protect; None = off.
    pub self_protect: Option<crate::selfprotect::Roots>,
    /// `--policy-backend`.
    pub policy_backend: crate::policy::backend::Choice,
    /// A policy has `deny_new_binaries`: without BPF LSM, the kernel tracks written files
    /// (`attach_drift`); other hosts do not pay a program on every open.
    pub policy_drift: bool,
    /// A detect-mode policy has open rules: on the `fanotify` backend they are judged at the
    /// open's exit (`attach_open_detect`), so no open waits for the agent.
    pub policy_open_detect: bool,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            ring_bytes: guard_ebpf::DEFAULT_RING_BYTES,
            only_cgroup: None,
            policy_pins: None,
            prefilter: crate::prefilter::Prefilter::none(),
            self_protect: None,
            policy_backend: Default::default(),
            policy_drift: false,
            policy_open_detect: false,
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
    /// Policy enforcement backend (None when no policy enforcement was asked for).
    pub policy_backend: Option<Backend>,
    /// Self-protection of the agent from containers.
    pub self_protect: crate::selfprotect::Status,
    /// The syscall tracepoints the capture programs are attached to.
    pub syscalls: SyscallLinks,
    /// Drift tracking is attached (non-LSM backends, a `deny_new_binaries` policy).
    pub drift: bool,
    /// Detect-mode open rules judged at the open's exit (`fanotify` backend).
    pub open_detect: bool,
}

/// Bytes waiting in the event ring above which a record wakes the agent (an eighth of the
/// ring); below it only a batch's first record does, and the agent reads the batch
/// `agent::pipeline::RING_TICK` later.
pub fn wakeup_bytes(ring_bytes: u32) -> u32 {
    ring_size(ring_bytes) / 8
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
    let btf = crate::btf::kernel()
        .map_err(|e| anyhow::anyhow!("guard needs kernel BTF (CONFIG_DEBUG_INFO_BTF): {e}"))?;
    let offsets = kernel_offsets(btf)?;
    // aya 0.14 parses the kernel's BTF again here (EbpfLoader::new); see `btf`.
    let mut loader = EbpfLoader::new();
    loader
        .override_global(names::KERNEL_OFFSETS, &offsets, true)
        .map_max_entries(names::EVENTS, ring_size(cfg.ring_bytes));
    if let Some(dir) = &cfg.policy_pins {
        crate::sysfs::ensure_bpffs(dir)?;
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the pin directory {}", dir.display()))?;
        for m in POLICY_MAPS {
            loader.map_pin_path(m, dir.join(m));
        }
    }
    if object::EBPF_OBJECT.is_empty() {
        anyhow::bail!(
            "this guard was built with AYA_BUILD_SKIP=1 (for fuzzing): it has no eBPF programs"
        );
    }
    let patched = object::patch_calls(object::EBPF_OBJECT, offsets.kfunc_rdonly_cast);
    let ebpf = loader
        .load(patched.bytes())
        .context("loading the eBPF object")?;
    Ok((ebpf, offsets))
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

/// Selects the traced syscalls in `SYSCALL_FILTER` and the open prefixes in `OPEN_PREFIXES`
/// (see `prefilter`), then attaches the capture programs to each traced syscall's own
/// tracepoints (`syscall_links`).
fn attach_syscalls(
    ebpf: &mut Ebpf,
    prefilter: &crate::prefilter::Prefilter,
) -> Result<SyscallLinks> {
    let mut links = SyscallLinks::default();
    links.preload(ebpf)?;
    // Attached first (they do nothing while the filter is empty), so the routing is final.
    links.attach(ebpf, prefilter)?;
    let routed = links.routed(prefilter);
    write_prefilter(ebpf, None, &routed)?;
    Ok(links)
}

/// Puts `new` in force in the prefilter maps, replacing `old` (None: the maps are empty).
/// Every intermediate state traces at least what `old` or `new` trace: first every syscall
/// either traces is traced without path or destination checks, then the prefix and
/// destination maps change, then the syscall bits become `new`'s.
fn write_prefilter(
    ebpf: &mut Ebpf,
    old: Option<&crate::prefilter::Prefilter>,
    new: &crate::prefilter::Prefilter,
) -> Result<()> {
    use guard_ebpf::syscall_filter::TRACE;
    if let Some(old) = old {
        set_array(
            ebpf,
            names::SYSCALL_FILTER,
            (0..guard_ebpf::MAX_SYSCALL_NR)
                .filter(|nr| old.traces(*nr) || new.traces(*nr))
                .map(|nr| (nr, TRACE)),
        )?;
        set_array(
            ebpf,
            names::CONNECT_PORTS,
            old.connect_ports
                .difference(&new.connect_ports)
                .map(|&p| (u32::from(p), 0)),
        )?;
        clear_lpm::<{ guard_ebpf::OPEN_PREFIX_BYTES }>(ebpf, names::OPEN_PREFIXES)?;
        clear_lpm::<{ guard_ebpf::CONNECT_NET_KEY_BYTES }>(ebpf, names::CONNECT_NETS)?;
    }
    set_array(
        ebpf,
        names::CONNECT_PORTS,
        new.connect_ports.iter().map(|&p| (u32::from(p), 1)),
    )?;
    fill_lpm(
        ebpf,
        names::OPEN_PREFIXES,
        guard_ebpf::MAX_OPEN_PREFIXES,
        new.open_prefixes.iter().map(|(p, &bits)| {
            let mut data = [0u8; guard_ebpf::OPEN_PREFIX_BYTES];
            let n = p.len().min(data.len() - 1);
            data[..n].copy_from_slice(&p.as_bytes()[..n]);
            (8 * n as u32, data, bits)
        }),
    )?;
    fill_lpm(
        ebpf,
        names::CONNECT_NETS,
        guard_ebpf::MAX_CONNECT_NETS,
        new.connect_nets.iter().map(|net| {
            let mut data = [0u8; guard_ebpf::CONNECT_NET_KEY_BYTES];
            match net {
                ipnet::IpNet::V4(n) => {
                    data[0] = 4;
                    data[1..5].copy_from_slice(&n.addr().octets());
                }
                ipnet::IpNet::V6(n) => {
                    data[0] = 6;
                    data[1..17].copy_from_slice(&n.addr().octets());
                }
            }
            (8 + u32::from(net.prefix_len()), data, 1)
        }),
    )?;
    match old {
        // Every syscall: those `new` does not trace go back to 0.
        Some(_) => set_array(
            ebpf,
            names::SYSCALL_FILTER,
            (0..guard_ebpf::MAX_SYSCALL_NR)
                .map(|nr| (nr, new.syscalls.get(&nr).copied().unwrap_or(0))),
        ),
        None => set_array(
            ebpf,
            names::SYSCALL_FILTER,
            new.syscalls.iter().map(|(&nr, &bits)| (nr, bits)),
        ),
    }
}

/// Removes every entry of an LPM trie with `N`-byte keys and `u8` values.
fn clear_lpm<const N: usize>(ebpf: &mut Ebpf, name: &str) -> Result<()> {
    let mut map: aya::maps::lpm_trie::LpmTrie<&mut MapData, [u8; N], u8> =
        aya::maps::lpm_trie::LpmTrie::try_from(
            ebpf.map_mut(name)
                .with_context(|| format!("map {name} missing from the object"))?,
        )?;
    let keys: Vec<_> = map.keys().filter_map(|k| k.ok()).collect();
    for k in keys {
        map.remove(&k)
            .with_context(|| format!("removing an entry of {name}"))?;
    }
    Ok(())
}

/// Sets `index -> value` entries of a `u8` array map.
fn set_array(
    ebpf: &mut Ebpf,
    name: &str,
    entries: impl IntoIterator<Item = (u32, u8)>,
) -> Result<()> {
    let mut map: Array<&mut MapData, u8> = Array::try_from(
        ebpf.map_mut(name)
            .with_context(|| format!("map {name} missing from the object"))?,
    )?;
    for (i, v) in entries {
        map.set(i, v, 0)
            .with_context(|| format!("setting entry {i} of {name}"))?;
    }
    Ok(())
}

/// Inserts `(prefix bits, key, value)` entries into an LPM trie holding at most `max`.
fn fill_lpm<const N: usize>(
    ebpf: &mut Ebpf,
    name: &str,
    max: u32,
    entries: impl ExactSizeIterator<Item = (u32, [u8; N], u8)>,
) -> Result<()> {
    anyhow::ensure!(
        entries.len() <= max as usize,
        "{} entries for {name} derived from the rules; the kernel map holds {max}",
        entries.len()
    );
    let mut map: aya::maps::lpm_trie::LpmTrie<&mut MapData, [u8; N], u8> =
        aya::maps::lpm_trie::LpmTrie::try_from(
            ebpf.map_mut(name)
                .with_context(|| format!("map {name} missing from the object"))?,
        )?;
    for (bits, data, v) in entries {
        map.insert(&aya::maps::lpm_trie::Key::new(bits, data), v, 0)
            .with_context(|| format!("adding a {bits}-bit prefix to {name}"))?;
    }
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
            settings.set(
                settings::WAKEUP_BYTES,
                u64::from(wakeup_bytes(cfg.ring_bytes)),
                0,
            )?;
        }
        attach_lifecycle(&mut ebpf)?;
        let syscalls = attach_syscalls(&mut ebpf, &cfg.prefilter)?;

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
        let lsm = exec_enforcement == ExecEnforcement::Lsm;
        let policy_backend = cfg
            .policy_pins
            .as_ref()
            .map(|dir| attach_policy(&mut ebpf, lsm, cfg.policy_backend, dir));
        let kind = policy_backend.as_ref().and_then(Backend::kind);
        let (drift, open_detect) = match &cfg.policy_pins {
            Some(dir) => (
                settle_open_exits(
                    &mut ebpf,
                    dir,
                    DRIFT_PROGRAM,
                    cfg.policy_drift && lsm_less(kind),
                )
                .context("drift tracking")?,
                settle_open_exits(
                    &mut ebpf,
                    dir,
                    DETECT_PROGRAM,
                    cfg.policy_open_detect && kind == Some(Kind::Fanotify),
                )
                .context("detect-mode open rules")?,
            ),
            None => (false, false),
        };
        // After the policy pins exist, so that they are protected from the start.
        let self_protect = match (&cfg.self_protect, &exec_enforcement) {
            (None, _) => crate::selfprotect::Status::Off,
            (Some(_), ExecEnforcement::Unavailable(why)) => {
                crate::selfprotect::Status::Unavailable(why.clone())
            }
            (Some(roots), ExecEnforcement::Lsm) => {
                let mount_ns = offsets.task_nsproxy != OFFSET_ABSENT
                    && offsets.nsproxy_mnt_ns != OFFSET_ABSENT
                    && offsets.mnt_ns_inum != OFFSET_ABSENT;
                match crate::selfprotect::SelfProtect::start(&mut ebpf, roots.clone(), mount_ns) {
                    Ok(sp) => crate::selfprotect::Status::Active(sp),
                    Err(e) => crate::selfprotect::Status::Unavailable(format!("{e:#}")),
                }
            }
        };
        Ok(Self {
            ebpf,
            offsets,
            exec_enforcement,
            policy_backend,
            self_protect,
            syscalls,
            drift,
            open_detect,
        })
    }

    /// The kind of the policy backend attached, if any.
    fn backend_kind(&self) -> Option<Kind> {
        self.policy_backend.as_ref().and_then(Backend::kind)
    }

    /// A reload brings a `deny_new_binaries` policy: attaches drift tracking on the non-LSM
    /// backends (before the policy is bound, so no write is missed). Once attached it stays.
    pub fn ensure_drift(&mut self, dir: &Path) -> Result<()> {
        if lsm_less(self.backend_kind()) && !self.drift {
            attach_open_exits(&mut self.ebpf, DRIFT_PROGRAM, Some(dir))?;
            self.drift = true;
        }
        Ok(())
    }

    /// A reload brings a detect-mode policy with open rules: on the `fanotify` backend,
    /// attaches their judgement at the open's exit (before the policy is bound). Once
    /// attached it stays.
    pub fn ensure_open_detect(&mut self, dir: &Path) -> Result<()> {
        if self.backend_kind() == Some(Kind::Fanotify) && !self.open_detect {
            attach_open_exits(&mut self.ebpf, DETECT_PROGRAM, Some(dir))?;
            self.open_detect = true;
        }
        Ok(())
    }

    /// The first step of a reload: `wide` (filtering nothing) in force while the rules switch
    /// from `old`'s to `next`'s. Only the syscalls `old` or `next` trace need their programs
    /// (nothing else can match either rule set), so only `next`'s are attached here.
    pub fn widen_prefilter(
        &mut self,
        old: &crate::prefilter::Prefilter,
        wide: &crate::prefilter::Prefilter,
        next: &crate::prefilter::Prefilter,
    ) -> Result<()> {
        self.syscalls.attach(&mut self.ebpf, next)?;
        let (old, wide) = (self.syscalls.routed(old), self.syscalls.routed(wide));
        write_prefilter(&mut self.ebpf, Some(&old), &wide)
    }

    /// Replaces the prefilter in force (`old`) by `new` (a reload): the tracepoints `new`
    /// needs are attached first, then the filter switches (`write_prefilter`), then what only
    /// `old` needed is detached; every moment traces at least what `old` or `new` trace.
    pub fn replace_prefilter(
        &mut self,
        old: &crate::prefilter::Prefilter,
        new: &crate::prefilter::Prefilter,
    ) -> Result<()> {
        self.syscalls.attach(&mut self.ebpf, new)?;
        let (old, new_routed) = (self.syscalls.routed(old), self.syscalls.routed(new));
        write_prefilter(&mut self.ebpf, Some(&old), &new_routed)?;
        self.syscalls.detach_unused(&mut self.ebpf, new)
    }

    pub fn ring_buf(&mut self) -> Result<RingBuf<MapData>> {
        self.take_ring(names::EVENTS)
    }

    /// The ring of enforcement records (policy decisions, exec denials).
    pub fn decision_ring(&mut self) -> Result<RingBuf<MapData>> {
        self.take_ring(names::DECISIONS)
    }

    fn take_ring(&mut self, name: &str) -> Result<RingBuf<MapData>> {
        let map = self
            .ebpf
            .take_map(name)
            .with_context(|| format!("map {name} missing from the object"))?;
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

    /// Opens the prefilter skipped on purpose (no rule could use them).
    pub fn prefiltered_opens(&self) -> Result<u64> {
        self.drop_slot(guard_ebpf::PREFILTERED_OPENS)
    }

    /// Connects the prefilter skipped on purpose.
    pub fn prefiltered_connects(&self) -> Result<u64> {
        self.drop_slot(guard_ebpf::PREFILTERED_CONNECTS)
    }

    /// Sends without a destination the prefilter skipped on purpose.
    pub fn prefiltered_sends(&self) -> Result<u64> {
        self.drop_slot(guard_ebpf::PREFILTERED_SENDS)
    }

    fn drop_slot(&self, slot: u32) -> Result<u64> {
        let map = self
            .ebpf
            .map(names::DROPS)
            .context("map DROPS missing from the object")?;
        let arr: PerCpuArray<&MapData, u64> = PerCpuArray::try_from(map)?;
        Ok(arr.get(&slot, 0)?.iter().sum())
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
    let hook = "bprm_check_security";
    crate::lsm::load(ebpf, names::PROG_BPRM_CHECK, hook)?
        .attach()
        .with_context(|| format!("attaching the LSM program {hook}"))?;
    Ok(())
}

/// Replaces the link pinned at `dir/link_<prog>` by `link`: the new link is attached before
/// the old one is unpinned (and so detached), so there is no gap; afterwards only one remains.
fn pin_link(link: FdLink, dir: &Path, prog: &str) -> Result<()> {
    let path = dir.join(format!("link_{prog}"));
    if path.exists() {
        match PinnedLink::from_pin(&path) {
            Ok(old) => {
                old.unpin()
                    .with_context(|| format!("unpinning {}", path.display()))?;
                info!(link = %path.display(), "replaced the link pinned by an earlier agent");
            }
            Err(e) => {
                warn!(link = %path.display(), "removing unreadable pin: {e}");
                std::fs::remove_file(&path)?;
            }
        }
    }
    link.pin(&path)
        .with_context(|| format!("pinning {}", path.display()))?;
    Ok(())
}

/// Attaches the policy programs (BPF LSM, or the SIGKILL fallback) and pins them and their
/// links under `dir`.
pub fn attach_policy(ebpf: &mut Ebpf, lsm: bool, choice: Choice, dir: &Path) -> Backend {
    let r = match (choice, lsm) {
        (Choice::Auto | Choice::BpfLsm, true) => {
            attach_policy_lsm(ebpf, Some(dir)).map(|()| Kind::BpfLsm)
        }
        (Choice::BpfLsm, false) => Err(anyhow::anyhow!(
            "--policy-backend bpf-lsm: this kernel refuses BPF LSM programs"
        )),
        // The exec backstop stays attached under fanotify: it holds while no agent answers.
        (Choice::Auto, false) => attach_policy_fallback(ebpf, Some(dir)).map(|()| without_lsm()),
        (Choice::Fanotify, _) => crate::fanotify::probe()
            .context("--policy-backend fanotify")
            .and_then(|()| attach_policy_fallback(ebpf, Some(dir)))
            .map(|()| Kind::Fanotify),
        (Choice::SigkillFallback, _) => {
            attach_policy_fallback(ebpf, Some(dir)).map(|()| Kind::SigkillFallback)
        }
    }
    .and_then(|b| attach_policy_mkdir(ebpf, Some(dir)).map(|()| b))
    .and_then(|b| attach_policy_net(ebpf, Some(dir)).map(|()| b));
    let r = r.and_then(|k| {
        if k == Kind::Fanotify {
            // The exec backstop decides on the file too, as the permission answer does.
            let mut settings: Array<&mut MapData, u64> = Array::try_from(
                ebpf.map_mut(names::SETTINGS)
                    .context("map SETTINGS missing from the object")?,
            )?;
            settings.set(settings::EXEC_BY_INODE, 1, 0)?;
        }
        Ok(k)
    });
    match r {
        Ok(k) => {
            info!(backend = k.name(), covers = %k.summary(), pins = %dir.display(), "policy enforcement attached");
            Backend::Attached(k)
        }
        Err(e) => {
            warn!("policy enforcement unavailable: {e:#}");
            Backend::Unavailable(format!("{e:#}"))
        }
    }
}

/// The backend where BPF LSM is refused: `fanotify` when permission events work here, else
/// `sigkill-fallback`.
fn without_lsm() -> Kind {
    match crate::fanotify::probe() {
        Ok(()) => Kind::Fanotify,
        Err(e) => {
            info!("fanotify backend unavailable: {e:#}");
            Kind::SigkillFallback
        }
    }
}

fn replace_prog_pin(dir: &Path, prog: &str) -> PathBuf {
    let path = dir.join(format!("prog_{prog}"));
    let _ = std::fs::remove_file(&path);
    path
}

fn attach_policy_lsm(ebpf: &mut Ebpf, dir: Option<&Path>) -> Result<()> {
    use crate::policy::backend::bpf_lsm::{OPTIONAL_PROGRAMS, PROGRAMS};
    let optional = OPTIONAL_PROGRAMS.iter().map(|p| (p, true));
    for ((name, hook), optional) in PROGRAMS.iter().map(|p| (p, false)).chain(optional) {
        let prog = match crate::lsm::load(ebpf, name, hook) {
            Ok(p) => p,
            // A hook this kernel does not have: BTF has no `bpf_lsm_<hook>`.
            Err(e) if optional && !crate::lsm::has_hook(hook) => {
                info!(hook, "LSM hook absent on this kernel; not attached: {e:#}");
                continue;
            }
            Err(e) => return Err(e),
        };
        let id = prog.attach().with_context(|| format!("attaching {name}"))?;
        if let Some(dir) = dir {
            prog.pin(replace_prog_pin(dir, name))
                .with_context(|| format!("pinning program {name}"))?;
            let link: FdLink = prog.take_link(id)?.into();
            pin_link(link, dir, name)?;
        }
    }
    Ok(())
}

/// Attaches (and pins) the `cgroup/cgroup_mkdir` program that binds a new container cgroup
/// to the policy learnt at Docker's create event. Both backends use it.
fn attach_policy_mkdir(ebpf: &mut Ebpf, dir: Option<&Path>) -> Result<()> {
    attach_pinned_tracepoint(
        ebpf,
        names::PROG_POLICY_CGROUP_MKDIR,
        "cgroup",
        "cgroup_mkdir",
        dir,
    )?;
    // A new cgroup inherits its parent's policy (issue 15): raw tracepoint, for the parent.
    let name = names::PROG_POLICY_CGROUP_INHERIT;
    let prog = raw_tracepoint(ebpf, name)?;
    let id = prog
        .attach("cgroup_mkdir")
        .with_context(|| format!("attaching {name} to raw tracepoint cgroup_mkdir"))?;
    let Some(dir) = dir else {
        return Ok(());
    };
    prog.pin(replace_prog_pin(dir, name))
        .with_context(|| format!("pinning program {name}"))?;
    let link: FdLink = prog.take_link(id)?.into();
    pin_link(link, dir, name)
}

/// Attaches (and pins) the connect and sendmsg programs at the cgroup v2 root: network rules
/// are refused with EPERM by the same programs on every backend (`crate::sockaddr`).
fn attach_policy_net(ebpf: &mut Ebpf, dir: Option<&Path>) -> Result<()> {
    let root = crate::sockaddr::open_root()?;
    for name in crate::sockaddr::POLICY_PROGRAMS {
        let link = crate::sockaddr::attach(ebpf, name, &root)?;
        let Some(dir) = dir else {
            // Probing only: the link detaches when dropped.
            continue;
        };
        let prog: &mut aya::programs::CgroupSockAddr = ebpf
            .program_mut(name)
            .with_context(|| format!("program {name} missing from the object"))?
            .try_into()?;
        prog.pin(replace_prog_pin(dir, name))
            .with_context(|| format!("pinning program {name}"))?;
        pin_link(link, dir, name)?;
    }
    if let Some(dir) = dir {
        // Earlier versions enforced connect with a BPF LSM program: its pins would keep it
        // attached next to these.
        for old in ["link_policy_connect", "prog_policy_connect"] {
            let path = dir.join(old);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn attach_policy_fallback(ebpf: &mut Ebpf, dir: Option<&Path>) -> Result<()> {
    let (name, category, event) = crate::policy::backend::fallback::PROGRAM;
    attach_pinned_tracepoint(ebpf, name, category, event, dir)
}

/// Whether a backend without BPF LSM (fanotify, sigkill-fallback) is in force: the ones that
/// need drift tracking.
fn lsm_less(kind: Option<Kind>) -> bool {
    matches!(kind, Some(Kind::Fanotify | Kind::SigkillFallback))
}

/// Attaches `program` at the open exits when `wanted` (a policy needs it and the backend in
/// force uses it); otherwise removes an earlier agent's links. Whether it is attached.
fn settle_open_exits(ebpf: &mut Ebpf, dir: &Path, program: &str, wanted: bool) -> Result<bool> {
    if wanted {
        attach_open_exits(ebpf, program, Some(dir))?;
    } else {
        remove_open_exit_pins(dir, program)?;
    }
    Ok(wanted)
}

/// `program` on the open syscalls' exits, pinned: drift tracking for `deny_new_binaries`
/// without BPF LSM (`policy_open_written`, read by the exec backstop), or detect-mode open
/// rules on the `fanotify` backend (`policy_open_detect`).
fn attach_open_exits(ebpf: &mut Ebpf, program: &str, dir: Option<&Path>) -> Result<()> {
    ensure_tracefs()?;
    for exit in DRIFT_EXITS {
        // A kernel without the syscall (openat2 before 5.6) has no exit to watch.
        if !crate::syscall_links::has_tracepoint("syscalls", exit) {
            info!(tracepoint = exit, program, "absent on this kernel; skipped");
            continue;
        }
        attach_pinned_tracepoint_as(
            ebpf,
            program,
            "syscalls",
            exit,
            dir,
            &format!("{program}_{exit}"),
        )?;
    }
    Ok(())
}

/// No policy needs `program` at the open exits: an earlier agent's links are unpinned
/// (detached); what drift tracking recorded in `NEW_FILES` stays.
fn remove_open_exit_pins(dir: &Path, program: &str) -> Result<()> {
    for exit in DRIFT_EXITS {
        let path = dir.join(format!("link_{program}_{exit}"));
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

fn attach_pinned_tracepoint(
    ebpf: &mut Ebpf,
    name: &str,
    category: &str,
    event: &str,
    dir: Option<&Path>,
) -> Result<()> {
    attach_pinned_tracepoint_as(ebpf, name, category, event, dir, name)
}

/// Attaches program `name` to `category/event`; its link is pinned as `link_<link_name>`.
fn attach_pinned_tracepoint_as(
    ebpf: &mut Ebpf,
    name: &str,
    category: &str,
    event: &str,
    dir: Option<&Path>,
    link_name: &str,
) -> Result<()> {
    let prog = tracepoint(ebpf, name)?;
    let id = prog
        .attach(category, event)
        .with_context(|| format!("attaching {name} to {category}/{event}"))?;
    let Some(dir) = dir else {
        return Ok(());
    };
    prog.pin(replace_prog_pin(dir, name))
        .with_context(|| format!("pinning program {name}"))?;
    let link = prog.take_link(id)?;
    let link = FdLink::try_from(link).map_err(|e| {
        anyhow::anyhow!("this kernel cannot make a pinnable link for the tracepoint: {e}")
    })?;
    pin_link(link, dir, link_name)?;
    Ok(())
}

/// `guard run --cleanup`: detaches and removes everything pinned under `dir`.
pub fn cleanup_pins(dir: &Path) -> Result<usize> {
    if !dir.exists() {
        return Ok(0);
    }
    let mut n = 0;
    for e in std::fs::read_dir(dir)?.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("link_")
            && let Ok(l) = PinnedLink::from_pin(&path)
        {
            // Unpinning drops the last reference: the link detaches.
            l.unpin()?;
        } else {
            std::fs::remove_file(&path)?;
        }
        n += 1;
    }
    std::fs::remove_dir(dir)?;
    Ok(n)
}

/// What `guard doctor` learns by actually loading the programs.
pub struct Support {
    pub tracepoint: Result<()>,
    pub lsm: Result<()>,
    /// The policy backend `guard run --policy` would use.
    pub policy: Backend,
    /// Whether the self-protection programs load and attach (BPF LSM).
    pub self_protect: Result<()>,
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
                self_protect: Err(anyhow::anyhow!("{msg}")),
                policy: Backend::Unavailable(msg),
            };
        }
    };
    let tracepoint = attach_lifecycle(&mut ebpf)
        .and_then(|()| attach_syscalls(&mut ebpf, &cfg.prefilter).map(|_| ()));
    let lsm = attach_lsm(&mut ebpf);
    let policy = if lsm.is_ok() {
        attach_policy_lsm(&mut ebpf, None).map(|()| Kind::BpfLsm)
    } else {
        attach_policy_fallback(&mut ebpf, None).map(|()| without_lsm())
    }
    .and_then(|k| attach_policy_net(&mut ebpf, None).map(|()| k));
    let policy = match policy {
        Ok(k) => Backend::Attached(k),
        Err(e) => Backend::Unavailable(format!("{e:#}")),
    };
    // Attached with SELF_PROTECT left disabled: this checks the kernel accepts the programs.
    let self_protect = match &lsm {
        Ok(()) => crate::selfprotect::attach_programs(&mut ebpf),
        Err(e) => Err(anyhow::anyhow!("no BPF LSM: {e:#}")),
    };
    Support {
        tracepoint,
        lsm,
        policy,
        self_protect,
    }
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
