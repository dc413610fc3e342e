//! The `fanotify` backend's start window (docs/policies.md "The fanotify backend"): the
//! `sched_process_exec` backstop stops (SIGSTOP) a task that execs in an enforced container
//! cgroup whose files are not marked yet (`FAN_READY`), and reports it in the `HOLDS` ring.
//! The pipeline then walks the policies (which marks the container's filesystem and adds its
//! cgroup to `FAN_READY`) and resumes the task (SIGCONT), so the container's first
//! instruction already has its opens asked.
//!
//! The kernel holds only while `HOLD_UNTIL` lies ahead: the agent renews it every second (3 s
//! ahead), so containers started more than 3 s after the agent died are not held. Every hold
//! is also in the pinned `HELD` map until resumed, so one made in those 3 s (or read from the
//! ring but not resumed when the agent died) is resumed by the next agent, once marked. A
//! hold whose workload cannot be marked within
//! `HOLD_MAX` is resumed anyway, with a warning (its opens are then not asked until a later walk
//! marks it, as without holds).

use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, MapData, RingBuf};
use guard_ebpf::{HeldTask, HoldRecord, names, settings};
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

use crate::respond::process::{ProcessHandle, START_TOLERANCE, read_stat, start_boot_ns};

/// How far ahead each renewal puts `HOLD_UNTIL`.
const RENEW_AHEAD: Duration = Duration::from_secs(3);

/// The longest a task stays held when its workload cannot be marked.
pub(super) const HOLD_MAX: Duration = Duration::from_secs(2);

/// Holds waiting for their workload's marks, at most (a full ring in the kernel holds nothing).
const PENDING_MAX: usize = 1024;

/// A task to resume: from the ring (this agent's program), or found in `HELD` at start
/// (held for an earlier agent: its pid is checked before the signal).
#[derive(Debug, Clone, Copy)]
struct Hold {
    cgroup_id: u64,
    pid: u32,
    earlier: Option<HeldTask>,
}

pub(super) struct Holds {
    ring: AsyncFd<RingBuf<MapData>>,
    ready: BpfHashMap<MapData, u64, u8>,
    held: BpfHashMap<MapData, u32, HeldTask>,
    /// What `ready` holds (kept here so updates touch only what changed).
    marked: HashSet<u64>,
    pending: Vec<(Hold, Instant)>,
    /// Hold durations, for the log at stop.
    pub resumed: u64,
    pub held_max: Duration,
    pub resumed_unmarked: u64,
    /// Holds an earlier agent left, found at start.
    pub inherited: u64,
}

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

impl Holds {
    pub(super) fn start(probes: &mut crate::probes::Probes) -> Result<Self> {
        let take = |p: &mut crate::probes::Probes, name: &str| {
            p.ebpf
                .take_map(name)
                .with_context(|| format!("map {name} missing from the object"))
        };
        let ring = RingBuf::try_from(take(probes, names::HOLDS)?)?;
        let ready = BpfHashMap::try_from(take(probes, names::FAN_READY)?)?;
        let held: BpfHashMap<MapData, u32, HeldTask> =
            BpfHashMap::try_from(take(probes, names::HELD)?)?;
        // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd holds it.
        let ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
            .map_err(|e| anyhow::anyhow!("polling the HOLDS ring: {e}"))?;
        let now = Instant::now();
        let pending: Vec<(Hold, Instant)> = held
            .iter()
            .filter_map(|kv| kv.ok())
            .take(PENDING_MAX)
            .map(|(pid, t)| {
                let h = Hold {
                    cgroup_id: t.cgroup_id,
                    pid,
                    earlier: Some(t),
                };
                (h, now)
            })
            .collect();
        if !pending.is_empty() {
            info!(
                tasks = pending.len(),
                "fanotify: tasks held for an earlier agent are resumed once their workloads are marked"
            );
        }
        Ok(Self {
            ring,
            ready,
            held,
            marked: HashSet::new(),
            inherited: pending.len() as u64,
            pending,
            resumed: 0,
            held_max: Duration::ZERO,
            resumed_unmarked: 0,
        })
    }

    /// Lets the kernel hold for the next `RENEW_AHEAD` (0 stops holding).
    pub(super) fn renew(ebpf: &mut aya::Ebpf, on: bool) -> Result<()> {
        let mut s: aya::maps::Array<&mut MapData, u64> = aya::maps::Array::try_from(
            ebpf.map_mut(names::SETTINGS)
                .context("map SETTINGS missing from the object")?,
        )?;
        let until = if on {
            monotonic_ns() + RENEW_AHEAD.as_nanos() as u64
        } else {
            0
        };
        s.set(settings::HOLD_UNTIL, until, 0)?;
        Ok(())
    }

    pub(super) async fn readable(&mut self) {
        match self.ring.readable_mut().await {
            Ok(mut g) => g.clear_ready(),
            // Never ready again: park this branch.
            Err(_) => std::future::pending().await,
        }
    }

    /// Moves what the kernel reported into `pending`; returns how many are pending.
    pub(super) fn collect(&mut self) -> usize {
        let now = Instant::now();
        let mut overflow = Vec::new();
        let ring = self.ring.get_mut();
        while let Some(item) = ring.next() {
            if item.len() < size_of::<HoldRecord>() {
                continue;
            }
            // SAFETY: the length was checked; the record is plain data.
            let rec = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const HoldRecord) };
            let h = Hold {
                cgroup_id: rec.cgroup_id,
                pid: rec.pid,
                earlier: None,
            };
            // An inherited hold the ring also reports (the old program wrote both).
            if self.pending.iter().any(|(p, _)| p.pid == h.pid) {
                continue;
            }
            if self.pending.len() < PENDING_MAX {
                self.pending.push((h, now));
            } else {
                overflow.push(h);
            }
        }
        // Cannot be tracked: resumed at once rather than left stopped.
        for h in overflow {
            self.resume(&h);
        }
        self.pending.len()
    }

    /// Puts the cgroups a walk marked in `FAN_READY` (and takes out the others), then resumes
    /// the holds whose cgroup is marked, and those past `HOLD_MAX` (with a warning).
    pub(super) fn update(&mut self, covered: &HashSet<u64>) {
        let new: Vec<u64> = covered.difference(&self.marked).copied().collect();
        for cg in new {
            if self.ready.insert(cg, 1u8, 0).is_ok() {
                self.marked.insert(cg);
            }
        }
        let gone: Vec<u64> = self.marked.difference(covered).copied().collect();
        for cg in gone {
            let _ = self.ready.remove(&cg);
            self.marked.remove(&cg);
        }
        let now = Instant::now();
        let mut keep = Vec::new();
        for (h, since) in std::mem::take(&mut self.pending) {
            let waited = now.duration_since(since);
            if covered.contains(&h.cgroup_id) {
                debug!(
                    pid = h.pid,
                    cgroup = h.cgroup_id,
                    ?waited,
                    "fanotify: held task resumed, its workload is marked"
                );
                self.resumed += 1;
                self.held_max = self.held_max.max(waited);
                self.resume(&h);
            } else if waited >= HOLD_MAX {
                self.resumed_unmarked += 1;
                warn!(
                    pid = h.pid,
                    cgroup = h.cgroup_id,
                    "fanotify: the workload could not be marked within {HOLD_MAX:?}; resumed, its opens are not asked until a later walk marks it"
                );
                self.resume(&h);
            } else {
                keep.push((h, since));
            }
        }
        self.pending = keep;
    }

    /// Resumes every hold (the agent stops).
    pub(super) fn release_all(&mut self) {
        self.collect();
        for (h, _) in std::mem::take(&mut self.pending) {
            self.resume(&h);
        }
    }

    /// SIGCONT through a pidfd, then out of `HELD`. Sent whether or not the task has stopped
    /// yet: the record can be read before the SIGSTOP takes effect (at the task's return to
    /// user space), and a SIGCONT sent first cancels the pending stop. The task cannot exit
    /// while held (SIGKILL aside), so a pid from the ring is still its own; one inherited from
    /// an earlier agent is first checked to be a task that started before its hold.
    fn resume(&mut self, h: &Hold) {
        let _ = self.held.remove(&h.pid);
        if let Some(t) = h.earlier
            && !started_before(h.pid, t.held_at_boot_ns)
        {
            debug!(pid = h.pid, "inherited hold: the pid is another task now");
            return;
        }
        match ProcessHandle::open(h.pid, None) {
            Ok(p) => {
                if let Err(e) = p.signal(libc::SIGCONT) {
                    warn!(pid = h.pid, "fanotify: resuming a held task: {e}");
                }
            }
            Err(e) => debug!(pid = h.pid, "held task: {e}"),
        }
    }
}

/// Whether `pid` is a task that started before `boot_ns` (CLOCK_BOOTTIME): the held task, not
/// a later one that reused its pid.
fn started_before(pid: u32, boot_ns: u64) -> bool {
    read_stat(pid).is_some_and(|s| start_boot_ns(&s) <= boot_ns + START_TOLERANCE.as_nanos() as u64)
}
