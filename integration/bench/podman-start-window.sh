#!/usr/bin/env bash
# Podman's start window, A/B: how many of N containers whose entrypoint a policy denies are killed
# before that entrypoint writes its file, with guard following Podman's events log
# (--podman-events-file) and without it (off: only the API's event stream, which Podman feeds by
# polling its log every 250 ms). Three ways to run each container: `podman --remote run`, the
# API's create then start at once, and the local `podman run` CLI on the same store.
# Needs the private service (integration/podman.sh up); runs under the host tests' lock:
#   flock /run/guard-priv.lock bash integration/bench/podman-start-window.sh [N]
# Result 2026-12-04 (N=10, two host exec loops of /bin/true, sigkill-fallback backend, debug build):
#   off:        podman --remote run 8/10, API create+start 1/10, local podman run 2/10
#   events log: podman --remote run 10/10, API create+start 10/10, local podman run 10/10
set -u
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_root
N="${1:-10}"
GUARD="${GUARD_BIN:-$REPO/target/debug/guard}"
[ -x "$GUARD" ] || die "no guard binary at $GUARD (cargo build -p guard, or set GUARD_BIN)"
FIX="$REPO/integration/podman.sh"
SOCK="$(bash "$FIX" socket)"
EVENTS="$(dirname "$SOCK")/events.log"
IMG=localhost/guard-test-busybox:latest
bash "$FIX" up
api() { curl -s --unix-socket "$SOCK" -H 'Content-Type: application/json' "$@"; }
for mode in off "$EVENTS"; do
    d="$(mktemp -d)"; mkdir -p "$d/out" "$d/audit"
    printf -- '- policy: ab\n  workload: {labels: {guard-podman: deny}}\n  mode: enforce\n  enforce:\n    exec: {deny: [/bin/touch]}\n' >"$d/p.yaml"
    pin="/sys/fs/bpf/guard-bench-podman-$$"
    GUARD_LOG=warn GUARD_POLICY_BACKEND=sigkill-fallback "$GUARD" run --format json --no-responses \
        --rules "$REPO/policies" --policy "$d/p.yaml" --pin-dir "$pin" --audit-dir "$d/audit" \
        --docker-socket "$SOCK" --podman-events-file "$mode" --cri-socket off --metrics-addr off \
        >"$d/stdout" 2>"$d/stderr" &
    g=$!
    for _ in $(seq 1 240); do grep -q "guard: ready" "$d/stderr" && break; sleep 0.5; done
    grep -q "guard: ready" "$d/stderr" || { kill "$g"; die "guard did not start: $(tail -3 "$d/stderr")"; }
    flood='i=0; while [ $i -lt 1000000 ]; do /bin/true; i=$((i+1)); done'
    sh -c "$flood" & f1=$!
    sh -c "$flood" & f2=$!
    remote=0; direct=0; local_cli=0
    for i in $(seq 1 "$N"); do
        podman --remote --url "unix://$SOCK" run --rm --network none -v "$d/out:/out" \
            --label guard-podman=deny "$IMG" /bin/touch "/out/r-$i" >/dev/null 2>&1
        code=$?; [ "$code" = 137 ] && [ ! -e "$d/out/r-$i" ] && remote=$((remote + 1))
        id="$(api -X POST http://d/v1.41/containers/create -d '{"Image":"'"$IMG"'","Cmd":["/bin/touch","/out/a-'"$i"'"],"Labels":{"guard-podman":"deny"},"HostConfig":{"NetworkMode":"none","Binds":["'"$d/out"':/out"]}}' \
            | sed 's/.*"Id":"\([0-9a-f]*\)".*/\1/')"
        api -X POST "http://d/v1.41/containers/$id/start" >/dev/null
        code="$(api -X POST "http://d/v1.41/containers/$id/wait" | sed 's/.*"StatusCode":\([0-9]*\).*/\1/')"
        api -X DELETE "http://d/v1.41/containers/$id?force=true" >/dev/null
        [ "$code" = 137 ] && [ ! -e "$d/out/a-$i" ] && direct=$((direct + 1))
        bash "$FIX" cli run --rm --network none -v "$d/out:/out" --label guard-podman=deny "$IMG" \
            /bin/touch "/out/l-$i" >/dev/null 2>&1
        code=$?; [ "$code" = 137 ] && [ ! -e "$d/out/l-$i" ] && local_cli=$((local_cli + 1))
    done
    kill "$f1" "$f2"; wait "$f1" "$f2" 2>/dev/null
    kill "$g"; wait "$g"
    "$GUARD" run --cleanup --pin-dir "$pin" >/dev/null 2>&1
    echo "podman-events-file=$mode: killed before writing: podman --remote run $remote/$N, API create+start $direct/$N, local podman run $local_cli/$N"
    rm -rf "$d"
done
