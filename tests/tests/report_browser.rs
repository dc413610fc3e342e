//! The HTML report in a real browser (Debian's headless Chromium): no console messages, a
//! non-blank screenshot, printable to PDF, and a `<script>` planted in a container name does
//! not run. Positive controls prove each detector works in this Chromium build.
//!
//! Without /usr/bin/chromium the test fails under CI=true and explains itself elsewhere.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use guard::report::{self, ReportFormat, ReportOptions};
use guard_tests::audit_fixture::{HOSTILE_CMDLINE, HOSTILE_NAME, write_sequence};

const CHROMIUM: &str = "/usr/bin/chromium";

fn chromium() -> Option<&'static str> {
    if Path::new(CHROMIUM).exists() {
        return Some(CHROMIUM);
    }
    let why = format!("{CHROMIUM} not found (apt-get install -y chromium)");
    if guard_tests::harness::in_ci() {
        panic!("real-browser test cannot run in CI: {why}");
    }
    eprintln!("SKIPPED real-browser test: {why}");
    None
}

struct Tmp(PathBuf);
impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tmp(tag: &str) -> Tmp {
    let p = std::env::temp_dir().join(format!("guard-browser-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).expect("mkdir");
    Tmp(p)
}

/// Runs headless Chromium on `page` with `extra` flags; returns (stdout, stderr).
fn run_chromium(bin: &str, work: &Path, page: &Path, extra: &[String]) -> (String, String) {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let profile = work.join(format!("profile-{n}"));
    let (out_path, err_path) = (work.join(format!("out-{n}")), work.join(format!("err-{n}")));
    let mut child = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn chromium");
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait") {
            Some(st) => {
                assert!(
                    st.success(),
                    "chromium exited with {st}: {}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                );
                break;
            }
            None if Instant::now() > end => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish in 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    (
        std::fs::read_to_string(out_path).unwrap_or_default(),
        std::fs::read_to_string(err_path).unwrap_or_default(),
    )
}

/// Console messages as Chromium logs them with --enable-logging=stderr.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

fn dump_dom(bin: &str, work: &Path, page: &Path) -> (String, String) {
    run_chromium(bin, work, page, &["--dump-dom".into()])
}

#[test]
fn html_report_renders_cleanly_in_chromium_and_planted_script_does_not_run() {
    let Some(bin) = chromium() else { return };
    let t = tmp("report");
    let work = &t.0;

    // Positive controls: this build logs console errors, and a raw planted script does run.
    let control = work.join("control.html");
    std::fs::write(
        &control,
        format!("<!DOCTYPE html><html><head><title>control</title></head><body><p>{HOSTILE_NAME}</p><p>{HOSTILE_CMDLINE}</p><script>console.error('probe'); missingFn();</script></body></html>"),
    )
    .expect("write control");
    let (dom, err) = dump_dom(bin, work, &control);
    assert!(
        console_lines(&err).len() >= 2,
        "console detection does not work here:\n{err}"
    );
    assert!(
        dom.contains("data-pwned=\"1\""),
        "marker detection does not work here:\n{dom}"
    );
    assert!(dom.contains("<title>PWNED</title>"), "{dom}");
    assert!(
        dom.contains("data-pwned-cmd=\"1\""),
        "command-line marker detection does not work here:\n{dom}"
    );

    // The real report.
    let audit = work.join("audit");
    write_sequence(&audit);
    let r =
        report::generate(std::slice::from_ref(&audit), &ReportOptions::default()).expect("report");
    assert!(r.integrity.verified);
    let page = work.join("report.html");
    std::fs::write(&page, report::render(&r, ReportFormat::Html)).expect("write report");

    let (dom, err) = dump_dom(bin, work, &page);
    let console = console_lines(&err);
    assert!(console.is_empty(), "console messages: {console:#?}");
    assert!(
        dom.contains("<title>guard audit report</title>"),
        "title changed:\n{dom}"
    );
    assert!(!dom.contains("data-pwned=\"1\""), "planted script ran");
    assert!(
        !dom.contains("data-pwned-cmd=\"1\""),
        "a script or handler planted in a command line ran"
    );
    assert!(
        !dom.contains("<img"),
        "an element from a command line exists"
    );
    assert!(
        dom.contains("&lt;img/src=x onerror=document.body.setAttribute('data-pwned-cmd','1')&gt;"),
        "hostile command line not shown as text"
    );
    assert!(
        !dom.contains("<script"),
        "a script element exists in the DOM"
    );
    // The name is there, as text.
    assert!(
        dom.contains("&lt;script&gt;document.title='PWNED'"),
        "hostile name not shown as text"
    );
    assert!(dom.contains("<h2>Alerts: 7</h2>"));
    assert!(dom.contains("<svg"), "charts are inline SVG");

    // Screenshot: decode and check it is not blank.
    let shot = work.join("shot.png");
    let (_, err) = run_chromium(
        bin,
        work,
        &page,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,1600".into(),
            "--hide-scrollbars".into(),
        ],
    );
    assert!(console_lines(&err).is_empty(), "{err}");
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&shot).expect("screenshot written"),
    ));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!((info.width, info.height), (1280, 1600));
    let bpp = info.color_type.samples();
    let mut colors = std::collections::HashSet::new();
    let mut non_white = 0usize;
    for px in buf[..info.buffer_size()].chunks_exact(bpp) {
        let rgb = (px[0], px[1], px[2]);
        if rgb != (255, 255, 255) {
            non_white += 1;
        }
        colors.insert(rgb);
    }
    let total = (info.width * info.height) as usize;
    assert!(colors.len() >= 16, "only {} distinct colours", colors.len());
    assert!(
        non_white * 100 > total,
        "{non_white} of {total} pixels not white: blank page?"
    );
    // Bar colours from the charts are on screen.
    assert!(
        colors.contains(&(0x2f, 0x6f, 0xdd)) || colors.contains(&(0x7b, 0x4f, 0xd6)),
        "no chart colours in the screenshot"
    );

    // For a person to look at: GUARD_TEST_ARTIFACTS=dir keeps the page and the screenshot.
    if let Ok(keep) = std::env::var("GUARD_TEST_ARTIFACTS") {
        let keep = PathBuf::from(keep);
        let _ = std::fs::create_dir_all(&keep);
        let _ = std::fs::copy(&page, keep.join("report.html"));
        let _ = std::fs::copy(&shot, keep.join("report.png"));
    }

    // Print: Chromium's print path produces a PDF.
    let pdf = work.join("report.pdf");
    run_chromium(
        bin,
        work,
        &page,
        &[
            format!("--print-to-pdf={}", pdf.display()),
            "--no-pdf-header-footer".into(),
        ],
    );
    let bytes = std::fs::read(&pdf).expect("pdf written");
    assert!(bytes.starts_with(b"%PDF"), "not a PDF");
    assert!(
        bytes.len() > 5_000,
        "PDF suspiciously small: {} bytes",
        bytes.len()
    );
}
