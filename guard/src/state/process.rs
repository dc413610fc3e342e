//! The process table: one entry per thread group, seeded from /proc and kept by fork, exec and
//! exit events.
//!
//! Memory is bounded by an entry count and a byte budget (see [`ProcessConfig`]), and each
//! entry's strings are capped. Eviction:
//! 1. an exited process stays for `exit_grace_ns` after its exit, for late events (an open
//!    event decoded after the exit of its process), then goes;
//! 2. when the table is full, exited processes go first, oldest exit first;
//! 3. then live processes, least recently seen first (CLOCK: a lookup sets a reference bit,
//!    eviction gives referenced entries a second chance), so that an evicted entry is one no
//!    event has asked about lately. A later event for it reloads it from /proc (see
//!    [`ProcessTable::load`]).

use std::{
    collections::{HashMap, VecDeque},
    sync::atomic::{AtomicBool, Ordering},
};

use crate::{
    events::{CgroupId, ExeInode},
    model::Env,
};

use super::{
    Pid,
    container::ContainerId,
    path::{self, PATH_MAX},
    procfs::{ArgLimits, Argv, NsIds, ProcFs, ProcSnapshot, truncate_str},
};

/// The longest parent chain walked; guards against cycles that pid reuse can create.
pub const MAX_ANCESTRY: usize = 64;
/// comm is 16 bytes in the kernel; a little slack for U+FFFD expansion.
const MAX_COMM: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct ProcessConfig {
    pub max_entries: usize,
    /// Approximate heap bytes over all entries.
    pub max_bytes: usize,
    pub exit_grace_ns: u64,
    pub args: ArgLimits,
}

impl Default for ProcessConfig {
    fn default() -> Self {
        Self {
            max_entries: 32_768,
            max_bytes: 32 << 20,
            exit_grace_ns: 5_000_000_000,
            args: ArgLimits::default(),
        }
    }
}

#[derive(Debug)]
pub struct Process {
    pub pid: Pid,
    pub ppid: Pid,
    /// The kernel's task comm (Falco `proc.name`).
    pub comm: String,
    /// The executable's full path (Falco `proc.exepath`).
    pub exepath: String,
    pub argv: Argv,
    /// `comm` and the arguments after argv[0], space-joined (Falco `proc.cmdline`); built once
    /// per exec so that rules do not build strings per event.
    pub cmdline: String,
    args_start: usize,
    pub cwd: Option<String>,
    /// Controlling terminal device number, 0 for none.
    pub tty: u32,
    /// When the process was created (fork), wall ns.
    pub start_time_ns: u64,
    /// When it last exec'd, wall ns; 0 when seeded and unknown.
    pub exec_time_ns: u64,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub loginuid: Option<u32>,
    pub cgroup_id: Option<CgroupId>,
    pub container_id: Option<ContainerId>,
    pub exited_at: Option<u64>,
    /// Ids in its own pid namespace, read from /proc once per fork and exec (`ns_read`).
    pub ns: Option<NsIds>,
    pub ns_read: bool,
    /// The executed file's inode at the last exec guard saw (`proc.exe_ino*`); for a process
    /// loaded from /proc, a stat through `/proc/PID/exe` then. None when neither was read.
    pub exe_inode: Option<ExeInode>,
    /// When its pid namespace started (wall ns), read by the kernel at exec (or found in /proc
    /// for a process loaded from there); forked children inherit it, except a new namespace's
    /// init (vpid 1), whose start is its own.
    pub pidns_start_ns: Option<u64>,
    /// `pidns_start_ns` came from the parent at fork, not from this process's exec.
    pidns_inherited: bool,
    /// The environment at that exec, or `/proc/PID/environ` when loaded from /proc
    /// (`proc.env`), shared with forked children.
    pub env: Option<Env>,
    /// Distinguishes reuses of one pid in the eviction queues.
    serial: u64,
    referenced: AtomicBool,
}

impl Process {
    fn new(pid: Pid, ppid: Pid) -> Self {
        Self {
            pid,
            ppid,
            comm: String::new(),
            exepath: String::new(),
            argv: Argv::default(),
            cmdline: String::new(),
            args_start: 0,
            cwd: None,
            tty: 0,
            start_time_ns: 0,
            exec_time_ns: 0,
            uid: None,
            gid: None,
            loginuid: None,
            cgroup_id: None,
            container_id: None,
            exited_at: None,
            ns: None,
            ns_read: false,
            exe_inode: None,
            pidns_start_ns: None,
            pidns_inherited: false,
            env: None,
            serial: 0,
            referenced: AtomicBool::new(false),
        }
    }

    /// argv[0] (Falco `proc.exe`).
    pub fn exe(&self) -> &str {
        self.argv.items.first().map_or("", String::as_str)
    }

    /// The arguments after argv[0], space-joined (Falco `proc.args`).
    pub fn args(&self) -> &str {
        self.cmdline.get(self.args_start..).unwrap_or("")
    }

    /// Alive time at `now_ns` (Falco `proc.duration`).
    pub fn duration_ns(&self, now_ns: u64) -> u64 {
        now_ns.saturating_sub(self.start_time_ns)
    }

    fn set_comm(&mut self, comm: &str) {
        self.comm = truncate_str(comm, MAX_COMM).to_owned();
    }

    fn set_argv(&mut self, argv: Argv) {
        self.argv = argv;
        self.rebuild_cmdline();
    }

    fn rebuild_cmdline(&mut self) {
        let args = self.argv.items.get(1..).unwrap_or(&[]).join(" ");
        let mut s = String::with_capacity(self.comm.len() + 1 + args.len());
        s.push_str(&self.comm);
        if !args.is_empty() || self.argv.items.len() > 1 {
            s.push(' ');
        }
        self.args_start = s.len();
        s.push_str(&args);
        self.cmdline = s;
    }

    /// Approximate heap use, for the byte budget.
    fn heap_bytes(&self) -> usize {
        size_of::<Self>()
            + self.comm.capacity()
            + self.exepath.capacity()
            + self.argv.heap_bytes()
            + self.cmdline.capacity()
            + self.cwd.as_ref().map_or(0, String::capacity)
            + self.container_id.as_ref().map_or(0, |_| 64)
            + self.env.as_ref().map_or(0, Env::heap_bytes)
    }

    fn fork_child(&self, child: Pid, time_ns: u64) -> Self {
        Self {
            pid: child,
            ppid: self.pid,
            comm: self.comm.clone(),
            exepath: self.exepath.clone(),
            argv: self.argv.clone(),
            cmdline: self.cmdline.clone(),
            args_start: self.args_start,
            cwd: self.cwd.clone(),
            tty: self.tty,
            start_time_ns: time_ns,
            exec_time_ns: self.exec_time_ns,
            uid: self.uid,
            gid: self.gid,
            loginuid: self.loginuid,
            cgroup_id: self.cgroup_id,
            container_id: self.container_id.clone(),
            exited_at: None,
            // The child's own pid differs: read again.
            ns: None,
            ns_read: false,
            exe_inode: self.exe_inode,
            pidns_start_ns: self.pidns_start_ns,
            pidns_inherited: self.pidns_start_ns.is_some(),
            env: self.env.clone(),
            serial: 0,
            referenced: AtomicBool::new(false),
        }
    }

    fn from_snapshot(s: ProcSnapshot) -> Self {
        let mut p = Self::new(s.pid, Pid(s.stat.ppid));
        p.set_comm(&s.stat.comm);
        p.exepath = s.exepath.map(|e| cap_path(&e)).unwrap_or_default();
        p.set_argv(s.argv);
        p.cwd = s.cwd.map(|c| cap_path(&c));
        p.tty = s.stat.tty_nr;
        p.start_time_ns = s.start_time_ns;
        p.uid = s.uid;
        p.gid = s.gid;
        p.loginuid = s.loginuid;
        p.ns = s.ns;
        p.ns_read = true;
        p.cgroup_id = s.cgroup_id;
        p.exe_inode = s.exe_inode;
        p.pidns_start_ns = s.pidns_start_ns;
        p.env = s.env;
        p.container_id = s
            .cgroup_path
            .as_deref()
            .and_then(super::container::parse_cgroup_path)
            .map(|c| c.id);
        p
    }
}

fn cap_path(s: &str) -> String {
    truncate_str(s, PATH_MAX).to_owned()
}

/// What an exec event tells us.
#[derive(Debug, Clone, Default)]
pub struct ExecInfo<'a> {
    pub time_ns: u64,
    /// The resolved executable path.
    pub filename: &'a str,
    pub argv: Argv,
    /// The task comm after exec, when the event carries it.
    pub comm: Option<&'a str>,
    /// The parent, when the event carries it (used when the process was unknown).
    pub ppid: Option<Pid>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub loginuid: Option<u32>,
    pub cgroup_id: Option<CgroupId>,
    pub cwd: Option<&'a str>,
    pub exe_inode: Option<ExeInode>,
    pub pidns_start_ns: Option<u64>,
    pub env: Option<Env>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ProcessStats {
    pub inserted: u64,
    pub evicted_after_grace: u64,
    pub evicted_exited_when_full: u64,
    pub evicted_live_when_full: u64,
    pub loaded_from_proc: u64,
}

pub struct ProcessTable {
    cfg: ProcessConfig,
    map: HashMap<u32, Process>,
    /// (pid, serial) in exit order.
    exited: VecDeque<(u32, u64)>,
    /// (pid, serial) in insertion order: the CLOCK hand's ring.
    ring: VecDeque<(u32, u64)>,
    next_serial: u64,
    bytes: usize,
    /// The latest event time seen; events from different CPUs arrive slightly out of order.
    now_ns: u64,
    stats: ProcessStats,
}

impl ProcessTable {
    pub fn new(cfg: ProcessConfig) -> Self {
        Self {
            cfg,
            map: HashMap::new(),
            exited: VecDeque::new(),
            ring: VecDeque::new(),
            next_serial: 1,
            bytes: 0,
            now_ns: 0,
            stats: ProcessStats::default(),
        }
    }

    pub fn config(&self) -> &ProcessConfig {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Approximate heap bytes held by entries.
    pub fn heap_bytes(&self) -> usize {
        self.bytes
    }

    pub fn stats(&self) -> ProcessStats {
        self.stats
    }

    /// Looks a process up and marks it recently seen.
    pub fn get(&self, pid: Pid) -> Option<&Process> {
        let p = self.map.get(&pid.0)?;
        p.referenced.store(true, Ordering::Relaxed);
        Some(p)
    }

    /// Seeds the table with every process in /proc. Returns how many were read.
    pub fn seed_from_proc(&mut self, fs: &ProcFs) -> usize {
        let mut n = 0;
        for pid in fs.pids() {
            if let Some(snap) = fs.read(pid, self.cfg.args) {
                self.insert(Process::from_snapshot(snap));
                n += 1;
            }
        }
        n
    }

    /// Returns the process, reading it from /proc when the table does not have it (missed
    /// fork, evicted, or started before seeding finished).
    pub fn load(&mut self, fs: &ProcFs, pid: Pid) -> Option<&Process> {
        if !self.map.contains_key(&pid.0) {
            let snap = fs.read(pid, self.cfg.args)?;
            self.insert(Process::from_snapshot(snap));
            self.stats.loaded_from_proc += 1;
        }
        self.get(pid)
    }

    /// A new thread group. Call it for processes only (child tid == child tgid), not threads.
    pub fn on_fork(&mut self, parent: Pid, child: Pid, time_ns: u64) {
        self.advance(time_ns);
        let p = match self.map.get(&parent.0) {
            Some(p) => p.fork_child(child, time_ns),
            None => {
                let mut p = Process::new(child, parent);
                p.start_time_ns = time_ns;
                p
            }
        };
        self.insert(p);
    }

    /// A successful exec. Creates the entry when the process is unknown.
    pub fn on_exec(&mut self, pid: Pid, e: ExecInfo<'_>) {
        self.advance(e.time_ns);
        let mut p = match self.remove(pid) {
            Some(p) if p.exited_at.is_none() => p,
            _ => {
                let mut p = Process::new(pid, e.ppid.unwrap_or(Pid(0)));
                p.start_time_ns = e.time_ns;
                p
            }
        };
        if let Some(ppid) = e.ppid {
            p.ppid = ppid;
        }
        let comm = match e.comm {
            Some(c) => c,
            // The kernel sets comm to the file name's basename on exec.
            None => e.filename.rsplit('/').next().unwrap_or(e.filename),
        };
        p.set_comm(comm);
        p.exepath = cap_path(e.filename);
        p.set_argv(e.argv);
        p.exec_time_ns = e.time_ns;
        p.exe_inode = e.exe_inode;
        p.pidns_start_ns = e.pidns_start_ns;
        p.pidns_inherited = false;
        p.env = e.env;
        // setsid/setpgid happen between fork and exec: read the group and session again.
        p.ns_read = false;
        if let Some(c) = e.cwd {
            p.cwd = Some(cap_path(c));
        }
        p.uid = e.uid.or(p.uid);
        p.gid = e.gid.or(p.gid);
        p.loginuid = e.loginuid.or(p.loginuid);
        if let Some(cg) = e.cgroup_id
            && p.cgroup_id != Some(cg)
        {
            p.cgroup_id = Some(cg);
            // Moved to another cgroup: the container must be resolved again.
            p.container_id = None;
        }
        self.insert(p);
    }

    /// The thread group exited. Call it once per process (the group leader's exit), not
    /// per thread. The entry stays for the grace period.
    pub fn on_exit(&mut self, pid: Pid, time_ns: u64) {
        self.advance(time_ns);
        if let Some(p) = self.map.get_mut(&pid.0)
            && p.exited_at.is_none()
        {
            p.exited_at = Some(time_ns);
            self.exited.push_back((pid.0, p.serial));
            self.compact();
        }
    }

    /// Sets the working directory (from a chdir event, or a caller that knows it).
    pub fn set_cwd(&mut self, pid: Pid, cwd: &str) {
        self.update(pid, |p| p.cwd = Some(cap_path(cwd)));
    }

    /// A successful chdir to `path`, relative to the current cwd when not absolute.
    pub fn on_chdir(&mut self, pid: Pid, path: &[u8]) {
        let base = self.map.get(&pid.0).and_then(|p| p.cwd.clone());
        let r = path::resolve(base.as_deref().map(str::as_bytes), path);
        if r.absolute {
            self.set_cwd(pid, &r.text());
        }
    }

    /// Records the namespace ids read for `pid` (`None`: could not be read; not retried).
    pub fn set_ns(&mut self, pid: Pid, ns: Option<NsIds>) {
        if let Some(p) = self.map.get_mut(&pid.0) {
            // The init of a namespace its parent forked it into (CLONE_NEWPID): the parent's
            // namespace start is not its own; unknown until it execs.
            if p.pidns_inherited && ns.is_some_and(|n| n.vpid == 1) {
                p.pidns_start_ns = None;
                p.pidns_inherited = false;
            }
            p.ns = ns;
            p.ns_read = true;
        }
    }

    /// A live process of the container other than `not`, if the table knows one: a way into
    /// the container's filesystem when the event's process has already exited.
    pub fn live_in(&self, id: &ContainerId, not: Pid) -> Option<Pid> {
        self.map
            .values()
            .find(|p| p.pid != not && p.exited_at.is_none() && p.container_id.as_ref() == Some(id))
            .map(|p| p.pid)
    }

    pub fn set_container(&mut self, pid: Pid, id: Option<ContainerId>) {
        self.update(pid, |p| p.container_id = id);
    }

    /// Re-reads the cwd from /proc; keeps the cached value when the process is gone.
    /// Without a chdir event the cached cwd can be stale; call this before resolving a
    /// relative path.
    pub fn refresh_cwd(&mut self, fs: &ProcFs, pid: Pid) -> Option<&str> {
        if let Some(cwd) = fs.cwd(pid) {
            self.set_cwd(pid, &cwd);
        }
        self.get(pid)?.cwd.as_deref()
    }

    /// The parent, grandparent, ... of `pid` (not `pid` itself), while they are in the table.
    pub fn ancestors(&self, pid: Pid) -> Ancestors<'_> {
        Ancestors {
            table: self,
            next: self.map.get(&pid.0).map(|p| p.ppid),
            origin: pid,
            left: MAX_ANCESTRY,
        }
    }

    /// Falco `proc.aname[n]`: n = 0 is the process itself, 1 its parent, ...
    pub fn ancestor(&self, pid: Pid, n: usize) -> Option<&Process> {
        match n {
            0 => self.get(pid),
            _ => self.ancestors(pid).nth(n - 1),
        }
    }

    /// Drops exited entries whose grace has passed. Called by every event; the lead may also
    /// call it on a timer when events are rare.
    pub fn sweep(&mut self, now_ns: u64) {
        self.advance(now_ns);
    }

    fn advance(&mut self, time_ns: u64) {
        self.now_ns = self.now_ns.max(time_ns);
        while let Some(&(pid, serial)) = self.exited.front() {
            match self.map.get(&pid) {
                Some(p) if p.serial == serial => {
                    let Some(at) = p.exited_at else {
                        self.exited.pop_front();
                        continue;
                    };
                    if self.now_ns.saturating_sub(at) < self.cfg.exit_grace_ns {
                        break;
                    }
                    self.exited.pop_front();
                    self.remove(Pid(pid));
                    self.stats.evicted_after_grace += 1;
                }
                // The pid was reused or already removed.
                _ => {
                    self.exited.pop_front();
                }
            }
        }
    }

    fn update(&mut self, pid: Pid, f: impl FnOnce(&mut Process)) {
        if let Some(mut p) = self.remove(pid) {
            f(&mut p);
            self.reinsert(p);
        }
    }

    fn remove(&mut self, pid: Pid) -> Option<Process> {
        let p = self.map.remove(&pid.0)?;
        self.bytes = self.bytes.saturating_sub(p.heap_bytes());
        Some(p)
    }

    /// Inserts a new entry (a new serial: queue items for an older use of the pid go stale).
    fn insert(&mut self, mut p: Process) {
        self.remove(p.pid);
        p.serial = self.next_serial;
        self.next_serial += 1;
        self.ring.push_back((p.pid.0, p.serial));
        self.stats.inserted += 1;
        self.reinsert(p);
        self.compact();
    }

    /// Puts back an entry with its serial, making room first.
    fn reinsert(&mut self, p: Process) {
        let size = p.heap_bytes();
        while self.map.len() >= self.cfg.max_entries.max(1)
            || self.bytes + size > self.cfg.max_bytes
        {
            if !self.evict_one() {
                break;
            }
        }
        self.bytes += size;
        self.map.insert(p.pid.0, p);
    }

    fn evict_one(&mut self) -> bool {
        while let Some((pid, serial)) = self.exited.pop_front() {
            if self.map.get(&pid).is_some_and(|p| p.serial == serial) {
                self.remove(Pid(pid));
                self.stats.evicted_exited_when_full += 1;
                return true;
            }
        }
        // Each entry is passed over at most once more after its bit is cleared.
        for _ in 0..self.ring.len().saturating_mul(2) {
            let Some((pid, serial)) = self.ring.pop_front() else {
                return false;
            };
            let Some(p) = self.map.get(&pid).filter(|p| p.serial == serial) else {
                continue;
            };
            if p.referenced.swap(false, Ordering::Relaxed) {
                self.ring.push_back((pid, serial));
                continue;
            }
            self.remove(Pid(pid));
            self.stats.evicted_live_when_full += 1;
            return true;
        }
        false
    }

    /// Drops stale queue items so that the queues stay proportional to the table.
    fn compact(&mut self) {
        let limit = self.map.len().max(64) * 2;
        let map = &self.map;
        let live = |&(pid, serial): &(u32, u64)| map.get(&pid).is_some_and(|p| p.serial == serial);
        if self.ring.len() > limit {
            self.ring.retain(live);
        }
        if self.exited.len() > limit {
            self.exited.retain(live);
        }
    }
}

pub struct Ancestors<'a> {
    table: &'a ProcessTable,
    next: Option<Pid>,
    origin: Pid,
    left: usize,
}

impl<'a> Iterator for Ancestors<'a> {
    type Item = &'a Process;

    fn next(&mut self) -> Option<&'a Process> {
        let pid = self.next.take()?;
        if self.left == 0 || pid.0 == 0 || pid == self.origin {
            return None;
        }
        self.left -= 1;
        let p = self.table.get(pid)?;
        if p.ppid != p.pid {
            self.next = Some(p.ppid);
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Argv {
        Argv::from_iter(a, ArgLimits::default())
    }

    fn exec<'a>(t: u64, filename: &'a str, a: &[&str]) -> ExecInfo<'a> {
        ExecInfo {
            time_ns: t,
            filename,
            argv: argv(a),
            ..Default::default()
        }
    }

    /// The pid namespace's start is kept from the exec and inherited at fork, except by a
    /// child that turns out to be a new namespace's init (vpid 1); its own exec sets it again.
    #[test]
    fn pidns_start_inherited_but_not_by_a_new_namespace_init() {
        let mut t = ProcessTable::new(ProcessConfig::default());
        t.on_exec(
            Pid(10),
            ExecInfo {
                pidns_start_ns: Some(700),
                ..exec(1, "/bin/sh", &["sh"])
            },
        );
        let ns = |vpid| NsIds {
            vpid,
            vpgid: vpid,
            vsid: vpid,
            sid: 10,
        };
        t.on_fork(Pid(10), Pid(11), 2);
        t.on_fork(Pid(10), Pid(12), 3);
        assert_eq!(t.get(Pid(11)).and_then(|p| p.pidns_start_ns), Some(700));
        t.set_ns(Pid(11), Some(ns(11)));
        assert_eq!(t.get(Pid(11)).and_then(|p| p.pidns_start_ns), Some(700));
        // Forked into a new pid namespace (CLONE_NEWPID): its init, not the parent's start.
        t.set_ns(Pid(12), Some(ns(1)));
        assert_eq!(t.get(Pid(12)).and_then(|p| p.pidns_start_ns), None);
        t.on_exec(
            Pid(12),
            ExecInfo {
                pidns_start_ns: Some(900),
                ..exec(4, "/bin/init", &["init"])
            },
        );
        // Read by the kernel at its own exec: kept, also when its ids are read again.
        t.set_ns(Pid(12), Some(ns(1)));
        assert_eq!(t.get(Pid(12)).and_then(|p| p.pidns_start_ns), Some(900));
        // An exec that could not read it: unknown, not the earlier value.
        t.on_exec(Pid(11), exec(5, "/bin/true", &["true"]));
        assert_eq!(t.get(Pid(11)).and_then(|p| p.pidns_start_ns), None);
    }

    #[test]
    fn fork_exec_exit_lifecycle() {
        let mut t = ProcessTable::new(ProcessConfig::default());
        t.on_exec(
            Pid(10),
            ExecInfo {
                ppid: Some(Pid(1)),
                cwd: Some("/root"),
                uid: Some(0),
                cgroup_id: Some(CgroupId(5)),
                ..exec(1, "/bin/bash", &["-bash"])
            },
        );
        t.on_fork(Pid(10), Pid(11), 2);
        let child = t.get(Pid(11)).expect("child");
        assert_eq!(
            (child.ppid, child.comm.as_str(), child.cwd.as_deref()),
            (Pid(10), "bash", Some("/root"))
        );
        assert_eq!(child.cgroup_id, Some(CgroupId(5)));
        assert_eq!(child.start_time_ns, 2);

        t.on_exec(
            Pid(11),
            exec(3, "/usr/bin/cat", &["cat", "/etc/shadow", "-n"]),
        );
        let p = t.get(Pid(11)).expect("exec'd");
        assert_eq!(p.comm, "cat");
        assert_eq!(p.exe(), "cat");
        assert_eq!(p.exepath, "/usr/bin/cat");
        assert_eq!(p.args(), "/etc/shadow -n");
        assert_eq!(p.cmdline, "cat /etc/shadow -n");
        assert_eq!(p.ppid, Pid(10), "exec keeps the parent");
        assert_eq!(p.cwd.as_deref(), Some("/root"), "exec keeps the cwd");
        assert_eq!(p.start_time_ns, 2, "exec keeps the start time");
        assert_eq!(p.duration_ns(10), 8);

        t.on_exec(
            Pid(12),
            ExecInfo {
                comm: Some("x"),
                ..exec(3, "/x", &[])
            },
        );
        let p = t.get(Pid(12)).expect("unknown pid exec creates");
        assert_eq!((p.cmdline.as_str(), p.args(), p.exe()), ("x", "", ""));

        t.on_exit(Pid(11), 100);
        assert!(
            t.get(Pid(11)).is_some_and(|p| p.exited_at == Some(100)),
            "kept for grace"
        );
        t.sweep(100 + t.config().exit_grace_ns - 1);
        assert!(t.get(Pid(11)).is_some());
        t.sweep(100 + t.config().exit_grace_ns);
        assert!(t.get(Pid(11)).is_none(), "evicted after grace");
        assert_eq!(t.stats().evicted_after_grace, 1);
    }

    #[test]
    fn pid_reuse_replaces_the_old_entry() {
        let mut t = ProcessTable::new(ProcessConfig::default());
        t.on_exec(Pid(20), exec(1, "/bin/old", &["old"]));
        t.on_exit(Pid(20), 2);
        t.on_fork(Pid(1), Pid(20), 3);
        assert!(
            t.get(Pid(20))
                .is_some_and(|p| p.exited_at.is_none() && p.ppid == Pid(1))
        );
        // The old exit's queue item must not evict the new process.
        t.sweep(3 + t.config().exit_grace_ns * 2);
        assert!(t.get(Pid(20)).is_some());
    }

    #[test]
    fn cgroup_change_on_exec_clears_container() {
        let mut t = ProcessTable::new(ProcessConfig::default());
        t.on_exec(
            Pid(5),
            ExecInfo {
                cgroup_id: Some(CgroupId(1)),
                ..exec(1, "/a", &["a"])
            },
        );
        let id = ContainerId::parse(&"c".repeat(64));
        t.set_container(Pid(5), id.clone());
        t.on_exec(
            Pid(5),
            ExecInfo {
                cgroup_id: Some(CgroupId(1)),
                ..exec(2, "/b", &["b"])
            },
        );
        assert_eq!(t.get(Pid(5)).and_then(|p| p.container_id.clone()), id);
        t.on_exec(
            Pid(5),
            ExecInfo {
                cgroup_id: Some(CgroupId(2)),
                ..exec(3, "/c", &["c"])
            },
        );
        assert_eq!(t.get(Pid(5)).and_then(|p| p.container_id.clone()), None);
    }

    #[test]
    fn ancestors_chain_and_aname() {
        let mut t = ProcessTable::new(ProcessConfig::default());
        t.on_exec(Pid(1), exec(0, "/sbin/init", &["init"]));
        t.on_fork(Pid(1), Pid(100), 1);
        t.on_exec(Pid(100), exec(1, "/usr/sbin/sshd", &["sshd"]));
        t.on_fork(Pid(100), Pid(200), 2);
        t.on_exec(Pid(200), exec(2, "/bin/bash", &["bash"]));
        t.on_fork(Pid(200), Pid(300), 3);
        t.on_exec(Pid(300), exec(3, "/usr/bin/curl", &["curl", "x"]));

        let names: Vec<&str> = t.ancestors(Pid(300)).map(|p| p.comm.as_str()).collect();
        assert_eq!(names, ["bash", "sshd", "init"]);
        assert_eq!(
            t.ancestor(Pid(300), 0).map(|p| p.comm.as_str()),
            Some("curl")
        );
        assert_eq!(
            t.ancestor(Pid(300), 2).map(|p| p.comm.as_str()),
            Some("sshd")
        );
        assert!(t.ancestor(Pid(300), 4).is_none());
        assert!(t.ancestors(Pid(999)).next().is_none());

        // A chain broken by eviction stops there.
        t.on_fork(Pid(7777), Pid(400), 4);
        assert_eq!(t.ancestors(Pid(400)).count(), 0);
    }

    #[test]
    fn ancestors_terminate_on_cycles() {
        let mut t = ProcessTable::new(ProcessConfig::default());
        // Pid reuse can make a loop: 2's parent is 3 and 3's parent is 2.
        t.on_exec(
            Pid(2),
            ExecInfo {
                ppid: Some(Pid(3)),
                ..exec(0, "/a", &["a"])
            },
        );
        t.on_exec(
            Pid(3),
            ExecInfo {
                ppid: Some(Pid(2)),
                ..exec(0, "/b", &["b"])
            },
        );
        t.on_exec(
            Pid(4),
            ExecInfo {
                ppid: Some(Pid(2)),
                ..exec(0, "/c", &["c"])
            },
        );
        assert!(t.ancestors(Pid(4)).count() <= MAX_ANCESTRY);
        assert_eq!(
            t.ancestors(Pid(2)).count(),
            1,
            "stops when the chain returns to the origin"
        );
        // A self-parent.
        t.on_exec(
            Pid(9),
            ExecInfo {
                ppid: Some(Pid(9)),
                ..exec(0, "/d", &["d"])
            },
        );
        assert_eq!(t.ancestors(Pid(9)).count(), 0);
    }

    /// A fork bomb's worth of forks with and without exits never takes the table past its
    /// bounds, and the entries kept are the right ones.
    #[test]
    fn bound_holds_under_fork_flood() {
        let cfg = ProcessConfig {
            max_entries: 1000,
            max_bytes: 4 << 20,
            exit_grace_ns: 1_000_000_000,
            args: ArgLimits::default(),
        };
        let mut t = ProcessTable::new(cfg);
        let long = "A".repeat(10_000);
        t.on_exec(Pid(1), exec(0, "/sbin/init", &["init", &long, &long]));
        assert!(
            t.get(Pid(1))
                .is_some_and(|p| p.argv.truncated && p.cmdline.len() < 5000)
        );

        let mut max_len = 0;
        let mut max_bytes = 0;
        let mut time = 1;
        // Forks that exit (most of a flood), interleaved with long-lived ones.
        for i in 0..200_000u32 {
            time += 1000;
            let pid = Pid(1000 + i);
            t.on_fork(Pid(1), pid, time);
            t.on_exec(pid, exec(time, "/bin/sh", &["sh", "-c", &long]));
            if i % 10 != 0 {
                t.on_exit(pid, time);
            }
            // Touch init, as a busy parent would be.
            let _ = t.get(Pid(1));
            max_len = max_len.max(t.len());
            max_bytes = max_bytes.max(t.heap_bytes());
        }
        assert!(max_len <= cfg.max_entries, "{max_len} entries");
        assert!(max_bytes <= cfg.max_bytes, "{max_bytes} bytes");
        assert!(
            t.ring.len() <= cfg.max_entries * 2 + 1 && t.exited.len() <= cfg.max_entries * 2 + 1
        );
        assert!(t.get(Pid(1)).is_some(), "a referenced live entry survives");
        // The newest live process is kept; exited ones went first.
        assert!(t.get(Pid(1000 + 199_990)).is_some());
        let s = t.stats();
        assert!(
            s.evicted_exited_when_full > 0 && s.evicted_live_when_full > 0,
            "{s:?}"
        );

        // Memory budget alone (few entries, big args) also holds.
        let mut t = ProcessTable::new(ProcessConfig {
            max_bytes: 64 * 1024,
            ..cfg
        });
        for i in 0..1000 {
            t.on_exec(Pid(10 + i), exec(i.into(), "/x", &["x", &long]));
            assert!(t.heap_bytes() <= 64 * 1024);
        }
        assert!(t.len() < 1000);
    }

    #[test]
    fn cwd_set_and_chdir() {
        let mut t = ProcessTable::new(ProcessConfig::default());
        t.on_exec(
            Pid(3),
            ExecInfo {
                cwd: Some("/"),
                ..exec(0, "/bin/sh", &["sh"])
            },
        );
        t.on_chdir(Pid(3), b"etc");
        assert_eq!(t.get(Pid(3)).and_then(|p| p.cwd.as_deref()), Some("/etc"));
        t.on_chdir(Pid(3), b"../tmp/./x/..");
        assert_eq!(t.get(Pid(3)).and_then(|p| p.cwd.as_deref()), Some("/tmp"));
        t.set_cwd(Pid(3), "/var");
        assert_eq!(t.get(Pid(3)).and_then(|p| p.cwd.as_deref()), Some("/var"));
    }

    /// Seeding from the real /proc finds this test process with its exe, argv and parent.
    #[test]
    fn seeds_own_process_from_proc() {
        let fs = ProcFs::host();
        let mut t = ProcessTable::new(ProcessConfig::default());
        let n = t.seed_from_proc(&fs);
        assert!(n > 1);
        let me = Pid(std::process::id());
        let p = t.get(me).expect("own process seeded");
        let exe = std::env::current_exe().expect("current_exe");
        assert_eq!(Some(p.exepath.as_str()), exe.to_str());
        let args: Vec<String> = std::env::args().collect();
        assert_eq!(p.exe(), args[0]);
        assert_eq!(p.ppid, Pid(std::os::unix::process::parent_id()));
        let parent = t.ancestors(me).next().expect("parent seeded");
        assert_eq!(parent.pid, p.ppid);
        assert!(!parent.comm.is_empty());
        assert_eq!(
            p.cwd.as_deref(),
            std::env::current_dir().expect("cwd").to_str()
        );
        // Sanity: the cmdline starts with comm, and the args are argv[1..] joined.
        assert!(p.cmdline.starts_with(&p.comm));
        let want_args = p.argv.items[1..].join(" ");
        assert_eq!(p.args(), want_args);

        // A lazy load of a process the table lost.
        t.remove(me);
        assert!(t.load(&fs, me).is_some());
        assert_eq!(t.stats().loaded_from_proc, 1);
    }
}
