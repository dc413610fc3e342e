//! Builds the eBPF programs (guard-ebpf's bin target) for the BPF target with the nightly
//! toolchain and bpf-linker, and leaves the object in OUT_DIR for `include_bytes!`.
//!
//! `AYA_BUILD_SKIP=1` (aya-build's own switch) skips the eBPF build and embeds an empty object:
//! only for builds that never load the programs, i.e. the fuzz targets (integration/fuzz.sh sets
//! it; fuzz/README.md). Such a guard refuses to start the agent.
fn main() -> anyhow::Result<()> {
    // Read when the script runs, not baked in when it is compiled: a build directory copied
    // to another checkout (or worktree) must build that checkout's programs.
    let manifest = std::env::var("CARGO_MANIFEST_DIR")?;
    println!("cargo:rerun-if-env-changed=CARGO_MANIFEST_DIR");
    let root = std::path::Path::new(&manifest)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("guard has no parent directory"))?
        .join("guard-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", root.display()))?
        .to_owned();
    let package = aya_build::Package {
        name: "guard-ebpf",
        root_dir: &root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
        .map_err(|e| anyhow::anyhow!("building the eBPF programs failed: {e:#}\nhint: run `bash integration/setup.sh` (needs the nightly's rust-src and bpf-linker)"))?;
    // aya-build returned without building (and said so in a cargo warning): embed no object.
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true")) {
        let out = std::env::var_os("OUT_DIR").ok_or_else(|| anyhow::anyhow!("OUT_DIR not set"))?;
        std::fs::write(std::path::Path::new(&out).join("guard-ebpf"), b"")?;
    }
    Ok(())
}
