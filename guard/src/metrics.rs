//! Prometheus `/metrics` and `/healthz` for `guard run` (loopback by default).
//!
//! Counters live in one process-wide [`METRICS`] the pipeline and the response engine update
//! with relaxed atomics (labelled counters under a mutex, touched only per alert, decision or
//! action). Kernel counters (drops, prefiltered opens) are copied in by the pipeline every
//! second. The HTTP side is hyper's, kept small: GET only, one request per connection, bounded
//! request size, read time, connection time and connection count, so a local client cannot tie
//! it up.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use bytes::Bytes;
use guard_ebpf::EventKind;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header, server::conn::http1};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Upper bounds (seconds) of the latency histograms' buckets.
const BUCKETS: [f64; 9] = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0];
/// Distinct label sets kept per labelled counter; beyond that they are folded into `other`.
const MAX_SERIES: usize = 4096;
/// Largest request head; hyper answers 431 beyond it (and 8 KiB is hyper's smallest buffer).
const MAX_REQUEST: usize = 8192;
const MAX_CONNECTIONS: usize = 16;
/// Time a connection may take, request and response together.
const CONNECTION_TIME: Duration = Duration::from_secs(5);

/// Observations per bucket, not cumulative: an observation costs one bucket's increment
/// (this runs per event); the exposition sums them up.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|&le| s <= le) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_us
            .fetch_add(d.as_micros().min(u128::from(u64::MAX)) as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (b, le) in self.buckets.iter().zip(BUCKETS) {
            cumulative += b.load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let n = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// Counters with label values, bounded in series.
#[derive(Default)]
struct Labelled(Mutex<BTreeMap<Vec<String>, u64>>);

impl Labelled {
    fn add(&self, labels: &[&str]) {
        let Ok(mut m) = self.0.lock() else {
            return;
        };
        let mut key: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        if m.len() >= MAX_SERIES && !m.contains_key(&key) {
            key.iter_mut().for_each(|k| *k = "other".to_owned());
        }
        *m.entry(key).or_insert(0) += 1;
    }

    fn render(&self, out: &mut String, name: &str, help: &str, names: &[&str]) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        let Ok(m) = self.0.lock() else {
            return;
        };
        for (values, n) in m.iter() {
            let labels: Vec<String> = names
                .iter()
                .zip(values)
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{name}{{{}}} {n}", labels.join(","));
        }
    }
}

/// Label value escaping of the text format: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

const KINDS: usize = EventKind::COUNT as usize;

#[derive(Default)]
pub struct Metrics {
    /// Records received from the kernel, by `EventKind`.
    received: [AtomicU64; KINDS],
    /// Kernel drop counters (ring full), by `EventKind`; copied from the kernel.
    dropped: [AtomicU64; KINDS],
    decode_errors: AtomicU64,
    prefiltered_opens: AtomicU64,
    prefiltered_connects: AtomicU64,
    prefiltered_sends: AtomicU64,
    alerts: Labelled,
    decisions: Labelled,
    actions: Labelled,
    /// Actions refused because the live process is not the one the alert names, by check.
    identity_refused: Labelled,
    /// Kernel timestamp of an event to the end of its handling (alerts emitted).
    pub event_latency: Histogram,
    /// Alert to action outcome.
    pub action_latency: Histogram,
    policy_generation: AtomicU64,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// Sizes of the agent's state tables (gauges), copied in by the pipeline.
    tracked_processes: AtomicU64,
    tracked_cgroups: AtomicU64,
    tracked_containers: AtomicU64,
    /// Container runtimes' health (1 up, 0 down or absent): Docker API, CRI.
    runtime_docker_up: AtomicU64,
    /// 1 when Podman answers on the Docker API socket (the gauge's label is then `podman`).
    runtime_docker_is_podman: AtomicU64,
    runtime_cri_up: AtomicU64,
    /// containerd's own API: answering, and its event stream open.
    runtime_containerd_up: AtomicU64,
    containerd_events: AtomicU64,
    /// 0: no audit log; 1: the last audit write succeeded; 2: audit writes are failing.
    audit_state: AtomicU64,
    audit_write_errors: AtomicU64,
    audit_records_lost: AtomicU64,
    /// Host name lookups (`fd.*ip.name`) that failed or found no address.
    dns_lookup_failures: AtomicU64,
    /// Set once the pipeline is running.
    ready: AtomicU64,
}

/// The process-wide metrics.
pub static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(Metrics::default);

impl Metrics {
    pub fn received(&self, kind: u16) {
        if let Some(c) = self.received.get(kind as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub fn set_kernel(
        &self,
        drops: &[(EventKind, u64)],
        decode_errors: u64,
        prefiltered: (u64, u64, u64),
    ) {
        for (k, n) in drops {
            if let Some(c) = self.dropped.get(*k as usize) {
                c.store(*n, Relaxed);
            }
        }
        self.decode_errors.store(decode_errors, Relaxed);
        self.prefiltered_opens.store(prefiltered.0, Relaxed);
        self.prefiltered_connects.store(prefiltered.1, Relaxed);
        self.prefiltered_sends.store(prefiltered.2, Relaxed);
    }

    pub fn alert(&self, rule: &str, priority: &str) {
        self.alerts.add(&[rule, priority]);
    }

    pub fn decision(&self, op: &str, verdict: &str) {
        self.decisions.add(&[op, verdict]);
    }

    pub fn action(&self, action: &str, outcome: &str, latency: Duration) {
        self.actions.add(&[action, outcome]);
        self.action_latency.observe(latency);
    }

    pub fn identity_refused(&self, check: &str) {
        self.identity_refused.add(&[check]);
    }

    pub fn set_policy_generation(&self, g: u64) {
        self.policy_generation.store(g, Relaxed);
    }

    /// A reload put in force (`ok`) or refused.
    pub fn reload(&self, ok: bool) {
        if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        }
        .fetch_add(1, Relaxed);
    }

    /// Sizes of the process, cgroup and container tables.
    pub fn set_tracked(&self, processes: usize, cgroups: usize, containers: usize) {
        self.tracked_processes.store(processes as u64, Relaxed);
        self.tracked_cgroups.store(cgroups as u64, Relaxed);
        self.tracked_containers.store(containers as u64, Relaxed);
    }

    /// Whether the Docker API (Docker, or Podman when `podman`) and the CRI runtime answered
    /// their last calls.
    pub fn set_runtimes_up(&self, docker: bool, podman: bool, cri: bool) {
        self.runtime_docker_up.store(docker.into(), Relaxed);
        self.runtime_docker_is_podman.store(podman.into(), Relaxed);
        self.runtime_cri_up.store(cri.into(), Relaxed);
    }

    /// Whether containerd's own API answered, and whether its event stream is open.
    pub fn set_containerd(&self, up: bool, subscribed: bool) {
        self.runtime_containerd_up.store(up.into(), Relaxed);
        self.containerd_events.store(subscribed.into(), Relaxed);
    }

    /// The audit log's writer succeeded (`true`) or failed (`false`) at its last attempt.
    pub fn set_audit_healthy(&self, ok: bool) {
        self.audit_state.store(if ok { 1 } else { 2 }, Relaxed);
    }

    pub fn audit_write_error(&self) {
        self.audit_write_errors.fetch_add(1, Relaxed);
    }

    /// An audit record that is not in the log (queue full or write failure).
    pub fn audit_record_lost(&self) {
        self.audit_records_lost.fetch_add(1, Relaxed);
    }

    pub fn dns_lookup_failed(&self) {
        self.dns_lookup_failures.fetch_add(1, Relaxed);
    }

    pub fn set_ready(&self) {
        self.ready.store(1, Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let kinds = |out: &mut String, name: &str, help: &str, v: &[AtomicU64; KINDS]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for k in EventKind::ALL {
                let _ = writeln!(
                    out,
                    "{name}{{kind=\"{}\"}} {}",
                    k.name(),
                    v[k as usize].load(Relaxed)
                );
            }
        };
        kinds(
            &mut out,
            "guard_events_received_total",
            "Records received from the kernel, by kind.",
            &self.received,
        );
        kinds(
            &mut out,
            "guard_events_dropped_total",
            "Records the kernel could not deliver (ring buffer full), by kind.",
            &self.dropped,
        );
        let single = |out: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        };
        single(
            &mut out,
            "guard_decode_errors_total",
            "counter",
            "Records received but malformed.",
            self.decode_errors.load(Relaxed),
        );
        single(
            &mut out,
            "guard_prefiltered_opens_total",
            "counter",
            "Opens the kernel prefilter skipped on purpose (no rule could match them).",
            self.prefiltered_opens.load(Relaxed),
        );
        single(
            &mut out,
            "guard_dns_lookup_failures_total",
            "counter",
            "Lookups of the host names rules compare fd.*ip.name with that failed or found no address.",
            self.dns_lookup_failures.load(Relaxed),
        );
        single(
            &mut out,
            "guard_prefiltered_connects_total",
            "counter",
            "Connects the kernel prefilter skipped on purpose (no rule could match them).",
            self.prefiltered_connects.load(Relaxed),
        );
        single(
            &mut out,
            "guard_prefiltered_sends_total",
            "counter",
            "Sends without a destination (sendto, sendmsg) the kernel prefilter skipped on purpose (no rule could match them).",
            self.prefiltered_sends.load(Relaxed),
        );
        self.alerts.render(
            &mut out,
            "guard_alerts_total",
            "Alerts by rule and priority.",
            &["rule", "priority"],
        );
        self.decisions.render(
            &mut out,
            "guard_decisions_total",
            "Policy decisions by operation and verdict.",
            &["op", "verdict"],
        );
        self.actions.render(
            &mut out,
            "guard_actions_total",
            "Response actions by action and outcome.",
            &["action", "outcome"],
        );
        self.identity_refused.render(
            &mut out,
            "guard_response_identity_refused_total",
            "Actions refused: the live process is not the one the alert names (respond/identity.rs).",
            &["check"],
        );
        self.event_latency.render(
            &mut out,
            "guard_event_latency_seconds",
            "From the kernel's timestamp of an event to the end of its handling.",
        );
        self.action_latency.render(
            &mut out,
            "guard_action_latency_seconds",
            "From an alert to its action's outcome.",
        );
        single(
            &mut out,
            "guard_policy_generation",
            "gauge",
            "Configuration generation: 1 as loaded at start, +1 per reload put in force.",
            self.policy_generation.load(Relaxed),
        );
        single(
            &mut out,
            "guard_reloads_total",
            "counter",
            "Reloads put in force.",
            self.reloads_ok.load(Relaxed),
        );
        single(
            &mut out,
            "guard_reload_failures_total",
            "counter",
            "Reloads refused (invalid files or a kernel map update failed); the previous configuration stayed in force.",
            self.reloads_failed.load(Relaxed),
        );
        for (name, help, v) in [
            (
                "guard_tracked_processes",
                "Processes in the agent's process table.",
                &self.tracked_processes,
            ),
            (
                "guard_tracked_cgroups",
                "Cgroups in the agent's cgroup cache (entries of removed cgroups are pruned).",
                &self.tracked_cgroups,
            ),
            (
                "guard_tracked_containers",
                "Containers in the agent's container table.",
                &self.tracked_containers,
            ),
        ] {
            single(&mut out, name, "gauge", help, v.load(Relaxed));
        }
        let _ = writeln!(
            out,
            "# HELP guard_container_runtime_up Whether the container runtime answers (1) or is down or absent (0); its containers' metadata is <NA> while down.\n# TYPE guard_container_runtime_up gauge\nguard_container_runtime_up{{runtime=\"{}\"}} {}\nguard_container_runtime_up{{runtime=\"cri\"}} {}",
            if self.runtime_docker_is_podman.load(Relaxed) == 1 {
                "podman"
            } else {
                "docker"
            },
            self.runtime_docker_up.load(Relaxed),
            self.runtime_cri_up.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "guard_container_runtime_up{{runtime=\"containerd\"}} {}",
            self.runtime_containerd_up.load(Relaxed)
        );
        single(
            &mut out,
            "guard_containerd_events_subscribed",
            "gauge",
            "Whether containerd's event stream (Events.Subscribe: container create/update/delete) is open (1) or not (0).",
            self.containerd_events.load(Relaxed),
        );
        single(
            &mut out,
            "guard_audit_write_errors_total",
            "counter",
            "Failed audit log writes, syncs and reopens (disk full, I/O errors).",
            self.audit_write_errors.load(Relaxed),
        );
        single(
            &mut out,
            "guard_audit_records_lost_total",
            "counter",
            "Audit records not in the log (queue full or write failure); each is counted in a later drop_summary record.",
            self.audit_records_lost.load(Relaxed),
        );
        let state = self.audit_state.load(Relaxed);
        if state != 0 {
            single(
                &mut out,
                "guard_audit_healthy",
                "gauge",
                "1 when the audit log's last write succeeded, 0 while writes fail.",
                u64::from(state == 1),
            );
        }
        out
    }
}

/// Where to serve `/metrics`: an address, or nowhere (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddr(pub Option<SocketAddr>);

pub fn parse_addr(s: &str) -> Result<MetricsAddr, String> {
    if s == "off" {
        return Ok(MetricsAddr(None));
    }
    s.parse()
        .map(|a| MetricsAddr(Some(a)))
        .map_err(|_| format!("{s:?}: expected ADDR:PORT (e.g. 127.0.0.1:9464) or `off`"))
}

/// Binds `addr` and serves until the runtime stops. A bind failure is reported, not fatal:
/// enforcement matters more than its metrics.
pub async fn serve(addr: SocketAddr) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!("metrics: cannot listen on {addr}: {e}; /metrics is off");
            return;
        }
    };
    info!(%addr, "metrics: serving /metrics and /healthz");
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(CONNECTION_TIME)
                .max_buf_size(MAX_REQUEST)
                .keep_alive(false)
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(|req| async move {
                        Ok::<_, std::convert::Infallible>(answer(&req))
                    }),
                );
            let _ = tokio::time::timeout(CONNECTION_TIME, conn).await;
            drop(permit);
        });
    }
}

/// The response to one request (its body is never read).
fn answer<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => (StatusCode::OK, METRICS.render()),
        (&Method::GET, "/healthz") if METRICS.ready.load(Relaxed) == 1 => {
            (StatusCode::OK, "ok\n".to_owned())
        }
        (&Method::GET, "/healthz") => (StatusCode::SERVICE_UNAVAILABLE, "starting\n".to_owned()),
        (&Method::GET, _) => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
        _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histograms_and_escaped_labels() {
        let m = Metrics::default();
        m.received(EventKind::Syscall as u16);
        m.received(EventKind::Syscall as u16);
        m.received(999);
        m.set_kernel(&[(EventKind::Syscall, 7)], 1, (3, 4, 5));
        m.alert("Read \"sensitive\" file", "Warning");
        m.alert("Read \"sensitive\" file", "Warning");
        m.decision("open", "kill");
        m.action("kill_process", "done", Duration::from_micros(300));
        m.event_latency.observe(Duration::from_millis(2));
        assert!(
            !m.render().contains("guard_audit_healthy"),
            "no audit log, no gauge"
        );
        m.set_audit_healthy(false);
        m.audit_write_error();
        m.audit_record_lost();
        m.audit_record_lost();
        let t = m.render();
        for want in [
            "guard_events_received_total{kind=\"syscall\"} 2",
            "guard_events_dropped_total{kind=\"syscall\"} 7",
            "guard_decode_errors_total 1",
            "guard_prefiltered_opens_total 3",
            "guard_prefiltered_connects_total 4",
            "guard_prefiltered_sends_total 5",
            "guard_alerts_total{rule=\"Read \\\"sensitive\\\" file\",priority=\"Warning\"} 2",
            "guard_decisions_total{op=\"open\",verdict=\"kill\"} 1",
            "guard_actions_total{action=\"kill_process\",outcome=\"done\"} 1",
            "guard_action_latency_seconds_bucket{le=\"0.0005\"} 1",
            "guard_action_latency_seconds_bucket{le=\"0.0001\"} 0",
            "guard_event_latency_seconds_bucket{le=\"0.005\"} 1",
            "guard_event_latency_seconds_bucket{le=\"0.001\"} 0",
            "guard_event_latency_seconds_count 1",
            "guard_audit_healthy 0",
            "guard_audit_write_errors_total 1",
            "guard_audit_records_lost_total 2",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
    }

    #[test]
    fn label_series_are_bounded() {
        let m = Metrics::default();
        for i in 0..MAX_SERIES + 50 {
            m.alert(&format!("rule {i}"), "Warning");
        }
        let n = m.alerts.0.lock().expect("lock").len();
        assert_eq!(
            n,
            MAX_SERIES + 1,
            "the overflow folds into one `other` series"
        );
    }

    #[test]
    fn addresses_parse_or_say_how() {
        assert_eq!(parse_addr("off"), Ok(MetricsAddr(None)));
        assert_eq!(
            parse_addr("127.0.0.1:9464"),
            Ok(MetricsAddr(Some("127.0.0.1:9464".parse().expect("addr"))))
        );
        assert!(
            parse_addr("localhost")
                .expect_err("bad address")
                .contains("ADDR:PORT")
        );
    }

    #[tokio::test]
    async fn serves_metrics_healthz_and_refuses_the_rest() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        tokio::spawn(serve(addr));
        let get = |req: &'static str| async move {
            for _ in 0..50 {
                if let Ok(mut s) = tokio::net::TcpStream::connect(addr).await {
                    s.write_all(req.as_bytes()).await.expect("write");
                    let mut out = String::new();
                    s.read_to_string(&mut out).await.expect("read");
                    return out;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            panic!("metrics server did not come up");
        };
        let m = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(m.starts_with("HTTP/1.1 200 OK"), "{m}");
        assert!(m.contains("guard_events_received_total{kind=\"exec\"}"));
        assert!(
            get("GET /nope HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404")
        );
        assert!(
            get("POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405")
        );
        let huge = Box::leak(
            format!(
                "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
                "a".repeat(MAX_REQUEST)
            )
            .into_boxed_str(),
        );
        assert!(get(huge).await.starts_with("HTTP/1.1 431"));
    }

    /// A client that never finishes its request is cut off: it cannot hold a slot for long.
    #[tokio::test]
    async fn an_unfinished_request_is_cut_off() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        drop(l);
        tokio::spawn(serve(addr));
        let mut s = None;
        for _ in 0..50 {
            if let Ok(c) = tokio::net::TcpStream::connect(addr).await {
                s = Some(c);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut s = s.expect("metrics server did not come up");
        s.write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .expect("write");
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let read = tokio::time::timeout(CONNECTION_TIME * 2, s.read_to_end(&mut out)).await;
        assert!(
            read.is_ok(),
            "the connection was still open after {:?}",
            started.elapsed()
        );
        assert!(
            started.elapsed() >= CONNECTION_TIME / 2,
            "closed too early: {:?}",
            started.elapsed()
        );
    }
}
