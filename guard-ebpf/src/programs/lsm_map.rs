//! Executable mappings (issue 15, class 3): running a binary needs no execve. The dynamic
//! loader (`ld.so /denied/bin`) or any program can map a file with `PROT_EXEC`, by `mmap` or
//! by `mprotect` of an existing mapping. Under `exec.deny` a denied file cannot be mapped
//! executable; under `deny_new_binaries` neither can a file written inside the workload
//! (`NEW_FILES`) nor a file without a name (a memfd, an unlinked O_TMPFILE file). Allow lists
//! (`exec.allow`) are not applied to mappings: they name programs, not the libraries those load.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use guard_ebpf::{
    DecisionBody, OFFSET_ABSENT, decision_op, hook, path_bits, path_kind, policy_flags as pf,
    reason,
};

use super::{
    identity::{decide, dentry_bits, dentry_inode, dentry_name, file_dentry, unlinked},
    policy::NEW_FILES,
    shared::{cgroup_policy, inode_key, koff, path_rule, read_field, resolve_path},
};

const PROT_EXEC: u64 = 4;

/// The decision on mapping `file` executable. `btf_file`: `file` is the hook's own argument,
/// which `bpf_d_path` accepts, so the name rules apply too.
#[inline(always)]
fn exec_mapping(hook_id: u8, file: *const u8, btf_file: bool) -> i32 {
    let Some(pol) = cgroup_policy() else {
        return 0;
    };
    if pol.flags & (pf::EXEC_DENY | pf::DENY_NEW_BINARIES) == 0 || file.is_null() {
        return 0;
    }
    let dentry = file_dentry(file);
    let inode = dentry_inode(dentry);
    if inode.is_null() {
        return 0;
    }
    // SAFETY: offsets from BTF; probe_read tolerates bad pointers.
    let key = unsafe { inode_key(inode) };
    let mut body = DecisionBody {
        op: decision_op::EXEC,
        hook: hook_id,
        dev: key.dev,
        ino: key.ino,
        ..DecisionBody::default()
    };
    if pol.flags & pf::DENY_NEW_BINARIES != 0
        // SAFETY: the value is not used beyond the check.
        && (unsafe { NEW_FILES.get(&key) }.is_some() || unlinked(inode))
    {
        body.reason = reason::NEW_BINARY;
        return decide(&pol, body, dentry_name(dentry));
    }
    if pol.flags & pf::EXEC_DENY == 0 {
        return 0;
    }
    let mut bits = dentry_bits(pol.policy_id, dentry, false);
    let mut name = dentry_name(dentry);
    let off_path = koff!(file_f_path);
    if btf_file && off_path != OFFSET_ABSENT {
        // SAFETY: constant offset into the hook's `struct file`: a BTF pointer to its path.
        if let Some(base) = resolve_path(
            unsafe { file.add(off_path as usize) },
            pol.policy_id,
            path_kind::EXEC,
        ) {
            bits |= path_rule(base);
            name = base;
        }
    }
    if bits & path_bits::EXEC_MATCH == 0 {
        return 0;
    }
    body.reason = reason::DENY_LIST;
    decide(&pol, body, name)
}

/// `mmap_file(file, reqprot, prot, flags)`; `file` is null for anonymous memory.
#[lsm(hook = "mmap_file")]
pub fn policy_mmap_file(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(4);
    if prev != 0 {
        return prev;
    }
    let prot: u64 = ctx.arg(2);
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    exec_mapping(hook::MMAP_FILE, ctx.arg(0), true)
}

/// `file_mprotect(vma, reqprot, prot)`: making an existing file mapping executable.
#[lsm(hook = "file_mprotect")]
pub fn policy_file_mprotect(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    let prot: u64 = ctx.arg(2);
    if prot & PROT_EXEC == 0 {
        return 0;
    }
    let vma: *const u8 = ctx.arg(0);
    // SAFETY: offset from BTF; probe_read tolerates bad pointers.
    let file: *const u8 =
        unsafe { read_field(vma, koff!(vma_vm_file)) }.unwrap_or(core::ptr::null());
    exec_mapping(hook::FILE_MPROTECT, file, false)
}
