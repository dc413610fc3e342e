# Issue 15: an enforce policy (BPF LSM) holds on the file itself whatever name, root or mapping
# reaches it, and on every way to modify a deny_write file. Class 1: hard links, renames, a
# shebang through a hard link, open_by_handle_at. Class 2: chroot, bind mounts. Class 3: mmap /
# mprotect PROT_EXEC, ld.so, memfd. Class 4: O_TRUNC, truncate, O_CREAT (nothing left), rename,
# link, unlink, mkdir, rmdir, symlink, mkfifo, chmod, setxattr, with the bytes unchanged.
# Class 6: child cgroups and glob-selected cgroups, policed from creation (20 tries each). Each
# `-eperm` check asserts errno=1 in the policed cgroup; `sib-` checks the same succeeds in a
# sibling; the audit records name the hook that decided.
# expect: guard-ready backend-bpf-lsm c1-hardlink-exec-eperm c1-hardlink-read-eperm c1-shebang-hardlink-eperm c1-wl-link-denied-binary-eperm c1-wl-rename-denied-binary-eperm c1-link-into-subtree-eperm c1-open-by-handle-eperm c2-chroot-exec-eperm c2-chroot-read-eperm c2-chroot-write-eperm c2-bind-exec-eperm c2-bind-read-eperm c2-bind-write-eperm c3-mmap-exec-eperm c3-mprotect-exec-eperm c3-ldso-denied c3-memfd-exec-eperm c4-open-trunc-eperm c4-truncate-eperm c4-creat-eperm c4-creat-nothing-left c4-rename-over-eperm c4-rename-out-eperm c4-rename-dir-eperm c4-unlink-eperm c4-mkdir-eperm c4-rmdir-eperm c4-symlink-eperm c4-mkfifo-eperm c4-chmod-eperm c4-setxattr-eperm c4-bytes-unchanged c6-child-eperm c6-grandchild-eperm c6-child-20-tries c6-glob-20-tries c6-child-after-walk-eperm sib-hardlink-exec sib-shebang sib-bind-read sib-chroot-read sib-mmap-exec sib-ldso sib-memfd-exec sib-chmod sib-mkdir-rmdir sib-child-exec decision-hooks decision-write-records
# shellcheck shell=sh source=integration/vm/guest/lib.sh
. /usr/share/guard-vm/lib.sh

wl="$(mkcg bypass-wl)"
sib="$(mkcg bypass-sib)"
globp="$(mkcg globp)"
in_wl() { "$TESTKIT" cgroup-run "$wl" -- "$@"; }
in_sib() { "$TESTKIT" cgroup-run "$sib" -- "$@"; }
ldso="$(ls /lib64/ld-linux-x86-64.so.2 2>/dev/null || ls /lib/ld-linux-x86-64.so.2 2>/dev/null)"

# /opt, /srv and /bpx share the root filesystem, so hard links between them work. Copies are
# named busybox so that busybox runs the applet named by argv[1].
mkdir -p /opt/bp /srv/bp/sub /srv/bp/empty /bpx/hl /mnt/bp /mnt/obp
cp /bin/busybox /opt/bp/busybox
cp "$TESTKIT" /opt/bp/dyn
echo s3cret >/srv/bp/secret
echo cfg >/srv/bp/conf
echo sub >/srv/bp/sub/f
echo other >/bpx/other
# Other names, made outside the workload before the agent starts.
ln /opt/bp/busybox /bpx/hl/busybox
ln /srv/bp/secret /bpx/hl-secret
printf '#!/bpx/hl/busybox sh\nexit 0\n' >/bpx/script
chmod +x /bpx/script
mount --bind /srv/bp /mnt/bp
mount --bind /opt/bp /mnt/obp
cat >/tmp/bypass.yaml <<'EOF'
- policy: vm-bypass
  workload: {cgroup: /bypass-wl}
  mode: enforce
  enforce:
    exec: {deny: [/opt/bp/busybox, /opt/bp/dyn], deny_new_binaries: true}
    open: {deny_write: ["/srv/bp/**"], deny_read: [/srv/bp/secret]}
- policy: vm-glob
  workload: {cgroup: "/globp/*"}
  mode: enforce
  enforce:
    exec: {deny: [/opt/bp/busybox]}
EOF
"$GUARD" run --cleanup >/dev/null 2>&1
# The bytes and names of the protected tree, before and after every write attempt.
snapshot() { (cd /srv/bp && find . | sort && md5sum secret conf sub/f && stat -c '%n %s %a %i' secret conf sub sub/f empty); }
before="$(snapshot)"
# A process in the workload: the agent resolves the rules in its root (here the host's).
# Its output goes nowhere: /init waits for the scenario's stdout to close.
"$TESTKIT" cgroup-run "$wl" -- sleep 600 >/dev/null 2>&1 &
holder=$!
GUARD_AUDIT_DIR=/tmp/audit-bypass
rm -rf "$GUARD_AUDIT_DIR"
if ! guard_start --policy /tmp/bypass.yaml; then
    fail guard-ready "guard run did not become ready"
    finish
    exit 0
fi
pass guard-ready "$(grep -c . "$GUARD_ERR") stderr lines"
line="$(grep 'probes attached' "$GUARD_ERR" | head -n1)"
case "$line" in
    *'policy_backend="bpf-lsm"'*) pass backend-bpf-lsm "$line" ;;
    *) fail backend-bpf-lsm "startup log: ${line:-none}"
       sed 's/^/  guard-stderr: /' "$GUARD_ERR" | cut -c1-600 | tail -n 40 ;;
esac
# The cgroup walk (every second) resolves the rules to inodes in the workload's root.
sleep 3

# Class 1: another name for the same file.
outcome c1-hardlink-exec-eperm errno=1 "$TESTKIT" try-exec --cgroup "$wl" /bpx/hl/busybox true
outcome c1-hardlink-read-eperm errno=1 in_wl "$TESTKIT" try-open /bpx/hl-secret r
outcome c1-shebang-hardlink-eperm errno=1 "$TESTKIT" try-exec --cgroup "$wl" /bpx/script
outcome c1-wl-link-denied-binary-eperm errno=1 in_wl "$TESTKIT" try-link /opt/bp/busybox /bpx/wl-link
outcome c1-wl-rename-denied-binary-eperm errno=1 in_wl "$TESTKIT" try-rename /opt/bp/busybox /opt/bp/moved
outcome c1-link-into-subtree-eperm errno=1 in_wl "$TESTKIT" try-link /bpx/other /srv/bp/linked
outcome c1-open-by-handle-eperm errno=1 in_wl "$TESTKIT" try-open-by-handle /srv/bp/secret r
outcome sib-hardlink-exec "ok exit=0" "$TESTKIT" try-exec --cgroup "$sib" /bpx/hl/busybox true
outcome sib-shebang "ok exit=0" "$TESTKIT" try-exec --cgroup "$sib" /bpx/script

# Class 2: another root. Inside the chroot the names are /bp/...; the dentries are the same.
outcome c2-chroot-exec-eperm errno=1 in_wl "$TESTKIT" chroot-do /opt try-exec /bp/busybox true
outcome c2-chroot-read-eperm errno=1 in_wl "$TESTKIT" chroot-do /srv try-open /bp/secret r
outcome c2-chroot-write-eperm errno=1 in_wl "$TESTKIT" chroot-do /srv try-open /bp/conf w
outcome c2-bind-exec-eperm errno=1 "$TESTKIT" try-exec --cgroup "$wl" /mnt/obp/busybox true
outcome c2-bind-read-eperm errno=1 in_wl "$TESTKIT" try-open /mnt/bp/secret r
outcome c2-bind-write-eperm errno=1 in_wl "$TESTKIT" try-open /mnt/bp/conf w
outcome sib-bind-read ok in_sib "$TESTKIT" try-open /mnt/bp/secret r
outcome sib-chroot-read ok in_sib "$TESTKIT" chroot-do /srv try-open /bp/secret r

# Class 3: executable mappings.
outcome c3-mmap-exec-eperm errno=1 in_wl "$TESTKIT" try-mmap-exec /opt/bp/busybox
outcome c3-mprotect-exec-eperm errno=1 in_wl "$TESTKIT" try-mmap-exec /opt/bp/busybox mprotect
out="$(in_wl "$ldso" /opt/bp/dyn --help 2>&1)"
rc=$?
case "$out" in
    *usage:*) fail c3-ldso-denied "$ldso /opt/bp/dyn ran (rc=$rc): $(echo "$out" | head -c 200)" ;;
    *) if [ "$rc" != 0 ]; then pass c3-ldso-denied "rc=$rc: $(echo "$out" | head -c 200)"
       else fail c3-ldso-denied "rc=0: $(echo "$out" | head -c 200)"; fi ;;
esac
out="$(in_sib "$ldso" /opt/bp/dyn --help 2>&1)"
rc=$?
case "$out" in
    *usage:*) [ "$rc" = 0 ] && pass sib-ldso "rc=0" || fail sib-ldso "rc=$rc" ;;
    *) fail sib-ldso "rc=$rc: $(echo "$out" | head -c 200)" ;;
esac
outcome c3-memfd-exec-eperm errno=1 in_wl "$TESTKIT" try-memfd-exec /bin/busybox true
outcome sib-mmap-exec ok in_sib "$TESTKIT" try-mmap-exec /opt/bp/busybox
outcome sib-memfd-exec "ok exit=0" in_sib "$TESTKIT" try-memfd-exec /bin/busybox true

# Class 4: every way to modify under deny_write /srv/bp/**.
outcome c4-open-trunc-eperm errno=1 in_wl "$TESTKIT" try-open /srv/bp/conf rt
outcome c4-truncate-eperm errno=1 in_wl "$TESTKIT" try-truncate /srv/bp/conf 0
outcome c4-creat-eperm errno=1 in_wl "$TESTKIT" try-open /srv/bp/new wc
if [ ! -e /srv/bp/new ]; then pass c4-creat-nothing-left "/srv/bp/new absent"
else fail c4-creat-nothing-left "$(ls -l /srv/bp/new)"; fi
outcome c4-rename-over-eperm errno=1 in_wl "$TESTKIT" try-rename /bpx/other /srv/bp/conf
outcome c4-rename-out-eperm errno=1 in_wl "$TESTKIT" try-rename /srv/bp/conf /bpx/moved
outcome c4-rename-dir-eperm errno=1 in_wl "$TESTKIT" try-rename /srv/bp/sub /srv/sub-moved
outcome c4-unlink-eperm errno=1 in_wl "$TESTKIT" try-unlink /srv/bp/conf
outcome c4-mkdir-eperm errno=1 in_wl "$TESTKIT" try-mkdir /srv/bp/d
outcome c4-rmdir-eperm errno=1 in_wl "$TESTKIT" try-rmdir /srv/bp/empty
outcome c4-symlink-eperm errno=1 in_wl "$TESTKIT" try-symlink /etc/passwd /srv/bp/sl
outcome c4-mkfifo-eperm errno=1 in_wl "$TESTKIT" try-mkfifo /srv/bp/fifo
outcome c4-chmod-eperm errno=1 in_wl "$TESTKIT" try-chmod /srv/bp/conf 777
outcome c4-setxattr-eperm errno=1 in_wl "$TESTKIT" try-setxattr /srv/bp/conf trusted.guard x
# Controls that leave the tree as it was.
outcome sib-chmod ok in_sib "$TESTKIT" try-chmod /srv/bp/conf "$(stat -c %a /srv/bp/conf)"
if in_sib "$TESTKIT" try-mkdir /srv/bp/sibdir | grep -q '^ok' \
    && in_sib "$TESTKIT" try-rmdir /srv/bp/sibdir | grep -q '^ok'; then
    pass sib-mkdir-rmdir "mkdir and rmdir in /srv/bp from the sibling"
else
    fail sib-mkdir-rmdir "$(ls /srv/bp | tr '\n' ' ')"
fi
after="$(snapshot)"
if [ "$before" = "$after" ]; then pass c4-bytes-unchanged "$(echo "$after" | grep -c .) lines of names, sums, sizes, modes, inodes"
else fail c4-bytes-unchanged "before: $(echo "$before" | tr '\n' '|') after: $(echo "$after" | tr '\n' '|')"; fi

# Class 6: a child cgroup inherits its parent's policy at creation; a glob-selected parent's
# new children are bound at creation too (before the 1 s walk could see them).
mkdir "$wl/child"
outcome c6-child-eperm errno=1 "$TESTKIT" try-exec --cgroup "$wl/child" /opt/bp/busybox true
mkdir "$wl/child/gc"
outcome c6-grandchild-eperm errno=1 "$TESTKIT" try-exec --cgroup "$wl/child/gc" /opt/bp/busybox true
mkdir "$sib/child"
outcome sib-child-exec "ok exit=0" "$TESTKIT" try-exec --cgroup "$sib/child" /opt/bp/busybox true
tries() {
    # tries PARENT: 20 times, a new child cgroup and at once an exec of the denied binary in it.
    n=0 denied=0 escaped=0 other=""
    while [ "$n" -lt 20 ]; do
        n=$((n + 1))
        mkdir "$1/t$n"
        r="$("$TESTKIT" try-exec --cgroup "$1/t$n" /opt/bp/busybox true | head -n1)"
        case "$r" in
            errno=1*) denied=$((denied + 1)) ;;
            ok*) escaped=$((escaped + 1)) ;;
            *) other="$other [$r]" ;;
        esac
        rmdir "$1/t$n"
    done
    echo "denied=$denied escaped=$escaped$other"
}
r="$(tries "$wl")"
case "$r" in "denied=20 escaped=0") pass c6-child-20-tries "$r" ;; *) fail c6-child-20-tries "$r" ;; esac
r="$(tries "$globp")"
case "$r" in "denied=20 escaped=0") pass c6-glob-20-tries "$r" ;; *) fail c6-glob-20-tries "$r" ;; esac
sleep 2
outcome c6-child-after-walk-eperm errno=1 "$TESTKIT" try-exec --cgroup "$wl/child" /opt/bp/busybox true

sleep 1
guard_stop
audit() { cat "$GUARD_AUDIT_DIR"/audit-*.jsonl 2>/dev/null | grep '"kind":"decision"' | grep '"decision":"deny"'; }
missing=""
for h in bprm_check_security file_open mmap_file file_mprotect inode_create inode_rename inode_link \
    inode_unlink inode_mkdir inode_rmdir inode_symlink inode_mknod path_chmod inode_setxattr; do
    audit | grep -q "\"hook\":\"$h\"" || missing="$missing $h"
done
# Truncation is decided at path_truncate (truncate(2), and O_TRUNC before 6.2) and
# file_truncate (O_TRUNC from 6.2).
audit | grep -q '"hook":"path_truncate"' || missing="$missing path_truncate"
if [ -z "$missing" ]; then pass decision-hooks "every hook named in a deny record"
else fail decision-hooks "no deny record from:$missing; $(audit | cut -c1-300 | head -n 5)"; fi
n_write="$(audit | grep -c '"op":"write"')"
if [ "$n_write" -ge 14 ]; then pass decision-write-records "$n_write write records"
else fail decision-write-records "$n_write write records"; fi
kill "$holder" 2>/dev/null
umount /mnt/bp /mnt/obp 2>/dev/null
"$GUARD" run --cleanup >/dev/null 2>&1
finish
