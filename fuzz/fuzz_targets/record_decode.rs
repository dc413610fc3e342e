//! Ring-buffer records: the input as one record (`events::decode`, what the agent calls per
//! record), then as a stream of records (each one's length from its header) through decode,
//! the capture stage (process table, paths, sockets; on an empty fake /proc) and the rules.
#![no_main]

use std::hint::black_box;

use guard::{
    capture::Capture,
    events::{Clock, decode},
    rules::Matcher,
    state::{State, StateConfig, procfs::ProcFs},
};
use guard_ebpf::EventHeader;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// Header + body + payloads, as the header declares; `None` when the header does not fit.
fn record_len(buf: &[u8]) -> Option<usize> {
    let hdr = size_of::<EventHeader>();
    let bytes = buf.get(..hdr)?;
    // SAFETY: EventHeader is a plain repr(C) record, valid for any bytes; read unaligned.
    let h: EventHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    Some(hdr + h.body_len as usize + h.len0 as usize + h.len1 as usize)
}

fn empty_proc() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("guard-fuzz-proc-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&d);
    d
}

fuzz_target!(|data: &[u8]| {
    let clock = Clock::with_offset(1_767_225_600_000_000_000);
    let _ = black_box(decode(data, &clock));

    let engine = common::engine();
    let fs = ProcFs::new(empty_proc(), None, clock, 100);
    let (state, _enricher) = State::with_procfs(StateConfig::default(), fs);
    let mut cap = Capture::new(state);
    let mut m = Matcher::default();
    let mut rest = data;
    while let Some(len) = record_len(rest) {
        let Some(rec) = rest.get(..len) else { break };
        if let Ok(ev) = decode(rec, &clock)
            && let Some(mev) = cap.process(&ev)
        {
            black_box(engine.alerts(&mev, &mut m));
            cap.recycle(mev);
        }
        rest = &rest[len..];
    }
});
