//! Reads, writes and sends: the data (`evt.buffer`), and sendto's or sendmsg's destination with the
//! socket's state (`fd.connected`, `fd.name_changed`) as Falco keeps it.

use std::collections::BTreeMap;

use super::{Capture, args, l4, name_hash, sock_fd, socket_fd_type};
use crate::{
    events::{Common, IoEvent},
    model::{ArgValue, Buffer, Fd},
};

/// The event's data as text (`evt.buffer`, `evt.arg.data`): valid UTF-8 as is.
fn text(data: &[u8]) -> String {
    String::from_utf8_lossy(data).into_owned()
}

/// `evt.buffer` / `evt.buflen`: the bytes kept and the full count; `None` when the call
/// failed or its memory was unreadable.
pub(super) fn buffer(io: &IoEvent, ret: i64) -> Option<Buffer> {
    let data = io.data.as_deref()?;
    (ret >= 0).then(|| Buffer {
        data: text(data),
        len: ret,
    })
}

impl Capture {
    /// The event type, arguments, fd and result of a read, write or send. A send with an
    /// address names the socket by it: `fd.connected` is whether a connect on the socket
    /// succeeded, `fd.name_changed` whether this address differs from the socket's last name
    /// (both unknown for a socket guard did not see created).
    pub(super) fn io(
        &mut self,
        io: &IoEvent,
        c: &Common,
    ) -> (&'static str, BTreeMap<String, ArgValue>, Option<Fd>, i64) {
        let mut a = args(&[("fd", ArgValue::Int(io.fd.into()))]);
        if let Some(size) = io.size {
            a.insert(
                "size".into(),
                ArgValue::Int(size.min(i64::MAX as u64) as i64),
            );
        }
        if let Some(d) = &io.data {
            a.insert("data".into(), ArgValue::Str(text(d)));
        }
        if let Some(pos) = io.offset {
            a.insert("pos".into(), ArgValue::Int(pos.min(i64::MAX as u64) as i64));
        }
        let sock = self.sockets.get_mut(&(c.pid, io.fd));
        let fd = match (&io.dest, sock) {
            (Some(dest), sock) => {
                let (mut fd, name) = sock_fd(io.fd, dest, sock.as_ref().map(|s| s.sock_type));
                a.insert("addr".into(), ArgValue::Str(name.clone()));
                if let Some(s) = sock {
                    let h = name_hash(&name);
                    fd.connected = Some(s.connected);
                    fd.name_changed = Some(s.name != Some(h));
                    if c.ret >= 0 {
                        s.name = Some(h);
                    }
                }
                fd
            }
            (None, Some(s)) => Fd {
                num: io.fd.into(),
                fd_type: socket_fd_type(s.domain),
                l4proto: l4(s.domain, s.sock_type),
                connected: Some(s.connected),
                name_changed: Some(false),
                ..Fd::default()
            },
            (None, None) => Fd {
                num: io.fd.into(),
                ..Fd::default()
            },
        };
        (io.syscall, a, Some(fd), c.ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        events::{CgroupId, Event, SockAddr, SocketEvent},
        model,
        state::{State, StateConfig},
    };

    const PID: u32 = 4_100_030;

    fn common(ret: i64) -> Common {
        Common {
            time_ns: 1_767_225_600_000_000_000,
            cgroup_id: CgroupId(1),
            pid: PID,
            tid: PID,
            ppid: 1,
            uid: 0,
            gid: 0,
            loginuid: None,
            comm: "nc".into(),
            ret,
            cpu: 0,
        }
    }

    fn capture() -> Capture {
        Capture::new(State::new(StateConfig::default()).0)
    }

    fn io(syscall: &'static str, fd: i32, data: Option<&[u8]>, ret: i64) -> Event {
        Event::Io(IoEvent {
            common: common(ret),
            syscall,
            fd,
            size: Some(4096),
            data: data.map(<[u8]>::to_vec),
            offset: None,
            dest: None,
        })
    }

    fn sendto(fd: i32, ip: [u8; 4], port: u16) -> Event {
        Event::Io(IoEvent {
            common: common(5),
            syscall: "sendto",
            fd,
            size: Some(5),
            data: Some(b"hello".to_vec()),
            offset: None,
            dest: Some(SockAddr::Inet {
                addr: ip.into(),
                port,
            }),
        })
    }

    #[test]
    fn buffer_and_buflen_come_from_the_data_and_the_result() {
        let mut c = capture();
        let m = c
            .process(&io("write", 1, Some(b"GUARD\x01\n"), 300))
            .expect("model");
        assert_eq!(m.evt_type, "write");
        assert_eq!(
            m.buffer,
            Some(model::Buffer {
                data: "GUARD\u{1}\n".into(),
                len: 300
            })
        );
        assert_eq!(m.fd.as_ref().map(|f| f.num), Some(1));
        assert_eq!(
            m.args.get("data"),
            Some(&ArgValue::Str("GUARD\u{1}\n".into()))
        );
        assert_eq!(m.args.get("size"), Some(&ArgValue::Int(4096)));
        // A failed read has no buffer; a read of 0 bytes an empty one.
        let failed = c.process(&io("read", 3, None, -9)).expect("model");
        assert_eq!((failed.buffer, failed.res), (None, -9));
        let eof = c.process(&io("read", 3, Some(b""), 0)).expect("model");
        assert_eq!(
            eof.buffer,
            Some(model::Buffer {
                data: String::new(),
                len: 0
            })
        );
    }

    /// sendto on a UDP socket never connected: not connected, and the name changes on the
    /// first send and on each send to another address; after a connect, connected.
    #[test]
    fn sendto_tracks_the_socket_name_and_connection() {
        let mut c = capture();
        let _ = c.process(&Event::Socket(SocketEvent {
            common: common(3),
            domain: 2,
            sock_type: 2,
            protocol: 0,
        }));
        let state = |m: model::Event| {
            let f = m.fd.expect("fd");
            (f.sip, f.sport, f.l4proto, f.connected, f.name_changed)
        };
        let udp = Some(model::L4Proto::Udp);
        let ip = |a: [u8; 4]| Some(std::net::IpAddr::from(a));
        let first = c.process(&sendto(3, [203, 0, 113, 7], 4444)).expect("m");
        assert_eq!(
            state(first),
            (
                ip([203, 0, 113, 7]),
                Some(4444),
                udp,
                Some(false),
                Some(true)
            )
        );
        let same = c.process(&sendto(3, [203, 0, 113, 7], 4444)).expect("m");
        assert_eq!(state(same).4, Some(false));
        let other = c.process(&sendto(3, [198, 51, 100, 1], 4444)).expect("m");
        assert_eq!(state(other).4, Some(true));
        // A send without an address on that socket: its state, no new name.
        let plain = c.process(&io("sendto", 3, Some(b"x"), 1)).expect("m");
        assert_eq!(state(plain), (None, None, udp, Some(false), Some(false)));
        // An fd guard never saw created: neither is known.
        let unknown = c.process(&sendto(7, [203, 0, 113, 7], 4444)).expect("m");
        assert_eq!(state(unknown).3, None);
        assert_eq!(
            c.process(&sendto(7, [203, 0, 113, 7], 4444))
                .expect("m")
                .fd
                .expect("fd")
                .name_changed,
            None
        );
    }
}
