//! Network rules on every kernel backend: the cgroup sock_addr programs (`crate::sockaddr`,
//! guard-ebpf `programs/sockaddr.rs`) are attached at the cgroup v2 root whatever the backend,
//! so each kernel backend's `covers` answers connect and sendmsg with these.

use super::{Coverage, Level::Denied};

pub const CONNECT: Coverage = Coverage::new(
    Denied,
    "EPERM before any packet (`cgroup/connect4`, `connect6`: TCP, UDP, TCP Fast Open); IPv4-mapped as IPv4, `0.0.0.0`/`::` as the local address they reach",
);

pub const SENDMSG: Coverage = Coverage::new(
    Denied,
    "EPERM before the datagram leaves (`cgroup/sendmsg4`, `sendmsg6`: UDP with a destination), same address matching",
);
