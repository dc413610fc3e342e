#!/usr/bin/env bash
# Start to enforcing: time from launching `guard run` (default rules and responses, plus an
# enforce policy on a test cgroup) to its `guard: ready` line, which it prints once the policy
# maps are written, the programs attached and running workloads bound. Each run starts cold:
# the pins of the previous run are removed with `guard run --cleanup --pin-dir`. After each
# ready line the policy is checked to be in force (an exec it denies, in the test cgroup, is
# killed or refused). min/median/max over RUNS.
# Root only. Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 [RUNS]
  RUNS  number of cold starts (default 10, at most 100); each waits at most 60 s for ready
Output: markdown on stdout; progress on stderr.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
RUNS="${1:-10}"
{ [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] && [ "$RUNS" -le 100 ]; } || { usage >&2; exit 2; }
need_root
build

TMP="$(mktemp -d /tmp/guard-startup.XXXXXX)"
CGNAME="guard-bench-$$"
CG="$CG2/$CGNAME"
PIN="/sys/fs/bpf/guard-bench-$$"
APID="" DRAIN=""
cleanup() {
    set +e
    stop_pid "$APID"
    [ -n "$DRAIN" ] && wait "$DRAIN" 2>/dev/null
    "$GUARD" run --cleanup --pin-dir "$PIN" >/dev/null 2>&1
    rmdir "$PIN" "$CG" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "$CG"
cp /bin/true "$TMP/denied-true"
cat >"$TMP/policy.yaml" <<EOF
- policy: bench-startup
  desc: startup benchmark, enforce policy on a test cgroup
  workload: {cgroup: "/$CGNAME"}
  mode: enforce
  enforce:
    exec: {deny: ["$TMP/denied-true"]}
    open: {deny_write: ["/var/guard-bench-denied/**"]}
    connect: {deny: ["0.0.0.0/0:9"]}
EOF
"$GUARD" validate "$TMP/policy.yaml" >"$TMP/validate.out" 2>&1 || { cat "$TMP/validate.out" >&2; die "invalid policy"; }
mkfifo "$TMP/err"

say "machine: $(machine); $RUNS cold starts"
: >"$TMP/ms"
backend=""
for ((run = 1; run <= RUNS; run++)); do
    "$GUARD" run --cleanup --pin-dir "$PIN" >/dev/null 2>&1 || true
    t0=$EPOCHREALTIME
    "$GUARD" run --rules "$REPO/policies" --responses "$REPO/responses" --policy "$TMP/policy.yaml" \
        --format json --audit-dir "$TMP/audit" --pin-dir "$PIN" >/dev/null 2>"$TMP/err" &
    APID=$!
    exec 3<"$TMP/err"
    t1="" log=""
    while IFS= read -r -t 60 line <&3; do
        log+="$line"$'\n'
        if [[ "$line" == "guard: ready"* ]]; then t1=$EPOCHREALTIME; break; fi
    done
    # Keep reading so the agent never blocks on a full pipe while it stops.
    cat <&3 >/dev/null &
    DRAIN=$!
    exec 3<&-
    [ -n "$t1" ] || { printf '%s' "$log" >&2; die "run $run: no ready line within 60 s"; }
    [[ "$log" =~ policy_backend=\"?([a-z-]+) ]] && backend="${BASH_REMATCH[1]}"
    check="$("$TESTKIT" try-exec --cgroup "$CG" "$TMP/denied-true" || true)"
    case "$check" in
        "ok signal=9" | errno=1*) ;;
        *) die "run $run: the policy is not in force after ready (denied exec gave: $check)" ;;
    esac
    stop_pid "$APID"; APID=""
    wait "$DRAIN" 2>/dev/null || true; DRAIN=""
    ms="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')"
    echo "$ms" >>"$TMP/ms"
    say "run $run: ready after $ms ms (denied exec: $check)"
done
read -r mn md mx < <(min_med_max <"$TMP/ms")
echo "### Start to enforcing (\`guard run\` with an enforce policy; $RUNS cold starts)"
echo
if timeout 5 docker info >/dev/null 2>&1; then dockerd="running ($(docker ps -q | wc -l) containers)"; else dockerd="not running"; fi
echo "Machine: $(machine). Policy backend: ${backend:-unknown}. dockerd: $dockerd."
echo
echo "| min | median | max | runs (ms) |"
echo "|---|---|---|---|"
echo "| $mn ms | $md ms | $mx ms | $(tr '\n' ' ' <"$TMP/ms" | sed 's/ $//') |"
