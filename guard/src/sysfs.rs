//! Where the kernel's pseudo-filesystems are: the cgroup2 mount, securityfs (the active LSM
//! list) and tracefs. Low level: the probes, the policy runtime, hardening and `guard doctor`
//! all read these, so it imports nothing of theirs.

use std::path::Path;

/// Where the active LSM list is read.
pub const LSM_LIST: &str = "/sys/kernel/security/lsm";

/// Why the active LSM list could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LsmListError {
    #[error("securityfs not mounted and mounting it failed: {0}")]
    Mount(nix::Error),
    #[error("cannot read {LSM_LIST}: {0}")]
    Read(std::io::Error),
}

/// The cgroup2 mount point, from /proc/self/mountinfo.
pub fn cgroup2_mount() -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    crate::state::procfs::parse_cgroup2_mount(&info)
        .map(|m| m.mount_point.to_string_lossy().into_owned())
}

/// Reads the active LSM list, mounting securityfs first if it is not mounted.
pub fn lsm_list() -> Result<String, LsmListError> {
    let path = Path::new(LSM_LIST);
    if !path.exists() {
        nix::mount::mount(
            Some("securityfs"),
            "/sys/kernel/security",
            Some("securityfs"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(LsmListError::Mount)?;
    }
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(LsmListError::Read)
}

/// aya resolves tracepoint ids through tracefs; mount it where the kernel expects it if absent.
pub fn ensure_tracefs() -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = Path::new("/sys/kernel/tracing");
    if dir.join("events").exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    nix::mount::mount(
        Some("tracefs"),
        dir,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("tracefs is not mounted and mounting it at /sys/kernel/tracing failed")
}

/// Where bpffs is mounted on a systemd host; pins of policy maps live below it.
pub const BPFFS: &str = "/sys/fs/bpf";

/// Whether `dir` is on a bpf filesystem (pins need one).
pub fn is_bpffs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::BPF_FS_MAGIC)
}

/// Pins below /sys/fs/bpf need bpffs there; a fresh host (no systemd mount unit) may lack it,
/// so mount it, as systemd would. A pin directory elsewhere must already be on bpffs.
pub fn ensure_bpffs(pin_dir: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let root = Path::new(BPFFS);
    if !pin_dir.starts_with(root) || is_bpffs(root) {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("bpffs is not mounted at /sys/fs/bpf and mounting it there failed")
}
