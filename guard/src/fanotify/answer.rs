//! The permission answer, as pure functions of what the answer thread read: the opened file's
//! identity, the opener's binding, the rules resolved for its policy, the access it asked for.

use std::collections::{HashMap, HashSet, VecDeque};

use guard_ebpf::{CgroupPolicy, path_bits, policy_flags as pf};

use super::sys::Fid;
use crate::policy::resolve::FileId;

/// A `DIR/**` rule's directory as the answer matches it: files on its device whose path (as
/// the kernel prints an open file of that mount) starts with `prefix` (ends with `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subtree {
    pub dev: u64,
    pub prefix: String,
    pub bits: u32,
}

/// A file the changes group watches: its identity and its path in the workload (as a rule
/// or a `DIR/**` listing named it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub file: FileId,
    pub path: String,
}

/// What the answer thread knows of the policies' files, rebuilt by the marker.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rules {
    /// (policy id, file) -> `path_bits` (without `SUBTREE`): exact rules, and the files found
    /// below each `DIR/**` directory (so a hard link elsewhere to one of them still matches).
    pub files: HashMap<(u32, FileId), u32>,
    /// policy id -> its `DIR/**` directories.
    pub subtrees: HashMap<u32, Vec<Subtree>>,
    /// Every file of `files`, whatever the policy (an opener whose binding cannot be read is
    /// refused these).
    pub any: HashSet<FileId>,
    /// Files (and directories, for their children) the rule group marks: asked there on every
    /// open, so the first group may ignore them.
    pub rule_marked: HashSet<FileId>,
    /// Files the changes group watches (a policy denies writing them), by the identity it
    /// reports: a truncate by any name, or a write through a descriptor opened before the
    /// policy, is judged from its report (`modify.rs`), not from the traced syscall's name.
    pub watched: HashMap<Fid, Watched>,
    /// The files of `watched`.
    pub watched_files: HashSet<FileId>,
    /// Root filesystems of `deny_new_binaries` workloads: nothing is ignored there, so every
    /// open for write is seen.
    pub dnb_devs: HashSet<u64>,
    /// The dynamic loaders of workloads with exec deny rules (`marks::LOADERS`): run as the
    /// program (`ld.so FILE`), a loader reads and maps FILE without an exec of it, so its read
    /// of an exec-denied file is refused as that exec.
    pub loaders: HashSet<FileId>,
    /// Sealed files no policy denies reading or names for exec (`marks::Pass::read_free`): the
    /// kernel refuses their writes, so once a read is allowed the rule group ignores them too.
    pub read_free: HashSet<FileId>,
}

impl Rules {
    /// The bits of `policy_id` on `file`; `path` (the open file's path, read only when a
    /// subtree on the file's device exists) decides subtree membership of files not listed.
    pub fn bits(&self, policy_id: u32, file: FileId, path: impl FnOnce() -> Option<String>) -> u32 {
        let mut bits = self.files.get(&(policy_id, file)).copied().unwrap_or(0);
        if let Some(subs) = self.subtrees.get(&policy_id) {
            let on_dev: Vec<&Subtree> = subs.iter().filter(|s| s.dev == file.dev).collect();
            if !on_dev.is_empty()
                && let Some(p) = path()
            {
                for s in on_dev {
                    if p.starts_with(&s.prefix) {
                        bits |= s.bits;
                    }
                }
            }
        }
        bits & !path_bits::SUBTREE
    }

    /// Whether any policy's `DIR/**` directory on `file`'s device holds `path`.
    pub fn below_any_subtree(&self, file: FileId, path: &str) -> bool {
        self.subtrees
            .values()
            .flatten()
            .any(|s| s.dev == file.dev && path.starts_with(&s.prefix))
    }

    /// Whether the first group may stop asking about `file` after allowing an open of it:
    /// the rule group asks about it on every open, or no policy names it (by identity, or by
    /// path below a `DIR/**` directory: `path` is read only when one is on its device) and
    /// its filesystem has no `deny_new_binaries` workload (whose writes must all be seen).
    pub fn may_ignore(&self, file: FileId, path: impl FnOnce() -> Option<String>) -> bool {
        if self.rule_marked.contains(&file) {
            return true;
        }
        if self.any.contains(&file) || self.dnb_devs.contains(&file.dev) {
            return false;
        }
        let on_dev = self.subtrees.values().flatten().any(|s| s.dev == file.dev);
        !on_dev || path().is_some_and(|p| !self.below_any_subtree(file, &p))
    }

    /// Whether policy `policy_id` has a subtree on `dev` (the answer then reads the path).
    pub fn has_subtree_on(&self, policy_id: u32, dev: u64) -> bool {
        self.subtrees
            .get(&policy_id)
            .is_some_and(|s| s.iter().any(|s| s.dev == dev))
    }
}

/// The access an open asks for, from the opener's `/proc/<tid>/syscall` (it is blocked in the
/// open until the answer, so the registers it shows are that open's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub read: bool,
    pub write: bool,
}

impl Access {
    /// What the answer assumes when the open's flags cannot be known: both (fail closed).
    pub const UNKNOWN: Access = Access {
        read: true,
        write: true,
    };
    const READ: Access = Access {
        read: true,
        write: false,
    };
}

/// Syscall numbers whose open flags the answer reads (per architecture).
struct OpenCalls {
    /// (number, index of the flags argument)
    flags_at: &'static [(u64, usize)],
    /// Exec-family calls: the open is the kernel's read-only open of the binary.
    exec: &'static [u64],
    /// creat(2): always a write.
    creat: Option<u64>,
}

#[cfg(target_arch = "x86_64")]
const CALLS: OpenCalls = OpenCalls {
    // open, openat, open_by_handle_at
    flags_at: &[(2, 1), (257, 2), (304, 2)],
    // execve, execveat, uselib
    exec: &[59, 322, 134],
    creat: Some(85),
};

#[cfg(target_arch = "aarch64")]
const CALLS: OpenCalls = OpenCalls {
    // openat, open_by_handle_at
    flags_at: &[(56, 2), (265, 2)],
    // execve, execveat
    exec: &[221, 281],
    creat: None,
};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const CALLS: OpenCalls = OpenCalls {
    flags_at: &[],
    exec: &[],
    creat: None,
};

/// Parses `/proc/<tid>/syscall` (`NR arg0 … arg5 sp pc`, arguments in hex). openat2(2) is not
/// read: its flags are in user memory another thread can change after the kernel copied them,
/// so it counts as read + write, like any other caller (io_uring workers, unknown calls).
pub fn access_from_syscall(line: &str) -> Access {
    const O_ACCMODE: u64 = 3;
    const O_WRONLY: u64 = 1;
    const O_RDWR: u64 = 2;
    const O_CREAT: u64 = 0o100;
    const O_TRUNC: u64 = 0o1000;
    let mut it = line.split_ascii_whitespace();
    let Some(nr) = it.next().and_then(|s| s.parse::<u64>().ok()) else {
        return Access::UNKNOWN;
    };
    let args: Vec<u64> = it
        .take(6)
        .map_while(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
        .collect();
    if CALLS.exec.contains(&nr) {
        return Access::READ;
    }
    if CALLS.creat == Some(nr) {
        return Access {
            read: false,
            write: true,
        };
    }
    let Some(&(_, at)) = CALLS.flags_at.iter().find(|(n, _)| *n == nr) else {
        return Access::UNKNOWN;
    };
    let Some(&flags) = args.get(at) else {
        return Access::UNKNOWN;
    };
    let (read, mut write) = match flags & O_ACCMODE {
        0 => (true, false),
        O_WRONLY => (false, true),
        O_RDWR => (true, true),
        _ => return Access::UNKNOWN,
    };
    // Both change the file before a byte is written; the open is where they can be refused.
    if flags & (O_TRUNC | O_CREAT) != 0 {
        write = true;
    }
    Access { read, write }
}

/// Why an operation is refused (the decision record's `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    DenyList,
    NotAllowed,
    NewBinary,
}

/// An exec of `file` (bits from [`Rules::bits`]) under binding `b`.
pub fn exec_verdict(b: &CgroupPolicy, bits: u32, written: bool) -> Option<Why> {
    let hit = bits & path_bits::EXEC_MATCH != 0;
    if b.flags & pf::EXEC_DENY != 0 && hit {
        return Some(Why::DenyList);
    }
    if b.flags & pf::EXEC_ALLOW != 0 && !hit {
        return Some(Why::NotAllowed);
    }
    if b.flags & pf::DENY_NEW_BINARIES != 0 && written {
        return Some(Why::NewBinary);
    }
    None
}

/// An open with `access` of a file with `bits`.
pub fn open_verdict(bits: u32, access: Access) -> Option<Why> {
    ((access.read && bits & path_bits::DENY_READ != 0)
        || (access.write && bits & path_bits::DENY_WRITE != 0))
        .then_some(Why::DenyList)
}

/// Files opened for write inside a `deny_new_binaries` workload, oldest forgotten first beyond
/// `cap` (docs/policies.md says so).
#[derive(Debug)]
pub struct Written {
    set: HashSet<FileId>,
    order: VecDeque<FileId>,
    cap: usize,
    pub evicted: u64,
}

impl Written {
    pub fn new(cap: usize) -> Self {
        Self {
            set: HashSet::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
            evicted: 0,
        }
    }

    pub fn insert(&mut self, f: FileId) {
        if !self.set.insert(f) {
            return;
        }
        self.order.push_back(f);
        while self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
                self.evicted += 1;
            }
        }
    }

    pub fn contains(&self, f: &FileId) -> bool {
        self.set.contains(f)
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64) -> FileId {
        FileId { dev: 7, ino }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn access_follows_the_blocked_open_and_fails_closed() {
        // Lines as /proc/<tid>/syscall printed them for busybox in a container.
        let read = "257 0xffffff9c 0x7ffc1b5dff6c 0x0 0x0 0x0 0x0 0x7ffc1b5deb10 0x47b5e1";
        let append = "257 0xffffff9c 0x1fa42ad0 0x441 0x1b6 0x0 0x0 0x7ffdd51dd590 0x47b5e1";
        let exec = "59 0x5ac272 0x1fa42ac0 0x1fa42ad8 0x8 0x0 0x1fa427a0 0x7ffd 0x461857";
        assert_eq!(access_from_syscall(read), Access::READ);
        assert_eq!(
            access_from_syscall(append),
            Access {
                read: false,
                write: true
            }
        );
        assert_eq!(access_from_syscall(exec), Access::READ);
        // O_RDONLY|O_TRUNC truncates: a write. O_RDWR: both. open(2): flags in arg 1.
        assert!(access_from_syscall("257 0x0 0x0 0x200 0x0 0x0 0x0 0x0 0x0").write);
        assert_eq!(
            access_from_syscall("2 0x1000 0x2 0x0 0x0 0x0 0x0 0x0 0x0"),
            Access::UNKNOWN
        );
        assert_eq!(
            access_from_syscall("85 0x1000 0x1a4 0x0 0x0 0x0 0x0 0x0 0x0"),
            Access {
                read: false,
                write: true
            }
        );
        // openat2, anything else, not blocked in a syscall, garbage: read + write.
        for l in [
            "437 0xffffff9c 0x1000 0x2000 0x18 0x0 0x0 0x0 0x0",
            "0 0x3 0x0 0x0 0x0 0x0 0x0 0x0 0x0",
            "running",
            "-1 0x7ffc 0x4000",
            "",
            "257 0xffffff9c",
            "257 0xffffff9c 0x1 zz",
        ] {
            assert_eq!(access_from_syscall(l), Access::UNKNOWN, "{l:?}");
        }
    }

    #[test]
    fn subtrees_match_by_path_on_their_device_and_listed_files_by_identity() {
        let mut r = Rules::default();
        r.files.insert((1, id(10)), path_bits::DENY_READ);
        // A file found under /etc at resolution: matched by identity wherever it is linked.
        r.files.insert((1, id(11)), path_bits::DENY_WRITE);
        r.subtrees.insert(
            1,
            vec![Subtree {
                dev: 7,
                prefix: "/etc/".into(),
                bits: path_bits::DENY_WRITE | path_bits::SUBTREE,
            }],
        );
        let no_path = || -> Option<String> { panic!("path read without need") };
        assert_eq!(r.bits(2, id(10), no_path), 0);
        assert_eq!(r.bits(1, FileId { dev: 8, ino: 10 }, no_path), 0);
        assert_eq!(
            r.bits(1, id(10), || Some("/tmp/link".into())),
            path_bits::DENY_READ
        );
        assert_eq!(
            r.bits(1, id(11), || Some("/tmp/hardlink".into())),
            path_bits::DENY_WRITE
        );
        // A new file in /etc: by path; /etcx is not below /etc.
        assert_eq!(
            r.bits(1, id(12), || Some("/etc/new".into())),
            path_bits::DENY_WRITE
        );
        assert_eq!(r.bits(1, id(12), || Some("/etcx/new".into())), 0);
        assert_eq!(r.bits(1, id(12), || None), 0);
        assert!(r.has_subtree_on(1, 7) && !r.has_subtree_on(1, 8) && !r.has_subtree_on(2, 7));
    }

    #[test]
    fn only_unruled_files_or_rule_group_files_may_be_ignored() {
        let mut r = Rules::default();
        r.files.insert((1, id(10)), path_bits::DENY_READ);
        r.any.insert(id(10));
        r.subtrees.insert(
            2,
            vec![Subtree {
                dev: 7,
                prefix: "/etc/".into(),
                bits: path_bits::DENY_WRITE,
            }],
        );
        let at = |p: &'static str| move || Some(p.to_owned());
        // Named by a policy (identity), below any policy's DIR/** (path), or unknown path on
        // a device with one: asked on every open.
        assert!(!r.may_ignore(id(10), at("/tmp/x")));
        assert!(!r.may_ignore(id(11), at("/etc/new")));
        assert!(!r.may_ignore(id(11), || None));
        assert!(r.may_ignore(id(11), at("/etcx/new")));
        // Another device without subtrees: the path is not read.
        let other = FileId { dev: 8, ino: 11 };
        assert!(r.may_ignore(other, || -> Option<String> { panic!("path read") }));
        // A deny_new_binaries filesystem: never (its writes must be seen).
        r.dnb_devs.insert(8);
        assert!(!r.may_ignore(other, || None));
        // The rule group asks about it anyway.
        r.rule_marked.insert(id(10));
        assert!(r.may_ignore(id(10), at("/etc/shadow")));
    }

    #[test]
    fn verdicts_follow_the_binding_flags() {
        let b = |flags| CgroupPolicy {
            policy_id: 1,
            flags,
        };
        let m = path_bits::EXEC_MATCH;
        assert_eq!(
            exec_verdict(&b(pf::EXEC_DENY), m, false),
            Some(Why::DenyList)
        );
        assert_eq!(exec_verdict(&b(pf::EXEC_DENY), 0, true), None);
        assert_eq!(
            exec_verdict(&b(pf::EXEC_ALLOW), 0, false),
            Some(Why::NotAllowed)
        );
        assert_eq!(exec_verdict(&b(pf::EXEC_ALLOW), m, false), None);
        assert_eq!(
            exec_verdict(&b(pf::DENY_NEW_BINARIES), 0, true),
            Some(Why::NewBinary)
        );
        assert_eq!(exec_verdict(&b(pf::DENY_NEW_BINARIES), 0, false), None);
        let rw = |read, write| Access { read, write };
        assert_eq!(
            open_verdict(path_bits::DENY_READ, rw(true, false)),
            Some(Why::DenyList)
        );
        assert_eq!(open_verdict(path_bits::DENY_READ, rw(false, true)), None);
        assert_eq!(open_verdict(path_bits::DENY_WRITE, rw(true, false)), None);
        assert_eq!(
            open_verdict(path_bits::DENY_WRITE, Access::UNKNOWN),
            Some(Why::DenyList)
        );
        assert_eq!(open_verdict(0, Access::UNKNOWN), None);
    }

    #[test]
    fn written_files_are_bounded_oldest_first() {
        let mut w = Written::new(2);
        w.insert(id(1));
        w.insert(id(2));
        w.insert(id(2));
        assert_eq!(w.len(), 2);
        w.insert(id(3));
        assert!(!w.contains(&id(1)) && w.contains(&id(2)) && w.contains(&id(3)));
        assert_eq!(w.evicted, 1);
    }
}
