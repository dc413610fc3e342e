#!/usr/bin/env bash
# Boots a Debian cloud kernel in qemu (TCG) with the test-bed initramfs, runs scenarios inside,
# and derives pass/fail from the serial console.
#
# Usage: run.sh [--initramfs FILE] [--timeout SEC] [--shell] KERNEL_LABEL [SCENARIO...]
#   KERNEL_LABEL  6.1 or 6.12 (see fetch-kernels.sh)
#   SCENARIO      names under integration/vm/scenarios/ (default: all)
#   --initramfs   use a prebuilt image (build-initramfs.sh); otherwise one is built from
#                 $GUARD_BIN and $GUARD_TESTKIT_BIN, or from `cargo build` when those are unset
#   --timeout     hard limit for the whole boot, in seconds (default: 120 + 300 per scenario;
#                 env GUARD_VM_TIMEOUT, and GUARD_VM_SCENARIO_TIMEOUT for the per-scenario limit)
#   --shell       interactive: serial console on this terminal, shell after the scenarios
#
# stdout: the GUARD-VM-RESULT lines, then one GUARD-VM-SUMMARY line. Diagnostics go to stderr.
# Exit 0 only when the VM reached GUARD-VM-DONE, every expected check reported, and none FAILed.
set -euo pipefail
# shellcheck source=integration/vm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

initramfs="" timeout_s="${GUARD_VM_TIMEOUT:-}" shell=0
# Guest-side limit per scenario; the boot as a whole gets 120 s plus this per scenario.
scenario_timeout="${GUARD_VM_SCENARIO_TIMEOUT:-300}"
while [ $# -gt 0 ]; do
    case "$1" in
        --initramfs) initramfs="$2"; shift 2 ;;
        --timeout) timeout_s="$2"; shift 2 ;;
        --shell) shell=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] || die "usage: run.sh [--initramfs FILE] [--timeout SEC] [--shell] KERNEL_LABEL [SCENARIO...]"
label="$1"; shift
scenarios=("$@")
if [ "${#scenarios[@]}" -eq 0 ]; then
    for f in "$VM_DIR"/scenarios/*.sh; do scenarios+=("$(basename "$f" .sh)"); done
fi
for s in "${scenarios[@]}"; do
    [ -f "$VM_DIR/scenarios/$s.sh" ] || die "no scenario $s in $VM_DIR/scenarios"
done
[ -n "$timeout_s" ] || timeout_s=$((120 + scenario_timeout * ${#scenarios[@]}))
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"

work="$(mktemp -d "${TMPDIR:-/tmp}/guard-vm-run.XXXXXX")"
trap 'rm -rf "$work"' EXIT

kernel="$(fetch_kernel "$label")" || die "kernel $label unavailable"
kdir="$(dirname "$kernel")"
kpkg="$(basename "$(readlink -f "$kdir")")"
kver="$(cat "$kdir/package-version" 2>/dev/null || echo unknown)"

if [ -z "$initramfs" ]; then
    if [ -z "${GUARD_BIN:-}" ] || [ -z "${GUARD_TESTKIT_BIN:-}" ]; then
        say "building guard and guard-testkit (cargo build)"
        (cd "$REPO_ROOT" && cargo build -q -p guard --bin guard -p guard-tests --bin guard-testkit >&2)
        tdir="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug"
        GUARD_BIN="${GUARD_BIN:-$tdir/guard}"
        GUARD_TESTKIT_BIN="${GUARD_TESTKIT_BIN:-$tdir/guard-testkit}"
    fi
    initramfs="$work/initramfs.cpio.gz"
    "$VM_DIR/build-initramfs.sh" --guard "$GUARD_BIN" --testkit "$GUARD_TESTKIT_BIN" -o "$initramfs"
fi
[ -f "$initramfs" ] || die "initramfs $initramfs not found"

scen_csv="$(IFS=,; echo "${scenarios[*]}")"
append="console=ttyS0 panic=-1 quiet guard.scenarios=$scen_csv guard.scenario_timeout=$scenario_timeout"
lsm_param="$(lsm_param_for "$kdir/config")" || die "kernel $label has no BPF LSM support"
if [ -n "$lsm_param" ]; then
    say "kernel $label: bpf is not in its default LSM list; booting with $lsm_param"
    append="$append $lsm_param"
fi
# -nic none: no network device (loopback only inside the guest), and no iPXE ROM to load.
qemu=(qemu-system-x86_64 -accel tcg -m 1G -nographic -no-reboot -nic none
      -kernel "$kernel" -initrd "$initramfs")

if [ "$shell" = 1 ]; then
    say "booting $kpkg interactively; power off with 'poweroff -f'"
    exec "${qemu[@]}" -append "$append guard.shell=1"
fi

mkdir -p "$VM_CACHE/logs"
log="$VM_CACHE/logs/$label.console.log"
say "booting $kpkg ($kver) with scenarios: ${scenarios[*]} (timeout ${timeout_s}s, console log $log)"
start="$(date +%s.%N)"
rc=0
timeout --kill-after=5 "$timeout_s" "${qemu[@]}" -append "$append" </dev/null >"$work/console.raw" 2>&1 || rc=$?
end="$(date +%s.%N)"
# Drop carriage returns and the terminal escapes firmware and kernel print.
tr -d '\r' <"$work/console.raw" | sed 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1b[c78]//g' >"$log"
secs="$(awk -v a="$start" -v b="$end" 'BEGIN{printf "%.1f", b-a}')"

problems=()
case "$rc" in
    0) ;;
    124|137) problems+=("qemu timed out after ${timeout_s}s") ;;
    *) problems+=("qemu exited with status $rc") ;;
esac
grep -q '^GUARD-VM-DONE' "$log" || problems+=("the VM never printed GUARD-VM-DONE")

results="$(grep '^GUARD-VM-RESULT ' "$log" || true)"
[ -n "$results" ] || problems+=("no GUARD-VM-RESULT line on the console")
[ -z "$results" ] || printf '%s\n' "$results"
nfail="$(printf '%s\n' "$results" | awk '$3=="FAIL"' | grep -c . || true)"
npass="$(printf '%s\n' "$results" | awk '$3=="PASS"' | grep -c . || true)"
[ "$nfail" -eq 0 ] || problems+=("$nfail check(s) FAILed")
# A status is PASS or FAIL (guest/lib.sh); any other word is a broken check, never a pass.
while read -r _ name word _; do
    [ -n "${name:-}" ] || continue
    case "$word" in
        PASS|FAIL) ;;
        *) problems+=("result $name has status '${word:-}' (only PASS or FAIL exist)") ;;
    esac
done <<<"$results"
# Every check a scenario declares in its `# expect:` header must have reported PASS.
for s in "${scenarios[@]}"; do
    # shellcheck disable=SC2013 # the header is a space-separated list of check names
    for check in $(sed -n 's/^# expect: *//p' "$VM_DIR/scenarios/$s.sh"); do
        # A here-string, not a pipe: with pipefail, `grep -q` quitting at its first match can
        # leave printf with SIGPIPE and report a check as missing that is there.
        if ! grep -q "^GUARD-VM-RESULT $s/$check " <<<"$results"; then
            problems+=("missing result $s/$check")
        elif ! grep -qE "^GUARD-VM-RESULT $s/$check PASS( |\$)" <<<"$results"; then
            grep -qE "^GUARD-VM-RESULT $s/$check FAIL( |\$)" <<<"$results" \
                || problems+=("expected check $s/$check did not PASS")
        fi
    done
done

lsm="$(sed -n 's/^GUARD-VM-INFO lsm //p' "$log" | head -n1)"
guest_kernel="$(sed -n 's/^GUARD-VM-INFO kernel //p' "$log" | head -n1)"
status=PASS
[ "${#problems[@]}" -eq 0 ] || status=FAIL
echo "GUARD-VM-SUMMARY label=$label package=$kpkg version=$kver uname=${guest_kernel:-?} lsm=${lsm:-?} status=$status pass=$npass fail=$nfail seconds=$secs"
say "$label: $status in ${secs}s (lsm: ${lsm:-?})"
if [ "$status" = FAIL ]; then
    for p in "${problems[@]}"; do say "$label: $p"; done
    say "$label: console tail ($log):"
    tail -n 80 "$log" | sed 's/^/  | /' >&2
    exit 1
fi
