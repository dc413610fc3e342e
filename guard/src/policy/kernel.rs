//! Policies into the kernel: compile them into `POLICY_PATHS` / `POLICY_NETS` entries, bind
//! cgroups to policies in `POLICY_CGROUPS`, and turn the programs' decision records into alerts
//! and audit records.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
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

use super::{Mode, Policy, WorkloadInfo, choose};
use crate::{
    alert::{Alert, GuardInfo, Priority},
    audit::record::{Decision, DecisionKind, Operation, ProcessInfo, Workload},
    events::DecisionEvent,
};

/// How kernel decisions are enforced on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// BPF LSM programs: exec, open and connect fail with EPERM before they happen.
    BpfLsm,
    /// No BPF LSM: SIGKILL at `sched_process_exec` for denied execs; opens and connects are
    /// not denied by this backend (see docs/policies.md).
    SigkillFallback,
    /// Nothing could attach; the reason is kept for the log and doctor.
    Unavailable(String),
}

impl Backend {
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::BpfLsm => "bpf-lsm",
            Backend::SigkillFallback => "sigkill-fallback",
            Backend::Unavailable(_) => "none",
        }
    }
}

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
    pub policies: Vec<Policy>,
    pub detect_only: bool,
    pub backend: Backend,
    /// cgroup id -> index into `policies`.
    bound: HashMap<u64, usize>,
}

/// Policy id of `policies[i]` in the kernel maps.
fn id_of(i: usize) -> u32 {
    i as u32 + 1
}

impl Enforcer {
    pub fn new(policies: Vec<Policy>, detect_only: bool, backend: Backend) -> Result<Self> {
        anyhow::ensure!(
            policies.len() <= MAX_POLICIES as usize,
            "{} policies; the kernel maps hold at most {MAX_POLICIES}",
            policies.len()
        );
        Ok(Enforcer {
            policies,
            detect_only,
            backend,
            bound: HashMap::new(),
        })
    }

    pub fn policy_by_id(&self, id: u32) -> Option<&Policy> {
        self.policies.get((id as usize).checked_sub(1)?)
    }

    /// Writes every policy's rules, and removes entries of an earlier run (adopted pinned maps)
    /// that are not part of this policy set.
    pub fn install(&self, ebpf: &mut Ebpf) -> Result<()> {
        let mut paths: Vec<PathEntry> = Vec::new();
        let mut nets: Vec<NetEntry> = Vec::new();
        for (i, p) in self.policies.iter().enumerate() {
            paths.extend(path_entries(id_of(i), p));
            nets.extend(net_entries(id_of(i), p));
        }
        anyhow::ensure!(
            paths.len() <= MAX_PATH_RULES as usize && nets.len() <= MAX_NET_RULES as usize,
            "policies need {} path and {} network entries; the kernel maps hold {MAX_PATH_RULES} and {MAX_NET_RULES}",
            paths.len(),
            nets.len()
        );
        {
            let mut m: LpmTrie<&mut MapData, PathKeyData, u32> = LpmTrie::try_from(
                ebpf.map_mut(names::POLICY_PATHS)
                    .context("map POLICY_PATHS")?,
            )?;
            let want: HashSet<(u32, Vec<u8>)> = paths
                .iter()
                .map(|(l, d, _)| (*l, bytemuck_path(d)))
                .collect();
            let stale: Vec<Key<PathKeyData>> = m
                .keys()
                .filter_map(|k| k.ok())
                .filter(|k| !want.contains(&(k.prefix_len(), bytemuck_path(&k.data()))))
                .collect();
            for k in stale {
                m.remove(&k)?;
            }
            for (plen, data, bits) in &paths {
                m.insert(&Key::new(*plen, *data), *bits, 0)?;
            }
        }
        {
            let mut m: LpmTrie<&mut MapData, NetKeyData, u32> = LpmTrie::try_from(
                ebpf.map_mut(names::POLICY_NETS)
                    .context("map POLICY_NETS")?,
            )?;
            let stale: Vec<Key<NetKeyData>> = m.keys().filter_map(|k| k.ok()).collect();
            for k in stale {
                m.remove(&k)?;
            }
            for (plen, data, bits) in &nets {
                m.insert(&Key::new(*plen, *data), *bits, 0)?;
            }
        }
        Ok(())
    }

    fn cgroup_map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, u64, CgroupPolicy>> {
        Ok(BpfHashMap::try_from(
            ebpf.map_mut(names::POLICY_CGROUPS)
                .context("map POLICY_CGROUPS")?,
        )?)
    }

    /// Binds `cgroup_id` to the policy `w` selects (most specific wins), or unbinds it.
    pub fn bind(
        &mut self,
        ebpf: &mut Ebpf,
        cgroup_id: u64,
        w: &WorkloadInfo,
    ) -> Result<Option<&Policy>> {
        let chosen = choose(&self.policies, w).filter(|(_, p)| p.has_kernel_rules());
        let mut m = Self::cgroup_map(ebpf)?;
        match chosen {
            Some((i, p)) => {
                let v = CgroupPolicy {
                    policy_id: id_of(i),
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
                Ok(Some(p))
            }
            None => {
                if self.bound.remove(&cgroup_id).is_some() {
                    let _ = m.remove(&cgroup_id);
                }
                Ok(None)
            }
        }
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
        let mut stack: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
        let mut bound = 0;
        // Bounded walk: depth and directory count, so a hostile tree cannot stall the agent.
        let mut budget = 100_000usize;
        while let Some((dir, depth)) = stack.pop() {
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
                // Container metadata not known yet: a cgroup-only selector can still bind it,
                // but an existing binding is never replaced or lifted on missing data.
                let bound_now = self.bound.contains_key(&md.ino())
                    || Self::cgroup_map(ebpf)?.get(&md.ino(), 0).is_ok();
                if bound_now || choose(&self.policies, &w).is_none() {
                    unknown.insert(md.ino());
                    push_children(&mut stack, &dir, depth);
                    continue;
                }
            }
            {
                let was = self.bound.get(&md.ino()).copied();
                let now = self.bind(ebpf, md.ino(), &w)?.map(|p| p.name.clone());
                if let Some(name) = now
                    && was.is_none()
                {
                    bound += 1;
                    info!(cgroup = %rel, cgroup_id = md.ino(), policy = %name, "cgroup bound to policy");
                }
            }
            push_children(&mut stack, &dir, depth);
        }
        // Entries for cgroups that are gone, and entries left by an earlier agent (adopted
        // pins) that this run has not bound. Entries the kernel added at cgroup_mkdir are
        // adopted here when their cgroup still exists and the policy still selects it.
        let mut m = Self::cgroup_map(ebpf)?;
        let stale: Vec<u64> = m
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !seen.contains(k) || (!self.bound.contains_key(k) && !unknown.contains(k)))
            .collect();
        for k in stale {
            let _ = m.remove(&k);
            self.bound.remove(&k);
        }
        Ok(bound)
    }

    /// Number of cgroups currently bound.
    pub fn bound_count(&self) -> usize {
        self.bound.len()
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
            "would_deny" => DecisionKind::WouldDeny,
            _ => DecisionKind::Deny,
        };
        let op = match ev.op {
            "open" => Operation::Open,
            "connect" => Operation::Connect,
            _ => Operation::Exec,
        };
        let target = match (ev.op, ev.dest) {
            ("connect", Some(d)) => d.to_string(),
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
            access: ev.access.map(str::to_owned),
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
        let verdict = ev.verdict.replace('_', "-");
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
        fields.insert("guard.op".into(), str_field(ev.op));
        fields.insert("guard.reason".into(), str_field(ev.reason));
        fields.insert("guard.target".into(), str_field(&target));
        fields.insert("guard.backend".into(), str_field(self.backend.as_str()));
        if let Some(a) = ev.access {
            fields.insert("guard.access".into(), str_field(a));
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
        let what = match &ev.access {
            Some(a) => format!("{} ({a})", ev.op),
            None => ev.op.to_owned(),
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
            tags: vec!["guard_policy".into(), ev.op.to_owned()],
            output_fields: fields,
            guard: g,
        };
        (d, alert)
    }
}

/// Queues the subdirectories of a cgroup for the walk (at most 32 levels deep).
fn push_children(stack: &mut Vec<(PathBuf, usize)>, dir: &Path, depth: usize) {
    if depth >= 32 {
        return;
    }
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push((e.path(), depth + 1));
            }
        }
    }
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
}

/// The kernel binding for a workload: the policy `choose` picks, if it has kernel rules.
pub fn binding_for(
    policies: &[Policy],
    detect_only: bool,
    w: &WorkloadInfo,
) -> Option<CgroupPolicy> {
    let (i, p) = choose(policies, w).filter(|(_, p)| p.has_kernel_rules())?;
    Some(CgroupPolicy {
        policy_id: id_of(i),
        flags: policy_flags(p, detect_only),
    })
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
        let cgroot = PathBuf::from(
            crate::doctor::cgroup2_mount().unwrap_or_else(|| "/sys/fs/cgroup".into()),
        );
        let enforcer = Enforcer::new(policies, detect_only, backend)?;
        enforcer.install(ebpf)?;
        for p in &enforcer.policies {
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
            enforcer,
            cgroot,
            pending,
        })
    }

    /// The hook for the container table: on Docker's create (and every later inspect), the
    /// container's policy goes into `POLICY_PENDING`, so the kernel binds its cgroup at
    /// `cgroup_mkdir`, before the entrypoint runs; on destroy the entry is removed.
    pub fn container_hook(&self) -> Option<crate::state::container::ContainerHook> {
        use crate::state::container::ContainerChange;
        let pending = self.pending.clone()?;
        let policies = Arc::new(self.enforcer.policies.clone());
        let detect_only = self.enforcer.detect_only;
        Some(Arc::new(move |change: ContainerChange<'_>| {
            let Ok(mut m) = pending.lock() else {
                return;
            };
            let r = match change {
                ContainerChange::Ready(meta) => {
                    let w = WorkloadInfo::from_container(meta, None);
                    let b = binding_for(&policies, detect_only, &w);
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

    /// Binds new cgroups (and unbinds removed ones); called at start and periodically.
    pub fn rescan(
        &mut self,
        ebpf: &mut Ebpf,
        info: &mut dyn FnMut(&str) -> (WorkloadInfo, bool),
    ) -> Result<usize> {
        let root = self.cgroot.clone();
        self.enforcer.bind_cgroup_tree(ebpf, &root, info)
    }

    /// The policy for a workload, as the kernel would get it (policy id and flags), or None.
    pub fn kernel_binding(&self, w: &WorkloadInfo) -> Option<CgroupPolicy> {
        binding_for(&self.enforcer.policies, self.enforcer.detect_only, w)
    }
}
