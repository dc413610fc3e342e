//! Sealed directories and files (docs/policies.md "The fanotify backend"). fanotify has
//! permission events for opens only; rename, link, unlink and the creation of a name (`O_CREAT`
//! included, which makes the file before the open is asked) change a directory without opening
//! anything, and truncate(2) cuts a file without opening it. On a container's own overlay root,
//! the directories of an enforced `deny_write` `DIR/**` subtree and the files of its exact
//! `deny_write` rules therefore get the immutable attribute: the kernel refuses those changes
//! (and, for a file, its opens for write, truncate, unlink, rename over it, a link to it and
//! chmod) with EPERM before anything happens. overlayfs keeps the attribute in its own xattr
//! on the upper directory (the host's directory is not immutable, so the runtime can still
//! remove the container); a
//! container lifts it only with `CAP_LINUX_IMMUTABLE`, which Docker does not grant by default,
//! and the next pass seals again. Of files, only exact rules' are sealed (sealing copies the
//! file's data up, once); their refused opens never reach fanotify and are recorded from the
//! traced syscall's EPERM instead (`agent/decisions.rs`).
//!
//! The agent lifts what it sealed when a pass no longer wants it (policy removed or in detect
//! mode, workload gone) and when it stops; directories that were immutable before are never
//! touched. After a crash the seals stay (fail closed): a restarted agent takes over those its
//! policies still name (it knows them by the `trusted.guard.sealed` xattr set with each seal)
//! and lifts them when they are no longer wanted; one whose rule was removed while no agent
//! ran stays sealed until the container is recreated (docs/policies.md says how to lift it).

use std::{
    collections::HashMap,
    ffi::CStr,
    io,
    os::fd::{AsFd, AsRawFd, OwnedFd},
    os::unix::ffi::OsStringExt,
    path::{Path, PathBuf},
};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use tracing::debug;

use crate::policy::resolve::FileId;

/// Directories and files sealed at most (past it, the rest of a subtree stays unsealed: opens
/// are still asked, but rename, link and create in them are not refused).
pub const SEALED_MAX: usize = 8192;

const FS_IMMUTABLE_FL: libc::c_int = 0x10;
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
/// Set with each seal: a restarted agent can tell its own seals from the image's.
const SEAL_XATTR: &CStr = c"trusted.guard.sealed";

/// Whether `root` is an overlayfs (a container's own root filesystem).
pub fn is_overlay(root: &impl AsFd) -> bool {
    // SAFETY: statfs into a zeroed struct on our stack.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::fstatfs(root.as_fd().as_raw_fd(), &mut st) };
    r == 0 && st.f_type as i64 == OVERLAYFS_SUPER_MAGIC
}

fn get_flags(fd: &impl AsRawFd) -> io::Result<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags)
}

fn set_flags(fd: &impl AsRawFd, flags: libc::c_int) -> io::Result<()> {
    // SAFETY: FS_IOC_SETFLAGS reads one int.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn has_marker(fd: &impl AsRawFd) -> bool {
    // SAFETY: a size query (no buffer).
    unsafe { libc::fgetxattr(fd.as_raw_fd(), SEAL_XATTR.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

fn set_marker(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    if on {
        xattr_set(fd, SEAL_XATTR, b"1")
    } else {
        xattr_remove(fd, SEAL_XATTR)
    }
}

/// Where a sealed directory or file is: a process whose root is the workload's, the path
/// there, and the overlay's upper directory on the host (to lift the seal once the container
/// stopped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub pid: u32,
    pub path: String,
    pub upper: Option<PathBuf>,
    pub dir: bool,
}

/// The host path of the upper directory of `pid`'s root overlay (`upperdir=` in the root
/// mount's options in `/proc/<pid>/mountinfo`).
pub fn upper_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).ok()?;
    upper_of(&text)
}

fn upper_of(mountinfo: &str) -> Option<PathBuf> {
    // The last mount on "/" is the root this process sees.
    let line = mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some("/"))?;
    let (_, tail) = line.split_once(" - ")?;
    let mut t = tail.split(' ');
    if t.next()? != "overlay" {
        return None;
    }
    let opts = t.nth(1)?;
    let raw = opts.split(',').find_map(|o| o.strip_prefix("upperdir="))?;
    let path = unescape(raw)?;
    path.is_absolute().then_some(path)
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> Option<PathBuf> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            let oct = std::str::from_utf8(b.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(oct, 8).ok()?);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(PathBuf::from(std::ffi::OsString::from_vec(out)))
}

/// The directories and files one pass wants sealed (filled by `marks::build`).
#[derive(Debug, Default)]
pub struct Plan {
    pub dirs: HashMap<FileId, Place>,
}

impl Plan {
    /// A directory (`dir`) or a regular file to seal.
    pub fn want(&mut self, id: FileId, pid: u32, path: &str, upper: Option<&Path>, dir: bool) {
        if self.dirs.len() < SEALED_MAX {
            self.dirs.entry(id).or_insert_with(|| Place {
                pid,
                path: path.to_owned(),
                upper: upper.map(Path::to_path_buf),
                dir,
            });
        }
    }
}

/// Counts for the log and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SealCounts {
    pub sealed: usize,
    pub resealed: usize,
    pub lifted: usize,
    pub failed: usize,
}

/// The directories and files this agent sealed, and where to find them to lift the seal.
#[derive(Debug, Default)]
pub struct Sealer {
    sealed: HashMap<FileId, Place>,
}

/// Opens the place inside the workload's root as `sys::open_in` resolves it: a directory, or
/// a regular file for reading (the attribute ioctls need more than `O_PATH`; the answer thread
/// allows the agent's own opens at once).
fn open_place(p: &Place) -> io::Result<OwnedFd> {
    let root = crate::procroot::open_root(p.pid).map_err(io::Error::other)?;
    if p.dir {
        return Ok(super::sys::open_in(&root, &p.path, true)?);
    }
    reopen_regular(super::sys::open_in(&root, &p.path, false)?)
}

/// Reopens an `O_PATH` descriptor for reading, only if it is a regular file: the workload can
/// put a device node at a protected name (Docker grants `CAP_MKNOD`), and opening one from the
/// host could act on the device. Through `/proc/self/fd`, the same inode that was checked.
fn reopen_regular(path_fd: OwnedFd) -> io::Result<OwnedFd> {
    let md = std::fs::File::from(path_fd.try_clone()?).metadata()?;
    if !md.is_file() {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(nix::fcntl::open(
        format!("/proc/self/fd/{}", path_fd.as_raw_fd()).as_str(),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?)
}

/// `statx` of a descriptor (`O_PATH` will do): its identity, its type (`S_IFMT` bits), and
/// whether it is immutable now. `None` if the kernel cannot tell the attribute.
fn statx_seal(fd: &impl AsRawFd) -> Option<(FileId, u32, bool)> {
    // SAFETY: a plain C struct of integers, for which all zeroes is valid.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx writes into `st`; an empty path with AT_EMPTY_PATH names `fd`.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_TYPE | libc::STATX_INO,
            &mut st,
        )
    };
    if r != 0 || st.stx_attributes_mask & libc::STATX_ATTR_IMMUTABLE as u64 == 0 {
        return None;
    }
    let dev = libc::makedev(st.stx_dev_major, st.stx_dev_minor);
    let id = FileId {
        dev: crate::policy::resolve::kernel_dev(dev),
        ino: st.stx_ino,
    };
    let kind = u32::from(st.stx_mode) & libc::S_IFMT;
    Some((
        id,
        kind,
        st.stx_attributes & libc::STATX_ATTR_IMMUTABLE as u64 != 0,
    ))
}

/// The identity of `fd` and whether it is a directory, if it is immutable now (a seal lifted
/// by a container that may is not).
pub fn immutable_now(fd: &impl AsRawFd) -> Option<(FileId, bool)> {
    statx_seal(fd)
        .filter(|(_, _, immutable)| *immutable)
        .map(|(id, kind, _)| (id, kind == libc::S_IFDIR))
}

/// Whether the place still is the file `id`, of its kind and immutable (`statx` of an
/// `O_PATH` descriptor).
fn still_sealed(id: FileId, p: &Place) -> bool {
    let Ok(root) = crate::procroot::open_root(p.pid) else {
        return false;
    };
    let Ok(fd) = super::sys::open_in(&root, &p.path, false) else {
        return false;
    };
    let Some((now, kind, immutable)) = statx_seal(&fd) else {
        return false;
    };
    now == id && immutable && kind == if p.dir { libc::S_IFDIR } else { libc::S_IFREG }
}

/// Opens the planned place and checks it still is the one resolved, and of its kind (a
/// swapped name is never sealed; a file must be a regular file).
fn open_checked(id: FileId, p: &Place) -> io::Result<OwnedFd> {
    let fd = open_place(p)?;
    let md = std::fs::File::from(fd.try_clone()?).metadata()?;
    let kind_ok = if p.dir { md.is_dir() } else { md.is_file() };
    if crate::policy::resolve::file_id(&md) != id || !kind_ok {
        return Err(io::Error::from_raw_os_error(libc::ESTALE));
    }
    Ok(fd)
}

impl Sealer {
    pub fn len(&self) -> usize {
        self.sealed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty()
    }

    pub fn is_sealed(&self, id: FileId) -> bool {
        self.sealed.contains_key(&id)
    }

    /// A sealed regular file, opened for reading (to drop an ignore mark on it).
    pub fn open_file(&self, id: FileId) -> Option<OwnedFd> {
        let p = self.sealed.get(&id).filter(|p| !p.dir)?;
        open_checked(id, p).ok()
    }

    /// Seals what the plan wants and lifts the seals it no longer wants.
    pub fn apply(&mut self, plan: Plan) -> SealCounts {
        let mut n = SealCounts::default();
        for (id, place) in &plan.dirs {
            match self.seal(*id, place) {
                Ok(Some(again)) => {
                    if again {
                        n.resealed += 1;
                    } else {
                        n.sealed += 1;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    n.failed += 1;
                    debug!(path = place.path, pid = place.pid, "sealing: {e}");
                }
            }
        }
        let stale: Vec<FileId> = self
            .sealed
            .keys()
            .filter(|id| !plan.dirs.contains_key(id))
            .copied()
            .collect();
        for id in stale {
            if let Some(p) = self.sealed.remove(&id) {
                match lift(id, &p) {
                    Ok(()) => n.lifted += 1,
                    // The workload is gone: its root (and the seal) with it.
                    Err(e) => debug!(path = p.path, "lifting a seal: {e}"),
                }
            }
        }
        n
    }

    /// `Some(false)`: sealed now; `Some(true)`: a seal of ours had been lifted, sealed again;
    /// `None`: nothing to do (ours and in place, or immutable before we came).
    fn seal(&mut self, id: FileId, p: &Place) -> io::Result<Option<bool>> {
        // Ours and still in place: checked without opening it (an open of a file on a marked
        // filesystem waits for the answer thread; this runs for every seal at every walk).
        if self.sealed.contains_key(&id) && still_sealed(id, p) {
            // The place's process may be another one now.
            self.sealed.insert(id, p.clone());
            return Ok(None);
        }
        let fd = open_checked(id, p)?;
        let flags = get_flags(&fd)?;
        let ours = self.sealed.contains_key(&id) || has_marker(&fd);
        if flags & FS_IMMUTABLE_FL != 0 {
            if ours {
                self.sealed.insert(id, p.clone());
            }
            return Ok(None);
        }
        // The marker first: a seal is never left without it.
        set_marker(&fd, true)?;
        set_flags(&fd, flags | FS_IMMUTABLE_FL)?;
        let again = self.sealed.insert(id, p.clone()).is_some();
        Ok(Some(again))
    }

    /// Lifts every seal (the agent stops).
    pub fn lift_all(&mut self) -> usize {
        let mut n = 0;
        for (id, p) in self.sealed.drain() {
            match lift(id, &p) {
                Ok(()) => n += 1,
                Err(e) => debug!(path = p.path, "lifting a seal at stop: {e}"),
            }
        }
        n
    }
}

/// Lifts a seal through the workload's root; when no process shows that root any more (the
/// container stopped), on the overlay's upper directory, where overlayfs keeps it.
fn lift(id: FileId, p: &Place) -> io::Result<()> {
    let fd = match open_checked(id, p) {
        Ok(fd) => fd,
        Err(e) => {
            return match &p.upper {
                Some(up) => lift_upper(up, &p.path, p.dir),
                None => Err(e),
            };
        }
    };
    let flags = get_flags(&fd)?;
    if flags & FS_IMMUTABLE_FL != 0 {
        set_flags(&fd, flags & !FS_IMMUTABLE_FL)?;
    }
    set_marker(&fd, false)
}

/// overlayfs's xattr for the immutable and append-only attributes ("i", "a").
const PROTATTR: &CStr = c"trusted.overlay.protattr";

/// On the host, below the upper directory only: no symlink is followed (a stopped container's
/// upper directory is the container's to shape), and only a directory or file with guard's
/// marker is touched.
fn lift_upper(upper: &Path, path: &str, dir: bool) -> io::Result<()> {
    let rel = path.trim_start_matches('/');
    let up = nix::fcntl::open(
        upper,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let kind = if dir {
        OFlag::O_RDONLY | OFlag::O_DIRECTORY
    } else {
        OFlag::O_PATH
    };
    let how = OpenHow::new().flags(kind | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_BENEATH
            | ResolveFlag::RESOLVE_NO_SYMLINKS
            | ResolveFlag::RESOLVE_NO_XDEV,
    );
    let dir = match openat2(&up, if rel.is_empty() { "." } else { rel }, how) {
        Ok(d) if dir => d,
        Ok(f) => reopen_regular(f)?,
        // Removed with the container: nothing to lift.
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !has_marker(&dir) {
        return Ok(());
    }
    if let Some(v) = xattr_get(&dir, PROTATTR) {
        let rest: Vec<u8> = v.into_iter().filter(|c| *c != b'i').collect();
        if rest.is_empty() {
            xattr_remove(&dir, PROTATTR)?;
        } else {
            xattr_set(&dir, PROTATTR, &rest)?;
        }
    }
    set_marker(&dir, false)
}

fn xattr_get(fd: &impl AsRawFd, name: &CStr) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    // SAFETY: a bounded buffer on our stack.
    let r = unsafe {
        libc::fgetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

fn xattr_set(fd: &impl AsRawFd, name: &CStr, v: &[u8]) -> io::Result<()> {
    // SAFETY: a valid name and buffer.
    let r =
        unsafe { libc::fsetxattr(fd.as_raw_fd(), name.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn xattr_remove(fd: &impl AsRawFd, name: &CStr) -> io::Result<()> {
    // SAFETY: a valid name.
    if unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENODATA) {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o_path(p: &str) -> OwnedFd {
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .expect("O_PATH open")
    }

    #[test]
    fn only_a_regular_file_is_reopened() {
        let f = std::env::temp_dir().join(format!("guard-seal-reopen-{}", std::process::id()));
        std::fs::write(&f, b"x").expect("write");
        let fd = reopen_regular(o_path(f.to_str().expect("utf8"))).expect("a regular file");
        // SAFETY: reading the file status flags of our own descriptor.
        let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_PATH, 0, "reopened for reading, not O_PATH");
        std::fs::remove_file(&f).expect("remove");
        // A device node (a container can make one at a protected name) and a directory are
        // never opened.
        for p in ["/dev/null", "/"] {
            let e = reopen_regular(o_path(p)).expect_err(p);
            assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{p}");
        }
    }

    #[test]
    fn upper_dir_is_the_root_overlays() {
        let mi = "22 1 8:1 / / rw - ext4 /dev/vda rw\n\
197 95 0:73 / / rw,relatime master:8 - overlay overlay rw,lowerdir=/l/A:/l/B,upperdir=/var/lib/docker/overlay2/ab\\040c/diff,workdir=/w\n\
198 197 0:74 / /proc rw - proc proc rw\n";
        assert_eq!(
            upper_of(mi),
            Some(PathBuf::from("/var/lib/docker/overlay2/ab c/diff"))
        );
        // A root that is not an overlay, or a relative upper: none.
        assert_eq!(upper_of("22 1 8:1 / / rw - ext4 /dev/vda rw\n"), None);
        assert_eq!(
            upper_of("1 0 0:1 / / rw - overlay o rw,upperdir=diff,workdir=w\n"),
            None
        );
        // A bad escape is refused, not guessed.
        assert_eq!(
            upper_of("1 0 0:1 / / rw - overlay o rw,upperdir=/a\\9x\n"),
            None
        );
    }
}
