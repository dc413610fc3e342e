#!/usr/bin/env bash
# Private containerd fixture (CRI plugin on) for host integration tests.
#   up      start containerd from Debian's package with its own config, root, state and socket
#           (never the system's /run/containerd), and import the test images into k8s.io
#   stop    stop the containerd we started (its shims, so running containers, stay)
#   down    remove every pod sandbox and container through CRI, then stop it
#   status  print whether it answers
# Images, both from the busybox-static rootfs as integration/docker.sh builds it, imported with
# `ctr` from a locally built OCI archive (no registry is reachable here):
#   docker.io/guard-test/pause:1     the pod sandbox image (`sleep` forever)
#   docker.io/guard-test/busybox:1   the workload image
# both into the CRI's namespace k8s.io, and the busybox image also into the plain namespace
# guardtest, for containers started straight on containerd (`ctr -n guardtest run`).
set -euo pipefail

STATE="${GUARD_CRI_STATE:-/run/guard-cri}"
SOCK="$STATE/containerd.sock"
PIDFILE="$STATE/containerd.pid"
LOG="$STATE/containerd.log"
PAUSE=docker.io/guard-test/pause:1
BUSYBOX=docker.io/guard-test/busybox:1
PLAIN_NS=guardtest

say() { printf 'containerd-fixture: %s\n' "$*" >&2; }
# shellcheck source=integration/daemon.sh
. "$(dirname "${BASH_SOURCE[0]}")/daemon.sh"
ctr_() { ctr --address "$SOCK" --namespace k8s.io "$@"; }
up_now() { timeout 5 ctr --address "$SOCK" version >/dev/null 2>&1; }

write_config() {
    mkdir -p "$STATE"/{root,state,opt}
    cat >"$STATE/config.toml" <<EOF
version = 2
root = "$STATE/root"
state = "$STATE/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$STATE/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  disable_apparmor = true
  # No CAP_SYS_RESOURCE in some sandboxes: never ask for a lower OOM score than containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$STATE/cni-bin"
    conf_dir = "$STATE/cni-conf"
EOF
}

start() {
    if up_now; then
        say "reusing the running private containerd"
        return
    fi
    command -v containerd >/dev/null || { say "containerd missing: run integration/setup.sh"; exit 1; }
    write_config
    say "starting containerd (log: $LOG)"
    spawn_daemon containerd "$LOG" "$PIDFILE" up_now containerd --config "$STATE/config.toml"
}

# One OCI archive with both images over a single busybox-static layer.
import_images() {
    if ctr_ images check "name==$BUSYBOX" 2>/dev/null | grep -q complete \
        && ctr_ images check "name==$PAUSE" 2>/dev/null | grep -q complete \
        && ctr --address "$SOCK" --namespace "$PLAIN_NS" images check "name==$BUSYBOX" 2>/dev/null | grep -q complete; then
        say "images present"
        return
    fi
    local work rootfs oci
    work="$(mktemp -d)"; rootfs="$work/rootfs"; oci="$work/oci"
    mkdir -p "$oci/blobs/sha256"
    busybox_rootfs "$rootfs"
    tar -C "$rootfs" --owner=0 --group=0 --numeric-owner -cf "$work/layer.tar" .
    blob() { # file -> prints "digest size", stores the blob
        local d s; d="$(sha256sum "$1" | cut -d' ' -f1)"; s="$(stat -c %s "$1")"
        cp "$1" "$oci/blobs/sha256/$d"; echo "$d $s"
    }
    read -r ld ls < <(blob "$work/layer.tar")
    local entries=""
    for spec in "$PAUSE|[\"/bin/sleep\",\"2147483647\"]" "$BUSYBOX|[\"/bin/sh\"]"; do
        local name="${spec%%|*}" cmd="${spec#*|}"
        printf '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":%s},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
            "$cmd" "$ld" >"$work/config.json"
        read -r cd cs < <(blob "$work/config.json")
        printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
            "$cd" "$cs" "$ld" "$ls" >"$work/manifest.json"
        read -r md ms < <(blob "$work/manifest.json")
        entries="$entries${entries:+,}{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"sha256:$md\",\"size\":$ms,\"annotations\":{\"io.containerd.image.name\":\"$name\",\"org.opencontainers.image.ref.name\":\"${name##*:}\"}}"
    done
    printf '{"schemaVersion":2,"manifests":[%s]}' "$entries" >"$oci/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$oci/oci-layout"
    tar -C "$oci" -cf "$work/images.tar" .
    say "importing $PAUSE and $BUSYBOX"
    ctr_ images import --no-unpack=false "$work/images.tar" >/dev/null
    ctr --address "$SOCK" --namespace "$PLAIN_NS" images import "$work/images.tar" >/dev/null
    rm -rf "$work"
}

stop() {
    stop_spawned containerd "$PIDFILE" 0.25 || say "no containerd started by this fixture"
}

down() {
    if up_now; then
        # Pods first (their containers go with them), then anything left, then the shims.
        local t
        for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
        sleep 0.5
        for t in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$t" >/dev/null 2>&1 || true; done
        for t in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$t" >/dev/null 2>&1 || true; done
        local p=(ctr --address "$SOCK" --namespace "$PLAIN_NS")
        for t in $("${p[@]}" tasks ls -q 2>/dev/null); do "${p[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
        sleep 0.2
        for t in $("${p[@]}" tasks ls -q 2>/dev/null); do "${p[@]}" tasks rm -f "$t" >/dev/null 2>&1 || true; done
        for t in $("${p[@]}" containers ls -q 2>/dev/null); do "${p[@]}" containers rm "$t" >/dev/null 2>&1 || true; done
    fi
    stop
}

case "${1:-}" in
    up) start; import_images ;;
    start) start ;;
    stop) stop ;;
    down) down ;;
    socket) echo "$SOCK" ;;
    status) if up_now; then echo "containerd: up ($SOCK)"; else echo "containerd: down"; fi ;;
    *) echo "usage: $0 up|start|stop|down|status|socket" >&2; exit 2 ;;
esac
