use super::*;

fn load(text: &str) -> Definitions {
    let mut d = Definitions::new();
    d.load_str("t.yaml", text);
    d
}

#[test]
fn items_and_positions() {
    let d = load(
        "- list: l\n  items: [a, '\"b c\"', 3]\n\n- macro: m\n  condition: >\n    proc.name in (l)\n    and x\n- rule: r\n  desc: d\n  condition: m\n  output: o %proc.name\n  priority: warning\n  tags: [a]\n",
    );
    assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
    let l = &d.lists["l"];
    assert_eq!(
        l.items[1],
        ListItem {
            text: "b c".into(),
            quoted: true
        }
    );
    assert_eq!(l.items[2].text, "3");
    let m = &d.macros["m"];
    // "and" begins at line 7 col 5.
    let off = m.cond.text.find("and").expect("and");
    assert_eq!(m.cond.locate(off).1, Pos { line: 7, col: 5 });
    let r = d.rule("r").expect("rule");
    assert_eq!(r.pos, Pos { line: 8, col: 1 });
    assert_eq!(r.priority, Priority::Warning);
}

#[test]
fn unknown_key_has_position_and_hint() {
    let d = load("- rule: r\n  desc: d\n  condtion: x\n  output: o\n  priority: INFO\n");
    let e = &d.diagnostics[0];
    assert_eq!(e.pos, Pos { line: 3, col: 3 });
    assert_eq!(e.hint.as_deref(), Some("condition"));
    assert!(
        e.msg
            .contains("unknown key 'condtion'; did you mean 'condition'?"),
        "{}",
        e.msg
    );
}

#[test]
fn append_override_enable_only() {
    let d = load(concat!(
        "- list: l\n  items: [a]\n",
        "- list: l\n  items: [b]\n  append: true\n",
        "- list: l\n  items: [c]\n  override:\n    items: append\n",
        "- macro: m\n  condition: a\n",
        "- macro: m\n  condition: or b\n  append: true\n",
        "- rule: r\n  desc: d\n  condition: x\n  output: o\n  priority: INFO\n  tags: [t1]\n",
        "- rule: r\n  condition: and y\n  append: true\n",
        "- rule: r\n  output: more\n  tags: [t2]\n  override:\n    output: append\n    tags: append\n",
        "- rule: r\n  priority: CRITICAL\n  override:\n    priority: replace\n",
        "- rule: r\n  enabled: false\n",
    ));
    assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
    let items: Vec<&str> = d.lists["l"].items.iter().map(|i| i.text.as_str()).collect();
    assert_eq!(items, ["a", "b", "c"]);
    assert_eq!(d.macros["m"].cond.text, "a or b");
    let r = d.rule("r").expect("rule");
    assert_eq!(r.cond.text, "x and y");
    assert_eq!(r.output, "o more");
    assert_eq!(r.tags, ["t1", "t2"]);
    assert_eq!(r.priority, Priority::Critical);
    assert!(!r.enabled);
}

#[test]
fn redefinition_replaces_and_errors_are_reported() {
    let d = load(concat!(
        "- rule: r\n  desc: d\n  condition: x\n  output: o\n  priority: INFO\n",
        "- rule: r\n  desc: d2\n  condition: y\n  output: o\n  priority: INFO\n",
        "- rule: nope\n  condition: and z\n  append: true\n",
        "- rule: s\n  desc: d\n  condition: x\n  output: o\n  priority: LOUD\n",
        "- rule: t\n  desc: d\n  output: o\n  priority: INFO\n",
        "- rule: r\n  output: z\n  override:\n    condition: append\n",
        "- thing: x\n",
    ));
    assert_eq!(d.rules.len(), 1);
    assert_eq!(d.rule("r").map(|r| r.cond.text.as_str()), Some("y"));
    let msgs: Vec<&str> = d.diagnostics.iter().map(|d| d.msg.as_str()).collect();
    assert!(
        msgs.iter()
            .any(|m| m.contains("append to a rule that is not defined")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter().any(|m| m.contains("unknown priority 'LOUD'")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("missing required key(s): condition")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("override names 'condition'")),
        "{msgs:?}"
    );
    assert!(msgs.iter().any(|m| m.contains("unknown item")), "{msgs:?}");
}

#[test]
fn yaml_syntax_error_position() {
    let d = load("- rule: a\n  desc: [unclosed\n");
    let e = &d.diagnostics[0];
    assert!(e.msg.starts_with("YAML syntax"), "{}", e.msg);
    assert!(e.pos.line >= 2, "{:?}", e.pos);
}

#[test]
fn exceptions_forms() {
    let d = load(concat!(
        "- rule: r\n  desc: d\n  condition: x\n  output: o\n  priority: INFO\n",
        "  exceptions:\n",
        "    - name: pair\n      fields: [proc.name, fd.name]\n      comps: [=, startswith]\n      values:\n        - [a, /etc]\n",
        "    - name: one\n      fields: proc.name\n      values: [x, y]\n",
    ));
    assert!(d.diagnostics.is_empty(), "{:?}", d.diagnostics);
    let r = d.rule("r").expect("rule");
    assert_eq!(r.exceptions.len(), 2);
    assert_eq!(r.exceptions[1].comps, ["in"]);
    assert!(r.exceptions[1].single);
}

#[test]
fn future_kinds_are_reported_not_silently_ignored() {
    let d = load("- policy: web\n  mode: detect\n");
    assert!(
        d.diagnostics[0].msg.contains("'policy' is not supported"),
        "{:?}",
        d.diagnostics
    );
    let mut d = Definitions::new();
    d.register_kind(
        "policy",
        Box::new(|ctx, _| vec![Diagnostic::warning(&ctx.file, ctx.key_pos("mode"), "seen")]),
    );
    d.load_str("p.yaml", "- policy: web\n  mode: detect\n");
    assert_eq!(d.diagnostics[0].pos, Pos { line: 2, col: 3 });
}

/// Errors inside nested keys point at the key (or value) itself, not at the item's key.
#[test]
fn nested_errors_point_at_the_key_or_value_itself() {
    let d = load(concat!(
        "- rule: r\n",
        "  desc: d\n",
        "  condition: evt.type = execve\n",
        "  output: o\n",
        "  priority: INFO\n",
        "  exceptions:\n",
        "    - name: e\n",
        "      fields: [proc.name]\n",
        "      valuse: [[sh]]\n",
        "    - name: f\n",
        "      fields: [proc.name]\n",
        "      values: [[a, b]]\n",
        "- rule: r\n",
        "  condition: proc.name = x\n",
        "  override:\n",
        "    condition: apend\n",
    ));
    let at = |line, col, words: &str| {
        assert!(
            d.diagnostics
                .iter()
                .any(|e| e.pos == Pos { line, col } && e.msg.contains(words)),
            "{line}:{col} {words}: {:#?}",
            d.diagnostics
        );
    };
    at(9, 7, "unknown exception key 'valuse'");
    at(12, 16, "exception 'f': value has 2 entries for 1 fields");
    at(
        16,
        16,
        "override of 'condition' must be 'append' or 'replace', not 'apend'",
    );
}
