//! One test per error class: each asserts the reported `file:line:col`, the message and the
//! offending text. Also: every error in a file is reported, not just the first.

use guard::rules::{Diagnostic, Loader, Pos};

fn errors(yaml: &str) -> Vec<Diagnostic> {
    let mut l = Loader::new();
    l.add_str("bad.yaml", yaml);
    let (_, diags) = l.finish();
    diags.into_iter().filter(Diagnostic::is_error).collect()
}

fn only_error(yaml: &str) -> Diagnostic {
    let e = errors(yaml);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().expect("one error")
}

fn at(line: u32, col: u32) -> Pos {
    Pos { line, col }
}

const HEAD: &str = "- rule: r\n  desc: d\n";
const TAIL: &str = "  output: o\n  priority: INFO\n";

#[test]
fn yaml_syntax() {
    let e = only_error("- rule: r\n  desc: d\n  condition: [proc.name\n  output: o\n");
    assert!(e.msg.starts_with("YAML syntax:"), "{}", e.msg);
    assert_eq!(e.file.as_ref(), "bad.yaml");
    assert_eq!(e.pos.line, 4, "{e}");
    assert!(e.to_string().starts_with("bad.yaml:4:"), "{e}");
}

#[test]
fn unknown_key() {
    let e = only_error(&format!("{HEAD}  condtion: proc.name = sh\n{TAIL}"));
    assert_eq!(e.pos, at(3, 3));
    assert!(
        e.msg
            .starts_with("unknown key 'condtion'; did you mean 'condition'?"),
        "{}",
        e.msg
    );
    assert_eq!(e.text.as_deref(), Some("condtion"));
}

#[test]
fn unknown_field() {
    let e = only_error(&format!(
        "{HEAD}  condition: evt.type = execve and proc.nmae = sh\n{TAIL}"
    ));
    assert_eq!(e.pos, at(3, 36));
    assert_eq!(
        e.msg,
        "unknown field 'proc.nmae'; did you mean 'proc.name'?"
    );
    assert_eq!(e.text.as_deref(), Some("proc.nmae"));
    assert_eq!(
        e.to_string(),
        "bad.yaml:3:36: error: unknown field 'proc.nmae'; did you mean 'proc.name'?\n    proc.nmae"
    );
}

#[test]
fn unknown_field_in_folded_condition_points_at_its_line() {
    let e = only_error(&format!(
        "{HEAD}  condition: >\n    evt.type = execve\n    and fd.directry = /etc\n{TAIL}"
    ));
    assert_eq!(e.pos, at(5, 9));
    assert!(e.msg.contains("did you mean 'fd.directory'"), "{}", e.msg);
}

#[test]
fn bad_operator() {
    let e = only_error(&format!("{HEAD}  condition: proc.name equals sh\n{TAIL}"));
    assert_eq!(e.pos, at(3, 24));
    assert_eq!(
        e.msg,
        "rule 'r': unknown operator 'equals' after field 'proc.name'"
    );
    assert_eq!(e.text.as_deref(), Some("equals"));
}

#[test]
fn undefined_macro() {
    let e = only_error(&format!(
        "- macro: spawned_process\n  condition: evt.type = execve\n{HEAD}  condition: spawned_proces and proc.name = sh\n{TAIL}"
    ));
    assert_eq!(e.pos, at(5, 14));
    assert_eq!(
        e.msg,
        "undefined macro 'spawned_proces'; did you mean 'spawned_process'?"
    );
    assert_eq!(e.text.as_deref(), Some("spawned_proces"));
}

#[test]
fn circular_macro() {
    let e = errors(&format!(
        "- macro: a\n  condition: proc.name = x or b\n- macro: b\n  condition: (c)\n- macro: c\n  condition: not a\n{HEAD}  condition: a\n{TAIL}"
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].msg, "circular macro reference: a -> b -> c -> a");
    assert_eq!(e[0].pos, at(6, 18));
    assert_eq!(e[0].text.as_deref(), Some("a"));
}

#[test]
fn type_mismatch() {
    let e = only_error(&format!("{HEAD}  condition: proc.pid = abc\n{TAIL}"));
    assert_eq!(e.pos, at(3, 25));
    assert_eq!(
        e.msg,
        "type mismatch: 'proc.pid' is a number; 'abc' is not a number"
    );
    let e = only_error(&format!("{HEAD}  condition: proc.pid contains 1\n{TAIL}"));
    assert_eq!(e.pos, at(3, 23));
    assert!(
        e.msg.contains("operator 'contains' needs a string field"),
        "{}",
        e.msg
    );
    let e = only_error(&format!(
        "{HEAD}  condition: container.privileged = maybe\n{TAIL}"
    ));
    assert!(e.msg.contains("'maybe' is not true or false"), "{}", e.msg);
}

#[test]
fn every_error_is_reported() {
    let e = errors(concat!(
        "- rule: a\n  desc: d\n  condition: proc.nmae = x\n  output: o\n  priority: INFO\n",
        "- rule: b\n  desc: d\n  condition: proc.pid = x\n  output: o\n  priority: INFO\n",
        "- rule: c\n  desc: d\n  condition: m\n  output: o %proc.nam\n  priority: INFO\n",
        "- rule: d\n  desc: d\n  condition: x\n  output: o\n  priority: URGENT\n  tagz: []\n",
    ));
    let lines: Vec<u32> = e.iter().map(|d| d.pos.line).collect();
    assert_eq!(lines, [21, 20, 3, 8, 13, 14], "{e:#?}");
}

#[test]
fn hostile_input_is_an_error_not_a_crash() {
    let deep = format!(
        "{HEAD}  condition: {}proc.name = a{}\n{TAIL}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    assert!(errors(&deep)[0].msg.contains("nested deeper"));
    let mut chain = String::new();
    for i in 0..100 {
        chain.push_str(&format!("- macro: m{i}\n  condition: m{}\n", i + 1));
    }
    chain.push_str(&format!(
        "- macro: m100\n  condition: proc.name = a\n{HEAD}  condition: m0\n{TAIL}"
    ));
    assert!(
        errors(&chain)
            .iter()
            .any(|d| d.msg.contains("macros nested deeper than 32"))
    );
    for junk in [
        "",
        "---",
        "42",
        "- 1",
        "- [a]",
        "- rule: {x: 1}",
        "\u{0}\u{1}",
        "- list: l\n  items: 5\n",
    ] {
        let _ = errors(junk);
    }
    assert_eq!(
        errors(
            "- list: a\n  items: [b]\n- list: b\n  items: [a]\n"
                .to_string()
                .as_str()
        )
        .len(),
        0
    );
    let e = errors(&format!(
        "- list: a\n  items: [b]\n- list: b\n  items: [a]\n{HEAD}  condition: proc.name in (a)\n{TAIL}"
    ));
    assert!(e[0].msg.starts_with("circular list reference"), "{e:#?}");
}
