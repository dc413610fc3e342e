#!/usr/bin/env bash
# Agent CPU per delivered event: `guard run --no-prefilter` (every open reaches the agent) under
# an unpaced open flood for SECONDS; CPU ticks of the agent over the records it received (from
# /metrics). Compare two builds by alternating them: `agent-cpu.sh -b OLD; agent-cpu.sh -b NEW`.
# Root only. Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
usage() {
    cat <<USAGE
usage: $0 [-b GUARD_BIN] [-s SECONDS] [-p PORT]
  -b  guard binary (default: target/release/guard)
  -s  flood duration in seconds (default 6)
  -p  metrics port on 127.0.0.1 (default 9478)
prints: events=N cpu_ticks=T us_per_event=X
USAGE
}
BIN="$GUARD" SECS=6 PORT=9478
while getopts "b:s:p:h" o; do
    case "$o" in
        b) BIN="$OPTARG" ;; s) SECS="$OPTARG" ;; p) PORT="$OPTARG" ;;
        h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
    esac
done
[[ "$SECS" =~ ^[1-9][0-9]*$ && "$PORT" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
need_root
build
TMP="$(mktemp -d)"
APID=""
cleanup() { stop_pid "$APID"; rm -rf "$TMP"; }
trap cleanup EXIT
"$BIN" run --no-responses --rules "$REPO/policies" --no-prefilter --format json \
    --metrics-addr "127.0.0.1:$PORT" >/dev/null 2>"$TMP/err" &
APID=$!
wait_line "$TMP/err" '^guard: ready' 60 "$APID"
received() {
    curl -s "127.0.0.1:$PORT/metrics" | awk '/^guard_events_received_total/ {s += $2} END {print s + 0}'
}
ticks() { awk '{print $14 + $15}' "/proc/$APID/stat"; }
sleep 2
e0="$(received)"; c0="$(ticks)"
timeout "$SECS" "$TESTKIT" bench open 1000000000 /etc/hostname >/dev/null || true
sleep 2
e1="$(received)"; c1="$(ticks)"
awk -v e=$((e1 - e0)) -v t=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "events=%d cpu_ticks=%d us_per_event=%.2f\n", e, t, (e ? t / hz * 1e6 / e : 0)}'
