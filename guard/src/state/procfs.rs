//! Reading processes from /proc. Everything here is untrusted text written by (or about)
//! other processes: parsers return `None` on anything unexpected, reads are size-capped.

use std::{
    ffi::OsStr,
    io::Read,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use crate::{
    events::{CgroupId, Clock, ExeInode, env_entries},
    model::Env,
};

use super::{Pid, path::PATH_MAX};

/// Caps on what one process may cost us.
#[derive(Debug, Clone, Copy)]
pub struct ArgLimits {
    /// Arguments kept, argv[0] included.
    pub max_args: usize,
    /// Bytes kept over all arguments.
    pub max_bytes: usize,
}

impl Default for ArgLimits {
    fn default() -> Self {
        Self {
            max_args: 128,
            max_bytes: 4096,
        }
    }
}

/// A bounded argv.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Argv {
    pub items: Vec<String>,
    /// Arguments or bytes were dropped to respect [`ArgLimits`].
    pub truncated: bool,
}

impl Argv {
    /// From the kernel's NUL-separated argv area (as `/proc/PID/cmdline` and exec records
    /// carry it). A trailing NUL is not an empty argument; invalid UTF-8 becomes U+FFFD.
    pub fn from_nul_separated(raw: &[u8], limits: ArgLimits) -> Self {
        let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
        if raw.is_empty() {
            return Self::default();
        }
        Self::from_iter(raw.split(|&b| b == 0).map(String::from_utf8_lossy), limits)
    }

    pub fn from_iter<S: AsRef<str>>(args: impl IntoIterator<Item = S>, limits: ArgLimits) -> Self {
        let mut out = Self::default();
        let mut budget = limits.max_bytes;
        for a in args {
            let a = a.as_ref();
            if out.items.len() >= limits.max_args || budget == 0 {
                out.truncated = true;
                break;
            }
            let kept = truncate_str(a, budget);
            if kept.len() < a.len() {
                out.truncated = true;
            }
            budget -= kept.len();
            out.items.push(kept.to_owned());
        }
        out
    }

    pub fn heap_bytes(&self) -> usize {
        self.items.iter().map(String::capacity).sum::<usize>()
            + self.items.capacity() * size_of::<String>()
    }
}

/// The longest prefix of `s` within `max` bytes, on a char boundary.
pub fn truncate_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Fields of `/proc/PID/stat` we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub comm: String,
    pub ppid: u32,
    pub tty_nr: u32,
    /// Field 22: start time in clock ticks after boot.
    pub start_ticks: u64,
}

/// Parses `/proc/PID/stat`. The comm field is in parentheses and may itself contain `)` and
/// spaces, so the fields after it are found from the LAST `)`.
pub fn parse_stat(raw: &[u8]) -> Option<Stat> {
    let open = raw.iter().position(|&b| b == b'(')?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    if close < open {
        return None;
    }
    let comm = String::from_utf8_lossy(&raw[open + 1..close]).into_owned();
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    // rest[0] is field 3 (state).
    let f: Vec<&str> = rest.split_ascii_whitespace().take(20).collect();
    Some(Stat {
        comm,
        ppid: f.get(1)?.parse().ok()?,
        // tty_nr is printed as a signed int.
        tty_nr: f.get(4)?.parse::<i64>().ok()? as u32,
        start_ticks: f.get(19)?.parse().ok()?,
    })
}

/// (real uid, real gid) from `/proc/PID/status`.
pub fn parse_status_ids(raw: &str) -> Option<(u32, u32)> {
    let field = |name: &str| {
        raw.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_ascii_whitespace().next())
            .and_then(|v| v.parse::<u32>().ok())
    };
    Some((field("Uid:")?, field("Gid:")?))
}

/// A process's ids in its own pid namespace (the last number of the `NSpid:`, `NSpgid:` and
/// `NSsid:` lines of `/proc/PID/status`; one number when it shares the reader's namespace),
/// and its session id as the reader sees it (the first `NSsid:` number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NsIds {
    pub vpid: u32,
    pub vpgid: u32,
    pub vsid: u32,
    pub sid: u32,
}

/// Parses the `NS*` lines of `/proc/PID/status`; `None` when one is missing or malformed.
pub fn parse_status_ns(raw: &str) -> Option<NsIds> {
    let ids = |name: &str| -> Option<(u32, u32)> {
        let v = raw.lines().find_map(|l| l.strip_prefix(name))?;
        let mut first = None;
        let mut last = None;
        // At most 32 levels of pid namespaces exist.
        for (i, n) in v.split_ascii_whitespace().enumerate() {
            if i >= 33 {
                return None;
            }
            let n = n.parse::<u32>().ok()?;
            first.get_or_insert(n);
            last = Some(n);
        }
        Some((first?, last?))
    };
    let (_, vpid) = ids("NSpid:")?;
    let (_, vpgid) = ids("NSpgid:")?;
    let (sid, vsid) = ids("NSsid:")?;
    Some(NsIds {
        vpid,
        vpgid,
        vsid,
        sid,
    })
}

/// `/proc/PID/loginuid`: `None` when unset (`4294967295`) or unreadable.
pub fn parse_loginuid(raw: &str) -> Option<u32> {
    raw.trim().parse::<u32>().ok().filter(|&v| v != u32::MAX)
}

/// The cgroup v2 path (the `0::` line) of `/proc/PID/cgroup`.
pub fn parse_cgroup_v2(raw: &str) -> Option<&str> {
    raw.lines().find_map(|l| l.strip_prefix("0::"))
}

/// Where the cgroup2 hierarchy is mounted, and which cgroup is the mount's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup2Mount {
    pub mount_point: PathBuf,
    /// The cgroup path shown at the mount point (`/` unless the mount is of a sub-tree).
    pub root: String,
}

impl Cgroup2Mount {
    /// The directory of the cgroup at `cgroup_path` (as in `/proc/PID/cgroup`), if it lies
    /// under this mount.
    pub fn dir_of(&self, cgroup_path: &str) -> Option<PathBuf> {
        let root = self.root.trim_end_matches('/');
        let rel = cgroup_path.strip_prefix(root)?;
        if !(rel.is_empty() || rel.starts_with('/')) {
            return None;
        }
        let rel = rel.trim_start_matches('/');
        // No `..` escapes from the mount.
        if rel.split('/').any(|c| c == "..") {
            return None;
        }
        Some(if rel.is_empty() {
            self.mount_point.clone()
        } else {
            self.mount_point.join(rel)
        })
    }

    /// The cgroup path of a directory under the mount point.
    pub fn path_of(&self, dir: &Path) -> Option<String> {
        let rel = dir.strip_prefix(&self.mount_point).ok()?;
        let rel = rel.to_str()?;
        let root = self.root.trim_end_matches('/');
        Some(if rel.is_empty() {
            if root.is_empty() {
                "/".into()
            } else {
                root.into()
            }
        } else {
            format!("{root}/{rel}")
        })
    }
}

/// Finds the first cgroup2 mount in `/proc/self/mountinfo` text. On a hybrid v1 host it is
/// typically `/sys/fs/cgroup/unified`; on a pure v2 host `/sys/fs/cgroup`.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<Cgroup2Mount> {
    mountinfo.lines().find_map(|line| {
        // id parent major:minor root mount_point options [optional...] - fstype source super
        let (left, right) = line.split_once(" - ")?;
        if right.split(' ').next()? != "cgroup2" {
            return None;
        }
        let mut f = left.split(' ');
        let root = unescape_mountinfo(f.nth(3)?);
        let mount_point = unescape_mountinfo(f.next()?);
        Some(Cgroup2Mount {
            mount_point: PathBuf::from(OsStr::from_bytes(&mount_point)),
            root: String::from_utf8(root).ok()?,
        })
    })
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0'));
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The environment of `/proc/PID/environ` (the process's `env_start..env_end`, the same memory
/// the kernel copies at exec), bounded as that copy: the first `guard_ebpf::PAYLOAD_MAX` bytes,
/// and when the environment is longer its last, cut, entry is dropped. `raw` is read with a cap
/// of one byte more than the bound, so that a longer environment shows as such.
pub fn parse_environ(raw: &[u8]) -> Env {
    let cut = raw.len() > guard_ebpf::PAYLOAD_MAX;
    let kept = &raw[..raw.len().min(guard_ebpf::PAYLOAD_MAX)];
    // Entries come from splitting at NUL: none holds one.
    Env::from_entries(&env_entries(kept, cut)).unwrap_or_default()
}

/// Nanoseconds since the epoch of a (seconds, nanoseconds) file time; None before the epoch or
/// out of range, as the kernel's exec record is decoded.
fn file_time_ns(sec: i64, nsec: i64) -> Option<u64> {
    let nsec = u64::try_from(nsec).ok().filter(|&n| n < 1_000_000_000)?;
    u64::try_from(sec)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nsec)
}

/// The inode number and times of a file's metadata (`proc.exe_ino*`).
pub fn exe_inode_of(md: &std::fs::Metadata) -> ExeInode {
    use std::os::unix::fs::MetadataExt;
    ExeInode {
        ino: md.ino(),
        ctime_ns: file_time_ns(md.ctime(), md.ctime_nsec()),
        mtime_ns: file_time_ns(md.mtime(), md.mtime_nsec()),
    }
}

/// The inode of the initial pid namespace (`PROC_PID_INIT_INO`, include/linux/proc_ns.h).
const INIT_PID_NS_INO: u64 = 0xEFFF_FFFC;
/// Parents walked to find a pid namespace's init.
const MAX_NS_WALK: usize = 64;

/// The inode of a `/proc/PID/ns/pid` link's target (`pid:[INODE]`).
pub fn parse_ns_link(target: &[u8]) -> Option<u64> {
    std::str::from_utf8(target)
        .ok()?
        .strip_prefix("pid:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Reads at most `cap` bytes of a file.
pub fn read_capped(path: &Path, cap: usize) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    std::fs::File::open(path)?
        .take(cap as u64)
        .read_to_end(&mut out)?;
    Ok(out)
}

/// A readlink result as bytes, capped to PATH_MAX.
pub fn read_link_bytes(path: &Path) -> Option<Vec<u8>> {
    let target = std::fs::read_link(path).ok()?;
    let bytes = target.as_os_str().as_bytes();
    (bytes.len() < PATH_MAX).then(|| bytes.to_vec())
}

/// One process as read from /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcSnapshot {
    pub pid: Pid,
    pub stat: Stat,
    pub exepath: Option<String>,
    pub argv: Argv,
    pub cwd: Option<String>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub loginuid: Option<u32>,
    pub ns: Option<NsIds>,
    /// Wall-clock start time, ns since the epoch.
    pub start_time_ns: u64,
    pub cgroup_path: Option<String>,
    pub cgroup_id: Option<CgroupId>,
    /// When its pid namespace started (wall ns): boot for the initial namespace, else the
    /// start of the namespace's init, found among its parents; None when not found.
    pub pidns_start_ns: Option<u64>,
    /// `/proc/PID/environ`, bounded as the exec capture; None when unreadable.
    pub env: Option<Env>,
    /// The executed file's inode (a stat through `/proc/PID/exe`); None when unreadable
    /// (kernel threads, permissions, a process gone).
    pub exe_inode: Option<ExeInode>,
}

/// Access to a /proc tree (the real one, or a fake in tests).
#[derive(Debug, Clone)]
pub struct ProcFs {
    pub root: PathBuf,
    pub cgroup2: Option<Cgroup2Mount>,
    clock: Clock,
    ticks_per_sec: u64,
}

impl ProcFs {
    /// The host's /proc, with the cgroup2 mount found in `/proc/self/mountinfo`.
    pub fn host() -> Self {
        let cgroup2 = std::fs::read_to_string("/proc/self/mountinfo")
            .ok()
            .and_then(|m| parse_cgroup2_mount(&m));
        let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|&t| t > 0)
            .unwrap_or(100);
        Self {
            root: PathBuf::from("/proc"),
            cgroup2,
            clock: Clock::now(),
            ticks_per_sec: ticks,
        }
    }

    pub fn new(root: PathBuf, cgroup2: Option<Cgroup2Mount>, clock: Clock, ticks: u64) -> Self {
        Self {
            root,
            cgroup2,
            clock,
            ticks_per_sec: ticks.max(1),
        }
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn pid_dir(&self, pid: Pid) -> PathBuf {
        self.root.join(pid.0.to_string())
    }

    /// Every numeric entry of /proc: the thread-group leaders.
    pub fn pids(&self) -> Vec<Pid> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok().map(Pid))
            .collect()
    }

    /// The process's current working directory (lazy refresh; there is no chdir event).
    pub fn cwd(&self, pid: Pid) -> Option<String> {
        read_link_bytes(&self.pid_dir(pid).join("cwd")).map(|b| super::path::to_text(&b))
    }

    /// The path an open file descriptor refers to, for dirfd-relative paths.
    pub fn fd_path(&self, pid: Pid, fd: i32) -> Option<Vec<u8>> {
        read_link_bytes(&self.pid_dir(pid).join("fd").join(fd.to_string()))
    }

    /// The process's namespace ids, from `/proc/PID/status`.
    pub fn ns_ids(&self, pid: Pid) -> Option<NsIds> {
        let raw = read_capped(&self.pid_dir(pid).join("status"), 16 * 1024).ok()?;
        parse_status_ns(&String::from_utf8_lossy(&raw))
    }

    /// The process's comm, from `/proc/PID/comm`.
    pub fn comm(&self, pid: Pid) -> Option<String> {
        let raw = read_capped(&self.pid_dir(pid).join("comm"), 64).ok()?;
        let s = String::from_utf8_lossy(&raw);
        Some(truncate_str(s.trim_end_matches('\n'), 15).to_owned())
    }

    /// The cgroup v2 path and id of a process.
    pub fn cgroup(&self, pid: Pid) -> Option<(String, Option<CgroupId>)> {
        let raw = read_capped(&self.pid_dir(pid).join("cgroup"), 64 * 1024).ok()?;
        let raw = String::from_utf8_lossy(&raw);
        let path = parse_cgroup_v2(&raw)?.to_owned();
        let id = self.cgroup_id_of_path(&path);
        Some((path, id))
    }

    /// The cgroup id (inode of the cgroup v2 directory) of a cgroup path.
    pub fn cgroup_id_of_path(&self, path: &str) -> Option<CgroupId> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.cgroup2.as_ref()?.dir_of(path)?;
        let md = std::fs::metadata(dir).ok()?;
        md.is_dir().then(|| CgroupId(md.ino()))
    }

    fn boot_ns_of_ticks(&self, ticks: u64) -> u64 {
        (u128::from(ticks) * 1_000_000_000 / u128::from(self.ticks_per_sec))
            .min(u128::from(u64::MAX)) as u64
    }

    /// When the pid namespace of `pid` started, as the kernel side reads it at exec: boot for
    /// the initial namespace, else its init's start. The init is the first process up the
    /// parent chain (the process itself included) in the same namespace whose id there is 1;
    /// a chain that leaves the namespace first (a process entered with `setns`, such as
    /// `docker exec`) gives None.
    pub fn pidns_start(&self, pid: Pid, stat: &Stat, ns: Option<NsIds>) -> Option<u64> {
        let ns_of = |p: Pid| {
            read_link_bytes(&self.pid_dir(p).join("ns").join("pid")).and_then(|t| parse_ns_link(&t))
        };
        let own = ns_of(pid)?;
        if own == INIT_PID_NS_INO {
            return Some(self.clock.wall_ns(0));
        }
        let (mut cur, mut stat, mut vpid) = (pid, stat.clone(), ns?.vpid);
        for _ in 0..MAX_NS_WALK {
            if vpid == 1 {
                return Some(self.clock.wall_ns(self.boot_ns_of_ticks(stat.start_ticks)));
            }
            let parent = Pid(stat.ppid);
            if parent.0 == 0 || parent == cur || ns_of(parent)? != own {
                return None;
            }
            cur = parent;
            stat = parse_stat(&read_capped(&self.pid_dir(cur).join("stat"), 4096).ok()?)?;
            vpid = self.ns_ids(cur)?.vpid;
        }
        None
    }

    /// Reads one process. `None` when it is gone or its stat is unreadable; other fields
    /// that cannot be read (permissions, races) are left empty.
    pub fn read(&self, pid: Pid, limits: ArgLimits) -> Option<ProcSnapshot> {
        let dir = self.pid_dir(pid);
        let stat = parse_stat(&read_capped(&dir.join("stat"), 4096).ok()?)?;
        let argv = read_capped(&dir.join("cmdline"), limits.max_bytes + 1)
            .map(|raw| Argv::from_nul_separated(&raw, limits))
            .unwrap_or_default();
        let status = read_capped(&dir.join("status"), 16 * 1024).ok();
        let status = status.as_deref().map(String::from_utf8_lossy);
        let (uid, gid) = status
            .as_deref()
            .and_then(parse_status_ids)
            .map_or((None, None), |(u, g)| (Some(u), Some(g)));
        let ns = status.as_deref().and_then(parse_status_ns);
        let loginuid = read_capped(&dir.join("loginuid"), 32)
            .ok()
            .and_then(|s| parse_loginuid(&String::from_utf8_lossy(&s)));
        let (cgroup_path, cgroup_id) = match self.cgroup(pid) {
            Some((p, id)) => (Some(p), id),
            None => (None, None),
        };
        let boot_ns = self.boot_ns_of_ticks(stat.start_ticks);
        let pidns_start_ns = self.pidns_start(pid, &stat, ns);
        let env = read_capped(&dir.join("environ"), guard_ebpf::PAYLOAD_MAX + 1)
            .ok()
            .map(|raw| parse_environ(&raw));
        // metadata follows the link to the executed file (also when it was deleted since).
        let exe_inode = std::fs::metadata(dir.join("exe"))
            .ok()
            .map(|md| exe_inode_of(&md));
        Some(ProcSnapshot {
            pid,
            pidns_start_ns,
            env,
            exe_inode,
            exepath: read_link_bytes(&dir.join("exe")).map(|b| super::path::to_text(&b)),
            cwd: self.cwd(pid),
            argv,
            uid,
            gid,
            loginuid,
            ns,
            start_time_ns: self.clock.wall_ns(boot_ns),
            cgroup_path,
            cgroup_id,
            stat,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let raw = b"1234 (a) b) (c) S 77 1234 1234 34816 1234 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 100 18446744073709551615";
        let s = parse_stat(raw).expect("parse");
        assert_eq!(s.comm, "a) b) (c");
        assert_eq!(s.ppid, 77);
        assert_eq!(s.tty_nr, 34816);
        assert_eq!(s.start_ticks, 98765);
        for bad in [
            &b""[..],
            b"1 (x",
            b"1 x) S",
            b"1 (x) S 1 2",
            b")(",
            b"1 (\xff) S z",
        ] {
            assert_eq!(parse_stat(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn status_loginuid_cgroup() {
        let status = "Name:\tsh\nUid:\t1000\t0\t0\t0\nGid:\t100\t100\t100\t100\n";
        assert_eq!(parse_status_ids(status), Some((1000, 100)));
        assert_eq!(parse_status_ids("Uid:\tx\n"), None);
        assert_eq!(parse_loginuid("4294967295"), None);
        assert_eq!(parse_loginuid("1000\n"), Some(1000));
        assert_eq!(parse_loginuid("-1"), None);
        let ns = "Name:\tsh\nNSpid:\t4242\t7\nNSpgid:\t4240\t1\nNSsid:\t4240\t1\n";
        assert_eq!(
            parse_status_ns(ns),
            Some(NsIds {
                vpid: 7,
                vpgid: 1,
                vsid: 1,
                sid: 4240
            })
        );
        let host = "NSpid:\t10\nNSpgid:\t10\nNSsid:\t3\n";
        assert_eq!(
            parse_status_ns(host).map(|n| (n.vpid, n.vpgid, n.sid)),
            Some((10, 10, 3))
        );
        for bad in [
            "NSpid:\t1\nNSpgid:\t1\n",
            "NSpid:\tx\nNSpgid:\t1\nNSsid:\t1\n",
            "NSpid:\nNSpgid:\t1\nNSsid:\t1\n",
        ] {
            assert_eq!(parse_status_ns(bad), None, "{bad:?}");
        }
        let cg = "9:name=systemd:/docker/x\n1:cpu:/\n0::/docker/abc\n";
        assert_eq!(parse_cgroup_v2(cg), Some("/docker/abc"));
        assert_eq!(parse_cgroup_v2("1:cpu:/\n"), None);
    }

    #[test]
    fn cgroup2_mount_from_mountinfo() {
        let hybrid = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
            32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
            41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        let m = parse_cgroup2_mount(hybrid).expect("found");
        assert_eq!(m.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(m.root, "/");
        assert_eq!(
            m.dir_of("/docker/abc"),
            Some(PathBuf::from("/sys/fs/cgroup/unified/docker/abc"))
        );
        assert_eq!(m.dir_of("/"), Some(PathBuf::from("/sys/fs/cgroup/unified")));
        assert_eq!(m.dir_of("/../etc"), None);
        assert_eq!(
            m.path_of(Path::new("/sys/fs/cgroup/unified/docker/abc")),
            Some("/docker/abc".into())
        );
        assert_eq!(
            m.path_of(Path::new("/sys/fs/cgroup/unified")),
            Some("/".into())
        );

        // Optional fields, an escaped space, and a sub-tree root.
        let v2 = "25 1 0:22 /kubepods /run/my\\040cg rw shared:5 master:1 - cgroup2 none rw\n";
        let m = parse_cgroup2_mount(v2).expect("found");
        assert_eq!(m.mount_point, PathBuf::from("/run/my cg"));
        assert_eq!(
            m.dir_of("/kubepods/pod1"),
            Some(PathBuf::from("/run/my cg/pod1"))
        );
        assert_eq!(m.dir_of("/kubepodsX"), None);
        assert_eq!(m.dir_of("/docker/x"), None);
        assert_eq!(
            m.path_of(Path::new("/run/my cg/pod1")),
            Some("/kubepods/pod1".into())
        );

        assert_eq!(parse_cgroup2_mount("garbage\n - \n1 2 3 - cgroup2"), None);
    }

    #[test]
    fn argv_bounds() {
        let l = ArgLimits {
            max_args: 3,
            max_bytes: 10,
        };
        let a = Argv::from_nul_separated(b"sh\0-c\0echo hi\0", l);
        // 2 + 2 + 7 bytes: the last argument is cut at the 10-byte budget.
        assert_eq!(a.items, ["sh", "-c", "echo h"]);
        assert!(a.truncated);
        let a = Argv::from_nul_separated(b"a\0b\0c\0d\0", l);
        assert_eq!(a.items, ["a", "b", "c"]);
        assert!(a.truncated);
        let a = Argv::from_nul_separated(b"ab\0\0c", ArgLimits::default());
        assert_eq!(a.items, ["ab", "", "c"]);
        assert!(!a.truncated);
        assert_eq!(Argv::from_nul_separated(b"", l).items.len(), 0);
        assert_eq!(Argv::from_nul_separated(b"\0", l).items, [""; 0]);
        let a = Argv::from_nul_separated("ééééééé".as_bytes(), l);
        assert_eq!(a.items, ["ééééé"]);
        let a = Argv::from_nul_separated(b"\xff\xfe", l);
        assert_eq!(a.items, ["\u{fffd}\u{fffd}"]);
    }

    /// A fake /proc with one process, 42, whose `exe` links to `exe` when given.
    fn fake_proc(tag: &str, environ: &[u8], exe: Option<&Path>) -> (PathBuf, ProcFs) {
        let root =
            std::env::temp_dir().join(format!("guard-fakeproc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = root.join("42");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("stat"),
            b"42 (sh) S 1 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 500 0 0",
        )
        .expect("stat");
        std::fs::write(dir.join("cmdline"), b"sh\0-c\0x\0").expect("cmdline");
        std::fs::write(dir.join("environ"), environ).expect("environ");
        if let Some(exe) = exe {
            std::os::unix::fs::symlink(exe, dir.join("exe")).expect("exe link");
        }
        let fs = ProcFs::new(root.clone(), None, Clock::with_offset(0), 100);
        (root, fs)
    }

    #[test]
    fn environ_and_exe_inode_from_fake_proc() {
        let bin = std::env::temp_dir().join(format!("guard-fakeproc-bin-{}", std::process::id()));
        std::fs::write(&bin, b"#!/bin/sh\n").expect("bin");
        let (root, fs) = fake_proc("env", b"A=1\0EMPTY=\0\0B=two words\0", Some(&bin));
        let snap = fs.read(Pid(42), ArgLimits::default()).expect("read");
        let env = snap.env.expect("environ read");
        // An empty entry between two NULs is no variable; the others keep their order.
        assert_eq!(
            env.entries().collect::<Vec<_>>(),
            ["A=1", "EMPTY=", "B=two words"]
        );
        assert_eq!(env.get("B"), Some("two words"));
        assert_eq!(env.get("EMPTY"), Some(""));
        assert_eq!(env.get("C"), None);
        // The inode and times are the executed file's (the link is followed), not the link's.
        let md = std::fs::metadata(&bin).expect("stat bin");
        let ino = snap.exe_inode.expect("exe inode");
        assert_eq!(ino.ino, std::os::unix::fs::MetadataExt::ino(&md));
        assert_eq!(
            ino.ctime_ns,
            Some(md_ns(
                std::os::unix::fs::MetadataExt::ctime(&md),
                std::os::unix::fs::MetadataExt::ctime_nsec(&md)
            ))
        );
        assert_eq!(
            ino.mtime_ns,
            Some(md_ns(
                std::os::unix::fs::MetadataExt::mtime(&md),
                std::os::unix::fs::MetadataExt::mtime_nsec(&md)
            ))
        );
        assert_eq!(snap.start_time_ns, 5_000_000_000, "500 ticks at 100 Hz");
        let _ = std::fs::remove_dir_all(&root);
        let _ = std::fs::remove_file(&bin);
    }

    fn md_ns(sec: i64, nsec: i64) -> u64 {
        sec as u64 * 1_000_000_000 + nsec as u64
    }

    /// No `exe` link (a kernel thread, or one that cannot be read) and a dangling one: no
    /// inode, never a made-up one. No `environ` file: no environment.
    #[test]
    fn missing_exe_and_environ_are_none() {
        let (root, fs) = fake_proc("noexe", b"", None);
        let snap = fs.read(Pid(42), ArgLimits::default()).expect("read");
        assert_eq!(snap.exe_inode, None);
        assert_eq!(snap.exepath, None);
        // An empty (readable) environ is an empty environment, as an exec with none.
        assert_eq!(snap.env.as_ref().map(|e| e.entries().count()), Some(0));
        std::fs::remove_file(root.join("42/environ")).expect("rm environ");
        std::os::unix::fs::symlink(root.join("gone"), root.join("42/exe")).expect("dangling");
        let snap = fs.read(Pid(42), ArgLimits::default()).expect("read");
        assert_eq!(snap.exe_inode, None);
        assert_eq!(snap.env, None);
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Longer than the kernel capture's bound: cut at `PAYLOAD_MAX` bytes, and the entry the cut
    /// fell in is dropped (never half a value); a cut right after a NUL keeps every entry.
    #[test]
    fn over_long_environ_is_cut_like_the_exec_capture() {
        let max = guard_ebpf::PAYLOAD_MAX;
        let mut raw = b"FIRST=1\0".to_vec();
        raw.extend_from_slice(b"LONG=");
        raw.resize(max + 100, b'x');
        raw.extend_from_slice(b"\0AFTER=1\0");
        let (root, fs) = fake_proc("long", &raw, None);
        let env = fs
            .read(Pid(42), ArgLimits::default())
            .expect("read")
            .env
            .expect("env");
        assert_eq!(env.entries().collect::<Vec<_>>(), ["FIRST=1"]);
        let _ = std::fs::remove_dir_all(&root);

        // Exactly at the bound with a NUL last, then more: the complete entries stay.
        let mut raw = b"A=".to_vec();
        raw.resize(max - 1, b'y');
        raw.push(0);
        raw.extend_from_slice(b"B=2\0");
        let env = parse_environ(&raw[..max + 1]);
        let entries: Vec<_> = env.entries().collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].len(), max - 1);
        // The same bytes as a kernel exec record cut there give the same entries.
        assert_eq!(
            crate::events::env_entries(&raw[..max], true),
            entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()
        );
        // Within the bound: nothing dropped, a last entry without NUL kept.
        assert_eq!(
            parse_environ(b"X=1\0Y=2").entries().collect::<Vec<_>>(),
            ["X=1", "Y=2"]
        );
    }

    /// The pid namespace's start of a process read from /proc: boot for the initial namespace,
    /// else the start of the ancestor in the same namespace whose id there is 1; nothing when
    /// the chain leaves the namespace first, or the link cannot be read.
    #[test]
    fn pidns_start_from_fake_proc() {
        let root =
            std::env::temp_dir().join(format!("guard-fakeproc-pidns-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // (pid, ppid, NSpid line, ns link, start ticks)
        let procs: [(u32, u32, &str, Option<&str>, u32); 6] = [
            (40, 1, "40\t1", Some("pid:[99]"), 300),
            (41, 40, "41\t5", Some("pid:[99]"), 400),
            (42, 41, "42\t6", Some("pid:[99]"), 500),
            (43, 30, "43\t7", Some("pid:[99]"), 600),
            (30, 1, "30", Some("pid:[4026531836]"), 200),
            (45, 1, "45", None, 700),
        ];
        for (pid, ppid, nspid, link, ticks) in procs {
            let dir = root.join(pid.to_string());
            std::fs::create_dir_all(dir.join("ns")).expect("mkdir");
            let stat =
                format!("{pid} (p) S {ppid} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {ticks} 0 0");
            std::fs::write(dir.join("stat"), stat).expect("stat");
            std::fs::write(
                dir.join("status"),
                format!("NSpid:\t{nspid}\nNSpgid:\t{nspid}\nNSsid:\t{nspid}\n"),
            )
            .expect("status");
            if let Some(l) = link {
                std::os::unix::fs::symlink(l, dir.join("ns/pid")).expect("link");
            }
        }
        let fs = ProcFs::new(root.clone(), None, Clock::with_offset(1000), 100);
        let start = |pid| {
            fs.read(Pid(pid), ArgLimits::default())
                .expect("read")
                .pidns_start_ns
        };
        // The init itself, and two levels below it: the init's start, 3 s after boot.
        assert_eq!(start(40), Some(3_000_001_000));
        assert_eq!(start(42), Some(3_000_001_000));
        // The initial namespace: boot.
        assert_eq!(start(30), Some(1000));
        // Entered from outside (its parent is in the host's namespace): not derived.
        assert_eq!(start(43), None);
        // No readable link: nothing, never a default.
        assert_eq!(start(45), None);
        assert_eq!(parse_ns_link(b"pid:[12]"), Some(12));
        for bad in [&b"net:[12]"[..], b"pid:[x]", b"pid:[12", b""] {
            assert_eq!(parse_ns_link(bad), None);
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    /// Reads this test's own process from the real /proc.
    #[test]
    fn reads_own_process() {
        let fs = ProcFs::host();
        let me = Pid(std::process::id());
        let snap = fs.read(me, ArgLimits::default()).expect("own process");
        let exe = std::env::current_exe().expect("current_exe");
        assert_eq!(snap.exepath.as_deref(), exe.to_str());
        let args: Vec<String> = std::env::args().collect();
        let n = snap.argv.items.len().min(args.len());
        assert!(n > 0);
        assert_eq!(snap.argv.items[..n], args[..n]);
        assert_eq!(snap.stat.ppid, std::os::unix::process::parent_id());
        assert_eq!(
            snap.cwd.as_deref(),
            std::env::current_dir().expect("cwd").to_str()
        );
        // SAFETY: getuid cannot fail.
        assert_eq!(snap.uid, Some(unsafe { libc::getuid() }));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos() as u64;
        assert!(snap.start_time_ns <= now + 1_000_000_000);
        assert!(
            snap.start_time_ns + 3600 * 1_000_000_000 > now,
            "started within the hour"
        );
        if fs.cgroup2.is_some() {
            assert!(snap.cgroup_id.is_some(), "cgroup2 mounted, id expected");
        }
        // Its own namespace: this test runs on a host (boot) or in a container (its init).
        assert!(
            snap.pidns_start_ns
                .is_some_and(|t| t <= snap.start_time_ns + 1_000_000_000)
        );
        // Its own environment and executable are readable.
        let env = snap.env.expect("own environ");
        if let Ok(path) = std::env::var("PATH")
            && std::env::vars_os()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
                <= guard_ebpf::PAYLOAD_MAX
        {
            assert_eq!(env.get("PATH"), Some(path.as_str()));
        }
        let md = std::fs::metadata(&exe).expect("stat exe");
        assert_eq!(
            snap.exe_inode.map(|i| i.ino),
            Some(std::os::unix::fs::MetadataExt::ino(&md))
        );
    }
}
