#!/usr/bin/env bash
# The fanotify backend's cost (docs/policies.md "fanotify"): an open loop (the shell's `<`
# redirection, no fork per open) in a container whose filesystem the agent marks (policy with
# open rules) and in one it does not mark, under the same agent, RUNS times each, on two files:
# /etc/group (covered: below the policy's '/etc/**' `deny_write` rule; enforced, it is sealed and
# its reads are ignored after the first) and /tmp/data (no rule names it: ignored after its
# first open). A third container under the same rules in detect mode (not marked: its opens are
# judged in the kernel at their exit, none is asked). And /etc/shadow, whose reads the policy
# denies: every open is asked and refused (allowed in the unmarked one). And the permission
# answer time the agent
# measured (p50/p99/max, power-of-two buckets: "< 4 µs" means under 4 µs) from its stop line.
# Targets: answer p99 < 1 ms, loop overhead < 5 %.
# BASE_BIN=path runs the same loops first under that binary (e.g. a build of the previous
# commit), so before and after come from the same run.
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
DETECT=""
cleanup() {
    set +e
    [ -n "$AGENT" ] && stop_pid "$AGENT"
    [ -n "$MARKED" ] && docker rm -f "$MARKED" >/dev/null
    [ -n "$PLAIN" ] && docker rm -f "$PLAIN" >/dev/null
    [ -n "$DETECT" ] && docker rm -f "$DETECT" >/dev/null
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
- policy: bench-fanotify-detect
  workload: {labels: {guard-bench-fanotify: "detect"}}
  mode: detect
  enforce:
    open: {deny_read: [/etc/shadow], deny_write: ['/etc/**']}
EOF
MARKED="$(docker run -d --network=none --label guard-test=1 --label guard-bench-fanotify=on \
    guard-test-busybox:latest sleep 3600)"
PLAIN="$(docker run -d --network=none --label guard-test=1 guard-test-busybox:latest sleep 3600)"
DETECT="$(docker run -d --network=none --label guard-test=1 --label guard-bench-fanotify=detect \
    guard-test-busybox:latest sleep 3600)"

# The unruled file, written before any agent runs.
for c in "$MARKED" "$PLAIN" "$DETECT"; do docker exec "$c" sh -c 'echo data > /tmp/data'; done

# loop CONTAINER FILE [CMD]: seconds (3 decimals) for OPENS opens of FILE inside it, each a
# redirection of CMD (default `:`; a refused one needs a regular builtin such as `true`: a
# failed redirection of a special builtin ends the shell). Error messages discarded.
loop() {
    local t0 t1
    t0=$(date +%s%N)
    docker exec "$1" sh -c "exec 2>/dev/null; i=0; while [ \$i -lt $OPENS ]; do ${3:-:} < $2; i=\$((i+1)); done"
    t1=$(date +%s%N)
    echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# measure BIN LABEL: starts the agent, runs the loops, stops it, prints its rows.
measure() {
    local bin="$1" label="$2" r f m p line
    say "starting the agent ($label: $bin, --policy-backend fanotify)"
    rm -f "$TMP/agent.err"
    GUARD_LOG=info "$bin" run --no-responses --rules "$REPO/policies" --policy "$TMP/policy.yaml" \
        --policy-backend fanotify --pin-dir "$PINS" --audit-dir "$TMP/audit" --metrics-addr off \
        >/dev/null 2>"$TMP/agent.err" &
    AGENT=$!
    wait_line "$TMP/agent.err" "guard: ready" 60 "$AGENT" || die "agent not ready: $(tail -5 "$TMP/agent.err")"
    sleep 2
    declare -A runs=()
    for ((r = 0; r < RUNS; r++)); do
        say "$label: run $((r + 1))/$RUNS"
        for f in /etc/group /tmp/data; do
            runs[marked$f]+="$(loop "$MARKED" "$f") "
            runs[plain$f]+="$(loop "$PLAIN" "$f") "
        done
        runs[detect]+="$(loop "$DETECT" /etc/group) "
    done
    # Refused on every open: one answer (and one record) each; the answer time below comes
    # from these. After the others, so writing their records slows none of them.
    for ((r = 0; r < RUNS; r++)); do
        say "$label: refused opens, run $((r + 1))/$RUNS"
        runs[refused]+="$(loop "$MARKED" /etc/shadow true) "
        runs[plainshadow]+="$(loop "$PLAIN" /etc/shadow true) "
    done
    # Its stop writes the refused opens' records first: give it time.
    stop_pid "$AGENT" 300
    AGENT=""
    "$bin" run --cleanup --pin-dir "$PINS" >/dev/null 2>&1 || true
    line="$(grep -o 'fanotify: answered.*' "$TMP/agent.err" | tail -1 || true)"
    for f in /etc/group /tmp/data; do
        # shellcheck disable=SC2086
        m="$(med ${runs[marked$f]})"
        # shellcheck disable=SC2086
        p="$(med ${runs[plain$f]})"
        ROWS+="| $label | $f | ${runs[marked$f]}| $m | ${runs[plain$f]}| $p | $(echo "scale=3; $m / $p" | bc) |"$'\n'
    done
    # shellcheck disable=SC2086
    m="$(med ${runs[detect]})"
    # shellcheck disable=SC2086
    p="$(med ${runs[plain/etc/group]})"
    ROWS+="| $label | /etc/group, detect mode | ${runs[detect]}| $m | ${runs[plain/etc/group]}| $p | $(echo "scale=3; $m / $p" | bc) |"$'\n'
    # shellcheck disable=SC2086
    m="$(med ${runs[refused]})"
    # shellcheck disable=SC2086
    p="$(med ${runs[plainshadow]})"
    ROWS+="| $label | /etc/shadow, refused (read) | ${runs[refused]}| $m | ${runs[plainshadow]}| $p | $(echo "scale=3; $m / $p" | bc) |"$'\n'

    STOPS+="- $label: ${line:-no fanotify line in the log}"$'\n'
}

ROWS=""
STOPS=""
[ -n "${BASE_BIN:-}" ] && measure "$BASE_BIN" "before"
measure "$GUARD" "after"
echo "## fanotify backend"
echo
machine
echo
echo "$OPENS opens per loop, seconds per run; ratio = marked / not marked (medians)."
echo
echo "| binary | file | marked, s | median | not marked, s | median | ratio |"
echo "|---|---|---|---|---|---|---|"
printf '%s' "$ROWS"
echo
echo "agent at stop:"
printf '%s' "$STOPS"
