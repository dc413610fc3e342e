//! `guard respond`: the response engine on its own, fed by Falco over HTTP.
//!
//! The intake authenticates its senders: mutual TLS (`--tls-cert`, `--tls-key`,
//! `--client-ca`) or a unix socket (`--serve-falco unix:PATH`, mode 0660, root and
//! `--socket-group`). Plain HTTP only with `--insecure-intake`, which warns.
//!
//! Exit codes: 0 success; 1 error (bad response files, bind failure, no authentication); 2 usage.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::signal::unix::SignalKind;

use crate::{
    audit::{AuditConfig, AuditLog},
    respond::{
        self, Options, Responder,
        falco::{IntakeOptions, Listen, STATUS_DIR, StatusFile, start},
        intake_tls::{IntakeTls, TlsFiles},
    },
};

/// `--serve-falco`: a TCP address or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn parse_intake_addr(s: &str) -> Result<IntakeAddr, String> {
    if let Some(p) = s.strip_prefix("unix:") {
        let p = PathBuf::from(p);
        if !p.is_absolute() {
            return Err(format!("{s:?}: the socket path must be absolute"));
        }
        return Ok(IntakeAddr::Unix(p));
    }
    s.parse()
        .map(IntakeAddr::Tcp)
        .map_err(|_| format!("{s:?}: expected ADDR:PORT (e.g. 127.0.0.1:2802) or unix:/PATH"))
}

#[derive(Debug, Args)]
pub struct RespondArgs {
    /// Response file or directory of `*.yaml` files.
    #[arg(long, value_name = "PATH", default_value = "responses")]
    pub responses: PathBuf,
    /// Serve the Falco intake (`POST /falco`) on this TCP address (mutual TLS) or unix socket.
    #[arg(long, value_name = "ADDR|unix:PATH", default_value = "127.0.0.1:2802", value_parser = parse_intake_addr)]
    pub serve_falco: IntakeAddr,
    /// The intake's server certificate chain (PEM).
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "client_ca"])]
    pub tls_cert: Option<PathBuf>,
    /// The intake's private key (PEM).
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "client_ca"])]
    pub tls_key: Option<PathBuf>,
    /// Only clients with a certificate signed by this CA (PEM) may post alerts.
    #[arg(long, value_name = "PEM", requires_all = ["tls_cert", "tls_key"])]
    pub client_ca: Option<PathBuf>,
    /// Group (name or gid) that may open the unix socket, besides root.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,
    /// Serve plain HTTP on a TCP address: anyone who can connect triggers responses.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "client_ca"])]
    pub insecure_intake: bool,
    /// Disruptive actions (kill, stop, pause, quarantine, exec) become recorded dry runs;
    /// notify and snapshot still run.
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

fn resolve_group(g: &str) -> Result<u32> {
    if let Ok(n) = g.parse::<u32>() {
        return Ok(n);
    }
    match nix::unistd::Group::from_name(g) {
        Ok(Some(gr)) => Ok(gr.gid.as_raw()),
        Ok(None) => bail!("--socket-group {g:?}: no such group"),
        Err(e) => bail!("--socket-group {g:?}: {e}"),
    }
}

/// How the intake listens, from the flags; refuses an unauthenticated TCP intake unless
/// `--insecure-intake` says so.
fn listen_of(args: &RespondArgs) -> Result<Listen> {
    match &args.serve_falco {
        IntakeAddr::Unix(path) => {
            if args.tls_cert.is_some() || args.insecure_intake {
                bail!(
                    "--serve-falco unix:...: the socket's permissions authenticate; drop --tls-*/--insecure-intake"
                );
            }
            let group = args
                .socket_group
                .as_deref()
                .map(resolve_group)
                .transpose()?;
            Ok(Listen::Unix {
                path: path.clone(),
                group,
            })
        }
        IntakeAddr::Tcp(addr) => {
            if args.socket_group.is_some() {
                bail!("--socket-group applies to a unix: socket only");
            }
            match (&args.tls_cert, &args.tls_key, &args.client_ca) {
                (Some(cert), Some(key), Some(ca)) => {
                    let tls = IntakeTls::load(&TlsFiles {
                        cert: cert.clone(),
                        key: key.clone(),
                        client_ca: ca.clone(),
                    })?;
                    Ok(Listen::Tls {
                        addr: *addr,
                        tls: Arc::new(tls),
                    })
                }
                _ if args.insecure_intake => Ok(Listen::Insecure { addr: *addr }),
                _ => bail!(
                    "the Falco intake must authenticate its senders: give --tls-cert, --tls-key and --client-ca (mutual TLS; integration/intake-certs.sh makes a test set), or --serve-falco unix:/run/guard/falco.sock; plain HTTP only with --insecure-intake"
                ),
            }
        }
    }
}

pub fn respond(args: RespondArgs) -> Result<ExitCode> {
    let listen = listen_of(&args)?;
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
        let auth = listen.auth();
        let intake = start(
            listen,
            responder.clone(),
            IntakeOptions {
                max_body: args.max_body,
                ..Default::default()
            },
        )
        .await
        .with_context(|| format!("binding the Falco intake on {:?}", args.serve_falco))?;
        let status = StatusFile::write(std::path::Path::new(STATUS_DIR), &intake.describe(), auth);
        if let Err(e) = &status {
            tracing::warn!("cannot write the intake status under {STATUS_DIR} (guard doctor reads it): {e}");
        }
        tracing::info!(
            addr = %intake.describe(),
            auth,
            responses = responder.active().responses.len(),
            detect_only = args.detect_only,
            "response engine serving Falco alerts on POST /falco"
        );
        if auth == "insecure" {
            eprintln!(
                "guard: WARNING: the Falco intake on {} serves plain HTTP (--insecure-intake): anyone who can connect to it can kill, stop, pause or quarantine workloads",
                intake.describe()
            );
        }
        eprintln!("guard: ready (falco intake on {}, {auth})", intake.describe());
        let mut sigint = tokio::signal::unix::signal(SignalKind::interrupt())?;
        let mut sigterm = tokio::signal::unix::signal(SignalKind::terminate())?;
        tokio::select! {
            _ = sigint.recv() => {}
            _ = sigterm.recv() => {}
        }
        if let Some(sock) = &intake.socket {
            let _ = std::fs::remove_file(sock);
        }
        intake.stop();
        drop(status);
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
