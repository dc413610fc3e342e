//! The capture stage: a decoded kernel event, plus the process and container tables, becomes
//! the enriched `model::Event` that rules evaluate and `guard record` writes.
//!
//! The tables are updated first (fork, exec, exit, chdir), so an event sees the state that
//! includes itself: an exec's event carries the new image, a `cat shadow` after `cd /etc`
//! resolves to `/etc/shadow`.

use std::{collections::HashMap, net::IpAddr};

use crate::{
    events::{self, AT_FDCWD, Captured, Common, KernelPath, SockAddr},
    model::{self, Ancestor, ArgValue, Fd, FdType, L4Proto},
    state::{
        PathBase, Pid, State,
        container::ContainerId,
        process::ExecInfo,
        procfs::{ArgLimits, Argv},
    },
};

mod io;

/// Ancestors carried per event (`proc.aname[N]` up to this depth).
pub const MAX_ANCESTORS: usize = 8;
/// Sockets remembered per host for `fd.l4proto` (LRU-ish: cleared when full).
const MAX_SOCKETS: usize = 65_536;

/// What guard knows of an open socket.
#[derive(Debug, Clone, Copy)]
struct Sock {
    domain: i32,
    sock_type: i32,
    /// The last connect succeeded (`fd.connected`).
    connected: bool,
    /// Hash of the name the last connect gave the fd (`fd.name_changed`); `None` until one.
    name: Option<u64>,
}

/// Converts kernel events into model events, keeping the state tables current.
pub struct Capture {
    pub state: State,
    /// (pid, fd) -> the socket as `socket` created it and connects left it.
    sockets: HashMap<(u32, i32), Sock>,
    num: u64,
    /// An event handed back by [`Capture::recycle`]: its buffers are reused by the next one.
    spare: Option<model::Event>,
}

impl Capture {
    pub fn new(state: State) -> Self {
        Self {
            state,
            sockets: HashMap::new(),
            num: 0,
            spare: None,
        }
    }

    /// Hands a finished event back, so the next event reuses its allocations (argv and
    /// ancestor strings would otherwise be allocated and freed for every event).
    pub fn recycle(&mut self, ev: model::Event) {
        self.spare = Some(ev);
    }

    /// Updates the tables and returns the model event; `None` for records that are not
    /// syscall activity (kernel decisions are reported by the policy stage).
    pub fn process(&mut self, ev: &events::Event) -> Option<model::Event> {
        self.update_state(ev);
        let c = ev.common();
        let (evt_type, args, fd, res) = match ev {
            events::Event::ExecDenied(_) | events::Event::Decision(_) => return None,
            events::Event::Exec(e) => ("execve", exec_args(e), None, c.ret),
            events::Event::Fork(f) => (
                "clone",
                args(&[("child_pid", ArgValue::Int(f.child_pid.into()))]),
                None,
                f.child_pid.into(),
            ),
            events::Event::Exit(x) => (
                "procexit",
                args(&[("status", ArgValue::Int(x.exit_code.into()))]),
                None,
                0,
            ),
            events::Event::Open(o) => {
                // fd.name: the opened file as the kernel resolved it; the path as written,
                // resolved here, only when the kernel walk failed (or the open did).
                let (resolved, from_kernel) = match &o.kernel_path {
                    KernelPath::Resolved(p) => (p.clone(), Some(true)),
                    KernelPath::Unresolved => (self.resolve(c.pid, o.dirfd, &o.path), Some(false)),
                    KernelPath::Absent => (self.resolve(c.pid, o.dirfd, &o.path), None),
                };
                let dir = o.flags & O_DIRECTORY != 0;
                let mut a = args(&[
                    ("name", ArgValue::Str(resolved.clone())),
                    ("flags", ArgValue::Str(open_flags(o.flags))),
                    ("mode", ArgValue::Int(o.mode.into())),
                ]);
                if o.syscall != "open" && o.syscall != "creat" {
                    a.insert("dirfd".into(), ArgValue::Int(o.dirfd.into()));
                }
                let mut fd = file_fd(
                    c.ret,
                    resolved,
                    &o.path,
                    if dir { FdType::Directory } else { FdType::File },
                );
                fd.name_from_kernel = from_kernel;
                (o.syscall, a, Some(fd), c.ret)
            }
            events::Event::Connect(k) => {
                let sock = self.sockets.get_mut(&(c.pid, k.fd));
                let proto = sock.as_ref().map(|s| s.sock_type);
                let (mut fd, addr) = sock_fd(k.fd, &k.addr, proto);
                // As Falco: connected once connect succeeded; the name changed when this
                // connect gave the fd another address than it had (a new socket has none).
                // For a socket guard did not see created, the previous name is unknown.
                fd.connected = Some(c.ret >= 0);
                if let Some(s) = sock {
                    let h = name_hash(&addr);
                    fd.name_changed = Some(s.name != Some(h));
                    if c.ret >= 0 || c.ret == -EINPROGRESS {
                        s.name = Some(h);
                    }
                    s.connected = c.ret >= 0;
                }
                (
                    "connect",
                    args(&[
                        ("fd", ArgValue::Int(k.fd.into())),
                        ("addr", ArgValue::Str(addr)),
                    ]),
                    Some(fd),
                    c.ret,
                )
            }
            events::Event::Socket(s) => (
                "socket",
                args(&[
                    ("domain", ArgValue::Str(domain_name(s.domain))),
                    ("type", ArgValue::Int(s.sock_type.into())),
                    ("proto", ArgValue::Int(s.protocol.into())),
                ]),
                None,
                c.ret,
            ),
            events::Event::Chdir(d) => {
                let a = match &d.path {
                    Some(p) => args(&[("path", ArgValue::Str(p.text.clone()))]),
                    None => args(&[("fd", ArgValue::Int(d.fd.unwrap_or(-1).into()))]),
                };
                (d.syscall, a, None, c.ret)
            }
            events::Event::SetId(s) => {
                let names: &[&str] = match s.syscall {
                    "setuid" => &["uid"],
                    "setgid" => &["gid"],
                    "setreuid" => &["ruid", "euid"],
                    "setregid" => &["rgid", "egid"],
                    "setresuid" => &["ruid", "euid", "suid"],
                    _ => &["rgid", "egid", "sgid"],
                };
                let a = names
                    .iter()
                    .zip(&s.ids)
                    .map(|(n, v)| (n.to_string(), ArgValue::Int(v.map_or(-1, i64::from))))
                    .collect();
                (s.syscall, a, None, c.ret)
            }
            events::Event::Ptrace(p) => (
                "ptrace",
                args(&[
                    ("request", ArgValue::Str(ptrace_request(p.request))),
                    ("pid", ArgValue::Int(p.target_pid.into())),
                ]),
                None,
                c.ret,
            ),
            events::Event::Unlink(u) => {
                let path = self.resolve(c.pid, u.dirfd, &u.path);
                let a = if u.syscall == "unlink" {
                    args(&[("path", ArgValue::Str(path.clone()))])
                } else {
                    args(&[
                        ("dirfd", ArgValue::Int(u.dirfd.into())),
                        ("name", ArgValue::Str(path.clone())),
                        ("flags", ArgValue::Int(u.flags as i64)),
                    ])
                };
                (
                    u.syscall,
                    a,
                    Some(file_fd(-1, path, &u.path, FdType::File)),
                    c.ret,
                )
            }
            events::Event::Rename(r) => {
                let old = self.resolve(c.pid, r.old_dirfd, &r.old_path);
                let new = self.resolve(c.pid, r.new_dirfd, &r.new_path);
                (
                    r.syscall,
                    args(&[
                        ("oldpath", ArgValue::Str(old.clone())),
                        ("newpath", ArgValue::Str(new)),
                        ("flags", ArgValue::Int(r.flags as i64)),
                    ]),
                    Some(file_fd(-1, old, &r.old_path, FdType::File)),
                    c.ret,
                )
            }
            events::Event::Chmod(m) => {
                let mut a = args(&[("mode", ArgValue::Int(m.mode.into()))]);
                let fd = match &m.path {
                    Some(p) => {
                        let path = self.resolve(c.pid, m.fd, p);
                        a.insert("filename".into(), ArgValue::Str(path.clone()));
                        Some(file_fd(-1, path, p, FdType::File))
                    }
                    None => {
                        a.insert("fd".into(), ArgValue::Int(m.fd.into()));
                        None
                    }
                };
                (m.syscall, a, fd, c.ret)
            }
            events::Event::Node(n) => {
                let path = self.resolve(c.pid, n.dirfd, &n.path);
                let mut a = args(&[("path", ArgValue::Str(path.clone()))]);
                if n.syscall.ends_with("at") {
                    a.insert("dirfd".into(), ArgValue::Int(n.dirfd.into()));
                }
                if let Some(m) = n.mode {
                    a.insert("mode".into(), ArgValue::Int(m.into()));
                }
                if let Some(d) = n.dev {
                    a.insert("dev".into(), ArgValue::Int(d as i64));
                }
                let kind = if n.syscall.starts_with("mknod") {
                    FdType::File
                } else {
                    FdType::Directory
                };
                (n.syscall, a, Some(file_fd(-1, path, &n.path, kind)), c.ret)
            }
            events::Event::Truncate(t) => {
                let path = self.resolve(c.pid, AT_FDCWD, &t.path);
                (
                    "truncate",
                    args(&[
                        ("path", ArgValue::Str(path.clone())),
                        ("length", ArgValue::Int(t.length)),
                    ]),
                    Some(file_fd(-1, path, &t.path, FdType::File)),
                    c.ret,
                )
            }
            events::Event::Link(l) => {
                let link = self.resolve(c.pid, l.link_dirfd, &l.link_path);
                // A symlink's target is stored verbatim; a hard link's names an existing file.
                let target = if l.is_symlink() {
                    l.target.text.clone()
                } else {
                    self.resolve(c.pid, l.target_dirfd, &l.target)
                };
                let a = if l.is_symlink() {
                    args(&[
                        ("target", ArgValue::Str(target)),
                        ("linkpath", ArgValue::Str(link.clone())),
                    ])
                } else {
                    args(&[
                        ("oldpath", ArgValue::Str(target)),
                        ("newpath", ArgValue::Str(link.clone())),
                    ])
                };
                (
                    l.syscall,
                    a,
                    Some(file_fd(-1, link, &l.link_path, FdType::File)),
                    c.ret,
                )
            }
            events::Event::Mount(m) => (
                "mount",
                args(&[
                    ("dev", ArgValue::Str(m.source.text.clone())),
                    (
                        "dir",
                        ArgValue::Str(self.resolve(c.pid, AT_FDCWD, &m.target)),
                    ),
                    ("flags", ArgValue::Int(m.flags as i64)),
                ]),
                None,
                c.ret,
            ),
            events::Event::ModuleLoad(m) => {
                let mut a = args(&[("uargs", ArgValue::Str(m.params.text.clone()))]);
                if let Some(fd) = m.fd {
                    a.insert("fd".into(), ArgValue::Int(fd.into()));
                }
                (m.syscall, a, None, c.ret)
            }
            events::Event::MemfdCreate(m) => (
                "memfd_create",
                args(&[
                    ("name", ArgValue::Str(m.name.text.clone())),
                    ("flags", ArgValue::Int(m.flags as i64)),
                ]),
                Some(Fd {
                    num: if c.ret >= 0 { c.ret } else { -1 },
                    fd_type: FdType::Memfd,
                    name: format!("memfd:{}", m.name.text),
                    ..Fd::default()
                }),
                c.ret,
            ),
            events::Event::Dup(d) => {
                let mut a = args(&[("oldfd", ArgValue::Int(d.old_fd.into()))]);
                if let Some(n) = d.new_fd {
                    a.insert("newfd".into(), ArgValue::Int(n.into()));
                }
                if d.syscall == "dup3" {
                    a.insert("flags".into(), ArgValue::Int(d.flags as i64));
                }
                // Falco's "redirect stdin/stdout to a socket" rules look at the duplicated fd.
                let fd = self.sockets.get(&(c.pid, d.old_fd)).map(|s| Fd {
                    num: if c.ret >= 0 { c.ret } else { -1 },
                    fd_type: socket_fd_type(s.domain),
                    l4proto: l4(s.domain, s.sock_type),
                    connected: Some(s.connected),
                    ..Fd::default()
                });
                (d.syscall, a, fd, c.ret)
            }
            events::Event::Bpf(b) => (
                "bpf",
                args(&[("cmd", ArgValue::Int(b.cmd.into()))]),
                None,
                c.ret,
            ),
            events::Event::Io(io) => self.io(io, c),
        };
        self.num += 1;
        let mut out = self.spare.take().unwrap_or_default();
        let cid = self.state.container_of(c.cgroup_id, Some(Pid(c.pid)));
        self.fill_process(&mut out.proc, c, cid.as_ref());
        // Exhaustive, so a new field cannot keep a value from the recycled event.
        let model::Event {
            v,
            num,
            time,
            evt_type: out_type,
            res: out_res,
            args: out_args,
            proc: _,
            fd: out_fd,
            container,
            buffer,
            derived: _,
        } = &mut out;
        *v = model::SCHEMA_VERSION;
        *num = self.num;
        *time = c.time_ns;
        out_type.clear();
        out_type.push_str(evt_type);
        *out_res = res;
        *out_args = args;
        *out_fd = fd;
        *container = cid.map(|id| self.container_view(&id, c.cgroup_id));
        *buffer = match ev {
            events::Event::Io(io) => io::buffer(io, c.ret),
            _ => None,
        };
        // Cannot fail: the version is ours.
        let _ = out.prepare();
        Some(out)
    }

    fn update_state(&mut self, ev: &events::Event) {
        let c = ev.common();
        match ev {
            events::Event::Fork(f) if !f.is_thread() => {
                self.state.on_fork(Pid(c.pid), Pid(f.child_pid), c.time_ns);
            }
            events::Event::Exec(e) => {
                let filename = self.resolve(c.pid, AT_FDCWD, &e.filename);
                let argv = Argv::from_iter(e.argv.iter(), ArgLimits::default());
                self.state.on_exec(
                    Pid(c.pid),
                    ExecInfo {
                        time_ns: c.time_ns,
                        filename: &filename,
                        argv,
                        comm: Some(&c.comm),
                        ppid: Some(Pid(c.ppid)),
                        uid: Some(c.uid),
                        gid: Some(c.gid),
                        loginuid: c.loginuid,
                        cgroup_id: Some(c.cgroup_id),
                        cwd: None,
                        exe_inode: e.exe_inode,
                        pidns_start_ns: e.pidns_start_ns,
                        env: model::Env::from_entries(&e.env),
                    },
                );
                // exec closes CLOEXEC fds; forget them all rather than guess.
                self.sockets.retain(|&(pid, _), _| pid != c.pid);
            }
            events::Event::Exit(x) if x.is_process_exit() => {
                self.state.on_exit(Pid(c.pid), c.time_ns);
                self.sockets.retain(|&(pid, _), _| pid != c.pid);
            }
            events::Event::Chdir(d) if c.ret == 0 => match &d.path {
                Some(p) => self.state.procs.on_chdir(Pid(c.pid), p.text.as_bytes()),
                None => {
                    let fs = &self.state.fs;
                    let _ = self.state.procs.refresh_cwd(fs, Pid(c.pid));
                }
            },
            events::Event::Socket(s) if c.ret >= 0 => {
                if self.sockets.len() >= MAX_SOCKETS {
                    self.sockets.clear();
                }
                self.sockets.insert(
                    (c.pid, c.ret as i32),
                    Sock {
                        domain: s.domain,
                        sock_type: s.sock_type,
                        connected: false,
                        name: None,
                    },
                );
            }
            _ => {}
        }
    }

    /// Makes a syscall path absolute: relative to the tracked cwd or to a dirfd.
    fn resolve(&mut self, pid: u32, dirfd: i32, path: &Captured) -> String {
        let raw = path.text.as_bytes();
        if raw.first() == Some(&b'/') || dirfd != AT_FDCWD {
            let base = if dirfd == AT_FDCWD {
                PathBase::Cwd
            } else {
                PathBase::Fd(dirfd)
            };
            return self.state.resolve_path(Pid(pid), base, raw).text();
        }
        // The cwd is kept current by chdir events; /proc is only the fallback.
        match self.state.procs.get(Pid(pid)).and_then(|p| p.cwd.clone()) {
            Some(cwd) => self
                .state
                .resolve_path(Pid(pid), PathBase::Dir(cwd.as_bytes()), raw)
                .text(),
            None => self.state.resolve_path(Pid(pid), PathBase::Cwd, raw).text(),
        }
    }

    /// The event's process with its ancestors, written into `p`'s existing buffers.
    fn fill_process(&mut self, p: &mut model::Process, c: &Common, cid: Option<&ContainerId>) {
        // Exhaustive, so a new field cannot keep a value from the recycled event.
        let model::Process {
            pid,
            tid,
            ppid,
            name,
            exe,
            exepath,
            args,
            cmdline_name,
            cwd,
            tty,
            uid,
            user,
            loginuid,
            loginname,
            gid,
            group,
            vpid,
            vpgid,
            sname,
            start_time,
            is_exe_upper_layer,
            is_exe_from_memfd,
            is_exe_writable,
            exe_ino,
            exe_ino_ctime,
            exe_ino_mtime,
            pidns_start,
            env,
            cap_effective,
            cap_permitted,
            ancestors,
        } = p;
        *pid = c.pid;
        *tid = c.tid;
        *ppid = c.ppid;
        name.clone_from(&c.comm);
        *uid = c.uid;
        *gid = c.gid;
        *loginuid = c.loginuid;
        // Names from the container's own account files (the host's for host processes).
        let (users, procs) = (&mut self.state.users, &self.state.procs);
        let other = || {
            cid.and_then(|id| procs.live_in(id, Pid(c.pid)))
                .map(|p| p.0)
        };
        users.refresh(cid, c.pid, other, c.time_ns);
        set_opt(user, users.user(cid, c.uid));
        set_opt(group, users.group(cid, c.gid));
        // An unset login uid is Falco's -1, which no file names.
        set_opt(loginname, users.user(cid, c.loginuid.unwrap_or(u32::MAX)));
        (*is_exe_upper_layer, *is_exe_writable) = (false, false);
        cap_effective.clear();
        cap_permitted.clear();
        exe.clear();
        exepath.clear();
        cwd.clear();
        (*tty, *start_time, *is_exe_from_memfd) = (0, 0, false);
        (*exe_ino, *exe_ino_ctime, *exe_ino_mtime, *env) = (None, None, None, None);
        match self.state.process(Pid(c.pid)) {
            Some(t) => {
                exe.push_str(t.exe());
                exepath.push_str(&t.exepath);
                fill_strings(args, t.argv.items.get(1..).unwrap_or_default());
                // The comm of the last exec, when the process renamed itself since.
                match cmdline_name {
                    Some(n) if !t.comm.is_empty() && t.comm != c.comm => n.clone_from(&t.comm),
                    None if !t.comm.is_empty() && t.comm != c.comm => {
                        *cmdline_name = Some(t.comm.clone())
                    }
                    _ => *cmdline_name = None,
                }
                cwd.push_str(t.cwd.as_deref().unwrap_or_default());
                *tty = t.tty;
                *start_time = t.start_time_ns;
                env.clone_from(&t.env);
                if let Some(i) = t.exe_inode {
                    (*exe_ino, *exe_ino_ctime, *exe_ino_mtime) =
                        (Some(i.ino), i.ctime_ns, i.mtime_ns);
                }
                *is_exe_from_memfd =
                    t.exepath.starts_with("/memfd:") || t.exepath.starts_with("memfd:");
                if *ppid == 0 {
                    *ppid = t.ppid.0;
                }
            }
            None => {
                args.clear();
                *cmdline_name = None;
            }
        }
        let ns = self.state.ns_ids(Pid(c.pid));
        (*vpid, *vpgid) = (ns.map(|n| n.vpid), ns.map(|n| n.vpgid));
        // Set after the ns read, which drops a start a new namespace's init inherited.
        let t = self.state.procs.get(Pid(c.pid));
        *pidns_start = t.and_then(|t| t.pidns_start_ns);
        // The session leader, by its pid as the agent sees it (0: outside our namespace).
        match ns
            .filter(|n| n.sid != 0)
            .and_then(|n| self.state.comm_of(Pid(n.sid)))
        {
            Some(leader) => set_opt(sname, leader),
            None => *sname = None,
        }
        let mut n = 0;
        for a in self.state.procs.ancestors(Pid(c.pid)).take(MAX_ANCESTORS) {
            if n == ancestors.len() {
                ancestors.push(Ancestor::default());
            }
            let out = &mut ancestors[n];
            out.pid = a.pid.0;
            out.name.clone_from(&a.comm);
            out.exe.clear();
            out.exe.push_str(a.exe());
            out.exepath.clone_from(&a.exepath);
            fill_strings(&mut out.args, a.argv.items.get(1..).unwrap_or_default());
            // Rebuilt by `prepare`.
            out.cmdline.clear();
            n += 1;
        }
        ancestors.truncate(n);
    }

    fn container_view(
        &self,
        id: &ContainerId,
        cgroup_id: crate::events::CgroupId,
    ) -> model::Container {
        // The cgroup layout names the runtime (and a containerd namespace); the container
        // table the rest.
        let layout = self
            .state
            .cgroups
            .get(cgroup_id)
            .and_then(|i| i.container.as_ref());
        let m = self.state.container_meta(id);
        model::Container {
            id: id.short().to_owned(),
            name: m.name.clone(),
            image: m.image.clone(),
            image_repository: Some(m.image_repository.clone()),
            image_tag: Some(m.image_tag.clone()),
            runtime: layout.map_or("docker", |l| l.runtime.as_str()).into(),
            privileged: m.privileged.unwrap_or(false),
            labels: m.labels.clone(),
            start_ts: 0,
            pod_labels: m.pod_labels.clone(),
            pod_ip: (m.pod_ip != crate::state::container::NA).then(|| m.pod_ip.clone()),
            namespace: layout.and_then(|l| l.namespace.as_deref().map(str::to_owned)),
            mounts: m.mounts.clone(),
        }
    }
}

/// `slot` = `Some(v)`, reusing the string a recycled event left there.
fn set_opt(slot: &mut Option<String>, v: &str) {
    match slot {
        Some(s) => {
            s.clear();
            s.push_str(v);
        }
        None => *slot = Some(v.to_owned()),
    }
}

/// `dst` = a copy of `src`, reusing `dst`'s strings.
fn fill_strings(dst: &mut Vec<String>, src: &[String]) {
    dst.truncate(src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        d.clone_from(s);
    }
    let have = dst.len();
    dst.extend(src[have..].iter().cloned());
}

fn args(pairs: &[(&str, ArgValue)]) -> std::collections::BTreeMap<String, ArgValue> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

fn exec_args(e: &events::ExecEvent) -> std::collections::BTreeMap<String, ArgValue> {
    args(&[
        ("filename", ArgValue::Str(e.filename.text.clone())),
        (
            "args",
            ArgValue::Str(e.argv.iter().skip(1).cloned().collect::<Vec<_>>().join(" ")),
        ),
    ])
}

fn file_fd(ret: i64, name: String, raw: &Captured, fd_type: FdType) -> Fd {
    Fd {
        num: if ret >= 0 { ret } else { -1 },
        fd_type,
        nameraw: (raw.text != name).then(|| raw.text.clone()),
        name,
        ..Fd::default()
    }
}

const O_DIRECTORY: u64 = 0o200000;
const EINPROGRESS: i64 = 115;

/// A name's hash, to tell a changed socket name without keeping the string.
fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

/// Renders open flags as Falco does (`O_WRONLY|O_CREAT|O_TRUNC`).
pub fn open_flags(flags: u64) -> String {
    const NAMES: &[(u64, &str)] = &[
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (O_DIRECTORY, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
    ];
    let mut out = String::from(match flags & 3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        _ => "O_RDWR",
    });
    // O_SYNC includes O_DSYNC's bit; O_TMPFILE includes O_DIRECTORY's.
    if flags & 0o4010000 == 0o4010000 {
        out.push_str("|O_SYNC");
    }
    if flags & 0o20200000 == 0o20200000 {
        out.push_str("|O_TMPFILE");
    }
    for (bit, name) in NAMES {
        if flags & bit != 0 {
            out.push('|');
            out.push_str(name);
        }
    }
    out
}

fn domain_name(d: i32) -> String {
    match d {
        1 => "AF_UNIX".into(),
        2 => "AF_INET".into(),
        10 => "AF_INET6".into(),
        16 => "AF_NETLINK".into(),
        17 => "AF_PACKET".into(),
        other => other.to_string(),
    }
}

fn ptrace_request(r: i64) -> String {
    match r {
        0 => "PTRACE_TRACEME".into(),
        1 => "PTRACE_PEEKTEXT".into(),
        2 => "PTRACE_PEEKDATA".into(),
        4 => "PTRACE_POKETEXT".into(),
        5 => "PTRACE_POKEDATA".into(),
        16 => "PTRACE_ATTACH".into(),
        17 => "PTRACE_DETACH".into(),
        0x4206 => "PTRACE_SEIZE".into(),
        other => other.to_string(),
    }
}

fn socket_fd_type(domain: i32) -> FdType {
    match domain {
        2 => FdType::Ipv4,
        10 => FdType::Ipv6,
        1 => FdType::Unix,
        16 => FdType::Netlink,
        _ => FdType::File,
    }
}

fn l4(domain: i32, sock_type: i32) -> Option<L4Proto> {
    if domain != 2 && domain != 10 {
        return None;
    }
    match sock_type {
        1 => Some(L4Proto::Tcp),
        2 => Some(L4Proto::Udp),
        3 => Some(L4Proto::Raw),
        _ => None,
    }
}

/// The fd of a socket given address `addr` (connect, sendto), and the address as a name.
fn sock_fd(fd: i32, addr: &SockAddr, sock_type: Option<i32>) -> (Fd, String) {
    let num = i64::from(fd);
    match addr {
        SockAddr::Inet { addr, port } => (
            Fd {
                num,
                fd_type: FdType::Ipv4,
                sip: Some(IpAddr::V4(*addr)),
                sport: Some(*port),
                l4proto: sock_type.and_then(|t| l4(2, t)),
                ..Fd::default()
            },
            format!("{addr}:{port}"),
        ),
        SockAddr::Inet6 { addr, port } => (
            Fd {
                num,
                fd_type: FdType::Ipv6,
                sip: Some(IpAddr::V6(*addr)),
                sport: Some(*port),
                l4proto: sock_type.and_then(|t| l4(10, t)),
                ..Fd::default()
            },
            format!("[{addr}]:{port}"),
        ),
        SockAddr::Unix { path, abstract_ns } => {
            let name = if *abstract_ns {
                format!("@{path}")
            } else {
                path.clone()
            };
            (
                Fd {
                    num,
                    fd_type: FdType::Unix,
                    name: name.clone(),
                    ..Fd::default()
                },
                name,
            )
        }
        SockAddr::Other { af } => (
            Fd {
                num,
                ..Fd::default()
            },
            format!("family {af}"),
        ),
        SockAddr::Invalid => (
            Fd {
                num,
                ..Fd::default()
            },
            String::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_render_like_falco() {
        assert_eq!(open_flags(0), "O_RDONLY");
        assert_eq!(open_flags(0o1 | 0o100 | 0o1000), "O_WRONLY|O_CREAT|O_TRUNC");
        assert_eq!(open_flags(0o2 | 0o2000000), "O_RDWR|O_CLOEXEC");
        assert_eq!(open_flags(0o1 | 0o2000), "O_WRONLY|O_APPEND");
    }
}

#[cfg(test)]
mod recycle_tests;
