//! The state stage: what guard knows about processes and containers, kept up to date by
//! events, so that rules can ask for `proc.*` and `container.*` fields.
//!
//! - [`process`]: the process table (seeded from /proc, kept by fork/exec/exit), bounded.
//! - [`path`]: making syscall paths absolute and lexically normal; the symlink limit.
//! - [`cgroup`]: cgroup id → cgroup path → container id.
//! - [`container`]: container ids, cgroup path layouts, image references, the metadata cache.
//! - [`docker`]: the background task that fills the cache from the Docker API.
//! - [`cri`]: the one that fills it from the Kubernetes CRI (containerd, CRI-O).
//! - [`containerd`]: containerd's own API: containers started straight on containerd, and
//!   CRI containers at create time (before their cgroup exists).
//! - [`podman`]: Podman's events log, followed for `create` (its API stream is 250 ms late).
//! - [`users`]: user and group names from each container's own account files.
//!
//! [`State`] ties them together for the event pipeline. It is owned by one task (`&mut`);
//! only the container metadata cache is shared with the enrichment task.

pub mod cgroup;
pub mod container;
pub mod containerd;
pub mod cri;
pub mod docker;
pub mod path;
pub mod podman;
pub mod process;
pub mod procfs;
pub mod users;

use std::sync::Arc;

use crate::events::CgroupId;

use self::{
    cgroup::{CgroupCache, CgroupCacheConfig},
    container::{ContainerId, ContainerMeta, ContainerTable, ContainerTableConfig},
    docker::{DockerConfig, DockerEnricher},
    path::Resolved,
    process::{ExecInfo, Process, ProcessConfig, ProcessTable},
    procfs::ProcFs,
    users::{UserDb, UserDbConfig},
};

/// A process id (thread-group id) in guard's pid namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pid(pub u32);

impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Default)]
pub struct StateConfig {
    pub processes: ProcessConfig,
    pub cgroups: CgroupCacheConfig,
    pub containers: ContainerTableConfig,
    pub docker: DockerConfig,
    pub users: UserDbConfig,
}

/// What a relative path in a syscall is relative to.
#[derive(Debug, Clone, Copy)]
pub enum PathBase<'a> {
    /// `AT_FDCWD` or a non-`*at` syscall: the process's cwd.
    Cwd,
    /// A dirfd whose path the event carries.
    Dir(&'a [u8]),
    /// A dirfd known only by number: looked up in `/proc/PID/fd` (racy: the fd may be closed
    /// or the process gone by then; the result is then relative and marked so).
    Fd(i32),
}

pub struct State {
    pub procs: ProcessTable,
    pub cgroups: CgroupCache,
    pub containers: ContainerTable,
    pub fs: ProcFs,
    pub users: UserDb,
}

impl State {
    /// Builds the state on the host's /proc, and the Docker enrichment task, which the caller
    /// spawns on its tokio runtime: `tokio::spawn(enricher.run())`.
    pub fn new(cfg: StateConfig) -> (Self, DockerEnricher) {
        Self::with_procfs(cfg, ProcFs::host())
    }

    pub fn with_procfs(cfg: StateConfig, fs: ProcFs) -> (Self, DockerEnricher) {
        let (containers, rx) = ContainerTable::new(cfg.containers);
        let enricher = DockerEnricher::new(containers.clone(), rx, cfg.docker);
        let state = Self {
            procs: ProcessTable::new(cfg.processes),
            cgroups: CgroupCache::new(cfg.cgroups),
            containers,
            fs,
            users: UserDb::new(cfg.users, crate::procroot::open_account_file),
        };
        (state, enricher)
    }

    /// Seeds processes from /proc, and learns their cgroups and containers. Returns the
    /// number of processes read.
    pub fn seed(&mut self) -> usize {
        let n = self.procs.seed_from_proc(&self.fs);
        for pid in self.fs.pids() {
            if let Some((path, Some(id))) = self.fs.cgroup(pid) {
                self.cgroups.insert(id, &path);
                if let Some(c) = self.cgroups.get(id).and_then(|i| i.container.as_ref()) {
                    self.containers.learn(&c.id);
                }
            }
        }
        n
    }

    pub fn on_fork(&mut self, parent: Pid, child: Pid, time_ns: u64) {
        if self.procs.get(parent).is_none() {
            // Missed or evicted: fill the parent from /proc so the child inherits its fields.
            let _ = self.procs.load(&self.fs, parent);
        }
        self.procs.on_fork(parent, child, time_ns);
    }

    /// A successful exec; resolves the container from the event's cgroup id.
    pub fn on_exec(&mut self, pid: Pid, info: ExecInfo<'_>) {
        let cgroup = info.cgroup_id;
        self.procs.on_exec(pid, info);
        if let Some(cg) = cgroup {
            let id = self.container_of(cg, Some(pid));
            self.procs.set_container(pid, id);
        }
    }

    pub fn on_exit(&mut self, pid: Pid, time_ns: u64) {
        self.procs.on_exit(pid, time_ns);
    }

    /// The process, loaded from /proc when the table lacks it.
    pub fn process(&mut self, pid: Pid) -> Option<&Process> {
        self.procs.load(&self.fs, pid)
    }

    /// The process's ids in its own pid namespace, read from /proc on the first event after a
    /// fork or exec, then from the table.
    pub fn ns_ids(&mut self, pid: Pid) -> Option<procfs::NsIds> {
        let p = self.procs.get(pid)?;
        if p.ns_read {
            return p.ns;
        }
        let ns = self.fs.ns_ids(pid);
        self.procs.set_ns(pid, ns);
        ns
    }

    /// The comm of a process (a session leader, for `proc.sname`): the table's, else /proc's
    /// (loaded into the table).
    pub fn comm_of(&mut self, pid: Pid) -> Option<&str> {
        self.process(pid).map(|p| p.comm.as_str())
    }

    /// The container an event's cgroup id belongs to; `None` for the host. Queues metadata
    /// enrichment for a container seen the first time. Never waits on Docker.
    pub fn container_of(&mut self, cgroup: CgroupId, pid: Option<Pid>) -> Option<ContainerId> {
        let id = self
            .cgroups
            .resolve(&self.fs, cgroup, pid)?
            .container
            .as_ref()?
            .id
            .clone();
        // Ask early, so metadata is likely ready when a rule needs it.
        if self.containers.peek(&id).is_none() {
            self.containers.learn(&id);
        }
        Some(id)
    }

    /// The container's metadata: cached, or `<NA>` fields while pending or unreachable.
    pub fn container_meta(&self, id: &ContainerId) -> Arc<ContainerMeta> {
        self.containers.lookup(id)
    }

    /// Makes a syscall path absolute. For a relative path against the cwd, the cwd is
    /// re-read from /proc first, because no chdir event keeps it current (when the process
    /// is gone the cached cwd is used).
    pub fn resolve_path(&mut self, pid: Pid, base: PathBase<'_>, path: &[u8]) -> Resolved {
        if path.first() == Some(&b'/') {
            return path::resolve(None, path);
        }
        match base {
            PathBase::Dir(dir) => path::resolve(Some(dir), path),
            PathBase::Fd(fd) => {
                let dir = self.fs.fd_path(pid, fd);
                path::resolve(dir.as_deref(), path)
            }
            PathBase::Cwd => {
                let cwd = self.procs.refresh_cwd(&self.fs, pid).map(str::to_owned);
                path::resolve(cwd.as_deref().map(str::as_bytes), path)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `cd /etc && cat shadow`: a relative open resolves against the live cwd.
    #[test]
    fn relative_open_uses_live_cwd() {
        let (mut st, _enricher) = State::new(StateConfig::default());
        let mut child = std::process::Command::new("sh")
            .args(["-c", "cd /etc && exec sleep 5"])
            .spawn()
            .expect("spawn sh");
        let pid = Pid(child.id());
        // Wait until the child has changed directory.
        let mut ok = false;
        for _ in 0..200 {
            if st.fs.cwd(pid).as_deref() == Some("/etc") {
                ok = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(ok, "child did not chdir");
        let _ = st.process(pid);
        let r = st.resolve_path(pid, PathBase::Cwd, b"shadow");
        assert_eq!(r.text(), "/etc/shadow");
        let r = st.resolve_path(pid, PathBase::Cwd, b"../tmp/../etc/shadow");
        assert_eq!(r.text(), "/etc/shadow");
        let r = st.resolve_path(pid, PathBase::Fd(-5), b"shadow");
        assert!(!r.absolute, "an unknown dirfd leaves the path relative");
        let r = st.resolve_path(pid, PathBase::Dir(b"/usr/lib"), b"../bin/sh");
        assert_eq!(r.text(), "/usr/bin/sh");
        let _ = child.kill();
        let _ = child.wait();
        // Gone: the cached cwd still answers.
        let r = st.resolve_path(pid, PathBase::Cwd, b"shadow");
        assert_eq!(r.text(), "/etc/shadow");
    }
}
