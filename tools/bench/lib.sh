# tools/bench/lib.sh - shared by idle-tunnels.sh, slowloris.sh, soak.sh and headline.sh (sourced, not run).
#
# Starts Vigil (and Squid, for the side-by-side figures) on loopback with configs of their own, tracks
# every process by PID, stops them with TERM (KILL after 5 s) on exit, and reads their memory from /proc.
# Vigil's config allows the loadgen origin (127.0.0.1, any port) and tunnels that are not TLS.
ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BIN=${VIGIL_BIN_DIR:-$ROOT/build/bin}
export PATH=$PATH:/usr/sbin:/sbin
B_TMP=$(mktemp -d /tmp/vigil-bench.XXXXXX)
chmod 755 "$B_TMP"
B_PIDS=()

b_log() { echo "[bench] $*" >&2; }
b_alive() { local s; s=$(ps -o stat= -p "$1" 2>/dev/null) && [[ $s != Z* ]]; }
b_stop() {
    [ -n "${1:-}" ] || return 0
    kill -TERM "$1" 2>/dev/null || true
    for _ in $(seq 50); do b_alive "$1" || break; sleep 0.1; done
    b_alive "$1" && kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null || true
}
b_cleanup() {
    for p in "${B_PIDS[@]}"; do b_stop "$p"; done
    if [ -n "${KEEP:-}" ]; then b_log "kept $B_TMP"; else rm -rf "$B_TMP"; fi
}
trap b_cleanup EXIT
trap 'exit 130' INT TERM

# RLIMIT_NOFILE for everything started from here (10,000 tunnels are 20,000 sockets in the proxy).
b_raise_nofile() {
    local want=${1:-1048576}
    ulimit -Hn "$want" 2>/dev/null || true
    ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
}

b_loadgen() { # builds tools/bench/loadgen.c once into $B_TMP/loadgen
    [ -x "$B_TMP/loadgen" ] || cc -O2 -Wall -o "$B_TMP/loadgen" "$ROOT/tools/bench/loadgen.c" || exit 1
    echo "$B_TMP/loadgen"
}

# Memory of <pid>: "rss_kib" (VmRSS), or "hwm_kib" (VmHWM).
b_rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
b_hwm() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

b_wait_port() { # host port: until something accepts there (20 s at most)
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

# b_vigil PORT [extra top-level JSON members]: starts vigil, sets VIGIL_PID.
b_vigil() {
    local port=$1 extra=${2:-}
    [ -x "$BIN/vigil" ] || { b_log "build first: tools/setup.sh build (or set VIGIL_BIN_DIR)"; exit 2; }
    cat >"$B_TMP/vigil-$port.json" <<EOF
{"listen": ["127.0.0.1:$port"],
 "rule_groups": [{"name": "bench", "rules": [
   {"id": "origin-ports", "priority": 1, "phase": "pre_dns", "action": "allow",
    "match": {"domain": ["127.0.0.1"], "port": ["1-65535"]}},
   {"id": "origin-addresses", "priority": 2, "phase": "pre_request", "action": "allow",
    "match": {"destination_cidr": ["127.0.0.0/8"]}}]}],
 "proxy_configurations": [{"name": "bench", "rule_groups": ["bench"], "default_action": "allow",
   "non_tls_tunnels": "allow"}],
 "sinks": [{"type": "file", "name": "file", "fsync": "segment"}]${extra:+, $extra}}
EOF
    "$BIN/vigil" --config "$B_TMP/vigil-$port.json" --data-dir "$B_TMP/vigil-data-$port" \
        >"$B_TMP/vigil-$port.out" 2>"$B_TMP/vigil-$port.err" &
    VIGIL_PID=$!
    B_PIDS+=("$VIGIL_PID")
    b_wait_port 127.0.0.1 "$port" || { b_log "vigil did not start:"; tail -5 "$B_TMP/vigil-$port.err" >&2; exit 1; }
}

# b_squid PORT [extra squid.conf lines...]: starts squid in the foreground (no cache, no access log), sets
# SQUID_PID; returns 1 when squid is not installed (tools/bench/harness/run.sh installs it).
b_squid() {
    local port=$1
    shift
    command -v squid >/dev/null || return 1
    mkdir -p "$B_TMP/squid-$port"
    chmod 777 "$B_TMP/squid-$port"
    printf '%s\n' "http_port 127.0.0.1:$port" "pid_filename $B_TMP/squid-$port/squid.pid" \
        "cache_log $B_TMP/squid-$port/cache.log" "access_log none" "cache deny all" "cache_mem 0 MB" \
        "acl all_ports port 1-65535" "http_access allow localhost" "http_access deny all" "pinger_enable off" \
        "netdb_filename none" "coredump_dir $B_TMP/squid-$port" "logfile_rotate 0" "shutdown_lifetime 1 seconds" \
        "max_filedescriptors 65536" "$@" >"$B_TMP/squid-$port.conf"
    squid -N -f "$B_TMP/squid-$port.conf" >"$B_TMP/squid-$port.out" 2>&1 &
    SQUID_PID=$!
    B_PIDS+=("$SQUID_PID")
    b_wait_port 127.0.0.1 "$port" || { b_log "squid did not start:"; tail -5 "$B_TMP/squid-$port/cache.log" >&2; return 1; }
}

b_machine() { # one line: CPU model, cores, memory, kernel
    local cpu mem
    cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
    mem=$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
    echo "${cpu:-unknown CPU}, $(nproc) cores, $mem, Linux $(uname -r)"
}
