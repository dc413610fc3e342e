//! `POLICY_INODES`: for each bound cgroup, its policy's path rules resolved in the root of the
//! cgroup's first process ([`super::resolve`]), kept in the kernel map as their union. The
//! cgroup walk re-resolves every second, so a replaced file (new inode) is followed and a
//! removed workload's entries go.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
};

use anyhow::{Context, Result};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, MapData},
};
use guard_ebpf::{InodeRuleKey, MAX_INODE_RULES, names};
use tracing::warn;

use super::{
    Policy,
    resolve::{FileId, InodeRule, first_pid, resolve_in},
};

/// (policy id, file) -> `path_bits`.
pub type InodeRules = BTreeMap<(u32, FileId), u32>;

#[derive(Default)]
pub struct InodeTable {
    /// cgroup id -> (policy id, its policy resolved in the cgroup's root).
    per_cgroup: HashMap<u64, (u32, Vec<InodeRule>)>,
    /// What the kernel map holds for the ids this table manages; None until first read.
    installed: Option<InodeRules>,
}

fn inode_map(ebpf: &mut Ebpf) -> Result<BpfHashMap<&mut MapData, InodeRuleKey, u32>> {
    Ok(BpfHashMap::try_from(
        ebpf.map_mut(names::POLICY_INODES)
            .context("map POLICY_INODES")?,
    )?)
}

fn key(policy_id: u32, id: FileId) -> InodeRuleKey {
    InodeRuleKey {
        policy_id,
        _pad: 0,
        dev: id.dev,
        ino: id.ino,
    }
}

impl InodeTable {
    /// Resolves `p` (policy id `policy_id`) for cgroup `cg` in the root of the cgroup's first
    /// process. A cgroup without a process keeps what it had (its entries wait for one).
    pub fn resolve_cgroup(&mut self, cg: u64, dir: &Path, policy_id: u32, p: &Policy) {
        let Some(pid) = first_pid(dir) else {
            if self
                .per_cgroup
                .get(&cg)
                .is_some_and(|(id, _)| *id != policy_id)
            {
                self.per_cgroup.remove(&cg);
            }
            return;
        };
        let r = match crate::procroot::open_root(pid) {
            Ok(root) => resolve_in(&root, p),
            Err(e) => {
                tracing::debug!(cgroup = cg, pid, "policy paths not resolved: {e:#}");
                return;
            }
        };
        tracing::debug!(
            cgroup = cg,
            pid,
            resolved = r.rules.len(),
            missing = r.missing.len(),
            "policy paths resolved"
        );
        self.per_cgroup.insert(cg, (policy_id, r.rules));
    }

    /// Forgets the cgroups `keep` rejects (unbound or gone).
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        self.per_cgroup.retain(|cg, _| keep(*cg));
    }

    fn wanted(&self) -> InodeRules {
        let mut out = InodeRules::new();
        for (id, rules) in self.per_cgroup.values() {
            for r in rules {
                *out.entry((*id, r.id)).or_default() |= r.bits;
            }
        }
        out
    }

    /// Makes the kernel map hold exactly the wanted entries among the ids `managed` accepts
    /// (this policy set's); entries of other ids (a replaced set still bound somewhere) are left
    /// to [`InodeTable::collect`]. Returns (added or changed, removed).
    pub fn sync(
        &mut self,
        ebpf: &mut Ebpf,
        managed: impl Fn(u32) -> bool,
    ) -> Result<(usize, usize)> {
        let mut m = inode_map(ebpf)?;
        let installed = match self.installed.take() {
            Some(i) => i,
            // First sync (or after an adopted run): learn what the pinned map holds.
            None => m
                .iter()
                .filter_map(|kv| kv.ok())
                .filter(|(k, _)| managed(k.policy_id))
                .map(|(k, v)| {
                    (
                        (
                            k.policy_id,
                            FileId {
                                dev: k.dev,
                                ino: k.ino,
                            },
                        ),
                        v,
                    )
                })
                .collect(),
        };
        let mut wanted = self.wanted();
        let (mut added, mut removed) = (0, 0);
        let mut now = InodeRules::new();
        for (k, bits) in &installed {
            if !wanted.contains_key(k) {
                let _ = m.remove(&key(k.0, k.1));
                removed += 1;
            } else {
                now.insert(*k, *bits);
            }
        }
        let mut full = false;
        for (k, bits) in std::mem::take(&mut wanted) {
            if now.get(&k) == Some(&bits) {
                continue;
            }
            match m.insert(key(k.0, k.1), bits, 0) {
                Ok(()) => {
                    now.insert(k, bits);
                    added += 1;
                }
                Err(e) => {
                    if !full {
                        warn!(
                            "POLICY_INODES: {e} (capacity {MAX_INODE_RULES}): rules on some files hold by path name only"
                        );
                        full = true;
                    }
                }
            }
        }
        if added + removed > 0 {
            tracing::debug!(added, removed, total = now.len(), "POLICY_INODES updated");
        }
        self.installed = Some(now);
        Ok((added, removed))
    }

    /// Removes entries of ids outside this set that no binding references any more.
    pub fn collect(
        &self,
        ebpf: &mut Ebpf,
        managed: impl Fn(u32) -> bool,
        referenced: &HashSet<u32>,
    ) -> Result<usize> {
        let mut m = inode_map(ebpf)?;
        let stale: Vec<InodeRuleKey> = m
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| !managed(k.policy_id) && !referenced.contains(&k.policy_id))
            .collect();
        for k in &stale {
            let _ = m.remove(k);
        }
        Ok(stale.len())
    }

    /// Hands the per-cgroup state to the set a reload installs; the new set re-reads the map.
    pub fn take_for_reload(&mut self) -> InodeTable {
        InodeTable {
            per_cgroup: std::mem::take(&mut self.per_cgroup),
            installed: None,
        }
    }
}
