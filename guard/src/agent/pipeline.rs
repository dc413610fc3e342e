//! The event loop: records from the rings, through capture and the rules, to alerts.

use std::{
    io::Write,
    path::PathBuf,
    process::ExitCode,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::{info, warn};

use super::{
    DECODE_ERRORS, Loaded, Pipeline, PolicySetup, PolicyStage, Trigger, cgroup_id_of,
    decisions::{kills_after_fact, workload_of},
    drops::DropReport,
    reload_state::takes_snapshots,
};
use crate::{
    alert::Alert,
    audit::{
        AuditLog,
        record::{AgentInfo, Payload},
    },
    capture::Capture,
    config::{CaptureArgs, PrintEvents},
    events::{self, Clock},
    metrics::METRICS,
    model,
    output::Outputs,
    prefilter::Prefilter,
    probes::{ExecEnforcement, ProbeConfig, Probes},
    respond::{AlertContext, Responder},
    rules::{Engine, Matcher},
    state::{State, StateConfig},
};

/// Policy id used for cgroups given with `--deny-exec-cgroup`.
pub(super) const CLI_POLICY_ID: u32 = 1;

/// Records handled before the pipeline lets other tasks run.
pub(super) const DRAIN_BATCH: usize = 1024;

/// The longest an event record waits in the ring after the wakeup its first record gave
/// (`probes::wakeup_bytes`).
pub const RING_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, Copy)]
pub(super) enum Ring {
    Events,
    Decisions,
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Drained {
    /// The ring is empty.
    Empty,
    /// A batch was handled; more may be waiting.
    More,
    /// `--max-events` reached.
    Limit,
}

/// What the pipeline is built from (`run` and `record` fill it).
pub(super) struct Pieces {
    pub print: PrintEvents,
    pub engine: Option<Engine>,
    pub outputs: Option<Outputs>,
    pub audit: Option<Arc<AuditLog>>,
    /// `--deny-exec-cgroup` directories.
    pub deny_exec: Vec<PathBuf>,
    pub detect_only: bool,
    pub policy: Option<PolicySetup>,
    pub prefilter: Prefilter,
    pub self_protect: Option<crate::selfprotect::Roots>,
    pub responder: Option<Responder>,
    /// SHA-256 of the effective configuration, for `agent_start` and `agent_stop`.
    pub config_hash: String,
}

impl Pipeline {
    /// Loads and attaches the probes, puts the policies in force, seeds the state.
    pub(super) fn start(cap: &CaptureArgs, pieces: Pieces) -> Result<Self> {
        let Pieces {
            print,
            engine,
            outputs,
            audit,
            deny_exec,
            detect_only,
            policy,
            prefilter,
            self_protect,
            responder,
            config_hash,
        } = pieces;
        let only_cgroup = match &cap.only_cgroup {
            Some(dir) => Some(cgroup_id_of(dir)?.0),
            None => None,
        };
        let mut probes = Probes::load(&ProbeConfig {
            ring_bytes: cap.ring_bytes,
            only_cgroup,
            policy_pins: policy.as_ref().map(|p| p.pin_dir.clone()),
            prefilter,
            self_protect,
            policy_backend: policy.as_ref().map(|p| p.backend).unwrap_or_default(),
            policy_drift: policy
                .as_ref()
                .is_some_and(|p| p.policies.iter().any(|x| x.exec.deny_new_binaries)),
            policy_open_detect: policy
                .as_ref()
                .is_some_and(|p| crate::policy::kernel::detects_opens(&p.policies, p.detect_only)),
        })?;
        let backend = match &probes.exec_enforcement {
            ExecEnforcement::Lsm => "bpf-lsm",
            ExecEnforcement::Unavailable(_) => "none",
        };
        info!(
            exec_backend = backend,
            policy_backend = probes.policy_backend.as_ref().map_or("off", |b| b.as_str()),
            policy_covers = probes
                .policy_backend
                .as_ref()
                .map_or_else(String::new, |b| b.summary()),
            self_protect = probes.self_protect.as_str(),
            "probes attached"
        );
        crate::selfprotect::log_status(&probes.self_protect);
        let policy = match (policy, probes.policy_backend.clone()) {
            (Some(setup), Some(backend)) => {
                if let crate::policy::backend::Backend::Unavailable(why) = &backend {
                    anyhow::bail!("policies given but no enforcement backend could attach: {why}");
                }
                let after_fact = kills_after_fact(&backend, &setup.policies);
                if after_fact {
                    info!(
                        "open and connect rules: the sigkill-fallback backend kills after the fact"
                    );
                }
                let (fanotify, holds) = match backend.kind() {
                    Some(crate::policy::backend::Kind::Fanotify) => {
                        let map = probes
                            .ebpf
                            .map(guard_ebpf::names::POLICY_CGROUPS)
                            .context("map POLICY_CGROUPS")?;
                        let f = crate::fanotify::Fanotify::start(map)?;
                        (Some(f), Some(super::holds::Holds::start(&mut probes)?))
                    }
                    _ => (None, None),
                };
                Some(PolicyStage {
                    fanotify,
                    holds,
                    pin_dir: setup.pin_dir.clone(),
                    runtime: crate::policy::kernel::PolicyRuntime::start(
                        setup.policies,
                        setup.detect_only,
                        backend,
                        &mut probes.ebpf,
                    )?,
                    hostname: setup.hostname,
                    after_fact,
                    bindings: Default::default(),
                    pending_kills: Default::default(),
                    detect_changes: Default::default(),
                    orphans: Default::default(),
                })
            }
            _ => None,
        };
        for dir in &deny_exec {
            let id = cgroup_id_of(dir)?;
            if detect_only {
                warn!(cgroup = %dir.display(), "detect-only: exec deny not applied");
                continue;
            }
            if !matches!(probes.exec_enforcement, ExecEnforcement::Lsm) {
                warn!(cgroup = %dir.display(), "no BPF LSM: exec deny cannot be enforced on this kernel");
            }
            probes
                .exec_deny_map()?
                .insert(id.0, CLI_POLICY_ID, 0)
                .with_context(|| format!("adding cgroup {} to the exec deny map", dir.display()))?;
            info!(cgroup = %dir.display(), cgroup_id = id.0, "exec denied in cgroup");
        }

        let (mut state, enricher) = State::new(StateConfig {
            docker: crate::state::docker::DockerConfig {
                socket: cap.docker_socket.clone(),
                backoff_max: Duration::from_secs(5),
                ..Default::default()
            },
            containers: crate::state::container::ContainerTableConfig {
                // Events say `<NA>` while the daemon is down rather than possibly stale
                // metadata; kernel policy bindings do not depend on it.
                na_when_daemon_down: true,
                ..Default::default()
            },
            ..Default::default()
        });
        if let Some(hook) = policy.as_ref().and_then(|p| p.runtime.container_hook()) {
            // Before seeding and before the enricher runs, so no container is missed.
            state.containers.set_hook(hook);
        }
        let seeded = state.seed();
        info!(processes = seeded, "process table seeded from /proc");
        tokio::spawn(enricher.run());
        if let Some(cri) = cri_config(cap.cri_socket.as_deref()) {
            // containerd's own API over the same socket (a CRI-O socket: it stops quietly).
            let ctrd = crate::state::containerd::ContainerdConfig {
                socket: cri.socket.clone(),
                ..Default::default()
            };
            tokio::spawn(crate::state::cri::CriEnricher::new(&state.containers, cri).run());
            tokio::spawn(
                crate::state::containerd::ContainerdEnricher::new(&state.containers, ctrd).run(),
            );
        }
        if let Some(cfg) = podman_events_config(cap.podman_events_file.as_deref()) {
            // Landlock (applied later) can grant only paths that exist now; said where Podman
            // is installed.
            let dir = cfg.path.parent().unwrap_or(&cfg.path);
            let podman = ["/usr/bin/podman", "/usr/local/bin/podman"]
                .iter()
                .any(|p| std::path::Path::new(p).exists());
            if podman && !dir.is_dir() {
                warn!(
                    dir = %dir.display(),
                    "podman's events log directory does not exist: if Podman is used later, its containers are bound at their API event (up to 250 ms late); restart guard after Podman's first use (or run with --no-landlock)"
                );
            }
            let table = state.containers.clone();
            tokio::spawn(async move { crate::state::podman::follow(&table, cfg).await });
        }

        let watch = |r| {
            // SAFETY: the RingBuf owns its map fd for as long as the AsyncFd holds it.
            unsafe { AsyncFd::register_with_interest(r, tokio::io::Interest::READABLE) }
                .map_err(|e| anyhow::anyhow!("polling a ring buffer: {e}"))
        };
        let ring = watch(probes.ring_buf()?)?;
        let decisions = watch(probes.decision_ring()?)?;
        Ok(Self {
            probes,
            ring,
            decisions,
            clock: Clock::now(),
            capture: Capture::new(state),
            print,
            engine,
            matcher: Matcher::default(),
            outputs,
            audit,
            keep_recent: responder.as_ref().is_some_and(takes_snapshots),
            responder,
            seen: 0,
            record_buf: Vec::new(),
            policy,
            reload: None,
            config_hash,
            learn: None,
        })
        .and_then(|mut p| {
            if p.policy.is_some() {
                let n = p.rescan_policies()?;
                info!(cgroups = n, "cgroups under policy");
            }
            Ok(p)
        })
    }

    /// Handles one ring-buffer record.
    pub(super) fn handle(&mut self, raw: &[u8], out: &mut impl Write) -> Result<()> {
        let seen_at = Instant::now();
        if let Some(kind) = raw.get(..2) {
            METRICS.received(u16::from_ne_bytes([kind[0], kind[1]]));
        }
        let ev = match events::decode_counted(raw, &self.clock) {
            Ok(ev) => ev,
            Err(e) => {
                warn!("skipping malformed record: {e}");
                return Ok(());
            }
        };
        self.seen += 1;
        if self.print == PrintEvents::Raw {
            serde_json::to_writer(&mut *out, &ev)?;
            out.write_all(b"\n")?;
        }
        if let events::Event::Decision(d) = &ev {
            self.on_decision(&ev, d, seen_at);
            return Ok(());
        }
        if let events::Event::Exit(x) = &ev {
            self.settle_kill(x);
        }
        let Some(model) = self.capture.process(&ev) else {
            return Ok(());
        };
        let r = self.on_model(&ev, &model, seen_at, out);
        self.capture.recycle(model);
        METRICS
            .event_latency
            .observe(latency_since(ev.common().time_ns));
        r
    }

    /// Everything done with an enriched event: printing, recent history, the fallback's open
    /// and connect rules, the rule engine, alerts.
    pub(super) fn on_model(
        &mut self,
        ev: &events::Event,
        model: &model::Event,
        seen_at: Instant,
        out: &mut impl Write,
    ) -> Result<()> {
        if self.print == PrintEvents::Model {
            serde_json::to_writer(&mut *out, model)?;
            out.write_all(b"\n")?;
        }
        if self.keep_recent
            && let Some(r) = &self.responder
        {
            r.record_recent(model.proc.pid, &summary(model));
        }
        if self.policy.as_ref().is_some_and(|p| p.after_fact) {
            self.enforce_after_fact(ev, model, seen_at);
        }
        if let Some(f) = self.policy.as_ref().and_then(|p| p.fanotify.as_ref()) {
            if f.sealed() > 0 {
                self.record_seal_refusal(ev, model, seen_at);
            }
            self.enforce_truncate(ev, model, seen_at);
        }
        if let Some(l) = &mut self.learn {
            l.observe(model);
        }
        let Some(engine) = &self.engine else {
            return Ok(());
        };
        let alerts = engine.alerts(model, &mut self.matcher);
        if alerts.is_empty() {
            return Ok(());
        }
        let ctx = self.alert_context(ev, model, seen_at);
        for alert in alerts {
            if let Some(stage) = &self.policy
                && !stage.rules_apply(&ctx.workload, &alert)
            {
                continue;
            }
            self.alert(alert, ctx.clone());
        }
        Ok(())
    }

    /// What the response engine needs besides the alert: the process (with its start time,
    /// so a reused PID is never acted on) and the workload.
    pub(super) fn alert_context(
        &mut self,
        ev: &events::Event,
        model: &model::Event,
        seen_at: Instant,
    ) -> AlertContext {
        let c = ev.common();
        let workload = workload_of(&mut self.capture.state, c);
        AlertContext {
            pid: Some(c.pid),
            process_start_boot_ns: (model.proc.start_time != 0)
                .then(|| self.clock.boot_ns(model.proc.start_time)),
            cgroup_id: Some(c.cgroup_id.0),
            workload,
            policy: None,
            policy_detect: false,
            event_time: Some(seen_at),
        }
    }

    pub(super) fn alert(&self, alert: Alert, ctx: AlertContext) {
        METRICS.alert(&alert.rule, alert.priority.as_str());
        let alert = Arc::new(alert);
        if let Some(o) = &self.outputs {
            o.emit(&alert);
        }
        if let Some(a) = &self.audit {
            a.try_record(Payload::Alert {
                alert: Box::new((*alert).clone()),
            });
        }
        if let Some(r) = &self.responder {
            r.submit(alert, ctx);
        }
    }

    /// Handles at most `batch` buffered records, so that under sustained load the pipeline's
    /// timers (drop reports, policy rescans) and signals still get their turn.
    ///
    /// Stdout is locked only when events are printed: the stdout alert channel writes under the
    /// same lock, and a reader that stops reading would otherwise stall event processing behind
    /// that channel (tests/tests/outputs_stall.rs).
    pub(super) fn drain(
        &mut self,
        from: Ring,
        limit: Option<u64>,
        batch: usize,
    ) -> Result<Drained> {
        if self.print == PrintEvents::None {
            return self.drain_into(from, limit, batch, &mut std::io::sink());
        }
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        self.drain_into(from, limit, batch, &mut out)
    }

    pub(super) fn drain_into(
        &mut self,
        from: Ring,
        limit: Option<u64>,
        batch: usize,
        out: &mut impl Write,
    ) -> Result<Drained> {
        let mut done = 0;
        let result = loop {
            if done == batch {
                break Drained::More;
            }
            let ring = match from {
                Ring::Events => self.ring.get_mut(),
                Ring::Decisions => self.decisions.get_mut(),
            };
            let Some(item) = ring.next() else {
                break Drained::Empty;
            };
            // Copied out (the ring slot is released at once) into a buffer kept across records.
            let mut bytes = std::mem::take(&mut self.record_buf);
            bytes.clear();
            bytes.extend_from_slice(&item);
            drop(item);
            let r = self.handle(&bytes, out);
            self.record_buf = bytes;
            r?;
            done += 1;
            if limit.is_some_and(|m| self.seen >= m) {
                break Drained::Limit;
            }
        };
        out.flush()?;
        Ok(result)
    }

    /// Forgets what is gone even when no event says so: exited processes past their grace,
    /// removed cgroups, and the containers of those that the daemon never described.
    pub(super) fn prune_state(&mut self) {
        let st = &mut self.capture.state;
        // Event time runs behind the wall clock when the pipeline has a backlog: stay 5 s
        // behind it, so that a backlog's events still find the exited processes they refer to.
        st.procs
            .sweep(events::wall_now_ns().saturating_sub(Duration::from_secs(5).as_nanos() as u64));
        let (n, gone) = st.cgroups.prune_removed(&st.fs);
        for c in &gone {
            st.users.forget(c);
        }
        let forgotten = gone
            .iter()
            .filter(|c| st.containers.forget_unresolved(c))
            .count();
        if n > 0 {
            tracing::debug!(
                removed = n,
                forgotten,
                "removed cgroups and their unresolved containers forgotten"
            );
        }
    }

    /// Writes the interval's workload summaries into the audit log and starts a new interval.
    pub(super) fn flush_summaries(&mut self) {
        let (Some(l), Some(a)) = (self.learn.as_mut(), self.audit.as_ref()) else {
            return;
        };
        if l.dropped_workloads > 0 {
            warn!(
                events = l.dropped_workloads,
                max = crate::learn::summary::MAX_WORKLOADS,
                "workload summaries: more workloads than the bound this interval; their events are not summarised"
            );
        }
        for r in l.take() {
            a.try_record(Payload::WorkloadSummary(Box::new(r)));
        }
    }

    /// Whether a queue waits on time (kills awaiting their exit status, detect-mode changes,
    /// gone writers' changes): the pipeline's timer runs while one does.
    fn timed_work(&self) -> bool {
        self.policy.as_ref().is_some_and(|s| {
            !s.pending_kills.is_empty() || s.detect_changes.is_waiting() || !s.orphans.is_empty()
        })
    }

    /// Copies the kernel's counters and the state tables' sizes into the metrics.
    pub(super) fn kernel_metrics(&self) {
        let st = &self.capture.state;
        METRICS.set_tracked(st.procs.len(), st.cgroups.len(), st.containers.len());
        METRICS.set_runtimes_up(
            st.containers.daemon_up(),
            st.containers.engine() == crate::state::container::ApiEngine::Podman,
            st.containers.cri_up(),
        );
        METRICS.set_containerd(
            st.containers.containerd_up(),
            st.containers.containerd_events(),
        );
        METRICS.set_kernel(
            &self.probes.drops().unwrap_or_default(),
            DECODE_ERRORS.load(Ordering::Relaxed),
            (
                self.probes.prefiltered_opens().unwrap_or(0),
                self.probes.prefiltered_connects().unwrap_or(0),
                self.probes.prefiltered_sends().unwrap_or(0),
            ),
        );
    }

    pub(super) async fn pump(&mut self, cap: &CaptureArgs) -> Result<ExitCode> {
        let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
        let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
        let mut sighup = tokio::signal::unix::signal(SignalKind::hangup())?;
        let mut changes = match &self.reload {
            Some(r) if r.watch => {
                let dirs = r.sources.watch_dirs();
                match crate::reload::watch(&dirs) {
                    Ok(rx) => {
                        info!(dirs = %crate::reload::describe(&dirs), "reloading on file changes");
                        Some(rx)
                    }
                    Err(e) => {
                        warn!("not watching the configuration files ({e:#}); SIGHUP reloads");
                        None
                    }
                }
            }
            _ => None,
        };
        let (loaded_tx, mut loaded_rx) = tokio::sync::mpsc::channel::<Loaded>(1);
        // One load at a time; a request meanwhile is served once it is done.
        let mut loading = false;
        let mut again: Option<Trigger> = None;
        let mut last = DropReport::default();
        // The periodic ticks share one start, so they expire together: one wakeup a second on
        // an idle host, not one per tick.
        let start = tokio::time::Instant::now();
        let every = |period: Duration| tokio::time::interval_at(start, period);
        let mut tick = every(Duration::from_secs(cap.drop_report_secs.max(1)));
        // Safety net for binding new cgroups (the kernel binds Docker containers at
        // cgroup_mkdir when their create event came first; see docs/policies.md).
        let mut policy_tick = every(Duration::from_secs(1));
        let mut metrics_tick = every(Duration::from_secs(1));
        // Every few seconds: exited processes past their grace, and entries of removed cgroups
        // (and of containers nothing else knows), are forgotten.
        let mut prune_tick = every(Duration::from_secs(5));
        // The event ring wakes us for its first record after a drain (the kernel's default
        // wakeup) and past the threshold (`probes::wakeup_bytes`). The first wake arms `timer`,
        // which drains RING_TICK later: records come in batches, and an idle host runs no
        // timer. The queues that wait on time (kills, changes, orphans) arm it too.
        let mut ring_pending = false;
        let mut timer_armed = false;
        let timer = tokio::time::sleep(RING_TICK);
        tokio::pin!(timer);
        // New files under what self-protection covers (audit rotation, new pins) are protected
        // within this period (docs/self-protection.md).
        let mut self_protect_tick = every(Duration::from_secs(1));
        let mut learn_tick = every(crate::learn::summary::FLUSH_EVERY);
        learn_tick.tick().await;
        let learning = self.learn.is_some();
        let self_protect = matches!(
            self.probes.self_protect,
            crate::selfprotect::Status::Active(_)
        );
        let has_policy = self.policy.is_some();
        if self.policy.is_some() {
            // `ready` promises that running containers are under their policies: give Docker
            // up to 3 s to answer the inspects queued at seeding, then bind.
            let deadline = Instant::now() + Duration::from_secs(3);
            while !self.capture.state.containers.not_ready().is_empty() && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let n = self.rescan_policies()?;
            self.renew_holds(true);
            info!(
                newly_bound = n,
                unresolved = self.capture.state.containers.not_ready().len(),
                "policies bound to running workloads"
            );
        }
        // Tests and scripts wait for this line before generating activity (and may scrape
        // /healthz at once: ready first).
        METRICS.set_ready();
        eprintln!("guard: ready");
        if has_policy || self.reload.is_some() {
            METRICS.set_policy_generation(1);
        }
        let mut backlog = false;
        let containers = self.capture.state.containers.clone();
        loop {
            if !timer_armed && (ring_pending || self.timed_work()) {
                timer
                    .as_mut()
                    .reset(tokio::time::Instant::now() + RING_TICK);
                timer_armed = true;
            }
            tokio::select! {
                _ = tick.tick() => self.report_drops(&mut last, false)?,
                _ = metrics_tick.tick() => self.kernel_metrics(),
                _ = prune_tick.tick() => self.prune_state(),
                _ = learn_tick.tick(), if learning => self.flush_summaries(),
                _ = self_protect_tick.tick(), if self_protect => self.refresh_self_protect(),
                _ = policy_tick.tick(), if has_policy => {
                    self.renew_holds(true);
                    if let Err(e) = self.rescan_policies() {
                        warn!("binding cgroups to policies: {e:#}");
                    }
                }
                // Metadata for a container that may already run (CRI poll, Docker inspect):
                // bind it now, not at the next tick.
                () = containers.ready_stored(), if has_policy => {
                    if let Err(e) = self.rescan_policies() {
                        warn!("binding cgroups to policies: {e:#}");
                    }
                }
                wake = next_policy_wake(&mut self.policy) => match wake {
                    // A task stopped at its container's first exec: mark, then resume it.
                    PolicyWake::Hold => {
                        if self.collect_holds() > 0
                            && let Err(e) = self.rescan_policies()
                        {
                            warn!("binding cgroups to policies: {e:#}");
                        }
                    }
                    PolicyWake::Record(r) => match *r {
                        crate::fanotify::Record::Refused(d) => {
                            let ev = events::Event::Decision(d.clone());
                            self.on_decision(&ev, &d, Instant::now());
                        }
                        crate::fanotify::Record::Modified { decision, enforce: true } => {
                            self.enforce_modified(decision)
                        }
                        crate::fanotify::Record::Modified { decision, enforce: false } => {
                            self.detect_modified(decision)
                        }
                        crate::fanotify::Record::Orphaned(o) => self.wait_for_orphan(o),
                    },
                },
                guard = self.decisions.readable_mut() => {
                    guard?.clear_ready();
                    while self.drain(Ring::Decisions, None, DRAIN_BATCH)? == Drained::More {}
                }
                guard = self.ring.readable_mut(), if !backlog => {
                    guard?.clear_ready();
                    // Records were waiting undrained, so this wake is the threshold's: drain
                    // now. Otherwise it is the first record's: the timer drains.
                    if ring_pending {
                        match self.drain(Ring::Events, cap.max_events, DRAIN_BATCH)? {
                            Drained::Limit => break,
                            Drained::More => backlog = true,
                            Drained::Empty => ring_pending = false,
                        }
                    } else {
                        ring_pending = true;
                    }
                }
                () = &mut timer, if timer_armed && !backlog => {
                    timer_armed = false;
                    self.expire_kills(false);
                    self.record_changes(false);
                    match self.drain(Ring::Events, cap.max_events, DRAIN_BATCH)? {
                        Drained::Limit => break,
                        Drained::More => backlog = true,
                        Drained::Empty => ring_pending = false,
                    }
                    self.judge_orphans(false);
                }
                // A full batch was handled: let the other tasks run, then go on.
                () = tokio::task::yield_now(), if backlog => {
                    match self.drain(Ring::Events, cap.max_events, DRAIN_BATCH)? {
                        Drained::Limit => break,
                        Drained::More => {}
                        Drained::Empty => {
                            backlog = false;
                            ring_pending = false;
                        }
                    }
                }
                _ = sigint.recv() => break,
                _ = sigterm.recv() => break,
                _ = sighup.recv() => {
                    if loading {
                        again = Some(Trigger::Signal);
                    } else {
                        loading = true;
                        self.request_reload(Trigger::Signal, &loaded_tx);
                    }
                }
                Some(()) = next_change(&mut changes) => {
                    if loading {
                        again = again.or(Some(Trigger::FileChange));
                    } else {
                        loading = true;
                        self.request_reload(Trigger::FileChange, &loaded_tx);
                    }
                }
                Some(loaded) = loaded_rx.recv() => {
                    self.finish_reload(loaded);
                    loading = false;
                    if let Some(t) = again.take() {
                        loading = true;
                        self.request_reload(t, &loaded_tx);
                    }
                }
            }
        }
        // Drain what is still buffered so the final report accounts for everything.
        while self.drain(Ring::Decisions, None, DRAIN_BATCH)? == Drained::More {}
        while self.drain(Ring::Events, None, DRAIN_BATCH)? == Drained::More {}
        self.expire_kills(true);
        self.judge_orphans(true);
        self.record_changes(true);
        self.renew_holds(false);
        if let Some(h) = self.policy.as_mut().and_then(|p| p.holds.as_mut()) {
            h.release_all();
            info!(
                held = h.resumed,
                inherited = h.inherited,
                held_max_ms = h.held_max.as_millis() as u64,
                resumed_unmarked = h.resumed_unmarked,
                "fanotify: container starts held until marked"
            );
        }
        // Outputs first, so that alerts a stuck channel still held are in the final summary.
        if let Some(o) = self.outputs.as_mut() {
            o.close(Duration::from_secs(2));
        }
        self.report_drops(&mut last, true)?;
        self.flush_summaries();
        self.outputs.take();
        info!(
            events = self.seen,
            decode_errors = DECODE_ERRORS.load(Ordering::Relaxed),
            prefiltered_opens = self.probes.prefiltered_opens().unwrap_or(0),
            prefiltered_connects = self.probes.prefiltered_connects().unwrap_or(0),
            prefiltered_sends = self.probes.prefiltered_sends().unwrap_or(0),
            "guard stopping"
        );
        // Responses hold the audit log too; let in-flight actions finish first.
        if let Some(r) = self.responder.take() {
            drop(r);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if let Some(a) = self.audit.take() {
            a.try_record(Payload::AgentStop(AgentInfo {
                version: env!("CARGO_PKG_VERSION").into(),
                config_hash: self.config_hash.clone(),
                hostname: None,
                mode: None,
                recovery: Vec::new(),
                reason: Some("signal".into()),
            }));
            match Arc::try_unwrap(a) {
                Ok(log) => {
                    log.close();
                }
                Err(_) => warn!("audit log still in use at exit; its queue is flushed on drop"),
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// The next configuration change, or never without a watch.
async fn next_change(rx: &mut Option<tokio::sync::mpsc::Receiver<()>>) -> Option<()> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Time since `wall_ns` (an event's kernel timestamp), zero if the clock went back.
fn latency_since(wall_ns: u64) -> Duration {
    Duration::from_nanos(events::wall_now_ns().saturating_sub(wall_ns))
}

/// One line per event for the response engine's snapshot of a process's recent activity.
fn summary(ev: &model::Event) -> String {
    match &ev.fd {
        Some(fd) if !ev.derived.fd_name.is_empty() => {
            format!(
                "{} {} {} res={}",
                ev.evt_type, ev.proc.name, ev.derived.fd_name, ev.res
            )
        }
        _ => format!(
            "{} {} {} res={}",
            ev.evt_type, ev.proc.name, ev.derived.args, ev.res
        ),
    }
}

/// What the `fanotify` backend has for the pipeline.
enum PolicyWake {
    /// The `HOLDS` ring turned readable.
    Hold,
    /// A record of the answer thread.
    Record(Box<crate::fanotify::Record>),
}

/// The next thing the `fanotify` backend has for the pipeline; pending forever without it.
async fn next_policy_wake(policy: &mut Option<PolicyStage>) -> PolicyWake {
    let Some(p) = policy.as_mut() else {
        return std::future::pending().await;
    };
    let (f, h) = (p.fanotify.as_mut(), p.holds.as_mut());
    tokio::select! {
        Some(d) = async {
            match f {
                Some(f) => f.records.recv().await,
                None => std::future::pending().await,
            }
        } => PolicyWake::Record(Box::new(d)),
        () = async {
            match h {
                Some(h) => h.readable().await,
                None => std::future::pending().await,
            }
        } => PolicyWake::Hold,
        else => std::future::pending().await,
    }
}

/// The CRI client's configuration from `--cri-socket` (`off`: none).
fn podman_events_config(
    file: Option<&std::path::Path>,
) -> Option<crate::state::podman::PodmanEventsConfig> {
    let mut cfg = crate::state::podman::PodmanEventsConfig::default();
    match file {
        Some(f) if f.as_os_str() == "off" => return None,
        Some(f) => cfg.path = f.to_path_buf(),
        None => {}
    }
    Some(cfg)
}

fn cri_config(socket: Option<&std::path::Path>) -> Option<crate::state::cri::CriConfig> {
    if socket.is_some_and(|s| s.as_os_str() == "off") {
        return None;
    }
    Some(crate::state::cri::CriConfig {
        socket: socket.map(std::path::Path::to_path_buf),
        ..Default::default()
    })
}
