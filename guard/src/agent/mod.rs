//! `guard run` and `guard record`: the pipeline.
//!
//! kernel records → decode (`events`) → process/container state (`capture`) → rules → alerts
//! → outputs and audit log. `record` stops after capture and prints events.
//!
//! `run` builds the pieces from the arguments; `pipeline` is the event loop; `decisions` the
//! kernel's (and the fallback's) enforcement records; `changes` the `fanotify` backend's change
//! reports waiting in the pipeline; `reload_state` swaps configurations;
//! `drops` accounts for what was lost. The state they share is defined here.

mod changes;
mod decisions;
mod drops;
mod holds;
mod pipeline;
mod reload_state;
mod run;

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::{Context, Result};
use tokio::io::unix::AsyncFd;

use crate::{
    alert::Alert,
    audit::AuditLog,
    capture::Capture,
    config::PrintEvents,
    events::{CgroupId, Clock},
    output::Outputs,
    prefilter::Prefilter,
    probes::Probes,
    respond::Responder,
    rules::{Engine, Matcher},
    workload::WorkloadInfo,
};

pub use drops::DropReport;
pub use run::{record, run};

/// Records that failed to decode (counted by `events::decode_counted`).
pub use crate::events::DECODE_ERRORS;

/// The cgroup id of a cgroup v2 directory is its inode number.
pub fn cgroup_id_of(dir: &Path) -> Result<CgroupId> {
    let md = std::fs::metadata(dir)
        .with_context(|| format!("cannot stat cgroup directory {}", dir.display()))?;
    anyhow::ensure!(md.is_dir(), "{} is not a directory", dir.display());
    Ok(CgroupId(md.ino()))
}

/// The pipeline runs in `block_on` on the main thread; spawned tasks (Docker enrichment, which
/// the start-window binding needs, and responses) run on a worker, so a flood of events never
/// delays a kill or a container's policy binding.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("guard-worker")
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Policy enforcement asked of the pipeline.
pub struct PolicySetup {
    pub policies: Vec<crate::policy::Policy>,
    pub detect_only: bool,
    pub pin_dir: PathBuf,
    pub hostname: String,
    /// `--policy-backend`.
    pub backend: crate::policy::backend::Choice,
}

struct Pipeline {
    probes: Probes,
    ring: AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    /// Enforcement records, kept apart so that an event flood cannot drop them.
    decisions: AsyncFd<aya::maps::RingBuf<aya::maps::MapData>>,
    clock: Clock,
    capture: Capture,
    print: PrintEvents,
    engine: Option<Engine>,
    matcher: Matcher,
    outputs: Option<Outputs>,
    audit: Option<Arc<AuditLog>>,
    responder: Option<Responder>,
    /// Whether some response takes snapshots (which need each process's recent events).
    keep_recent: bool,
    seen: u64,
    record_buf: Vec<u8>,
    /// Per-workload policy enforcement (`- policy:` items), when policies were given.
    policy: Option<PolicyStage>,
    /// What a reload needs (`guard run` only).
    reload: Option<ReloadState>,
    /// SHA-256 of the effective configuration, for `agent_start` and `agent_stop`.
    config_hash: String,
    /// Per-workload summaries for `guard policy learn` (with the audit log only).
    learn: Option<crate::learn::Summaries>,
}

/// The configuration in force and where it came from, for reloads.
struct ReloadState {
    sources: crate::reload::Sources,
    /// Reload when the files change (inotify), besides SIGHUP.
    watch: bool,
    /// Of the files in force (a change event with the same digest is no change).
    digest: String,
    /// 1 for the set loaded at start, +1 per reload.
    generation: u64,
    detect_only: bool,
    responder_options: crate::respond::Options,
    /// The kernel prefilter in force; None when it is off.
    prefilter: Option<Prefilter>,
    /// Resolves the host names of the rules in force (`fd.*ip.name`).
    dns: crate::dns::Resolver,
}

/// What asked for a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Signal,
    FileChange,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Signal => "SIGHUP",
            Trigger::FileChange => "file change",
        }
    }
}

type Loaded = (
    Trigger,
    Result<crate::reload::Config, crate::reload::Invalid>,
);

struct PolicyStage {
    runtime: crate::policy::kernel::PolicyRuntime,
    hostname: String,
    /// The fallback backend with open or connect rules: the agent kills after the fact.
    after_fact: bool,
    bindings: crate::policy::fallback::BindingCache,
    /// Kills after the fact waiting for the process's exit status.
    pending_kills: decisions::PendingKills,
    /// Detect mode's change reports, waiting to be recorded once, and gone writers' changes
    /// waiting for the event ring (`fanotify` backend).
    detect_changes: changes::DetectChanges,
    orphans: changes::Orphans,
    /// The `fanotify` backend's listener (None on the other backends).
    fanotify: Option<crate::fanotify::Fanotify>,
    /// Tasks the kernel stopped until their workload is marked (`fanotify` backend).
    holds: Option<holds::Holds>,
    /// Where the policy programs, links and maps are pinned.
    pin_dir: PathBuf,
}

impl PolicyStage {
    /// Whether an alert's rule applies to the workload, by the `rules:` selection of the policy
    /// that selects it (most specific wins); workloads without a policy get every rule.
    fn rules_apply(&self, w: &WorkloadInfo, alert: &Alert) -> bool {
        crate::policy::choose(&self.runtime.enforcer.policies, w)
            .is_none_or(|(_, p)| p.rules.applies(&alert.rule, &alert.tags))
    }
}
