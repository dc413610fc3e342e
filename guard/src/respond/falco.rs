//! Falco intake: `POST /falco` with Falco's alert JSON (what Falco's `http_output` sends), so
//! guard can be the response engine behind an existing Falco.
//!
//! - Binds where told; the CLI default is loopback (127.0.0.1:2802).
//! - A body larger than the limit gets 413 (checked on Content-Length and while reading),
//!   malformed JSON 400, JSON of the wrong shape or types 422, a body not sent within the
//!   read timeout 408, another path 404, another method 405. Accepted alerts get 202.
//! - Connections are bounded; an error on one connection never stops the server.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode, body::Incoming, header, server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::{net::TcpListener, sync::Semaphore, task::JoinHandle};

use super::{AlertContext, Responder};
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

#[derive(Debug, Default)]
pub struct IntakeStats {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
}

pub struct FalcoIntake {
    pub local_addr: SocketAddr,
    pub stats: Arc<IntakeStats>,
    task: JoinHandle<()>,
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

async fn serve_one(
    req: Request<Incoming>,
    responder: Responder,
    opts: IntakeOptions,
    stats: Arc<IntakeStats>,
) -> Response<Full<Bytes>> {
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

/// Starts the intake on the current tokio runtime.
pub async fn start(
    addr: SocketAddr,
    responder: Responder,
    opts: IntakeOptions,
) -> std::io::Result<FalcoIntake> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    if !local_addr.ip().is_loopback() {
        tracing::warn!(%local_addr, "Falco intake listens beyond loopback: anyone who can reach it can trigger responses");
    }
    let stats = Arc::new(IntakeStats::default());
    let st = stats.clone();
    let slots = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let task = tokio::spawn(async move {
        loop {
            let (stream, _peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off, keep serving.
                    tracing::warn!("falco intake: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                drop(stream); // over the connection bound: close at once
                continue;
            };
            let (responder, opts, st) = (responder.clone(), opts.clone(), st.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (responder, opts, st) = (responder.clone(), opts.clone(), st.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(serve_one(req, responder, opts, st).await)
                    }
                });
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .max_buf_size(64 * 1024)
                    .serve_connection(TokioIo::new(stream), svc);
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
                drop(permit);
            });
        }
    });
    Ok(FalcoIntake {
        local_addr,
        stats,
        task,
    })
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
