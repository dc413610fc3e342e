//! `guard respond` (the response engine on its own, fed by Falco over HTTP) and
//! `guard quarantine lift|list`.
//!
//! Exit codes: 0 success; 1 error (bad response files, bind failure, no such quarantine with
//! `--strict`); 2 usage.

use std::{
    net::SocketAddr, os::unix::fs::MetadataExt, path::PathBuf, process::ExitCode, sync::Arc,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use tokio::signal::unix::SignalKind;

use crate::{
    audit::{AuditConfig, AuditLog},
    respond::{
        self, Options, Responder,
        container::cgroup_v2_dir,
        falco::{IntakeOptions, start},
        quarantine::{PIN_DIR, Quarantine},
    },
};

#[derive(Debug, Args)]
pub struct RespondArgs {
    /// Response file or directory of `*.yaml` files.
    #[arg(long, value_name = "PATH", default_value = "responses")]
    pub responses: PathBuf,
    /// Serve the Falco intake (`POST /falco`) on this address.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:2802")]
    pub serve_falco: SocketAddr,
    /// Every action becomes a recorded dry run.
    #[arg(long)]
    pub detect_only: bool,
    /// Audit log directory (outcomes, snapshots). Without it, outcomes are only logged to
    /// stderr and `snapshot` actions fail.
    #[arg(long, value_name = "DIR")]
    pub audit_dir: Option<PathBuf>,
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 256 * 1024)]
    pub max_body: usize,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Lift the network quarantine of a container (name, id or id prefix).
    Lift(LiftArgs),
    /// List the cgroups in quarantine.
    List,
}

#[derive(Debug, Args)]
pub struct LiftArgs {
    /// Container name, full id, or an id prefix of at least 12 hex digits.
    pub container: Option<String>,
    /// Lift by cgroup v2 id instead (as `guard quarantine list` shows).
    #[arg(long, conflicts_with = "container")]
    pub cgroup_id: Option<u64>,
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub docker_socket: PathBuf,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

pub fn respond(args: RespondArgs) -> Result<ExitCode> {
    let set = match respond::load_responses(&args.responses) {
        Ok(s) => s,
        Err(diags) => {
            for d in diags {
                eprintln!("{d}");
            }
            bail!("invalid response configuration");
        }
    };
    runtime()?.block_on(async move {
        let audit = match &args.audit_dir {
            Some(dir) => Some(Arc::new(
                AuditLog::start(AuditConfig::new(dir), 4096).context("opening the audit log")?,
            )),
            None => None,
        };
        let config_hash = crate::audit::sha256_hex(
            set.files
                .iter()
                .map(|(p, h)| format!("{}={h}\n", p.display()))
                .collect::<String>()
                .as_bytes(),
        );
        let info = |reason: Option<String>| crate::audit::AgentInfo {
            version: env!("CARGO_PKG_VERSION").into(),
            config_hash: config_hash.clone(),
            mode: args.detect_only.then(|| "detect".into()),
            reason,
            ..Default::default()
        };
        if let Some(a) = &audit {
            a.record(crate::audit::Payload::AgentStart(info(None)))
                .await;
        }
        let responder = Responder::new(
            set,
            Options {
                detect_only: args.detect_only,
                docker_socket: args.docker_socket.clone(),
                ..Default::default()
            },
            audit.clone(),
        );
        let intake = start(
            args.serve_falco,
            responder.clone(),
            IntakeOptions {
                max_body: args.max_body,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("binding the Falco intake on {}", args.serve_falco))?;
        tracing::info!(
            addr = %intake.local_addr,
            responses = responder.active().responses.len(),
            detect_only = args.detect_only,
            "response engine serving Falco alerts on POST /falco"
        );
        eprintln!("guard: ready (falco intake on {})", intake.local_addr);
        let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
        let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        intake.stop();
        // Let running actions finish their audit records.
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(responder);
        if let Some(a) = &audit {
            a.record(crate::audit::Payload::AgentStop(info(Some(
                "signal".into(),
            ))))
            .await;
        }
        if let Some(a) = audit.and_then(|a| Arc::try_unwrap(a).ok()) {
            a.close();
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The cgroup v2 id of a container given by name, id or id prefix.
async fn container_cgroup_id(container: &str, socket: &std::path::Path) -> Result<u64> {
    let dir = match cgroup_v2_dir(container) {
        Some(d) => d,
        None => {
            // A name: ask Docker for the id.
            let docker = bollard::Docker::connect_with_unix(
                &socket.to_string_lossy(),
                5,
                bollard::API_DEFAULT_VERSION,
            )?
            .negotiate_version()
            .await
            .context("docker daemon unreachable: give the container id, or --cgroup-id")?;
            let info = docker
                .inspect_container(
                    container,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
                .with_context(|| format!("no container {container:?}"))?;
            let id = info.id.context("docker returned no container id")?;
            cgroup_v2_dir(&id)
                .with_context(|| format!("no cgroup v2 directory for container {id}"))?
        }
    };
    Ok(std::fs::metadata(&dir)
        .with_context(|| format!("stat {}", dir.display()))?
        .ino())
}

pub fn quarantine(cmd: QuarantineCommand) -> Result<ExitCode> {
    let pin = PathBuf::from(PIN_DIR);
    match cmd {
        QuarantineCommand::List => {
            if !pin.join(respond::quarantine::MAP_PIN).exists() {
                eprintln!("guard: nothing quarantined (no pinned quarantine map)");
                return Ok(ExitCode::SUCCESS);
            }
            let mut q = Quarantine::open_pinned(&pin)?;
            for (cg, until) in q.list()? {
                let until = if until == 0 {
                    "until lifted".to_string()
                } else {
                    let left = until.saturating_sub(respond::process::boot_ns_now());
                    format!("{} s left", left / 1_000_000_000)
                };
                println!("{cg}\t{until}");
            }
            Ok(ExitCode::SUCCESS)
        }
        QuarantineCommand::Lift(a) => {
            let cg = match (a.cgroup_id, &a.container) {
                (Some(id), _) => id,
                (None, Some(c)) => runtime()?.block_on(container_cgroup_id(c, &a.docker_socket))?,
                (None, None) => bail!("give a container or --cgroup-id"),
            };
            let mut q = Quarantine::open_pinned(&pin)
                .context("no quarantine state pinned (nothing was ever quarantined?)")?;
            if q.remove(cg)? {
                eprintln!("guard: quarantine lifted (cgroup {cg})");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("guard: cgroup {cg} was not in quarantine");
                Ok(ExitCode::from(1))
            }
        }
    }
}
