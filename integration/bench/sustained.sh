#!/usr/bin/env bash
# Sustained event rate: the highest open/close rate `guard run` (whole host, default rules and
# responses, detect mode, audit log on) takes for SECONDS with zero drops, and the drops at
# twice that rate.
#
# An open+close loop (guard-testkit bench open, paced every 100 ops) runs in a cgroup of its own
# at each candidate rate, ascending; the search stops at the first rate with drops (or whose
# loop cannot reach 95% of the rate). Drops are guard's own count: the `drops` report (ring
# buffer full per kind, skipped program runs) from its drop_summary audit
# records, counted from the loop's start to the final report at exit.
# Root only. Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: [GUARD_ARGS=...] $0 [SECONDS] [RATES]
  GUARD_ARGS extra "guard run" options, e.g. --no-prefilter (every open reaches the agent)
  SECONDS  duration of each step (default 60; e.g. 5 for a quick run)
  RATES    candidate open/s, ascending, space-separated
           (default "10000 20000 30000 50000 100000 200000")
Output: markdown on stdout (one row per step, then the result); progress on stderr.
Bounded: at most one step per rate plus one at twice the best, each SECONDS plus a
${STEP_SLACK:-60} s timeout slack (env STEP_SLACK).
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
SECS="${1:-60}"
RATES="${2:-10000 20000 30000 50000 100000 200000}"
[[ "$SECS" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
for r in $RATES; do [[ "$r" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }; done
STEP_SLACK="${STEP_SLACK:-60}"
need_root
build

TMP="$(mktemp -d /tmp/guard-sustained.XXXXXX)"
CG="$CG2/guard-bench-$$"
APID=""
cleanup() {
    set +e
    stop_pid "$APID"
    rmdir "$CG" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "$CG"
echo x >"$TMP/open-target"

# drop_counts: the kernel-side loss counters of the agent's last drop_summary audit record, as
# JSON ({} before the first). The warn line on stderr carries only the total.
drop_counts() {
    cat "$TMP"/audit/audit-*.jsonl 2>/dev/null | python3 -c '
import json, sys
last = {}
for line in sys.stdin:
    if "\"drop_summary\"" in line:
        try:
            last = json.loads(line).get("ringbuf", {})
        except ValueError:
            pass
print(json.dumps(last))'
}

# step RATE -> prints "achieved_rate drops events_seen by_kind": drops counted while the loop
# ran (counters at the end minus counters at its start, so losses before the loop are not
# the loop's).
step() {
    local rate="$1" n out t0 t1 before after seen
    n=$((rate * SECS))
    rm -rf "$TMP/agent.err" "$TMP/audit"
    # shellcheck disable=SC2086
    "$GUARD" run --rules "$REPO/policies" --responses "$REPO/responses" --detect-only \
        --format json --audit-dir "$TMP/audit" --drop-report-secs 1 ${GUARD_ARGS:-} \
        --pin-dir "/sys/fs/bpf/guard-bench-$$" >/dev/null 2>"$TMP/agent.err" &
    APID=$!
    wait_line "$TMP/agent.err" '^guard: ready' 60 "$APID"
    sleep 2 # the first drop report (1 s tick) holds the attach-time counts
    before="$(drop_counts)"
    t0=$EPOCHREALTIME
    out="$(timeout $((SECS + STEP_SLACK)) "$TESTKIT" cgroup-run "$CG" -- \
        "$TESTKIT" bench open "$n" "$TMP/open-target" "$rate")" || die "loop at $rate/s failed: $out"
    t1=$EPOCHREALTIME
    sleep 2 # let the agent drain and report
    stop_pid "$APID"; APID=""
    after="$(drop_counts)"
    seen="$(grep 'guard stopping' "$TMP/agent.err" | sed -n 's/.*events=\([0-9]*\).*/\1/p' | tail -n1)"
    python3 -c '
import json, sys
n, t0, t1, seen = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
b, a = json.loads(sys.argv[5]), json.loads(sys.argv[6])
d = {k: v - b.get(k, 0) for k, v in a.items() if v - b.get(k, 0)}
kinds = ",".join(f"{k}:{v}" for k, v in sorted(d.items())) or "-"
print("%.0f %d %s %s" % (n / (t1 - t0), sum(d.values()), seen or "?", kinds))' \
        "$n" "$t0" "$t1" "$seen" "$before" "$after"
}

say "machine: $(machine); $SECS s per step; rates: $RATES"
echo "### Sustained open/close rate under \`guard run\` ($SECS s per step)"
echo
echo "Machine: $(machine)."
echo
echo "| target open/s | achieved open/s | drops | drops by kind | events guard received (whole host) |"
echo "|---|---|---|---|---|"
best=0
for rate in $RATES; do
    read -r got drops seen kinds < <(step "$rate")
    echo "| $rate | $got | $drops | $kinds | $seen |"
    say "rate $rate: achieved $got/s, drops $drops, events $seen"
    if [ "$drops" -gt 0 ]; then break; fi
    if [ "$got" -lt $((rate * 95 / 100)) ]; then
        say "the loop reached only $got/s of $rate/s: stopping the search"
        best=$got
        break
    fi
    best=$rate
done
if [ "$best" -gt 0 ]; then
    read -r got2 drops2 seen2 kinds2 < <(step $((best * 2)))
    echo "| $((best * 2)) (2x) | $got2 | $drops2 | $kinds2 | $seen2 |"
    echo
    echo "Highest tested rate with zero drops for $SECS s: **$best open/s**; at twice that rate" \
        "(achieved $got2/s): **$drops2 drops**."
else
    echo
    echo "Drops at every tested rate (lowest: ${RATES%% *}/s)."
fi
