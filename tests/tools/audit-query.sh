#!/bin/sh
# tests/tools/audit-query.sh - audit-query search, report, verify and reveal over the record
# tests/tools/aq-fixture.c writes (68 records of 24 known flows in 5 signed segments over two
# UTC days; see its header for what each flow holds): exact rows for each filter and format,
# segment and frame skipping counted with --stats, report figures, verify against every kind
# of tampering (each named exactly, and every byte of a small segment flipped in turn),
# reveal per role with its access log, and tampering with that log.
# usage: audit-query.sh AUDIT_QUERY AQ_FIXTURE VIGIL_KEYGEN
set -eu
AQ=$1
FIX=$2
KG=$3
T=$(mktemp -d /tmp/vigil-aq2-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        printf 'FAIL %s\n--- expected\n%s\n--- got\n%s\n' "$1" "$2" "$3" >&2
        fails=$((fails + 1))
    fi
}
count() { # count ARGS...: lines search prints
    "$AQ" search --data-dir "$D" "$@" 2>/dev/null | wc -l | tr -d ' '
}
rc_of() { # rc_of CMD...: its exit status
    set +e
    "$@" > "$T/rc.out" 2> "$T/rc.err"
    r=$?
    set -e
    echo $r
}
seqs() { # seqs ARGS...: the seqs search prints, space-separated
    "$AQ" search --data-dir "$D" --format csv "$@" 2>/dev/null | tail -n +2 | cut -d, -f2 | tr '\n' ' ' | sed 's/ $//'
}

# roles: dlp may reveal pii.*, ir credentials too, siem nothing. dlp's key comes from
# `audit-query keys new-role` and roles.json names its .pub file (relative to roles.json);
# the others are pasted in as base64.
mkdir -p "$T/keys"
pk() { "$KG" role "$1" --out "$T/keys" 2>/dev/null | sed -n 's/.*"public_key": "\([^"]*\)".*/\1/p'; }
"$AQ" keys new-role dlp --out "$T/keys" >/dev/null 2>&1 || { echo "FAIL: keys new-role dlp"; exit 1; }
PK_DLP=$(cat "$T/keys/dlp.pub")
PK_IR=$(pk ir)
PK_SIEM=$(pk siem)
PK_STRAY=$(pk stray)
cat > "$T/roles.json" <<EOF
{"version": 1, "roles": [
  {"name": "dlp", "public_key": "keys/dlp.pub", "reveal": ["pii.*"]},
  {"name": "ir", "public_key": "$PK_IR", "reveal": ["credential.*", "pii.*"]},
  {"name": "siem", "public_key": "$PK_SIEM", "reveal": []}]}
EOF
D=$T/data
check fixture "68 records" "$("$FIX" "$D" --role "dlp:$PK_DLP" --role "ir:$PK_IR:cred" --role "siem:$PK_SIEM")"
S1=2025-11-25/00000000000000000001.vseg
S17=2025-11-25/00000000000000000017.vseg
S33=2025-11-25/00000000000000000033.vseg
S53=2025-11-26/00000000000000000053.vseg
FLOW1=$("$AQ" search --data-dir "$D" --format csv --event flow.end --client 10.0.0.2 --domain api.example.com |
    sed -n 2p | cut -d, -f4)

# ---- search ----
check "all records" 68 "$(count)"
check "flow.end" 23 "$(count --event flow.end)"
check "denials" "4 15 26 37 48 59" "$(seqs --action deny)"
check "subdomains of example.com" 36 "$(count --domain '*.example.com')"
check "a suffix alone is not its subdomain" 1 "$(rc_of "$AQ" search --data-dir "$D" --domain '*.pastebin.com')"
check "exact domain, any case" 18 "$(count --domain API.Example.COM)"
check "client cidr" 22 "$(count --client 10.0.0.2/32)"
check "client network" 65 "$(count --client 10.0.0.0/24)"
check "rule group/id" "4 15 26 37 48 59" "$(seqs --rule base/no-paste)"
check "alert rule by id (count)" 6 "$(count --rule big-upload)"
check "class pattern" 53 "$(count --class 'pii.*')"
check "class" 6 "$(count --class credential.bearer)"
check "token" 6 "$(count --token tok:credential.bearer:k1:00000000000000000000000003)"
check "token of alice" 18 "$(count --token tok:pii.email:k1:00000000000000000000000001)"
check "phase and client" 6 "$(count --phase pre_request --client 10.0.0.3)"
check "flow, any case" 3 "$(count --flow "$(printf %s "$FLOW1" | tr 'A-Z' 'a-z')")"
check "across two days" "34 35 36 37" "$(seqs --since 2025-11-25T23:50:00Z --until 2025-11-26T00:00:00Z)"
check "offset time" "34 35 36 37" "$(seqs --since 2025-11-26T00:50:00+01:00 --until 2025-11-25T19:00:00-05:00)"
check "csv header" "time,seq,event,flow_id,parent_flow_id,phase,action,rule_group,rule_id,client_ip,client_port,principal,method,scheme,host,port,path,destination_ip,status,bytes_up,bytes_down,duration_ms,reason,classes,tokens" \
    "$("$AQ" search --data-dir "$D" --format csv | head -1 | tr -d '\r')"
check "csv header (no rows)" 1 "$(rc_of "$AQ" search --data-dir "$D" --format csv --event audit.loss)"
check "csv header printed" "time,seq,event" "$(head -1 "$T/rc.out" | cut -d, -f1-3)"
check "csv row" "2025-11-25T22:10:01.000000Z,7,flow.phase,$FLOW1,,pre_request,allow,,default,10.0.0.2,40000,,GET,http,api.example.com,80,/x,93.184.216.34,,,,,default_action,pii.email;credential.bearer,tok:pii.email:k1:00000000000000000000000002;tok:credential.bearer:k1:00000000000000000000000003" \
    "$("$AQ" search --data-dir "$D" --format csv --flow "$FLOW1" --phase pre_request | sed -n 2p | tr -d '\r')"
check "table row" "2025-11-25T22:00:00.000000Z 4 flow.phase 01KAYGFPR00000000000000000 pre_dns deny base/no-paste 10.0.0.1 pastebin.com - rule_match" \
    "$("$AQ" search --data-dir "$D" --format table --action deny | sed -n 2p | tr -s ' ')"
check "bad time" 2 "$(rc_of "$AQ" search --data-dir "$D" --since yesterday)"
check "bad cidr" 2 "$(rc_of "$AQ" search --data-dir "$D" --client 10.0.0.0/33)"
check "bad flow" 2 "$(rc_of "$AQ" search --data-dir "$D" --flow nope)"

# time index: whole segments and frames are passed over, not decompressed
"$AQ" search --data-dir "$D" --since 2025-11-26T01:00:00Z --until 2025-11-26T01:10:00Z --stats > "$T/out" 2> "$T/err"
check "last hour rows" "53 54 55 56" "$(seqs --since 2025-11-26T01:00:00Z --until 2025-11-26T01:10:00Z)"
check "last hour reads one segment" "segments read 1, skipped 4" "$(sed -n 's/.*stats: \(segments read [0-9]*, skipped [0-9]*\);.*/\1/p' "$T/err")"
"$AQ" search --data-dir "$D" --since 2025-11-25T23:30:00Z --until 2025-11-25T23:30:00Z --stats > "$T/out" 2> "$T/err"
check "one record" 28 "$(seqs --since 2025-11-25T23:30:00Z --until 2025-11-25T23:30:00Z)"
check "frames skipped inside a segment" "segments read 1, skipped 4; frames decompressed 2, skipped 2" \
    "$(sed -n 's/.*stats: \(segments read [0-9]*, skipped [0-9]*; frames decompressed [0-9]*, skipped [0-9]*\);.*/\1/p' "$T/err")"
"$AQ" search --data-dir "$D" --since 2h --stats > "$T/out" 2> "$T/err" || true
check "relative time: nothing recent, nothing read" "segments read 0, skipped 5; frames decompressed 0" \
    "$(sed -n 's/.*stats: \(segments read [0-9]*, skipped [0-9]*; frames decompressed [0-9]*\),.*/\1/p' "$T/err")"

# ---- report ----
"$AQ" report --data-dir "$D" > "$T/report" 2>&1
row() { grep -E "^  $1 " "$T/report" | tr -s ' ' | sed 's/^ //'; }
check "report denied domain" "pastebin.com 6" "$(row pastebin.com | head -1)"
check "report rule default" "default 36 36 0 0 0" "$(row default)"
check "report rule no-paste" "base/no-paste 6 0 6 0 0" "$(row base/no-paste)"
check "report alert rule" "base/big-upload 6 0 0 6 0" "$(row base/big-upload)"
check "report client volume" "10.0.0.1 8 7800 78000 2" "$(row 10.0.0.1)"
check "report token bob" "tok:pii.email:k1:00000000000000000000000002 pii.email 3 35" \
    "$(row tok:pii.email:k1:00000000000000000000000002)"
check "report bearer token" "tok:credential.bearer:k1:00000000000000000000000003 credential.bearer 3 6" \
    "$(row tok:credential.bearer:k1:00000000000000000000000003)"
check "report hours" "2025-11-25T22:00:00Z 1 2 6|2025-11-25T23:00:00Z 2 1 6|2025-11-26T00:00:00Z 1 2 6|2025-11-26T01:00:00Z 2 1 5" \
    "$(grep -E '^  20[0-9-]+T' "$T/report" | tr -s ' ' | sed 's/^ //' | paste -sd '|')"
"$AQ" report --data-dir "$D" --format json > "$T/report.json"
check "report json denials" '"denies": 6,' "$(grep -m1 '"denies": 6,' "$T/report.json" | tr -d ' ' | sed 's/:/: /')"
"$AQ" report --data-dir "$D" --format html > "$T/report.html"
check "report html is one page" 1 "$(grep -c '</html>' "$T/report.html")"
check "report html has no external asset" 0 "$(grep -c -E '(src|href)="?(https?:)?//' "$T/report.html" || true)"
check "report html charts" 1 "$(grep -q '<svg' "$T/report.html" && echo 1)"
check "report nothing" 1 "$(rc_of "$AQ" report --data-dir "$D" --domain nowhere.example)"

# ---- verify ----
first_failure() { sed -n 's/^First failure: //p' "$T/rc.out"; }
check "verify intact" 0 "$(rc_of "$AQ" verify --data-dir "$D")"
check "verify summary" "5/5 segments valid, 68/68 records valid" "$(tail -1 "$T/rc.out")"
# progress: on stderr when it is a terminal (script(1) gives it one; AQ_PROGRESS_MS=0 shows
# it at once instead of after half a second), erased before each result line; never when
# stderr is not a terminal
if command -v script >/dev/null 2>&1; then
    AQ_PROGRESS_MS=0 script -qec "\"$AQ\" verify --data-dir \"$D\"" "$T/tty.out" >/dev/null 2>&1 || true
    check "verify progress on a terminal" yes \
        "$(grep -q 'audit-query verify: segment 5/5, 68 records checked' "$T/tty.out" && echo yes || echo no)"
    check "verify progress erased" yes "$(grep -q "$(printf '\r\033\\[K')" "$T/tty.out" && echo yes || echo no)"
    AQ_PROGRESS_MS=0 script -qec "\"$AQ\" search --data-dir \"$D\"" "$T/tty.out" >/dev/null 2>&1 || true
    check "search progress on a terminal" yes \
        "$(grep -q 'audit-query: segment 5/5, 68 records' "$T/tty.out" && echo yes || echo no)"
fi
AQ_PROGRESS_MS=0 rc_of "$AQ" verify --data-dir "$D" >/dev/null
check "no progress off a terminal" "" "$(cat "$T/rc.err")"
check "verify open flows" "Flows without flow.end: 1" "$(grep '^Flows without' "$T/rc.out")"
check "verify coverage" "Coverage: seq 1..68, 2025-11-25T22:00:00.000000Z .. 2025-11-26T01:50:01.000000Z" \
    "$(grep '^Coverage' "$T/rc.out")"

fresh() { rm -rf "$T/v"; cp -a "$D" "$T/v"; }
recompress() { # recompress SEGMENT SED-EXPR: edit its records, write it back as one frame
    zstd -q -d -c "$T/v/audit/$1" | sed "$2" | zstd -q -c --check > "$T/v/audit/$1.new"
    mv "$T/v/audit/$1.new" "$T/v/audit/$1"
}
vrc() { rc_of "$AQ" verify --data-dir "$T/v" "$@"; }

fresh
recompress $S17 's/"up":800,/"up":900,/'
check "edited record rc" 1 "$(vrc)"
check "edited record named" "$S17: record seq 25 (line 9, frame 0) altered: its chain does not match its content and the previous record's chain" "$(first_failure)"
check "edited record summary" "4/5 segments valid, 67/68 records valid" "$(grep 'segments valid' "$T/rc.out")"

fresh
recompress $S17 '/"seq":26,/d'
check "deleted record rc" 1 "$(vrc)"
check "deleted record named" "$S17: record seq 26 missing: deleted before line 10 (frame 0, seq 27)" "$(first_failure)"

fresh
recompress $S17 '9{h;d};10{G}'
check "reordered records rc" 1 "$(vrc)"
check "reordered records named" "$S17: record seq 25 (line 10, frame 0) out of order: it comes after seq 26 (records reordered)" "$(first_failure)"

fresh
rm "$T/v/audit/$S17" "$T/v/audit/$S17.sig"
check "deleted segment rc" 1 "$(vrc)"
check "deleted segment named" "$S33: seq 17..32 missing before it (after $S1): a segment file was removed" "$(first_failure)"
check "deleted segment gap" "  seq 17..32 between $S1 and $S33" "$(grep '^  seq' "$T/rc.out")"

fresh
rm "$T/v/audit/$S17"
check "deleted segment file rc" 1 "$(vrc)"
check "deleted segment file named" "$S17: segment file missing (its digest remains): seq 17..32 (16 records) were removed" "$(first_failure)"

fresh
size=$(wc -c < "$T/v/audit/$S53" | tr -d ' ')
truncate -s $((size - 10)) "$T/v/audit/$S53"
check "truncated rc" 1 "$(vrc)"
check "truncated named" "$S53: truncated: $((size - 10)) of $size bytes; records after seq 64 (up to seq 68) are missing" "$(first_failure)"

fresh
mv "$T/v/audit/$S17" "$T/v/x" && mv "$T/v/audit/$S33" "$T/v/audit/$S17" && mv "$T/v/x" "$T/v/audit/$S33"
check "swapped segments rc" 1 "$(vrc)"
check "swapped segments named" "$S17: holds records from seq 33 but its name says seq 17: segment files were renamed, reordered or replaced" "$(first_failure)"

fresh
sed -i 's/"records":16/"records":15/' "$T/v/audit/$S17.sig"
check "edited digest rc" 1 "$(vrc)"
check "edited digest named" "$S17: its digest was edited or forged: the signature does not verify" "$(first_failure)"

fresh
"$FIX" "$T/other" > /dev/null
cp "$T/other/audit/$S17.sig" "$T/v/audit/$S17.sig"
check "forged digest rc" 1 "$(vrc)"
check "forged digest named" "$S17: its digest is signed by another key" "$(first_failure | sed 's/ (.*//')"
cp "$T/other/keys/audit-signing.pub" "$T/v/keys/audit-signing.pub"
check "a pinned key catches a swapped key file" 1 "$(vrc --public-key "$D/keys/audit-signing.pub")"

fresh
rm "$T/v/audit/$S17.sig"
check "unsealed middle rc" 1 "$(vrc)"
check "unsealed middle named" "$S17: not sealed: its digest is missing and newer segments exist" "$(first_failure)"

fresh
rm "$T/v/audit/$S1" "$T/v/audit/$S1.sig"
check "head removed rc" 1 "$(vrc)"
check "head removed named" "$S17: the record starts at seq 17: seq 1..16 are missing" "$(first_failure)"
check "head removed by retention" 0 "$(vrc --allow-retention)"

rm -rf "$T/open"
"$FIX" "$T/open" --open-last > /dev/null
check "open segment rc" 0 "$(rc_of "$AQ" verify --data-dir "$T/open")"
check "open segment status" "$S53  unsealed (in progress)" "$(grep "^$S53" "$T/rc.out" | sed 's/  seq.*//')"
size=$(wc -c < "$T/open/audit/$S53" | tr -d ' ')
truncate -s $((size - 7)) "$T/open/audit/$S53"
check "open segment torn tail rc" 0 "$(rc_of "$AQ" verify --data-dir "$T/open")"

# every byte of a small segment flipped in turn is caught
fresh
F=$T/v/audit/$S33
cp "$F" "$T/orig"
size=$(wc -c < "$F" | tr -d ' ')
missed=0
off=0
while [ $off -lt "$size" ]; do
    cp "$T/orig" "$F"
    b=$(od -An -tu1 -j $off -N 1 "$F" | tr -d ' ')
    printf "$(printf '\\%03o' $((b ^ 255)))" | dd of="$F" bs=1 seek=$off conv=notrunc 2>/dev/null
    if [ "$(vrc --quiet)" != 1 ] || ! first_failure | grep -q "^$S33: "; then
        missed=$((missed + 1))
        echo "byte $off flipped: not caught" >&2
    fi
    off=$((off + 1))
done
check "every flipped byte of $size caught" 0 $missed

# ---- reveal ----
rv() { rc_of "$AQ" reveal --data-dir "$D" --roles "$T/roles.json" "$@"; }
check "reveal needs a reason" 2 "$(rv --role-key "$T/keys/dlp.key" --flow "$FLOW1")"
check "no log without a reason" no "$(test -e "$D/access.log" && echo yes || echo no)"
check "a key of no role" 2 "$(rv --role-key "$T/keys/stray.key" --reason t --flow "$FLOW1")"
check "a key of no role, said" 1 "$(grep -c 'belongs to no role' "$T/rc.err")"
check "dlp reveal rc" 0 "$(rv --role-key "$T/keys/dlp.key" --reason "DSR-1" --flow "$FLOW1")"
check "dlp sees the email" 3 "$(grep -c '"query":"email=bob@example.com"' "$T/rc.out")"
check "dlp does not see the credential" 1 "$(grep -c '"authorization":"Bearer tok:credential.bearer:k1:00000000000000000000000003"' "$T/rc.out")"
check "ir reveal rc" 0 "$(rv --role-key "$T/keys/ir.key" --reason "INC-7" --flow "$FLOW1" --phase pre_request)"
check "ir sees the credential" 1 "$(grep -c '"authorization":"Bearer s3cr3t-bearer-value"' "$T/rc.out")"
check "siem reveal rc" 0 "$(rv --role-key "$T/keys/siem.key" --reason "look" --flow "$FLOW1")"
check "siem sees tokens only" 0 "$(grep -c 'email=bob@' "$T/rc.out" || true)"
check "siem tokens" 3 "$(grep -c 'email=tok:pii.email' "$T/rc.out")"
check "access log entries" 3 "$(wc -l < "$D/access.log" | tr -d ' ')"
check "access log entry" '"role":"dlp","reason":"DSR-1","filters":{"flow":"'"$FLOW1"'"},"matched":3,"records":[6,7,8],"fields":["request.query"]' \
    "$(sed -n 1p "$D/access.log" | sed 's/.*"role"/"role"/; s/,"key_id":"[0-9a-f]*"//; s/,"prev".*//')"
check "ir entry fields" '"fields":["request.query","request.headers.authorization"]' \
    "$(sed -n 2p "$D/access.log" | grep -o '"fields":\[[^]]*\]')"
check "siem entry names nothing" '"records":[],"fields":[]' "$(sed -n 3p "$D/access.log" | grep -o '"records":\[[^]]*\],"fields":\[[^]]*\]')"
check "verify checks the access log" 0 "$(rc_of "$AQ" verify --data-dir "$D")"
check "access log valid" "Access log $D/access.log: 3 entries, valid" "$(grep '^Access log' "$T/rc.out")"
fresh
sed -i '2s/INC-7/INC-8/' "$T/v/access.log"
check "edited access log rc" 1 "$(vrc)"
check "edited access log named" "access.log: entry 2 (line 2) altered: its hash does not match its content" "$(first_failure)"
check "reveal refuses a broken access log" 2 "$(rc_of "$AQ" reveal --data-dir "$T/v" --roles "$T/roles.json" --role-key "$T/keys/dlp.key" --reason x)"
fresh
sed -i 2d "$T/v/access.log"
check "removed access log entry" "access.log: entry 2 (line 2) does not follow entry 1: an entry was removed, inserted or reordered" "$(vrc >/dev/null; first_failure)"

# keys new-role
check "keys new-role" 0 "$(rc_of "$AQ" keys new-role auditor --out "$T/keys")"
check "keys new-role mode" 600 "$(stat -c %a "$T/keys/auditor.key")"
check "keys new-role pub" "$(sed -n 's/.*"public_key": "\([^"]*\)".*/\1/p' "$T/rc.out")" "$(cat "$T/keys/auditor.pub")"
check "keys never overwrite" 1 "$(rc_of "$AQ" keys new-role auditor --out "$T/keys")"

[ $fails -eq 0 ] && echo "audit-query: all checks passed"
exit $fails
