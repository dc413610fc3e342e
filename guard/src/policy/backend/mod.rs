//! Enforcement backends behind one interface. Each backend's file declares, as data, how far
//! it enforces every [`Op`] (its [`Spec`]); `guard doctor`, the startup log, the decision
//! records and docs/policies.md's backend table all read that declaration.
//!
//! Add a backend: a new file with its `SPEC`, then a [`Kind`] variant (the compiler points at
//! [`Kind::spec`] and `Kind::next`, which places it in [`Kind::all`]). Add an operation: an
//! [`Op`] variant (the compiler points at [`Op::name`], `Op::next`, [`Op::used_by`] and every
//! backend's `covers`). The docs table test then prints the new table for docs/policies.md.

pub mod bpf_lsm;
pub mod fallback;
pub mod fanotify;
pub mod landlock;
pub mod net;

use std::fmt::Write as _;

use super::Policy;

/// An operation a policy can restrict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Exec,
    OpenRead,
    OpenWrite,
    /// truncate(2) / ftruncate(2) (an `O_TRUNC` open is an open for write).
    Truncate,
    /// link(2): a new name for an existing file.
    Link,
    /// rename(2): moving a file to another name.
    Rename,
    Connect,
    /// sendmsg(2) / sendto(2) with a destination, on a socket that is not connected.
    Sendmsg,
    /// `deny_new_binaries`: exec of a file written inside the workload.
    NewBinaries,
}

impl Op {
    /// Every operation, in the order tables and summaries list them.
    pub fn all() -> impl Iterator<Item = Op> {
        std::iter::successors(Some(Op::Exec), |op| op.next())
    }

    /// The order of [`Op::all`]; exhaustive, so a new operation must be placed here.
    fn next(self) -> Option<Op> {
        match self {
            Op::Exec => Some(Op::OpenRead),
            Op::OpenRead => Some(Op::OpenWrite),
            Op::OpenWrite => Some(Op::Truncate),
            Op::Truncate => Some(Op::Link),
            Op::Link => Some(Op::Rename),
            Op::Rename => Some(Op::Connect),
            Op::Connect => Some(Op::Sendmsg),
            Op::Sendmsg => Some(Op::NewBinaries),
            Op::NewBinaries => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Exec => "exec",
            Op::OpenRead => "open read",
            Op::OpenWrite => "open write",
            Op::Truncate => "truncate",
            Op::Link => "link",
            Op::Rename => "rename",
            Op::Connect => "connect",
            Op::Sendmsg => "sendmsg",
            Op::NewBinaries => "new binaries",
        }
    }

    /// The operations `p` restricts (what its rules would have a backend enforce).
    pub fn used_by(p: &Policy) -> Vec<Op> {
        Op::all()
            .filter(|op| match op {
                Op::Exec => !p.exec.deny.is_empty() || p.exec.allow.is_some(),
                // Path rules apply to every access of the path; a backend decides how far.
                Op::OpenRead => !p.open.deny_read.is_empty(),
                Op::OpenWrite | Op::Truncate | Op::Link | Op::Rename => {
                    !p.open.deny_write.is_empty()
                }
                Op::Connect | Op::Sendmsg => {
                    !p.connect.deny.is_empty() || p.connect.allow.is_some()
                }
                Op::NewBinaries => p.exec.deny_new_binaries,
            })
            .collect()
    }
}

/// How far a backend enforces an operation, strongest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Refused in the kernel before it happens (the syscall fails).
    Denied,
    /// SIGKILL at exec, before the new image runs its first instruction.
    KilledBeforeRun,
    /// The process is killed after the syscall completed.
    KilledAfter,
    NotCovered,
}

impl Level {
    /// Every level, strongest first.
    pub fn all() -> impl Iterator<Item = Level> {
        std::iter::successors(Some(Level::Denied), |l| l.next())
    }

    fn next(self) -> Option<Level> {
        match self {
            Level::Denied => Some(Level::KilledBeforeRun),
            Level::KilledBeforeRun => Some(Level::KilledAfter),
            Level::KilledAfter => Some(Level::NotCovered),
            Level::NotCovered => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Denied => "denied",
            Level::KilledBeforeRun => "killed before it runs",
            Level::KilledAfter => "killed after",
            Level::NotCovered => "not covered",
        }
    }
}

/// A backend's answer for one operation: the level and a one-line note on how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coverage {
    pub level: Level,
    pub note: &'static str,
}

impl Coverage {
    pub const fn new(level: Level, note: &'static str) -> Self {
        Self { level, note }
    }
}

/// What a backend declares about itself.
pub struct Spec {
    /// As in logs, doctor, decision records (`backend`) and the docs.
    pub name: &'static str,
    /// When it is the one in force.
    pub when: &'static str,
    /// What `guard doctor` suggests where this backend is in force (empty: nothing to fix).
    pub hint: &'static str,
    pub covers: fn(Op) -> Coverage,
}

/// The enforcement backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BpfLsm,
    Fanotify,
    SigkillFallback,
    Landlock,
}

impl Kind {
    /// Every backend, in the docs table's column order.
    pub fn all() -> impl Iterator<Item = Kind> {
        std::iter::successors(Some(Kind::BpfLsm), |k| k.next())
    }

    /// The order of [`Kind::all`]; exhaustive, so a new backend must be placed here.
    fn next(self) -> Option<Kind> {
        match self {
            Kind::BpfLsm => Some(Kind::Fanotify),
            Kind::Fanotify => Some(Kind::SigkillFallback),
            Kind::SigkillFallback => Some(Kind::Landlock),
            Kind::Landlock => None,
        }
    }

    pub fn spec(self) -> &'static Spec {
        match self {
            Kind::BpfLsm => &bpf_lsm::SPEC,
            Kind::Fanotify => &fanotify::SPEC,
            Kind::SigkillFallback => &fallback::SPEC,
            Kind::Landlock => &landlock::SPEC,
        }
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn covers(self, op: Op) -> Coverage {
        (self.spec().covers)(op)
    }

    /// The operations at each level, e.g. `denied: exec, open read; not covered: link`.
    pub fn summary(self) -> String {
        let mut out = String::new();
        for level in Level::all() {
            let ops: Vec<&str> = Op::all()
                .filter(|&op| self.covers(op).level == level)
                .map(Op::name)
                .collect();
            if !ops.is_empty() {
                if !out.is_empty() {
                    out.push_str("; ");
                }
                let _ = write!(out, "{}: {}", level.name(), ops.join(", "));
            }
        }
        out
    }

    /// Whether every operation it covers is stopped before it happens (no kill after the fact).
    pub fn prevents(self) -> bool {
        Op::all().all(|op| matches!(self.covers(op).level, Level::Denied | Level::NotCovered))
    }
}

/// `guard run --policy-backend`: which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Choice {
    /// bpf-lsm where LSM programs load, else fanotify where permission events work, else
    /// sigkill-fallback.
    #[default]
    Auto,
    BpfLsm,
    Fanotify,
    SigkillFallback,
}

/// How kernel decisions are enforced on this host (`guard run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Attached(Kind),
    /// Nothing could attach; the reason is kept for the log and doctor.
    Unavailable(String),
}

impl Backend {
    /// The name in logs and decision records; `none` when unavailable.
    pub fn as_str(&self) -> &'static str {
        match self {
            Backend::Attached(k) => k.name(),
            Backend::Unavailable(_) => "none",
        }
    }

    pub fn kind(&self) -> Option<Kind> {
        match self {
            Backend::Attached(k) => Some(*k),
            Backend::Unavailable(_) => None,
        }
    }

    /// What it enforces ([`Kind::summary`]), or why nothing is.
    pub fn summary(&self) -> String {
        match self {
            Backend::Attached(k) => k.summary(),
            Backend::Unavailable(why) => format!("nothing: {why}"),
        }
    }

    /// Whether the agent must kill after the fact: some operation `policies` restrict is one
    /// this backend leaves to the agent's events.
    pub fn kills_after_fact(&self, policies: &[Policy]) -> bool {
        let Some(k) = self.kind() else {
            return false;
        };
        policies
            .iter()
            .flat_map(Op::used_by)
            .any(|op| k.covers(op).level == Level::KilledAfter)
    }
}

/// docs/policies.md's backend table, rendered from the declarations.
pub fn docs_table() -> String {
    let cell = |s: &str| s.replace('|', "\\|");
    let mut out = String::from("| | ");
    out.push_str(
        &Kind::all()
            .map(|k| format!("`{}`", k.name()))
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" |\n|---|");
    out.push_str(&"---|".repeat(Kind::all().count()));
    out.push('\n');
    let row = |out: &mut String, head: &str, f: &dyn Fn(Kind) -> String| {
        let _ = write!(out, "| {head} |");
        for k in Kind::all() {
            let _ = write!(out, " {} |", cell(&f(k)));
        }
        out.push('\n');
    };
    row(&mut out, "in force", &|k| k.spec().when.to_owned());
    for op in Op::all() {
        row(&mut out, op.name(), &|k| {
            let c = k.covers(op);
            format!("**{}**: {}", c.level.name(), c.note)
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_table_matches_the_declarations() {
        let want = docs_table();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policies.md");
        let docs = std::fs::read_to_string(path).expect("docs/policies.md");
        assert!(
            docs.contains(&want),
            "docs/policies.md's backend table differs from the backends' declarations; \
             replace it with:\n\n{want}"
        );
    }

    #[test]
    fn the_orders_visit_each_value_once() {
        let ops: Vec<Op> = Op::all().collect();
        let mut sorted = ops.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ops.len(), "{ops:?}");
        assert_eq!(ops.len(), 9);
        assert_eq!(Kind::all().count(), 4);
        assert_eq!(Level::all().count(), 4);
    }

    #[test]
    fn names_are_distinct_and_summaries_cover_every_op() {
        let mut names: Vec<&str> = Kind::all().map(|k| k.name()).collect();
        names.push(Backend::Unavailable(String::new()).as_str());
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n, "backend names collide: {names:?}");
        for k in Kind::all() {
            let s = k.summary();
            for op in Op::all() {
                assert!(s.contains(op.name()), "{}: {op:?} missing in {s}", k.name());
            }
            for op in Op::all() {
                assert!(
                    !k.covers(op).note.is_empty(),
                    "{} {op:?} has no note",
                    k.name()
                );
            }
        }
        assert_eq!(
            Kind::SigkillFallback.summary(),
            "denied: connect, sendmsg; killed before it runs: exec, new binaries; \
             killed after: open read, open write, truncate; not covered: link, rename"
        );
        assert!(Kind::BpfLsm.prevents());
        assert!(!Kind::SigkillFallback.prevents());
    }

    #[test]
    fn what_is_killed_after_the_fact_follows_the_policies_ops() {
        use crate::policy::{ConnectPolicy, OpenPolicy, parse_net_rule, parse_path_rule};
        let mut p = fallback::tests::policy(OpenPolicy::default(), ConnectPolicy::default());
        p.exec.deny = vec![parse_path_rule("/bin/sh").expect("rule")];
        let fallback = Backend::Attached(Kind::SigkillFallback);
        let lsm = Backend::Attached(Kind::BpfLsm);
        // Exec is killed at exec by the kernel program, not after the fact.
        assert!(!fallback.kills_after_fact(std::slice::from_ref(&p)));
        // Connect rules are refused in the kernel (sock_addr programs) on every backend.
        p.connect.deny = vec![parse_net_rule("10.0.0.0/8").expect("rule")];
        assert!(!fallback.kills_after_fact(std::slice::from_ref(&p)));
        assert!(!lsm.kills_after_fact(std::slice::from_ref(&p)));
        p.connect.deny.clear();
        p.open.deny_read = vec![parse_path_rule("/etc/shadow").expect("rule")];
        assert!(fallback.kills_after_fact(std::slice::from_ref(&p)));
        assert!(!Backend::Unavailable("x".into()).kills_after_fact(&[p]));
    }
}
