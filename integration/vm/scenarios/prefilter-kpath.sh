# The open prefilter on the kernel path (issue 18): with no rule reading the path as passed
# (`fd.nameraw`), a successful open is judged by the opened file's kernel-resolved path alone,
# before the path as passed is copied (`KPATH_DECIDES`). Run with the prefilter on (no record
# printing), for one workload cgroup, so the kernel's count of prefiltered opens (/metrics)
# counts only the workload's opens. A dot directory's file read through a symlink in /tmp still reaches its
# rule (a resolved component starting with `.` passes, as `contains "/.key/"` is no prefix);
# the plain file beside it does not; 20 reads of a file in /tmp through a symlink below /etc,
# whose name a rule's prefix admits, are dropped in the kernel as many as 20 reads through a
# symlink in /tmp; a real file below /etc alerts.
# expect: guard-ready dot-through-link plain-control etc-link-dropped etc-file
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

B=/tmp/pk
rm -rf "$B" /tmp/pk-lnk /tmp/pk-lnk2 /etc/pk-lnk /etc/pk-real
mkdir -p "$B/d/.key"
echo k >"$B/d/.key/k"
echo p >"$B/d/p"
echo e >/etc/pk-real
ln -s "$B/d/.key/k" /tmp/pk-lnk
ln -s "$B/d/p" /tmp/pk-lnk2
ln -s "$B/d/p" /etc/pk-lnk
cat >/tmp/pk-rules.yaml <<'YAML'
- rule: dot key
  desc: a file in a dot directory below /tmp/pk, by any name
  condition: evt.type in (open, openat) and fd.name contains "/.key/" and fd.name startswith /tmp/pk/
  output: dot (name=%fd.name)
  priority: NOTICE
  source: syscall
- rule: etc probe
  desc: the scenario's files below /etc
  condition: evt.type in (open, openat) and fd.name startswith /etc/pk-
  output: etc (name=%fd.name)
  priority: NOTICE
  source: syscall
YAML
cg="$(mkcg prefilter-kpath)"

if ! GUARD_PRINT=none guard_start --rules /tmp/pk-rules.yaml --only-cgroup "$cg"; then
    fail guard-ready "guard run did not become ready"
    finish
    exit 0
fi
pass guard-ready "two rules, none on the path as passed; prefilter on"
# dropped: the kernel's count of prefiltered opens, as /metrics has it (copied every second).
dropped() {
    sleep 2
    /bin/busybox wget -qO- http://127.0.0.1:9464/metrics | sed -n 's/^guard_prefiltered_opens_total \([0-9]*\)$/\1/p'
}
# reads N FILE: N reads of FILE in the workload cgroup.
reads() {
    # shellcheck disable=SC2016
    "$TESTKIT" cgroup-run "$cg" -- /bin/busybox sh -c \
        'i=0; while [ $i -lt "$1" ]; do cat "$2" >/dev/null; i=$((i + 1)); done' sh "$1" "$2"
}
"$TESTKIT" cgroup-run "$cg" -- /bin/busybox cat /tmp/pk-lnk /etc/pk-real >/dev/null
m0="$(dropped)"
reads 20 /tmp/pk-lnk2
m1="$(dropped)"
reads 20 /etc/pk-lnk
m2="$(dropped)"
guard_stop

# alerts RULE NAME: the alerts of RULE on file NAME.
alerts() { grep -F "\"rule\":\"$1\"" "$GUARD_OUT" | grep -F "name=$2)"; }
info "prefiltered opens: $m0 at start, $m1 after the /tmp links, $m2 after the /etc links"
if alerts "dot key" "$B/d/.key/k" | grep -q .; then
    pass dot-through-link "alerted as $B/d/.key/k"
else
    fail dot-through-link "no alert; stdout: $(head -c 300 "$GUARD_OUT")"
fi
if [ -z "$(grep -F "name=$B/d/p)" "$GUARD_OUT")" ]; then
    pass plain-control "the plain file through its links: no alert"
else
    fail plain-control "$(grep -F "name=$B/d/p)" "$GUARD_OUT" | head -c 300)"
fi
# The same workload twice but for the name as passed: a name a prefix admits (/etc/pk-) does not
# keep the open when its file is one no rule can match.
if [ -n "$m0" ] && [ -n "$m2" ] && [ $((m1 - m0)) -ge 20 ] && [ $((m2 - m1)) -ge $((m1 - m0)) ]; then
    pass etc-link-dropped "20 reads by each name: $((m1 - m0)) dropped by /tmp/pk-lnk2, $((m2 - m1)) by /etc/pk-lnk"
else
    fail etc-link-dropped "prefiltered opens ${m0:-?} -> ${m1:-?} -> ${m2:-?}"
fi
if alerts "etc probe" /etc/pk-real | grep -q .; then
    pass etc-file "/etc/pk-real alerted"
else
    fail etc-file "no alert; stdout: $(head -c 300 "$GUARD_OUT")"
fi
rm -rf "$B" /tmp/pk-lnk /tmp/pk-lnk2 /etc/pk-lnk /etc/pk-real
rmdir "$cg" 2>/dev/null
finish
