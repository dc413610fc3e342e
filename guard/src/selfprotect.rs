//! Self-protection of the agent from containers (issue 9; docs/self-protection.md).
//!
//! With BPF LSM, four programs (guard-ebpf `programs/selfprotect.rs`) deny a task
//! in a container (not the agent; its pid or mount namespace is not the host's, i.e. PID 1's):
//! signals and ptrace-class access to the agent, read or write permission on guard's files and
//! pins (`PROTECTED_INODES`), and file descriptors for guard's BPF objects by id
//! (`PROTECTED_BPF_IDS`). This module fills those maps and turns the programs' denial records
//! into audit records and alerts. Without BPF LSM nothing here attaches, and the docs say what
//! that leaves.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, MapData},
};
use guard_ebpf::{
    InodeKey, MAX_PROTECTED_BPF_IDS, MAX_PROTECTED_INODES, SelfProtectConfig, bpf_id_key,
    bpf_obj_kind, names, protected_class,
};
use tracing::{info, warn};

use crate::{
    alert::{Alert, GuardInfo, Priority},
    audit::record::{self, Decision, DecisionKind, ProcessInfo, Workload},
    events::{DecisionEvent, Operation},
    workload::WorkloadInfo,
};

/// Directory levels below a protected root that are walked (config and audit directories are
/// flat or nearly so; the bound keeps a mistaken root such as `/` from costing much).
pub const MAX_DEPTH: usize = 3;

/// The programs and the LSM hooks they attach to.
const PROGRAMS: [(&str, &str); 4] = [
    (names::PROG_SELF_TASK_KILL, "task_kill"),
    (names::PROG_SELF_PTRACE, "ptrace_access_check"),
    (names::PROG_SELF_INODE, "inode_permission"),
    (names::PROG_SELF_BPF, "bpf"),
];

/// What guard protects, by class: files or directories (walked `MAX_DEPTH` deep).
#[derive(Debug, Clone, Default)]
pub struct Roots {
    /// Rules, policies, responses, outputs configuration, /etc/guard.
    pub config: Vec<PathBuf>,
    /// The audit log directory.
    pub audit: Vec<PathBuf>,
    /// bpffs pin directories (policy enforcement, quarantine).
    pub pins: Vec<PathBuf>,
    /// The agent's own cgroup directory (never the cgroup2 root).
    pub cgroup: Vec<PathBuf>,
}

impl Roots {
    fn classed(&self) -> impl Iterator<Item = (&Path, u32)> {
        let c = self
            .config
            .iter()
            .map(|p| (p.as_path(), protected_class::CONFIG));
        let a = self
            .audit
            .iter()
            .map(|p| (p.as_path(), protected_class::AUDIT));
        let p = self
            .pins
            .iter()
            .map(|p| (p.as_path(), protected_class::PINS));
        let g = self
            .cgroup
            .iter()
            .map(|p| (p.as_path(), protected_class::CGROUP));
        c.chain(a).chain(p).chain(g)
    }
}

/// A kernel `dev_t` (`MKDEV(major, minor)`, as `super_block.s_dev` holds it) from a userspace
/// `st_dev` (the `new_encode_dev` encoding `stat` returns).
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

/// The inode key the kernel programs compute for a file's metadata.
pub fn inode_key(md: &std::fs::Metadata) -> InodeKey {
    InodeKey {
        dev: kernel_dev(md.dev()),
        ino: md.ino(),
    }
}

/// One protected file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protected {
    pub path: PathBuf,
    pub class: u32,
}

/// Walks the roots (without following symlinks below a root) and returns every inode to
/// protect, at most `limit`; the flag says whether the limit cut the walk. Missing roots are
/// skipped (a rotated audit file, a pin directory not created yet).
pub fn collect(roots: &Roots, limit: usize) -> (HashMap<InodeKey, Protected>, bool) {
    let mut out: HashMap<InodeKey, Protected> = HashMap::new();
    let mut cut = false;
    for (root, class) in roots.classed() {
        // The root itself is resolved (a symlinked /etc/guard protects its target).
        let mut stack = vec![(root.to_path_buf(), 0usize, true)];
        while let Some((path, depth, follow)) = stack.pop() {
            let md = if follow {
                std::fs::metadata(&path)
            } else {
                std::fs::symlink_metadata(&path)
            };
            let Ok(md) = md else { continue };
            if md.file_type().is_symlink() {
                continue;
            }
            let key = inode_key(&md);
            if !out.contains_key(&key) {
                if out.len() >= limit {
                    cut = true;
                    break;
                }
                out.insert(
                    key,
                    Protected {
                        path: path.clone(),
                        class,
                    },
                );
            }
            if md.is_dir()
                && depth < MAX_DEPTH
                && let Ok(rd) = std::fs::read_dir(&path)
            {
                for e in rd.flatten() {
                    stack.push((e.path(), depth + 1, false));
                }
            }
        }
    }
    (out, cut)
}

/// Namespace identity of the host (PID 1): the pid namespace as the kernel names it to
/// `bpf_get_ns_current_pid_tgid` (nsfs device, inode) and the mount namespace inode.
pub fn host_namespaces(proc_root: &Path) -> Result<(u64, u64, u64)> {
    let pid = std::fs::metadata(proc_root.join("1/ns/pid"))
        .with_context(|| format!("stat {}/1/ns/pid", proc_root.display()))?;
    let mnt = std::fs::metadata(proc_root.join("1/ns/mnt"))
        .with_context(|| format!("stat {}/1/ns/mnt", proc_root.display()))?;
    Ok((kernel_dev(pid.dev()), pid.ino(), mnt.ino()))
}

/// Ids of BPF objects named in an fdinfo text (`map_id`, `prog_id`, `link_id` lines), as
/// `PROTECTED_BPF_IDS` keys. A link's fdinfo names its program too; both are kept.
pub fn fdinfo_ids(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let kind = match k.trim() {
            "map_id" => bpf_obj_kind::MAP,
            "prog_id" => bpf_obj_kind::PROG,
            "link_id" => bpf_obj_kind::LINK,
            _ => continue,
        };
        if let Ok(id) = v.trim().parse::<u32>()
            && id != 0
        {
            out.push(bpf_id_key(kind, id));
        }
    }
    out
}

/// Ids of every BPF object this process holds a descriptor for (its maps, programs and links),
/// from /proc/self/fdinfo; bounded by `MAX_PROTECTED_BPF_IDS`.
fn own_bpf_ids(out: &mut HashSet<u64>) {
    let Ok(rd) = std::fs::read_dir("/proc/self/fdinfo") else {
        return;
    };
    for e in rd.flatten().take(65_536) {
        if let Ok(text) = std::fs::read_to_string(e.path()) {
            out.extend(fdinfo_ids(&text));
        }
    }
}

/// `BPF_OBJ_GET` of a pin (read-only); the descriptor is closed on return.
fn pinned_ids(path: &Path, out: &mut HashSet<u64>) {
    use std::os::{fd::FromRawFd, unix::ffi::OsStrExt};
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_F_RDONLY: u32 = 1 << 3;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    // union bpf_attr, obj member: { u64 pathname; u32 bpf_fd; u32 file_flags; }.
    let mut attr = [0u64; 2];
    attr[0] = c.as_ptr() as u64;
    attr[1] = u64::from(BPF_F_RDONLY) << 32;
    // SAFETY: attr and the path outlive the call; the kernel reads 16 bytes of attr.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            attr.as_mut_ptr(),
            size_of_val(&attr) as u32,
        )
    };
    if fd < 0 {
        // A link pin refuses a read-only open; ask for read-write.
        attr[1] = 0;
        // SAFETY: as above.
        let fd2 = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_OBJ_GET,
                attr.as_mut_ptr(),
                size_of_val(&attr) as u32,
            )
        };
        if fd2 < 0 {
            return;
        }
        return read_fd_ids(fd2 as i32, out);
    }
    read_fd_ids(fd as i32, out);

    fn read_fd_ids(fd: i32, out: &mut HashSet<u64>) {
        // SAFETY: the kernel just returned this descriptor to us; OwnedFd closes it.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        if let Ok(text) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) {
            out.extend(fdinfo_ids(&text));
        }
        drop(owned);
    }
}

/// State of self-protection in this agent.
pub enum Status {
    /// Turned off with `--no-self-protect` (or not asked for: `guard record`).
    Off,
    /// The programs are attached and the maps filled.
    Active(SelfProtect),
    /// No BPF LSM (or a program was refused): nothing in the kernel protects the agent.
    Unavailable(String),
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Off => "off",
            Status::Active(_) => "bpf-lsm",
            Status::Unavailable(_) => "unavailable",
        }
    }
}

/// The attached self-protection: what is protected, for refreshing the maps and describing
/// denials.
pub struct SelfProtect {
    roots: Roots,
    inodes: HashMap<InodeKey, Protected>,
    bpf_ids: HashSet<u64>,
    pub agent_tgid: u32,
    /// The mount namespace is compared too (BTF has `struct mnt_namespace`).
    pub mount_ns_checked: bool,
}

fn inode_map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, InodeKey, u32>> {
    Ok(BpfHashMap::try_from(
        ebpf.map_mut(names::PROTECTED_INODES)
            .context("map PROTECTED_INODES missing from the object")?,
    )?)
}

fn id_map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, u64, u8>> {
    Ok(BpfHashMap::try_from(
        ebpf.map_mut(names::PROTECTED_BPF_IDS)
            .context("map PROTECTED_BPF_IDS missing from the object")?,
    )?)
}

/// Loads and attaches the programs (not pinned: they protect this agent and go with it).
pub fn attach_programs(ebpf: &mut Ebpf) -> Result<()> {
    for (name, hook) in PROGRAMS {
        crate::lsm::load(ebpf, name, hook)?
            .attach()
            .with_context(|| format!("attaching {name} ({hook})"))?;
    }
    Ok(())
}

impl SelfProtect {
    /// Writes the settings, fills the maps, then attaches the programs. `mount_ns_offsets`
    /// says whether the object got the BTF offsets for the mount namespace check.
    pub fn start(ebpf: &mut Ebpf, roots: Roots, mount_ns_offsets: bool) -> Result<Self> {
        let (pidns_dev, pidns_ino, mntns_ino) = host_namespaces(Path::new("/proc"))?;
        let agent_tgid = std::process::id();
        let mut sp = SelfProtect {
            roots,
            inodes: HashMap::new(),
            bpf_ids: HashSet::new(),
            agent_tgid,
            mount_ns_checked: mount_ns_offsets,
        };
        // Programs first (they hold their own fds; the ids below include them), disabled until
        // the settings are written.
        attach_programs(ebpf)?;
        sp.refresh(ebpf)?;
        let cfg = SelfProtectConfig {
            agent_tgid,
            enabled: 1,
            pidns_dev,
            pidns_ino,
            mntns_ino: if mount_ns_offsets { mntns_ino } else { 0 },
        };
        let mut m: Array<&mut MapData, SelfProtectConfig> = Array::try_from(
            ebpf.map_mut(names::SELF_PROTECT)
                .context("map SELF_PROTECT missing from the object")?,
        )?;
        m.set(0, cfg, 0).context("writing SELF_PROTECT")?;
        Ok(sp)
    }

    /// Re-walks the roots and the BPF objects: new files (a rotated audit file, a new pin) are
    /// added, gone ones removed. Returns (added, removed) inode entries.
    pub fn refresh(&mut self, ebpf: &mut Ebpf) -> Result<(usize, usize)> {
        let (now, cut) = collect(&self.roots, MAX_PROTECTED_INODES as usize);
        if cut {
            warn!(
                limit = MAX_PROTECTED_INODES,
                "self-protection: more files than the kernel map holds; the rest are unprotected"
            );
        }
        let mut m = inode_map(ebpf)?;
        let mut removed = 0;
        for k in self.inodes.keys() {
            if !now.contains_key(k) {
                let _ = m.remove(k);
                removed += 1;
            }
        }
        let mut added = 0;
        for (k, p) in &now {
            if self.inodes.get(k) != Some(p) {
                m.insert(*k, p.class, 0)
                    .with_context(|| format!("protecting {}", p.path.display()))?;
                added += 1;
            }
        }
        self.inodes = now;

        let mut ids = HashSet::new();
        own_bpf_ids(&mut ids);
        for dir in &self.roots.pins {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten().take(MAX_PROTECTED_BPF_IDS as usize) {
                    pinned_ids(&e.path(), &mut ids);
                }
            }
        }
        let mut m = id_map(ebpf)?;
        for k in self.bpf_ids.difference(&ids) {
            let _ = m.remove(k);
        }
        let mut n = self.bpf_ids.len() - self.bpf_ids.difference(&ids).count();
        let mut kept: HashSet<u64> = self.bpf_ids.intersection(&ids).copied().collect();
        let mut over = 0usize;
        for k in ids.difference(&self.bpf_ids) {
            if n >= MAX_PROTECTED_BPF_IDS as usize {
                over += 1;
                continue;
            }
            m.insert(*k, 1, 0).context("adding to PROTECTED_BPF_IDS")?;
            kept.insert(*k);
            n += 1;
        }
        if over > 0 {
            warn!(
                unprotected = over,
                "self-protection: more BPF objects than PROTECTED_BPF_IDS holds"
            );
        }
        self.bpf_ids = kept;
        Ok((added, removed))
    }

    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    pub fn bpf_object_count(&self) -> usize {
        self.bpf_ids.len()
    }

    /// The protected path with this key, if any.
    pub fn path_of(&self, dev: u64, ino: u64) -> Option<&Path> {
        self.inodes
            .get(&InodeKey { dev, ino })
            .map(|p| p.path.as_path())
    }

    /// The audit record and alert for a self-protection denial.
    pub fn decision(
        &self,
        ev: &DecisionEvent,
        workload: &WorkloadInfo,
        hostname: &str,
    ) -> (Decision, Alert) {
        describe(ev, workload, hostname, |dev, ino| {
            self.path_of(dev, ino).map(Path::to_path_buf)
        })
    }
}

/// The names of the bits set in `bits`, joined with `+`.
fn bit_words(bits: u32, names: &[(u32, &str)]) -> String {
    names
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join("+")
}

/// `PTRACE_MODE_*` bits as words.
fn ptrace_mode(mode: u32) -> String {
    bit_words(
        mode,
        &[
            (0x01, "read"),
            (0x02, "attach"),
            (0x08, "fscreds"),
            (0x10, "realcreds"),
        ],
    )
}

/// `MAY_*` mask as words.
fn may_mask(mask: u32) -> String {
    bit_words(
        mask,
        &[(4, "read"), (2, "write"), (8, "append"), (1, "exec")],
    )
}

/// The audit record and alert for a self-protection denial; `path_of` names a protected inode.
pub fn describe(
    ev: &DecisionEvent,
    workload: &WorkloadInfo,
    hostname: &str,
    path_of: impl Fn(u64, u64) -> Option<PathBuf>,
) -> (Decision, Alert) {
    let d = ev.self_protect.unwrap_or(crate::events::SelfProtectDetail {
        arg: 0,
        target: 0,
        class: 0,
    });
    let (target, access) = match ev.op {
        Operation::Signal => (
            format!("guard pid {}", d.target),
            format!("signal {}", d.arg),
        ),
        Operation::Ptrace => (
            format!("guard pid {}", d.target),
            format!("ptrace {}", ptrace_mode(d.arg)),
        ),
        Operation::ProtectedFile => {
            let (dev, ino) = ev.inode.unwrap_or((0, 0));
            let what = match u32::from(d.class) {
                protected_class::CONFIG => "config",
                protected_class::AUDIT => "audit",
                protected_class::PINS => "pins",
                protected_class::CGROUP => "agent cgroup",
                _ => "file",
            };
            let path = path_of(dev, ino)
                .map_or_else(|| format!("inode {dev}:{ino}"), |p| p.display().to_string());
            (path, format!("{what} {}", may_mask(d.arg)))
        }
        Operation::BpfObject => {
            let kind = match d.target >> 32 {
                bpf_obj_kind::MAP => "map",
                bpf_obj_kind::PROG => "prog",
                bpf_obj_kind::LINK => "link",
                _ => "object",
            };
            (
                format!("guard bpf {kind} id {}", d.target as u32),
                format!("bpf cmd {}", d.arg),
            )
        }
        // Not self-protection ops; the agent sends those to the policy stage.
        Operation::Exec
        | Operation::Open
        | Operation::Connect
        | Operation::Sendmsg
        | Operation::Write => (ev.op.as_str().to_owned(), String::new()),
    };
    let known = |s: &str| (!s.is_empty() && s != crate::state::container::NA).then(|| s.to_owned());
    let decision = Decision {
        decision: DecisionKind::Deny,
        op: record::Operation::SelfProtect,
        policy: "self-protect".into(),
        backend: "bpf-lsm".into(),
        target: target.clone(),
        access: Some(access.clone()),
        hook: Some(ev.hook),
        kill_error: None,
        workload: Workload {
            container_id: workload.container_id.clone(),
            container_name: known(&workload.name),
            image: known(&workload.image),
            k8s_namespace: known(&workload.k8s_namespace),
            k8s_pod: None,
        },
        process: ProcessInfo {
            pid: Some(ev.common.pid),
            exe: Some(ev.common.comm.clone()),
            cmdline: None,
        },
    };
    let s = |v: &str| serde_json::Value::String(v.to_owned());
    let mut fields: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    fields.insert("guard.policy".into(), s("self-protect"));
    fields.insert("guard.decision".into(), s("deny"));
    fields.insert("guard.op".into(), s(ev.op.as_str()));
    fields.insert("guard.hook".into(), s(ev.hook.as_str()));
    fields.insert("guard.target".into(), s(&target));
    fields.insert("guard.access".into(), s(&access));
    fields.insert("guard.backend".into(), s("bpf-lsm"));
    fields.insert("proc.pid".into(), ev.common.pid.into());
    fields.insert("proc.name".into(), s(&ev.common.comm));
    fields.insert("user.uid".into(), ev.common.uid.into());
    fields.insert(
        "container.id".into(),
        s(&workload
            .container_id
            .as_deref()
            .map_or_else(|| "host".to_owned(), |id| id.chars().take(12).collect())),
    );
    let output = format!(
        "Self-protection denied {} ({access}) on {target} (proc={} pid={} uid={} container={})",
        ev.op,
        ev.common.comm,
        ev.common.pid,
        ev.common.uid,
        workload.label()
    );
    let alert = Alert {
        time: crate::alert::rfc3339_ns(ev.common.time_ns),
        rule: "Guard self-protection".into(),
        priority: Priority::Critical,
        source: "guard_self_protect".into(),
        hostname: hostname.to_owned(),
        output,
        tags: vec!["guard_self_protect".into(), ev.op.as_str().to_owned()],
        output_fields: fields,
        guard: GuardInfo {
            policy: Some("self-protect".into()),
            mode: Some("enforce".into()),
            decision: Some("deny".into()),
            backend: Some("bpf-lsm".into()),
            ..GuardInfo::default()
        },
    };
    (decision, alert)
}

/// The agent's cgroup v2 directory from `/proc/self/cgroup` (`0::/path`) under the cgroup2
/// mount; None for the root cgroup, which is everyone's and is not protected.
pub fn agent_cgroup(proc_self_cgroup: &str, cgroup2_mount: &Path) -> Option<PathBuf> {
    let rel = proc_self_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim();
    let rel = rel.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return None;
    }
    Some(cgroup2_mount.join(rel))
}

/// What guard protects for `guard run`: its config and policy inputs, the audit directory,
/// the pin directories and its own cgroup. Paths that do not exist are kept (they are walked
/// again on refresh).
pub fn roots_for(
    config: impl IntoIterator<Item = PathBuf>,
    audit_dir: Option<&Path>,
    pin_dirs: impl IntoIterator<Item = PathBuf>,
    cgroup: Option<PathBuf>,
) -> Roots {
    let mut config: Vec<PathBuf> = config.into_iter().collect();
    config.push(PathBuf::from("/etc/guard"));
    let abs = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
    let mut seen = HashSet::new();
    let dedup = |v: Vec<PathBuf>, seen: &mut HashSet<PathBuf>| -> Vec<PathBuf> {
        v.into_iter()
            .map(abs)
            .filter(|p| seen.insert(p.clone()))
            .collect()
    };
    let config = dedup(config, &mut seen);
    let audit = dedup(
        audit_dir.map(Path::to_path_buf).into_iter().collect(),
        &mut seen,
    );
    let pins = dedup(pin_dirs.into_iter().collect(), &mut seen);
    let cgroup = dedup(cgroup.into_iter().collect(), &mut seen);
    Roots {
        config,
        audit,
        pins,
        cgroup,
    }
}

/// Logs what is protected (startup).
pub fn log_status(status: &Status) {
    match status {
        Status::Active(sp) => info!(
            inodes = sp.inode_count(),
            bpf_objects = sp.bpf_object_count(),
            mount_ns_checked = sp.mount_ns_checked,
            "self-protection active (bpf-lsm): containers cannot signal or ptrace the agent, read its config, policies or audit log, or touch its pins"
        ),
        Status::Off => info!("self-protection off (--no-self-protect)"),
        Status::Unavailable(why) => warn!(
            "self-protection unavailable (no BPF LSM): nothing in the kernel stops a container that can reach the agent from signalling it or reading its files; see docs/self-protection.md: {why}"
        ),
    }
}

/// Ids in a `HashMap` view, for tests.
#[cfg(test)]
pub(crate) fn class_counts(m: &HashMap<InodeKey, Protected>) -> HashMap<u32, usize> {
    let mut out = HashMap::new();
    for p in m.values() {
        *out.entry(p.class).or_default() += 1;
    }
    out
}

#[cfg(test)]
mod tests;
