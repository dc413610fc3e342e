//! Per-workload policies (`- policy:` items in rules files) and their enforcement.
//!
//! - [`workload`]: selectors (image, name, labels, k8s namespace, cgroup path: globs).
//! - this module: the item's schema, strict parsing with `file:line:col` diagnostics, the
//!   overlap rule (most specific wins) and its `guard validate` warnings, rule selection.
//! - [`kernel`]: compiling policies into the BPF maps, binding cgroups, decoding decisions into
//!   alerts and audit records.
//! - [`fallback`]: open and connect rules on kernels without BPF LSM (kill after the fact).
//! - [`landlock`]: `guard exec --policy P -- CMD`.
//!
//! The format is documented in `docs/policies.md`.

pub mod fallback;
pub mod kernel;
pub mod landlock;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use ipnet::IpNet;
use serde_yaml::{Mapping, Value};

use crate::rules::{Diagnostic, ItemCtx, Loader, Pos};
use crate::workload::{self, Pattern, WorkloadInfo, WorkloadSelector};

/// `detect` reports what `enforce` would deny; `enforce` denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Detect,
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Detect => "detect",
            Mode::Enforce => "enforce",
        }
    }
}

/// Which detection rules apply to the workload. Empty `tags` and `names` mean all enabled rules.
#[derive(Debug, Clone, Default)]
pub struct RuleSelection {
    pub tags: Vec<String>,
    pub names: Vec<Pattern>,
    pub exclude_tags: Vec<String>,
    pub exclude_names: Vec<Pattern>,
}

impl RuleSelection {
    pub fn applies(&self, name: &str, tags: &[String]) -> bool {
        if self.exclude_names.iter().any(|p| p.is_match(name))
            || tags.iter().any(|t| self.exclude_tags.contains(t))
        {
            return false;
        }
        if self.tags.is_empty() && self.names.is_empty() {
            return true;
        }
        self.names.iter().any(|p| p.is_match(name)) || tags.iter().any(|t| self.tags.contains(t))
    }
}

/// A path rule the kernel can enforce exactly: a file, or everything below a directory.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathRule {
    /// `/etc/shadow`: this path only.
    Exact(String),
    /// `/etc/**`: stored as `/etc/`: every path below the directory.
    Below(String),
}

impl PathRule {
    /// The bytes the kernel's LPM key holds (exact paths with their NUL).
    pub fn key_bytes(&self) -> Vec<u8> {
        match self {
            PathRule::Exact(p) => {
                let mut b = p.as_bytes().to_vec();
                b.push(0);
                b
            }
            PathRule::Below(p) => p.as_bytes().to_vec(),
        }
    }

    /// The bytes every path this rule matches starts with.
    pub fn prefix_bytes(&self) -> &[u8] {
        match self {
            PathRule::Exact(p) | PathRule::Below(p) => p.as_bytes(),
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathRule::Exact(p) => p == path,
            PathRule::Below(p) => path.starts_with(p.as_str()),
        }
    }

    pub fn text(&self) -> String {
        match self {
            PathRule::Exact(p) => p.clone(),
            PathRule::Below(p) => format!("{p}**"),
        }
    }
}

/// Parses a path pattern of `enforce.exec` / `enforce.open`.
pub fn parse_path_rule(s: &str) -> Result<PathRule, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?}: paths must be absolute"));
    }
    let (base, below) = match s.strip_suffix("/**") {
        Some(b) => (b, true),
        None => (s, false),
    };
    if base.contains(['*', '?', '[', ']', '{', '}']) {
        return Err(format!(
            "{s:?}: kernel enforcement matches an exact path or DIR/** (everything below DIR); other globs cannot be enforced exactly"
        ));
    }
    if !base.is_empty()
        && base[1..]
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(format!(
            "{s:?}: write the canonical path (no '.', '..', empty components or trailing '/')"
        ));
    }
    if s.contains('\0') {
        return Err(format!("{s:?}: NUL byte in path"));
    }
    let rule = if below {
        PathRule::Below(format!("{base}/"))
    } else {
        PathRule::Exact(base.to_owned())
    };
    if rule.key_bytes().len() > guard_ebpf::PATH_KEY_BYTES {
        return Err(format!(
            "{s:?}: longer than the {} bytes a kernel path rule holds",
            guard_ebpf::PATH_KEY_BYTES - 1
        ));
    }
    Ok(rule)
}

/// `CIDR[:port]`: `10.0.0.0/8`, `0.0.0.0/0:22`, `1.2.3.4:443`, `[::1]:22`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NetRule {
    pub net: IpNet,
    /// None = every port.
    pub port: Option<u16>,
}

impl std::fmt::Display for NetRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.net, self.port) {
            (IpNet::V6(n), Some(p)) => write!(f, "[{n}]:{p}"),
            (n, Some(p)) => write!(f, "{n}:{p}"),
            (n, None) => write!(f, "{n}"),
        }
    }
}

pub fn parse_net_rule(s: &str) -> Result<NetRule, String> {
    let parse_net = |t: &str| -> Result<IpNet, String> {
        if let Ok(n) = t.parse::<IpNet>() {
            return Ok(n.trunc());
        }
        t.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("{s:?}: not an IP address or CIDR"))
    };
    let parse_port = |t: &str| -> Result<u16, String> {
        match t.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("{s:?}: port must be 1-65535")),
            Ok(p) => Ok(p),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (addr, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: missing ']'"))?;
        let port = match after {
            "" => None,
            a => {
                Some(parse_port(a.strip_prefix(':').ok_or_else(|| {
                    format!("{s:?}: expected ':port' after ']'")
                })?)?)
            }
        };
        return Ok(NetRule {
            net: parse_net(addr)?,
            port,
        });
    }
    if s.matches(':').count() > 1 {
        // Bare IPv6 without a port.
        return Ok(NetRule {
            net: parse_net(s)?,
            port: None,
        });
    }
    match s.split_once(':') {
        Some((a, p)) => Ok(NetRule {
            net: parse_net(a)?,
            port: Some(parse_port(p)?),
        }),
        None => Ok(NetRule {
            net: parse_net(s)?,
            port: None,
        }),
    }
}

#[derive(Debug, Clone, Default)]
pub struct ExecPolicy {
    pub deny: Vec<PathRule>,
    /// `Some` = allow list: exec of anything else is denied.
    pub allow: Option<Vec<PathRule>>,
    pub deny_new_binaries: bool,
}

#[derive(Debug, Clone, Default)]
pub struct OpenPolicy {
    pub deny_write: Vec<PathRule>,
    pub deny_read: Vec<PathRule>,
}

#[derive(Debug, Clone, Default)]
pub struct ConnectPolicy {
    pub deny: Vec<NetRule>,
    /// `Some` = allow list: connects to anything else are denied (deny entries still win).
    pub allow: Option<Vec<NetRule>>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub desc: Option<String>,
    pub workload: WorkloadSelector,
    pub mode: Mode,
    pub rules: RuleSelection,
    pub exec: ExecPolicy,
    pub open: OpenPolicy,
    pub connect: ConnectPolicy,
    pub file: Arc<str>,
    pub pos: Pos,
}

impl Policy {
    pub fn has_kernel_rules(&self) -> bool {
        !self.exec.deny.is_empty()
            || self.exec.allow.is_some()
            || self.exec.deny_new_binaries
            || !self.open.deny_read.is_empty()
            || !self.open.deny_write.is_empty()
            || !self.connect.deny.is_empty()
            || self.connect.allow.is_some()
    }
}

/// The policies collected while loading rules files.
pub type PolicySink = Arc<Mutex<Vec<Policy>>>;

/// Accepts `- policy:` items on `loader`; the parsed policies land in the returned sink.
pub fn register(loader: &mut Loader) -> PolicySink {
    let sink: PolicySink = Arc::default();
    let s = sink.clone();
    loader.register_kind(
        "policy",
        Box::new(move |ctx, map| {
            let mut p = Parser {
                ctx,
                diags: Vec::new(),
            };
            if let Some(pol) = p.policy(map) {
                match s.lock() {
                    Ok(mut v) => {
                        if let Some(prev) = v.iter().find(|q| q.name == pol.name) {
                            let msg = format!(
                                "policy '{}' is already defined at {}:{}:{}",
                                pol.name, prev.file, prev.pos.line, prev.pos.col
                            );
                            p.diags.push(Diagnostic::error(&ctx.file, ctx.pos(), msg));
                        } else {
                            v.push(pol);
                        }
                    }
                    Err(_) => p.diags.push(Diagnostic::error(
                        &ctx.file,
                        ctx.pos(),
                        "internal: policy table poisoned",
                    )),
                }
            }
            p.diags
        }),
    );
    sink
}

/// Parses policies from one YAML text (tests, `guard exec --policy FILE`).
pub fn load_policies(paths: &[std::path::PathBuf]) -> (Vec<Policy>, Vec<Diagnostic>) {
    let mut l = Loader::new();
    let sink = register(&mut l);
    for p in paths {
        l.add_path(p);
    }
    let (_, mut diags) = l.finish();
    let policies = sink.lock().map(|v| v.clone()).unwrap_or_default();
    diags.extend(overlap_warnings(&policies));
    (policies, diags)
}

const POLICY_KEYS: [&str; 6] = ["policy", "desc", "workload", "mode", "rules", "enforce"];
const RULES_KEYS: [&str; 4] = ["tags", "names", "exclude_tags", "exclude_names"];
const ENFORCE_KEYS: [&str; 3] = ["exec", "open", "connect"];
const EXEC_KEYS: [&str; 3] = ["deny", "allow", "deny_new_binaries"];
const OPEN_KEYS: [&str; 2] = ["deny_write", "deny_read"];
const CONNECT_KEYS: [&str; 2] = ["deny", "allow"];

struct Parser<'a, 'b> {
    ctx: &'a ItemCtx<'b>,
    diags: Vec<Diagnostic>,
}

impl Parser<'_, '_> {
    fn err(&mut self, top_key: &str, msg: impl Into<String>) {
        let pos = self.ctx.key_pos(top_key);
        self.diags
            .push(Diagnostic::error(&self.ctx.file, pos, msg.into()));
    }

    /// Checks the keys of a nested mapping; `path` names it in messages.
    fn mapping<'v>(
        &mut self,
        top: &str,
        path: &str,
        v: &'v Value,
        allowed: &[&str],
    ) -> Option<&'v Mapping> {
        let Value::Mapping(m) = v else {
            self.err(top, format!("'{path}' must be a mapping"));
            return None;
        };
        let mut ok = true;
        for k in m.keys() {
            match k.as_str() {
                Some(k) if allowed.contains(&k) => {}
                other => {
                    ok = false;
                    self.err(
                        top,
                        format!(
                            "unknown key '{}' in '{path}' (allowed: {})",
                            other.map_or_else(|| format!("{k:?}"), str::to_owned),
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
        ok.then_some(m)
    }

    fn string(&mut self, top: &str, path: &str, v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => {
                self.err(top, format!("'{path}' must be a string"));
                None
            }
        }
    }

    fn strings(&mut self, top: &str, path: &str, v: &Value) -> Option<Vec<String>> {
        let Value::Sequence(seq) = v else {
            self.err(top, format!("'{path}' must be a list"));
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in seq.iter().enumerate() {
            out.push(self.string(top, &format!("{path}[{i}]"), item)?);
        }
        Some(out)
    }

    fn paths(&mut self, path: &str, v: &Value) -> Vec<PathRule> {
        let Some(list) = self.strings("enforce", path, v) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in list {
            match parse_path_rule(&s) {
                Ok(r) => out.push(r),
                Err(e) => self.err("enforce", format!("'{path}': {e}")),
            }
        }
        out
    }

    fn nets(&mut self, path: &str, v: &Value) -> Vec<NetRule> {
        let Some(list) = self.strings("enforce", path, v) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for s in list {
            match parse_net_rule(&s) {
                Ok(r) => out.push(r),
                Err(e) => self.err("enforce", format!("'{path}': {e}")),
            }
        }
        out
    }

    fn policy(&mut self, map: &Mapping) -> Option<Policy> {
        let before = self.diags.len();
        for k in map.keys() {
            let name = k.as_str().unwrap_or("");
            if !POLICY_KEYS.contains(&name) {
                let pos = self.ctx.key_pos(name);
                self.diags.push(Diagnostic::error(
                    &self.ctx.file,
                    pos,
                    format!(
                        "unknown key '{name}' in policy (allowed: {})",
                        POLICY_KEYS.join(", ")
                    ),
                ));
            }
        }
        let name = match map.get("policy") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            _ => {
                self.err("policy", "'policy' must be a non-empty name");
                return None;
            }
        };
        let desc = match map.get("desc") {
            Some(v) => self.string("desc", "desc", v),
            None => None,
        };
        let mode = match map.get("mode").and_then(Value::as_str) {
            None if map.get("mode").is_none() => Mode::Detect,
            Some("detect") => Mode::Detect,
            Some("enforce") => Mode::Enforce,
            _ => {
                self.err("mode", "'mode' must be 'detect' or 'enforce'");
                Mode::Detect
            }
        };
        let mut workload = WorkloadSelector::default();
        match map.get("workload") {
            None => self.err(
                "policy",
                "'workload' is required (use `workload: {}` to select every workload)",
            ),
            // The shared selector (crate::workload) rejects unknown keys and bad globs.
            Some(v) => match serde_yaml::from_value::<WorkloadSelector>(v.clone()) {
                Ok(w) => workload = w,
                Err(e) => self.err("workload", format!("'workload': {e}")),
            },
        }
        let mut rules = RuleSelection::default();
        if let Some(v) = map.get("rules")
            && let Some(m) = self.mapping("rules", "rules", v, &RULES_KEYS)
        {
            for (k, v) in m {
                let k = k.as_str().unwrap_or("");
                let path = format!("rules.{k}");
                let Some(list) = self.strings("rules", &path, v) else {
                    continue;
                };
                match k {
                    "tags" => rules.tags = list,
                    "exclude_tags" => rules.exclude_tags = list,
                    "names" | "exclude_names" => {
                        let pats: Vec<Pattern> = list
                            .iter()
                            .filter_map(|s| {
                                Pattern::new(s)
                                    .map_err(|e| self.err("rules", format!("'{path}': {e}")))
                                    .ok()
                            })
                            .collect();
                        if k == "names" {
                            rules.names = pats;
                        } else {
                            rules.exclude_names = pats;
                        }
                    }
                    _ => {}
                }
            }
        }
        let (mut exec, mut open, mut connect) = Default::default();
        if let Some(v) = map.get("enforce")
            && let Some(m) = self.mapping("enforce", "enforce", v, &ENFORCE_KEYS)
        {
            if let Some(v) = m.get("exec") {
                exec = self.exec(v);
            }
            if let Some(v) = m.get("open")
                && let Some(m) = self.mapping("enforce", "enforce.open", v, &OPEN_KEYS)
            {
                let o: &mut OpenPolicy = &mut open;
                if let Some(v) = m.get("deny_write") {
                    o.deny_write = self.paths("enforce.open.deny_write", v);
                }
                if let Some(v) = m.get("deny_read") {
                    o.deny_read = self.paths("enforce.open.deny_read", v);
                }
            }
            if let Some(v) = m.get("connect")
                && let Some(m) = self.mapping("enforce", "enforce.connect", v, &CONNECT_KEYS)
            {
                let c: &mut ConnectPolicy = &mut connect;
                if let Some(v) = m.get("deny") {
                    c.deny = self.nets("enforce.connect.deny", v);
                }
                if let Some(v) = m.get("allow") {
                    c.allow = Some(self.nets("enforce.connect.allow", v));
                }
            }
        }
        if self.diags.len() > before {
            return None;
        }
        Some(Policy {
            name,
            desc,
            workload,
            mode,
            rules,
            exec,
            open,
            connect,
            file: self.ctx.file.clone(),
            pos: self.ctx.pos(),
        })
    }

    fn exec(&mut self, v: &Value) -> ExecPolicy {
        let mut e = ExecPolicy::default();
        let Some(m) = self.mapping("enforce", "enforce.exec", v, &EXEC_KEYS) else {
            return e;
        };
        if let Some(v) = m.get("deny") {
            e.deny = self.paths("enforce.exec.deny", v);
        }
        if let Some(v) = m.get("allow") {
            e.allow = Some(self.paths("enforce.exec.allow", v));
        }
        match m.get("deny_new_binaries") {
            None => {}
            Some(Value::Bool(b)) => e.deny_new_binaries = *b,
            Some(_) => self.err(
                "enforce",
                "'enforce.exec.deny_new_binaries' must be true or false",
            ),
        }
        if !e.deny.is_empty() && e.allow.is_some() {
            self.err(
                "enforce",
                "'enforce.exec' takes 'deny' or 'allow', not both (an allow list already denies everything else)",
            );
        }
        e
    }
}

/// The overlap rule: when several policies select the same workload, the most specific one
/// (most selector keys; each label counts) applies alone; on a tie, the one loaded first.
pub fn choose<'p>(policies: &'p [Policy], w: &WorkloadInfo) -> Option<(usize, &'p Policy)> {
    let mut best: Option<(usize, &Policy)> = None;
    for (i, p) in policies.iter().enumerate() {
        if !p.workload.matches(w) {
            continue;
        }
        if best.is_none_or(|(_, b)| {
            workload::specificity(&p.workload) > workload::specificity(&b.workload)
        }) {
            best = Some((i, p));
        }
    }
    best
}

/// `guard validate` warnings: pairs of policies that may select the same workload.
pub fn overlap_warnings(policies: &[Policy]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (i, a) in policies.iter().enumerate() {
        for b in &policies[i + 1..] {
            if !workload::may_overlap(&a.workload, &b.workload) {
                continue;
            }
            let (sa, sb) = (
                workload::specificity(&a.workload),
                workload::specificity(&b.workload),
            );
            let winner = if sb > sa { &b.name } else { &a.name };
            let why = if sa == sb {
                "equally specific: the one loaded first"
            } else {
                "the more specific one"
            };
            out.push(Diagnostic::warning(
                &b.file,
                b.pos,
                format!(
                    "policy '{}' may select the same workloads as '{}' ({}:{}:{}); only one applies per workload: '{winner}' ({why})",
                    b.name, a.name, a.file, a.pos.line, a.pos.col
                ),
            ));
        }
    }
    out
}

/// Keyed by policy name, for lookups from decision records.
pub fn by_name(policies: &[Policy]) -> BTreeMap<&str, &Policy> {
    policies.iter().map(|p| (p.name.as_str(), p)).collect()
}

#[cfg(test)]
mod tests;
