# Issue 15 class 5 (network without connect), on BPF LSM kernels: the cgroup sock_addr programs
# refuse, with EPERM in the policed cgroup, a UDP sendto without connect (IPv4 and IPv4-mapped),
# TCP Fast Open (sendto with MSG_FASTOPEN, which skips the socket_connect LSM hook) and
# connect(0.0.0.0) against a 127.0.0.0/8 rule; the listeners receive nothing from it, while a
# sibling cgroup without the policy delivers by the same paths; each refusal is a decision
# record naming its cgroup hook.
# expect: guard-ready listening sendto-v4 sendto-mapped sendto-any tfo connect-any connect-mapped sib-sendto-v4 sib-sendto-mapped sib-tfo sib-connect-any tcp-received udp-received decision-hooks
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

wl="$(mkcg net-wl)"
sib="$(mkcg net-sib)"
cat >/tmp/net-policy.yaml <<'EOF'
- policy: vm-net
  workload: {cgroup: /net-wl}
  mode: enforce
  enforce:
    connect: {deny: ["127.0.0.0/8:7001", "127.0.0.0/8:7002"]}
EOF
"$GUARD" run --cleanup >/dev/null 2>&1
GUARD_AUDIT_DIR=/tmp/audit-net
rm -rf "$GUARD_AUDIT_DIR"
in_wl() { "$TESTKIT" cgroup-run "$wl" -- "$@"; }
in_sib() { "$TESTKIT" cgroup-run "$sib" -- "$@"; }

if ! guard_start --policy /tmp/net-policy.yaml; then
    fail guard-ready "guard run did not become ready"
    finish
    exit 0
fi
pass guard-ready "$(grep -c . "$GUARD_ERR") stderr lines"

# Listeners in the root cgroup: they count connections (datagrams) and bytes until STOP.
"$TESTKIT" recv-count tcp 127.0.0.1:7001 120 >/tmp/net-tcp.out 2>&1 &
tcp_pid=$!
"$TESTKIT" recv-count udp 127.0.0.1:7002 120 >/tmp/net-udp.out 2>&1 &
udp_pid=$!
i=0
while [ "$i" -lt 100 ] && ! { grep -q listening /tmp/net-tcp.out && grep -q listening /tmp/net-udp.out; }; do
    sleep 0.1
    i=$((i + 1))
done
if grep -q listening /tmp/net-tcp.out && grep -q listening /tmp/net-udp.out; then
    pass listening "tcp 7001, udp 7002"
else
    fail listening "$(cat /tmp/net-tcp.out /tmp/net-udp.out)"
fi

# Policed: every path to the denied destinations fails with EPERM before any packet.
outcome sendto-v4 errno=1 in_wl "$TESTKIT" try-sendto 127.0.0.1:7002 LEAK
outcome sendto-mapped errno=1 in_wl "$TESTKIT" try-sendto '[::ffff:127.0.0.1]:7002' LEAK
outcome sendto-any errno=1 in_wl "$TESTKIT" try-sendto 0.0.0.0:7002 LEAK
outcome tfo errno=1 in_wl "$TESTKIT" try-tfo 127.0.0.1:7001 LEAK
outcome connect-any errno=1 in_wl "$TESTKIT" try-connect 0.0.0.0:7001
outcome connect-mapped errno=1 in_wl "$TESTKIT" try-connect '[::ffff:127.0.0.1]:7001'

# Sibling without the policy: the same paths deliver (2 datagrams of 5 bytes; one TCP Fast Open
# connection with 8 bytes and one connect(0.0.0.0) without data).
outcome sib-sendto-v4 ok in_sib "$TESTKIT" try-sendto 127.0.0.1:7002 DGRAM
outcome sib-sendto-mapped ok in_sib "$TESTKIT" try-sendto '[::ffff:127.0.0.1]:7002' DGRAM
outcome sib-tfo ok in_sib "$TESTKIT" try-tfo 127.0.0.1:7001 FASTOPEN
outcome sib-connect-any ok in_sib "$TESTKIT" try-connect 0.0.0.0:7001

"$TESTKIT" try-sendto 127.0.0.1:7002 STOP >/dev/null 2>&1
"$TESTKIT" try-tfo 127.0.0.1:7001 STOP >/dev/null 2>&1
wait "$tcp_pid" "$udp_pid"
tcp="$(grep '^ok' /tmp/net-tcp.out)"
udp="$(grep '^ok' /tmp/net-udp.out)"
# Exactly the sibling's traffic: nothing from the policed cgroup arrived.
if [ "$tcp" = "ok conns=2 bytes=8" ]; then pass tcp-received "$tcp"
else fail tcp-received "want conns=2 bytes=8 (the sibling's), got: $(cat /tmp/net-tcp.out)"; fi
if [ "$udp" = "ok conns=2 bytes=10" ]; then pass udp-received "$udp"
else fail udp-received "want conns=2 bytes=10 (the sibling's), got: $(cat /tmp/net-udp.out)"; fi

guard_stop
audit() { cat "$GUARD_AUDIT_DIR"/audit-*.jsonl 2>/dev/null; }
deny() { audit | grep '"decision":"deny"' | grep "\"op\":\"$1\"" | grep "\"hook\":\"$2\"" | grep -c "\"target\":\"$3\""; }
s4="$(deny sendmsg cgroup_sendmsg4 127.0.0.1:7002)"
c4="$(deny connect cgroup_connect4 127.0.0.1:7001)"
c6="$(deny connect cgroup_connect6 127.0.0.1:7001)"
all="$(audit | grep -c '"decision":"deny"')"
# sendto v4, v4-mapped (the kernel takes the IPv4 path) and 0.0.0.0; TCP Fast Open and
# connect(0.0.0.0) through connect4; the v4-mapped connect through connect6.
if [ "$s4" = 3 ] && [ "$c4" = 2 ] && [ "$c6" = 1 ] && [ "$all" = 6 ]; then
    pass decision-hooks "cgroup_sendmsg4=$s4 cgroup_connect4=$c4 cgroup_connect6=$c6"
else
    fail decision-hooks "sendmsg4=$s4/3 connect4=$c4/2 connect6=$c6/1 all=$all/6; $(audit | head -c 1500)"
fi
"$GUARD" run --cleanup >/dev/null 2>&1
finish
