#!/usr/bin/env bash
# tools/bench/proxy-bench.sh - Vigil beside Squid and tinyproxy on loopback, same run, same
# parameters (the side-by-side harness in tools/bench/harness), then a check of the record:
# every request the load generator counted must have its flow.end in Vigil's record.
#
#   tools/bench/proxy-bench.sh [harness options]     e.g. -d 10 -c 50 -m "plain connect"
#
# Needs a build (build/bin/vigil, build/bin/audit-query); the harness installs nginx, squid,
# tinyproxy and wrk from Debian if they are missing. Prints the harness's markdown table.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VIGIL_BIN_DIR:-$ROOT/build/bin}
[ -x "$BIN/vigil" ] || { echo "build first: tools/setup.sh build" >&2; exit 2; }
OUT=$(mktemp -d /tmp/vigil-bench.XXXXXX)
if [ -n "${KEEP:-}" ]; then echo "[bench] vigil data kept in $OUT" >&2; else trap 'rm -rf "$OUT"' EXIT; fi
export PROXY_PORT=13129
# one data dir per proxy run (the harness restarts the proxy for every mode and file): the
# wrapper writes a config for the mode (interception in the intercept modes) and records the dir
export VIGIL_BIN_DIR=$BIN VIGIL_BENCH_RUNS=$OUT/runs VIGIL_BENCH_DATA_BASE=$OUT
export PROXY_CMD="$ROOT/tools/bench/vigil-intercept.sh"
"$ROOT/tools/bench/harness/run.sh" -o "$OUT/results.json" "$@"

echo
echo "Record check (what the load generator counted vs Vigil's record: flow.end events, and flows"
echo "refused under fail_closed, which audit.loss counts; anything else missing is a loss):"
runs=$(cat "$OUT/runs" 2>/dev/null)
rows=$(jq -c '.params.conns as $c | .results[] | select(.target == "proxy") | [.mode, .file, .requests, $c]' "$OUT/results.json")
paste <(echo "$rows") <(for d in $runs; do
  # audit-query exits 1 when nothing matched: not an error here
  e=$({ "$BIN/audit-query" search --data-dir "$d" --event flow.end --format json 2>/dev/null || true; } | wc -l)
  r=$({ "$BIN/audit-query" search --data-dir "$d" --event audit.loss --format json 2>/dev/null || true; } |
      jq -s 'map(.refused) | add // 0')
  echo "$e $r"; done) |
while IFS=$'\t' read -r row counts; do
  read -r ends refused <<<"$counts"
  mode=$(jq -r '.[0]' <<<"$row") req=$(jq -r '.[2]' <<<"$row") conns=$(jq -r '.[3]' <<<"$row")
  if [ "$mode" = plain ] || [ "$mode" = intercept ] || [ "$mode" = intercept-handshake ]; then
    # one flow per request (inside an intercepted tunnel too, beside the tunnel's own)
    status=ok; [ $((ends + refused)) -ge "$req" ] || status=MISSING
    echo "  $mode $(jq -r '.[1]' <<<"$row"): requests $req, flow.end $ends, refused (503) $refused: $status"
  else                           # one flow per tunnel: at least one per connection (more with -r)
    status=ok; [ "$ends" -ge "$conns" ] || status=MISSING
    echo "  $mode $(jq -r '.[1]' <<<"$row"): tunnels >= $conns ($req requests inside), flow.end $ends: $status"
  fi
done
