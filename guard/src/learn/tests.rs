use super::{
    policy::{self, Inputs, Observed, Selector, fold_connects},
    summary::{MAX_PER_MAP, Sensitive, Summaries},
};
use crate::audit::record::WorkloadSummary;

const ID: &str = "0123456789ab";

fn ev(json: &str) -> crate::model::Event {
    crate::model::parse_line(json, 1).expect("event")
}

fn exec(path: &str, t: u64) -> crate::model::Event {
    ev(&format!(
        r#"{{"v":1,"type":"execve","time":{t},"res":0,"proc":{{"pid":7,"name":"x","exepath":"{path}"}},"container":{{"id":"{ID}","name":"web-1","image":"busybox:1"}}}}"#
    ))
}

fn open(path: &str, flags: &str, res: i64) -> crate::model::Event {
    ev(&format!(
        r#"{{"v":1,"type":"openat","time":2000,"res":{res},"args":{{"flags":"{flags}"}},"proc":{{"pid":7,"name":"x"}},"fd":{{"type":"file","name":"{path}"}},"container":{{"id":"{ID}","name":"web-1","image":"busybox:1"}}}}"#
    ))
}

fn connect(ip: &str, port: u16, res: i64) -> crate::model::Event {
    ev(&format!(
        r#"{{"v":1,"type":"connect","time":3000,"res":{res},"proc":{{"pid":7,"name":"x"}},"fd":{{"type":"ipv4","sip":"{ip}","sport":{port},"cip":"10.0.0.9","cport":40000}},"container":{{"id":"{ID}","name":"web-1","image":"busybox:1"}}}}"#
    ))
}

fn sensitive() -> Sensitive {
    let mut l = crate::rules::Loader::new();
    l.add_str(
        "r.yaml",
        "- list: guard_sensitive_files\n  items: [/etc/shadow, /etc/sudoers, not-a-path, \"/x/*\"]\n- list: guard_sensitive_dirs\n  items: [/root/.ssh]\n",
    );
    Sensitive::from_definitions(l.definitions())
}

fn workload_summary() -> WorkloadSummary {
    let mut s = Summaries::new(sensitive());
    for e in [
        exec("/bin/sh", 1000),
        exec("/bin/cat", 1500),
        exec("/bin/cat", 1600),
        open("/tmp/out", "O_WRONLY|O_CREAT", 3),
        open("/tmp/out", "O_WRONLY|O_CREAT", 3),
        open("/etc/passwd", "O_RDONLY", 3),
        open("/etc/shadow", "O_RDONLY", 3),
        open("/etc/hosts", "O_WRONLY", -13),
        connect("127.0.0.1", 8080, 0),
        connect("127.0.0.1", 8080, -115),
        connect("127.0.0.1", 9090, -111),
    ] {
        s.observe(&e);
    }
    // Host events are not summarised.
    s.observe(&ev(
        r#"{"v":1,"type":"execve","time":1,"res":0,"proc":{"pid":1,"name":"x","exepath":"/bin/x"}}"#,
    ));
    let mut v = s.take();
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(s.take().is_empty(), "take starts a new interval");
    v.remove(0)
}

#[test]
fn sensitive_lists_come_from_the_rules() {
    let s = sensitive();
    assert_eq!(
        s.files.iter().map(String::as_str).collect::<Vec<_>>(),
        ["/etc/shadow", "/etc/sudoers"],
        "names and globs are left out"
    );
    assert!(s.matches("/root/.ssh/id_rsa"));
    assert!(!s.matches("/root/.sshx"));
    assert_eq!(s.lists, ["guard_sensitive_files", "guard_sensitive_dirs"]);
}

#[test]
fn a_summary_keeps_execs_writes_sensitive_reads_and_connects() {
    let s = workload_summary();
    assert_eq!(s.workload.container_id.as_deref(), Some(ID));
    assert_eq!(s.workload.container_name.as_deref(), Some("web-1"));
    assert_eq!(
        s.events, 8,
        "failed open and refused connect are not counted"
    );
    assert_eq!(s.execs.get("/bin/cat"), Some(&2));
    assert_eq!(s.execs.get("/bin/sh"), Some(&1));
    assert_eq!(s.writes.len(), 1);
    assert_eq!(s.writes.get("/tmp/out"), Some(&2));
    assert_eq!(s.reads.keys().collect::<Vec<_>>(), ["/etc/shadow"]);
    assert_eq!(s.connects.get("127.0.0.1:8080"), Some(&2));
    assert_eq!(s.connects.len(), 1);
    assert!(s.overflow.is_empty());
    assert_eq!(s.from, crate::rfc3339::format(1000));
    assert_eq!(s.to, crate::rfc3339::format(3000));
}

#[test]
fn summaries_are_bounded_and_say_what_did_not_fit() {
    let mut s = Summaries::new(Sensitive::default());
    let max = MAX_PER_MAP[0];
    for i in 0..max + 10 {
        s.observe(&exec(&format!("/bin/b{i}"), 1));
    }
    s.observe(&exec(&format!("/{}", "a".repeat(600)), 1));
    let r = s.take();
    assert_eq!(r[0].execs.len(), max);
    assert_eq!(r[0].overflow.get("execs"), Some(&11));
}

fn observed() -> Observed {
    let mut o = Observed::default();
    o.add(&workload_summary()).expect("add");
    o
}

fn sel() -> Selector {
    Selector::parse("name=web-*").expect("selector")
}

fn render(o: &Observed) -> String {
    policy::render(
        o,
        &Inputs {
            name: "learned-web",
            selector: &sel(),
            sensitive: &sensitive(),
            source: "/var/lib/guard/audit",
        },
    )
}

#[test]
fn the_learned_policy_validates_and_is_stable() {
    let o = observed();
    let text = render(&o);
    policy::check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(text, render(&o.clone()), "same input, same bytes");
    let (policies, diags) = {
        let mut l = crate::rules::Loader::new();
        let sink = crate::policy::register(&mut l);
        l.add_str("learned.yaml", &text);
        let (_, d) = l.finish();
        (sink.lock().expect("sink").clone(), d)
    };
    assert!(diags.is_empty(), "{diags:?}");
    let p = &policies[0];
    assert_eq!(p.name, "learned-web");
    assert_eq!(p.mode, crate::policy::Mode::Detect);
    assert!(p.learned.is_some());
    let allow: Vec<String> = p.exec.allow.iter().flatten().map(|r| r.text()).collect();
    assert_eq!(allow, ["/bin/cat", "/bin/sh"]);
    assert!(p.exec.deny_new_binaries, "it never ran what it wrote");
    let dw: Vec<String> = p.open.deny_write.iter().map(|r| r.text()).collect();
    assert!(dw.contains(&"/etc/**".to_string()), "{dw:?}");
    assert!(dw.contains(&"/usr/**".to_string()), "{dw:?}");
    assert!(!dw.iter().any(|d| d.starts_with("/tmp")), "{dw:?}");
    let dr: Vec<String> = p.open.deny_read.iter().map(|r| r.text()).collect();
    assert_eq!(
        dr,
        ["/etc/sudoers", "/root/.ssh/**"],
        "/etc/shadow was read"
    );
    let allow: Vec<String> = p
        .connect
        .allow
        .iter()
        .flatten()
        .map(|r| r.to_string())
        .collect();
    assert_eq!(allow, ["127.0.0.1/32:8080"]);
    assert!(text.contains("# 2 execs"), "{text}");
}

#[test]
fn what_it_did_opens_the_deny_lists() {
    let mut s = workload_summary();
    s.writes.insert("/etc/app.conf".into(), 3);
    s.writes.insert("/bin/cat".into(), 1);
    let mut o = Observed::default();
    o.add(&s).expect("add");
    let text = render(&o);
    policy::check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(!text.contains("\"/etc/**\""), "{text}");
    assert!(text.contains("# /etc: written (3 writes"), "{text}");
    assert!(!text.contains("deny_new_binaries: true"), "{text}");
    assert!(text.contains("it ran 1 file it wrote"), "{text}");
    // Overflow: no allow list built on incomplete data.
    s.overflow.insert("connects".into(), 5);
    s.overflow.insert("execs".into(), 1);
    let mut o = Observed::default();
    o.add(&s).expect("add");
    let text = render(&o);
    policy::check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert!(!text.contains("allow:"), "{text}");
}

#[test]
fn connects_fold_into_networks_and_ports_where_the_data_says_so() {
    let mut c = std::collections::BTreeMap::new();
    for i in 1..=4u8 {
        c.insert(format!("10.1.2.{i}:443").parse().expect("addr"), 1);
    }
    c.insert("10.9.9.9:443".parse().expect("addr"), 1);
    for p in 1000..1016u16 {
        c.insert(format!("192.168.0.1:{p}").parse().expect("addr"), 2);
    }
    for i in 1..=4u8 {
        c.insert(format!("127.0.0.{i}:80").parse().expect("addr"), 1);
    }
    let rules: Vec<(String, u64)> = fold_connects(&c)
        .into_iter()
        .map(|d| (d.rule, d.events))
        .collect();
    assert!(rules.contains(&("10.1.2.0/24:443".into(), 4)), "{rules:?}");
    assert!(rules.contains(&("10.9.9.9/32:443".into(), 1)), "{rules:?}");
    assert!(rules.contains(&("192.168.0.1/32".into(), 32)), "{rules:?}");
    assert!(
        rules.contains(&("127.0.0.1/32:80".into(), 1)),
        "loopback is never folded: {rules:?}"
    );
    for (r, _) in &rules {
        crate::policy::parse_net_rule(r).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn selectors() {
    let s = Selector::parse("image=busybox*, labels.app=web").expect("short form");
    assert_eq!(s.default_name(), "learned-busybox");
    let y = Selector::parse(r#"{name: "web-*"}"#).expect("yaml form");
    assert!(y.matches(&workload_summary()));
    assert!(
        !Selector::parse("name=api")
            .expect("sel")
            .matches(&workload_summary())
    );
    for (bad, why) in [
        ("", "selects every workload"),
        ("cgroup=/x", "cgroup"),
        ("nmae=web", "unknown field"),
        ("web", "KEY=GLOB"),
        ("container=false", "only containers"),
    ] {
        let e = Selector::parse(bad).expect_err(bad);
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn bad_event_input_names_file_and_line() {
    let dir = std::env::temp_dir().join(format!("guard-learn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let f = dir.join("events.jsonl");
    let line = r#"{"v":1,"type":"execve","time":1,"res":0,"proc":{"pid":7,"name":"x","exepath":"/bin/x"},"container":{"id":"0123456789ab","name":"web-1"}}"#;
    std::fs::write(&f, format!("{line}\n\n{{\"v\":1,\"nope\":true}}\n")).expect("write");
    let e = super::from_events(
        std::slice::from_ref(&f),
        &sel(),
        Default::default(),
        &sensitive(),
    )
    .expect_err("bad line");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{}:3:1: error: not an event", f.display())),
        "{text}"
    );
    std::fs::write(&f, format!("{line}\n")).expect("write");
    let o = super::from_events(
        std::slice::from_ref(&f),
        &sel(),
        Default::default(),
        &sensitive(),
    )
    .expect("events");
    assert_eq!(o.execs.get("/bin/x"), Some(&1));
    let e = super::from_audit(std::slice::from_ref(&f), &sel(), Default::default())
        .expect_err("not audit");
    assert!(e.to_string().contains("audit"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_learned_key_is_checked_like_every_policy_key() {
    let parse = |learned: &str| {
        let mut l = crate::rules::Loader::new();
        let sink = crate::policy::register(&mut l);
        l.add_str(
            "p.yaml",
            &format!("- policy: p\n  workload: {{name: web}}\n  learned: {learned}\n"),
        );
        let (_, d) = l.finish();
        let v = sink.lock().expect("sink").clone();
        (v, d.iter().map(|d| d.to_string()).collect::<Vec<_>>())
    };
    let (v, d) = parse(r#"{from: "2026-12-01T00:00:00Z", to: "2026-12-02T00:00:00Z"}"#);
    assert!(d.is_empty(), "{d:?}");
    let w = v[0].learned.as_ref().expect("learned");
    assert_eq!(w.to, "2026-12-02T00:00:00Z");
    for (bad, want) in [
        (
            r#"{from: "2026-12-01T00:00:00Z", to: yesterday}"#,
            "p.yaml:3:47: error: 'learned.to': \"yesterday\" is not an RFC 3339 time",
        ),
        (
            r#"{from: "2026-12-02T00:00:00Z", to: "2026-12-01T00:00:00Z"}"#,
            "'learned.to' is before 'learned.from'",
        ),
        (r#"{to: "2026-12-01T00:00:00Z"}"#, "'learned' needs 'from'"),
        (
            r#"{from: "2026-12-01T00:00:00Z", to: "2026-12-01T00:00:00Z", by: me}"#,
            "unknown key 'by' in 'learned'",
        ),
        ("now", "'learned' must be a mapping"),
    ] {
        let (v, d) = parse(bad);
        assert!(v.is_empty(), "{bad}: accepted");
        assert!(d.iter().any(|x| x.contains(want)), "{bad}: {d:?}");
    }
}
