# Shared helpers for the benchmark scripts (sourced, not run). Root only; nothing here is part of
# CI: these are timing measurements.
# shellcheck shell=bash disable=SC2034

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
GUARD="$REPO/target/release/guard"
TESTKIT="$REPO/target/release/guard-testkit"
FANWATCH="$REPO/target/release/guard-fanwatch"
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

# install_bench_tools PKG...: apt-get install of the Debian packages given (none: nothing);
# benchmark-only tools, so not in integration/setup.sh.
install_bench_tools() {
    [ "$#" -gt 0 ] || return 0
    say "installing $* with apt-get (benchmark-only tools, not in integration/setup.sh)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# percentiles: reads numbers (one a line) and prints "min median max".
min_med_max() {
    sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "- - -"; exit }
        m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
        print v[1], m, v[NR] }'
}

# ratio_rows RAW WORKLOAD...: one markdown row per workload and config ($CONFIGS, names in
# NAME): the median ns/op, then min/median/max of cost / config a's cost in the same round.
# RAW lines are "round config workload ns".
ratio_rows() {
    local raw=$1 w cfg med_ns mn md mx
    shift
    for w in "$@"; do
        for cfg in $CONFIGS; do
            med_ns="$(awk -v c="$cfg" -v w="$w" '$2 == c && $3 == w {print $4}' "$raw" | min_med_max | cut -d' ' -f2)"
            if [ "$cfg" = a ]; then
                printf '| %s | %s | %.0f | 1 | 1 | 1 |\n' "$w" "${NAME[$cfg]}" "$med_ns"
                continue
            fi
            read -r mn md mx < <(awk -v c="$cfg" -v w="$w" '
                $3 == w && $2 == "a" { base[$1] = $4 }
                $3 == w && $2 == c { x[$1] = $4 }
                END { for (r in x) if (base[r] > 0) print x[r] / base[r] }' "$raw" | min_med_max)
            printf '| %s | %s | %.0f | %.3f | %.3f | %.3f |\n' "$w" "${NAME[$cfg]}" "$med_ns" "$mn" "$md" "$mx"
        done
    done
}

# print_raw RAW: the raw figures behind a ratio table, as a markdown code block.
print_raw() {
    echo
    echo "Raw ns/op (round config workload ns):"
    echo
    echo '```'
    cat "$1"
    echo '```'
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

# foreign_warn: sets FOREIGN (foreign_bpf) and warns on stderr when it is not empty.
foreign_warn() {
    FOREIGN="$(foreign_bpf)"
    [ -z "$FOREIGN" ] || say "warning: other processes hold BPF programs: $(echo "$FOREIGN" | cut -c1-80 | tr '\n' ';')"
}

# --- the three syscall loops (overhead.sh, redis.sh) -------------------------------------------
# Each loop is guard-testkit's bench with a fixed iteration count, in cgroup LOOP_CG.
# loops_setup DIR CGROUP: creates the loop cgroup, the open target and a loopback listener
# (LPID, PORT) that accepts and closes, so the backlog never fills; on SIGUSR1 it writes how
# many connections it accepted, so each connect loop is checked to have really connected (the
# testkit ignores connect errors). The caller stops LPID (stop_pid) and removes the cgroup.
LPID="" PORT="" LOOP_DIR="" LOOP_CG=""
loops_setup() {
    LOOP_DIR="$1" LOOP_CG="$2"
    mkdir "$LOOP_CG"
    echo x >"$LOOP_DIR/open-target"
    python3 -c '
import signal, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(4096)
n = 0
def report(*_):
    with open(sys.argv[1] + ".count", "w") as f: f.write(str(n) + "\n")
signal.signal(signal.SIGUSR1, report)
open(sys.argv[1], "w").write(str(s.getsockname()[1]) + "\n")
while True:
    c, _ = s.accept(); c.close(); n += 1' "$LOOP_DIR/port" &
    LPID=$!
    for _ in $(seq 1 100); do [ -s "$LOOP_DIR/port" ] && break; sleep 0.05; done
    PORT="$(cat "$LOOP_DIR/port")"
}

# loops_teardown GUARD_BIN PIN_DIR: the end of a script that called loops_setup: stops the
# listener, removes what an agent left pinned under PIN_DIR (with GUARD_BIN), the loop cgroup
# and the loop directory. For an EXIT trap (errors ignored).
loops_teardown() {
    stop_pid "$LPID"
    if [ -d "$2" ]; then "$1" run --cleanup --pin-dir "$2" >/dev/null 2>&1; rmdir "$2" 2>/dev/null; fi
    rmdir "$LOOP_CG" 2>/dev/null
    rm -rf "$LOOP_DIR"
}

accepted() {
    rm -f "$LOOP_DIR/port.count"
    kill -USR1 "$LPID"
    for _ in $(seq 1 100); do [ -s "$LOOP_DIR/port.count" ] && break; sleep 0.02; done
    cat "$LOOP_DIR/port.count"
}

run_loop() { # op n target -> ns/op
    local out
    out="$(timeout "${LOOP_TIMEOUT:-300}" "$TESTKIT" cgroup-run "$LOOP_CG" -- "$TESTKIT" bench "$@")" ||
        die "loop '$*' failed or timed out: $out"
    [[ "$out" =~ ns_per_op=([0-9]+) ]] || die "unexpected loop output: $out"
    echo "${BASH_REMATCH[1]}"
}

# run_loops OPENS EXECS CONNECTS CONFIG: prints "open_ns exec_ns connect_ns"; dies if fewer
# connects than asked reached the listener.
run_loops() {
    local o e c acc0 acc1
    o="$(run_loop open "$1" "$LOOP_DIR/open-target")"
    e="$(run_loop exec "$2" /bin/true)"
    acc0="$(accepted)"
    c="$(run_loop connect "$3" "127.0.0.1:$PORT")"
    for _ in $(seq 1 30); do # the listener may still be accepting the last ones
        acc1="$(accepted)"
        [ $((acc1 - acc0)) -lt "$3" ] || break
        sleep 0.1
    done
    [ $((acc1 - acc0)) -ge "$3" ] ||
        die "config $4: only $((acc1 - acc0)) of $3 connects reached the listener"
    echo "$o $e $c"
}

# loops_warmup: page cache, listener, binaries (not recorded).
loops_warmup() {
    run_loop open 2000 "$LOOP_DIR/open-target" >/dev/null
    run_loop exec 20 /bin/true >/dev/null
    run_loop connect 200 "127.0.0.1:$PORT" >/dev/null
}
