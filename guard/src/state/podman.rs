//! Podman's events log (its `file` events backend), followed with inotify for `create` and `remove` lines.
//!
//! Podman's API reads that log by polling it every 250 ms, so on the Docker-compatible event
//! stream a `podman run`'s `create` arrives after the container started (measured here: the
//! line is written at create, runc makes the cgroup ~110 ms later, the stream delivers the
//! event up to 250 ms after create). The line itself carries the name, image and labels:
//! read within a millisecond of being written, they put the container's policy into
//! `POLICY_PENDING` before its cgroup exists, as Docker's create event does. Everything else
//! (inspect, start, die, health) stays with the API client ([`super::docker`]); a `remove`
//! is taken from both, whichever comes first.
//! Without the file backend (journald) the API stream has no such poll, and nothing is read
//! here.

use std::{
    collections::HashMap,
    io::{Read, Seek, SeekFrom},
    os::fd::{AsFd, AsRawFd, RawFd},
    path::PathBuf,
    time::Duration,
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::Deserialize;
use tokio::io::unix::AsyncFd;
use tracing::{debug, info};

use super::container::{
    ContainerId, ContainerMeta, ContainerTable, MetaStatus, WeakContainerTable,
};

/// Rootful Podman's log with the file backend (`events_logfile_path`'s default).
pub const DEFAULT_EVENTS_FILE: &str = "/run/libpod/events/events.log";
/// A longer line is not one Podman writes for a container; it is skipped.
const MAX_LINE: usize = 64 * 1024;
/// Bytes read per wakeup at most, so a huge append cannot stall the task.
const MAX_READ: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct PodmanEventsConfig {
    pub path: PathBuf,
    /// How often a missing, rotated or truncated file is looked for again.
    pub recheck: Duration,
}

impl Default for PodmanEventsConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_EVENTS_FILE),
            recheck: Duration::from_secs(1),
        }
    }
}

/// One line of the log; other fields are ignored.
#[derive(Deserialize)]
struct Line {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Image", default)]
    image: Option<String>,
    #[serde(rename = "Name", default)]
    name: Option<String>,
    #[serde(rename = "Status")]
    status: String,
    #[serde(rename = "Type")]
    kind: String,
    /// The container's labels, for container events.
    #[serde(rename = "Attributes", default)]
    attributes: Option<HashMap<String, serde_json::Value>>,
    #[serde(rename = "Time", default)]
    time: Option<String>,
}

/// Where following stopped: the file (inode), the offset read up to, and the newest event
/// time taken, so a reopened or rotated file (Podman keeps the tail of the old one in the
/// new) never replays a `create` already taken, nor history from before the agent.
#[derive(Debug, Default, Clone, Copy)]
struct Cursor {
    ino: Option<u64>,
    pos: u64,
    last_ns: Option<i64>,
}

impl Cursor {
    /// Whether an event at `ns` is new; takes it.
    fn take(&mut self, ns: Option<i64>) -> bool {
        match (ns, self.last_ns) {
            (Some(t), Some(last)) if t <= last => false,
            (Some(t), _) => {
                self.last_ns = Some(t);
                true
            }
            // No time: cannot be ordered; taken (a create of a known container is skipped).
            (None, _) => true,
        }
    }
}

/// The metadata of a container `create` line; `None` for any other line, or a malformed one.
#[cfg(test)]
fn create_meta(line: &[u8]) -> Option<ContainerMeta> {
    meta_of(serde_json::from_slice(line).ok()?)
}

fn meta_of(l: Line) -> Option<ContainerMeta> {
    if l.kind != "container" || l.status != "create" {
        return None;
    }
    let id = ContainerId::parse(&l.id)?;
    let labels = l
        .attributes
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some((k, s)),
            _ => None,
        });
    Some(ContainerMeta::from_parts(
        id,
        l.name.as_deref(),
        l.image.as_deref(),
        None,
        labels,
        None,
    ))
}

/// Splits complete lines off `buf` and stores each container's create metadata (unless the
/// container is already known from the API). `skipping`: inside an overlong line.
fn take_lines(
    buf: &mut Vec<u8>,
    skipping: &mut bool,
    cursor: &mut Cursor,
    table: &ContainerTable,
) -> usize {
    let mut stored = 0;
    let mut start = 0;
    while let Some(nl) = buf[start..].iter().position(|&b| b == b'\n') {
        let line = &buf[start..start + nl];
        let parsed = (!*skipping)
            .then(|| serde_json::from_slice::<Line>(line).ok())
            .flatten()
            .filter(|l| cursor.take(l.time.as_deref().and_then(crate::rfc3339::parse)));
        // A `remove` read here too: a container whose removal the API stream did not
        // deliver (a reconnect, a lagging reader) does not stay in the table.
        if let Some(l) = &parsed
            && l.kind == "container"
            && l.status == "remove"
            && let Some(id) = ContainerId::parse(&l.id)
            && table.peek(&id).is_some()
        {
            debug!(container = %id.short(), "podman remove (events log)");
            table.remove(&id);
        }
        if let Some(meta) = parsed.and_then(meta_of)
            && table
                .peek(&meta.id)
                .is_none_or(|m| m.status != MetaStatus::Ready)
        {
            let id = meta.id.clone();
            if table.store_unless_removed(meta) {
                debug!(container = %id.short(), "podman create (events log)");
                stored += 1;
            }
        }
        *skipping = false;
        start += nl + 1;
    }
    buf.drain(..start);
    if buf.len() > MAX_LINE {
        buf.clear();
        *skipping = true;
    }
    stored
}

struct Watch(Inotify);

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Follows the log until every [`ContainerTable`] handle is dropped. Spawn it.
pub async fn follow(table: &ContainerTable, cfg: PodmanEventsConfig) {
    let weak = table.downgrade();
    let mut announced = false;
    let mut cursor = Cursor::default();
    loop {
        if weak.upgrade().is_none() {
            return;
        }
        if let Ok(file) = std::fs::File::open(&cfg.path) {
            if !announced {
                info!(file = %cfg.path.display(), "following podman's events log");
            }
            // The file found at start is history; a later one (created or rotated since) is
            // read from its start, the cursor skipping what was taken already.
            let history = !announced;
            if let Err(e) = follow_file(&weak, file, &cfg, history, &mut cursor).await {
                debug!(file = %cfg.path.display(), error = %e, "podman events log: reopening");
            }
        }
        announced |= std::fs::metadata(&cfg.path).is_ok();
        tokio::time::sleep(cfg.recheck).await;
    }
}

/// Reads from the end of `file` as it grows. Returns when the file was replaced, truncated
/// or removed (the caller reopens it), or the table is gone.
async fn follow_file(
    weak: &WeakContainerTable,
    mut file: std::fs::File,
    cfg: &PodmanEventsConfig,
    history: bool,
    cursor: &mut Cursor,
) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    ino.add_watch(
        &cfg.path,
        AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_MOVE_SELF | AddWatchFlags::IN_DELETE_SELF,
    )?;
    // SAFETY: the AsyncFd owns the Inotify, which keeps the descriptor open while registered.
    let fd = unsafe { AsyncFd::register_with_interest(Watch(ino), tokio::io::Interest::READABLE) }?;
    let md = file.metadata()?;
    let mut pos = file.seek(if history {
        SeekFrom::End(0)
    } else if cursor.ino == Some(md.ino()) && md.len() >= cursor.pos {
        // The same file reopened: on from where it was left.
        SeekFrom::Start(cursor.pos)
    } else {
        SeekFrom::Start(0)
    })?;
    cursor.ino = Some(md.ino());
    cursor.pos = pos;
    let mut buf = Vec::new();
    let mut skipping = false;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut recheck = tokio::time::interval(cfg.recheck);
    loop {
        tokio::select! {
            r = fd.readable() => {
                let mut g = r?;
                g.clear_ready();
                // Drain the inotify queue; what changed is read from the file below.
                while let Ok(evs) = fd.get_ref().0.read_events() {
                    if evs.is_empty() {
                        break;
                    }
                }
            }
            _ = recheck.tick() => {}
        }
        let Some(table) = weak.upgrade() else {
            return Ok(());
        };
        // Replaced (rotation) or truncated: start over on the new file.
        let now = std::fs::metadata(&cfg.path)?;
        let cur = file.metadata()?;
        if now.ino() != cur.ino() || cur.len() < pos {
            return Ok(());
        }
        let mut read = 0;
        while read < MAX_READ {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            read += n;
            pos += n as u64;
            buf.extend_from_slice(&chunk[..n]);
            take_lines(&mut buf, &mut skipping, cursor, &table);
            // Resume after the last whole line (a partial one is read again).
            cursor.pos = pos - buf.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::container::{ContainerTableConfig, NA};

    const A: &str = "3f1c2e9a7b6d5c4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e";

    fn line(status: &str, attrs: &str) -> String {
        line_at(status, attrs, 33)
    }

    fn line_at(status: &str, attrs: &str, sec: u32) -> String {
        format!(
            r#"{{"ID":"{A}","Image":"localhost/web:2","Name":"web-1","Status":"{status}","Time":"2026-12-04T13:32:{sec:02}.661774476Z","Type":"container","Attributes":{attrs}}}"#
        )
    }

    #[test]
    fn create_lines_give_name_image_and_labels() {
        let m = create_meta(line("create", r#"{"tier":"front","n":1}"#).as_bytes()).expect("meta");
        assert_eq!(m.id.as_str(), A);
        assert_eq!(m.status, MetaStatus::Ready);
        assert_eq!(
            (m.name.as_str(), m.image.as_str()),
            ("web-1", "localhost/web:2")
        );
        assert_eq!(m.image_tag, "2");
        assert_eq!(m.label("tier"), "front");
        assert_eq!(m.label("n"), NA, "a non-string attribute is not a label");
        for other in ["init", "start", "died", "remove"] {
            assert!(
                create_meta(line(other, "{}").as_bytes()).is_none(),
                "{other}"
            );
        }
        let image = r#"{"ID":"sha256:1","Name":"x","Status":"create","Type":"image"}"#;
        assert!(create_meta(image.as_bytes()).is_none());
        assert!(create_meta(line("create", "{}").replace(A, "short").as_bytes()).is_none());
        assert!(create_meta(b"{not json").is_none());
        assert!(create_meta(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn lines_are_split_bounded_and_known_containers_kept() {
        let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
        let mut buf = Vec::new();
        let mut skipping = false;
        let mut cursor = Cursor::default();
        // A partial line waits for its end.
        let l = line("create", r#"{"tier":"front"}"#);
        buf.extend_from_slice(&l.as_bytes()[..20]);
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 0);
        buf.extend_from_slice(&l.as_bytes()[20..]);
        buf.push(b'\n');
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 1);
        assert!(buf.is_empty());
        let id = ContainerId::parse(A).expect("id");
        assert_eq!(table.peek(&id).expect("stored").label("tier"), "front");
        // Known from the API already: not overwritten by the log.
        let again = line_at("create", r#"{"tier":"back"}"#, 34) + "\n";
        buf.extend_from_slice(again.as_bytes());
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 0);
        assert_eq!(table.peek(&id).expect("kept").label("tier"), "front");
        // An overlong line is dropped to its end, and the next line is read.
        buf.extend(std::iter::repeat_n(b'x', MAX_LINE + 1));
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 0);
        assert!(buf.is_empty() && skipping);
        let b = "b".repeat(64);
        let next = line_at("create", "{}", 35).replace(A, &b);
        buf.extend_from_slice(format!("tail of the long one\n{next}\n").as_bytes());
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 1);
        assert!(table.peek(&ContainerId::parse(&b).expect("id")).is_some());
    }

    /// A replayed line (a reopened or rotated file keeps the old tail) is not taken again,
    /// even for a container removed since: removed containers do not come back.
    #[test]
    fn replayed_lines_are_not_taken_again() {
        let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
        let (mut buf, mut skipping, mut cursor) = (Vec::new(), false, Cursor::default());
        let id = ContainerId::parse(A).expect("id");
        let first = line_at("create", "{}", 33) + "\n";
        buf.extend_from_slice(first.as_bytes());
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 1);
        table.remove(&id);
        // The same line again, and an older one: skipped; a newer one: taken.
        let replay = first.clone() + &line_at("create", "{}", 20) + "\n";
        buf.extend_from_slice(replay.as_bytes());
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 0);
        assert!(table.peek(&id).is_none(), "a removed container came back");
        let b = "b".repeat(64);
        buf.extend_from_slice((line_at("create", "{}", 50).replace(A, &b) + "\n").as_bytes());
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 1);
    }

    /// Under load the log can be read after the API stream's `remove` was handled: that late
    /// `create` does not bring the container back (nothing would remove it again).
    #[test]
    fn a_create_read_after_the_remove_is_not_taken() {
        let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
        let (mut buf, mut skipping, mut cursor) = (Vec::new(), false, Cursor::default());
        let id = ContainerId::parse(A).expect("id");
        table.remove(&id);
        buf.extend_from_slice((line("create", "{}") + "\n").as_bytes());
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 0);
        assert!(table.peek(&id).is_none() && table.is_empty());
        // And a `remove` line removes a container the API stream left in the table.
        let b = ContainerId::parse(&"b".repeat(64)).expect("id");
        let created = line_at("create", "{}", 40).replace(A, b.as_str());
        let removed = line_at("remove", "{}", 41).replace(A, b.as_str());
        buf.extend_from_slice(format!("{created}\n").as_bytes());
        assert_eq!(take_lines(&mut buf, &mut skipping, &mut cursor, &table), 1);
        assert!(table.peek(&b).is_some());
        buf.extend_from_slice(format!("{removed}\n").as_bytes());
        take_lines(&mut buf, &mut skipping, &mut cursor, &table);
        assert!(table.peek(&b).is_none() && table.is_empty());
    }

    /// The task follows appends with inotify and starts over on a replaced file.
    #[tokio::test]
    async fn follows_appends_and_rotation() {
        let dir = std::env::temp_dir().join(format!("guard-podman-ev-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("events.log");
        std::fs::write(&path, line("create", "{}") + "\n").expect("write");
        let (table, _rx) = ContainerTable::new(ContainerTableConfig::default());
        let cfg = PodmanEventsConfig {
            path: path.clone(),
            recheck: Duration::from_millis(20),
        };
        let t = table.clone();
        let task = tokio::spawn(async move { follow(&t, cfg).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = ContainerId::parse(A).expect("id");
        assert!(
            table.peek(&id).is_none(),
            "lines before the start are history"
        );
        let append = |p: &std::path::Path, s: String| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .expect("open");
            f.write_all(s.as_bytes()).expect("append");
        };
        append(&path, line_at("create", r#"{"k":"v"}"#, 40) + "\n");
        let mut ok = false;
        for _ in 0..100 {
            if table.peek(&id).is_some_and(|m| m.label("k") == "v") {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok, "append not seen");
        // Rotation: a new file at the path is followed from its start; the old tail Podman
        // keeps in it is not taken again (the container was removed meanwhile).
        table.remove(&id);
        let b = "c".repeat(64);
        let rotated = dir.join("events.new");
        std::fs::write(&rotated, line_at("create", r#"{"k":"v"}"#, 40) + "\n").expect("new file");
        std::fs::rename(&rotated, &path).expect("rename");
        append(&path, line_at("create", "{}", 45).replace(A, &b) + "\n");
        let bid = ContainerId::parse(&b).expect("id");
        let mut ok = false;
        for _ in 0..200 {
            if table.peek(&bid).is_some() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(ok, "the replaced file was not followed");
        assert!(table.peek(&id).is_none(), "the old tail was replayed");
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
