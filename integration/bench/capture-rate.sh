#!/usr/bin/env bash
# Capture throughput: open/close loops paced at increasing rates, and a fork+exec loop at full
# speed, each in a cgroup of its own, with `guard record --only-cgroup` writing every enriched
# event to a file. Reports the rate each loop achieved and the drops guard counted: the highest
# rate with zero drops is what the agent sustains. Root only; not part of CI (timing).
#   usage: integration/bench/capture-rate.sh [SECONDS_PER_STEP] [EXECS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
SECS="${1:-10}"
EXECS="${2:-5000}"
cargo build -q --release -p guard
GUARD=target/release/guard
CG2="$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)"
CG="$CG2/guard-bench-$$"
mkdir "$CG"
OUT="$(mktemp)"
cleanup() { [ -n "${GPID:-}" ] && kill "$GPID" 2>/dev/null; wait 2>/dev/null || true; rmdir "$CG" 2>/dev/null || true; rm -f "$OUT" "$OUT.err"; }
trap cleanup EXIT

run_case() {
    local name="$1" count="$2" code="$3" pattern="$4"
    # A stale file saying "ready" from the previous case would start the loop early.
    rm -f "$OUT.err"
    "$GUARD" record --only-cgroup "$CG" --drop-report-secs 3600 >"$OUT" 2>"$OUT.err" &
    GPID=$!
    until grep -qs '^guard: ready' "$OUT.err"; do sleep 0.1; done
    local t0 t1
    t0=$(date +%s.%N)
    python3 -c "
import os, sys
with open('$CG/cgroup.procs', 'w') as f: f.write(str(os.getpid()))
n = $count
$code
"
    t1=$(date +%s.%N)
    sleep 1
    kill -TERM "$GPID"; wait "$GPID" || true; GPID=""
    local events drops
    events=$(grep -c "$pattern" "$OUT" || true)
    drops=$(grep '"kind":"drops"' "$OUT" | tail -n1 | sed 's/.*"total":\([0-9]*\).*/\1/')
    # unaccounted = ops - received - counted drops: must be 0 (exact accounting).
    awk -v n="$name" -v c="$count" -v a="$t0" -v b="$t1" -v e="$events" -v d="${drops:-0}" \
        'BEGIN { printf "%-10s %9d ops in %6.2f s = %9.0f ops/s; received %d, counted drops %d, unaccounted %d\n", n, c, b - a, c / (b - a), e, d, c - e - d }'
}

echo "machine: $(nproc) CPUs, $(uname -r)"
for rate in 10000 20000 40000 60000 80000 0; do
    # rate 0: unpaced, as fast as the loop goes.
    n=$(( rate > 0 ? rate * SECS : 1000000 ))
    run_case "open@${rate}" "$n" "
import time
rate = $rate
t0 = time.monotonic()
for i in range(n):
    os.close(os.open('/etc/hostname', os.O_RDONLY))
    if rate and i % 100 == 99:
        ahead = (i + 1) / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)" '"type":"openat".*"name":"/etc/hostname"'
done
run_case fork-exec "$EXECS" "
for _ in range(n):
    pid = os.posix_spawn('/bin/true', ['/bin/true'], {})
    os.waitpid(pid, 0)" '"type":"execve".*"exepath":"/bin/true"'
