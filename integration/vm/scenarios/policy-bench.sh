# Issue 5 figures: cost per exec, open and connect in a cgroup under a policy with the BPF LSM
# programs attached (rules checked but not matching), as a ratio against no policy. TCG timing
# is noisy (the emulator shares the host), so ROUNDS rounds alternate: no policy, then the
# policy attached; each round gives one ratio per operation and the summary is min/median/max.
# The agent is SIGKILLed before measuring, so only the pinned LSM programs run (no
# tracepoints): the ratio is the enforcement cost alone. Absolute TCG times are meaningless.
# expect: bench-baseline bench-guard-ready bench-lsm bench-ratios
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
ROUNDS=5 NE=150 NO=10000 NC=2000
run() { "$TESTKIT" cgroup-run "$wl" -- "$TESTKIT" bench "$@" | sed -n 's/^ok ns_per_op=//p'; }
measure() {
    e="$(run exec $NE /bin/busybox)"; o="$(run open $NO /tmp/bench-file)"; c="$(run connect $NC 127.0.0.1:9)"
    echo "$e $o $c"
}
# min/median/max of the numbers on stdin.
stats() { sort -g | awk '{v[NR]=$1} END {printf "%.3f/%.3f/%.3f", v[1], v[int((NR+1)/2)], v[NR]}'; }
measure >/dev/null
ratios=/tmp/bench-ratios
: >"$ratios"
ok=1
i=0
while [ "$i" -lt "$ROUNDS" ]; do
    i=$((i + 1))
    base="$(measure)"
    if ! guard_start --policy /tmp/policy.yaml; then ok=0; break; fi
    kill -KILL "$GUARD_PID"; wait "$GUARD_PID" 2>/dev/null; GUARD_PID=""
    lsm="$(measure)"
    "$GUARD" run --cleanup >/dev/null 2>&1
    info "round $i ns/op exec open connect: base $base lsm $lsm"
    # shellcheck disable=SC2086
    set -- $base $lsm
    awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" -v e="$5" -v f="$6" \
        'BEGIN{printf "%.4f %.4f %.4f\n", d/a, e/b, f/c}' >>"$ratios"
done
if [ "$ok" = 1 ] && [ "$(wc -l <"$ratios")" -eq "$ROUNDS" ]; then
    pass bench-baseline "$ROUNDS rounds measured"
    pass bench-guard-ready "policy attached in every round"
    pass bench-lsm "LSM programs attached in every round"
    r="exec=$(cut -d' ' -f1 "$ratios" | stats) open=$(cut -d' ' -f2 "$ratios" | stats) connect=$(cut -d' ' -f3 "$ratios" | stats)"
    info "figures $r"
    pass bench-ratios "$r (min/median/max over $ROUNDS rounds; LSM programs attached / no policy)"
else
    fail bench-guard-ready "guard did not start (round $i)"
fi
"$GUARD" run --cleanup >/dev/null 2>&1
finish
