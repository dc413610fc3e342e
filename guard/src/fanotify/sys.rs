//! The fanotify system calls: the group, marks, reading events (validated: a record the kernel
//! wrote with a length or version we do not know ends the batch) and answering.

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
    path::Path,
};

/// Permission events on open and on exec's open of the binary.
pub const PERM_MASK: u64 = libc::FAN_OPEN_PERM | libc::FAN_OPEN_EXEC_PERM;
pub const FAN_OPEN_PERM: u64 = libc::FAN_OPEN_PERM;
pub const FAN_OPEN_EXEC_PERM: u64 = libc::FAN_OPEN_EXEC_PERM;
const FAN_REPORT_TID: u32 = 0x0000_0100;
const FAN_MARK_FILESYSTEM: u32 = 0x0000_0100;
const FAN_EVENT_ON_CHILD: u64 = 0x0800_0000;
const FAN_MARK_IGNORED_MASK: u32 = 0x0000_0020;
const FAN_MARK_FLUSH: u32 = 0x0000_0080;
/// Linux 6.0+: an ignore mark with the same semantics on every object type.
const FAN_MARK_IGNORE: u32 = 0x0000_0400;

/// Which flag places an ignore mark on this kernel (`FAN_MARK_IGNORE`, else the older
/// `FAN_MARK_IGNORED_MASK`); neither with `FAN_MARK_IGNORED_SURV_MODIFY`, so the kernel
/// clears the ignore at the file's first modification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreStyle {
    Ignore,
    IgnoredMask,
}

/// A fanotify group for permission decisions. The queue is unlimited: a permission event in
/// a full queue would be let through; each queued event blocks its opener, so the queue is
/// bounded by the number of blocked threads instead.
pub fn init() -> io::Result<OwnedFd> {
    let flags = libc::FAN_CLASS_CONTENT
        | libc::FAN_CLOEXEC
        | libc::FAN_NONBLOCK
        | libc::FAN_UNLIMITED_QUEUE
        | libc::FAN_UNLIMITED_MARKS
        | FAN_REPORT_TID;
    // SAFETY: plain syscall; the fd is owned on success.
    let fd = unsafe {
        libc::fanotify_init(
            flags,
            (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd this function owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// What a mark covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every file of the filesystem (superblock) the path is on, through any mount.
    Filesystem,
    /// The inode itself (and, for a directory, the opens of its direct children).
    Inode { children: bool },
}

fn mark(
    group: BorrowedFd<'_>,
    op: u32,
    target: Target,
    dirfd: RawFd,
    path: Option<&Path>,
) -> io::Result<()> {
    let (kind, mask) = match target {
        Target::Filesystem => (FAN_MARK_FILESYSTEM, PERM_MASK),
        Target::Inode { children } => {
            (0, PERM_MASK | if children { FAN_EVENT_ON_CHILD } else { 0 })
        }
    };
    let cpath = match path {
        Some(p) => Some(
            CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        ),
        None => None,
    };
    let ptr = cpath.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: valid fds and a NUL-terminated path (or NULL: the dirfd's own inode).
    let r = unsafe { libc::fanotify_mark(group.as_raw_fd(), op | kind, mask, dirfd, ptr) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Marks what `path` names (resolved normally, from the caller's root).
pub fn mark_path(group: BorrowedFd<'_>, target: Target, path: &Path) -> io::Result<()> {
    mark(
        group,
        libc::FAN_MARK_ADD,
        target,
        libc::AT_FDCWD,
        Some(path),
    )
}

/// Marks the inode (or its filesystem) of an open `O_PATH` descriptor, through its
/// `/proc/self/fd` link (the kernel does not take an `O_PATH` descriptor as the mark's dirfd).
pub fn mark_fd(group: BorrowedFd<'_>, target: Target, fd: BorrowedFd<'_>) -> io::Result<()> {
    let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
    mark_path(group, target, Path::new(&link))
}

/// Stops permission events of `FAN_OPEN_PERM` on the inode of `fd` (an event's descriptor of
/// a regular file) for `group`, whatever mark (filesystem or inode) of the group raised them.
/// `FAN_OPEN_EXEC_PERM` stays: exec is always asked.
pub fn ignore(group: BorrowedFd<'_>, fd: BorrowedFd<'_>, style: IgnoreStyle) -> io::Result<()> {
    ignore_op(group, fd, style, libc::FAN_MARK_ADD)
}

/// Removes that ignore mark again (the inode's other marks in `group` stay).
pub fn unignore(group: BorrowedFd<'_>, fd: BorrowedFd<'_>, style: IgnoreStyle) -> io::Result<()> {
    ignore_op(group, fd, style, libc::FAN_MARK_REMOVE)
}

fn ignore_op(
    group: BorrowedFd<'_>,
    fd: BorrowedFd<'_>,
    style: IgnoreStyle,
    op: u32,
) -> io::Result<()> {
    let flag = match style {
        IgnoreStyle::Ignore => FAN_MARK_IGNORE,
        IgnoreStyle::IgnoredMask => FAN_MARK_IGNORED_MASK,
    };
    // SAFETY: valid fds; a NULL path marks the dirfd's own inode.
    let r = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            op | flag,
            FAN_OPEN_PERM,
            fd.as_raw_fd(),
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Removes every inode mark of `group` (its filesystem marks stay).
pub fn flush_inode_marks(group: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd; no path.
    let r = unsafe {
        libc::fanotify_mark(
            group.as_raw_fd(),
            FAN_MARK_FLUSH,
            0,
            libc::AT_FDCWD,
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// One permission event: the opener's thread and the kernel's descriptor of the file.
#[derive(Debug)]
pub struct Event {
    pub mask: u64,
    pub tid: i32,
    /// Owned: closed once answered.
    pub fd: OwnedFd,
}

/// Reads what is queued into `buf` and returns the events; `Ok(empty)` when none. Events that
/// are not permission events (the queue overflow marker) are counted in `other`.
pub fn read_events(
    group: BorrowedFd<'_>,
    buf: &mut [u8],
    other: &mut u64,
) -> io::Result<Vec<Event>> {
    // SAFETY: reads into our buffer, bounded by its length.
    let n = unsafe { libc::read(group.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(Vec::new()),
            _ => Err(e),
        };
    }
    Ok(parse(&buf[..n as usize], other))
}

const META_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();

/// Parses a read's bytes. Each record's descriptor is owned from here on, so a record we
/// cannot use still has its fd closed (and its permission event gets no answer from us: the
/// caller denies by fd only for well-formed records; see `Listener`).
fn parse(mut b: &[u8], other: &mut u64) -> Vec<Event> {
    let mut out = Vec::new();
    while b.len() >= META_LEN {
        // SAFETY: at least META_LEN bytes; read_unaligned copes with any alignment.
        let m: libc::fanotify_event_metadata =
            unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
        let len = m.event_len as usize;
        if m.vers != libc::FANOTIFY_METADATA_VERSION || len < META_LEN || len > b.len() {
            break;
        }
        b = &b[len..];
        if m.fd < 0 {
            *other += 1;
            continue;
        }
        // SAFETY: the kernel installed this fd for us; we own it now.
        let fd = unsafe { OwnedFd::from_raw_fd(m.fd) };
        if m.mask & PERM_MASK == 0 {
            *other += 1;
            continue;
        }
        out.push(Event {
            mask: m.mask,
            tid: m.pid,
            fd,
        });
    }
    out
}

/// Answers one permission event.
pub fn respond(group: BorrowedFd<'_>, fd: BorrowedFd<'_>, allow: bool) -> io::Result<()> {
    let r = libc::fanotify_response {
        fd: fd.as_raw_fd(),
        response: if allow {
            libc::FAN_ALLOW
        } else {
            libc::FAN_DENY
        },
    };
    let size = std::mem::size_of::<libc::fanotify_response>();
    // SAFETY: writes a plain struct from our stack.
    let n = unsafe { libc::write(group.as_raw_fd(), (&raw const r).cast(), size) };
    if n != size as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this kernel gives permission events: a group of the content class and a
/// permission mark on an inode (removed with the group).
pub fn probe() -> io::Result<()> {
    let g = init()?;
    let dir = std::env::temp_dir();
    mark_path(g.as_fd_borrowed(), Target::Inode { children: false }, &dir)
}

/// `as_fd` without importing the trait at every caller.
pub trait Borrow {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_>;
}

impl Borrow for OwnedFd {
    fn as_fd_borrowed(&self) -> BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

/// Opens `path` inside `root` (a workload's root), as the workload would resolve it: a
/// directory for reading, else `O_PATH`; no magic links.
pub fn open_in(root: &OwnedFd, path: &str, dir: bool) -> nix::Result<OwnedFd> {
    let rel = path.trim_start_matches('/').trim_end_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    let mut flags = OFlag::O_CLOEXEC;
    flags |= if dir {
        OFlag::O_RDONLY | OFlag::O_DIRECTORY
    } else {
        OFlag::O_PATH
    };
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    openat2(root, rel, how)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(vers: u8, len: u32, mask: u64, fd: i32, pid: i32) -> Vec<u8> {
        let m = libc::fanotify_event_metadata {
            event_len: len,
            vers,
            reserved: 0,
            metadata_len: META_LEN as u16,
            mask,
            fd,
            pid,
        };
        // SAFETY: a plain struct viewed as bytes.
        let b = unsafe { std::slice::from_raw_parts((&raw const m).cast::<u8>(), META_LEN) };
        let mut v = b.to_vec();
        v.resize(len.max(META_LEN as u32) as usize, 0);
        v
    }

    fn devnull() -> i32 {
        // SAFETY: plain open; the parser takes ownership.
        unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) }
    }

    #[test]
    fn records_are_validated_and_their_fds_owned() {
        let mut other = 0;
        let mut b = record(
            libc::FANOTIFY_METADATA_VERSION,
            META_LEN as u32,
            FAN_OPEN_PERM,
            devnull(),
            42,
        );
        // Overflow marker: no fd.
        b.extend(record(
            libc::FANOTIFY_METADATA_VERSION,
            META_LEN as u32,
            0x4000,
            -1,
            0,
        ));
        let ev = parse(&b, &mut other);
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].tid, ev[0].mask), (42, FAN_OPEN_PERM));
        assert_eq!(other, 1);
        // A wrong version, a length past the buffer or below the header: the batch ends.
        for (vers, len) in [
            (2, META_LEN as u32),
            (libc::FANOTIFY_METADATA_VERSION, 4096),
            (libc::FANOTIFY_METADATA_VERSION, 8),
        ] {
            let mut b = record(vers, META_LEN as u32, FAN_OPEN_PERM, -1, 1);
            b[..4].copy_from_slice(&len.to_ne_bytes());
            assert!(parse(&b, &mut other).is_empty());
        }
        // Truncated header.
        assert!(parse(&b[..META_LEN - 1], &mut other).is_empty());
    }
}
