//! Decoding ring-buffer records into typed events. Records come from the kernel but are treated
//! as untrusted bytes: a short or unknown record is an error the caller counts, never a panic.

use std::time::{SystemTime, UNIX_EPOCH};

use guard_ebpf::{EventHeader, EventKind, ExecDeniedRecord, ExecRecord, FLAG_TRUNCATED};
use serde::Serialize;

/// cgroup v2 id: the inode number of the cgroup directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct CgroupId(pub u64);

/// Fields common to every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Common {
    /// Wall-clock time in nanoseconds since the Unix epoch.
    pub time_ns: u64,
    pub cgroup_id: CgroupId,
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    /// `None` when unset (`(unsigned)-1`) or when the kernel lacks audit support.
    pub loginuid: Option<u32>,
    pub comm: String,
    pub ret: i64,
    pub cpu: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecEvent {
    #[serde(flatten)]
    pub common: Common,
    pub filename: String,
    /// The filename was longer than the record holds and was cut.
    pub filename_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExecDeniedEvent {
    #[serde(flatten)]
    pub common: Common,
    pub policy_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    Exec(ExecEvent),
    ExecDenied(ExecDeniedEvent),
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::Exec(_) => EventKind::Exec,
            Event::ExecDenied(_) => EventKind::ExecDenied,
        }
    }

    pub fn common(&self) -> &Common {
        match self {
            Event::Exec(e) => &e.common,
            Event::ExecDenied(e) => &e.common,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {got} bytes is shorter than the {need}-byte header or body")]
    Short { got: usize, need: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
}

/// Converts the kernel's CLOCK_BOOTTIME stamps to wall time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// realtime - boottime, in ns, sampled once at start.
    offset_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
            .unwrap_or(0);
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        Self {
            offset_ns: real - boot,
        }
    }

    /// For tests and replay: a clock with a known offset.
    pub fn with_offset(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    pub fn wall_ns(&self, boot_ns: u64) -> u64 {
        (boot_ns as i128 + self.offset_ns).clamp(0, u64::MAX as i128) as u64
    }
}

fn read<T: Copy>(buf: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if buf.len() < need {
        return Err(DecodeError::Short {
            got: buf.len(),
            need,
        });
    }
    // SAFETY: length checked above; T is a plain #[repr(C)] record valid for any bytes;
    // read_unaligned because ring-buffer records are only 8-byte aligned by convention.
    Ok(unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const T) })
}

fn cstr_lossy(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

fn common(h: &EventHeader, clock: &Clock) -> Common {
    Common {
        time_ns: clock.wall_ns(h.boot_ns),
        cgroup_id: CgroupId(h.cgroup_id),
        pid: h.pid,
        tid: h.tid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        loginuid: (h.loginuid != u32::MAX).then_some(h.loginuid),
        comm: cstr_lossy(&h.comm),
        ret: h.ret,
        cpu: h.cpu,
    }
}

/// Decodes one ring-buffer record.
pub fn decode(buf: &[u8], clock: &Clock) -> Result<Event, DecodeError> {
    let header: EventHeader = read(buf)?;
    match EventKind::from_u16(header.kind) {
        Some(EventKind::Exec) => {
            let r: ExecRecord = read(buf)?;
            let n = (r.filename_len as usize).min(r.filename.len());
            Ok(Event::Exec(ExecEvent {
                common: common(&r.header, clock),
                filename: cstr_lossy(&r.filename[..n]),
                filename_truncated: r.header.flags & FLAG_TRUNCATED != 0,
            }))
        }
        Some(EventKind::ExecDenied) => {
            let r: ExecDeniedRecord = read(buf)?;
            Ok(Event::ExecDenied(ExecDeniedEvent {
                common: common(&r.header, clock),
                policy_id: r.policy_id,
            }))
        }
        None => Err(DecodeError::UnknownKind(header.kind)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec_record(name: &[u8]) -> Vec<u8> {
        // SAFETY: all-zero is a valid ExecRecord.
        let mut r: ExecRecord = unsafe { std::mem::zeroed() };
        r.header.kind = EventKind::Exec as u16;
        r.header.pid = 42;
        r.header.cgroup_id = 7;
        r.header.boot_ns = 1_000;
        r.header.loginuid = u32::MAX;
        r.header.comm[..2].copy_from_slice(b"sh");
        r.filename[..name.len()].copy_from_slice(name);
        r.filename_len = name.len() as u32;
        // SAFETY: viewing a repr(C) value as bytes.
        unsafe { std::slice::from_raw_parts(&r as *const _ as *const u8, size_of::<ExecRecord>()) }
            .to_vec()
    }

    #[test]
    fn decodes_exec() {
        let ev = decode(&exec_record(b"/bin/sh"), &Clock::with_offset(5)).expect("decode");
        let Event::Exec(e) = ev else {
            panic!("wrong kind: {ev:?}")
        };
        assert_eq!(e.filename, "/bin/sh");
        assert_eq!(e.common.pid, 42);
        assert_eq!(e.common.cgroup_id, CgroupId(7));
        assert_eq!(e.common.time_ns, 1_005);
        assert_eq!(e.common.comm, "sh");
        assert_eq!(e.common.loginuid, None);
    }

    #[test]
    fn short_and_unknown_records_are_errors() {
        let rec = exec_record(b"/bin/sh");
        for cut in [0, 3, size_of::<EventHeader>() - 1, rec.len() - 1] {
            assert!(
                matches!(
                    decode(&rec[..cut], &Clock::with_offset(0)),
                    Err(DecodeError::Short { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut bad = rec.clone();
        bad[0] = 0xff;
        bad[1] = 0x7f;
        assert_eq!(
            decode(&bad, &Clock::with_offset(0)),
            Err(DecodeError::UnknownKind(0x7fff))
        );
    }

    #[test]
    fn filename_len_beyond_buffer_is_clamped() {
        let mut rec = exec_record(b"/x");
        let off = std::mem::offset_of!(ExecRecord, filename_len);
        rec[off..off + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let Ok(Event::Exec(e)) = decode(&rec, &Clock::with_offset(0)) else {
            panic!("decode failed")
        };
        assert_eq!(e.filename, "/x");
    }
}
