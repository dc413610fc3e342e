#!/usr/bin/env bash
# Docker fixture for host integration tests.
#   up      start dockerd from Debian's docker.io (or reuse a running one) and build the test image
#   down    stop dockerd if `up` started it; remove test containers (label guard-test=1)
#   status  print whether the daemon answers and whether we own it
# The test image (guard-test-busybox:latest) is a busybox-static rootfs loaded with `docker import`,
# because no registry is reachable from these machines.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STATE="${GUARD_TEST_STATE:-/run/guard-test}"
PIDFILE="$STATE/dockerd.pid"
LOG="$STATE/dockerd.log"
IMAGE="${GUARD_TEST_IMAGE:-guard-test-busybox:latest}"

say() { printf 'docker-fixture: %s\n' "$*" >&2; }
# shellcheck source=integration/daemon.sh
. "$HERE/daemon.sh"

daemon_up() { timeout 5 docker info >/dev/null 2>&1; }

start_daemon() {
    if daemon_up; then
        say "reusing the running dockerd"
        return
    fi
    command -v dockerd >/dev/null || { say "dockerd missing: run integration/setup.sh"; exit 1; }
    mkdir -p "$STATE"
    say "starting dockerd (log: $LOG)"
    # No bridge or iptables: tests use --network none or host, and the host firewall stays untouched.
    spawn_daemon dockerd "$LOG" "$PIDFILE" daemon_up \
        dockerd --bridge=none --iptables=false --ip6tables=false --pidfile "$STATE/dockerd.own.pid"
}

build_image() {
    if docker image inspect "$IMAGE" >/dev/null 2>&1; then
        say "image $IMAGE present"
        return
    fi
    local rootfs
    rootfs="$(mktemp -d)"
    busybox_rootfs "$rootfs"
    say "importing $IMAGE from busybox-static"
    tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    rm -rf "$rootfs"
}

stop_daemon() {
    local ids
    if daemon_up; then
        ids="$(docker ps -aq --filter label=guard-test=1 || true)"
        if [ -n "$ids" ]; then
            say "removing test containers"; docker rm -f $ids >/dev/null || true
        fi
    fi
    stop_spawned "the dockerd we started" "$PIDFILE" 0.5 \
        || say "dockerd was not started by this fixture; leaving it running"
}

case "${1:-}" in
    up) start_daemon; build_image ;;
    down) stop_daemon ;;
    status)
        if daemon_up; then echo "daemon: up"; else echo "daemon: down"; fi
        if [ -f "$PIDFILE" ]; then echo "owner: fixture (pid $(cat "$PIDFILE"))"; else echo "owner: other"; fi ;;
    *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
