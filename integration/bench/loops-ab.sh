#!/usr/bin/env bash
# Two guard binaries side by side on the three syscall loops of overhead.sh (open+close,
# fork+exec, loopback connect): no agent, BASE_BIN and GUARD_BIN (both `run --detect-only`
# with the default rules), alternated per round, so a change to the capture programs is
# measured against the binary before it in the same sitting. Ratio = cost / no-agent cost in
# the same round; min / median / max over the rounds.
# Root. Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: BASE_BIN=PATH $0 [-r ROUNDS] [-o OPENS] [-e EXECS] [-k CONNECTS]
  -r ROUNDS    rounds (default 5, at most 50)
  -o OPENS     open+close iterations per loop (default 200000)
  -e EXECS     fork+exec iterations per loop (default 2000)
  -k CONNECTS  loopback connects per loop (default 10000)
Environment: BASE_BIN (required: the binary to compare against, e.g. a build of the previous
commit), GUARD_BIN (default target/release/guard), LOOP_TIMEOUT (default 300 s per loop).
Output: markdown on stdout; progress on stderr.
EOF
}

ROUNDS=5 OPENS=200000 EXECS=2000 CONNECTS=10000
while getopts "r:o:e:k:h" opt; do
    case "$opt" in
        r) ROUNDS="$OPTARG" ;; o) OPENS="$OPTARG" ;; e) EXECS="$OPTARG" ;;
        k) CONNECTS="$OPTARG" ;; h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
    esac
done
for v in "$ROUNDS" "$OPENS" "$EXECS" "$CONNECTS"; do
    [[ "$v" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }
done
[ "$ROUNDS" -le 50 ] || { usage >&2; exit 2; }
need_root
build
NEW="${GUARD_BIN:-$GUARD}"
BASE="${BASE_BIN:-}"
[ -n "$BASE" ] || { usage >&2; exit 2; }
for b in "$NEW" "$BASE"; do [ -x "$b" ] || die "no guard binary at $b"; done
[ -x "$TESTKIT" ] || die "no guard-testkit at $TESTKIT"

TMP="$(mktemp -d /tmp/guard-loops-ab.XXXXXX)"
CG="$CG2/guard-bench-loops-ab-$$"
PIN="/sys/fs/bpf/guard-bench-loops-ab-$$"
APID=""
cleanup() {
    set +e
    stop_pid "$APID"
    loops_teardown "$NEW" "$PIN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

loops_setup "$TMP" "$CG"

start_config() {
    local bin
    case "$1" in a) return ;; b) bin="$BASE" ;; n) bin="$NEW" ;; esac
    rm -f "$TMP/agent.err"
    "$bin" run --rules "$REPO/policies" --responses "$REPO/responses" --format json \
        --audit-dir "$TMP/audit-$1" --pin-dir "$PIN" --detect-only >/dev/null 2>"$TMP/agent.err" &
    APID=$!
    wait_line "$TMP/agent.err" '^guard: ready' 120 "$APID"
}

CONFIGS="a b n"
RAW="$TMP/raw"
: >"$RAW"
say "machine: $(machine)"
say "base $BASE, new $NEW; loops: open $OPENS, exec $EXECS, connect $CONNECTS; rounds $ROUNDS"
foreign_warn
loops_warmup
for ((round = 1; round <= ROUNDS; round++)); do
    for cfg in $CONFIGS; do
        start_config "$cfg"
        r="$(run_loops "$OPENS" "$EXECS" "$CONNECTS" "$cfg")"
        read -r o e c <<<"$r"
        if [ -n "$APID" ]; then
            kill -0 "$APID" 2>/dev/null || die "config $cfg: the agent died during the run"
            stop_pid "$APID"; APID=""
        fi
        printf '%s %s open %s\n%s %s exec %s\n%s %s connect %s\n' \
            "$round" "$cfg" "$o" "$round" "$cfg" "$e" "$round" "$cfg" "$c" >>"$RAW"
        say "round $round config $cfg: open $o ns, exec $e ns, connect $c ns"
    done
done

declare -A NAME=([a]="no agent" [b]="base: $(basename "$BASE")" [n]="new: $(basename "$NEW")")
echo "### Two binaries on the syscall loops: cost vs no agent (min / median / max over $ROUNDS rounds)"
echo
echo "Machine: $(machine). Base \`$BASE\`, new \`$NEW\` (both \`run --detect-only\`, default rules)."
echo "Command: \`BASE_BIN=$BASE integration/bench/loops-ab.sh -r $ROUNDS -o $OPENS -e $EXECS -k $CONNECTS\`."
echo
[ -z "$FOREIGN" ] || { echo "**Warning:** other processes held BPF programs during the run: $(echo "$FOREIGN" | cut -c1-80 | tr '\n' ';')"; echo; }
echo "| workload | config | ns/op (median) | ratio min | ratio median | ratio max |"
echo "|---|---|---|---|---|---|"
ratio_rows "$RAW" open exec connect
print_raw "$RAW"
