//! The field catalog: every Falco field name guard knows, its type, and how it is read from a
//! [`crate::model::Event`]. Extraction borrows from the event (or a caller's scratch buffer), so
//! evaluating a condition never allocates.

use std::{fmt::Write as _, net::IpAddr};

use crate::model::{ArgValue, Event};

/// Value type of a field, for type checking at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Str,
    Num,
    Bool,
    Ip,
}

impl FieldType {
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Str => "string",
            FieldType::Num => "number",
            FieldType::Bool => "boolean",
            FieldType::Ip => "IP address",
        }
    }
}

/// What goes in brackets after the field name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgSpec {
    None,
    /// `[N]` optional; without it the field has one value per ancestor.
    OptIndex,
    /// `[N]` required.
    Index,
    /// `[key]` or `.key` required.
    Key,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldId {
    EvtType,
    EvtTime,
    EvtRawtime,
    EvtNum,
    EvtRes,
    EvtRawres,
    EvtFailed,
    EvtDir,
    EvtArg,
    EvtRawarg,
    EvtArgs,
    EvtIsOpenRead,
    EvtIsOpenWrite,
    EvtIsOpenExec,
    EvtHostname,
    EvtSource,
    ProcName,
    ProcExe,
    ProcExepath,
    ProcCmdline,
    ProcArgs,
    ProcPid,
    ProcPpid,
    ProcCwd,
    ProcTty,
    ProcDuration,
    ProcIsExeUpperLayer,
    ProcIsExeFromMemfd,
    ProcIsExeWritable,
    ProcPname,
    ProcPexe,
    ProcPexepath,
    ProcPcmdline,
    ProcAname,
    ProcApid,
    ProcAexe,
    ProcAexepath,
    ProcAcmdline,
    ThreadTid,
    ThreadCapEffective,
    ThreadCapPermitted,
    UserUid,
    UserName,
    UserLoginuid,
    UserLoginname,
    GroupGid,
    GroupName,
    FdNum,
    FdType,
    FdTypechar,
    FdName,
    FdNameraw,
    FdDirectory,
    FdFilename,
    FdCip,
    FdSip,
    FdLip,
    FdRip,
    FdIp,
    FdCport,
    FdSport,
    FdLport,
    FdRport,
    FdPort,
    FdL4proto,
    FdSockfamily,
    FdIsServer,
    ContainerId,
    ContainerName,
    ContainerImage,
    ContainerImageRepository,
    ContainerImageTag,
    ContainerType,
    ContainerPrivileged,
    ContainerLabel,
    ContainerStartTs,
    K8sNsName,
    K8sPodName,
    K8sPodUid,
}

pub struct FieldDef {
    pub name: &'static str,
    pub id: FieldId,
    pub ty: FieldType,
    pub arg: ArgSpec,
    pub desc: &'static str,
}

macro_rules! f {
    ($name:literal, $id:ident, $ty:ident, $arg:ident, $desc:literal) => {
        FieldDef {
            name: $name,
            id: FieldId::$id,
            ty: FieldType::$ty,
            arg: ArgSpec::$arg,
            desc: $desc,
        }
    };
}

/// Fields guard provides.
pub static FIELDS: &[FieldDef] = &[
    f!(
        "evt.type",
        EvtType,
        Str,
        None,
        "Falco event type name (execve, openat, connect, ...)"
    ),
    f!(
        "evt.time",
        EvtTime,
        Num,
        None,
        "event time, ns since the epoch"
    ),
    f!(
        "evt.rawtime",
        EvtRawtime,
        Num,
        None,
        "event time, ns since the epoch"
    ),
    f!(
        "evt.num",
        EvtNum,
        Num,
        None,
        "event sequence number, from 1"
    ),
    f!(
        "evt.res",
        EvtRes,
        Str,
        None,
        "SUCCESS or the errno name (ENOENT, ...)"
    ),
    f!("evt.rawres", EvtRawres, Num, None, "syscall return value"),
    f!(
        "evt.failed",
        EvtFailed,
        Bool,
        None,
        "the syscall returned an error"
    ),
    f!(
        "evt.dir",
        EvtDir,
        Str,
        None,
        "always '<': guard sees completed syscalls only"
    ),
    f!(
        "evt.arg",
        EvtArg,
        Str,
        Key,
        "argument by name, rendered (evt.arg.flags, evt.arg[flags])"
    ),
    f!(
        "evt.rawarg",
        EvtRawarg,
        Num,
        Key,
        "numeric argument by name"
    ),
    f!(
        "evt.args",
        EvtArgs,
        Str,
        None,
        "all arguments as name=value pairs"
    ),
    f!(
        "evt.is_open_read",
        EvtIsOpenRead,
        Bool,
        None,
        "open for reading"
    ),
    f!(
        "evt.is_open_write",
        EvtIsOpenWrite,
        Bool,
        None,
        "open for writing"
    ),
    f!(
        "evt.is_open_exec",
        EvtIsOpenExec,
        Bool,
        None,
        "open with O_EXEC/execute intent"
    ),
    f!(
        "evt.hostname",
        EvtHostname,
        Str,
        None,
        "host name of the agent"
    ),
    f!("evt.source", EvtSource, Str, None, "always 'syscall'"),
    f!("proc.name", ProcName, Str, None, "process name (comm)"),
    f!("proc.exe", ProcExe, Str, None, "argv[0]"),
    f!(
        "proc.exepath",
        ProcExepath,
        Str,
        None,
        "full executable path"
    ),
    f!("proc.cmdline", ProcCmdline, Str, None, "name and arguments"),
    f!(
        "proc.args",
        ProcArgs,
        Str,
        None,
        "arguments (argv[1..]) joined by spaces"
    ),
    f!("proc.pid", ProcPid, Num, None, "process id"),
    f!("proc.ppid", ProcPpid, Num, None, "parent process id"),
    f!("proc.cwd", ProcCwd, Str, None, "working directory"),
    f!(
        "proc.tty",
        ProcTty,
        Num,
        None,
        "controlling terminal, 0 if none"
    ),
    f!(
        "proc.duration",
        ProcDuration,
        Num,
        None,
        "ns since the process started"
    ),
    f!(
        "proc.is_exe_upper_layer",
        ProcIsExeUpperLayer,
        Bool,
        None,
        "executable is in the container's writable layer"
    ),
    f!(
        "proc.is_exe_from_memfd",
        ProcIsExeFromMemfd,
        Bool,
        None,
        "executable is a memfd"
    ),
    f!(
        "proc.is_exe_writable",
        ProcIsExeWritable,
        Bool,
        None,
        "executable is writable by the process user"
    ),
    f!("proc.pname", ProcPname, Str, None, "parent name"),
    f!("proc.pexe", ProcPexe, Str, None, "parent argv[0]"),
    f!(
        "proc.pexepath",
        ProcPexepath,
        Str,
        None,
        "parent executable path"
    ),
    f!(
        "proc.pcmdline",
        ProcPcmdline,
        Str,
        None,
        "parent command line"
    ),
    f!(
        "proc.aname",
        ProcAname,
        Str,
        OptIndex,
        "ancestor name; [0] is the process, [1] the parent; no index: any ancestor"
    ),
    f!("proc.apid", ProcApid, Num, OptIndex, "ancestor pid"),
    f!("proc.aexe", ProcAexe, Str, OptIndex, "ancestor argv[0]"),
    f!(
        "proc.aexepath",
        ProcAexepath,
        Str,
        OptIndex,
        "ancestor executable path"
    ),
    f!(
        "proc.acmdline",
        ProcAcmdline,
        Str,
        OptIndex,
        "ancestor command line"
    ),
    f!("thread.tid", ThreadTid, Num, None, "thread id"),
    f!(
        "thread.cap_effective",
        ThreadCapEffective,
        Str,
        None,
        "effective capabilities, space separated"
    ),
    f!(
        "thread.cap_permitted",
        ThreadCapPermitted,
        Str,
        None,
        "permitted capabilities, space separated"
    ),
    f!("user.uid", UserUid, Num, None, "effective uid"),
    f!("user.name", UserName, Str, None, "user name"),
    f!(
        "user.loginuid",
        UserLoginuid,
        Num,
        None,
        "audit login uid, -1 if unset"
    ),
    f!(
        "user.loginname",
        UserLoginname,
        Str,
        None,
        "name of the login uid"
    ),
    f!("group.gid", GroupGid, Num, None, "effective gid"),
    f!("group.name", GroupName, Str, None, "group name"),
    f!(
        "fd.num",
        FdNum,
        Num,
        None,
        "descriptor number, -1 on failure"
    ),
    f!(
        "fd.type",
        FdType,
        Str,
        None,
        "file, directory, ipv4, ipv6, unix, pipe, ..."
    ),
    f!(
        "fd.typechar",
        FdTypechar,
        Str,
        None,
        "f, d, 4, 6, u, p, ..."
    ),
    f!(
        "fd.name",
        FdName,
        Str,
        None,
        "resolved path, or cip:cport->sip:sport"
    ),
    f!(
        "fd.nameraw",
        FdNameraw,
        Str,
        None,
        "path as passed by the caller"
    ),
    f!(
        "fd.directory",
        FdDirectory,
        Str,
        None,
        "directory of fd.name"
    ),
    f!(
        "fd.filename",
        FdFilename,
        Str,
        None,
        "last path component of fd.name"
    ),
    f!("fd.cip", FdCip, Ip, None, "client IP"),
    f!("fd.sip", FdSip, Ip, None, "server IP"),
    f!("fd.lip", FdLip, Ip, None, "local IP"),
    f!("fd.rip", FdRip, Ip, None, "remote IP"),
    f!("fd.ip", FdIp, Ip, None, "client or server IP"),
    f!(
        "fd.cnet",
        FdCip,
        Ip,
        None,
        "client IP, compared with a CIDR"
    ),
    f!(
        "fd.snet",
        FdSip,
        Ip,
        None,
        "server IP, compared with a CIDR"
    ),
    f!("fd.lnet", FdLip, Ip, None, "local IP, compared with a CIDR"),
    f!(
        "fd.rnet",
        FdRip,
        Ip,
        None,
        "remote IP, compared with a CIDR"
    ),
    f!(
        "fd.net",
        FdIp,
        Ip,
        None,
        "client or server IP, compared with a CIDR"
    ),
    f!("fd.cport", FdCport, Num, None, "client port"),
    f!("fd.sport", FdSport, Num, None, "server port"),
    f!("fd.lport", FdLport, Num, None, "local port"),
    f!("fd.rport", FdRport, Num, None, "remote port"),
    f!("fd.port", FdPort, Num, None, "client or server port"),
    f!("fd.l4proto", FdL4proto, Str, None, "tcp, udp, icmp, raw"),
    f!("fd.sockfamily", FdSockfamily, Str, None, "ip or unix"),
    f!(
        "fd.is_server",
        FdIsServer,
        Bool,
        None,
        "the process is the server end"
    ),
    f!(
        "container.id",
        ContainerId,
        Str,
        None,
        "container id, 'host' on the host"
    ),
    f!(
        "container.name",
        ContainerName,
        Str,
        None,
        "container name, 'host' on the host"
    ),
    f!("container.image", ContainerImage, Str, None, "image"),
    f!(
        "container.image.repository",
        ContainerImageRepository,
        Str,
        None,
        "image without tag"
    ),
    f!(
        "container.image.tag",
        ContainerImageTag,
        Str,
        None,
        "image tag"
    ),
    f!(
        "container.type",
        ContainerType,
        Str,
        None,
        "docker, containerd, cri-o, podman; 'host' on the host"
    ),
    f!(
        "container.privileged",
        ContainerPrivileged,
        Bool,
        None,
        "privileged container"
    ),
    f!(
        "container.label",
        ContainerLabel,
        Str,
        Key,
        "container label by key"
    ),
    f!(
        "container.start_ts",
        ContainerStartTs,
        Num,
        None,
        "container start, ns since the epoch"
    ),
    f!(
        "k8s.ns.name",
        K8sNsName,
        Str,
        None,
        "label io.kubernetes.pod.namespace"
    ),
    f!(
        "k8s.pod.name",
        K8sPodName,
        Str,
        None,
        "label io.kubernetes.pod.name"
    ),
    f!(
        "k8s.pod.uid",
        K8sPodUid,
        Str,
        None,
        "label io.kubernetes.pod.uid"
    ),
];

/// Falco fields guard cannot provide. Checks on them are false (so `not <check>` is true),
/// outputs render `<NA>`; each is reported once at load.
pub static UNAVAILABLE: &[&str] = &[
    "fd.sip.name",
    "fd.cip.name",
    "fd.lip.name",
    "fd.rip.name",
    "fd.connected",
    "fd.name_changed",
    "fd.dev",
    "fd.dev.major",
    "fd.dev.minor",
    "fd.ino",
    "fd.uid",
    "fd.containername",
    "fd.containerdirectory",
    "fd.proto",
    "fd.cproto",
    "fd.sproto",
    "fd.lproto",
    "fd.rproto",
    "fd.types",
    "fs.path.name",
    "fs.path.nameraw",
    "fs.path.source",
    "fs.path.target",
    "evt.buffer",
    "evt.buflen",
    "evt.latency",
    "evt.cpu",
    "evt.info",
    "evt.category",
    "evt.is_io",
    "evt.is_io_read",
    "evt.is_io_write",
    "evt.is_syslog",
    "evt.is_wait",
    "evt.count",
    "evt.abspath",
    "evt.plugininfo",
    "evt.pluginname",
    "evt.deltatime",
    "evt.datetime",
    "evt.time.s",
    "evt.time.iso8601",
    "proc.sname",
    "proc.sid",
    "proc.vpid",
    "proc.vpgid",
    "proc.vpgid.name",
    "proc.vpgid.exe",
    "proc.vpgid.exepath",
    "proc.is_vpgid_leader",
    "proc.is_sid_leader",
    "proc.ppid.duration",
    "proc.exe_ino",
    "proc.exe_ino.ctime",
    "proc.exe_ino.mtime",
    "proc.exe_ino.ctime_duration_proc_start",
    "proc.exe_ino.ctime_duration_pidns_start",
    "proc.env",
    "proc.loginshellid",
    "proc.loginshell",
    "proc.pid.ts",
    "proc.ppid.ts",
    "proc.fdopencount",
    "proc.fdlimit",
    "proc.vmsize",
    "proc.vmrss",
    "proc.stdin.type",
    "proc.stdout.type",
    "proc.stderr.type",
    "proc.stdin.name",
    "proc.stdout.name",
    "proc.stderr.name",
    "proc.is_container_healthcheck",
    "proc.is_container_liveness_probe",
    "proc.is_container_readiness_probe",
    "proc.nthreads",
    "thread.cap_inheritable",
    "thread.exectime",
    "thread.totexectime",
    "thread.vtid",
    "user.homedir",
    "user.shell",
    "container.image.id",
    "container.image.digest",
    "container.mounts",
    "container.mount",
    "container.mount.source",
    "container.mount.dest",
    "container.healthcheck",
    "container.ip",
    "container.cni.json",
    "container.host_pid",
    "container.host_network",
    "container.host_ipc",
    "container.duration",
    "container.labels",
    "k8s.pod.labels",
    "k8s.pod.label",
    "k8s.pod.ip",
    "k8s.pod.cni.json",
    "k8s.pod.full_sandbox_id",
    "k8s.pod.sandbox_id",
    "k8s.ns.id",
    "k8s.ns.label",
    "k8s.ns.labels",
    "k8s.rc.name",
    "k8s.svc.name",
    "k8s.deployment.name",
    "k8s.rs.name",
    "syscall.type",
];

/// Names that are not Falco fields (or are deprecated spellings). `accept` ones are read as
/// `target` with a warning; the others are errors that name the field to use.
pub struct Renamed {
    pub name: &'static str,
    pub target: &'static str,
    pub accept: bool,
    pub why: &'static str,
}

pub static RENAMED: &[Renamed] = &[
    Renamed {
        name: "container.runtime",
        target: "container.type",
        accept: true,
        why: "container.runtime is not a Falco field; guard reads it as container.type (docker, containerd, cri-o, podman)",
    },
    Renamed {
        name: "comm",
        target: "proc.name",
        accept: true,
        why: "comm is not a Falco field; guard reads it as proc.name (the kernel comm)",
    },
    Renamed {
        name: "fd.dip",
        target: "fd.sip",
        accept: true,
        why: "fd.dip is not a Falco field; guard reads it as fd.sip (the server address: the destination of the connection, for connect and accept alike); Falco names it fd.sip, or fd.rip for the remote end",
    },
    Renamed {
        name: "fd.dport",
        target: "fd.sport",
        accept: true,
        why: "fd.dport is not a Falco field; guard reads it as fd.sport (the server port: the destination of the connection, for connect and accept alike); Falco names it fd.sport, or fd.rport for the remote end",
    },
];

pub fn lookup(name: &str) -> Option<&'static FieldDef> {
    FIELDS.iter().find(|f| f.name == name)
}

pub fn is_unavailable(name: &str) -> bool {
    UNAVAILABLE.contains(&name)
}

pub fn renamed(name: &str) -> Option<&'static Renamed> {
    RENAMED.iter().find(|r| r.name == name)
}

/// A field name resolved against the catalog.
pub enum Resolved {
    Field(FieldRef, &'static FieldDef),
    Unavailable(&'static str),
}

/// Why a field name did not resolve; `msg` is complete and user-facing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveError {
    pub msg: String,
}

/// Resolves `name`, `name[arg]` or `evt.arg.key`. Accepted renamed fields come back with
/// their [`Renamed`] entry so that the caller can warn.
pub fn resolve(full: &str) -> Result<(Resolved, Option<&'static Renamed>), ResolveError> {
    let err = |msg: String| Err(ResolveError { msg });
    let (base, bracket) = match full.find('[') {
        Some(i) => match full[i + 1..].strip_suffix(']') {
            Some(inner) => (&full[..i], Some(inner)),
            None => return err(format!("malformed field argument in '{full}'")),
        },
        None => (full, None),
    };
    let mut base = base;
    let mut renamed_from = None;
    if let Some(rn) = renamed(base) {
        if !rn.accept {
            return err(rn.why.to_string());
        }
        renamed_from = Some(rn);
        base = rn.target;
    }
    if let Some(def) = lookup(base) {
        let arg = match (def.arg, bracket) {
            (ArgSpec::None, None) | (ArgSpec::OptIndex, None) => FieldArg::None,
            (ArgSpec::None, Some(_)) => return err(format!("field '{base}' takes no argument")),
            (ArgSpec::OptIndex | ArgSpec::Index, Some(a)) => match a.trim().parse::<usize>() {
                Ok(n) => FieldArg::Index(n),
                Err(_) => return err(format!("field '{base}' needs a numeric index, not '{a}'")),
            },
            (ArgSpec::Index, None) | (ArgSpec::Key, None) => {
                return err(format!("field '{base}' needs an argument, e.g. {base}[x]"));
            }
            (ArgSpec::Key, Some(k)) => FieldArg::Key(k.trim().into()),
        };
        return Ok((
            Resolved::Field(FieldRef { id: def.id, arg }, def),
            renamed_from,
        ));
    }
    if let Some(u) = UNAVAILABLE.iter().find(|u| **u == base) {
        return Ok((Resolved::Unavailable(u), None));
    }
    if bracket.is_none() {
        // `evt.arg.flags`, `container.label.app`: the key follows a dot.
        for def in FIELDS.iter().filter(|d| d.arg == ArgSpec::Key) {
            if let Some(k) = base
                .strip_prefix(def.name)
                .and_then(|r| r.strip_prefix('.'))
                && !k.is_empty()
            {
                let f = FieldRef {
                    id: def.id,
                    arg: FieldArg::Key(k.into()),
                };
                return Ok((Resolved::Field(f, def), None));
            }
        }
    }
    let hint = closest(base)
        .map(|c| format!("; did you mean '{c}'?"))
        .unwrap_or_default();
    err(format!("unknown field '{base}'{hint}"))
}

/// Closest known field name, for "did you mean" hints.
pub fn closest(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .map(|f| f.name)
        .chain(UNAVAILABLE.iter().copied())
        .map(|cand| (levenshtein(name, cand), cand))
        .filter(|(d, c)| *d <= (c.len().max(name.len()) / 2).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Syscall event names guard knows. Index = type id; [`OTHER_TYPE`] for anything else.
pub static EVENT_TYPES: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "bpf",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chroot",
    "clone",
    "clone3",
    "close",
    "connect",
    "creat",
    "delete_module",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "execveat",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "finit_module",
    "fork",
    "init_module",
    "ioctl",
    "kill",
    "link",
    "linkat",
    "listen",
    "memfd_create",
    "mkdir",
    "mkdirat",
    "mmap",
    "mount",
    "mprotect",
    "open",
    "open_by_handle_at",
    "openat",
    "openat2",
    "pivot_root",
    "prctl",
    "procexit",
    "ptrace",
    "read",
    "recvfrom",
    "recvmsg",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendmsg",
    "sendto",
    "setgid",
    "setns",
    "setpgid",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setsid",
    "setuid",
    "socket",
    "socketpair",
    "symlink",
    "symlinkat",
    "tgkill",
    "tkill",
    "umount",
    "umount2",
    "unlink",
    "unlinkat",
    "unshare",
    "userfaultfd",
    "vfork",
    "write",
];

pub const OTHER_TYPE: u16 = EVENT_TYPES.len() as u16;
pub const TYPE_COUNT: usize = EVENT_TYPES.len() + 1;

pub fn event_type_id(name: &str) -> u16 {
    EVENT_TYPES
        .binary_search(&name)
        .map_or(OTHER_TYPE, |i| i as u16)
}

/// Linux errno names (x86-64 and arm64), by number.
static ERRNO: [&str; 134] = [
    "SUCCESS",
    "EPERM",
    "ENOENT",
    "ESRCH",
    "EINTR",
    "EIO",
    "ENXIO",
    "E2BIG",
    "ENOEXEC",
    "EBADF",
    "ECHILD",
    "EAGAIN",
    "ENOMEM",
    "EACCES",
    "EFAULT",
    "ENOTBLK",
    "EBUSY",
    "EEXIST",
    "EXDEV",
    "ENODEV",
    "ENOTDIR",
    "EISDIR",
    "EINVAL",
    "ENFILE",
    "EMFILE",
    "ENOTTY",
    "ETXTBSY",
    "EFBIG",
    "ENOSPC",
    "ESPIPE",
    "EROFS",
    "EMLINK",
    "EPIPE",
    "EDOM",
    "ERANGE",
    "EDEADLK",
    "ENAMETOOLONG",
    "ENOLCK",
    "ENOSYS",
    "ENOTEMPTY",
    "ELOOP",
    "E41",
    "ENOMSG",
    "EIDRM",
    "ECHRNG",
    "EL2NSYNC",
    "EL3HLT",
    "EL3RST",
    "ELNRNG",
    "EUNATCH",
    "ENOCSI",
    "EL2HLT",
    "EBADE",
    "EBADR",
    "EXFULL",
    "ENOANO",
    "EBADRQC",
    "EBADSLT",
    "E58",
    "EBFONT",
    "ENOSTR",
    "ENODATA",
    "ETIME",
    "ENOSR",
    "ENONET",
    "ENOPKG",
    "EREMOTE",
    "ENOLINK",
    "EADV",
    "ESRMNT",
    "ECOMM",
    "EPROTO",
    "EMULTIHOP",
    "EDOTDOT",
    "EBADMSG",
    "EOVERFLOW",
    "ENOTUNIQ",
    "EBADFD",
    "EREMCHG",
    "ELIBACC",
    "ELIBBAD",
    "ELIBSCN",
    "ELIBMAX",
    "ELIBEXEC",
    "EILSEQ",
    "ERESTART",
    "ESTRPIPE",
    "EUSERS",
    "ENOTSOCK",
    "EDESTADDRREQ",
    "EMSGSIZE",
    "EPROTOTYPE",
    "ENOPROTOOPT",
    "EPROTONOSUPPORT",
    "ESOCKTNOSUPPORT",
    "EOPNOTSUPP",
    "EPFNOSUPPORT",
    "EAFNOSUPPORT",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "ENETDOWN",
    "ENETUNREACH",
    "ENETRESET",
    "ECONNABORTED",
    "ECONNRESET",
    "ENOBUFS",
    "EISCONN",
    "ENOTCONN",
    "ESHUTDOWN",
    "ETOOMANYREFS",
    "ETIMEDOUT",
    "ECONNREFUSED",
    "EHOSTDOWN",
    "EHOSTUNREACH",
    "EALREADY",
    "EINPROGRESS",
    "ESTALE",
    "EUCLEAN",
    "ENOTNAM",
    "ENAVAIL",
    "EISNAM",
    "EREMOTEIO",
    "EDQUOT",
    "ENOMEDIUM",
    "EMEDIUMTYPE",
    "ECANCELED",
    "ENOKEY",
    "EKEYEXPIRED",
    "EKEYREVOKED",
    "EKEYREJECTED",
    "EOWNERDEAD",
    "ENOTRECOVERABLE",
    "ERFKILL",
    "EHWPOISON",
];

/// `evt.res`: SUCCESS for non-negative results, else the errno name.
pub fn res_name(res: i64) -> &'static str {
    if res >= 0 {
        return "SUCCESS";
    }
    ERRNO
        .get(res.unsigned_abs() as usize)
        .copied()
        .unwrap_or("EUNKNOWN")
}

/// A field as used in a condition or output: catalog entry plus its argument.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldRef {
    pub id: FieldId,
    pub arg: FieldArg,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldArg {
    None,
    Index(usize),
    Key(Box<str>),
}

/// One extracted value. `Na` = the event has no value for this field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Val<'a> {
    Str(&'a str),
    Num(i64),
    Bool(bool),
    Ip(IpAddr),
    Na,
}

impl FieldRef {
    /// Fields with several values per event; checks on them hold if any value satisfies
    /// the operator (`!=`: if no value equals).
    pub fn is_multi(&self) -> bool {
        match self.id {
            FieldId::FdIp | FieldId::FdPort => true,
            FieldId::ProcAname
            | FieldId::ProcApid
            | FieldId::ProcAexe
            | FieldId::ProcAexepath
            | FieldId::ProcAcmdline => self.arg == FieldArg::None,
            _ => false,
        }
    }

    /// The `n`th value (n = 0 for single-valued fields). `buf` holds rendered numbers for
    /// `evt.arg.*`; it is reused, so the caller allocates nothing once it has grown.
    #[inline]
    pub fn extract<'a>(
        &self,
        ev: &'a Event,
        n: usize,
        ctx: &'a Ctx,
        buf: &'a mut String,
    ) -> Val<'a> {
        use FieldId::*;
        let p = &ev.proc;
        let s = Val::Str;
        let fd = ev.fd.as_ref();
        let c = ev.container.as_ref();
        match self.id {
            EvtType => s(&ev.evt_type),
            EvtTime | EvtRawtime => Val::Num(ev.time as i64),
            EvtNum => Val::Num(ev.num as i64),
            EvtRes => s(res_name(ev.res)),
            EvtRawres => Val::Num(ev.res),
            EvtFailed => Val::Bool(ev.res < 0),
            EvtDir => s("<"),
            EvtArg => match self.arg_value(ev) {
                Some(ArgValue::Str(v)) => s(v),
                Some(ArgValue::Int(i)) => {
                    buf.clear();
                    let _ = write!(buf, "{i}");
                    s(buf.as_str())
                }
                None => Val::Na,
            },
            EvtRawarg => match self.arg_value(ev) {
                Some(ArgValue::Int(i)) => Val::Num(*i),
                Some(ArgValue::Str(v)) => v.parse().map_or(Val::Na, Val::Num),
                None => Val::Na,
            },
            EvtArgs => {
                buf.clear();
                for (k, v) in &ev.args {
                    if !buf.is_empty() {
                        buf.push(' ');
                    }
                    let _ = match v {
                        ArgValue::Int(i) => write!(buf, "{k}={i}"),
                        ArgValue::Str(x) => write!(buf, "{k}={x}"),
                    };
                }
                s(buf.as_str())
            }
            EvtIsOpenRead => Val::Bool(ev.derived.open_read),
            EvtIsOpenWrite => Val::Bool(ev.derived.open_write),
            EvtIsOpenExec => Val::Bool(ev.derived.open_exec),
            EvtHostname => s(&ctx.hostname),
            EvtSource => s("syscall"),
            ProcName => s(&p.name),
            ProcExe => s(&p.exe),
            ProcExepath => s(&p.exepath),
            ProcCmdline => s(&ev.derived.cmdline),
            ProcArgs => s(&ev.derived.args),
            ProcPid => Val::Num(p.pid.into()),
            ProcPpid => Val::Num(p.ppid.into()),
            ProcCwd => s(&p.cwd),
            ProcTty => Val::Num(p.tty.into()),
            ProcDuration => {
                if p.start_time == 0 {
                    Val::Na
                } else {
                    Val::Num(ev.time.saturating_sub(p.start_time) as i64)
                }
            }
            ProcIsExeUpperLayer => Val::Bool(p.is_exe_upper_layer),
            ProcIsExeFromMemfd => Val::Bool(p.is_exe_from_memfd),
            ProcIsExeWritable => Val::Bool(p.is_exe_writable),
            ProcPname => p.ancestors.first().map_or(Val::Na, |a| s(&a.name)),
            ProcPexe => p.ancestors.first().map_or(Val::Na, |a| s(&a.exe)),
            ProcPexepath => p.ancestors.first().map_or(Val::Na, |a| s(&a.exepath)),
            ProcPcmdline => p.ancestors.first().map_or(Val::Na, |a| s(&a.cmdline)),
            ProcAname | ProcApid | ProcAexe | ProcAexepath | ProcAcmdline => {
                // [0] is the process itself; without an index, value n is ancestor n+1.
                let level = match self.arg {
                    FieldArg::Index(i) => i,
                    _ => n + 1,
                };
                if level == 0 {
                    return match self.id {
                        ProcAname => s(&p.name),
                        ProcApid => Val::Num(p.pid.into()),
                        ProcAexe => s(&p.exe),
                        ProcAexepath => s(&p.exepath),
                        _ => s(&ev.derived.cmdline),
                    };
                }
                match p.ancestors.get(level - 1) {
                    None => Val::Na,
                    Some(a) => match self.id {
                        ProcAname => s(&a.name),
                        ProcApid => Val::Num(a.pid.into()),
                        ProcAexe => s(&a.exe),
                        ProcAexepath => s(&a.exepath),
                        _ => s(&a.cmdline),
                    },
                }
            }
            ThreadTid => Val::Num(if p.tid == 0 { p.pid } else { p.tid }.into()),
            ThreadCapEffective => s(&ev.derived.cap_effective),
            ThreadCapPermitted => s(&ev.derived.cap_permitted),
            UserUid => Val::Num(p.uid.into()),
            UserName => p.user.as_deref().map_or(Val::Na, s),
            UserLoginuid => Val::Num(p.loginuid.map_or(-1, i64::from)),
            UserLoginname => p.loginname.as_deref().map_or(Val::Na, s),
            GroupGid => Val::Num(p.gid.into()),
            GroupName => p.group.as_deref().map_or(Val::Na, s),
            FdNum => fd.map_or(Val::Na, |f| Val::Num(f.num)),
            FdType => fd.map_or(Val::Na, |f| s(f.fd_type.as_str())),
            FdTypechar => fd.map_or(Val::Na, |f| s(f.fd_type.typechar())),
            FdName => fd.map_or(Val::Na, |_| s(&ev.derived.fd_name)),
            FdNameraw => fd.and_then(|f| f.nameraw.as_deref()).map_or(Val::Na, s),
            FdDirectory => file_part(ev, true),
            FdFilename => file_part(ev, false),
            FdCip => ip(fd.and_then(|f| f.cip)),
            FdSip => ip(fd.and_then(|f| f.sip)),
            FdLip => ip(fd.and_then(|f| if f.is_server { f.sip } else { f.cip })),
            FdRip => ip(fd.and_then(|f| if f.is_server { f.cip } else { f.sip })),
            FdIp => ip(fd.and_then(|f| {
                if n == 0 {
                    f.cip
                } else if n == 1 {
                    f.sip
                } else {
                    None
                }
            })),
            FdCport => port(fd.and_then(|f| f.cport)),
            FdSport => port(fd.and_then(|f| f.sport)),
            FdLport => port(fd.and_then(|f| if f.is_server { f.sport } else { f.cport })),
            FdRport => port(fd.and_then(|f| if f.is_server { f.cport } else { f.sport })),
            FdPort => port(fd.and_then(|f| {
                if n == 0 {
                    f.cport
                } else if n == 1 {
                    f.sport
                } else {
                    None
                }
            })),
            FdL4proto => fd
                .and_then(|f| f.l4proto)
                .map_or(Val::Na, |l| s(l.as_str())),
            FdSockfamily => match fd.map(|f| f.fd_type) {
                Some(t) if t.is_inet() => s("ip"),
                Some(crate::model::FdType::Unix) => s("unix"),
                _ => Val::Na,
            },
            FdIsServer => fd.map_or(Val::Na, |f| Val::Bool(f.is_server)),
            ContainerId => s(c.map_or(crate::model::HOST_CONTAINER_ID, |c| c.id.as_str())),
            ContainerName => s(c.map_or("host", |c| c.name.as_str())),
            ContainerImage => c.map_or(Val::Na, |c| s(&c.image)),
            ContainerImageRepository => c.map_or(Val::Na, |_| s(&ev.derived.image_repository)),
            ContainerImageTag => c.map_or(Val::Na, |_| s(&ev.derived.image_tag)),
            ContainerType => s(c.map_or("host", |c| c.runtime.as_str())),
            ContainerPrivileged => c.map_or(Val::Na, |c| Val::Bool(c.privileged)),
            ContainerLabel => match &self.arg {
                FieldArg::Key(k) => ev.container_label(k).map_or(Val::Na, s),
                _ => Val::Na,
            },
            ContainerStartTs => c
                .filter(|c| c.start_ts != 0)
                .map_or(Val::Na, |c| Val::Num(c.start_ts as i64)),
            K8sNsName => ev
                .container_label("io.kubernetes.pod.namespace")
                .map_or(Val::Na, s),
            K8sPodName => ev
                .container_label("io.kubernetes.pod.name")
                .map_or(Val::Na, s),
            K8sPodUid => ev
                .container_label("io.kubernetes.pod.uid")
                .map_or(Val::Na, s),
        }
    }

    fn arg_value<'a>(&self, ev: &'a Event) -> Option<&'a ArgValue> {
        match &self.arg {
            FieldArg::Key(k) => ev.args.get(k.as_ref()),
            _ => None,
        }
    }
}

/// Per-evaluation context that is not part of the event.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub hostname: String,
}

fn ip(a: Option<IpAddr>) -> Val<'static> {
    a.map_or(Val::Na, Val::Ip)
}

fn port(p: Option<u16>) -> Val<'static> {
    p.map_or(Val::Na, |p| Val::Num(p.into()))
}

fn file_part(ev: &Event, dir: bool) -> Val<'_> {
    match &ev.fd {
        Some(f)
            if matches!(
                f.fd_type,
                crate::model::FdType::File | crate::model::FdType::Directory
            ) =>
        {
            let name = ev.derived.fd_name.as_str();
            match name.rfind('/') {
                Some(0) if dir => Val::Str("/"),
                Some(i) if dir => Val::Str(&name[..i]),
                Some(i) => Val::Str(&name[i + 1..]),
                None if dir => Val::Na,
                None => Val::Str(name),
            }
        }
        _ => Val::Na,
    }
}

const OPEN_TYPES: [&str; 5] = ["open", "openat", "openat2", "creat", "open_by_handle_at"];

/// (read, write, exec) intent of an open event, from its `flags` argument (Falco's rendering,
/// `O_RDWR|O_CREAT`, or the raw integer). Not an open: all false.
pub fn open_mode(ev: &Event) -> (bool, bool, bool) {
    if !OPEN_TYPES.contains(&ev.evt_type.as_str()) {
        return (false, false, false);
    }
    if ev.evt_type == "creat" {
        return (false, true, false);
    }
    let flags = match ev.args.get("flags") {
        Some(ArgValue::Str(f)) => f.as_str(),
        Some(ArgValue::Int(i)) => {
            let acc = i & 3;
            return (acc == 0 || acc == 2, acc == 1 || acc == 2, false);
        }
        None => "",
    };
    // One pass over the names (this runs for every open event).
    let (mut rdwr, mut wronly, mut path, mut exec) = (false, false, false, false);
    for f in flags.split('|') {
        match f.trim() {
            "O_RDWR" => rdwr = true,
            "O_WRONLY" => wronly = true,
            "O_PATH" => path = true,
            "O_EXEC" | "FMODE_EXEC" => exec = true,
            _ => {}
        }
    }
    let write = rdwr || wronly;
    let read = rdwr || !(wronly || path);
    (read, write, exec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_sorted_for_binary_search() {
        assert!(EVENT_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(EVENT_TYPES[event_type_id("execve") as usize], "execve");
        assert_eq!(event_type_id("no_such_call"), OTHER_TYPE);
    }

    #[test]
    fn errno_names() {
        assert_eq!(res_name(0), "SUCCESS");
        assert_eq!(res_name(5), "SUCCESS");
        assert_eq!(res_name(-2), "ENOENT");
        assert_eq!(res_name(-115), "EINPROGRESS");
        assert_eq!(res_name(-9999), "EUNKNOWN");
    }

    #[test]
    fn closest_field() {
        assert_eq!(closest("proc.nmae"), Some("proc.name"));
        assert_eq!(closest("fd.directry"), Some("fd.directory"));
        assert_eq!(closest("zzzzzzzzzzzzzzzzzzzz"), None);
    }

    #[test]
    fn catalog_names_unique_and_disjoint() {
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]));
        assert!(UNAVAILABLE.iter().all(|u| lookup(u).is_none()));
    }
}
