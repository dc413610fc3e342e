#!/usr/bin/env bash
# Real-server overhead: redis-benchmark SET/GET against Debian's redis-server, plus the three
# syscall loops of overhead.sh (open+close, fork+exec, loopback connect), under five
# configurations alternated within one run (a b c f t a b c f t ...):
#   a  no agent
#   b  guard run --detect-only, default rules (policies/) and responses
#   c  guard run with an enforce policy on the bench cgroup (denies nothing the workload does)
#   f  guard run --detect-only with guard's rules plus Falco's stable rules
#   t  bpftrace counting every syscall on raw_syscalls sys_enter and sys_exit: the cost floor
#      of any tool that runs a program on every syscall
#   p  bpftrace with a do-nothing program on syscalls:sys_exit_openat alone: the floor of any
#      tool that sees opens through syscall tracepoints (with one attached, every syscall on
#      the host takes the kernel's tracing slow path)
#   o  BASE_BIN run --detect-only, default rules (a previous build, to compare in one run)
#   n  a fanotify watcher (guard-fanwatch) reading every open on the filesystem of the open
#      loop's file: the floor of seeing opens with no syscall hook at all
# A fourth loop, getppid, is a syscall no rule traces: what every syscall pays.
# redis-server (private port and directory on 127.0.0.1, no persistence) and every loop run in
# a cgroup of the script's own, so the enforce policy binds them. Cost = ns per request
# (1e9 / requests per second, SET and GET) or per loop op; ratio = cost under the
# configuration / cost with no agent in the same round; the table gives min / median / max
# over the rounds. redis-cpu is the CPU the whole host was busy (user, system, interrupts; not
# idle or steal, from /proc/stat) per redis request, agent included. redis-server,
# redis-tools and bpftrace (Debian packages) are installed with apt-get if missing. Root only.
# Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 [-r ROUNDS] [-n REQUESTS] [-c CLIENTS] [-o OPENS] [-e EXECS] [-k CONNECTS] [-s SYSCALLS]
          [-C "a b c f t p n o"]
  -r ROUNDS    rounds of the whole configuration cycle (default 5)
  -n REQUESTS  redis-benchmark requests per test, SET and GET (default 200000)
  -c CLIENTS   redis-benchmark parallel clients (default 20)
  -o OPENS     open+close iterations per loop (default 200000)
  -e EXECS     fork+exec iterations per loop (default 2000)
  -k CONNECTS  loopback connects per loop (default 10000)
  -s SYSCALLS  getppid calls per loop (default 2000000)
  -C CONFIGS   configurations among a b c f t p n o (default a b c f t p, and o with BASE_BIN;
               a is always run)
Environment: FALCO_RULES (default \$REPO/../shared/falco-rules/falco_rules.yaml),
BASE_BIN (a guard binary for config o),
LOOP_TIMEOUT (default 300 s per loop or redis-benchmark run).
Output: markdown (ratio table, then raw figures) on stdout; progress on stderr.
EOF
}

BASE="${BASE_BIN:-}"
CONFIGS="a b c f t p${BASE:+ o}"
ROUNDS=5 REQUESTS=200000 CLIENTS=20 OPENS=200000 EXECS=2000 CONNECTS=10000 SYSCALLS=2000000
while getopts "r:n:c:o:e:k:s:C:h" opt; do
    case "$opt" in
        r) ROUNDS="$OPTARG" ;; n) REQUESTS="$OPTARG" ;; c) CLIENTS="$OPTARG" ;;
        o) OPENS="$OPTARG" ;; e) EXECS="$OPTARG" ;; k) CONNECTS="$OPTARG" ;; s) SYSCALLS="$OPTARG" ;;
        C) CONFIGS="$OPTARG" ;; h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
    esac
done
for v in "$ROUNDS" "$REQUESTS" "$CLIENTS" "$OPENS" "$EXECS" "$CONNECTS" "$SYSCALLS"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
done
[ "$CLIENTS" -le 1000 ] || { say "at most 1000 clients"; exit 2; }
[[ " $CONFIGS " == *" a "* ]] || CONFIGS="a $CONFIGS"
for c in $CONFIGS; do [[ "$c" =~ ^[abcftpno]$ ]] || { usage >&2; exit 2; }; done
[[ " $CONFIGS " != *" o "* ]] || [ -x "$BASE" ] || die "config o needs BASE_BIN, an executable guard"
LOOP_TIMEOUT="${LOOP_TIMEOUT:-300}"
FALCO_RULES="${FALCO_RULES:-$REPO/../shared/falco-rules/falco_rules.yaml}"
need_root
[[ " $CONFIGS " != *" f "* ]] || [ -r "$FALCO_RULES" ] || die "no Falco rules at $FALCO_RULES (set FALCO_RULES)"

# --- tools ---------------------------------------------------------------------------------
want=()
command -v redis-server >/dev/null || want+=(redis-server)
command -v redis-benchmark >/dev/null || want+=(redis-tools)
[[ " $CONFIGS " == *" t "* || " $CONFIGS " == *" p "* ]] && ! command -v bpftrace >/dev/null &&
    want+=(bpftrace)
install_bench_tools "${want[@]}"
build

# --- fixtures --------------------------------------------------------------------------------
TMP="$(mktemp -d /tmp/guard-redis.XXXXXX)"
CGNAME="guard-bench-redis-$$"
CG="$CG2/$CGNAME"
PIN="/sys/fs/bpf/guard-bench-redis-$$"
APID="" RPID=""
# A private port: free now, from the range Linux does not hand out as ephemeral by default.
RPORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"

cleanup() {
    set +e
    stop_pid "$APID"; APID=""
    stop_pid "$RPID"; RPID=""
    loops_teardown "$GUARD" "$PIN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loops_setup "$TMP" "$CG"

mkdir "$TMP/redis"
(
    echo "$BASHPID" >"$CG/cgroup.procs"
    exec redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$TMP/redis" --save "" \
        --appendonly no --daemonize no --protected-mode yes --loglevel warning \
        --logfile "$TMP/redis/redis.log"
) &
RPID=$!
for _ in $(seq 1 100); do
    redis-cli -h 127.0.0.1 -p "$RPORT" ping 2>/dev/null | grep -qx PONG && break
    kill -0 "$RPID" 2>/dev/null || die "redis-server exited: $(cat "$TMP/redis/redis.log" 2>/dev/null)"
    sleep 0.05
done
redis-cli -h 127.0.0.1 -p "$RPORT" ping | grep -qx PONG || die "redis-server did not answer on $RPORT"

cat >"$TMP/policy.yaml" <<EOF
- policy: bench-enforce
  desc: redis benchmark, enforce policy on the bench cgroup; denies nothing the workload does
  workload: {cgroup: "/$CGNAME"}
  mode: enforce
  enforce:
    exec: {deny: [/usr/local/bin/guard-bench-denied]}
    open: {deny_write: ["/var/guard-bench-denied/**"]}
    connect: {deny: ["0.0.0.0/0:9"]}
EOF
"$GUARD" validate "$TMP/policy.yaml" >"$TMP/validate.out" 2>&1 || { cat "$TMP/validate.out" >&2; die "invalid policy"; }

cat >"$TMP/floor.bt" <<'EOF'
BEGIN { printf("ready\n"); }
tracepoint:raw_syscalls:sys_enter { @enter = count(); }
tracepoint:raw_syscalls:sys_exit { @exit = count(); }
EOF
cat >"$TMP/one.bt" <<'EOF'
BEGIN { printf("ready\n"); }
tracepoint:syscalls:sys_exit_openat { }
EOF

# --- configurations --------------------------------------------------------------------------
guard_start() { # binary extra-args...
    local bin="$1"
    shift
    rm -f "$TMP/agent.err"
    "$bin" run --rules "$REPO/policies" --responses "$REPO/responses" --format json \
        --audit-dir "$TMP/audit" --pin-dir "$PIN" "$@" >/dev/null 2>"$TMP/agent.err" &
    APID=$!
    wait_line "$TMP/agent.err" '^guard: ready' 120 "$APID"
}

start_config() {
    case "$1" in
        a) ;;
        b) guard_start "$GUARD" --detect-only ;;
        c) guard_start "$GUARD" --policy "$TMP/policy.yaml" ;;
        f) guard_start "$GUARD" --detect-only --rules "$FALCO_RULES" ;;
        o) guard_start "$BASE" --detect-only ;;
        n) rm -f "$TMP/fan.out"
           "$FANWATCH" "$TMP" >"$TMP/fan.out" 2>"$TMP/fan.err" &
           APID=$!
           wait_line "$TMP/fan.out" '^ready' 30 "$APID" ;;
        t|p) rm -f "$TMP/bt.out"
           [ "$1" = t ] && bt="$TMP/floor.bt" || bt="$TMP/one.bt"
           bpftrace -B line "$bt" >"$TMP/bt.out" 2>"$TMP/bt.err" &
           APID=$!
           wait_line "$TMP/bt.out" '^ready' 60 "$APID" ;;
    esac
}

stop_config() {
    case "$1" in
        a) ;;
        c) stop_pid "$APID"; APID=""
           # The pinned enforcement would keep running (and costing) after the agent stops.
           "$GUARD" run --cleanup --pin-dir "$PIN" >/dev/null 2>&1 || say "warning: cleanup of $PIN failed" ;;
        n) stop_pid "$APID"; APID=""
           say "fanotify watcher: $(grep -o 'events=[0-9]*' "$TMP/fan.out" || echo 'no count') records read" ;;
        *) stop_pid "$APID"; APID="" ;;
    esac
}

# busy_jiffies: CPU time (USER_HZ ticks) the host has spent busy: user, nice, system, irq,
# softirq (not idle, iowait or steal).
busy_jiffies() {
    awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# redis_run: prints "set_ns get_ns cpu_ns" (ns per request, from requests per second; busy CPU
# ns per request over both tests).
redis_run() {
    local out set get b0 b1
    b0="$(busy_jiffies)"
    out="$(timeout "$LOOP_TIMEOUT" "$TESTKIT" cgroup-run "$CG" -- redis-benchmark -h 127.0.0.1 \
        -p "$RPORT" -c "$CLIENTS" -n "$REQUESTS" -t set,get -r 100000 --csv 2>&1)" ||
        die "redis-benchmark failed or timed out: $out"
    b1="$(busy_jiffies)"
    set="$(awk -F'"' '$2 == "SET" {print $4}' <<<"$out")"
    get="$(awk -F'"' '$2 == "GET" {print $4}' <<<"$out")"
    [[ "$set" =~ ^[0-9.]+$ && "$get" =~ ^[0-9.]+$ ]] || die "unexpected redis-benchmark output: $out"
    awk -v s="$set" -v g="$get" -v b=$((b1 - b0)) -v hz="$(getconf CLK_TCK)" -v n="$REQUESTS" \
        'BEGIN { printf "%.0f %.0f %.0f\n", 1e9 / s, 1e9 / g, b * 1e9 / hz / (2 * n) }'
}

RAW="$TMP/raw"
: >"$RAW"
say "machine: $(machine)"
say "redis: $REQUESTS requests x SET/GET, $CLIENTS clients, port $RPORT; loops: open $OPENS, exec $EXECS, connect $CONNECTS; configs: $CONFIGS; rounds $ROUNDS"
foreign_warn
loops_warmup
redis_run >/dev/null
start_s=$SECONDS
for ((round = 1; round <= ROUNDS; round++)); do
    for cfg in $CONFIGS; do
        start_config "$cfg"
        r="$(redis_run)"
        read -r rs rg rc <<<"$r"
        r="$(run_loops "$OPENS" "$EXECS" "$CONNECTS" "$cfg")"
        read -r o e c <<<"$r"
        s="$(run_loop getppid "$SYSCALLS" -)"
        if [ -n "$APID" ] && ! kill -0 "$APID" 2>/dev/null; then
            die "config $cfg: the agent/tracer died during the run"
        fi
        kill -0 "$RPID" 2>/dev/null || die "redis-server died"
        stop_config "$cfg"
        printf '%s %s redis-set %s\n%s %s redis-get %s\n%s %s redis-cpu %s\n%s %s open %s\n%s %s exec %s\n%s %s connect %s\n%s %s getppid %s\n' \
            "$round" "$cfg" "$rs" "$round" "$cfg" "$rg" "$round" "$cfg" "$rc" "$round" "$cfg" "$o" \
            "$round" "$cfg" "$e" "$round" "$cfg" "$c" "$round" "$cfg" "$s" >>"$RAW"
        say "round $round config $cfg: redis SET $rs ns, GET $rg ns, CPU $rc ns; open $o ns, exec $e ns, connect $c ns, getppid $s ns ($((SECONDS - start_s)) s)"
    done
done

# --- report ----------------------------------------------------------------------------------
declare -A NAME=([a]="no agent" [b]="guard detect (default rules)" [c]="guard enforce policy"
    [f]="guard + Falco stable rules" [t]="bpftrace raw-syscall floor"
    [p]="bpftrace one-tracepoint floor" [n]="fanotify open watcher" [o]="base: $BASE")
echo "### Real-server overhead: cost vs no agent (ratio per round; min / median / max over $ROUNDS)"
echo
echo "Machine: $(machine). redis-benchmark -c $CLIENTS -n $REQUESTS -t set,get -r 100000 (Debian's"
echo "redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), 127.0.0.1); loops: open+close $OPENS, fork+exec /bin/true $EXECS,"
echo "loopback connect $CONNECTS, getppid $SYSCALLS. Command: \`${BASE:+BASE_BIN=$BASE }integration/bench/redis.sh -r $ROUNDS -n $REQUESTS -c $CLIENTS -o $OPENS -e $EXECS -k $CONNECTS -s $SYSCALLS -C \"$CONFIGS\"\`."
echo
[ -z "$FOREIGN" ] || { echo "**Warning:** other processes held BPF programs during the run: $(echo "$FOREIGN" | cut -c1-80 | tr '\n' ';')"; echo; }
echo "| workload | config | ns/op (median) | ratio min | ratio median | ratio max |"
echo "|---|---|---|---|---|---|"
ratio_rows "$RAW" redis-set redis-get redis-cpu open exec connect getppid
echo
echo "Targets (issue 18): redis <= 1.02 with guard's default rules (b), <= 1.05 with Falco's rules (f);"
echo "each loop <= 1.05 with guard's default rules (b) and below the bpftrace floor (t)."
echo
echo "| target | median | met |"
echo "|---|---|---|"
ratio_med() { # cfg workload
    awk -v c="$1" -v w="$2" '
        $3 == w && $2 == "a" { base[$1] = $4 }
        $3 == w && $2 == c { x[$1] = $4 }
        END { for (r in x) if (base[r] > 0) print x[r] / base[r] }' "$RAW" | min_med_max | cut -d' ' -f2
}
target() { # label value limit [strict]
    local met
    met="$(awk -v v="$2" -v l="$3" -v s="${4:-}" 'BEGIN { ok = s ? v < l : v <= l; print (v != "-" && l != "-" && ok) ? "yes" : "no" }')"
    printf '| %s | %s | %s |\n' "$1" "$2" "$met"
}
if [[ " $CONFIGS " == *" b "* ]]; then
    for w in redis-set redis-get; do
        target "$w, guard detect <= 1.02" "$(ratio_med b $w)" 1.02
        if [[ " $CONFIGS " == *" p "* ]]; then
            printf '| %s, one-tracepoint floor (p) | %s | - |\n' "$w" "$(ratio_med p $w)"
        fi
    done
    for w in open exec connect; do
        v="$(ratio_med b $w)"
        target "$w, guard detect <= 1.05" "$v" 1.05
        if [[ " $CONFIGS " == *" t "* ]]; then target "$w, guard detect < bpftrace floor ($(ratio_med t $w))" "$v" "$(ratio_med t $w)" strict; fi
    done
fi
if [[ " $CONFIGS " == *" f "* ]]; then
    for w in redis-set redis-get; do target "$w, guard + Falco rules <= 1.05" "$(ratio_med f $w)" 1.05; done
fi
print_raw "$RAW"
