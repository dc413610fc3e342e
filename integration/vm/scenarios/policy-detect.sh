# Issue 5: `guard run --detect-only` turns the enforce policy into would-deny: every action is
# allowed, and each one that enforce mode denies produces a would-deny decision record.
# Then, without --detect-only, a policy whose own mode is detect: its denied exec runs and is
# recorded as would_deny, which proves the per-policy mode reaches the kernel.
# expect: guard-ready exec-allowed open-write-allowed open-read-allowed connect-allowed new-binary-allowed would-deny-exec would-deny-open would-deny-connect would-deny-new-binary no-deny-records would-deny-alerts report-rollout policy-mode-ready policy-mode-exec-allowed policy-mode-would-deny policy-mode-no-deny mode-detect-policy
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

policy_workload
mkdir -p /tmp/new
cat >/tmp/policy-mode.yaml <<'EOF'
- policy: detect-by-itself
  workload: {cgroup: /policy-detect}
  mode: detect
  enforce:
    exec: {deny: [/opt/wl/busybox]}
EOF
dcg="$(mkcg policy-detect)"
GUARD_AUDIT_DIR=/tmp/audit-detect
rm -rf "$GUARD_AUDIT_DIR"

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
sleep 1
guard_stop
audit() { cat "$GUARD_AUDIT_DIR"/audit-*.jsonl 2>/dev/null | grep '"kind":"decision"'; }
dec() { audit | grep "$1" | grep '"decision":"would_deny"' | head -n1; }
check() {
    r="$(dec "$2")"
    if [ -n "$r" ]; then pass "$1" "$(echo "$r" | cut -c1-300)"; else fail "$1" "no would_deny record matching $2"; fi
}
check would-deny-exec '"target":"/opt/wl/busybox"'
check would-deny-open '"target":"/srv/secret/key"'
check would-deny-connect '"target":"127.0.0.1:9"'
r="$(grep '"source":"guard_policy"' "$GUARD_OUT" | grep '"guard.reason":"new_binary"' | grep '"decision":"would-deny"' | head -n1)"
if [ -n "$r" ]; then pass would-deny-new-binary "$(echo "$r" | cut -c1-300)"; else fail would-deny-new-binary "no would-deny alert with reason new_binary"; fi
n="$(audit | grep -c '"decision":"deny"')"
if [ "$n" = 0 ]; then pass no-deny-records "0 deny records"; else fail no-deny-records "$n deny records"; fi
n_alert="$(grep '"source":"guard_policy"' "$GUARD_OUT" | grep -c '"decision":"would-deny"')"
n_audit="$(audit | grep -c '"decision":"would_deny"')"
if [ "$n_alert" -ge 5 ] && [ "$n_alert" = "$n_audit" ]; then
    pass would-deny-alerts "$n_alert alerts = $n_audit audit records"
else
    fail would-deny-alerts "$n_alert alerts, $n_audit audit records"
fi
# The report's rollout view reads the decisions: vm-workload would break things.
rep="$("$GUARD" report --audit-dir "$GUARD_AUDIT_DIR" --format json 2>&1 | tr -d ' \n')"
case "$rep" in
    *'"policy":"vm-workload","would_deny":'*'"would_break":true'*) pass report-rollout "$(echo "$rep" | grep -o '"rollout":.*' | cut -c1-400)" ;;
    *) fail report-rollout "$(echo "$rep" | cut -c1-600)" ;;
esac
"$GUARD" run --cleanup >/dev/null 2>&1

# Per-policy mode, no --detect-only: nothing global turns the deny into would_deny.
GUARD_AUDIT_DIR=/tmp/audit-policy-mode
rm -rf "$GUARD_AUDIT_DIR"
if ! guard_start --policy /tmp/policy-mode.yaml; then
    fail policy-mode-ready "guard run (no --detect-only) did not become ready"
    finish
    exit 0
fi
pass policy-mode-ready "no --detect-only; detect-by-itself in mode: detect"
outcome policy-mode-exec-allowed "ok exit=0" "$TESTKIT" try-exec --cgroup "$dcg" /opt/wl/busybox true
sleep 1
guard_stop
r="$(audit | grep '"policy":"detect-by-itself"' | grep '"target":"/opt/wl/busybox"' | grep '"decision":"would_deny"' | head -n1)"
if [ -n "$r" ]; then
    pass policy-mode-would-deny "$(echo "$r" | cut -c1-300)"
else
    fail policy-mode-would-deny "no would_deny record for detect-by-itself's exec: $(audit | head -n3 | cut -c1-300)"
fi
n="$(audit | grep -c '"decision":"deny"')"
if [ "$n" = 0 ]; then pass policy-mode-no-deny "0 deny records"; else fail policy-mode-no-deny "$n deny records"; fi
r="$(grep '"source":"guard_policy"' "$GUARD_OUT" | grep '"policy":"detect-by-itself"' | head -n1)"
case "$r" in
    *'"mode":"detect"'*) pass mode-detect-policy "$(echo "$r" | cut -c1-200)" ;;
    *) fail mode-detect-policy "no detect alert for detect-by-itself: ${r:-none}" ;;
esac
"$GUARD" run --cleanup >/dev/null 2>&1
finish
