//! What every family shares: the load-time kernel offsets, record assembly in the per-CPU
//! scratch area and its copy to a ring buffer (with drop counting), the policy maps several
//! families read, path-key filling, inode reads and decision record emission.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, path as kernel_path},
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid,
        bpf_get_current_task, bpf_get_current_uid_gid, bpf_get_smp_processor_id,
        bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
        generated::{
            bpf_d_path, bpf_probe_read_kernel as raw_probe_read_kernel, bpf_probe_read_kernel_str,
            bpf_probe_read_user, bpf_probe_read_user_str,
        },
    },
    macros::map,
    maps::{
        Array, HashMap, PerCpuArray, RingBuf,
        lpm_trie::{Key as LpmKey, LpmTrie},
    },
};
use guard_ebpf::{
    CgroupPolicy, DECISION_RING_BYTES, DEFAULT_RING_BYTES, DROP_SLOTS, DecisionBody, EventHeader,
    EventKind, FLAG_FAULT0, FLAG_FAULT1, FLAG_TRUNCATED0, FLAG_TRUNCATED1, InodeKey, InodeRuleKey,
    KernelOffsets, MAX_INODE_RULES, MAX_PATH_ENTRIES, MAX_POLICY_CGROUPS, OFFSET_ABSENT,
    PATH_KEY_BYTES, PATH_KEY_FIXED_BITS, PAYLOAD_MAX, PathKeyData, SCRATCH_LEN, settings,
};

pub const EPERM: i32 = 1;
pub const AF_INET: u16 = 2;
pub const AF_INET6: u16 = 10;
const HDR: usize = size_of::<EventHeader>();
/// Masks that keep variable offsets provably inside the scratch area for the verifier.
const PAYLOAD_MASK: usize = 2 * PAYLOAD_MAX - 1;
const SCRATCH_MASK: usize = SCRATCH_LEN - 1;

/// Patched by userspace at load time from the running kernel's BTF.
#[unsafe(no_mangle)]
pub static KERNEL_OFFSETS: KernelOffsets = KernelOffsets::UNSET;

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

#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: reading our own static; volatile so the compiler does not fold the default value.
    unsafe { core::ptr::read_volatile(&KERNEL_OFFSETS) }
}

#[inline(always)]
pub fn setting(idx: u32) -> u64 {
    SETTINGS.get(idx).copied().unwrap_or(0)
}

/// Whether the current task is traced: never the agent itself (its activity would feed back
/// into itself), and only the selected cgroup when one is set.
#[inline(always)]
pub fn traced(tgid: u32) -> bool {
    let agent = setting(settings::AGENT_TGID);
    if agent != 0 && agent == tgid as u64 {
        return false;
    }
    let only = setting(settings::ONLY_CGROUP);
    // SAFETY: helper with no preconditions.
    only == 0 || only == unsafe { bpf_get_current_cgroup_id() }
}

#[inline(always)]
pub fn count_drop(kind: EventKind) {
    count_drop_slot(kind as u32)
}

#[inline(always)]
pub fn count_drop_slot(idx: u32) {
    if let Some(slot) = DROPS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *slot += 1 };
    }
}

/// Reads a field at `off` bytes into the kernel object at `base`.
#[inline(always)]
pub unsafe fn read_field<T>(base: *const u8, off: u32) -> Option<T> {
    if off == OFFSET_ABSENT || base.is_null() {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel tolerates bad addresses and returns an error.
    unsafe { bpf_probe_read_kernel(base.add(off as usize) as *const T).ok() }
}

/// A record being assembled in this CPU's scratch area.
pub struct Record {
    base: *mut u8,
    body_len: usize,
    kind: EventKind,
    /// Bytes after payload 1 (`tail_payload`; exec's environment).
    tail: usize,
}

impl Record {
    /// Starts a record of `kind` with a `body_len`-byte body, filling the header from `current`.
    #[inline(always)]
    pub fn begin(kind: EventKind, body_len: usize, off: &KernelOffsets) -> Option<Record> {
        let mut rec = Record::begin_bare(kind, body_len)?;
        rec.fill_current(off);
        Some(rec)
    }

    /// Starts a record whose header says only its kind and lengths: a record the prefilter may
    /// still drop gets `fill_current` just before `submit`, so a dropped one costs no helpers.
    #[inline(always)]
    pub fn begin_bare(kind: EventKind, body_len: usize) -> Option<Record> {
        let Some(base) = SCRATCH.get_ptr_mut(0) else {
            count_drop(kind);
            return None;
        };
        let base = base as *mut u8;
        // SAFETY: the scratch area is SCRATCH_LEN bytes; the header fits at its start.
        let h = unsafe { &mut *(base as *mut EventHeader) };
        h.kind = kind as u16;
        h.flags = 0;
        h.ret = 0;
        h.len0 = 0;
        h.len1 = 0;
        h.body_len = body_len as u32;
        Some(Record {
            base,
            body_len,
            kind,
            tail: 0,
        })
    }

    /// The header's fields about the current task: time, CPU, cgroup, ids, comm, parent.
    #[inline(always)]
    pub fn fill_current(&mut self, off: &KernelOffsets) {
        let h = self.header();
        let pid_tgid = bpf_get_current_pid_tgid();
        let uid_gid = bpf_get_current_uid_gid();
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
        h.comm = bpf_get_current_comm().unwrap_or([0; 16]);
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
    }

    #[inline(always)]
    pub fn header(&mut self) -> &mut EventHeader {
        // SAFETY: begin() placed the header at the start of the scratch area.
        unsafe { &mut *(self.base as *mut EventHeader) }
    }

    /// The body, which starts right after the header.
    #[inline(always)]
    pub fn body<T>(&mut self) -> &mut T {
        // SAFETY: every body is far smaller than the scratch area; the offset is constant.
        unsafe { &mut *(self.base.add(HDR) as *mut T) }
    }

    /// Where payload `slot` goes: right after the body, or after payload 0.
    #[inline(always)]
    pub fn payload_dst(&mut self, slot: usize) -> *mut u8 {
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
    pub fn set_len(&mut self, slot: usize, len: usize, truncated: bool, fault: bool) {
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
    pub fn str_payload(&mut self, slot: usize, src: *const u8, user: bool) {
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
    pub fn bytes_payload(&mut self, slot: usize, src: *const u8, len: u64) {
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

    /// Copies up to `len` (at most PAYLOAD_MAX) bytes of user memory after payload 1, the
    /// record's tail (its length is the caller's to put in the body). Returns the bytes
    /// copied, None when the memory could not be read.
    #[inline(always)]
    pub fn tail_payload(&mut self, src: *const u8, len: u64) -> Option<usize> {
        let h = self.header();
        let l0 = (h.len0 as usize).min(PAYLOAD_MAX);
        let l1 = (h.len1 as usize).min(PAYLOAD_MAX);
        let n = (len as usize).min(PAYLOAD_MAX) & PAYLOAD_MASK;
        if n == 0 || src.is_null() {
            return if src.is_null() { None } else { Some(0) };
        }
        let off = (HDR + self.body_len + l0 + l1) & SCRATCH_MASK;
        // SAFETY: off <= HDR + body + 2 * PAYLOAD_MAX and n <= PAYLOAD_MAX: within SCRATCH_LEN.
        let r =
            unsafe { bpf_probe_read_user(self.base.add(off) as *mut _, n as u32, src as *const _) };
        if r < 0 {
            return None;
        }
        self.tail = n;
        Some(n)
    }

    /// Copies the record to the ring buffer; counts a drop when it is full.
    #[inline(always)]
    pub fn submit(mut self) {
        let body_len = self.body_len;
        let h = self.header();
        let total =
            HDR + body_len + (h.len0 as usize & PAYLOAD_MASK) + (h.len1 as usize & PAYLOAD_MASK);
        let total = (total + (self.tail & PAYLOAD_MASK)) & SCRATCH_MASK;
        if total < HDR {
            count_drop(self.kind);
            return;
        }
        // SAFETY: total <= SCRATCH_LEN - 1, within the per-CPU scratch value.
        let bytes = unsafe { core::slice::from_raw_parts(self.base as *const u8, total) };
        let (ring, flags) = match self.kind {
            // Decisions wake the agent at once: enforcement records are never delayed.
            EventKind::Decision | EventKind::ExecDenied => (&DECISIONS, 0),
            _ => (&EVENTS, events_wakeup()),
        };
        if ring.output::<[u8]>(bytes, flags).is_err() {
            count_drop(self.kind);
        }
    }
}

/// Wakeup flag for an `EVENTS` record: the kernel's default below `settings::WAKEUP_BYTES`
/// waiting (a wakeup only when the agent has read all before this record: the first of a
/// batch, which the agent drains a tick later), a forced one above it. A busy host wakes the
/// agent about once per batch, an idle one never.
#[inline(always)]
fn events_wakeup() -> u64 {
    let threshold = setting(settings::WAKEUP_BYTES);
    if threshold != 0 && EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        0
    }
}

/// One field of the load-time offsets. Read on its own (not as a struct copy) so the verifier
/// sees a constant from the frozen read-only map, as direct BTF pointer loads require.
macro_rules! koff {
    ($field:ident) => {{
        // SAFETY: reading our own static; volatile so the default is not folded in.
        #[allow(unused_unsafe)]
        let v = unsafe {
            core::ptr::read_volatile(core::ptr::addr_of!(
                $crate::programs::shared::KERNEL_OFFSETS.$field
            ))
        };
        v
    }};
}
pub(crate) use koff;

// The policy maps below are pinned by userspace (`guard/src/probes.rs`, `map_pin_path`) when
// policies are enforced, so that enforcement outlives the agent and a restarted agent adopts
// them. Maps are filled by `guard/src/policy/kernel.rs`.

/// cgroup id -> the policy that applies there (bound by the agent, or at `cgroup_mkdir`).
#[map]
pub static POLICY_CGROUPS: HashMap<u64, CgroupPolicy> =
    HashMap::with_max_entries(MAX_POLICY_CGROUPS, BPF_F_NO_PREALLOC);

/// Exec and open path rules (see `PathKeyData`).
#[map]
static POLICY_PATHS: LpmTrie<PathKeyData, u32> =
    LpmTrie::with_max_entries(MAX_PATH_ENTRIES, BPF_F_NO_PREALLOC);

/// Files and directories the path rules name, by identity: resolved by userspace in each
/// bound workload's root (`guard/src/policy/inodes.rs`), so a rule holds on the file whatever
/// name, link, chroot or bind mount reaches it. Values are `path_bits::*`.
#[map]
pub static POLICY_INODES: HashMap<InodeRuleKey, u32> =
    HashMap::with_max_entries(MAX_INODE_RULES, BPF_F_NO_PREALLOC);

/// The `path_bits` policy `policy_id` has on the inode `k` itself (0: none). Callers OR in the
/// `SUBTREE` entries of the file's ancestor directories.
#[inline(always)]
#[allow(dead_code)] // Until the LSM and exec-backstop programs read it (issues 15 and 16).
pub fn inode_rule(policy_id: u32, k: InodeKey) -> u32 {
    let key = InodeRuleKey {
        policy_id,
        _pad: 0,
        dev: k.dev,
        ino: k.ino,
    };
    // SAFETY: the value is copied out.
    unsafe { POLICY_INODES.get(&key) }.copied().unwrap_or(0)
}

/// Per-CPU area for a path (`bpf_d_path` output, an execve filename, a cgroup path) and, at
/// `KEY_AT`, the LPM lookup key.
pub const PATH_BUF: usize = 4096;
pub const KEY_AT: usize = PATH_BUF;
#[map]
pub static POLICY_SCRATCH: PerCpuArray<[u8; 2 * PATH_BUF]> = PerCpuArray::with_max_entries(1, 0);

/// The policy bound to the current task's cgroup.
#[inline(always)]
pub fn cgroup_policy() -> Option<CgroupPolicy> {
    // SAFETY: helper with no preconditions; the value is copied out.
    let cg = unsafe { bpf_get_current_cgroup_id() };
    unsafe { POLICY_CGROUPS.get(&cg) }.copied()
}

/// Fills the `POLICY_PATHS` key at `base + KEY_AT` from the NUL-terminated path at `base`.
/// Returns false when the path bytes could not be copied.
#[inline(always)]
pub fn fill_path_key(base: *mut u8, policy_id: u32, kind: u8) -> bool {
    // SAFETY: the key (4 + 256 bytes) lies within the second half of the scratch value.
    unsafe {
        let key = base.add(KEY_AT) as *mut LpmKey<PathKeyData>;
        (*key).prefix_len = PATH_KEY_FIXED_BITS + 8 * PATH_KEY_BYTES as u32;
        (*key).data.policy_id = policy_id;
        (*key).data.kind = kind;
        // Bytes after the NUL are left over from earlier paths; an entry never spans a NUL
        // (exact entries end with theirs), so they cannot cause a match.
        let dst = core::ptr::addr_of_mut!((*key).data.path) as *mut _;
        raw_probe_read_kernel(dst, PATH_KEY_BYTES as u32, base as *const _) == 0
    }
}

/// Resolves `path` (a BTF pointer to a `struct path`) with `bpf_d_path` into the scratch area
/// and fills the LPM key after it. Returns the scratch base, or None if it cannot be resolved.
#[inline(always)]
pub fn resolve_path(path: *const u8, policy_id: u32, kind: u8) -> Option<*mut u8> {
    let base = POLICY_SCRATCH.get_ptr_mut(0)? as *mut u8;
    // SAFETY: PATH_BUF bytes at base; bpf_d_path bounds its write to that.
    let n = unsafe { bpf_d_path(path as *mut kernel_path, base as *mut _, PATH_BUF as u32) };
    if n <= 0 {
        return None;
    }
    fill_path_key(base, policy_id, kind).then_some(base)
}

/// The `path_bits` of the longest `POLICY_PATHS` entry matching the key `fill_path_key` made.
#[inline(always)]
pub fn path_rule(base: *mut u8) -> u32 {
    // SAFETY: fill_path_key filled the key at KEY_AT.
    let key = unsafe { &*(base.add(KEY_AT) as *const LpmKey<PathKeyData>) };
    POLICY_PATHS.get(key).copied().unwrap_or(0)
}

/// Device and inode number of a `struct inode *`.
#[inline(always)]
pub unsafe fn inode_key(inode: *const u8) -> InodeKey {
    // SAFETY: offsets from BTF; reads go through probe_read, which tolerates bad pointers.
    unsafe {
        let sb: *const u8 = read_field(inode, koff!(inode_i_sb)).unwrap_or(core::ptr::null());
        InodeKey {
            dev: read_field::<u32>(sb, koff!(sb_s_dev)).unwrap_or(0) as u64,
            ino: read_field::<u64>(inode, koff!(inode_i_ino)).unwrap_or(0),
        }
    }
}

/// Device and inode number of the file behind a `struct file *`.
#[inline(always)]
pub unsafe fn inode_of(file: *const u8) -> InodeKey {
    // SAFETY: as in inode_key.
    unsafe {
        let inode: *const u8 = read_field(file, koff!(file_f_inode)).unwrap_or(core::ptr::null());
        inode_key(inode)
    }
}

/// Sends a `Decision` record (its `hook` set by the caller); `path` is a kernel string (the
/// path buffer) or null.
#[inline(always)]
pub fn report(body: &DecisionBody, path: *const u8, ret: i64) {
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
