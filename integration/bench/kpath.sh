#!/usr/bin/env bash
# Cost of the kernel-resolved open path (issue 17) on the open+close loop, in one run.
#
# guard-testkit's open loop (a fixed count of open+close of one file) runs in a cgroup of its
# own under three configurations, alternating within the run (a m k a m k ...):
#   a  no agent
#   m  guard run from BASE (a build without kernel paths, e.g. main), default rules
#      (policies/) and responses, detect mode, JSON alerts to /dev/null
#   k  the same with this tree's guard (every successful open walks the opened file's path)
# With -F both guards also load Falco's stable rules (../shared/falco-rules), whose open
# conditions let more opens through the prefilter. Ratios are per repetition (config X in
# repetition i / config a in repetition i): min/median/max over the repetitions; the k/m
# ratio is the cost of the walk. Root only. Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
    cat <<EOF
usage: $0 -b BASE_GUARD [-r REPS] [-o OPENS] [-F]
  -b BASE_GUARD  guard binary to compare with (built from a tree without kernel paths)
  -r REPS        repetitions of the a m k cycle (default 5)
  -o OPENS       open+close iterations per loop (default 200000)
  -F             also load Falco's stable rules
Output: markdown (ratio table, then the k/m ratios) on stdout; progress on stderr.
EOF
}

BASE="" REPS=5 OPENS=200000 FALCO=0
while getopts "b:r:o:Fh" opt; do
    case "$opt" in
        b) BASE="$OPTARG" ;; r) REPS="$OPTARG" ;; o) OPENS="$OPTARG" ;; F) FALCO=1 ;;
        h) usage; exit 0 ;; *) usage >&2; exit 2 ;;
    esac
done
[ -x "$BASE" ] || { usage >&2; exit 2; }
for v in "$REPS" "$OPENS"; do [[ "$v" =~ ^[1-9][0-9]*$ ]] || { usage >&2; exit 2; }; done
need_root
build

TMP="$(mktemp -d /tmp/guard-kpath-bench.XXXXXX)"
CG="$CG2/guard-bench-kpath-$$"
APID=""
cleanup() {
    set +e
    stop_pid "$APID"
    stop_pid "$LPID"
    rmdir "$CG" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
loops_setup "$TMP" "$CG"

RULES=(--rules "$REPO/policies")
[ "$FALCO" = 1 ] && RULES+=(--rules "$REPO/../shared/falco-rules")
start_config() {
    local bin
    case "$1" in a) return ;; m) bin="$BASE" ;; k) bin="$GUARD" ;; esac
    rm -f "$TMP/agent.err"
    "$bin" run "${RULES[@]}" --responses "$REPO/responses" --format json --detect-only \
        --audit-dir "$TMP/audit-$1" --metrics-addr off >/dev/null 2>"$TMP/agent.err" &
    APID=$!
    wait_line "$TMP/agent.err" '^guard: ready' 60 "$APID"
}

CONFIGS="a m k"
declare -A NAME=([a]="no agent" [m]="guard without kernel paths (BASE)" [k]="guard with kernel paths")
RAW="$TMP/raw"
: >"$RAW"
say "machine: $(machine)"
say "open loop: $OPENS iterations; reps $REPS; falco rules: $FALCO; base $BASE"
run_loop open 2000 "$LOOP_DIR/open-target" >/dev/null
for ((rep = 1; rep <= REPS; rep++)); do
    for cfg in $CONFIGS; do
        start_config "$cfg"
        ns="$(run_loop open "$OPENS" "$LOOP_DIR/open-target")"
        stop_pid "$APID"; APID=""
        echo "$rep $cfg open $ns" >>"$RAW"
        say "rep $rep config $cfg: $ns ns/op"
    done
done

echo "## Open loop: kernel-resolved paths ($(machine))"
echo
echo "\`$0 -b $BASE -r $REPS -o $OPENS$([ "$FALCO" = 1 ] && echo " -F")\`"
echo
echo "| loop | config | median ns/op | min ratio | median ratio | max ratio |"
echo "|---|---|---|---|---|---|"
ratio_rows "$RAW" open
echo
read -r mn md mx < <(awk '$2 == "m" { m[$1] = $4 } $2 == "k" { k[$1] = $4 }
    END { for (r in k) if (m[r] > 0) print k[r] / m[r] }' "$RAW" | min_med_max)
printf 'k/m (cost of the walk, same repetition): min %.3f, median %.3f, max %.3f\n' "$mn" "$md" "$mx"
echo
echo "raw (rep config loop ns/op):"
sed 's/^/    /' "$RAW"
