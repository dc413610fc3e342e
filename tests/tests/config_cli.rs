//! `guard config show` through the real binary: the file, a flag over it, the sources, the
//! round trip (its output used as the config file gives the same configuration), and a bad
//! key reported as `file:line:col` with exit code 2.

use std::process::Command;

use guard_tests::{harness::guard_bin, respond_util::TempDir};

fn show(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(guard_bin())
        .arg("config")
        .arg("show")
        .args(args)
        .env_remove("GUARD_CONFIG")
        .env_remove("GUARD_LOG")
        .output()
        .expect("running guard config show");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `key: value` part of every line, comments dropped.
fn values(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split("  # ").next().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn config_show_prints_sources_and_round_trips() {
    let dir = TempDir::new("config-cli");
    let cfg = dir.0.join("guard.yaml");
    std::fs::write(
        &cfg,
        "ring_bytes: 1048576\nrules:\n  - /etc/guard/policies\ndetect_only: true\nmetrics_addr: off\n",
    )
    .expect("write");
    let (code, out, err) = show(&[
        "--config",
        cfg.to_str().expect("utf8"),
        "--ring-bytes",
        "65536",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ring_bytes: 65536  # flag\n"), "{out}");
    assert!(out.contains("detect_only: true  # file\n"), "{out}");
    assert!(out.contains("metrics_addr: off  # file\n"), "{out}");
    assert!(
        out.contains("rules:  # file\n  - /etc/guard/policies\n"),
        "{out}"
    );
    assert!(
        out.contains("audit_dir: /var/lib/guard/audit  # default\n"),
        "{out}"
    );
    assert!(out.contains("log: info  # default\n"), "{out}");
    assert!(
        out.contains(&format!("# config file: {}\n", cfg.display())),
        "{out}"
    );
    // Every key once.
    let keys = values(&out).iter().filter(|l| !l.starts_with(' ')).count();
    assert!(keys >= 20, "{out}");

    let again = dir.0.join("shown.yaml");
    std::fs::write(&again, &out).expect("write");
    let (code, out2, err) = show(&["--config", again.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        values(&out),
        values(&out2),
        "the output as a config file changes nothing"
    );
    assert!(out2.contains("ring_bytes: 65536  # file\n"), "{out2}");
}

#[test]
fn a_bad_config_file_is_an_error_with_its_position() {
    let dir = TempDir::new("config-cli-bad");
    let cfg = dir.0.join("guard.yaml");
    std::fs::write(&cfg, "ring_bytes: 65536\naudit_dri: /x\n").expect("write");
    let (code, out, err) = show(&["--config", cfg.to_str().expect("utf8")]);
    assert_eq!(code, 2, "stdout: {out} stderr: {err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(&format!(
            "{}:2:1: error: unknown key `audit_dri` (did you mean `audit_dir`?)",
            cfg.display()
        )),
        "{err}"
    );
    let missing = dir.0.join("absent.yaml");
    let (code, _, err) = show(&["--config", missing.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(err.contains("not found"), "{err}");
}
