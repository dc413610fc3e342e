# Issue 5 figures: cost per exec, open and connect in a cgroup under a policy with the BPF LSM
# programs attached (rules checked but not matching), as a ratio against no policy, in the same
# boot. The agent is SIGKILLed before measuring, so only the pinned LSM programs run (no
# tracepoints): the ratio is the enforcement cost alone. TCG: absolute times are meaningless.
# expect: bench-baseline bench-guard-ready bench-lsm bench-ratios
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

wl="$(mkcg policy-bench)"
echo x >/tmp/bench-file
cat >/tmp/policy.yaml <<'EOF'
- policy: bench
  workload: {cgroup: /policy-bench}
  mode: enforce
  enforce:
    exec: {deny: [/opt/never/there], deny_new_binaries: true}
    open: {deny_write: ["/srv/**"], deny_read: [/srv/secret]}
    connect: {deny: ["10.0.0.0/8:22"]}
EOF
"$GUARD" run --cleanup >/dev/null 2>&1
NE=300 NO=20000 NC=5000
run() { "$TESTKIT" cgroup-run "$wl" -- "$TESTKIT" bench "$@" | sed -n 's/^ok ns_per_op=//p'; }
measure() {
    e="$(run exec $NE /bin/busybox)"; o="$(run open $NO /tmp/bench-file)"; c="$(run connect $NC 127.0.0.1:9)"
    echo "$e $o $c"
}
# Warm-up, then the baseline with no policy.
measure >/dev/null
base="$(measure)"
pass bench-baseline "ns/op exec open connect: $base"
if guard_start --policy /tmp/policy.yaml; then
    pass bench-guard-ready "policy attached"
    kill -KILL "$GUARD_PID"; wait "$GUARD_PID" 2>/dev/null; GUARD_PID=""
    measure >/dev/null
    lsm="$(measure)"
    pass bench-lsm "ns/op exec open connect: $lsm"
    set -- $base $lsm
    r="$(awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" -v e="$5" -v f="$6" 'BEGIN{printf "exec=%.3f open=%.3f connect=%.3f", d/a, e/b, f/c}')"
    info "figures $r"
    pass bench-ratios "$r (LSM programs attached / no policy)"
else
    fail bench-guard-ready "guard did not start"
fi
"$GUARD" run --cleanup >/dev/null 2>&1
finish
