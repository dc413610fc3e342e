//! Per-workload summaries kept by `guard run`: what each container executed, wrote, read (the
//! sensitive files only) and connected to, flushed every [`FLUSH_EVERY`] as one
//! `workload_summary` audit record per active workload and then forgotten.
//!
//! Bounds (docs/policies.md, "Rollout"): at most [`MAX_WORKLOADS`] workloads and
//! [`MAX_ENTRIES`] entries in all per interval, per workload at most [`MAX_PER_MAP`] entries a
//! map, entries at most [`MAX_ENTRY_BYTES`] long. An event that does not fit is counted in the
//! record's `overflow`, so the learner knows a list is incomplete and does not turn it into an
//! allow list. Nothing is allocated for an event whose entry is already present.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::SocketAddr,
    time::Duration,
};

use crate::{
    audit::record::{Workload, WorkloadSummary},
    model,
    rules::loader::Definitions,
};

/// How often the summaries go to the audit log (and the memory is released).
pub const FLUSH_EVERY: Duration = Duration::from_secs(60);
/// Workloads summarised per interval; events of more are counted in no record (see
/// [`Summaries::dropped_workloads`]).
pub const MAX_WORKLOADS: usize = 256;
/// Entries over all workloads and maps per interval.
pub const MAX_ENTRIES: usize = 16_384;
/// Entries per map of one workload: execs, writes, reads, connects.
pub const MAX_PER_MAP: [usize; 4] = [512, 2_048, 64, 1_024];
/// Longer paths are counted in `overflow`, not kept.
pub const MAX_ENTRY_BYTES: usize = 512;
/// Labels kept per workload (for label selectors).
pub const MAX_LABELS: usize = 64;

/// The four maps of a summary, in [`MAX_PER_MAP`] order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Execs,
    Writes,
    Reads,
    Connects,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Execs, Kind::Writes, Kind::Reads, Kind::Connects];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Execs => "execs",
            Kind::Writes => "writes",
            Kind::Reads => "reads",
            Kind::Connects => "connects",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Lists (by name) in the loaded rules that hold the sensitive files: Falco's
/// `sensitive_file_names` and guard's `guard_sensitive_files` (files), `guard_sensitive_dirs`
/// (directories, everything below).
pub const SENSITIVE_FILE_LISTS: [&str; 2] = ["sensitive_file_names", "guard_sensitive_files"];
pub const SENSITIVE_DIR_LISTS: [&str; 1] = ["guard_sensitive_dirs"];

/// The sensitive files, from the rules guard loads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sensitive {
    pub files: BTreeSet<String>,
    /// Each ends with `/`.
    pub dirs: BTreeSet<String>,
    /// Which of the lists above were found.
    pub lists: Vec<String>,
}

impl Sensitive {
    /// Reads the lists from loaded definitions; items that are not plain absolute paths (a
    /// nested list name, a glob) are left out.
    pub fn from_definitions(defs: &Definitions) -> Self {
        let mut s = Sensitive::default();
        let plain = |t: &str| {
            t.starts_with('/')
                && !t.contains(['*', '?', '[', '{', '\0'])
                && !t[1..].split('/').any(|c| c == "." || c == "..")
        };
        for (names, dirs) in [
            (&SENSITIVE_FILE_LISTS[..], false),
            (&SENSITIVE_DIR_LISTS, true),
        ] {
            for name in names {
                let Some(l) = defs.lists.get(*name) else {
                    continue;
                };
                s.lists.push((*name).to_string());
                for it in l.items.iter().filter(|i| plain(&i.text)) {
                    let t = it.text.trim_end_matches('/');
                    if t.is_empty() {
                        continue;
                    }
                    if dirs {
                        s.dirs.insert(format!("{t}/"));
                    } else {
                        s.files.insert(t.to_string());
                    }
                }
            }
        }
        s
    }

    /// Loads rules files only for their lists (the agent at start, `guard policy learn`).
    pub fn from_rules(paths: &[std::path::PathBuf]) -> Self {
        let mut l = crate::rules::Loader::new();
        // Policy and response items are someone else's to check; accept them silently here.
        for kind in ["policy", "response"] {
            l.register_kind(kind, Box::new(|_, _| Vec::new()));
        }
        for p in paths {
            l.add_path(p);
        }
        Self::from_definitions(l.definitions())
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    pub fn matches(&self, path: &str) -> bool {
        self.files.contains(path) || self.dirs.iter().any(|d| path.starts_with(d.as_str()))
    }

    /// Prefixes whose opens (any access) the kernel prefilter must pass.
    pub fn prefixes(&self) -> Vec<String> {
        self.files.iter().chain(&self.dirs).cloned().collect()
    }
}

#[derive(Debug, Default)]
struct Acc {
    workload: Workload,
    labels: BTreeMap<String, String>,
    from: u64,
    to: u64,
    events: u64,
    paths: [HashMap<String, u64>; 3],
    connects: HashMap<SocketAddr, u64>,
    overflow: [u64; 4],
}

impl Acc {
    fn len(&self, k: Kind) -> usize {
        match k {
            Kind::Connects => self.connects.len(),
            _ => self.paths[k.index()].len(),
        }
    }
}

/// What `observe` takes from an event.
enum Seen<'a> {
    Path(Kind, &'a str),
    Connect(SocketAddr),
}

/// The summaries of the current interval.
#[derive(Debug, Default)]
pub struct Summaries {
    sensitive: Sensitive,
    by_container: HashMap<String, Acc>,
    entries: usize,
    /// Events of workloads beyond [`MAX_WORKLOADS`] in this interval.
    pub dropped_workloads: u64,
}

const EINPROGRESS: i64 = 115;

impl Summaries {
    pub fn new(sensitive: Sensitive) -> Self {
        Self {
            sensitive,
            ..Self::default()
        }
    }

    pub fn sensitive(&self) -> &Sensitive {
        &self.sensitive
    }

    /// What of `ev` a summary keeps: a successful exec, open for writing, open of a sensitive
    /// file for reading, or connect (done or in progress) to an IP address.
    fn classify<'e>(&self, ev: &'e model::Event) -> Option<Seen<'e>> {
        match ev.evt_type.as_str() {
            "execve" | "execveat" if ev.res == 0 => {
                Some(Seen::Path(Kind::Execs, ev.proc.exepath.as_str()))
            }
            "open" | "openat" | "openat2" | "creat" if ev.res >= 0 => {
                let name = ev.fd.as_ref().map(|f| f.name.as_str())?;
                if ev.derived.open_write || ev.evt_type == "creat" {
                    Some(Seen::Path(Kind::Writes, name))
                } else if self.sensitive.matches(name) {
                    Some(Seen::Path(Kind::Reads, name))
                } else {
                    None
                }
            }
            "connect" if ev.res == 0 || ev.res == -EINPROGRESS => {
                let fd = ev.fd.as_ref()?;
                Some(Seen::Connect(SocketAddr::new(fd.sip?, fd.sport?)))
            }
            _ => None,
        }
    }

    /// Adds one enriched event. Events outside containers are not summarised (a host
    /// policy selects by cgroup, which the summary does not key on).
    pub fn observe(&mut self, ev: &model::Event) {
        let Some(seen) = self.classify(ev) else {
            return;
        };
        let Some(c) = ev.container.as_ref().filter(|c| is_container_id(&c.id)) else {
            return;
        };
        if !self.by_container.contains_key(c.id.as_str()) {
            if self.by_container.len() >= MAX_WORKLOADS {
                self.dropped_workloads += 1;
                return;
            }
            let acc = Acc {
                workload: Workload {
                    container_id: Some(c.id.clone()),
                    container_name: known(&c.name),
                    image: known(&c.image),
                    k8s_namespace: c.labels.get("io.kubernetes.pod.namespace").cloned(),
                    k8s_pod: c.labels.get("io.kubernetes.pod.name").cloned(),
                },
                labels: bounded_labels(&c.labels),
                from: ev.time,
                ..Acc::default()
            };
            self.by_container.insert(c.id.clone(), acc);
        }
        let room = self.entries < MAX_ENTRIES;
        let Some(acc) = self.by_container.get_mut(c.id.as_str()) else {
            return;
        };
        // Metadata that arrived after the first event.
        if acc.workload.container_name.is_none() && known(&c.name).is_some() {
            acc.workload.container_name = known(&c.name);
            acc.workload.image = known(&c.image);
            acc.labels = bounded_labels(&c.labels);
        }
        acc.events += 1;
        acc.from = acc.from.min(ev.time);
        acc.to = acc.to.max(ev.time);
        let kind = match &seen {
            Seen::Path(k, _) => *k,
            Seen::Connect(_) => Kind::Connects,
        };
        let fits = room && acc.len(kind) < MAX_PER_MAP[kind.index()];
        let added = match seen {
            Seen::Path(k, p) => {
                let m = &mut acc.paths[k.index()];
                if let Some(n) = m.get_mut(p) {
                    *n += 1;
                    false
                } else if fits && p.starts_with('/') && p.len() <= MAX_ENTRY_BYTES {
                    m.insert(p.to_owned(), 1);
                    true
                } else {
                    acc.overflow[k.index()] += 1;
                    false
                }
            }
            Seen::Connect(a) => {
                if let Some(n) = acc.connects.get_mut(&a) {
                    *n += 1;
                    false
                } else if fits {
                    acc.connects.insert(a, 1);
                    true
                } else {
                    acc.overflow[Kind::Connects.index()] += 1;
                    false
                }
            }
        };
        if added {
            self.entries += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_container.is_empty()
    }

    /// The interval's records (sorted by container id) and a fresh interval.
    pub fn take(&mut self) -> Vec<WorkloadSummary> {
        let by = std::mem::take(&mut self.by_container);
        self.entries = 0;
        self.dropped_workloads = 0;
        let mut out: Vec<WorkloadSummary> = by.into_values().map(record).collect();
        out.sort_by(|a, b| a.workload.container_id.cmp(&b.workload.container_id));
        out
    }
}

fn record(a: Acc) -> WorkloadSummary {
    let [execs, writes, reads] = a.paths;
    let sorted = |m: HashMap<String, u64>| m.into_iter().collect::<BTreeMap<_, _>>();
    WorkloadSummary {
        workload: a.workload,
        labels: a.labels,
        from: crate::rfc3339::format(a.from),
        to: crate::rfc3339::format(a.to),
        events: a.events,
        execs: sorted(execs),
        writes: sorted(writes),
        reads: sorted(reads),
        connects: a
            .connects
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        overflow: Kind::ALL
            .iter()
            .filter(|k| a.overflow[k.index()] > 0)
            .map(|k| (k.as_str().to_string(), a.overflow[k.index()]))
            .collect(),
    }
}

/// The container's labels, at most [`MAX_LABELS`] of at most [`MAX_ENTRY_BYTES`] (key +
/// value) each: enough for selectors, bounded whatever the runtime reports.
fn bounded_labels(l: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    l.iter()
        .filter(|(k, v)| k.len() + v.len() <= MAX_ENTRY_BYTES)
        .take(MAX_LABELS)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A metadata string, unless empty or unknown (`<NA>` while the daemon is unreachable).
fn known(s: &str) -> Option<String> {
    (!s.is_empty() && s != crate::state::container::NA).then(|| s.to_owned())
}

/// A container id as the capture writes it: hex, not `host` or unknown.
fn is_container_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
}
