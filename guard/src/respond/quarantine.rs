//! `quarantine_network`: cut a container's network in the kernel.
//!
//! Two `cgroup_skb` programs (ingress, egress; guard-ebpf `programs/quarantine.rs`)
//! are attached to the cgroup v2 root and drop every packet whose socket belongs to a cgroup in
//! the `QUARANTINE` map, or to a descendant of one. The map and both links are pinned under
//! [`PIN_DIR`], so a quarantine holds when the agent stops or crashes, and a restarted agent
//! adopts the pins instead of attaching twice. `guard quarantine lift` deletes the map entry.
//!
//! Four cgroup sock_addr programs at the same root (`crate::sockaddr`, pinned links
//! `quarantine_<program>_link`) also make IPv4/IPv6 `connect` (TCP, UDP, TCP Fast Open) and
//! unconnected UDP `sendmsg` fail with EPERM before any packet exists, on every kernel. Should
//! they fail to attach, the cgroup_skb drop alone still stops every handshake and datagram.

use std::{
    os::fd::AsFd,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result};
use aya::{
    EbpfLoader,
    maps::{HashMap as BpfHashMap, Map, MapData},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType,
        links::{FdLink, PinnedLink},
    },
};
use guard_ebpf::{QuarantineEntry, names};

/// Where guard pins kernel state.
pub const PIN_DIR: &str = "/sys/fs/bpf/guard";
pub const MAP_PIN: &str = "quarantine_map";
pub const INGRESS_PIN: &str = "quarantine_ingress_link";
pub const EGRESS_PIN: &str = "quarantine_egress_link";
/// Pin of the BPF LSM connect program of earlier versions, removed when found.
const LEGACY_CONNECT_PIN: &str = "quarantine_connect_link";
/// Programs of one attached quarantine set: the two packet filters and the sock_addr programs.
pub const PROGRAM_COUNT: usize = 2 + crate::sockaddr::QUARANTINE_PROGRAMS.len();

/// Pin of the link of one sock_addr quarantine program.
fn sock_addr_pin(prog: &str) -> String {
    format!("{prog}_link")
}

/// Whether quarantined workloads also get connect and sendmsg refused up front in the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectDeny {
    /// The cgroup sock_addr programs are attached (pinned).
    SockAddr,
    /// They could not attach: packets are still dropped.
    Unavailable(String),
}

/// Mounts bpffs at /sys/fs/bpf when it is not, and creates the pin directory.
pub fn ensure_pin_dir(dir: &Path) -> Result<()> {
    crate::sysfs::ensure_bpffs(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The pinned quarantine map (and, when this process attached them, nothing else to keep:
/// the links live in bpffs).
pub struct Quarantine {
    map: BpfHashMap<MapData, u64, QuarantineEntry>,
    pub pin_dir: PathBuf,
    /// True when this call attached the programs; false when it adopted existing pins.
    pub attached_now: bool,
    pub connect_deny: ConnectDeny,
}

fn open_map(path: &Path) -> Result<BpfHashMap<MapData, u64, QuarantineEntry>> {
    let data = MapData::from_pin(path)
        .with_context(|| format!("opening pinned map {}", path.display()))?;
    BpfHashMap::try_from(Map::HashMap(data)).context("pinned quarantine map has the wrong layout")
}

impl Quarantine {
    /// Attaches the programs to the cgroup v2 root (or adopts pinned ones) and opens the map.
    pub fn attach(pin_dir: &Path, cgroup2_root: &Path) -> Result<Self> {
        ensure_pin_dir(pin_dir)?;
        let map_pin = pin_dir.join(MAP_PIN);
        let ingress = pin_dir.join(INGRESS_PIN);
        let egress = pin_dir.join(EGRESS_PIN);
        if map_pin.exists() && ingress.exists() && egress.exists() {
            // Adopt: the links keep the programs attached; verify they are loadable links.
            PinnedLink::from_pin(&ingress).context("adopting the pinned ingress link")?;
            PinnedLink::from_pin(&egress).context("adopting the pinned egress link")?;
            return Ok(Self {
                map: open_map(&map_pin)?,
                pin_dir: pin_dir.to_path_buf(),
                attached_now: false,
                connect_deny: attach_connect_deny(pin_dir),
            });
        }
        // A partial set (e.g. a link pin without its map) is stale: the links would drop
        // packets by a map nobody can edit any more. Detach them and start over.
        let sock_addr_pins =
            crate::sockaddr::QUARANTINE_PROGRAMS.map(|p| pin_dir.join(sock_addr_pin(p)));
        for p in [&ingress, &egress, &pin_dir.join(LEGACY_CONNECT_PIN)]
            .into_iter()
            .chain(&sock_addr_pins)
        {
            if p.exists() {
                std::fs::remove_file(p)
                    .with_context(|| format!("removing stale {}", p.display()))?;
            }
        }
        let mut ebpf = load_object(pin_dir)?;
        let cgroup = std::fs::File::open(cgroup2_root)
            .with_context(|| format!("opening cgroup v2 root {}", cgroup2_root.display()))?;
        for (prog_name, kind, pin) in [
            (
                names::PROG_QUARANTINE_INGRESS,
                CgroupSkbAttachType::Ingress,
                &ingress,
            ),
            (
                names::PROG_QUARANTINE_EGRESS,
                CgroupSkbAttachType::Egress,
                &egress,
            ),
        ] {
            let prog: &mut CgroupSkb = ebpf
                .program_mut(prog_name)
                .with_context(|| format!("program {prog_name} missing from the object"))?
                .try_into()?;
            prog.load()
                .with_context(|| format!("loading {prog_name}"))?;
            let id = prog
                .attach(cgroup.as_fd(), kind, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {prog_name} to {}", cgroup2_root.display()))?;
            let link = prog.take_link(id)?;
            let fd_link = FdLink::try_from(link)
                .context("this kernel attached without bpf_link; cannot pin the quarantine")?;
            fd_link
                .pin(pin)
                .with_context(|| format!("pinning {}", pin.display()))?;
        }
        drop(ebpf);
        Ok(Self {
            map: open_map(&map_pin)?,
            pin_dir: pin_dir.to_path_buf(),
            attached_now: true,
            connect_deny: attach_connect_deny(pin_dir),
        })
    }

    /// Opens the pinned map only (for `guard quarantine lift/list`).
    pub fn open_pinned(pin_dir: &Path) -> Result<Self> {
        Ok(Self {
            map: open_map(&pin_dir.join(MAP_PIN))?,
            pin_dir: pin_dir.to_path_buf(),
            attached_now: false,
            connect_deny: if crate::sockaddr::QUARANTINE_PROGRAMS
                .iter()
                .all(|p| pin_dir.join(sock_addr_pin(p)).exists())
            {
                ConnectDeny::SockAddr
            } else {
                ConnectDeny::Unavailable("not attached".into())
            },
        })
    }

    /// Quarantines a cgroup (v2 id), until lifted or for `duration`.
    pub fn add(&mut self, cgroup_id: u64, duration: Option<Duration>) -> Result<()> {
        let until = match duration {
            None => 0,
            Some(d) => super::process::boot_ns_now()
                .saturating_add(d.as_nanos().min(u128::from(u64::MAX)) as u64)
                .max(1),
        };
        self.map
            .insert(
                cgroup_id,
                QuarantineEntry {
                    until_boot_ns: until,
                },
                0,
            )
            .context("adding to the quarantine map")
    }

    /// Lifts the quarantine of a cgroup; false when it was not quarantined.
    pub fn remove(&mut self, cgroup_id: u64) -> Result<bool> {
        match self.map.remove(&cgroup_id) {
            Ok(()) => Ok(true),
            Err(aya::maps::MapError::KeyNotFound) => Ok(false),
            Err(aya::maps::MapError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENOENT) =>
            {
                Ok(false)
            }
            Err(e) => Err(e).context("removing from the quarantine map"),
        }
    }

    /// Entries in force: (cgroup id, until boot ns or 0). Expired entries are removed.
    pub fn list(&mut self) -> Result<Vec<(u64, u64)>> {
        let now = super::process::boot_ns_now();
        let mut out = Vec::new();
        let mut expired = Vec::new();
        for kv in self.map.iter() {
            let (k, v) = kv.context("reading the quarantine map")?;
            if v.until_boot_ns != 0 && v.until_boot_ns <= now {
                expired.push(k);
            } else {
                out.push((k, v.until_boot_ns));
            }
        }
        for k in expired {
            let _ = self.map.remove(&k);
        }
        Ok(out)
    }

    /// Removes the links and the map pin: detaches the programs (for cleanup and tests).
    pub fn detach_pins(pin_dir: &Path) -> Result<()> {
        let sock_addr_pins = crate::sockaddr::QUARANTINE_PROGRAMS.map(sock_addr_pin);
        for p in sock_addr_pins.iter().map(String::as_str).chain([
            LEGACY_CONNECT_PIN,
            INGRESS_PIN,
            EGRESS_PIN,
            MAP_PIN,
        ]) {
            let path = pin_dir.join(p);
            if path.exists() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
        }
        Ok(())
    }
}

/// An instance of the eBPF object for the quarantine programs, sharing the pinned map.
fn load_object(pin_dir: &Path) -> Result<aya::Ebpf> {
    EbpfLoader::new()
        // Reuses a pinned map when there is one (entries survive), else creates and pins.
        .map_pin_path(names::QUARANTINE, pin_dir.join(MAP_PIN))
        // This instance only needs the quarantine programs: keep the rest small.
        .map_max_entries(names::EVENTS, 4096)
        .load(crate::object::EBPF_OBJECT)
        .context("loading the eBPF object for quarantine")
}

/// Adopts the pinned sock_addr links, or attaches and pins those missing; never fails the
/// quarantine, which holds through cgroup_skb without them.
fn attach_connect_deny(pin_dir: &Path) -> ConnectDeny {
    let legacy = pin_dir.join(LEGACY_CONNECT_PIN);
    if legacy.exists()
        && let Err(e) = std::fs::remove_file(&legacy)
    {
        tracing::warn!(pin = %legacy.display(), "removing the old connect-deny pin: {e}");
    }
    let attach = || -> Result<()> {
        let mut missing = Vec::new();
        for prog in crate::sockaddr::QUARANTINE_PROGRAMS {
            let pin = pin_dir.join(sock_addr_pin(prog));
            let adopted = pin.exists()
                && PinnedLink::from_pin(&pin)
                    .map_err(
                        |e| tracing::warn!(pin = %pin.display(), "replacing unreadable pin: {e}"),
                    )
                    .is_ok();
            if !adopted {
                let _ = std::fs::remove_file(&pin);
                missing.push((prog, pin));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut ebpf = load_object(pin_dir)?;
        let root = crate::sockaddr::open_root()?;
        for (prog, pin) in missing {
            crate::sockaddr::attach(&mut ebpf, prog, &root)?
                .pin(&pin)
                .with_context(|| format!("pinning {}", pin.display()))?;
        }
        Ok(())
    };
    match attach() {
        Ok(()) => ConnectDeny::SockAddr,
        Err(e) => ConnectDeny::Unavailable(format!("{e:#}")),
    }
}

/// Quarantine programs loaded in the kernel (attached through pins or held by a process):
/// [`PROGRAM_COUNT`] while a quarantine set is attached; more would mean a duplicate attach.
pub fn loaded_program_count() -> usize {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| {
            p.name_as_str()
                .is_some_and(|n| n.starts_with("quarantine_"))
        })
        .count()
}

/// The cgroup v2 mount point of this host.
pub fn cgroup2_root() -> Result<PathBuf> {
    crate::sockaddr::cgroup2_root()
}
