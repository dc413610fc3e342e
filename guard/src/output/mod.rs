//! Alert outputs: stdout, file (rotated), syslog (local socket) and http (Falco JSON, as
//! Falcosidekick expects it).
//!
//! Every channel has its own bounded queue and its own thread, so a slow or hung channel never
//! stalls the caller: [`Outputs::emit`] only does `try_send`. What a channel had to drop (queue
//! full) or failed to deliver is counted per channel, logged, and available for the audit log's
//! `drop_summary` through [`Outputs::take_drop_counts`].

mod file;
mod http;
mod syslog;

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::Deserialize;
use tokio::sync::mpsc;

use crate::alert::{Alert, Priority};

pub use file::RotatingFile;
pub use syslog::format_syslog;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// `<time>: <Priority> <output>`, as Falco prints it.
    #[default]
    Text,
    /// The alert JSON, one per line.
    Json,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelConfig {
    /// Name used in stats and drop summaries; defaults to the channel type.
    #[serde(default)]
    pub name: Option<String>,
    /// Alerts below this priority are not sent to this channel.
    #[serde(default = "default_min_priority")]
    pub min_priority: Priority,
    /// Bounded queue length; when full, new alerts for this channel are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
    #[serde(flatten)]
    pub kind: ChannelKind,
}

fn default_min_priority() -> Priority {
    Priority::Debug
}
fn default_queue() -> usize {
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelKind {
    Stdout {
        #[serde(default)]
        format: Format,
    },
    File {
        path: PathBuf,
        #[serde(default)]
        format: Format,
        /// Rotate when the file reaches this size (0 = never).
        #[serde(default = "default_file_max")]
        max_bytes: u64,
        /// Rotated files kept as `path.1` .. `path.N`.
        #[serde(default = "default_file_keep")]
        keep: u32,
    },
    Syslog {
        /// Local datagram socket.
        #[serde(default = "default_syslog_socket")]
        socket: PathBuf,
        /// `user`, `daemon`, `auth`, `local0`..`local7`.
        #[serde(default = "default_facility")]
        facility: String,
        #[serde(default)]
        format: Format,
    },
    Http {
        /// `http://host:port/path`, e.g. Falcosidekick's `http://127.0.0.1:2801/`.
        url: String,
        /// Per attempt, including reading the response.
        #[serde(default = "default_http_timeout")]
        timeout_ms: u64,
        /// Extra attempts after the first, with exponential backoff (100 ms, 200 ms, ... 2 s).
        #[serde(default = "default_http_retries")]
        retries: u32,
    },
}

fn default_file_max() -> u64 {
    100 * 1024 * 1024
}
fn default_file_keep() -> u32 {
    5
}
fn default_syslog_socket() -> PathBuf {
    PathBuf::from("/dev/log")
}
fn default_facility() -> String {
    "user".into()
}
fn default_http_timeout() -> u64 {
    5000
}
fn default_http_retries() -> u32 {
    3
}

impl ChannelKind {
    fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::Stdout { .. } => "stdout",
            ChannelKind::File { .. } => "file",
            ChannelKind::Syslog { .. } => "syslog",
            ChannelKind::Http { .. } => "http",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("output {name}: {reason}")]
    Config { name: String, reason: String },
    #[error("output {name}: {source}")]
    Io {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

/// Per-channel counters. `dropped` = queue full; `failed` = delivery failed after retries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelStats {
    pub name: String,
    pub sent: u64,
    pub dropped: u64,
    pub failed: u64,
    pub filtered: u64,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    filtered: AtomicU64,
    /// Dropped + failed already handed to a drop summary.
    reported: AtomicU64,
    /// Queued or being delivered.
    pending: AtomicU64,
    /// Set when shutdown gave up on the channel: what it still held was counted as dropped.
    abandoned: AtomicBool,
}

impl Counters {
    /// One alert left the channel: delivered (`ok`) or failed.
    fn finished(&self, ok: bool) {
        if self.abandoned.load(Ordering::Acquire) {
            return;
        }
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        if ok {
            self.sent.fetch_add(1, Ordering::Relaxed);
        } else {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Channel {
    name: String,
    min: Priority,
    tx: Option<mpsc::Sender<Arc<Alert>>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

/// Renders an alert for a text or JSON line.
pub fn format_alert(a: &Alert, f: Format) -> String {
    match f {
        Format::Text => format!("{}: {} {}", a.time, a.priority, a.output),
        Format::Json => serde_json::to_string(a).unwrap_or_else(|e| {
            // Alert contains only strings, maps and JSON values: this cannot fail in practice.
            format!("{{\"error\":\"cannot encode alert: {e}\"}}")
        }),
    }
}

/// A synchronous sink run on the channel's own thread.
trait Sink: Send {
    fn deliver(&mut self, a: &Alert) -> Result<(), String>;
}

struct WriterSink<W: Write + Send> {
    w: W,
    format: Format,
}

impl<W: Write + Send> Sink for WriterSink<W> {
    fn deliver(&mut self, a: &Alert) -> Result<(), String> {
        let mut line = format_alert(a, self.format);
        line.push('\n');
        self.w
            .write_all(line.as_bytes())
            .and_then(|_| self.w.flush())
            .map_err(|e| e.to_string())
    }
}

pub struct Outputs {
    channels: Vec<Channel>,
}

impl Outputs {
    /// Validates the configuration, opens files and sockets, and starts one thread per channel.
    pub fn start(cfgs: Vec<ChannelConfig>) -> Result<Self, OutputError> {
        let mut channels = Vec::with_capacity(cfgs.len());
        for c in cfgs {
            let name = c.name.clone().unwrap_or_else(|| c.kind.type_name().into());
            if channels.iter().any(|ch: &Channel| ch.name == name) {
                return Err(OutputError::Config {
                    name,
                    reason: "duplicate channel name".into(),
                });
            }
            let (tx, rx) = mpsc::channel::<Arc<Alert>>(c.queue.max(1));
            let counters = Arc::new(Counters::default());
            let ctr = counters.clone();
            let thread_name = format!("guard-out-{name}");
            let spawn = |f: Box<dyn FnOnce() + Send>| {
                std::thread::Builder::new()
                    .name(thread_name.clone())
                    .spawn(f)
                    .map_err(|source| OutputError::Io {
                        name: name.clone(),
                        source,
                    })
            };
            let thread = match c.kind {
                ChannelKind::Http {
                    url,
                    timeout_ms,
                    retries,
                } => {
                    let target =
                        http::HttpTarget::parse(&url).map_err(|reason| OutputError::Config {
                            name: name.clone(),
                            reason,
                        })?;
                    let opts = http::HttpOptions {
                        timeout: Duration::from_millis(timeout_ms.max(1)),
                        retries,
                    };
                    spawn(Box::new(move || http::run(target, opts, rx, ctr)))?
                }
                kind => {
                    let sink = open_sink(&name, kind)?;
                    spawn(Box::new(move || run_sink(sink, rx, ctr)))?
                }
            };
            channels.push(Channel {
                name,
                min: c.min_priority,
                tx: Some(tx),
                counters,
                thread: Some(thread),
            });
        }
        Ok(Outputs { channels })
    }

    /// Hands the alert to every channel whose minimum priority it meets. Never blocks.
    pub fn emit(&self, alert: &Arc<Alert>) {
        for ch in &self.channels {
            if alert.priority < ch.min {
                ch.counters.filtered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            ch.counters.pending.fetch_add(1, Ordering::Relaxed);
            let queued = ch
                .tx
                .as_ref()
                .is_some_and(|tx| tx.try_send(alert.clone()).is_ok());
            if !queued {
                ch.counters.pending.fetch_sub(1, Ordering::Relaxed);
                let n = ch.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(channel = %ch.name, dropped = n, "output queue full: alerts dropped");
                }
            }
        }
    }

    pub fn stats(&self) -> Vec<ChannelStats> {
        self.channels
            .iter()
            .map(|ch| ChannelStats {
                name: ch.name.clone(),
                sent: ch.counters.sent.load(Ordering::Relaxed),
                dropped: ch.counters.dropped.load(Ordering::Relaxed),
                failed: ch.counters.failed.load(Ordering::Relaxed),
                filtered: ch.counters.filtered.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Alerts each channel lost (dropped or failed) since the previous call; channels with no
    /// new loss are left out. For the audit log's `drop_summary.outputs`.
    pub fn take_drop_counts(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for ch in &self.channels {
            let lost = ch.counters.dropped.load(Ordering::Relaxed)
                + ch.counters.failed.load(Ordering::Relaxed);
            let before = ch.counters.reported.swap(lost, Ordering::Relaxed);
            if lost > before {
                out.insert(ch.name.clone(), lost - before);
            }
        }
        out
    }

    /// Closes the queues and waits up to `deadline` for channels to drain. A channel still busy
    /// then (e.g. a hung HTTP receiver, a stdout nobody reads) is left on its own thread, and
    /// the alerts it still held are counted as dropped.
    pub fn shutdown(mut self, deadline: Duration) -> Vec<ChannelStats> {
        self.close(deadline)
    }

    /// [`Outputs::shutdown`] without giving up the counters: [`Outputs::take_drop_counts`]
    /// then includes what the channels lost at shutdown.
    pub fn close(&mut self, deadline: Duration) -> Vec<ChannelStats> {
        for ch in &mut self.channels {
            ch.tx.take();
        }
        let end = Instant::now() + deadline;
        for ch in &mut self.channels {
            if let Some(t) = ch.thread.take() {
                while !t.is_finished() && Instant::now() < end {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if t.is_finished() {
                    let _ = t.join();
                } else {
                    ch.counters.abandoned.store(true, Ordering::Release);
                    let lost = ch.counters.pending.swap(0, Ordering::Relaxed);
                    ch.counters.dropped.fetch_add(lost, Ordering::Relaxed);
                    tracing::warn!(
                        channel = %ch.name,
                        lost,
                        "output did not drain before shutdown: the alerts it held are counted as dropped"
                    );
                }
            }
        }
        self.stats()
    }
}

fn open_sink(name: &str, kind: ChannelKind) -> Result<Box<dyn Sink>, OutputError> {
    let io = |source| OutputError::Io {
        name: name.to_string(),
        source,
    };
    Ok(match kind {
        ChannelKind::Stdout { format } => Box::new(WriterSink {
            w: std::io::stdout(),
            format,
        }),
        ChannelKind::File {
            path,
            format,
            max_bytes,
            keep,
        } => Box::new(WriterSink {
            w: RotatingFile::open(path, max_bytes, keep).map_err(io)?,
            format,
        }),
        ChannelKind::Syslog {
            socket,
            facility,
            format,
        } => {
            let fac = syslog::facility_code(&facility).ok_or_else(|| OutputError::Config {
                name: name.to_string(),
                reason: format!("unknown syslog facility {facility:?}"),
            })?;
            Box::new(syslog::SyslogSink::new(socket, fac, format).map_err(io)?)
        }
        ChannelKind::Http { .. } => {
            return Err(OutputError::Config {
                name: name.to_string(),
                reason: "http is not a synchronous sink".into(),
            });
        }
    })
}

fn run_sink(mut sink: Box<dyn Sink>, mut rx: mpsc::Receiver<Arc<Alert>>, ctr: Arc<Counters>) {
    let mut last_err: Option<Instant> = None;
    while let Some(a) = rx.blocking_recv() {
        match sink.deliver(&a) {
            Ok(()) => ctr.finished(true),
            Err(e) => {
                ctr.finished(false);
                // At most one log line per second per channel.
                if last_err.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                    tracing::warn!("output delivery failed: {e}");
                    last_err = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
