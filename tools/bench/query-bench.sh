#!/usr/bin/env bash
# tools/bench/query-bench.sh - audit-query search throughput beside `zstdcat | jq` and
# `zstdcat | grep` on the same corpus, in the same run.
#
#   tools/bench/query-bench.sh [EVENTS]      (default 3000000: about 2 GB of JSON)
#
# The corpus is made by build/bin/sink-bench --keep (the realistic event mix through the real
# pipeline into the file sink). The query selects the flows of one host out of five. MB/s is
# of uncompressed JSON; the table gives each tool's time and its ratio to jq.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VIGIL_BIN_DIR:-$ROOT/build/bin}
N=${1:-3000000}
command -v jq >/dev/null || { echo "query-bench: needs jq (apt-get install jq)" >&2; exit 2; }
T=$(mktemp -d /tmp/vigil-query-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
"$BIN/sink-bench" --keep "$T/data" "$N" >/dev/null
BYTES=$(find "$T/data/audit" -name '*.vseg' -exec zstdcat {} + | wc -c)
HOST=api.example.com
secs() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
aq=$(secs "$BIN/audit-query" search --data-dir "$T/data" --domain "$HOST" --format json)
jqs=$(secs sh -c "find '$T/data/audit' -name '*.vseg' | sort | xargs zstdcat | jq -c 'select(.request.host == \"$HOST\")'")
grs=$(secs sh -c "find '$T/data/audit' -name '*.vseg' | sort | xargs zstdcat | grep -F '\"host\":\"$HOST\"'")
mb=$(echo "$BYTES / 1000000" | bc -l)
echo "audit-query search, $N events, $(printf %.0f "$mb") MB of JSON, $(nproc) CPUs, $(date -u +%FT%TZ)"
echo "| tool | seconds | MB/s | vs jq |"
echo "|---|---:|---:|---:|"
for row in "audit-query search --domain:$aq" "zstdcat | jq select:$jqs" "zstdcat | grep -F:$grs"; do
  name=${row%%:*} t=${row##*:}
  printf '| %s | %.2f | %.0f | %.1fx |\n' "$name" "$t" "$(echo "$mb / $t" | bc -l)" "$(echo "$jqs / $t" | bc -l)"
done
