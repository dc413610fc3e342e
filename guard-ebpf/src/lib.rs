//! Every layout shared between guard's eBPF programs and its userspace agent.
//!
//! This is the one definition of each ring-buffer record, map key and map value, and of the
//! load-time constants. The eBPF programs (`src/programs/`) and the agent (`guard`) both use
//! it, so a layout change is a compile-time change on both sides.
//!
//! A record is `EventHeader`, then a kind-specific body, then up to two variable-length
//! payloads (`len0`/`len1` bytes) whose meaning depends on the kind (see `syscalls::spec`).
#![cfg_attr(not(test), no_std)]

pub mod syscalls;

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Largest payload (a path, argv, a sockaddr) carried in one record; PATH_MAX.
pub const PAYLOAD_MAX: usize = 4096;
/// Size of the per-CPU scratch area a record is assembled in: a power of two with room for the
/// fixed part, a payload offset of up to 2 * PAYLOAD_MAX (masked) and one more payload.
pub const SCRATCH_LEN: usize = 4 * PAYLOAD_MAX;
/// Ring-buffer size used when the configuration does not set one (bytes, power of two).
pub const DEFAULT_RING_BYTES: u32 = 1 << 23;
/// Size of the `DECISIONS` ring: policy decisions and exec denials travel apart from the event
/// flood, so a saturated `EVENTS` ring never costs an enforcement record.
pub const DECISION_RING_BYTES: u32 = 1 << 18;
/// Capacity of the per-cgroup exec deny map.
pub const MAX_POLICY_CGROUPS: u32 = 16_384;
/// Containers known to Docker whose cgroup is bound at `cgroup_mkdir` (`POLICY_PENDING`).
pub const MAX_PENDING_CONTAINERS: u32 = 4096;
/// Bytes of a container id in `POLICY_PENDING` keys (full hex id).
pub const CONTAINER_ID_BYTES: usize = 64;
/// Bytes of a cgroup path the `cgroup_mkdir` program reads; longer paths are not bound there
/// (the agent's cgroup walk still binds them).
pub const MKDIR_PATH_BYTES: usize = 512;
/// Syscall numbers below this are looked up in `SYSCALL_FILTER`; larger ones (x32) are ignored.
pub const MAX_SYSCALL_NR: u32 = 512;
/// `thread_info.status` bit of a task inside a 32-bit (ia32) syscall, whose numbers differ.
pub const TS_COMPAT: u32 = 0x0002;
/// Words of `struct pt_regs` the syscall exit programs copy to get the six arguments, from
/// the lowest argument register on (x86_64: r10 to di); checked against BTF at load.
pub const REGS_ARG_WORDS: usize = 8;
/// Offset value meaning "this kernel has no such field".
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// The immediate of a kfunc call the object carries until userspace patches in the kfunc's
/// BTF id (`bpf_rdonly_cast`: see `KernelOffsets::kfunc_rdonly_cast`).
pub const KFUNC_PLACEHOLDER: u32 = 0x7ead_cafe;

/// That call as one instruction (little-endian): `call` (0x85) with `src_reg` 2 (a kfunc by
/// BTF id) and the placeholder as its immediate. aya 0.14 cannot relocate a kfunc call, so
/// the programs emit this word and userspace patches its immediate before loading.
pub const KFUNC_CALL_PLACEHOLDER: u64 = 0x85 | (2 << 12) | ((KFUNC_PLACEHOLDER as u64) << 32);

/// Names of the maps and programs, as userspace looks them up in the object.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const DECISIONS: &str = "DECISIONS";
    /// Open prefilter: path prefix (LPM key) -> `open_prefix_bits`.
    pub const OPEN_PREFIXES: &str = "OPEN_PREFIXES";
    /// Connect prefilter: port -> 1 when no rule can match a connect to it.
    pub const CONNECT_PORTS: &str = "CONNECT_PORTS";
    /// Connect prefilter: destination networks no rule can match (LPM, family + address).
    pub const CONNECT_NETS: &str = "CONNECT_NETS";
    pub const DROPS: &str = "DROPS";
    pub const SCRATCH: &str = "SCRATCH";
    pub const SETTINGS: &str = "SETTINGS";
    /// Syscall number -> non-zero when traced (`raw_syscalls` fire for every syscall).
    pub const SYSCALL_FILTER: &str = "SYSCALL_FILTER";
    pub const EXEC_DENY_CGROUPS: &str = "EXEC_DENY_CGROUPS";
    pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";
    pub const PROG_SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    pub const PROG_SCHED_PROCESS_FORK: &str = "sched_process_fork";
    pub const PROG_SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    /// `raw_syscalls/sys_exit`, BTF-typed; `PROG_SYS_EXIT_RAW` where tracing programs are refused.
    pub const PROG_SYS_EXIT: &str = "sys_exit";
    pub const PROG_SYS_EXIT_RAW: &str = "sys_exit_raw";
    /// Attached to `syscalls/sys_exit_<name>` of each traced syscall: the typed variant where
    /// the kernel takes it (`bpf_rdonly_cast`), else the other.
    pub const PROG_SYS_EXIT_ONE: &str = "sys_exit_one";
    pub const PROG_SYS_EXIT_ONE_TYPED: &str = "sys_exit_one_typed";
    pub const PROG_BPRM_CHECK: &str = "bprm_check_security";
    /// Network quarantine (response engine): cgroup id -> `QuarantineEntry`.
    pub const QUARANTINE: &str = "QUARANTINE";
    pub const PROG_QUARANTINE_INGRESS: &str = "quarantine_ingress";
    pub const PROG_QUARANTINE_EGRESS: &str = "quarantine_egress";
    // Per-workload policy enforcement (issue 5).
    pub const POLICY_CGROUPS: &str = "POLICY_CGROUPS";
    pub const POLICY_PATHS: &str = "POLICY_PATHS";
    pub const POLICY_NETS: &str = "POLICY_NETS";
    pub const NEW_FILES: &str = "NEW_FILES";
    /// `InodeRuleKey` -> `path_bits::*`: the files and directories path rules name, by identity.
    pub const POLICY_INODES: &str = "POLICY_INODES";
    pub const PROG_POLICY_EXEC: &str = "policy_exec";
    pub const PROG_POLICY_OPEN: &str = "policy_open";
    pub const PROG_POLICY_EXEC_FALLBACK: &str = "policy_exec_fallback";
    /// Drift tracking without BPF LSM (`programs/drift.rs`).
    pub const PROG_POLICY_OPEN_WRITTEN: &str = "policy_open_written";
    /// Detect-mode open rules at the open's exit, `fanotify` backend (`programs/open_detect.rs`).
    pub const PROG_POLICY_OPEN_DETECT: &str = "policy_open_detect";
    /// Container id (64 hex bytes) -> `CgroupPolicy`, filled from Docker's create event.
    pub const POLICY_PENDING: &str = "POLICY_PENDING";
    /// Cgroups whose workload's files the fanotify listener has marked (cgroup id -> 1).
    pub const FAN_READY: &str = "FAN_READY";
    /// Tasks stopped at an exec in a bound cgroup not yet in `FAN_READY` (`HoldRecord`s).
    pub const HOLDS: &str = "HOLDS";
    /// Pid -> `HeldTask`: the tasks held and not resumed yet. Pinned, so that an agent
    /// restarted after a crash resumes what the dead one (or its still-attached program) held.
    pub const HELD: &str = "HELD";
    pub const PROG_POLICY_CGROUP_MKDIR: &str = "policy_cgroup_mkdir";
    // Self-protection of the agent from containers (issue 9; docs/self-protection.md).
    /// Array of one `SelfProtectConfig`.
    pub const SELF_PROTECT: &str = "SELF_PROTECT";
    /// `InodeKey` -> `protected_class::*`: guard's config, policies, audit log and pins.
    pub const PROTECTED_INODES: &str = "PROTECTED_INODES";
    /// `bpf_id_key(kind, id)` -> 1: guard's maps, programs and links, by kernel id.
    pub const PROTECTED_BPF_IDS: &str = "PROTECTED_BPF_IDS";
    pub const PROG_SELF_TASK_KILL: &str = "selfprot_task_kill";
    pub const PROG_SELF_PTRACE: &str = "selfprot_ptrace";
    pub const PROG_SELF_INODE: &str = "selfprot_inode";
    pub const PROG_SELF_BPF: &str = "selfprot_bpf";
    // Network policy and quarantine on every kernel: cgroup sock_addr programs (sockaddr).
    pub const PROG_POLICY_CONNECT4: &str = "policy_connect4";
    pub const PROG_POLICY_CONNECT6: &str = "policy_connect6";
    pub const PROG_POLICY_SENDMSG4: &str = "policy_sendmsg4";
    pub const PROG_POLICY_SENDMSG6: &str = "policy_sendmsg6";
    pub const PROG_QUARANTINE_CONNECT4: &str = "quarantine_connect4";
    pub const PROG_QUARANTINE_CONNECT6: &str = "quarantine_connect6";
    pub const PROG_QUARANTINE_SENDMSG4: &str = "quarantine_sendmsg4";
    pub const PROG_QUARANTINE_SENDMSG6: &str = "quarantine_sendmsg6";
    // Issue 15 (helper lsm).
    /// Parent cgroup id -> the `CgroupPolicy` a new child gets at `cgroup_mkdir` (a parent
    /// whose children a glob selects).
    pub const POLICY_CHILDREN: &str = "POLICY_CHILDREN";
    pub const PROG_POLICY_CGROUP_INHERIT: &str = "policy_cgroup_inherit";
}

/// Capacity of `PROTECTED_INODES` (files and directories guard protects from containers).
pub const MAX_PROTECTED_INODES: u32 = 4096;
/// Capacity of `PROTECTED_BPF_IDS` (guard's own maps, programs and links).
pub const MAX_PROTECTED_BPF_IDS: u32 = 1024;

/// What the self-protection programs need to know, written by the agent at start (`SELF_PROTECT`,
/// index 0). A task is "in a container" when it is not the agent and its pid namespace is not
/// the host's (PID 1's), or its mount namespace is not the host's.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SelfProtectConfig {
    /// The agent's thread-group id: the target of the signal and ptrace checks.
    pub agent_tgid: u32,
    /// Non-zero when self-protection is on.
    pub enabled: u32,
    /// Kernel `dev_t` (MKDEV encoding) and inode of the host's pid namespace (nsfs).
    pub pidns_dev: u64,
    pub pidns_ino: u64,
    /// Inode number of the host's mount namespace; 0 = mount namespaces are not compared.
    pub mntns_ino: u64,
}

/// Kinds of kernel object in `PROTECTED_BPF_IDS` keys.
pub mod bpf_obj_kind {
    pub const MAP: u64 = 1;
    pub const PROG: u64 = 2;
    pub const LINK: u64 = 3;
}

/// Key of `PROTECTED_BPF_IDS`: the object kind in the high half, its kernel id in the low half
/// (map, program and link ids are separate id spaces).
pub const fn bpf_id_key(kind: u64, id: u32) -> u64 {
    (kind << 32) | id as u64
}

/// Values of `PROTECTED_INODES`: why the inode is protected (reported with a denial).
pub mod protected_class {
    pub const CONFIG: u32 = 1;
    pub const AUDIT: u32 = 2;
    pub const PINS: u32 = 3;
    /// The agent's own cgroup and its control files (`cgroup.kill`, `cgroup.freeze`,
    /// `memory.max`, ...), which act on the agent without a signal.
    pub const CGROUP: u32 = 4;
}

/// `DROPS` slot counting opens the prefilter skipped on purpose (not a loss).
pub const PREFILTERED_OPENS: u32 = EventKind::COUNT;
/// `DROPS` slot counting connects the prefilter skipped on purpose (not a loss).
pub const PREFILTERED_CONNECTS: u32 = EventKind::COUNT + 1;
/// `DROPS` slot counting sends without a destination the prefilter skipped on purpose.
pub const PREFILTERED_SENDS: u32 = EventKind::COUNT + 2;
/// Length of the `DROPS` per-CPU array: one slot per `EventKind`, then `PREFILTERED_OPENS`,
/// `PREFILTERED_CONNECTS` and `PREFILTERED_SENDS`.
pub const DROP_SLOTS: u32 = EventKind::COUNT + 3;

/// Values of `SYSCALL_FILTER` (bits).
pub mod syscall_filter {
    /// The syscall is traced.
    pub const TRACE: u8 = 1;
    /// An open-family syscall whose record goes through the `OPEN_PREFIXES` check.
    pub const OPEN_PATHS: u8 = 2;
    /// `connect`, whose record goes through the `CONNECT_PORTS` / `CONNECT_NETS` check.
    pub const CONNECT_DEST: u8 = 4;
    /// Captured by the `raw_syscalls/sys_exit` program, because this kernel has no
    /// `syscalls/sys_exit_<name>` tracepoint for it; every other traced syscall is captured by
    /// the program attached to its own exit tracepoint only.
    pub const VIA_RAW: u8 = 8;
    /// sendto / sendmsg: only those given a destination address are recorded (no rule can
    /// match a send on a connected socket, which keeps its name).
    pub const SEND_DEST: u8 = 16;
    /// An open-family syscall (but openat2, whose flags are in user memory) whose successful
    /// opens are judged by the kernel-resolved path alone when it resolves: no active rule
    /// reads the path as passed (`fd.nameraw`), so a dropped open costs no copy of it.
    pub const KPATH_DECIDES: u8 = 32;
}

/// Entries of `CONNECT_PORTS` (one per port).
pub const CONNECT_PORT_SLOTS: u32 = 65_536;
/// Entries of `CONNECT_NETS`.
pub const MAX_CONNECT_NETS: u32 = 1024;
/// `CONNECT_NETS` key: address family (4 or 6), then the address (IPv4 in the first 4 bytes).
pub const CONNECT_NET_KEY_BYTES: usize = 17;

/// Key bytes of an `OPEN_PREFIXES` entry; longer paths always pass the open prefilter.
pub const OPEN_PREFIX_BYTES: usize = 256;
/// Entries of `OPEN_PREFIXES`.
pub const MAX_OPEN_PREFIXES: u32 = 4096;

/// Values of `OPEN_PREFIXES` (bits): which opens below the prefix some rule can match.
pub mod open_prefix_bits {
    /// Any access.
    pub const ANY: u8 = 1;
    /// Opens for writing.
    pub const WRITE: u8 = 2;
}

/// Kind of a ring-buffer record; also the index into the `DROPS` per-CPU array.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    Exec = 1,
    ExecDenied = 2,
    Fork = 3,
    Exit = 4,
    /// Every traced syscall other than the lifecycle ones; the body says which.
    Syscall = 5,
    /// A policy decision (deny, would-deny, kill) from the enforcement programs.
    Decision = 6,
}

impl EventKind {
    /// One past the largest kind: the length of the `DROPS` array.
    pub const COUNT: u32 = 7;
    pub const ALL: [EventKind; 6] = [
        EventKind::Exec,
        EventKind::ExecDenied,
        EventKind::Fork,
        EventKind::Exit,
        EventKind::Syscall,
        EventKind::Decision,
    ];

    pub const fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::ExecDenied),
            3 => Some(Self::Fork),
            4 => Some(Self::Exit),
            5 => Some(Self::Syscall),
            6 => Some(Self::Decision),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            EventKind::Exec => "exec",
            EventKind::ExecDenied => "exec_denied",
            EventKind::Fork => "fork",
            EventKind::Exit => "exit",
            EventKind::Syscall => "syscall",
            EventKind::Decision => "decision",
        }
    }
}

/// Struct offsets of the running kernel, read from its BTF by userspace and patched into the
/// object as a load-time constant, because Rust eBPF gets no CO-RE relocations.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `task_struct.real_parent`.
    pub task_real_parent: u32,
    /// `task_struct.tgid`.
    pub task_tgid: u32,
    /// `task_struct.pid`.
    pub task_pid: u32,
    /// `task_struct.loginuid` (`OFFSET_ABSENT` without CONFIG_AUDIT).
    pub task_loginuid: u32,
    /// `task_struct.mm`.
    pub task_mm: u32,
    /// `task_struct.exit_code`.
    pub task_exit_code: u32,
    /// `mm_struct.arg_start` / `arg_end`.
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    /// `trace_event_raw_sched_process_exec.__data_loc_filename`.
    pub tp_exec_filename_loc: u32,
    /// `pt_regs` members holding syscall arguments 0..6 (`di si dx r10 r8 r9` on x86_64).
    pub regs_args: [u32; 6],
    /// `pt_regs.orig_ax`: the syscall number, still there at syscall exit.
    pub regs_orig_ax: u32,
    /// `task_struct.thread_info.status` (`TS_COMPAT` marks a 32-bit syscall); `OFFSET_ABSENT`
    /// where the kernel has no such field.
    pub task_ti_status: u32,
    /// `linux_binprm.file`, `file.f_path`, `file.f_mode`, `file.f_inode`, `inode.i_ino`,
    /// `inode.i_sb`, `super_block.s_dev`: what the policy programs read to decide on the real
    /// object (its path through `bpf_d_path`, its inode for drift prevention).
    pub bprm_file: u32,
    pub file_f_path: u32,
    pub file_f_mode: u32,
    pub file_f_inode: u32,
    pub inode_i_ino: u32,
    pub inode_i_sb: u32,
    pub sb_s_dev: u32,
    /// `task_struct.mm` -> `mm_struct.exe_file`, for the fallback backend.
    pub mm_exe_file: u32,
    /// `trace_event_raw_cgroup.id` / `.__data_loc_path`: the `cgroup/cgroup_mkdir` tracepoint,
    /// where a new container cgroup is bound to its policy before any process enters it.
    pub tp_cgroup_id: u32,
    pub tp_cgroup_path_loc: u32,
    /// `task_struct.nsproxy`, `nsproxy.mnt_ns`, and `mnt_namespace.ns` + `ns_common.inum`:
    /// the current task's mount namespace, for the self-protection programs.
    pub task_nsproxy: u32,
    pub nsproxy_mnt_ns: u32,
    pub mnt_ns_inum: u32,
    // Issue 15 (helper lsm): the file's identity in the write, mapping and exec hooks.
    /// `dentry.d_parent`, `dentry.d_inode`, `dentry.d_name.name`: the ancestor walk.
    pub dentry_d_parent: u32,
    pub dentry_d_inode: u32,
    pub dentry_d_name_name: u32,
    /// `path.dentry`.
    pub path_dentry: u32,
    /// `inode.i_nlink` (0: no name: a memfd, an O_TMPFILE file, a deleted file).
    pub inode_i_nlink: u32,
    /// `vm_area_struct.vm_file`.
    pub vma_vm_file: u32,
    /// `cgroup.kn`, `kernfs_node.parent` (`__parent` on newer kernels), `kernfs_node.id`: the
    /// parent of a new cgroup, for policy inheritance at `cgroup_mkdir`.
    pub cgroup_kn: u32,
    pub kernfs_node_parent: u32,
    pub kernfs_node_id: u32,
    // Issue 17: the opened file's path, from the new descriptor (see `FLAG_KPATH`).
    /// `task_struct.files`, `files_struct.fdt`, `fdtable.fd`, `fdtable.max_fds`.
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    /// `path.mnt`.
    pub path_mnt: u32,
    /// `mount.mnt` (the embedded `vfsmount`), `mount.mnt_parent`, `mount.mnt_mountpoint`.
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    /// `vfsmount.mnt_root`, `vfsmount.mnt_sb`.
    pub vfsmount_mnt_root: u32,
    pub vfsmount_mnt_sb: u32,
    /// `dentry.d_name.len`.
    pub dentry_d_name_len: u32,
    /// The inode's change and modification times: seconds (i64) and nanoseconds (read as u32),
    /// whichever layout the kernel has (`i_ctime` / `__i_ctime` timespec64, or
    /// `i_ctime_sec` + `i_ctime_nsec`); for the executed file's `proc.exe_ino.*`.
    pub inode_ctime_sec: u32,
    pub inode_ctime_nsec: u32,
    pub inode_mtime_sec: u32,
    pub inode_mtime_nsec: u32,
    /// `mm_struct.env_start` / `env_end`: the new image's environment (`proc.env`).
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    /// The start of the task's pid namespace (`proc.exe_ino.ctime_duration_pidns_start`), read
    /// as Falco does: `task_struct.thread_pid` -> `pid.level`, `pid.numbers[level].ns` (at
    /// `pid_numbers_ns` + level * `upid_size`) -> `pid_namespace.child_reaper` ->
    /// `task_struct.start_boottime`. `upid_size` is a struct size, not an offset.
    pub task_thread_pid: u32,
    pub pid_level: u32,
    pub pid_numbers_ns: u32,
    pub upid_size: u32,
    pub pidns_child_reaper: u32,
    pub task_start_boottime: u32,
    /// `dentry.d_shortname` (`d_iname` before Linux 6.14): a short name, inline; and the
    /// bytes it spans.
    pub dentry_d_iname: u32,
    pub dentry_iname_len: u32,
    /// BTF type ids of `struct file`, `mount` and `dentry`, and of the `bpf_rdonly_cast`
    /// kfunc, for `sys_exit_one_typed` (`OFFSET_ABSENT` where the kernel has none: that
    /// program is then refused, and `sys_exit_one` reads through helpers).
    pub btf_file: u32,
    pub btf_mount: u32,
    pub btf_dentry: u32,
    pub kfunc_rdonly_cast: u32,
}

impl KernelOffsets {
    /// All absent: programs that see this emit what they can without reading kernel structs.
    pub const UNSET: Self = Self {
        task_real_parent: OFFSET_ABSENT,
        task_tgid: OFFSET_ABSENT,
        task_pid: OFFSET_ABSENT,
        task_loginuid: OFFSET_ABSENT,
        task_mm: OFFSET_ABSENT,
        task_exit_code: OFFSET_ABSENT,
        mm_arg_start: OFFSET_ABSENT,
        mm_arg_end: OFFSET_ABSENT,
        tp_exec_filename_loc: OFFSET_ABSENT,
        regs_args: [OFFSET_ABSENT; 6],
        regs_orig_ax: OFFSET_ABSENT,
        task_ti_status: OFFSET_ABSENT,
        bprm_file: OFFSET_ABSENT,
        file_f_path: OFFSET_ABSENT,
        file_f_mode: OFFSET_ABSENT,
        file_f_inode: OFFSET_ABSENT,
        inode_i_ino: OFFSET_ABSENT,
        inode_i_sb: OFFSET_ABSENT,
        sb_s_dev: OFFSET_ABSENT,
        mm_exe_file: OFFSET_ABSENT,
        tp_cgroup_id: OFFSET_ABSENT,
        tp_cgroup_path_loc: OFFSET_ABSENT,
        task_nsproxy: OFFSET_ABSENT,
        nsproxy_mnt_ns: OFFSET_ABSENT,
        mnt_ns_inum: OFFSET_ABSENT,
        dentry_d_parent: OFFSET_ABSENT,
        dentry_d_inode: OFFSET_ABSENT,
        dentry_d_name_name: OFFSET_ABSENT,
        path_dentry: OFFSET_ABSENT,
        inode_i_nlink: OFFSET_ABSENT,
        vma_vm_file: OFFSET_ABSENT,
        cgroup_kn: OFFSET_ABSENT,
        kernfs_node_parent: OFFSET_ABSENT,
        kernfs_node_id: OFFSET_ABSENT,
        task_files: OFFSET_ABSENT,
        files_fdt: OFFSET_ABSENT,
        fdtable_fd: OFFSET_ABSENT,
        fdtable_max_fds: OFFSET_ABSENT,
        path_mnt: OFFSET_ABSENT,
        mount_mnt: OFFSET_ABSENT,
        mount_mnt_parent: OFFSET_ABSENT,
        mount_mnt_mountpoint: OFFSET_ABSENT,
        vfsmount_mnt_root: OFFSET_ABSENT,
        vfsmount_mnt_sb: OFFSET_ABSENT,
        dentry_d_name_len: OFFSET_ABSENT,
        inode_ctime_sec: OFFSET_ABSENT,
        inode_ctime_nsec: OFFSET_ABSENT,
        inode_mtime_sec: OFFSET_ABSENT,
        inode_mtime_nsec: OFFSET_ABSENT,
        mm_env_start: OFFSET_ABSENT,
        mm_env_end: OFFSET_ABSENT,
        task_thread_pid: OFFSET_ABSENT,
        pid_level: OFFSET_ABSENT,
        pid_numbers_ns: OFFSET_ABSENT,
        upid_size: OFFSET_ABSENT,
        pidns_child_reaper: OFFSET_ABSENT,
        task_start_boottime: OFFSET_ABSENT,
        dentry_d_iname: OFFSET_ABSENT,
        dentry_iname_len: OFFSET_ABSENT,
        btf_file: OFFSET_ABSENT,
        btf_mount: OFFSET_ABSENT,
        btf_dentry: OFFSET_ABSENT,
        kfunc_rdonly_cast: OFFSET_ABSENT,
    };
}

/// Fields every record starts with.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An `EventKind`.
    pub kind: u16,
    /// `FLAG_*` bits.
    pub flags: u16,
    /// CPU the record was produced on.
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns()`: CLOCK_BOOTTIME, converted to wall time by userspace.
    pub boot_ns: u64,
    /// cgroup v2 id of the task (the inode of its cgroup directory).
    pub cgroup_id: u64,
    /// Thread-group id (what userspace calls the PID).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// Thread-group id of `real_parent`, 0 when unknown.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Audit login uid; `u32::MAX` when unset or unknown.
    pub loginuid: u32,
    /// Return value of the operation (0 when the event has none).
    pub ret: i64,
    pub comm: [u8; COMM_LEN],
    /// Bytes of the first and second payload that follow the body.
    pub len0: u16,
    pub len1: u16,
    /// Bytes of the body that follows this header.
    pub body_len: u32,
}

/// Payload 0 did not fit and was cut.
pub const FLAG_TRUNCATED0: u16 = 1;
/// Payload 1 did not fit and was cut.
pub const FLAG_TRUNCATED1: u16 = 2;
/// Payload 0 could not be read (bad user pointer, page not present).
pub const FLAG_FAULT0: u16 = 4;
/// Payload 1 could not be read.
pub const FLAG_FAULT1: u16 = 8;
/// Open family, successful open: payload 1 ends with the path of the opened file, resolved in
/// the kernel from the new descriptor (after openat2's 24-byte `open_how`), complete.
pub const FLAG_KPATH: u16 = 16;
/// Open family, successful open: the kernel walk was tried and gave no complete path (a bound
/// was hit, a read failed, or this kernel lacks an offset); userspace falls back to the path as
/// written.
pub const FLAG_KPATH_CUT: u16 = 32;
/// Components plus mount crossings the kernel path walk takes before it gives up (`FLAG_KPATH_CUT`).
pub const KPATH_MAX_STEPS: u32 = 48;
/// Mounts the walk climbs to find the top of the file's mount tree.
pub const KPATH_MAX_MOUNTS: u32 = 16;
/// Longest kernel-resolved path (bytes, without NUL); longer ones are cut.
pub const KPATH_MAX_BYTES: usize = PAYLOAD_MAX - 1 - syscalls::OPEN_HOW_LEN as usize;

/// `Exec` body. Payload 0: the filename the kernel executed (as passed to the binfmt handler).
/// Payload 1: argv, NUL-separated, from the new image's `mm->arg_start..arg_end`. Then, after
/// payload 1, `env_len` bytes of the environment (`NAME=value`, NUL-separated, from
/// `mm->env_start..env_end`, at most `PAYLOAD_MAX`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecBody {
    /// Bytes of argv in memory (payload 1 may hold fewer).
    pub args_total: u32,
    /// `exec_flags::*`.
    pub flags: u32,
    /// The executed file (`mm->exe_file`): inode number, and change and modification times
    /// (seconds, nanoseconds); valid with `exec_flags::EXE_INODE`.
    pub exe_ino: u64,
    pub exe_ctime_sec: i64,
    pub exe_mtime_sec: i64,
    pub exe_ctime_nsec: u32,
    pub exe_mtime_nsec: u32,
    /// Bytes of the environment in memory, and bytes of it after payload 1.
    pub env_total: u32,
    pub env_len: u32,
    /// When the task's pid namespace started, boot-clock ns (as `EventHeader::boot_ns`): its
    /// init's `start_boottime`, or 0 (boot) for the initial namespace, as Falco; valid with
    /// `exec_flags::PIDNS_START`.
    pub pidns_start_boot_ns: u64,
}

/// Bits of `ExecBody::flags`.
pub mod exec_flags {
    /// The executed file's inode and times were read.
    pub const EXE_INODE: u32 = 1;
    /// The environment could not be read (`env_len` is 0).
    pub const ENV_FAULT: u32 = 2;
    /// `pidns_start_boot_ns` was read.
    pub const PIDNS_START: u32 = 4;
}

/// Deepest pid namespace level (`MAX_PID_NS_LEVEL`, include/linux/pid_namespace.h).
pub const MAX_PID_NS_LEVEL: u32 = 32;

/// `ExecDenied` body (no payloads).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExecDeniedBody {
    /// Value from `EXEC_DENY_CGROUPS` that matched: the policy id.
    pub policy_id: u32,
    pub _pad: u32,
}

/// `Fork` body; the header describes the parent (the task calling fork/clone).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ForkBody {
    /// Thread-group id of the child; equal to the parent's pid for a new thread.
    pub child_pid: u32,
    /// Thread id of the child.
    pub child_tid: u32,
}

/// `Exit` body; the header describes the exiting thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ExitBody {
    /// `task_struct.exit_code` (wait status encoding).
    pub exit_code: i32,
    pub _pad: u32,
}

/// `Syscall` body: the raw arguments; the payloads are the user memory `syscalls::spec` names.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallBody {
    /// Syscall number (x86_64).
    pub nr: u32,
    pub _pad: u32,
    pub args: [u64; 6],
}

/// A traced syscall's number and arguments, read at its exit.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallArgs {
    pub nr: u32,
    pub _pad: u32,
    pub args: [u64; 6],
}

/// Capacity of the `QUARANTINE` map (cgroups whose network is cut).
pub const MAX_QUARANTINED_CGROUPS: u32 = 4096;
/// Ancestor levels of a socket's cgroup that the quarantine programs also check, so that a
/// quarantined container cannot escape into a child cgroup it creates.
pub const QUARANTINE_ANCESTOR_LEVELS: u32 = 8;

/// Value of the `QUARANTINE` map, keyed by cgroup v2 id: packets of sockets in that cgroup (or
/// below it) are dropped on ingress and egress while the entry is in force.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuarantineEntry {
    /// `CLOCK_BOOTTIME` ns after which the entry no longer applies; 0 = until lifted.
    pub until_boot_ns: u64,
}

/// Policies one policy set can hold. Policy ids come in two generations, 1..=MAX_POLICIES
/// and MAX_POLICIES+1..=2*MAX_POLICIES: a reload installs the new set under the other
/// generation's ids while the old one stays in force (docs/policies.md, "Reload").
pub const MAX_POLICIES: u32 = 1024;
/// Path rules (exec and open) over all policies of one set.
pub const MAX_PATH_RULES: u32 = 16_384;
/// Network rules over all policies of one set.
pub const MAX_NET_RULES: u32 = 16_384;
/// Kernel map capacity for path and network rules: two sets (old and new) during a reload.
pub const MAX_PATH_ENTRIES: u32 = 2 * MAX_PATH_RULES;
pub const MAX_NET_ENTRIES: u32 = 2 * MAX_NET_RULES;
/// Inodes written inside workloads with `deny_new_binaries` (LRU beyond that: see docs).
pub const MAX_NEW_FILES: u32 = 65_536;
/// `POLICY_INODES` capacity: path rules resolved in each bound workload's root (one entry per
/// rule and distinct file; containers on overlayfs each have their own device).
pub const MAX_INODE_RULES: u32 = 65_536;
/// Bytes of a path a path rule can hold; the LPM trie limits a key's data to 256 bytes.
pub const PATH_KEY_BYTES: usize = 251;

/// `POLICY_CGROUPS` value: which policy applies to a cgroup, and what it enforces.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CgroupPolicy {
    pub policy_id: u32,
    /// `policy_flags::*`.
    pub flags: u32,
}

/// A task the `sched_process_exec` backstop stopped for the fanotify listener (`HOLDS` ring).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct HoldRecord {
    pub cgroup_id: u64,
    pub pid: u32,
    pub _pad: u32,
}

/// Bytes of the `HOLDS` ring: 512 records; a full ring holds nothing (the task runs).
pub const HOLD_RING_BYTES: u32 = 16 * 1024;

/// A task held and not resumed yet (`HELD` map, keyed by pid).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeldTask {
    pub cgroup_id: u64,
    /// CLOCK_BOOTTIME ns of the hold: the task started before it (a reused pid did not).
    pub held_at_boot_ns: u64,
}

/// Capacity of the `HELD` map (LRU: beyond it the oldest entry is forgotten, not the hold).
pub const MAX_HELD_TASKS: u32 = 1024;

/// Bits of `CgroupPolicy::flags`.
pub mod policy_flags {
    /// Deny (enforce mode); without it every decision is a would-deny (detect mode).
    pub const ENFORCE: u32 = 1;
    /// `exec.deny` entries exist.
    pub const EXEC_DENY: u32 = 2;
    /// `exec.allow` is given: exec of anything not listed is denied.
    pub const EXEC_ALLOW: u32 = 4;
    /// `exec.deny_new_binaries`: files written in the workload cannot be executed.
    pub const DENY_NEW_BINARIES: u32 = 8;
    /// `open.deny_read` / `open.deny_write` entries exist.
    pub const OPEN_RULES: u32 = 16;
    /// `connect.deny` entries exist.
    pub const CONNECT_DENY: u32 = 32;
    /// `connect.allow` is given: connects to anything not listed are denied.
    pub const CONNECT_ALLOW: u32 = 64;
}

/// Kinds of path rule in `POLICY_PATHS` (byte 4 of the key data).
pub mod path_kind {
    pub const EXEC: u8 = 1;
    pub const OPEN: u8 = 2;
}

/// Bits of a `POLICY_PATHS` value.
pub mod path_bits {
    /// Exec rule matched (a deny entry, or an allow entry, by the policy's flags).
    pub const EXEC_MATCH: u32 = 1;
    /// Open for read is denied.
    pub const DENY_READ: u32 = 2;
    /// Open for write is denied.
    pub const DENY_WRITE: u32 = 4;
    /// `POLICY_INODES` only: the inode is a directory, and the entry's other bits cover its
    /// whole subtree (a `DIR/**` rule).
    pub const SUBTREE: u32 = 8;
}

/// Data of a `POLICY_PATHS` LPM key: policy, kind, then the path bytes. An exact path is stored
/// with its NUL (so it matches only itself), a `DIR/**` rule as `DIR/` (everything below).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PathKeyData {
    pub policy_id: u32,
    pub kind: u8,
    pub path: [u8; PATH_KEY_BYTES],
}

/// Data of a `POLICY_NETS` LPM key: policy, port (0 = any), family (4 or 6), then the address;
/// an IPv4 address takes the first 4 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct NetKeyData {
    pub policy_id: u32,
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
    pub addr: [u8; 16],
}

/// Bits of a `POLICY_NETS` value.
pub mod net_bits {
    pub const DENY: u32 = 1;
    pub const ALLOW: u32 = 2;
}

/// Key bits before the address in a `NetKeyData` (policy, port, family, pad).
pub const NET_KEY_FIXED_BITS: u32 = 64;
/// Key bits before the path in a `PathKeyData` (policy, kind).
pub const PATH_KEY_FIXED_BITS: u32 = 40;

/// `NEW_FILES` key: an inode written inside a drift-protected workload.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

/// `POLICY_INODES` key: a file or directory a policy's path rule names, by identity (`dev` in
/// the kernel's encoding, as `InodeKey`), so the rule holds under any name or root.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InodeRuleKey {
    pub policy_id: u32,
    pub _pad: u32,
    pub dev: u64,
    pub ino: u64,
}

/// Operation of a `Decision` record.
pub mod decision_op {
    pub const EXEC: u8 = 1;
    pub const OPEN: u8 = 2;
    pub const CONNECT: u8 = 3;
    /// Self-protection: a signal to the agent (`DecisionBody::access` = the signal,
    /// `ino` = the target thread-group id).
    pub const SIGNAL: u8 = 4;
    /// Self-protection: ptrace-class access to the agent (`access` = the `PTRACE_MODE_*` bits,
    /// `ino` = the target thread-group id).
    pub const PTRACE: u8 = 5;
    /// Self-protection: read or write permission on a protected inode (`access` = the
    /// `MAY_*` mask, `dev`/`ino` = the inode, `addr[0]` = its `protected_class`).
    pub const PROTECTED_FILE: u8 = 6;
    /// Self-protection: a file descriptor for one of guard's BPF objects by id (`access` = the
    /// `bpf` command, `ino` = `bpf_id_key`).
    pub const BPF_OBJECT: u8 = 7;
    // sockaddr block (values apart from the LSM helper's).
    /// sendmsg(2)/sendto(2) with a destination on an unconnected UDP socket.
    pub const SENDMSG: u8 = 32;
    /// Issue 15: a modification other than an open for write (truncate, create, link, rename,
    /// unlink, mkdir, rmdir, symlink, mknod, chmod, chown, xattr); the hook says which.
    /// `dev`/`ino`: the file (or, for a creation, its directory); payload 0: the name.
    pub const WRITE: u8 = 20;
}

/// Verdict of a `Decision` record.
pub mod verdict {
    /// Enforce mode, BPF LSM: the operation failed with EPERM.
    pub const DENY: u8 = 1;
    /// Detect mode: enforce mode would have denied it; it was allowed.
    pub const WOULD_DENY: u8 = 2;
    /// Enforce mode, fallback backend: the process was sent SIGKILL.
    pub const KILL: u8 = 3;
    /// Enforce mode, fallback backend: SIGKILL could not be sent; `DecisionBody::access`
    /// holds the helper's error as a positive errno.
    pub const KILL_FAILED: u8 = 4;
}

/// The program (LSM hook or tracepoint) that took a `Decision`.
pub mod hook {
    /// BPF LSM `bprm_check_security` (exec policy, drift prevention).
    pub const BPRM_CHECK_SECURITY: u8 = 1;
    /// BPF LSM `file_open` (open policy).
    pub const FILE_OPEN: u8 = 2;
    /// BPF LSM `socket_connect` (connect policy of earlier versions; the sock_addr programs
    /// below decide now). Kept so older records still decode.
    pub const SOCKET_CONNECT: u8 = 3;
    /// Tracepoint `sched/sched_process_exec`: the fallback backend's SIGKILL.
    pub const SCHED_PROCESS_EXEC: u8 = 4;
    /// BPF LSM `task_kill` (self-protection).
    pub const TASK_KILL: u8 = 5;
    /// BPF LSM `ptrace_access_check` (self-protection).
    pub const PTRACE_ACCESS_CHECK: u8 = 6;
    /// BPF LSM `inode_permission` (self-protection).
    pub const INODE_PERMISSION: u8 = 7;
    /// BPF LSM `bpf` (self-protection).
    pub const BPF: u8 = 8;
    /// Tracepoints `syscalls/sys_exit_open*`: a detect-mode open decision without BPF LSM
    /// (`fanotify` backend), after the open.
    pub const OPEN_EXIT: u8 = 9;
    // cgroup sock_addr programs at the cgroup v2 root.
    /// `cgroup/connect4`: IPv4 connect, UDP connect and TCP Fast Open.
    pub const CGROUP_CONNECT4: u8 = 40;
    /// `cgroup/connect6`: the same for IPv6 sockets (IPv4-mapped destinations included).
    pub const CGROUP_CONNECT6: u8 = 41;
    /// `cgroup/sendmsg4`: a UDP datagram to an IPv4 destination without connect.
    pub const CGROUP_SENDMSG4: u8 = 42;
    /// `cgroup/sendmsg6`: the same for IPv6.
    pub const CGROUP_SENDMSG6: u8 = 43;
    // Issue 15 (helper lsm): every way to modify a file, and executable mappings.
    pub const PATH_TRUNCATE: u8 = 20;
    pub const FILE_TRUNCATE: u8 = 21;
    pub const INODE_CREATE: u8 = 22;
    pub const INODE_MKNOD: u8 = 23;
    pub const INODE_LINK: u8 = 24;
    pub const INODE_UNLINK: u8 = 25;
    pub const INODE_SYMLINK: u8 = 26;
    pub const INODE_MKDIR: u8 = 27;
    pub const INODE_RMDIR: u8 = 28;
    pub const INODE_RENAME: u8 = 29;
    pub const PATH_CHMOD: u8 = 30;
    pub const PATH_CHOWN: u8 = 31;
    pub const INODE_SETXATTR: u8 = 32;
    pub const INODE_REMOVEXATTR: u8 = 33;
    pub const MMAP_FILE: u8 = 34;
    pub const FILE_MPROTECT: u8 = 35;
}

/// Why a `Decision` was taken.
pub mod reason {
    /// The target matched a deny entry.
    pub const DENY_LIST: u8 = 1;
    /// An allow list is set and the target is not in it.
    pub const NOT_ALLOWED: u8 = 2;
    /// `deny_new_binaries`: the file was written inside the workload after it started.
    pub const NEW_BINARY: u8 = 3;
    /// Self-protection: a task in a container reached for the agent or its state.
    pub const SELF_PROTECT: u8 = 4;
}

/// `Decision` body. Payload 0: the path (exec, open) as `bpf_d_path` resolved it (or, for the
/// fallback backend, the filename given to execve).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DecisionBody {
    pub policy_id: u32,
    /// `decision_op::*`.
    pub op: u8,
    /// `verdict::*`.
    pub verdict: u8,
    /// `reason::*`.
    pub reason: u8,
    /// 4 or 6 for connect and sendmsg, 0 otherwise.
    pub family: u8,
    /// `file.f_mode` for open (FMODE_READ = 1, FMODE_WRITE = 2); for `verdict::KILL_FAILED`,
    /// the errno of the failed signal.
    pub access: u32,
    /// Destination port for connect and sendmsg.
    pub port: u16,
    /// `hook::*`: the program that decided.
    pub hook: u8,
    pub _pad: u8,
    /// Destination address for connect and sendmsg (IPv4 in the first 4 bytes), as the kernel
    /// will reach it: an unspecified address is reported as the loopback address it reaches.
    pub addr: [u8; 16],
    /// Inode of the file (exec, open), for drift records.
    pub dev: u64,
    pub ino: u64,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: one u64, valid for any bit pattern.
    unsafe impl aya::Pod for super::QuarantineEntry {}
    // SAFETY: plain `#[repr(C)]` integers without padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::CgroupPolicy {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::HeldTask {}
    // SAFETY: as above (251 + 5 bytes, alignment 4: 256 bytes, no padding).
    unsafe impl aya::Pod for super::PathKeyData {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::NetKeyData {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::InodeKey {}
    // SAFETY: repr(C), explicit padding, plain integers.
    unsafe impl aya::Pod for super::InodeRuleKey {}
    // SAFETY: plain `#[repr(C)]` integers and arrays without padding, valid for any bit pattern.
    unsafe impl aya::Pod for super::KernelOffsets {}
    // SAFETY: plain `#[repr(C)]` integers without padding (4 + 4 + 3 * 8 bytes).
    unsafe impl aya::Pod for super::SelfProtectConfig {}
}

#[cfg(test)]
mod tests {
    use super::syscalls::{TRACED, spec};

    #[test]
    fn spec_and_table_agree() {
        for s in TRACED {
            assert_eq!(spec(s.nr), Some(s.payloads), "{}", s.name);
        }
        // getpid: not traced.
        assert_eq!(spec(39), None);
        assert!(TRACED.iter().all(|s| s.nr != 39));
    }

    #[test]
    fn header_has_no_padding() {
        assert_eq!(core::mem::size_of::<super::EventHeader>(), 80);
    }

    #[test]
    fn policy_keys_fit_the_lpm_limit() {
        // The kernel's LPM trie takes at most 256 bytes of key data.
        assert_eq!(core::mem::size_of::<super::PathKeyData>(), 256);
        assert_eq!(core::mem::size_of::<super::NetKeyData>(), 24);
        assert_eq!(core::mem::size_of::<super::SelfProtectConfig>(), 32);
    }

    #[test]
    fn decision_body_layout_is_explicit() {
        use super::DecisionBody as D;
        use core::mem::{offset_of, size_of};
        // Every byte is a named field (no implicit padding): the record is copied as bytes.
        assert_eq!(size_of::<D>(), 48);
        assert_eq!(offset_of!(D, policy_id), 0);
        assert_eq!(offset_of!(D, op), 4);
        assert_eq!(offset_of!(D, verdict), 5);
        assert_eq!(offset_of!(D, reason), 6);
        assert_eq!(offset_of!(D, family), 7);
        assert_eq!(offset_of!(D, access), 8);
        assert_eq!(offset_of!(D, port), 12);
        assert_eq!(offset_of!(D, hook), 14);
        assert_eq!(offset_of!(D, _pad), 15);
        assert_eq!(offset_of!(D, addr), 16);
        assert_eq!(offset_of!(D, dev), 32);
        assert_eq!(offset_of!(D, ino), 40);
    }

    #[test]
    fn bpf_id_keys_keep_kinds_apart() {
        use super::{bpf_id_key, bpf_obj_kind};
        assert_ne!(
            bpf_id_key(bpf_obj_kind::MAP, 7),
            bpf_id_key(bpf_obj_kind::PROG, 7)
        );
        assert_eq!(bpf_id_key(bpf_obj_kind::LINK, u32::MAX) >> 32, 3);
        assert_eq!(bpf_id_key(bpf_obj_kind::LINK, u32::MAX) as u32, u32::MAX);
    }
}

/// Indices into the `SETTINGS` array map.
pub mod settings {
    /// The agent's own thread-group id: its syscalls are not traced.
    pub const AGENT_TGID: u32 = 0;
    /// When non-zero, only tasks in this cgroup (v2 id) are traced.
    pub const ONLY_CGROUP: u32 = 1;
    /// Bytes waiting in `EVENTS` above which a record wakes the agent; below, records are
    /// added without a wakeup and the agent reads them on its next tick (bounded delay).
    /// 0 = wake on every record.
    pub const WAKEUP_BYTES: u32 = 2;
    /// When non-zero (the `fanotify` backend), the `sched_process_exec` backstop also matches
    /// the executed file's identity (`POLICY_INODES`), as the permission answer does.
    pub const EXEC_BY_INODE: u32 = 3;
    /// The `fanotify` backend: until this `bpf_ktime_get_ns` time (the agent renews it every
    /// second), an exec in a container cgroup whose files are not yet marked (`FAN_READY`)
    /// stops the task (SIGSTOP) for the agent to mark and resume. 0 or past: no hold (no
    /// agent to resume it).
    pub const HOLD_UNTIL: u32 = 4;
    pub const COUNT: u32 = 5;
}
