//! Writes seeds for the `audit_read` fuzz target (fuzz/seed.sh runs it) from the audit fixture
//! every report test uses: the whole rotated log with its checkpoint, the log alone, and one
//! single-record log per record of the fixture. Seed format (see fuzz/fuzz_targets/audit_read.rs):
//! log lines; a line `#file` starts the next file; after a line `#checkpoint`, the checkpoint.
//!
//! Run: cargo run -p guard-tests --example fuzz_audit_seeds -- DIR

use std::path::Path;

use guard::audit::{AuditConfig, AuditWriter, CHECKPOINT_FILE};
use guard_tests::audit_fixture;

/// The log files of `dir` in chain order, joined with `#file` lines.
fn joined_log(dir: &Path) -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for (i, (_, f)) in guard::audit::writer::log_files(dir)?
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.extend_from_slice(b"#file\n");
        }
        out.extend(std::fs::read(f)?);
    }
    Ok(out)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .ok_or("usage: fuzz_audit_seeds DIR")?;
    let out = Path::new(&out);
    std::fs::create_dir_all(out)?;
    let work = out.join(".work");
    let _ = std::fs::remove_dir_all(&work);

    let full = work.join("full");
    std::fs::create_dir_all(&full)?;
    audit_fixture::write_sequence(&full);
    let log = joined_log(&full)?;
    std::fs::write(out.join("fixture_log.txt"), &log)?;
    let mut with_cp = log.clone();
    with_cp.extend_from_slice(b"#checkpoint\n");
    with_cp.extend(std::fs::read(full.join(CHECKPOINT_FILE))?);
    std::fs::write(out.join("fixture_log_checkpoint.txt"), with_cp)?;

    let mut n = 2;
    for (i, p) in audit_fixture::sequence().into_iter().enumerate() {
        let d = work.join(format!("one-{i}"));
        std::fs::create_dir_all(&d)?;
        let mut w = AuditWriter::open(AuditConfig::new(&d))?;
        w.append(p)?;
        w.sync()?;
        drop(w);
        std::fs::write(out.join(format!("record_{i:03}.txt")), joined_log(&d)?)?;
        n += 1;
    }
    std::fs::remove_dir_all(&work)?;
    println!("{n} audit seeds in {}", out.display());
    Ok(())
}
