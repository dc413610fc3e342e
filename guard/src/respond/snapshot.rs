//! `snapshot`: the workload's process tree and the offending process's recent events.
//!
//! The pipeline feeds [`RecentEvents::record`] (through `Responder::record_recent`) with a
//! one-line summary per event; it keeps a bounded ring per process and a bounded number of
//! processes, evicting the least recently active one.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::Path,
    sync::Mutex,
};

use crate::audit::{RecentEvent, SnapshotProcess};

/// Events kept per process.
pub const MAX_RECENT_PER_PROCESS: usize = 64;
/// Processes with a ring.
pub const MAX_PROCESSES: usize = 4096;
/// Bytes of one summary kept.
pub const MAX_SUMMARY: usize = 512;
/// Processes listed in one snapshot.
pub const MAX_SNAPSHOT_PROCESSES: usize = 512;

#[derive(Default)]
struct Rings {
    by_pid: HashMap<u32, (u64, VecDeque<RecentEvent>)>,
    tick: u64,
}

#[derive(Default)]
pub struct RecentEvents {
    inner: Mutex<Rings>,
}

impl RecentEvents {
    pub fn record(&self, pid: u32, time: String, summary: &str) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.tick += 1;
        let tick = g.tick;
        if !g.by_pid.contains_key(&pid)
            && g.by_pid.len() >= MAX_PROCESSES
            && let Some(victim) = g
                .by_pid
                .iter()
                .min_by_key(|(_, (t, _))| *t)
                .map(|(p, _)| *p)
        {
            g.by_pid.remove(&victim);
        }
        let entry = g.by_pid.entry(pid).or_default();
        entry.0 = tick;
        if entry.1.len() >= MAX_RECENT_PER_PROCESS {
            entry.1.pop_front();
        }
        entry.1.push_back(RecentEvent {
            time,
            summary: crate::state::procfs::truncate_str(summary, MAX_SUMMARY).to_owned(),
        });
    }

    /// The last `n` events of `pid`, oldest first.
    pub fn last(&self, pid: u32, n: usize) -> Vec<RecentEvent> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.by_pid
            .get(&pid)
            .map(|(_, ring)| {
                let skip = ring.len().saturating_sub(n);
                ring.iter().skip(skip).cloned().collect()
            })
            .unwrap_or_default()
    }

    pub fn processes(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_pid
            .len()
    }
}

fn describe(pid: u32) -> Option<SnapshotProcess> {
    let dir = format!("/proc/{pid}");
    let raw = crate::state::procfs::read_capped(Path::new(&format!("{dir}/stat")), 4096).ok()?;
    let stat = crate::state::procfs::parse_stat(&raw)?;
    let cmdline = crate::state::procfs::read_capped(Path::new(&format!("{dir}/cmdline")), 1024)
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default();
    Some(SnapshotProcess {
        pid,
        ppid: stat.ppid,
        comm: stat.comm,
        exe: std::fs::read_link(format!("{dir}/exe"))
            .ok()
            .map(|p| p.to_string_lossy().into_owned()),
        cmdline,
    })
}

/// Every process in a cgroup v2 directory and its descendants (bounded).
pub fn cgroup_processes(dir: &Path) -> (Vec<SnapshotProcess>, bool) {
    let mut out = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0usize)];
    let mut truncated = false;
    while let Some((d, depth)) = stack.pop() {
        if let Ok(procs) = crate::state::procfs::read_capped(&d.join("cgroup.procs"), 1 << 20) {
            for pid in String::from_utf8_lossy(&procs)
                .lines()
                .filter_map(|l| l.trim().parse::<u32>().ok())
            {
                if out.len() >= MAX_SNAPSHOT_PROCESSES {
                    truncated = true;
                    break;
                }
                if let Some(p) = describe(pid) {
                    out.push(p);
                }
            }
        }
        if depth < 8
            && let Ok(rd) = std::fs::read_dir(&d)
        {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push((e.path(), depth + 1));
                }
            }
        }
    }
    (out, truncated)
}

/// The host process's ancestors, itself and its descendants (bounded).
pub fn host_tree(pid: u32) -> (Vec<SnapshotProcess>, bool) {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut cur = pid;
    let mut chain = Vec::new();
    while cur > 1 && chain.len() < 64 && seen.insert(cur) {
        match describe(cur) {
            Some(p) => {
                cur = p.ppid;
                chain.push(p);
            }
            None => break,
        }
    }
    chain.reverse();
    out.extend(chain);
    let mut truncated = false;
    for d in super::process::descendants(pid) {
        if out.len() >= MAX_SNAPSHOT_PROCESSES {
            truncated = true;
            break;
        }
        if let Some(p) = describe(d) {
            out.push(p);
        }
    }
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_bounded() {
        let r = RecentEvents::default();
        for i in 0..(MAX_RECENT_PER_PROCESS + 10) {
            r.record(7, String::new(), &format!("e{i}"));
        }
        let last = r.last(7, 1000);
        assert_eq!(last.len(), MAX_RECENT_PER_PROCESS);
        assert_eq!(
            last.last().map(|e| e.summary.as_str()),
            Some(format!("e{}", MAX_RECENT_PER_PROCESS + 9).as_str())
        );
        assert_eq!(r.last(7, 2).len(), 2);
        for p in 0..(MAX_PROCESSES as u32 + 5) {
            r.record(1000 + p, String::new(), "x");
        }
        assert!(r.processes() <= MAX_PROCESSES);
        r.record(1, String::new(), &"é".repeat(MAX_SUMMARY));
        assert!(r.last(1, 1)[0].summary.len() <= MAX_SUMMARY);
    }

    #[test]
    fn host_tree_has_self_and_ancestors() {
        let (t, _) = host_tree(std::process::id());
        assert!(t.iter().any(|p| p.pid == std::process::id()));
    }
}
