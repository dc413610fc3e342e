//! Opening a process's root directory (`/proc/<pid>/root`) from inside the agent's Landlock
//! domain. Landlock forbids a sandboxed process to ptrace-access processes outside its domain,
//! and `/proc/<pid>/root` needs exactly that access; so before the agent sandboxes itself it
//! starts a small opener process (`guard root-opener`, same binary) that keeps only
//! `CAP_SYS_PTRACE` and `CAP_DAC_READ_SEARCH` and does one thing: for a pid it is sent, it
//! opens `/proc/<pid>/root` with `O_PATH` and passes the descriptor back. Everything after that
//! (`openat2(RESOLVE_IN_ROOT)`, `fstat`, fanotify marks) works on the descriptor, which Landlock
//! does not check. Without an opener (no Landlock, or tests) the agent opens the path itself.
//!
//! Besides the root, the opener opens exactly two files for reading, for `user.name` and
//! `group.name`: the process's own `/etc/passwd` and `/etc/group` ([`AccountFile`]), resolved
//! inside its root and only if they are regular files. A request for anything else is refused.

use std::{
    io::{IoSlice, IoSliceMut, Read, Write},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Mutex, OnceLock},
};

use anyhow::{Context, Result, bail};
use nix::{
    cmsg_space,
    fcntl::OFlag,
    sys::{
        socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg},
        stat::Mode,
    },
};

/// The hidden subcommand the agent starts the opener with.
pub const SUBCOMMAND: &str = "root-opener";

struct Opener {
    sock: UnixStream,
    /// Kept so the child is reaped with the agent; it exits when the socket closes.
    _child: Child,
}

static OPENER: OnceLock<Mutex<Opener>> = OnceLock::new();

/// What the opener is asked to open for a pid. The wire value is one byte after the pid; any
/// other value is refused with `EINVAL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// `/proc/<pid>/root`, `O_PATH`.
    Root,
    /// One of the account files inside that root, read-only.
    Account(AccountFile),
}

/// The account databases a process's names come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountFile {
    Passwd,
    Group,
}

impl AccountFile {
    /// The path inside the process's root.
    pub fn path(self) -> &'static str {
        match self {
            AccountFile::Passwd => "etc/passwd",
            AccountFile::Group => "etc/group",
        }
    }
}

impl Request {
    fn to_byte(self) -> u8 {
        match self {
            Request::Root => 0,
            Request::Account(AccountFile::Passwd) => 1,
            Request::Account(AccountFile::Group) => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Request::Root),
            1 => Some(Request::Account(AccountFile::Passwd)),
            2 => Some(Request::Account(AccountFile::Group)),
            _ => None,
        }
    }
}

/// Opens `/proc/<pid>/root` directly.
fn open_direct(pid: u32) -> nix::Result<OwnedFd> {
    nix::fcntl::open(
        Path::new(&format!("/proc/{pid}/root")),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Opens `file` inside `pid`'s root, read-only: resolved with `RESOLVE_IN_ROOT` (a symlink
/// cannot leave the container's root), first as `O_PATH` so that a FIFO or device is never
/// opened; only a regular file is then reopened for reading, through its own descriptor.
fn open_account_direct(pid: u32, file: AccountFile) -> nix::Result<OwnedFd> {
    use nix::fcntl::{OpenHow, ResolveFlag, openat2};
    let root = open_direct(pid)?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let path_fd = openat2(&root, file.path(), how)?;
    let st = nix::sys::stat::fstat(&path_fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(nix::errno::Errno::EINVAL);
    }
    nix::fcntl::open(
        Path::new(&format!("/proc/self/fd/{}", path_fd.as_raw_fd())),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
}

fn open_request(pid: u32, req: Request) -> nix::Result<OwnedFd> {
    match req {
        Request::Root => open_direct(pid),
        Request::Account(f) => open_account_direct(pid, f),
    }
}

/// Starts the opener (call before the agent applies Landlock). Idempotent.
pub fn spawn() -> Result<()> {
    if OPENER.get().is_some() {
        return Ok(());
    }
    let (ours, theirs) = UnixStream::pair().context("socketpair for the root opener")?;
    let exe = std::fs::read_link("/proc/self/exe").context("reading /proc/self/exe")?;
    let child = Command::new(exe)
        .arg(SUBCOMMAND)
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .spawn()
        .context("starting the root opener")?;
    let _ = OPENER.set(Mutex::new(Opener {
        sock: ours,
        _child: child,
    }));
    // Round trip once, so a broken opener is reported at start, not at the first container.
    open_root(std::process::id()).context("the root opener does not answer")?;
    Ok(())
}

/// An `O_PATH` descriptor of `pid`'s root directory.
pub fn open_root(pid: u32) -> Result<OwnedFd> {
    ask(pid, Request::Root).with_context(|| format!("opening /proc/{pid}/root"))
}

/// A name a process gave through its own root link (`/proc/self/root/etc/x`, also
/// `thread-self`) as the same name from that root (`/etc/x`), for resolving it in the root
/// `open_root` gives, where no magic link is followed. Any other name unchanged.
pub fn through_own_root(name: &str) -> &str {
    ["/proc/self/root", "/proc/thread-self/root"]
        .iter()
        .find_map(|link| match name.strip_prefix(link)? {
            "" => Some("/"),
            rest if rest.starts_with('/') => Some(rest),
            _ => None,
        })
        .unwrap_or(name)
}

/// A read-only descriptor of `pid`'s own `/etc/passwd` or `/etc/group` (a regular file).
pub fn open_account_file(pid: u32, file: AccountFile) -> Result<OwnedFd> {
    ask(pid, Request::Account(file))
        .with_context(|| format!("opening /proc/{pid}/root/{}", file.path()))
}

fn ask(pid: u32, req: Request) -> Result<OwnedFd> {
    let Some(o) = OPENER.get() else {
        return Ok(open_request(pid, req)?);
    };
    let o = o
        .lock()
        .map_err(|_| anyhow::anyhow!("root opener lock poisoned"))?;
    let mut wire = [0u8; 5];
    wire[..4].copy_from_slice(&pid.to_le_bytes());
    wire[4] = req.to_byte();
    (&o.sock).write_all(&wire)?;
    let mut status = [0u8; 4];
    let mut iov = [IoSliceMut::new(&mut status)];
    let mut space = cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        o.sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("reading the root opener's answer")?;
    let mut fd = None;
    for c in msg.cmsgs().context("root opener control message")? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for f in fds {
                // SAFETY: the kernel installed this descriptor in our table for us.
                let owned = unsafe { OwnedFd::from_raw_fd(f) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    if msg.bytes != 4 {
        bail!("the root opener closed its socket");
    }
    let errno = i32::from_le_bytes(status);
    match (errno, fd) {
        (0, Some(fd)) => Ok(fd),
        (0, None) => bail!("the root opener sent no descriptor"),
        (e, _) => Err(std::io::Error::from_raw_os_error(e).into()),
    }
}

/// The opener's main loop (`guard root-opener`): stdin is the socket. Keeps only the
/// capabilities `/proc/<pid>/root` needs and exits when the agent closes the socket or dies.
pub fn serve() -> Result<()> {
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    }
    let keep: caps::CapsHashSet = [
        caps::Capability::CAP_SYS_PTRACE,
        caps::Capability::CAP_DAC_READ_SEARCH,
    ]
    .into_iter()
    .collect();
    for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
        let now = caps::read(None, set).unwrap_or_default();
        caps::set(None, set, &now.intersection(&keep).copied().collect())
            .context("dropping the root opener's capabilities")?;
    }
    // SAFETY: fd 0 is the socket the agent passed as stdin; we own it from here on.
    let sock = unsafe { UnixStream::from_raw_fd(0) };
    let mut req = [0u8; 5];
    loop {
        if (&sock).read_exact(&mut req).is_err() {
            return Ok(());
        }
        let pid = u32::from_le_bytes([req[0], req[1], req[2], req[3]]);
        let answer = match Request::from_byte(req[4]) {
            Some(r) if pid != 0 => open_request(pid, r),
            _ => Err(nix::errno::Errno::EINVAL),
        };
        let (status, fd) = match &answer {
            Ok(fd) => (0i32, Some(fd.as_raw_fd())),
            Err(e) => (*e as i32, None),
        };
        let bytes = status.to_le_bytes();
        let iov = [IoSlice::new(&bytes)];
        let fds: Vec<RawFd> = fd.into_iter().collect();
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
        if sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None).is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_through_the_callers_root_link_is_the_name_from_its_root() {
        for (given, resolved) in [
            ("/proc/self/root/etc/passwd", "/etc/passwd"),
            ("/proc/thread-self/root/etc", "/etc"),
            ("/proc/self/root", "/"),
            ("/proc/self/root/", "/"),
            // Not the caller's own root link: unchanged (resolved, or not, as any name).
            ("/proc/self/rootx/etc", "/proc/self/rootx/etc"),
            ("/proc/1/root/etc/passwd", "/proc/1/root/etc/passwd"),
            ("/proc/self/cwd/x", "/proc/self/cwd/x"),
            ("/etc/passwd", "/etc/passwd"),
        ] {
            assert_eq!(through_own_root(given), resolved, "{given}");
        }
    }

    #[test]
    fn without_an_opener_our_own_root_opens_directly() {
        let fd = open_root(std::process::id()).expect("own root");
        let md = std::fs::File::from(fd).metadata().expect("fstat");
        assert!(md.is_dir());
        assert!(open_root(u32::MAX).is_err(), "a pid that cannot exist");
    }

    #[test]
    fn request_bytes_round_trip_and_unknown_is_refused() {
        for r in [
            Request::Root,
            Request::Account(AccountFile::Passwd),
            Request::Account(AccountFile::Group),
        ] {
            assert_eq!(Request::from_byte(r.to_byte()), Some(r));
        }
        assert_eq!(Request::from_byte(3), None);
        assert_eq!(Request::from_byte(255), None);
    }

    /// Our own account files open read-only and read back what the path holds.
    #[test]
    fn account_files_open_inside_the_root() {
        let me = std::process::id();
        for f in [AccountFile::Passwd, AccountFile::Group] {
            let fd = open_account_file(me, f).expect("own account file");
            let mut got = String::new();
            std::fs::File::from(fd)
                .read_to_string(&mut got)
                .expect("read");
            let want = std::fs::read_to_string(format!("/{}", f.path())).expect("read path");
            assert_eq!(got, want);
        }
    }
}
