//! `fd.*ip.name` at the engine level, with an injected resolver snapshot.

use std::net::IpAddr;

use super::*;
use crate::{
    model::{Event, Fd, FdType, L4Proto},
    rules::fields::dns::DnsNames,
};

const K8S: &str = "kubernetes.default.svc.cluster.local";

fn engine(cond: &str, output: &str) -> (Engine, Vec<Diagnostic>) {
    let mut l = Loader::new();
    l.add_str(
        "t.yaml",
        &format!(
            "- list: api_names\n  items: [other.local, {K8S}]\n- rule: r\n  desc: d\n  condition: evt.type = connect and {cond}\n  output: \"{output}\"\n  priority: NOTICE\n"
        ),
    );
    let (set, diags) = l.finish();
    let e = Engine::new(set, "testhost");
    e.ctx.dns.store(DnsNames::new([
        (
            K8S.into(),
            vec![ip("127.0.0.5"), ip("fd00::5"), ip("10.96.0.1")],
        ),
        ("other.local".into(), vec![ip("10.0.0.9")]),
        ("down.local".into(), vec![]),
    ]));
    (e, diags)
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

/// A connect from `cip` to `sip`; `server`: the event is on the accepting side.
fn conn(cip: &str, sip: &str, server: bool) -> Event {
    let mut ev =
        Event::from_json_line(r#"{"v":1,"time":1,"type":"connect","proc":{"pid":9,"name":"nc"}}"#)
            .expect("event");
    ev.fd = Some(Fd {
        num: 3,
        fd_type: if sip.contains(':') {
            FdType::Ipv6
        } else {
            FdType::Ipv4
        },
        cip: Some(ip(cip)),
        cport: Some(40000),
        sip: Some(ip(sip)),
        sport: Some(443),
        l4proto: Some(L4Proto::Tcp),
        is_server: server,
        ..Default::default()
    });
    ev.prepare().expect("prepare");
    ev
}

fn fires(e: &Engine, ev: &Event) -> bool {
    !e.matches(ev, &mut Matcher::default()).is_empty()
}

#[test]
fn equality_in_and_not_equal_follow_the_snapshot() {
    let cases: &[(&str, &str, bool)] = &[
        (&format!("fd.sip.name = {K8S}"), "127.0.0.5", true),
        (&format!("fd.sip.name = \"{K8S}\""), "10.96.0.1", true),
        (&format!("fd.sip.name = {K8S}"), "127.0.0.6", false),
        (&format!("fd.sip.name = {K8S}"), "fd00::5", true),
        (&format!("fd.sip.name = {K8S}"), "fd00::6", false),
        (&format!("fd.sip.name = {K8S}"), "::ffff:127.0.0.5", true),
        ("fd.sip.name = down.local", "127.0.0.5", false),
        ("fd.sip.name = never.seen", "127.0.0.5", false),
        ("fd.sip.name in (api_names)", "10.0.0.9", true),
        ("fd.sip.name in (api_names)", "127.0.0.5", true),
        ("fd.sip.name in (api_names)", "10.0.0.8", false),
        (
            "fd.sip.name in (down.local, never.seen)",
            "127.0.0.5",
            false,
        ),
        (&format!("fd.sip.name != {K8S}"), "127.0.0.6", true),
        (&format!("fd.sip.name != {K8S}"), "127.0.0.5", false),
        (&format!("not fd.sip.name = {K8S}"), "127.0.0.6", true),
        // Other operators compare the name the address resolves to.
        ("fd.sip.name startswith kubernetes.", "127.0.0.5", true),
        ("fd.sip.name endswith .local", "10.0.0.9", true),
        ("fd.sip.name exists", "10.0.0.8", false),
    ];
    for (cond, sip, want) in cases {
        let (e, diags) = engine(cond, "x");
        assert!(diags.iter().all(|d| !d.is_error()), "{cond}: {diags:?}");
        assert_eq!(
            fires(&e, &conn("172.17.0.2", sip, false)),
            *want,
            "{cond} on {sip}"
        );
    }
}

#[test]
fn client_local_and_remote_names() {
    // Client 127.0.0.5 (the K8S name) connects to 10.0.0.9 (other.local).
    let out = conn("127.0.0.5", "10.0.0.9", false);
    let acc = conn("127.0.0.5", "10.0.0.9", true);
    for (cond, ev, want) in [
        (format!("fd.cip.name = {K8S}"), &out, true),
        (format!("fd.cip.name = {K8S}"), &acc, true),
        ("fd.sip.name = other.local".into(), &acc, true),
        // Connecting side: local is the client, remote the server.
        (format!("fd.lip.name = {K8S}"), &out, true),
        ("fd.rip.name = other.local".into(), &out, true),
        (format!("fd.rip.name = {K8S}"), &out, false),
        // Accepting side: local is the server, remote the client.
        ("fd.lip.name = other.local".into(), &acc, true),
        (format!("fd.rip.name = {K8S}"), &acc, true),
        (format!("fd.lip.name = {K8S}"), &acc, false),
    ] {
        let (e, _) = engine(&cond, "x");
        assert_eq!(
            fires(&e, ev),
            want,
            "{cond} server={}",
            ev.fd.as_ref().is_some_and(|f| f.is_server)
        );
    }
    // No socket: never true, `!=` included.
    let (e, _) = engine(&format!("fd.sip.name != {K8S}"), "x");
    let mut nofd = conn("127.0.0.5", "10.0.0.9", false);
    nofd.fd = None;
    nofd.prepare().expect("prepare");
    assert!(!fires(&e, &nofd));
}

#[test]
fn outputs_print_the_resolved_name_or_na() {
    let (e, _) = engine(
        "fd.sip exists",
        "sip=%fd.sip.name cip=%fd.cip.name lip=%fd.lip.name rip=%fd.rip.name",
    );
    let mut m = Matcher::default();
    let a = e.alerts(&conn("10.0.0.9", "127.0.0.5", false), &mut m);
    assert_eq!(a.len(), 1);
    assert!(
        a[0].output.ends_with(&format!(
            " Notice sip={K8S} cip=other.local lip=other.local rip={K8S}"
        )),
        "{}",
        a[0].output
    );
    assert_eq!(a[0].output_fields["fd.sip.name"], K8S);
    let a = e.alerts(&conn("10.0.0.1", "127.0.0.6", false), &mut m);
    assert!(
        a[0].output
            .ends_with(" Notice sip=<NA> cip=<NA> lip=<NA> rip=<NA>"),
        "{}",
        a[0].output
    );
    assert!(a[0].output_fields["fd.sip.name"].is_null());
}

#[test]
fn names_are_collected_and_noted_once() {
    let mut l = Loader::new();
    l.add_str(
        "t.yaml",
        &format!(
            "- macro: api\n  condition: fd.sip.name = {K8S}\n- rule: a\n  desc: d\n  condition: evt.type = connect and api\n  output: o\n  priority: INFO\n- rule: b\n  desc: d\n  condition: evt.type = connect and not api and fd.rip.name in (b.local, {K8S})\n  output: o\n  priority: INFO\n"
        ),
    );
    let (set, diags) = l.finish();
    assert_eq!(set.dns_names, [Box::<str>::from("b.local"), Box::from(K8S)]);
    let notes: Vec<_> = diags
        .iter()
        .filter(|d| d.msg.contains("host name"))
        .collect();
    assert_eq!(notes.len(), 2, "{diags:?}");
    assert!(notes.iter().all(|d| !d.is_error()));
    assert!(
        notes[0].msg.contains(&format!("'{K8S}'")) && notes[0].msg.contains("the check is false"),
        "{}",
        notes[0].msg
    );
    assert!(set.rules.iter().all(|r| r.unavailable.is_empty()));
    assert_eq!(set.rules[0].status_label(), "active");
    // A value that cannot be a host name is an error.
    let mut l = Loader::new();
    l.add_str(
        "t.yaml",
        "- rule: c\n  desc: d\n  condition: fd.sip.name = \"a b\"\n  output: o\n  priority: INFO\n",
    );
    let (_, diags) = l.finish();
    assert!(
        diags
            .iter()
            .any(|d| d.is_error() && d.msg.contains("not a host name")),
        "{diags:?}"
    );
}
