# Foundation: BPF LSM denies exec with EPERM in a cgroup put in the deny map, and allows it in a
# sibling cgroup; guard doctor sees BPF LSM working; exec events carry the filename.
# expect: lsm-listed doctor-bpf-lsm control-before-guard guard-ready-bpf-lsm exec-denied-eperm exec-allowed-sibling exec-allowed-root exec-event-filename exec-denied-event
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

lsm="$(cat /sys/kernel/security/lsm)"
case ",$lsm," in
    *,bpf,*) pass lsm-listed "$lsm" ;;
    *) fail lsm-listed "bpf missing from $lsm" ;;
esac

t0="$(uptime_s)"
doctor="$("$GUARD" doctor 2>&1)"
info "timing guard-doctor $(since "$t0")s"
echo "$doctor" | sed 's/^/  doctor: /'
line="$(echo "$doctor" | grep -E '^(PASS|WARN|FAIL) +bpf-lsm ')"
case "$line" in
    PASS*) pass doctor-bpf-lsm "$line" ;;
    *) fail doctor-bpf-lsm "${line:-no bpf-lsm line}" ;;
esac

denied="$(mkcg denied)"
allowed="$(mkcg allowed)"
# A copy of busybox under a unique path, so its exec event is unambiguous; run as the `true` applet.
mkdir -p /tmp/guard-vm-marker && cp /bin/busybox /tmp/guard-vm-marker/true

# Control: the same exec in the same cgroup works before guard runs, so a denial below is guard's.
outcome control-before-guard "ok exit=0" "$TESTKIT" try-exec --cgroup "$denied" /bin/busybox true

if guard_start --deny-exec-cgroup "$denied"; then
    # The startup log names the exec enforcement backend; here it must be BPF LSM.
    line="$(grep 'probes attached' "$GUARD_ERR" | head -n1)"
    case "$line" in
        *'exec_backend="bpf-lsm"'*) pass guard-ready-bpf-lsm "$line" ;;
        *) fail guard-ready-bpf-lsm "startup log: ${line:-no 'probes attached' line}" ;;
    esac
    outcome exec-denied-eperm errno=1 "$TESTKIT" try-exec --cgroup "$denied" /bin/busybox true
    outcome exec-allowed-sibling "ok exit=0" "$TESTKIT" try-exec --cgroup "$allowed" /bin/busybox true
    outcome exec-allowed-root "ok exit=0" "$TESTKIT" try-exec /bin/busybox true
    marker="$("$TESTKIT" try-exec --cgroup "$allowed" /tmp/guard-vm-marker/true 2>&1)"
    # Let the ring buffer drain before stopping.
    sleep 0.5
    guard_stop
    sed 's/^/  guard-stderr: /' "$GUARD_ERR"

    ev="$(grep '"kind":"exec"' "$GUARD_OUT" | grep '"filename":{"text":"/tmp/guard-vm-marker/true"' | head -n1)"
    if [ -n "$ev" ] && echo "$ev" | grep -q "\"cgroup_id\":$(cgroup_id "$allowed")[,}]"; then
        pass exec-event-filename "marker exec: $marker; event: $ev"
    else
        fail exec-event-filename "marker exec: $marker; no exec event for /tmp/guard-vm-marker/true in cgroup $(cgroup_id "$allowed"); $(wc -l <"$GUARD_OUT") lines: $(head -c 600 "$GUARD_OUT")"
    fi
    ev="$(grep '"kind":"exec_denied"' "$GUARD_OUT" | grep "\"cgroup_id\":$(cgroup_id "$denied")[,}]" | head -n1)"
    if [ -n "$ev" ]; then
        pass exec-denied-event "$ev"
    else
        fail exec-denied-event "no exec_denied event for cgroup $(cgroup_id "$denied")"
    fi
else
    fail guard-ready-bpf-lsm "guard run did not become ready"
fi
finish
