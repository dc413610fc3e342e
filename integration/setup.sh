#!/usr/bin/env bash
# One idempotent setup step: installs what a fresh Debian machine lacks to build,
# run and test guard, and says what it did. A second run only checks and takes seconds.
set -euo pipefail

say() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root (installs Debian packages)"; exit 1
fi

command -v rustup >/dev/null || { say "rustup not found: install Rust with rustup first"; exit 1; }

# The eBPF crate builds with the nightly toolchain; bpf-linker must use the same LLVM major.
if ! rustup run nightly rustc -vV >/dev/null 2>&1; then
    say "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
LLVM_MAJOR="$(rustup run nightly rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[ -n "$LLVM_MAJOR" ] || { say "cannot read the nightly's LLVM version"; exit 1; }

PKGS=(
    "llvm-${LLVM_MAJOR}-dev" "libpolly-${LLVM_MAJOR}-dev" libzstd-dev zlib1g-dev  # bpf-linker
    docker.io busybox-static                                               # host integration
    containerd protobuf-compiler                                           # CRI test bed (containerd.sh); protoc for the k8s-cri bindings
    podman                                                                 # Podman test bed (podman.sh); brings conmon, CNI plugins, containers-common; docker.io's runc is its OCI runtime
    qemu-system-x86 cpio zstd                                              # VM test bed
    chromium                                                               # HTML report test
    iproute2 procps                                                        # test tooling
    openssl curl util-linux                                                # intake certs, TLS sender, setpriv (respond_falco)
    systemd                                                                # systemd-analyze verify (deploy test)
)
# Not here: bpftrace and auditd are benchmark-only (integration/bench/overhead.sh installs them
# on demand and says so).
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    say "Debian packages present"
fi

if rustup component list --toolchain nightly --installed | grep -q '^rust-src'; then
    say "nightly rust-src present"
else
    say "adding rust-src to the nightly"
    rustup component add rust-src --toolchain nightly
fi

# Pinned: a newer bpf-linker may need a newer rustc or LLVM than this toolchain has.
BPF_LINKER_VERSION=0.13.0
want_linker=0
if command -v bpf-linker >/dev/null && [ "$(bpf-linker --version 2>/dev/null)" != "bpf-linker ${BPF_LINKER_VERSION}" ]; then
    say "bpf-linker is not ${BPF_LINKER_VERSION}; rebuilding"
    want_linker=1
elif command -v bpf-linker >/dev/null; then
    # bpf-linker links against one LLVM; a mismatch with the nightly's corrupts bitcode.
    # Capture first: under pipefail, `ldd | grep -q` fails when grep exits early (SIGPIPE).
    linker_libs="$(ldd "$(command -v bpf-linker)" 2>/dev/null || true)"
    if ! grep -q "libLLVM.so.${LLVM_MAJOR}\b\|libLLVM-${LLVM_MAJOR}\b" <<<"$linker_libs"; then
        say "bpf-linker is not linked against LLVM ${LLVM_MAJOR}; rebuilding"
        want_linker=1
    else
        say "bpf-linker present (LLVM ${LLVM_MAJOR})"
    fi
else
    want_linker=1
fi
if [ "$want_linker" = 1 ]; then
    say "building bpf-linker ${BPF_LINKER_VERSION} for LLVM ${LLVM_MAJOR} (a few minutes)"
    LLVM_PREFIX="/usr/lib/llvm-${LLVM_MAJOR}" \
        cargo install --locked --force bpf-linker --version "${BPF_LINKER_VERSION}" \
        --no-default-features --features "llvm-${LLVM_MAJOR}"
fi
# cargo-fuzz drives the fuzz targets (integration/fuzz.sh, fuzz/README.md); pinned, with its
# lock file, so a new release cannot break the build.
CARGO_FUZZ_VERSION=0.13.2
if [ "$(cargo fuzz --version 2>/dev/null)" = "cargo-fuzz ${CARGO_FUZZ_VERSION}" ]; then
    say "cargo-fuzz ${CARGO_FUZZ_VERSION} present"
else
    say "installing cargo-fuzz ${CARGO_FUZZ_VERSION} (about two minutes)"
    cargo install --locked --force cargo-fuzz --version "${CARGO_FUZZ_VERSION}"
fi
say "done"
