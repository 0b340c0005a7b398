#!/usr/bin/env bash
# tools/bench/sink-bench.sh - events/s through the pipeline into each sink type, zstd ratio and
# bytes per event (build/bin/sink-bench), with the peers started here on loopback:
# vigil-kafka-mock for kafka, a UDP listener that discards for syslog. Every peer is stopped
# by PID on exit.  Usage: tools/bench/sink-bench.sh [EVENTS]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${VIGIL_BIN_DIR:-$ROOT/build/bin}
N=${1:-400000}
T=$(mktemp -d /tmp/vigil-sink-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done; rm -rf "$T"; }
trap cleanup EXIT
"$BIN/vigil-kafka-mock" > "$T/kafka.out" 2>"$T/kafka.err" & PIDS+=($!)
for _ in $(seq 100); do [ -s "$T/kafka.out" ] && break; sleep 0.1; done
BOOT=$(head -1 "$T/kafka.out")
UDP_PORT=$((20000 + RANDOM % 20000))
python3 -c "
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', $UDP_PORT))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
while True: s.recv(65536)
" & PIDS+=($!)
echo "events through the pipeline into each sink, $N events, $(nproc) CPUs, $(date -u +%FT%TZ)"
"$BIN/sink-bench" "$N" '{"type":"file","name":"file"}' \
  "{\"type\":\"syslog\",\"name\":\"syslog-udp\",\"transport\":\"udp\",\"address\":\"127.0.0.1:$UDP_PORT\"}" \
  "{\"type\":\"kafka\",\"name\":\"kafka\",\"brokers\":\"$BOOT\",\"topic\":\"vigil\"}"
