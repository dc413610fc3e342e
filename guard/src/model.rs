//! The enriched event: what the capture stage builds from a kernel record plus the process and
//! container tables, what the rule engine evaluates, and what `guard record` writes and
//! `guard replay` reads as JSON lines. The schema is documented in `docs/event-schema.md`;
//! `v` is its version and any change to the meaning of a key bumps it.

use std::{collections::BTreeMap, io::BufRead, net::IpAddr};

use serde::{Deserialize, Serialize};

mod event_types;
pub use event_types::{EVENT_TYPES, OTHER_TYPE, TYPE_COUNT, event_type_id, open_mode};

/// Version of the JSON-lines schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// Container id Falco uses for processes that run on the host.
pub const HOST_CONTAINER_ID: &str = "host";

/// One event. Keys missing from JSON take their defaults; unknown keys are an error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Schema version; must be [`SCHEMA_VERSION`].
    pub v: u32,
    /// Sequence number, starting at 1. 0 means "unset": the reader assigns one.
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub num: u64,
    /// Wall-clock time, nanoseconds since the Unix epoch.
    pub time: u64,
    /// Falco's event type name: `execve`, `openat`, `connect`, ...
    #[serde(rename = "type")]
    pub evt_type: String,
    /// Syscall return value (negative errno on failure).
    #[serde(default)]
    pub res: i64,
    /// Syscall arguments, rendered as Falco renders them (`flags` = `O_WRONLY|O_CREAT`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, ArgValue>,
    pub proc: Process,
    /// The file descriptor the event is about (opened, connected, duplicated), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<Fd>,
    /// `None` for host processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Container>,
    /// The data of a read, write or send (`evt.buffer`, `evt.buflen`); `None` for other
    /// events and failed calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer: Option<Buffer>,
    #[serde(skip)]
    pub derived: Derived,
}

/// The first bytes a read, write or send moved, and how many it moved.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buffer {
    /// The first bytes (at most `guard_ebpf::syscalls::BUFFER_MAX`, Falco's default snaplen)
    /// as text: valid UTF-8 as is, any other byte U+FFFD (`evt.buffer`).
    pub data: String,
    /// The syscall's full count, which may exceed the bytes kept (`evt.buflen`).
    pub len: i64,
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

/// A syscall argument: an integer or its rendered string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgValue {
    Int(i64),
    Str(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Process {
    pub pid: u32,
    #[serde(default)]
    pub tid: u32,
    #[serde(default)]
    pub ppid: u32,
    /// The kernel's `comm` (at most 15 bytes): Falco's `proc.name`.
    pub name: String,
    /// argv[0] as the caller passed it: Falco's `proc.exe`.
    #[serde(default)]
    pub exe: String,
    /// Full path of the executable file: Falco's `proc.exepath`.
    #[serde(default)]
    pub exepath: String,
    /// argv[1..].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The name `proc.cmdline` starts with when it is not `name`: the comm at the last exec.
    /// A forked child that renamed itself without exec (busybox's in-process applets) keeps
    /// the command line it inherited, as in Falco.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline_name: Option<String>,
    #[serde(default)]
    pub cwd: String,
    /// Controlling terminal device number; 0 = none.
    #[serde(default)]
    pub tty: u32,
    /// Effective uid when the syscall was entered.
    #[serde(default)]
    pub uid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Audit login uid; `None` when unset (Falco shows -1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loginuid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loginname: Option<String>,
    #[serde(default)]
    pub gid: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Process id, process group id in the process's own pid namespace (`proc.vpid`,
    /// `proc.vpgid`); `None` when /proc could not tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpgid: Option<u32>,
    /// The session leader's name (`proc.sname`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sname: Option<String>,
    /// Process start, nanoseconds since the Unix epoch (for `proc.duration`). 0 = unknown.
    #[serde(default)]
    pub start_time: u64,
    /// The executable lives in the writable (upper) overlayfs layer of the container.
    #[serde(default)]
    pub is_exe_upper_layer: bool,
    #[serde(default)]
    pub is_exe_from_memfd: bool,
    #[serde(default)]
    pub is_exe_writable: bool,
    /// The executed file's inode number, change and modification times (ns since the epoch),
    /// read in the kernel at exec (`proc.exe_ino`, `proc.exe_ino.ctime`, `.mtime`), or for a
    /// process that predates the agent by a stat through `/proc/PID/exe`; absent when neither
    /// could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_ino: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_ino_ctime: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe_ino_mtime: Option<u64>,
    /// When the process's pid namespace started, ns since the epoch (its init's start; boot
    /// for the initial namespace), read in the kernel at exec: with `exe_ino_ctime`,
    /// `proc.exe_ino.ctime_duration_pidns_start`; absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pidns_start: Option<u64>,
    /// The environment captured at the last exec guard saw, or `/proc/PID/environ` for a
    /// process that predates the agent (`proc.env`); absent when neither could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Env>,
    /// Effective capabilities, `CAP_*` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_effective: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_permitted: Vec<String>,
    /// Parent first, then grandparent, ... (Falco's `proc.aname[1]`, `[2]`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<Ancestor>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ancestor {
    pub pid: u32,
    pub name: String,
    #[serde(default)]
    pub exe: String,
    #[serde(default)]
    pub exepath: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip)]
    pub cmdline: String,
}

/// Falco's fd types.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FdType {
    #[default]
    File,
    Directory,
    Ipv4,
    Ipv6,
    Unix,
    Pipe,
    Event,
    Signalfd,
    Eventpoll,
    Inotify,
    Timerfd,
    Netlink,
    Bpf,
    Userfaultfd,
    Memfd,
}

impl FdType {
    pub fn as_str(self) -> &'static str {
        match self {
            FdType::File => "file",
            FdType::Directory => "directory",
            FdType::Ipv4 => "ipv4",
            FdType::Ipv6 => "ipv6",
            FdType::Unix => "unix",
            FdType::Pipe => "pipe",
            FdType::Event => "event",
            FdType::Signalfd => "signalfd",
            FdType::Eventpoll => "eventpoll",
            FdType::Inotify => "inotify",
            FdType::Timerfd => "timerfd",
            FdType::Netlink => "netlink",
            FdType::Bpf => "bpf",
            FdType::Userfaultfd => "userfaultfd",
            FdType::Memfd => "memfd",
        }
    }

    /// Falco's one-character code (`fd.typechar`).
    pub fn typechar(self) -> &'static str {
        match self {
            FdType::File | FdType::Memfd => "f",
            FdType::Directory => "d",
            FdType::Ipv4 => "4",
            FdType::Ipv6 => "6",
            FdType::Unix => "u",
            FdType::Pipe => "p",
            FdType::Event => "e",
            FdType::Signalfd => "s",
            FdType::Eventpoll => "l",
            FdType::Inotify => "i",
            FdType::Timerfd => "t",
            FdType::Netlink => "n",
            FdType::Bpf => "b",
            FdType::Userfaultfd => "o",
        }
    }

    pub fn is_inet(self) -> bool {
        matches!(self, FdType::Ipv4 | FdType::Ipv6)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Proto {
    Tcp,
    Udp,
    Icmp,
    Raw,
}

impl L4Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            L4Proto::Tcp => "tcp",
            L4Proto::Udp => "udp",
            L4Proto::Icmp => "icmp",
            L4Proto::Raw => "raw",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fd {
    /// Descriptor number; -1 when the syscall failed.
    #[serde(default = "minus_one")]
    pub num: i64,
    #[serde(default, rename = "type")]
    pub fd_type: FdType,
    /// Files: the resolved absolute path. Sockets: empty (derived as `cip:cport->sip:sport`).
    #[serde(default)]
    pub name: String,
    /// The path string the caller passed, before resolution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nameraw: Option<String>,
    /// Client end of a socket (the connecting side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cport: Option<u16>,
    /// Server end of a socket (the listening side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sip: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l4proto: Option<L4Proto>,
    /// This process is the server end (accepted socket); false for connect.
    #[serde(default)]
    pub is_server: bool,
    /// Sockets: the last connect on it succeeded (`fd.connected`); absent when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connected: Option<bool>,
    /// This event gave the fd another name than it had (`fd.name_changed`); absent when
    /// unknown (not a connect, or a socket guard did not see created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_changed: Option<bool>,
    /// Opens: whether `name` is the kernel-resolved path of the opened file (true), or the
    /// path as written resolved by the agent because the kernel walk failed (false); absent
    /// for failed opens and other fds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_from_kernel: Option<bool>,
}

/// A process's environment, `NAME=value` entries captured at exec (at most
/// `guard_ebpf::PAYLOAD_MAX` bytes), shared by the process table and its events (a clone is a
/// reference count). Serialized as a list of strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env(std::sync::Arc<str>);

impl Env {
    /// From entries; None when one holds a NUL (the separator).
    pub fn from_entries<S: AsRef<str>>(entries: &[S]) -> Option<Env> {
        let mut joined = String::new();
        for (i, e) in entries.iter().enumerate() {
            let e = e.as_ref();
            if e.contains('\0') {
                return None;
            }
            if i > 0 {
                joined.push('\0');
            }
            joined.push_str(e);
        }
        Some(Env(joined.into()))
    }

    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.0.split('\0').filter(|e| !e.is_empty())
    }

    /// The value of `name` (the first entry `name=…`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries()
            .find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
    }

    /// Heap bytes, for the process table's budget.
    pub fn heap_bytes(&self) -> usize {
        self.0.len()
    }
}

impl Serialize for Env {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.entries())
    }
}

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        Env::from_entries(&v).ok_or_else(|| serde::de::Error::custom("env entry with a NUL"))
    }
}

fn minus_one() -> i64 {
    -1
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Container {
    /// Short (12 hex digit) id.
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// Image as the runtime reports it, e.g. `docker.io/library/nginx:1.25`.
    #[serde(default)]
    pub image: String,
    /// Defaults to `image` without tag and digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_repository: Option<String>,
    /// Defaults to the tag of `image` (empty if none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_tag: Option<String>,
    /// `docker`, `containerd`, `cri-o` or `podman` (Falco's `container.type`).
    #[serde(default, rename = "type")]
    pub runtime: String,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Container start, nanoseconds since the Unix epoch. 0 = unknown.
    #[serde(default)]
    pub start_ts: u64,
    /// The pod's labels (`k8s.pod.label[...]`), from the CRI runtime.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,
    /// The pod's IP (`k8s.pod.ip`), when the CRI runtime reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    /// The containerd namespace of a container started straight on containerd (`/NS/<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The container's mounts as the runtime reports them (Docker inspect's `Mounts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
}

/// One container mount: Falco's `container.mounts` item `source:dest:mode:rw:propagation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    #[serde(default)]
    pub source: String,
    pub dest: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
}

/// Values computed once per event by [`Event::prepare`], so that evaluating many rules never
/// builds strings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Derived {
    pub type_id: u16,
    /// `proc.args`: argv[1..] joined by spaces.
    pub args: String,
    /// `proc.cmdline`: name and args.
    pub cmdline: String,
    pub cap_effective: String,
    pub cap_permitted: String,
    pub fd_name: String,
    pub image_repository: String,
    pub image_tag: String,
    /// `container.labels` and `k8s.pod.labels`: `k1:v1, k2:v2` as Falco prints them.
    pub container_labels: String,
    pub pod_labels: String,
    /// `container.mounts`: every mount as `source:dest:mode:rw:propagation`, space-joined.
    pub mounts: String,
    /// `evt.is_open_read` / `_write` / `_exec`, decoded once from the open flags.
    pub open_read: bool,
    pub open_write: bool,
    pub open_exec: bool,
    pub prepared: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("line {line}: {msg}")]
    Line { line: usize, msg: String },
    #[error("reading events: {0}")]
    Io(#[from] std::io::Error),
}

impl Event {
    /// Fills [`Derived`]; checks the schema version. Idempotent.
    pub fn prepare(&mut self) -> Result<(), String> {
        if self.v != SCHEMA_VERSION {
            return Err(format!(
                "unsupported schema version v={} (this build reads v={SCHEMA_VERSION})",
                self.v
            ));
        }
        if self.num == 0 {
            self.num = 1;
        }
        // Every derived string is rebuilt in its existing buffer: the capture stage reuses
        // events, so this allocates only when a value outgrows what an earlier event left.
        let d = &mut self.derived;
        d.type_id = event_type_id(&self.evt_type);
        join_into(&mut d.args, &self.proc.args);
        let cmd_name = self.proc.cmdline_name.as_deref().unwrap_or(&self.proc.name);
        cmdline_into(&mut d.cmdline, cmd_name, &self.proc.args);
        join_into(&mut d.cap_effective, &self.proc.cap_effective);
        join_into(&mut d.cap_permitted, &self.proc.cap_permitted);
        for a in &mut self.proc.ancestors {
            cmdline_into(&mut a.cmdline, &a.name, &a.args);
        }
        d.fd_name.clear();
        match &self.fd {
            Some(fd) if fd.name.is_empty() && fd.fd_type.is_inet() => d.fd_name = socket_name(fd),
            Some(fd) => d.fd_name.push_str(&fd.name),
            None => {}
        }
        d.image_repository.clear();
        d.image_tag.clear();
        d.container_labels.clear();
        d.pod_labels.clear();
        d.mounts.clear();
        if let Some(c) = &self.container {
            labels_into(&mut d.container_labels, &c.labels);
            labels_into(&mut d.pod_labels, &c.pod_labels);
            for (i, m) in c.mounts.iter().enumerate() {
                if i > 0 {
                    d.mounts.push(' ');
                }
                use std::fmt::Write as _;
                let _ = write!(
                    d.mounts,
                    "{}:{}:{}:{}:{}",
                    m.source, m.dest, m.mode, m.rw, m.propagation
                );
            }
            let (repo, tag) = split_image(&c.image);
            d.image_repository
                .push_str(c.image_repository.as_deref().unwrap_or(repo));
            d.image_tag.push_str(c.image_tag.as_deref().unwrap_or(tag));
        }
        let (r, w, x) = open_mode(self);
        let d = &mut self.derived;
        (d.open_read, d.open_write, d.open_exec) = (r, w, x);
        d.prepared = true;
        Ok(())
    }

    /// Parses and prepares one JSON line.
    pub fn from_json_line(line: &str) -> Result<Event, String> {
        let mut ev: Event = serde_json::from_str(line).map_err(|e| e.to_string())?;
        ev.prepare()?;
        Ok(ev)
    }

    pub fn container_label(&self, key: &str) -> Option<&str> {
        self.container
            .as_ref()
            .and_then(|c| c.labels.get(key))
            .map(String::as_str)
    }
}

/// `out` = `k1:v1, k2:v2`, in place.
fn labels_into(out: &mut String, labels: &BTreeMap<String, String>) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(k);
        out.push(':');
        out.push_str(v);
    }
}

/// `out` = `items` joined by spaces, in place.
fn join_into(out: &mut String, items: &[String]) {
    out.clear();
    for (i, part) in items.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(part);
    }
}

/// `out` = Falco's `proc.cmdline`: the name, then a space and the joined arguments unless
/// they join to nothing; in place.
fn cmdline_into(out: &mut String, name: &str, args: &[String]) {
    out.clear();
    out.push_str(name);
    let mark = out.len();
    out.push(' ');
    for (i, part) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(part);
    }
    if out.len() == mark + 1 {
        out.truncate(mark);
    }
}

fn socket_name(fd: &Fd) -> String {
    let ip = |a: Option<IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
    let port = |p: Option<u16>| p.map(|p| p.to_string()).unwrap_or_default();
    format!(
        "{}:{}->{}:{}",
        ip(fd.cip),
        port(fd.cport),
        ip(fd.sip),
        port(fd.sport)
    )
}

/// Splits `registry/repo:tag@digest` into repository and tag, as Falco does.
pub fn split_image(image: &str) -> (&str, &str) {
    let no_digest = image.split('@').next().unwrap_or(image);
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[slash..].rfind(':') {
        Some(i) => (&no_digest[..slash + i], &no_digest[slash + i + 1..]),
        None => (no_digest, ""),
    }
}

/// Parses and prepares one JSON line; an event without `num` gets `default_num`.
pub fn parse_line(line: &str, default_num: u64) -> Result<Event, String> {
    let mut ev: Event = serde_json::from_str(line).map_err(|e| e.to_string())?;
    if ev.num == 0 {
        ev.num = default_num;
    }
    ev.prepare()?;
    Ok(ev)
}

/// Reads JSON-lines events. Blank lines are skipped; any bad line is an error that names its
/// line number. Events without `num` are numbered by line order.
pub fn read_events(input: impl BufRead) -> Result<Vec<Event>, ModelError> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let ev = parse_line(&line, out.len() as u64 + 1)
            .map_err(|msg| ModelError::Line { line: i + 1, msg })?;
        out.push(ev);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXEC: &str = r#"{"v":1,"time":5,"type":"execve","proc":{"pid":7,"name":"bash","args":["-c","id"],"ancestors":[{"pid":1,"name":"runc","args":["init"]}]},"container":{"id":"abc","image":"reg.io:5000/app/web:1.2@sha256:00"}}"#;

    #[test]
    fn parses_and_derives() {
        let ev = Event::from_json_line(EXEC).expect("valid line");
        assert_eq!(ev.derived.cmdline, "bash -c id");
        assert_eq!(ev.derived.args, "-c id");
        assert_eq!(ev.proc.ancestors[0].cmdline, "runc init");
        assert_eq!(ev.derived.image_repository, "reg.io:5000/app/web");
        assert_eq!(ev.derived.image_tag, "1.2");
        assert_eq!(ev.num, 1);
    }

    #[test]
    fn image_split() {
        assert_eq!(split_image("nginx"), ("nginx", ""));
        assert_eq!(split_image("nginx:1"), ("nginx", "1"));
        assert_eq!(split_image("localhost:5000/x"), ("localhost:5000/x", ""));
    }

    #[test]
    fn unknown_key_and_version_are_errors_with_line() {
        let input = format!(
            "{EXEC}\n\n{{\"v\":1,\"time\":1,\"type\":\"x\",\"proc\":{{\"pid\":1,\"name\":\"a\",\"colour\":1}}}}\n"
        );
        let err = read_events(input.as_bytes()).expect_err("unknown key");
        let msg = err.to_string();
        assert!(msg.starts_with("line 3:"), "{msg}");
        assert!(msg.contains("colour"), "{msg}");
        let err =
            read_events(r#"{"v":2,"time":1,"type":"x","proc":{"pid":1,"name":"a"}}"#.as_bytes())
                .expect_err("version");
        assert!(err.to_string().contains("v=2"));
    }

    #[test]
    fn socket_fd_name_and_numbering() {
        let line = r#"{"v":1,"time":1,"type":"connect","proc":{"pid":1,"name":"curl"},"fd":{"num":3,"type":"ipv4","cip":"10.0.0.2","cport":40000,"sip":"1.2.3.4","sport":443,"l4proto":"tcp"}}"#;
        let evs = read_events(format!("{line}\n{line}\n").as_bytes()).expect("valid");
        assert_eq!(evs[0].derived.fd_name, "10.0.0.2:40000->1.2.3.4:443");
        assert_eq!((evs[0].num, evs[1].num), (1, 2));
    }
}
