//! `guard run` and `guard record`: the pipeline.
//!
//! kernel records → decode (`events`) → process/container state (`capture`) → rules → alerts
//! → outputs and audit log. `record` stops after capture and prints events.

use std::{
    io::Write,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::{io::unix::AsyncFd, signal::unix::SignalKind};
use tracing::{info, warn};

use guard_ebpf::policy_flags as pf;

use crate::{
    alert::Alert,
    audit::{
        AuditConfig, AuditLog,
        record::{AgentInfo, DropSummary, FileHash, LoadInfo, LoadedItem, Payload},
    },
    capture::Capture,
    events::{self, CgroupId, Clock},
    metrics::METRICS,
    model,
    output::{ChannelConfig, ChannelKind, Format, Outputs},
    prefilter::Prefilter,
    probes::{ExecEnforcement, ProbeConfig, Probes},
    respond::{AlertContext, Responder},
    rules::{Engine, Matcher},
    state::{Pid, State, StateConfig},
    workload::WorkloadInfo,
};

/// Records that failed to decode (malformed or unknown kind).
pub static DECODE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Policy id used for cgroups given with `--deny-exec-cgroup`.
const CLI_POLICY_ID: u32 = 1;

/// What goes to stdout besides alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PrintEvents {
    /// No events (alerts only).
    None,
    /// Enriched events in the `guard record` schema (docs/event-schema.md).
    Model,
    /// Decoded kernel records, before enrichment (debugging).
    Raw,
}

/// Options shared by `run` and `record`.
#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Ring-buffer size in bytes (rounded up to a power of two).
    #[arg(long, default_value_t = guard_ebpf::DEFAULT_RING_BYTES)]
    pub ring_bytes: u32,
    /// Trace only this cgroup v2 directory instead of the whole host.
    #[arg(long, value_name = "CGROUP_DIR")]
    pub only_cgroup: Option<PathBuf>,
    /// Seconds between drop reports (logged, audited and, when events are printed, a `drops`
    /// line on stdout) when counts changed.
    #[arg(long, default_value_t = 5)]
    pub drop_report_secs: u64,
    /// Stop after this many events (for tests and scripts).
    #[arg(long)]
    pub max_events: Option<u64>,
    /// Docker API socket used for container metadata.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Never deny or kill: every decision is only reported.
    #[arg(long)]
    pub detect_only: bool,
    /// Rules files or directories (repeatable). Default: $GUARD_RULES, else
    /// /etc/falco/falco_rules.yaml if present, then ./policies or /etc/guard/policies.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Alert format on stdout. Default: text on a terminal, JSON otherwise.
    #[arg(long, value_parser = ["text", "json"])]
    pub format: Option<String>,
    /// Also print events on stdout.
    #[arg(long, value_enum, default_value_t = PrintEvents::None)]
    pub print_events: PrintEvents,
    /// Alert channels (YAML list: stdout, file, syslog, http; docs/audit.md "Outputs").
    /// Replaces the default stdout channel.
    #[arg(long, value_name = "FILE")]
    pub outputs: Option<PathBuf>,
    /// Audit log directory.
    #[arg(long, default_value = "/var/lib/guard/audit")]
    pub audit_dir: PathBuf,
    /// Do not write an audit log.
    #[arg(long)]
    pub no_audit: bool,
    /// Deny every exec in this cgroup v2 directory (BPF LSM only). Repeatable.
    #[arg(long, value_name = "CGROUP_DIR")]
    pub deny_exec_cgroup: Vec<PathBuf>,
    /// Response configuration (a file or a directory of YAML files). Default: ./responses
    /// or /etc/guard/responses when present; none otherwise.
    #[arg(long, value_name = "PATH")]
    pub responses: Option<PathBuf>,
    /// Do not load any response configuration.
    #[arg(long, conflicts_with = "responses")]
    pub no_responses: bool,
    /// More policy files or directories (`- policy:` items; docs/policies.md), besides the
    /// policies in the `--rules` files. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// bpffs directory where policy enforcement is pinned (and adopted from on restart).
    #[arg(long, value_name = "DIR", default_value = crate::probes::DEFAULT_PIN_DIR)]
    pub pin_dir: PathBuf,
    /// Remove the pinned policy enforcement (programs, links, maps) under --pin-dir and exit.
    #[arg(long)]
    pub cleanup: bool,
    /// Trace every syscall and open, instead of only what the rules, policies and responses
    /// can use (the kernel prefilter; docs/performance.md). Also implied by --print-events.
    #[arg(long)]
    pub no_prefilter: bool,
    /// Do not reload when the rules, policy or response files change (SIGHUP still reloads).
    #[arg(long)]
    pub no_watch: bool,
    /// Serve Prometheus `/metrics` and `/healthz` on ADDR:PORT, or `off`.
    #[arg(long, value_name = "ADDR:PORT|off", default_value = "127.0.0.1:9464", value_parser = crate::metrics::parse_addr)]
    pub metrics_addr: crate::metrics::MetricsAddr,
    /// Configuration file (docs/configuration.md): every flag has a key; a flag given here
    /// beats the file. Default: /etc/guard/guard.yaml when present.
    #[arg(long, value_name = "FILE", env = crate::config::ENV)]
    pub config: Option<PathBuf>,
    /// Keep every capability after start (by default the agent drops all but the ones its
    /// responses and map updates need; docs/hardening.md).
    #[arg(long)]
    pub keep_caps: bool,
    /// Do not restrict the agent's own filesystem access with Landlock after start
    /// (docs/hardening.md).
    #[arg(long)]
    pub no_landlock: bool,
    /// Do not protect the agent from containers. By default, where BPF LSM is available,
    /// processes in containers cannot signal or ptrace the agent, read its config, policies or
    /// audit log, or touch its pins, in detect-only mode too (docs/self-protection.md).
    #[arg(long)]
    pub no_self_protect: bool,
}

/// Policy enforcement asked of the pipeline.
pub struct PolicySetup {
    pub policies: Vec<crate::policy::Policy>,
    pub detect_only: bool,
    pub pin_dir: PathBuf,
    pub hostname: String,
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Print decoded kernel records instead of enriched events.
    #[arg(long)]
    pub raw: bool,
}

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
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("guard-worker")
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn run(args: RunArgs) -> Result<ExitCode> {
    runtime()?.block_on(run_async(args))
}

pub fn record(args: RecordArgs) -> Result<ExitCode> {
    runtime()?.block_on(async move {
        let print = if args.raw {
            PrintEvents::Raw
        } else {
            PrintEvents::Model
        };
        let mut p = Pipeline::start(
            &args.capture,
            print,
            None,
            None,
            None,
            &[],
            false,
            None,
            Prefilter::none(),
            None,
        )?;
        p.pump(&args.capture).await
    })
}

pub(crate) fn default_responses() -> Option<PathBuf> {
    ["responses", "/etc/guard/responses"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
}

/// Where responses come from: `--responses`, else the default directory; none with
/// `--no-responses`.
fn responses_path(args: &RunArgs) -> Option<PathBuf> {
    if args.no_responses {
        return None;
    }
    args.responses.clone().or_else(default_responses)
}

fn responder_options(args: &RunArgs) -> crate::respond::Options {
    crate::respond::Options {
        detect_only: args.detect_only,
        docker_socket: args.capture.docker_socket.clone(),
        ..Default::default()
    }
}

/// The audit record of a policy set being put in force.
fn policy_load(
    files: Vec<FileHash>,
    policies: &[crate::policy::Policy],
    detect_only: bool,
    reload: bool,
) -> Payload {
    Payload::PolicyLoad(LoadInfo {
        files,
        // The effective mode: the report's rollout view lists detect-mode policies.
        items: policies
            .iter()
            .map(|p| LoadedItem {
                name: p.name.clone(),
                mode: if detect_only {
                    "detect".into()
                } else {
                    p.mode.as_str().into()
                },
            })
            .collect(),
        reload,
    })
}

/// The kernel prefilter for a rule set and policies (docs/performance.md).
fn derive_prefilter(engine: &Engine, policies: &[crate::policy::Policy]) -> Prefilter {
    Prefilter::derive(
        &engine.rules,
        &crate::prefilter::Needs {
            // Snapshots keep the recent events the agent receives: those the rules can use.
            everything: false,
            policy_open_paths: policies
                .iter()
                .flat_map(|p| p.open.deny_read.iter().chain(&p.open.deny_write))
                .map(|r| String::from_utf8_lossy(r.prefix_bytes()).into_owned())
                .collect(),
            policy_connect: policies
                .iter()
                .any(|p| !p.connect.deny.is_empty() || p.connect.allow.is_some()),
        },
    )
}

/// Whether a response takes snapshots (which need each process's recent events).
fn takes_snapshots(r: &Responder) -> bool {
    r.active().responses.iter().any(|x| {
        x.actions
            .iter()
            .any(|a| matches!(a, crate::respond::config::Action::Snapshot(_)))
    })
}

/// Whether the agent must kill after the fact: the fallback backend cannot deny opens and
/// connects, so their rules are enforced from the events.
fn kills_after_fact(
    backend: &crate::policy::kernel::Backend,
    policies: &[crate::policy::Policy],
) -> bool {
    *backend == crate::policy::kernel::Backend::SigkillFallback
        && policies.iter().any(|p| {
            let f = crate::policy::kernel::policy_flags(p, false);
            f & (pf::OPEN_RULES | pf::CONNECT_DENY | pf::CONNECT_ALLOW) != 0
        })
}

async fn run_async(args: RunArgs) -> Result<ExitCode> {
    if args.cleanup {
        let n = crate::probes::cleanup_pins(&args.pin_dir)?;
        eprintln!(
            "guard: removed {n} pinned object(s) under {}",
            args.pin_dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    let rule_paths = if args.rules.is_empty() {
        crate::commands::default_rule_paths()
    } else {
        args.rules.clone()
    };
    let sources = crate::reload::Sources {
        rules: rule_paths,
        policies: args.policy.clone(),
        responses: responses_path(&args),
        hostname: hostname.clone(),
    };
    let config = sources.load().map_err(|crate::reload::Invalid(errors)| {
        for e in &errors {
            eprintln!("{e}");
        }
        anyhow::anyhow!(
            "{} error(s) in the configuration; run `guard validate` for details",
            errors.len()
        )
    })?;
    let crate::reload::Config {
        engine,
        policies,
        responses,
        files,
        digest,
    } = config;
    let format = match args.format.as_deref() {
        Some("json") => Format::Json,
        Some(_) => Format::Text,
        None if std::io::IsTerminal::is_terminal(&std::io::stdout()) => Format::Text,
        None => Format::Json,
    };
    let channels = match &args.outputs {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_yaml::from_str::<Vec<ChannelConfig>>(&text).map_err(|e| {
                let at = e
                    .location()
                    .map(|l| format!(":{}:{}", l.line(), l.column()))
                    .unwrap_or_default();
                anyhow::anyhow!("{}{at}: {e}", path.display())
            })?
        }
        None => vec![ChannelConfig {
            name: None,
            min_priority: crate::alert::Priority::Debug,
            queue: 4096,
            kind: ChannelKind::Stdout { format },
        }],
    };
    let output_files = crate::harden::output_files(&channels);
    let outputs = Outputs::start(channels).context("starting outputs")?;
    let config_hash = crate::audit::sha256_hex(format!("{args:?}").as_bytes());
    let audit = if args.no_audit {
        None
    } else {
        let mut cfg = AuditConfig::new(&args.audit_dir);
        // A restart after a crash must not refuse to run; the loss is recorded at start.
        cfg.recover = true;
        let log = AuditLog::start(cfg, 65_536)
            .with_context(|| format!("opening the audit log in {}", args.audit_dir.display()))?;
        log.try_record(Payload::AgentStart(AgentInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            config_hash: config_hash.clone(),
            hostname: Some(hostname.clone()),
            mode: args.detect_only.then(|| "detect".into()),
            recovery: Vec::new(),
            reason: None,
        }));
        log.try_record(policy_load(files, &policies, args.detect_only, false));
        Some(Arc::new(log))
    };
    let responder = responses.map(|set| {
        info!(responses = set.responses.len(), "responses loaded");
        Responder::new(set, responder_options(&args), audit.clone())
    });
    info!(
        mode = if args.detect_only {
            "detect-only"
        } else {
            "enforce"
        },
        rules = engine
            .rules
            .rules
            .iter()
            .filter(|r| matches!(r.status, crate::rules::RuleStatus::Active))
            .count(),
        "guard starting"
    );
    let prefilter_on = !args.no_prefilter && args.print_events == PrintEvents::None;
    let prefilter = if prefilter_on {
        derive_prefilter(&engine, &policies)
    } else {
        Prefilter::none()
    };
    info!("kernel prefilter: {}", prefilter.summary());
    if let Some(addr) = args.metrics_addr.0 {
        tokio::spawn(crate::metrics::serve(addr));
    }
    let self_protect = (!args.no_self_protect).then(|| {
        let mut config = sources.rules.clone();
        config.extend(sources.policies.iter().cloned());
        config.extend(sources.responses.clone());
        config.extend(args.outputs.clone());
        crate::selfprotect::roots_for(
            config,
            (!args.no_audit).then_some(args.audit_dir.as_path()),
            [
                args.pin_dir.clone(),
                PathBuf::from(crate::respond::quarantine::PIN_DIR),
            ],
            std::fs::read_to_string("/proc/self/cgroup")
                .ok()
                .and_then(|text| {
                    let mount = crate::doctor::cgroup2_mount()?;
                    crate::selfprotect::agent_cgroup(&text, Path::new(&mount))
                }),
        )
    });
    let mut p = Pipeline::start(
        &args.capture,
        args.print_events,
        Some(engine),
        Some(outputs),
        audit,
        &args.deny_exec_cgroup,
        args.detect_only,
        (!policies.is_empty()).then(|| PolicySetup {
            policies,
            detect_only: args.detect_only,
            pin_dir: args.pin_dir.clone(),
            hostname: hostname.clone(),
        }),
        prefilter.clone(),
        self_protect,
    )?;
    p.keep_recent = responder.as_ref().is_some_and(takes_snapshots);
    p.responder = responder;
    p.config_hash = config_hash;
    // Least privilege (docs/hardening.md): everything that needs more is loaded by now.
    crate::harden::after_start(&args, &sources.rules, output_files, p.responder.as_ref()).await?;
    p.reload = Some(ReloadState {
        watch: !args.no_watch,
        sources,
        digest,
        generation: 1,
        detect_only: args.detect_only,
        responder_options: responder_options(&args),
        prefilter: prefilter_on.then_some(prefilter),
    });
    p.pump(&args.capture).await
}

/// Records handled before the pipeline lets other tasks run.
const DRAIN_BATCH: usize = 1024;

#[derive(Debug, Clone, Copy)]
enum Ring {
    Events,
    Decisions,
}

#[derive(Debug, PartialEq, Eq)]
enum Drained {
    /// The ring is empty.
    Empty,
    /// A batch was handled; more may be waiting.
    More,
    /// `--max-events` reached.
    Limit,
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

/// The workload of a cgroup path (relative to the cgroup2 mount) and whether it is fully
/// known (a container whose Docker metadata is pending is not).
fn cgroup_workload(
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

struct PolicyStage {
    runtime: crate::policy::kernel::PolicyRuntime,
    hostname: String,
    /// The fallback backend with open or connect rules: the agent kills after the fact.
    after_fact: bool,
    bindings: crate::policy::fallback::BindingCache,
}

impl PolicyStage {
    /// Whether an alert's rule applies to the workload, by the `rules:` selection of the policy
    /// that selects it (most specific wins); workloads without a policy get every rule.
    fn rules_apply(&self, w: &WorkloadInfo, alert: &Alert) -> bool {
        crate::policy::choose(&self.runtime.enforcer.policies, w)
            .is_none_or(|(_, p)| p.rules.applies(&alert.rule, &alert.tags))
    }
}

impl Pipeline {
    #[allow(clippy::too_many_arguments)]
    fn start(
        cap: &CaptureArgs,
        print: PrintEvents,
        engine: Option<Engine>,
        outputs: Option<Outputs>,
        audit: Option<Arc<AuditLog>>,
        deny_exec: &[PathBuf],
        detect_only: bool,
        policy: Option<PolicySetup>,
        prefilter: Prefilter,
        self_protect: Option<crate::selfprotect::Roots>,
    ) -> Result<Self> {
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
        })?;
        let backend = match &probes.exec_enforcement {
            ExecEnforcement::Lsm => "bpf-lsm",
            ExecEnforcement::Unavailable(_) => "none",
        };
        info!(
            exec_backend = backend,
            policy_backend = probes.policy_backend.as_ref().map_or("off", |b| b.as_str()),
            self_protect = probes.self_protect.as_str(),
            "probes attached"
        );
        crate::selfprotect::log_status(&probes.self_protect);
        let policy = match (policy, probes.policy_backend.clone()) {
            (Some(setup), Some(backend)) => {
                if let crate::policy::kernel::Backend::Unavailable(why) = &backend {
                    anyhow::bail!("policies given but no enforcement backend could attach: {why}");
                }
                let after_fact = kills_after_fact(&backend, &setup.policies);
                if after_fact {
                    info!(
                        "open and connect rules: the sigkill-fallback backend kills after the fact"
                    );
                }
                Some(PolicyStage {
                    runtime: crate::policy::kernel::PolicyRuntime::start(
                        setup.policies,
                        setup.detect_only,
                        backend,
                        &mut probes.ebpf,
                    )?,
                    hostname: setup.hostname,
                    after_fact,
                    bindings: Default::default(),
                })
            }
            _ => None,
        };
        for dir in deny_exec {
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
            responder: None,
            keep_recent: false,
            seen: 0,
            record_buf: Vec::new(),
            policy,
            reload: None,
            config_hash: String::new(),
        })
        .and_then(|mut p| {
            if p.policy.is_some() {
                let n = p.rescan_policies()?;
                info!(cgroups = n, "cgroups under policy");
            }
            Ok(p)
        })
    }

    /// Binds cgroups to policies: every cgroup under the cgroup2 mount, with the workload the
    /// container table knows for it (image, name, labels from Docker; the cgroup path for
    /// cgroups that are not containers). Returns the number of cgroups newly bound.
    fn rescan_policies(&mut self) -> Result<usize> {
        let Some(stage) = self.policy.as_mut() else {
            return Ok(0);
        };
        let containers = &self.capture.state.containers;
        let mut info = |path: &str| cgroup_workload(containers, path);
        stage.runtime.rescan(&mut self.probes.ebpf, &mut info)
    }

    /// Reads and validates the configuration off the pipeline thread; the result comes back
    /// on `done`.
    fn request_reload(&mut self, trigger: Trigger, done: &tokio::sync::mpsc::Sender<Loaded>) {
        let Some(r) = &self.reload else {
            warn!("{}: nothing to reload (guard record)", trigger.as_str());
            return;
        };
        info!(
            trigger = trigger.as_str(),
            "reading the configuration again"
        );
        let sources = r.sources.clone();
        let done = done.clone();
        tokio::task::spawn_blocking(move || {
            let loaded = sources.load();
            let _ = done.blocking_send((trigger, loaded));
        });
    }

    /// Puts a loaded configuration in force, or reports why not (stderr, audit, metrics).
    fn finish_reload(&mut self, (trigger, loaded): Loaded) {
        let result = match loaded {
            Err(crate::reload::Invalid(errors)) => Err(errors),
            Ok(cfg) => {
                if trigger == Trigger::FileChange
                    && self.reload.as_ref().is_some_and(|r| r.digest == cfg.digest)
                {
                    tracing::debug!("configuration files unchanged; nothing to reload");
                    return;
                }
                self.apply_config(cfg).map_err(|e| vec![format!("{e:#}")])
            }
        };
        match result {
            Ok(generation) => {
                METRICS.reload(true);
                METRICS.set_policy_generation(generation);
                eprintln!(
                    "guard: reloaded ({}): generation {generation}",
                    trigger.as_str()
                );
            }
            Err(errors) => {
                METRICS.reload(false);
                eprintln!(
                    "guard: reload ({}) refused, the configuration in force is unchanged: {} error(s)",
                    trigger.as_str(),
                    errors.len()
                );
                for e in &errors {
                    eprintln!("{e}");
                }
                if let Some(a) = &self.audit {
                    a.try_record(Payload::ReloadFailed(crate::audit::record::ReloadFailure {
                        trigger: trigger.as_str().into(),
                        errors,
                    }));
                }
            }
        }
    }

    /// Swaps in a validated configuration: rules, policies (kernel maps included, see
    /// `PolicyRuntime::reload`), responses and the kernel prefilter. The prefilter is widened
    /// first and narrowed last, so no event a rule of either set needs is filtered out. On
    /// error before the policies switched, everything stays as it was. Returns the new
    /// generation.
    fn apply_config(&mut self, cfg: crate::reload::Config) -> Result<u64> {
        let Some(r) = self.reload.as_mut() else {
            anyhow::bail!("no reload state");
        };
        if self.policy.is_none() && !cfg.policies.is_empty() {
            anyhow::bail!(
                "the new configuration has {} policies, but guard started without any: the policy \
                 programs are loaded at start; restart guard to enforce them",
                cfg.policies.len()
            );
        }
        let next_prefilter = r
            .prefilter
            .as_ref()
            .map(|_| derive_prefilter(&cfg.engine, &cfg.policies));
        let wide = Prefilter::none();
        if let Some(old) = &r.prefilter {
            self.probes.replace_prefilter(old, &wide)?;
        }
        if let Some(stage) = self.policy.as_mut() {
            let containers = &self.capture.state.containers;
            let mut info = |path: &str| cgroup_workload(containers, path);
            let mut workload = |id: &str| {
                let id = crate::state::container::ContainerId::parse(id)?;
                let meta = containers.lookup(&id);
                (meta.status == crate::state::container::MetaStatus::Ready)
                    .then(|| WorkloadInfo::from_container(&meta, None))
            };
            let after_fact = kills_after_fact(&stage.runtime.enforcer.backend, &cfg.policies);
            if let Err(e) = stage.runtime.reload(
                cfg.policies.clone(),
                &mut self.probes.ebpf,
                &mut info,
                &mut workload,
            ) {
                if let Some(old) = &r.prefilter {
                    self.probes.replace_prefilter(&wide, old)?;
                }
                return Err(e.context("installing the new policies"));
            }
            stage.after_fact = after_fact;
            stage.bindings = Default::default();
        }
        self.engine = Some(cfg.engine);
        match (cfg.responses, &self.responder) {
            (Some(set), Some(resp)) => {
                if let Some(w) = resp.replace(set) {
                    warn!("{w}");
                }
            }
            (Some(set), None) => {
                self.responder = Some(Responder::new(
                    set,
                    r.responder_options.clone(),
                    self.audit.clone(),
                ));
            }
            (None, _) => {}
        }
        self.keep_recent = self.responder.as_ref().is_some_and(takes_snapshots);
        if let Some(next) = next_prefilter {
            self.probes.replace_prefilter(&wide, &next)?;
            info!("kernel prefilter: {}", next.summary());
            r.prefilter = Some(next);
        }
        if let Some(a) = &self.audit {
            a.try_record(policy_load(cfg.files, &cfg.policies, r.detect_only, true));
        }
        r.digest = cfg.digest;
        r.generation += 1;
        info!(
            generation = r.generation,
            policies = cfg.policies.len(),
            "configuration reloaded"
        );
        Ok(r.generation)
    }

    /// A kernel decision (deny, would-deny, kill): an alert through the outputs (and the
    /// responder) and an audit record of kind `decision`.
    fn on_decision(&mut self, ev: &events::Event, d: &events::DecisionEvent, seen_at: Instant) {
        if d.self_protect.is_some() {
            return self.on_self_protect(ev, d, seen_at);
        }
        let Some(stage) = &self.policy else {
            warn!(
                policy_id = d.policy_id,
                "kernel decision without a policy stage; ignored"
            );
            return;
        };
        METRICS.decision(d.op, d.verdict);
        let c = ev.common();
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
        let start_ns = self
            .capture
            .state
            .procs
            .get(Pid(c.pid))
            .map_or(0, |p| p.start_time_ns);
        let ctx = AlertContext {
            pid: Some(c.pid),
            process_start_boot_ns: (start_ns != 0).then(|| self.clock.boot_ns(start_ns)),
            cgroup_id: Some(c.cgroup_id.0),
            workload,
            policy: Some(policy),
            policy_detect,
            event_time: Some(seen_at),
        };
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
    fn on_self_protect(&mut self, ev: &events::Event, d: &events::DecisionEvent, seen_at: Instant) {
        METRICS.decision(d.op, d.verdict);
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
        let alert = Arc::new(alert);
        if let Some(o) = &self.outputs {
            o.emit(&alert);
        }
        if let Some(r) = &self.responder {
            r.submit(alert, ctx);
        }
    }

    /// Re-walks what self-protection covers (a rotated audit file, new pins).
    fn refresh_self_protect(&mut self) {
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

    /// Handles one ring-buffer record.
    fn handle(&mut self, raw: &[u8], out: &mut impl Write) -> Result<()> {
        let seen_at = Instant::now();
        if let Some(kind) = raw.get(..2) {
            METRICS.received(u16::from_ne_bytes([kind[0], kind[1]]));
        }
        let ev = match events::decode(raw, &self.clock) {
            Ok(ev) => ev,
            Err(e) => {
                DECODE_ERRORS.fetch_add(1, Ordering::Relaxed);
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
    fn on_model(
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

    /// The fallback backend's open and connect rules: a completed open or connect that the
    /// cgroup's policy denies kills the process (enforce) or is reported (detect), through
    /// the same decision path as the kernel's records.
    fn enforce_after_fact(&mut self, ev: &events::Event, model: &model::Event, seen_at: Instant) {
        use crate::policy::fallback as fb;
        let (c, is_open) = match ev {
            events::Event::Open(o) if o.common.ret >= 0 => (&o.common, true),
            events::Event::Connect(k) if fb::connect_attempted(k.common.ret) => (&k.common, false),
            _ => return,
        };
        let Some(stage) = self.policy.as_mut() else {
            return;
        };
        let ebpf = &self.probes.ebpf;
        let Some(binding) = stage.bindings.get(c.cgroup_id.0, seen_at, |id| {
            let map = ebpf.map(guard_ebpf::names::POLICY_CGROUPS)?;
            aya::maps::HashMap::<_, u64, guard_ebpf::CgroupPolicy>::try_from(map)
                .ok()?
                .get(&id, 0)
                .ok()
        }) else {
            return;
        };
        let Some(policy) = stage.runtime.enforcer.policy_by_id(binding.policy_id) else {
            return;
        };
        let mut d = events::DecisionEvent {
            common: c.clone(),
            policy_id: binding.policy_id,
            op: if is_open { "open" } else { "connect" },
            verdict: "would_deny",
            reason: "",
            path: events::Captured::default(),
            access: None,
            dest: None,
            inode: None,
            self_protect: None,
        };
        let violation = match ev {
            events::Event::Open(o) if fb::wants_open(&binding) => {
                let Some(path) = model.fd.as_ref().map(|f| f.name.as_str()) else {
                    return;
                };
                let (r, w) = fb::open_access(o.flags);
                d.access = Some(fb::access_name(r, w));
                d.path.text = path.to_owned();
                fb::check_open(policy, path, o.flags)
            }
            events::Event::Connect(k) if fb::wants_connect(&binding) => {
                let Some(dest) = k.addr.socket_addr() else {
                    return;
                };
                d.dest = Some(dest);
                fb::check_connect(policy, dest)
            }
            _ => return,
        };
        let Some(v) = violation else {
            return;
        };
        d.reason = v.as_str();
        if fb::enforces(&binding) {
            let start =
                (model.proc.start_time != 0).then(|| self.clock.boot_ns(model.proc.start_time));
            d.verdict = match kill_verified(c.pid, start) {
                Ok(()) => "kill",
                Err(e) => {
                    warn!(pid = c.pid, "policy kill after {}: {e}", d.op);
                    "kill_failed"
                }
            };
        }
        self.on_decision(ev, &d, seen_at);
    }

    /// What the response engine needs besides the alert: the process (with its start time,
    /// so a reused PID is never acted on) and the workload.
    fn alert_context(
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

    fn alert(&self, alert: Alert, ctx: AlertContext) {
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
    fn drain(&mut self, from: Ring, limit: Option<u64>, batch: usize) -> Result<Drained> {
        if self.print == PrintEvents::None {
            return self.drain_into(from, limit, batch, &mut std::io::sink());
        }
        let stdout = std::io::stdout();
        let mut out = stdout.lock();
        self.drain_into(from, limit, batch, &mut out)
    }

    fn drain_into(
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
    fn prune_state(&mut self) {
        let st = &mut self.capture.state;
        // Event time runs behind the wall clock when the pipeline has a backlog: stay 5 s
        // behind it, so that a backlog's events still find the exited processes they refer to.
        st.procs
            .sweep(wall_now_ns().saturating_sub(Duration::from_secs(5).as_nanos() as u64));
        let (n, gone) = st.cgroups.prune_removed(&st.fs);
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

    /// Copies the kernel's counters and the state tables' sizes into the metrics.
    fn kernel_metrics(&self) {
        let st = &self.capture.state;
        METRICS.set_tracked(st.procs.len(), st.cgroups.len(), st.containers.len());
        METRICS.set_kernel(
            &self.probes.drops().unwrap_or_default(),
            DECODE_ERRORS.load(Ordering::Relaxed),
            self.probes.unpaired_syscalls().unwrap_or(0),
            (
                self.probes.prefiltered_opens().unwrap_or(0),
                self.probes.prefiltered_connects().unwrap_or(0),
            ),
        );
    }

    fn report_drops(&self, last: &mut DropReport, always: bool) -> Result<()> {
        let now = DropReport::read(&self.probes)?;
        let outputs = self
            .outputs
            .as_ref()
            .map(|o| o.take_drop_counts())
            .unwrap_or_default();
        if now == *last && outputs.is_empty() && !always {
            return Ok(());
        }
        if self.print != PrintEvents::None && (now != *last || always) {
            now.print(&mut std::io::stdout().lock())?;
        }
        if now.total() > last.total() {
            warn!(total = now.total(), "events lost: {:?}", now.by_kind);
        }
        if !outputs.is_empty() {
            warn!("alerts lost by outputs since the last report: {outputs:?}");
        }
        if let Some(a) = &self.audit
            && let Some(summary) = drop_summary(&now, last, outputs, always)
        {
            a.try_record(Payload::DropSummary(summary));
        }
        *last = now;
        Ok(())
    }

    async fn pump(&mut self, cap: &CaptureArgs) -> Result<ExitCode> {
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
        let mut tick = tokio::time::interval(Duration::from_secs(cap.drop_report_secs.max(1)));
        // Safety net for binding new cgroups (the kernel binds Docker containers at
        // cgroup_mkdir when their create event came first; see docs/policies.md).
        let mut policy_tick = tokio::time::interval(Duration::from_secs(1));
        let mut metrics_tick = tokio::time::interval(Duration::from_secs(1));
        // Every few seconds: exited processes past their grace, and entries of removed cgroups
        // (and of containers nothing else knows), are forgotten.
        let mut prune_tick = tokio::time::interval(Duration::from_secs(5));
        // New files under what self-protection covers (audit rotation, new pins) are protected
        // within this period (docs/self-protection.md).
        let mut self_protect_tick = tokio::time::interval(Duration::from_secs(1));
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
        loop {
            tokio::select! {
                _ = tick.tick() => self.report_drops(&mut last, false)?,
                _ = metrics_tick.tick() => self.kernel_metrics(),
                _ = prune_tick.tick() => self.prune_state(),
                _ = self_protect_tick.tick(), if self_protect => self.refresh_self_protect(),
                _ = policy_tick.tick(), if has_policy => {
                    if let Err(e) = self.rescan_policies() {
                        warn!("binding cgroups to policies: {e:#}");
                    }
                }
                guard = self.decisions.readable_mut() => {
                    guard?.clear_ready();
                    while self.drain(Ring::Decisions, None, DRAIN_BATCH)? == Drained::More {}
                }
                guard = self.ring.readable_mut(), if !backlog => {
                    guard?.clear_ready();
                    match self.drain(Ring::Events, cap.max_events, DRAIN_BATCH)? {
                        Drained::Limit => break,
                        Drained::More => backlog = true,
                        Drained::Empty => {}
                    }
                }
                // A full batch was handled: let the other tasks run, then go on.
                () = tokio::task::yield_now(), if backlog => {
                    match self.drain(Ring::Events, cap.max_events, DRAIN_BATCH)? {
                        Drained::Limit => break,
                        Drained::More => {}
                        Drained::Empty => backlog = false,
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
        // Outputs first, so that alerts a stuck channel still held are in the final summary.
        if let Some(o) = self.outputs.as_mut() {
            o.close(Duration::from_secs(2));
        }
        self.report_drops(&mut last, true)?;
        self.outputs.take();
        info!(
            events = self.seen,
            decode_errors = DECODE_ERRORS.load(Ordering::Relaxed),
            prefiltered_opens = self.probes.prefiltered_opens().unwrap_or(0),
            prefiltered_connects = self.probes.prefiltered_connects().unwrap_or(0),
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

/// The wall clock in ns since the epoch, the time base of events.
fn wall_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// Time since `wall_ns` (an event's kernel timestamp), zero if the clock went back.
fn latency_since(wall_ns: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    Duration::from_nanos(now.saturating_sub(wall_ns))
}

/// SIGKILL through a pidfd, after checking the pid was not reused and is not protected.
fn kill_verified(pid: u32, start_boot_ns: Option<u64>) -> Result<(), String> {
    let h = crate::respond::process::ProcessHandle::open(pid, start_boot_ns)
        .map_err(|e| e.to_string())?;
    if let Some(why) = h.rail() {
        return Err(why);
    }
    h.kill().map_err(|e| e.to_string())
}

/// The workload (container or host) an event's task belongs to.
fn workload_of(state: &mut State, c: &events::Common) -> WorkloadInfo {
    let cgroup_path = state.cgroups.get(c.cgroup_id).map(|i| i.path.to_string());
    match state.container_of(c.cgroup_id, Some(Pid(c.pid))) {
        Some(id) => WorkloadInfo::from_container(&state.container_meta(&id), cgroup_path),
        None => WorkloadInfo::host(cgroup_path),
    }
}

/// Kernel drop counters plus userspace decode failures, reported as a `drops` JSON line.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DropReport {
    /// Records the kernel could not deliver (ring buffer full), by record kind.
    pub by_kind: std::collections::BTreeMap<String, u64>,
    /// Records received but malformed.
    pub decode_errors: u64,
    /// Program runs the kernel skipped (recursion protection), by program: each a lost event.
    pub kernel_missed: std::collections::BTreeMap<String, u64>,
    /// Traced syscalls whose entry was not recorded, so no record could be built.
    pub syscall_unpaired: u64,
}

/// The `drop_summary` for the audit log. The kernel's counters are cumulative; a summary states
/// what was lost since the previous one (`last`), so that a report can add summaries up. `None`
/// when nothing was lost, unless `always` (the final summary at stop is always written).
fn drop_summary(
    now: &DropReport,
    last: &DropReport,
    outputs: std::collections::BTreeMap<String, u64>,
    always: bool,
) -> Option<DropSummary> {
    let before = last.kernel_counts();
    let ringbuf: std::collections::BTreeMap<String, u64> = now
        .kernel_counts()
        .into_iter()
        .filter_map(|(k, n)| {
            let d = n.saturating_sub(before.get(&k).copied().unwrap_or(0));
            (d > 0).then_some((k, d))
        })
        .collect();
    if ringbuf.is_empty() && outputs.is_empty() && !always {
        return None;
    }
    Some(DropSummary {
        ringbuf,
        outputs,
        ..Default::default()
    })
}

impl DropReport {
    pub fn read(probes: &Probes) -> Result<Self> {
        Ok(Self {
            by_kind: probes
                .drops()?
                .into_iter()
                .map(|(k, n)| (k.name().to_owned(), n))
                .collect(),
            decode_errors: DECODE_ERRORS.load(Ordering::Relaxed),
            kernel_missed: probes
                .missed_runs()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .collect(),
            syscall_unpaired: probes.unpaired_syscalls()?,
        })
    }

    /// Every kernel-side loss by cause: ring buffer full per kind, skipped program runs, and
    /// syscalls without a recorded entry.
    pub fn kernel_counts(&self) -> std::collections::BTreeMap<String, u64> {
        let mut m = self.by_kind.clone();
        for (prog, n) in &self.kernel_missed {
            m.insert(format!("missed_run:{prog}"), *n);
        }
        m.insert("syscall_unpaired".to_owned(), self.syscall_unpaired);
        m
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum::<u64>()
            + self.decode_errors
            + self.kernel_missed.values().sum::<u64>()
            + self.syscall_unpaired
    }

    fn print(&self, out: &mut impl Write) -> Result<()> {
        serde_json::to_writer(
            &mut *out,
            &serde_json::json!({"kind": "drops", "by_kind": self.by_kind, "decode_errors": self.decode_errors, "kernel_missed": self.kernel_missed, "syscall_unpaired": self.syscall_unpaired, "total": self.total()}),
        )?;
        out.write_all(b"\n")?;
        out.flush()?;
        Ok(())
    }
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

#[cfg(test)]
mod drop_tests {
    use super::*;

    fn report(exec: u64, unpaired: u64) -> DropReport {
        DropReport {
            by_kind: [("exec".to_string(), exec)].into(),
            syscall_unpaired: unpaired,
            ..Default::default()
        }
    }

    #[test]
    fn drop_summaries_state_what_was_lost_since_the_previous_one() {
        // Cumulative kernel counters 5, then 12, then still 12: the summaries say 5, then 7,
        // then nothing (so a report adding them up states 12, not 29).
        let first = drop_summary(
            &report(5, 0),
            &DropReport::default(),
            Default::default(),
            false,
        )
        .expect("a loss");
        assert_eq!(first.ringbuf, [("exec".to_string(), 5)].into());
        let second =
            drop_summary(&report(12, 2), &report(5, 0), Default::default(), false).expect("loss");
        assert_eq!(
            second.ringbuf,
            [("exec".to_string(), 7), ("syscall_unpaired".to_string(), 2)].into()
        );
        assert_eq!(
            drop_summary(&report(12, 2), &report(12, 2), Default::default(), false),
            None
        );
        // An output that lost alerts is reported even when the kernel lost nothing new.
        let out = drop_summary(
            &report(12, 2),
            &report(12, 2),
            [("http".to_string(), 3)].into(),
            false,
        )
        .expect("output loss");
        assert!(out.ringbuf.is_empty());
        assert_eq!(out.outputs, [("http".to_string(), 3)].into());
        assert_eq!(out.total(), 3);
        // The final summary is written even when it is empty.
        let fin =
            drop_summary(&report(12, 2), &report(12, 2), Default::default(), true).expect("final");
        assert_eq!(fin.total(), 0);
    }
}
