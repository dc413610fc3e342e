//! A file's identity for the policy programs (issue 15): path rules hold on the file itself
//! (device + inode, `POLICY_INODES`, resolved by the agent in each workload's root) and on the
//! directory a `DIR/**` rule names, found by walking the dentry's `d_parent` chain. Dentries
//! are the same whatever name, root (chroot) or bind mount reached the file, so neither a hard
//! link, a rename, a chroot nor a bind mount changes the answer.

use guard_ebpf::{CgroupPolicy, DecisionBody, InodeKey, path_bits, policy_flags as pf, verdict};

use super::shared::{EPERM, inode_key, inode_rule, koff, read_field, report};

/// Ancestor levels walked: deeper files are matched by their 32 nearest directories (and by
/// name in the hooks that have `bpf_d_path`).
pub const MAX_ANCESTORS: u32 = 32;

/// The `path_bits` (without SUBTREE) policy `policy_id` puts on `dentry`: the exact entry of
/// its own inode, and the SUBTREE entries of its ancestors, and its own when `self_subtree`
/// (the directory itself is being renamed, removed or changed). The walk stops at the root of
/// the dentry's filesystem (`d_parent` pointing at itself): a filesystem mounted below a
/// protected directory is covered by name only.
#[inline(always)]
pub fn dentry_bits(policy_id: u32, dentry: *const u8, self_subtree: bool) -> u32 {
    let (exact, subtree) = dentry_bits_split(policy_id, dentry, self_subtree);
    exact | subtree
}

/// `dentry_bits`, as (the dentry's own exact entry, the SUBTREE entries that cover it).
#[inline(always)]
pub fn dentry_bits_split(policy_id: u32, dentry: *const u8, self_subtree: bool) -> (u32, u32) {
    let off_parent = koff!(dentry_d_parent);
    let off_inode = koff!(dentry_d_inode);
    let mut exact = 0u32;
    let mut subtree = 0u32;
    let mut d = dentry;
    let mut level = 0u32;
    while level < MAX_ANCESTORS {
        if d.is_null() {
            break;
        }
        // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
        let inode: *const u8 = unsafe { read_field(d, off_inode) }.unwrap_or(core::ptr::null());
        if !inode.is_null() {
            // SAFETY: as above.
            let b = inode_rule(policy_id, unsafe { inode_key(inode) });
            if b & path_bits::SUBTREE != 0 {
                if level > 0 || self_subtree {
                    subtree |= b;
                }
            } else if level == 0 {
                exact = b;
            }
        }
        // SAFETY: as above.
        let parent: *const u8 = unsafe { read_field(d, off_parent) }.unwrap_or(core::ptr::null());
        if parent == d {
            break;
        }
        d = parent;
        level += 1;
    }
    (exact, subtree & !path_bits::SUBTREE)
}

/// The dentry of a `struct file *` (`file->f_path.dentry`).
#[inline(always)]
pub fn file_dentry(file: *const u8) -> *const u8 {
    let off_path = koff!(file_f_path);
    let off_dentry = koff!(path_dentry);
    if off_path == guard_ebpf::OFFSET_ABSENT || off_dentry == guard_ebpf::OFFSET_ABSENT {
        return core::ptr::null();
    }
    // SAFETY: as in dentry_bits.
    unsafe { read_field(file, off_path + off_dentry) }.unwrap_or(core::ptr::null())
}

/// The dentry of a `struct path *`.
#[inline(always)]
pub fn path_dentry(path: *const u8) -> *const u8 {
    // SAFETY: as in dentry_bits.
    unsafe { read_field(path, koff!(path_dentry)) }.unwrap_or(core::ptr::null())
}

/// The inode of a dentry (null for a negative dentry).
#[inline(always)]
pub fn dentry_inode(dentry: *const u8) -> *const u8 {
    // SAFETY: as in dentry_bits.
    unsafe { read_field(dentry, koff!(dentry_d_inode)) }.unwrap_or(core::ptr::null())
}

/// `dentry->d_name.name`: the last component, a kernel string (for the decision record).
#[inline(always)]
pub fn dentry_name(dentry: *const u8) -> *const u8 {
    // SAFETY: as in dentry_bits.
    unsafe { read_field(dentry, koff!(dentry_d_name_name)) }.unwrap_or(core::ptr::null())
}

/// Device and inode of a dentry's inode (zero for a negative dentry).
#[inline(always)]
pub fn dentry_key(dentry: *const u8) -> InodeKey {
    let inode = dentry_inode(dentry);
    if inode.is_null() {
        return InodeKey::default();
    }
    // SAFETY: as in dentry_bits.
    unsafe { inode_key(inode) }
}

/// Whether the inode has no name left (`i_nlink == 0`): a memfd, an O_TMPFILE file not yet
/// linked, or a deleted file. Under `deny_new_binaries` such a file is new by definition: it
/// is not part of the image. An unreadable count is not taken as 0.
#[inline(always)]
pub fn unlinked(inode: *const u8) -> bool {
    // SAFETY: as in dentry_bits.
    let n = unsafe { read_field::<u32>(inode, koff!(inode_i_nlink)) };
    n == Some(0)
}

/// Reports a decision and returns the hook's answer: EPERM in enforce mode, 0 (allowed, a
/// would-deny record) in detect mode. `name` is a kernel string or null.
#[inline(always)]
pub fn decide(pol: &CgroupPolicy, mut body: DecisionBody, name: *const u8) -> i32 {
    body.policy_id = pol.policy_id;
    if pol.flags & pf::ENFORCE != 0 {
        body.verdict = verdict::DENY;
        report(&body, name, -(EPERM as i64));
        -EPERM
    } else {
        body.verdict = verdict::WOULD_DENY;
        report(&body, name, 0);
        0
    }
}
