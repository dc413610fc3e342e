//! Loading BPF LSM programs against the kernel's BTF. Shared by the exec, policy and
//! self-protection programs; imports only `btf` so every user points down to it.

use anyhow::{Context, Result};
use aya::{Ebpf, programs::Lsm};

/// The kernel's BTF as aya needs it to load LSM programs: the process-wide parse of
/// [`crate::btf::kernel_aya`] (parsing it is most of an agent start in an unoptimised build
/// under emulation, and the exec, policy, self-protection and quarantine programs all need it).
pub fn btf() -> Result<&'static aya::Btf> {
    crate::btf::kernel_aya()
        .map_err(|e| anyhow::anyhow!("reading kernel BTF for the LSM hooks: {e}"))
}

/// Loads the LSM program `name` for `hook`. A kernel refusal is reported as the syscall's
/// error alone, plus the verifier's log when it wrote one (aya's text repeats the error).
pub fn load<'a>(ebpf: &'a mut Ebpf, name: &str, hook: &str) -> Result<&'a mut Lsm> {
    let btf = btf()?;
    let prog: &mut Lsm = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    let what = if name == hook {
        format!("the LSM program {name}")
    } else {
        format!("the LSM program {name} ({hook})")
    };
    match prog.load(hook, btf) {
        Ok(()) => Ok(prog),
        Err(aya::programs::ProgramError::LoadError {
            io_error,
            verifier_log,
        }) => {
            let log = verifier_log.to_string();
            let log = log.trim();
            let tail = if log.is_empty() {
                String::new()
            } else {
                format!("; verifier: {log}")
            };
            anyhow::bail!("loading {what}: the kernel refused it (BPF_PROG_LOAD: {io_error}){tail}")
        }
        Err(e) => Err(e).with_context(|| format!("loading {what}")),
    }
}

/// Whether this kernel has the LSM hook `hook` (its `bpf_lsm_<hook>` attach point in BTF).
pub fn has_hook(hook: &str) -> bool {
    btf().is_ok_and(|b| {
        b.id_by_type_name_kind(&format!("bpf_lsm_{hook}"), aya_obj::btf::BtfKind::Func)
            .is_ok()
    })
}
