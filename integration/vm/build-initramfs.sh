#!/usr/bin/env bash
# Builds the VM test bed's initramfs: busybox (static), guard, guard-testkit, their shared
# libraries and dynamic loader (found with ldd), /init and every scenario under scenarios/.
# Packed as cpio (newc) + gzip.
# Usage: build-initramfs.sh --guard BIN --testkit BIN -o OUT.cpio.gz
set -euo pipefail
# shellcheck source=integration/vm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

guard_bin="" testkit_bin="" out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --guard) guard_bin="$2"; shift 2 ;;
        --testkit) testkit_bin="$2"; shift 2 ;;
        -o) out="$2"; shift 2 ;;
        *) die "unknown argument $1 (usage: build-initramfs.sh --guard BIN --testkit BIN -o OUT)" ;;
    esac
done
if [ -z "$guard_bin" ] || [ -z "$testkit_bin" ] || [ -z "$out" ]; then
    die "usage: build-initramfs.sh --guard BIN --testkit BIN -o OUT"
fi
for b in "$guard_bin" "$testkit_bin"; do [ -x "$b" ] || die "not an executable: $b"; done
for t in cpio gzip ldd; do command -v "$t" >/dev/null || die "$t not found"; done
busybox="$(command -v busybox || true)"
[ -n "$busybox" ] || die "busybox not found (apt-get install busybox-static)"

stage="$(mktemp -d "${TMPDIR:-/tmp}/guard-vm-initramfs.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,usr/share/guard-vm/scenarios,proc,sys,dev,tmp,run,root,etc}

# copy_libs BIN: copies the shared libraries and loader BIN needs, at the paths ldd reports.
copy_libs() {
    local lib
    # ldd prints "name => /path (addr)" for libraries and "/path (addr)" for the loader.
    for lib in $(ldd "$1" 2>/dev/null | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
        if [ ! -e "$stage$lib" ]; then
            mkdir -p "$stage$(dirname "$lib")"
            cp -L "$lib" "$stage$lib"
        fi
    done
}

# install_bin SRC DEST: copies without debug info (smaller archive, faster unpack under TCG).
install_bin() {
    if command -v strip >/dev/null; then
        strip --strip-debug -o "$stage$2" "$1"
    else
        cp "$1" "$stage$2"
    fi
    chmod 755 "$stage$2"
    copy_libs "$1"
}

say "initramfs: busybox $busybox, guard $guard_bin, testkit $testkit_bin"
cp -L "$busybox" "$stage/bin/busybox"
copy_libs "$busybox" # nothing for busybox-static; needed if only the dynamic busybox is installed
install_bin "$guard_bin" /bin/guard
install_bin "$testkit_bin" /bin/guard-testkit
install -m 755 "$VM_DIR/guest/init" "$stage/init"
install -m 644 "$VM_DIR/guest/lib.sh" "$stage/usr/share/guard-vm/lib.sh"
install -m 644 "$VM_DIR"/scenarios/*.sh "$stage/usr/share/guard-vm/scenarios/"
# guard's default rules, where `guard run` looks for them outside a checkout.
mkdir -p "$stage/etc/guard"
cp -r "$VM_DIR/../../policies" "$stage/etc/guard/policies"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$stage/etc/passwd"
printf 'root:x:0:\n' >"$stage/etc/group"

mkdir -p "$(dirname "$out")"
(cd "$stage" && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
    | cpio --null --create --format=newc --owner=0:0 --quiet) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
say "initramfs: wrote $out ($(du -h "$out" | cut -f1))"
