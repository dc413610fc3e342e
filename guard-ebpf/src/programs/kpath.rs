//! The path of the file an open returned (issue 17), resolved in the kernel from the new
//! descriptor (fd → `struct file` → `f_path`), by a bounded walk up `d_parent` with mount
//! crossings, so a symlink, `..`, a bind mount or a chroot cannot hide the real file.
//!
//! Semantics (docs/rules.md, "fd.name"): the path is relative to the root of the file's mount
//! tree (its mount namespace's `/`, whatever the process's chroot; a container's files are
//! relative to the container's root). On the file system of that root, the walk ignores inner
//! mount roots, so a file reached through a bind mount or a chroot of one of its directories
//! has its own path there (`/etc/shadow`). Files of other file systems get the path through
//! their mount points, as `d_path` would (a container's `/etc/hosts` stays `/etc/hosts`).
//!
//! Two builds of the walk (`TYPED`): plain loads from objects typed with the `bpf_rdonly_cast`
//! kfunc (Linux 6.2 on), or batched helper reads where the kernel lacks it.

use aya_ebpf::{
    helpers::generated::{bpf_get_current_task_btf, bpf_probe_read_kernel as raw_read},
    macros::map,
    maps::PerCpuArray,
};
use guard_ebpf::{
    FLAG_KPATH, FLAG_KPATH_CUT, KPATH_MAX_BYTES, KPATH_MAX_MOUNTS, KPATH_MAX_STEPS, OFFSET_ABSENT,
    syscalls::OPEN_HOW_LEN,
};

use super::shared::{Record, koff, read_field};

/// The path is built backwards from `HALF`; the second half absorbs the last name's copy and
/// keeps the NUL at `HALF` that ends the path for the prefilter's key.
const HALF: usize = 4096;
const NAME_MAX: u32 = 255;
/// Where the walk keeps its write position (after the room the last name's copy can take).
const POS_AT: usize = 2 * HALF - 8;

#[map]
static KPATH_BUF: PerCpuArray<[u8; 2 * HALF]> = PerCpuArray::with_max_entries(1, 0);

/// A resolved path in this CPU's `KPATH_BUF` (no NUL counted; one follows it).
#[derive(Clone, Copy)]
pub struct Kpath {
    pub src: *const u8,
    pub len: usize,
    /// 4 free bytes right before `src`: with the path after them, an LPM key in place.
    pub key: *mut u8,
}

/// Bytes one batched read copies: fields of one object within this span cost one helper
/// call instead of one each.
const WINDOW: u32 = 32;

/// Bytes a dentry's read copies from `d_parent`'s word: `d_parent`, `d_name` and the inline
/// name after them (`d_iname`, 32 bytes before Linux 6.14, 40 since), so a short name needs
/// no read of its own.
const DENTRY_WINDOW: u32 = 80;

/// The longest name copied out of that window (`d_iname`'s size, less its NUL, fits).
const INLINE_MAX: usize = 40;

/// Where in `KPATH_BUF` batched reads land: past the last name's copy, below `POS_AT`.
const WIN_AT: usize = HALF + 1024;

/// This CPU's `KPATH_BUF` and, inside it, the window batched reads use.
#[inline(always)]
fn kpath_buf() -> Option<(*mut u8, *mut u8)> {
    let buf = KPATH_BUF.get_ptr_mut(0)? as *mut u8;
    Some((buf, buf.wrapping_add(WIN_AT)))
}

/// The fields at `offs` in the object at `base`, as `fields_in` with a `WINDOW`-byte read.
#[inline(always)]
fn fields<const N: usize>(win: *mut u8, base: *const u8, offs: [u32; N]) -> [u64; N] {
    fields_in::<N, WINDOW>(win, base, offs).0
}

/// The fields at `offs` in the object at `base`, each as the aligned 8-byte word holding it
/// shifted down to the field (a 4-byte field is the low half), in one read of the `W` bytes
/// from the lowest offset's word into `win` when they all fall inside (that word's offset is
/// returned: `win` then holds the object's bytes from there), else one read each. Offsets are
/// load-time constants, so the verifier keeps only one of the paths.
#[inline(always)]
fn fields_in<const N: usize, const W: u32>(
    win: *mut u8,
    base: *const u8,
    offs: [u32; N],
) -> ([u64; N], Option<u32>) {
    let mut out = [0u64; N];
    if base.is_null() {
        return (out, None);
    }
    let mut lo = offs[0];
    let mut hi = offs[0];
    let mut i = 1;
    while i < N {
        lo = lo.min(offs[i]);
        hi = hi.max(offs[i]);
        i += 1;
    }
    // From an aligned word: the window's words are then aligned too, and each field is one
    // 8-byte load (an unaligned one compiles to eight byte loads).
    let lo = lo & !7;
    if hi - lo <= W - 8 {
        // SAFETY: `win` has W bytes of map memory; probe_read tolerates bad pointers.
        if unsafe { raw_read(win as *mut _, W, base.wrapping_add(lo as usize) as *const _) } != 0 {
            return (out, None);
        }
        let mut i = 0;
        while i < N {
            let at = (offs[i] - lo) as usize;
            let word = (at & !7).min(W as usize - 8);
            // SAFETY: word + 8 <= W and `win` is 8-aligned map memory.
            out[i] = unsafe { *(win.add(word) as *const u64) } >> ((at & 7) * 8);
            i += 1;
        }
        (out, Some(lo))
    } else {
        let mut i = 0;
        while i < N {
            // SAFETY: as in ptr.
            out[i] = unsafe { read_field::<u64>(base, offs[i]) }.unwrap_or(0);
            i += 1;
        }
        (out, None)
    }
}

/// 8 bytes from `src`, aligned or not, in one load (Rust's unaligned read compiles to eight
/// byte loads for BPF; the verifier allows unaligned map access where the CPU does).
///
/// # Safety
/// `src` points to 8 readable bytes of map memory.
#[inline(always)]
pub(super) unsafe fn load_u64(src: *const u8) -> u64 {
    let v: u64;
    // SAFETY: per the contract.
    unsafe {
        core::arch::asm!("{0} = *(u64 *)({1} + 0)", out(reg) v, in(reg) src,
            options(nostack, readonly, preserves_flags));
    }
    v
}

/// Stores 8 bytes at `dst`, aligned or not, in one store (see `load_u64`).
///
/// # Safety
/// `dst` points to 8 writable bytes of map memory.
#[inline(always)]
unsafe fn store_u64(dst: *mut u8, v: u64) {
    // SAFETY: per the contract.
    unsafe {
        core::arch::asm!("*(u64 *)({0} + 0) = {1}", in(reg) dst, in(reg) v,
            options(nostack, preserves_flags));
    }
}

/// `bpf_rdonly_cast(p, btf_id)`: `p` as a read-only, untrusted pointer to the kernel type
/// `btf_id`, whose members the verifier then lets plain loads read (fault-tolerant, no helper
/// call). The verifier replaces the call with a register move. Emitted as a raw instruction
/// whose immediate userspace patches (`guard_ebpf::KFUNC_CALL_PLACEHOLDER`).
#[inline(always)]
fn cast(p: *const u8, btf_id: u32) -> *const u8 {
    let r: *const u8;
    // SAFETY: the kfunc reads nothing; the verifier types the result.
    unsafe {
        core::arch::asm!(".quad {insn}", insn = const guard_ebpf::KFUNC_CALL_PLACEHOLDER,
            inlateout("r1") p => _, inlateout("r2") btf_id as u64 => _, lateout("r0") r,
            lateout("r3") _, lateout("r4") _, lateout("r5") _, options(nostack, readonly));
    }
    r
}

/// A pointer member at `off` of the typed object at `base`.
#[inline(always)]
fn typed_ptr(base: *const u8, off: u32) -> *const u8 {
    // SAFETY: `base` is BTF-typed; the verifier checks the member and makes the load
    // fault-tolerant.
    unsafe { *(base.wrapping_add(off as usize) as *const *const u8) }
}

/// A mount's parent, mount point, root and superblock (`struct mount`, with its embedded
/// `vfsmount` at `mnt_off`), in one read where the layout allows.
#[derive(Clone, Copy)]
struct MountStep {
    parent: *const u8,
    mountpoint: *const u8,
    root: *const u8,
    sb: *const u8,
}

#[inline(always)]
fn mount_step<const TYPED: bool>(win: *mut u8, m: *const u8) -> MountStep {
    let mnt = koff!(mount_mnt);
    if TYPED {
        let t = cast(m, koff!(btf_mount));
        return MountStep {
            parent: typed_ptr(t, koff!(mount_mnt_parent)),
            mountpoint: typed_ptr(t, koff!(mount_mnt_mountpoint)),
            root: typed_ptr(t, mnt + koff!(vfsmount_mnt_root)),
            sb: typed_ptr(t, mnt + koff!(vfsmount_mnt_sb)),
        };
    }
    let [parent, mountpoint, root, sb] = fields(
        win,
        m,
        [
            koff!(mount_mnt_parent),
            koff!(mount_mnt_mountpoint),
            mnt + koff!(vfsmount_mnt_root),
            mnt + koff!(vfsmount_mnt_sb),
        ],
    );
    MountStep {
        parent: parent as *const u8,
        mountpoint: mountpoint as *const u8,
        root: root as *const u8,
        sb: sb as *const u8,
    }
}

/// The `struct file` behind descriptor `fd` of the current task.
#[inline(always)]
pub fn current_file(fd: i64) -> Option<*const u8> {
    // SAFETY: helper with no preconditions.
    file_of(unsafe { bpf_get_current_task_btf() } as *const u8, fd)
}

/// The `struct file` behind descriptor `fd` of `task`, a BTF-typed `struct task_struct *`
/// (`bpf_get_current_task_btf`).
#[inline(always)]
pub fn file_of(task: *const u8, fd: i64) -> Option<*const u8> {
    let (off_files, off_fdt, off_max, off_fd) = (
        koff!(task_files),
        koff!(files_fdt),
        koff!(fdtable_max_fds),
        koff!(fdtable_fd),
    );
    if !(0..=(1 << 24)).contains(&fd)
        || off_files == OFFSET_ABSENT
        || off_fdt == OFFSET_ABSENT
        || off_max == OFFSET_ABSENT
        || off_fd == OFFSET_ABSENT
    {
        return None;
    }
    // Typed loads, no helper calls: the offsets are load-time constants the verifier checks
    // against the members' types (`files`, `fdt`: struct pointers; `max_fds`, `fd`: scalars).
    // SAFETY: `task` is a typed task pointer; the verifier turns these into fault-tolerant
    // loads.
    let (max, arr) = unsafe {
        let files = *(task.add(off_files as usize) as *const *const u8);
        if files.is_null() {
            return None;
        }
        let fdt = *(files.add(off_fdt as usize) as *const *const u8);
        if fdt.is_null() {
            return None;
        }
        (
            *(fdt.add(off_max as usize) as *const u32),
            *(fdt.add(off_fd as usize) as *const *const u8),
        )
    };
    if fd as u64 >= max as u64 || arr.is_null() {
        return None;
    }
    // `fd` is an array of `struct file *` the verifier does not type: one helper read.
    // SAFETY: fd < max_fds, the length of the array; probe_read checks the address anyway.
    let file = unsafe {
        aya_ebpf::helpers::bpf_probe_read_kernel(arr.add(fd as usize * 8) as *const *const u8)
    }
    .ok()?;
    (!file.is_null()).then_some(file)
}

/// The path of the file behind descriptor `fd` of `task` (the current task, BTF-typed), or
/// None when the walk cannot complete within its bounds.
#[inline(always)]
pub fn open_path<const TYPED: bool>(task: *const u8, fd: i64) -> Option<Kpath> {
    let mnt_off = koff!(mount_mnt);
    let off_parent = koff!(mount_mnt_parent);
    let off_mp = koff!(mount_mnt_mountpoint);
    let off_root = koff!(vfsmount_mnt_root);
    let off_sb = koff!(vfsmount_mnt_sb);
    let off_d_parent = koff!(dentry_d_parent);
    let off_name = koff!(dentry_d_name_name);
    let off_len = koff!(dentry_d_name_len);
    let off_f_path = koff!(file_f_path);
    let off_p_dentry = koff!(path_dentry);
    let off_p_mnt = koff!(path_mnt);
    if mnt_off == OFFSET_ABSENT
        || off_parent == OFFSET_ABSENT
        || off_mp == OFFSET_ABSENT
        || off_d_parent == OFFSET_ABSENT
        || off_name == OFFSET_ABSENT
        || off_len == OFFSET_ABSENT
        || off_root == OFFSET_ABSENT
        || off_sb == OFFSET_ABSENT
        || off_f_path == OFFSET_ABSENT
        || off_p_dentry == OFFSET_ABSENT
        || off_p_mnt == OFFSET_ABSENT
        || !(0..=(1 << 24)).contains(&fd)
    {
        return None;
    }
    let (buf, win) = kpath_buf()?;
    let file = file_of(task, fd)?;
    let (vfsmnt, mut d) = if TYPED {
        let f = cast(file, koff!(btf_file));
        (
            typed_ptr(f, off_f_path + off_p_mnt),
            typed_ptr(f, off_f_path + off_p_dentry),
        )
    } else {
        let [vfsmnt, d] = fields(
            win,
            file,
            [off_f_path + off_p_mnt, off_f_path + off_p_dentry],
        );
        (vfsmnt as *const u8, d as *const u8)
    };
    if d.is_null() || vfsmnt.is_null() {
        return None;
    }
    let mut m = vfsmnt.wrapping_sub(mnt_off as usize);
    let mut ms = mount_step::<TYPED>(win, m);

    // The top of the file's mount tree: the mount on the `/` of the namespace's root
    // (`rootfs`, its own parent), or that root itself.
    let mut top = m;
    let mut top_step = ms;
    let mut p = ms.parent;
    let mut found = false;
    let mut i = 0;
    while i < KPATH_MAX_MOUNTS {
        if p.is_null() {
            return None;
        }
        if p == top {
            found = true;
            break;
        }
        let ps = mount_step::<TYPED>(win, p);
        if ps.parent == p {
            // `top` hides the namespace root only when mounted on its `/` (the real root
            // over `rootfs`, a container's after pivot_root); a system running from its
            // initramfs has `rootfs` itself as `/`, and `top` is one of its mounts (`/tmp`).
            if top_step.mountpoint != ps.root {
                top_step = ps;
            }
            found = true;
            break;
        }
        top = p;
        top_step = ps;
        p = ps.parent;
        i += 1;
    }
    if !found {
        return None;
    }
    let root_sb = top_step.sb;
    let top_root = top_step.root;

    // The write position lives in map memory, not a register: the verifier then sees an
    // unknown (masked) value each step instead of a range per path, and prunes the loop.
    let pos_at = buf.wrapping_add(POS_AT) as *mut u64;
    let len_at = buf.wrapping_add(POS_AT - 8) as *mut u64;
    // SAFETY: HALF and POS_AT are within the per-CPU value.
    unsafe {
        *buf.add(HALF) = 0;
        core::ptr::write_volatile(pos_at, HALF as u64);
    }
    let mut done = false;
    let mut step = 0;
    while step < KPATH_MAX_STEPS {
        step += 1;
        if d.is_null() {
            return None;
        }
        // d_parent, d_name's length and pointer, and the inline name after them, in one read
        // where the layout allows.
        let ([parent, len, name], src) = if TYPED {
            let t = cast(d, koff!(btf_dentry));
            let name = typed_ptr(t, off_name);
            let (iname, iname_len) = (koff!(dentry_d_iname), koff!(dentry_iname_len));
            // A short name lives in the dentry: its words go to the window at 8, where the
            // copy below finds them as it would after a batched read. Only words within the
            // inline name are loaded (the verifier checks each against the member).
            let inline = iname != OFFSET_ABSENT
                && iname_len != OFFSET_ABSENT
                && name == t.wrapping_add(iname as usize);
            if inline {
                let mut k = 0;
                while k < INLINE_MAX / 8 {
                    if 8 * (k as u32 + 1) <= iname_len {
                        // SAFETY: a typed load within the inline name; the window has 128
                        // bytes.
                        unsafe {
                            let v = *(t.wrapping_add(iname as usize + 8 * k) as *const u64);
                            store_u64(win.add(8 + 8 * k), v);
                        }
                    }
                    k += 1;
                }
            }
            // SAFETY: a typed load of `d_name.len` (an unsigned int).
            let len = unsafe { *(t.wrapping_add(off_len as usize) as *const u32) } as u64;
            (
                [typed_ptr(t, off_d_parent) as u64, len, name as u64],
                inline.then_some(8),
            )
        } else {
            let (f, lo) = fields_in::<3, DENTRY_WINDOW>(win, d, [off_d_parent, off_len, off_name]);
            // Where the name starts in the window, if it is the dentry's inline name.
            let src = lo.map(|lo| (f[2] as usize).wrapping_sub(d as usize + lo as usize));
            (f, src)
        };
        let parent = parent as *const u8;
        let cross = ms.sb != root_sb && (d == ms.root || parent == d);
        if !cross && (parent == d || (ms.sb == root_sb && d == top_root)) {
            // The root's file system: up to the namespace root's dentry, whatever mount
            // (bind, chroot) reached the file. Others: up to the root of the tree.
            done = true;
            break;
        }
        if cross {
            let up = ms.parent;
            if up == m {
                done = true;
                break;
            }
            d = ms.mountpoint;
            m = up;
            ms = mount_step::<TYPED>(win, m);
            continue;
        }
        // `len` is the low half of its word (an unsigned int, little-endian).
        let len = len & u32::MAX as u64;
        let name = name as *const u8;
        // SAFETY: within the value (see above).
        let pos = unsafe { core::ptr::read_volatile(pos_at) } & (2 * HALF as u64 - 1);
        // Leaves room for openat2's `open_how` before the path in payload 1.
        let floor = (HALF - KPATH_MAX_BYTES) as u64;
        if len == 0 || len > NAME_MAX as u64 || name.is_null() || pos < len + 1 + floor {
            return None;
        }
        let at = ((pos - len - 1) as usize) & (HALF - 1);
        // A short name lives in the dentry itself: the window then holds it whole.
        let inline = src.and_then(|src| {
            (len <= INLINE_MAX as u64
                && (8..=(DENTRY_WINDOW as u64 - len) as usize).contains(&src)
                && at >= INLINE_MAX)
                .then_some(src)
        });
        if let Some(src) = inline {
            // Five words that end where the name ends, right to left: the name's bytes land
            // in place, the rest left of it, where the walk has written nothing yet ('/' and
            // the names above overwrite it). A word holding a byte of the name starts at most
            // 7 bytes before the name, so inside the window (the name starts 8 bytes in or more);
            // others read whatever the masked offset gives.
            let end = src + len as usize;
            let mut k = 1;
            while k <= INLINE_MAX / 8 {
                // SAFETY: the window's offset is below 128 (in the value); the name's end is
                // at + 1 + len with at >= INLINE_MAX, so the store lands in [0, HALF).
                unsafe {
                    let v = load_u64(win.add(end.wrapping_sub(8 * k) & 0x7f));
                    store_u64(buf.add((at + 1 + len as usize - 8 * k) & (HALF - 1)), v);
                }
                k += 1;
            }
        }
        // SAFETY: at < HALF; the name (at most NAME_MAX bytes) lands below HALF + NAME_MAX + 1,
        // inside the 2 * HALF value.
        unsafe {
            *buf.add(at) = b'/';
            // The size goes through map memory, as the position does: the compiler keeps the
            // mask (6.12's verifier loses the bound of the check above otherwise) and no
            // stack slot holds a per-path value (6.1's verifier then explodes on the loop).
            core::ptr::write_volatile(len_at, len);
            let size = (core::ptr::read_volatile(len_at) as u32) & NAME_MAX;
            if inline.is_none() && raw_read(buf.add(at + 1) as *mut _, size, name as *const _) != 0
            {
                return None;
            }
            core::ptr::write_volatile(pos_at, at as u64);
        }
        d = parent;
    }
    if !done {
        return None;
    }
    // SAFETY: within the value.
    let mut pos = (unsafe { core::ptr::read_volatile(pos_at) } as usize) & (2 * HALF - 1);
    if pos == HALF {
        pos = HALF - 1;
        // SAFETY: within the value.
        unsafe { *buf.add(pos) = b'/' };
    }
    if pos >= HALF {
        return None;
    }
    Some(Kpath {
        // SAFETY: pos < HALF.
        src: unsafe { buf.add(pos & (HALF - 1)) },
        len: HALF - pos,
        // SAFETY: pos >= HALF - KPATH_MAX_BYTES > 4: the bytes before the path, which the
        // walk does not use; masked for the verifier.
        key: unsafe { buf.add(pos.wrapping_sub(4) & (HALF - 1)) },
    })
}

/// Appends `k` (or, when None, marks the walk as failed) to payload 1 of an open record:
/// after openat2's `open_how`, which must then be whole.
#[inline(always)]
pub fn attach(rec: &mut Record, k: Option<Kpath>, openat2: bool) {
    let Some(k) = k else {
        rec.header().flags |= FLAG_KPATH_CUT;
        return;
    };
    let before = rec.header().len1 as usize;
    let at = if openat2 {
        if before != OPEN_HOW_LEN as usize {
            rec.header().flags |= FLAG_KPATH_CUT;
            return;
        }
        OPEN_HOW_LEN as usize
    } else {
        0
    };
    let n = k.len & (HALF - 1);
    if n == 0 || n > KPATH_MAX_BYTES {
        rec.header().flags |= FLAG_KPATH_CUT;
        return;
    }
    let dst = rec.payload_dst(1);
    // SAFETY: payload 1 has PAYLOAD_MAX bytes of scratch after it; at + n < PAYLOAD_MAX (the
    // size is masked again after a read the compiler cannot fold, for older verifiers).
    let r = unsafe {
        let size = (core::ptr::read_volatile(&n) & (HALF - 1)) as u32;
        raw_read(dst.add(at) as *mut _, size, k.src as *const _)
    };
    let h = rec.header();
    if r != 0 {
        h.flags |= FLAG_KPATH_CUT;
        return;
    }
    h.len1 = (at + n) as u16;
    h.flags |= FLAG_KPATH;
}
