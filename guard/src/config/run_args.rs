//! The arguments of `guard run` and `guard record`. They live below the CLI because the agent
//! (which runs with them), `harden` (which derives its grants from them) and the config file
//! (whose keys are `run`'s long flags) all read them.

use std::path::PathBuf;

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
    /// Docker API socket used for container metadata (Docker, or Podman's compatible
    /// `podman system service`). Default: the first of /var/run/docker.sock,
    /// /run/podman/podman.sock that exists, looked for again while none does.
    #[arg(long, value_name = "SOCKET")]
    pub docker_socket: Option<PathBuf>,
    /// Kubernetes CRI runtime socket (containerd, CRI-O) used for container and pod
    /// metadata. Default: the first of /run/containerd/containerd.sock, /run/crio/crio.sock
    /// that exists, looked for again while none does. A containerd socket is also followed
    /// through containerd's own API. `off` disables both clients.
    #[arg(long, value_name = "SOCKET|off")]
    pub cri_socket: Option<PathBuf>,
    /// Podman's events log (its `file` events backend), followed for container creation so a
    /// policy binds before the container starts. Default: /run/libpod/events/events.log,
    /// looked for again while absent. `off` disables it.
    #[arg(long, value_name = "FILE|off")]
    pub podman_events_file: Option<PathBuf>,
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
    /// Keep per-container summaries in the audit log for `guard policy learn` (docs/policies.md,
    /// "Rollout"). The kernel prefilter then passes every write and connect.
    #[arg(long)]
    pub learn: bool,
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
    /// Policy enforcement backend: `auto` picks bpf-lsm, else fanotify, else sigkill-fallback
    /// (docs/policies.md "Backends"); naming one makes its absence an error.
    #[arg(long, value_enum, env = "GUARD_POLICY_BACKEND", default_value_t = crate::policy::backend::Choice::Auto)]
    pub policy_backend: crate::policy::backend::Choice,
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
    /// Do not append the container fields (container.id, container.name, container.image,
    /// repository and tag) to the alerts of containerized processes, as Falco's
    /// `append_output` does by default (docs/rules.md "Container fields").
    #[arg(long)]
    pub no_container_fields: bool,
}

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    #[command(flatten)]
    pub capture: CaptureArgs,
    /// Print decoded kernel records instead of enriched events.
    #[arg(long)]
    pub raw: bool,
}

impl RunArgs {
    /// Where responses come from: `--responses`, else the default directory; none with
    /// `--no-responses`.
    pub fn responses_path(&self) -> Option<PathBuf> {
        if self.no_responses {
            return None;
        }
        self.responses.clone().or_else(default_responses)
    }
}

/// `./responses` or `/etc/guard/responses`, the first that exists.
pub fn default_responses() -> Option<PathBuf> {
    ["responses", "/etc/guard/responses"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_dir())
}
