//! Host layer, kernel side of capture: every traced syscall, triggered by a child in its own
//! cgroup (the agent runs with `--only-cgroup`), arrives with its key fields and result.

use std::{
    ffi::CString,
    net::{TcpListener, UdpSocket},
    os::unix::net::UnixListener,
    time::Duration,
};

use guard_tests::harness::{
    Agent, TestCgroup, agent_lock, can_run, fork_in_cgroup, is_root, wait_child,
};
use serde_json::Value;

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn find(evs: &[Value], pred: impl Fn(&Value) -> bool) -> Option<&Value> {
    evs.iter().find(|v| pred(v))
}

#[test]
fn every_traced_syscall_is_captured_with_its_fields() {
    if !can_run(is_root(), "needs root to load eBPF programs") {
        return;
    }
    let _lock = agent_lock();
    let cg = TestCgroup::new("capture");
    let dir = tempdir();
    let dirs = dir.to_str().expect("utf8 tmp");
    std::fs::write(dir.join("victim"), b"x").expect("write victim");

    let listener = TcpListener::bind("127.0.0.1:0").expect("listen v4");
    let port = listener.local_addr().expect("addr").port();
    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    // No IPv6 loopback here: the v6 checks cannot run, which CI does not accept.
    let l6 = TcpListener::bind("[::1]:0")
        .map_err(|e| {
            can_run(
                false,
                &format!("IPv6 loopback [::1] unavailable ({e}): v6 connect checks"),
            )
        })
        .ok();
    let port6 = l6.as_ref().map(|l| l.local_addr().expect("addr6").port());
    let upath = dir.join("u.sock");
    let _ul = UnixListener::bind(&upath).expect("unix listen");
    let _udp = UdpSocket::bind("127.0.0.1:0").expect("udp");

    // Everything the child touches, prepared before fork (the child may not allocate).
    let etc = c("/etc");
    let shadow = c("shadow");
    let missing = c("/nonexistent/guard-test");
    let append = c(&format!("{dirs}/victim"));
    let renamed = c(&format!("{dirs}/renamed"));
    let linkp = c(&format!("{dirs}/hard"));
    let symp = c(&format!("{dirs}/sym"));
    let mnt = c(&format!("{dirs}/mnt"));
    std::fs::create_dir(dir.join("mnt")).expect("mkdir mnt");
    let tmpfs = c("tmpfs");
    let none = c("none");
    let root = c("/");
    let memfd_name = c("guard-memfd");
    let module_params = c("guard=1");
    let not_a_module = b"not an ELF module";
    let true_bin = c("/bin/true");
    let marker = c("guard-marker-arg");
    let argv = [true_bin.as_ptr(), marker.as_ptr(), std::ptr::null()];
    let env: [*const libc::c_char; 1] = [std::ptr::null()];
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes([127, 0, 0, 1]),
        },
        sin_zero: [0; 8],
    };
    let sin_closed = libc::sockaddr_in {
        sin_port: closed_port.to_be(),
        ..sin
    };
    let sin6 = libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as u16,
        sin6_port: port6.unwrap_or(1).to_be(),
        sin6_flowinfo: 0,
        sin6_addr: libc::in6_addr {
            s6_addr: std::net::Ipv6Addr::LOCALHOST.octets(),
        },
        sin6_scope_id: 0,
    };
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    sun.sun_family = libc::AF_UNIX as u16;
    for (d, s) in sun
        .sun_path
        .iter_mut()
        .zip(upath.to_str().expect("utf8").bytes())
    {
        *d = s as libc::c_char;
    }

    let agent = Agent::start(&["--only-cgroup", cg.path.to_str().expect("utf8")]);
    let child = fork_in_cgroup(&cg, || unsafe {
        // SAFETY (whole body): raw syscalls on buffers prepared before the fork.
        libc::chdir(etc.as_ptr());
        let fd = libc::openat(libc::AT_FDCWD, shadow.as_ptr(), libc::O_RDONLY);
        libc::close(fd);
        libc::open(missing.as_ptr(), libc::O_RDONLY);
        // The legacy open(2) itself (glibc's open() uses openat).
        let fd = libc::syscall(
            libc::SYS_open,
            append.as_ptr(),
            libc::O_WRONLY | libc::O_APPEND,
            0,
        ) as i32;
        libc::close(fd);
        for addr in [&sin, &sin_closed] {
            let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            libc::connect(
                s,
                addr as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_in>() as u32,
            );
            libc::close(s);
        }
        let s = libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0);
        libc::connect(
            s,
            &sin6 as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_in6>() as u32,
        );
        libc::close(s);
        let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        libc::connect(
            s,
            &sun as *const _ as *const libc::sockaddr,
            size_of::<libc::sockaddr_un>() as u32,
        );
        let d = libc::dup(s);
        libc::dup2(s, 50);
        libc::dup3(s, 51, libc::O_CLOEXEC);
        libc::close(d);
        libc::close(s);
        libc::setgid(0);
        libc::setuid(0);
        libc::setresuid(u32::MAX, u32::MAX, 0);
        // An attach to a pid that cannot exist: the event without stopping anything.
        libc::ptrace(libc::PTRACE_ATTACH, 0x3fff_fff0, 0, 0);
        libc::fchmodat(libc::AT_FDCWD, append.as_ptr(), 0o640, 0);
        libc::chmod(append.as_ptr(), 0o600);
        libc::linkat(
            libc::AT_FDCWD,
            append.as_ptr(),
            libc::AT_FDCWD,
            linkp.as_ptr(),
            0,
        );
        libc::symlinkat(append.as_ptr(), libc::AT_FDCWD, symp.as_ptr());
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            append.as_ptr(),
            libc::AT_FDCWD,
            renamed.as_ptr(),
            0,
        );
        libc::unlinkat(libc::AT_FDCWD, linkp.as_ptr(), 0);
        let m = libc::memfd_create(memfd_name.as_ptr(), libc::MFD_CLOEXEC);
        libc::close(m);
        libc::syscall(libc::SYS_bpf, 0xfff, 0usize, 0usize);
        // Module loads fail here (not a module, or no CONFIG_MODULES) but are still captured.
        let fd = libc::open(renamed.as_ptr(), libc::O_RDONLY);
        libc::syscall(libc::SYS_finit_module, fd, module_params.as_ptr(), 0);
        libc::close(fd);
        libc::syscall(
            libc::SYS_init_module,
            not_a_module.as_ptr(),
            not_a_module.len(),
            module_params.as_ptr(),
        );
        if libc::unshare(libc::CLONE_NEWNS) == 0 {
            libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            );
            libc::mount(
                none.as_ptr(),
                mnt.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            );
        }
        let pid = libc::fork();
        if pid == 0 {
            libc::execve(true_bin.as_ptr(), argv.as_ptr(), env.as_ptr());
            libc::_exit(127);
        }
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
        0
    });
    assert_eq!(wait_child(child), 0, "child failed");
    let evs = agent.collect_until(Duration::from_secs(20), |v| {
        v["kind"] == "exit" && v["pid"] == child && v["tid"] == child
    });
    assert!(
        find(&evs, |v| v["kind"] == "exit" && v["pid"] == child).is_some(),
        "no exit event for the child; got {} events",
        evs.len()
    );
    let mine = |kind: &str| -> Vec<&Value> {
        evs.iter()
            .filter(|v| v["kind"] == kind && v["pid"] == child)
            .collect()
    };

    // chdir + relative openat: the raw path and the cwd it is relative to.
    let chdir = mine("chdir");
    assert_eq!(chdir[0]["path"]["text"], "/etc");
    let opens = mine("open");
    let sh = opens
        .iter()
        .find(|v| v["path"]["text"] == "shadow")
        .expect("open shadow");
    assert_eq!(sh["syscall"], "openat");
    assert_eq!(sh["dirfd"], libc::AT_FDCWD);
    assert_eq!(
        sh["flags"].as_u64().map(|f| f & 3),
        Some(libc::O_RDONLY as u64)
    );
    assert!(sh["ret"].as_i64().unwrap_or(-1) >= 0, "{sh}");
    let miss = opens
        .iter()
        .find(|v| v["path"]["text"] == "/nonexistent/guard-test")
        .expect("failed open");
    assert_eq!(miss["ret"], -libc::ENOENT as i64);
    let app = opens
        .iter()
        .find(|v| v["path"]["text"] == append.to_str().expect("utf8"))
        .expect("append open");
    assert_eq!(app["syscall"], "open");
    assert_eq!(app["flags"], (libc::O_WRONLY | libc::O_APPEND) as u64);

    // connect: v4 accepted and refused, v6, unix.
    let conns = mine("connect");
    let ok4 = conns
        .iter()
        .find(|v| v["addr"]["port"] == port)
        .expect("connect v4");
    assert_eq!(ok4["addr"]["family"], "inet");
    assert_eq!(ok4["addr"]["addr"], "127.0.0.1");
    assert_eq!(ok4["ret"], 0);
    let refused = conns
        .iter()
        .find(|v| v["addr"]["port"] == closed_port)
        .expect("refused connect");
    assert_eq!(refused["ret"], -libc::ECONNREFUSED as i64);
    if let Some(p6) = port6 {
        let v6 = conns
            .iter()
            .find(|v| v["addr"]["family"] == "inet6")
            .expect("connect v6");
        assert_eq!(v6["addr"]["addr"], "::1");
        assert_eq!(v6["addr"]["port"], p6);
        assert_eq!(v6["ret"], 0);
    }
    let un = conns
        .iter()
        .find(|v| v["addr"]["family"] == "unix")
        .expect("connect unix");
    assert_eq!(un["addr"]["path"], upath.to_str().expect("utf8"));
    assert_eq!(un["ret"], 0);

    let socks = mine("socket");
    for dom in [libc::AF_INET, libc::AF_INET6, libc::AF_UNIX] {
        let s = socks
            .iter()
            .find(|v| v["domain"] == dom)
            .unwrap_or_else(|| panic!("socket {dom}"));
        assert_eq!(s["sock_type"], libc::SOCK_STREAM);
        assert!(s["ret"].as_i64().unwrap_or(-1) >= 0);
    }

    let dups = mine("dup");
    let names: Vec<&str> = dups.iter().filter_map(|v| v["syscall"].as_str()).collect();
    assert!(
        names.contains(&"dup") && names.contains(&"dup2") && names.contains(&"dup3"),
        "{names:?}"
    );
    let d3 = dups.iter().find(|v| v["syscall"] == "dup3").expect("dup3");
    assert_eq!(
        (d3["new_fd"].as_i64(), d3["ret"].as_i64()),
        (Some(51), Some(51))
    );
    assert_eq!(d3["flags"], libc::O_CLOEXEC as u64);

    let ids = mine("set_id");
    let su = ids
        .iter()
        .find(|v| v["syscall"] == "setuid")
        .expect("setuid");
    assert_eq!(su["ids"], serde_json::json!([0]));
    let sg = ids
        .iter()
        .find(|v| v["syscall"] == "setgid")
        .expect("setgid");
    assert_eq!(sg["ret"], 0);
    let sr = ids
        .iter()
        .find(|v| v["syscall"] == "setresuid")
        .expect("setresuid");
    assert_eq!(sr["ids"], serde_json::json!([null, null, 0]));

    let pt = mine("ptrace");
    assert_eq!(pt[0]["request"], libc::PTRACE_ATTACH as i64);
    assert_eq!(pt[0]["target_pid"], 0x3fff_fff0);
    assert_eq!(pt[0]["ret"], -libc::ESRCH as i64);

    let chm = mine("chmod");
    let fat = chm
        .iter()
        .find(|v| v["syscall"] == "fchmodat")
        .expect("fchmodat");
    assert_eq!(fat["mode"], 0o640);
    assert_eq!(fat["path"]["text"], append.to_str().expect("utf8"));
    assert!(
        chm.iter()
            .any(|v| v["syscall"] == "chmod" && v["mode"] == 0o600)
    );

    let links = mine("link");
    let hard = links
        .iter()
        .find(|v| v["syscall"] == "linkat")
        .expect("linkat");
    assert_eq!(hard["link_path"]["text"], linkp.to_str().expect("utf8"));
    assert_eq!(hard["ret"], 0);
    let sym = links
        .iter()
        .find(|v| v["syscall"] == "symlinkat")
        .expect("symlinkat");
    assert_eq!(sym["target"]["text"], append.to_str().expect("utf8"));
    assert_eq!(sym["link_path"]["text"], symp.to_str().expect("utf8"));

    let ren = mine("rename");
    assert_eq!(ren[0]["syscall"], "renameat2");
    assert_eq!(ren[0]["old_path"]["text"], append.to_str().expect("utf8"));
    assert_eq!(ren[0]["new_path"]["text"], renamed.to_str().expect("utf8"));
    assert_eq!(ren[0]["ret"], 0);

    let unl = mine("unlink");
    assert_eq!(unl[0]["syscall"], "unlinkat");
    assert_eq!(unl[0]["path"]["text"], linkp.to_str().expect("utf8"));

    let mfd = mine("memfd_create");
    assert_eq!(mfd[0]["name"]["text"], "guard-memfd");
    assert_eq!(mfd[0]["flags"], libc::MFD_CLOEXEC as u64);

    let bpf = mine("bpf");
    assert_eq!(bpf[0]["cmd"], 0xfff);
    assert_eq!(bpf[0]["ret"], -libc::EINVAL as i64);

    // Without CONFIG_MODULES (this development host) both fail with ENOSYS; with it, the
    // kernel rejects a file that is not a module (ENOEXEC) or, unprivileged, EPERM.
    let expected_module_ret = if std::path::Path::new("/proc/modules").exists() {
        -libc::ENOEXEC as i64
    } else {
        -libc::ENOSYS as i64
    };
    let mods = mine("module_load");
    let fin = mods
        .iter()
        .find(|v| v["syscall"] == "finit_module")
        .expect("finit_module");
    assert_eq!(fin["params"]["text"], "guard=1");
    assert!(fin["fd"].as_i64().is_some_and(|fd| fd >= 0), "{fin}");
    assert_eq!(fin["ret"], expected_module_ret, "{fin}");
    let ini = mods
        .iter()
        .find(|v| v["syscall"] == "init_module")
        .expect("init_module");
    assert_eq!(ini["params"]["text"], "guard=1");
    assert!(ini["ret"].as_i64().is_some_and(|r| r < 0), "{ini}");

    let mounts = mine("mount");
    let tm = mounts
        .iter()
        .find(|v| v["target"]["text"] == mnt.to_str().expect("utf8"))
        .expect("tmpfs mount");
    assert_eq!(tm["source"]["text"], "none");
    assert_eq!(tm["ret"], 0);

    // fork, exec with argv, exit of the grandchild, with the right parent.
    let fork = mine("fork");
    let gchild = fork[0]["child_pid"].as_u64().expect("child pid");
    assert_ne!(gchild, child as u64);
    let exec =
        find(&evs, |v| v["kind"] == "exec" && v["pid"] == gchild).expect("exec of /bin/true");
    assert_eq!(exec["filename"]["text"], "/bin/true");
    assert_eq!(
        exec["argv"],
        serde_json::json!(["/bin/true", "guard-marker-arg"])
    );
    assert_eq!(exec["ppid"], child);
    assert!(find(&evs, |v| v["kind"] == "exit" && v["pid"] == gchild).is_some());
    drop(listener);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("guard-capture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}
