//! guard-testkit: small, exact probes for scenario tests (VM and host layers).
//!
//! Each `try-*` command performs one operation and prints one line on stdout:
//! - `ok` (for `try-exec`: `ok exit=N`, N being the child's exit status), exit code 0;
//! - `errno=N NAME` when the kernel refused the operation with errno N, exit code 1.
//!
//! Exit code 2 means a usage or setup error (bad arguments, cannot join a cgroup): the operation
//! under test was never attempted, so a scenario must not read it as a denial.
//!
//! Scenarios assert on the errno (EPERM is 1), never merely on failure.

use std::{
    ffi::{CString, OsString},
    io::Write,
    net::{SocketAddr, TcpStream},
    os::unix::ffi::OsStrExt,
    process::ExitCode,
    time::Duration,
};

const USAGE: &str = "\
usage: guard-testkit COMMAND ...
  try-exec [--cgroup DIR] PATH [ARG...]   fork, (join DIR), execve PATH exactly as given, wait
  try-open PATH MODE                      open(2); MODE is r, w or rw, plus c for O_CREAT
                                          and/or t for O_TRUNC (e.g. rt, wct)
  try-truncate PATH LEN [HOLD_MS]         truncate(2); on success, stay HOLD_MS before exiting
                                          (for a kill after the fact to find the writer)
  try-rename OLD NEW | try-link OLD NEW | try-symlink TARGET NEW
  try-unlink PATH | try-mkdir PATH | try-rmdir PATH | try-mkfifo PATH
  try-chmod PATH OCTAL                    chmod(2)
  try-setxattr PATH NAME VALUE            setxattr(2)
  try-mmap-exec PATH [mprotect]           open read-only, mmap PROT_READ|PROT_EXEC (or mmap
                                          PROT_READ, then mprotect PROT_READ|PROT_EXEC)
  try-memfd-exec SRC [ARG...]             copy SRC into a memfd, fork, execveat(fd, \"\",
                                          AT_EMPTY_PATH) with argv SRC ARG..., wait
  try-open-by-handle PATH MODE            name_to_handle_at(PATH), then open_by_handle_at
  chroot-do DIR COMMAND ...               chroot(DIR), chdir(/), then run COMMAND (one of
                                          these) in this process
  try-connect ADDR:PORT                   TCP connect ([v6]:port for IPv6), 3 s timeout
  try-connect-udp ADDR:PORT               UDP connect (sends no packet: only an LSM can refuse it)
  try-sendto ADDR:PORT DATA               UDP sendto(2) of DATA without connect (an IPv6 socket
                                          for [v6]:port, IPv4-mapped included)
  try-tfo ADDR:PORT DATA                  TCP Fast Open: sendto(2) of DATA with MSG_FASTOPEN on
                                          a fresh socket (no connect call), then 1 s for delivery
  prog-stats PREFIX -- CMD [ARG...]       with BPF run-time stats on, run CMD; then for each loaded
                                          program named PREFIX*: `ok NAME runs=N ns_per_run=X`
  recv-count tcp|udp ADDR:PORT SECS       listen; count connections (datagrams) and bytes until
                                          one sends exactly STOP (not counted) or SECS pass;
                                          prints `ok conns=N bytes=M`
  cgroup-run DIR -- CMD [ARG...]          move this process into cgroup DIR, then execvp CMD
  container-run [--newpid] [--pidfd PID] DIR -- CMD [ARG...]
                                          join cgroup DIR, (open a pidfd for PID as fd 3),
                                          unshare the mount namespace (and with --newpid the
                                          pid namespace: CMD runs as pid 1 of a new one), exec CMD
  try-kill PID SIG                        kill(2)
  try-ptrace PID attach|seize             ptrace(PTRACE_ATTACH|PTRACE_SEIZE); the tracer's exit
                                          detaches
  try-pidfd-signal FD SIG                 pidfd_send_signal(2) on an inherited pidfd
  try-pidfd-getfd FD TARGETFD             pidfd_getfd(2): needs ptrace access to the target
  try-bpf-obj-get PATH                    bpf(BPF_OBJ_GET) of a pin (read-write; prints its id)
  try-bpf-map-by-id ID                    bpf(BPF_MAP_GET_FD_BY_ID)
  bench exec|open|connect|getppid N TARGET [RATE]
                                          N operations (exec: fork+execve TARGET true+wait;
                                          open: open+close TARGET; connect: TCP connect to
                                          ADDR:PORT, refused or not; getppid: the syscall,
                                          TARGET ignored); prints `ok ns_per_op=X`;
                                          RATE (ops/s) paces the loop, checked every 100 ops
output: `ok` (exit 0) or `errno=N NAME` (exit 1); exit 2 = usage or setup error";

/// Exit codes shared with the scenario scripts.
const EXIT_OK: u8 = 0;
const EXIT_ERRNO: u8 = 1;
const EXIT_SETUP: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let Some(cmd) = args.first().and_then(|a| a.to_str()) else {
        return usage("missing command");
    };
    let rest = &args[1..];
    match cmd {
        "try-exec" => try_exec(rest),
        "try-open" => try_open(rest),
        "try-truncate" | "try-rename" | "try-link" | "try-symlink" | "try-unlink" | "try-mkdir"
        | "try-rmdir" | "try-mkfifo" | "try-chmod" | "try-setxattr" => try_path_op(cmd, rest),
        "try-mmap-exec" => try_mmap_exec(rest),
        "try-memfd-exec" => try_memfd_exec(rest),
        "try-open-by-handle" => try_open_by_handle(rest),
        "chroot-do" => chroot_do(rest),
        "try-connect" => try_connect(rest),
        "try-connect-udp" => try_connect_udp(rest),
        "try-sendto" => try_sendto(rest),
        "try-tfo" => try_tfo(rest),
        "recv-count" => recv_count(rest),
        "prog-stats" => prog_stats(rest),
        "try-finit-module" => try_finit_module(rest),
        "cgroup-run" => cgroup_run(rest),
        "container-run" => container_run(rest),
        "try-kill" => try_kill(rest),
        "try-ptrace" => try_ptrace(rest),
        "try-pidfd-signal" => try_pidfd_signal(rest),
        "try-pidfd-getfd" => try_pidfd_getfd(rest),
        "try-bpf-obj-get" => try_bpf_obj_get(rest),
        "try-bpf-map-by-id" => try_bpf_map_by_id(rest),
        "bench" => bench(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            ExitCode::from(EXIT_OK)
        }
        other => usage(&format!("unknown command {other:?}")),
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("guard-testkit: {why}\n{USAGE}");
    ExitCode::from(EXIT_SETUP)
}

fn setup_error(what: &str, errno: i32) -> ExitCode {
    eprintln!(
        "guard-testkit: setup error: {what}: errno={errno} {}",
        errno_name(errno)
    );
    println!("setup-error errno={errno}");
    ExitCode::from(EXIT_SETUP)
}

fn report_errno(errno: i32) -> ExitCode {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    // Drop std's " (os error N)" suffix: the number is already on the line.
    let text = text.split(" (os error").next().unwrap_or_default();
    println!("errno={errno} {} ({text})", errno_name(errno));
    ExitCode::from(EXIT_ERRNO)
}

fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EINTR => "EINTR",
        libc::EIO => "EIO",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ETXTBSY => "ETXTBSY",
        libc::EROFS => "EROFS",
        libc::ELOOP => "ELOOP",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ESRCH => "ESRCH",
        _ => "E?",
    }
}

fn cstring(s: &OsString) -> Option<CString> {
    CString::new(s.as_bytes()).ok()
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Where the child failed, sent to the parent through a close-on-exec pipe.
const STAGE_CGROUP: u8 = 1;
const STAGE_EXEC: u8 = 2;

fn try_exec(args: &[OsString]) -> ExitCode {
    let (cgroup, rest) = match args.first().and_then(|a| a.to_str()) {
        Some("--cgroup") => match args.get(1) {
            Some(dir) => (Some(dir.clone()), &args[2..]),
            None => return usage("--cgroup needs a directory"),
        },
        _ => (None, args),
    };
    let Some(path) = rest.first() else {
        return usage("try-exec needs a PATH");
    };
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    let Some(path_c) = cstring(path) else {
        return usage("PATH contains a NUL byte");
    };
    let Some(argv_c) = rest.iter().map(cstring).collect::<Option<Vec<_>>>() else {
        return usage("an argument contains a NUL byte");
    };
    let procs_c = match &cgroup {
        Some(dir) => {
            let mut p = dir.clone();
            p.push("/cgroup.procs");
            match cstring(&p) {
                Some(c) => Some(c),
                None => return usage("cgroup path contains a NUL byte"),
            }
        }
        None => None,
    };
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());

    let mut fds = [0i32; 2];
    // SAFETY: fds has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return setup_error("pipe2", last_errno());
    }
    let (rd, wr) = (fds[0], fds[1]);
    // SAFETY: this program is single-threaded; the child only makes async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return setup_error("fork", last_errno());
    }
    if pid == 0 {
        // Child.
        // SAFETY: raw syscalls on descriptors and buffers that live until _exit/execve.
        unsafe {
            libc::close(rd);
            let fail = |stage: u8| -> ! {
                let e = *libc::__errno_location();
                let mut msg = [0u8; 5];
                msg[0] = stage;
                msg[1..].copy_from_slice(&e.to_ne_bytes());
                libc::write(wr, msg.as_ptr().cast(), msg.len());
                libc::_exit(127)
            };
            if let Some(procs) = &procs_c {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    fail(STAGE_CGROUP);
                }
                if libc::write(fd, b"0\n".as_ptr().cast(), 2) != 2 {
                    fail(STAGE_CGROUP);
                }
                libc::close(fd);
            }
            libc::execve(
                path_c.as_ptr(),
                argv.as_ptr(),
                std::ptr::addr_of!(environ).read(),
            );
            fail(STAGE_EXEC)
        }
    }
    // SAFETY: closing our copy of the write end so read() sees EOF once the child execs.
    unsafe { libc::close(wr) };
    let mut msg = [0u8; 5];
    let mut got = 0usize;
    while got < msg.len() {
        // SAFETY: reading into the unfilled tail of msg.
        let n = unsafe { libc::read(rd, msg[got..].as_mut_ptr().cast(), msg.len() - got) };
        if n < 0 && last_errno() == libc::EINTR {
            continue;
        }
        if n <= 0 {
            break;
        }
        got += n as usize;
    }
    // SAFETY: our read end, no longer needed.
    unsafe { libc::close(rd) };
    let mut status = 0i32;
    loop {
        // SAFETY: waiting for our own child.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r >= 0 || last_errno() != libc::EINTR {
            break;
        }
    }
    if got == msg.len() {
        let errno = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
        return match msg[0] {
            STAGE_CGROUP => setup_error("joining the cgroup", errno),
            _ => report_errno(errno),
        };
    }
    if libc::WIFEXITED(status) {
        println!("ok exit={}", libc::WEXITSTATUS(status));
    } else if libc::WIFSIGNALED(status) {
        println!("ok signal={}", libc::WTERMSIG(status));
    } else {
        println!("ok status={status}");
    }
    ExitCode::from(EXIT_OK)
}

unsafe extern "C" {
    static environ: *const *const libc::c_char;
}

fn try_open(args: &[OsString]) -> ExitCode {
    let (Some(path), Some(mode)) = (args.first(), args.get(1).and_then(|m| m.to_str())) else {
        return usage("try-open needs PATH and MODE");
    };
    let Some(path_c) = cstring(path) else {
        return usage("PATH contains a NUL byte");
    };
    let Some(flags) = open_flags(mode) else {
        return usage("MODE is r, w or rw, optionally followed by c and/or t");
    };
    // SAFETY: valid C string; mode only used with O_CREAT.
    let fd = unsafe { libc::open(path_c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) };
    if fd < 0 {
        return report_errno(last_errno());
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    println!("ok");
    ExitCode::from(EXIT_OK)
}

/// open(2) flags of a `try-open` MODE: r, w or rw, then c (O_CREAT) and/or t (O_TRUNC).
fn open_flags(mode: &str) -> Option<i32> {
    let extra = mode.trim_start_matches(['r', 'w']);
    let mut flags = match &mode[..mode.len() - extra.len()] {
        "r" => libc::O_RDONLY,
        "w" => libc::O_WRONLY,
        "rw" => libc::O_RDWR,
        _ => return None,
    };
    for c in extra.chars() {
        flags |= match c {
            'c' => libc::O_CREAT,
            't' => libc::O_TRUNC,
            _ => return None,
        };
    }
    Some(flags)
}

/// The path-changing probes: each one syscall on its arguments as given.
fn try_path_op(cmd: &str, args: &[OsString]) -> ExitCode {
    let Some(a) = args.iter().map(cstring).collect::<Option<Vec<_>>>() else {
        return usage("an argument contains a NUL byte");
    };
    let need = match cmd {
        "try-unlink" | "try-mkdir" | "try-rmdir" | "try-mkfifo" => 1,
        "try-setxattr" => 3,
        _ => 2,
    };
    let hold = cmd == "try-truncate" && a.len() == 3;
    if a.len() != need && !hold {
        return usage(&format!("{cmd} takes {need} argument(s)"));
    }
    let arg = |i: usize| args[i].to_str().unwrap_or_default();
    // SAFETY: plain syscalls on valid C strings.
    let r: libc::c_long = unsafe {
        match cmd {
            "try-truncate" => {
                let Ok(len) = arg(1).parse::<i64>() else {
                    return usage("LEN is a number");
                };
                let r = libc::truncate(a[0].as_ptr(), len);
                if r == 0 && hold {
                    let Ok(ms) = arg(2).parse::<u64>() else {
                        return usage("HOLD_MS is a number");
                    };
                    std::thread::sleep(Duration::from_millis(ms));
                }
                r.into()
            }
            "try-rename" => libc::rename(a[0].as_ptr(), a[1].as_ptr()).into(),
            "try-link" => libc::link(a[0].as_ptr(), a[1].as_ptr()).into(),
            "try-symlink" => libc::symlink(a[0].as_ptr(), a[1].as_ptr()).into(),
            "try-unlink" => libc::unlink(a[0].as_ptr()).into(),
            "try-mkdir" => libc::mkdir(a[0].as_ptr(), 0o755).into(),
            "try-rmdir" => libc::rmdir(a[0].as_ptr()).into(),
            "try-mkfifo" => libc::mkfifo(a[0].as_ptr(), 0o644).into(),
            "try-chmod" => {
                let Ok(mode) = u32::from_str_radix(arg(1), 8) else {
                    return usage("MODE is octal");
                };
                libc::chmod(a[0].as_ptr(), mode).into()
            }
            "try-setxattr" => {
                let v = a[2].as_bytes();
                libc::setxattr(a[0].as_ptr(), a[1].as_ptr(), v.as_ptr().cast(), v.len(), 0).into()
            }
            _ => return usage("unknown path operation"),
        }
    };
    result(r, "")
}

/// `try-mmap-exec PATH [mprotect]`: an executable mapping of PATH, as the dynamic loader makes.
fn try_mmap_exec(args: &[OsString]) -> ExitCode {
    let Some(path) = args.first().and_then(cstring) else {
        return usage("try-mmap-exec needs PATH");
    };
    let via_mprotect = match args.get(1).and_then(|a| a.to_str()) {
        None => false,
        Some("mprotect") => true,
        Some(_) => return usage("try-mmap-exec PATH [mprotect]"),
    };
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return setup_error("open", last_errno());
    }
    let first = if via_mprotect {
        libc::PROT_READ
    } else {
        libc::PROT_READ | libc::PROT_EXEC
    };
    // SAFETY: a fresh private mapping of our descriptor; unmapped at exit.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, first, libc::MAP_PRIVATE, fd, 0) };
    if p == libc::MAP_FAILED {
        let e = last_errno();
        return if via_mprotect {
            setup_error("mmap PROT_READ", e)
        } else {
            report_errno(e)
        };
    }
    if via_mprotect {
        // SAFETY: our own mapping of one page.
        let r = unsafe { libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_EXEC) };
        return result(r.into(), "");
    }
    println!("ok");
    ExitCode::from(EXIT_OK)
}

/// `try-memfd-exec SRC [ARG...]`: a fileless copy of SRC run with execveat(AT_EMPTY_PATH).
fn try_memfd_exec(args: &[OsString]) -> ExitCode {
    let Some(src) = args.first() else {
        return usage("try-memfd-exec needs SRC");
    };
    let bytes = match std::fs::read(src) {
        Ok(b) => b,
        Err(e) => return setup_error("reading SRC", e.raw_os_error().unwrap_or(0)),
    };
    let Some(argv_c) = args.iter().map(cstring).collect::<Option<Vec<_>>>() else {
        return usage("an argument contains a NUL byte");
    };
    let mut argv: Vec<*const libc::c_char> = argv_c.iter().map(|c| c.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: valid C string; no flags (the fd must survive into the child's execveat).
    let fd = unsafe { libc::memfd_create(c"guard-testkit".as_ptr(), 0) };
    if fd < 0 {
        return setup_error("memfd_create", last_errno());
    }
    // SAFETY: a valid buffer of bytes.len() bytes.
    if unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) } != bytes.len() as isize {
        return setup_error("writing the memfd", last_errno());
    }
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let mut fds = [0i32; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return setup_error("pipe2", last_errno());
    }
    // SAFETY: single-threaded; the child makes only async-signal-safe calls.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: raw syscalls on live buffers.
        unsafe {
            libc::syscall(
                libc::SYS_execveat,
                fd,
                c"".as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
                libc::AT_EMPTY_PATH,
            );
            let e = *libc::__errno_location();
            libc::write(fds[1], (&e as *const i32).cast(), 4);
            libc::_exit(127);
        }
    }
    if pid < 0 {
        return setup_error("fork", last_errno());
    }
    // SAFETY: our descriptors.
    unsafe { libc::close(fds[1]) };
    let mut e = [0u8; 4];
    // SAFETY: reading 4 bytes into e.
    let n = unsafe { libc::read(fds[0], e.as_mut_ptr().cast(), 4) };
    let mut status = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    if n == 4 {
        return report_errno(i32::from_ne_bytes(e));
    }
    if libc::WIFSIGNALED(status) {
        println!("ok signal={}", libc::WTERMSIG(status));
    } else {
        println!("ok exit={}", libc::WEXITSTATUS(status));
    }
    ExitCode::from(EXIT_OK)
}

/// `try-open-by-handle PATH MODE`: a file handle for PATH, then an open by that handle (no
/// path at all at open time); the mount fd is PATH's directory.
fn try_open_by_handle(args: &[OsString]) -> ExitCode {
    let (Some(path), Some(mode)) = (args.first(), args.get(1).and_then(|m| m.to_str())) else {
        return usage("try-open-by-handle needs PATH and MODE");
    };
    let Some(flags) = open_flags(mode) else {
        return usage("bad MODE");
    };
    let dir = std::path::Path::new(path)
        .parent()
        .map_or_else(|| OsString::from("/"), |d| d.as_os_str().to_owned());
    let (Some(path_c), Some(dir_c)) = (cstring(path), cstring(&dir)) else {
        return usage("PATH contains a NUL byte");
    };
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, 128 bytes max.
    let mut buf = [0u64; 18];
    buf[0] = 128;
    let mut mount_id = 0i32;
    // SAFETY: buf holds the header and MAX_HANDLE_SZ bytes; valid C strings.
    let r = unsafe {
        libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            path_c.as_ptr(),
            buf.as_mut_ptr(),
            &mut mount_id,
            0,
        )
    };
    if r < 0 {
        return setup_error("name_to_handle_at", last_errno());
    }
    // SAFETY: valid C string.
    let mfd = unsafe { libc::open(dir_c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) };
    if mfd < 0 {
        return setup_error("opening the mount fd", last_errno());
    }
    // SAFETY: the handle the kernel filled.
    let fd = unsafe { libc::syscall(libc::SYS_open_by_handle_at, mfd, buf.as_mut_ptr(), flags) };
    result(fd, "")
}

/// `chroot-do DIR COMMAND ...`: the probe COMMAND, run after chroot(DIR) in this process.
fn chroot_do(args: &[OsString]) -> ExitCode {
    let Some(dir) = args.first().and_then(cstring) else {
        return usage("chroot-do needs DIR COMMAND");
    };
    let Some(cmd) = args.get(1).and_then(|c| c.to_str()) else {
        return usage("chroot-do needs a COMMAND");
    };
    // SAFETY: valid C strings.
    if unsafe { libc::chroot(dir.as_ptr()) } != 0 || unsafe { libc::chdir(c"/".as_ptr()) } != 0 {
        return setup_error("chroot", last_errno());
    }
    let rest = &args[2..];
    match cmd {
        "try-exec" => try_exec(rest),
        "try-open" => try_open(rest),
        "try-truncate" | "try-rename" | "try-link" | "try-unlink" => try_path_op(cmd, rest),
        "try-mmap-exec" => try_mmap_exec(rest),
        other => usage(&format!("chroot-do: unsupported command {other:?}")),
    }
}

/// `try-finit-module PATH PARAMS`: finit_module(2) on PATH with PARAMS, reporting the errno.
fn try_finit_module(args: &[OsString]) -> ExitCode {
    let (Some(path), Some(params)) = (args.first(), args.get(1)) else {
        return usage("try-finit-module needs PATH and PARAMS");
    };
    let (Some(path_c), Some(params_c)) = (cstring(path), cstring(params)) else {
        return usage("PATH or PARAMS contains a NUL byte");
    };
    // SAFETY: valid C string.
    let fd = unsafe { libc::open(path_c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return report_errno(last_errno());
    }
    // SAFETY: our descriptor and a valid C string.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, fd, params_c.as_ptr(), 0) };
    let err = last_errno();
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    if r < 0 {
        return report_errno(err);
    }
    println!("ok");
    ExitCode::from(EXIT_OK)
}

fn socket_addr(args: &[OsString]) -> Result<SocketAddr, ExitCode> {
    let Some(addr) = args.first().and_then(|a| a.to_str()) else {
        return Err(usage("try-connect needs ADDR:PORT"));
    };
    addr.parse()
        .map_err(|e| usage(&format!("bad address {addr:?}: {e}")))
}

fn try_connect_udp(args: &[OsString]) -> ExitCode {
    let addr = match socket_addr(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = match std::net::UdpSocket::bind(local) {
        Ok(s) => s,
        Err(e) => return setup_error("binding a UDP socket", e.raw_os_error().unwrap_or(0)),
    };
    match sock.connect(addr) {
        Ok(()) => {
            println!("ok");
            ExitCode::from(EXIT_OK)
        }
        Err(e) => match e.raw_os_error() {
            Some(n) => report_errno(n),
            None => setup_error(&format!("connect: {e}"), 0),
        },
    }
}

/// DATA, the second argument of the network probes.
fn data_arg(args: &[OsString]) -> Result<&[u8], ExitCode> {
    args.get(1)
        .map(|d| d.as_bytes())
        .ok_or_else(|| usage("missing DATA"))
}

fn try_sendto(args: &[OsString]) -> ExitCode {
    let (addr, data) = match (socket_addr(args), data_arg(args)) {
        (Ok(a), Ok(d)) => (a, d),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let sock = match std::net::UdpSocket::bind(local) {
        Ok(s) => s,
        Err(e) => return setup_error("binding a UDP socket", e.raw_os_error().unwrap_or(0)),
    };
    match sock.send_to(data, addr) {
        Ok(_) => {
            println!("ok");
            ExitCode::from(EXIT_OK)
        }
        Err(e) => match e.raw_os_error() {
            Some(n) => report_errno(n),
            None => setup_error(&format!("sendto: {e}"), 0),
        },
    }
}

/// `sockaddr_in`/`sockaddr_in6` bytes of `addr`, and their length.
fn raw_sockaddr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

fn try_tfo(args: &[OsString]) -> ExitCode {
    let (addr, data) = match (socket_addr(args), data_arg(args)) {
        (Ok(a), Ok(d)) => (a, d),
        (Err(code), _) | (_, Err(code)) => return code,
    };
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return setup_error("socket", last_errno());
    }
    let (ss, len) = raw_sockaddr(&addr);
    // SAFETY: our socket, a live buffer and a sockaddr of `len` bytes.
    let r = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_FASTOPEN,
            &ss as *const _ as *const libc::sockaddr,
            len,
        )
    };
    let err = last_errno();
    if r >= 0 {
        // Without a cookie the data goes out after the handshake: give it time to.
        std::thread::sleep(Duration::from_secs(1));
    }
    // SAFETY: our descriptor.
    unsafe { libc::close(fd) };
    if r < 0 {
        return report_errno(err);
    }
    println!("ok sent={r}");
    ExitCode::from(EXIT_OK)
}

/// (run count, run time ns) of every loaded program whose name starts with `prefix`, by id.
fn prog_runs(prefix: &str) -> std::collections::BTreeMap<(String, u32), (u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| {
            let name = p.name_as_str()?.to_owned();
            name.starts_with(prefix).then(|| {
                let runs = (p.run_count(), p.run_time().as_nanos() as u64);
                ((name, p.id()), runs)
            })
        })
        .collect()
}

fn prog_stats(args: &[OsString]) -> ExitCode {
    let (Some(prefix), Some("--")) = (
        args.first().and_then(|a| a.to_str()),
        args.get(1).and_then(|a| a.to_str()),
    ) else {
        return usage("prog-stats needs PREFIX -- CMD");
    };
    let Some(cmd) = args.get(2) else {
        return usage("prog-stats needs a command");
    };
    // Stats stay on while the returned fd is open.
    let _stats = match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
        Ok(fd) => fd,
        Err(e) => return setup_error(&format!("BPF_ENABLE_STATS: {e}"), 0),
    };
    let before = prog_runs(prefix);
    let st = std::process::Command::new(cmd).args(&args[3..]).status();
    if !st.as_ref().is_ok_and(|s| s.success()) {
        return setup_error(&format!("{cmd:?} failed: {st:?}"), 0);
    }
    for ((name, id), (runs, ns)) in prog_runs(prefix) {
        let (r0, ns0) = before.get(&(name.clone(), id)).copied().unwrap_or((0, 0));
        let n = runs.saturating_sub(r0);
        let per = ns.saturating_sub(ns0).checked_div(n).unwrap_or(0);
        println!("ok {name} runs={n} ns_per_run={per}");
    }
    ExitCode::from(EXIT_OK)
}

fn recv_count(args: &[OsString]) -> ExitCode {
    use std::io::Read;
    let (Some(proto), Ok(addr), Some(secs)) = (
        args.first().and_then(|a| a.to_str()),
        socket_addr(&args[1.min(args.len())..]),
        args.get(2)
            .and_then(|a| a.to_str())
            .and_then(|n| n.parse::<u64>().ok()),
    ) else {
        return usage("recv-count needs tcp|udp ADDR:PORT SECS");
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    let left = || deadline.saturating_duration_since(std::time::Instant::now());
    let (mut conns, mut bytes) = (0usize, 0usize);
    let mut buf = [0u8; 4096];
    match proto {
        "udp" => {
            let sock = match std::net::UdpSocket::bind(addr) {
                Ok(s) => s,
                Err(e) => return setup_error("bind", e.raw_os_error().unwrap_or(0)),
            };
            println!("listening");
            while !left().is_zero() {
                let _ = sock.set_read_timeout(Some(left().max(Duration::from_millis(1))));
                match sock.recv(&mut buf) {
                    Ok(n) if &buf[..n] == b"STOP" => break,
                    Ok(n) => (conns, bytes) = (conns + 1, bytes + n),
                    Err(_) => {}
                }
            }
        }
        "tcp" => {
            let l = match std::net::TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => return setup_error("bind", e.raw_os_error().unwrap_or(0)),
            };
            let _ = l.set_nonblocking(true);
            println!("listening");
            'accept: while !left().is_zero() {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
                let mut got = Vec::new();
                while let Ok(n) = c.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                if got == b"STOP" {
                    break 'accept;
                }
                (conns, bytes) = (conns + 1, bytes + got.len());
            }
        }
        _ => return usage("recv-count: tcp or udp"),
    }
    println!("ok conns={conns} bytes={bytes}");
    ExitCode::from(EXIT_OK)
}

fn try_connect(args: &[OsString]) -> ExitCode {
    let addr = match socket_addr(args) {
        Ok(a) => a,
        Err(code) => return code,
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(_) => {
            println!("ok");
            ExitCode::from(EXIT_OK)
        }
        Err(e) => match e.raw_os_error() {
            Some(n) => report_errno(n),
            // std reports a timeout without an errno.
            None if e.kind() == std::io::ErrorKind::TimedOut => report_errno(libc::ETIMEDOUT),
            None => setup_error(&format!("connect: {e}"), 0),
        },
    }
}

fn bench(args: &[OsString]) -> ExitCode {
    let (Some(op), Some(n), Some(target)) = (
        args.first().and_then(|a| a.to_str()),
        args.get(1)
            .and_then(|a| a.to_str())
            .and_then(|n| n.parse::<u32>().ok()),
        args.get(2),
    ) else {
        return usage("bench needs OP N TARGET");
    };
    let Some(target_c) = cstring(target) else {
        return usage("TARGET contains a NUL byte");
    };
    let rate = match args
        .get(3)
        .map(|r| r.to_str().and_then(|r| r.parse::<u64>().ok()))
    {
        None => 0,
        Some(Some(r)) => r,
        Some(None) => return usage("bench RATE is a number of operations per second"),
    };
    let start = std::time::Instant::now();
    for i in 0..n {
        if rate > 0 && i % 100 == 0 {
            // Sleep until operation i is due, so the rate holds over the whole run.
            let due = Duration::from_nanos(u64::from(i) * 1_000_000_000 / rate);
            if let Some(ahead) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        match op {
            "exec" => {
                let arg1 = c"true";
                let argv = [target_c.as_ptr(), arg1.as_ptr(), std::ptr::null()];
                let envp: [*const libc::c_char; 1] = [std::ptr::null()];
                // SAFETY: fork in a single-threaded process; the child only calls execve/_exit.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: NUL-terminated arrays of valid C strings.
                    unsafe {
                        libc::execve(target_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
                        libc::_exit(127);
                    }
                }
                if pid < 0 {
                    return setup_error("fork", last_errno());
                }
                let mut st = 0;
                // SAFETY: waiting for our child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
            }
            "open" => {
                // SAFETY: valid C string.
                let fd = unsafe { libc::open(target_c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
                if fd < 0 {
                    return report_errno(last_errno());
                }
                // SAFETY: our descriptor.
                unsafe { libc::close(fd) };
            }
            "connect" => {
                let Some(addr) = target.to_str().and_then(|a| a.parse::<SocketAddr>().ok()) else {
                    return usage("connect TARGET is ADDR:PORT");
                };
                let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(3));
            }
            "getppid" => {
                // A syscall no rule traces: what every syscall pays for guard being attached.
                // SAFETY: no arguments, cannot fail.
                unsafe { libc::syscall(libc::SYS_getppid) };
            }
            _ => return usage("bench OP is exec, open, connect or getppid"),
        }
    }
    let ns = start.elapsed().as_nanos() / u128::from(n.max(1));
    println!("ok ns_per_op={ns}");
    ExitCode::from(EXIT_OK)
}

fn cgroup_run(args: &[OsString]) -> ExitCode {
    let Some(dir) = args.first() else {
        return usage("cgroup-run needs DIR -- CMD");
    };
    let cmd = match args.get(1).and_then(|a| a.to_str()) {
        Some("--") => &args[2..],
        _ => &args[1..],
    };
    if cmd.is_empty() {
        return usage("cgroup-run needs a command after --");
    }
    let procs = std::path::Path::new(dir).join("cgroup.procs");
    let joined = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut f| f.write_all(b"0\n"));
    if let Err(e) = joined {
        return setup_error(
            &format!("joining {}", procs.display()),
            e.raw_os_error().unwrap_or(0),
        );
    }
    // exec only returns on failure.
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(&cmd[0]).args(&cmd[1..]),
    );
    match err.raw_os_error() {
        Some(n) => report_errno(n),
        None => setup_error(&format!("exec: {err}"), 0),
    }
}

fn num<T: std::str::FromStr>(a: Option<&OsString>) -> Option<T> {
    a.and_then(|a| a.to_str()).and_then(|a| a.parse().ok())
}

/// Prints `ok` (with `extra`) for a non-negative result, else the errno.
fn result(r: libc::c_long, extra: &str) -> ExitCode {
    if r < 0 {
        report_errno(last_errno())
    } else {
        println!("ok{extra}");
        ExitCode::from(EXIT_OK)
    }
}

fn try_kill(args: &[OsString]) -> ExitCode {
    let (Some(pid), Some(sig)) = (num::<i32>(args.first()), num::<i32>(args.get(1))) else {
        return usage("try-kill needs PID SIG");
    };
    // SAFETY: plain syscall.
    result(unsafe { libc::kill(pid, sig) }.into(), "")
}

fn try_ptrace(args: &[OsString]) -> ExitCode {
    let (Some(pid), Some(how)) = (
        num::<i32>(args.first()),
        args.get(1).and_then(|a| a.to_str()),
    ) else {
        return usage("try-ptrace needs PID attach|seize");
    };
    let req = match how {
        "attach" => libc::PTRACE_ATTACH,
        "seize" => libc::PTRACE_SEIZE,
        _ => return usage("try-ptrace: attach or seize"),
    };
    // SAFETY: plain syscall; on success this process exits, which detaches the tracee.
    let r = unsafe { libc::ptrace(req, pid, 0usize, 0usize) };
    result(r, "")
}

fn try_pidfd_signal(args: &[OsString]) -> ExitCode {
    let (Some(fd), Some(sig)) = (num::<i32>(args.first()), num::<i32>(args.get(1))) else {
        return usage("try-pidfd-signal needs FD SIG");
    };
    // SAFETY: plain syscall; a null siginfo is allowed.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd, sig, 0usize, 0u32) };
    result(r, "")
}

fn try_pidfd_getfd(args: &[OsString]) -> ExitCode {
    let (Some(fd), Some(target)) = (num::<i32>(args.first()), num::<i32>(args.get(1))) else {
        return usage("try-pidfd-getfd needs FD TARGETFD");
    };
    // SAFETY: plain syscall; the new descriptor is closed at exit.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_getfd, fd, target, 0u32) };
    result(r, "")
}

fn bpf(cmd: libc::c_long, attr: &mut [u64; 3]) -> libc::c_long {
    // SAFETY: attr outlives the call; the kernel reads at most 24 bytes of it.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            size_of_val(attr) as u32,
        )
    }
}

/// The `map_id`/`prog_id`/`link_id` line of an fd's fdinfo, as ` id=N`.
fn fd_id(fd: libc::c_long) -> String {
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap_or_default();
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k, "map_id" | "link_id" | "prog_id").then(|| format!(" {k}={}", v.trim()))
        })
        .unwrap_or_default()
}

fn try_bpf_obj_get(args: &[OsString]) -> ExitCode {
    let Some(path) = args.first().and_then(cstring) else {
        return usage("try-bpf-obj-get needs PATH");
    };
    // union bpf_attr, obj member: { u64 pathname; u32 bpf_fd; u32 file_flags; }.
    let mut attr = [path.as_ptr() as u64, 0, 0];
    let fd = bpf(7, &mut attr); // BPF_OBJ_GET
    result(fd, &if fd >= 0 { fd_id(fd) } else { String::new() })
}

fn try_bpf_map_by_id(args: &[OsString]) -> ExitCode {
    let Some(id) = num::<u32>(args.first()) else {
        return usage("try-bpf-map-by-id needs ID");
    };
    let mut attr = [u64::from(id), 0, 0];
    let fd = bpf(14, &mut attr); // BPF_MAP_GET_FD_BY_ID
    result(fd, "")
}

/// A stand-in for a container: its own cgroup and mount namespace (like every container), and
/// with `--newpid` its own pid namespace too (Docker's default); `--hostpid`-style otherwise.
fn container_run(args: &[OsString]) -> ExitCode {
    let mut newpid = false;
    let mut pidfd_of: Option<i32> = None;
    let mut i = 0;
    loop {
        match args.get(i).and_then(|a| a.to_str()) {
            Some("--newpid") => {
                newpid = true;
                i += 1;
            }
            Some("--pidfd") => {
                let Some(pid) = num::<i32>(args.get(i + 1)) else {
                    return usage("container-run: --pidfd needs a PID");
                };
                pidfd_of = Some(pid);
                i += 2;
            }
            _ => break,
        }
    }
    let Some(dir) = args.get(i) else {
        return usage("container-run needs DIR -- CMD");
    };
    let cmd = match args.get(i + 1).and_then(|a| a.to_str()) {
        Some("--") => &args[i + 2..],
        _ => &args[i + 1..],
    };
    if cmd.is_empty() {
        return usage("container-run needs a command after --");
    }
    let procs = std::path::Path::new(dir).join("cgroup.procs");
    if let Err(e) = std::fs::OpenOptions::new()
        .write(true)
        .open(&procs)
        .and_then(|mut f| f.write_all(b"0\n"))
    {
        return setup_error(
            &format!("joining {}", procs.display()),
            e.raw_os_error().unwrap_or(0),
        );
    }
    if let Some(pid) = pidfd_of {
        // SAFETY: plain syscalls; fd 3 is left open (no CLOEXEC) for CMD.
        unsafe {
            let fd = libc::syscall(libc::SYS_pidfd_open, pid, 0u32);
            if fd < 0 {
                return setup_error(&format!("pidfd_open({pid})"), last_errno());
            }
            // pidfd_open sets close-on-exec; dup2 clears it, and fcntl does when fd is 3.
            let ok = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd as i32, 3) >= 0
            };
            if !ok {
                return setup_error("pidfd as fd 3", last_errno());
            }
        }
    }
    let flags = libc::CLONE_NEWNS | if newpid { libc::CLONE_NEWPID } else { 0 };
    // SAFETY: plain syscall.
    if unsafe { libc::unshare(flags) } != 0 {
        return setup_error("unshare", last_errno());
    }
    if newpid {
        // Only children enter the new pid namespace: run CMD in one and pass its status on.
        let status = std::process::Command::new(&cmd[0]).args(&cmd[1..]).status();
        return match status {
            Ok(s) => ExitCode::from(s.code().unwrap_or(EXIT_SETUP as i32) as u8),
            Err(e) => setup_error(&format!("spawn: {e}"), e.raw_os_error().unwrap_or(0)),
        };
    }
    let err = std::os::unix::process::CommandExt::exec(
        std::process::Command::new(&cmd[0]).args(&cmd[1..]),
    );
    match err.raw_os_error() {
        Some(n) => report_errno(n),
        None => setup_error(&format!("exec: {err}"), 0),
    }
}
