//! guard-fanwatch PATH: the cheapest way to see every open without a syscall hook, as a
//! benchmark floor (integration/bench/redis.sh, config `n`). A fanotify notification group
//! (file identities and names, no descriptor per event) marks the whole filesystem holding PATH
//! for `FAN_OPEN` and reads events as fast as it can; it prints `ready` once marked, and on
//! SIGTERM or SIGINT `ok events=N` (records read: the kernel merges an open into an identical
//! one still queued, so N can be below the opens made). Exit 2 on a setup error. Root only.

use std::{ffi::CString, os::unix::ffi::OsStrExt, process::ExitCode, sync::atomic};

static STOP: atomic::AtomicBool = atomic::AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, atomic::Ordering::Relaxed);
}

fn fail(what: &str) -> ExitCode {
    eprintln!(
        "guard-fanwatch: {what}: {}",
        std::io::Error::last_os_error()
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: guard-fanwatch PATH");
        return ExitCode::from(2);
    };
    let Ok(path) = CString::new(path.as_bytes()) else {
        eprintln!("guard-fanwatch: PATH contains a NUL byte");
        return ExitCode::from(2);
    };
    // SAFETY: plain syscalls on values we own; the handler only stores an atomic.
    unsafe {
        let fd = libc::fanotify_init(
            libc::FAN_CLASS_NOTIF | libc::FAN_REPORT_DFID_NAME | libc::FAN_REPORT_FID,
            libc::O_RDONLY as u32,
        );
        if fd < 0 {
            return fail("fanotify_init");
        }
        let flags = libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM;
        if libc::fanotify_mark(fd, flags, libc::FAN_OPEN, libc::AT_FDCWD, path.as_ptr()) < 0 {
            return fail("fanotify_mark");
        }
        // No SA_RESTART: the signal interrupts the blocking read, which then sees STOP.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_signal as *const () as usize;
        for sig in [libc::SIGTERM, libc::SIGINT] {
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) < 0 {
                return fail("sigaction");
            }
        }
        println!("ready");
        let mut buf = vec![0u8; 64 << 10];
        let mut events = 0u64;
        while !STOP.load(atomic::Ordering::Relaxed) {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                continue;
            }
            // Each record starts with its length (`event_len`, a u32).
            let mut at = 0usize;
            while at + 4 <= n as usize {
                let len = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or([0; 4]));
                if len == 0 {
                    break;
                }
                events += 1;
                at += len as usize;
            }
        }
        println!("ok events={events}");
    }
    ExitCode::SUCCESS
}
