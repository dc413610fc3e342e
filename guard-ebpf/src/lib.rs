//! Every layout shared between guard's eBPF programs and its userspace agent.
//!
//! This is the one definition of each ring-buffer record, map key and map value and of the
//! load-time constants. The eBPF programs (`src/main.rs`) and the agent (`guard`) both use it,
//! so a layout change is a compile-time change on both sides.
#![no_std]

/// Length of `task_struct.comm`.
pub const COMM_LEN: usize = 16;
/// Bytes of an exec's resolved filename carried in a record (longer names are truncated and flagged).
pub const EXEC_FILENAME_LEN: usize = 512;
/// Ring-buffer size used when the configuration does not set one (bytes, power of two).
pub const DEFAULT_RING_BYTES: u32 = 1 << 22;
/// Capacity of the per-cgroup exec deny map.
pub const MAX_POLICY_CGROUPS: u32 = 16_384;
/// Offset value meaning "this kernel has no such field".
pub const OFFSET_ABSENT: u32 = u32::MAX;

/// Names of the maps and programs, as userspace looks them up in the object.
pub mod names {
    pub const EVENTS: &str = "EVENTS";
    pub const DROPS: &str = "DROPS";
    pub const EXEC_DENY_CGROUPS: &str = "EXEC_DENY_CGROUPS";
    pub const KERNEL_OFFSETS: &str = "KERNEL_OFFSETS";
    pub const PROG_SCHED_PROCESS_EXEC: &str = "sched_process_exec";
    pub const PROG_BPRM_CHECK: &str = "bprm_check_security";
}

/// Kind of a ring-buffer record; also the index into the `DROPS` per-CPU array.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Exec = 1,
    ExecDenied = 2,
}

impl EventKind {
    /// One past the largest kind: the length of the `DROPS` array.
    pub const COUNT: u32 = 3;

    pub const fn from_u16(v: u16) -> Option<Self> {
        match v {
            1 => Some(Self::Exec),
            2 => Some(Self::ExecDenied),
            _ => None,
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
    /// `task_struct.loginuid` (`OFFSET_ABSENT` without CONFIG_AUDIT).
    pub task_loginuid: u32,
    /// `trace_event_raw_sched_process_exec.__data_loc_filename`.
    pub tp_exec_filename_loc: u32,
}

impl KernelOffsets {
    /// All absent: programs that see this emit what they can without reading kernel structs.
    pub const UNSET: Self = Self {
        task_real_parent: OFFSET_ABSENT,
        task_tgid: OFFSET_ABSENT,
        task_loginuid: OFFSET_ABSENT,
        tp_exec_filename_loc: OFFSET_ABSENT,
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
}

/// The filename did not fit and was cut.
pub const FLAG_TRUNCATED: u16 = 1;

/// A process completed `execve` (from `sched_process_exec`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecRecord {
    pub header: EventHeader,
    /// Bytes of `filename` used, without the NUL.
    pub filename_len: u32,
    pub _pad: u32,
    /// Resolved filename as the kernel passed it to the binfmt handler.
    pub filename: [u8; EXEC_FILENAME_LEN],
}

/// An exec the LSM program denied (or would have denied).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecDeniedRecord {
    pub header: EventHeader,
    /// Value from `EXEC_DENY_CGROUPS` that matched: the policy id.
    pub policy_id: u32,
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain `#[repr(C)]` integers and arrays, valid for any bit pattern.
    unsafe impl aya::Pod for super::KernelOffsets {}
}
