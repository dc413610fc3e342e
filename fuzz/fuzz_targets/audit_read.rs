//! The audit log reader: `guard audit verify` (the hash chain and the checkpoint) and
//! `guard report` (the record parser, the summaries and every renderer) on an audit directory.
//!
//! Input: the log's lines. A line `#file` starts the next log file (rotation); after a line
//! `#checkpoint` comes the checkpoint file's content.
#![no_main]

use std::{fs, hint::black_box, path::PathBuf};

use guard::{
    audit::{VerifyOptions, verify_paths},
    report::{self, ReportFormat, ReportOptions},
};
use libfuzzer_sys::fuzz_target;

fn dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("guard-fuzz-audit-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    let _ = fs::create_dir_all(&d);
    d
}

fn split_at_line<'a>(data: &'a [u8], marker: &[u8]) -> (&'a [u8], Option<&'a [u8]>) {
    let mut pat = b"\n".to_vec();
    pat.extend_from_slice(marker);
    pat.push(b'\n');
    match data.windows(pat.len()).position(|w| w == pat.as_slice()) {
        Some(i) => (&data[..=i], Some(&data[i + pat.len()..])),
        None => (data, None),
    }
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let (mut log, checkpoint) = split_at_line(data, b"#checkpoint");
    if let Some(cp) = checkpoint {
        let _ = fs::write(dir.join("audit.checkpoint"), cp);
    }
    let mut first_seq = 1u64;
    loop {
        let (this, next) = split_at_line(log, b"#file");
        let _ = fs::write(dir.join(format!("audit-{first_seq:020}.jsonl")), this);
        match next {
            Some(n) => {
                log = n;
                first_seq += 1;
            }
            None => break,
        }
    }

    let paths = [dir.clone()];
    let _ = black_box(verify_paths(&paths, &VerifyOptions::default()));
    let partial = VerifyOptions {
        allow_partial: true,
        no_checkpoint: true,
        ..Default::default()
    };
    let _ = black_box(verify_paths(&paths, &partial));
    let opts = ReportOptions {
        now: 1_767_225_600_000_000_000,
        workload: Some("*web*".into()),
        ..Default::default()
    };
    for o in [
        opts.clone(),
        ReportOptions {
            workload: None,
            ..opts
        },
    ] {
        if let Ok(r) = report::generate(&paths, &o) {
            for f in [
                ReportFormat::Text,
                ReportFormat::Md,
                ReportFormat::Json,
                ReportFormat::Html,
            ] {
                black_box(report::render(&r, f));
            }
        }
    }
});
