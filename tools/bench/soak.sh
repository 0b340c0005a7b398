#!/usr/bin/env bash
# tools/bench/soak.sh - a sustained run with the proxy's RSS sampled every 10 s: it should stay flat.
#
#   tools/bench/soak.sh [-m MINUTES] [-R REQ_PER_SEC] [-c CLIENTS] [-t TUNNEL_CLIENTS] [-T "vigil squid"]
#                                            defaults 3 minutes, 2000 req/s, 16 clients, 4, vigil only
#
# Load (tools/bench/loadgen.c soak): CLIENTS keep-alive clients doing plain GETs through the proxy to the
# loadgen's origin, REQ_PER_SEC in all (paced), each reconnecting every 100 requests, plus TUNNEL_CLIENTS
# clients opening a CONNECT tunnel, one PING/PONG through it, and closing it, in a loop. Every 10 s the
# proxy's VmRSS is sampled beside the load's progress; the table ends with the growth from the first
# sample after warm-up (30 s) to the last one and the peak (VmHWM). Vigil writes its full record meanwhile
# (file sink, defaults); the record's size is printed too. A flat RSS under a steady load is the figure:
# a leak shows as a steady climb. Figures, not a test; needs a build and a cc.
set -euo pipefail
MIN=3 RATE=2000 CLIENTS=16 TUN=4 TARGETS=vigil
while getopts "m:R:c:t:T:h" o; do case $o in
    m) MIN=$OPTARG ;; R) RATE=$OPTARG ;; c) CLIENTS=$OPTARG ;; t) TUN=$OPTARG ;; T) TARGETS=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;; esac; done
source "$(dirname "$0")/lib.sh"
b_raise_nofile 65536
LG=$(b_loadgen)
SECS=$(awk -v m="$MIN" 'BEGIN {printf "%d", m * 60}')

for t in $TARGETS; do
    case $t in
        vigil) b_vigil 13160; pid=$VIGIL_PID port=13160 ;;
        squid) b_squid 13161 || { b_log "squid not installed: skipped"; continue; }; pid=$SQUID_PID port=13161 ;;
        *) b_log "unknown target $t"; exit 2 ;;
    esac
    out=$B_TMP/soak-$t.out
    start_rss=$(b_rss "$pid")
    "$LG" -x "127.0.0.1:$port" -c "$CLIENTS" -t "$TUN" -R "$RATE" -d "$SECS" soak >"$out" 2>&1 &
    lg=$!
    B_PIDS+=("$lg")
    echo
    echo "Soak, $t: ${MIN} min, $RATE req/s over $CLIENTS clients + $TUN tunnel clients ($(b_machine))"
    echo
    echo "| t (s) | RSS MiB | requests | tunnels | errors | 503 |"
    echo "|---|---|---|---|---|---|"
    echo "| 0 | $(awk -v k="$start_rss" 'BEGIN {printf "%.1f", k / 1024}') | 0 | 0 | 0 | 0 |"
    first="" last=""
    while b_alive "$lg"; do
        sleep 1
        n=$(grep -c '^t=' "$out" || true)
        [ "$n" -gt "${seen:-0}" ] || continue
        seen=$n
        line=$(grep '^t=' "$out" | tail -1)
        rss=$(b_rss "$pid")
        ts=$(sed -E 's/^t=([0-9]+).*/\1/' <<<"$line")
        [ -z "$first" ] && [ "$ts" -ge 30 ] && first=$rss
        last=$rss
        echo "| $ts | $(awk -v k="$rss" 'BEGIN {printf "%.1f", k / 1024}') | $(sed -E 's/.*requests=([0-9]+) tunnels=([0-9]+) errors=([0-9]+) 503=([0-9]+).*/\1 | \2 | \3 | \4/' <<<"$line") |"
    done
    wait "$lg" || true
    hwm=$(b_hwm "$pid")
    echo
    grep '^total' "$out" | sed 's/^/    /'
    if [ -n "$first" ]; then
        awk -v a="$first" -v b="$last" -v h="$hwm" 'BEGIN {printf "    RSS from t=30 s to the end: %.1f -> %.1f MiB (%+.1f%%), peak %.1f MiB\n", a / 1024, b / 1024, (b - a) * 100 / a, h / 1024}'
    fi
    [ "$t" = vigil ] && echo "    record written: $(du -sh "$B_TMP/vigil-data-13160/audit" | cut -f1)"
    b_stop "$pid"
done
