//! Open rules on the `sigkill-fallback` backend (no BPF LSM): the kernel cannot refuse the
//! open, so the agent matches the completed open against the policy the kernel has bound to
//! the task's cgroup and kills the process after the fact. Connect and sendmsg rules are
//! refused in the kernel by the cgroup sock_addr programs (`super::net`).
//!
//! What this backend cannot guarantee (docs/policies.md): the open happened (a file was
//! opened, `O_TRUNC` applied) before the kill; the path is the one the agent resolved (cwd or
//! dirfd joined, `..` folded) and symlinks are not followed.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use guard_ebpf::{CgroupPolicy, names, policy_flags as pf};

use super::{Coverage, Level::*, Op, Spec};
use crate::policy::{PathRule, Policy};

/// The exec program (name, tracepoint category, event); `probes` attaches and pins it.
pub const PROGRAM: (&str, &str, &str) = (
    names::PROG_POLICY_EXEC_FALLBACK,
    "sched",
    "sched_process_exec",
);

/// Drift tracking for `deny_new_binaries` without BPF LSM: the program that remembers files
/// opened for write inside such a workload (`NEW_FILES`, any filesystem) and the syscall exits
/// it is attached to; the exec program above kills an exec of one. Both non-LSM backends.
pub const DRIFT_PROGRAM: &str = names::PROG_POLICY_OPEN_WRITTEN;
pub const DRIFT_EXITS: [&str; 5] = [
    "sys_exit_open",
    "sys_exit_openat",
    "sys_exit_openat2",
    "sys_exit_creat",
    "sys_exit_open_by_handle_at",
];

pub const SPEC: Spec = Spec {
    name: "sigkill-fallback",
    when: "no BPF LSM (most distribution kernels; this CI host)",
    hint: "boot with lsm=...,bpf for the bpf-lsm backend; `guard exec --policy` gives Landlock confinement for processes guard starts",
    covers,
};

fn covers(op: Op) -> Coverage {
    let c = Coverage::new;
    match op {
        Op::Exec => c(
            KilledBeforeRun,
            "SIGKILL at `sched_process_exec`: the new image runs no instruction; matches the filename given to execve",
        ),
        Op::OpenRead => c(
            KilledAfter,
            "SIGKILL by the agent **after** the open succeeded",
        ),
        Op::OpenWrite => c(
            KilledAfter,
            "SIGKILL by the agent **after** the open succeeded (`O_TRUNC` applied)",
        ),
        Op::Truncate => c(
            KilledAfter,
            "SIGKILL by the agent **after** truncate(2) succeeded, by the name as written; ftruncate(2) needs a descriptor opened for write (killed after that open)",
        ),
        Op::Link => c(NotCovered, "link(2) is not checked"),
        Op::Rename => c(NotCovered, "rename(2) is not checked"),
        Op::Connect => super::net::CONNECT,
        Op::Sendmsg => super::net::SENDMSG,
        Op::NewBinaries => c(
            KilledBeforeRun,
            "SIGKILL at `sched_process_exec` of a file opened for write inside the workload (any filesystem; open, openat, openat2, creat, open_by_handle_at) or without a name (memfd, O_TMPFILE)",
        ),
    }
}

/// How long a cgroup's binding read from the kernel map is reused.
const CACHE_TTL: Duration = Duration::from_secs(1);
/// Bound on cached cgroups; the cache is cleared when full.
const CACHE_MAX: usize = 4096;

/// Why an operation violates the policy (the kernel's `reason` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    DenyList,
    NotAllowed,
}

impl Violation {
    pub fn as_str(self) -> &'static str {
        match self {
            Violation::DenyList => "deny_list",
            Violation::NotAllowed => "not_allowed",
        }
    }
}

/// The access an `open` flags value requests, as the kernel's `FMODE_READ`/`FMODE_WRITE`.
pub fn open_access(flags: u64) -> (bool, bool) {
    const O_ACCMODE: u64 = 3;
    const O_PATH: u64 = 0o10000000;
    if flags & O_PATH != 0 {
        return (false, false);
    }
    match flags & O_ACCMODE {
        0 => (true, false),
        1 => (false, true),
        2 => (true, true),
        _ => (false, false),
    }
}

/// `read`, `write` or `read_write`, as in decision records.
pub fn access_name(read: bool, write: bool) -> &'static str {
    match (read, write) {
        (true, true) => "read_write",
        (false, true) => "write",
        (true, false) => "read",
        (false, false) => "none",
    }
}

/// The open rules of `p` against an absolute, normalised path.
pub fn check_open(p: &Policy, path: &str, flags: u64) -> Option<Violation> {
    let (read, write) = open_access(flags);
    let hit = |rules: &[PathRule]| rules.iter().any(|r| r.matches(path));
    ((read && hit(&p.open.deny_read)) || (write && hit(&p.open.deny_write)))
        .then_some(Violation::DenyList)
}

/// Which policy the kernel has bound to a cgroup (`POLICY_CGROUPS`, filled by the agent's
/// walk and by the `cgroup_mkdir` program), cached briefly per cgroup.
#[derive(Default)]
pub struct BindingCache {
    entries: HashMap<u64, (Option<CgroupPolicy>, Instant)>,
}

impl BindingCache {
    pub fn get(
        &mut self,
        cgroup_id: u64,
        now: Instant,
        lookup: impl FnOnce(u64) -> Option<CgroupPolicy>,
    ) -> Option<CgroupPolicy> {
        if let Some((b, at)) = self.entries.get(&cgroup_id)
            && now.duration_since(*at) < CACHE_TTL
        {
            return *b;
        }
        if self.entries.len() >= CACHE_MAX {
            self.entries.clear();
        }
        let b = lookup(cgroup_id);
        self.entries.insert(cgroup_id, (b, now));
        b
    }
}

/// Whether a binding asks for open checks.
pub fn wants_open(b: &CgroupPolicy) -> bool {
    b.flags & pf::OPEN_RULES != 0
}

pub fn enforces(b: &CgroupPolicy) -> bool {
    b.flags & pf::ENFORCE != 0
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::policy::{ConnectPolicy, OpenPolicy, parse_path_rule};

    /// An enforce-mode policy with only these open and connect rules (shared by the backend tests).
    pub(in crate::policy::backend) fn policy(open: OpenPolicy, connect: ConnectPolicy) -> Policy {
        Policy {
            name: "p".into(),
            desc: None,
            workload: Default::default(),
            mode: crate::policy::Mode::Enforce,
            rules: Default::default(),
            exec: Default::default(),
            open,
            connect,
            learned: None,
            file: "t.yaml".into(),
            pos: Default::default(),
        }
    }

    #[test]
    fn open_rules_follow_the_access_mode() {
        let p = policy(
            OpenPolicy {
                deny_read: vec![parse_path_rule("/etc/shadow").expect("rule")],
                deny_write: vec![parse_path_rule("/etc/**").expect("rule")],
            },
            ConnectPolicy::default(),
        );
        const O_WRONLY: u64 = 1;
        const O_RDWR: u64 = 2;
        const O_PATH: u64 = 0o10000000;
        assert_eq!(check_open(&p, "/etc/shadow", 0), Some(Violation::DenyList));
        assert_eq!(check_open(&p, "/etc/passwd", 0), None);
        assert_eq!(
            check_open(&p, "/etc/passwd", O_WRONLY),
            Some(Violation::DenyList)
        );
        assert_eq!(
            check_open(&p, "/etc/hosts", O_RDWR),
            Some(Violation::DenyList)
        );
        assert_eq!(check_open(&p, "/etc/shadow", O_PATH), None);
        assert_eq!(check_open(&p, "/etcx/passwd", O_WRONLY), None);
        assert_eq!(check_open(&p, "/tmp/x", O_RDWR), None);
        assert_eq!(access_name(true, true), "read_write");
    }

    #[test]
    fn binding_cache_expires_and_stays_bounded() {
        let mut c = BindingCache::default();
        let t0 = Instant::now();
        let b = CgroupPolicy {
            policy_id: 1,
            flags: pf::OPEN_RULES,
        };
        assert_eq!(c.get(7, t0, |_| Some(b)), Some(b));
        // Cached: the lookup is not called again within the TTL.
        assert_eq!(c.get(7, t0, |_| panic!("looked up again")), Some(b));
        assert_eq!(c.get(7, t0 + CACHE_TTL, |_| None), None);
        for i in 0..(CACHE_MAX as u64 + 10) {
            c.get(1000 + i, t0, |_| None);
        }
        assert!(c.entries.len() <= CACHE_MAX);
    }
}
