#!/bin/sh
# tests/tools/audit-query-search.sh - audit-query search over segments made with the zstd
# command line (the format is plain zstd frames of JSON lines): order across files and
# dates, filters, formats, exit statuses, and a torn last frame reported and skipped.
# usage: audit-query-search.sh AUDIT_QUERY
set -eu
AQ=$1
T=$(mktemp -d /tmp/vigil-aq-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        printf 'FAIL %s\n--- expected\n%s\n--- got\n%s\n' "$1" "$2" "$3" >&2
        fails=$((fails + 1))
    fi
}

D=$T/data/audit
mkdir -p "$D/2026-11-25" "$D/2026-11-26"
L1='{"schema":"vigil.event/1","event":"flow.phase","seq":1,"time":"2026-11-25T23:59:59.000001Z","flow_id":"01JDQ4Z8M8N6V3WJ0C7E5YH2KD","phase":"pre_dns","action":"allow","reason":"rule","request":{"host":"example.com","port":443}}'
L2='{"schema":"vigil.event/1","event":"flow.end","seq":2,"time":"2026-11-25T23:59:59.500000Z","flow_id":"01JDQ4Z8M8N6V3WJ0C7E5YH2KD","reason":"closed","request":{"host":"example.com"},"response":{"status":200}}'
L3='{"schema":"vigil.event/1","event":"flow.phase","seq":3,"time":"2026-11-26T00:00:01.000000Z","flow_id":"01JDQ4Z9AAAAAAAAAAAAAAAAAA","phase":"pre_request","action":"deny","reason":"private\u001b[31m","request":{"host":"169.254.169.254"}}'
L4='{"schema":"vigil.event/1","event":"flow.end","seq":4,"time":"2026-11-26T00:00:01.100000Z","flow_id":"01JDQ4Z9AAAAAAAAAAAAAAAAAA","reason":"denied","response":{"status":403}}'
L5='{"schema":"vigil.event/1","event":"proxy.config","seq":5,"time":"2026-11-26T00:00:02.000000Z","reason":"reloaded"}'
# seq 1-2 in two frames of one segment, 3-4 in the next day's first segment, 5 in a later one
{ printf '%s\n' "$L1" | zstd -q -c; printf '%s\n' "$L2" | zstd -q -c; } > "$D/2026-11-25/00000000000000000001.vseg"
printf '%s\n%s\n' "$L3" "$L4" | zstd -q -c > "$D/2026-11-26/00000000000000000003.vseg"
printf '%s\n' "$L5" | zstd -q -c > "$D/2026-11-26/00000000000000000005.vseg"
printf 'not a segment\n' > "$D/2026-11-26/README"

check version "audit-query 0.2.0" "$("$AQ" --version)"

out=$("$AQ" search --data-dir "$T/data"); rc=$?
check "json all" "$(printf '%s\n%s\n%s\n%s\n%s' "$L1" "$L2" "$L3" "$L4" "$L5")" "$out"
check "json all rc" 0 $rc

check "event filter" "$(printf '%s\n%s' "$L2" "$L4")" "$("$AQ" search --data-dir "$T/data" --event flow.end)"
check "action+phase filter" "$L3" "$("$AQ" search --data-dir "$T/data" --action deny --phase pre_request)"
check "flow filter, any case" "$(printf '%s\n%s' "$L3" "$L4")" \
    "$("$AQ" search --data-dir "$T/data" --flow 01jdq4z9aaaaaaaaaaaaaaaaaa)"

out=$("$AQ" search --data-dir "$T/data" --format table --event flow.end)
check "table lines" 3 "$(printf '%s\n' "$out" | wc -l | tr -d ' ')"
check "table header" "TIME SEQ EVENT FLOW_ID PHASE ACTION RULE CLIENT HOST STATUS REASON" \
    "$(printf '%s\n' "$out" | head -n 1 | tr -s ' ')"
check "table row" "2026-11-25T23:59:59.500000Z 2 flow.end 01JDQ4Z8M8N6V3WJ0C7E5YH2KD - - - - example.com 200 closed" \
    "$(printf '%s\n' "$out" | sed -n 2p | tr -s ' ')"
out=$("$AQ" search --data-dir "$T/data" --format table --action deny)
check "table escapes control characters" "private?[31m" "$(printf '%s\n' "$out" | sed -n 2p | awk '{print $11}')"

set +e
"$AQ" search --data-dir "$T/data" --event audit.loss > "$T/out" 2>&1; rc=$?
check "no match rc" 1 $rc
check "no match output" "" "$(cat "$T/out")"
"$AQ" search --data-dir "$T/nope" > "$T/out" 2>&1; rc=$?
check "missing data dir rc" 2 $rc
"$AQ" search --data-dir "$T/data" --bogus > /dev/null 2>&1; rc=$?
check "unknown option rc" 2 $rc
"$AQ" search --data-dir "$T/data" --format xml > /dev/null 2>&1; rc=$?
check "bad format rc" 2 $rc
"$AQ" frobnicate > /dev/null 2>&1; rc=$?
check "unknown command rc" 2 $rc
"$AQ" > /dev/null 2>&1; rc=$?
check "no command rc" 2 $rc
"$AQ" --help > /dev/null 2>&1; rc=$?
check "help rc" 0 $rc
set -e

# a torn last frame: the complete frames are printed, the damage reported with its offset
F=$D/2026-11-25/00000000000000000001.vseg
good=$(wc -c < "$F" | tr -d ' ')
printf '%s\n' "$L5" | zstd -q -c | head -c 20 >> "$F"
set +e
"$AQ" search --data-dir "$T/data" --event flow.phase > "$T/out" 2> "$T/err"; rc=$?
set -e
check "torn rc" 0 $rc
check "torn output" "$(printf '%s\n%s' "$L1" "$L3")" "$(cat "$T/out")"
check "torn warning" "audit-query: warning: truncated at byte $good of $F: the last frame is incomplete" "$(cat "$T/err")"

[ $fails -eq 0 ] && echo "audit-query search: all checks passed"
exit $fails
