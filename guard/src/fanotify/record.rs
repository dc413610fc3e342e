//! What the answer thread hands the pipeline, and the decision records it builds from a
//! thread's `/proc` entries.

use super::{Pending, Why};
use crate::{
    events::{Access, Captured, CgroupId, Common, DecisionEvent, Hook, Operation, Reason, Verdict},
    policy::resolve::FileId,
};

/// What the answer thread hands the pipeline.
#[derive(Debug)]
pub enum Record {
    /// A refusal it answered: recorded as it is.
    Refused(DecisionEvent),
    /// A change of a file the writer's policy denies writing, which no open asked about
    /// (`modify.rs`). Enforced, the pipeline kills the writer, if it is still a process that
    /// started before the record's time, and records what happened; in detect mode it records
    /// a would-deny once per process and file (none after the process's recorded open for
    /// write of it).
    Modified {
        decision: DecisionEvent,
        enforce: bool,
    },
    /// A change of a watched file whose writer was gone before the answer thread could read
    /// its cgroup: the pipeline finds the writer in its process table and judges it there.
    Orphaned(Orphan),
}

/// A watched file's change by a thread already gone.
#[derive(Debug)]
pub struct Orphan {
    pub tid: u32,
    pub file: FileId,
    /// The file's path in the workload that watches it.
    pub path: String,
    /// When the change was read (wall ns).
    pub time_ns: u64,
}

/// The record's reason for a refusal's.
pub(super) fn reason(why: Why) -> Reason {
    match why {
        Why::DenyList => Reason::DenyList,
        Why::NotAllowed => Reason::NotAllowed,
        Why::NewBinary => Reason::NewBinary,
    }
}

/// `Tgid`, `PPid`, `Uid`, `Gid` of a thread (`/proc/<tid>/status`), zero when unreadable.
fn status_ids(tid: i32) -> (u32, u32, u32, u32) {
    let text = std::fs::read_to_string(format!("/proc/{tid}/status")).unwrap_or_default();
    let field = |name: &str| -> u32 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Tgid:"), field("PPid:"), field("Uid:"), field("Gid:"))
}

/// The decision record of a refusal, built after the answer went out (`modify.rs` makes a
/// change's record from it).
pub(super) fn record(tid: i32, path: String, p: &Pending) -> DecisionEvent {
    let (tgid, ppid, uid, gid) = status_ids(tid);
    let comm = std::fs::read_to_string(format!("/proc/{tid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default();
    DecisionEvent {
        common: Common {
            time_ns: crate::events::wall_now_ns(),
            cgroup_id: CgroupId(p.cgroup_id),
            pid: if tgid != 0 { tgid } else { tid as u32 },
            tid: tid as u32,
            ppid,
            uid,
            gid,
            loginuid: None,
            comm,
            ret: -(libc::EPERM as i64),
            cpu: 0,
        },
        policy_id: p.binding.policy_id,
        op: if p.exec || p.via_loader {
            Operation::Exec
        } else {
            Operation::Open
        },
        verdict: Verdict::Deny,
        reason: reason(p.why),
        hook: if p.exec {
            Hook::FanotifyOpenExecPerm
        } else {
            Hook::FanotifyOpenPerm
        },
        path: Captured {
            text: path,
            ..Default::default()
        },
        access: p.access.map(|a| Access::from_rw(a.read, a.write)),
        dest: None,
        inode: Some((p.file.dev, p.file.ino)),
        self_protect: None,
        kill_error: None,
    }
}
