#!/usr/bin/env bash
# tools/bench/idle-tunnels.sh - memory per idle CONNECT tunnel: N tunnels held open, RSS per connection.
#
#   tools/bench/idle-tunnels.sh [-n N] [-d HOLD_SECS] [-T "vigil squid"]      defaults 10000, 10, both
#
# For each target: start it, read its RSS (VmRSS), open N CONNECT tunnels to the loadgen's own origin
# on loopback (each checked end to end with PING/PONG through it: a tunnel counts once the proxy has
# connected upstream and relays), read the RSS again once all are up and after HOLD_SECS, and report
# (RSS loaded - RSS idle) / N. Also checks that the proxy closed none of them while held (Vigil's
# timeouts.idle_tunnel_ms defaults to 5 minutes). Vigil runs with its defaults (one worker per core, a
# 16384-slot ring, the file sink), Squid with no cache and no access log.
#
# Needs a build (build/bin/vigil; VIGIL_BIN_DIR= for another) and a cc; raises RLIMIT_NOFILE to its hard
# limit (the proxy and the loadgen each hold 2N sockets); when that is below 2N + 256, it runs as many
# tunnels as fit and says so.
# Prints a markdown table; figures, not a test.
set -euo pipefail
N=10000 HOLD=10 TARGETS="vigil squid"
while getopts "n:d:T:h" o; do case $o in
    n) N=$OPTARG ;; d) HOLD=$OPTARG ;; T) TARGETS=$OPTARG ;;
    *) sed -n '2,17p' "$0"; exit 2 ;; esac; done
source "$(dirname "$0")/lib.sh"
b_raise_nofile $((2 * N + 4096))
NOTE=""
if [ "$(ulimit -n)" -lt $((2 * N + 256)) ]; then # the proxy and the loadgen each hold 2N sockets
    fit=$(( ($(ulimit -n) - 256) / 2 ))
    NOTE="RLIMIT_NOFILE's hard limit here is $(ulimit -n) (no CAP_SYS_RESOURCE to raise it): $fit tunnels instead of $N"
    b_log "$NOTE"
    N=$fit
fi
LG=$(b_loadgen)
sysctl -qw net.core.somaxconn=4096 2>/dev/null || true

rows=()
for t in $TARGETS; do
    case $t in
        vigil) b_vigil 13140; pid=$VIGIL_PID port=13140 ;;
        squid) b_squid 13141 || { b_log "squid not installed: skipped"; continue; }; pid=$SQUID_PID port=13141 ;;
        *) b_log "unknown target $t"; exit 2 ;;
    esac
    sleep 1
    idle=$(b_rss "$pid")
    out=$B_TMP/idle-$t.out
    "$LG" -x "127.0.0.1:$port" -n "$N" -d "$HOLD" idle >"$out" 2>&1 &
    lg=$!
    B_PIDS+=("$lg")
    for _ in $(seq 1200); do grep -q '^established' "$out" && break; b_alive "$lg" || break; sleep 0.1; done
    grep -q '^established' "$out" || { b_log "$t: tunnels not up:"; cat "$out" >&2; exit 1; }
    sleep 1
    up=$(b_rss "$pid")
    wait "$lg" || true
    held=$(b_rss "$pid")
    hwm=$(b_hwm "$pid")
    est=$(awk '/^established/ {print $2}' "$out")
    line=$(grep '^held' "$out" || echo "held ? closed ? errors ?")
    closed=$(awk '{print $4}' <<<"$line")
    per=$(( (held - idle) * 1024 / (est > 0 ? est : 1) ))
    rows+=("| $t | $est | $closed | $((idle / 1024)) | $((up / 1024)) | $((held / 1024)) | $((hwm / 1024)) | $per |")
    b_log "$t: $(head -2 "$out" | tail -1); $line"
    [ "$t" = vigil ] && b_stop "$VIGIL_PID" || b_stop "$pid"
done

echo
echo "Idle CONNECT tunnels: $N held ${HOLD}s on loopback ($(b_machine))${NOTE:+. $NOTE}"
echo
echo "| proxy | tunnels up | closed while held | RSS idle MiB | RSS all up MiB | RSS after hold MiB | peak MiB | bytes per tunnel |"
echo "|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
