//! `deny_write` beyond `open` (issue 15, class 4): every other way to change a protected file
//! or the contents of a protected directory is refused before it happens. A protected file
//! cannot be truncated (`truncate`, `ftruncate`, `O_TRUNC`), renamed, replaced by a rename,
//! linked, unlinked, chmod-ed, chown-ed or have its xattrs changed; nothing can be created,
//! linked, renamed, removed in or out of a protected directory (`DIR/**`), and the directory
//! itself cannot be renamed, removed or changed. Creation is refused at `inode_create`, before
//! the file exists, so a denied `O_CREAT` leaves nothing behind.
//!
//! These hooks have no `bpf_d_path`: they decide on inodes alone (`identity::dentry_bits`),
//! so they apply once the agent has resolved the policy's paths in the workload's root.
//! Each program returns after one map lookup for a cgroup without a policy.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use guard_ebpf::{DecisionBody, decision_op, hook, path_bits, policy_flags as pf, reason};

use super::{
    identity::{
        decide, dentry_bits, dentry_bits_split, dentry_key, dentry_name, file_dentry, path_dentry,
    },
    shared::{cgroup_policy, koff, read_field},
};

/// FMODE_WRITE, reported as the access of every write decision.
const WRITE_ACCESS: u32 = 2;

/// Refuses the operation when `a` (checked with its own subtree entry: the file or directory
/// being changed) or `b` (a new name: only its ancestors count) is under `deny_write`. With
/// `names`, the operation changes `a`'s names (unlink, rename, link): a file an exact rule
/// names (deny_read, exec.deny) is refused too, so a rule's path keeps naming its file.
#[inline(always)]
fn check(hook_id: u8, a: *const u8, b: *const u8, names: bool) -> i32 {
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    let mut named = 0;
    if names {
        named |= path_bits::DENY_READ;
        if pol.flags & pf::EXEC_DENY != 0 {
            named |= path_bits::EXEC_MATCH;
        }
    }
    if pol.flags & pf::OPEN_RULES == 0 && named == 0 {
        return 0;
    }
    let mut hit = core::ptr::null();
    let (exact, subtree) = if a.is_null() {
        (0, 0)
    } else {
        dentry_bits_split(pol.policy_id, a, true)
    };
    if (exact | subtree) & path_bits::DENY_WRITE != 0 || exact & named != 0 {
        hit = a;
    } else if !b.is_null() && dentry_bits(pol.policy_id, b, false) & path_bits::DENY_WRITE != 0 {
        hit = b;
    }
    if hit.is_null() {
        return 0;
    }
    let mut key = dentry_key(hit);
    if key.ino == 0 {
        // A new name: report its directory.
        // SAFETY: offset from BTF; probe_read tolerates bad pointers.
        let parent: *const u8 =
            unsafe { read_field(hit, koff!(dentry_d_parent)) }.unwrap_or(core::ptr::null());
        key = dentry_key(parent);
    }
    let body = DecisionBody {
        op: decision_op::WRITE,
        hook: hook_id,
        reason: reason::DENY_LIST,
        access: WRITE_ACCESS,
        dev: key.dev,
        ino: key.ino,
        ..DecisionBody::default()
    };
    decide(&pol, body, dentry_name(hit))
}

/// Runs `check` unless an earlier BPF LSM program already refused (argument `$ret`).
macro_rules! guarded {
    ($ctx:ident, $ret:expr, $hook:expr, $a:expr, $b:expr) => {
        guarded!($ctx, $ret, $hook, $a, $b, false)
    };
    ($ctx:ident, $ret:expr, $hook:expr, $a:expr, $b:expr, $names:expr) => {{
        let prev: i32 = $ctx.arg($ret);
        if prev != 0 {
            return prev;
        }
        check($hook, $a, $b, $names)
    }};
}

const NONE: *const u8 = core::ptr::null();

/// `path_truncate(path)`: truncate(2), and on kernels before 6.2 also ftruncate(2) and
/// `O_TRUNC`.
#[lsm(hook = "path_truncate")]
pub fn policy_path_truncate(ctx: LsmContext) -> i32 {
    let path: *const u8 = ctx.arg(0);
    guarded!(ctx, 1, hook::PATH_TRUNCATE, path_dentry(path), NONE)
}

/// `file_truncate(file)` (6.2+): ftruncate(2) and `O_TRUNC`.
#[lsm(hook = "file_truncate")]
pub fn policy_file_truncate(ctx: LsmContext) -> i32 {
    let file: *const u8 = ctx.arg(0);
    guarded!(ctx, 1, hook::FILE_TRUNCATE, file_dentry(file), NONE)
}

/// `inode_create(dir, dentry, mode)`: `O_CREAT` of a new file, before it exists.
#[lsm(hook = "inode_create")]
pub fn policy_inode_create(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 3, hook::INODE_CREATE, NONE, dentry)
}

/// `inode_mknod(dir, dentry, mode, dev)`: device nodes, fifos and sockets.
#[lsm(hook = "inode_mknod")]
pub fn policy_inode_mknod(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 4, hook::INODE_MKNOD, NONE, dentry)
}

/// `inode_link(old_dentry, dir, new_dentry)`: a new name for a protected file, or any link
/// into a protected directory.
#[lsm(hook = "inode_link")]
pub fn policy_inode_link(ctx: LsmContext) -> i32 {
    let old: *const u8 = ctx.arg(0);
    let new: *const u8 = ctx.arg(2);
    guarded!(ctx, 3, hook::INODE_LINK, old, new, true)
}

/// `inode_unlink(dir, dentry)`.
#[lsm(hook = "inode_unlink")]
pub fn policy_inode_unlink(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 2, hook::INODE_UNLINK, dentry, NONE, true)
}

/// `inode_symlink(dir, dentry, old_name)`.
#[lsm(hook = "inode_symlink")]
pub fn policy_inode_symlink(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 3, hook::INODE_SYMLINK, NONE, dentry)
}

/// `inode_mkdir(dir, dentry, mode)`.
#[lsm(hook = "inode_mkdir")]
pub fn policy_inode_mkdir(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 3, hook::INODE_MKDIR, NONE, dentry)
}

/// `inode_rmdir(dir, dentry)`.
#[lsm(hook = "inode_rmdir")]
pub fn policy_inode_rmdir(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 2, hook::INODE_RMDIR, dentry, NONE, true)
}

/// `inode_rename(old_dir, old_dentry, new_dir, new_dentry)`: moving a protected file or
/// directory, moving anything into or out of a protected directory, or replacing a protected
/// file (the target `new_dentry`, positive when it exists, is checked as a file too).
#[lsm(hook = "inode_rename")]
pub fn policy_inode_rename(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(4);
    if prev != 0 {
        return prev;
    }
    let old: *const u8 = ctx.arg(1);
    let new: *const u8 = ctx.arg(3);
    let r = check(hook::INODE_RENAME, old, core::ptr::null(), true);
    if r != 0 {
        return r;
    }
    check(hook::INODE_RENAME, new, core::ptr::null(), true)
}

/// `path_chmod(path, mode)`.
#[lsm(hook = "path_chmod")]
pub fn policy_path_chmod(ctx: LsmContext) -> i32 {
    let path: *const u8 = ctx.arg(0);
    guarded!(ctx, 2, hook::PATH_CHMOD, path_dentry(path), NONE)
}

/// `path_chown(path, uid, gid)`.
#[lsm(hook = "path_chown")]
pub fn policy_path_chown(ctx: LsmContext) -> i32 {
    let path: *const u8 = ctx.arg(0);
    guarded!(ctx, 3, hook::PATH_CHOWN, path_dentry(path), NONE)
}

/// `inode_setxattr(idmap, dentry, name, value, size, flags)` (the first argument is a
/// `user_namespace` before 6.3, an `mnt_idmap` after; both place the dentry second).
#[lsm(hook = "inode_setxattr")]
pub fn policy_inode_setxattr(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 6, hook::INODE_SETXATTR, dentry, NONE)
}

/// `inode_removexattr(idmap, dentry, name)`.
#[lsm(hook = "inode_removexattr")]
pub fn policy_inode_removexattr(ctx: LsmContext) -> i32 {
    let dentry: *const u8 = ctx.arg(1);
    guarded!(ctx, 3, hook::INODE_REMOVEXATTR, dentry, NONE)
}
