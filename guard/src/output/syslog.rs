//! Syslog on the local datagram socket (`/dev/log`), in the RFC 3164 form that glibc's
//! `syslog(3)` sends and that rsyslog and journald both parse: `<PRI>Mmm dd hh:mm:ss tag[pid]: msg`.
//! The timestamp is UTC.

use std::{os::unix::net::UnixDatagram, path::PathBuf};

use super::{Format, Sink, format_alert};
use crate::alert::{Alert, Priority};

/// Longest message sent; larger ones are cut (the local socket's datagram limit varies).
const MAX_MSG: usize = 8 * 1024;

pub fn facility_code(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "kern" => 0,
        "user" => 1,
        "daemon" => 3,
        "auth" => 4,
        "authpriv" => 10,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

fn severity(p: Priority) -> u8 {
    match p {
        Priority::Emergency => 0,
        Priority::Alert => 1,
        Priority::Critical => 2,
        Priority::Error => 3,
        Priority::Warning => 4,
        Priority::Notice => 5,
        Priority::Informational => 6,
        Priority::Debug => 7,
    }
}

/// Formats one syslog datagram for `a`, stamped with `now_epoch_s`.
pub fn format_syslog(a: &Alert, facility: u8, format: Format, now_epoch_s: u64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let ts = crate::alert::rfc3339_ns(now_epoch_s.saturating_mul(1_000_000_000));
    // ts = YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
    let month = ts
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .copied()
        .unwrap_or("Jan");
    let day: u32 = ts.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(1);
    let hms = ts.get(11..19).unwrap_or("00:00:00");
    let body = match format {
        Format::Text => format!("{} {}", a.priority, a.output),
        Format::Json => format_alert(a, Format::Json),
    };
    let mut msg = format!(
        "<{}>{month} {day:>2} {hms} guard[{}]: {body}",
        u32::from(facility) * 8 + u32::from(severity(a.priority)),
        std::process::id()
    );
    if msg.len() > MAX_MSG {
        let mut cut = MAX_MSG;
        while !msg.is_char_boundary(cut) {
            cut -= 1;
        }
        msg.truncate(cut);
    }
    msg
}

pub(super) struct SyslogSink {
    sock: UnixDatagram,
    path: PathBuf,
    facility: u8,
    format: Format,
}

impl SyslogSink {
    pub(super) fn new(path: PathBuf, facility: u8, format: Format) -> std::io::Result<Self> {
        Ok(SyslogSink {
            sock: UnixDatagram::unbound()?,
            path,
            facility,
            format,
        })
    }
}

impl Sink for SyslogSink {
    fn deliver(&mut self, a: &Alert) -> Result<(), String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let msg = format_syslog(a, self.facility, self.format, now);
        // send_to on an unbound socket: a restarted syslog daemon is picked up automatically.
        self.sock
            .send_to(msg.as_bytes(), &self.path)
            .map(|_| ())
            .map_err(|e| format!("syslog {}: {e}", self.path.display()))
    }
}
