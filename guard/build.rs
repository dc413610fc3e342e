//! Builds the eBPF programs (guard-ebpf's bin target) for the BPF target with the nightly
//! toolchain and bpf-linker, and leaves the object in OUT_DIR for `include_bytes!`.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
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
        .map_err(|e| anyhow::anyhow!("building the eBPF programs failed: {e:#}\nhint: run `bash integration/setup.sh` (needs the nightly's rust-src and bpf-linker)"))
}
