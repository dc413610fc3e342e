//! Policy: the BPF LSM programs that enforce per-workload policies (issue 5) on exec
//! (`bprm_check_security`, with drift prevention) and open (`file_open`), and the
//! `--deny-exec-cgroup` exec denial. Every decision rests on the real object: the path
//! `bpf_d_path` resolves from the opened `struct file` (relative paths, `..`, symlinks and
//! dirfds are already resolved by the kernel) or the inode. Connect and sendmsg rules are
//! enforced by the cgroup sock_addr programs (`sockaddr.rs`) on every kernel.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::bpf_get_current_cgroup_id,
    macros::{lsm, map},
    maps::{HashMap, LruHashMap},
    programs::LsmContext,
};
use guard_ebpf::{
    DecisionBody, EventKind, ExecDeniedBody, InodeKey, MAX_NEW_FILES, MAX_POLICY_CGROUPS,
    OFFSET_ABSENT, decision_op, hook, path_bits, path_kind, policy_flags as pf, reason,
};

use super::{
    identity::{decide, dentry_bits, file_dentry, unlinked},
    shared::{
        EPERM, Record, cgroup_policy, inode_of, koff, offsets, path_rule, read_field, resolve_path,
    },
};

/// cgroup id -> policy id, for cgroups whose execs are denied.
#[map]
static EXEC_DENY_CGROUPS: HashMap<u64, u32> =
    HashMap::with_max_entries(MAX_POLICY_CGROUPS, BPF_F_NO_PREALLOC);

#[lsm(hook = "bprm_check_security")]
pub fn bprm_check_security(ctx: LsmContext) -> i32 {
    // Argument 1 is the verdict of BPF LSM programs that ran before us; never weaken it.
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    // SAFETY: helper with no preconditions.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the value is copied out before any map update can race with it.
    let Some(policy) = (unsafe { EXEC_DENY_CGROUPS.get(&cgroup) }).copied() else {
        return 0;
    };
    let off = offsets();
    if let Some(mut rec) = Record::begin(EventKind::ExecDenied, size_of::<ExecDeniedBody>(), &off) {
        rec.header().ret = -(EPERM as i64);
        *rec.body::<ExecDeniedBody>() = ExecDeniedBody {
            policy_id: policy,
            _pad: 0,
        };
        rec.submit();
    }
    -EPERM
}

/// Inodes opened for writing inside drift-protected workloads; value: the policy id.
#[map]
pub(super) static NEW_FILES: LruHashMap<InodeKey, u32> =
    LruHashMap::with_max_entries(MAX_NEW_FILES, 0);

const FMODE_READ: u32 = 1;
const FMODE_WRITE: u32 = 2;

#[lsm(hook = "bprm_check_security")]
pub fn policy_exec(ctx: LsmContext) -> i32 {
    // bprm_check_security(bprm): argument 1 is the verdict of earlier BPF LSM programs.
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW | pf::DENY_NEW_BINARIES) == 0 {
        return 0;
    }
    let bprm: *const u8 = ctx.arg(0);
    let off_file = koff!(bprm_file);
    let off_path = koff!(file_f_path);
    if off_file == OFFSET_ABSENT || off_path == OFFSET_ABSENT || bprm.is_null() {
        return 0;
    }
    // A direct load (not probe_read) keeps the BTF type, which bpf_d_path requires.
    // SAFETY: the offset is a verifier-known constant into `struct linux_binprm`.
    let file = unsafe { core::ptr::read_volatile(bprm.add(off_file as usize) as *const *const u8) };
    if file.is_null() {
        return 0;
    }
    let mut body = DecisionBody {
        op: decision_op::EXEC,
        hook: hook::BPRM_CHECK_SECURITY,
        ..DecisionBody::default()
    };
    if pol.flags & pf::DENY_NEW_BINARIES != 0 {
        // SAFETY: see inode_of.
        let ino = unsafe { inode_of(file) };
        body.dev = ino.dev;
        body.ino = ino.ino;
        // SAFETY: offset from BTF; probe_read tolerates bad pointers.
        let inode: *const u8 =
            unsafe { read_field(file, koff!(file_f_inode)) }.unwrap_or(core::ptr::null());
        // Written inside the workload, or without a name (a memfd, an unlinked O_TMPFILE).
        // SAFETY: the value is not used beyond the check.
        if unsafe { NEW_FILES.get(&ino) }.is_some() || (!inode.is_null() && unlinked(inode)) {
            body.reason = reason::NEW_BINARY;
            let base = resolve_path(
                unsafe { file.add(off_path as usize) },
                pol.policy_id,
                path_kind::EXEC,
            );
            return decide(
                &pol,
                body,
                base.map_or(core::ptr::null(), |b| b as *const u8),
            );
        }
    }
    if pol.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW) == 0 {
        return 0;
    }
    // The file itself (hard links, renames) and its directories (chroot, bind mounts).
    let ino_bits = dentry_bits(pol.policy_id, file_dentry(file), false);
    // SAFETY: constant offset into `struct file`; the result is a BTF pointer to `struct path`.
    let name = resolve_path(
        unsafe { file.add(off_path as usize) },
        pol.policy_id,
        path_kind::EXEC,
    );
    let bits = ino_bits | name.map_or(0, path_rule);
    let name = name.map_or(core::ptr::null(), |b| b as *const u8);
    let hit = bits & path_bits::EXEC_MATCH != 0;
    if pol.flags & pf::EXEC_DENY != 0 && hit {
        body.reason = reason::DENY_LIST;
        return decide(&pol, body, name);
    }
    // An unresolvable path that no inode entry admits is not allowed either.
    if pol.flags & pf::EXEC_ALLOW != 0 && !hit {
        body.reason = reason::NOT_ALLOWED;
        return decide(&pol, body, name);
    }
    0
}

#[lsm(hook = "file_open")]
pub fn policy_open(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return prev;
    }
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & (pf::OPEN_RULES | pf::DENY_NEW_BINARIES) == 0 {
        return 0;
    }
    let file: *const u8 = ctx.arg(0);
    let off_path = koff!(file_f_path);
    if off_path == OFFSET_ABSENT || file.is_null() {
        return 0;
    }
    // SAFETY: probe_read of a field of the file being opened.
    let mode: u32 = unsafe { read_field(file, koff!(file_f_mode)) }.unwrap_or(0);
    if pol.flags & pf::OPEN_RULES != 0 {
        // The file itself and its directories, whatever name reached it; then its name.
        let mut bits = dentry_bits(pol.policy_id, file_dentry(file), false);
        // SAFETY: constant offset into `struct file`; a BTF pointer to its `struct path`.
        let name = resolve_path(
            unsafe { file.add(off_path as usize) },
            pol.policy_id,
            path_kind::OPEN,
        );
        bits |= name.map_or(0, path_rule);
        let denied = (mode & FMODE_READ != 0 && bits & path_bits::DENY_READ != 0)
            || (mode & FMODE_WRITE != 0 && bits & path_bits::DENY_WRITE != 0);
        if denied {
            let mut body = DecisionBody {
                op: decision_op::OPEN,
                hook: hook::FILE_OPEN,
                reason: reason::DENY_LIST,
                access: mode & (FMODE_READ | FMODE_WRITE),
                ..DecisionBody::default()
            };
            // SAFETY: see inode_of.
            let ino = unsafe { inode_of(file) };
            body.dev = ino.dev;
            body.ino = ino.ino;
            let r = decide(
                &pol,
                body,
                name.map_or(core::ptr::null(), |b| b as *const u8),
            );
            if r != 0 {
                return r;
            }
        }
    }
    if pol.flags & pf::DENY_NEW_BINARIES != 0 && mode & FMODE_WRITE != 0 {
        // SAFETY: see inode_of.
        let ino = unsafe { inode_of(file) };
        if ino.ino != 0 {
            let _ = NEW_FILES.insert(&ino, &pol.policy_id, 0);
        }
    }
    0
}
