#!/usr/bin/env bash
# tools/bench/headline.sh - every headline figure in one command, written to tools/bench/RESULTS.md.
#
#   tools/bench/headline.sh [-q] [-o FILE]       -q: quick (shorter runs, 2,000 tunnels) to check it works
#
# Builds (tools/setup.sh build, into build/; VIGIL_BIN_DIR=DIR uses binaries already built there), then runs,
# one after the other on this machine:
#   1. proxy req/s and p99 beside Squid and tinyproxy, same run: tools/bench/proxy-bench.sh through
#      tools/bench/vigil-intercept.sh, modes plain, connect, tunnel-tls and intercept (Squid's ssl_bump beside
#      Vigil's interception; HEADLINE_MITM=1 adds mitmproxy, HEADLINE_MODES= other modes), and its record check
#   2. policy decision time with 10,000 domain rules: build/bin/policy-bench
#   3. pipeline records/s with redaction off/on/sealed: build/bin/pipeline-bench (if built)
#   4. redaction MB/s and events/s on one core: build/bin/redact-bench
#   5. sink events/s and bytes per event: tools/bench/sink-bench.sh (if present)
#   6. memory per idle CONNECT tunnel, 10,000 held, beside Squid: tools/bench/idle-tunnels.sh
# and writes FILE (default tools/bench/RESULTS.md): date, machine, commit, the commands, every table, and the
# raw output of each step. A step that fails is reported as failed in the file; the others still run.
# The harness installs nginx, squid, tinyproxy and wrk from Debian when missing (root). Takes about
# 10 minutes (-q: about 3). Client, proxy and origin share the machine's cores: compare ratios within a run.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
QUICK="" OUT=$ROOT/tools/bench/RESULTS.md
while getopts "qo:h" o; do case $o in
    q) QUICK=1 ;; o) OUT=$OPTARG ;;
    *) sed -n '2,20p' "$0"; exit 2 ;; esac; done
if [ -z "${VIGIL_BIN_DIR:-}" ]; then
    tools/setup.sh build >/dev/null || { echo "headline: build failed" >&2; exit 1; }
    export VIGIL_BIN_DIR=$ROOT/build/bin
fi
BIN=$VIGIL_BIN_DIR
T=$(mktemp -d /tmp/vigil-headline.XXXXXX)
trap 'rm -rf "$T"' EXIT

if [ -n "$QUICK" ]; then
    PB_ARGS=(-d 3 -c 20) POL=(10000 200000) RED=(1) PIPE=(1) TUNNELS=2000 SINK_N=100000
else
    PB_ARGS=(-d 10 -c 50) POL=(10000 2000000) RED=(3) PIPE=(3) TUNNELS=10000 SINK_N=400000
fi
MODES=${HEADLINE_MODES:-plain connect tunnel-tls intercept}
TARGETS="direct squid tinyproxy${HEADLINE_MITM:+ mitmproxy} proxy"

declare -A STATUS CMD
step() { # name, command...: runs it, output to $T/<name>.out
    local name=$1
    shift
    CMD[$name]="$*"
    echo "[headline] $name: $*" >&2
    local t0=$SECONDS
    if "$@" >"$T/$name.out" 2>"$T/$name.err"; then STATUS[$name]="ok, $((SECONDS - t0)) s"; else
        STATUS[$name]="FAILED (exit $?), see the raw output"; fi
    echo "[headline] $name: ${STATUS[$name]}" >&2
}

step proxy env VIGIL_BIN_DIR="$BIN" PROXY_CMD="$ROOT/tools/bench/vigil-intercept.sh" \
    tools/bench/proxy-bench.sh "${PB_ARGS[@]}" -m "$MODES" -T "$TARGETS"
step policy "$BIN/policy-bench" "${POL[@]}"
if [ -x "$BIN/pipeline-bench" ]; then step pipeline "$BIN/pipeline-bench" "${PIPE[@]}"; fi
step redact "$BIN/redact-bench" "${RED[@]}"
if [ -x tools/bench/sink-bench.sh ] && [ -x "$BIN/sink-bench" ]; then
    step sink env VIGIL_BIN_DIR="$BIN" tools/bench/sink-bench.sh "$SINK_N"
fi
step tunnels env VIGIL_BIN_DIR="$BIN" tools/bench/idle-tunnels.sh -n "$TUNNELS" -d 10

# ---- the headline table: one line per figure, pulled out of the steps' outputs ----
cell() { awk -F'|' -v c="$2" '{gsub(/^ +| +$/, "", $c); print $c}' <<<"$1"; }
{
    echo "# Vigil: headline figures"
    echo
    echo "Written by \`tools/bench/headline.sh${QUICK:+ -q}\` on $(date -u +'%Y-%m-%d %H:%M UTC'), commit"
    echo "\`$(git describe --always --dirty 2>/dev/null || echo unknown)\`, on $(
        source tools/bench/lib.sh >/dev/null 2>&1
        b_machine
    )."
    echo "Client, proxy and origin share these cores: compare the ratios within one run, not absolute numbers"
    echo "across machines. Re-run: \`tools/bench/headline.sh\` (about 10 minutes; \`-q\` for a short check)."
    echo
    echo "Vigil's proxy errors are 503s: under audit.overflow fail_closed it refuses a flow it could not record"
    echo "while the audit pipeline is behind (those are counted in audit.loss, not lost); the proxy step's record"
    echo "check compares requests with flow.end events."
    echo
    echo "| figure | value | from |"
    echo "|---|---|---|"
    for mode in $MODES; do
        for tgt in proxy squid tinyproxy mitmproxy; do
            row=$(grep -E "^\| *$tgt *\| *$mode *\|" "$T/proxy.out" 2>/dev/null | head -1)
            [ -n "$row" ] || continue
            echo "| $mode $(cell "$row" 4), $([ "$tgt" = proxy ] && echo Vigil || echo "$tgt") | $(cell "$row" 5) req/s, p99 $(cell "$row" 7) ms, $(cell "$row" 9) of direct, peak RSS $(cell "$row" 8) MiB, errors $(cell "$row" 10) | proxy-bench |"
        done
    done
    pol=$(grep -E '^\| exact-name rule hit' "$T/policy.out" 2>/dev/null | awk -F'|' '{gsub(/ /, "", $3); print $3}')
    [ -n "$pol" ] && echo "| policy decision, 10,000 domain rules, exact hit | $pol ns | policy-bench |"
    red=$(grep -E '^realistic +batch' "$T/redact.out" 2>/dev/null | head -1)
    [ -n "$red" ] && echo "| redaction, realistic mix, one core | $(awk '{print $3, "events/s,", $7, "MB/s"}' <<<"$red") | redact-bench |"
    if [ -f "$T/pipeline.out" ]; then
        grep -E '^(off|on|sealed) ' "$T/pipeline.out" | while read -r mode rps _ _ _ _ _ wall _; do
            echo "| pipeline, redaction stage $mode | $rps records/s per CPU second of the pipeline thread ($wall/s wall) | pipeline-bench |"
        done
    fi
    tun=$(grep -E '^\| vigil ' "$T/tunnels.out" 2>/dev/null)
    [ -n "$tun" ] && echo "| memory per idle CONNECT tunnel, Vigil ($(cell "$tun" 3) held) | $(cell "$tun" 9) bytes | idle-tunnels |"
    tun=$(grep -E '^\| squid ' "$T/tunnels.out" 2>/dev/null)
    [ -n "$tun" ] && echo "| memory per idle CONNECT tunnel, Squid | $(cell "$tun" 9) bytes | idle-tunnels |"
    echo
    echo "## Steps"
    echo
    for s in proxy policy pipeline redact sink tunnels; do
        [ -n "${CMD[$s]:-}" ] || continue
        echo "### $s: ${STATUS[$s]}"
        echo
        echo "    ${CMD[$s]}"
        echo
        # markdown tables as they are; the rest as a block
        if grep -q '^|' "$T/$s.out"; then
            grep -v '^|' "$T/$s.out" | grep -v '^$' | sed 's/^/    /'
            echo
            grep '^|' "$T/$s.out"
        else
            sed 's/^/    /' "$T/$s.out"
        fi
        if [[ ${STATUS[$s]} == FAILED* ]]; then
            echo
            echo "stderr (last lines):"
            echo
            tail -20 "$T/$s.err" | sed 's/^/    /'
        fi
        echo
    done
    echo "## Not here yet"
    echo
    echo "- audit-query MB/s beside jq, and the 10,000-tunnel, slowloris and soak runs beside their Squid figures in"
    echo "  one table: tools/bench/slowloris.sh and tools/bench/soak.sh print their own (minutes each)."
} >"$OUT"
echo "[headline] wrote $OUT" >&2
