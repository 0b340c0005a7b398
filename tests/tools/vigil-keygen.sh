#!/bin/sh
# tests/tools/vigil-keygen.sh - vigil-keygen: a role key pair (secret key 0600, never
# overwritten; the printed public key is the one the secret key derives), and the token key
# ring (created on first use, rotation adds a key and makes it current), exit statuses.
# usage: vigil-keygen.sh VIGIL_KEYGEN
set -eu
KG=$1
T=$(mktemp -d /tmp/vigil-keygen-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        printf 'FAIL %s\n--- expected\n%s\n--- got\n%s\n' "$1" "$2" "$3" >&2
        fails=$((fails + 1))
    fi
}

line=$("$KG" role dlp_analyst --out "$T" 2>/dev/null)
pk=$(printf '%s\n' "$line" | sed -n 's/.*"public_key": "\([^"]*\)".*/\1/p')
check "role prints a roles.json entry" '{"name": "dlp_analyst", "public_key": "'"$pk"'", "reveal": []}' "$line"
check "public key is 44 base64 characters" 44 "${#pk}"
check "secret key mode" 600 "$(stat -c %a "$T/dlp_analyst.key")"
check "public derives the same key" "$pk" "$("$KG" public "$T/dlp_analyst.key")"
rc=0; "$KG" role dlp_analyst --out "$T" 2>/dev/null || rc=$?
check "an existing key is never overwritten" 1 "$rc"
chmod 644 "$T/dlp_analyst.key"
rc=0; "$KG" public "$T/dlp_analyst.key" >/dev/null 2>&1 || rc=$?
check "a key others can read is refused" 1 "$rc"
rc=0; "$KG" role 'Bad Name' --out "$T" 2>/dev/null || rc=$?
check "bad role name" 2 "$rc"

check "token ring created with k1" k1 "$("$KG" token-key "$T/keys" 2>/dev/null)"
check "token key mode" 600 "$(stat -c %a "$T/keys/token-k1.key")"
check "key dir mode" 700 "$(stat -c %a "$T/keys")"
check "rotation makes k2 current" k2 "$("$KG" token-key "$T/keys" --rotate 2>/dev/null)"
check "reopened ring keeps k2" k2 "$("$KG" token-key "$T/keys" 2>/dev/null)"
check "old key kept" yes "$(test -f "$T/keys/token-k1.key" && echo yes)"

rc=0; "$KG" 2>/dev/null || rc=$?
check "usage" 2 "$rc"
[ "$fails" -eq 0 ] || exit 1
