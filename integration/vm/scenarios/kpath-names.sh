# The kernel walk's names (issue 17; the inline copy of issue 18): an open through a symlink is
# recorded with the opened file's path as the kernel resolved it, byte for byte, for names of
# every length around the word size and the dentry's inline name (31 bytes on these kernels),
# and for paths whose top component lands on either side of the floor below which the walk
# reads each name on its own; one byte past the bound the walk gives up (no made-up path).
# The walk reads with typed loads where the kernel has the bpf_rdonly_cast kfunc (6.2 and
# later), else with helper calls (`walk` checks which one ran).
# expect: guard-ready walk names long-paths past-bound
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

# name N O: N bytes cycling through letters and digits from offset O.
name() {
    awk -v n="$1" -v o="$2" 'BEGIN { s = "abcdefghijklmnopqrstuvwxyz0123456789"
        for (i = 0; i < n; i++) printf "%s", substr(s, (i + o) % 36 + 1, 1) }'
}
B=/tmp/kp
rm -rf "$B" /tmp/kp-names /tmp/kp-long /tmp/kp-past
mkdir -p "$B"
cat >/tmp/kp-rules.yaml <<'YAML'
- rule: kpath probe
  desc: every open through the scenario's links
  condition: evt.type in (open, openat, openat2, creat) and fd.nameraw startswith /tmp/kp/
  output: probe (name=%fd.name raw=%fd.nameraw)
  priority: NOTICE
  source: syscall
YAML
lens="1 7 8 9 15 16 17 23 24 25 31 32 33 39 40 41 64 255"
d="$B/n"
i=0
for n in $lens; do
    d="$d/$(name "$n" "$i")"
    i=$((i + 1))
done
mkdir -p "$d"
i=0
for n in $lens; do
    real="$d/$(name "$n" $((7 * i + 3)))"
    echo x >"$real"
    ln -s "$real" "$B/ln$i"
    echo "$B/ln$i $real" >>/tmp/kp-names
    i=$((i + 1))
done
# long TOTAL LIST: a file whose path is TOTAL bytes (200-byte directories, then the leaf), and
# $B/lbTOTAL linking to it, the pair appended to LIST. The top component's copy starts 4096 - TOTAL bytes into the buffer.
long() {
    t="$1"
    ld="$B/b$t"
    while [ $((t - ${#ld})) -gt 256 ]; do ld="$ld/$(name 200 ${#ld})"; done
    mkdir -p "$ld"
    real="$ld/$(name $((t - ${#ld} - 1)) "$t")"
    echo x >"$real"
    ln -s "$real" "$B/lb$t"
    echo "$B/lb$t $real" >>"$2"
}
for t in 4056 4057 4071; do long "$t" /tmp/kp-long; done
long 4072 /tmp/kp-past
past="$B/lb4072"

if ! guard_start --rules /tmp/kp-rules.yaml; then
    fail guard-ready "guard run did not become ready"
    finish
    exit 0
fi
pass guard-ready "probe rule on /tmp/kp/"
if grep -q bpf_rdonly_cast /sys/kernel/btf/vmlinux; then want="typed loads"; else want="helper reads"; fi
if grep -q "open paths: walked with $want" "$GUARD_ERR"; then
    pass walk "$want"
else
    fail walk "want $want; $(grep 'open paths' "$GUARD_ERR" | head -c 300)"
fi
for l in "$B"/ln* "$B"/lb*; do cat "$l" >/dev/null; done
sleep 1
guard_stop

# check LIST: every "link real" pair's open record carries the real path as resolved.
check() {
    bad=""
    while read -r link real; do
        rec="$(grep -F "\"path\":{\"text\":\"$link\"}" "$GUARD_OUT" | grep '"kind":"open"' | head -n1)"
        echo "$rec" | grep -qF "\"kernel_path\":{\"resolved\":\"$real\"}" \
            || bad="$bad $link(${#real}): $(echo "$rec" | sed 's/.*"kernel_path"//' | head -c 120)"
    done <"$1"
    echo "$bad"
}
bad="$(check /tmp/kp-names)"
if [ -z "$bad" ]; then pass names "$(grep -c . /tmp/kp-names) lengths: $lens"; else fail names "$bad"; fi
bad="$(check /tmp/kp-long)"
if [ -z "$bad" ]; then pass long-paths "4056, 4057 and 4071 bytes"; else fail long-paths "$bad"; fi
rec="$(grep -F "\"path\":{\"text\":\"$past\"}" "$GUARD_OUT" | grep '"kind":"open"' | head -n1)"
if echo "$rec" | grep -qF '"kernel_path":"unresolved"'; then
    pass past-bound "4072 bytes: unresolved"
else
    fail past-bound "$(echo "$rec" | head -c 300)"
fi
finish
