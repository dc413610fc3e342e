//! cgroup id → cgroup path → container id.
//!
//! Events carry the cgroup v2 id (`bpf_get_current_cgroup_id()`, the inode of the cgroup v2
//! directory). To name the container we need the directory's path. Resolution, in order:
//! 1. the cache, keyed by cgroup id (cgroup ids are not reused while the host is up, so a
//!    cached answer stays right; a removed cgroup's entry is dropped by
//!    [`CgroupCache::prune_removed`], which the agent calls every few seconds);
//! 2. `/proc/<event pid>/cgroup`, accepted only when the stat of that directory has the
//!    event's cgroup id (the process may have moved, or exited and its pid been reused);
//! 3. a walk of the cgroup2 mount that indexes every directory by inode, at most once per
//!    `walk_interval`, for processes already gone by the time their event is handled.
//!
//! Cost on the event path: a hit is a hash lookup; a miss is one small /proc read and one
//! stat; a walk is bounded by `max_walk_dirs`.

use std::{
    collections::HashMap,
    os::unix::fs::MetadataExt,
    path::Path,
    time::{Duration, Instant},
};

use crate::events::CgroupId;

use super::{
    Pid,
    container::{CgroupContainer, ContainerId, parse_cgroup_path},
    procfs::{Cgroup2Mount, ProcFs},
};

#[derive(Debug, Clone, Copy)]
pub struct CgroupCacheConfig {
    pub max_entries: usize,
    pub walk_interval: Duration,
    pub max_walk_dirs: usize,
    pub max_walk_depth: usize,
}

impl Default for CgroupCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 16_384,
            walk_interval: Duration::from_secs(1),
            max_walk_dirs: 100_000,
            max_walk_depth: 32,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupInfo {
    pub path: Box<str>,
    /// `None`: a host cgroup, not a container.
    pub container: Option<CgroupContainer>,
}

pub struct CgroupCache {
    cfg: CgroupCacheConfig,
    map: HashMap<CgroupId, CgroupInfo>,
    last_walk: Option<Instant>,
}

impl CgroupCache {
    pub fn new(cfg: CgroupCacheConfig) -> Self {
        Self {
            cfg,
            map: HashMap::new(),
            last_walk: None,
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn get(&self, id: CgroupId) -> Option<&CgroupInfo> {
        self.map.get(&id)
    }

    /// Records a known (id, path) pair, e.g. from /proc seeding.
    pub fn insert(&mut self, id: CgroupId, path: &str) {
        if !self.map.contains_key(&id) && self.map.len() >= self.cfg.max_entries.max(1) {
            // Any entry will do: a dropped one is re-resolved on its next event.
            if let Some(k) = self.map.keys().next().copied() {
                self.map.remove(&k);
            }
        }
        self.map.insert(
            id,
            CgroupInfo {
                path: path.into(),
                container: parse_cgroup_path(path),
            },
        );
    }

    /// Forgets cgroups whose directory is gone (or now has another inode), so that a host
    /// creating and removing many cgroups (short-lived containers) does not keep their entries
    /// until eviction. One stat per entry. Returns the number removed and the containers none
    /// of whose cgroups is left.
    pub fn prune_removed(&mut self, fs: &ProcFs) -> (usize, Vec<ContainerId>) {
        let Some(mount) = fs.cgroup2.as_ref() else {
            return (0, Vec::new());
        };
        let before = self.map.len();
        let mut gone = Vec::new();
        self.map.retain(|id, info| {
            let live = mount
                .dir_of(&info.path)
                .and_then(|d| std::fs::metadata(d).ok())
                .is_some_and(|md| md.ino() == id.0);
            if !live && let Some(c) = &info.container {
                gone.push(c.id.clone());
            }
            live
        });
        if !gone.is_empty() {
            let left: std::collections::HashSet<&ContainerId> = self
                .map
                .values()
                .filter_map(|i| i.container.as_ref().map(|c| &c.id))
                .collect();
            gone.retain(|c| !left.contains(c));
            gone.sort();
            gone.dedup();
        }
        (before - self.map.len(), gone)
    }

    /// Resolves a cgroup id; see the module comment for the order.
    pub fn resolve(&mut self, fs: &ProcFs, id: CgroupId, pid: Option<Pid>) -> Option<&CgroupInfo> {
        if !self.map.contains_key(&id) {
            if let Some((path, Some(got))) = pid.and_then(|p| fs.cgroup(p))
                && got == id
            {
                self.insert(id, &path);
            } else if let Some(mount) = fs.cgroup2.as_ref() {
                let due = self
                    .last_walk
                    .is_none_or(|t| t.elapsed() >= self.cfg.walk_interval);
                if due {
                    self.last_walk = Some(Instant::now());
                    self.walk(mount);
                }
            }
        }
        self.map.get(&id)
    }

    /// Indexes the cgroup2 tree by inode, breadth-first, within the configured bounds.
    fn walk(&mut self, mount: &Cgroup2Mount) {
        let mut queue = std::collections::VecDeque::from([(mount.mount_point.clone(), 0usize)]);
        let mut seen = 0usize;
        while let Some((dir, depth)) = queue.pop_front() {
            seen += 1;
            if seen > self.cfg.max_walk_dirs {
                break;
            }
            self.index_dir(mount, &dir);
            if depth >= self.cfg.max_walk_depth {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in rd.flatten() {
                // file_type does not follow symlinks; cgroupfs has none, but be sure.
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    queue.push_back((e.path(), depth + 1));
                }
            }
        }
    }

    fn index_dir(&mut self, mount: &Cgroup2Mount, dir: &Path) {
        let Ok(md) = std::fs::metadata(dir) else {
            return;
        };
        let id = CgroupId(md.ino());
        if self.map.contains_key(&id) {
            return;
        }
        if let Some(path) = mount.path_of(dir) {
            self.insert(id, &path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{events::Clock, state::container::Runtime};

    const A: &str = "3f1c2e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";

    /// A fake cgroup2 tree in a temp dir: resolution by walking matches inodes to paths.
    #[test]
    fn walk_resolves_ids_to_container_paths() {
        let root = std::env::temp_dir().join(format!("guard-cgwalk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let cdir = root.join("docker").join(A);
        std::fs::create_dir_all(&cdir).expect("mkdir");
        std::fs::create_dir_all(root.join("system.slice/sshd.service")).expect("mkdir");
        let fs = ProcFs::new(
            root.join("no-proc"),
            Some(Cgroup2Mount {
                mount_point: root.clone(),
                root: "/".into(),
            }),
            Clock::with_offset(0),
            100,
        );
        let id = CgroupId(std::fs::metadata(&cdir).expect("stat").ino());
        let sshd = CgroupId(
            std::fs::metadata(root.join("system.slice/sshd.service"))
                .expect("stat")
                .ino(),
        );
        let mut c = CgroupCache::new(CgroupCacheConfig::default());
        let info = c
            .resolve(&fs, id, Some(Pid(1)))
            .expect("found by walk")
            .clone();
        assert_eq!(&*info.path, format!("/docker/{A}"));
        let cont = info.container.expect("container");
        assert_eq!((cont.id.as_str(), cont.runtime), (A, Runtime::Docker));
        // The walk indexed the rest too: a host cgroup resolves with no container.
        let host = c.get(sshd).expect("indexed");
        assert_eq!(&*host.path, "/system.slice/sshd.service");
        assert!(host.container.is_none());
        // An unknown id: no answer, and no second walk within the interval.
        assert!(c.resolve(&fs, CgroupId(u64::MAX), None).is_none());

        // Bounded.
        let mut small = CgroupCache::new(CgroupCacheConfig {
            max_entries: 2,
            ..Default::default()
        });
        small.resolve(&fs, id, None);
        assert!(small.len() <= 2);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Entries of removed cgroups (and of a path now holding another cgroup) are pruned;
    /// live ones stay.
    #[test]
    fn prune_forgets_removed_cgroups() {
        let root = std::env::temp_dir().join(format!("guard-cgprune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["live", "gone", "reused"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        let fs = ProcFs::new(
            root.join("no-proc"),
            Some(Cgroup2Mount {
                mount_point: root.clone(),
                root: "/".into(),
            }),
            Clock::with_offset(0),
            100,
        );
        let ino = |d: &str| CgroupId(std::fs::metadata(root.join(d)).expect("stat").ino());
        let mut c = CgroupCache::new(CgroupCacheConfig::default());
        let (live, gone, reused) = (ino("live"), ino("gone"), ino("reused"));
        c.insert(live, "/live");
        c.insert(gone, "/gone");
        c.insert(reused, "/reused");
        std::fs::remove_dir(root.join("gone")).expect("rmdir");
        std::fs::remove_dir(root.join("reused")).expect("rmdir");
        // Something else at the old path: a different inode is a different cgroup.
        std::fs::write(root.join("keep-inode-busy"), b"x").expect("file");
        std::fs::create_dir(root.join("reused")).expect("mkdir");
        let now_reused = ino("reused");
        assert_eq!(
            c.prune_removed(&fs).0,
            if now_reused == reused { 1 } else { 2 }
        );
        assert!(c.get(live).is_some());
        assert!(c.get(gone).is_none());
        // A container's cgroup removed: its id is reported once none of its cgroups is left.
        let cdir = root.join("docker").join(A);
        std::fs::create_dir_all(&cdir).expect("mkdir");
        let cid = CgroupId(std::fs::metadata(&cdir).expect("stat").ino());
        c.insert(cid, &format!("/docker/{A}"));
        assert_eq!(c.prune_removed(&fs), (0, vec![]));
        std::fs::remove_dir(&cdir).expect("rmdir");
        let (n, gone_ids) = c.prune_removed(&fs);
        assert_eq!(n, 1);
        assert_eq!(
            gone_ids.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
            vec![A]
        );
        if now_reused != reused {
            assert!(c.get(reused).is_none());
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    /// On the real host: this process's cgroup id resolves through its pid.
    #[test]
    fn resolves_own_cgroup_through_proc() {
        let fs = ProcFs::host();
        let me = Pid(std::process::id());
        let Some((path, Some(id))) = fs.cgroup(me) else {
            // Mandatory in CI (the same rule as tests/src/harness.rs `in_ci`).
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(
                !ci,
                "no cgroup2 mount here, and CI makes this test mandatory"
            );
            eprintln!("SKIP (not CI): no cgroup2 mount here");
            return;
        };
        let mut c = CgroupCache::new(CgroupCacheConfig::default());
        let info = c.resolve(&fs, id, Some(me)).expect("resolved");
        assert_eq!(&*info.path, path);
    }
}
