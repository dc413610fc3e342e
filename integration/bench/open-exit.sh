#!/usr/bin/env bash
# The host-wide cost of the programs the fanotify backend attaches to the open syscalls' exits
# (docs/policies.md "Detect mode" and "deny_new_binaries"): an open+close loop on the host
# (guard-testkit bench open, no container) under the agent with the same open rules enforced
# (nothing at the exits), in detect mode (`policy_open_detect`), and enforced with
# `deny_new_binaries` (`policy_open_written`), alternated per round. Each configuration's
# program runs on every open of the host while attached, whoever opens.
# Root. Not part of CI (timing). GUARD_BIN overrides the binary.
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<USAGE
usage: $0 [OPENS] [ROUNDS]
  OPENS   opens per run (default 300000, at most 5000000)
  ROUNDS  rounds, each running every configuration 3 times (default 2, at most 20)
Output: markdown on stdout; progress on stderr.
USAGE
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
OPENS="${1:-300000}"
ROUNDS="${2:-2}"
{ [[ "$OPENS" =~ ^[1-9][0-9]*$ ]] && [ "$OPENS" -le 5000000 ]; } || { usage >&2; exit 2; }
{ [[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] && [ "$ROUNDS" -le 20 ]; } || { usage >&2; exit 2; }
need_root
build
GUARD="${GUARD_BIN:-$GUARD}"
[ -x "$GUARD" ] || die "no guard binary at $GUARD"
[ -x "$TESTKIT" ] || die "no guard-testkit at $TESTKIT"

TMP="$(mktemp -d /tmp/guard-open-exit.XXXXXX)"
PINS="/sys/fs/bpf/guard-bench-open-exit-$$"
AGENT=""
cleanup() {
    set +e
    [ -n "$AGENT" ] && stop_pid "$AGENT"
    "$GUARD" run --cleanup --pin-dir "$PINS" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo x >"$TMP/file"

# policy MODE DNB: the rules (no workload carries the label: only the programs' cost counts).
policy() {
    cat >"$TMP/policy.yaml" <<POLICY
- policy: bench-open-exit
  workload: {labels: {guard-bench-open-exit: "on"}}
  mode: $1
  enforce:
    exec: {deny_new_binaries: $2}
    open: {deny_read: [/etc/shadow], deny_write: ['/etc/**']}
POLICY
}

# measure LABEL MODE DNB: starts the agent, runs the loop 3 times, stops it.
declare -A runs=()
declare -A links=()
measure() {
    local label="$1" i t0 t1
    policy "$2" "$3"
    rm -f "$TMP/agent.err"
    GUARD_LOG=warn "$GUARD" run --no-responses --rules "$REPO/policies" --policy "$TMP/policy.yaml" \
        --policy-backend fanotify --pin-dir "$PINS" --audit-dir "$TMP/audit" --metrics-addr off \
        >/dev/null 2>"$TMP/agent.err" &
    AGENT=$!
    wait_line "$TMP/agent.err" "guard: ready" 60 "$AGENT" || die "agent not ready"
    sleep 1
    links[$label]="$(find "$PINS" -maxdepth 1 -name 'link_policy_open_*' | wc -l)"
    for ((i = 0; i < 3; i++)); do
        t0=$(date +%s%N)
        "$TESTKIT" bench open "$OPENS" "$TMP/file" >/dev/null
        t1=$(date +%s%N)
        runs[$label]+="$(((t1 - t0) / 1000000)) "
    done
    stop_pid "$AGENT"
    AGENT=""
    "$GUARD" run --cleanup --pin-dir "$PINS" >/dev/null 2>&1 || true
}
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for ((r = 0; r < ROUNDS; r++)); do
    say "round $((r + 1))/$ROUNDS"
    measure enforced enforce false
    measure detect detect false
    measure drift enforce true
done
echo "## Programs at the open exits (fanotify backend)"
echo
machine
echo
echo "$OPENS opens+closes per run on the host, ms; ratio = median / the enforced median."
echo
echo "| configuration | links at the exits | runs, ms | median | ratio |"
echo "|---|---|---|---|---|"
# shellcheck disable=SC2086
base="$(med ${runs[enforced]})"
for label in enforced detect drift; do
    # shellcheck disable=SC2086
    m="$(med ${runs[$label]})"
    echo "| $label | ${links[$label]} | ${runs[$label]}| $m | $(echo "scale=3; $m / $base" | bc) |"
done
