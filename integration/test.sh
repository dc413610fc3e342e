#!/usr/bin/env bash
# The whole test suite: setup, then all four layers through `cargo test --workspace`:
#   1. unit tests (guard, guard-ebpf)             2. the tests/ crate (rule corpus, compatibility)
#   3. host integration (root, real dockerd, private containerd and podman)      4. VM integration (qemu TCG, BPF LSM kernels)
# then a bounded run of each cargo-fuzz target (integration/fuzz.sh; GUARD_FUZZ_SECONDS, default 20).
# With CI=true every privileged layer is mandatory: a test that cannot run fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

start=$(date +%s)
df -h . >&2 || true  # a full disk shows up as linker SIGBUS; make it visible
bash integration/setup.sh
bash integration/docker.sh up
# The private containerd and Podman service (cri_containerd and podman start them with
# `integration/containerd.sh up` and `integration/podman.sh up`).
trap 'bash integration/docker.sh down; bash integration/containerd.sh down; bash integration/podman.sh down' EXIT

cargo build --workspace --all-targets
cargo test --workspace --no-fail-fast "$@"
# A short bounded run of every fuzz target, plus its regression inputs (fuzz/README.md).
bash integration/fuzz.sh "${GUARD_FUZZ_SECONDS:-20}"
echo "integration/test.sh: finished in $(( $(date +%s) - start )) s" >&2
