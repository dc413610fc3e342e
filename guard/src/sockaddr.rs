//! Attaching the cgroup sock_addr programs (guard-ebpf `programs/sockaddr.rs` for policies,
//! `programs/quarantine.rs` for the network quarantine) at the cgroup v2 root. Shared by
//! `probes` (policy enforcement) and `respond::quarantine`; imports only `state::procfs`.
//!
//! One attachment at the root covers every cgroup below it, including those created later, on
//! every kernel (no BPF LSM needed). Attachments are bpf_links, which the kernel always adds in
//! `BPF_F_ALLOW_MULTI` mode: programs others attach (at the root or below) keep running, and
//! ours, at the root, run after those of descendant cgroups, so they see the final destination.

use std::{os::fd::AsFd, path::PathBuf};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    programs::{CgroupAttachMode, CgroupSockAddr, links::FdLink},
};
use guard_ebpf::names;

/// The policy programs: IPv4/IPv6 connect (TCP, UDP, TCP Fast Open) and unconnected UDP sendmsg.
pub const POLICY_PROGRAMS: [&str; 4] = [
    names::PROG_POLICY_CONNECT4,
    names::PROG_POLICY_CONNECT6,
    names::PROG_POLICY_SENDMSG4,
    names::PROG_POLICY_SENDMSG6,
];

/// The quarantine's up-front refusal of the same operations.
pub const QUARANTINE_PROGRAMS: [&str; 4] = [
    names::PROG_QUARANTINE_CONNECT4,
    names::PROG_QUARANTINE_CONNECT6,
    names::PROG_QUARANTINE_SENDMSG4,
    names::PROG_QUARANTINE_SENDMSG6,
];

/// The cgroup v2 mount point of this host.
pub fn cgroup2_root() -> Result<PathBuf> {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").context("reading mountinfo")?;
    crate::state::procfs::parse_cgroup2_mount(&mi)
        .map(|m| m.mount_point)
        .context("no cgroup2 mount on this host")
}

/// Loads program `name` of `ebpf` (once) and attaches it to `cgroup` through a bpf_link; the
/// link is returned for the caller to pin (dropping it detaches).
pub fn attach(ebpf: &mut Ebpf, name: &str, cgroup: impl AsFd) -> Result<FdLink> {
    let prog: &mut CgroupSockAddr = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the object"))?
        .try_into()?;
    if prog.fd().is_err() {
        prog.load().with_context(|| format!("loading {name}"))?;
    }
    // A bpf_link attachment: the kernel takes no flags and always multi-attaches.
    let id = prog
        .attach(cgroup, CgroupAttachMode::Single)
        .with_context(|| format!("attaching {name} to the cgroup v2 root"))?;
    FdLink::try_from(prog.take_link(id)?).map_err(|e| {
        anyhow::anyhow!("this kernel attached {name} without bpf_link, so it cannot be pinned: {e}")
    })
}

/// Opens the cgroup v2 root for [`attach`].
pub fn open_root() -> Result<std::fs::File> {
    let root = cgroup2_root()?;
    std::fs::File::open(&root)
        .with_context(|| format!("opening the cgroup v2 root {}", root.display()))
}
