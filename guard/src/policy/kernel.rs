//! Policies into the kernel: compile them into `POLICY_PATHS` / `POLICY_NETS` entries, bind
//! cgroups to policies in `POLICY_CGROUPS`, and turn the programs' decision records into alerts
//! and audit records.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::Instant,
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData, lpm_trie::Key, lpm_trie::LpmTrie},
};
use guard_ebpf::{
    CONTAINER_ID_BYTES, CgroupPolicy, MAX_NET_RULES, MAX_PATH_RULES, MAX_POLICIES,
    MAX_POLICY_CGROUPS, NET_KEY_FIXED_BITS, NetKeyData, PATH_KEY_BYTES, PATH_KEY_FIXED_BITS,
    PathKeyData, names, net_bits, path_bits, path_kind, policy_flags as pf,
};
use ipnet::IpNet;
use tracing::{info, warn};

use super::backend::Backend;
use super::inodes::InodeTable;
use super::{Mode, Policy, WorkloadInfo, choose};
use crate::{
    alert::{Alert, GuardInfo, Priority},
    audit::record::{Decision, DecisionKind, Operation, ProcessInfo, Workload},
    events::{self, DecisionEvent, Verdict},
};

/// One LPM entry: (prefix length in bits, key data, value bits).
pub type PathEntry = (u32, PathKeyData, u32);
pub type NetEntry = (u32, NetKeyData, u32);

/// Flags the kernel sees for a policy. `detect_only` (`guard run --detect-only`) clears
/// ENFORCE for every policy, so the programs only report would-deny.
pub fn policy_flags(p: &Policy, detect_only: bool) -> u32 {
    let mut f = 0;
    if p.mode == Mode::Enforce && !detect_only {
        f |= pf::ENFORCE;
    }
    if !p.exec.deny.is_empty() {
        f |= pf::EXEC_DENY;
    }
    if p.exec.allow.is_some() {
        f |= pf::EXEC_ALLOW;
    }
    if p.exec.deny_new_binaries {
        f |= pf::DENY_NEW_BINARIES;
    }
    if !p.open.deny_read.is_empty() || !p.open.deny_write.is_empty() {
        f |= pf::OPEN_RULES;
    }
    if !p.connect.deny.is_empty() {
        f |= pf::CONNECT_DENY;
    }
    if p.connect.allow.is_some() {
        f |= pf::CONNECT_ALLOW;
    }
    f
}

/// Whether some policy's open rules are only reported (detect mode, or `--detect-only`).
pub fn detects_opens(policies: &[Policy], detect_only: bool) -> bool {
    policies.iter().any(|p| {
        let f = policy_flags(p, detect_only);
        f & pf::OPEN_RULES != 0 && f & pf::ENFORCE == 0
    })
}

fn path_key(id: u32, kind: u8, bytes: &[u8]) -> (u32, PathKeyData) {
    let mut data = PathKeyData {
        policy_id: id,
        kind,
        path: [0; PATH_KEY_BYTES],
    };
    let n = bytes.len().min(PATH_KEY_BYTES);
    data.path[..n].copy_from_slice(&bytes[..n]);
    (PATH_KEY_FIXED_BITS + 8 * n as u32, data)
}

/// Path entries of policy `id`. Since an LPM lookup returns only the longest match, each
/// entry also carries the bits of every shorter entry that covers it (`/etc/` deny_write plus
/// `/etc/shadow` deny_read gives `/etc/shadow` both).
pub fn path_entries(id: u32, p: &Policy) -> Vec<PathEntry> {
    let mut raw: BTreeMap<(u8, Vec<u8>), u32> = BTreeMap::new();
    let mut add = |kind: u8, rules: &[super::PathRule], bit: u32| {
        for r in rules {
            *raw.entry((kind, r.key_bytes())).or_default() |= bit;
        }
    };
    add(path_kind::EXEC, &p.exec.deny, path_bits::EXEC_MATCH);
    if let Some(a) = &p.exec.allow {
        add(path_kind::EXEC, a, path_bits::EXEC_MATCH);
    }
    add(path_kind::OPEN, &p.open.deny_read, path_bits::DENY_READ);
    add(path_kind::OPEN, &p.open.deny_write, path_bits::DENY_WRITE);
    let mut out = Vec::new();
    for ((kind, bytes), bits) in &raw {
        let mut all = *bits;
        for ((k2, b2), bits2) in &raw {
            if k2 == kind && b2.len() < bytes.len() && bytes.starts_with(b2) {
                all |= bits2;
            }
        }
        let (plen, data) = path_key(id, *kind, bytes);
        out.push((plen, data, all));
    }
    out
}

fn net_key(id: u32, net: &IpNet, port: Option<u16>) -> (u32, NetKeyData) {
    let mut d = NetKeyData {
        policy_id: id,
        port: port.unwrap_or(0),
        ..NetKeyData::default()
    };
    match net {
        IpNet::V4(n) => {
            d.family = 4;
            d.addr[..4].copy_from_slice(&n.network().octets());
        }
        IpNet::V6(n) => {
            d.family = 6;
            d.addr = n.network().octets();
        }
    }
    (NET_KEY_FIXED_BITS + u32::from(net.prefix_len()), d)
}

/// Network entries of policy `id`, closed over containment like `path_entries` (the kernel
/// looks up the exact port and "any port" separately and merges them).
pub fn net_entries(id: u32, p: &Policy) -> Vec<NetEntry> {
    let mut raw: BTreeMap<(Option<u16>, IpNet), u32> = BTreeMap::new();
    for r in &p.connect.deny {
        *raw.entry((r.port, r.net)).or_default() |= net_bits::DENY;
    }
    for r in p.connect.allow.iter().flatten() {
        *raw.entry((r.port, r.net)).or_default() |= net_bits::ALLOW;
    }
    let mut out = Vec::new();
    for ((port, net), bits) in &raw {
        let mut all = *bits;
        for ((p2, n2), b2) in &raw {
            if p2 == port && n2 != net && n2.contains(net) {
                all |= b2;
            }
        }
        let (plen, data) = net_key(id, net, *port);
        out.push((plen, data, all));
    }
    out
}

/// Compiles policies into kernel state and keeps the cgroup bindings.
pub struct Enforcer {
    pub policies: Arc<Vec<Policy>>,
    pub detect_only: bool,
    pub backend: Backend,
    /// Policy ids of this set are `base + index + 1`; `base` is 0 or `MAX_POLICIES` (the two
    /// generations a reload alternates between).
    base: u32,
    /// cgroup id -> index into `policies`.
    bound: HashMap<u64, usize>,
    /// The set a reload replaced (its base and policies): decisions taken under it may still
    /// be in the ring.
    previous: Option<(u32, Arc<Vec<Policy>>)>,
    /// `POLICY_CGROUPS` keys the last walk did not see: removed only when a second walk does
    /// not see them either, since a cgroup made during a walk (and bound by the kernel at
    /// `cgroup_mkdir`) can be missing from that walk's listing.
    unseen: HashSet<u64>,
    /// Path rules resolved to files in each bound cgroup's root (`POLICY_INODES`).
    inodes: InodeTable,
}

/// The generation a reload installs into, given the one in force.
fn other_generation(base: u32) -> u32 {
    if base == 0 { MAX_POLICIES } else { 0 }
}

/// What the `cgroup_mkdir` hook needs to compute a container's binding; replaced whole by a
/// reload.
#[derive(Clone)]
struct BindingTable {
    policies: Arc<Vec<Policy>>,
    detect_only: bool,
    base: u32,
}

impl BindingTable {
    fn binding(&self, w: &WorkloadInfo) -> Option<CgroupPolicy> {
        binding_for(&self.policies, self.detect_only, self.base, w)
    }
}

impl Enforcer {
    pub fn new(policies: Vec<Policy>, detect_only: bool, backend: Backend) -> Result<Self> {
        Self::with_base(policies, detect_only, backend, 0)
    }

    fn with_base(
        policies: Vec<Policy>,
        detect_only: bool,
        backend: Backend,
        base: u32,
    ) -> Result<Self> {
        anyhow::ensure!(
            policies.len() <= MAX_POLICIES as usize,
            "{} policies; the kernel maps hold at most {MAX_POLICIES}",
            policies.len()
        );
        Ok(Enforcer {
            policies: Arc::new(policies),
            detect_only,
            backend,
            base,
            bound: HashMap::new(),
            previous: None,
            unseen: HashSet::new(),
            inodes: InodeTable::default(),
        })
    }

    /// Policy id of `policies[i]` in the kernel maps.
    fn id_of(&self, i: usize) -> u32 {
        self.base + i as u32 + 1
    }

    fn table(&self) -> BindingTable {
        BindingTable {
            policies: self.policies.clone(),
            detect_only: self.detect_only,
            base: self.base,
        }
    }

    /// Whether `id` names a policy of this set.
    fn is_current(&self, id: u32) -> bool {
        self.current_ids()(id)
    }

    /// `is_current` as a closure that does not borrow `self`.
    fn current_ids(&self) -> impl Fn(u32) -> bool + use<> {
        let (base, n) = (self.base, self.policies.len() as u32);
        move |id| id > base && id <= base + n
    }

    /// The policy a kernel record names: of this set, or of the set the last reload replaced.
    pub fn policy_by_id(&self, id: u32) -> Option<&Policy> {
        let of = |base: u32, set: &'_ [Policy]| -> Option<usize> {
            let i = id.checked_sub(base)?.checked_sub(1)? as usize;
            (i < set.len()).then_some(i)
        };
        if let Some(i) = of(self.base, &self.policies) {
            return self.policies.get(i);
        }
        let (base, set) = self.previous.as_ref()?;
        set.get(of(*base, set)?)
    }

    fn entries(&self) -> Result<(Vec<PathEntry>, Vec<NetEntry>)> {
        let mut paths: Vec<PathEntry> = Vec::new();
        let mut nets: Vec<NetEntry> = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            paths.extend(path_entries(self.id_of(i), p));
            nets.extend(net_entries(self.id_of(i), p));
        }
        anyhow::ensure!(
            paths.len() <= MAX_PATH_RULES as usize && nets.len() <= MAX_NET_RULES as usize,
            "policies need {} path and {} network entries; the kernel maps hold {MAX_PATH_RULES} and {MAX_NET_RULES}",
            paths.len(),
            nets.len()
        );
        Ok((paths, nets))
    }

    /// Writes every policy's rules. Nothing is removed here: entries of the other generation
    /// (the set in force before a reload, or an earlier run's) stay until [`Enforcer::collect`]
    /// finds no binding naming them, so no cgroup ever points at missing rules.
    pub fn install(&self, ebpf: &mut Ebpf) -> Result<()> {
        let (paths, nets) = self.entries()?;
        {
            let mut m = path_map(ebpf)?;
            for (plen, data, bits) in &paths {
                m.insert(&Key::new(*plen, *data), *bits, 0)
                    .context("adding a path rule to POLICY_PATHS")?;
            }
        }
        let mut m = net_map(ebpf)?;
        for (plen, data, bits) in &nets {
            m.insert(&Key::new(*plen, *data), *bits, 0)
                .context("adding a network rule to POLICY_NETS")?;
        }
        Ok(())
    }

    /// Removes the rule entries no binding can reach: entries with this set's ids that the set
    /// does not contain (an adopted earlier run's), and entries with other ids that no cgroup
    /// and no pending container is bound to. Returns the number removed.
    pub fn collect(&self, ebpf: &mut Ebpf) -> Result<usize> {
        let mut referenced: HashSet<u32> = Self::cgroup_map(ebpf)?
            .iter()
            .filter_map(|kv| kv.ok())
            .map(|(_, v)| v.policy_id)
            .collect();
        if let Some(m) = ebpf.map(names::POLICY_PENDING) {
            let pending: BpfHashMap<&MapData, [u8; CONTAINER_ID_BYTES], CgroupPolicy> =
                BpfHashMap::try_from(m)?;
            referenced.extend(
                pending
                    .iter()
                    .filter_map(|kv| kv.ok())
                    .map(|(_, v)| v.policy_id),
            );
        }
        let current = self.current_ids();
        let stale_inodes = self.inodes.collect(ebpf, current, &referenced)?;
        let (paths, nets) = self.entries()?;
        let want_paths: HashSet<(u32, Vec<u8>)> = paths
            .iter()
            .map(|(l, d, _)| (*l, bytemuck_path(d)))
            .collect();
        let want_nets: HashSet<(u32, Vec<u8>)> =
            nets.iter().map(|(l, d, _)| (*l, net_bytes(d))).collect();
        let keep = |id: u32, want: bool| {
            if self.is_current(id) {
                want
            } else {
                referenced.contains(&id)
            }
        };
        let removed = remove_where(&mut path_map(ebpf)?, |k| {
            let d = k.data();
            !keep(
                d.policy_id,
                want_paths.contains(&(k.prefix_len(), bytemuck_path(&d))),
            )
        })? + remove_where(&mut net_map(ebpf)?, |k| {
            let d = k.data();
            !keep(
                d.policy_id,
                want_nets.contains(&(k.prefix_len(), net_bytes(&d))),
            )
        })?;
        Ok(removed + stale_inodes)
    }

    fn cgroup_map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, u64, CgroupPolicy>> {
        Ok(BpfHashMap::try_from(
            ebpf.map_mut(names::POLICY_CGROUPS)
                .context("map POLICY_CGROUPS")?,
        )?)
    }

    /// Binds `cgroup_id` to the policy `w` selects (most specific wins), else to `inherited`
    /// (the policy index of its nearest bound ancestor), or unbinds it.
    pub fn bind(
        &mut self,
        ebpf: &mut Ebpf,
        cgroup_id: u64,
        w: &WorkloadInfo,
        inherited: Option<usize>,
    ) -> Result<Option<&Policy>> {
        let policies = self.policies.clone();
        let chosen = choose(&policies, w)
            .map(|(i, _)| i)
            .or(inherited)
            .and_then(|i| Some((i, policies.get(i)?)))
            .filter(|(_, p)| p.has_kernel_rules());
        let mut m = Self::cgroup_map(ebpf)?;
        match chosen {
            Some((i, p)) => {
                let v = CgroupPolicy {
                    policy_id: self.id_of(i),
                    flags: policy_flags(p, self.detect_only),
                };
                if self.bound.get(&cgroup_id) != Some(&i) {
                    anyhow::ensure!(
                        self.bound.len() < MAX_POLICY_CGROUPS as usize,
                        "more than {MAX_POLICY_CGROUPS} cgroups under policy"
                    );
                }
                m.insert(cgroup_id, v, 0)?;
                self.bound.insert(cgroup_id, i);
                Ok(self.policies.get(i))
            }
            None => {
                if self.bound.remove(&cgroup_id).is_some() {
                    let _ = m.remove(&cgroup_id);
                }
                Ok(None)
            }
        }
    }

    /// The policy index a kernel binding names, when it is of this set.
    fn index_of(&self, policy_id: u32) -> Option<usize> {
        self.is_current(policy_id)
            .then(|| (policy_id - self.base - 1) as usize)
    }

    /// Walks the cgroup2 tree and binds every cgroup a policy selects; bindings of an adopted
    /// earlier run that no policy selects any more are removed. `info` gives the workload of a
    /// cgroup path (relative to the cgroup2 mount, starting with `/`) and whether it is fully
    /// known (false for a container whose metadata is pending or unavailable: such a cgroup
    /// keeps the binding it has, so an outage never lifts or changes enforcement).
    pub fn bind_cgroup_tree(
        &mut self,
        ebpf: &mut Ebpf,
        root: &Path,
        info: &mut dyn FnMut(&str) -> (WorkloadInfo, bool),
    ) -> Result<usize> {
        let mut seen = HashSet::new();
        // Cgroups whose workload is not known yet: their map entries (bound by an earlier
        // walk, by the kernel at cgroup_mkdir, or by an adopted run) are left alone.
        let mut unknown = HashSet::new();
        // (directory, depth, policy index of the nearest bound ancestor).
        let mut stack: Vec<(PathBuf, usize, Option<usize>)> = vec![(root.to_path_buf(), 0, None)];
        // Parents whose new children a policy selects (`cgroup: /x/*`): the kernel binds such
        // a child at cgroup_mkdir (POLICY_CHILDREN), before its first exec.
        let mut children: HashMap<u64, CgroupPolicy> = HashMap::new();
        let mut bound = 0;
        // Bounded walk: depth and directory count, so a hostile tree cannot stall the agent.
        let mut budget = 100_000usize;
        while let Some((dir, depth, inherited)) = stack.pop() {
            budget = budget.saturating_sub(1);
            if budget == 0 {
                warn!("cgroup tree walk stopped after 100000 directories");
                break;
            }
            let Ok(md) = std::fs::metadata(&dir) else {
                continue;
            };
            let rel = dir
                .strip_prefix(root)
                .map_or_else(|_| "/".to_owned(), |r| format!("/{}", r.display()));
            seen.insert(md.ino());
            let (mut w, known) = info(&rel);
            w.cgroup_path = Some(rel.clone());
            if !known {
                // Container metadata not known yet: a cgroup-only selector (or an ancestor's
                // policy) can still bind it, but an existing binding is never replaced or
                // lifted on missing data.
                let entry = Self::cgroup_map(ebpf)?.get(&md.ino(), 0).ok();
                let bound_now = self.bound.contains_key(&md.ino()) || entry.is_some();
                if bound_now || (choose(&self.policies, &w).is_none() && inherited.is_none()) {
                    unknown.insert(md.ino());
                    let here = self
                        .bound
                        .get(&md.ino())
                        .copied()
                        .or_else(|| entry.and_then(|e| self.index_of(e.policy_id)))
                        .or(inherited);
                    push_children(&mut stack, &dir, depth, here);
                    continue;
                }
            }
            let was = self.bound.get(&md.ino()).copied();
            let now = self
                .bind(ebpf, md.ino(), &w, inherited)?
                .map(|p| p.name.clone());
            if let Some(name) = now
                && was.is_none()
            {
                bound += 1;
                info!(cgroup = %rel, cgroup_id = md.ino(), policy = %name, "cgroup bound to policy");
            }
            let here = self.bound.get(&md.ino()).copied();
            if here.is_none()
                && let Some(b) = child_binding(&self.policies, self.detect_only, self.base, &rel)
            {
                children.insert(md.ino(), b);
            }
            if let Some(i) = here {
                let policies = self.policies.clone();
                self.inodes
                    .resolve_cgroup(md.ino(), &dir, self.id_of(i), &policies[i]);
            }
            push_children(&mut stack, &dir, depth, here.or(inherited));
        }
        self.set_children(ebpf, &children)?;
        // Entries for cgroups that are gone, and entries left by an earlier agent (adopted
        // pins) that this run has not bound. Entries the kernel added at cgroup_mkdir are
        // adopted here when their cgroup still exists and the policy still selects it.
        let mut m = Self::cgroup_map(ebpf)?;
        let keys: Vec<u64> = m.keys().filter_map(|k| k.ok()).collect();
        let unseen: HashSet<u64> = keys.iter().copied().filter(|k| !seen.contains(k)).collect();
        let stale: Vec<u64> = keys
            .into_iter()
            .filter(|k| {
                if seen.contains(k) {
                    !self.bound.contains_key(k) && !unknown.contains(k)
                } else {
                    self.unseen.contains(k)
                }
            })
            .collect();
        self.unseen = unseen;
        for k in stale {
            let _ = m.remove(&k);
            self.bound.remove(&k);
        }
        let bound_now = &self.bound;
        self.inodes
            .retain(|cg| bound_now.contains_key(&cg) || unknown.contains(&cg));
        let current = self.current_ids();
        self.inodes.sync(ebpf, current)?;
        Ok(bound)
    }

    /// Makes `POLICY_CHILDREN` equal to `want` (absent on an object without the map: nothing).
    fn set_children(&self, ebpf: &mut Ebpf, want: &HashMap<u64, CgroupPolicy>) -> Result<()> {
        let Some(m) = ebpf.map_mut(names::POLICY_CHILDREN) else {
            return Ok(());
        };
        let mut m: BpfHashMap<&mut MapData, u64, CgroupPolicy> = BpfHashMap::try_from(m)?;
        let stale: Vec<u64> = m
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !want.contains_key(k))
            .collect();
        for k in stale {
            let _ = m.remove(&k);
        }
        for (k, v) in want {
            if m.get(k, 0).ok() != Some(*v) {
                m.insert(k, v, 0)?;
            }
        }
        Ok(())
    }

    /// Number of cgroups currently bound.
    pub fn bound_count(&self) -> usize {
        self.bound.len()
    }

    /// The bound cgroups with their policy id and policy (for backends deciding in userspace).
    pub fn bound(&self) -> impl Iterator<Item = (u64, u32, &Policy)> + '_ {
        self.bound
            .iter()
            .filter_map(|(cg, &i)| Some((*cg, self.id_of(i), self.policies.get(i)?)))
    }

    /// The audit record and alert for a decision record from the kernel. `workload` is the
    /// container (or host) the process belongs to, as far as the agent knows it.
    pub fn decision(
        &self,
        ev: &DecisionEvent,
        workload: &WorkloadInfo,
        hostname: &str,
    ) -> (Decision, Alert) {
        let policy = self
            .policy_by_id(ev.policy_id)
            .map_or_else(|| format!("#{}", ev.policy_id), |p| p.name.clone());
        let kind = match ev.verdict {
            Verdict::WouldDeny => DecisionKind::WouldDeny,
            Verdict::Deny | Verdict::Kill | Verdict::KillFailed => DecisionKind::Deny,
        };
        let op = match ev.op {
            events::Operation::Exec => Operation::Exec,
            events::Operation::Open => Operation::Open,
            events::Operation::Connect => Operation::Connect,
            events::Operation::Sendmsg => Operation::Sendmsg,
            events::Operation::Write => Operation::Write,
            // The agent sends these to selfprotect::describe; should one come here, it is
            // still recorded as what it is.
            events::Operation::Signal
            | events::Operation::Ptrace
            | events::Operation::ProtectedFile
            | events::Operation::BpfObject => Operation::SelfProtect,
        };
        let target = match (ev.op, ev.dest) {
            (events::Operation::Connect | events::Operation::Sendmsg, Some(d)) => d.to_string(),
            _ => ev.path.text.clone(),
        };
        let known =
            |s: &str| (!s.is_empty() && s != crate::state::container::NA).then(|| s.to_owned());
        let audit_workload = Workload {
            container_id: workload.container_id.clone(),
            container_name: known(&workload.name),
            image: known(&workload.image),
            k8s_namespace: known(&workload.k8s_namespace),
            k8s_pod: None,
        };
        let d = Decision {
            decision: kind,
            op,
            policy: policy.clone(),
            backend: self.backend.as_str().to_owned(),
            target: target.clone(),
            access: ev.access.map(|a| a.as_str().to_owned()),
            hook: Some(ev.hook),
            kill_error: ev.kill_error.clone(),
            workload: audit_workload,
            process: ProcessInfo {
                pid: Some(ev.common.pid),
                exe: Some(ev.common.comm.clone()),
                cmdline: None,
            },
        };
        let mode = if kind == DecisionKind::WouldDeny {
            "detect"
        } else {
            "enforce"
        };
        let verdict = ev.verdict.as_str().replace('_', "-");
        let g = GuardInfo {
            policy: Some(policy.clone()),
            mode: Some(mode.to_owned()),
            decision: Some(verdict.clone()),
            backend: Some(self.backend.as_str().to_owned()),
            ..GuardInfo::default()
        };
        let container_id = workload
            .container_id
            .as_deref()
            .map_or_else(|| "host".to_owned(), |id| id.chars().take(12).collect());
        let str_field = |s: &str| serde_json::Value::String(s.to_owned());
        let mut fields: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        fields.insert("guard.policy".into(), str_field(&policy));
        fields.insert("guard.decision".into(), str_field(&verdict));
        fields.insert("guard.op".into(), str_field(ev.op.as_str()));
        fields.insert("guard.reason".into(), str_field(ev.reason.as_str()));
        fields.insert("guard.hook".into(), str_field(ev.hook.as_str()));
        fields.insert("guard.target".into(), str_field(&target));
        fields.insert("guard.backend".into(), str_field(self.backend.as_str()));
        if let Some(a) = ev.access {
            fields.insert("guard.access".into(), str_field(a.as_str()));
        }
        if let Some(e) = &ev.kill_error {
            fields.insert("guard.kill_error".into(), str_field(e));
        }
        fields.insert("proc.pid".into(), ev.common.pid.into());
        fields.insert("proc.name".into(), str_field(&ev.common.comm));
        fields.insert("user.uid".into(), ev.common.uid.into());
        fields.insert("container.id".into(), str_field(&container_id));
        if workload.container_id.is_some() {
            fields.insert("container.name".into(), str_field(&workload.name));
            fields.insert("container.image".into(), str_field(&workload.image));
        } else {
            fields.insert("container.name".into(), str_field("host"));
        }
        let what = match ev.access {
            Some(a) => format!("{} ({a})", ev.op),
            None => ev.op.as_str().to_owned(),
        };
        let output = format!(
            "Policy {verdict} {what} {target} (policy={policy} mode={mode} backend={} reason={} proc={} pid={} container={})",
            self.backend.as_str(),
            ev.reason,
            ev.common.comm,
            ev.common.pid,
            workload.label(),
        );
        let alert = Alert {
            time: crate::alert::rfc3339_ns(ev.common.time_ns),
            rule: format!("Policy {verdict} {}", ev.op),
            priority: if kind == DecisionKind::Deny {
                Priority::Critical
            } else {
                Priority::Warning
            },
            source: "guard_policy".into(),
            hostname: hostname.to_owned(),
            output,
            tags: vec!["guard_policy".into(), ev.op.as_str().to_owned()],
            output_fields: fields,
            guard: g,
        };
        (d, alert)
    }
}

/// The name of the hypothetical new child a parent's selectors are tried with: a glob such as
/// `/x/*` selects it, an exact path or a container selector does not.
const NEW_CHILD_PROBE: &str = "guard-new-child";

/// Queues the subdirectories of a cgroup for the walk (at most 32 levels deep), with the
/// policy they inherit.
fn push_children(
    stack: &mut Vec<(PathBuf, usize, Option<usize>)>,
    dir: &Path,
    depth: usize,
    inherited: Option<usize>,
) {
    if depth >= 32 {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), depth + 1, inherited));
            }
        }
    }
}

fn path_map(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, PathKeyData, u32>> {
    Ok(LpmTrie::try_from(
        ebpf.map_mut(names::POLICY_PATHS)
            .context("map POLICY_PATHS")?,
    )?)
}

fn net_map(ebpf: &mut Ebpf) -> Result<LpmTrie<&mut MapData, NetKeyData, u32>> {
    Ok(LpmTrie::try_from(
        ebpf.map_mut(names::POLICY_NETS)
            .context("map POLICY_NETS")?,
    )?)
}

/// Removes the entries of an LPM trie whose key `stale` picks; returns how many.
fn remove_where<K: aya::Pod>(
    m: &mut LpmTrie<&mut MapData, K, u32>,
    stale: impl Fn(&Key<K>) -> bool,
) -> Result<usize> {
    let keys: Vec<Key<K>> = m
        .keys()
        .filter_map(|k| k.ok())
        .filter(|k| stale(k))
        .collect();
    for k in &keys {
        m.remove(k)?;
    }
    Ok(keys.len())
}

fn net_bytes(d: &NetKeyData) -> Vec<u8> {
    let mut v = d.policy_id.to_ne_bytes().to_vec();
    v.extend_from_slice(&d.port.to_ne_bytes());
    v.push(d.family);
    v.extend_from_slice(&d.addr);
    v
}

fn bytemuck_path(d: &PathKeyData) -> Vec<u8> {
    let mut v = d.policy_id.to_ne_bytes().to_vec();
    v.push(d.kind);
    v.extend_from_slice(&d.path);
    v
}

/// `POLICY_PENDING`: container id -> policy, read by the `cgroup_mkdir` program.
pub type PendingMap = BpfHashMap<MapData, [u8; CONTAINER_ID_BYTES], CgroupPolicy>;

/// What `guard run` holds for policy enforcement: the enforcer and where cgroups live.
pub struct PolicyRuntime {
    pub enforcer: Enforcer,
    cgroot: PathBuf,
    /// Shared with the container table's hook (the Docker enrichment task).
    pending: Option<Arc<Mutex<PendingMap>>>,
    /// The set the hook binds new containers to; swapped by a reload.
    table: Arc<RwLock<BindingTable>>,
    /// When to remove the previous generation's rules (a moment after a reload, so that a
    /// cgroup the kernel bound from a stale pending entry meanwhile is rebound first).
    collect_at: Option<Instant>,
}

/// The kernel binding for a workload: the policy `choose` picks, if it has kernel rules, with
/// the ids of the generation starting after `base`.
pub fn binding_for(
    policies: &[Policy],
    detect_only: bool,
    base: u32,
    w: &WorkloadInfo,
) -> Option<CgroupPolicy> {
    let (i, p) = choose(policies, w).filter(|(_, p)| p.has_kernel_rules())?;
    Some(CgroupPolicy {
        policy_id: base + i as u32 + 1,
        flags: policy_flags(p, detect_only),
    })
}

/// The binding a new child of the cgroup `parent` (a path below the cgroup2 mount) gets from
/// its own selectors, whatever its name: tried on the name `NEW_CHILD_PROBE`, which a glob
/// (`/x/*`) selects and an exact path does not. Such parents go into `POLICY_CHILDREN`.
pub fn child_binding(
    policies: &[Policy],
    detect_only: bool,
    base: u32,
    parent: &str,
) -> Option<CgroupPolicy> {
    let child = format!("{}/{NEW_CHILD_PROBE}", parent.trim_end_matches('/'));
    binding_for(
        policies,
        detect_only,
        base,
        &WorkloadInfo::host(Some(child)),
    )
}

/// Records (or clears) what the `cgroup_mkdir` program binds for a container. A container
/// id is 64 lowercase hex characters (checked by `ContainerId::parse`).
pub fn set_pending(m: &mut PendingMap, id: &str, binding: Option<CgroupPolicy>) -> Result<()> {
    let key: [u8; CONTAINER_ID_BYTES] = id
        .as_bytes()
        .try_into()
        .map_err(|_| anyhow::anyhow!("container id {id:?} is not 64 bytes"))?;
    match binding {
        Some(b) => m.insert(key, b, 0)?,
        None => {
            let _ = m.remove(&key);
        }
    }
    Ok(())
}

impl PolicyRuntime {
    /// Installs the rules of `policies` (already validated by the caller). Cgroups are bound
    /// by [`PolicyRuntime::rescan`], which needs the container table.
    pub fn start(
        policies: Vec<Policy>,
        detect_only: bool,
        backend: Backend,
        ebpf: &mut Ebpf,
    ) -> Result<Self> {
        let cgroot =
            PathBuf::from(crate::sysfs::cgroup2_mount().unwrap_or_else(|| "/sys/fs/cgroup".into()));
        // An adopted earlier run may have cgroups bound to one generation: install into the
        // other, so those bindings keep their rules until this run rebinds them.
        let adopted_low = Enforcer::cgroup_map(ebpf)?
            .iter()
            .filter_map(|kv| kv.ok())
            .any(|(_, v)| v.policy_id >= 1 && v.policy_id <= MAX_POLICIES);
        let base = if adopted_low { MAX_POLICIES } else { 0 };
        let enforcer = Enforcer::with_base(policies, detect_only, backend, base)?;
        enforcer.install(ebpf)?;
        for p in enforcer.policies.iter() {
            info!(
                policy = %p.name,
                mode = if detect_only { "detect (--detect-only)" } else { p.mode.as_str() },
                backend = enforcer.backend.as_str(),
                "policy loaded"
            );
        }
        // Entries of an earlier run may name policy ids of another policy set: start empty;
        // the container table's hook fills it as Docker metadata arrives.
        let pending = match ebpf.take_map(names::POLICY_PENDING) {
            Some(m) => {
                let mut m: PendingMap = BpfHashMap::try_from(m)?;
                let keys: Vec<_> = m.keys().filter_map(|k| k.ok()).collect();
                for k in keys {
                    let _ = m.remove(&k);
                }
                Some(Arc::new(Mutex::new(m)))
            }
            None => {
                warn!(
                    "map POLICY_PENDING missing: new containers are bound by the cgroup walk only"
                );
                None
            }
        };
        Ok(PolicyRuntime {
            table: Arc::new(RwLock::new(enforcer.table())),
            enforcer,
            cgroot,
            pending,
            collect_at: Some(Instant::now()),
        })
    }

    /// The hook for the container table: on Docker's create (and every later inspect), the
    /// container's policy goes into `POLICY_PENDING`, so the kernel binds its cgroup at
    /// `cgroup_mkdir`, before the entrypoint runs; on destroy the entry is removed.
    pub fn container_hook(&self) -> Option<crate::state::container::ContainerHook> {
        use crate::state::container::ContainerChange;
        let pending = self.pending.clone()?;
        let table = self.table.clone();
        Some(Arc::new(move |change: ContainerChange<'_>| {
            let Ok(mut m) = pending.lock() else {
                return;
            };
            let r = match change {
                ContainerChange::Ready(meta) => {
                    let w = WorkloadInfo::from_container(meta, None);
                    let b = table.read().ok().and_then(|t| t.binding(&w));
                    if let Some(b) = &b {
                        tracing::debug!(container = %meta.id.short(), policy_id = b.policy_id, "container bound at cgroup creation");
                    }
                    set_pending(&mut m, meta.id.as_str(), b)
                }
                ContainerChange::Removed(id) => set_pending(&mut m, id.as_str(), None),
            };
            if let Err(e) = r {
                warn!("POLICY_PENDING: {e:#}");
            }
        }))
    }

    /// Binds new cgroups (and unbinds removed ones); called at start and periodically. Once a
    /// reload (or the start) has settled, removes the rules no binding names any more.
    pub fn rescan(
        &mut self,
        ebpf: &mut Ebpf,
        info: &mut dyn FnMut(&str) -> (WorkloadInfo, bool),
    ) -> Result<usize> {
        let root = self.cgroot.clone();
        let n = self.enforcer.bind_cgroup_tree(ebpf, &root, info)?;
        if self.collect_at.is_some_and(|t| Instant::now() >= t) {
            let removed = self.enforcer.collect(ebpf)?;
            self.collect_at = None;
            tracing::debug!(removed, "stale policy rules removed");
        }
        Ok(n)
    }

    /// Replaces the policy set without a moment of non-enforcement: the new set's rules go
    /// in under the other generation's ids while the old ones stay; then the hook, the
    /// pending containers and every cgroup switch over, each by one atomic map update (a
    /// cgroup is under the old policy or the new one, never under none or a half-written
    /// one); the old rules are removed a second later by [`PolicyRuntime::rescan`].
    /// `workload` gives a pending container's workload (None: not known, keep its entry).
    /// On error before the switch, nothing changed; after it, the cgroups not yet rebound
    /// stay under the old set, whose rules are kept while bound.
    pub fn reload(
        &mut self,
        policies: Vec<Policy>,
        ebpf: &mut Ebpf,
        info: &mut dyn FnMut(&str) -> (WorkloadInfo, bool),
        workload: &mut dyn FnMut(&str) -> Option<WorkloadInfo>,
    ) -> Result<usize> {
        let base = other_generation(self.enforcer.base);
        let next = Enforcer::with_base(
            policies,
            self.enforcer.detect_only,
            self.enforcer.backend.clone(),
            base,
        )?;
        if let Err(e) = next.install(ebpf) {
            // Remove what was written of the new set; the old one is untouched.
            let _ = self.enforcer.collect(ebpf);
            return Err(e);
        }
        let table = next.table();
        if let Ok(mut t) = self.table.write() {
            *t = table.clone();
        }
        if let Some(pending) = &self.pending
            && let Ok(mut m) = pending.lock()
        {
            let keys: Vec<[u8; CONTAINER_ID_BYTES]> = m.keys().filter_map(|k| k.ok()).collect();
            for k in keys {
                let Some(w) = std::str::from_utf8(&k).ok().and_then(&mut *workload) else {
                    continue;
                };
                let id = String::from_utf8_lossy(&k).into_owned();
                set_pending(&mut m, &id, table.binding(&w))?;
            }
        }
        let mut next = next;
        next.inodes = self.enforcer.inodes.take_for_reload();
        let old = std::mem::replace(&mut self.enforcer, next);
        // Cgroups bound before keep their map entry (old generation) until rebound here.
        self.enforcer.previous = Some((old.base, old.policies));
        let root = self.cgroot.clone();
        let n = self.enforcer.bind_cgroup_tree(ebpf, &root, info)?;
        self.collect_at = Some(Instant::now() + std::time::Duration::from_secs(1));
        Ok(n)
    }
}
