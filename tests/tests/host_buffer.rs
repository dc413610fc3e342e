//! Host layer, issue 17: `evt.buffer` / `evt.buflen` on the real kernel. The data syscalls
//! carry the first bytes they moved (at most 80, read at exit) and their full count: a write
//! and a read in a container, a long write cut at 80 bytes, a write on a socket `nc`
//! connected (`fd.connected` true), and unconnected sendtos and a sendmsg from the host
//! (`fd.connected` false, `fd.name_changed` true on a new destination only; sendmsg's data is
//! its first iovec). Controls: a write of other bytes
//! raises nothing. And the kernel's send filter: sends without a destination never reach the
//! agent while every rule on sends needs `fd.name_changed=true`, and do when one does not.

use std::{
    net::UdpSocket,
    path::PathBuf,
    time::{Duration, Instant},
};

use guard_tests::harness::{Agent, Docker, agent_lock, can_run, is_root};
use serde_json::{Value, json};

const RULES: &str = r#"
- rule: Buffer magic write in container
  desc: test
  condition: evt.type in (write, sendto) and evt.buffer contains GUARD_MAGIC_BUF and container.id != host
  output: magic buffer=%evt.buffer buflen=%evt.buflen type=%evt.type connected=%fd.connected
  priority: WARNING
- rule: Buffer control in container
  desc: test
  condition: evt.type = write and evt.buffer contains OTHER_BYTES and container.id != host
  output: control buffer=%evt.buffer
  priority: WARNING
- rule: Buffer read in container
  desc: test
  condition: evt.type = read and evt.buffer startswith GUARD_READ_ and container.id != host
  output: read buffer=%evt.buffer buflen=%evt.buflen
  priority: WARNING
- rule: Buffer unconnected sendto on the host
  desc: test
  condition: evt.type in (sendto, sendmsg) and evt.buffer startswith GUARD_UDP_ and proc.pid = PID
  output: udp buffer=%evt.buffer buflen=%evt.buflen type=%evt.type connected=%fd.connected changed=%fd.name_changed sport=%fd.sport
  priority: WARNING
"#;

fn field<'a>(v: &'a Value, f: &str) -> &'a Value {
    &v["output_fields"][f]
}

/// Alerts until `done` holds for the ones collected, or the timeout.
fn alerts_until(agent: &Agent, within: Duration, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut all = Vec::new();
    while !done(&all) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        all.extend(agent.collect_until(left.min(Duration::from_millis(500)), |_| false));
    }
    all
}

/// `sendmsg` on `sock` to 127.0.0.1:`port` (none: no `msg_name`, the connected peer) with one
/// iovec per part; returns its result.
fn sendmsg(sock: &UdpSocket, port: Option<u16>, parts: &[&[u8]]) -> isize {
    use std::os::fd::AsRawFd;
    let mut iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut libc::c_void,
            iov_len: p.len(),
        })
        .collect();
    // SAFETY: all-zero is a valid sockaddr_in and msghdr.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    addr.sin_family = libc::AF_INET as libc::sa_family_t;
    addr.sin_port = port.unwrap_or(0).to_be();
    addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    if port.is_some() {
        msg.msg_name = (&mut addr as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    }
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len();
    // SAFETY: msg points at live buffers for the call's duration.
    unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, 0) }
}

fn of_rule<'a>(all: &'a [Value], rule: &str) -> Vec<&'a Value> {
    all.iter().filter(|v| v["rule"] == rule).collect()
}

#[test]
fn writes_reads_and_sends_carry_their_first_bytes_and_count() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let Some(docker) = Docker::get() else {
        return;
    };
    let _lock = agent_lock();
    let rules = PathBuf::from(format!("/tmp/guard-buffer-{}.yaml", std::process::id()));
    std::fs::write(
        &rules,
        RULES.replace("PID", &std::process::id().to_string()),
    )
    .expect("rules");
    let c = docker.run(&[], &["sleep", "300"]);
    let agent = Agent::run_rules(&rules);
    // The magic strings are put together by the shell, so no command line or exec
    // configuration passed along the way holds them.
    let run = |script: &str| {
        let (ok, out) = c.exec(&["sh", "-c", script]);
        assert!(ok, "{script}: {out}");
    };
    run("echo OTHER_BYT\"\"ES > /tmp/ctl");
    run("M=GUARD_MAG; echo ${M}IC_BUF_1 > /tmp/f");
    run("M=GUARD_MAG; printf '%s%0200d' ${M}IC_BUF_LONG 0 > /tmp/l");
    run(
        "M=GUARD_RE; printf '%s%0100d' ${M}AD_ 0 > /tmp/r; dd if=/tmp/r bs=512 count=1 of=/dev/null 2>/dev/null",
    );
    // busybox nc has no UDP: a TCP connection, sent on with write.
    run(
        "nc -l -p 9999 >/dev/null & sleep 1; M=GUARD_MAG; echo ${M}IC_BUF_TCP | nc -w 2 127.0.0.1 9999; wait",
    );
    // Unconnected sendtos from this process: twice to port 9, then to port 10.
    let sock = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    for port in [9, 9, 10] {
        let data = format!("GUARD_UDP_{port}");
        let n = sock
            .send_to(data.as_bytes(), ("127.0.0.1", port))
            .expect("sendto");
        assert_eq!(n, data.len());
    }
    // Then a sendmsg to port 11 with two iovecs: the first one's bytes, the full count.
    let sent = sendmsg(&sock, Some(11), &[b"GUARD_UDP_M", b"SG_TAIL"]);
    assert_eq!(sent, 18);
    let magic = "Buffer magic write in container";
    let all = alerts_until(&agent, Duration::from_secs(30), |a| {
        of_rule(a, magic).len() >= 5
            && !of_rule(a, "Buffer control in container").is_empty()
            && !of_rule(a, "Buffer read in container").is_empty()
            && of_rule(a, "Buffer unconnected sendto on the host").len() >= 4
    });
    let _ = std::fs::remove_file(&rules);

    let buffers = |rule: &str| -> Vec<(Value, Value)> {
        of_rule(&all, rule)
            .iter()
            .map(|v| {
                (
                    field(v, "evt.buffer").clone(),
                    field(v, "evt.buflen").clone(),
                )
            })
            .collect()
    };
    // The control's bytes never match the magic rule; their own rule shows them.
    let control = buffers("Buffer control in container");
    assert_eq!(control, [(json!("OTHER_BYTES."), Value::Null)], "{all:#?}");
    // A short write: all its bytes, the newline printed as `.`; a long one: its first 80.
    let m = buffers(magic);
    assert!(
        m.contains(&(json!("GUARD_MAGIC_BUF_1."), json!(18))),
        "{m:?}"
    );
    let long = format!("GUARD_MAGIC_BUF_LONG{}", "0".repeat(60));
    assert!(m.contains(&(json!(long), json!(220))), "{m:?}");
    // nc connected its socket, then wrote to it: the socket is connected. The shell's echo
    // wrote the same bytes into nc's pipe and the listener to /dev/null, no sockets:
    // `fd.connected` unknown.
    let mut tcp: Vec<(Value, Value, Value)> = of_rule(&all, magic)
        .into_iter()
        .filter(|v| field(v, "evt.buffer") == "GUARD_MAGIC_BUF_TCP.")
        .map(|v| {
            (
                field(v, "evt.type").clone(),
                field(v, "evt.buflen").clone(),
                field(v, "fd.connected").clone(),
            )
        })
        .collect();
    tcp.sort_by_key(|t| t.2.to_string());
    assert_eq!(
        tcp,
        [
            (json!("write"), json!(20), Value::Null),
            (json!("write"), json!(20), Value::Null),
            (json!("write"), json!(20), json!(true)),
        ],
        "{all:#?}"
    );
    // The read: the file's first 80 bytes, the count all 111 it read.
    let read = format!("GUARD_READ_{}", "0".repeat(69));
    assert_eq!(
        buffers("Buffer read in container"),
        [(json!(read), json!(111))],
        "{all:#?}"
    );
    // Unconnected sends: not connected; the name changes on the first send and on the new
    // port, not on the repeated destination.
    let sends: Vec<Value> = of_rule(&all, "Buffer unconnected sendto on the host")
        .iter()
        .map(|v| {
            let f = |k: &str| field(v, k).clone();
            json!([
                f("evt.type"),
                f("evt.buffer"),
                f("evt.buflen"),
                f("fd.connected"),
                f("fd.name_changed"),
                f("fd.sport")
            ])
        })
        .collect();
    assert_eq!(
        sends,
        [
            json!(["sendto", "GUARD_UDP_9", 11, false, true, 9]),
            json!(["sendto", "GUARD_UDP_9", 11, false, false, 9]),
            json!(["sendto", "GUARD_UDP_10", 12, false, true, 10]),
            json!(["sendmsg", "GUARD_UDP_M", 18, false, true, 11]),
        ],
        "{all:#?}"
    );
}

/// Runs an agent with `rules` (PID replaced by this process's), then the sends: on an
/// unconnected UDP socket sendto to port 9 and sendmsg to port 10 (destinations), on a socket
/// connected to a receiving one `N_BARE` sendtos and `N_BARE` sendmsgs without one. Returns the
/// alerts' buffers and the agent's `prefiltered_sends` count.
fn sends_under(rules: &str) -> (Vec<String>, u64) {
    const N_BARE: usize = 50;
    let path = PathBuf::from(format!("/tmp/guard-sends-{}.yaml", std::process::id()));
    std::fs::write(&path, rules.replace("PID", &std::process::id().to_string())).expect("rules");
    let agent = Agent::start_cmd(&[
        "run",
        "--format",
        "json",
        "--log",
        "info",
        "--no-responses",
        "--no-self-protect",
        "--rules",
        path.to_str().expect("utf8"),
    ]);
    let free = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    free.send_to(b"GUARD_SEND_DEST_TO", ("127.0.0.1", 9))
        .expect("sendto");
    assert_eq!(sendmsg(&free, Some(10), &[b"GUARD_SEND_DEST_MSG"]), 19);
    // A peer that receives: a connected socket to a closed port gets ECONNREFUSED back.
    let peer = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    let bound = UdpSocket::bind("127.0.0.1:0").expect("udp socket");
    bound
        .connect(peer.local_addr().expect("peer address"))
        .expect("connect");
    for _ in 0..N_BARE {
        // std's send on a connected socket is send(2): sendto without an address.
        bound.send(b"GUARD_SEND_BARE_TO").expect("send");
        assert_eq!(sendmsg(&bound, None, &[b"GUARD_SEND_BARE_MSG"]), 19);
    }
    let all = alerts_until(&agent, Duration::from_secs(5), |a| {
        a.len() >= 2 + 2 * N_BARE
    });
    let (_, stderr) = agent.stop_with_stderr();
    let _ = std::fs::remove_file(&path);
    let stop = stderr
        .iter()
        .rev()
        .find(|l| l.contains("guard stopping"))
        .unwrap_or_else(|| panic!("no `guard stopping` line: {stderr:?}"));
    let skipped = stop
        .split_whitespace()
        .find_map(|w| w.strip_prefix("prefiltered_sends="))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("prefiltered_sends missing in {stop:?}"));
    let mut buffers: Vec<String> = all
        .iter()
        .filter_map(|v| field(v, "evt.buffer").as_str().map(str::to_owned))
        .collect();
    buffers.sort();
    (buffers, skipped)
}

#[test]
fn sends_without_a_destination_are_dropped_in_the_kernel_only_when_no_rule_can_match_them() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    // Falco's `outbound` shape: every rule on sends needs the name to change.
    let (buffers, skipped) = sends_under(
        "- rule: Send to a new destination\n  desc: test\n  condition: evt.type in (sendto, sendmsg) and fd.name_changed=true and evt.buffer startswith GUARD_SEND_ and proc.pid = PID\n  output: send buffer=%evt.buffer\n  priority: WARNING\n",
    );
    assert_eq!(
        buffers,
        ["GUARD_SEND_DEST_MSG", "GUARD_SEND_DEST_TO"],
        "only the sends with a destination alert"
    );
    assert!(
        skipped >= 100,
        "the kernel skipped {skipped} sends, not our 100 without a destination"
    );
    // A rule that can match a send without a destination: every send reaches the agent.
    let (buffers, _) = sends_under(
        "- rule: Any send\n  desc: test\n  condition: evt.type in (sendto, sendmsg) and evt.buffer startswith GUARD_SEND_ and proc.pid = PID\n  output: send buffer=%evt.buffer\n  priority: WARNING\n",
    );
    let count = |b: &str| buffers.iter().filter(|x| *x == b).count();
    assert_eq!(
        (
            count("GUARD_SEND_DEST_TO"),
            count("GUARD_SEND_DEST_MSG"),
            count("GUARD_SEND_BARE_TO"),
            count("GUARD_SEND_BARE_MSG")
        ),
        (1, 1, 50, 50),
        "{buffers:?}"
    );
}
