# Helpers for VM scenarios (sourced by each scenario, busybox sh).
# A scenario reports each check as one line on the console:
#   GUARD-VM-RESULT <scenario>/<check> PASS|FAIL <detail>
# and declares the checks it must report in a header line (`# expect: a b c`), which the host
# runner verifies, so a check that silently never runs is a failure.
# shellcheck shell=sh

# shellcheck disable=SC2034 # used by the scenarios that source this file
GUARD=/bin/guard TESTKIT=/bin/guard-testkit CGROOT=/sys/fs/cgroup
: "${GUARD_SCENARIO:?GUARD_SCENARIO is set by /init}"
GUARD_OUT=/tmp/$GUARD_SCENARIO.guard.out
GUARD_ERR=/tmp/$GUARD_SCENARIO.guard.err
GUARD_PID=""

# uptime_s: seconds since boot, for timing steps inside the guest.
uptime_s() { cut -d' ' -f1 /proc/uptime; }
# since T0: seconds elapsed since an uptime_s reading.
since() { awk -v a="$1" -v b="$(uptime_s)" 'BEGIN{printf "%.2f", b-a}'; }

pass() { n="$1"; shift; echo "GUARD-VM-RESULT $GUARD_SCENARIO/$n PASS $*"; }
fail() { n="$1"; shift; echo "GUARD-VM-RESULT $GUARD_SCENARIO/$n FAIL $*"; }
info() { echo "GUARD-VM-INFO $GUARD_SCENARIO $*"; }

# Marks the scenario as having run to its end; /init reports a missing marker as a failure.
finish() {
    guard_stop
    echo 0 >"/tmp/$GUARD_SCENARIO.rc"
}
trap 'guard_stop' EXIT

# mkcg NAME: creates a cgroup under the root and prints its path.
mkcg() {
    mkdir -p "$CGROOT/$1" && echo "$CGROOT/$1"
}

# cgroup_id DIR: the cgroup v2 id, which is the directory's inode number.
cgroup_id() { stat -c %i "$1"; }

# outcome CHECK WANT CMD...: runs a guard-testkit probe and compares its first result line.
# WANT is `errno=N` (e.g. errno=1 for EPERM), `ok`, or a full ok line such as `ok exit=0`.
outcome() {
    n="$1"; want="$2"; shift 2
    out="$("$@" 2>&1)"
    rc=$?
    line="$(echo "$out" | grep -E '^(ok|errno=|setup-error)' | head -n1)"
    case "$line" in
        errno=*) got="${line%% *}" ;;
        ok*) if [ "$want" = ok ]; then got=ok; else got="$line"; fi ;;
        *) got="no-result(rc=$rc)" ;;
    esac
    if [ "$got" = "$want" ]; then
        pass "$n" "$* -> $line"
    else
        fail "$n" "$* -> want $want, got: ${line:-$out} (rc=$rc)"
    fi
}

# guard_start ARGS...: runs `guard run ARGS` in the background (decoded kernel records and
# alerts on stdout; no audit log unless GUARD_AUDIT_DIR names one) and waits for `guard: ready`.
guard_start() {
    : >"$GUARD_OUT"; : >"$GUARD_ERR"
    if [ -n "${GUARD_AUDIT_DIR:-}" ]; then
        set -- --audit-dir "$GUARD_AUDIT_DIR" "$@"
    else
        set -- --no-audit "$@"
    fi
    # GUARD_WRAP (optional, word-split): a command prefix such as `$TESTKIT cgroup-run DIR --`
    # that execs guard, so $! is still guard's pid.
    # GUARD_PRINT (optional): the --print-events value, raw unless set (`none` keeps the
    # kernel prefilter, which printing every record turns off).
    # shellcheck disable=SC2086
    ${GUARD_WRAP:-} "$GUARD" run --print-events "${GUARD_PRINT:-raw}" --format json "$@" >"$GUARD_OUT" 2>"$GUARD_ERR" &
    GUARD_PID=$!
    t0="$(uptime_s)"
    i=0
    while [ "$i" -lt 1800 ]; do
        if grep -q '^guard: ready' "$GUARD_ERR"; then
            info "timing guard-run-ready $(since "$t0")s"
            return 0
        fi
        if ! kill -0 "$GUARD_PID" 2>/dev/null; then
            info "guard exited before ready; stderr:"
            sed 's/^/  guard: /' "$GUARD_ERR"
            GUARD_PID=""
            return 1
        fi
        sleep 0.1
        i=$((i + 1))
    done
    info "guard not ready after 180 s; stderr:"
    sed 's/^/  guard: /' "$GUARD_ERR"
    return 1
}

# guard_stop: SIGTERM, up to 20 s for a clean exit (so stdout is complete), then SIGKILL.
guard_stop() {
    [ -n "$GUARD_PID" ] || return 0
    kill -TERM "$GUARD_PID" 2>/dev/null
    i=0
    while kill -0 "$GUARD_PID" 2>/dev/null && [ "$i" -lt 200 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$GUARD_PID" 2>/dev/null; then
        info "guard ignored SIGTERM for 20 s; killing it"
        kill -KILL "$GUARD_PID" 2>/dev/null
    fi
    wait "$GUARD_PID" 2>/dev/null
    GUARD_PID=""
}

# policy_workload: what the policy scenarios share. Cgroup `policy-wl` (path in $wl), a denied
# binary /opt/wl/busybox, protected files under /srv, the `vm-workload` enforce policy in
# /tmp/policy.yaml (a scenario may append more), and no pinned enforcement left over.
policy_workload() {
    wl="$(mkcg policy-wl)"
    mkdir -p /opt/wl /srv/secret
    # Copies are named busybox so that busybox runs its `true` applet from argv[1].
    cp /bin/busybox /opt/wl/busybox
    echo s3cret >/srv/secret/key
    echo cfg >/srv/conf.txt
    cat >/tmp/policy.yaml <<'EOF'
- policy: vm-workload
  desc: the VM test workload
  workload: {cgroup: /policy-wl}
  mode: enforce
  enforce:
    exec: {deny: [/opt/wl/busybox], deny_new_binaries: true}
    open: {deny_write: ["/srv/**"], deny_read: [/srv/secret/key]}
    connect: {deny: ["127.0.0.0/8:9"]}
EOF
    "$GUARD" run --cleanup >/dev/null 2>&1
}

# in_wl CMD...: runs CMD in the policy workload's cgroup.
in_wl() { "$TESTKIT" cgroup-run "$wl" -- "$@"; }
