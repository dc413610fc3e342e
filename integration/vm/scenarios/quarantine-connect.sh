# Network quarantine with BPF LSM (issue 6): a Critical alert from a container quarantines it;
# its IPv4 connects then fail with EPERM in the kernel, UDP included (a UDP connect sends no
# packet, so only the cgroup connect4 program can refuse it), while the host is untouched.
# The quarantine outlives the agent (pinned) and `guard quarantine lift` ends it.
# expect: guard-ready udp-before tcp-before quarantined udp-denied tcp-denied host-unaffected survives-agent-stop lifted
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

# A cgroup laid out like a Docker container's, so guard sees a container (no daemon: <NA>).
cid=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
mkdir -p "$CGROOT/docker"
cg="$(mkcg "docker/$cid")"
cgid="$(cgroup_id "$cg")"
mkdir -p /tmp/qt && cp /bin/busybox /tmp/qt/qtrigger

cat >/tmp/qt/rules.yaml <<'YAML'
- rule: vm quarantine trigger
  desc: the scenario's trigger binary ran in a container
  condition: evt.type = execve and proc.name = qtrigger and container.id != host
  output: trigger ran (container=%container.id)
  priority: CRITICAL
YAML
cat >/tmp/qt/responses.yaml <<'YAML'
- response: quarantine-on-trigger
  match:
    rules: ["vm quarantine trigger"]
  actions:
    - quarantine_network: {}
YAML

in_cg() { "$TESTKIT" cgroup-run "$cg" -- "$@"; }

# Controls before anything is quarantined: UDP connect succeeds, TCP to a closed port is refused.
outcome udp-before ok in_cg "$TESTKIT" try-connect-udp 127.0.0.1:9
outcome tcp-before errno=111 in_cg "$TESTKIT" try-connect 127.0.0.1:9

if guard_start --rules /tmp/qt/rules.yaml --responses /tmp/qt/responses.yaml; then
    pass guard-ready "guard run is up"
    in_cg /tmp/qt/qtrigger >/dev/null 2>&1
    i=0
    while [ "$i" -lt 100 ] && ! "$GUARD" quarantine list 2>/dev/null | grep -qw "$cgid"; do
        sleep 0.1
        i=$((i + 1))
    done
    list="$("$GUARD" quarantine list 2>&1)"
    if echo "$list" | grep -qw "$cgid"; then
        pass quarantined "cgroup $cgid listed: $list"
    else
        fail quarantined "cgroup $cgid not in quarantine after 10 s: $list; alerts: $(grep -c 'vm quarantine trigger' "$GUARD_OUT"); stderr: $(tail -n 5 "$GUARD_ERR")"
    fi
    outcome udp-denied errno=1 in_cg "$TESTKIT" try-connect-udp 127.0.0.1:9
    outcome tcp-denied errno=1 in_cg "$TESTKIT" try-connect 127.0.0.1:9
    outcome host-unaffected ok "$TESTKIT" try-connect-udp 127.0.0.1:9
    guard_stop
    outcome survives-agent-stop errno=1 in_cg "$TESTKIT" try-connect-udp 127.0.0.1:9
    "$GUARD" quarantine lift --cgroup-id "$cgid" >/dev/null 2>&1
    outcome lifted ok in_cg "$TESTKIT" try-connect-udp 127.0.0.1:9
else
    fail guard-ready "guard run did not start"
fi
finish
