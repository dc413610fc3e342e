//! `guard respond`: the response engine on its own, fed by Falco over HTTP.
//!
//! Exit codes: 0 success; 1 error (bad response files, bind failure); 2 usage.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::signal::unix::SignalKind;

use crate::{
    audit::{AuditConfig, AuditLog},
    respond::{
        self, Options, Responder,
        falco::{IntakeOptions, start},
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

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
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
