# Issue 9: a process in a container (its own cgroup and mount namespace; with --newpid its own
# pid namespace too) cannot signal or ptrace the agent, read or write its config, policies or
# audit log, or get its pins or maps, each denied with EPERM (EACCES for /proc/<pid>/mem, as
# the kernel maps it) and recorded as a decision; the
# same process can do all of it to an unprotected control, and a host process to guard's files.
# expect: guard-ready self-protect-active kill-9-denied kill-stop-denied ptrace-attach-denied ptrace-seize-denied pidfd-getfd-denied proc-mem-denied policy-read-denied policy-write-denied config-dir-list-denied audit-read-denied cgroup-kill-denied cgroup-freeze-denied pin-obj-get-denied map-by-id-denied newpid-kill-esrch newpid-pidfd-signal-einval newpid-pidfd-getfd-denied newpid-proc-mem-denied newpid-policy-read-denied control-kill-stop control-ptrace control-pidfd-getfd control-proc-mem control-read control-cgroup-kill-open control-kill-9 host-kill-0 host-policy-read host-audit-read host-pin-obj-get agent-alive decision-records decision-hooks decision-alerts
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

policy_workload
GUARD_AUDIT_DIR=/tmp/audit-selfprot
rm -rf "$GUARD_AUDIT_DIR"
echo control >/tmp/sp-control.txt
cg="$(mkcg sp-container)"
ctlcg="$(mkcg sp-control)"
# The agent runs in a cgroup of its own (as under systemd), whose control files act on it
# without a signal (cgroup.kill, cgroup.freeze).
agentcg="$(mkcg guard-agent)"
GUARD_WRAP="$TESTKIT cgroup-run $agentcg --"
pin=/sys/fs/bpf/guard/POLICY_CGROUPS
sleep 600 &
ctl=$!

if ! guard_start --policy /tmp/policy.yaml; then
    fail guard-ready "guard run did not become ready"
    finish
    exit 0
fi
agent="$GUARD_PID"
pass guard-ready "agent pid $agent"
line="$(grep 'self-protection active' "$GUARD_ERR" | head -n1)"
case "$line" in
    *bpf-lsm*) pass self-protect-active "$line" ;;
    *) fail self-protect-active "startup log: $(grep -i 'self-protect' "$GUARD_ERR" | head -n3)" ;;
esac
policy_file="$(ls /etc/guard/policies/*.yaml | head -n1)"
audit_file="$(ls "$GUARD_AUDIT_DIR"/audit-*.jsonl | head -n1)"
map_id="$("$TESTKIT" try-bpf-obj-get "$pin" | sed -n 's/.*map_id=\([0-9]*\).*/\1/p')"
info "protected: $policy_file $audit_file $pin (map id ${map_id:-?})"

# A container that shares the host pid namespace (docker --pid=host): the agent's pid is
# visible, so only the programs stand between it and the agent.
ctr() { "$TESTKIT" container-run "$cg" -- "$TESTKIT" "$@"; }
outcome kill-9-denied errno=1 ctr try-kill "$agent" 9
outcome kill-stop-denied errno=1 ctr try-kill "$agent" 19
outcome ptrace-attach-denied errno=1 ctr try-ptrace "$agent" attach
outcome ptrace-seize-denied errno=1 ctr try-ptrace "$agent" seize
outcome pidfd-getfd-denied errno=1 "$TESTKIT" container-run --pidfd "$agent" "$cg" -- "$TESTKIT" try-pidfd-getfd 3 0
# /proc/<pid>/mem: the hook's EPERM reaches the caller as EACCES (mm_access() maps every
# ptrace_may_access() failure to it); control-proc-mem below shows the same open succeeds.
outcome proc-mem-denied errno=13 ctr try-open "/proc/$agent/mem" r
outcome policy-read-denied errno=1 ctr try-open /tmp/policy.yaml r
outcome policy-write-denied errno=1 ctr try-open "$policy_file" w
outcome config-dir-list-denied errno=1 ctr try-open /etc/guard/policies r
outcome audit-read-denied errno=1 ctr try-open "$audit_file" r
outcome cgroup-kill-denied errno=1 ctr try-open "$agentcg/cgroup.kill" w
outcome cgroup-freeze-denied errno=1 ctr try-open "$agentcg/cgroup.freeze" w
outcome pin-obj-get-denied errno=1 ctr try-bpf-obj-get "$pin"
outcome map-by-id-denied errno=1 ctr try-bpf-map-by-id "${map_id:-0}"

# Docker's default: a pid namespace of its own. The kernel already hides the agent's pid and
# refuses pidfd signals across it; a leaked pidfd and the host's /proc still reach the agent
# for ptrace-class access, which the programs deny.
ctrn() { "$TESTKIT" container-run --newpid --pidfd "$agent" "$cg" -- "$TESTKIT" "$@"; }
outcome newpid-kill-esrch errno=3 ctrn try-kill "$agent" 9
outcome newpid-pidfd-signal-einval errno=22 ctrn try-pidfd-signal 3 9
outcome newpid-pidfd-getfd-denied errno=1 ctrn try-pidfd-getfd 3 0
outcome newpid-proc-mem-denied errno=13 ctrn try-open "/proc/$agent/mem" r
outcome newpid-policy-read-denied errno=1 ctrn try-open /tmp/policy.yaml r

# Controls: the same container reaches an unprotected process and file.
outcome control-kill-stop ok ctr try-kill "$ctl" 19
kill -CONT "$ctl"
outcome control-ptrace ok ctr try-ptrace "$ctl" seize
outcome control-pidfd-getfd ok "$TESTKIT" container-run --pidfd "$ctl" "$cg" -- "$TESTKIT" try-pidfd-getfd 3 0
outcome control-proc-mem ok ctr try-open "/proc/$ctl/mem" r
outcome control-read ok ctr try-open /tmp/sp-control.txt r
outcome control-cgroup-kill-open ok ctr try-open "$ctlcg/cgroup.kill" w
outcome control-kill-9 ok ctr try-kill "$ctl" 9
# The host keeps access to the agent and its files.
outcome host-kill-0 ok "$TESTKIT" try-kill "$agent" 0
outcome host-policy-read ok "$TESTKIT" try-open /tmp/policy.yaml r
outcome host-audit-read ok "$TESTKIT" try-open "$audit_file" r
outcome host-pin-obj-get ok "$TESTKIT" try-bpf-obj-get "$pin"

sleep 1
if kill -0 "$agent" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$agent/stat")" != T ]; then
    pass agent-alive "pid $agent running ($(cut -d' ' -f3 "/proc/$agent/stat"))"
else
    fail agent-alive "agent $agent gone or stopped"
fi
guard_stop
audit() { cat "$GUARD_AUDIT_DIR"/audit-*.jsonl 2>/dev/null | grep '"kind":"decision"' | grep '"op":"self_protect"'; }
n_sig="$(audit | grep -c '"access":"signal ')"
n_ptrace="$(audit | grep -c '"access":"ptrace ')"
n_file="$(audit | grep -c '"target":"/tmp/policy.yaml"')"
n_all="$(audit | grep -c '"decision":"deny"')"
# 2 signals; 2 ptrace + 2 pidfd_getfd + 2 /proc/<agent>/mem; 2 reads of /tmp/policy.yaml;
# 17 denials in all (some operations ask twice, so at least).
if [ "$n_sig" -ge 2 ] && [ "$n_ptrace" -ge 6 ] && [ "$n_file" -ge 2 ] && [ "$n_all" -ge 17 ]; then
    pass decision-records "signal=$n_sig ptrace=$n_ptrace policy-file=$n_file all=$n_all"
else
    fail decision-records "signal=$n_sig ptrace=$n_ptrace policy-file=$n_file all=$n_all; $(audit | head -c 1500)"
fi
# Each record names the LSM hook that denied it.
h_sig="$(audit | grep '"access":"signal ' | grep -c '"hook":"task_kill"')"
h_ptrace="$(audit | grep '"access":"ptrace ' | grep -c '"hook":"ptrace_access_check"')"
h_file="$(audit | grep '"target":"/tmp/policy.yaml"' | grep -c '"hook":"inode_permission"')"
h_bpf="$(audit | grep '"access":"bpf cmd ' | grep -c '"hook":"bpf"')"
n_bpf="$(audit | grep -c '"access":"bpf cmd ')"
n_nohook="$(audit | grep -vc '"hook":"')"
if [ "$h_sig" = "$n_sig" ] && [ "$h_ptrace" = "$n_ptrace" ] && [ "$h_file" = "$n_file" ] \
    && [ "$h_bpf" = "$n_bpf" ] && [ "$n_bpf" -ge 1 ] && [ "$n_sig" -ge 2 ] && [ "$n_nohook" = 0 ]; then
    pass decision-hooks "task_kill=$h_sig ptrace_access_check=$h_ptrace inode_permission=$h_file bpf=$h_bpf"
else
    fail decision-hooks "task_kill=$h_sig/$n_sig ptrace=$h_ptrace/$n_ptrace inode=$h_file/$n_file bpf=$h_bpf/$n_bpf without hook=$n_nohook; $(audit | head -c 1500)"
fi
n_alert="$(grep -c '"source":"guard_self_protect"' "$GUARD_OUT")"
if [ "$n_alert" -ge 17 ] && [ "$n_alert" = "$n_all" ]; then
    pass decision-alerts "$n_alert alerts = $n_all audit records"
else
    fail decision-alerts "$n_alert alerts, $n_all audit records; $(grep guard_self_protect "$GUARD_OUT" | head -c 800)"
fi
"$GUARD" run --cleanup >/dev/null 2>&1
finish
