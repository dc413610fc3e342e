# Issue 5: a `- policy:` in enforce mode denies exec, open and connect with EPERM in its cgroup,
# whatever path form the caller uses (exact, symlink, relative, ..), denies binaries written
# after start (deny_new_binaries), allows the same in a sibling cgroup, reports every decision,
# survives SIGKILL of the agent, is adopted by a restarted agent, and is removed by --cleanup.
# expect: guard-ready backend-bpf-lsm exec-exact exec-symlink exec-relative exec-allowed-other-binary open-write-abs open-write-rel open-write-dotdot open-write-symlink open-read-abs open-read-rel open-read-symlink open-read-allowed-unprotected connect-denied new-binary-denied new-binary-moved-denied sib-exec sib-open-write sib-open-read sib-connect sib-new-binary decision-records decision-hooks decision-audit-fields decision-alerts persist-after-kill persist-open-after-kill restart-adopts restart-single-links restart-enforces cleanup-removes cleanup-allows
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

policy_workload
sib="$(mkcg policy-sib)"
mkdir -p /tmp/link && ln -sf /opt/wl/busybox /tmp/link/busybox
echo hello >/tmp/plain.txt
ln -sf /srv/secret/key /tmp/key-link
ln -sf /srv/conf.txt /tmp/conf-link
GUARD_AUDIT_DIR=/tmp/audit-enforce
rm -rf "$GUARD_AUDIT_DIR"
in_sib() { "$TESTKIT" cgroup-run "$sib" -- "$@"; }

if ! guard_start --policy /tmp/policy.yaml; then
    fail guard-ready "guard run did not become ready"
    finish
    exit 0
fi
pass guard-ready "$(grep -c . "$GUARD_ERR") stderr lines"
line="$(grep 'probes attached' "$GUARD_ERR" | head -n1)"
case "$line" in
    *'policy_backend="bpf-lsm"'*) pass backend-bpf-lsm "$line" ;;
    *) fail backend-bpf-lsm "startup log: ${line:-none}"
       sed 's/^/  guard-stderr: /' "$GUARD_ERR" | cut -c1-400 | tail -n 60 ;;
esac

# exec: the real file is decided on, whatever name reached it.
outcome exec-exact errno=1 "$TESTKIT" try-exec --cgroup "$wl" /opt/wl/busybox true
outcome exec-symlink errno=1 "$TESTKIT" try-exec --cgroup "$wl" /tmp/link/busybox true
outcome exec-relative errno=1 sh -c "cd /opt/wl && exec $TESTKIT try-exec --cgroup $wl ./busybox true"
outcome exec-allowed-other-binary "ok exit=0" "$TESTKIT" try-exec --cgroup "$wl" /bin/busybox true

# open: deny_write /srv/**, deny_read /srv/secret/key.
outcome open-write-abs errno=1 in_wl "$TESTKIT" try-open /srv/conf.txt w
outcome open-write-rel errno=1 sh -c "cd /srv && exec $TESTKIT cgroup-run $wl -- $TESTKIT try-open conf.txt w"
outcome open-write-dotdot errno=1 sh -c "cd /srv/secret && exec $TESTKIT cgroup-run $wl -- $TESTKIT try-open ../conf.txt w"
outcome open-write-symlink errno=1 in_wl "$TESTKIT" try-open /tmp/conf-link w
outcome open-read-abs errno=1 in_wl "$TESTKIT" try-open /srv/secret/key r
outcome open-read-rel errno=1 sh -c "cd /srv/secret && exec $TESTKIT cgroup-run $wl -- $TESTKIT try-open key r"
outcome open-read-symlink errno=1 in_wl "$TESTKIT" try-open /tmp/key-link r
outcome open-read-allowed-unprotected ok in_wl "$TESTKIT" try-open /srv/conf.txt r

# connect: 127.0.0.0/8 port 9 is denied (EPERM); nothing listens there, so an allowed connect
# gets ECONNREFUSED (111): the operation reached TCP.
outcome connect-denied errno=1 in_wl "$TESTKIT" try-connect 127.0.0.1:9

# deny_new_binaries: a copy made inside the workload cannot run, even after a rename.
mkdir -p /tmp/new /tmp/moved
in_wl /bin/busybox cp /bin/busybox /tmp/new/busybox
outcome new-binary-denied errno=1 "$TESTKIT" try-exec --cgroup "$wl" /tmp/new/busybox true
# A rename inside the workload keeps the inode, so the mark follows the file.
in_wl /bin/busybox mv /tmp/new/busybox /tmp/moved/busybox
outcome new-binary-moved-denied errno=1 "$TESTKIT" try-exec --cgroup "$wl" /tmp/moved/busybox true

# The sibling cgroup has no policy: the same actions succeed.
outcome sib-exec "ok exit=0" "$TESTKIT" try-exec --cgroup "$sib" /opt/wl/busybox true
outcome sib-open-write ok in_sib "$TESTKIT" try-open /srv/conf.txt w
outcome sib-open-read ok in_sib "$TESTKIT" try-open /srv/secret/key r
outcome sib-connect errno=111 in_sib "$TESTKIT" try-connect 127.0.0.1:9
outcome sib-new-binary "ok exit=0" "$TESTKIT" try-exec --cgroup "$sib" /tmp/moved/busybox true

sleep 1
# Each decision is an audit record of kind `decision` and an alert (source guard_policy).
guard_stop
audit() { cat "$GUARD_AUDIT_DIR"/audit-*.jsonl 2>/dev/null | grep '"kind":"decision"'; }
n_exec="$(audit | grep '"op":"exec"' | grep -c '"decision":"deny"')"
n_open="$(audit | grep '"op":"open"' | grep -c '"decision":"deny"')"
n_conn="$(audit | grep '"op":"connect"' | grep -c '"decision":"deny"')"
# 5 execs (3 listed + 2 new binaries), 7 opens, 1 connect were denied above.
if [ "$n_exec" -ge 5 ] && [ "$n_open" -ge 7 ] && [ "$n_conn" -ge 1 ]; then
    pass decision-records "exec=$n_exec open=$n_open connect=$n_conn"
else
    fail decision-records "exec=$n_exec open=$n_open connect=$n_conn; $(audit | head -c 1500)"
fi
# Each record names the LSM hook that decided it.
h_exec="$(audit | grep '"op":"exec"' | grep '"decision":"deny"' | grep -c '"hook":"bprm_check_security"')"
h_open="$(audit | grep '"op":"open"' | grep '"decision":"deny"' | grep -c '"hook":"file_open"')"
h_conn="$(audit | grep '"op":"connect"' | grep '"decision":"deny"' | grep -c '"hook":"cgroup_connect4"')"
if [ "$h_exec" = "$n_exec" ] && [ "$h_open" = "$n_open" ] && [ "$h_conn" = "$n_conn" ] \
    && [ "$n_exec" -ge 5 ] && [ "$n_open" -ge 7 ] && [ "$n_conn" -ge 1 ]; then
    pass decision-hooks "bprm_check_security=$h_exec file_open=$h_open cgroup_connect4=$h_conn"
else
    fail decision-hooks "hooks exec=$h_exec/$n_exec open=$h_open/$n_open connect=$h_conn/$n_conn; $(audit | head -c 1500)"
fi
rec="$(audit | grep '"target":"/srv/secret/key"' | head -n1)"
case "$rec" in
    *'"policy":"vm-workload"'*'"backend":"bpf-lsm"'*) pass decision-audit-fields "$rec" ;;
    *) fail decision-audit-fields "no record for /srv/secret/key with policy and backend: ${rec:-none}" ;;
esac
n_alert="$(grep '"source":"guard_policy"' "$GUARD_OUT" | grep -c '"decision":"deny"')"
n_audit="$(audit | grep -c '"decision":"deny"')"
if [ "$n_alert" -ge 13 ] && [ "$n_alert" = "$n_audit" ]; then
    pass decision-alerts "$n_alert alerts = $n_audit audit records"
else
    fail decision-alerts "$n_alert alerts, $n_audit audit records; $(grep guard_policy "$GUARD_OUT" | head -c 800)"
fi
if ! guard_start --policy /tmp/policy.yaml; then
    fail persist-after-kill "guard did not start again before the kill test"
fi

# SIGKILL the agent: the pinned links keep enforcing.
kill -KILL "$GUARD_PID"; wait "$GUARD_PID" 2>/dev/null; GUARD_PID=""
outcome persist-after-kill errno=1 "$TESTKIT" try-exec --cgroup "$wl" /opt/wl/busybox true
outcome persist-open-after-kill errno=1 in_wl "$TESTKIT" try-open /srv/secret/key r

if guard_start --policy /tmp/policy.yaml; then
    if grep -q 'replaced the link pinned by an earlier agent' "$GUARD_ERR"; then
        pass restart-adopts "$(grep -c 'replaced the link' "$GUARD_ERR") links replaced"
    else
        fail restart-adopts "$(tail -n 8 "$GUARD_ERR")"
    fi
    links="$(ls /sys/fs/bpf/guard | grep -c '^link_')"
    # exec, open, 15 write and mapping hooks (issue 15), file_truncate where the kernel has it
    # (6.2+), the two cgroup_mkdir binders and the four sock_addr programs (connect4/6,
    # sendmsg4/6).
    want=23
    [ -e /sys/fs/bpf/guard/link_policy_file_truncate ] && want=24
    if [ "$links" = "$want" ]; then pass restart-single-links "$(ls /sys/fs/bpf/guard | tr '\n' ' ')"
    else fail restart-single-links "$links links, want $want: $(ls /sys/fs/bpf/guard | tr '\n' ' ')"; fi
    outcome restart-enforces errno=1 "$TESTKIT" try-exec --cgroup "$wl" /opt/wl/busybox true
    guard_stop
else
    fail restart-adopts "guard did not restart"
fi

"$GUARD" run --cleanup 2>&1 | sed 's/^/  cleanup: /'
if [ ! -e /sys/fs/bpf/guard ]; then pass cleanup-removes "pin directory gone"
else fail cleanup-removes "left: $(ls /sys/fs/bpf/guard | tr '\n' ' ')"; fi
outcome cleanup-allows "ok exit=0" "$TESTKIT" try-exec --cgroup "$wl" /opt/wl/busybox true
finish
