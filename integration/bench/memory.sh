#!/usr/bin/env bash
# Agent resident memory: VmRSS and VmHWM of `guard run` (whole host, default rules and
# responses) idle, with PROCS more live processes (`sleep`), and with CONTAINERS more running
# containers (the busybox test image of integration/docker.sh, --network none); then a fresh
# agent started while they all run (seeded from /proc and Docker instead of events).
# Every process and container started here is stopped by PID / removed by id at exit; dockerd
# is stopped only if this script started it and no other container runs on it.
# Root only. Not part of CI (timing and load dependent).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 [PROCS] [CONTAINERS]
  PROCS       live processes to add (default 1000)
  CONTAINERS  running containers to add (default 50; 0 skips Docker)
Output: markdown table on stdout; progress on stderr.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
PROCS="${1:-1000}"
CONTAINERS="${2:-50}"
[[ "$PROCS" =~ ^[0-9]+$ && "$CONTAINERS" =~ ^[0-9]+$ ]] || { usage >&2; exit 2; }
{ [ "$PROCS" -le 5000 ] && [ "$CONTAINERS" -le 200 ]; } || die "at most 5000 processes and 200 containers"
need_root
build
IMAGE="${GUARD_TEST_IMAGE:-guard-test-busybox:latest}"

TMP="$(mktemp -d /tmp/guard-memory.XXXXXX)"
APID="" SLEEPERS=() CIDS=() DOCKER_USED=0
cleanup() {
    set +e
    stop_pid "$APID"
    if [ "${#SLEEPERS[@]}" -gt 0 ]; then kill "${SLEEPERS[@]}" 2>/dev/null; wait "${SLEEPERS[@]}" 2>/dev/null; fi
    if [ "${#CIDS[@]}" -gt 0 ]; then docker rm -f "${CIDS[@]}" >/dev/null 2>&1; fi
    [ "$DOCKER_USED" = 1 ] && docker_done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$CONTAINERS" -gt 0 ]; then DOCKER_USED=1; docker_up; fi

start_agent() {
    rm -f "$TMP/agent.err"
    "$GUARD" run --rules "$REPO/policies" --responses "$REPO/responses" --detect-only \
        --format json --audit-dir "$TMP/audit" --pin-dir "/sys/fs/bpf/guard-bench-$$" \
        >/dev/null 2>"$TMP/agent.err" &
    APID=$!
    wait_line "$TMP/agent.err" '^guard: ready' 60 "$APID"
}

kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$APID/status"; }
row() { # label
    sleep 3 # let the agent catch up (events, inspects)
    kill -0 "$APID" 2>/dev/null || die "the agent died"
    local procs containers
    procs="$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)"
    containers="$( [ "$DOCKER_USED" = 1 ] && docker ps -q | wc -l || echo 0)"
    awk -v l="$1" -v p="$procs" -v c="$containers" -v r="$(kib VmRSS)" -v h="$(kib VmHWM)" \
        'BEGIN { printf "| %s | %d | %d | %.1f | %.1f |\n", l, p, c, r / 1024, h / 1024 }'
}

say "machine: $(machine)"
echo "### Agent memory (\`guard run\`, whole host, default rules and responses)"
echo
echo "Machine: $(machine)."
echo
echo "| state | processes on host | containers running | VmRSS MiB | VmHWM MiB |"
echo "|---|---|---|---|---|"
start_agent
row "idle after ready"
say "starting $PROCS sleep processes"
for ((i = 0; i < PROCS; i++)); do
    sleep 3600 &
    SLEEPERS+=($!)
done
row "+$PROCS live processes"
if [ "$CONTAINERS" -gt 0 ]; then
    say "starting $CONTAINERS containers from $IMAGE"
    for ((i = 0; i < CONTAINERS; i++)); do
        CIDS+=("$(timeout 60 docker run -d --network none --label guard-test=1 \
            --label "guard-bench=$$" "$IMAGE" sleep 3600)")
    done
    row "+$CONTAINERS containers"
fi
stop_pid "$APID"; APID=""
start_agent
row "fresh agent started with all of them running"
