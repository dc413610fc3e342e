//! The http channel: POSTs each alert's Falco JSON, as Falcosidekick's `/` endpoint expects it.
//! One keep-alive connection pool per channel, a timeout per attempt, bounded retries with
//! backoff. Plain http only: put Falcosidekick (or a TLS proxy) on the host or in the pod.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri, header};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use tokio::sync::mpsc;

use super::Counters;
use crate::alert::Alert;

pub(super) struct HttpTarget {
    uri: Uri,
}

impl HttpTarget {
    pub(super) fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url.parse().map_err(|e| format!("bad url {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{url}: https is not supported by the http output; send to a local Falcosidekick or TLS proxy over http"
                ));
            }
            _ => return Err(format!("{url}: expected an http:// url")),
        }
        if uri.host().is_none() {
            return Err(format!("{url}: no host"));
        }
        Ok(HttpTarget { uri })
    }
}

pub(super) struct HttpOptions {
    pub timeout: Duration,
    pub retries: u32,
}

enum Attempt {
    Ok,
    /// Worth another try (connection error, timeout, 5xx, 429).
    Retry(String),
    /// The receiver rejected the payload; retrying will not help.
    Fatal(String),
}

pub(super) fn run(
    target: HttpTarget,
    opts: HttpOptions,
    mut rx: mpsc::Receiver<Arc<Alert>>,
    ctr: Arc<Counters>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("http output: cannot start runtime: {e}");
            return;
        }
    };
    rt.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(opts.timeout));
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(1)
            .build(connector);
        let mut last_log: Option<Instant> = None;
        while let Some(alert) = rx.recv().await {
            let body = match serde_json::to_vec(&*alert) {
                Ok(b) => Bytes::from(b),
                Err(e) => {
                    ctr.finished(false);
                    tracing::warn!("http output: cannot encode alert: {e}");
                    continue;
                }
            };
            let mut attempt = 0u32;
            let result = loop {
                match post(&client, &target.uri, body.clone(), opts.timeout).await {
                    Attempt::Ok => break Ok(()),
                    Attempt::Fatal(e) => break Err(e),
                    Attempt::Retry(e) if attempt >= opts.retries => break Err(e),
                    Attempt::Retry(_) => {
                        let backoff = Duration::from_millis(100u64 << attempt.min(4));
                        tokio::time::sleep(backoff.min(Duration::from_secs(2))).await;
                        attempt += 1;
                    }
                }
            };
            match result {
                Ok(()) => ctr.finished(true),
                Err(e) => {
                    ctr.finished(false);
                    if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!("http output {}: {e}", target.uri);
                        last_log = Some(Instant::now());
                    }
                }
            }
        }
    });
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    uri: &Uri,
    body: Bytes,
    timeout: Duration,
) -> Attempt {
    let req = match Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json")
        .header(
            header::USER_AGENT,
            concat!("guard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
    {
        Ok(r) => r,
        Err(e) => return Attempt::Fatal(format!("build request: {e}")),
    };
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| format!("{e}"))?;
        let status = resp.status();
        // Read the body so the connection goes back to the pool.
        let _ = resp.into_body().collect().await;
        Ok::<StatusCode, String>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Attempt::Retry(format!("no response within {timeout:?}")),
        Ok(Err(e)) => Attempt::Retry(e),
        Ok(Ok(s)) if s.is_success() => Attempt::Ok,
        Ok(Ok(s)) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Attempt::Retry(format!("HTTP {s}"))
        }
        Ok(Ok(s)) => Attempt::Fatal(format!("HTTP {s}")),
    }
}
