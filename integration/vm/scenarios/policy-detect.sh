# Issue 5: `guard run --detect-only` turns the enforce policy into would-deny: every action is
# allowed, and each one that enforce mode denies produces a would-deny decision record.
# expect: guard-ready exec-allowed open-write-allowed open-read-allowed connect-allowed new-binary-allowed would-deny-exec would-deny-open would-deny-connect would-deny-new-binary no-deny-records mode-detect-policy
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

wl="$(mkcg policy-wl)"
mkdir -p /opt/wl /srv/secret /tmp/new
cp /bin/busybox /opt/wl/busybox
echo s3cret >/srv/secret/key
echo cfg >/srv/conf.txt
cat >/tmp/policy.yaml <<'EOF'
- policy: vm-workload
  workload: {cgroup: /policy-wl}
  mode: enforce
  enforce:
    exec: {deny: [/opt/wl/busybox], deny_new_binaries: true}
    open: {deny_write: ["/srv/**"], deny_read: [/srv/secret/key]}
    connect: {deny: ["127.0.0.0/8:9"]}
- policy: detect-by-itself
  workload: {cgroup: /policy-detect}
  mode: detect
  enforce:
    exec: {deny: [/opt/wl/busybox]}
EOF
dcg="$(mkcg policy-detect)"
"$GUARD" run --cleanup >/dev/null 2>&1
in_wl() { "$TESTKIT" cgroup-run "$wl" -- "$@"; }

if ! guard_start --detect-only --policy /tmp/policy.yaml; then
    fail guard-ready "guard run did not become ready"
    finish
    exit 0
fi
pass guard-ready "detect-only"
outcome exec-allowed "ok exit=0" "$TESTKIT" try-exec --cgroup "$wl" /opt/wl/busybox true
outcome open-write-allowed ok in_wl "$TESTKIT" try-open /srv/conf.txt w
outcome open-read-allowed ok in_wl "$TESTKIT" try-open /srv/secret/key r
outcome connect-allowed errno=111 in_wl "$TESTKIT" try-connect 127.0.0.1:9
in_wl /bin/busybox cp /bin/busybox /tmp/new/busybox
outcome new-binary-allowed "ok exit=0" "$TESTKIT" try-exec --cgroup "$wl" /tmp/new/busybox true
# A policy whose own mode is detect, without --detect-only, would behave the same; here it
# also proves per-policy mode reaches the kernel.
"$TESTKIT" try-exec --cgroup "$dcg" /opt/wl/busybox true >/dev/null 2>&1
sleep 1
guard_stop
dec() { grep '"kind":"policy_decision"' "$GUARD_OUT" | grep "$1" | grep '"decision":"would_deny"' | head -n1; }
check() {
    r="$(dec "$2")"
    if [ -n "$r" ]; then pass "$1" "$(echo "$r" | cut -c1-300)"; else fail "$1" "no would_deny record matching $2"; fi
}
check would-deny-exec '"target":"/opt/wl/busybox"'
check would-deny-open '"target":"/srv/secret/key"'
check would-deny-connect '"target":"127.0.0.1:9"'
check would-deny-new-binary '"reason":"new_binary"'
n="$(grep '"kind":"policy_decision"' "$GUARD_OUT" | grep -c '"decision":"deny"')"
if [ "$n" = 0 ]; then pass no-deny-records "0 deny records"; else fail no-deny-records "$n deny records"; fi
r="$(grep '"kind":"policy_decision"' "$GUARD_OUT" | grep '"policy":"detect-by-itself"' | head -n1)"
case "$r" in
    *'"mode":"detect"'*) pass mode-detect-policy "$(echo "$r" | cut -c1-200)" ;;
    *) fail mode-detect-policy "no detect record for detect-by-itself: ${r:-none}" ;;
esac
"$GUARD" run --cleanup >/dev/null 2>&1
finish
