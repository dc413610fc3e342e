//! Rule engine throughput: a busy-host mix of events through guard's policies plus Falco's
//! stable ruleset, on one core. Reports events/s (criterion "elements").
//!
//! Mix (per 100 events): 62 openat (55 reads, 7 writes), 18 connect, 10 execve, 6 close-like
//! events no rule indexes (close, read), 4 dup/socket/ptrace/setuid.

use std::{hint::black_box, path::Path};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guard::{
    model::{Ancestor, ArgValue, Container, Event, Fd, FdType, L4Proto},
    rules::{Engine, Loader, Matcher},
};

fn engine() -> Engine {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut l = Loader::new();
    l.add_path(&root.join("../shared/falco-rules/falco_rules.yaml"));
    l.add_path(&root.join("policies"));
    let (set, diags) = l.finish();
    let errors: Vec<String> = diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| d.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    Engine::new(set, "bench")
}

fn base(i: usize, evt_type: &str, name: &str, in_container: bool) -> Event {
    let mut ev = Event {
        v: 1,
        num: i as u64 + 1,
        time: 1_767_225_600_000_000_000 + i as u64 * 1000,
        evt_type: evt_type.into(),
        ..Default::default()
    };
    let p = &mut ev.proc;
    p.pid = 1000 + (i % 500) as u32;
    p.name = name.into();
    p.exe = format!("/usr/bin/{name}");
    p.exepath = p.exe.clone();
    p.args = vec!["--config".into(), "/etc/app/app.conf".into()];
    p.uid = if i.is_multiple_of(3) { 0 } else { 1000 };
    p.user = Some(if p.uid == 0 {
        "root".into()
    } else {
        "app".into()
    });
    p.start_time = ev.time - 3_600_000_000_000;
    p.ancestors = vec![
        Ancestor {
            pid: 900,
            name: "java".into(),
            exe: "/usr/bin/java".into(),
            exepath: "/usr/lib/jvm/bin/java".into(),
            args: vec!["-jar".into(), "app.jar".into()],
            cmdline: String::new(),
        },
        Ancestor {
            pid: 800,
            name: "containerd-shim".into(),
            ..Default::default()
        },
        Ancestor {
            pid: 1,
            name: "systemd".into(),
            ..Default::default()
        },
    ];
    if in_container {
        ev.container = Some(Container {
            id: format!("{:012x}", i % 40),
            name: "svc".into(),
            image: "registry.local/team/svc:2.3".into(),
            runtime: "containerd".into(),
            ..Default::default()
        });
    }
    ev
}

fn mix() -> Vec<Event> {
    let names = [
        "java",
        "nginx",
        "python3",
        "node",
        "postgres",
        "redis-server",
        "sh",
        "bash",
        "curl",
        "cat",
    ];
    let files = [
        "/var/lib/app/data.db",
        "/etc/ld.so.cache",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/proc/self/status",
        "/srv/www/index.html",
        "/etc/passwd",
        "/tmp/upload.bin",
        "/var/log/app.log",
    ];
    let mut out = Vec::new();
    for i in 0..10_000 {
        let slot = i % 100;
        let name = names[(i * 7) % names.len()];
        let in_container = i % 4 != 0;
        let mut ev = match slot {
            0..=61 => {
                let mut ev = base(i, "openat", name, in_container);
                let write = slot < 7;
                ev.args.insert(
                    "flags".into(),
                    ArgValue::Str(if write {
                        "O_WRONLY|O_CREAT|O_APPEND".into()
                    } else {
                        "O_RDONLY|O_CLOEXEC".into()
                    }),
                );
                ev.res = 5;
                ev.fd = Some(Fd {
                    num: 5,
                    fd_type: FdType::File,
                    name: files[i % files.len()].into(),
                    ..Default::default()
                });
                ev
            }
            62..=79 => {
                let mut ev = base(i, "connect", name, in_container);
                ev.fd = Some(Fd {
                    num: 7,
                    fd_type: FdType::Ipv4,
                    cip: "10.1.0.5".parse().ok(),
                    cport: Some(40000),
                    sip: if i % 2 == 0 {
                        "10.1.0.9".parse().ok()
                    } else {
                        "93.184.216.34".parse().ok()
                    },
                    sport: Some([443, 5432, 6379, 8080][i % 4]),
                    l4proto: Some(L4Proto::Tcp),
                    ..Default::default()
                });
                ev
            }
            80..=89 => {
                let mut ev = base(i, "execve", name, in_container);
                ev.proc.args = vec!["-c".into(), "run-task --id 42".into()];
                ev
            }
            90..=95 => base(
                i,
                if slot % 2 == 0 { "close" } else { "read" },
                name,
                in_container,
            ),
            96 => {
                let mut ev = base(i, "dup2", name, in_container);
                ev.res = 1;
                ev.fd = Some(Fd {
                    num: 3,
                    fd_type: FdType::Pipe,
                    ..Default::default()
                });
                ev
            }
            97 => {
                let mut ev = base(i, "socket", name, in_container);
                ev.args
                    .insert("domain".into(), ArgValue::Str("AF_INET".into()));
                ev
            }
            98 => {
                let mut ev = base(i, "ptrace", name, in_container);
                ev.args
                    .insert("request".into(), ArgValue::Str("PTRACE_PEEKDATA".into()));
                ev
            }
            _ => {
                let mut ev = base(i, "setuid", name, in_container);
                ev.args.insert("uid".into(), ArgValue::Int(1000));
                ev
            }
        };
        ev.prepare().expect("valid event");
        out.push(ev);
    }
    out
}

fn bench(c: &mut Criterion) {
    let engine = engine();
    let events = mix();
    let mut m = Matcher::default();
    let alerts: usize = events.iter().map(|e| engine.matches(e, &mut m).len()).sum();
    eprintln!(
        "{} rules active, {} events in the mix, {alerts} matches per pass",
        engine.rules.active().count(),
        events.len()
    );
    // The machine is shared, so wall time understates one core's rate: also report events per
    // second of this thread's own CPU time.
    // CLOCK_THREAD_CPUTIME_ID has ns resolution; getrusage is tick-granular (4 ms), which made
    // the per-type figures of the small event types read 0 or 400 ns.
    let cpu = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into the struct we own.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    };
    let (t0, passes) = (cpu(), 300);
    for _ in 0..passes {
        for e in &events {
            black_box(engine.matches(black_box(e), &mut m).len());
        }
    }
    let secs = cpu() - t0;
    eprintln!(
        "CPU-time rate: {:.0} events/s ({} events in {secs:.3} s of thread CPU time)",
        (passes * events.len()) as f64 / secs,
        passes * events.len()
    );
    // Where the time goes: CPU time per event type (same engine, same events).
    let mut types: Vec<&str> = events.iter().map(|e| e.evt_type.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    for t in types {
        let subset: Vec<&Event> = events.iter().filter(|e| e.evt_type == t).collect();
        let t0 = cpu();
        for _ in 0..100 {
            for e in &subset {
                black_box(engine.matches(black_box(e), &mut m).len());
            }
        }
        let ns = (cpu() - t0) * 1e9 / (100 * subset.len()) as f64;
        eprintln!(
            "  {t:>8}: {:4} events/pass, {ns:6.0} ns/event",
            subset.len()
        );
    }
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("evaluate_busy_host_mix", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for e in &events {
                n += engine.matches(black_box(e), &mut m).len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
