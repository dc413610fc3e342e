# Shared helpers for the benchmark scripts (sourced, not run). Root only; nothing here is part of
# CI: these are timing measurements.
# shellcheck shell=bash disable=SC2034

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GUARD="$REPO/target/release/guard"
TESTKIT="$REPO/target/release/guard-testkit"
CG2="$(awk '$9 == "cgroup2" {print $5; exit}' /proc/self/mountinfo)"
# Plain log lines (no ANSI colours), so scripts can read the fields.
export NO_COLOR=1

say() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
die() { say "$*"; exit 1; }

need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (loads eBPF programs)"; }

# Builds the release binaries unless BENCH_NO_BUILD=1 (run-all.sh builds once).
build() {
    [ "${BENCH_NO_BUILD:-0}" = 1 ] && return
    say "building release binaries (CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1})"
    (cd "$REPO" && CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}" \
        cargo build -q --release -p guard -p guard-tests)
}

# wait_line FILE PATTERN SECONDS PID: waits until FILE has a line matching PATTERN (grep -E),
# while PID lives, at most SECONDS. The caller removes FILE before starting PID, so a line
# from an earlier run can never count.
wait_line() {
    local file="$1" pattern="$2" secs="$3" pid="$4" i
    for ((i = 0; i < secs * 20; i++)); do
        grep -Eqs "$pattern" "$file" && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            say "process $pid exited before '$pattern'; last lines of $file:"
            tail -n 20 "$file" >&2 || true
            return 1
        fi
        sleep 0.05
    done
    say "no '$pattern' in $file within $secs s"
    return 1
}

# stop_pid PID [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 15); reaps our child.
stop_pid() {
    local pid="$1" secs="${2:-15}" i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# percentiles: reads numbers (one a line) and prints "min median max".
min_med_max() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        print v[1], m, v[NR] }'
}

machine() {
    printf '%s CPUs (%s), kernel %s, %s\n' "$(nproc)" \
        "$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)" "$(uname -r)" \
        "$(date -u '+%Y-%m-%d %H:%M UTC')"
}

# Docker for the container benchmarks: integration/docker.sh starts dockerd if none answers.
# docker_done stops it again only if we started it and no container is left on it (other
# sessions may share the daemon; `docker.sh down` would remove their test containers).
DOCKER_WAS_UP=""
docker_up() {
    if timeout 5 docker info >/dev/null 2>&1; then DOCKER_WAS_UP=1; else DOCKER_WAS_UP=0; fi
    bash "$REPO/integration/docker.sh" up
}
docker_done() {
    [ "$DOCKER_WAS_UP" = 0 ] || return 0
    if [ -z "$(docker ps -aq 2>/dev/null)" ]; then
        bash "$REPO/integration/docker.sh" down || true
    else
        say "leaving dockerd running: it has containers we did not start"
    fi
}

# foreign_bpf: prints "PID command" for every process outside this script's tree that holds a
# BPF program (another agent or tracer running would add its cost to every configuration).
foreign_bpf() {
    local p pid
    for p in /proc/[0-9]*; do
        pid="${p#/proc/}"
        [ "$pid" = "$$" ] && continue
        if [ -n "$(find "$p/fd" -lname 'anon_inode:bpf-prog' -print -quit 2>/dev/null)" ]; then
            printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null | cut -c1-100)"
        fi
    done
}
