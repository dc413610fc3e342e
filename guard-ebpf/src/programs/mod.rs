//! The programs, one file per family; `shared` holds what they have in common. Each program
//! assembles a record (header, body, payloads) in a per-CPU scratch area and copies it to
//! `EVENTS` (or, for enforcement records, `DECISIONS`) in one `bpf_ringbuf_output`; a failed
//! output is counted in `DROPS` per event kind, so userspace can account for every record it
//! did not get. Program and map names are the function and static names (userspace attaches
//! and pins by name: `guard_ebpf::names`), so moving one between files changes nothing.

mod capture;
mod drift;
mod fallback;
mod identity;
mod kpath;
mod lsm_map;
mod lsm_write;
mod open_detect;
mod policy;
mod quarantine;
mod selfprotect;
mod shared;
mod sockaddr;
mod syscall_fexit;
