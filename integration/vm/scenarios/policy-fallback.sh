# Issue 16: without BPF LSM (the sigkill-fallback backend, forced here; fanotify shares these
# programs), deny_new_binaries is kept in the kernel: a file written in the workload (also
# after a rename) or a memfd is killed at sched_process_exec before its first instruction,
# while the image's binaries run and a sibling cgroup runs all of it. This kernel's verifier
# takes the drift program (`policy_open_written`) and the backstop that reads what it records.
# expect: guard-ready backend-fallback drift-attached new-binary-killed new-binary-moved-killed memfd-killed image-binary-runs sib-new-binary sib-memfd decision-records
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

policy_workload
sib="$(mkcg policy-fallback-sib)"

if ! guard_start --policy /tmp/policy.yaml --policy-backend sigkill-fallback; then
    fail guard-ready "guard run did not become ready"
    sed 's/^/  guard-stderr: /' "$GUARD_ERR" | cut -c1-400 | tail -n 40
    finish
    exit 0
fi
pass guard-ready "$(grep -c . "$GUARD_ERR") stderr lines"
line="$(grep 'probes attached' "$GUARD_ERR" | head -n1)"
case "$line" in
    *'policy_backend="sigkill-fallback"'*) pass backend-fallback "$line" ;;
    *) fail backend-fallback "startup log: ${line:-none}" ;;
esac
links="$(ls /sys/fs/bpf/guard | grep -c '^link_policy_open_written_')"
if [ "$links" -ge 4 ]; then
    pass drift-attached "$links links"
else
    fail drift-attached "$links links: $(ls /sys/fs/bpf/guard | tr '\n' ' ')"
fi

mkdir -p /tmp/nf /tmp/nf2
in_wl /bin/busybox cp /bin/busybox /tmp/nf/busybox
outcome new-binary-killed "ok signal=9" "$TESTKIT" try-exec --cgroup "$wl" /tmp/nf/busybox true
in_wl /bin/busybox mv /tmp/nf/busybox /tmp/nf2/busybox
outcome new-binary-moved-killed "ok signal=9" "$TESTKIT" try-exec --cgroup "$wl" /tmp/nf2/busybox true
outcome memfd-killed "ok signal=9" in_wl "$TESTKIT" try-memfd-exec /bin/busybox true
outcome image-binary-runs "ok exit=0" "$TESTKIT" try-exec --cgroup "$wl" /bin/busybox true
outcome sib-new-binary "ok exit=0" "$TESTKIT" try-exec --cgroup "$sib" /tmp/nf2/busybox true
outcome sib-memfd "ok exit=0" "$TESTKIT" cgroup-run "$sib" -- "$TESTKIT" try-memfd-exec /bin/busybox true

sleep 1
guard_stop
n="$(grep -c '"guard.reason":"new_binary"' "$GUARD_OUT")"
if [ "$n" -ge 3 ]; then
    pass decision-records "$n new_binary alerts"
else
    fail decision-records "$n new_binary alerts; $(grep guard_policy "$GUARD_OUT" | head -c 1500)"
fi
"$GUARD" run --cleanup >/dev/null 2>&1
finish
