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
/// A file's data changed: a write through any descriptor, a truncate by any name.
const FAN_MODIFY: u64 = libc::FAN_MODIFY;
const FAN_Q_OVERFLOW: u64 = libc::FAN_Q_OVERFLOW;
/// Largest file handle the kernel encodes (`MAX_HANDLE_SZ`).
const MAX_HANDLE: usize = 128;
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
    init_group(libc::FAN_CLASS_CONTENT | libc::FAN_UNLIMITED_MARKS)
}

/// `fanotify_init` with `flags` added to what every group of ours has: close-on-exec,
/// non-blocking reads, the thread (not the process) of each event, an unlimited queue, and
/// read-only event descriptors.
fn init_group(flags: libc::c_uint) -> io::Result<OwnedFd> {
    let flags =
        flags | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_UNLIMITED_QUEUE | FAN_REPORT_TID;
    let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as u32;
    // SAFETY: plain syscall; the fd is owned on success.
    let fd = unsafe { libc::fanotify_init(flags, event_flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd this function owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The group told of changes to watched files ([`Target::Changes`]). Only a group that reports
/// file identities (`FAN_REPORT_FID`) hears of truncate(2), which changes a file through a
/// name, with no open file to hand over (measured on 6.18: a descriptor-reporting group gets
/// writes only). Notifications: nothing waits on them. The queue is unlimited as the
/// permission groups' are; repeated changes of one file by one thread merge in the queue.
/// Its marks are bounded by the rule group's (`marks::RULE_MARKS_MAX`), not by the user's
/// fanotify mark limit.
pub fn init_changes() -> io::Result<OwnedFd> {
    init_group(libc::FAN_CLASS_NOTIF | libc::FAN_REPORT_FID | libc::FAN_UNLIMITED_MARKS)
}

/// What a mark covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every file of the filesystem (superblock) the path is on, through any mount.
    Filesystem,
    /// The inode itself (and, for a directory, the opens of its direct children).
    Inode { children: bool },
    /// The inode's changes (`FAN_MODIFY`), in the [`init_changes`] group.
    Changes,
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
        Target::Changes => (0, FAN_MODIFY),
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

/// Reads what a group queued into `buf`: the bytes read, none when nothing was queued.
fn read_queue<'b>(group: BorrowedFd<'_>, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
    // SAFETY: reads into our buffer, bounded by its length.
    let n = unsafe { libc::read(group.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(&[]),
            _ => Err(e),
        };
    }
    Ok(&buf[..n as usize])
}

/// Reads what is queued into `buf` and returns the events; `Ok(empty)` when none. Events that
/// are not permission events (the queue overflow marker) are counted in `other`.
pub fn read_events(
    group: BorrowedFd<'_>,
    buf: &mut [u8],
    other: &mut u64,
) -> io::Result<Vec<Event>> {
    Ok(parse(read_queue(group, buf)?, other))
}

const META_LEN: usize = std::mem::size_of::<libc::fanotify_event_metadata>();

/// The next record of a read: its header and its info records, advancing `b` past it; `None`
/// at the end or at a header whose version or lengths do not fit what is left (the batch
/// ends there).
fn next_record<'a>(b: &mut &'a [u8]) -> Option<(libc::fanotify_event_metadata, &'a [u8])> {
    if b.len() < META_LEN {
        return None;
    }
    // SAFETY: at least META_LEN bytes; read_unaligned copes with any alignment.
    let m: libc::fanotify_event_metadata = unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) };
    let (len, meta) = (m.event_len as usize, m.metadata_len as usize);
    if m.vers != libc::FANOTIFY_METADATA_VERSION
        || len < META_LEN
        || len > b.len()
        || !(META_LEN..=len).contains(&meta)
    {
        return None;
    }
    let (rec, rest) = b.split_at(len);
    *b = rest;
    Some((m, &rec[meta..]))
}

/// Parses a read's bytes. Each record's descriptor is owned from here on, so a record we
/// cannot use still has its fd closed (and its permission event gets no answer from us: the
/// caller denies by fd only for well-formed records; see `Listener`).
fn parse(mut b: &[u8], other: &mut u64) -> Vec<Event> {
    let mut out = Vec::new();
    while let Some((m, _)) = next_record(&mut b) {
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

/// A file's identity as fanotify reports it: its filesystem id and its file handle (the
/// kind that identifies, `AT_HANDLE_FID`, which every filesystem can encode).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Fid {
    fsid: [u8; 8],
    kind: i32,
    handle: Vec<u8>,
}

#[repr(C)]
struct HandleBuf {
    bytes: u32,
    kind: i32,
    handle: [u8; MAX_HANDLE],
}

/// The identity fanotify will report for the file open as `fd` (an `O_PATH` descriptor does).
/// Before Linux 6.5 (no `AT_HANDLE_FID`) the file's exportable handle, which is the same where
/// the filesystem can export handles at all (fanotify reports nothing else there either).
pub fn fid_of(fd: BorrowedFd<'_>) -> io::Result<Fid> {
    let mut h = HandleBuf {
        bytes: MAX_HANDLE as u32,
        kind: 0,
        handle: [0; MAX_HANDLE],
    };
    let mut mount_id: libc::c_int = 0;
    let mut handle = |flags| {
        h.bytes = MAX_HANDLE as u32;
        // SAFETY: the buffer has the `file_handle` layout with MAX_HANDLE bytes of handle
        // room, which `bytes` says; an empty path names the descriptor itself.
        let r = unsafe {
            libc::name_to_handle_at(
                fd.as_raw_fd(),
                c"".as_ptr(),
                (&raw mut h).cast(),
                &mut mount_id,
                flags,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    };
    handle(libc::AT_EMPTY_PATH | libc::AT_HANDLE_FID).or_else(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            handle(libc::AT_EMPTY_PATH)
        } else {
            Err(e)
        }
    })?;
    // SAFETY: fstatfs into a zeroed struct on our stack.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fsid_t` is two ints, the bytes fanotify reports.
    let fsid: [u8; 8] = unsafe { std::mem::transmute(st.f_fsid) };
    let n = (h.bytes as usize).min(MAX_HANDLE);
    Ok(Fid {
        fsid,
        kind: h.kind,
        handle: h.handle[..n].to_vec(),
    })
}

/// One change reported by the [`init_changes`] group: the writer's thread and the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Change {
    pub tid: i32,
    pub fid: Fid,
}

/// Reads what the changes group queued into `buf`; `Ok(empty)` when none. Queue overflows
/// and records without a file identity are counted in `other`.
pub fn read_changes(
    group: BorrowedFd<'_>,
    buf: &mut [u8],
    other: &mut u64,
) -> io::Result<Vec<Change>> {
    Ok(parse_changes(read_queue(group, buf)?, other))
}

/// Parses a read of the changes group: each record's header, then its info records, every
/// length checked against what is left (a record we cannot read ends the batch).
fn parse_changes(mut b: &[u8], other: &mut u64) -> Vec<Change> {
    let mut out = Vec::new();
    while let Some((m, info)) = next_record(&mut b) {
        if m.fd >= 0 {
            // Not expected of this group; ours to close.
            // SAFETY: the kernel installed this fd for us.
            drop(unsafe { OwnedFd::from_raw_fd(m.fd) });
        }
        let fid = (m.mask & FAN_Q_OVERFLOW == 0 && m.mask & FAN_MODIFY != 0)
            .then(|| first_fid(info))
            .flatten();
        match fid {
            Some(fid) => out.push(Change { tid: m.pid, fid }),
            None => *other += 1,
        }
    }
    out
}

/// The first file-identity info record (`FAN_EVENT_INFO_TYPE_FID`) of an event's info bytes.
fn first_fid(mut info: &[u8]) -> Option<Fid> {
    // Header (type, pad, length), fsid, then `file_handle` (bytes, type, handle).
    const HDR: usize = 4;
    const FIXED: usize = HDR + 8 + 8;
    while info.len() >= HDR {
        let kind = info[0];
        let len = u16::from_ne_bytes([info[2], info[3]]) as usize;
        if len < HDR || len > info.len() {
            return None;
        }
        let (rec, rest) = info.split_at(len);
        info = rest;
        if kind != libc::FAN_EVENT_INFO_TYPE_FID || len < FIXED {
            continue;
        }
        let word = |at: usize| [rec[at], rec[at + 1], rec[at + 2], rec[at + 3]];
        let bytes = u32::from_ne_bytes(word(12)) as usize;
        if bytes > MAX_HANDLE || FIXED + bytes > len {
            return None;
        }
        let mut fsid = [0u8; 8];
        fsid.copy_from_slice(&rec[HDR..HDR + 8]);
        return Some(Fid {
            fsid,
            kind: i32::from_ne_bytes(word(16)),
            handle: rec[FIXED..FIXED + bytes].to_vec(),
        });
    }
    None
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

    /// A change record of the FID-reporting group: the header, then one info record of type
    /// `FAN_EVENT_INFO_TYPE_FID` (header, fsid, `file_handle`), padded as given.
    fn change(mask: u64, pid: i32, info: &[u8]) -> Vec<u8> {
        let len = (META_LEN + info.len()) as u32;
        let mut v = record(libc::FANOTIFY_METADATA_VERSION, len, mask, -1, pid);
        v.truncate(META_LEN);
        v.extend_from_slice(info);
        v
    }

    fn fid_info(kind: u8, len: u16, bytes: u32, handle: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 0];
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        v.extend_from_slice(&bytes.to_ne_bytes());
        v.extend_from_slice(&248i32.to_ne_bytes());
        v.extend_from_slice(handle);
        v.resize(len as usize, 0);
        v
    }

    #[test]
    fn change_records_are_validated_and_give_the_file_identity() {
        let mut other = 0;
        let h = [9u8; 12];
        let good = fid_info(libc::FAN_EVENT_INFO_TYPE_FID, 32, 12, &h);
        // An info record of another type first is skipped.
        let mut two = fid_info(9, 8, 0, &[]);
        two.truncate(8);
        two.extend_from_slice(&good);
        let mut b = change(FAN_MODIFY, 7, &good);
        b.extend(change(FAN_MODIFY, 8, &two));
        // An overflow marker: counted, no change.
        b.extend(change(FAN_Q_OVERFLOW, 0, &[]));
        let got = parse_changes(&b, &mut other);
        let want = Fid {
            fsid: [1, 2, 3, 4, 5, 6, 7, 8],
            kind: 248,
            handle: h.to_vec(),
        };
        assert_eq!(
            got,
            [
                Change {
                    tid: 7,
                    fid: want.clone()
                },
                Change { tid: 8, fid: want }
            ]
        );
        assert_eq!(other, 1);
        // A handle longer than its record, longer than MAX_HANDLE, an info length past the
        // record or below its header: no change, counted.
        for info in [
            fid_info(libc::FAN_EVENT_INFO_TYPE_FID, 32, 13, &h),
            fid_info(libc::FAN_EVENT_INFO_TYPE_FID, 32, 4096, &h),
            fid_info(libc::FAN_EVENT_INFO_TYPE_FID, 64, 12, &h)[..32].to_vec(),
            [
                [libc::FAN_EVENT_INFO_TYPE_FID, 0].as_slice(),
                &2u16.to_ne_bytes(),
            ]
            .concat(),
        ] {
            let mut other = 0;
            assert!(parse_changes(&change(FAN_MODIFY, 7, &info), &mut other).is_empty());
            assert_eq!(other, 1);
        }
        // A header whose metadata length exceeds the record ends the batch.
        let mut bad = change(FAN_MODIFY, 7, &good);
        bad[6..8].copy_from_slice(&u16::MAX.to_ne_bytes());
        assert!(parse_changes(&bad, &mut other).is_empty());
    }

    /// The identity read from a descriptor is the one the kernel reports in a change.
    #[test]
    fn a_watched_files_change_reports_its_identity() {
        let dir = std::env::temp_dir().join(format!("guard-fid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        std::fs::write(&path, b"hello").expect("write");
        let Ok(g) = init_changes() else {
            // Without CAP_SYS_ADMIN there is no fanotify group; CI runs this as root.
            assert!(
                !nix::unistd::geteuid().is_root(),
                "root, but no changes group"
            );
            return;
        };
        let fd: OwnedFd = std::fs::File::open(&path).expect("open").into();
        let fid = fid_of(fd.as_fd_borrowed()).expect("fid");
        mark_fd(g.as_fd_borrowed(), Target::Changes, fd.as_fd_borrowed()).expect("mark");
        // A truncate by another name (through the descriptor's magic link).
        let link = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::unistd::truncate(link.as_str(), 0).expect("truncate");
        let mut buf = vec![0u8; 4096];
        let mut other = 0;
        let got = read_changes(g.as_fd_borrowed(), &mut buf, &mut other).expect("read");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].fid, fid);
        assert_eq!(got[0].tid as u32, nix::unistd::gettid().as_raw() as u32);
        std::fs::remove_dir_all(&dir).ok();
    }
}
