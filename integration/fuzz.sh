#!/usr/bin/env bash
# Bounded fuzzing for the test suite: builds the cargo-fuzz targets (nightly, AddressSanitizer),
# replays every fuzz/regressions/<target>/ input through its target, seeds the corpora, then
# fuzzes each target for SECONDS (default 20). Any crash, timeout or out-of-memory fails.
# Usage: bash integration/fuzz.sh [SECONDS] [TARGET...]
# Long runs and the findings so far: fuzz/README.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECS=${1:-20}
[ $# -gt 0 ] && shift
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(rules_load policy_load record_decode falco_alert audit_read)
say() { printf 'fuzz.sh: %s\n' "$*" >&2; }

command -v cargo-fuzz >/dev/null || { say "cargo-fuzz missing: run integration/setup.sh"; exit 1; }

start=$(date +%s)
# AYA_BUILD_SKIP=1: the targets never load the eBPF programs, so guard's build.rs embeds an
# empty object instead of building them again (minutes) for the fuzz target directory. Set on
# these commands only: elsewhere it would rebuild the workspace's guard without its programs.
if [ $# -eq 0 ]; then
    AYA_BUILD_SKIP=1 cargo +nightly fuzz build # every target in one cargo invocation
else
    for t in "${targets[@]}"; do AYA_BUILD_SKIP=1 cargo +nightly fuzz build "$t"; done
fi
say "build: $(( $(date +%s) - start )) s"
bash fuzz/seed.sh "${targets[@]}"

BIN=fuzz/target/x86_64-unknown-linux-gnu/release
ART=fuzz/artifacts
# -timeout is generous here (shared CI cores, sanitizer build); the long runs use 1 s.
OPTS=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
max_len() {
    case $1 in
    audit_read) echo 65536 ;;
    falco_alert) echo 8192 ;;
    *) echo 16384 ;;
    esac
}
fail=0
for t in "${targets[@]}"; do
    mkdir -p "$ART/$t"
    regs=(fuzz/regressions/"$t"/*)
    if [ -e "${regs[0]}" ]; then
        if "$BIN/$t" "${OPTS[@]}" "${regs[@]}" >"$ART/$t.regressions.log" 2>&1; then
            say "$t: ${#regs[@]} regression input(s) pass"
        else
            say "$t: a regression input fails:"
            tail -40 "$ART/$t.regressions.log" >&2
            fail=1
        fi
    fi
    log=$ART/$t.log
    if "$BIN/$t" "${OPTS[@]}" -max_len="$(max_len "$t")" -max_total_time="$SECS" \
        -artifact_prefix="$ART/$t/" "fuzz/corpus/$t" >"$log" 2>&1; then
        say "$t: ${SECS} s, $(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?') executions, no finding"
    else
        say "$t: FINDING (inputs in $ART/$t/):"
        tail -60 "$log" >&2
        fail=1
    fi
done
say "finished in $(( $(date +%s) - start )) s"
if [ "$fail" -ne 0 ]; then
    say "FAILED"
    exit 1
fi
echo "fuzz: ${#targets[@]} passed, 0 failed"
