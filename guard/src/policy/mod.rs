//! Per-workload policies (`- policy:` items in rules files) and their enforcement.
//!
//! - [`workload`]: selectors (image, name, labels, k8s namespace, cgroup path: globs).
//! - this module: the item's schema, strict parsing with `file:line:col` diagnostics, the
//!   overlap rule (most specific wins) and its `guard validate` warnings, rule selection.
//! - [`kernel`]: compiling policies into the BPF maps, binding cgroups, decoding decisions into
//!   alerts and audit records.
//! - [`backend`]: the enforcement backends and what each declares it enforces; in it,
//!   [`fallback`] (open and connect rules on kernels without BPF LSM: kill after the fact) and
//!   [`landlock`] (`guard exec --policy P -- CMD`).
//!
//! The format is documented in `docs/policies.md`.

pub mod backend;
pub mod inodes;
pub mod kernel;
mod parse;
pub mod resolve;
// The backends' own modules, at their former paths for the callers.
pub use backend::{fallback, landlock};

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use crate::rules::{Diagnostic, Pos};
use ipnet::IpNet;
pub use parse::{PolicySink, load_policies, register};

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
    /// Set by `guard policy learn`: the window the policy was learned from.
    pub learned: Option<LearnedWindow>,
    pub file: Arc<str>,
    pub pos: Pos,
}

/// `learned: {from: T, to: T}` (RFC 3339): the report counts would-denies after `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedWindow {
    pub from: String,
    pub to: String,
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
