//! Reading a field's value from an event.

use std::{fmt::Write as _, net::IpAddr};

use super::{Ctx, FieldArg, FieldId, FieldRef, Val};
use crate::model::{ArgValue, Event};

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

    /// For `fd.*ip.name`, the address field whose names it gives.
    pub fn ip_of_name(&self) -> Option<FieldRef> {
        let id = match self.id {
            FieldId::FdCipName => FieldId::FdCip,
            FieldId::FdSipName => FieldId::FdSip,
            FieldId::FdLipName => FieldId::FdLip,
            FieldId::FdRipName => FieldId::FdRip,
            _ => return None,
        };
        Some(FieldRef {
            id,
            arg: FieldArg::None,
        })
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
            EvtBuffer => ev.buffer.as_ref().map_or(Val::Na, |b| s(&b.data)),
            EvtBuflen => ev.buffer.as_ref().map_or(Val::Na, |b| Val::Num(b.len)),
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
            ProcExeIno => num(p.exe_ino),
            ProcExeInoCtime => num(p.exe_ino_ctime),
            ProcExeInoMtime => num(p.exe_ino_mtime),
            // As Falco: from the file's change to the process's start (its fork); a change
            // after the start has no duration.
            // As Falco: the entries space-separated; [NAME]: the value (`<NA>` if unset).
            ProcEnv => match (&p.env, &self.arg) {
                (None, _) => Val::Na,
                (Some(e), FieldArg::Key(k)) => e.get(k).map_or(Val::Na, s),
                (Some(e), _) => {
                    buf.clear();
                    for entry in e.entries() {
                        if !buf.is_empty() {
                            buf.push(' ');
                        }
                        buf.push_str(entry);
                    }
                    s(buf.as_str())
                }
            },
            // As Falco: from the pid namespace's start to the file's change, only when the
            // change is later.
            ProcExeInoCtimeDurationPidnsStart => match (p.exe_ino_ctime, p.pidns_start) {
                (Some(c), Some(ns)) if ns != 0 && c > ns => num(Some(c - ns)),
                _ => Val::Na,
            },
            ProcExeInoCtimeDurationProcStart => match p.exe_ino_ctime {
                Some(c) if p.start_time != 0 && p.start_time >= c => num(Some(p.start_time - c)),
                _ => Val::Na,
            },
            ProcVpid => p.vpid.map_or(Val::Na, |v| Val::Num(v.into())),
            ProcVpgid => p.vpgid.map_or(Val::Na, |v| Val::Num(v.into())),
            ProcIsVpgidLeader => match (p.vpid, p.vpgid) {
                (Some(a), Some(b)) => Val::Bool(a == b),
                _ => Val::Na,
            },
            ProcSname => p.sname.as_deref().map_or(Val::Na, s),
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
            // The model leaves `nameraw` out when it equals `name` (a path as written that
            // needed no resolving); for files that is still the path as written.
            FdNameraw => fd.map_or(Val::Na, |f| match (&f.nameraw, f.fd_type) {
                (Some(raw), _) => s(raw),
                (None, crate::model::FdType::File | crate::model::FdType::Directory) => s(&f.name),
                (None, _) => Val::Na,
            }),
            FdDirectory => file_part(ev, true),
            FdFilename => file_part(ev, false),
            FdCip => ip(fd.and_then(|f| f.cip)),
            FdSip => ip(fd.and_then(|f| f.sip)),
            FdLip => ip(fd.and_then(|f| if f.is_server { f.sip } else { f.cip })),
            FdRip => ip(fd.and_then(|f| if f.is_server { f.cip } else { f.sip })),
            FdCipName | FdSipName | FdLipName | FdRipName => {
                let Some(a) = fd.and_then(|f| match self.id {
                    FdCipName => f.cip,
                    FdSipName => f.sip,
                    FdLipName if f.is_server => f.sip,
                    FdLipName => f.cip,
                    FdRipName if f.is_server => f.cip,
                    _ => f.sip,
                }) else {
                    return Val::Na;
                };
                buf.clear();
                if !ctx
                    .dns
                    .with(|d| d.name_of(a).map(|n| buf.push_str(n)).is_some())
                {
                    return Val::Na;
                }
                s(buf.as_str())
            }
            // The ends that are known, client first: a connect or sendto knows only the
            // server end, which is then the only value.
            FdIp => ip(fd.and_then(|f| [f.cip, f.sip].into_iter().flatten().nth(n))),
            FdCport => port(fd.and_then(|f| f.cport)),
            FdSport => port(fd.and_then(|f| f.sport)),
            FdLport => port(fd.and_then(|f| if f.is_server { f.sport } else { f.cport })),
            FdRport => port(fd.and_then(|f| if f.is_server { f.cport } else { f.sport })),
            FdPort => port(fd.and_then(|f| [f.cport, f.sport].into_iter().flatten().nth(n))),
            FdL4proto => fd
                .and_then(|f| f.l4proto)
                .map_or(Val::Na, |l| s(l.as_str())),
            FdSockfamily => match fd.map(|f| f.fd_type) {
                Some(t) if t.is_inet() => s("ip"),
                Some(crate::model::FdType::Unix) => s("unix"),
                _ => Val::Na,
            },
            FdIsServer => fd.map_or(Val::Na, |f| Val::Bool(f.is_server)),
            FdConnected => fd.and_then(|f| f.connected).map_or(Val::Na, Val::Bool),
            FdNameChanged => fd.and_then(|f| f.name_changed).map_or(Val::Na, Val::Bool),
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
            ContainerMounts => c.map_or(Val::Na, |_| s(&ev.derived.mounts)),
            ContainerMountDest => match (&self.arg, c) {
                (FieldArg::Key(k), Some(c)) => {
                    let m = match k.parse::<usize>() {
                        Ok(i) => c.mounts.get(i),
                        Err(_) => c.mounts.iter().find(|m| glob_match(k, &m.source)),
                    };
                    m.map_or(Val::Na, |m| s(&m.dest))
                }
                _ => Val::Na,
            },
            K8sNsName => ev
                .container_label("io.kubernetes.pod.namespace")
                .map_or(Val::Na, s),
            K8sPodName => ev
                .container_label("io.kubernetes.pod.name")
                .map_or(Val::Na, s),
            K8sPodUid => ev
                .container_label("io.kubernetes.pod.uid")
                .map_or(Val::Na, s),
            ContainerLabels => c.map_or(Val::Na, |_| s(&ev.derived.container_labels)),
            K8sPodLabels => c
                .filter(|c| !c.pod_labels.is_empty())
                .map_or(Val::Na, |_| s(&ev.derived.pod_labels)),
            K8sPodLabel => match (&self.arg, c) {
                (FieldArg::Key(k), Some(c)) => {
                    c.pod_labels.get(k.as_ref()).map_or(Val::Na, |v| s(v))
                }
                _ => Val::Na,
            },
            K8sPodIp => c.and_then(|c| c.pod_ip.as_deref()).map_or(Val::Na, s),
        }
    }

    fn arg_value<'a>(&self, ev: &'a Event) -> Option<&'a ArgValue> {
        match &self.arg {
            FieldArg::Key(k) => ev.args.get(k.as_ref()),
            _ => None,
        }
    }
}

/// `*` (any run, `/` included, as Falco's fnmatch without FNM_PATHNAME) and `?` (one
/// character); no allocation.
pub fn glob_match(pat: &str, text: &str) -> bool {
    let (p, t) = (pat.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// A u64 (ns, inode numbers) as a number; beyond i64 or absent: `<NA>`.
fn num(v: Option<u64>) -> Val<'static> {
    v.and_then(|v| i64::try_from(v).ok())
        .map_or(Val::Na, Val::Num)
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
