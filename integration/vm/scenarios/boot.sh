# The bed itself: the filesystems guard needs are mounted, loopback is up, the binaries run.
# `run.sh LABEL boot` is also the quickest way to time a bare boot.
# expect: mounts loopback binaries
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

missing=""
for m in /sys/fs/cgroup:cgroup2 /sys/fs/bpf:bpf /sys/kernel/security:securityfs \
         /sys/kernel/tracing:tracefs /proc:proc /dev:devtmpfs; do
    awk -v p="${m%%:*}" -v t="${m#*:}" '$2 == p && $3 == t { found = 1 } END { exit !found }' /proc/mounts \
        || missing="$missing $m"
done
if [ -z "$missing" ]; then pass mounts "all present"; else fail mounts "not mounted:$missing"; fi

if ip -o link show lo | grep -q 'UP'; then pass loopback "lo is up"; else fail loopback "$(ip -o link show lo)"; fi

v="$("$GUARD" --version 2>&1)"
t="$("$TESTKIT" try-open /proc/self/status r 2>&1)"
if [ "$t" = ok ] && echo "$v" | grep -q '^guard '; then
    pass binaries "$v; testkit try-open: $t"
else
    fail binaries "guard --version: $v; testkit: $t"
fi
finish
