//! Network quarantine (response engine, `quarantine_network`).
//!
//! Attached to the cgroup v2 root for ingress and egress. A packet whose socket belongs to a
//! cgroup in `QUARANTINE`, or to a descendant of one (up to QUARANTINE_ANCESTOR_LEVELS deep), is
//! dropped. Userspace pins the map and both links under /sys/fs/bpf/guard, so a quarantine
//! outlives the agent.

use aya_ebpf::{
    bindings::BPF_F_NO_PREALLOC,
    helpers::{
        bpf_get_current_cgroup_id, bpf_ktime_get_boot_ns, bpf_probe_read_kernel,
        generated::{
            bpf_get_current_ancestor_cgroup_id, bpf_skb_ancestor_cgroup_id, bpf_skb_cgroup_id,
        },
    },
    macros::{cgroup_skb, lsm, map},
    maps::HashMap,
    programs::{LsmContext, SkBuffContext},
};

use guard_ebpf::{MAX_QUARANTINED_CGROUPS, QUARANTINE_ANCESTOR_LEVELS, QuarantineEntry};

use super::shared::{AF_INET, AF_INET6, EPERM};

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

/// Where BPF LSM exists, a quarantined workload's IPv4/IPv6 `connect` fails with EPERM
/// before any packet exists, UDP included (its connect sends nothing for cgroup_skb to
/// drop). Unix sockets stay usable: the quarantine cuts the network, not local IPC.
#[lsm(hook = "socket_connect")]
pub fn quarantine_connect(ctx: LsmContext) -> i32 {
    // int socket_connect(struct socket *sock, struct sockaddr *address, int addrlen, int ret)
    // Argument 3 is the verdict of BPF LSM programs that ran before us; never weaken it.
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return prev;
    }
    // SAFETY: helper with no preconditions.
    if !current_quarantined(unsafe { bpf_ktime_get_boot_ns() }) {
        return 0;
    }
    let addr: *const u16 = ctx.arg(1);
    // SAFETY: probe_read tolerates bad pointers; sa_family is the first u16 of a sockaddr.
    let family = unsafe { bpf_probe_read_kernel(addr) }.unwrap_or(0);
    if family == AF_INET || family == AF_INET6 {
        -EPERM
    } else {
        0
    }
}

#[cgroup_skb(ingress)]
pub fn quarantine_ingress(ctx: SkBuffContext) -> i32 {
    verdict(&ctx)
}

#[cgroup_skb(egress)]
pub fn quarantine_egress(ctx: SkBuffContext) -> i32 {
    verdict(&ctx)
}
