//! User and group names (`user.name`, `user.loginname`, `group.name`), as Falco reads them:
//! from the process's container's own `/etc/passwd` and `/etc/group`, the host's for host
//! processes (through pid 1's root). The files are opened by [`crate::procroot`] (the only
//! process allowed to reach into another root), read up to a size cap, parsed into at most
//! `max_entries` names each, and cached per container. A cached file is re-checked at most
//! every `recheck_ns` (one `fstat`) and re-read only when its identity, size or mtime changed.
//!
//! A uid or gid the file does not name reads as Falco's value: `root` for 0, else `<NA>`.

use std::{
    collections::HashMap,
    io::Read,
    os::{fd::OwnedFd, unix::fs::MetadataExt},
};

use crate::procroot::AccountFile;

use super::container::{ContainerId, NA};

/// Limits of the cache; every one bounds memory or work.
#[derive(Debug, Clone)]
pub struct UserDbConfig {
    /// A longer file is not parsed (its names read as `<NA>`).
    pub max_file_bytes: usize,
    /// Names kept per file; lines past this are ignored.
    pub max_entries: usize,
    /// Containers cached; the least recently checked one leaves when full.
    pub max_containers: usize,
    /// How often a cached file is checked for a change.
    pub recheck_ns: u64,
}

impl Default for UserDbConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 512 * 1024,
            max_entries: 8192,
            max_containers: 1024,
            recheck_ns: 2_000_000_000,
        }
    }
}

/// Longest name kept (Linux user names are at most 32 bytes; longer is not a name).
const MAX_NAME: usize = 256;

/// What identifies a version of a file: a change of any part means re-read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

#[derive(Debug, Default)]
struct NameTable {
    stamp: Option<Stamp>,
    names: HashMap<u32, Box<str>>,
    /// When the file was last checked (0 = never).
    checked_ns: u64,
}

#[derive(Debug, Default)]
struct Entry {
    passwd: NameTable,
    group: NameTable,
}

/// Opens an account file for a pid; [`crate::procroot::open_account_file`] in the agent.
pub type Opener = fn(u32, AccountFile) -> anyhow::Result<OwnedFd>;

/// Counters for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct UserDbStats {
    /// Files read and parsed.
    pub reads: u64,
    /// Checks that found the file unchanged.
    pub unchanged: u64,
    /// Files over the size cap.
    pub too_large: u64,
    /// Opens that failed (process gone, no such file, not a regular file).
    pub open_errors: u64,
}

pub struct UserDb {
    cfg: UserDbConfig,
    open: Opener,
    host: Entry,
    containers: HashMap<ContainerId, Entry>,
    stats: UserDbStats,
}

/// The host's files are read through pid 1's root (the host's even when the agent runs in a
/// container with the host's pid namespace).
const HOST_PID: u32 = 1;

impl UserDb {
    pub fn new(cfg: UserDbConfig, open: Opener) -> Self {
        Self {
            cfg,
            open,
            host: Entry::default(),
            containers: HashMap::new(),
            stats: UserDbStats::default(),
        }
    }

    pub fn stats(&self) -> UserDbStats {
        self.stats
    }

    pub fn containers(&self) -> usize {
        self.containers.len()
    }

    /// Drops a removed container's names.
    pub fn forget(&mut self, id: &ContainerId) {
        self.containers.remove(id);
    }

    /// Brings the files of `container` (host if `None`) up to date, reading them through
    /// `pid`'s root, at most once per `recheck_ns`. When `pid` has exited already, through
    /// the process `other` names (another live process of the container), asked only then.
    pub fn refresh(
        &mut self,
        container: Option<&ContainerId>,
        pid: u32,
        other: impl FnOnce() -> Option<u32>,
        now_ns: u64,
    ) {
        let mut pids = if container.is_some() {
            [Some(pid), None]
        } else {
            [Some(HOST_PID), None]
        };
        let mut other = Some(other);
        if let Some(id) = container
            && !self.containers.contains_key(id)
        {
            if self.containers.len() >= self.cfg.max_containers {
                self.evict_one();
            }
            self.containers.insert(id.clone(), Entry::default());
        }
        let entry = match container {
            Some(id) => match self.containers.get_mut(id) {
                Some(e) => e,
                None => return,
            },
            None => &mut self.host,
        };
        for (file, table) in [
            (AccountFile::Passwd, &mut entry.passwd),
            (AccountFile::Group, &mut entry.group),
        ] {
            if table.checked_ns != 0
                && now_ns.saturating_sub(table.checked_ns) < self.cfg.recheck_ns
            {
                continue;
            }
            table.checked_ns = now_ns.max(1);
            let mut opened = false;
            for i in 0..2 {
                if i == 1
                    && container.is_some()
                    && let Some(f) = other.take()
                {
                    pids[1] = f();
                }
                let Some(p) = pids[i] else { continue };
                if check_file(&self.cfg, self.open, &mut self.stats, p, file, table) {
                    opened = true;
                    break;
                }
            }
            if !opened {
                self.stats.open_errors += 1;
            }
        }
    }

    /// `user.name` of `uid`, after [`UserDb::refresh`].
    pub fn user(&self, container: Option<&ContainerId>, uid: u32) -> &str {
        self.name(container, uid, |e| &e.passwd)
    }

    /// `group.name` of `gid`, after [`UserDb::refresh`].
    pub fn group(&self, container: Option<&ContainerId>, gid: u32) -> &str {
        self.name(container, gid, |e| &e.group)
    }

    fn name(
        &self,
        container: Option<&ContainerId>,
        id: u32,
        pick: fn(&Entry) -> &NameTable,
    ) -> &str {
        let entry = match container {
            Some(c) => self.containers.get(c),
            None => Some(&self.host),
        };
        entry
            .and_then(|e| pick(e).names.get(&id))
            .map(|n| &**n)
            .unwrap_or(if id == 0 { "root" } else { NA })
    }

    fn evict_one(&mut self) {
        let oldest = self
            .containers
            .iter()
            .min_by_key(|(_, e)| e.passwd.checked_ns.max(e.group.checked_ns))
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.containers.remove(&k);
        }
    }
}

/// Re-reads `file` when it changed since `table` was filled; false when it cannot be opened
/// through `pid`. A failed open keeps what the table holds (the process may just be gone);
/// a file over the cap empties it.
fn check_file(
    cfg: &UserDbConfig,
    open: Opener,
    stats: &mut UserDbStats,
    pid: u32,
    file: AccountFile,
    table: &mut NameTable,
) -> bool {
    let Ok(fd) = open(pid, file) else {
        return false;
    };
    let mut f = std::fs::File::from(fd);
    let Ok(md) = f.metadata() else {
        return false;
    };
    let stamp = Stamp {
        dev: md.dev(),
        ino: md.ino(),
        size: md.size(),
        mtime: md.mtime(),
        mtime_nsec: md.mtime_nsec(),
    };
    if table.stamp == Some(stamp) {
        stats.unchanged += 1;
        return true;
    }
    table.stamp = Some(stamp);
    table.names.clear();
    let mut buf = Vec::new();
    // One byte more than the cap tells a file at the cap from a longer one.
    if (&mut f)
        .take(cfg.max_file_bytes as u64 + 1)
        .read_to_end(&mut buf)
        .is_err()
    {
        return false;
    }
    if buf.len() > cfg.max_file_bytes {
        stats.too_large += 1;
        return true;
    }
    stats.reads += 1;
    parse_into(&buf, cfg.max_entries, &mut table.names);
    true
}

/// Parses `name:x:id:...` lines (passwd and group share the first three columns). The first
/// line naming an id wins, as with `getpwuid`. Malformed lines, comments, NIS `+`/`-` lines and
/// names that are empty, too long or not UTF-8 are skipped.
pub fn parse_into(text: &[u8], max_entries: usize, out: &mut HashMap<u32, Box<str>>) {
    for line in text.split(|&b| b == b'\n') {
        if out.len() >= max_entries {
            break;
        }
        let mut cols = line.splitn(4, |&b| b == b':');
        let (Some(name), Some(_), Some(id)) = (cols.next(), cols.next(), cols.next()) else {
            continue;
        };
        if name.is_empty()
            || name.len() > MAX_NAME
            || matches!(name[0], b'#' | b'+' | b'-')
            || name
                .iter()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            continue;
        }
        let (Ok(name), Some(id)) = (
            std::str::from_utf8(name),
            std::str::from_utf8(id)
                .ok()
                .and_then(|s| s.parse::<u32>().ok()),
        ) else {
            continue;
        };
        out.entry(id).or_insert_with(|| name.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        io::Write,
        sync::{Mutex, atomic::AtomicU32},
    };

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        daemon:x:1:1::/:/usr/sbin/nologin\n\
        +nis::::::\n\
        broken line\n\
        appuser:x:1234:1234::/home/app:/bin/sh\n\
        shadowed:x:1234:1:::\n";

    #[test]
    fn parses_first_name_per_id() {
        let mut m = HashMap::new();
        parse_into(PASSWD.as_bytes(), 100, &mut m);
        assert_eq!(m.get(&0).map(|s| &**s), Some("root"));
        assert_eq!(m.get(&1).map(|s| &**s), Some("daemon"));
        assert_eq!(m.get(&1234).map(|s| &**s), Some("appuser"));
        assert_eq!(m.len(), 3, "{m:?}");
        let mut capped = HashMap::new();
        parse_into(PASSWD.as_bytes(), 2, &mut capped);
        assert_eq!(capped.len(), 2, "the entries cap holds");
        let mut bad = HashMap::new();
        parse_into(b"x:x:99999999999\n:x:5\nok:x:-1\n\xff:x:7\n", 10, &mut bad);
        assert!(bad.is_empty(), "{bad:?}");
    }

    /// Files the fake opener serves: a directory per pid with etc/passwd and etc/group.
    static ROOTS: Mutex<Option<std::path::PathBuf>> = Mutex::new(None);
    static OPENS: AtomicU32 = AtomicU32::new(0);

    fn fake_open(pid: u32, f: AccountFile) -> anyhow::Result<OwnedFd> {
        OPENS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let base = ROOTS.lock().expect("lock").clone().expect("roots set");
        Ok(std::fs::File::open(base.join(pid.to_string()).join(f.path()))?.into())
    }

    fn write(base: &std::path::Path, pid: u32, f: AccountFile, text: &str) {
        let p = base.join(pid.to_string()).join(f.path());
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        let mut file = std::fs::File::create(&p).expect("create");
        file.write_all(text.as_bytes()).expect("write");
    }

    fn cid(c: char) -> ContainerId {
        ContainerId::parse(&c.to_string().repeat(64)).expect("id")
    }

    #[test]
    fn per_container_names_refresh_on_change_and_stay_bounded() {
        let dir = std::env::temp_dir().join(format!("guard-users-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        *ROOTS.lock().expect("lock") = Some(dir.clone());
        write(
            &dir,
            1,
            AccountFile::Passwd,
            "root:x:0:0:::\nalice:x:1000:1000:::\n",
        );
        write(&dir, 1, AccountFile::Group, "root:x:0:\nstaff:x:50:\n");
        write(
            &dir,
            7,
            AccountFile::Passwd,
            "root:x:0:0:::\nappuser:x:1234:1234:::\n",
        );
        write(&dir, 7, AccountFile::Group, "root:x:0:\napp:x:1234:\n");
        let cfg = UserDbConfig {
            max_containers: 2,
            recheck_ns: 1_000,
            ..UserDbConfig::default()
        };
        let mut db = UserDb::new(cfg, fake_open);
        let (a, b, c) = (cid('a'), cid('b'), cid('c'));
        db.refresh(None, 4242, || None, 10);
        db.refresh(Some(&a), 7, || None, 10);
        // Host: the host's files (pid 1), whatever the event's pid.
        assert_eq!(db.user(None, 0), "root");
        assert_eq!(db.user(None, 1000), "alice");
        assert_eq!(db.user(None, 1234), NA, "only in the container's passwd");
        assert_eq!(db.group(None, 50), "staff");
        assert_eq!(db.user(Some(&a), 1234), "appuser");
        assert_eq!(db.group(Some(&a), 1234), "app");
        assert_eq!(db.user(Some(&a), 1000), NA);
        assert_eq!(db.group(Some(&a), 4), NA);
        // Unnamed uid 0 is still Falco's "root".
        assert_eq!(db.user(Some(&b), 0), "root");

        // Within the recheck interval nothing is opened; after it, an unchanged file is
        // stat'ed, not re-read; a changed one is re-read.
        let reads = db.stats().reads;
        let opens = OPENS.load(std::sync::atomic::Ordering::SeqCst);
        db.refresh(Some(&a), 7, || None, 500);
        assert_eq!(OPENS.load(std::sync::atomic::Ordering::SeqCst), opens);
        db.refresh(Some(&a), 7, || None, 2_000);
        assert_eq!(db.stats().reads, reads);
        assert_eq!(db.stats().unchanged, 2);
        write(
            &dir,
            7,
            AccountFile::Passwd,
            "root:x:0:0:::\nrenamed:x:1234:1234:::\nbob:x:1500:1:::\n",
        );
        db.refresh(Some(&a), 7, || None, 4_000);
        assert_eq!(db.user(Some(&a), 1234), "renamed");
        assert_eq!(db.user(Some(&a), 1500), "bob");

        // Bounded: a third container evicts the least recently checked one (the first).
        db.refresh(Some(&b), 7, || None, 5_000);
        db.refresh(Some(&c), 7, || None, 6_000);
        assert_eq!(db.containers(), 2);
        db.forget(&c);
        assert_eq!(db.containers(), 1);

        // A file over the size cap is not parsed: names read as Falco's fallback.
        let mut small = UserDb::new(
            UserDbConfig {
                max_file_bytes: 16,
                ..UserDbConfig::default()
            },
            fake_open,
        );
        small.refresh(Some(&a), 7, || None, 1);
        assert_eq!(small.user(Some(&a), 1234), NA);
        assert_eq!(small.stats().too_large, 2);
        // A process whose files cannot be opened: fallback values, counted.
        small.refresh(Some(&b), 99, || None, 1);
        assert_eq!(small.user(Some(&b), 0), "root");
        assert_eq!(small.stats().open_errors, 2);
        // The event's process is gone: another live process of the container is used.
        let mut db = UserDb::new(UserDbConfig::default(), fake_open);
        db.refresh(Some(&b), 99, || Some(7), 1);
        assert_eq!(db.user(Some(&b), 1234), "renamed");
        assert_eq!(db.stats().open_errors, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
