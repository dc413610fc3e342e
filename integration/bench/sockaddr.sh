#!/usr/bin/env bash
# Cost of the network policy programs (cgroup connect4/connect6/sendmsg4/sendmsg6 at the cgroup
# v2 root) on a loopback TCP connect loop, with nothing else of guard running.
#
# Configurations, alternating within each repetition (a p u a p u ...):
#   a  nothing attached
#   p  the pinned programs, the loop's cgroup bound to an enforce policy whose connect rules do
#      not match the loop (a deny of port 9 and of 10.0.0.0/8): the policy lookup and the two
#      POLICY_NETS lookups run on every connect
#   u  the same programs, the loop in a cgroup without a policy: one hash lookup and return
# `guard run --policy` is started once per p/u phase and stopped once ready: the pinned links
# keep the programs attached (and its exec/cgroup_mkdir tracepoints, which a connect loop does
# not fire) while no capture program runs. Ratios are per repetition (X_i / a_i); the table
# gives min/median/max. After the timed loops of each repetition, one more p and one more u loop
# run with the kernel's BPF run-time stats on (guard-testkit prog-stats), which give the
# programs' own time per connect, free of the loop's noise. Root only. Not part of CI (timing).
set -euo pipefail
# shellcheck source=integration/bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPS="${REPS:-7}" CONNECTS="${CONNECTS:-20000}"
# BENCH_DEBUG=1 measures the debug binaries (the eBPF object is always a release build).
if [ "${BENCH_DEBUG:-0}" = 1 ]; then
    GUARD="$REPO/target/debug/guard" TESTKIT="$REPO/target/debug/guard-testkit"
else
    build
fi
need_root

TMP="$(mktemp -d /tmp/guard-sockaddr.XXXXXX)"
CGP="$CG2/guard-bench-sa-p-$$" CGU="$CG2/guard-bench-sa-u-$$"
PIN="/sys/fs/bpf/guard-bench-sa-$$"
APID="" LPID=""
cleanup() {
    set +e
    stop_pid "$APID"
    stop_pid "$LPID"
    [ -d "$PIN" ] && "$GUARD" run --cleanup --pin-dir "$PIN" >/dev/null 2>&1
    rmdir "$CGP" "$CGU" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir "$CGP" "$CGU"

python3 -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(4096)
open(sys.argv[1], "w").write(str(s.getsockname()[1]) + "\n")
while True:
    c, _ = s.accept(); c.close()' "$TMP/port" &
LPID=$!
for _ in $(seq 1 100); do [ -s "$TMP/port" ] && break; sleep 0.05; done
PORT="$(cat "$TMP/port")"

cat >"$TMP/policy.yaml" <<EOF
- policy: bench-net
  workload: {cgroup: "/$(basename "$CGP")"}
  mode: enforce
  enforce:
    connect: {deny: ["0.0.0.0/0:9", "10.0.0.0/8"]}
EOF

attach() {
    rm -f "$TMP/agent.err"
    "$GUARD" run --no-audit --rules "$REPO/policies" --pin-dir "$PIN" --policy "$TMP/policy.yaml" \
        >/dev/null 2>"$TMP/agent.err" &
    APID=$!
    wait_line "$TMP/agent.err" '^guard: ready' 120 "$APID"
    stop_pid "$APID"; APID=""
    ls "$PIN" | grep -q '^link_policy_connect4$' || die "no pinned connect4 link in $PIN"
}
detach() { "$GUARD" run --cleanup --pin-dir "$PIN" >/dev/null 2>&1; }

loop() { # cgroup -> ns/op
    local out
    out="$(timeout 300 "$TESTKIT" cgroup-run "$1" -- "$TESTKIT" bench connect "$CONNECTS" "127.0.0.1:$PORT")"
    [[ "$out" =~ ns_per_op=([0-9]+) ]] || die "unexpected loop output: $out"
    echo "${BASH_REMATCH[1]}"
}

say "machine: $(machine); $CONNECTS connects per loop, $REPS repetitions"
loop "$CGU" >/dev/null # warm-up
: >"$TMP/raw"
for rep in $(seq 1 "$REPS"); do
    a="$(loop "$CGP")"
    attach
    p="$(loop "$CGP")"
    u="$(loop "$CGU")"
    for cg in "$CGP" "$CGU"; do
        "$TESTKIT" prog-stats policy_connect4 -- "$TESTKIT" cgroup-run "$cg" -- \
            "$TESTKIT" bench connect "$CONNECTS" "127.0.0.1:$PORT" |
            awk -v t="$(basename "$cg")" '$2 == "policy_connect4" {print t, $3, $4}' >>"$TMP/stats"
    done
    detach
    echo "$rep $a $p $u" >>"$TMP/raw"
    say "rep $rep: a $a ns, p $p ns, u $u ns"
done

echo "Machine: $(machine). Loopback TCP connect ×$CONNECTS per loop, $REPS repetitions."
echo
echo "| configuration | median ns/connect | ratio min | ratio median | ratio max |"
echo "|---|---|---|---|---|"
row() { # name column
    local med rat
    med="$(awk -v c="$2" '{print $c}' "$TMP/raw" | min_med_max | awk '{print $2}')"
    rat="$(awk -v c="$2" '{printf "%.3f\n", $c / $2}' "$TMP/raw" | min_med_max)"
    # shellcheck disable=SC2086
    set -- "$1" "$med" $rat
    echo "| $1 | $2 | $3 | $4 | $5 |"
}
row "a. nothing attached" 2
row "p. programs, cgroup under policy" 3
row "u. programs, cgroup without policy" 4
echo
echo "In-kernel time of policy_connect4 per connect (BPF run-time stats, median of $REPS loops):"
for t in "$(basename "$CGP")" "$(basename "$CGU")"; do
    printf '  %s: %s ns (runs per loop: %s)\n' "$t" \
        "$(awk -v t="$t" '$1 == t {sub("ns_per_run=", "", $3); print $3}' "$TMP/stats" | min_med_max | awk '{print $2}')" \
        "$(awk -v t="$t" '$1 == t {sub("runs=", "", $2); print $2}' "$TMP/stats" | head -n1)"
done
echo
echo "Raw (rep a p u, ns/connect):"
sed 's/^/    /' "$TMP/raw"
