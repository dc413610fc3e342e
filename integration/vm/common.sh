# Shared by the VM test-bed scripts (sourced, not run). Host side only.
# shellcheck shell=bash

VM_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$VM_DIR/../.." && pwd)"
# integration/.cache is gitignored; override with GUARD_VM_CACHE.
VM_CACHE="${GUARD_VM_CACHE:-$REPO_ROOT/integration/.cache/vm}"
# Kernel labels the bed knows, in the order tests run them.
VM_KERNEL_LABELS=(6.1 6.12)

say() { printf 'vm: %s\n' "$*" >&2; }
die() { printf 'vm: error: %s\n' "$*" >&2; exit 1; }

# Prints the Debian package name of the unsigned cloud kernel for LABEL.
resolve_kernel_pkg() {
    local label="$1" abi pkg
    case "$label" in
        6.1)
            # The metapackage tracks the current 6.1 ABI: linux-image-6.1.0-N-cloud-amd64.
            abi="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
                | sed -n 's/^ *Depends: linux-image-\(6\.1\.[0-9.]*-[0-9]*\)-cloud-amd64$/\1/p' | head -n1)"
            [ -n "$abi" ] || return 1
            pkg="linux-image-${abi}-cloud-amd64-unsigned"
            ;;
        6.12)
            # Newest 6.12 bookworm-backports build known to apt.
            pkg="$(apt-cache pkgnames linux-image-6.12. 2>/dev/null \
                | grep -E '^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' | sort -V | tail -n1)"
            [ -n "$pkg" ] || return 1
            ;;
        *) die "unknown kernel label '$label' (known: ${VM_KERNEL_LABELS[*]})" ;;
    esac
    printf '%s\n' "$pkg"
}

# Makes sure the kernel for LABEL is cached; prints the path of its vmlinuz on stdout.
# Cache layout: $VM_CACHE/kernels/<package>/{vmlinuz,config,version,package-version}, and
# $VM_CACHE/kernels/<label> -> <package>.
fetch_kernel() {
    local label="$1" pkg dir tmp deb
    if [ "${GUARD_VM_NO_FETCH:-}" = 1 ] && [ -f "$VM_CACHE/kernels/$label/vmlinuz" ]; then
        printf '%s\n' "$VM_CACHE/kernels/$label/vmlinuz"
        return 0
    fi
    pkg="$(resolve_kernel_pkg "$label")" || pkg=""
    if [ -z "$pkg" ] && [ ! -f "$VM_CACHE/kernels/$label/vmlinuz" ] && [ "$(id -u)" -eq 0 ]; then
        # A fresh machine may have no package lists yet.
        say "kernel $label: apt-cache does not know the package; running apt-get update"
        apt-get update -qq >&2 || true
        pkg="$(resolve_kernel_pkg "$label")" || pkg=""
    fi
    if [ -z "$pkg" ]; then
        # Offline or no apt lists: use what the cache has, if anything.
        if [ -f "$VM_CACHE/kernels/$label/vmlinuz" ]; then
            say "kernel $label: apt cannot resolve the package; using cached $(readlink "$VM_CACHE/kernels/$label")"
            printf '%s\n' "$VM_CACHE/kernels/$label/vmlinuz"
            return 0
        fi
        say "kernel $label: cannot resolve the Debian package with apt-cache (run apt-get update?)"
        return 1
    fi
    dir="$VM_CACHE/kernels/$pkg"
    if [ -f "$dir/vmlinuz" ] && [ -f "$dir/config" ]; then
        say "kernel $label: $pkg cached"
    else
        mkdir -p "$VM_CACHE/kernels"
        tmp="$(mktemp -d "$VM_CACHE/kernels/.fetch.XXXXXX")"
        # apt downloads as _apt when run by root; let it write here instead of warning.
        if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$tmp"; fi
        say "kernel $label: apt-get download $pkg"
        if ! (cd "$tmp" && apt-get download -q "$pkg" >&2); then
            rm -rf "$tmp"
            say "kernel $label: apt-get download $pkg failed"
            return 1
        fi
        deb="$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n1)"
        mkdir -p "$tmp/x"
        dpkg-deb -x "$deb" "$tmp/x"
        local img
        img="$(find "$tmp/x/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)"
        [ -n "$img" ] || { rm -rf "$tmp"; say "kernel $label: no /boot/vmlinuz-* in $deb"; return 1; }
        local cfg="$tmp/x/boot/config-${img##*/vmlinuz-}"
        [ -f "$cfg" ] || { rm -rf "$tmp"; say "kernel $label: no $(basename "$cfg") in $deb"; return 1; }
        # Assemble beside the final place, then rename: a concurrent reader never sees half a kernel.
        mkdir -p "$tmp/k"
        cp "$img" "$tmp/k/vmlinuz"
        cp "$cfg" "$tmp/k/config"
        basename "$img" | sed 's/^vmlinuz-//' >"$tmp/k/version"
        dpkg-deb -f "$deb" Version >"$tmp/k/package-version"
        rm -rf "$dir"
        mv "$tmp/k" "$dir"
        rm -rf "$tmp"
        say "kernel $label: cached $pkg ($(cat "$dir/package-version")) at $dir"
    fi
    ln -sfn "$pkg" "$VM_CACHE/kernels/$label"
    printf '%s\n' "$dir/vmlinuz"
}

# Prints the lsm= boot parameter a kernel needs for BPF LSM, or nothing when its built-in
# default list (CONFIG_LSM) already has bpf. Fails when the kernel lacks CONFIG_BPF_LSM.
lsm_param_for() {
    local config="$1" default
    grep -q '^CONFIG_BPF_LSM=y' "$config" || { say "$config: CONFIG_BPF_LSM is not set"; return 1; }
    default="$(sed -n 's/^CONFIG_LSM="\(.*\)"$/\1/p' "$config")"
    case ",$default," in
        *,bpf,*) ;;
        *) printf 'lsm=%s\n' "${default:+$default,}bpf" ;;
    esac
}
