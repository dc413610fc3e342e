//! Marks and the answer's rule table, built from each bound workload's policy resolved in the
//! workload's root (`/proc/<pid>/root`, `policy::resolve`).
//!
//! - The workload's root filesystem (a container's own overlay superblock) gets one
//!   `FAN_MARK_FILESYSTEM` mark: every open and exec on it, through any mount or name, asks.
//! - A rule's file on another filesystem (a volume) gets an inode mark (a directory also for
//!   its direct children). A workload whose root is the host's root gets inode marks only, so
//!   the host's own opens do not all wait on the agent.

use std::{
    os::fd::{AsFd, AsRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::PathBuf,
};

use guard_ebpf::path_bits;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use tracing::debug;

use super::{
    answer::{Rules, Subtree},
    sys::{self, Target},
};
use crate::policy::{
    Policy,
    resolve::{FileId, file_id, kernel_dev, resolve_in},
};

/// Files listed per `DIR/**` directory (so hard links to them elsewhere still match); beyond
/// this, files below the directory match by path only.
pub const SUBTREE_FILES: usize = 8192;
/// Depth of that listing.
const SUBTREE_DEPTH: usize = 16;

/// A bound workload the marker covers: its cgroup, a process in it (whose root is the
/// workload's), and its policy.
pub struct Workload<'a> {
    pub cgroup_id: u64,
    pub pid: u32,
    pub policy_id: u32,
    pub policy: &'a Policy,
}

/// Whether the policy has anything the permission events decide.
pub fn wants_marks(p: &Policy) -> bool {
    !p.exec.deny.is_empty()
        || p.exec.allow.is_some()
        || p.exec.deny_new_binaries
        || !p.open.deny_read.is_empty()
        || !p.open.deny_write.is_empty()
}

fn open_in(root: &OwnedFd, path: &str, dir: bool) -> nix::Result<OwnedFd> {
    let rel = path.trim_start_matches('/').trim_end_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let mut flags = OFlag::O_CLOEXEC;
    flags |= if dir {
        OFlag::O_RDONLY | OFlag::O_DIRECTORY
    } else {
        OFlag::O_PATH
    };
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

/// The path the kernel prints for an open file (`/proc/self/fd/N`): for a file of another mount
/// namespace, relative to its mount's root, which is how the answer sees event files.
pub fn fd_path(fd: &impl AsRawFd) -> Option<String> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .ok()
        .and_then(|p| p.into_os_string().into_string().ok())
}

/// Regular files below a directory (bounded breadth-first walk, symlinks not followed). The
/// directory is read through its descriptor's `/proc/self/fd` link, so names inside the
/// workload's root resolve there.
fn list_files(dir: OwnedFd, out: &mut Vec<FileId>) {
    let base = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut queue: std::collections::VecDeque<(PathBuf, usize)> = [(base, 0)].into();
    while let Some((d, depth)) = queue.pop_front() {
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
            if md.file_type().is_file() {
                out.push(file_id(&md));
            } else if md.is_dir() && depth + 1 < SUBTREE_DEPTH {
                queue.push_back((e.path(), depth + 1));
            }
        }
    }
    drop(dir);
}

/// What one pass produced: the table, and counts for the log.
#[derive(Debug, Default)]
pub struct Pass {
    pub rules: Rules,
    pub filesystems: usize,
    pub inodes: usize,
    pub failed: usize,
    pub missing: usize,
}

/// Resolves each workload's policy in its root, marks what it must, and returns the table the
/// answer thread decides with.
pub fn build(group: &OwnedFd, workloads: &[Workload<'_>]) -> Pass {
    let mut pass = Pass::default();
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
        let on_host_root = Some(root_dev) == host_root_dev;
        if !on_host_root {
            match sys::mark_fd(group.as_fd(), Target::Filesystem, root.as_fd()) {
                Ok(()) => pass.filesystems += 1,
                Err(e) => {
                    pass.failed += 1;
                    debug!(pid = w.pid, "fanotify filesystem mark: {e}");
                }
            }
        }
        let res = resolve_in(&root, w.policy);
        pass.missing += res.missing.len();
        for r in &res.rules {
            let subtree = r.bits & path_bits::SUBTREE != 0;
            let text = match &r.rule {
                crate::policy::PathRule::Exact(p) | crate::policy::PathRule::Below(p) => p.as_str(),
            };
            if on_host_root || r.id.dev != root_dev {
                let marked = open_in(&root, text, false)
                    .map_err(std::io::Error::from)
                    .and_then(|fd| {
                        // The rule must still name the file resolved a moment ago.
                        let md = std::fs::File::from(fd.try_clone()?).metadata()?;
                        if file_id(&md) != r.id {
                            return Err(std::io::Error::from_raw_os_error(libc::ESTALE));
                        }
                        sys::mark_fd(
                            group.as_fd(),
                            Target::Inode { children: subtree },
                            fd.as_fd(),
                        )
                    });
                match marked {
                    Ok(()) => pass.inodes += 1,
                    Err(e) => {
                        pass.failed += 1;
                        debug!(pid = w.pid, rule = text, "fanotify inode mark: {e}");
                    }
                }
            }
            let bits = r.bits & !path_bits::SUBTREE;
            *pass.rules.files.entry((w.policy_id, r.id)).or_default() |= bits;
            if !subtree {
                continue;
            }
            let Ok(dir) = open_in(&root, text, true) else {
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
            let mut files = Vec::new();
            list_files(dir, &mut files);
            for f in files {
                *pass.rules.files.entry((w.policy_id, f)).or_default() |= bits;
            }
        }
    }
    pass.rules.any = pass.rules.files.keys().map(|(_, f)| *f).collect();
    pass
}
