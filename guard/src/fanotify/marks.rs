//! Marks and the answer's rule table, built from each bound workload's policy resolved in the
//! workload's root (`/proc/<pid>/root`, `policy::resolve`).
//!
//! - The workload's root filesystem (a container's own overlay superblock) gets one
//!   `FAN_MARK_FILESYSTEM` mark: every open and exec on it, through any mount or name, asks.
//! - Every rule's file, each file listed below a `DIR/**` directory and each directory of it
//!   (also for its direct children) gets an inode mark in a second group, the rule group: the
//!   first group may ignore a file after answering (`mod.rs`), the rule group only a sealed
//!   file no policy denies reading (whose writes the kernel refuses before asking). A
//!   workload whose root is the host's root gets these inode marks only, so the host's own
//!   opens do not all wait on the agent.
//! - Every file a `deny_write` rule covers, enforced or not (a rule's file, each file listed
//!   below its `DIR/**` directory) gets a `FAN_MODIFY` mark in the changes group
//!   (`sys::init_changes`, `modify.rs`), with its identity as that group reports it.

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsFd, AsRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::PathBuf,
};

use guard_ebpf::path_bits;
use tracing::debug;

use super::{
    answer::{Rules, Subtree, Watched},
    seal,
    sys::{self, Fid, Target},
};
use crate::policy::{
    PathRule, Policy,
    resolve::{FileId, file_id, kernel_dev, resolve_in},
};

/// Where images keep their dynamic loaders (glibc and musl, x86_64 and i386); symlinks are
/// followed inside the workload's root, so each names the loader file itself.
pub const LOADERS: [&str; 8] = [
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/usr/lib64/ld-linux-x86-64.so.2",
    "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
    "/lib/ld-musl-x86_64.so.1",
    "/usr/lib/ld-musl-x86_64.so.1",
    "/lib/ld-linux.so.2",
    "/lib/ld-musl-i386.so.1",
];

/// Files listed per `DIR/**` directory (so hard links to them elsewhere still match); beyond
/// this, files below the directory match by path only.
pub const SUBTREE_FILES: usize = 8192;
/// Depth of that listing.
const SUBTREE_DEPTH: usize = 16;
/// The files below one enforced `deny_write` `DIR/**` directory that are sealed (`seal.rs`):
/// all of them when they are at most this many and this many bytes (sealing copies each up to
/// the container's layer once), none otherwise (then their opens are asked every time).
pub const SEAL_SUBTREE_FILES: usize = 2048;
pub const SEAL_SUBTREE_BYTES: u64 = 64 << 20;
/// `CAP_LINUX_IMMUTABLE`: a workload that may hold it can lift a seal.
const CAP_LINUX_IMMUTABLE: u32 = 9;
/// Inode marks in the rule group for files and directories listed below `DIR/**` ones; past
/// it, new ones are not marked there (the first group then decides them on every open, never
/// ignoring them). A rule's own file is always marked.
pub const RULE_MARKS_MAX: usize = 65_536;

/// What the rule group marks, per workload cgroup. A mark holds its inode, but not the
/// identity across filesystems: a container's overlay is unmounted with it (its marks go) and
/// the next container's overlay may get the same anonymous device number, so its files have
/// the same (device, inode) as the dead one's. Kept per cgroup (ids are never reused) and
/// dropped with the workload, so a new container's files are always marked afresh. The
/// changes group's marks (`Target::Changes`) are kept the same way, with each file's identity
/// as that group reports it and its path in the workload.
#[derive(Debug, Default)]
pub struct Marked {
    by_cgroup: std::collections::HashMap<u64, HashSet<FileId>>,
    total: usize,
    watches: std::collections::HashMap<u64, HashMap<FileId, (Fid, String)>>,
    watch_total: usize,
}

impl Marked {
    /// Forgets the workloads not in `live`.
    fn retain(&mut self, live: &HashSet<u64>) {
        self.by_cgroup.retain(|cg, _| live.contains(cg));
        self.total = self.by_cgroup.values().map(HashSet::len).sum();
        self.watches.retain(|cg, _| live.contains(cg));
        self.watch_total = self.watches.values().map(HashMap::len).sum();
    }

    /// Every file marked for some live workload.
    fn all(&self) -> HashSet<FileId> {
        self.by_cgroup.values().flatten().copied().collect()
    }

    /// Every file the changes group watches for some live workload.
    fn watched(&self) -> HashMap<Fid, Watched> {
        let mut out = HashMap::new();
        for (file, (fid, path)) in self.watches.values().flatten() {
            out.entry(fid.clone()).or_insert_with(|| Watched {
                file: *file,
                path: path.clone(),
            });
        }
        out
    }
}

/// A bound workload the marker covers: its cgroup, a process in it (whose root is the
/// workload's), and its policy.
pub struct Workload<'a> {
    pub cgroup_id: u64,
    pub pid: u32,
    pub policy_id: u32,
    pub policy: &'a Policy,
    /// The policy is enforced (its mode, and the agent not `--detect-only`).
    pub enforce: bool,
    /// The cgroup is a container's: its root is never the host's (a process seen there before
    /// runc's pivot_root still shows the host's root, which must not be marked for it).
    pub container: bool,
}

/// Whether the policy has anything the permission events decide.
pub fn wants_marks(p: &Policy) -> bool {
    !p.exec.deny.is_empty()
        || p.exec.allow.is_some()
        || p.exec.deny_new_binaries
        || !p.open.deny_read.is_empty()
        || !p.open.deny_write.is_empty()
}

/// The path the kernel prints for an open file (`/proc/self/fd/N`): for a file of another mount
/// namespace, relative to its mount's root, which is how the answer sees event files.
pub fn fd_path(fd: &impl AsRawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .and_then(|p| p.into_os_string().into_string().ok())
}

/// An entry listed below a `DIR/**` directory.
struct Below {
    /// Path relative to the directory (`/name/...`).
    rel: String,
    id: FileId,
    dir: bool,
    size: u64,
}

/// Entries below a directory (bounded breadth-first walk, symlinks not followed): regular
/// files and directories, with their path relative to it. The directory is read through its
/// descriptor's `/proc/self/fd` link, so names inside the workload's root resolve there.
fn list_below(dir: OwnedFd, out: &mut Vec<Below>) {
    let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut queue: std::collections::VecDeque<(PathBuf, String, usize)> =
        [(base, String::new(), 0)].into();
    while let Some((d, rel, depth)) = queue.pop_front() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            if out.len() >= SUBTREE_FILES {
                return;
            }
            let Ok(md) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let rel = format!("{rel}/{name}");
            let (id, size) = (file_id(&md), md.len());
            if md.file_type().is_file() {
                out.push(Below {
                    rel,
                    id,
                    dir: false,
                    size,
                });
            } else if md.is_dir() && depth + 1 < SUBTREE_DEPTH {
                out.push(Below {
                    rel: rel.clone(),
                    id,
                    dir: true,
                    size,
                });
                queue.push_back((e.path(), rel, depth + 1));
            }
        }
    }
    drop(dir);
}

/// Marks `path` (in `root`) in the rule group, if it still is the file `id` resolved a
/// moment ago (a swapped name is skipped, never marked elsewhere). Remembered in `marked`:
/// a mark holds its inode, so the identity cannot be reused while marked.
#[allow(clippy::too_many_arguments)]
fn mark_rule_file(
    rule_group: &OwnedFd,
    root: &OwnedFd,
    path: &str,
    id: FileId,
    dir: bool,
    listed: bool,
    cgroup: u64,
    marked: &mut Marked,
) -> std::io::Result<bool> {
    if marked
        .by_cgroup
        .get(&cgroup)
        .is_some_and(|s| s.contains(&id))
    {
        return Ok(false);
    }
    // A rule's own file is always marked (nothing else asks about it on a volume or the host
    // root); the files and directories listed below a `DIR/**` one are bounded.
    if listed && marked.total >= RULE_MARKS_MAX {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    let (fd, md) = open_checked(root, path, id)?;
    let children = dir || md.is_dir();
    sys::mark_fd(rule_group.as_fd(), Target::Inode { children }, fd.as_fd())?;
    if marked.by_cgroup.entry(cgroup).or_default().insert(id) {
        marked.total += 1;
    }
    Ok(true)
}

/// `path` in `root` (`O_PATH`) and its metadata, if it still is the file `id` resolved a
/// moment ago (`ESTALE` for a swapped name).
fn open_checked(
    root: &OwnedFd,
    path: &str,
    id: FileId,
) -> std::io::Result<(OwnedFd, std::fs::Metadata)> {
    let fd = sys::open_in(root, path, false)?;
    let md = std::fs::File::from(fd.try_clone()?).metadata()?;
    if file_id(&md) != id {
        return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok((fd, md))
}

/// Watches the regular file `path` (in `root`) in the changes group, if it still is the file
/// `id`, so a change no open asks about (a truncate by any name, a write through a
/// descriptor opened before the policy) is reported; its identity (as that group reports
/// it) is remembered in `marked`. Bounded as the rule group's listed marks are.
fn watch_file(
    changes: &OwnedFd,
    root: &OwnedFd,
    path: &str,
    id: FileId,
    cgroup: u64,
    marked: &mut Marked,
) -> std::io::Result<bool> {
    if marked
        .watches
        .get(&cgroup)
        .is_some_and(|m| m.contains_key(&id))
    {
        return Ok(false);
    }
    if marked.watch_total >= RULE_MARKS_MAX {
        return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
    }
    let (fd, md) = open_checked(root, path, id)?;
    if !md.is_file() {
        // An exact rule on a directory: its files' changes are not its own.
        return Ok(false);
    }
    let fid = sys::fid_of(fd.as_fd())?;
    sys::mark_fd(changes.as_fd(), Target::Changes, fd.as_fd())?;
    let w = marked.watches.entry(cgroup).or_default();
    if w.insert(id, (fid, path.to_owned())).is_none() {
        marked.watch_total += 1;
    }
    Ok(true)
}

/// What one pass produced: the table, the directories to seal, and counts for the log.
#[derive(Debug, Default)]
pub struct Pass {
    pub rules: Rules,
    pub seal: seal::Plan,
    pub seals: seal::SealCounts,
    pub filesystems: usize,
    pub inodes: usize,
    pub failed: usize,
    pub missing: usize,
    /// Cgroups whose workload's own root filesystem is marked and whose rules are in the table:
    /// their opens are asked (`FAN_READY`).
    pub covered: HashSet<u64>,
    /// Files to seal that no policy denies reading or names for exec, in workloads that cannot
    /// lift a seal: once sealed, the kernel refuses every write to them, so their reads need no
    /// answer (`Rules::read_free`).
    pub read_free: HashSet<FileId>,
    /// `DIR/**` subtrees whose files are too many or too big to seal.
    pub unsealed_subtrees: usize,
    /// Files newly watched by the changes group.
    pub watched: usize,
}

/// Whether a process of the workload may hold `CAP_LINUX_IMMUTABLE` (in its bounding set), and
/// so lift a seal (unknown: yes).
fn may_lift_seals(pid: u32) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .is_none_or(|bnd| bnd & (1 << CAP_LINUX_IMMUTABLE) != 0)
}

/// Resolves each workload's policy in its root, marks what it must, and returns the table the
/// answer thread decides with. `group` gets the filesystem marks; `rule_group` inode marks on
/// every rule's file, every file listed below a `DIR/**` directory and each directory of it
/// (with its direct children), so the rule files are asked in that group whatever the first
/// group ignores. `marked` is what `rule_group` already marks (kept across passes, per
/// workload). `changes` (when the kernel gave that group) watches the files `deny_write`
/// rules cover (`Rules::watched`), enforced or not. On a container's own overlay root, an
/// enforced `deny_write` rule's file, or a `DIR/**` rule's directories and (if not too many)
/// files, go into the plan of what to seal (`seal.rs`).
pub fn build(
    group: &OwnedFd,
    rule_group: &OwnedFd,
    changes: Option<&OwnedFd>,
    workloads: &[Workload<'_>],
    marked: &mut Marked,
) -> Pass {
    let mut pass = Pass::default();
    let mut asked_devs = HashSet::new();
    marked.retain(&workloads.iter().map(|w| w.cgroup_id).collect());
    let host_root_dev = std::fs::metadata("/").map(|m| kernel_dev(m.dev())).ok();
    for w in workloads.iter().filter(|w| wants_marks(w.policy)) {
        let Ok(root) = crate::procroot::open_root(w.pid) else {
            continue;
        };
        let Some(root_dev) = root
            .try_clone()
            .ok()
            .and_then(|f| std::fs::File::from(f).metadata().ok())
            .map(|m| kernel_dev(m.dev()))
        else {
            continue;
        };
        // Detect mode refuses nothing: its would-denies come from the kernel (opens at their
        // exit, execs at `sched_process_exec`), so its files are not marked and none of its
        // opens waits; its rules stay in the table (truncate(2) is judged with it).
        let marking = w.enforce;
        if marking && w.policy.exec.deny_new_binaries {
            pass.rules.dnb_devs.insert(root_dev);
        }
        let on_host_root = Some(root_dev) == host_root_dev;
        if on_host_root && w.container {
            continue;
        }
        // Only what a `deny_write` rule covers is sealed: no statfs or mountinfo read for the
        // other policies at every walk.
        let sealing = !on_host_root
            && w.enforce
            && !w.policy.open.deny_write.is_empty()
            && seal::is_overlay(&root);
        let upper = sealing.then(|| seal::upper_dir(w.pid)).flatten();
        let read_free_here = sealing && !may_lift_seals(w.pid);
        // Not `covered` on the host's root: a container's cgroup seen before runc's
        // pivot_root shows the host's root, and its first exec must still be held.
        if marking && !on_host_root {
            match sys::mark_fd(group.as_fd(), Target::Filesystem, root.as_fd()) {
                Ok(()) => {
                    pass.filesystems += 1;
                    pass.covered.insert(w.cgroup_id);
                }
                Err(e) => {
                    pass.failed += 1;
                    debug!(pid = w.pid, "fanotify filesystem mark: {e}");
                }
            }
        }
        if marking && !w.policy.exec.deny.is_empty() {
            for path in LOADERS {
                let found = sys::open_in(&root, path, false)
                    .ok()
                    .and_then(|fd| std::fs::File::from(fd).metadata().ok());
                if let Some(md) = found {
                    pass.rules.loaders.insert(file_id(&md));
                }
            }
        }
        let res = resolve_in(&root, w.policy);
        pass.missing += res.missing.len();
        for r in &res.rules {
            let subtree = r.bits & path_bits::SUBTREE != 0;
            let text = match &r.rule {
                PathRule::Exact(p) | PathRule::Below(p) => p.as_str(),
            };
            // A change this policy denies that no open asks about (a truncate by any name, a
            // descriptor opened before) is reported (`modify.rs`): enforced, the writer is
            // killed; in detect mode it is recorded, once per process and file and not after
            // that process's open for write was (`agent/changes.rs`). Without the changes
            // group, the traced truncate's name decides.
            let watch = changes.filter(|_| r.bits & path_bits::DENY_WRITE != 0);
            let mut mark = |path: &str, id: FileId, dir: bool, listed: bool, pass: &mut Pass| {
                if let Some(g) = watch.filter(|_| !dir) {
                    match watch_file(g, &root, path, id, w.cgroup_id, marked) {
                        Ok(true) => pass.watched += 1,
                        Ok(false) => {}
                        Err(e) => {
                            pass.failed += 1;
                            debug!(pid = w.pid, rule = path, "fanotify changes mark: {e}");
                        }
                    }
                }
                if !marking {
                    return;
                }
                match mark_rule_file(
                    rule_group,
                    &root,
                    path,
                    id,
                    dir,
                    listed,
                    w.cgroup_id,
                    marked,
                ) {
                    Ok(true) => pass.inodes += 1,
                    Ok(false) => {}
                    Err(e) => {
                        pass.failed += 1;
                        debug!(pid = w.pid, rule = path, "fanotify inode mark: {e}");
                    }
                }
            };
            mark(text, r.id, subtree, false, &mut pass);
            let bits = r.bits & !path_bits::SUBTREE;
            *pass.rules.files.entry((w.policy_id, r.id)).or_default() |= bits;
            let seal_here = sealing && bits & path_bits::DENY_WRITE != 0;
            if seal_here && r.id.dev == root_dev {
                // An exact rule's file (a regular file: `seal.rs` checks) or a subtree's top.
                pass.seal.want(r.id, w.pid, text, upper.as_deref(), subtree);
                if !subtree && read_free_here {
                    pass.read_free.insert(r.id);
                }
            }
            if !subtree {
                continue;
            }
            let Ok(dir) = sys::open_in(&root, text, true) else {
                continue;
            };
            if let Some(p) = fd_path(&dir) {
                let prefix = if p.ends_with('/') { p } else { format!("{p}/") };
                let subs = pass.rules.subtrees.entry(w.policy_id).or_default();
                let s = Subtree {
                    dev: r.id.dev,
                    prefix,
                    bits,
                };
                if !subs.contains(&s) {
                    subs.push(s);
                }
            }
            let mut below = Vec::new();
            list_below(dir, &mut below);
            if below.len() >= SUBTREE_FILES
                && bits & (path_bits::DENY_READ | path_bits::EXEC_MATCH) != 0
            {
                asked_devs.insert(r.id.dev);
            }
            // The subtree's files are sealed all or none (a listing cut short: none).
            let seal_files = seal_here && below.len() < SUBTREE_FILES && {
                let (n, bytes) = below
                    .iter()
                    .filter(|b| !b.dir && b.id.dev == root_dev)
                    .fold((0, 0), |(n, bytes), b| (n + 1, bytes + b.size));
                n <= SEAL_SUBTREE_FILES && bytes <= SEAL_SUBTREE_BYTES
            };
            if seal_here && !seal_files {
                pass.unsealed_subtrees += 1;
                debug!(
                    pid = w.pid,
                    rule = text,
                    "files below too many or too big to seal"
                );
            }
            let base = text.trim_end_matches('/');
            for b in below {
                let path = format!("{base}{}", b.rel);
                if seal_here && b.id.dev == root_dev && (b.dir || seal_files) {
                    pass.seal.want(b.id, w.pid, &path, upper.as_deref(), b.dir);
                    if !b.dir && read_free_here {
                        pass.read_free.insert(b.id);
                    }
                }
                mark(&path, b.id, b.dir, true, &mut pass);
                if !b.dir {
                    *pass.rules.files.entry((w.policy_id, b.id)).or_default() |= bits;
                }
            }
        }
    }
    pass.rules.any = pass.rules.files.keys().map(|(_, f)| *f).collect();
    // A file some policy denies reading or names for exec keeps being asked (by identity: a
    // subtree whose listing was cut short may cover it by path, so none on its device is free).
    let asks = path_bits::DENY_READ | path_bits::EXEC_MATCH;
    let mut named: std::collections::HashMap<FileId, u32> = Default::default();
    for ((_, f), bits) in &pass.rules.files {
        *named.entry(*f).or_default() |= bits;
    }
    pass.read_free
        .retain(|f| named.get(f).is_some_and(|b| b & asks == 0) && !asked_devs.contains(&f.dev));
    pass.rules.rule_marked = marked.all();
    pass.rules.watched = marked.watched();
    pass.rules.watched_files = pass.rules.watched.values().map(|w| w.file).collect();
    pass
}
