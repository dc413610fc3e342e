//! From summaries to a `- policy:` item: what the workload was seen doing becomes its allow
//! lists, what it never did among the system directories and sensitive files its deny lists.
//!
//! The output is stable (sorted, no clock read): the same summaries give the same bytes.
//! Every entry is checked with the policy parser's own rules; one it could not enforce
//! exactly is left out with a comment, and the whole item is parsed again before it is
//! printed (`check`), so what `learn` prints is what `guard validate` accepts.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write,
    net::{IpAddr, SocketAddr},
};

use serde_yaml::{Mapping, Value};

use super::summary::Sensitive;
use crate::{
    audit::record::WorkloadSummary,
    policy::{parse_net_rule, parse_path_rule},
    workload::{WorkloadInfo, WorkloadSelector},
};

/// Directories a workload rarely writes: each one it never wrote gets `DIR/**` in
/// `open.deny_write`.
pub const SYSTEM_DIRS: [&str; 11] = [
    "/bin", "/boot", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/opt", "/root", "/sbin",
    "/usr",
];
/// Addresses of one port in one /24 (IPv6: /64) from which they fold into the network.
pub const FOLD_NET_MIN: usize = 4;
/// Ports of one address from which they fold into "any port" of the address.
pub const FOLD_PORTS_MIN: usize = 16;

/// `--workload`: the same mapping as a policy's `workload:` (`{image: "nginx:*"}`), or the
/// short form `KEY=GLOB[,KEY=GLOB…]` (`name=web-*`, `labels.app=web`).
#[derive(Debug, Clone)]
pub struct Selector {
    pub selector: WorkloadSelector,
    /// As given, to print back into the policy.
    pub mapping: Mapping,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let mapping = if t.starts_with('{') {
            match serde_yaml::from_str::<Value>(t) {
                Ok(Value::Mapping(m)) => m,
                Ok(_) => return Err(format!("{t:?}: not a mapping")),
                Err(e) => return Err(format!("{t:?}: {e}")),
            }
        } else {
            let mut m = Mapping::new();
            let mut labels = Mapping::new();
            for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let Some((k, v)) = part.split_once('=') else {
                    return Err(format!(
                        "{part:?}: expected KEY=GLOB (image, name, k8s_namespace, labels.NAME, container)"
                    ));
                };
                let (k, v) = (k.trim(), v.trim());
                if let Some(l) = k.strip_prefix("labels.") {
                    labels.insert(l.into(), v.into());
                } else if k == "container" {
                    let b = v
                        .parse::<bool>()
                        .map_err(|_| format!("{part:?}: container takes true or false"))?;
                    m.insert(k.into(), b.into());
                } else {
                    m.insert(k.into(), v.into());
                }
            }
            if !labels.is_empty() {
                m.insert("labels".into(), Value::Mapping(labels));
            }
            m
        };
        let selector: WorkloadSelector = serde_yaml::from_value(Value::Mapping(mapping.clone()))
            .map_err(|e| format!("{t:?}: {e}"))?;
        if selector.cgroup.is_some() {
            return Err(format!(
                "{t:?}: summaries are kept per container, so a cgroup selector cannot be learned; select by image, name, labels or k8s_namespace"
            ));
        }
        if selector.container == Some(false) {
            return Err(format!("{t:?}: only containers are summarised"));
        }
        if selector.is_empty() {
            return Err(format!(
                "{t:?}: selects every workload; name one (image=…, name=…, labels.KEY=…)"
            ));
        }
        Ok(Self { selector, mapping })
    }

    pub fn matches(&self, s: &WorkloadSummary) -> bool {
        let w = &s.workload;
        let info = WorkloadInfo {
            container_id: w.container_id.clone(),
            name: w.container_name.clone().unwrap_or_default(),
            image: w.image.clone().unwrap_or_default(),
            labels: s.labels.clone(),
            k8s_namespace: w.k8s_namespace.clone().unwrap_or_default(),
            cgroup_path: None,
        };
        self.selector.matches(&info)
    }

    /// `learned-<first value>`, letters, digits and `-` only.
    pub fn default_name(&self) -> String {
        let first = self
            .mapping
            .iter()
            .find_map(|(_, v)| match v {
                Value::String(s) => Some(s.clone()),
                Value::Mapping(m) => m.values().find_map(|v| v.as_str().map(str::to_owned)),
                _ => None,
            })
            .unwrap_or_default();
        let mut name = String::from("learned");
        let mut dash = false;
        for c in first.chars() {
            if c.is_ascii_alphanumeric() {
                if !dash {
                    name.push('-');
                }
                name.push(c.to_ascii_lowercase());
                dash = true;
            } else {
                dash = false;
            }
        }
        name
    }
}

/// Everything seen of the selected workloads over the window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Earliest and latest event (ns), over all summaries.
    pub from: i64,
    pub to: i64,
    pub records: u64,
    pub events: u64,
    pub containers: BTreeSet<String>,
    pub execs: BTreeMap<String, u64>,
    pub writes: BTreeMap<String, u64>,
    pub reads: BTreeMap<String, u64>,
    pub connects: BTreeMap<SocketAddr, u64>,
    pub overflow: BTreeMap<String, u64>,
}

impl Observed {
    /// Adds one summary. Errors name what is malformed in it (the caller adds where).
    pub fn add(&mut self, s: &WorkloadSummary) -> Result<(), String> {
        let time = |t: &str| crate::rfc3339::parse(t).ok_or_else(|| format!("bad time {t:?}"));
        let (from, to) = (time(&s.from)?, time(&s.to)?);
        if self.records == 0 {
            (self.from, self.to) = (from, to);
        } else {
            self.from = self.from.min(from);
            self.to = self.to.max(to);
        }
        self.records += 1;
        self.events = self.events.saturating_add(s.events);
        self.containers.insert(s.workload.label());
        let add = |into: &mut BTreeMap<String, u64>, m: &BTreeMap<String, u64>| {
            for (k, v) in m {
                let e = into.entry(k.clone()).or_default();
                *e = e.saturating_add(*v);
            }
        };
        add(&mut self.execs, &s.execs);
        add(&mut self.writes, &s.writes);
        add(&mut self.reads, &s.reads);
        add(&mut self.overflow, &s.overflow);
        for (k, v) in &s.connects {
            let a: SocketAddr = k
                .parse()
                .map_err(|_| format!("connect destination {k:?} is not ip:port"))?;
            let e = self.connects.entry(a).or_default();
            *e = e.saturating_add(*v);
        }
        Ok(())
    }

    fn overflowed(&self, what: &str) -> u64 {
        self.overflow.get(what).copied().unwrap_or(0)
    }
}

/// What the policy is built from besides the observations.
pub struct Inputs<'a> {
    pub name: &'a str,
    pub selector: &'a Selector,
    pub sensitive: &'a Sensitive,
    /// Where the summaries came from, for the header.
    pub source: &'a str,
}

/// YAML double-quoted scalar (JSON's escapes are YAML's).
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn plural(n: u64, one: &str) -> String {
    match (n, one.strip_suffix('y')) {
        (1, _) => format!("{n} {one}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {one}s"),
    }
}

/// The value of a selector key, as YAML.
fn yaml_value(v: &Value) -> String {
    match v {
        Value::String(s) => q(s),
        Value::Bool(b) => b.to_string(),
        Value::Mapping(m) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}: {}", q(k.as_str().unwrap_or("")), yaml_value(v)))
                .collect();
            format!("{{{}}}", parts.join(", "))
        }
        other => q(&serde_yaml::to_string(other).unwrap_or_default()),
    }
}

/// One folded connect entry: the rule text and the events it rests on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dest {
    pub rule: String,
    pub events: u64,
    pub addresses: usize,
}

/// Folds destinations: one address with [`FOLD_PORTS_MIN`] or more ports becomes the address
/// (any port); then one port with [`FOLD_NET_MIN`] or more addresses in a /24 (IPv6 /64)
/// becomes that network on the port. The rest stay `ip:port`.
pub fn fold_connects(c: &BTreeMap<SocketAddr, u64>) -> Vec<Dest> {
    let mut by_ip: BTreeMap<IpAddr, Vec<(u16, u64)>> = BTreeMap::new();
    for (a, n) in c {
        by_ip.entry(a.ip()).or_default().push((a.port(), *n));
    }
    let mut out = Vec::new();
    // (net, port) -> (events, addresses)
    let mut groups: BTreeMap<(ipnet::IpNet, u16), Vec<(IpAddr, u64)>> = BTreeMap::new();
    for (ip, ports) in by_ip {
        if ports.len() >= FOLD_PORTS_MIN {
            out.push(Dest {
                rule: ipnet::IpNet::from(ip).to_string(),
                events: ports.iter().map(|p| p.1).sum(),
                addresses: 1,
            });
            continue;
        }
        let prefix = if ip.is_ipv4() { 24 } else { 64 };
        let net = ipnet::IpNet::new(ip, prefix).map_or(ipnet::IpNet::from(ip), |n| n.trunc());
        for (port, n) in ports {
            groups.entry((net, port)).or_default().push((ip, n));
        }
    }
    for ((net, port), ips) in groups {
        if ips.len() >= FOLD_NET_MIN && !ips.iter().any(|(ip, _)| ip.is_loopback()) {
            out.push(Dest {
                rule: crate::policy::NetRule {
                    net,
                    port: Some(port),
                }
                .to_string(),
                events: ips.iter().map(|i| i.1).sum(),
                addresses: ips.len(),
            });
        } else {
            for (ip, n) in ips {
                out.push(Dest {
                    rule: crate::policy::NetRule {
                        net: ip.into(),
                        port: Some(port),
                    }
                    .to_string(),
                    events: n,
                    addresses: 1,
                });
            }
        }
    }
    out.sort();
    out
}

/// The policy as YAML text (one `- policy:` item with comments).
pub fn render(o: &Observed, inp: &Inputs<'_>) -> String {
    let from = crate::rfc3339::format(o.from.max(0) as u64);
    let to = crate::rfc3339::format(o.to.max(0) as u64);
    let mut y = String::new();
    let w = &mut y;
    let containers: Vec<&str> = o.containers.iter().map(String::as_str).take(5).collect();
    let more = o.containers.len().saturating_sub(5);
    let _ = writeln!(
        w,
        "# Learned by `guard policy learn` from {} in {} ({} workload_summary records, {}),",
        plural(o.events, "event"),
        plural(o.containers.len() as u64, "container"),
        o.records,
        inp.source
    );
    let _ = writeln!(
        w,
        "# containers {}{}; window {from} .. {to}.",
        containers
            .iter()
            .map(|c| q(c))
            .collect::<Vec<_>>()
            .join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        w,
        "# Rollout: load it as is (mode: detect), run the workload, `guard report` lists what it"
    );
    let _ = writeln!(
        w,
        "# would have denied since it was learned; when that is empty, set mode: enforce."
    );
    let _ = writeln!(w, "- policy: {}", q(inp.name));
    let _ = writeln!(
        w,
        "  desc: {}",
        q(&format!(
            "learned from {} events between {from} and {to}",
            o.events
        ))
    );
    let _ = writeln!(w, "  workload:");
    for (k, v) in &inp.selector.mapping {
        let _ = writeln!(w, "    {}: {}", k.as_str().unwrap_or(""), yaml_value(v));
    }
    let _ = writeln!(w, "  mode: detect");
    let _ = writeln!(w, "  learned: {{from: {}, to: {}}}", q(&from), q(&to));
    let _ = writeln!(w, "  enforce:");
    exec(w, o);
    open(w, o, inp.sensitive);
    connect(w, o);
    y
}

fn exec(w: &mut String, o: &Observed) {
    let _ = writeln!(w, "    exec:");
    let over = o.overflowed("execs");
    if over > 0 {
        let _ = writeln!(
            w,
            "      # no allow list: {} binaries did not fit in the summaries",
            plural(over, "exec")
        );
        let _ = writeln!(w, "      deny: []");
        return;
    }
    if o.execs.is_empty() {
        let _ = writeln!(
            w,
            "      # nothing was executed in the window: every exec is denied"
        );
        let _ = writeln!(w, "      allow: []");
    } else {
        let _ = writeln!(
            w,
            "      # paths as executed; a rule on a symlink also allows its target (busybox"
        );
        let _ = writeln!(
            w,
            "      # applets are one file: allowing one allows every applet under inode rules)"
        );
        let _ = writeln!(w, "      allow:");
        for (p, n) in &o.execs {
            match parse_path_rule(p) {
                Ok(_) => {
                    let _ = writeln!(w, "        - {}  # {}", q(p), plural(*n, "exec"));
                }
                Err(e) => {
                    let _ = writeln!(w, "        # left out ({}): {}", plural(*n, "exec"), q(&e));
                }
            }
        }
    }
    let ran_written: Vec<&String> = o
        .execs
        .keys()
        .filter(|p| o.writes.contains_key(*p))
        .collect();
    if o.overflowed("writes") > 0 {
        let _ = writeln!(
            w,
            "      # deny_new_binaries not set: some written paths did not fit in the summaries"
        );
    } else if ran_written.is_empty() {
        let _ = writeln!(
            w,
            "      # never ran a file it wrote ({} written, {} executed)",
            plural(o.writes.len() as u64, "path"),
            plural(o.execs.len() as u64, "binary")
        );
        let _ = writeln!(w, "      deny_new_binaries: true");
    } else {
        let _ = writeln!(
            w,
            "      # deny_new_binaries not set: it ran {} it wrote, e.g. {}",
            plural(ran_written.len() as u64, "file"),
            q(ran_written[0])
        );
    }
}

fn open(w: &mut String, o: &Observed, sensitive: &Sensitive) {
    let _ = writeln!(w, "    open:");
    if o.overflowed("writes") > 0 {
        let _ = writeln!(
            w,
            "      # no deny_write: {} did not fit in the summaries",
            plural(o.overflowed("writes"), "write")
        );
    } else {
        let _ = writeln!(w, "      deny_write:");
        for d in SYSTEM_DIRS {
            let below = format!("{d}/");
            let written: Vec<(&String, &u64)> = o
                .writes
                .iter()
                .filter(|(p, _)| p.starts_with(&below) || p.as_str() == d)
                .collect();
            if written.is_empty() {
                let _ = writeln!(w, "        - {}  # never written", q(&format!("{d}/**")));
            } else {
                let n: u64 = written.iter().map(|x| *x.1).sum();
                let _ = writeln!(
                    w,
                    "        # {d}: written ({}, e.g. {}): left open",
                    plural(n, "write"),
                    q(written[0].0)
                );
            }
        }
    }
    if sensitive.lists.is_empty() {
        let _ = writeln!(
            w,
            "      # no deny_read: the loaded rules define none of the sensitive-file lists ({})",
            super::summary::SENSITIVE_FILE_LISTS
                .iter()
                .chain(&super::summary::SENSITIVE_DIR_LISTS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        );
        return;
    }
    if o.overflowed("reads") > 0 {
        let _ = writeln!(
            w,
            "      # no deny_read: sensitive reads did not fit in the summaries"
        );
        return;
    }
    let _ = writeln!(
        w,
        "      # sensitive files (the loaded rules' {}) it never read",
        sensitive.lists.join(", ")
    );
    let _ = writeln!(w, "      deny_read:");
    let entries = sensitive
        .files
        .iter()
        .map(|f| (f.clone(), f.clone()))
        .chain(sensitive.dirs.iter().map(|d| (d.clone(), format!("{d}**"))));
    for (prefix, rule) in entries {
        let read: u64 = o
            .reads
            .iter()
            .filter(|(p, _)| {
                if prefix.ends_with('/') {
                    p.starts_with(&prefix)
                } else {
                    **p == prefix
                }
            })
            .map(|x| *x.1)
            .sum();
        if read > 0 {
            let _ = writeln!(
                w,
                "        # {}: read ({}): left open",
                q(&rule),
                plural(read, "time")
            );
        } else if parse_path_rule(&rule).is_ok() {
            let _ = writeln!(w, "        - {}", q(&rule));
        }
    }
}

fn connect(w: &mut String, o: &Observed) {
    let _ = writeln!(w, "    connect:");
    let over = o.overflowed("connects");
    if over > 0 {
        let _ = writeln!(
            w,
            "      # no allow list: {} did not fit in the summaries",
            plural(over, "connect")
        );
        let _ = writeln!(w, "      deny: []");
        return;
    }
    let dests = fold_connects(&o.connects);
    if dests.is_empty() {
        let _ = writeln!(
            w,
            "      # no connect in the window: every connect is denied"
        );
        let _ = writeln!(w, "      allow: []");
        return;
    }
    let _ = writeln!(w, "      allow:");
    for d in dests {
        if parse_net_rule(&d.rule).is_err() {
            continue;
        }
        let folded = if d.addresses > 1 {
            format!(", {} addresses", d.addresses)
        } else {
            String::new()
        };
        let _ = writeln!(
            w,
            "        - {}  # {}{folded}",
            q(&d.rule),
            plural(d.events, "connect")
        );
    }
}

/// Parses the rendered text as a policy file: what learn prints must validate.
pub fn check(text: &str) -> Result<(), String> {
    let mut l = crate::rules::Loader::new();
    let sink = crate::policy::register(&mut l);
    l.add_str("learned.yaml", text);
    let (_, diags) = l.finish();
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    if !errors.is_empty() {
        return Err(errors.join("\n"));
    }
    match sink.lock().map(|v| v.len()) {
        Ok(1) => Ok(()),
        _ => Err("the learned text does not hold exactly one policy".into()),
    }
}
