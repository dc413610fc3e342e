//! The `fanotify` backend's mechanism (docs/policies.md "The fanotify backend"): permission
//! events on the files of bound workloads, answered by a dedicated thread.
//!
//! - [`marks`]: what is marked and the rule table, rebuilt by the cgroup walk every second.
//! - [`answer`]: the decision, from the file's identity, the opener's binding and access.
//! - `modify`: changes no open asks about (truncate(2) by any name, a descriptor opened
//!   before the policy) of files a policy denies writing, reported by a third group; the
//!   pipeline kills the writer after the fact (enforced) or records a would-deny (detect).
//! - the answer thread (here) reads events, decides, answers, and only then builds a decision
//!   record, handed to the pipeline through a bounded channel (`try_send`: a full channel
//!   counts a lost record, the answer never waits). It reads `/proc` and one BPF map, nothing
//!   else: never the pipeline, Docker, or a disk file.
//!
//! **Ignore marks.** After allowing an open of a regular file that no policy names (or that
//! the rule group asks about anyway), the thread adds an ignore mark for `FAN_OPEN_PERM` on
//! its inode in the first group, so its later opens do not wait on the agent. The kernel
//! drops it at the file's first modification (no `FAN_MARK_IGNORED_SURV_MODIFY`); all are
//! dropped when the rule table or the bindings change (a generation, under the same lock as
//! the adding), and at most `IGNORE_MAX` are added per generation. docs/policies.md says
//! why a renamed, linked or replaced file cannot stay ignored once a rule names it. A sealed
//! file no policy denies reading (`Rules::read_free`) is ignored in the rule group as well:
//! the kernel refuses its writes before asking; those ignores are removed one by one when a
//! walk finds the file no longer free, before any seal is lifted.
//!
//! **Detect mode** refuses nothing: its workloads are not marked for permission events, and
//! their opens are judged in the kernel at the open's exit (`policy_open_detect`), so none
//! waits for this thread; only the changes group watches their denied files.
//!
//! When the agent stops or dies, the group's descriptor closes and the kernel lets every
//! pending and later open through: what remains is the pinned kernel programs (the exec
//! backstop at `sched_process_exec`, and the socket programs). A restarted agent marks again
//! before `guard: ready`.

pub mod answer;
pub mod marks;
mod modify;
mod record;
pub mod seal;
mod stats;
pub mod sys;

use std::{
    os::fd::{AsFd, OwnedFd},
    os::unix::fs::MetadataExt,
    panic::AssertUnwindSafe,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use guard_ebpf::{CgroupPolicy, policy_flags as pf};
use tracing::{info, warn};

use crate::policy::{
    fallback::BindingCache,
    resolve::{FileId, kernel_dev},
};
use answer::{Rules, Why, Written};
pub use marks::Workload;
use record::record;
pub use record::{Orphan, Record};
pub use stats::Stats;

/// Set once a listener runs: hardening keeps what the answer needs (docs/hardening.md).
static IN_FORCE: AtomicBool = AtomicBool::new(false);

/// Whether the fanotify backend's listener is running in this process.
pub fn in_force() -> bool {
    IN_FORCE.load(Ordering::Relaxed)
}

/// Whether this kernel gives fanotify permission events to this process.
pub fn probe() -> Result<()> {
    sys::probe()
        .context("fanotify permission events (CONFIG_FANOTIFY_ACCESS_PERMISSIONS, CAP_SYS_ADMIN)")
}

/// Decision records waiting for the pipeline.
pub const RECORD_QUEUE: usize = 4096;
/// Files remembered as written in `deny_new_binaries` workloads.
pub const WRITTEN_MAX: usize = 65_536;
/// Ignore marks added per generation; past it, files are asked about on every open.
pub const IGNORE_MAX: usize = 16_384;
/// Cached cgroup ids by path.
const CGROUP_CACHE_MAX: usize = 4096;
const CGROUP_CACHE_TTL: Duration = Duration::from_secs(1);

/// The ignore marks: the generation they belong to, how many the first group has, and the
/// sealed files the rule group ignores (removed one by one: flushing the rule group would drop
/// its rule marks too).
#[derive(Debug)]
struct Ignores {
    generation: u64,
    count: usize,
    style: Option<sys::IgnoreStyle>,
    rule_files: std::collections::HashSet<FileId>,
}

struct Shared {
    /// Filesystem marks and ignore marks.
    group: OwnedFd,
    /// Inode marks on the rules' files (ignored only for sealed files free to read).
    rule_group: OwnedFd,
    /// Change notifications of the files `deny_write` rules cover (`modify.rs`);
    /// `None` where the kernel refuses such a group (the traced truncate's name enforces).
    changes: Option<OwnedFd>,
    /// The rule table and the generation it belongs to.
    rules: RwLock<(u64, Arc<Rules>)>,
    ignores: std::sync::Mutex<Ignores>,
    stop: AtomicBool,
    stats: Stats,
    agent_tgid: u32,
    cgroot: String,
}

/// The running listener: the group, the answer thread, and the records it sends.
pub struct Fanotify {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// What the rule group marks, per workload cgroup (`marks::Marked`).
    rule_marked: marks::Marked,
    /// (cgroup, policy id) of the workloads of the last pass.
    bindings: Vec<(u64, u32)>,
    /// Directories sealed against rename, link and create (`seal.rs`).
    sealer: seal::Sealer,
    /// Workloads of the last pass: cgroup -> (a process there, policy id, enforced); where a
    /// name is resolved once the event's own process is gone.
    walked: std::collections::HashMap<u64, (u32, u32, bool)>,
    pub records: tokio::sync::mpsc::Receiver<Record>,
}

/// `f` in the root of the first of `pids`, then `walked`, whose root opens and for which `f`
/// answers (the event's process may have exited).
fn in_first_root<T>(
    pids: &[u32],
    walked: u32,
    mut f: impl FnMut(&OwnedFd) -> Option<T>,
) -> Option<T> {
    pids.iter().chain([&walked]).find_map(|&p| {
        let root = crate::procroot::open_root(p).ok()?;
        f(&root)
    })
}

/// What a refused syscall changed, for [`Fanotify::sealed_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedChange {
    /// An existing name in a directory (unlink, rmdir, rename, a link or symlink made): the
    /// directory is sealed, or the name is a sealed file.
    InDir,
    /// A new name in a directory (an `O_CREAT` open, mkdir, mknod): only while it does not
    /// exist, since an existing file's open was the answer's to refuse.
    NewInDir,
    /// The sealed directory or file itself (chmod; a file's open for write, truncate(2), a
    /// hard link made to it).
    Itself,
}

impl Fanotify {
    /// Starts the answer thread. `cgroups` is the kernel's `POLICY_CGROUPS` map (a duplicate
    /// of its descriptor: the thread reads bindings as the kernel holds them, including the
    /// ones `cgroup_mkdir` made before the agent's walk saw the cgroup).
    pub fn start(cgroups: &Map) -> Result<Self> {
        let Map::HashMap(data) = cgroups else {
            anyhow::bail!("POLICY_CGROUPS is not a hash map");
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .context("duplicating the POLICY_CGROUPS descriptor")?;
        let map: BpfHashMap<MapData, u64, CgroupPolicy> =
            BpfHashMap::try_from(Map::HashMap(MapData::from_fd(fd)?))?;
        let group = sys::init().context("fanotify_init")?;
        let rule_group = sys::init().context("fanotify_init (rule group)")?;
        let changes = sys::init_changes()
            .inspect_err(|e| {
                warn!(
                    "fanotify: no change notifications ({e}): a truncate through a magic link \
                     of a file a policy denies writing is neither enforced nor recorded"
                )
            })
            .ok();
        let shared = Arc::new(Shared {
            group,
            rule_group,
            changes,
            rules: RwLock::new((0, Arc::new(Rules::default()))),
            ignores: std::sync::Mutex::new(Ignores {
                generation: 0,
                count: 0,
                style: Some(sys::IgnoreStyle::Ignore),
                rule_files: Default::default(),
            }),
            stop: AtomicBool::new(false),
            stats: Stats::default(),
            agent_tgid: std::process::id(),
            cgroot: crate::sysfs::cgroup2_mount().unwrap_or_else(|| "/sys/fs/cgroup".into()),
        });
        let (tx, records) = tokio::sync::mpsc::channel(RECORD_QUEUE);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("guard-fanotify".into())
            .spawn(move || answer_loop(&sh, map, tx))
            .context("starting the fanotify answer thread")?;
        IN_FORCE.store(true, Ordering::Relaxed);
        Ok(Self {
            shared,
            thread: Some(thread),
            rule_marked: Default::default(),
            bindings: Vec::new(),
            sealer: seal::Sealer::default(),
            walked: Default::default(),
            records,
        })
    }

    /// Marks the workloads' files and swaps in their rule table (the cgroup walk calls it).
    /// A changed table or binding set starts a new generation: every ignore mark is dropped
    /// (under the lock the answer thread adds them with, so none from the old one survives).
    pub fn sync(&mut self, workloads: &[Workload<'_>]) -> marks::Pass {
        let sh = &self.shared;
        let mut pass = marks::build(
            &sh.group,
            &sh.rule_group,
            sh.changes.as_ref(),
            workloads,
            &mut self.rule_marked,
        );
        // Rule-group ignores of files no longer free to read go before any seal is lifted.
        let dropped = self.drop_rule_ignores(&pass.read_free);
        pass.seals = self.sealer.apply(std::mem::take(&mut pass.seal));
        let mut read_free = std::mem::take(&mut pass.read_free);
        read_free.retain(|f| self.sealer.is_sealed(*f));
        // And of those whose seal did not take.
        let dropped = self.drop_rule_ignores(&read_free) || dropped;
        pass.rules.read_free = read_free.clone();
        pass.read_free = read_free;
        if pass.seals.resealed > 0 {
            warn!(
                resealed = pass.seals.resealed,
                "fanotify: sealed directories had been unsealed; sealed again"
            );
        }
        self.walked = workloads
            .iter()
            .map(|w| (w.cgroup_id, (w.pid, w.policy_id, w.enforce)))
            .collect();
        let rules = std::mem::take(&mut pass.rules);
        let mut bindings: Vec<(u64, u32)> = workloads
            .iter()
            .map(|w| (w.cgroup_id, w.policy_id))
            .collect();
        bindings.sort_unstable();
        let same = !dropped
            && bindings == self.bindings
            && sh.rules.read().map(|r| *r.1 == rules).unwrap_or(false);
        if same {
            return pass;
        }
        self.bindings = bindings;
        let Ok(mut ig) = sh.ignores.lock() else {
            return pass;
        };
        ig.generation += 1;
        if ig.count > 0 {
            if let Err(e) = sys::flush_inode_marks(sh.group.as_fd()) {
                // Ignores that cannot be dropped: add no more, and say so.
                warn!("fanotify: dropping ignore marks: {e}");
                ig.style = None;
            }
            ig.count = 0;
            sh.stats.ignore_flushes.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut r) = sh.rules.write() {
            *r = (ig.generation, Arc::new(rules));
        }
        pass
    }

    /// Removes the rule group's ignore marks on files not in `keep`; true if any was there.
    /// The generation moves first, so none is added again until the next table is in.
    fn drop_rule_ignores(&self, keep: &std::collections::HashSet<FileId>) -> bool {
        let sh = &self.shared;
        let (gone, style) = {
            let Ok(mut ig) = sh.ignores.lock() else {
                return false;
            };
            let gone: Vec<FileId> = ig
                .rule_files
                .iter()
                .filter(|f| !keep.contains(f))
                .copied()
                .collect();
            if gone.is_empty() {
                return false;
            }
            ig.generation += 1;
            for f in &gone {
                ig.rule_files.remove(f);
            }
            (gone, ig.style)
        };
        // Not under the lock: opening the file raises an event the answer thread must answer.
        for f in gone {
            let Some(fd) = self.sealer.open_file(f) else {
                // Gone with its workload: the mark went with the inode.
                continue;
            };
            if let Some(style) = style
                && let Err(e) = sys::unignore(sh.rule_group.as_fd(), fd.as_fd(), style)
            {
                warn!("fanotify: dropping an ignore mark of a sealed file: {e}");
            }
        }
        true
    }

    /// (policy id, enforced) of the workload when the file `name` names (an absolute path as
    /// the first of `pids` that is alive sees it, else as the workload's walked process does;
    /// symlinks followed in that root) is one its policy denies writing. `None` for a file
    /// the changes group watches that the policy names by identity: the change's report, by
    /// any name, decides it (`modify.rs`), so one truncate is not recorded twice.
    pub fn denies_write(&self, cgroup: u64, pids: &[u32], name: &str) -> Option<(u32, bool)> {
        let &(walked, policy_id, enforce) = self.walked.get(&cgroup)?;
        let name = crate::procroot::through_own_root(name);
        let rules = self.shared.rules.read().ok()?.1.clone();
        let bits = in_first_root(pids, walked, |root| {
            let fd = sys::open_in(root, name, false).ok()?;
            let md = std::fs::File::from(fd.try_clone().ok()?).metadata().ok()?;
            let id = crate::policy::resolve::file_id(&md);
            // Judged from the change's report instead (`modify::judge`, by identity).
            if rules.watched_files.contains(&id) && rules.files.contains_key(&(policy_id, id)) {
                return Some(0);
            }
            Some(rules.bits(policy_id, id, || marks::fd_path(&fd)))
        })?;
        let access = answer::Access {
            read: false,
            write: true,
        };
        answer::open_verdict(bits, access).map(|_| (policy_id, enforce))
    }

    /// Why policy `policy_id` denies writing `file` by its identity, if it does (a change's
    /// report, `Record::Orphaned`).
    pub fn denies_change(&self, policy_id: u32, file: FileId) -> Option<crate::events::Reason> {
        let rules = self.shared.rules.read().ok().map(|r| r.1.clone())?;
        modify::change_why(&rules, policy_id, file).map(record::reason)
    }

    /// Directories sealed now.
    pub fn sealed(&self) -> usize {
        self.sealer.len()
    }

    /// The policy id of an enforced workload when the directory or file `change` names
    /// (`name` is an absolute, normal path as the first of `pids` that is alive sees it, else
    /// as the workload's walked process does) is one this agent sealed, so an EPERM on that
    /// change was the seal's refusal, and whether a directory (true) or a file sealed it.
    /// `None` otherwise.
    pub fn sealed_by(
        &self,
        cgroup: u64,
        pids: &[u32],
        name: &str,
        change: SealedChange,
    ) -> Option<(u32, bool)> {
        let &(walked, policy_id, enforce) = self.walked.get(&cgroup)?;
        if !enforce || self.sealer.is_empty() {
            return None;
        }
        let name = crate::procroot::through_own_root(name);
        let dir = match name.rsplit_once('/') {
            Some(("", _)) => "/",
            Some((d, _)) => d,
            None => return None,
        };
        let found = in_first_root(pids, walked, |root| {
            // O_PATH: no permission event of our own. Immutable now: a seal a container lifted
            // refused nothing (the answer did, and recorded it).
            let sealed = |path: &str, want_dir: bool| -> Option<bool> {
                let fd = sys::open_in(root, path, false).ok()?;
                Some(
                    seal::immutable_now(&fd)
                        .is_some_and(|(id, dir)| dir == want_dir && self.sealer.is_sealed(id)),
                )
            };
            // Some(by): the root answered; by = Some(true) a sealed directory, Some(false) a
            // sealed file, None neither.
            let file = || (sealed(name, false) == Some(true)).then_some(false);
            Some(match change {
                SealedChange::Itself if sealed(name, true) == Some(true) => Some(true),
                SealedChange::Itself => file(),
                SealedChange::InDir if sealed(dir, true)? => Some(true),
                SealedChange::InDir => file(),
                SealedChange::NewInDir => {
                    (sealed(dir, true)? && sys::open_in(root, name, false).is_err()).then_some(true)
                }
            })
        });
        if found.is_none() {
            tracing::debug!(
                cgroup,
                name,
                "fanotify: no process left to resolve a refused name in"
            );
        }
        found?.map(|by_dir| (policy_id, by_dir))
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// A one-line summary for the log.
    pub fn summary(&self) -> String {
        let s = &self.shared.stats;
        format!(
            "answered {}, denied {}, records lost {}, changes {} (denied {}, unread {}, writer gone {}, unknown {}, detect-mode repeats {}, within a second {}), ignored {} (dropped {} times), opener not yet asleep {} (waited past the yields {}), answer p50 < {} µs, p99 < {} µs, max {} µs",
            s.answered.load(Ordering::Relaxed),
            s.denied.load(Ordering::Relaxed),
            s.records_lost.load(Ordering::Relaxed),
            s.modified.load(Ordering::Relaxed),
            s.modified_denied.load(Ordering::Relaxed),
            s.changes_unread.load(Ordering::Relaxed),
            s.writer_gone.load(Ordering::Relaxed),
            s.writer_unknown.load(Ordering::Relaxed),
            s.changes_repeated.load(Ordering::Relaxed),
            s.changes_recent.load(Ordering::Relaxed),
            s.ignored.load(Ordering::Relaxed),
            s.ignore_flushes.load(Ordering::Relaxed),
            s.opener_running.load(Ordering::Relaxed),
            s.opener_slept.load(Ordering::Relaxed),
            s.quantile_us(0.5).unwrap_or(0),
            s.quantile_us(0.99).unwrap_or(0),
            s.max_ns.load(Ordering::Relaxed) / 1000,
        )
    }
}

impl Drop for Fanotify {
    fn drop(&mut self) {
        // Before the answer thread stops: lifting a file's seal opens the file, and that open
        // waits for an answer while the group is open.
        let lifted = self.sealer.lift_all();
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        info!("fanotify: {}, seals lifted {lifted}", self.summary());
    }
}

/// What the answer thread keeps between events.
struct Ctx {
    map: BpfHashMap<MapData, u64, CgroupPolicy>,
    bindings: BindingCache,
    cgroup_ids: std::collections::HashMap<String, (u64, Instant)>,
    written: Written,
    /// Recent changes that need no second look (`modify.rs`).
    changes: modify::Recent,
    /// The table generation `bindings` were read under: a new one (reload, rebinding) drops
    /// them, so the kernel's new bindings apply from the swap, not a second later.
    generation: u64,
}

/// The outcome of one event: the answer, the record to send after answering, and the
/// generation of the table it was decided with when the file may be ignored from now on.
struct Outcome {
    allow: bool,
    record: Option<Pending>,
    ignore: Option<u64>,
}

struct Pending {
    cgroup_id: u64,
    binding: CgroupPolicy,
    exec: bool,
    /// A read by a dynamic loader run as the program: recorded as the exec it is.
    via_loader: bool,
    why: Why,
    access: Option<answer::Access>,
    file: FileId,
}

const ALLOW: Outcome = Outcome {
    allow: true,
    record: None,
    ignore: None,
};

/// Which group an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Group {
    /// Filesystem marks (and ignores).
    First,
    /// Inode marks on rule files.
    Rules,
}

/// The last record sent: the same open reaches both groups when the rule group marks the
/// file's directory, and is recorded once.
struct LastRecord {
    tid: i32,
    file: FileId,
    exec: bool,
    group: Group,
    at: Instant,
}

/// How close the second group's event of the same open follows the first's.
const TWIN_WINDOW: Duration = Duration::from_millis(100);

fn answer_loop(
    sh: &Shared,
    map: BpfHashMap<MapData, u64, CgroupPolicy>,
    tx: tokio::sync::mpsc::Sender<Record>,
) {
    let mut ctx = Ctx {
        map,
        bindings: BindingCache::default(),
        cgroup_ids: Default::default(),
        written: Written::new(WRITTEN_MAX),
        changes: Default::default(),
        generation: 0,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut other = 0u64;
    let mut last: Option<LastRecord> = None;
    use std::os::fd::AsRawFd;
    while !sh.stop.load(Ordering::Relaxed) {
        // A negative fd (no changes group) is skipped by poll.
        let changes = sh.changes.as_ref().map_or(-1, AsRawFd::as_raw_fd);
        let mut pfd =
            [sh.group.as_raw_fd(), sh.rule_group.as_raw_fd(), changes].map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        // SAFETY: three pollfds on our stack; a timeout so `stop` is seen.
        let n = unsafe { libc::poll(pfd.as_mut_ptr(), 3, 200) };
        if n <= 0 {
            continue;
        }
        if pfd[2].revents != 0
            && let Some(g) = sh.changes.as_ref()
        {
            let mut unread = 0;
            match sys::read_changes(g.as_fd(), &mut buf, &mut unread) {
                Ok(changes) => {
                    for c in changes {
                        modify::modified(sh, &mut ctx, &c, &tx);
                    }
                }
                Err(e) => {
                    warn!("reading fanotify changes: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            sh.stats.changes_unread.fetch_add(unread, Ordering::Relaxed);
        }
        for (p, (g, which)) in pfd
            .iter()
            .zip([(&sh.group, Group::First), (&sh.rule_group, Group::Rules)])
        {
            if p.revents == 0 {
                continue;
            }
            let events = match sys::read_events(g.as_fd(), &mut buf, &mut other) {
                Ok(ev) => ev,
                Err(e) => {
                    warn!("reading fanotify events: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            for ev in events {
                handle(sh, &mut ctx, g, which, &ev, &tx, &mut last);
            }
        }
    }
}

/// Decides, answers, then adds the ignore mark and sends the record.
fn handle(
    sh: &Shared,
    ctx: &mut Ctx,
    g: &OwnedFd,
    which: Group,
    ev: &sys::Event,
    tx: &tokio::sync::mpsc::Sender<Record>,
    last: &mut Option<LastRecord>,
) {
    let t0 = Instant::now();
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| decide(sh, ctx, ev, which)))
        .unwrap_or_else(|_| {
            // A bug must not leave the opener blocked; refuse (fail closed).
            sh.stats.panics.fetch_add(1, Ordering::Relaxed);
            Outcome {
                allow: false,
                record: None,
                ignore: None,
            }
        });
    if let Err(e) = sys::respond(g.as_fd(), ev.fd.as_fd(), out.allow) {
        warn!("answering a fanotify event: {e}");
    }
    sh.stats.observe(t0.elapsed());
    sh.stats.answered.fetch_add(1, Ordering::Relaxed);
    if !out.allow {
        sh.stats.denied.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(generation) = out.ignore {
        add_ignore(sh, ev, generation, which);
    }
    if let Some(p) = out.record {
        let now = Instant::now();
        let twin = last.as_ref().is_some_and(|l| {
            l.tid == ev.tid
                && l.file == p.file
                && l.exec == p.exec
                && l.group != which
                && now.duration_since(l.at) < TWIN_WINDOW
        });
        if twin {
            *last = None;
            return;
        }
        *last = Some(LastRecord {
            tid: ev.tid,
            file: p.file,
            exec: p.exec,
            group: which,
            at: now,
        });
        let rec = record(ev.tid, marks::fd_path(&ev.fd).unwrap_or_default(), &p);
        if tx.try_send(Record::Refused(rec)).is_err() {
            sh.stats.records_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Adds the ignore mark in `which` group if the table it was decided with is still the
/// current one.
fn add_ignore(sh: &Shared, ev: &sys::Event, generation: u64, which: Group) {
    let Ok(mut ig) = sh.ignores.lock() else {
        return;
    };
    let full = match which {
        Group::First => ig.count >= IGNORE_MAX,
        Group::Rules => ig.rule_files.len() >= IGNORE_MAX,
    };
    if ig.generation != generation || full {
        return;
    }
    let Some(style) = ig.style else {
        return;
    };
    let group = match which {
        Group::First => sh.group.as_fd(),
        Group::Rules => {
            let Some((file, _)) = file_of(&ev.fd) else {
                return;
            };
            // Remembered first: a mark that might be in place is always dropped in time.
            ig.rule_files.insert(file);
            sh.rule_group.as_fd()
        }
    };
    let mut r = sys::ignore(group, ev.fd.as_fd(), style);
    if style == sys::IgnoreStyle::Ignore
        && r.as_ref()
            .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL))
    {
        // Before Linux 6.0: the ignored mask, which behaves the same on an inode mark.
        ig.style = Some(sys::IgnoreStyle::IgnoredMask);
        r = sys::ignore(group, ev.fd.as_fd(), sys::IgnoreStyle::IgnoredMask);
    }
    match r {
        Ok(()) => {
            if which == Group::First {
                ig.count += 1;
            }
            sh.stats.ignored.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => {
            sh.stats.ignore_failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The cgroup v2 path of a thread (`0::/path` in `/proc/<tid>/cgroup`).
fn cgroup_path(tid: i32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/cgroup")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_owned)
}

fn cgroup_id(sh: &Shared, ctx: &mut Ctx, path: &str, now: Instant) -> Option<u64> {
    if let Some((id, at)) = ctx.cgroup_ids.get(path)
        && now.duration_since(*at) < CGROUP_CACHE_TTL
    {
        return Some(*id);
    }
    if ctx.cgroup_ids.len() >= CGROUP_CACHE_MAX {
        ctx.cgroup_ids.clear();
    }
    let id = std::fs::metadata(format!("{}{path}", sh.cgroot))
        .ok()?
        .ino();
    ctx.cgroup_ids.insert(path.to_owned(), (id, now));
    Some(id)
}

/// The event file's identity, and whether it is a regular file.
fn file_of(fd: &OwnedFd) -> Option<(FileId, bool)> {
    let md = std::fs::File::from(fd.try_clone().ok()?).metadata().ok()?;
    Some((
        FileId {
            dev: kernel_dev(md.dev()),
            ino: md.ino(),
        },
        md.is_file(),
    ))
}

/// The current rule table and its generation; a new one drops the cached bindings.
fn table(sh: &Shared, ctx: &mut Ctx) -> (u64, Arc<Rules>) {
    let (generation, rules) = sh
        .rules
        .read()
        .map(|r| (r.0, r.1.clone()))
        .unwrap_or_default();
    if generation != ctx.generation {
        ctx.bindings = BindingCache::default();
        ctx.changes = Default::default();
        ctx.generation = generation;
    }
    (generation, rules)
}

/// Whether `tid` is a thread of the agent (its reads inside a workload's root are not the
/// workload's).
fn agent_thread(sh: &Shared, tid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{}/task/{tid}", sh.agent_tgid)).exists()
}

fn decide(sh: &Shared, ctx: &mut Ctx, ev: &sys::Event, which: Group) -> Outcome {
    let now = Instant::now();
    let exec = ev.mask & sys::FAN_OPEN_EXEC_PERM != 0;
    let (generation, rules) = table(sh, ctx);
    let Some((file, regular)) = file_of(&ev.fd) else {
        return ALLOW;
    };
    // An allowed open of this file may stop asking the first group (exec always asks).
    let ignorable = || {
        (which == Group::First
            && !exec
            && regular
            && rules.may_ignore(file, || marks::fd_path(&ev.fd)))
        .then_some(generation)
    };
    let allow = || Outcome {
        ignore: ignorable(),
        ..ALLOW
    };
    // The rule group asks about this file too and decides it there.
    if which == Group::First && rules.rule_marked.contains(&file) {
        return allow();
    }
    let binding = match cgroup_path(ev.tid).and_then(|p| cgroup_id(sh, ctx, &p, now)) {
        Some(cg) => ctx
            .bindings
            .get(cg, now, |id| ctx.map.get(&id, 0).ok())
            .map(|b| (cg, b)),
        None => {
            // The opener's cgroup cannot be read: refuse the files a policy names.
            return Outcome {
                allow: !rules.any.contains(&file),
                record: None,
                ignore: None,
            };
        }
    };
    let Some((cg, b)) = binding else {
        return allow();
    };
    if b.flags & (pf::EXEC_DENY | pf::EXEC_ALLOW | pf::DENY_NEW_BINARIES | pf::OPEN_RULES) == 0 {
        return allow();
    }
    // Detect mode refuses nothing, and the kernel reports each would-deny once: opens at their
    // exit (`policy_open_detect`), execs at `sched_process_exec`. Its workloads are not marked;
    // a mark left from when the policy was enforced asks here.
    if b.flags & pf::ENFORCE == 0 {
        return allow();
    }
    // The agent's own reads (resolving rules inside the workload's root) are not the workload's.
    if agent_thread(sh, ev.tid) {
        return ALLOW;
    }
    let path = || marks::fd_path(&ev.fd);
    let bits = rules.bits(b.policy_id, file, path);
    let (why, access) = if exec {
        (
            answer::exec_verdict(&b, bits, ctx.written.contains(&file)),
            None,
        )
    } else {
        if b.flags & pf::EXEC_DENY != 0
            && bits & guard_ebpf::path_bits::EXEC_MATCH != 0
            && runs_a_loader(ev.tid, &rules.loaders)
        {
            return Outcome {
                allow: false,
                record: Some(Pending {
                    cgroup_id: cg,
                    binding: b,
                    exec: false,
                    via_loader: true,
                    why: Why::DenyList,
                    access: None,
                    file,
                }),
                ignore: None,
            };
        }
        let needs_access =
            bits & (guard_ebpf::path_bits::DENY_READ | guard_ebpf::path_bits::DENY_WRITE) != 0
                || b.flags & pf::DENY_NEW_BINARIES != 0;
        if !needs_access {
            return allow();
        }
        let access = open_access(ev.tid, &sh.stats);
        let verdict = answer::open_verdict(bits, access);
        // A sealed file free to read: the kernel refuses its writes before asking, so the rule
        // group need not ask about its reads any more.
        if verdict.is_none()
            && which == Group::Rules
            && !access.write
            && bits & (guard_ebpf::path_bits::DENY_READ | guard_ebpf::path_bits::EXEC_MATCH) == 0
            && rules.read_free.contains(&file)
        {
            return Outcome {
                ignore: Some(generation),
                ..ALLOW
            };
        }
        // A refused open writes nothing: the file is not new (counting it would refuse every
        // later exec of it, in every workload, as a new binary).
        if access.write && verdict.is_none() && b.flags & pf::DENY_NEW_BINARIES != 0 {
            ctx.written.insert(file);
        }
        (verdict, Some(access))
    };
    let Some(why) = why else {
        return allow();
    };
    Outcome {
        allow: false,
        record: Some(Pending {
            cgroup_id: cg,
            binding: b,
            exec,
            via_loader: false,
            why,
            access,
            file,
        }),
        ignore: None,
    }
}

/// Whether thread `tid` runs one of `loaders` as its program (`ld.so FILE`). A stat, not an
/// open: an open by this thread of a file on a marked filesystem would wait on itself.
fn runs_a_loader(tid: i32, loaders: &std::collections::HashSet<FileId>) -> bool {
    !loaders.is_empty()
        && std::fs::metadata(format!("/proc/{tid}/exe")).is_ok_and(|md| {
            loaders.contains(&FileId {
                dev: kernel_dev(md.dev()),
                ino: md.ino(),
            })
        })
}

/// How long the answer waits for the opener to be asleep in its open. Under CPU contention the
/// opener can stay runnable (not yet asleep) for a scheduling period or more after queueing
/// the event; 200 bare yields were not enough on a loaded 2-CPU host, and the open then counted
/// as read + write (a busybox exec refused under a `deny_write` `/bin/**` rule).
const SYSCALL_WAIT: Duration = Duration::from_millis(50);

/// The access of the open `tid` is blocked in. Just after queueing the event the opener may
/// not be asleep yet, and the kernel then prints `running` instead of its registers: retried
/// (yields, then 50 µs sleeps, for at most `SYSCALL_WAIT`), then read + write (fail closed).
fn open_access(tid: i32, stats: &Stats) -> answer::Access {
    let path = format!("/proc/{tid}/syscall");
    let start = Instant::now();
    let mut tries = 0u32;
    loop {
        match std::fs::read_to_string(&path) {
            Ok(l) if l.starts_with("running") => {
                if start.elapsed() >= SYSCALL_WAIT {
                    return answer::Access::UNKNOWN;
                }
                tries += 1;
                if tries == 1 {
                    stats.opener_running.fetch_add(1, Ordering::Relaxed);
                }
                if tries < 200 {
                    std::thread::yield_now();
                } else {
                    if tries == 200 {
                        stats.opener_slept.fetch_add(1, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_micros(50));
                }
            }
            Ok(l) => return answer::access_from_syscall(&l),
            Err(_) => return answer::Access::UNKNOWN,
        }
    }
}
