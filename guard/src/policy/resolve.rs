//! Path rules to the files they name: each exec/open rule of a policy resolved inside a
//! workload's root (`/proc/<pid>/root`), so enforcement can hold on the file itself (device and
//! inode) whatever name, hard link, chroot or bind mount later reaches it.
//!
//! Resolution uses `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: a symlink inside the
//! container resolves against the container's root, never the host's, so a workload cannot
//! point a rule at a host file. A rule naming a symlink names the file it points to (as the
//! kernel's `bpf_d_path` of the opened file does): in a busybox image `/bin/sh` is `/bin/busybox`.

use std::{
    collections::BTreeMap,
    fs::Metadata,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use guard_ebpf::path_bits;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

use super::{PathRule, Policy};

/// A file's identity as the kernel programs see it: `sb->s_dev` (the kernel's encoding of the
/// device, not `st_dev`'s) and the inode number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// `st_dev` (glibc's encoding) to the kernel's `dev_t` (`MKDEV`: major << 20 | minor).
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = libc::major(st_dev) as u64;
    let minor = libc::minor(st_dev) as u64;
    (major << 20) | minor
}

pub fn file_id(md: &Metadata) -> FileId {
    FileId {
        dev: kernel_dev(md.dev()),
        ino: md.ino(),
    }
}

/// One resolved file: its identity, the `path_bits` the policy has on it (`SUBTREE` for a
/// `DIR/**` rule's directory), and the first rule that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeRule {
    pub id: FileId,
    pub bits: u32,
    pub rule: PathRule,
}

#[derive(Debug, Default)]
pub struct Resolution {
    pub rules: Vec<InodeRule>,
    /// Rules whose path does not exist (or cannot be opened) in this root.
    pub missing: Vec<PathRule>,
}

/// The path rules of `p` with their bits: exec rules (deny or allow: the policy's flags say
/// which) set `EXEC_MATCH`, open rules `DENY_READ`/`DENY_WRITE`; `Below` adds `SUBTREE`.
pub fn rule_bits(p: &Policy) -> BTreeMap<PathRule, u32> {
    let mut out: BTreeMap<PathRule, u32> = BTreeMap::new();
    let mut add = |rules: &[PathRule], bit: u32| {
        for r in rules {
            let sub = match r {
                PathRule::Exact(_) => 0,
                PathRule::Below(_) => path_bits::SUBTREE,
            };
            *out.entry(r.clone()).or_default() |= bit | sub;
        }
    };
    add(&p.exec.deny, path_bits::EXEC_MATCH);
    if let Some(a) = &p.exec.allow {
        add(a, path_bits::EXEC_MATCH);
    }
    add(&p.open.deny_read, path_bits::DENY_READ);
    add(&p.open.deny_write, path_bits::DENY_WRITE);
    out
}

/// The path inside the root a rule names (`/etc/` for `/etc/**` names the directory `/etc`).
fn rule_path(r: &PathRule) -> PathBuf {
    let s = match r {
        PathRule::Exact(s) => s.as_str(),
        PathRule::Below(s) => s.trim_end_matches('/'),
    };
    // Relative to the root's fd; RESOLVE_IN_ROOT also treats a leading `/` as the root, but
    // the empty path (the rule `/**`) must become `.`.
    let rel = s.trim_start_matches('/');
    PathBuf::from(if rel.is_empty() { "." } else { rel })
}

/// Resolves every path rule of `p` inside the directory `root`.
pub fn resolve(root: &Path, p: &Policy) -> Resolution {
    match nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    ) {
        Ok(fd) => resolve_in(&fd, p),
        Err(_) => Resolution {
            rules: Vec::new(),
            missing: rule_bits(p).into_keys().collect(),
        },
    }
}

/// Resolves every path rule of `p` inside the root directory `dir` (e.g. an `O_PATH`
/// descriptor from [`crate::procroot::open_root`]). Two rules naming the same file (e.g.
/// `/bin/sh` and `/bin/ash` in a busybox image) merge into one entry with both rules' bits.
pub fn resolve_in(dir: &impl AsFd, p: &Policy) -> Resolution {
    let mut res = Resolution::default();
    let bits = rule_bits(p);
    let mut by_id: BTreeMap<FileId, usize> = BTreeMap::new();
    for (rule, b) in bits {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let md = openat2(dir, &rule_path(&rule), how)
            .map(std::fs::File::from)
            .and_then(|f| {
                f.metadata()
                    .map_err(|e| nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))
            });
        let Ok(md) = md else {
            res.missing.push(rule);
            continue;
        };
        // A `DIR/**` rule on something that is not a directory covers nothing below it.
        let b = if md.is_dir() {
            b
        } else {
            b & !path_bits::SUBTREE
        };
        let id = file_id(&md);
        match by_id.get(&id) {
            Some(&i) => res.rules[i].bits |= b,
            None => {
                by_id.insert(id, res.rules.len());
                res.rules.push(InodeRule { id, bits: b, rule });
            }
        }
    }
    res
}

/// The lowest pid in a cgroup's `cgroup.procs` (the workload's first process: a process the
/// workload later chroots has a higher pid), or None when it has none.
pub fn first_pid(cgroup_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(cgroup_dir.join("cgroup.procs")).ok()?;
    text.lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn policy(yaml: &str) -> Policy {
        super::super::tests::parse_one(yaml)
    }

    #[test]
    fn kernel_dev_moves_major_above_bit_20() {
        // st_dev 0x0803 is 8:3 (sda3); the kernel stores MKDEV(8, 3).
        assert_eq!(kernel_dev(libc::makedev(8, 3)), (8 << 20) | 3);
        // Minors above 255 use the split encoding in st_dev.
        assert_eq!(kernel_dev(libc::makedev(0, 300)), 300);
    }

    #[test]
    fn rules_resolve_to_the_files_inside_the_root_and_links_merge() {
        let root = tempdir();
        std::fs::create_dir_all(root.join("etc")).expect("test fixture");
        std::fs::create_dir_all(root.join("bin")).expect("test fixture");
        std::fs::write(root.join("etc/shadow"), "x").expect("test fixture");
        std::fs::write(root.join("bin/busybox"), "x").expect("test fixture");
        symlink("busybox", root.join("bin/sh")).expect("test fixture");
        // An absolute symlink resolves inside the root, not on the host.
        symlink("/etc/shadow", root.join("etc/alias")).expect("test fixture");
        let p = policy(
            "- policy: p\n  workload: {cgroup: /x}\n  enforce:\n    exec: {deny: [/bin/sh, /bin/busybox]}\n    open: {deny_read: [/etc/alias, /nope], deny_write: ['/etc/**']}\n",
        );
        let r = resolve(&root, &p);
        let id = |rel: &str| file_id(&std::fs::metadata(root.join(rel)).expect("test fixture"));
        let bits_of = |f: FileId| r.rules.iter().find(|x| x.id == f).map(|x| x.bits);
        assert_eq!(bits_of(id("bin/busybox")), Some(path_bits::EXEC_MATCH));
        assert_eq!(
            r.rules.iter().filter(|x| x.id == id("bin/busybox")).count(),
            1,
            "/bin/sh and /bin/busybox are one file: one entry"
        );
        assert_eq!(bits_of(id("etc/shadow")), Some(path_bits::DENY_READ));
        assert_eq!(
            bits_of(id("etc")),
            Some(path_bits::DENY_WRITE | path_bits::SUBTREE)
        );
        assert_eq!(r.missing, vec![PathRule::Exact("/nope".into())]);
        std::fs::remove_dir_all(&root).expect("test fixture");
    }

    #[test]
    fn a_symlink_cannot_point_resolution_outside_the_root() {
        let root = tempdir();
        std::fs::create_dir_all(root.join("etc")).expect("test fixture");
        // Inside the root, `..` beyond `/` stays at `/`: this names <root>/hostfile, absent.
        symlink(
            "../../../../../../../../etc/hostname",
            root.join("etc/shadow"),
        )
        .expect("test fixture");
        let p = policy(
            "- policy: p\n  workload: {cgroup: /x}\n  enforce:\n    open: {deny_read: [/etc/shadow]}\n",
        );
        let r = resolve(&root, &p);
        assert!(r.rules.is_empty(), "{:?}", r.rules);
        assert_eq!(r.missing.len(), 1);
        std::fs::remove_dir_all(&root).expect("test fixture");
    }

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "guard-resolve-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("test fixture");
        d
    }
}
