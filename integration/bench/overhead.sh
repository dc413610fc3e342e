#!/usr/bin/env bash
# Syscall-loop overhead of guard beside bpftrace and auditd, in one run.
#
# Three loops with a fixed iteration count (guard-testkit bench): open+close of a file, fork+exec
# of /bin/true, TCP connect to a loopback listener this script starts. Each loop runs in a cgroup
# of its own under five configurations, alternating within the run (a b c d e a b c d e ...):
#   a  no agent
#   b  guard run, default rules (policies/) and responses, detect mode, JSON alerts to /dev/null
#   c  guard run with an enforce policy on the loop's cgroup (denies an unrelated binary, writes
#      under an unrelated path, an unrelated port), same rules
#   d  bpftrace printing every openat/execve/connect (tracepoints syscalls:sys_enter_*) of the
#      host except its own to a file
#   e  auditd with `-a always,exit -F arch=b64 -S openat -S execve -S connect`, logging to a
#      temporary directory
# Every agent or tracer is ready before its loops run. Ratios are per repetition: config X in
# repetition i divided by config a in repetition i; the table gives min/median/max over the
# repetitions. bpftrace and auditd (Debian packages) are installed with apt-get if missing.
# Root only. Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 [-r REPS] [-o OPENS] [-e EXECS] [-c CONNECTS] [-C "a b c d e"] [-w SECONDS]
  -r REPS      repetitions of the whole a..e cycle (default 5)
  -o OPENS     open+close iterations per loop (default 200000)
  -e EXECS     fork+exec iterations per loop (default 2000)
  -c CONNECTS  loopback connects per loop (default 10000)
  -C CONFIGS   configurations to run, among a b c d e (default all; a is always run)
  -w SECONDS   before each repetition, wait up to SECONDS for other processes holding BPF
               programs (another agent, a test) to go away (default 0: only report them);
               raw rows of a repetition that started with one are marked "busy"
Output: markdown (ratio table, then raw ns/op) on stdout; progress on stderr.
Each loop is bounded by a ${LOOP_TIMEOUT:-300} s timeout (env LOOP_TIMEOUT).
EOF
}

REPS=5 OPENS=200000 EXECS=2000 CONNECTS=10000 CONFIGS="a b c d e" QUIET_WAIT=0
while getopts "r:o:e:c:C:w:h" opt; do
    case "$opt" in
        r) REPS="$OPTARG" ;; o) OPENS="$OPTARG" ;; e) EXECS="$OPTARG" ;;
        c) CONNECTS="$OPTARG" ;; C) CONFIGS="$OPTARG" ;; w) QUIET_WAIT="$OPTARG" ;;
        h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
    esac
done
[[ "$QUIET_WAIT" =~ ^[0-9]+$ ]] || { usage >&2; exit 2; }
for v in "$REPS" "$OPENS" "$EXECS" "$CONNECTS"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
done
[[ " $CONFIGS " == *" a "* ]] || CONFIGS="a $CONFIGS"
for c in $CONFIGS; do [[ "$c" =~ ^[abcde]$ ]] || { usage >&2; exit 2; }; done
LOOP_TIMEOUT="${LOOP_TIMEOUT:-300}"
need_root

# --- tools ---------------------------------------------------------------------------------
want=()
[[ " $CONFIGS " == *" d "* ]] && ! command -v bpftrace >/dev/null && want+=(bpftrace)
[[ " $CONFIGS " == *" e "* ]] && ! command -v auditd >/dev/null && want+=(auditd)
install_bench_tools "${want[@]}"
build

# --- fixtures --------------------------------------------------------------------------------
TMP="$(mktemp -d /tmp/guard-overhead.XXXXXX)"
CGNAME="guard-bench-$$"
CG="$CG2/$CGNAME"
PIN="/sys/fs/bpf/guard-bench-$$"
APID="" AUDIT_RULE_ADDED=0 AUDIT_ENABLED_BEFORE="" AUDIT_BACKLOG_BEFORE=""
AUDIT_RULE=(-F arch=b64 -S openat -S execve -S connect -k guard-bench)

cleanup() {
    set +e
    stop_pid "$APID"; APID=""
    if [ "$AUDIT_RULE_ADDED" = 1 ]; then auditctl -d always,exit "${AUDIT_RULE[@]}" >/dev/null 2>&1; fi
    if [ -n "$AUDIT_ENABLED_BEFORE" ]; then auditctl -e "$AUDIT_ENABLED_BEFORE" >/dev/null 2>&1; fi
    if [ -n "$AUDIT_BACKLOG_BEFORE" ]; then auditctl -b "$AUDIT_BACKLOG_BEFORE" >/dev/null 2>&1; fi
    loops_teardown "$GUARD" "$PIN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loops_setup "$TMP" "$CG"

cat >"$TMP/policy.yaml" <<EOF
- policy: bench-enforce
  desc: overhead benchmark, enforce policy on the loop cgroup; denies nothing the loops do
  workload: {cgroup: "/$CGNAME"}
  mode: enforce
  enforce:
    exec: {deny: [/usr/local/bin/guard-bench-denied]}
    open: {deny_write: ["/var/guard-bench-denied/**"]}
    connect: {deny: ["0.0.0.0/0:9"]}
EOF
"$GUARD" validate "$TMP/policy.yaml" >"$TMP/validate.out" 2>&1 || { cat "$TMP/validate.out" >&2; die "invalid policy"; }

cat >"$TMP/trace.bt" <<'EOF'
BEGIN { printf("ready\n"); }
tracepoint:syscalls:sys_enter_openat /comm != "bpftrace"/
{ printf("%d %s openat %s\n", pid, comm, str(args->filename)); }
tracepoint:syscalls:sys_enter_execve /comm != "bpftrace"/
{ printf("%d %s execve %s\n", pid, comm, str(args->filename)); }
tracepoint:syscalls:sys_enter_connect /comm != "bpftrace"/
{ printf("%d %s connect %d\n", pid, comm, args->fd); }
EOF

mkdir -p "$TMP/auditd"
cat >"$TMP/auditd/auditd.conf" <<EOF
log_file = $TMP/auditd/audit.log
log_format = ENRICHED
log_group = root
write_logs = yes
flush = INCREMENTAL_ASYNC
freq = 50
priority_boost = 4
max_log_file = 100
max_log_file_action = ROTATE
num_logs = 2
space_left = 200
space_left_action = IGNORE
admin_space_left = 100
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
local_events = yes
EOF
chmod 0640 "$TMP/auditd/auditd.conf"

# --- configurations --------------------------------------------------------------------------
guard_start() { # extra args...
    rm -f "$TMP/agent.err"
    "$GUARD" run --rules "$REPO/policies" --responses "$REPO/responses" --format json \
        --audit-dir "$TMP/audit" --pin-dir "$PIN" "$@" >/dev/null 2>"$TMP/agent.err" &
    APID=$!
    wait_line "$TMP/agent.err" '^guard: ready' 60 "$APID"
}

start_config() {
    case "$1" in
        a) ;;
        b) guard_start --detect-only ;;
        c) guard_start --policy "$TMP/policy.yaml"
           grep -q 'policy_backend' "$TMP/agent.err" || say "warning: no policy_backend line in guard's log" ;;
        d) rm -f "$TMP/bt.out" "$TMP/bt.err"
           bpftrace -o "$TMP/bt.out" "$TMP/trace.bt" 2>"$TMP/bt.err" &
           APID=$!
           wait_line "$TMP/bt.out" '^ready' 60 "$APID" ;;
        e) if [ -z "$AUDIT_ENABLED_BEFORE" ]; then
               AUDIT_ENABLED_BEFORE="$(auditctl -s | awk '$1 == "enabled" {print $2}')"
               AUDIT_BACKLOG_BEFORE="$(auditctl -s | awk '$1 == "backlog_limit" {print $2}')"
               ! auditctl -l | grep -qv '^No rules' || say "warning: audit rules present before the run: $(auditctl -l | tr '\n' ';')"
           fi
           rm -f "$TMP/auditd/audit.log"*
           auditd -n -c "$TMP/auditd" 2>"$TMP/auditd.err" &
           APID=$!
           local i
           for ((i = 0; i < 200; i++)); do
               auditctl -s 2>/dev/null | grep -qx "pid $APID" && break
               kill -0 "$APID" 2>/dev/null || { cat "$TMP/auditd.err" >&2; die "auditd exited"; }
               sleep 0.05
           done
           auditctl -s | grep -qx "pid $APID" || die "auditd did not register with the kernel"
           auditctl -e 1 >/dev/null
           auditctl -b 8192 >/dev/null
           auditctl -a always,exit "${AUDIT_RULE[@]}" >/dev/null
           AUDIT_RULE_ADDED=1 ;;
    esac
}

stop_config() {
    case "$1" in
        a) ;;
        e) auditctl -d always,exit "${AUDIT_RULE[@]}" >/dev/null; AUDIT_RULE_ADDED=0
           stop_pid "$APID"; APID="" ;;
        c) stop_pid "$APID"; APID=""
           # The pinned fallback link would keep running (and costing) after the agent stops.
           "$GUARD" run --cleanup --pin-dir "$PIN" >/dev/null 2>&1 || say "warning: cleanup of $PIN failed" ;;
        *) stop_pid "$APID"; APID="" ;;
    esac
    rm -f "$TMP/bt.out" "$TMP/auditd/audit.log"*
}

RAW="$TMP/raw"
: >"$RAW"
say "machine: $(machine)"
say "loops: open $OPENS, exec $EXECS, connect $CONNECTS (port $PORT); configs: $CONFIGS; reps $REPS"
loops_warmup
start_s=$SECONDS
BUSY_REPS=""
for ((rep = 1; rep <= REPS; rep++)); do
    waited=$SECONDS
    while FOREIGN="$(foreign_bpf)"; [ -n "$FOREIGN" ] && [ $((SECONDS - waited)) -lt "$QUIET_WAIT" ]; do
        sleep 2
    done
    busy=""
    if [ -n "$FOREIGN" ]; then
        busy=" busy"; BUSY_REPS+=" $rep"
        say "warning: rep $rep starts with other processes holding BPF programs: $(echo "$FOREIGN" | cut -c1-80 | tr '\n' ';')"
    fi
    for cfg in $CONFIGS; do
        start_config "$cfg"
        r="$(run_loops "$OPENS" "$EXECS" "$CONNECTS" "$cfg")"
        read -r o e c <<<"$r"
        if [ -n "$APID" ] && ! kill -0 "$APID" 2>/dev/null; then
            die "config $cfg: the agent/tracer died during the loops"
        fi
        stop_config "$cfg"
        printf '%s %s open %s%s\n%s %s exec %s%s\n%s %s connect %s%s\n' "$rep" "$cfg" "$o" "$busy" \
            "$rep" "$cfg" "$e" "$busy" "$rep" "$cfg" "$c" "$busy" >>"$RAW"
        say "rep $rep config $cfg: open $o ns, exec $e ns, connect $c ns ($((SECONDS - start_s)) s)"
    done
done

# --- report ----------------------------------------------------------------------------------
declare -A NAME=([a]="no agent" [b]="guard detect (default rules)" [c]="guard enforce policy"
    [d]="bpftrace (printf per syscall)" [e]="auditd (3 syscall rules)")
echo "### Syscall-loop overhead: slowdown vs no agent (ratio per repetition; min / median / max over $REPS)"
echo
echo "Machine: $(machine). Loops: open+close $OPENS, fork+exec /bin/true $EXECS, loopback connect $CONNECTS."
echo
if [ -n "$BUSY_REPS" ]; then
    echo "**Warning:** repetitions$BUSY_REPS started while other processes held BPF programs (another"
    echo "agent or test: its cost is in every configuration of that repetition, including a)."
    echo
fi
echo "| loop | config | ns/op (median) | ratio min | ratio median | ratio max |"
echo "|---|---|---|---|---|---|"
ratio_rows "$RAW" open exec connect
echo
echo "Raw ns/op (rep config loop ns):"
echo
echo '```'
cat "$RAW"
echo '```'
