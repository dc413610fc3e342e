//! Changes of files a policy denies writing that no open asked about: a truncate(2)
//! by any name (symlink, hard link, `/proc/self/fd/N`, `/proc/PID/root`, `/proc/self/cwd`) and
//! a write through a descriptor opened before the policy applied. fanotify has no permission
//! event for either, so such a file is also watched by the changes group (`marks.rs`,
//! `sys::init_changes`): each report names the file by identity, whatever name the writer
//! used, and the writer's thread. Enforced, the writer is killed after the fact by the
//! pipeline, which records what happened; nothing is refused (the bytes are already changed).
//! In detect mode the pipeline records a would-deny (`agent/changes.rs`).

use std::{
    collections::HashMap,
    panic::AssertUnwindSafe,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use guard_ebpf::policy_flags as pf;

use super::{
    Ctx, Orphan, Pending, Record, Rules, Shared, Why, agent_thread, answer, cgroup_id, cgroup_path,
    record, sys, table,
};
use crate::{
    events::{Hook, Operation, Verdict},
    policy::resolve::FileId,
};

/// A change's access: a write.
const WRITE: answer::Access = answer::Access {
    read: false,
    write: true,
};

/// How long a thread's change of a file that needed no record, or only a detect-mode one, is
/// not looked at again: a writer appending in a loop would otherwise cost `/proc` reads per
/// write. The pipeline records a detect-mode change once per process and file anyway
/// (`agent/changes.rs`), and refreshes that from the one change per period let through.
const RECENT: Duration = Duration::from_secs(1);
/// Entries kept; past it the cache starts afresh.
const RECENT_MAX: usize = 4096;

/// (thread, file) -> when its change was last looked at. Enforced changes are not kept: each
/// is handed on (the pipeline kills once per process).
#[derive(Default)]
pub(super) struct Recent(HashMap<(i32, sys::Fid), Instant>);

impl Recent {
    fn fresh(&self, key: &(i32, sys::Fid), now: Instant) -> bool {
        self.0
            .get(key)
            .is_some_and(|t| now.duration_since(*t) < RECENT)
    }

    fn note(&mut self, key: (i32, sys::Fid), now: Instant) {
        if self.0.len() >= RECENT_MAX {
            self.0.clear();
        }
        self.0.insert(key, now);
    }
}

/// Why policy `policy_id` denies a change of `file`, if it does. By identity only: a policy
/// that covers the file by path alone (a subtree listed in part) is judged from the traced
/// truncate's name (`Fanotify::denies_write`).
pub(super) fn change_why(rules: &Rules, policy_id: u32, file: FileId) -> Option<Why> {
    let bits = *rules.files.get(&(policy_id, file))?;
    answer::open_verdict(bits, WRITE)
}

/// What a reported change comes to.
enum Judged {
    /// Denied by the writer's policy (enforced or not), with the file's path.
    Denied(Pending, String, bool),
    /// The writer was gone before its cgroup could be read.
    Gone(Orphan),
}

/// Judges one reported change and hands a denied one to the pipeline.
pub(super) fn modified(
    sh: &Shared,
    ctx: &mut Ctx,
    c: &sys::Change,
    tx: &tokio::sync::mpsc::Sender<Record>,
) {
    sh.stats.modified.fetch_add(1, Ordering::Relaxed);
    let now = Instant::now();
    let key = (c.tid, c.fid.clone());
    // A new table or new bindings first drop what was recent (`table`).
    let (_, rules) = table(sh, ctx);
    if ctx.changes.fresh(&key, now) {
        sh.stats.changes_recent.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let Ok(judged) = std::panic::catch_unwind(AssertUnwindSafe(|| judge(sh, ctx, &rules, c, now)))
    else {
        sh.stats.panics.fetch_add(1, Ordering::Relaxed);
        return;
    };
    match &judged {
        Some(Judged::Denied(_, _, true)) | Some(Judged::Gone(_)) => {}
        // Not denied (a writer no policy binds, a policy that allows it), or detect mode.
        _ => ctx.changes.note(key, now),
    }
    let rec = match judged {
        None => return,
        Some(Judged::Gone(o)) => {
            sh.stats.writer_gone.fetch_add(1, Ordering::Relaxed);
            Record::Orphaned(o)
        }
        Some(Judged::Denied(p, path, enforce)) => {
            sh.stats.modified_denied.fetch_add(1, Ordering::Relaxed);
            let mut decision = record(c.tid, path, &p);
            decision.op = Operation::Write;
            decision.hook = Hook::FanotifyModify;
            // Enforced, the pipeline makes it `kill` (or `kill-failed`) once it has tried. The
            // record's time, taken now, bounds the writer's start time.
            decision.verdict = Verdict::WouldDeny;
            decision.common.ret = 0;
            Record::Modified { decision, enforce }
        }
    };
    if tx.try_send(rec).is_err() {
        sh.stats.records_lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// The writer's binding and why its policy denies this change, with the file's path, if it
/// does: only for a file the current table watches (a mark left from an older one may still
/// report) and a writer bound to a policy with open rules. In detect mode the pipeline
/// records it once per process and file, and not after the process's recorded open of the
/// file for write (`agent/changes.rs`).
fn judge(
    sh: &Shared,
    ctx: &mut Ctx,
    rules: &Rules,
    c: &sys::Change,
    now: Instant,
) -> Option<Judged> {
    let w = rules.watched.get(&c.fid)?;
    if agent_thread(sh, c.tid) {
        return None;
    }
    let Some(cg) = cgroup_path(c.tid).and_then(|p| cgroup_id(sh, ctx, &p, now)) else {
        return Some(Judged::Gone(Orphan {
            tid: c.tid as u32,
            file: w.file,
            path: w.path.clone(),
            time_ns: crate::events::wall_now_ns(),
        }));
    };
    let b = ctx.bindings.get(cg, now, |id| ctx.map.get(&id, 0).ok())?;
    if b.flags & pf::OPEN_RULES == 0 {
        return None;
    }
    let why = change_why(rules, b.policy_id, w.file)?;
    let p = Pending {
        cgroup_id: cg,
        binding: b,
        exec: false,
        via_loader: false,
        why,
        access: Some(WRITE),
        file: w.file,
    };
    Some(Judged::Denied(
        p,
        w.path.clone(),
        b.flags & pf::ENFORCE != 0,
    ))
}
