//! Enforcement records: the kernel's decisions and self-protection denials, and the fallback
//! backend's open and connect rules enforced after the fact.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Instant,
};

use anyhow::Result;
use tracing::warn;

use super::Pipeline;
use crate::{
    audit::record::Payload,
    events,
    metrics::METRICS,
    model,
    respond::AlertContext,
    state::{Pid, State},
    workload::WorkloadInfo,
};

/// The workload of a cgroup path (relative to the cgroup2 mount) and whether it is fully
/// known (a container whose Docker metadata is pending is not).
pub(super) fn cgroup_workload(
    containers: &crate::state::container::ContainerTable,
    path: &str,
) -> (WorkloadInfo, bool) {
    match crate::state::container::parse_cgroup_path(path) {
        None => (WorkloadInfo::host(None), true),
        Some(c) => {
            let meta = containers.lookup(&c.id);
            let known = meta.status == crate::state::container::MetaStatus::Ready;
            (WorkloadInfo::from_container(&meta, None), known)
        }
    }
}

/// Whether the agent must kill after the fact by the paths in the events: the fallback
/// backend cannot deny opens, so their rules are enforced from the events. (The `fanotify`
/// backend's one such case, truncate(2), is judged on the file itself: `enforce_truncate`.)
pub(super) fn kills_after_fact(
    backend: &crate::policy::backend::Backend,
    policies: &[crate::policy::Policy],
) -> bool {
    backend.kind() != Some(crate::policy::backend::Kind::Fanotify)
        && backend.kills_after_fact(policies)
}

/// Why a policy kill after the fact did not happen.
#[derive(Debug, thiserror::Error)]
pub(super) enum KillError {
    /// The process had exited (reaped or a zombie) before the signal could reach it.
    #[error("exited before the signal")]
    Exited,
    /// Reused, or no pidfd.
    #[error(transparent)]
    Handle(crate::respond::process::HandleError),
    /// A safety rail protects the process.
    #[error("{0}")]
    Protected(String),
    /// The signal itself.
    #[error(transparent)]
    Kill(#[from] std::io::Error),
    /// Sent, but the process was still there after `KILL_WAIT`.
    #[error("still running {}ms after SIGKILL", KILL_WAIT.as_millis())]
    Survived,
}

impl From<crate::respond::process::HandleError> for KillError {
    fn from(e: crate::respond::process::HandleError) -> Self {
        match e {
            crate::respond::process::HandleError::Gone(_) => KillError::Exited,
            other => KillError::Handle(other),
        }
    }
}

/// How long the pipeline waits for a killed process to be gone. SIGKILL is acted on at the
/// return to user space; a task stuck in the kernel (D state) takes longer and is recorded
/// `kill-failed` rather than delaying the pipeline.
const KILL_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a kill after the fact waits for the process's exit status before it is recorded
/// `kill` on the pidfd's word alone (the exit event was dropped or is far behind).
const EXIT_STATUS_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// At most this many kills wait for their exit status; beyond it a kill is recorded at once.
const PENDING_KILLS_MAX: usize = 256;

/// Kills after the fact whose record waits for the process's exit status. The pidfd only says
/// the process is gone; a SIGKILL sent after it called `exit_group` is dropped by the kernel,
/// so only the wait status says whether the signal ended it.
#[derive(Default)]
pub(super) struct PendingKills(std::collections::HashMap<u32, PendingKill>);

struct PendingKill {
    d: events::DecisionEvent,
    seen_at: Instant,
}

impl PendingKills {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The decisions whose exit status did not come in time (all of them with `all`).
    fn expired(&mut self, now: Instant, all: bool) -> Vec<PendingKill> {
        let due: Vec<u32> = self
            .0
            .iter()
            .filter(|(_, p)| all || now.duration_since(p.seen_at) >= EXIT_STATUS_WAIT)
            .map(|(pid, _)| *pid)
            .collect();
        due.iter().filter_map(|pid| self.0.remove(pid)).collect()
    }
}

/// The verdict an exit status gives a kill that was sent: `Kill` when SIGKILL ended the
/// process, `KillFailed` when it had exited on its own first.
pub(super) fn settle(d: &mut events::DecisionEvent, wait_status: i32) {
    if wait_status & 0x7f == libc::SIGKILL {
        d.verdict = events::Verdict::Kill;
    } else {
        d.verdict = events::Verdict::KillFailed;
        d.kill_error = Some(KillError::Exited.to_string());
    }
}

/// What says a pid is still the process that acted (a pid can be reused once it exits).
#[derive(Debug, Clone, Copy)]
pub(super) enum Started {
    /// At this time (boot ns), from the event's process; `None`: unknown, not checked.
    At(Option<u64>),
    /// No later than this (boot ns): when the act was reported.
    By(u64),
}

/// SIGKILL through a pidfd, after checking the pid was not reused (start time), is not
/// protected and has not already exited; `Ok` only when the process is gone afterwards.
pub(super) fn kill_verified(pid: u32, started: Started) -> Result<(), KillError> {
    use crate::respond::process::{HandleError, ProcessHandle, START_TOLERANCE, start_boot_ns};
    let h = match started {
        Started::At(start) => ProcessHandle::open(pid, start)?,
        Started::By(by) => {
            let h = ProcessHandle::open(pid, None)?;
            let found = start_boot_ns(&h.stat);
            if found > by.saturating_add(START_TOLERANCE.as_nanos() as u64) {
                return Err(HandleError::Reused {
                    pid,
                    expected_ns: by,
                    found_ns: found,
                }
                .into());
            }
            h
        }
    };
    // A zombie still accepts signals (kill(2) succeeds) but has already exited.
    if h.stat.state == b'Z' || h.exited_within(std::time::Duration::ZERO) {
        return Err(KillError::Exited);
    }
    if let Some(why) = h.rail() {
        return Err(KillError::Protected(why));
    }
    h.kill()?;
    if h.exited_within(KILL_WAIT) {
        Ok(())
    } else {
        Err(KillError::Survived)
    }
}

/// The workload (container or host) an event's task belongs to.
pub(super) fn workload_of(state: &mut State, c: &events::Common) -> WorkloadInfo {
    let cgroup_path = state.cgroups.get(c.cgroup_id).map(|i| i.path.to_string());
    match state.container_of(c.cgroup_id, Some(Pid(c.pid))) {
        Some(id) => WorkloadInfo::from_container(&state.container_meta(&id), cgroup_path),
        None => WorkloadInfo::host(cgroup_path),
    }
}

impl Pipeline {
    /// Binds cgroups to policies: every cgroup under the cgroup2 mount, with the workload the
    /// container table knows for it (image, name, labels from Docker; the cgroup path for
    /// cgroups that are not containers). Returns the number of cgroups newly bound.
    pub(super) fn rescan_policies(&mut self) -> Result<usize> {
        let Some(stage) = self.policy.as_mut() else {
            return Ok(0);
        };
        let containers = &self.capture.state.containers;
        let mut info = |path: &str| cgroup_workload(containers, path);
        let n = stage.runtime.rescan(&mut self.probes.ebpf, &mut info)?;
        if let Some(f) = stage.fanotify.as_mut() {
            let state = &mut self.capture.state;
            let cgroot = crate::sysfs::cgroup2_mount().unwrap_or_else(|| "/sys/fs/cgroup".into());
            let detect_only = stage.runtime.enforcer.detect_only;
            let workloads: Vec<crate::fanotify::Workload<'_>> = stage
                .runtime
                .enforcer
                .bound()
                .filter_map(|(cg, policy_id, policy)| {
                    let path = state
                        .cgroups
                        .resolve(&state.fs, events::CgroupId(cg), None)?
                        .path
                        .to_string();
                    let pid = crate::policy::resolve::first_pid(std::path::Path::new(&format!(
                        "{cgroot}{path}"
                    )))?;
                    let container = crate::state::container::parse_cgroup_path(&path).is_some();
                    Some(crate::fanotify::Workload {
                        container,
                        cgroup_id: cg,
                        pid,
                        policy_id,
                        policy,
                        enforce: policy.mode == crate::policy::Mode::Enforce && !detect_only,
                    })
                })
                .collect();
            let pass = f.sync(&workloads);
            if let Some(h) = stage.holds.as_mut() {
                h.update(&pass.covered);
            }
            tracing::debug!(
                workloads = workloads.len(),
                filesystems = pass.filesystems,
                inodes = pass.inodes,
                failed = pass.failed,
                missing = pass.missing,
                sealed = pass.seals.sealed,
                lifted = pass.seals.lifted,
                seal_failed = pass.seals.failed,
                unsealed_subtrees = pass.unsealed_subtrees,
                watched = pass.watched,
                read_free = pass.read_free.len(),
                "fanotify marks"
            );
        }
        Ok(n)
    }

    /// A kernel decision (deny, would-deny, kill): an alert through the outputs (and the
    /// responder) and an audit record of kind `decision`.
    pub(super) fn on_decision(
        &mut self,
        ev: &events::Event,
        d: &events::DecisionEvent,
        seen_at: Instant,
    ) {
        if d.self_protect.is_some() {
            return self.on_self_protect(ev, d, seen_at);
        }
        // The decision's process (`d.common` is the event's).
        let c = ev.common();
        let start_ns = self.start_of(c.pid);
        let Some(stage) = self.policy.as_mut() else {
            warn!(
                policy_id = d.policy_id,
                "kernel decision without a policy stage; ignored"
            );
            return;
        };
        stage.detect_changes.saw_decision(d, start_ns, seen_at);
        let stage = &*stage;
        METRICS.decision(d.op.as_str(), d.verdict.as_str());
        let workload = workload_of(&mut self.capture.state, c);
        let (decision, alert) = stage
            .runtime
            .enforcer
            .decision(d, &workload, &stage.hostname);
        METRICS.alert(&alert.rule, alert.priority.as_str());
        let policy_detect = decision.decision == crate::audit::record::DecisionKind::WouldDeny;
        let policy = decision.policy.clone();
        if let Some(a) = &self.audit {
            a.try_record(Payload::Decision(decision));
        }
        let ctx = AlertContext {
            pid: Some(c.pid),
            process_start_boot_ns: (start_ns != 0).then(|| self.clock.boot_ns(start_ns)),
            cgroup_id: Some(c.cgroup_id.0),
            workload,
            policy: Some(policy),
            policy_detect,
            event_time: Some(seen_at),
        };
        self.publish(alert, ctx);
    }

    /// A decision's alert goes to the outputs and the responder; its audit record is the
    /// decision itself, so the alert is not audited again.
    fn publish(&self, alert: crate::alert::Alert, ctx: AlertContext) {
        let alert = Arc::new(alert);
        if let Some(o) = &self.outputs {
            o.emit(&alert);
        }
        if let Some(r) = &self.responder {
            r.submit(alert, ctx);
        }
    }

    /// A self-protection denial: counted, audited (op `self_protect`) and alerted like a policy
    /// decision, so responses can act on the workload that reached for the agent.
    pub(super) fn on_self_protect(
        &mut self,
        ev: &events::Event,
        d: &events::DecisionEvent,
        seen_at: Instant,
    ) {
        METRICS.decision(d.op.as_str(), d.verdict.as_str());
        let c = ev.common();
        let workload = workload_of(&mut self.capture.state, c);
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "localhost".into());
        let (decision, alert) = match &self.probes.self_protect {
            crate::selfprotect::Status::Active(sp) => sp.decision(d, &workload, &hostname),
            _ => crate::selfprotect::describe(d, &workload, &hostname, |_, _| None),
        };
        // Not logged per denial: a container looping on kill(2) must not flood the log; the
        // alert goes to the outputs and the audit log, and the metric counts it.
        tracing::debug!("{}", alert.output);
        METRICS.alert(&alert.rule, alert.priority.as_str());
        if let Some(a) = &self.audit {
            a.try_record(Payload::Decision(decision));
        }
        let ctx = AlertContext {
            pid: Some(c.pid),
            process_start_boot_ns: None,
            cgroup_id: Some(c.cgroup_id.0),
            workload,
            policy: None,
            policy_detect: false,
            event_time: Some(seen_at),
        };
        self.publish(alert, ctx);
    }

    /// Re-walks what self-protection covers (a rotated audit file, new pins).
    pub(super) fn refresh_self_protect(&mut self) {
        if let crate::selfprotect::Status::Active(sp) = &mut self.probes.self_protect {
            match sp.refresh(&mut self.probes.ebpf) {
                Ok((0, 0)) => {}
                Ok((added, removed)) => {
                    tracing::debug!(added, removed, "self-protection refreshed")
                }
                Err(e) => warn!("self-protection refresh: {e:#}"),
            }
        }
    }

    /// The fallback backend's open rules: a completed open that the cgroup's policy denies
    /// kills the process (enforce) or is reported (detect), through the same decision path as
    /// the kernel's records. (Connect rules are refused in the kernel on every backend.)
    pub(super) fn enforce_after_fact(
        &mut self,
        ev: &events::Event,
        model: &model::Event,
        seen_at: Instant,
    ) {
        use crate::policy::fallback as fb;
        // truncate(2) writes without an open: judged as an open for write.
        let (c, flags, op) = match ev {
            events::Event::Open(o) if o.common.ret >= 0 => {
                (&o.common, o.flags, events::Operation::Open)
            }
            events::Event::Truncate(t) if t.common.ret >= 0 => {
                (&t.common, libc::O_WRONLY as u64, events::Operation::Write)
            }
            _ => return,
        };
        let Some(binding) = self.binding_of(c.cgroup_id.0, seen_at) else {
            return;
        };
        let Some(stage) = self.policy.as_ref() else {
            return;
        };
        let Some(policy) = stage.runtime.enforcer.policy_by_id(binding.policy_id) else {
            return;
        };
        if !fb::wants_open(&binding) {
            return;
        }
        let Some(p) = model.fd.as_ref().map(|f| f.name.as_str()) else {
            return;
        };
        let (r, w) = fb::open_access(flags);
        let access = Some(events::Access::from_rw(r, w));
        let path = events::Captured {
            text: p.to_owned(),
            ..Default::default()
        };
        let Some(v) = fb::check_open(policy, p, flags) else {
            return;
        };
        let d = events::DecisionEvent {
            common: c.clone(),
            policy_id: binding.policy_id,
            op,
            verdict: events::Verdict::WouldDeny,
            reason: match v {
                fb::Violation::DenyList => events::Reason::DenyList,
                fb::Violation::NotAllowed => events::Reason::NotAllowed,
            },
            hook: events::Hook::AfterSyscall,
            path,
            access,
            dest: None,
            inode: None,
            self_protect: None,
            kill_error: None,
        };
        let enforce = fb::enforces(&binding);
        let started = self.started(model);
        self.kill_after_fact(ev, started, d, enforce, seen_at);
    }

    /// The policy binding of a cgroup, as the kernel's map holds it (cached briefly).
    fn binding_of(&mut self, cgroup: u64, now: Instant) -> Option<guard_ebpf::CgroupPolicy> {
        let stage = self.policy.as_mut()?;
        let ebpf = &self.probes.ebpf;
        stage.bindings.get(cgroup, now, |id| {
            let map = ebpf.map(guard_ebpf::names::POLICY_CGROUPS)?;
            aya::maps::HashMap::<_, u64, guard_ebpf::CgroupPolicy>::try_from(map)
                .ok()?
                .get(&id, 0)
                .ok()
        })
    }

    /// Records `d` (a would-deny); in enforce mode first kills the process, the record then
    /// waiting for its exit status to say whether the kill ended it.
    fn kill_after_fact(
        &mut self,
        ev: &events::Event,
        started: Started,
        mut d: events::DecisionEvent,
        enforce: bool,
        seen_at: Instant,
    ) {
        let pid = d.common.pid;
        if enforce && let Some(stage) = self.policy.as_mut() {
            match kill_verified(pid, started) {
                Ok(()) => {
                    d.verdict = events::Verdict::Kill;
                    // Recorded when the exit status says what ended the process.
                    let pending = &mut stage.pending_kills.0;
                    if pending.len() < PENDING_KILLS_MAX {
                        pending.insert(pid, PendingKill { d, seen_at });
                        return;
                    }
                }
                Err(e) => {
                    warn!(pid, "policy kill after {}: {e}", d.op);
                    d.kill_error = Some(e.to_string());
                    d.verdict = events::Verdict::KillFailed;
                }
            }
        }
        self.on_decision(ev, &d, seen_at);
    }

    /// When process `pid` started (wall ns) as the process table knows it, 0 if it does not:
    /// with the pid, the process's identity.
    fn start_of(&self, pid: u32) -> u64 {
        self.capture
            .state
            .procs
            .get(Pid(pid))
            .map_or(0, |p| p.start_time_ns)
    }

    /// The event's process's start time (boot ns), when known.
    fn started(&self, model: &model::Event) -> Started {
        Started::At((model.proc.start_time != 0).then(|| self.clock.boot_ns(model.proc.start_time)))
    }

    /// `fanotify` backend: a change of a file the writer's enforced policy denies writing,
    /// reported by the file's changes mark (`fanotify/modify.rs`): the writer is killed after
    /// the fact, once (a second report while its kill is pending adds nothing).
    pub(super) fn enforce_modified(&mut self, d: events::DecisionEvent) {
        let pid = d.common.pid;
        let pending = self
            .policy
            .as_ref()
            .is_some_and(|s| s.pending_kills.0.contains_key(&pid));
        if pending {
            return;
        }
        let by = self.clock.boot_ns(d.common.time_ns);
        let ev = events::Event::Decision(d.clone());
        self.kill_after_fact(&ev, Started::By(by), d, true, Instant::now());
    }

    /// `fanotify` backend, detect mode: a change of a file the writer's policy denies writing
    /// (`fanotify/modify.rs`), recorded `would-deny` once per process and file, and not after
    /// the process's recorded open of it for write (`changes.rs`).
    pub(super) fn detect_modified(&mut self, d: events::DecisionEvent) {
        let start = self.start_of(d.common.pid);
        let Some(stage) = self.policy.as_mut() else {
            return;
        };
        stage.detect_changes.hold(d, start, Instant::now());
        self.record_changes(false);
    }

    /// Records the detect-mode changes that waited long enough (all of them with `all`).
    pub(super) fn record_changes(&mut self, all: bool) {
        let Some(stage) = self.policy.as_mut() else {
            return;
        };
        let due = stage.detect_changes.due(Instant::now(), all);
        let repeated = std::mem::take(&mut stage.detect_changes.suppressed);
        if let Some(f) = stage.fanotify.as_ref() {
            f.stats()
                .changes_repeated
                .fetch_add(repeated, Ordering::Relaxed);
        }
        for d in due {
            let ev = events::Event::Decision(d.clone());
            self.on_decision(&ev, &d, Instant::now());
        }
    }

    /// A gone writer's change waits for the event ring to deliver the writer's exec
    /// (`changes::ORPHAN_WAIT_MS`).
    pub(super) fn wait_for_orphan(&mut self, o: crate::fanotify::Orphan) {
        if let Some(stage) = self.policy.as_mut() {
            stage.orphans.push(o, Instant::now());
        }
        // Past the bound (a backlog holding the ring tick back), the oldest now.
        self.judge_orphans(false);
    }

    /// Judges the gone writers' changes that waited long enough (all of them with `all`).
    pub(super) fn judge_orphans(&mut self, all: bool) {
        let Some(stage) = self.policy.as_mut() else {
            return;
        };
        for o in stage.orphans.due(Instant::now(), all) {
            self.orphaned_change(o);
        }
    }

    /// `fanotify` backend: a watched file's change by a writer gone before the answer thread
    /// read its cgroup (a `truncate` that exits at once). Its workload comes from the process
    /// table (exited processes stay a few seconds); enforced, the kill is tried (and recorded
    /// `kill-failed`, the writer being gone), in detect mode the change is recorded as a live
    /// writer's would be. A writer the table does not know (a thread, or one it never saw) is
    /// counted, not guessed.
    fn orphaned_change(&mut self, o: crate::fanotify::Orphan) {
        let now = Instant::now();
        let known = self.capture.state.procs.get(Pid(o.tid)).and_then(|p| {
            Some((
                p.cgroup_id?,
                p.ppid.0,
                p.uid.unwrap_or(0),
                p.gid.unwrap_or(0),
                p.loginuid,
                p.comm.clone(),
            ))
        });
        let Some((cg, ppid, uid, gid, loginuid, comm)) = known else {
            if let Some(f) = self.policy.as_ref().and_then(|s| s.fanotify.as_ref()) {
                f.stats().writer_unknown.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        let Some(b) = self.binding_of(cg.0, now) else {
            return;
        };
        if b.flags & guard_ebpf::policy_flags::OPEN_RULES == 0 {
            return;
        }
        let Some(reason) = self
            .policy
            .as_ref()
            .and_then(|s| s.fanotify.as_ref())
            .and_then(|f| f.denies_change(b.policy_id, o.file))
        else {
            return;
        };
        let d = events::DecisionEvent {
            common: events::Common {
                time_ns: o.time_ns,
                cgroup_id: cg,
                pid: o.tid,
                tid: o.tid,
                ppid,
                uid,
                gid,
                loginuid,
                comm,
                ret: 0,
                cpu: 0,
            },
            policy_id: b.policy_id,
            op: events::Operation::Write,
            verdict: events::Verdict::WouldDeny,
            reason,
            hook: events::Hook::FanotifyModify,
            path: events::Captured {
                text: o.path,
                ..Default::default()
            },
            access: Some(events::Access::Write),
            dest: None,
            inode: Some((o.file.dev, o.file.ino)),
            self_protect: None,
            kill_error: None,
        };
        if b.flags & guard_ebpf::policy_flags::ENFORCE != 0 {
            self.enforce_modified(d);
        } else {
            self.detect_modified(d);
        }
    }

    /// `fanotify` backend: truncate(2) by path opens nothing, so no permission event asks
    /// about it; one that cut a file the workload's policy denies writing (resolved in its
    /// root, so any name of the file) is enforced after the fact, as the fallback does. Not a
    /// file the changes group watches for this policy: that report decides it
    /// (`enforce_modified`, `detect_modified`), through any name, magic links included.
    pub(super) fn enforce_truncate(
        &mut self,
        ev: &events::Event,
        model: &model::Event,
        seen_at: Instant,
    ) {
        let events::Event::Truncate(t) = ev else {
            return;
        };
        let c = &t.common;
        if c.ret < 0 {
            return;
        }
        let Some(name) = model.fd.as_ref().map(|f| f.name.as_str()) else {
            return;
        };
        if !name.starts_with('/') {
            return;
        }
        let Some(f) = self.policy.as_ref().and_then(|p| p.fanotify.as_ref()) else {
            return;
        };
        let pids = self.pids_in_workload(c.pid);
        let Some((policy_id, enforce)) = f.denies_write(c.cgroup_id.0, &pids, name) else {
            return;
        };
        let d = events::DecisionEvent {
            common: c.clone(),
            policy_id,
            op: events::Operation::Write,
            verdict: events::Verdict::WouldDeny,
            reason: events::Reason::DenyList,
            hook: events::Hook::AfterSyscall,
            path: events::Captured {
                text: name.to_owned(),
                ..Default::default()
            },
            access: Some(events::Access::Write),
            dest: None,
            inode: None,
            self_protect: None,
            kill_error: None,
        };
        let started = self.started(model);
        self.kill_after_fact(ev, started, d, enforce, seen_at);
    }

    /// The event's process, then another live one of its container: ways into the workload's
    /// root once the event's process has exited.
    fn pids_in_workload(&self, pid: u32) -> Vec<u32> {
        let procs = &self.capture.state.procs;
        let other = procs
            .get(Pid(pid))
            .and_then(|p| p.container_id.as_ref())
            .and_then(|id| procs.live_in(id, Pid(pid)));
        [Some(pid), other.map(|p| p.0)]
            .into_iter()
            .flatten()
            .collect()
    }

    /// `fanotify` backend: a name change (unlink, rename, link, symlink, mkdir, rmdir, mknod,
    /// a create by open) or a chmod of the directory that failed with EPERM in (or on) a
    /// directory the agent sealed, or an open for write, truncate(2), chmod, unlink, rename or
    /// hard link of a file it sealed, was refused by the seal, in the kernel and without a
    /// permission event; recorded here as a deny.
    pub(super) fn record_seal_refusal(
        &mut self,
        ev: &events::Event,
        model: &model::Event,
        seen_at: Instant,
    ) {
        let c = ev.common();
        if c.ret != -i64::from(libc::EPERM) {
            return;
        }
        let arg = |k: &str| match model.args.get(k) {
            Some(model::ArgValue::Str(s)) => Some(s.as_str()),
            _ => None,
        };
        use crate::fanotify::SealedChange::{InDir, Itself, NewInDir};
        let fd_name = || model.fd.as_ref().map(|f| f.name.as_str());
        // The names the refused syscall gave, each with what a seal refused there.
        let names = match ev {
            events::Event::Unlink(_) => vec![(arg("path").or(arg("name")), InDir)],
            events::Event::Rename(_) => vec![(arg("oldpath"), InDir), (arg("newpath"), InDir)],
            events::Event::Link(l) if l.is_symlink() => vec![(arg("linkpath"), InDir)],
            events::Event::Link(_) => vec![(arg("newpath"), InDir), (arg("oldpath"), Itself)],
            events::Event::Node(n) if n.syscall == "rmdir" => vec![(arg("path"), InDir)],
            events::Event::Node(_) => vec![(arg("path"), NewInDir)],
            events::Event::Chmod(_) => vec![(arg("filename"), Itself)],
            events::Event::Truncate(_) => vec![(fd_name(), Itself)],
            // An existing sealed file refuses the open for write itself (no permission event);
            // a new name in a sealed directory is refused by the directory.
            events::Event::Open(o) => {
                let write = o.flags & libc::O_ACCMODE as u64 != libc::O_RDONLY as u64
                    || o.flags & libc::O_TRUNC as u64 != 0;
                match (write, o.flags & libc::O_CREAT as u64 != 0) {
                    (_, true) => vec![(fd_name(), NewInDir), (fd_name(), Itself)],
                    (true, false) => vec![(fd_name(), Itself)],
                    (false, false) => return,
                }
            }
            _ => return,
        };
        let Some(f) = self.policy.as_ref().and_then(|p| p.fanotify.as_ref()) else {
            return;
        };
        let pids = self.pids_in_workload(c.pid);
        // A relative name (no known base) is not judged; the record keeps the name as given.
        let Some((name, (policy_id, by_dir))) = names
            .into_iter()
            .filter_map(|(n, change)| n.filter(|n| n.starts_with('/')).map(|n| (n, change)))
            .find_map(|(n, change)| f.sealed_by(c.cgroup_id.0, &pids, n, change).map(|r| (n, r)))
        else {
            return;
        };
        let d = events::DecisionEvent {
            common: c.clone(),
            policy_id,
            op: events::Operation::Write,
            verdict: events::Verdict::Deny,
            reason: events::Reason::DenyList,
            hook: if by_dir {
                events::Hook::SealedDirectory
            } else {
                events::Hook::SealedFile
            },
            path: events::Captured {
                text: name.to_owned(),
                ..Default::default()
            },
            access: None,
            dest: None,
            inode: None,
            self_protect: None,
            kill_error: None,
        };
        self.on_decision(ev, &d, seen_at);
    }

    /// Lets the kernel hold new workloads' first exec (`on`) or stops it (`fanotify` backend).
    pub(super) fn renew_holds(&mut self, on: bool) {
        if self.policy.as_ref().is_some_and(|p| p.holds.is_some())
            && let Err(e) = super::holds::Holds::renew(&mut self.probes.ebpf, on)
        {
            warn!("fanotify: renewing holds: {e:#}");
        }
    }

    /// Takes the kernel's new holds; returns how many wait for their workload's marks.
    pub(super) fn collect_holds(&mut self) -> usize {
        self.policy
            .as_mut()
            .and_then(|p| p.holds.as_mut())
            .map_or(0, |h| h.collect())
    }

    /// A process exit: records the kill after the fact that waited for it.
    pub(super) fn settle_kill(&mut self, x: &events::ExitEvent) {
        // The thread group's leader exits last, with the group's status.
        if x.common.pid != x.common.tid {
            return;
        }
        let Some(stage) = self.policy.as_mut() else {
            return;
        };
        let Some(mut p) = stage.pending_kills.0.remove(&x.common.pid) else {
            return;
        };
        settle(&mut p.d, x.exit_code);
        if p.d.verdict == events::Verdict::KillFailed {
            warn!(
                pid = x.common.pid,
                status = x.exit_code,
                "policy kill after {}: exited before the signal",
                p.d.op
            );
        }
        self.record_pending(p);
    }

    /// Records the kills whose exit status did not come within `EXIT_STATUS_WAIT` (every
    /// pending one with `all`, at stop) as `kill`: the signal was sent and the process was
    /// gone right after it.
    pub(super) fn expire_kills(&mut self, all: bool) {
        let Some(stage) = self.policy.as_mut() else {
            return;
        };
        if stage.pending_kills.is_empty() {
            return;
        }
        for p in stage.pending_kills.expired(Instant::now(), all) {
            self.record_pending(p);
        }
    }

    fn record_pending(&mut self, p: PendingKill) {
        let ev = events::Event::Decision(p.d.clone());
        self.on_decision(&ev, &p.d, p.seen_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent() -> events::DecisionEvent {
        events::DecisionEvent {
            common: events::Common {
                time_ns: 1,
                cgroup_id: events::CgroupId(7),
                pid: 42,
                tid: 42,
                ppid: 1,
                uid: 0,
                gid: 0,
                loginuid: None,
                comm: "sh".into(),
                ret: 3,
                cpu: 0,
            },
            policy_id: 1,
            op: events::Operation::Open,
            verdict: events::Verdict::Kill,
            reason: events::Reason::DenyList,
            hook: events::Hook::AfterSyscall,
            path: Default::default(),
            access: None,
            dest: None,
            inode: None,
            self_protect: None,
            kill_error: None,
        }
    }

    #[test]
    fn the_wait_status_decides_kill_or_kill_failed() {
        // Killed by SIGKILL, with or without the core-dump bit.
        for status in [libc::SIGKILL, libc::SIGKILL | 0x80] {
            let mut d = sent();
            settle(&mut d, status);
            assert_eq!(d.verdict, events::Verdict::Kill, "status {status:#x}");
            assert_eq!(d.kill_error, None);
        }
        // exit(0), exit(1), another signal: the process ended before our signal.
        for status in [0, 1 << 8, libc::SIGTERM] {
            let mut d = sent();
            settle(&mut d, status);
            assert_eq!(d.verdict, events::Verdict::KillFailed, "status {status:#x}");
            assert_eq!(d.kill_error.as_deref(), Some("exited before the signal"));
        }
    }

    #[test]
    fn pending_kills_expire_after_the_wait_or_all_at_stop() {
        let now = Instant::now();
        let mut p = PendingKills::default();
        p.0.insert(
            1,
            PendingKill {
                d: sent(),
                seen_at: now,
            },
        );
        p.0.insert(
            2,
            PendingKill {
                d: sent(),
                seen_at: now - EXIT_STATUS_WAIT,
            },
        );
        let due = p.expired(now, false);
        assert_eq!(due.len(), 1);
        assert_eq!(p.0.keys().collect::<Vec<_>>(), [&1]);
        assert_eq!(p.expired(now, true).len(), 1);
        assert!(p.0.is_empty());
    }
}
