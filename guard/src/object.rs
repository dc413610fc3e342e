//! The eBPF object `build.rs` builds, and its kfunc calls. aya 0.14 relocates maps and
//! BPF-to-BPF calls but not calls to kernel functions by BTF id, so the programs emit each such
//! call as a placeholder instruction (`guard_ebpf::KFUNC_CALL_PLACEHOLDER`) and the object is
//! patched with the running kernel's id before aya loads it. Only `bpf_rdonly_cast` is called
//! this way (`sys_exit_one_typed`'s path walk).

/// The eBPF object built by `build.rs`; empty in builds with `AYA_BUILD_SKIP=1` (fuzzing).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/guard-ebpf"));

/// An object's bytes in 8-byte aligned memory, as aya's ELF parser needs them.
pub struct Patched {
    words: Vec<u64>,
    len: usize,
}

impl Patched {
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` holds at least `len` initialised bytes; u8 has no alignment needs.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast::<u8>(), self.len) }
    }
}

/// `object` with the immediate of each placeholder call set to `id`, the kfunc's BTF id. With
/// `id` absent (`OFFSET_ABSENT`: the kernel has no such kfunc) the object is unchanged, and
/// the programs that make the call fail to load (`syscall_links::ExitOne` falls back).
pub fn patch_calls(object: &[u8], id: u32) -> Patched {
    let mut out = Patched {
        words: vec![0u64; object.len().div_ceil(8)],
        len: object.len(),
    };
    let bytes = out.bytes_mut();
    bytes.copy_from_slice(object);
    if id == guard_ebpf::OFFSET_ABSENT {
        return out;
    }
    let insn = guard_ebpf::KFUNC_CALL_PLACEHOLDER.to_le_bytes();
    // Every byte offset is tried (a section's offset in the file need not be a multiple of 8);
    // nothing but the placeholder holds these 8 bytes (its immediate is ours).
    let mut i = 0;
    while i + 8 <= bytes.len() {
        if bytes[i..i + 8] == insn {
            bytes[i + 4..i + 8].copy_from_slice(&id.to_le_bytes());
            i += 8;
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).filter(|w| *w == needle).count()
    }

    #[test]
    fn the_built_object_carries_the_call_and_patching_sets_its_id() {
        let object = EBPF_OBJECT;
        if object.is_empty() {
            // AYA_BUILD_SKIP=1 (fuzzing builds): there is no object to patch.
            return;
        }
        let insn = guard_ebpf::KFUNC_CALL_PLACEHOLDER.to_le_bytes();
        let calls = count(object, &insn);
        // One per typed load site: the file, each mount step and each dentry of the walk.
        assert!(calls >= 3, "{calls} placeholder kfunc calls in the object");
        let id = 0x0001_2345u32;
        let patched = patch_calls(object, id);
        let patched = patched.bytes();
        assert_eq!(patched.len(), object.len());
        assert_eq!(count(patched, &insn), 0);
        let mut want = insn;
        want[4..].copy_from_slice(&id.to_le_bytes());
        assert_eq!(count(patched, &want), calls);
        // Only those immediates changed.
        let changed = object.iter().zip(patched).filter(|(a, b)| a != b).count();
        assert!(changed <= 4 * calls, "{changed} bytes changed");
        assert_eq!(
            patch_calls(object, guard_ebpf::OFFSET_ABSENT).bytes(),
            object
        );
        assert_eq!(patched.as_ptr() as usize % 8, 0, "8-byte aligned");
    }
}
