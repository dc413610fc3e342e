//! Network quarantine (response engine, `quarantine_network`).
//!
//! Attached to the cgroup v2 root for ingress and egress. A packet whose socket belongs to a
//! cgroup in `QUARANTINE`, or to a descendant of one (up to QUARANTINE_ANCESTOR_LEVELS deep), is
//! dropped; cgroup sock_addr programs make its connects and UDP sends fail with EPERM up front.
//! Userspace pins the map and the links under /sys/fs/bpf/guard, so a quarantine outlives the
//! agent.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id,
        },
    },
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::HashMap,
    programs::{SkBuffContext, SockAddrContext},
};

use guard_ebpf::{MAX_QUARANTINED_CGROUPS, QUARANTINE_ANCESTOR_LEVELS, QuarantineEntry};

const DROP: i32 = 0;
const PASS: i32 = 1;

#[map]
static QUARANTINE: HashMap<u64, QuarantineEntry> =
    HashMap::with_max_entries(MAX_QUARANTINED_CGROUPS, BPF_F_NO_PREALLOC);

#[inline(always)]
fn in_force(cgroup: u64, now: u64) -> bool {
    if cgroup == 0 {
        return false;
    }
    // SAFETY: the value is read-only here and copied out at once.
    match unsafe { QUARANTINE.get(&cgroup) } {
        Some(e) => e.until_boot_ns == 0 || now < e.until_boot_ns,
        None => false,
    }
}

#[inline(always)]
fn verdict(ctx: &SkBuffContext) -> i32 {
    let skb = ctx.skb.skb;
    // SAFETY: helpers allowed for cgroup_skb programs; `skb` is the program's context.
    let own = unsafe { bpf_skb_cgroup_id(skb) };
    // SAFETY: helper with no preconditions.
    let now = unsafe { bpf_ktime_get_boot_ns() };
    if in_force(own, now) {
        return DROP;
    }
    let mut level = 1;
    while level <= QUARANTINE_ANCESTOR_LEVELS {
        // SAFETY: as above; returns 0 past the socket's own depth.
        let id = unsafe { bpf_skb_ancestor_cgroup_id(skb, level as i32) };
        if id == 0 || id == own {
            break;
        }
        if in_force(id, now) {
            return DROP;
        }
        level += 1;
    }
    PASS
}

/// The current task's cgroup, or one of its ancestors, is quarantined.
#[inline(always)]
fn current_quarantined(now: u64) -> bool {
    // SAFETY: helper with no preconditions.
    let own = unsafe { bpf_get_current_cgroup_id() };
    if in_force(own, now) {
        return true;
    }
    let mut level = 1;
    while level <= QUARANTINE_ANCESTOR_LEVELS {
        // SAFETY: as above; returns 0 past the task's own depth.
        let id = unsafe { bpf_get_current_ancestor_cgroup_id(level as i32) };
        if id == 0 || id == own {
            break;
        }
        if in_force(id, now) {
            return true;
        }
        level += 1;
    }
    false
}

/// A quarantined workload's IPv4/IPv6 `connect` (TCP, UDP, TCP Fast Open) and unconnected UDP
/// `sendmsg` fail with EPERM before any packet exists, on every kernel: cgroup sock_addr
/// programs at the cgroup v2 root, next to the packet drop. Unix sockets stay usable: the
/// quarantine cuts the network, not local IPC.
#[inline(always)]
fn sock_addr_verdict() -> i32 {
    // SAFETY: helper with no preconditions.
    if current_quarantined(unsafe { bpf_ktime_get_boot_ns() }) {
        0
    } else {
        1
    }
}

#[cgroup_sock_addr(connect4)]
pub fn quarantine_connect4(_ctx: SockAddrContext) -> i32 {
    sock_addr_verdict()
}

#[cgroup_sock_addr(connect6)]
pub fn quarantine_connect6(_ctx: SockAddrContext) -> i32 {
    sock_addr_verdict()
}

#[cgroup_sock_addr(sendmsg4)]
pub fn quarantine_sendmsg4(_ctx: SockAddrContext) -> i32 {
    sock_addr_verdict()
}

#[cgroup_sock_addr(sendmsg6)]
pub fn quarantine_sendmsg6(_ctx: SockAddrContext) -> i32 {
    sock_addr_verdict()
}

#[cgroup_skb(ingress)]
pub fn quarantine_ingress(ctx: SkBuffContext) -> i32 {
    verdict(&ctx)
}

#[cgroup_skb(egress)]
pub fn quarantine_egress(ctx: SkBuffContext) -> i32 {
    verdict(&ctx)
}
