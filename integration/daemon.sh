# Sourced by the fixtures (docker.sh, containerd.sh, podman.sh): starting a daemon that outlives
# the caller, stopping it, and the busybox root filesystem their test images are made from.
# The caller defines `say`.

# spawn_daemon NAME LOG PIDFILE UP_FN CMD...: starts CMD detached (setsid, output appended to
# LOG, its pid in PIDFILE) and waits up to 60 s until UP_FN succeeds; exits 1 with the log's
# tail if it dies or does not answer. CMD gets no descriptor beyond 0-2: a test run under
# `flock LOCK cargo test` would otherwise leave the lock held by the daemon for good.
spawn_daemon() {
    local name=$1 log=$2 pidfile=$3 up=$4
    shift 4
    (
        for fd in /proc/self/fd/*; do
            fd="${fd##*/}"
            [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null
        done
        exec setsid "$@"
    ) >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 1 240); do
        if "$up"; then say "$name is up (pid $(cat "$pidfile"))"; return; fi
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            say "$name exited; last log lines:"; tail -n 30 "$log" >&2; rm -f "$pidfile"; exit 1
        fi
        sleep 0.25
    done
    say "$name did not answer within 60 s; last log lines:"; tail -n 30 "$log" >&2
    exit 1
}

# stop_spawned NAME PIDFILE WAIT: stops the daemon this fixture started (TERM, then KILL after
# 60 waits of WAIT seconds) and removes PIDFILE; returns 1 when the fixture started none.
stop_spawned() {
    local name=$1 pidfile=$2 wait=$3 pid
    [ -f "$pidfile" ] || return 1
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        say "stopping $name (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep "$wait"; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

# busybox_rootfs DIR: a minimal root filesystem in DIR (created): busybox-static with every
# applet linked, root and nobody accounts, a shadow file, a sticky /tmp.
busybox_rootfs() {
    local rootfs=$1
    [ -x /bin/busybox ] || { say "busybox-static missing: run integration/setup.sh"; exit 1; }
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,proc,sys,dev,root,var/log}
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $("$rootfs/bin/busybox" --list); do
        [ "$applet" = busybox ] || ln -sf /bin/busybox "$rootfs/bin/$applet"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
    printf 'root:*:19000:0:99999:7:::\n' >"$rootfs/etc/shadow"
    chmod 600 "$rootfs/etc/shadow"
    chmod 1777 "$rootfs/tmp"
}
