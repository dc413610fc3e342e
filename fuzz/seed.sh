#!/usr/bin/env bash
# Builds the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (gitignored), from the
# repository's test inputs and, when present, ../shared/falco-rules (read at run time, never
# copied into the repository). Idempotent: seeds are named seed-*, and libFuzzer's own corpus
# entries beside them are kept.
# Usage: bash fuzz/seed.sh [TARGET...]   (default: all five)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
OUT=$ROOT/fuzz/corpus
SHARED=$ROOT/../shared
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=(rules_load policy_load record_decode falco_alert audit_read)

# Each top-level `- ` item of a YAML file as its own seed (a lone item loads fast, and most of
# a rules file's coverage is in its items), plus the whole file.
split_items() { # FILE DIR PREFIX
    cp "$1" "$2/seed-$3.yaml"
    awk -v dir="$2" -v pre="$3" '
        /^- / { n++ }
        n > 0 { print > (dir "/seed-" pre "-item" sprintf("%04d", n) ".yaml") }
    ' "$1"
}

yaml_seeds() { # DIR FILE...
    local dir=$1; shift
    local f
    for f in "$@"; do
        [ -f "$f" ] || continue
        split_items "$f" "$dir" "$(basename "$(dirname "$f")")-$(basename "$f" .yaml)"
    done
}

for t in "${targets[@]}"; do
    d=$OUT/$t
    mkdir -p "$d"
    rm -f "$d"/seed-*
    case $t in
    rules_load)
        yaml_seeds "$d" policies/*.yaml policies/examples/*.yaml "$SHARED/falco-rules/falco_rules.yaml"
        # Bare conditions too (the target also parses its input as one condition).
        grep -h '^ *condition:' policies/*.yaml "$SHARED"/falco-rules/*.yaml 2>/dev/null |
            sed 's/^ *condition: *//' | awk -v dir="$d" '{ print > (dir "/seed-cond" sprintf("%04d", NR)) }'
        ;;
    policy_load)
        yaml_seeds "$d" policies/*.yaml policies/examples/*.yaml responses/*.yaml
        ;;
    record_decode)
        env -u AYA_BUILD_SKIP cargo run --quiet -p guard --example fuzz_record_seeds -- "$d/.gen" >/dev/null
        for f in "$d"/.gen/*.bin; do mv "$f" "$d/seed-$(basename "$f")"; done
        rm -rf "$d/.gen"
        ;;
    falco_alert)
        i=0
        while IFS= read -r body; do
            i=$((i + 1))
            printf '%s' "$body" >"$d/seed-$i.json"
        done <<'JSON'
{"time":"2026-01-01T00:00:00.000000000Z","rule":"Terminal shell in container","priority":"Notice","source":"syscall","hostname":"node-1","output":"A shell was spawned in a container (user=root container_id=0123456789ab)","output_fields":{"container.id":"0123456789ab","container.name":"web","container.image.repository":"nginx","proc.pid":4242,"proc.cmdline":"sh -i","user.name":"root"},"tags":["container","shell","mitre_execution"]}
{"time":"2026-01-01T00:00:00Z","rule":"Read sensitive file untrusted","priority":"Warning","output":"x","output_fields":{"fd.name":"/etc/shadow","proc.pid":"17","k8s.ns.name":"prod","k8s.pod.name":"api-7f9"}}
{"rule":"Drop and execute new binary in container","priority":"CRITICAL","output_fields":{"container.id":"host","proc.pid":1}}
{"rule":"r","priority":"Emergency","tags":[],"output_fields":{"proc.pid":18446744073709551615,"container.name":null,"evt.time":1.5e300}}
{"rule":"Contact K8S API Server From Container","priority":"informational","source":"k8s_audit","hostname":"","output":"","output_fields":{"container.id":"ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff"}}
{"rule":"unicode \u00e9\u0000\ud83d\ude00","priority":"Debug","output_fields":{"proc.pid":"  42 "}}
JSON
        ;;
    audit_read)
        env -u AYA_BUILD_SKIP cargo run --quiet -p guard-tests --example fuzz_audit_seeds -- "$d/.gen" >/dev/null
        for f in "$d"/.gen/*.txt; do mv "$f" "$d/seed-$(basename "$f")"; done
        rm -rf "$d/.gen"
        ;;
    *)
        echo "seed.sh: unknown target $t" >&2
        exit 2
        ;;
    esac
    echo "seed.sh: $t: $(ls "$d" | grep -c '^seed-') seeds, $(ls "$d" | wc -l) corpus files" >&2
done
