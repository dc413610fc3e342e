//! `notify`: POST the alert JSON to a webhook. The action only queues the delivery (bounded
//! queue, `try_send`), so a slow or hung receiver never delays detection or other actions.
//! A dispatcher runs at most [`MAX_CONCURRENT`] deliveries at once, each bounded by its
//! timeout and retries; the outcome of each delivery goes to the audit log when it is known.

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
use tokio::sync::{Semaphore, mpsc};

/// Deliveries waiting; beyond this a notify action fails at once ("queue full").
pub const QUEUE: usize = 256;
/// Deliveries in progress at once.
pub const MAX_CONCURRENT: usize = 16;

pub struct Delivery {
    pub url: Uri,
    pub body: Bytes,
    pub timeout: Duration,
    pub retries: u32,
    /// Called once with the result and the time of the final attempt.
    pub done: Box<dyn FnOnce(Result<(), String>, Instant) + Send>,
}

#[derive(Clone)]
pub struct Notifier {
    tx: mpsc::Sender<Delivery>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

impl Notifier {
    /// Starts the dispatcher on the current tokio runtime.
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE);
        tokio::spawn(async move {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            connector.set_connect_timeout(Some(Duration::from_secs(3)));
            let client: HttpClient = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .pool_max_idle_per_host(2)
                .build(connector);
            let slots = Arc::new(Semaphore::new(MAX_CONCURRENT));
            while let Some(d) = rx.recv().await {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let client = client.clone();
                tokio::spawn(async move {
                    let r = deliver(&client, &d.url, d.body.clone(), d.timeout, d.retries).await;
                    (d.done)(r, Instant::now());
                    drop(permit);
                });
            }
        });
        Self { tx }
    }

    /// Queues a delivery without waiting; the error says why it could not be queued.
    pub fn try_queue(&self, d: Delivery) -> Result<(), String> {
        self.tx.try_send(d).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => format!("notify queue full ({QUEUE})"),
            mpsc::error::TrySendError::Closed(_) => "notify dispatcher stopped".into(),
        })
    }
}

async fn deliver(
    client: &HttpClient,
    uri: &Uri,
    body: Bytes,
    timeout: Duration,
    retries: u32,
) -> Result<(), String> {
    let mut attempt = 0u32;
    loop {
        let r = post(client, uri, body.clone(), timeout).await;
        match r {
            Ok(()) => return Ok(()),
            Err(e) => {
                if !e.retryable() || attempt >= retries {
                    return Err(format!("{e} (after {} attempt(s))", attempt + 1));
                }
                let backoff = Duration::from_millis(100u64 << attempt.min(4));
                tokio::time::sleep(backoff.min(Duration::from_secs(2))).await;
                attempt += 1;
            }
        }
    }
}

/// Why one POST failed; [`PostError::retryable`] decides whether another attempt is made.
#[derive(Debug, thiserror::Error)]
enum PostError {
    #[error("build request: {0}")]
    Request(String),
    #[error("no response within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Transport(String),
    #[error("HTTP {0}")]
    Status(StatusCode),
}

impl PostError {
    /// Timeouts, transport errors, 5xx and 429 may pass on a retry; a bad request or another
    /// status will not.
    fn retryable(&self) -> bool {
        match self {
            PostError::Request(_) => false,
            PostError::Timeout(_) | PostError::Transport(_) => true,
            PostError::Status(s) => s.is_server_error() || *s == StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

async fn post(
    client: &HttpClient,
    uri: &Uri,
    body: Bytes,
    timeout: Duration,
) -> Result<(), PostError> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("guard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| PostError::Request(e.to_string()))?;
    let exchange = async {
        let resp = client
            .request(req)
            .await
            .map_err(|e| PostError::Transport(e.to_string()))?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        Ok::<StatusCode, PostError>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err(PostError::Timeout(timeout)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(s)) if s.is_success() => Ok(()),
        Ok(Ok(s)) => Err(PostError::Status(s)),
    }
}
