//! Syscall event types: the id each event's type is prepared with, and the intent of opens.

use super::{ArgValue, Event};

/// Syscall event names guard knows. Index = type id; [`OTHER_TYPE`] for anything else.
pub static EVENT_TYPES: &[&str] = &[
    "accept",
    "accept4",
    "bind",
    "bpf",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chroot",
    "clone",
    "clone3",
    "close",
    "connect",
    "creat",
    "delete_module",
    "dup",
    "dup2",
    "dup3",
    "execve",
    "execveat",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchownat",
    "finit_module",
    "fork",
    "init_module",
    "ioctl",
    "kill",
    "link",
    "linkat",
    "listen",
    "memfd_create",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mmap",
    "mount",
    "mprotect",
    "open",
    "open_by_handle_at",
    "openat",
    "openat2",
    "pivot_root",
    "prctl",
    "pread",
    "procexit",
    "ptrace",
    "pwrite",
    "read",
    "recvfrom",
    "recvmsg",
    "rename",
    "renameat",
    "renameat2",
    "rmdir",
    "sendmsg",
    "sendto",
    "setgid",
    "setns",
    "setpgid",
    "setregid",
    "setresgid",
    "setresuid",
    "setreuid",
    "setsid",
    "setuid",
    "socket",
    "socketpair",
    "symlink",
    "symlinkat",
    "tgkill",
    "tkill",
    "truncate",
    "umount",
    "umount2",
    "unlink",
    "unlinkat",
    "unshare",
    "userfaultfd",
    "vfork",
    "write",
];

pub const OTHER_TYPE: u16 = EVENT_TYPES.len() as u16;
pub const TYPE_COUNT: usize = EVENT_TYPES.len() + 1;

pub fn event_type_id(name: &str) -> u16 {
    EVENT_TYPES
        .binary_search(&name)
        .map_or(OTHER_TYPE, |i| i as u16)
}

const OPEN_TYPES: [&str; 5] = ["open", "openat", "openat2", "creat", "open_by_handle_at"];

/// (read, write, exec) intent of an open event, from its `flags` argument (Falco's rendering,
/// `O_RDWR|O_CREAT`, or the raw integer). Not an open: all false.
pub fn open_mode(ev: &Event) -> (bool, bool, bool) {
    if !OPEN_TYPES.contains(&ev.evt_type.as_str()) {
        return (false, false, false);
    }
    if ev.evt_type == "creat" {
        return (false, true, false);
    }
    let flags = match ev.args.get("flags") {
        Some(ArgValue::Str(f)) => f.as_str(),
        Some(ArgValue::Int(i)) => {
            let acc = i & 3;
            return (acc == 0 || acc == 2, acc == 1 || acc == 2, false);
        }
        None => "",
    };
    // One pass over the names (this runs for every open event).
    let (mut rdwr, mut wronly, mut path, mut exec) = (false, false, false, false);
    for f in flags.split('|') {
        match f.trim() {
            "O_RDWR" => rdwr = true,
            "O_WRONLY" => wronly = true,
            "O_PATH" => path = true,
            "O_EXEC" | "FMODE_EXEC" => exec = true,
            _ => {}
        }
    }
    let write = rdwr || wronly;
    let read = rdwr || !(wronly || path);
    (read, write, exec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_sorted_for_binary_search() {
        assert!(EVENT_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(EVENT_TYPES[event_type_id("execve") as usize], "execve");
        assert_eq!(event_type_id("no_such_call"), OTHER_TYPE);
    }
}
