//! Reports of changes to files a policy denies writing (`fanotify` backend,
//! `fanotify/modify.rs`) that wait in the pipeline.
//!
//! A change by a writer gone before the answer thread read its cgroup (`Orphans`) waits
//! until the event ring has delivered that writer's exec (so the process table knows it):
//! `ORPHAN_WAIT_MS`, a few ring ticks.
//!
//! Detect mode's changes (`DetectChanges`) are recorded once per process and file, and none for a process whose open
//! of the file for write was already recorded at the open's exit (the kernel's
//! `policy_open_detect`), so a write through such an open is not recorded a second time,
//! while a truncate through a magic link, or a write through a descriptor opened before the
//! agent, is. The open's record comes through the decisions ring and the change's through the
//! answer thread, in either order: a change waits `HOLD_MS` before it is judged against the opens
//! seen.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

use crate::events::{self, Access, Operation, Verdict};

/// How long a change waits for the record of its writer's open (both are produced before the
/// writer's next syscall; this bounds how far the pipeline's two sources may drift apart), ms.
const HOLD_MS: u64 = 250;
#[cfg(test)]
const HOLD: Duration = Duration::from_millis(HOLD_MS);
/// Changes waiting; past it a change is judged at once.
const HELD_MAX: usize = 1024;
/// (process, file) pairs remembered; past it the oldest go first.
const SEEN_MAX: usize = 8192;
/// A pair not seen again for this long is forgotten (the process may since have closed the
/// descriptor, and a later change through another route is a new act).
const SEEN_TTL: Duration = Duration::from_secs(600);

/// How long a gone writer's change waits for the events ring (whose records wait at most
/// `pipeline::RING_TICK` without a wakeup) before the process table is asked, ms.
const ORPHAN_WAIT_MS: u64 = 100;
#[cfg(test)]
const ORPHAN_WAIT: Duration = Duration::from_millis(ORPHAN_WAIT_MS);
/// Gone writers' changes waiting; past it the oldest is judged at once.
const ORPHANS_MAX: usize = 1024;

/// Items that wait `WAIT_MS` each, oldest first; past `MAX` waiting, the oldest is due at once.
pub(super) struct Waiting<T, const WAIT_MS: u64, const MAX: usize>(VecDeque<(Instant, T)>);

impl<T, const WAIT_MS: u64, const MAX: usize> Default for Waiting<T, WAIT_MS, MAX> {
    fn default() -> Self {
        Self(VecDeque::new())
    }
}

impl<T, const WAIT_MS: u64, const MAX: usize> Waiting<T, WAIT_MS, MAX> {
    pub(super) fn push(&mut self, item: T, now: Instant) {
        self.0.push_back((now, item));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The items that waited long enough (all of them with `all`).
    pub(super) fn due(&mut self, now: Instant, all: bool) -> Vec<T> {
        let wait = Duration::from_millis(WAIT_MS);
        let mut out = Vec::new();
        while let Some((at, _)) = self.0.front() {
            if !(all || self.0.len() > MAX || now.duration_since(*at) >= wait) {
                break;
            }
            if let Some((_, item)) = self.0.pop_front() {
                out.push(item);
            }
        }
        out
    }
}

/// Changes by writers gone before their cgroup was read.
pub(super) type Orphans = Waiting<crate::fanotify::Orphan, ORPHAN_WAIT_MS, ORPHANS_MAX>;

/// (pid, process start, device, inode): a process and a file. The start time (wall ns, from
/// the agent's process table; 0 when unknown) keeps a later process given the same pid (pids
/// are reused, after 32,768 on a default kernel) from passing for the one recorded.
type Key = (u32, u64, u64, u64);

#[derive(Default)]
pub(super) struct DetectChanges {
    seen: HashMap<Key, Instant>,
    /// Detect-mode changes and their process's start time.
    held: Waiting<(u64, events::DecisionEvent), HOLD_MS, HELD_MAX>,
    /// Changes not recorded: the process's writes to that file were recorded already.
    pub suppressed: u64,
}

fn key(d: &events::DecisionEvent, start: u64) -> Option<Key> {
    d.inode.map(|(dev, ino)| (d.common.pid, start, dev, ino))
}

impl DetectChanges {
    /// A kernel decision of the process that started at `start`: a would-deny open for write
    /// makes its later changes to that file not worth a record of their own.
    pub(super) fn saw_decision(&mut self, d: &events::DecisionEvent, start: u64, now: Instant) {
        let write = matches!(d.access, Some(Access::Write | Access::ReadWrite));
        if d.op == Operation::Open && d.verdict == Verdict::WouldDeny && write {
            self.remember(key(d, start), now);
        }
    }

    fn remember(&mut self, k: Option<Key>, now: Instant) {
        let Some(k) = k else {
            return;
        };
        if self.seen.len() >= SEEN_MAX && !self.seen.contains_key(&k) {
            self.seen.retain(|_, t| now.duration_since(*t) < SEEN_TTL);
            if self.seen.len() >= SEEN_MAX
                && let Some(oldest) = self.seen.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(k, now);
    }

    /// Whether changes wait to be judged (the pipeline's timer runs only then).
    pub(super) fn is_waiting(&self) -> bool {
        !self.held.is_empty()
    }

    /// A detect-mode change report by the process that started at `start`, judged after
    /// `HOLD_MS`.
    pub(super) fn hold(&mut self, d: events::DecisionEvent, start: u64, now: Instant) {
        self.held.push((start, d), now);
    }

    /// The held changes due (all of them with `all`, or past `HELD_MAX`) that need a record:
    /// the first of each process and file; each one's pair is remembered.
    pub(super) fn due(&mut self, now: Instant, all: bool) -> Vec<events::DecisionEvent> {
        let mut out = Vec::new();
        for (start, d) in self.held.due(now, all) {
            let k = key(&d, start);
            let fresh = k
                .and_then(|k| self.seen.get(&k))
                .is_none_or(|t| now.duration_since(*t) >= SEEN_TTL);
            // A change refreshes its pair's time either way.
            self.remember(k, now);
            if fresh {
                out.push(d);
            } else {
                self.suppressed += 1;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(pid: u32, op: Operation, access: Access, ino: u64) -> events::DecisionEvent {
        events::DecisionEvent {
            common: events::Common {
                time_ns: 1,
                cgroup_id: events::CgroupId(7),
                pid,
                tid: pid,
                ppid: 1,
                uid: 0,
                gid: 0,
                loginuid: None,
                comm: "sh".into(),
                ret: 0,
                cpu: 0,
            },
            policy_id: 1,
            op,
            verdict: Verdict::WouldDeny,
            reason: events::Reason::DenyList,
            hook: events::Hook::FanotifyModify,
            path: Default::default(),
            access: Some(access),
            dest: None,
            inode: Some((5, ino)),
            self_protect: None,
            kill_error: None,
        }
    }

    #[test]
    fn a_change_is_recorded_once_per_process_and_file_unless_its_open_for_write_was() {
        let t0 = Instant::now();
        let mut c = DetectChanges::default();
        // Pid 10 opened inode 1 for write (recorded at the open's exit), pid 11 only read it.
        c.saw_decision(&decision(10, Operation::Open, Access::Write, 1), 7, t0);
        c.saw_decision(&decision(11, Operation::Open, Access::Read, 1), 7, t0);
        for pid in [10, 11, 11, 12] {
            c.hold(decision(pid, Operation::Write, Access::Write, 1), 7, t0);
        }
        // Another file of pid 10's: a change of its own.
        c.hold(decision(10, Operation::Write, Access::Write, 2), 7, t0);
        assert!(c.due(t0 + HOLD / 2, false).is_empty(), "judged before HOLD");
        let out: Vec<(u32, u64)> = c
            .due(t0 + HOLD, false)
            .iter()
            .map(|d| (d.common.pid, d.inode.map_or(0, |i| i.1)))
            .collect();
        assert_eq!(out, [(11, 1), (12, 1), (10, 2)]);
        assert_eq!(c.suppressed, 2);
        // An open's record that comes after its change (the two sources drift) still counts.
        let t1 = t0 + Duration::from_secs(1);
        c.hold(decision(20, Operation::Write, Access::Write, 1), 7, t1);
        c.saw_decision(&decision(20, Operation::Open, Access::ReadWrite, 1), 7, t1);
        assert!(c.due(t1 + HOLD, false).is_empty());
        // Pid 10 again, but another process (a later start): its change is recorded.
        c.hold(decision(10, Operation::Write, Access::Write, 1), 8, t1);
        assert_eq!(
            c.due(t1 + HOLD, false).len(),
            1,
            "a reused pid passed for its first owner"
        );
        // After SEEN_TTL without a change, a change is a new act.
        let t2 = t1 + SEEN_TTL + HOLD;
        c.hold(decision(11, Operation::Write, Access::Write, 1), 7, t2);
        assert_eq!(c.due(t2, true).len(), 1, "stop flushes what is held");
    }

    #[test]
    fn gone_writers_wait_for_the_event_ring_and_are_bounded() {
        let t0 = Instant::now();
        let orphan = |tid| crate::fanotify::Orphan {
            tid,
            file: crate::policy::resolve::FileId { dev: 5, ino: 1 },
            path: "/big/small".into(),
            time_ns: 1,
        };
        let mut q = Orphans::default();
        q.push(orphan(1), t0);
        q.push(orphan(2), t0 + ORPHAN_WAIT / 2);
        assert!(q.due(t0 + ORPHAN_WAIT / 2, false).is_empty());
        let tids = |v: Vec<crate::fanotify::Orphan>| v.iter().map(|o| o.tid).collect::<Vec<_>>();
        assert_eq!(tids(q.due(t0 + ORPHAN_WAIT, false)), [1]);
        assert_eq!(tids(q.due(t0 + ORPHAN_WAIT, true)), [2], "stop takes all");
        for tid in 0..(ORPHANS_MAX as u32 + 3) {
            q.push(orphan(tid), t0);
        }
        assert_eq!(
            tids(q.due(t0, false)),
            [0, 1, 2],
            "past the bound, the oldest at once"
        );
    }

    #[test]
    fn held_and_seen_are_bounded() {
        let t0 = Instant::now();
        let mut c = DetectChanges::default();
        for i in 0..(SEEN_MAX as u64 + 10) {
            c.saw_decision(&decision(1, Operation::Open, Access::Write, i), 7, t0);
        }
        assert_eq!(c.seen.len(), SEEN_MAX);
        for i in 0..(HELD_MAX as u64 + 5) {
            c.hold(decision(2, Operation::Write, Access::Write, i), 7, t0);
        }
        assert_eq!(c.due(t0, false).len(), 5, "past HELD_MAX judged at once");
        assert_eq!(c.held.0.len(), HELD_MAX);
    }
}
