# The fanotify backend's changes group (a FAN_REPORT_FID notification group) on this kernel:
# each file a deny_write rule covers is watched by identity, which before Linux 6.5 (no
# AT_HANDLE_FID) is its exportable handle (a tmpfs exports them). A truncate(2) that opens
# nothing, through a magic link (`/proc/self/fd/N` of a read descriptor, `/proc/PID/root`),
# is recorded `would-deny` in detect mode (hook fanotify_modify, the file's own path), a free
# file's is not; enforced, the writer is killed after the fact (`kill`).
# expect: guard-ready backend-fanotify changes-watched truncate-fd truncate-root truncate-free detect-records no-free-record enforce-ready enforce-truncate enforce-record
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

cg="$(mkcg policy-changes)"
mkdir -p /tmp/chg
echo small >/tmp/chg/small
echo free >/tmp/free
policy() {
    cat >/tmp/changes.yaml <<POLICY
- policy: vm-changes
  workload: {cgroup: /policy-changes}
  mode: $1
  enforce:
    open: {deny_write: ["/tmp/chg/**"]}
POLICY
}
# The walk binds a cgroup that has a process: one stays there for the whole scenario.
"$TESTKIT" cgroup-run "$cg" -- /bin/busybox sleep 600 &
keeper=$!
in_cg() { "$TESTKIT" cgroup-run "$cg" -- "$@"; }
refill() { echo small >/tmp/chg/small; }

policy detect
"$GUARD" run --cleanup >/dev/null 2>&1
if ! guard_start --policy /tmp/changes.yaml --policy-backend fanotify --log 'warn,guard::agent=debug'; then
    fail guard-ready "guard run did not become ready"
    kill "$keeper" 2>/dev/null
    finish
    exit 0
fi
pass guard-ready "detect mode"
line="$(grep 'probes attached' "$GUARD_ERR" | head -n1)"
case "$line" in
    *'policy_backend="fanotify"'*) pass backend-fanotify "$(echo "$line" | cut -c1-200)" ;;
    *) fail backend-fanotify "startup log: $(echo "${line:-none}" | cut -c1-300)" ;;
esac
# The walk's debug line counts the files newly watched.
i=0
while ! grep -q 'fanotify marks.*watched=[1-9]' "$GUARD_ERR" && [ "$i" -lt 100 ]; do
    sleep 0.1
    i=$((i + 1))
done
w="$(grep -o 'watched=[0-9]*' "$GUARD_ERR" | sort -t= -k2 -n | tail -n1)"
nochg="$(grep -c 'no change notifications' "$GUARD_ERR")"
if [ "${w#watched=}" -ge 1 ] 2>/dev/null && [ "$nochg" = 0 ]; then
    pass changes-watched "$w"
else
    fail changes-watched "${w:-no watched count}, 'no change notifications' lines: $nochg"
fi
outcome truncate-fd ok in_cg /bin/busybox sh -c 'exec 3</tmp/chg/small; exec /bin/guard-testkit try-truncate /proc/self/fd/3 0'
refill
outcome truncate-root ok in_cg "$TESTKIT" try-truncate "/proc/$keeper/root/tmp/chg/small" 0
outcome truncate-free ok in_cg "$TESTKIT" try-truncate /tmp/free 0
sleep 1
guard_stop
recs="$(grep '"source":"guard_policy"' "$GUARD_OUT")"
n="$(echo "$recs" | grep '"guard.hook":"fanotify_modify"' | grep '"guard.target":"/tmp/chg/small"' | grep -c '"decision":"would-deny"')"
if [ "$n" = 2 ]; then
    pass detect-records "2 would-deny fanotify_modify records of /tmp/chg/small"
else
    fail detect-records "$n such records; $(echo "$recs" | cut -c1-1500)"
fi
if echo "$recs" | grep -q '/tmp/free'; then
    fail no-free-record "$(echo "$recs" | grep '/tmp/free' | cut -c1-400)"
else
    pass no-free-record "none"
fi

# Enforced: the writer is killed after the fact (it stays 5 s after its truncate).
policy enforce
refill
if ! guard_start --policy /tmp/changes.yaml --policy-backend fanotify; then
    fail enforce-ready "guard run did not become ready"
    kill "$keeper" 2>/dev/null
    finish
    exit 0
fi
pass enforce-ready "enforce mode"
sleep 1
outcome enforce-truncate "ok signal=9" "$TESTKIT" try-exec --cgroup "$cg" /bin/busybox sh -c 'exec 3</tmp/chg/small; exec /bin/guard-testkit try-truncate /proc/self/fd/3 0 5000'
sleep 1
guard_stop
r="$(grep '"source":"guard_policy"' "$GUARD_OUT" | grep '"guard.hook":"fanotify_modify"' | grep '"guard.target":"/tmp/chg/small"' | head -n1)"
case "$r" in
    *'"decision":"kill"'*) pass enforce-record "$(echo "$r" | cut -c1-300)" ;;
    *) fail enforce-record "no fanotify_modify kill record; $(grep '"source":"guard_policy"' "$GUARD_OUT" | cut -c1-1500)" ;;
esac
kill "$keeper" 2>/dev/null
"$GUARD" run --cleanup >/dev/null 2>&1
finish
