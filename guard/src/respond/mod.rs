//! The response engine: configured actions on alerts (docs/responses.md).
//!
//! Flow for one alert:
//! 1. [`Responder::prepare`] (synchronous, on the caller's thread): finds the matching
//!    responses (in order, stopping after one with `continue: false`) and, when one of them
//!    kills the process, opens a pidfd on it at once, so that a PID reused later is never hit.
//! 2. [`Responder::execute`]: per response, dedupe, then rate limits; per action, the rails
//!    (PID 1, kernel threads, guard itself, protected workloads), then detect mode / `dry_run`
//!    (a recorded "would ..."), then the action. Every outcome goes to the audit log with the
//!    latency from the event.
//!
//! [`Responder::submit`] does both without blocking the caller: the execution runs as a task,
//! and at most `settings.max_in_flight` alerts execute at once (beyond that the alert's
//! responses are refused and recorded, never queued without bound).

pub mod action;
pub mod config;
pub mod container;
pub mod falco;
pub mod identity;
pub mod intake_tls;
pub mod limits;
pub mod notify;
pub mod process;
pub mod quarantine;
pub mod script;
pub mod snapshot;

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::Semaphore;

pub use action::{Action, ActionKind};
pub use config::{
    Diagnostic, Response, ResponseSet, Settings, load as load_responses, validate_responses,
};

use crate::{
    alert::Alert,
    audit::{
        AuditLog, FileHash, LoadInfo, LoadedItem, Outcome, Payload, ProcessInfo, ResponseOutcome,
        SnapshotRecord, Workload,
    },
    workload::WorkloadInfo,
};

use self::{
    container::ContainerControl,
    limits::{Dedupe, Limited, RateLimiter},
    notify::{Delivery, Notifier},
    process::{HandleError, ProcessHandle},
    quarantine::Quarantine,
    snapshot::RecentEvents,
};

/// Engine options that do not come from the response files.
#[derive(Debug, Clone)]
pub struct Options {
    /// `guard run --detect-only`: every action becomes a recorded dry run.
    pub detect_only: bool,
    pub docker_socket: PathBuf,
    /// Per Docker request (a stop adds its grace period).
    pub docker_timeout: Duration,
    /// Where quarantine pins live.
    pub pin_dir: PathBuf,
    /// Where cgroup filesystems are mounted (for the freezer fallback).
    pub cgroup_root: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            detect_only: false,
            docker_socket: PathBuf::from("/var/run/docker.sock"),
            docker_timeout: Duration::from_secs(5),
            pin_dir: PathBuf::from(quarantine::PIN_DIR),
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        }
    }
}

/// What the pipeline knows about the alert beyond its JSON.
#[derive(Debug, Clone, Default)]
pub struct AlertContext {
    /// The offending process (thread-group id).
    pub pid: Option<u32>,
    /// Its start time, CLOCK_BOOTTIME ns (as event `boot_ns`), to detect a reused PID.
    pub process_start_boot_ns: Option<u64>,
    /// cgroup v2 id of the event.
    pub cgroup_id: Option<u64>,
    pub workload: WorkloadInfo,
    /// The workload policy that applied, and whether it is in detect mode.
    pub policy: Option<String>,
    pub policy_detect: bool,
    /// When the event was seen; latencies are measured from here (default: `prepare`).
    pub event_time: Option<Instant>,
}

impl AlertContext {
    /// Context from the alert's own fields (`proc.pid`, `container.*`), for alerts that
    /// arrive over HTTP from Falco.
    pub fn from_alert(alert: &Alert) -> Self {
        let pid = match alert.output_fields.get("proc.pid") {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        Self {
            pid,
            workload: WorkloadInfo::from_output_fields(&alert.output_fields),
            ..Default::default()
        }
    }
}

/// The outcome of one action (also written to the audit log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionReport {
    pub response: String,
    /// Action name, or `*` for a refusal of the whole response (dedupe, rate limit, load).
    pub action: String,
    pub outcome: Outcome,
    pub detail: Option<String>,
    pub error: Option<String>,
    /// From the event to the outcome.
    pub latency: Duration,
}

/// An alert whose responses are chosen and whose process handle is open.
pub struct Prepared {
    /// The response set in force when the alert arrived (a reload may replace it meanwhile).
    active: Arc<Active>,
    alert: Arc<Alert>,
    ctx: AlertContext,
    matched: Vec<usize>,
    handle: Option<Result<ProcessHandle, HandleError>>,
    /// The alert's claims about its process checked against the live one (identity.rs):
    /// the checks made, or the first mismatch. `None`: no live process to check.
    identity: Option<Result<Vec<&'static str>, identity::Mismatch>>,
    t0: Instant,
}

type DedupeKey = (String, String, String, u32);

/// The responses and settings in force; replaced whole by a reload.
pub struct Active {
    pub responses: Vec<Response>,
    pub settings: Settings,
}

struct Inner {
    active: std::sync::RwLock<Arc<Active>>,
    opts: Options,
    audit: Option<Arc<AuditLog>>,
    dedupe: Mutex<Dedupe<DedupeKey>>,
    limiter: Mutex<RateLimiter<String>>,
    docker: ContainerControl,
    quarantine: tokio::sync::Mutex<Option<Quarantine>>,
    notifier: Notifier,
    recent: RecentEvents,
    in_flight: Arc<Semaphore>,
    /// The container guard itself runs in, if any.
    self_container: Option<String>,
    saturated: AtomicU64,
}

#[derive(Clone)]
pub struct Responder {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// 12 to 64 hex digits: a full container id or a unique prefix (Falco's `container.id`).
pub fn valid_container_id(id: &str) -> bool {
    (12..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn own_container() -> Option<String> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = crate::state::procfs::parse_cgroup_v2(&cg)?;
    crate::state::container::parse_cgroup_path(path).map(|c| c.id.as_str().to_owned())
}

impl Responder {
    /// Builds the engine. Must run inside a tokio runtime (the notify dispatcher is a task).
    pub fn new(set: ResponseSet, opts: Options, audit: Option<Arc<AuditLog>>) -> Self {
        let now = Instant::now();
        let settings = set.settings.clone();
        let mut docker = ContainerControl::new(opts.docker_socket.clone(), opts.docker_timeout);
        docker.cgroup_root = opts.cgroup_root.clone();
        if let Some(a) = &audit {
            a.try_record(Self::load_record(&set, &opts, false));
        }
        Self {
            inner: Arc::new(Inner {
                dedupe: Mutex::new(Dedupe::new(settings.dedupe_window.0)),
                limiter: Mutex::new(RateLimiter::new(
                    settings.rate_limit_per_workload,
                    settings.rate_limit_global,
                    now,
                )),
                in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
                active: std::sync::RwLock::new(Arc::new(Active {
                    responses: set.responses,
                    settings,
                })),
                docker,
                quarantine: tokio::sync::Mutex::new(None),
                notifier: Notifier::start(),
                recent: RecentEvents::default(),
                self_container: own_container(),
                saturated: AtomicU64::new(0),
                audit,
                opts,
            }),
        }
    }

    fn load_record(set: &ResponseSet, opts: &Options, reload: bool) -> Payload {
        Payload::ResponseLoad(LoadInfo {
            files: set
                .files
                .iter()
                .map(|(p, h)| FileHash {
                    path: p.display().to_string(),
                    sha256: h.clone(),
                })
                .collect(),
            items: set
                .responses
                .iter()
                .map(|r| LoadedItem {
                    name: r.name.clone(),
                    mode: if r.dry_run {
                        "dry_run".into()
                    } else if opts.detect_only {
                        "detect".into()
                    } else {
                        "active".into()
                    },
                    learned_to: None,
                })
                .collect(),
            reload,
        })
    }

    /// Puts a new (validated) response set in force. Alerts already prepared finish with the
    /// set they were matched against. Changed dedupe or rate-limit settings start afresh;
    /// a changed `max_in_flight` takes effect at the next start (returned as a warning).
    pub fn replace(&self, set: ResponseSet) -> Option<String> {
        let old = self.active();
        let s = &set.settings;
        if s.dedupe_window != old.settings.dedupe_window {
            *lock(&self.inner.dedupe) = Dedupe::new(s.dedupe_window.0);
        }
        if s.rate_limit_per_workload != old.settings.rate_limit_per_workload
            || s.rate_limit_global != old.settings.rate_limit_global
        {
            *lock(&self.inner.limiter) = RateLimiter::new(
                s.rate_limit_per_workload,
                s.rate_limit_global,
                Instant::now(),
            );
        }
        let warning = (s.max_in_flight != old.settings.max_in_flight).then(|| {
            format!(
                "settings.max_in_flight changed to {}: takes effect when guard restarts (now {})",
                s.max_in_flight, old.settings.max_in_flight
            )
        });
        if let Some(a) = &self.inner.audit {
            a.try_record(Self::load_record(&set, &self.inner.opts, true));
        }
        let next = Arc::new(Active {
            responses: set.responses,
            settings: set.settings,
        });
        match self.inner.active.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        warning
    }

    /// The responses and settings in force.
    pub fn active(&self) -> Arc<Active> {
        match self.inner.active.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Where quarantine pins live.
    pub fn pin_dir(&self) -> &std::path::Path {
        &self.inner.opts.pin_dir
    }

    /// Attaches (or adopts) the quarantine programs now when some active response quarantines,
    /// instead of at the first quarantine: `guard run` drops the capabilities that loading
    /// them needs after start (docs/hardening.md). Returns the error, if attaching failed (the
    /// action then fails as before).
    pub async fn prepare_quarantine(&self) -> Option<String> {
        let wants = !self.inner.opts.detect_only
            && self.active().responses.iter().any(|r| {
                !r.dry_run
                    && r.actions
                        .iter()
                        .any(|a| matches!(a, Action::QuarantineNetwork(_)))
            });
        if !wants {
            return None;
        }
        let mut g = self.inner.quarantine.lock().await;
        if g.is_some() {
            return None;
        }
        let pin = self.inner.opts.pin_dir.clone();
        let attached = tokio::task::spawn_blocking(move || {
            quarantine::cgroup2_root().and_then(|root| Quarantine::attach(&pin, &root))
        })
        .await;
        match attached {
            Ok(Ok(q)) => {
                if let quarantine::ConnectDeny::Unavailable(why) = &q.connect_deny {
                    tracing::warn!("quarantine without connect deny: {why}");
                }
                *g = Some(q);
                None
            }
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(e) => Some(e.to_string()),
        }
    }

    /// Keeps a one-line summary of an event of `pid` for `snapshot` (bounded ring).
    pub fn record_recent(&self, pid: u32, summary: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        self.inner
            .recent
            .record(pid, crate::alert::rfc3339_ns(now), summary);
    }

    /// The audit log outcomes go to, if any.
    pub(crate) fn audit_log(&self) -> Option<&Arc<AuditLog>> {
        self.inner.audit.as_ref()
    }

    /// Alerts refused because `max_in_flight` executions were running.
    pub fn saturated(&self) -> u64 {
        self.inner.saturated.load(Ordering::Relaxed)
    }

    /// Chooses the responses and opens the process handle. `None`: nothing matches.
    pub fn prepare(&self, alert: Arc<Alert>, ctx: AlertContext) -> Option<Prepared> {
        let t0 = ctx.event_time.unwrap_or_else(Instant::now);
        let active = self.active();
        let mut matched = Vec::new();
        for (i, r) in active.responses.iter().enumerate() {
            if r.matcher.matches(&alert, &ctx.workload) {
                matched.push(i);
                if !r.cont {
                    break;
                }
            }
        }
        if matched.is_empty() {
            return None;
        }
        // Every disruptive action is bound to the alert's process when it names one: the
        // pidfd is taken now, then its identity checked (identity.rs).
        let needs_handle = matched.iter().any(|&i| {
            active.responses[i]
                .actions
                .iter()
                .any(Action::is_disruptive)
        });
        let mut handle = match (needs_handle, ctx.pid) {
            (true, Some(pid)) => Some(ProcessHandle::open(pid, ctx.process_start_boot_ns)),
            _ => None,
        };
        let mut ident = None;
        if let (Some(Ok(h)), Some(pid)) = (&handle, ctx.pid) {
            // The agent resolved the event's workload itself (it has the cgroup id): its
            // container, or the host, is the claim; a posted alert's is `container.id`.
            let agent_container = ctx.cgroup_id.map(|_| ctx.workload.container_id.as_deref());
            let claim = identity::Claim::from_alert(
                pid,
                &alert,
                ctx.process_start_boot_ns,
                agent_container,
            );
            let live = identity::Live::read(&claim, &h.stat);
            // Alive after the reads: they were of the pidfd's process.
            if h.is_alive() {
                ident = Some(identity::verify(&claim, &live));
            } else {
                handle = Some(Err(HandleError::Gone(pid)));
            }
        }
        Some(Prepared {
            active,
            alert,
            ctx,
            matched,
            handle,
            identity: ident,
            t0,
        })
    }

    /// Prepares now and executes as a task; never blocks. False when nothing matched or the
    /// engine is saturated (then the refusal is recorded).
    pub fn submit(&self, alert: Arc<Alert>, ctx: AlertContext) -> bool {
        let Some(p) = self.prepare(alert, ctx) else {
            return false;
        };
        match self.inner.in_flight.clone().try_acquire_owned() {
            Ok(permit) => {
                let me = self.clone();
                tokio::spawn(async move {
                    me.execute(p).await;
                    drop(permit);
                });
                true
            }
            Err(_) => {
                self.inner.saturated.fetch_add(1, Ordering::Relaxed);
                for &i in &p.matched {
                    let r = &p.active.responses[i];
                    let rep = self.report(
                        r,
                        "*",
                        Outcome::Refused,
                        None,
                        Some(format!(
                            "response engine saturated ({} alerts in flight)",
                            p.active.settings.max_in_flight
                        )),
                        p.t0,
                    );
                    self.try_audit(&rep, &p);
                }
                false
            }
        }
    }

    /// Prepares and executes, returning every action's outcome.
    pub async fn handle(&self, alert: Arc<Alert>, ctx: AlertContext) -> Vec<ActionReport> {
        match self.prepare(alert, ctx) {
            Some(p) => self.execute(p).await,
            None => Vec::new(),
        }
    }

    fn workload_key(w: &WorkloadInfo) -> String {
        w.container_id.clone().unwrap_or_else(|| "host".into())
    }

    fn report(
        &self,
        r: &Response,
        action: &str,
        outcome: Outcome,
        detail: Option<String>,
        error: Option<String>,
        t0: Instant,
    ) -> ActionReport {
        ActionReport {
            response: r.name.clone(),
            action: action.to_owned(),
            outcome,
            detail,
            error,
            latency: t0.elapsed(),
        }
    }

    fn audit_payload(&self, rep: &ActionReport, p: &Prepared) -> Payload {
        let w = &p.ctx.workload;
        let known =
            |s: &str| (!s.is_empty() && s != crate::state::container::NA).then(|| s.to_owned());
        let field = |k: &str| match p.alert.output_fields.get(k) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let exe = match &p.handle {
            Some(Ok(h)) => h.exe.clone(),
            _ => None,
        };
        Payload::Response(ResponseOutcome {
            response: rep.response.clone(),
            action: rep.action.clone(),
            outcome: rep.outcome,
            rule: Some(p.alert.rule.clone()),
            policy: p.ctx.policy.clone(),
            mode: Some(if self.inner.opts.detect_only || p.ctx.policy_detect {
                "detect".into()
            } else {
                "enforce".into()
            }),
            workload: Workload {
                container_id: w.container_id.clone(),
                container_name: known(&w.name),
                image: known(&w.image),
                k8s_namespace: known(&w.k8s_namespace),
                k8s_pod: field("k8s.pod.name"),
            },
            process: ProcessInfo {
                pid: p.ctx.pid,
                exe: exe.or_else(|| field("proc.exepath")),
                cmdline: field("proc.cmdline"),
            },
            error: rep.error.clone(),
            detail: rep.detail.clone(),
            latency_us: Some(rep.latency.as_micros().min(u128::from(u64::MAX)) as u64),
        })
    }

    fn log(rep: &ActionReport, p: &Prepared) {
        crate::metrics::METRICS.action(&rep.action, rep.outcome.as_str(), rep.latency);
        let w = p.ctx.workload.label();
        let text = rep.detail.as_deref().or(rep.error.as_deref()).unwrap_or("");
        match rep.outcome {
            Outcome::Failed | Outcome::Refused => tracing::warn!(
                response = %rep.response, action = %rep.action, outcome = rep.outcome.as_str(),
                rule = %p.alert.rule, workload = %w, latency_us = rep.latency.as_micros() as u64,
                "{text}"
            ),
            _ => tracing::info!(
                response = %rep.response, action = %rep.action, outcome = rep.outcome.as_str(),
                rule = %p.alert.rule, workload = %w, latency_us = rep.latency.as_micros() as u64,
                "{text}"
            ),
        }
    }

    /// Records an outcome, waiting for room in the audit queue (outcomes are not dropped).
    async fn audit(&self, rep: &ActionReport, p: &Prepared) {
        Self::log(rep, p);
        if let Some(a) = &self.inner.audit {
            a.record(self.audit_payload(rep, p)).await;
        }
    }

    /// Records without waiting (refusals in a storm: what does not fit is counted).
    fn try_audit(&self, rep: &ActionReport, p: &Prepared) {
        Self::log(rep, p);
        if let Some(a) = &self.inner.audit {
            a.try_record(self.audit_payload(rep, p));
        }
    }

    /// Runs the prepared responses; returns every outcome (also in the audit log).
    pub async fn execute(&self, p: Prepared) -> Vec<ActionReport> {
        let mut out = Vec::new();
        let wkey = Self::workload_key(&p.ctx.workload);
        for &i in &p.matched {
            let r = &p.active.responses[i];
            let key = (
                r.name.clone(),
                p.alert.rule.clone(),
                wkey.clone(),
                p.ctx.pid.unwrap_or(0),
            );
            if !lock(&self.inner.dedupe).first(&key, Instant::now()) {
                let rep = self.report(
                    r,
                    "*",
                    Outcome::Refused,
                    None,
                    Some(format!(
                        "duplicate: rule, workload and process already acted on within {:?}",
                        p.active.settings.dedupe_window.0
                    )),
                    p.t0,
                );
                self.try_audit(&rep, &p);
                out.push(rep);
                continue;
            }
            if let Err(l) = lock(&self.inner.limiter).take(&wkey, Instant::now()) {
                let which = match l {
                    Limited::Workload => "per-workload",
                    Limited::Global => "global",
                };
                let rep = self.report(
                    r,
                    "*",
                    Outcome::Refused,
                    None,
                    Some(format!("rate limit: {which} bucket empty (overflow)")),
                    p.t0,
                );
                self.try_audit(&rep, &p);
                out.push(rep);
                continue;
            }
            let mut failed = false;
            for a in &r.actions {
                if failed {
                    let rep = self.report(
                        r,
                        a.name(),
                        Outcome::Refused,
                        None,
                        Some("not run: an earlier action failed (ignore_errors: false)".into()),
                        p.t0,
                    );
                    self.audit(&rep, &p).await;
                    out.push(rep);
                    continue;
                }
                let rep = self.run_action(r, a, &p).await;
                if rep.outcome != Outcome::Planned {
                    self.audit(&rep, &p).await;
                }
                if rep.outcome == Outcome::Failed && !r.ignore_errors {
                    failed = true;
                }
                out.push(rep);
            }
        }
        out
    }

    /// Why no action may touch this workload, if so.
    fn workload_rail(&self, w: &WorkloadInfo) -> Option<String> {
        if let (Some(me), Some(id)) = (&self.inner.self_container, &w.container_id)
            && me.starts_with(id.as_str())
        {
            return Some("guard itself runs in this container".into());
        }
        self.active()
            .settings
            .protected
            .iter()
            .position(|s| s.matches(w))
            .map(|i| format!("protected workload {} (settings.protected[{i}])", w.label()))
    }

    async fn run_action(&self, r: &Response, a: &Action, p: &Prepared) -> ActionReport {
        // Detect mode dries only what would disrupt (notify, snapshot and non-disruptive
        // scripts still run, recorded with `mode: detect`); `dry_run: true` dries everything.
        let detect_mode = self.inner.opts.detect_only || p.ctx.policy_detect;
        let detect = r.dry_run || (detect_mode && a.dries_in_detect());
        let why_dry = if detect_mode && a.dries_in_detect() {
            "detect mode"
        } else {
            "dry_run"
        };
        let refused = |e: String| self.report(r, a.name(), Outcome::Refused, None, Some(e), p.t0);
        let not_the_process = |m: &identity::Mismatch| {
            crate::metrics::METRICS.identity_refused(m.check());
            refused(format!("{m}: refusing to act"))
        };
        let failed = |e: String| self.report(r, a.name(), Outcome::Failed, None, Some(e), p.t0);
        let dry = |what: String| {
            self.report(
                r,
                a.name(),
                Outcome::DryRun,
                Some(format!("{why_dry}: would {what}")),
                None,
                p.t0,
            )
        };
        let done = |what: String| self.report(r, a.name(), Outcome::Done, Some(what), None, p.t0);
        let w = &p.ctx.workload;
        if let Some(why) = self.workload_rail(w) {
            return refused(why);
        }
        // Container ids come from alerts (possibly posted over HTTP): only hex ids reach the
        // Docker API or the cgroup tree, never a path or query of the caller's choosing.
        let container = w.container_id.as_deref();
        if let Some(id) = container
            && !valid_container_id(id)
            && (a.is_disruptive() || matches!(a, Action::Snapshot(_)))
        {
            return refused(format!(
                "invalid container id {:?}",
                id.escape_debug().to_string()
            ));
        }
        let cname = w.label();
        // The alert's process found alive in another container than the alert names: the
        // alert is not about this container either.
        if a.is_disruptive()
            && !matches!(a, Action::KillProcess(_))
            && let Some(Err(m)) = &p.identity
            && !m.is_other_process()
        {
            return not_the_process(m);
        }
        match a {
            Action::KillProcess(kp) => {
                let Some(pid) = p.ctx.pid else {
                    return refused("the alert names no process (proc.pid)".into());
                };
                let h = match &p.handle {
                    Some(Ok(h)) => h,
                    Some(Err(e @ HandleError::Reused { .. })) => {
                        crate::metrics::METRICS.identity_refused("start_time");
                        return refused(e.to_string());
                    }
                    Some(Err(e)) => return failed(e.to_string()),
                    None => return failed("no process handle".into()),
                };
                if let Some(why) = h.rail() {
                    return refused(why);
                }
                let checked = match &p.identity {
                    Some(Ok(c)) => c,
                    Some(Err(m)) => return not_the_process(m),
                    None => return failed(format!("process {pid} is gone")),
                };
                let checked = if checked.is_empty() {
                    "nothing the alert claims could be checked".to_owned()
                } else {
                    format!("checked: {}", checked.join(", "))
                };
                let what = format!(
                    "kill process {pid} ({}){} [{checked}]",
                    h.exe.as_deref().unwrap_or("?"),
                    if kp.tree { " and its descendants" } else { "" }
                );
                if detect {
                    return dry(what);
                }
                let killed_tree = match process::kill(h, kp.tree).await {
                    Ok(n) => n,
                    Err(e) => return failed(e),
                };
                done(format!(
                    "killed process {pid}{} [{checked}]",
                    if kp.tree {
                        format!(" and {killed_tree} descendant(s)")
                    } else {
                        String::new()
                    }
                ))
            }
            Action::KillContainer(_) | Action::StopContainer(_) | Action::PauseContainer(_) => {
                let Some(id) = container else {
                    return refused("the alert is not from a container".into());
                };
                match a {
                    Action::KillContainer(_) => {
                        if detect {
                            return dry(format!("kill container {cname}"));
                        }
                        match self.inner.docker.kill(id).await {
                            Ok(how) => done(format!("killed container {cname} via {how}")),
                            Err(e) => failed(e),
                        }
                    }
                    Action::StopContainer(s) => {
                        if detect {
                            return dry(format!("stop container {cname}"));
                        }
                        match self.inner.docker.stop(id, s.timeout.0).await {
                            Ok(()) => done(format!(
                                "stopped container {cname} (grace {:?})",
                                s.timeout.0
                            )),
                            Err(e) => failed(e.to_string()),
                        }
                    }
                    _ => {
                        if detect {
                            return dry(format!("pause container {cname}"));
                        }
                        match self.inner.docker.pause(id).await {
                            Ok(m) => done(format!("paused container {cname} via {m}")),
                            Err(e) => failed(e),
                        }
                    }
                }
            }
            Action::QuarantineNetwork(q) => {
                let Some(id) = container else {
                    return refused(
                        "the host is never quarantined: the alert is not from a container".into(),
                    );
                };
                let cg = container::cgroup_v2_dir(id)
                    .and_then(|d| {
                        use std::os::unix::fs::MetadataExt;
                        std::fs::metadata(&d).ok().map(|m| (m.ino(), d))
                    })
                    .map(|(ino, d)| (ino, d.display().to_string()))
                    .or_else(|| p.ctx.cgroup_id.map(|c| (c, format!("cgroup id {c}"))));
                let Some((cg, cg_name)) = cg else {
                    return failed(format!(
                        "no cgroup v2 directory found for container {cname}"
                    ));
                };
                let how_long = match q.duration {
                    Some(d) => format!("for {:?}", d.0),
                    None => "until lifted".into(),
                };
                if detect {
                    return dry(format!(
                        "quarantine the network of container {cname} {how_long}"
                    ));
                }
                let mut g = self.inner.quarantine.lock().await;
                if g.is_none() {
                    let pin = self.inner.opts.pin_dir.clone();
                    let attached = tokio::task::spawn_blocking(move || {
                        quarantine::cgroup2_root().and_then(|root| Quarantine::attach(&pin, &root))
                    })
                    .await;
                    match attached {
                        Ok(Ok(qq)) => {
                            if let quarantine::ConnectDeny::Unavailable(why) = &qq.connect_deny {
                                tracing::warn!("quarantine without connect deny: {why}");
                            }
                            *g = Some(qq)
                        }
                        Ok(Err(e)) => return failed(format!("{e:#}")),
                        Err(e) => return failed(e.to_string()),
                    }
                }
                let Some(qq) = g.as_mut() else {
                    return failed("quarantine unavailable".into());
                };
                let connect = match &qq.connect_deny {
                    quarantine::ConnectDeny::SockAddr => {
                        "packets dropped, connect and UDP sends refused (EPERM)"
                    }
                    quarantine::ConnectDeny::Unavailable(_) => {
                        "packets dropped (connect and UDP sends are not refused up front)"
                    }
                };
                match qq.add(cg, q.duration.map(|d| d.0)) {
                    Ok(()) => done(format!(
                        "network of container {cname} quarantined ({cg_name}) {how_long}: {connect}"
                    )),
                    Err(e) => failed(format!("{e:#}")),
                }
            }
            Action::Notify(n) => {
                if detect {
                    return dry(format!("POST the alert to {}", n.url));
                }
                let url: hyper::Uri = match n.url.parse() {
                    Ok(u) => u,
                    Err(e) => return failed(format!("bad url: {e}")),
                };
                let body = match serde_json::to_vec(&*p.alert) {
                    Ok(b) => bytes::Bytes::from(b),
                    Err(e) => return failed(format!("encode alert: {e}")),
                };
                let delivered = self.report(
                    r,
                    a.name(),
                    Outcome::Done,
                    Some(format!("delivered to {}", n.url)),
                    None,
                    p.t0,
                );
                let payload_ok = self.audit_payload(&delivered, p);
                let audit = self.inner.audit.clone();
                let t0 = p.t0;
                let queued = self.inner.notifier.try_queue(Delivery {
                    url,
                    body,
                    timeout: n.timeout.0,
                    retries: n.retries,
                    done: Box::new(move |res, at| {
                        let Some(audit) = audit else { return };
                        let mut payload = payload_ok;
                        if let Payload::Response(o) = &mut payload {
                            o.latency_us = Some(at.duration_since(t0).as_micros() as u64);
                            if let Err(e) = res {
                                o.outcome = Outcome::Failed;
                                o.detail = None;
                                o.error = Some(e);
                            }
                        }
                        audit.try_record(payload);
                    }),
                });
                match queued {
                    Ok(()) => self.report(
                        r,
                        a.name(),
                        Outcome::Planned,
                        Some(format!("queued for delivery to {}", n.url)),
                        None,
                        p.t0,
                    ),
                    Err(e) => failed(e),
                }
            }
            Action::Exec(x) => {
                if detect {
                    return dry(format!("run {}", x.script.display()));
                }
                let stdin = serde_json::to_vec(&*p.alert).unwrap_or_default();
                let spec = script::ScriptSpec {
                    script: x.script.clone(),
                    args: x.args.clone(),
                    timeout: x.timeout.0,
                    allow_write: x.allow_write.clone(),
                    stdin,
                };
                match tokio::task::spawn_blocking(move || script::run(spec)).await {
                    Ok(Ok(res)) if res.success() => {
                        done(format!("{}: {}", x.script.display(), res.summary()))
                    }
                    Ok(Ok(res)) => failed(format!("{}: {}", x.script.display(), res.summary())),
                    Ok(Err(e)) => failed(e),
                    Err(e) => failed(e.to_string()),
                }
            }
            Action::Snapshot(s) => {
                if detect {
                    return dry("snapshot the workload's processes and recent events".into());
                }
                let pid = p.ctx.pid;
                let cdir = container.and_then(container::cgroup_v2_dir);
                let (processes, truncated) = tokio::task::spawn_blocking(move || match cdir {
                    Some(d) => snapshot::cgroup_processes(&d),
                    None => pid.map(snapshot::host_tree).unwrap_or_default(),
                })
                .await
                .unwrap_or_default();
                let recent = pid
                    .map(|pid| self.inner.recent.last(pid, s.events))
                    .unwrap_or_default();
                let Some(audit) = &self.inner.audit else {
                    return failed("no audit log to write the snapshot to".into());
                };
                let (np, ne) = (processes.len(), recent.len());
                let Payload::Response(base) = self.audit_payload(
                    &self.report(r, a.name(), Outcome::Done, None, None, p.t0),
                    p,
                ) else {
                    return failed("internal: unexpected payload".into());
                };
                let rec = SnapshotRecord {
                    response: r.name.clone(),
                    rule: Some(p.alert.rule.clone()),
                    workload: base.workload,
                    process: base.process,
                    processes,
                    processes_truncated: truncated,
                    recent_events: recent,
                };
                if !audit.record(Payload::Snapshot(Box::new(rec))).await {
                    return failed("audit log refused the snapshot".into());
                }
                done(format!("snapshot: {np} process(es), {ne} recent event(s)"))
            }
        }
    }

    /// Lifts a quarantine through the engine's handle (or the pinned map).
    pub async fn lift_quarantine(&self, cgroup_id: u64) -> anyhow::Result<bool> {
        let mut g = self.inner.quarantine.lock().await;
        if g.is_none() {
            *g = Some(Quarantine::open_pinned(&self.inner.opts.pin_dir)?);
        }
        match g.as_mut() {
            Some(q) => q.remove(cgroup_id),
            None => Ok(false),
        }
    }
}

#[cfg(test)]
mod tests;
