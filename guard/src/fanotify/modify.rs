//! Changes of files an enforced policy denies writing that no open asked about: a truncate(2)
//! by any name (symlink, hard link, `/proc/self/fd/N`, `/proc/PID/root`, `/proc/self/cwd`) and
//! a write through a descriptor opened before the policy applied. fanotify has no permission
//! event for either, so such a file is also watched by the changes group (`marks.rs`,
//! `sys::init_changes`): each report names the file by identity, whatever name the writer
//! used, and the writer's thread. The writer is killed after the fact by the pipeline, which
//! records what happened; nothing is refused (the bytes are already changed).

use std::{panic::AssertUnwindSafe, sync::atomic::Ordering, time::Instant};

use guard_ebpf::policy_flags as pf;

use super::{
    Ctx, Pending, Record, Shared, agent_thread, answer, cgroup_id, cgroup_path, record, sys, table,
};
use crate::events::{Hook, Operation, Verdict};

/// Judges one reported change and hands a denied one to the pipeline.
pub(super) fn modified(
    sh: &Shared,
    ctx: &mut Ctx,
    c: &sys::Change,
    tx: &tokio::sync::mpsc::Sender<Record>,
) {
    sh.stats.modified.fetch_add(1, Ordering::Relaxed);
    let Ok(judged) = std::panic::catch_unwind(AssertUnwindSafe(|| judge(sh, ctx, c))) else {
        sh.stats.panics.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let Some((p, path)) = judged else {
        return;
    };
    sh.stats.modified_denied.fetch_add(1, Ordering::Relaxed);
    let mut decision = record(c.tid, path, &p);
    decision.op = Operation::Write;
    decision.hook = Hook::FanotifyModify;
    // The pipeline makes it `kill` (or `kill-failed`) once it has tried. The record's time,
    // taken now, bounds the writer's start time.
    decision.verdict = Verdict::WouldDeny;
    decision.common.ret = 0;
    if tx.try_send(Record::Modified(decision)).is_err() {
        sh.stats.records_lost.fetch_add(1, Ordering::Relaxed);
    }
}

/// The writer's binding and why its policy denies this change, with the file's path, if it
/// does: only for a file the current table watches (a mark left from an older one may still
/// report) and a writer bound to an enforced policy with open rules. (In detect mode its
/// opens for write are allowed and reported at their exit, and a truncate by the traced
/// syscall's name, `agent/decisions.rs`; the writes through those opens are not reported
/// again.)
fn judge(sh: &Shared, ctx: &mut Ctx, c: &sys::Change) -> Option<(Pending, String)> {
    let now = Instant::now();
    let (_, rules) = table(sh, ctx);
    let w = rules.watched.get(&c.fid)?;
    if agent_thread(sh, c.tid) {
        return None;
    }
    // A writer already gone has no cgroup to read: there is nothing left to kill.
    let cg = cgroup_path(c.tid).and_then(|p| cgroup_id(sh, ctx, &p, now))?;
    let b = ctx.bindings.get(cg, now, |id| ctx.map.get(&id, 0).ok())?;
    if b.flags & pf::ENFORCE == 0 || b.flags & pf::OPEN_RULES == 0 {
        return None;
    }
    // By identity only: a policy that covers the file by path alone (a subtree listed in part)
    // is judged from the traced truncate's name (`Fanotify::denies_write`).
    let bits = *rules.files.get(&(b.policy_id, w.file))?;
    let access = answer::Access {
        read: false,
        write: true,
    };
    let why = answer::open_verdict(bits, access)?;
    let p = Pending {
        cgroup_id: cg,
        binding: b,
        exec: false,
        via_loader: false,
        why,
        access: Some(access),
        file: w.file,
    };
    Some((p, w.path.clone()))
}
