//! The config file (`crate::config`) applied to guard's own command line.

use std::{collections::BTreeSet, ffi::OsString, path::PathBuf};

use super::{Cli, Command, Parsed, config_show::ConfigCommand, parse_from};
use crate::config::{
    ConfigError, NOT_KEYS, Source, built, effective, find_sub, keys_of, parse_text, render,
};

fn keys() -> Vec<crate::config::Key> {
    crate::config::keys::<Cli>()
}

fn tmp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("guard-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p
}

fn argv(args: &[&str]) -> Vec<OsString> {
    std::iter::once("guard")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect()
}

fn parse(args: &[&str]) -> Result<Parsed, ConfigError> {
    parse_from(argv(args), None)
}

fn run_args(p: &Parsed) -> &crate::config::RunArgs {
    match &p.cli.command {
        Command::Run(a) => a,
        Command::Config(ConfigCommand::Show(s)) => &s.run,
        other => panic!("not a run command: {other:?}"),
    }
}

fn file_error(r: Result<Parsed, ConfigError>) -> String {
    match r {
        Err(ConfigError::File(s)) => s,
        Err(ConfigError::Usage(e)) => panic!("usage error instead of a file error: {e}"),
        Ok(p) => panic!("accepted: {:?}", p.cli),
    }
}

#[test]
fn every_run_flag_is_a_config_key_and_config_show_has_the_same_keys() {
    let root = built::<Cli>();
    let run = find_sub(&root, &["run"]).expect("run");
    let keys = keys();
    let names: BTreeSet<_> = keys.iter().map(|k| k.name.clone()).collect();
    assert_eq!(names.len(), keys.len(), "duplicate keys");
    let mut longs = 0;
    for a in run.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if NOT_KEYS.contains(&long) {
            continue;
        }
        longs += 1;
        let name = long.replace('-', "_");
        assert!(names.contains(&name), "--{long} has no config key");
    }
    assert_eq!(longs, keys.len());
    for must in [
        "log",
        "ring_bytes",
        "only_cgroup",
        "docker_socket",
        "rules",
        "audit_dir",
        "pin_dir",
        "metrics_addr",
        "keep_caps",
        "no_landlock",
    ] {
        assert!(names.contains(must), "{must} missing from {names:?}");
    }
    assert!(!names.contains("config") && !names.contains("help"));
    let show = find_sub(&root, &["config", "show"]).expect("config show");
    let show_names: BTreeSet<_> = keys_of(show).into_iter().map(|k| k.name).collect();
    assert_eq!(show_names, names);
}

#[test]
fn the_file_beats_defaults_and_flags_beat_the_file() {
    let f = tmp_file(
        "precedence.yaml",
        "ring_bytes: 1048576\naudit_dir: /srv/audit\nrules: [/a, /b]\ndetect_only: true\nlog: debug\n",
    );
    let fs = f.to_str().expect("utf8");
    // Defaults only.
    let p = parse(&["run"]).expect("parse");
    let a = run_args(&p);
    assert_eq!(a.capture.ring_bytes, guard_ebpf::DEFAULT_RING_BYTES);
    assert_eq!(a.audit_dir, PathBuf::from("/var/lib/guard/audit"));
    assert!(!a.detect_only);
    // The file replaces defaults.
    let p = parse(&["run", "--config", fs]).expect("parse");
    let a = run_args(&p);
    assert_eq!(a.capture.ring_bytes, 1_048_576);
    assert_eq!(a.audit_dir, PathBuf::from("/srv/audit"));
    assert_eq!(a.rules, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    assert!(a.detect_only);
    assert_eq!(p.cli.log, "debug");
    assert_eq!(a.pin_dir, PathBuf::from(crate::probes::DEFAULT_PIN_DIR));
    // Flags beat the file, key by key; a list given on the command line replaces the file's.
    let p = parse(&[
        "--log",
        "warn",
        "run",
        "--config",
        fs,
        "--ring-bytes",
        "65536",
        "--rules",
        "/c",
    ])
    .expect("parse");
    let a = run_args(&p);
    assert_eq!(a.capture.ring_bytes, 65_536);
    assert_eq!(a.rules, vec![PathBuf::from("/c")]);
    assert_eq!(a.audit_dir, PathBuf::from("/srv/audit"));
    assert_eq!(p.cli.log, "warn");
    let eff = effective(&p);
    let src = |k: &str| {
        eff.iter()
            .find(|e| e.key.name == k)
            .map(|e| e.source)
            .expect("key")
    };
    assert_eq!(src("ring_bytes"), Source::Flag);
    assert_eq!(src("audit_dir"), Source::File);
    assert_eq!(src("pin_dir"), Source::Default);
    assert_eq!(src("log"), Source::Flag);
    assert_eq!(src("detect_only"), Source::File);
}

#[test]
fn a_flag_beats_a_conflicting_file_key() {
    let f = tmp_file("conflict.yaml", "responses: /etc/guard/responses\n");
    let p = parse(&[
        "run",
        "--config",
        f.to_str().expect("utf8"),
        "--no-responses",
    ])
    .expect("the command line's --no-responses wins over the file's responses");
    let a = run_args(&p);
    assert!(a.no_responses);
    assert_eq!(a.responses, None);
}

#[test]
fn the_default_file_is_read_when_present_and_a_missing_given_one_is_an_error() {
    let f = tmp_file("default.yaml", "drop_report_secs: 9\n");
    let p = parse_from(argv(&["run"]), Some(&f)).expect("parse");
    assert_eq!(run_args(&p).capture.drop_report_secs, 9);
    assert_eq!(p.file.as_deref(), Some(f.as_path()));
    let missing = f.with_file_name("nope.yaml");
    let p = parse_from(argv(&["run"]), Some(&missing)).expect("absent default is fine");
    assert_eq!(run_args(&p).capture.drop_report_secs, 5);
    let e = file_error(parse(&["run", "--config", missing.to_str().expect("utf8")]));
    assert!(e.contains("nope.yaml") && e.contains("not found"), "{e}");
    // Other commands do not read it.
    let p = parse_from(argv(&["doctor"]), Some(&f)).expect("parse");
    assert!(p.file.is_none());
}

#[test]
fn an_unknown_key_is_reported_at_its_position_with_the_closest_key() {
    let f = tmp_file(
        "unknown.yaml",
        "# comment\nring_bytes: 65536\naudit_dir: /x\n  \nring_byte: 1\n",
    );
    let e = file_error(parse(&["run", "--config", f.to_str().expect("utf8")]));
    let want = format!("{}:5:1: ", f.display());
    assert!(e.starts_with(&want), "{e}");
    assert!(e.contains("unknown key `ring_byte`"), "{e}");
    assert!(e.contains("did you mean `ring_bytes`?"), "{e}");
    let f = tmp_file("unknown2.yaml", "metrics-addr: off\n");
    let e = file_error(parse(&["run", "--config", f.to_str().expect("utf8")]));
    assert!(
        e.contains(":1:1: ") && e.contains("did you mean `metrics_addr`?"),
        "{e}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_reported_at_its_position() {
    let cases: &[(&str, &str, &str)] = &[
        // (file, position, words in the message)
        (
            "ring_bytes: 1\ndrop_report_secs: soon\n",
            ":2:19: ",
            "drop_report_secs",
        ),
        ("detect_only: yes please\n", ":1:14: ", "boolean"),
        ("ring_bytes: [1, 2]\n", ":1:13: ", "single value"),
        ("rules:\n  - /a\n  - {x: 1}\n", ":3:5: ", "rules"),
        ("metrics_addr: nowhere\n", ":1:15: ", "ADDR:PORT"),
        ("print_events: sometimes\n", ":1:15: ", "print_events"),
        ("format: xml\n", ":1:9: ", "format"),
        ("ring_bytes: -1\n", ":1:13: ", "ring_bytes"),
        ("- ring_bytes\n", ":1:1: ", "mapping"),
    ];
    for (i, (text, pos, word)) in cases.iter().enumerate() {
        let f = tmp_file(&format!("type{i}.yaml"), text);
        let e = file_error(parse(&["run", "--config", f.to_str().expect("utf8")]));
        assert!(
            e.starts_with(&format!("{}{pos}", f.display())),
            "{text:?}: {e}"
        );
        assert!(e.contains(word), "{text:?}: {e}");
    }
}

#[test]
fn null_and_empty_values_are_unset_and_an_empty_file_is_fine() {
    let f = tmp_file("empty.yaml", "# nothing\n");
    let p = parse(&["run", "--config", f.to_str().expect("utf8")]).expect("parse");
    assert_eq!(
        run_args(&p).capture.ring_bytes,
        guard_ebpf::DEFAULT_RING_BYTES
    );
    let f = tmp_file(
        "nulls.yaml",
        "only_cgroup: null\nrules: []\nmax_events: ~\n",
    );
    let p = parse(&["run", "--config", f.to_str().expect("utf8")]).expect("parse");
    let a = run_args(&p);
    assert_eq!(a.capture.only_cgroup, None);
    assert!(a.rules.is_empty());
    assert!(p.from_file.is_empty());
}

/// Everything but the `--config` path itself, which names the file read.
fn without_config(p: &Parsed) -> String {
    let a = run_args(p);
    format!("{:?}", a).replace(&format!("config: {:?}", a.config), "config: _") + &p.cli.log
}

#[test]
fn config_show_round_trips() {
    let f = tmp_file(
        "show-in.yaml",
        "ring_bytes: 131072\nrules: [/etc/guard/policies, 'odd # path', '123']\nformat: json\nonly_cgroup: /sys/fs/cgroup/x\nmetrics_addr: off\ndetect_only: true\n",
    );
    let p1 = parse(&[
        "--log",
        "guard=debug",
        "config",
        "show",
        "--config",
        f.to_str().expect("utf8"),
        "--audit-dir",
        "/srv/a: b",
        "--deny-exec-cgroup",
        "/sys/fs/cgroup/y",
    ])
    .expect("parse");
    let text = render(&p1);
    assert!(text.contains("ring_bytes: 131072  # file\n"), "{text}");
    assert!(
        text.contains("pin_dir: /sys/fs/bpf/guard  # default\n"),
        "{text}"
    );
    assert!(text.contains("log: guard=debug  # flag\n"), "{text}");
    assert!(
        text.contains("max_events: null  # default (unset)\n"),
        "{text}"
    );
    let f2 = tmp_file("show-out.yaml", &text);
    let p2 = parse(&["config", "show", "--config", f2.to_str().expect("utf8")]).expect("reparse");
    assert_eq!(without_config(&p1), without_config(&p2));
    let values = |p: &Parsed| {
        effective(p)
            .into_iter()
            .map(|e| (e.key.name, e.values))
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&p1), values(&p2));
    // And once more: the output is a fixed point (sources aside).
    let text2 = render(&p2);
    let strip = |t: &str| {
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split("  # ").next().unwrap_or_default().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&text), strip(&text2));
}

#[test]
fn the_example_config_parses_and_documents_every_key() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/guard.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/guard.yaml");
    let root = built::<Cli>();
    let run = find_sub(&root, &["run"]).expect("run");
    parse_text(&text, run).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: serde_yaml::Mapping = serde_yaml::from_str(&text).expect("mapping");
    let present: BTreeSet<String> = value
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let all: BTreeSet<String> = keys().into_iter().map(|k| k.name).collect();
    assert_eq!(present, all, "deploy/guard.yaml must set every key");
    for k in &all {
        // Each key is documented by a comment block just above it.
        let at = text
            .lines()
            .position(|l| l.starts_with(&format!("{k}:")))
            .expect("key line");
        assert!(
            at > 0 && text.lines().nth(at - 1).is_some_and(|l| l.starts_with('#')),
            "{k} has no comment above it in deploy/guard.yaml"
        );
    }
    // Used as is, it gives the defaults.
    let p = parse(&["run", "--config", path.to_str().expect("utf8")]).expect("parse");
    let d = parse(&["run"]).expect("parse");
    assert_eq!(without_config(&p), without_config(&d));
}

/// guard.yaml has no nested keys: one written under a key is reported at its own position,
/// and so is a bad value inside a list.
#[test]
fn a_nested_key_is_reported_at_its_own_position() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "ring_bytes: 1\nmetrics_addr:\n  port: 9464\n",
            ":3:3: error: ",
            "metrics_addr",
        ),
        (
            "rules:\n  - /a\n  - path:\n      deeper: 1\n",
            ":3:5: error: ",
            "rules",
        ),
        ("rules:\n  - /a\n  - [/b, [/c]]\n", ":3:5: error: ", "rules"),
    ];
    for (i, (text, pos, word)) in cases.iter().enumerate() {
        let f = tmp_file(&format!("nested{i}.yaml"), text);
        let e = file_error(parse(&["run", "--config", f.to_str().expect("utf8")]));
        assert!(
            e.starts_with(&format!("{}{pos}", f.display())),
            "{text:?}: {e}"
        );
        assert!(e.contains(word), "{text:?}: {e}");
    }
}
