//! DESIGN section 4's field list, read from ../shared/DESIGN.md at test time: every field in it
//! compiles in a condition and in an output, and none is one of the fields guard cannot provide.

use guard_tests::corpus;

const NAMESPACES: [&str; 8] = [
    "evt",
    "proc",
    "thread",
    "fd",
    "user",
    "group",
    "container",
    "k8s",
];

/// The names in the "**Fields.**" bullet. Within a sub-bullet a name without a namespace
/// continues the first one's (`proc.name`, `exe` -> `proc.exe`); `a_write`/`read` is
/// `a_write`, `a_read`. Arguments get a sample value.
fn design_fields(design: &str) -> Vec<String> {
    let mut lines = design
        .lines()
        .skip_while(|l| !l.starts_with("- **Fields.**"))
        .skip(1)
        .take_while(|l| !l.starts_with("- **"));
    let mut bullets: Vec<String> = Vec::new();
    for l in lines.by_ref() {
        match l.trim_start().strip_prefix("- ") {
            Some(b) => bullets.push(b.to_string()),
            None => {
                if let Some(last) = bullets.last_mut() {
                    last.push(' ');
                    last.push_str(l.trim());
                }
            }
        }
    }
    let mut out = Vec::new();
    for b in bullets {
        let parts: Vec<&str> = b.split('`').collect();
        let mut prefix = String::new();
        let mut prev = String::new();
        for (i, tok) in parts.iter().enumerate().skip(1).step_by(2) {
            let between = parts[i - 1];
            let full = if between == "/" {
                format!("{}{tok}", &prev[..prev.rfind('_').map_or(0, |p| p + 1)])
            } else if NAMESPACES.iter().any(|n| tok.starts_with(&format!("{n}."))) {
                if prefix.is_empty() {
                    prefix = tok.split('.').next().unwrap_or_default().to_string();
                }
                tok.to_string()
            } else {
                format!("{prefix}.{tok}")
            };
            prev = full.clone();
            out.push(
                full.replace(".*", ".flags")
                    .replace("[N]", "[2]")
                    .replace("[...]", "[app]"),
            );
        }
    }
    out
}

#[test]
fn every_design_field_compiles_and_is_provided() {
    let path = corpus::repo_root().join("../shared/DESIGN.md");
    let design =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fields = design_fields(&design);
    for want in [
        "evt.is_open_exec",
        "proc.aname[2]",
        "container.image.repository",
        "container.label[app]",
        "fd.dport",
        "k8s.pod.name",
    ] {
        assert!(fields.iter().any(|f| f == want), "{want} not in {fields:?}");
    }
    assert!(fields.len() >= 45, "{fields:?}");
    for f in &fields {
        let yaml = format!(
            "- rule: r\n  desc: d\n  condition: evt.type in (execve, openat, connect) and {f} exists\n  output: \"v=%{f}\"\n  priority: INFO\n"
        );
        let (engine, diags) = corpus::engine(&[], &[("design.yaml", &yaml)]);
        let r = engine.rules.get("r").expect("rule");
        assert!(r.unavailable.is_empty(), "{f}: {:?}", r.unavailable);
        // Only the two documented non-Falco names warn.
        for d in &diags {
            assert!(
                f == "fd.dip" || f == "fd.dport",
                "{f}: unexpected diagnostic {d}"
            );
        }
    }
}
