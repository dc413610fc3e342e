#!/usr/bin/env bash
# The fanotify backend's cost (docs/policies.md "fanotify"): an open loop (the shell's `<`
# redirection, no fork per open) in a container whose filesystem the agent marks (policy with
# open rules) and in one it does not mark, under the same agent, RUNS times each; and the
# permission answer time the agent measured (p50/p99/max, power-of-two buckets: "< 4 µs" means
# under 4 µs) from its stop line. Targets: answer p99 < 1 ms, loop overhead < 5 %.
# Root, Docker (integration/docker.sh). Not part of CI (timing). GUARD_BIN overrides the binary
# (e.g. target/debug/guard, to skip the release build with BENCH_NO_BUILD=1).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 [OPENS] [RUNS]
  OPENS  opens per loop (default 20000, at most 1000000)
  RUNS   loops per container (default 5, at most 50)
Output: markdown on stdout; progress on stderr.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
OPENS="${1:-20000}"
RUNS="${2:-5}"
{ [[ "$OPENS" =~ ^[1-9][0-9]*$ ]] && [ "$OPENS" -le 1000000 ]; } || { usage >&2; exit 2; }
{ [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] && [ "$RUNS" -le 50 ]; } || { usage >&2; exit 2; }
need_root
build
GUARD="${GUARD_BIN:-$GUARD}"
[ -x "$GUARD" ] || die "no guard binary at $GUARD"

TMP="$(mktemp -d /tmp/guard-fanotify.XXXXXX)"
PINS="/sys/fs/bpf/guard-bench-fanotify-$$"
AGENT=""
MARKED=""
PLAIN=""
cleanup() {
    set +e
    [ -n "$AGENT" ] && stop_pid "$AGENT"
    [ -n "$MARKED" ] && docker rm -f "$MARKED" >/dev/null
    [ -n "$PLAIN" ] && docker rm -f "$PLAIN" >/dev/null
    "$GUARD" run --cleanup --pin-dir "$PINS" >/dev/null 2>&1
    docker_done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
docker_up

cat >"$TMP/policy.yaml" <<'EOF'
- policy: bench-fanotify
  workload: {labels: {guard-bench-fanotify: "on"}}
  mode: enforce
  enforce:
    open: {deny_read: [/etc/shadow], deny_write: ['/etc/**']}
EOF
MARKED="$(docker run -d --network=none --label guard-test=1 --label guard-bench-fanotify=on \
    guard-test-busybox:latest sleep 3600)"
PLAIN="$(docker run -d --network=none --label guard-test=1 guard-test-busybox:latest sleep 3600)"

say "starting the agent ($GUARD, --policy-backend fanotify)"
GUARD_LOG=info "$GUARD" run --no-responses --rules "$REPO/policies" --policy "$TMP/policy.yaml" \
    --policy-backend fanotify --pin-dir "$PINS" --audit-dir "$TMP/audit" --metrics-addr off \
    >/dev/null 2>"$TMP/agent.err" &
AGENT=$!
wait_line "$TMP/agent.err" "guard: ready" 30 "$AGENT" || die "agent not ready: $(tail -5 "$TMP/agent.err")"
sleep 2

# loop CONTAINER: seconds (3 decimals) for OPENS opens of /etc/group (on the container's overlay; /etc/hostname is a bind mount) inside it.
loop() {
    local t0 t1
    t0=$(date +%s%N)
    docker exec "$1" sh -c "i=0; while [ \$i -lt $OPENS ]; do : < /etc/group; i=\$((i+1)); done"
    t1=$(date +%s%N)
    echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}

marked=()
plain=()
for ((r = 0; r < RUNS; r++)); do
    say "run $((r + 1))/$RUNS"
    marked+=("$(loop "$MARKED")")
    plain+=("$(loop "$PLAIN")")
done
stop_pid "$AGENT"
AGENT=""
line="$(grep -o 'fanotify: answered.*' "$TMP/agent.err" | tail -1)"

med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
m="$(med "${marked[@]}")"
p="$(med "${plain[@]}")"
echo "## fanotify backend"
echo
machine
echo
echo "| container | $OPENS opens, s (each run) | median |"
echo "|---|---|---|"
echo "| marked (policy with open rules) | ${marked[*]} | $m |"
echo "| not marked | ${plain[*]} | $p |"
echo
echo "marked / not marked (medians): $(echo "scale=3; $m / $p" | bc)"
echo
echo "agent at stop: ${line:-no fanotify line in the log}"
