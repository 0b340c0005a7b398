#!/usr/bin/env bash
# tools/bench/vigil-intercept.sh - Vigil as the harness's proxy under test in every mode,
# including the TLS ones: PROXY_CMD="tools/bench/vigil-intercept.sh" (see proxy-bench.sh).
#
# The harness hands the bench CA as files readable by all (it chmods the key 644 for the
# other proxies); Vigil refuses a CA key others can read, so this copies it with mode 0600
# into the run's temp dir, writes a config for the mode ($BENCH_MODE) and execs vigil:
#   plain, connect, tunnel-tls: no interception (tunnels pass TLS through; plain bytes allowed)
#   intercept, intercept-handshake: every domain intercepted, the origin trusted as upstream CA
# VIGIL_BENCH_WORKERS=N sets "workers" (default 0: one per core). With 1, Vigil gets the CPU
# budget of the harness's single-process Squid; the load generator and nginx share the cores.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VIGIL_BIN_DIR:-$ROOT/build/bin}
T=${BENCH_TMP:?run me from the harness}
PORT=${PROXY_PORT:-13129}
DATA=${VIGIL_BENCH_DATA_BASE:-$T}/vigil-data-$(date +%s%N)
tls="" intercept=""
case "${BENCH_MODE:-plain}" in
  intercept|intercept-handshake)
    install -m 600 "$BENCH_CA_KEY" "$T/vigil-ca.key"
    tls="\"tls\": {\"ca_cert\": \"$BENCH_CA_CERT\", \"ca_key\": \"$T/vigil-ca.key\", \"upstream_ca_file\": \"$BENCH_UPSTREAM_CA\"},"
    intercept=", \"intercept\": {\"domains\": [\"*\"]}";;
esac
cat > "$T/vigil-bench.json" <<JSON
{
  $tls
  "listen": ["127.0.0.1:$PORT"], "workers": ${VIGIL_BENCH_WORKERS:-0},
  "rule_groups": [{"name": "bench-loopback", "rules": [
    {"id": "origin-ports", "priority": 1, "phase": "pre_dns", "action": "allow",
     "match": {"domain": ["127.0.0.1", "localhost"], "port": [18080, 18443]}},
    {"id": "origin-addresses", "priority": 2, "phase": "pre_request", "action": "allow",
     "match": {"destination_cidr": ["127.0.0.0/8", "::1/128"]}}]}],
  "proxy_configurations": [{"name": "bench", "rule_groups": ["bench-loopback"], "default_action": "allow",
    "non_tls_tunnels": "allow"$intercept}],
  "sinks": [{"type": "file", "name": "file"}]
}
JSON
echo "$DATA" >> "${VIGIL_BENCH_RUNS:-/dev/null}"
exec "$BIN/vigil" --config "$T/vigil-bench.json" --data-dir "$DATA"
