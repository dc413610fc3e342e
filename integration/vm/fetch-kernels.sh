#!/usr/bin/env bash
# Downloads Debian's unsigned cloud kernels for the VM test bed (6.1 and 6.12 by default) with
# apt-get download and caches their vmlinuz. Idempotent: a cached kernel is not fetched again.
# Usage: fetch-kernels.sh [LABEL...]   Prints one "LABEL PATH-TO-VMLINUZ" line per kernel.
set -euo pipefail
# shellcheck source=integration/vm/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

labels=("$@")
[ "${#labels[@]}" -gt 0 ] || labels=("${VM_KERNEL_LABELS[@]}")
rc=0
for l in "${labels[@]}"; do
    if path="$(fetch_kernel "$l")"; then
        printf '%s %s\n' "$l" "$path"
    else
        rc=1
    fi
done
exit "$rc"
