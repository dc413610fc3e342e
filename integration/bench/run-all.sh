#!/usr/bin/env bash
# The whole benchmark suite in one command: criterion benches (rule engine, decode), syscall-loop
# overhead beside bpftrace and auditd, redis-benchmark and the loops beside Falco's rules and the
# bpftrace raw-syscall floor, sustained rate, memory, start to enforcing, response
# latency. Prints one markdown summary (machine first) on stdout; progress on stderr.
# Root only. Not part of CI: CI machines are too noisy to gate on time.
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 [--quick]
  (default)  full sizes: overhead 5 reps (200k opens, 2k execs, 5k connects), redis 5 rounds
             (200k requests), sustained 60 s
             per step, memory 1000 processes + 50 containers, 10 cold starts, latency 3 runs
             (overhead waits up to 120 s per repetition for other BPF users to go away);
             roughly 40-60 min on a 2-vCPU machine
  --quick    small sizes for a smoke run (a few minutes)
Environment: CARGO_BUILD_JOBS (default 1).
EOF
}
QUICK=0
case "${1:-}" in
    "") ;; --quick) QUICK=1 ;; -h | --help) usage; exit 0 ;; *) usage >&2; exit 2 ;;
esac
need_root
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
HERE="$REPO/integration/bench"
OUT="$(mktemp -d /tmp/guard-run-all.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT

build
export BENCH_NO_BUILD=1

# criterion NAME: runs `cargo bench -p guard --bench NAME`, prints "| bench | time | thrpt |" rows.
criterion() {
    (cd "$REPO" && cargo bench -q -p guard --bench "$1" -- --noplot 2>&1) | tee "$OUT/$1.log" >&2
    awk '
        /^[^ ]/ && !/^(Benchmarking|Found|Gnuplot|WARNING)/ { skip = 0; if (!/time:/) name = $1 }
        /change:/ { skip = 1 }   # the comparison with a previous run: not a figure
        skip { next }
        /time:/ { if ($1 != "time:") name = $1; sub(/.*time: +/, ""); t = $0 }
        /thrpt:/ { sub(/.*thrpt: +/, ""); printf "| %s | %s | %s |\n", name, t, $0 }
    ' "$OUT/$1.log"
}

section() { # NAME CMD...: runs a benchmark script, keeps its markdown, notes a failure
    local name="$1"; shift
    say "=== $name: $*"
    if "$@" >"$OUT/$name.md"; then
        cat "$OUT/$name.md"
    else
        echo "### $name: FAILED (exit $?; see stderr)"
        cat "$OUT/$name.md"
    fi
    echo
}

{
    echo "## guard benchmark suite"
    echo
    echo "Machine: $(machine). Commit: $(git -C "$REPO" rev-parse --short HEAD)$( [ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] || echo ' (dirty)')."
    echo "Command: \`integration/bench/run-all.sh${1:+ $1}\`."
    echo
    echo "### Criterion: rule engine and decode (one core)"
    echo
    echo "| bench | time [low est high] | throughput [low est high] |"
    echo "|---|---|---|"
    criterion rules
    criterion decode
    echo
    if [ "$QUICK" = 1 ]; then
        section overhead bash "$HERE/overhead.sh" -r 2 -o 50000 -e 300 -c 1000
        section redis bash "$HERE/redis.sh" -r 2 -n 20000 -o 50000 -e 300 -k 1000
        section sustained bash "$HERE/sustained.sh" 5 "50000 100000 200000"
        section memory bash "$HERE/memory.sh" 1000 10
        section startup bash "$HERE/startup.sh" 3
        section latency bash "$HERE/latency.sh" 1
    else
        section overhead bash "$HERE/overhead.sh" -w 120
        section redis bash "$HERE/redis.sh"
        section sustained bash "$HERE/sustained.sh" 60
        section memory bash "$HERE/memory.sh" 1000 50
        section startup bash "$HERE/startup.sh" 10
        section latency bash "$HERE/latency.sh" 3
    fi
}
