#!/usr/bin/env bash
# Response latency, from the host tests that measure it (each run prints one line):
#   kill_process:   alert -> process dead (pidfd), 30 trials
#                   (tests/tests/respond_semantics.rs kill_process_latency_and_death)
#   kill_container: alert -> container init exited (pidfd), 20 trials, real dockerd
#                   (tests/tests/respond_container.rs kill_container_on_critical_latency):
#                   the response engine alone, from the moment it is handed the alert
#   kill_container from the offending syscall: the whole agent (guard run), a shell exec'd in
#                   a container -> Docker's FinishedAt (and -> the init's exit), from the exec
#                   event's kernel timestamp, 20 trials
#                   (respond_container.rs kill_container_latency_from_the_offending_exec)
# The target is judged on the exec -> FinishedAt line: it is what a user sees.
# Both are run RUNS times; every p50/p99/max line is reported, and each p99 is judged against
# the product target (DESIGN section 10): kill_process p99 < 5 ms, kill_container p99 < 150 ms.
# This script is where those targets are measured: the tests themselves only assert a 5 s
# sanity bound. Docker comes from integration/docker.sh (stopped again only if this script
# started it and nothing else runs). Root only. Not part of CI (too noisy to gate on time).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 [RUNS]
  RUNS  runs of each test (default 3, at most 20); each cargo test is bounded by 600 s
Output: markdown on stdout; progress and cargo output on stderr.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac
RUNS="${1:-3}"
{ [[ "$RUNS" =~ ^[1-9][0-9]*$ ]] && [ "$RUNS" -le 20 ]; } || { usage >&2; exit 2; }
need_root

TMP="$(mktemp -d /tmp/guard-latency.XXXXXX)"
cleanup() { set +e; docker_done; rm -rf "$TMP"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
docker_up

cd "$REPO"
say "building the test binaries"
CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" cargo test -q -p guard-tests --test respond_semantics \
    --test respond_container --no-run >&2

# run_test TEST FILTER PATTERN: runs one test, prints its latency line.
run_test() {
    local test="$1" filter="$2" pattern="$3" out
    out="$TMP/out"
    if ! CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" timeout 600 cargo test -q -p guard-tests \
        --test "$test" -- --exact "$filter" --nocapture >"$out" 2>&1; then
        cat "$out" >&2
        die "$test $filter failed"
    fi
    grep -m1 "$pattern" "$out" || die "$test $filter printed no '$pattern' line (Docker missing?)"
}

# p99_ms LINE: the p99 of a test's latency line (Rust's Duration Debug: 312.4µs, 1.2ms, 2.5s)
# in milliseconds.
p99_ms() {
    awk '{
        for (i = 1; i < NF; i++) if ($i == "p99") { v = $(i + 1); break }
        if (v == "") exit 1
        if (v ~ /ns$/) f = 1e-6; else if (v ~ /µs$/) f = 1e-3; else if (v ~ /ms$/) f = 1
        else if (v ~ /s$/) f = 1000; else exit 1
        sub(/[^0-9.]+$/, "", v); printf "%.3f\n", v * f
    }' <<<"$1" || die "no p99 in: $1"
}

# judge LINE TARGET_MS: "p99 X ms < T ms: met" or "... MISSED".
judge() {
    local p99
    p99="$(p99_ms "$1")"
    awk -v p="$p99" -v t="$2" 'BEGIN { printf "p99 %s ms vs target %s ms: %s\n", p, t, (p < t ? "met" : "MISSED") }'
}

say "machine: $(machine)"
echo "### Response latency ($RUNS runs of each test)"
echo
echo "Machine: $(machine)."
echo
echo "| run | measurement | against the target |"
echo "|---|---|---|"
for ((run = 1; run <= RUNS; run++)); do
    l="$(run_test respond_semantics kill_process_latency_and_death 'kill_process alert->process dead')"
    echo "| $run | $l | $(judge "$l" 5) |"
    say "$l"
    l="$(run_test respond_container kill_container_on_critical_latency 'kill_container alert->container init exited')"
    echo "| $run | $l | (engine alone; not the target's measure) |"
    say "$l"
    out="$TMP/exec"
    run_test respond_container kill_container_latency_from_the_offending_exec 'kill_container exec->FinishedAt' >"$out"
    l="$(cat "$out")"
    echo "| $run | $l | $(judge "$l" 150) |"
    say "$l"
    for p in 'kill_container exec->container init exited' 'kill_container agent event seen->kill done'; do
        l="$(grep -m1 "$p" "$TMP/out")" || die "no '$p' line"
        echo "| $run | $l | |"
    done
done
