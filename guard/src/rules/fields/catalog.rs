//! The catalog tables: fields guard provides, Falco fields it cannot provide, renamed names.

use super::{ArgSpec, FieldDef, FieldId, FieldType};

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
    f!(
        "evt.buffer",
        EvtBuffer,
        Str,
        None,
        "read, write, pread, pwrite, sendto, recvfrom, sendmsg: the first bytes moved (at most 80)"
    ),
    f!(
        "evt.buflen",
        EvtBuflen,
        Num,
        None,
        "read, write, pread, pwrite, sendto, recvfrom, sendmsg: the bytes moved (the result)"
    ),
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
    f!(
        "proc.exe_ino",
        ProcExeIno,
        Num,
        None,
        "inode number of the executed file, read at exec"
    ),
    f!(
        "proc.exe_ino.ctime",
        ProcExeInoCtime,
        Num,
        None,
        "executed file's last status change, ns since the epoch, at exec"
    ),
    f!(
        "proc.exe_ino.mtime",
        ProcExeInoMtime,
        Num,
        None,
        "executed file's last modification, ns since the epoch, at exec"
    ),
    f!(
        "proc.exe_ino.ctime_duration_proc_start",
        ProcExeInoCtimeDurationProcStart,
        Num,
        None,
        "ns from the executed file's last status change to the process's start"
    ),
    f!(
        "proc.exe_ino.ctime_duration_pidns_start",
        ProcExeInoCtimeDurationPidnsStart,
        Num,
        None,
        "ns from the pid namespace's start (its init's start; boot for the host's) to the executed file's last status change, when the change is later"
    ),
    f!(
        "proc.env",
        ProcEnv,
        Str,
        OptKey,
        "environment at exec (NAME=value, space-separated); [NAME]: that variable's value"
    ),
    f!(
        "proc.vpid",
        ProcVpid,
        Num,
        None,
        "pid in the process's own pid namespace"
    ),
    f!(
        "proc.vpgid",
        ProcVpgid,
        Num,
        None,
        "process group id in the process's own pid namespace"
    ),
    f!(
        "proc.is_vpgid_leader",
        ProcIsVpgidLeader,
        Bool,
        None,
        "proc.vpid = proc.vpgid: the process leads its process group"
    ),
    f!(
        "proc.sname",
        ProcSname,
        Str,
        None,
        "name of the process's session leader"
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
    f!(
        "fd.cip.name",
        FdCipName,
        Str,
        None,
        "a rule-listed host name that resolves to the client IP"
    ),
    f!(
        "fd.sip.name",
        FdSipName,
        Str,
        None,
        "a rule-listed host name that resolves to the server IP"
    ),
    f!(
        "fd.lip.name",
        FdLipName,
        Str,
        None,
        "a rule-listed host name that resolves to the local IP"
    ),
    f!(
        "fd.rip.name",
        FdRipName,
        Str,
        None,
        "a rule-listed host name that resolves to the remote IP"
    ),
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
        "fd.connected",
        FdConnected,
        Bool,
        None,
        "socket: the last connect on it succeeded"
    ),
    f!(
        "fd.name_changed",
        FdNameChanged,
        Bool,
        None,
        "this connect gave the socket another address than it had"
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
        "container.mounts",
        ContainerMounts,
        Str,
        None,
        "mounts as source:dest:mode:rw:propagation, space separated"
    ),
    f!(
        "container.mount.dest",
        ContainerMountDest,
        Str,
        Key,
        "destination of the mount given by index ([0]) or by source glob ([/var/run/*.sock])"
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
    f!(
        "container.labels",
        ContainerLabels,
        Str,
        None,
        "container labels, 'k1:v1, k2:v2'"
    ),
    f!(
        "k8s.pod.label",
        K8sPodLabel,
        Str,
        Key,
        "pod label by key (CRI runtimes)"
    ),
    f!(
        "k8s.pod.labels",
        K8sPodLabels,
        Str,
        None,
        "pod labels, 'k1:v1, k2:v2' (CRI runtimes)"
    ),
    f!(
        "k8s.pod.ip",
        K8sPodIp,
        Str,
        None,
        "pod IP when the CRI runtime reports one"
    ),
];

/// Falco fields guard cannot provide. Checks on them are false (so `not <check>` is true),
/// outputs render `<NA>`; each is reported once at load.
pub static UNAVAILABLE: &[&str] = &[
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
    "proc.sid",
    "proc.vpgid.name",
    "proc.vpgid.exe",
    "proc.vpgid.exepath",
    "proc.is_sid_leader",
    "proc.ppid.duration",
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
    "container.mount",
    "container.mount.source",
    "container.healthcheck",
    "container.ip",
    "container.cni.json",
    "container.host_pid",
    "container.host_network",
    "container.host_ipc",
    "container.duration",
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
