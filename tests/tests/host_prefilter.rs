//! The kernel prefilter on the real kernel: the same scripted workload, run under an agent with
//! the prefilter and under one without it (`--no-prefilter`), gives the same alerts, while the
//! prefiltered agent receives fewer events and counts the opens it skipped.

use std::{process::Command, time::Duration};

use guard_tests::harness::{Agent, TestCgroup, agent_lock, can_run, is_root};

/// Reads and writes of sensitive and ordinary files through absolute, relative, `..` and `//`
/// paths, loopback connects (a destination guard's only connect rule ignores), and an exec
/// from /tmp. Fixed names, so both runs produce identical alerts.
const SCRIPT: &str = "
for i in 1 2 3; do
  cat /etc/shadow >/dev/null
  cat /etc/hostname /etc/hosts >/dev/null
  (cd /etc && cat shadow >/dev/null)
  cat /tmp/../etc/shadow >/dev/null
  cat //etc//shadow >/dev/null
  echo x > /etc/guard-prefilter-test; rm -f /etc/guard-prefilter-test
  echo x > /tmp/guard-prefilter-ok; cat /tmp/guard-prefilter-ok >/dev/null
  ls /usr/bin >/dev/null
  head -c 16 /usr/bin/env >/dev/null
  cat /proc/self/status >/dev/null
  for f in /usr/share/doc/*; do :; done
  cat /usr/lib/os-release >/dev/null 2>&1
  nc -w 1 127.0.0.1 9 </dev/null >/dev/null 2>&1
done
cp /bin/busybox /tmp/guard-prefilter-bb && /tmp/guard-prefilter-bb true
rm -f /tmp/guard-prefilter-bb /tmp/guard-prefilter-ok
";

/// Runs the workload in `cg` under a fresh agent; returns the alerts' identifying fields and
/// the agent's final counters.
fn run(cg: &TestCgroup, extra: &[&str]) -> (Vec<String>, u64, u64, u64) {
    // Info level: the final counters are on the `guard stopping` line.
    let mut args = vec![
        "--log",
        "info",
        "--only-cgroup",
        cg.path.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    let agent = Agent::run(&args);
    let st = Command::new(env!("CARGO_BIN_EXE_guard-testkit"))
        .args(["cgroup-run", cg.path.to_str().expect("utf8"), "--"])
        .args(["/bin/busybox", "sh", "-c", SCRIPT])
        .status()
        .expect("workload");
    assert!(st.success(), "workload failed: {st:?}");
    // Let the agent drain; it processes in order, so a quiet second means it is done.
    let mut alerts = agent.collect_until(Duration::from_secs(3), |_| false);
    let (rest, stderr) = agent.stop_with_stderr();
    alerts.extend(rest);
    let mut keys: Vec<String> = alerts
        .iter()
        .filter(|v| v["rule"].is_string())
        .map(|v| {
            let f = &v["output_fields"];
            format!(
                "{} | {} | {} | {}",
                v["rule"], f["evt.type"], f["proc.name"], f["fd.name"]
            )
        })
        .collect();
    keys.sort();
    let stop = stderr
        .iter()
        .rev()
        .find(|l| l.contains("guard stopping"))
        .unwrap_or_else(|| panic!("no `guard stopping` line: {stderr:?}"));
    let num = |key: &str| -> u64 {
        stop.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing in {stop:?}"))
    };
    (
        keys,
        num("events="),
        num("prefiltered_opens="),
        num("prefiltered_connects="),
    )
}

#[test]
fn the_prefilter_changes_no_alert_and_skips_opens() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let cg = TestCgroup::new("prefilter");
    let (full, full_events, full_skipped, full_connects) = run(&cg, &["--no-prefilter"]);
    let (filtered, filtered_events, skipped, skipped_connects) = run(&cg, &[]);
    assert!(
        full.len() >= 6,
        "the workload should raise alerts (sensitive reads, writes below /etc, exec from /tmp): {full:#?}"
    );
    assert_eq!(full, filtered, "alerts differ with the prefilter");
    assert_eq!(
        (full_skipped, full_connects),
        (0, 0),
        "--no-prefilter skipped events"
    );
    assert!(skipped > 0, "the prefilter skipped no open");
    assert!(skipped_connects > 0, "the prefilter skipped no connect");
    assert!(
        filtered_events < full_events,
        "prefiltered agent received {filtered_events} events, unfiltered {full_events}"
    );
    eprintln!(
        "prefilter: {} alerts identical; events {full_events} -> {filtered_events}; {skipped} opens and {skipped_connects} connects skipped in the kernel",
        full.len()
    );
}
