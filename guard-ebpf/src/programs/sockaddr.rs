//! Network policy on every kernel, BPF LSM or not: cgroup sock_addr programs attached once at
//! the cgroup v2 root (`BPF_F_ALLOW_MULTI` semantics through bpf_link, pinned so they outlive
//! the agent). They run in the protocol code, before any packet exists:
//! - `connect4`/`connect6` for TCP and UDP `connect`, and for TCP Fast Open
//!   (`sendto(MSG_FASTOPEN)` connects through the same `pre_connect` step);
//! - `sendmsg4`/`sendmsg6` for a UDP datagram with a destination on an unconnected socket.
//!
//! A return of 0 makes the syscall fail with EPERM. The decision uses the calling task's cgroup
//! policy (`POLICY_CGROUPS`) and the connect rules (`POLICY_NETS`). The destination is matched
//! as the kernel will reach it: an IPv4-mapped IPv6 address as IPv4, and an unspecified one
//! (`0.0.0.0`, `::`), which the kernel sends to this host, as the address it reaches.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, bpf_sock, bpf_sock_addr},
    macros::{cgroup_sock_addr, map},
    maps::lpm_trie::{Key as LpmKey, LpmTrie},
    programs::SockAddrContext,
};
use guard_ebpf::{
    DecisionBody, MAX_NET_ENTRIES, NET_KEY_FIXED_BITS, NetKeyData, decision_op, hook, net_bits,
    policy_flags as pf, reason, verdict,
};

use super::shared::{EPERM, cgroup_policy, report};

/// Connect rules (see `NetKeyData`), shared by the connect and sendmsg programs.
#[map]
static POLICY_NETS: LpmTrie<NetKeyData, u32> =
    LpmTrie::with_max_entries(MAX_NET_ENTRIES, BPF_F_NO_PREALLOC);

const ALLOW: i32 = 1;
const REJECT: i32 = 0;
/// 127.0.0.1, in the byte order of `NetKeyData::addr`.
const LOOPBACK4: [u8; 4] = [127, 0, 0, 1];

/// A destination as the kernel will reach it (family 4 or 6, network-order bytes).
struct Dest {
    family: u8,
    addr: [u8; 16],
    port: u16,
}

/// One `u32` field of the context: volatile so LLVM never merges two 4-byte context loads into
/// one 8-byte load, which the verifier refuses.
#[inline(always)]
fn ctx_u32(p: *const u32) -> u32 {
    // SAFETY: `p` points into the program's context (or its socket), at a field the verifier
    // allows this attach type to read with a 4-byte load.
    unsafe { core::ptr::read_volatile(p) }
}

#[inline(always)]
fn sock(ctx: &SockAddrContext) -> *const bpf_sock {
    // SAFETY: `sk` is always set in a sock_addr context (a non-null socket pointer).
    unsafe { core::ptr::read_volatile(&(*ctx.sock_addr).__bindgen_anon_1.sk) as *const bpf_sock }
}

#[inline(always)]
fn port_of(sa: *const bpf_sock_addr) -> u16 {
    // SAFETY: `user_port` is readable for every sock_addr attach type.
    let raw = ctx_u32(unsafe { &(*sa).user_port });
    // Network order in the low 16 bits as stored in memory.
    u16::from_be(raw as u16)
}

/// An IPv4 destination; `src` is the source the kernel would route from (the bound address,
/// or the IP_PKTINFO one for sendmsg): with an unspecified destination, the kernel sends to it,
/// or to 127.0.0.1 when there is none.
#[inline(always)]
fn dest4(ip: u32, src: u32, port: u16) -> Dest {
    let mut addr = [0u8; 16];
    let a = if ip != 0 {
        ip.to_ne_bytes()
    } else if src != 0 {
        src.to_ne_bytes()
    } else {
        LOOPBACK4
    };
    addr[..4].copy_from_slice(&a);
    Dest {
        family: 4,
        addr,
        port,
    }
}

/// An IPv6 destination: IPv4-mapped is IPv4; `::` reaches `::1` (or 127.0.0.1 for a socket
/// bound to an IPv4-mapped address, as tcp_v6_connect and udpv6_sendmsg do).
#[inline(always)]
fn dest6(w: [u32; 4], src: [u32; 4], port: u16) -> Dest {
    let mut a = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        a[4 * i..4 * i + 4].copy_from_slice(&w[i].to_ne_bytes());
        i += 1;
    }
    let mapped = |b: &[u8; 16]| b[..10].iter().all(|&x| x == 0) && b[10] == 0xff && b[11] == 0xff;
    if a.iter().all(|&b| b == 0) {
        let mut s = [0u8; 16];
        let mut i = 0;
        while i < 4 {
            s[4 * i..4 * i + 4].copy_from_slice(&src[i].to_ne_bytes());
            i += 1;
        }
        if mapped(&s) {
            return dest4(0, 0, port);
        }
        a[15] = 1;
    } else if mapped(&a) {
        let v4 = u32::from_ne_bytes([a[12], a[13], a[14], a[15]]);
        // ::ffff:0.0.0.0 goes down the IPv4 path with an unspecified destination.
        return dest4(v4, 0, port);
    }
    Dest {
        family: 6,
        addr: a,
        port,
    }
}

/// The policy decision for the current task's cgroup: ALLOW or REJECT (EPERM).
#[inline(always)]
fn decide(d: &Dest, op: u8, hook_id: u8) -> i32 {
    let Some(pol) = cgroup_policy() else {
        return ALLOW;
    };
    if pol.flags & (pf::CONNECT_DENY | pf::CONNECT_ALLOW) == 0 {
        return ALLOW;
    }
    let mut key = LpmKey::new(
        NET_KEY_FIXED_BITS + 128,
        NetKeyData {
            policy_id: pol.policy_id,
            port: d.port,
            family: d.family,
            _pad: 0,
            addr: d.addr,
        },
    );
    let mut bits = POLICY_NETS.get(&key).copied().unwrap_or(0);
    key.data.port = 0;
    bits |= POLICY_NETS.get(&key).copied().unwrap_or(0);
    let why = if bits & net_bits::DENY != 0 {
        reason::DENY_LIST
    } else if pol.flags & pf::CONNECT_ALLOW != 0 && bits & net_bits::ALLOW == 0 {
        reason::NOT_ALLOWED
    } else {
        return ALLOW;
    };
    let mut body = DecisionBody {
        policy_id: pol.policy_id,
        op,
        hook: hook_id,
        reason: why,
        family: d.family,
        port: d.port,
        addr: d.addr,
        ..DecisionBody::default()
    };
    if pol.flags & pf::ENFORCE != 0 {
        body.verdict = verdict::DENY;
        report(&body, core::ptr::null(), -(EPERM as i64));
        REJECT
    } else {
        body.verdict = verdict::WOULD_DENY;
        report(&body, core::ptr::null(), 0);
        ALLOW
    }
}

#[inline(always)]
fn v4(ctx: &SockAddrContext, src: u32, op: u8, hook_id: u8) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: `user_ip4` is readable for the IPv4 attach types.
    let ip = ctx_u32(unsafe { &(*sa).user_ip4 });
    decide(&dest4(ip, src, port_of(sa)), op, hook_id)
}

#[inline(always)]
fn user_ip6(sa: *const bpf_sock_addr) -> [u32; 4] {
    // SAFETY: `user_ip6` is readable (4-byte loads) for the IPv6 attach types.
    unsafe {
        [
            ctx_u32(&(*sa).user_ip6[0]),
            ctx_u32(&(*sa).user_ip6[1]),
            ctx_u32(&(*sa).user_ip6[2]),
            ctx_u32(&(*sa).user_ip6[3]),
        ]
    }
}

#[inline(always)]
fn sock_src6(sk: *const bpf_sock) -> [u32; 4] {
    // SAFETY: `src_ip6` of the context's socket, 4-byte loads.
    unsafe {
        [
            ctx_u32(&(*sk).src_ip6[0]),
            ctx_u32(&(*sk).src_ip6[1]),
            ctx_u32(&(*sk).src_ip6[2]),
            ctx_u32(&(*sk).src_ip6[3]),
        ]
    }
}

#[cgroup_sock_addr(connect4)]
pub fn policy_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: `src_ip4` of the context's socket: its bound address, 0 when unbound.
    let src = ctx_u32(unsafe { &(*sock(&ctx)).src_ip4 });
    v4(&ctx, src, decision_op::CONNECT, hook::CGROUP_CONNECT4)
}

#[cgroup_sock_addr(connect6)]
pub fn policy_connect6(ctx: SockAddrContext) -> i32 {
    let d = dest6(
        user_ip6(ctx.sock_addr),
        sock_src6(sock(&ctx)),
        port_of(ctx.sock_addr),
    );
    decide(&d, decision_op::CONNECT, hook::CGROUP_CONNECT6)
}

#[cgroup_sock_addr(sendmsg4)]
pub fn policy_sendmsg4(ctx: SockAddrContext) -> i32 {
    // SAFETY: `msg_src_ip4` is readable for sendmsg4: the IP_PKTINFO source, else the bound one.
    let src = ctx_u32(unsafe { &(*ctx.sock_addr).msg_src_ip4 });
    v4(&ctx, src, decision_op::SENDMSG, hook::CGROUP_SENDMSG4)
}

#[cgroup_sock_addr(sendmsg6)]
pub fn policy_sendmsg6(ctx: SockAddrContext) -> i32 {
    let d = dest6(
        user_ip6(ctx.sock_addr),
        sock_src6(sock(&ctx)),
        port_of(ctx.sock_addr),
    );
    decide(&d, decision_op::SENDMSG, hook::CGROUP_SENDMSG6)
}
