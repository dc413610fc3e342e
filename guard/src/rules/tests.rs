//! Engine-level tests: conditions compiled from YAML and evaluated on events.

use super::*;
use crate::model::{Ancestor, ArgValue, Container, Event, Fd, FdType, L4Proto};

fn engine(yaml: &str) -> (Engine, Vec<Diagnostic>) {
    let mut l = Loader::new();
    l.add_str("t.yaml", yaml);
    let (set, diags) = l.finish();
    (Engine::new(set, "testhost"), diags)
}

/// One rule named `r` with the given condition, plus shared lists and macros.
fn rule(cond: &str) -> Engine {
    let yaml = format!(
        "- list: shells\n  items: [sh, bash]\n- list: more\n  items: [shells, zsh]\n- macro: spawned\n  condition: evt.type in (execve, execveat)\n- rule: r\n  desc: d\n  condition: {cond}\n  output: out %proc.name\n  priority: WARNING\n"
    );
    let (e, diags) = engine(&yaml);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{cond}: {errors:?}");
    e
}

fn fires(e: &Engine, ev: &Event) -> bool {
    !e.matches(ev, &mut Matcher::default()).is_empty()
}

fn exec(name: &str, args: &[&str]) -> Event {
    let mut ev = Event {
        v: 1,
        time: 10_000_000_000,
        evt_type: "execve".into(),
        ..Default::default()
    };
    ev.proc.pid = 100;
    ev.proc.name = name.into();
    ev.proc.exe = name.into();
    ev.proc.exepath = format!("/bin/{name}");
    ev.proc.args = args.iter().map(|s| s.to_string()).collect();
    ev.proc.user = Some("root".into());
    ev.proc.start_time = 9_000_000_000;
    ev.proc.ancestors = vec![
        Ancestor {
            pid: 50,
            name: "nginx".into(),
            exe: "nginx".into(),
            exepath: "/usr/sbin/nginx".into(),
            args: vec!["-g".into()],
            cmdline: String::new(),
        },
        Ancestor {
            pid: 1,
            name: "containerd-shim".into(),
            ..Default::default()
        },
    ];
    ev.container = Some(Container {
        id: "0123456789ab".into(),
        name: "web".into(),
        image: "docker.io/library/nginx:1.25".into(),
        runtime: "docker".into(),
        labels: [
            ("app".to_string(), "web".to_string()),
            (
                "io.kubernetes.pod.namespace".to_string(),
                "prod".to_string(),
            ),
        ]
        .into(),
        ..Default::default()
    });
    ev.prepare().expect("prepare");
    ev
}

fn open(path: &str, flags: &str) -> Event {
    let mut ev = exec("cat", &[]);
    ev.evt_type = "openat".into();
    ev.res = 3;
    ev.args.insert("flags".into(), ArgValue::Str(flags.into()));
    ev.fd = Some(Fd {
        num: 3,
        fd_type: FdType::File,
        name: path.into(),
        ..Default::default()
    });
    ev.prepare().expect("prepare");
    ev
}

fn connect(ip: &str, port: u16) -> Event {
    let mut ev = exec("curl", &[]);
    ev.evt_type = "connect".into();
    ev.fd = Some(Fd {
        num: 4,
        fd_type: FdType::Ipv4,
        cip: "172.17.0.2".parse().ok(),
        cport: Some(40000),
        sip: ip.parse().ok(),
        sport: Some(port),
        l4proto: Some(L4Proto::Tcp),
        ..Default::default()
    });
    ev.prepare().expect("prepare");
    ev
}

/// The container fields every alert of the test container gets appended (Falco's
/// `append_output`).
const APPENDED: &str =
    " container_id=0123456789ab container_name=web container_image=docker.io/library/nginx:1.25";

#[test]
fn string_operators() {
    let ev = exec("bash", &["-c", "cat /etc/shadow"]);
    let cases = [
        ("proc.name = bash", true),
        ("proc.name == bash", true),
        ("proc.name != bash", false),
        ("proc.name in (shells)", true),
        ("proc.name in (more)", true),
        ("proc.name in (\"shells\")", false),
        ("proc.name intersects (zsh, bash)", true),
        ("proc.cmdline contains /etc/shadow", true),
        ("proc.cmdline icontains /ETC/SHADOW", true),
        ("proc.cmdline startswith \"bash -c\"", true),
        ("proc.exepath endswith /bash", true),
        ("proc.exepath glob '/bin/*'", true),
        ("proc.exepath iglob '/BIN/B*'", true),
        ("proc.exepath glob '/usr/*'", false),
        ("proc.args regex '-c .*shadow'", true),
        ("proc.args regex 'shadow'", false),
        ("proc.exepath pmatch (/usr, /bin)", true),
        ("proc.exepath pmatch (/bi)", false),
        ("proc.name bcontains 6173", true),
        ("proc.name bstartswith 62", true),
        ("proc.name exists", true),
        ("fd.name exists", false),
        ("not fd.name = /x", true),
        ("fd.name != /x", false),
        // Each operator also has a case where it must say no.
        ("proc.name == zsh", false),
        ("proc.name in (zsh, ksh)", false),
        ("proc.name intersects (zsh, ksh)", false),
        ("proc.cmdline contains /etc/passwd", false),
        ("proc.cmdline icontains /ETC/PASSWD", false),
        ("proc.cmdline startswith \"-c bash\"", false),
        ("proc.exepath endswith /sh", false),
        ("proc.exepath iglob '/USR/*'", false),
        ("proc.name bcontains 7a", false),
        ("proc.name bstartswith 61", false),
    ];
    for (cond, want) in cases {
        assert_eq!(fires(&rule(cond), &ev), want, "{cond}");
    }
}

#[test]
fn numbers_bools_ips() {
    let ev = exec("bash", &[]);
    for (cond, want) in [
        ("proc.pid = 100", true),
        ("proc.pid > 99 and proc.pid <= 100", true),
        ("proc.pid < 100", false),
        ("proc.pid >= 101", false),
        ("proc.pid in (1, 100)", true),
        ("proc.pid = 0x64", true),
        ("proc.duration <= 5000000000", true),
        ("proc.tty != 0", false),
        ("user.loginuid = -1", true),
        ("container.privileged = false", true),
        ("container.privileged = true", false),
        ("evt.num = 1", true),
    ] {
        assert_eq!(fires(&rule(cond), &ev), want, "{cond}");
    }
    let c = connect("8.8.8.8", 443);
    for (cond, want) in [
        ("fd.sip = 8.8.8.8", true),
        ("fd.rip = 8.8.8.8 and fd.lip = 172.17.0.2", true),
        ("fd.snet in (\"10.0.0.0/8\", \"8.0.0.0/8\")", true),
        ("fd.net = 172.16.0.0/12", true),
        ("fd.net != 127.0.0.0/8", true),
        ("fd.ip = 8.8.8.8", true),
        ("fd.ip != 8.8.8.8", false),
        (
            "fd.sport = 443 and fd.rport = 443 and fd.lport = 40000",
            true,
        ),
        ("fd.port in (40000)", true),
        (
            "fd.typechar = 4 and fd.type = ipv4 and fd.l4proto = tcp",
            true,
        ),
        ("fd.name = \"172.17.0.2:40000->8.8.8.8:443\"", true),
    ] {
        assert_eq!(fires(&rule(cond), &c), want, "{cond}");
    }
}

#[test]
fn fields_args_transformers_val() {
    let ev = exec("bash", &["-c", "id"]);
    for (cond, want) in [
        (
            "proc.aname[0] = bash and proc.aname[1] = nginx and proc.aname[2] = containerd-shim",
            true,
        ),
        ("proc.aname = containerd-shim", true),
        ("proc.aname = bash", false),
        ("proc.aname != nginx", false),
        ("proc.aname[3] exists", false),
        (
            "proc.pname = nginx and proc.pexepath = /usr/sbin/nginx and proc.pcmdline = \"nginx -g\"",
            true,
        ),
        (
            "container.label[app] = web and container.label.app = web",
            true,
        ),
        ("k8s.ns.name = prod and k8s.pod.name exists", false),
        ("k8s.ns.name = prod", true),
        (
            "container.image.repository = docker.io/library/nginx and container.image.tag = \"1.25\"",
            true,
        ),
        ("toupper(proc.name) = BASH", true),
        ("tolower(toupper(proc.name)) = bash", true),
        ("basename(proc.exepath) = bash", true),
        ("len(proc.name) = 4", true),
        ("len(proc.name) > 4", false),
        ("proc.name = val(proc.pname)", false),
        ("proc.name != val(proc.pname)", true),
        ("proc.exepath endswith val(proc.name)", true),
        ("container.id != host and container.type = docker", true),
        (
            "evt.dir = '<' and evt.source = syscall and evt.hostname = testhost",
            true,
        ),
        ("spawned and evt.type != openat", true),
    ] {
        assert_eq!(fires(&rule(cond), &ev), want, "{cond}");
    }
    let o = open("/etc/shadow", "O_RDWR|O_CLOEXEC");
    for (cond, want) in [
        ("evt.is_open_write = true and evt.is_open_read = true", true),
        (
            "evt.arg.flags contains O_RDWR and evt.arg[flags] contains CLOEXEC",
            true,
        ),
        ("fd.directory = /etc and fd.filename = shadow", true),
        (
            "evt.res = SUCCESS and evt.rawres = 3 and evt.failed = false",
            true,
        ),
        ("spawned", false),
    ] {
        assert_eq!(fires(&rule(cond), &o), want, "{cond}");
    }
    let ro = open("/etc/passwd", "O_RDONLY");
    assert!(!fires(&rule("evt.is_open_write = true"), &ro));
    assert!(fires(&rule("evt.is_open_read = true"), &ro));
}

/// The pod fields a CRI runtime fills: `k8s.pod.label[...]`, `k8s.pod.labels`, `k8s.pod.ip`,
/// and `container.labels`; absent (Docker, the host) they are unknown, so checks are false.
#[test]
fn pod_fields_from_cri() {
    let mut ev = exec("bash", &["-c", "id"]);
    if let Some(c) = ev.container.as_mut() {
        c.pod_labels = [
            ("app".to_owned(), "web".to_owned()),
            ("team".to_owned(), "blue".to_owned()),
        ]
        .into();
        c.pod_ip = Some("10.1.2.3".into());
    }
    ev.prepare().expect("prepare");
    for (cond, want) in [
        (
            "k8s.pod.label[app] = web and k8s.pod.label.team = blue",
            true,
        ),
        ("k8s.pod.label[absent] exists", false),
        ("k8s.pod.labels = \"app:web, team:blue\"", true),
        ("k8s.pod.ip = 10.1.2.3", true),
        (
            "container.labels = \"app:web, io.kubernetes.pod.namespace:prod\"",
            true,
        ),
    ] {
        assert_eq!(fires(&rule(cond), &ev), want, "{cond}");
    }
    // The Docker-shaped event has no pod fields: unknown, never equal.
    let docker = exec("bash", &["-c", "id"]);
    for cond in [
        "k8s.pod.label[app] = web",
        "k8s.pod.labels exists",
        "k8s.pod.ip exists",
    ] {
        assert!(!fires(&rule(cond), &docker), "{cond}");
    }
}

#[test]
fn index_by_event_type() {
    let (e, _) = engine(concat!(
        "- rule: execs\n  desc: d\n  condition: evt.type = execve and proc.name = bash\n  output: o\n  priority: INFO\n",
        "- rule: opens\n  desc: d\n  condition: evt.type in (open, openat) or (evt.type = connect and fd.sport = 1)\n  output: o\n  priority: INFO\n",
        "- rule: any\n  desc: d\n  condition: proc.name exists\n  output: o\n  priority: INFO\n",
        "- rule: notexec\n  desc: d\n  condition: evt.type != execve\n  output: o\n  priority: INFO\n",
    ));
    let id = |n: &str| fields::event_type_id(n) as usize;
    let names = |t: usize| -> Vec<&str> {
        e.rules.by_type[t]
            .iter()
            .map(|&i| e.rules.rules[i as usize].name.as_str())
            .collect()
    };
    assert_eq!(names(id("execve")), ["execs", "any"]);
    assert_eq!(names(id("openat")), ["opens", "any", "notexec"]);
    assert_eq!(names(id("connect")), ["opens", "any", "notexec"]);
    assert_eq!(names(fields::OTHER_TYPE as usize), ["any", "notexec"]);
    // All matching rules fire.
    let mut m = Matcher::default();
    assert_eq!(e.matches(&exec("bash", &[]), &mut m), &[0, 1 + 1]);
}

#[test]
fn exceptions_and_disabled_rules() {
    let (e, diags) = engine(concat!(
        "- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n",
        "  exceptions:\n",
        "    - name: by_name_and_parent\n      fields: [proc.name, proc.pname]\n      comps: [=, in]\n      values:\n        - [bash, [nginx, apache]]\n",
        "    - name: by_name\n      fields: proc.name\n      values: [zsh]\n",
        "- rule: off\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n  enabled: false\n",
    ));
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert!(!fires(&e, &exec("bash", &[])));
    assert!(!fires(&e, &exec("zsh", &[])));
    assert!(fires(&e, &exec("sh", &[])));
    assert_eq!(
        e.rules.get("off").map(|r| r.status.clone()),
        Some(RuleStatus::Disabled)
    );
}

#[test]
fn unavailable_fields_are_false_and_reported_once() {
    let (e, diags) = engine(concat!(
        "- macro: m\n  condition: fd.containername = kubernetes\n",
        "- rule: a\n  desc: d\n  condition: evt.type = connect and m\n  output: o %proc.sid\n  priority: INFO\n",
        "- rule: b\n  desc: d\n  condition: evt.type = connect and not m\n  output: o\n  priority: INFO\n",
    ));
    let warns: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.msg.contains("fd.containername"))
        .collect();
    assert_eq!(warns.len(), 1, "{diags:?}");
    assert!(warns[0].msg.contains("2 rule(s): a; b"), "{}", warns[0].msg);
    assert!(diags.iter().any(|d| d.msg.contains("'proc.sid'")));
    let c = connect("10.0.0.1", 443);
    let names: Vec<&str> = e
        .matches(&c, &mut Matcher::default())
        .iter()
        .map(|&i| e.rules.rules[i as usize].name.as_str())
        .collect();
    assert_eq!(names, ["b"]);
    assert_eq!(
        e.rules.get("a").map(|r| r.unavailable.clone()),
        Some(vec!["fd.containername", "proc.sid"])
    );
}

#[test]
fn seed_aliases_are_accepted_with_warnings() {
    let (e, diags) = engine(
        "- rule: Detect shell spawned in container\n  desc: d\n  condition: >\n    container.runtime = 'docker' or container.runtime = 'cri'\n    and evt.type = 'open' and evt.dir = '<' and comm = 'sh'\n  output: \"Shell spawned in container. Container name: %(container.name)\"\n  priority: Critical\n  source: syscall\n",
    );
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let w: Vec<&str> = diags.iter().map(|d| d.msg.as_str()).collect();
    assert!(w.iter().any(|m| m.contains("container.type")), "{w:?}");
    assert!(w.iter().any(|m| m.contains("proc.name")), "{w:?}");
    // `or` binds looser than `and`: a docker container matches on its own.
    assert!(fires(&e, &exec("bash", &[])));
}

/// DESIGN section 4 lists `fd.dip` and `fd.dport`; Falco has no such fields. guard reads them
/// as the server (destination) side, with a warning naming the Falco field.
#[test]
fn destination_aliases_read_the_server_side_with_a_warning() {
    let (e, diags) = engine(
        "- rule: r\n  desc: d\n  condition: evt.type = connect and fd.dport = 443 and fd.dip = 8.8.8.8\n  output: o %fd.dip:%fd.dport\n  priority: INFO\n",
    );
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let w: Vec<&Diagnostic> = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(
        w[0].msg.contains("fd.dport") && w[0].msg.contains("fd.sport"),
        "{}",
        w[0].msg
    );
    assert_eq!(w[0].pos, Pos { line: 3, col: 37 });
    assert!(
        w[1].msg.contains("fd.dip") && w[1].msg.contains("fd.sip"),
        "{}",
        w[1].msg
    );
    assert!(fires(&e, &connect("8.8.8.8", 443)));
    assert!(!fires(&e, &connect("8.8.8.8", 22)));
    assert!(!fires(&e, &connect("1.1.1.1", 443)));
    let alerts = e.alerts(&connect("8.8.8.8", 443), &mut Matcher::default());
    assert!(
        alerts[0]
            .output
            .ends_with(&format!("o 8.8.8.8:443{APPENDED}")),
        "{}",
        alerts[0].output
    );
}

#[test]
fn alerts_render() {
    let e = rule("proc.name = bash");
    let alerts = e.alerts(&exec("bash", &[]), &mut Matcher::default());
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].rule, "r");
    assert!(
        alerts[0]
            .output
            .ends_with(&format!("Warning out bash{APPENDED}")),
        "{}",
        alerts[0].output
    );
    assert_eq!(alerts[0].hostname, "testhost");
}

#[test]
fn other_sources_are_skipped_not_evaluated() {
    let (e, diags) = engine(
        "- rule: k\n  desc: d\n  condition: ka.verb = create\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
    );
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert!(matches!(
        e.rules.get("k").map(|r| &r.status),
        Some(RuleStatus::Skipped(_))
    ));
}

#[test]
fn skip_if_unknown_filter_demotes_errors() {
    let (e, diags) = engine(
        "- rule: k\n  desc: d\n  condition: proc.bogus = 1\n  output: o\n  priority: INFO\n  skip-if-unknown-filter: true\n",
    );
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert!(matches!(
        e.rules.get("k").map(|r| &r.status),
        Some(RuleStatus::Skipped(_))
    ));
}

/// Events of many shapes and types, for comparing the per-type programs with the conditions
/// they were derived from.
fn variety() -> Vec<Event> {
    let mut base = vec![
        exec("bash", &["-c", "cat /etc/shadow"]),
        exec("nc", &["-e", "/bin/sh"]),
        exec("java", &[]),
        open("/etc/shadow", "O_RDONLY"),
        open("/etc/passwd", "O_WRONLY|O_TRUNC"),
        open("/usr/bin/ls", "O_RDWR"),
        open("relative", "O_RDONLY"),
        connect("10.0.0.1", 443),
        connect("8.8.8.8", 4444),
    ];
    // Missing fields: no fd, no container, no user, no ancestors, failed syscalls.
    for i in 0..base.len() {
        let mut e = base[i].clone();
        e.fd = None;
        e.container = None;
        e.proc.user = None;
        e.proc.ancestors.clear();
        e.res = -2;
        base.push(e);
    }
    let mut out = Vec::new();
    for e in base {
        for t in [
            "execve",
            "openat",
            "open",
            "connect",
            "unlinkat",
            "ptrace",
            "no_such_call",
        ] {
            let mut e = e.clone();
            e.evt_type = t.into();
            e.derived = Default::default();
            e.prepare().expect("prepare");
            out.push(e);
        }
    }
    out
}

#[test]
fn per_type_programs_agree_with_conditions() {
    let macros = concat!(
        "- list: shells\n  items: [sh, bash]\n",
        "- macro: spawned\n  condition: evt.type in (execve, execveat)\n",
        "- macro: opened\n  condition: evt.type in (open, openat) and fd.num >= 0\n",
        "- macro: once\n  condition: proc.name = bash or proc.name = nc\n",
        "- macro: alias\n  condition: once\n",
        "- macro: never\n  condition: evt.num = 0\n",
        "- macro: gone\n  condition: fd.containername = x\n",
    );
    let conds = [
        "spawned and proc.name in (shells)",
        "spawned and not proc.name in (shells)",
        "(spawned or opened) and (once or fd.name startswith /etc or fd.name = /usr/bin/ls)",
        "opened and (fd.name startswith /etc/ or fd.name contains shadow or fd.name pmatch (/usr/bin))",
        "opened and (fd.name != /etc/shadow or fd.name != /etc/passwd)",
        "not spawned and not opened",
        "evt.type != execve and (proc.aname = nginx or proc.aname startswith containerd)",
        "proc.aname != nginx or proc.aname[1] = nginx",
        "alias and not never and not gone",
        "not gone or gone",
        "spawned and (gone or proc.pname exists)",
        "evt.type = connect and (fd.sport = 443 or fd.sport in (4444, 53) or fd.port = 40000)",
        "evt.type = connect and (fd.snet = 10.0.0.0/8 or fd.sip = 8.8.8.8) and not fd.net = 127.0.0.0/8",
        "(evt.type in (unlinkat) and evt.res = ENOENT) or (opened and evt.arg.flags contains O_TRUNC)",
        "tolower(proc.name) = bash or proc.name = BASH or proc.name = val(proc.pname)",
        "container.id != host and (container.image.repository = docker.io/library/nginx or k8s.ns.name = prod)",
        "user.name = root or user.name exists or user.name in (daemon)",
    ];
    let mut yaml = macros.to_string();
    for (i, c) in conds.iter().enumerate() {
        yaml +=
            &format!("- rule: r{i}\n  desc: d\n  condition: {c}\n  output: o\n  priority: INFO\n");
        yaml += &format!(
            "- rule: n{i}\n  desc: d\n  condition: not ({c}) and opened\n  output: o\n  priority: INFO\n"
        );
    }
    let (e, diags) = engine(&yaml);
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let (mut m, mut r) = (Matcher::default(), Matcher::default());
    let mut fired = 0;
    for ev in variety() {
        let fast = e.matches(&ev, &mut m).to_vec();
        let slow = e.matches_unindexed(&ev, &mut r);
        assert_eq!(fast, slow, "{} {:?}", ev.evt_type, ev.fd);
        fired += fast.len();
    }
    assert!(fired > 100, "the events should exercise the rules: {fired}");
}

#[test]
fn per_type_programs_are_simplified() {
    let (e, _) = engine(concat!(
        "- macro: spawned\n  condition: evt.type in (execve, execveat)\n",
        "- macro: once\n  condition: proc.name = a or proc.name = b or proc.name startswith c\n",
        "- rule: r\n  desc: d\n  condition: spawned and once and not fd.containername = x\n  output: o\n  priority: INFO\n",
    ));
    let t = fields::event_type_id("execve") as usize;
    let [(0, node)] = &*e.rules.plans[t] else {
        panic!("{:?}", e.rules.plans[t]);
    };
    // The type test and the unavailable field fold away, the macro used once is inlined, and
    // the three tests on proc.name become one.
    let eval::Node::Check(c) = node else {
        panic!("{node:?}")
    };
    let eval::Test::Any(tests) = &c.test else {
        panic!("{:?}", c.test)
    };
    assert!(
        matches!(&tests[..], [eval::Test::StrIn(s), eval::Test::StartsWith(_)] if s.len() == 2)
    );
    assert!(e.rules.plans[fields::event_type_id("openat") as usize].is_empty());
}

/// Fuzzing finding (fuzz/regressions/rules_load/macro-doubling.yaml): each macro used its
/// predecessor twice, so inlining doubled per level and 30 levels never finished compiling.
#[test]
fn exponential_macro_expansion_is_an_error_not_a_hang() {
    let mut yaml = String::from("- macro: m0\n  condition: proc.name = a\n");
    for i in 1..=30 {
        yaml.push_str(&format!(
            "- macro: m{i}\n  condition: (m{} or m{})\n",
            i - 1,
            i - 1
        ));
    }
    yaml.push_str(
        "- rule: r\n  desc: d\n  condition: evt.type = execve and m30\n  output: o\n  priority: WARNING\n- rule: ok\n  desc: d\n  condition: evt.type = execve and m3\n  output: o\n  priority: WARNING\n",
    );
    let t0 = std::time::Instant::now();
    let (e, diags) = engine(&yaml);
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(
        errors.iter().any(|d| d.contains("condition too large")),
        "{errors:?}"
    );
    let status = |n: &str| e.rules.get(n).map(|r| r.status.clone());
    assert_eq!(status("r"), Some(RuleStatus::Invalid));
    // A small use of the same macros still compiles and matches.
    assert_eq!(status("ok"), Some(RuleStatus::Active));
    assert!(fires(&e, &exec("a", &[])));
    // Debug build, shared CI cores: seconds would mean the doubling is back.
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        t0.elapsed()
    );
}

/// The same doubling through nested lists (fuzz/regressions/rules_load/list-doubling.yaml).
#[test]
fn exponential_list_expansion_is_an_error_not_a_hang() {
    let mut yaml = String::from("- list: l0\n  items: [a, b]\n");
    for i in 1..=30 {
        yaml.push_str(&format!(
            "- list: l{i}\n  items: [l{}, l{}]\n",
            i - 1,
            i - 1
        ));
    }
    yaml.push_str(
        "- rule: r\n  desc: d\n  condition: evt.type = execve and proc.name in (l30)\n  output: o\n  priority: WARNING\n",
    );
    let (e, diags) = engine(&yaml);
    assert!(
        diags
            .iter()
            .any(|d| d.is_error() && d.to_string().contains("list too large")),
        "{diags:?}"
    );
    assert_eq!(
        e.rules.get("r").map(|r| r.status.clone()),
        Some(RuleStatus::Invalid)
    );
}

/// Fuzzing finding (fuzz/regressions/rules_load/yaml-alias-bomb.yaml): anchors each used ten
/// times by the next expand a 500-byte file to 10^10 nodes; serde_yaml only bounds the number
/// of alias jumps. Rejected before parsing, with an error.
#[test]
fn yaml_alias_bomb_is_an_error_not_a_hang() {
    let mut yaml = String::from("- list: l0\n  items: &a0 [x,x,x,x,x,x,x,x,x,x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(",");
        yaml.push_str(&format!("- list: l{i}\n  items: &a{i} [{refs}]\n"));
    }
    let t0 = std::time::Instant::now();
    let (_, diags) = engine(&yaml);
    assert!(
        diags
            .iter()
            .any(|d| d.is_error() && d.to_string().contains("too large once its aliases")),
        "{diags:?}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t0.elapsed()
    );
    // Modest alias use still loads.
    let (e, diags) = engine(
        "- list: base\n  items: &b [sh, bash]\n- list: more\n  items: *b\n- rule: r\n  desc: d\n  condition: evt.type = execve and proc.name in (more)\n  output: o\n  priority: WARNING\n",
    );
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    assert!(fires(&e, &exec("bash", &[])));
}

/// Falco's legacy `append: true` and `override: {exceptions: append}` add values to an exception
/// of the same name: the appended entry carries only `name` and `values`.
#[test]
fn appended_exception_values_extend_the_named_exception() {
    let base = concat!(
        "- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n",
        "  exceptions:\n    - name: pn\n      fields: [proc.name, proc.pname]\n      values:\n        - [bash, nginx]\n",
        "    - name: one\n      fields: proc.name\n      values: [sh]\n",
    );
    for how in ["  append: true\n", "  override:\n    exceptions: append\n"] {
        let (e, diags) = engine(&format!(
            "{base}- rule: r\n  exceptions:\n    - name: pn\n      values:\n        - [zsh, nginx]\n    - name: one\n      values: [ksh]\n    - name: extra\n      fields: proc.name\n      values: [dash]\n{how}"
        ));
        assert!(diags.iter().all(|d| !d.is_error()), "{how}: {diags:?}");
        let r = e.rules.get("r").expect("rule");
        assert_eq!(r.status, RuleStatus::Active);
        for quiet in ["bash", "zsh", "sh", "ksh", "dash"] {
            assert!(!fires(&e, &exec(quiet, &[])), "{how}: {quiet} is excepted");
        }
        assert!(fires(&e, &exec("csh", &[])), "{how}");
        // The pair exception still needs both fields: zsh with another parent fires.
        let mut other_parent = exec("zsh", &[]);
        other_parent.proc.ancestors[0].name = "apache".into();
        other_parent.derived = Default::default();
        other_parent.prepare().expect("prepare");
        assert!(fires(&e, &other_parent), "{how}");
    }
}

#[test]
fn appended_exceptions_follow_falcos_restrictions() {
    let base = "- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n  exceptions:\n    - name: pn\n      fields: [proc.name]\n";
    let errs = |extra: &str| -> Vec<String> {
        engine(&format!("{base}{extra}"))
            .1
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| d.msg)
            .collect()
    };
    let e = errs(
        "- rule: r\n  exceptions:\n    - name: pn\n      fields: [proc.pname]\n      values: [[a]]\n  append: true\n",
    );
    assert_eq!(
        e,
        ["exception 'pn': cannot append 'fields' to an existing exception, only values"]
    );
    let e = errs(
        "- rule: r\n  exceptions:\n    - name: pn\n      comps: [startswith]\n      values: [[a]]\n  append: true\n",
    );
    assert_eq!(
        e,
        ["exception 'pn': cannot append 'comps' to an existing exception, only values"]
    );
    let e =
        errs("- rule: r\n  exceptions:\n    - name: new\n      values: [[a]]\n  append: true\n");
    assert_eq!(e, ["exception 'new' needs 'fields'"]);
    let e = errs(
        "- rule: r\n  exceptions:\n    - name: new\n      fields: [proc.name]\n  append: true\n",
    );
    assert_eq!(e, ["exception 'new': an appended exception needs 'values'"]);
    let e = errs(
        "- rule: s\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n  exceptions:\n    - name: x\n      fields: proc.name\n      comps: startswith\n      values: [a]\n",
    );
    assert_eq!(
        e,
        [
            "exception 'x': when 'fields' is a single field, 'comps' must be in, pmatch or intersects"
        ]
    );
}

/// `override: replace` on lists, macros and rule keys, and the errors Falco gives around
/// append/override/enable-only.
#[test]
fn override_replace_and_its_errors() {
    let (e, diags) = engine(concat!(
        "- list: l\n  items: [bash]\n",
        "- list: l\n  items: [zsh]\n  override:\n    items: replace\n",
        "- macro: m\n  condition: proc.name in (l)\n",
        "- macro: m\n  condition: proc.name = csh\n  override:\n    condition: replace\n",
        "- rule: by_list\n  desc: d\n  condition: evt.type = execve and proc.name in (l)\n  output: o\n  priority: INFO\n",
        "- rule: by_macro\n  desc: d\n  condition: evt.type = execve and m\n  output: o\n  priority: INFO\n  tags: [a]\n",
        "  exceptions:\n    - name: x\n      fields: proc.name\n      values: [csh]\n",
        "- rule: by_macro\n  desc: d2\n  tags: [b]\n  enabled: true\n  exceptions:\n    - name: y\n      fields: proc.pname\n      values: [apache]\n",
        "  override:\n    desc: replace\n    tags: replace\n    enabled: replace\n    exceptions: replace\n",
    ));
    assert!(diags.iter().all(|d| !d.is_error()), "{diags:?}");
    let names = |ev: &Event| -> Vec<String> {
        e.matches(ev, &mut Matcher::default())
            .iter()
            .map(|&i| e.rules.rules[i as usize].name.clone())
            .collect()
    };
    assert_eq!(names(&exec("zsh", &[])), ["by_list"]);
    assert!(names(&exec("bash", &[])).is_empty());
    // The replaced exceptions no longer except csh.
    assert_eq!(names(&exec("csh", &[])), ["by_macro"]);
    let r = e.rules.get("by_macro").expect("rule");
    assert_eq!(
        (r.desc.as_str(), r.tags.clone()),
        ("d2", vec!["b".to_string()])
    );

    let rule =
        "- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n";
    for (extra, want) in [
        (
            "- rule: r\n  condition: and proc.name = a\n  append: true\n  override:\n    condition: append\n",
            "rule 'r': use either 'append' or 'override', not both",
        ),
        (
            "- list: l\n  items: [a]\n- list: l\n  items: [b]\n  append: true\n  override:\n    items: append\n",
            "list 'l': use either 'append' or 'override', not both",
        ),
        (
            "- rule: nope\n  enabled: false\n",
            "rule 'nope': enabled-only item for a rule that is not defined",
        ),
        (
            "- rule: nope\n  condition: x\n  override:\n    condition: append\n",
            "rule 'nope': override of a rule that is not defined",
        ),
        (
            "- rule: r\n  priority: ERROR\n  append: true\n",
            "rule 'r': 'priority' cannot be appended",
        ),
        (
            "- rule: r\n  priority: ERROR\n  override:\n    priority: append\n",
            "key 'priority' cannot be overridden with 'append'",
        ),
        (
            "- list: nope\n  items: [a]\n  append: true\n",
            "list 'nope': append/override of a list that is not defined",
        ),
        (
            "- macro: nope\n  condition: a\n  override:\n    condition: replace\n",
            "macro 'nope': append/override of a macro that is not defined",
        ),
    ] {
        let (_, d) = engine(&format!("{rule}{extra}"));
        let errors: Vec<&str> = d
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.msg.as_str())
            .collect();
        assert_eq!(errors.len(), 1, "{extra}: {errors:?}");
        assert!(errors[0].contains(want), "{extra}: {errors:?}");
    }
}

/// A rule file that only toggles: the enable-only item turns a rule off and back on.
#[test]
fn enable_only_item_toggles_an_existing_rule() {
    let rule =
        "- rule: r\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: INFO\n";
    let (off, _) = engine(&format!("{rule}- rule: r\n  enabled: false\n"));
    assert_eq!(
        off.rules.get("r").map(|r| r.status.clone()),
        Some(RuleStatus::Disabled)
    );
    assert!(!fires(&off, &exec("bash", &[])));
    let (on, _) = engine(&format!(
        "{rule}- rule: r\n  enabled: false\n- rule: r\n  enabled: true\n"
    ));
    assert!(fires(&on, &exec("bash", &[])));
}

/// All eight priorities, spelt as Falco's files spell them (upper case) and with the aliases.
#[test]
fn every_priority_level_loads() {
    use crate::alert::Priority;
    let mut yaml = String::new();
    let levels = [
        ("EMERGENCY", Priority::Emergency),
        ("ALERT", Priority::Alert),
        ("CRITICAL", Priority::Critical),
        ("ERROR", Priority::Error),
        ("WARNING", Priority::Warning),
        ("NOTICE", Priority::Notice),
        ("INFORMATIONAL", Priority::Informational),
        ("DEBUG", Priority::Debug),
        ("info", Priority::Informational),
        ("Warn", Priority::Warning),
    ];
    for (i, (p, _)) in levels.iter().enumerate() {
        yaml.push_str(&format!(
            "- rule: r{i}\n  desc: d\n  condition: evt.type = execve\n  output: o\n  priority: {p}\n"
        ));
    }
    let (e, diags) = engine(&yaml);
    assert!(diags.is_empty(), "{diags:?}");
    for (i, (p, want)) in levels.iter().enumerate() {
        let r = e.rules.get(&format!("r{i}")).expect("rule");
        assert_eq!(r.priority, *want, "{p}");
    }
    let alerts = e.alerts(&exec("bash", &[]), &mut Matcher::default());
    assert_eq!(alerts.len(), levels.len());
    assert!(
        alerts[0]
            .output
            .ends_with(&format!(": Emergency o{APPENDED}")),
        "{}",
        alerts[0].output
    );
}

fn write_event(data: &str, len: i64) -> Event {
    let mut ev = exec("sh", &[]);
    ev.evt_type = "write".into();
    ev.res = len;
    ev.args.insert("data".into(), ArgValue::Str(data.into()));
    ev.fd = Some(Fd {
        num: 1,
        ..Default::default()
    });
    ev.buffer = Some(crate::model::Buffer {
        data: data.into(),
        len,
    });
    ev.prepare().expect("prepare");
    ev
}

/// `evt.buffer` compares on the bytes as text, `evt.buflen` is the full count; an event with
/// no buffer (an open) has neither (`<NA>`: checks false, `exists` false). Outputs print the
/// buffer as Falco does, every non-printable character a `.`.
#[test]
fn buffer_fields() {
    let w = write_event("GUARD_MAGIC\n\u{1}x", 300);
    for (cond, want) in [
        ("evt.buffer contains GUARD_MAGIC", true),
        ("evt.buffer contains OTHER", false),
        ("evt.buffer startswith GUARD and evt.buflen = 300", true),
        ("evt.buflen < 300", false),
        ("evt.arg.data contains MAGIC and fd.num = 1", true),
        ("evt.buffer exists and evt.buflen exists", true),
    ] {
        assert_eq!(fires(&rule(cond), &w), want, "{cond}");
    }
    let o = open("/etc/shadow", "O_RDONLY");
    for cond in [
        "evt.buffer exists",
        "evt.buflen exists",
        "evt.buflen >= 0",
        "evt.buffer contains a",
    ] {
        assert!(!fires(&rule(cond), &o), "{cond}");
    }
    assert!(fires(&rule("not evt.buffer exists"), &o));
    let hello = write_event("hello world", 11);
    assert!(fires(&rule("evt.buffer = \"hello world\""), &hello));
    assert!(!fires(&rule("evt.buffer = hello"), &hello));
    let (e, _) = engine(
        "- rule: r\n  desc: d\n  condition: evt.type = write\n  output: b=%evt.buffer l=%evt.buflen d=%evt.arg.data\n  priority: INFO\n",
    );
    let alerts = e.alerts(&w, &mut Matcher::default());
    assert_eq!(alerts.len(), 1);
    assert!(
        alerts[0]
            .output
            .contains("b=GUARD_MAGIC..x l=300 d=GUARD_MAGIC..x"),
        "{}",
        alerts[0].output
    );
    assert_eq!(
        alerts[0].output_fields.get("evt.buffer"),
        Some(&serde_json::json!("GUARD_MAGIC..x"))
    );
    assert_eq!(
        alerts[0].output_fields.get("evt.buflen"),
        Some(&serde_json::json!(300))
    );
    let na = e.alerts(
        &{
            let mut x = o.clone();
            x.evt_type = "write".into();
            x.prepare().expect("prepare");
            x
        },
        &mut Matcher::default(),
    );
    assert!(na[0].output.contains("b=<NA> l=<NA>"), "{}", na[0].output);
}

/// Falco's `outbound` macro through its sendto/sendmsg branch: an unconnected UDP socket sending to
/// a public address under a new name is outbound; the same to an RFC 1918 address, on a
/// connected socket, under an unchanged name, or over TCP, is not.
#[test]
fn falco_outbound_sendto_branch() {
    let mut l = Loader::new();
    l.add_path(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/falco-rules/falco_rules.yaml"),
    );
    l.add_str(
        "t.yaml",
        "- rule: out\n  desc: d\n  condition: outbound and evt.type in (sendto, sendmsg)\n  output: o\n  priority: INFO\n",
    );
    let (set, diags) = l.finish();
    assert!(diags.iter().all(|d| !d.is_error()));
    let e = Engine::new(set, "testhost");
    let send = |ip: &str, proto: L4Proto, connected: bool, changed: bool| {
        let mut ev = connect(ip, 4444);
        ev.evt_type = "sendto".into();
        ev.res = 5;
        if let Some(f) = ev.fd.as_mut() {
            f.cip = None;
            f.cport = None;
            f.l4proto = Some(proto);
            f.connected = Some(connected);
            f.name_changed = Some(changed);
        }
        ev.prepare().expect("prepare");
        ev
    };
    let hit = |ev: &Event| -> bool {
        e.matches(ev, &mut Matcher::default())
            .iter()
            .any(|&i| e.rules.rules[i as usize].name == "out")
    };
    assert!(hit(&send("203.0.113.7", L4Proto::Udp, false, true)));
    let mut msg = send("203.0.113.7", L4Proto::Udp, false, true);
    msg.evt_type = "sendmsg".into();
    msg.prepare().expect("prepare");
    assert!(hit(&msg));
    assert!(!hit(&send("10.1.2.3", L4Proto::Udp, false, true)));
    assert!(!hit(&send("203.0.113.7", L4Proto::Udp, true, true)));
    assert!(!hit(&send("203.0.113.7", L4Proto::Udp, false, false)));
    assert!(!hit(&send("203.0.113.7", L4Proto::Tcp, false, true)));
    // Only the server end known (as the capture stage builds a sendto or a connect): `fd.ip`
    // has that one value, so `fd.ip != ...` checks it rather than failing on the absent end.
    assert!(fires(
        &rule("fd.ip != \"0.0.0.0\" and fd.port = 4444"),
        &send("203.0.113.7", L4Proto::Udp, false, true)
    ));
    assert!(!fires(
        &rule("fd.ip != \"203.0.113.7\""),
        &send("203.0.113.7", L4Proto::Udp, false, true)
    ));
}
