//! The field catalog: every Falco field name guard knows, its type, and how it is read from a
//! [`crate::model::Event`]. Extraction borrows from the event (or a caller's scratch buffer), so
//! evaluating a condition never allocates.
//!
//! - this module: the field ids and types, name resolution (`name[arg]`, renamed fields).
//! - [`catalog`]: the tables of field names guard provides, cannot provide, or renames.
//! - [`extract`]: reading each field's value from an event.
//!
//! Adding a field: a [`FieldId`] variant, its catalog entry, its arm in [`FieldRef::extract`]
//! (the compiler asks for that one), and the model's data if the event does not carry it yet.

use std::net::IpAddr;

mod catalog;
mod extract;

pub use catalog::{FIELDS, RENAMED, Renamed, UNAVAILABLE};
pub use extract::{glob_match, res_name};
// The event type ids belong to the model (which prepares them on each event).
pub use crate::model::{EVENT_TYPES, OTHER_TYPE, TYPE_COUNT, event_type_id, open_mode};
pub use crate::yaml::levenshtein;

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
    ProcExeIno,
    ProcExeInoCtime,
    ProcExeInoMtime,
    ProcExeInoCtimeDurationProcStart,
    ProcVpid,
    ProcVpgid,
    ProcIsVpgidLeader,
    ProcSname,
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
    FdConnected,
    FdNameChanged,
    ContainerId,
    ContainerName,
    ContainerImage,
    ContainerImageRepository,
    ContainerImageTag,
    ContainerType,
    ContainerPrivileged,
    ContainerLabel,
    ContainerStartTs,
    ContainerMounts,
    ContainerMountDest,
    K8sNsName,
    K8sPodName,
    K8sPodUid,
    ContainerLabels,
    K8sPodLabel,
    K8sPodLabels,
    K8sPodIp,
}

pub struct FieldDef {
    pub name: &'static str,
    pub id: FieldId,
    pub ty: FieldType,
    pub arg: ArgSpec,
    pub desc: &'static str,
}

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

/// Per-evaluation context that is not part of the event.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    pub hostname: String,
    /// Alerts of containerized processes do not get the container fields appended
    /// (`--no-container-fields`).
    pub no_container_fields: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `name`'s value on `ev`, as its `Debug` form (`Na` when unknown).
    fn value_of(name: &str, ev: &crate::model::Event) -> String {
        let (Resolved::Field(f, _), _) = resolve(name).expect("resolves") else {
            panic!("{name} is unavailable");
        };
        let mut buf = String::new();
        format!("{:?}", f.extract(ev, 0, &Ctx::default(), &mut buf))
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

    /// Each newly provided field: its value on an event that has it, `<NA>` on one that
    /// does not (a host process /proc could not read, an event without an fd).
    #[test]
    fn provided_fields_have_values_and_na() {
        use crate::model::Event;
        let with = Event::from_json_line(
            r#"{"v":1,"time":1,"type":"connect","proc":{"pid":4242,"name":"sh","uid":1234,"user":"appuser","gid":1234,"group":"app","loginname":"<NA>","vpid":7,"vpgid":7,"sname":"bash"},"fd":{"num":3,"type":"ipv4","sip":"8.8.8.8","sport":53,"connected":true,"name_changed":false}}"#,
        )
        .expect("event");
        let without = Event::from_json_line(
            r#"{"v":1,"time":1,"type":"execve","proc":{"pid":9,"name":"x","vpid":9,"vpgid":3}}"#,
        )
        .expect("event");
        let get = |name: &str, ev: &Event| value_of(name, ev);
        for (name, want) in [
            ("proc.vpid", "Num(7)"),
            ("proc.vpgid", "Num(7)"),
            ("proc.is_vpgid_leader", "Bool(true)"),
            ("proc.sname", "Str(\"bash\")"),
            ("fd.connected", "Bool(true)"),
            ("fd.name_changed", "Bool(false)"),
            ("user.name", "Str(\"appuser\")"),
            ("group.name", "Str(\"app\")"),
            ("user.loginname", "Str(\"<NA>\")"),
        ] {
            assert_eq!(get(name, &with), want, "{name}");
        }
        for name in [
            "proc.sname",
            "fd.connected",
            "fd.name_changed",
            "user.name",
            "group.name",
        ] {
            assert_eq!(get(name, &without), "Na", "{name}");
        }
        assert_eq!(get("proc.is_vpgid_leader", &without), "Bool(false)");
        let mut none = without.clone();
        (none.proc.vpid, none.proc.vpgid) = (None, None);
        for name in ["proc.vpid", "proc.vpgid", "proc.is_vpgid_leader"] {
            assert_eq!(get(name, &none), "Na", "{name}");
        }
    }

    /// `container.mounts` and `container.mount.dest[…]` from the runtime's mounts; `<NA>` on
    /// the host and for a mount the container does not have.
    #[test]
    fn container_mount_fields() {
        use crate::model::Event;
        let ev = Event::from_json_line(
            r#"{"v":1,"time":1,"type":"execve","proc":{"pid":1,"name":"sh"},"container":{"id":"abc","mounts":[{"source":"/var/run/docker.sock","dest":"/run/docker.sock","mode":"","rw":true,"propagation":"rprivate"},{"source":"/srv/data","dest":"/data","mode":"ro","rw":false,"propagation":""}]}}"#,
        )
        .expect("event");
        let host = Event::from_json_line(
            r#"{"v":1,"time":1,"type":"execve","proc":{"pid":1,"name":"sh"}}"#,
        )
        .expect("event");
        let get = |name: &str, ev: &Event| value_of(name, ev);
        assert_eq!(
            get("container.mounts", &ev),
            r#"Str("/var/run/docker.sock:/run/docker.sock::true:rprivate /srv/data:/data:ro:false:")"#
        );
        assert_eq!(get("container.mount.dest[1]", &ev), r#"Str("/data")"#);
        assert_eq!(
            get("container.mount.dest[/var/run/*.sock]", &ev),
            r#"Str("/run/docker.sock")"#
        );
        assert_eq!(get("container.mount.dest[2]", &ev), "Na");
        assert_eq!(get("container.mount.dest[/etc*]", &ev), "Na");
        assert_eq!(get("container.mounts", &host), "Na");
        assert_eq!(get("container.mount.dest[0]", &host), "Na");
        assert!(extract::glob_match("/a/*/c", "/a/b/x/c"));
        assert!(extract::glob_match("?b*", "abc"));
        assert!(!extract::glob_match("/a/*", "/b/a"));
        assert!(extract::glob_match("", ""));
    }

    /// `proc.exe_ino*`: the executed file's inode and times read at exec; the duration runs
    /// from the file's change to the process's start. `<NA>` for a process whose exec guard
    /// did not see, and a duration for a file changed after the process started.
    #[test]
    fn exe_inode_fields() {
        use crate::model::Event;
        let ev = Event::from_json_line(
            r#"{"v":1,"time":9000000000,"type":"execve","proc":{"pid":5,"name":"newtool","start_time":5000000000,"exe_ino":1234,"exe_ino_ctime":4000000000,"exe_ino_mtime":3000000000}}"#,
        )
        .expect("event");
        let get = |name: &str, ev: &Event| value_of(name, ev);
        assert_eq!(get("proc.exe_ino", &ev), "Num(1234)");
        assert_eq!(get("proc.exe_ino.ctime", &ev), "Num(4000000000)");
        assert_eq!(get("proc.exe_ino.mtime", &ev), "Num(3000000000)");
        assert_eq!(
            get("proc.exe_ino.ctime_duration_proc_start", &ev),
            "Num(1000000000)"
        );
        let mut later = ev.clone();
        later.proc.exe_ino_ctime = Some(6_000_000_000);
        assert_eq!(get("proc.exe_ino.ctime_duration_proc_start", &later), "Na");
        let mut unknown_start = ev.clone();
        unknown_start.proc.start_time = 0;
        assert_eq!(
            get("proc.exe_ino.ctime_duration_proc_start", &unknown_start),
            "Na"
        );
        let seeded = Event::from_json_line(
            r#"{"v":1,"time":9000000000,"type":"execve","proc":{"pid":5,"name":"old","start_time":5000000000}}"#,
        )
        .expect("event");
        for name in [
            "proc.exe_ino",
            "proc.exe_ino.ctime",
            "proc.exe_ino.mtime",
            "proc.exe_ino.ctime_duration_proc_start",
        ] {
            assert_eq!(get(name, &seeded), "Na", "{name}");
        }
    }

    #[test]
    fn catalog_names_unique_and_disjoint() {
        let mut names: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
        names.sort_unstable();
        assert!(names.windows(2).all(|w| w[0] != w[1]));
        assert!(UNAVAILABLE.iter().all(|u| lookup(u).is_none()));
    }
}
