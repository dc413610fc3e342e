#!/usr/bin/env bash
# Private Podman fixture for host integration tests: the Docker-compatible API of
# `podman system service`, from Debian's package, never the system's /run/podman.
#   up      start the service with its own root, runroot, tmpdir, config and socket
#           (cgroupfs manager, file events backend, no networks: containers use host or none),
#           and import the test image
#   start   start the service only
#   stop    stop the service we started (running containers stay: conmon holds them)
#   down    remove every container of the private store, then stop the service
#   status  print whether it answers
#   socket  print the socket path
#   cli ARGS...  run the local podman CLI on the same store, config and events log (as a user's
#           `podman run` next to the service would)
# The image, localhost/guard-test-busybox:latest, is the busybox-static rootfs integration/docker.sh
# builds, loaded with `podman import` (no registry is reachable here).
set -euo pipefail

STATE="${GUARD_PODMAN_STATE:-/run/guard-podman}"
SOCK="$STATE/podman.sock"
PIDFILE="$STATE/podman.pid"
LOG="$STATE/podman.log"
IMAGE=localhost/guard-test-busybox:latest

say() { printf 'podman-fixture: %s\n' "$*" >&2; }
# shellcheck source=integration/daemon.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"

# Every podman call, the service's and the CLI's, reads this store and config only.
export CONTAINERS_CONF="$STATE/containers.conf"
export CONTAINERS_STORAGE_CONF="$STATE/storage.conf"
podman_() {
    podman --root "$STATE/root" --runroot "$STATE/runroot" --tmpdir "$STATE/tmp" \
        --cgroup-manager=cgroupfs --events-backend=file "$@"
}
up_now() { [ -S "$SOCK" ] && timeout 5 curl -sf --unix-socket "$SOCK" http://d/_ping >/dev/null 2>&1; }

write_config() {
    mkdir -p "$STATE"/{root,runroot,tmp,cni}
    local nofile nproc
    nofile="$(ulimit -Hn)"; nproc="$(ulimit -Hu)"
    [ "$nofile" = unlimited ] && nofile=1048576
    { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    cat >"$STATE/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$STATE/root"
runroot = "$STATE/runroot"
EOF
    # No bridge network, no firewall rules: containers default to the host's network (tests
    # may ask for none). The CNI config dir is private, so no default network is written to /etc.
    cat >"$STATE/containers.conf" <<EOF
[containers]
netns = "host"
# Podman raises nofile/nproc to its own maximum for root; a sandbox without CAP_SYS_RESOURCE
# refuses that (runc: "error setting rlimits"). Stay within the service's own hard limits
# (podman lowers its nproc to 32768 at start).
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[network]
network_backend = "cni"
network_config_dir = "$STATE/cni"
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$STATE/events.log"
tmp_dir = "$STATE/tmp"
volume_path = "$STATE/root/volumes"
EOF
}

start() {
    if up_now; then
        say "reusing the running private podman service"
        return
    fi
    command -v podman >/dev/null || { say "podman missing: run integration/setup.sh"; exit 1; }
    write_config
    rm -f "$SOCK"
    say "starting podman system service (log: $LOG)"
    spawn_daemon podman "$LOG" "$PIDFILE" up_now \
        env CONTAINERS_CONF="$CONTAINERS_CONF" CONTAINERS_STORAGE_CONF="$CONTAINERS_STORAGE_CONF" \
        podman --root "$STATE/root" --runroot "$STATE/runroot" --tmpdir "$STATE/tmp" \
        --cgroup-manager=cgroupfs --events-backend=file \
        system service --time=0 "unix://$SOCK"
}

import_image() {
    if podman_ image exists "$IMAGE"; then
        say "image $IMAGE present"
        return
    fi
    local rootfs
    rootfs="$(mktemp -d)"
    busybox_rootfs "$rootfs"
    say "importing $IMAGE from busybox-static"
    tar -C "$rootfs" --owner=0 --group=0 --numeric-owner -c . \
        | podman_ import -q -c 'CMD ["/bin/sh"]' - "$IMAGE" >/dev/null
    rm -rf "$rootfs"
}

stop() {
    if stop_spawned "podman system service" "$PIDFILE" 0.25; then
        rm -f "$SOCK"
    else
        say "no podman service started by this fixture"
    fi
}

down() {
    if [ -d "$STATE/root" ]; then
        # The store is private: every container in it is the tests'.
        podman_ rm -af -t 0 >/dev/null 2>&1 || true
    fi
    stop
}

case "${1:-}" in
    up) start; import_image ;;
    start) start ;;
    stop) stop ;;
    down) down ;;
    socket) echo "$SOCK" ;;
    cli) shift; podman_ "$@" ;;
    status) if up_now; then echo "podman: up ($SOCK)"; else echo "podman: down"; fi ;;
    *) echo "usage: $0 up|start|stop|down|status|socket|cli ARGS..." >&2; exit 2 ;;
esac
