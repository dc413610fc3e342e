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
            Err((msg, retryable)) => {
                if !retryable || attempt >= retries {
                    return Err(format!("{msg} (after {} attempt(s))", attempt + 1));
                }
                let backoff = Duration::from_millis(100u64 << attempt.min(4));
                tokio::time::sleep(backoff.min(Duration::from_secs(2))).await;
                attempt += 1;
            }
        }
    }
}

async fn post(
    client: &HttpClient,
    uri: &Uri,
    body: Bytes,
    timeout: Duration,
) -> Result<(), (String, bool)> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::USER_AGENT,
            concat!("guard/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(body))
        .map_err(|e| (format!("build request: {e}"), false))?;
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let _ = resp.into_body().collect().await;
        Ok::<StatusCode, String>(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Err(_) => Err((format!("no response within {timeout:?}"), true)),
        Ok(Err(e)) => Err((e, true)),
        Ok(Ok(s)) if s.is_success() => Ok(()),
        Ok(Ok(s)) if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Err((format!("HTTP {s}"), true))
        }
        Ok(Ok(s)) => Err((format!("HTTP {s}"), false)),
    }
}
