# Issue 5 figures: cost per exec, open and connect in a cgroup under a policy with the BPF LSM
# programs attached (rules checked but not matching), as a ratio against no policy. TCG timing
# is noisy (the emulator shares the host), so ROUNDS rounds alternate: no policy, then the
# policy attached; each round gives one ratio per operation and the summary is min/median/max.
# The agent is SIGKILLed before measuring, so only the pinned LSM programs run (no
# tracepoints): the ratio is the enforcement cost alone. Absolute TCG times are meaningless.
# A second figure isolates the policy's evaluation from timing drift: with the programs attached
# once, PAIRS short batches alternate between the policed cgroup and an unpoliced sibling (where
# the programs return after one hash lookup); the per-pair ratio is policed / sibling.
# expect: bench-baseline bench-guard-ready bench-lsm bench-ratios bench-pairs
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

wl="$(mkcg policy-bench)"
echo x >/tmp/bench-file
cat >/tmp/policy.yaml <<'EOP'
- policy: bench
  workload: {cgroup: /policy-bench}
  mode: enforce
  enforce:
    exec: {deny: [/opt/never/there], deny_new_binaries: true}
    open: {deny_write: ["/srv/**"], deny_read: [/srv/secret]}
    connect: {deny: ["10.0.0.0/8:22"]}
EOP
"$GUARD" run --cleanup >/dev/null 2>&1
sib="$(mkcg policy-bench-sibling)"
ROUNDS=4 NE=100 NO=8000 NC=1500 PAIRS=12
run_in() { cg="$1"; shift; "$TESTKIT" cgroup-run "$cg" -- "$TESTKIT" bench "$@" | sed -n 's/^ok ns_per_op=//p'; }
run() { run_in "$wl" "$@"; }
measure() {
    e="$(run exec $NE /bin/busybox)"; o="$(run open $NO /tmp/bench-file)"; c="$(run connect $NC 127.0.0.1:9)"
    echo "$e $o $c"
}
# One short batch of each operation in cgroup $1.
batch() {
    e="$(run_in "$1" exec 20 /bin/busybox)"; o="$(run_in "$1" open 1500 /tmp/bench-file)"
    c="$(run_in "$1" connect 300 127.0.0.1:9)"
    echo "$e $o $c"
}
# valid3 "A B C": true when the line is exactly three positive numbers (a probe that printed
# nothing must not become a figure).
valid3() { echo "$1" | awk 'NF == 3 && $1 > 0 && $2 > 0 && $3 > 0 { ok = 1 } END { exit !ok }'; }
# The startup log must name BPF LSM as the policy backend, or the figures measure something else.
lsm_backend() { grep 'probes attached' "$GUARD_ERR" | head -n1 | grep -q 'policy_backend="bpf-lsm"'; }
# min/median/max of the numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {printf "%.3f/%.3f/%.3f", v[1], v[int((NR+1)/2)], v[NR]}'; }
measure >/dev/null
ratios=/tmp/bench-ratios
: >"$ratios"
ok=1 lsm_rounds=0 bad=""  # loop variables are not `i`: lib.sh functions use it
round=0
while [ "$round" -lt "$ROUNDS" ]; do
    round=$((round + 1))
    base="$(measure)"
    if ! guard_start --policy /tmp/policy.yaml; then ok=0; break; fi
    if lsm_backend; then lsm_rounds=$((lsm_rounds + 1)); else
        bad="round $round: $(grep 'probes attached' "$GUARD_ERR" | head -n1 | cut -c1-300)"
    fi
    kill -KILL "$GUARD_PID"; wait "$GUARD_PID" 2>/dev/null; GUARD_PID=""
    lsm="$(measure)"
    "$GUARD" run --cleanup >/dev/null 2>&1
    info "round $round ns/op exec open connect: base $base lsm $lsm"
    if ! valid3 "$base" || ! valid3 "$lsm"; then
        info "round $round: a probe printed no figure (base '$base', lsm '$lsm')"
        continue
    fi
    # shellcheck disable=SC2086
    set -- $base $lsm
    awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" -v e="$5" -v f="$6" \
        'BEGIN{printf "%.4f %.4f %.4f\n", d/a, e/b, f/c}' >>"$ratios"
done
if [ "$ok" = 1 ] && [ "$(wc -l <"$ratios")" -eq "$ROUNDS" ]; then
    pass bench-baseline "$ROUNDS rounds measured"
    pass bench-guard-ready "policy attached in every round"
    if [ "$lsm_rounds" = "$ROUNDS" ]; then
        pass bench-lsm "policy_backend=bpf-lsm in the startup log of all $ROUNDS rounds"
    else
        fail bench-lsm "policy backend not bpf-lsm in $((ROUNDS - lsm_rounds)) round(s); ${bad:-no startup log line}"
    fi
    r="exec=$(cut -d' ' -f1 "$ratios" | stats) open=$(cut -d' ' -f2 "$ratios" | stats) connect=$(cut -d' ' -f3 "$ratios" | stats)"
    info "figures $r"
    pass bench-ratios "$r (min/median/max over $ROUNDS rounds; LSM programs attached / no policy)"
else
    fail bench-guard-ready "guard did not start, or a probe printed no figure ($(wc -l <"$ratios") of $ROUNDS rounds measured, stopped in round $round)"
fi
pairs=/tmp/bench-pairs
: >"$pairs"
if guard_start --policy /tmp/policy.yaml; then
    pairs_lsm=0
    lsm_backend && pairs_lsm=1
    kill -KILL "$GUARD_PID"; wait "$GUARD_PID" 2>/dev/null; GUARD_PID=""
    pair=0
    while [ "$pair" -lt "$PAIRS" ]; do
        pair=$((pair + 1))
        # Alternate which side goes first, so drift does not favour one.
        if [ $((pair % 2)) = 0 ]; then a="$(batch "$wl")"; b="$(batch "$sib")"
        else b="$(batch "$sib")"; a="$(batch "$wl")"; fi
        if ! valid3 "$a" || ! valid3 "$b"; then
            info "pair $pair: a probe printed no figure (policed '$a', sibling '$b')"
            continue
        fi
        # shellcheck disable=SC2086
        set -- $a $b
        awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" -v e="$5" -v f="$6" \
            'BEGIN{printf "%.4f %.4f %.4f\n", a/d, b/e, c/f}' >>"$pairs"
    done
    n="$(grep -c . "$pairs")"
    if [ "$pairs_lsm" = 1 ] && [ "$n" = "$PAIRS" ]; then
        r="exec=$(cut -d' ' -f1 "$pairs" | stats) open=$(cut -d' ' -f2 "$pairs" | stats) connect=$(cut -d' ' -f3 "$pairs" | stats)"
        info "pairs $r"
        pass bench-pairs "$r (min/median/max over $PAIRS alternating pairs; policed cgroup / unpoliced sibling, programs attached)"
    else
        fail bench-pairs "$n of $PAIRS pairs measured; bpf-lsm backend: $pairs_lsm"
    fi
else
    fail bench-pairs "guard did not start"
fi
"$GUARD" run --cleanup >/dev/null 2>&1
finish
