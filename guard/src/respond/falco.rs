//! Falco intake: `POST /falco` with Falco's alert JSON (what Falco's `http_output` sends), so
//! guard can be the response engine behind an existing Falco.
//!
//! - Only authenticated senders ([`Listen`]): mutual TLS (client certificates checked against
//!   a configured CA, `intake_tls.rs`), or a unix socket only root or one group can open
//!   (mode 0660). Plain HTTP only as [`Listen::Insecure`] (`--insecure-intake`), which warns.
//!   Refused senders get 400 (plain HTTP on the TLS port), 401 (no certificate) or 403
//!   (certificate of another CA), and each refusal is audited (at most
//!   [`REFUSALS_AUDITED_PER_SEC`] a second; the rest are counted in the next record).
//! - Binds where told; the CLI default is loopback (127.0.0.1:2802).
//! - A body larger than the limit gets 413 (checked on Content-Length and while reading),
//!   malformed JSON 400, JSON of the wrong shape or types 422, a body not sent within the
//!   read timeout 408, another path 404, another method 405. Accepted alerts get 202.
//! - Connections are bounded; an error on one connection never stops the server.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream, UnixListener},
    sync::Semaphore,
    task::JoinHandle,
};

use super::{AlertContext, Responder, intake_tls::IntakeTls};
use crate::alert::{Alert, GuardInfo, Priority};

#[derive(Debug, Clone)]
pub struct IntakeOptions {
    pub max_body: usize,
    pub read_timeout: Duration,
    pub max_connections: usize,
}

impl Default for IntakeOptions {
    fn default() -> Self {
        Self {
            max_body: 256 * 1024,
            read_timeout: Duration::from_secs(5),
            max_connections: 64,
        }
    }
}

/// Audit records of refused senders per second; more are counted, not written.
pub const REFUSALS_AUDITED_PER_SEC: u32 = 20;

/// Where and how the intake listens.
#[derive(Debug)]
pub enum Listen {
    /// TCP with mutual TLS.
    Tls {
        addr: SocketAddr,
        tls: Arc<IntakeTls>,
    },
    /// A unix socket, mode 0660, owned by root and `group` (root's group when `None`).
    Unix { path: PathBuf, group: Option<u32> },
    /// Plain HTTP: anyone who can connect triggers responses (`--insecure-intake`).
    Insecure { addr: SocketAddr },
}

impl Listen {
    /// `mtls`, `unix` or `insecure` (status file, logs, doctor).
    pub fn auth(&self) -> &'static str {
        match self {
            Listen::Tls { .. } => "mtls",
            Listen::Unix { .. } => "unix",
            Listen::Insecure { .. } => "insecure",
        }
    }
}

#[derive(Debug, Default)]
pub struct IntakeStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    /// Senders refused before their request was read (no or wrong credentials).
    pub unauthenticated: AtomicU64,
}

pub struct FalcoIntake {
    /// The TCP address (TLS or insecure).
    pub local_addr: Option<SocketAddr>,
    /// The unix socket.
    pub socket: Option<PathBuf>,
    pub stats: Arc<IntakeStats>,
    task: JoinHandle<()>,
}

impl FalcoIntake {
    /// What it listens on, for logs.
    pub fn describe(&self) -> String {
        match (&self.local_addr, &self.socket) {
            (Some(a), _) => a.to_string(),
            (None, Some(p)) => format!("unix:{}", p.display()),
            (None, None) => "?".into(),
        }
    }
}

/// The sender as the transport authenticated it.
#[derive(Debug, Clone)]
enum Peer {
    Insecure(SocketAddr),
    Unix {
        uid: Option<u32>,
    },
    /// Mutual TLS: the client certificate's sha256, or why it is refused.
    Tls {
        addr: SocketAddr,
        auth: Result<String, (StatusCode, String)>,
    },
}

impl Peer {
    fn describe(&self) -> String {
        match self {
            Peer::Insecure(a) => format!("{a} (plain HTTP)"),
            Peer::Unix { uid: Some(u) } => format!("unix socket peer uid {u}"),
            Peer::Unix { uid: None } => "unix socket peer".into(),
            Peer::Tls { addr, auth: Ok(fp) } => {
                format!(
                    "{addr} (client certificate sha256 {})",
                    &fp[..fp.len().min(16)]
                )
            }
            Peer::Tls { addr, .. } => format!("{addr} (TLS)"),
        }
    }
}

/// Writes refusal records, at most [`REFUSALS_AUDITED_PER_SEC`] a second.
#[derive(Default)]
struct RefusalAudit {
    window: Mutex<Option<(Instant, u32, u64)>>,
}

impl RefusalAudit {
    fn refuse(&self, responder: &Responder, peer: &str, why: &str) {
        let now = Instant::now();
        let suppressed = {
            let mut g = self.window.lock().unwrap_or_else(|p| p.into_inner());
            let (start, n, skipped) = g.get_or_insert((now, 0, 0));
            if now.duration_since(*start) >= Duration::from_secs(1) {
                (*start, *n) = (now, 0);
            }
            if *n >= REFUSALS_AUDITED_PER_SEC {
                *skipped += 1;
                return;
            }
            *n += 1;
            std::mem::take(skipped)
        };
        intake_refused(responder, peer, why, suppressed);
    }
}

impl FalcoIntake {
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for FalcoIntake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Falco's alert JSON; `source` and `hostname` are absent in older Falco versions.
#[derive(Deserialize)]
struct FalcoAlert {
    #[serde(default)]
    time: String,
    rule: String,
    priority: String,
    #[serde(default = "default_source")]
    source: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    output: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    output_fields: BTreeMap<String, serde_json::Value>,
}

fn default_source() -> String {
    "syscall".into()
}

/// Parses a Falco alert body: `Err((status, reason))` for what the client got wrong.
pub fn parse_falco_alert(body: &[u8]) -> Result<Alert, (StatusCode, String)> {
    let a: FalcoAlert = serde_json::from_slice(body).map_err(|e| {
        let status = match e.classify() {
            serde_json::error::Category::Data => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, format!("invalid Falco alert JSON: {e}"))
    })?;
    let priority = Priority::parse(&a.priority).ok_or((
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("unknown priority {:?}", a.priority),
    ))?;
    if a.rule.is_empty() {
        return Err((StatusCode::UNPROCESSABLE_ENTITY, "empty rule".into()));
    }
    Ok(Alert {
        time: a.time,
        rule: a.rule,
        priority,
        source: a.source,
        hostname: a.hostname,
        output: a.output,
        tags: a.tags,
        output_fields: a.output_fields,
        guard: GuardInfo::default(),
    })
}

fn reply(status: StatusCode, msg: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "status": status.as_u16(), "message": msg }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Records a sender the intake refused (no or wrong credentials): a `response` record of the
/// pseudo-response `falco-intake`, without waiting for the audit queue.
fn intake_refused(responder: &Responder, peer: &str, why: &str, suppressed: u64) {
    use crate::audit::{Outcome, Payload, ProcessInfo, ResponseOutcome, Workload};
    tracing::warn!(%peer, "falco intake refused a sender: {why}");
    let Some(a) = responder.audit_log() else {
        return;
    };
    a.try_record(Payload::Response(ResponseOutcome {
        response: "falco-intake".into(),
        action: "*".into(),
        outcome: Outcome::Refused,
        rule: None,
        policy: None,
        mode: None,
        workload: Workload::default(),
        process: ProcessInfo::default(),
        error: Some(why.to_owned()),
        detail: Some(if suppressed > 0 {
            format!("from {peer}; {suppressed} earlier refusal(s) not recorded (rate bound)")
        } else {
            format!("from {peer}")
        }),
        latency_us: None,
    }));
}

async fn serve_one(
    req: Request<Incoming>,
    responder: Responder,
    opts: IntakeOptions,
    stats: Arc<IntakeStats>,
    peer: Arc<Peer>,
    refusals: Arc<RefusalAudit>,
) -> Response<Full<Bytes>> {
    // Authentication first: nothing of a refused sender's request is read.
    if let Peer::Tls {
        auth: Err((status, why)),
        ..
    } = &*peer
    {
        stats.unauthenticated.fetch_add(1, Ordering::Relaxed);
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        refusals.refuse(&responder, &peer.describe(), why);
        return reply(*status, why);
    }
    let r = route(req, responder, &opts).await;
    if r.status().is_success() {
        stats.accepted.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.rejected.fetch_add(1, Ordering::Relaxed);
    }
    r
}

async fn route(
    req: Request<Incoming>,
    responder: Responder,
    opts: &IntakeOptions,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => return reply(StatusCode::OK, "ok"),
        (&Method::POST, "/falco") => {}
        (_, "/falco") => return reply(StatusCode::METHOD_NOT_ALLOWED, "POST only"),
        _ => return reply(StatusCode::NOT_FOUND, "POST Falco alerts to /falco"),
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > opts.max_body as u64) {
        return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    }
    let body = Limited::new(req.into_body(), opts.max_body);
    let bytes = match tokio::time::timeout(opts.read_timeout, body.collect()).await {
        Err(_) => return reply(StatusCode::REQUEST_TIMEOUT, "body not received in time"),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return reply(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            }
            return reply(StatusCode::BAD_REQUEST, "could not read the body");
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let alert = match parse_falco_alert(&bytes) {
        Ok(a) => a,
        Err((status, msg)) => return reply(status, &msg),
    };
    let ctx = AlertContext::from_alert(&alert);
    let matched = responder.submit(Arc::new(alert), ctx);
    reply(
        StatusCode::ACCEPTED,
        if matched {
            "accepted: responses running"
        } else {
            "accepted: no response matched (or engine saturated)"
        },
    )
}

/// What every connection shares.
#[derive(Clone)]
struct Shared {
    responder: Responder,
    opts: IntakeOptions,
    stats: Arc<IntakeStats>,
    refusals: Arc<RefusalAudit>,
}

/// Serves HTTP/1 on one authenticated (or insecure) connection.
async fn serve_http<IO>(io: IO, sh: Shared, peer: Peer)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = Arc::new(peer);
    let svc = service_fn(move |req| {
        let sh = sh.clone();
        let peer = peer.clone();
        async move {
            Ok::<_, std::convert::Infallible>(
                serve_one(req, sh.responder, sh.opts, sh.stats, peer, sh.refusals).await,
            )
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc);
    let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
}

/// TLS on one TCP connection. Plain HTTP (a first byte that is no TLS handshake record) gets
/// a 400 in plain HTTP, so a misconfigured sender learns why; a failed handshake is refused.
async fn serve_tls(stream: TcpStream, addr: SocketAddr, sh: Shared, tls: Arc<IntakeTls>) {
    let mut first = [0u8; 1];
    let peeked = tokio::time::timeout(Duration::from_secs(5), stream.peek(&mut first)).await;
    if !matches!(peeked, Ok(Ok(1))) {
        return;
    }
    if first[0] != 0x16 {
        let why = "plain HTTP on the TLS intake: this intake needs mutual TLS";
        sh.stats.unauthenticated.fetch_add(1, Ordering::Relaxed);
        sh.stats.rejected.fetch_add(1, Ordering::Relaxed);
        sh.refusals
            .refuse(&sh.responder, &format!("{addr} (plain HTTP)"), why);
        let body = serde_json::json!({ "status": 400, "message": why }).to_string();
        let resp = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut stream = stream;
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = stream.write_all(resp.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        return;
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let tls_stream =
        match tokio::time::timeout(Duration::from_secs(5), acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                sh.stats.unauthenticated.fetch_add(1, Ordering::Relaxed);
                sh.refusals.refuse(
                    &sh.responder,
                    &format!("{addr} (TLS)"),
                    &format!("TLS handshake failed: {e}"),
                );
                return;
            }
            Err(_) => return,
        };
    let auth = tls.authenticate(tls_stream.get_ref().1.peer_certificates());
    serve_http(tls_stream, sh, Peer::Tls { addr, auth }).await;
}

/// Binds a unix socket at `path`, mode 0660, owner root and `group` (root's by default). A stale socket there is
/// replaced; any other file is an error (never removed).
fn bind_unix(path: &Path, group: Option<u32>) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path)?,
        Ok(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ));
        }
        Err(_) => {}
    }
    // Bound with the process umask (guard's 022 gives 0755: nobody else may connect, as
    // connecting needs write permission), then narrowed to its final owner and mode.
    let l = UnixListener::bind(path)?;
    // Not root (a test run): the socket stays the running user's, with `group` if given.
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(path, Some(0), Some(group.unwrap_or(0)))?;
    } else if let Some(g) = group {
        std::os::unix::fs::chown(path, None, Some(g))?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    Ok(l)
}

/// Starts the intake on the current tokio runtime.
pub async fn start(
    listen: Listen,
    responder: Responder,
    opts: IntakeOptions,
) -> std::io::Result<FalcoIntake> {
    let stats = Arc::new(IntakeStats::default());
    let sh = Shared {
        responder,
        opts,
        stats: stats.clone(),
        refusals: Arc::new(RefusalAudit::default()),
    };
    let slots = Arc::new(Semaphore::new(sh.opts.max_connections.max(1)));
    let (local_addr, socket, task) = match listen {
        Listen::Unix { path, group } => {
            let l = bind_unix(&path, group)?;
            let task = tokio::spawn(async move {
                loop {
                    let stream = match l.accept().await {
                        Ok((s, _)) => s,
                        Err(e) => {
                            // EMFILE and friends: back off, keep serving.
                            tracing::warn!("falco intake: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        continue; // over the connection bound: closed at once
                    };
                    let uid = stream.peer_cred().ok().map(|c| c.uid());
                    let sh = sh.clone();
                    tokio::spawn(async move {
                        serve_http(stream, sh, Peer::Unix { uid }).await;
                        drop(permit);
                    });
                }
            });
            (None, Some(path), task)
        }
        Listen::Tls { addr, .. } | Listen::Insecure { addr } => {
            let tls = match &listen {
                Listen::Tls { tls, .. } => Some(tls.clone()),
                _ => None,
            };
            let l = TcpListener::bind(addr).await?;
            let local = l.local_addr()?;
            if tls.is_none() {
                tracing::warn!(%local, "Falco intake serves plain HTTP (--insecure-intake): anyone who can connect to it can trigger responses");
            } else if !local.ip().is_loopback() {
                tracing::info!(%local, "Falco intake (mutual TLS) listens beyond loopback");
            }
            let task = tokio::spawn(async move {
                loop {
                    let (stream, peer) = match l.accept().await {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!("falco intake: accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        continue;
                    };
                    let sh = sh.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            Some(tls) => serve_tls(stream, peer, sh, tls).await,
                            None => serve_http(stream, sh, Peer::Insecure(peer)).await,
                        }
                        drop(permit);
                    });
                }
            });
            (Some(local), None, task)
        }
    };
    Ok(FalcoIntake {
        local_addr,
        socket,
        stats,
        task,
    })
}

/// Where each running `guard respond` says how its intake authenticates (`PID.json`), for
/// `guard doctor`.
pub const STATUS_DIR: &str = "/run/guard/intake";

/// A running intake's status file; removed on drop.
pub struct StatusFile(PathBuf);

impl StatusFile {
    pub fn write(dir: &Path, listen: &str, auth: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{}.json", std::process::id()));
        let body = serde_json::json!({ "pid": std::process::id(), "listen": listen, "auth": auth });
        std::fs::write(&path, body.to_string())?;
        Ok(Self(path))
    }
}

impl Drop for StatusFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Running intakes (`(pid, listen, auth)`) whose process is alive, from `dir`. Bounded.
pub fn running_intakes(dir: &Path) -> Vec<(u32, String, String)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .take(1024)
        .filter_map(|e| {
            let raw = crate::state::procfs::read_capped(&e.path(), 4096).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&raw).ok()?;
            let pid = u32::try_from(v.get("pid")?.as_u64()?).ok()?;
            // Alive and a guard (a stale file of a SIGKILLed intake names a dead or reused pid).
            let cmd =
                crate::state::procfs::read_capped(Path::new(&format!("/proc/{pid}/cmdline")), 4096)
                    .ok()?;
            let is_respond = cmd.split(|&b| b == 0).any(|a| a == b"respond");
            is_respond.then(|| {
                (
                    pid,
                    v.get("listen")
                        .and_then(|l| l.as_str())
                        .unwrap_or("?")
                        .to_owned(),
                    v.get("auth")
                        .and_then(|l| l.as_str())
                        .unwrap_or("?")
                        .to_owned(),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_classifies_errors() {
        let ok = br#"{"time":"2024-01-01T00:00:00.000000000Z","rule":"Terminal shell in container","priority":"Critical","output":"x","output_fields":{"proc.pid":42,"container.id":"abc"},"tags":["shell"]}"#;
        let a = parse_falco_alert(ok).expect("valid");
        assert_eq!(a.priority, Priority::Critical);
        assert_eq!(a.source, "syscall");
        assert_eq!(
            parse_falco_alert(b"{not json").expect_err("bad").0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_falco_alert(b"").expect_err("bad").0,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse_falco_alert(br#"{"rule":5,"priority":"Critical"}"#)
                .expect_err("types")
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            parse_falco_alert(br#"{"rule":"r","priority":"Loud"}"#)
                .expect_err("prio")
                .0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            parse_falco_alert(br#"[1,2,3]"#).expect_err("array").0,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
