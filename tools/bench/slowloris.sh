#!/usr/bin/env bash
# tools/bench/slowloris.sh - slowloris clients are cut by the header timeout; a normal client is not hurt.
#
#   tools/bench/slowloris.sh [-n N] [-i MS] [-H HEADER_MS] [-d SECS] [-T "vigil squid"]
#                                           defaults 2000 slow clients, a byte every 2000 ms, 5000, 15 s
#
# For each target, twice: a normal client alone (sequential keep-alive GETs through the proxy to the
# loadgen's origin) for SECS, then the same with N slow clients that each send a request line and then
# one header byte every MS milliseconds, never finishing the head. Vigil runs with
# timeouts.header_read_ms = HEADER_MS (a head must be complete that long after its first byte: 408);
# Squid with request_start_timeout = HEADER_MS (its nearest knob). Reports, per target, the normal
# client's latency p50/p99/max and request rate alone and under attack (errors: anything but 200 and
# 503; 503: Vigil's fail_closed refusing while the audit pipeline is behind), and how many slow clients
# the proxy cut, after how long (median/max from their first byte), with 408 or otherwise. Figures, not
# a test; needs a build and a cc.
set -euo pipefail
N=2000 INTERVAL=2000 HEADER_MS=5000 DUR=15 TARGETS="vigil squid"
while getopts "n:i:H:d:T:h" o; do case $o in
    n) N=$OPTARG ;; i) INTERVAL=$OPTARG ;; H) HEADER_MS=$OPTARG ;; d) DUR=$OPTARG ;; T) TARGETS=$OPTARG ;;
    *) sed -n '2,15p' "$0"; exit 2 ;; esac; done
source "$(dirname "$0")/lib.sh"
b_raise_nofile $((4 * N + 4096))
LG=$(b_loadgen)
sysctl -qw net.core.somaxconn=4096 2>/dev/null || true

rows=()
for t in $TARGETS; do
    case $t in
        vigil) b_vigil 13150 "\"timeouts\": {\"header_read_ms\": $HEADER_MS}"; pid=$VIGIL_PID port=13150 ;;
        squid) b_squid 13151 "request_start_timeout $((HEADER_MS / 1000)) seconds" \
                   "request_timeout $((HEADER_MS / 1000)) seconds" || { b_log "squid not installed: skipped"; continue; }
               pid=$SQUID_PID port=13151 ;;
        *) b_log "unknown target $t"; exit 2 ;;
    esac
    "$LG" -x "127.0.0.1:$port" -n 0 -d "$DUR" slowloris >"$B_TMP/slow-$t-alone.out" 2>&1
    # the attack lasts the run: stop the normal client a little after the header timeout has cut the first wave
    "$LG" -x "127.0.0.1:$port" -n "$N" -i "$INTERVAL" -d "$DUR" slowloris >"$B_TMP/slow-$t-attack.out" 2>&1
    alone=$(grep '^normal client' "$B_TMP/slow-$t-alone.out")
    attack=$(grep '^normal client' "$B_TMP/slow-$t-attack.out")
    cut=$(grep '^slow clients [0-9]' "$B_TMP/slow-$t-attack.out")
    b_log "$t alone:  $alone"
    b_log "$t attack: $attack"
    b_log "$t slow:   $cut"
    lat() { sed -E 's/.*p50 ([0-9.]+) p99 ([0-9.]+) max ([0-9.]+).*/\1 \/ \2 \/ \3/' <<<"$1"; }
    rate() { awk -v d="$DUR" '{for (i = 1; i <= NF; i++) if ($i == "requests,") printf "%.0f", $(i - 1) / d}' <<<"$1"; }
    errs() { sed -E 's/.*errors ([0-9]+), 503 ([0-9]+).*/\1 \/ \2/' <<<"$1"; }
    cutn=$(sed -E 's/.*cut ([0-9]+) \(408: ([0-9]+), other\/none: ([0-9]+)\), still open ([0-9]+); cut after median ([0-9.]+)s max ([0-9.]+)s/\1 (408: \2, other: \3), still open \4 | \5 \/ \6/' <<<"$cut")
    rows+=("| $t | $(lat "$alone") | $(rate "$alone") | $(lat "$attack") | $(rate "$attack") | $(errs "$attack") | $cutn |")
    b_stop "$pid"
done

echo
echo "Slowloris: $N clients, a header byte every ${INTERVAL} ms; header timeout ${HEADER_MS} ms; ${DUR} s runs ($(b_machine))"
echo
echo "| proxy | normal alone p50/p99/max ms | req/s | under attack p50/p99/max ms | req/s | errors / 503 | slow clients cut | cut after median / max s |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
