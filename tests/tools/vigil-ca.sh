#!/bin/sh
# tests/tools/vigil-ca.sh - vigil-ca create: a P-256 CA with CA:TRUE, keyCertSign and an SKI,
# key 0600 and certificate 0644 whatever the umask, the key matching the certificate, and
# existing files never overwritten.
# usage: vigil-ca.sh VIGIL_CA
set -eu
CA=$1
T=$(mktemp -d /tmp/vigil-ca-XXXXXX)
trap 'rm -rf "$T"' EXIT
fails=0
check() { # check NAME EXPECTED ACTUAL
    if [ "$2" != "$3" ]; then
        printf 'FAIL %s\n--- expected\n%s\n--- got\n%s\n' "$1" "$2" "$3" >&2
        fails=$((fails + 1))
    fi
}
has() { # has NAME NEEDLE HAYSTACK
    case "$3" in
    *"$2"*) ;;
    *) printf 'FAIL %s: no "%s" in\n%s\n' "$1" "$2" "$3" >&2; fails=$((fails + 1)) ;;
    esac
}

umask 077
out=$("$CA" create --out-cert "$T/ca.pem" --out-key "$T/ca.key" --cn "Test Trial CA" --days 30); rc=$?
check "create rc" 0 $rc
has "prints curl usage" "--cacert $T/ca.pem" "$out"
check "key mode" 600 "$(stat -c %a "$T/ca.key")"
check "cert mode" 644 "$(stat -c %a "$T/ca.pem")"

text=$(openssl x509 -in "$T/ca.pem" -noout -text)
has "CA:TRUE" "CA:TRUE" "$text"
has "basicConstraints critical" "X509v3 Basic Constraints: critical" "$text"
has "keyUsage" "Certificate Sign, CRL Sign" "$text"
has "SKI" "X509v3 Subject Key Identifier" "$text"
has "P-256" "NIST CURVE: P-256" "$text"
has "subject" "CN = Test Trial CA" "$text"
has "sha256" "ecdsa-with-SHA256" "$text"
check "self-verifies" "$T/ca.pem: OK" "$(openssl verify -CAfile "$T/ca.pem" "$T/ca.pem" 2>&1)"
check "key matches cert" "$(openssl x509 -in "$T/ca.pem" -noout -pubkey)" "$(openssl pkey -in "$T/ca.key" -pubout)"
# valid for 30 days, not 31
if ! openssl x509 -in "$T/ca.pem" -noout -checkend $((29 * 86400)) >/dev/null; then
    echo "FAIL expires within 29 days" >&2
    fails=$((fails + 1))
fi
if openssl x509 -in "$T/ca.pem" -noout -checkend $((31 * 86400)) >/dev/null; then
    echo "FAIL valid past 30 days" >&2
    fails=$((fails + 1))
fi

# never overwrite: the key and the certificate stay as they were, and no new file appears
sum=$(cat "$T/ca.key" "$T/ca.pem" | cksum)
rc=0; "$CA" create --out-cert "$T/ca.pem" --out-key "$T/ca.key" >/dev/null 2>&1 || rc=$?
check "overwrite refused rc" 1 $rc
rc=0; "$CA" create --out-cert "$T/new.pem" --out-key "$T/ca.key" >/dev/null 2>&1 || rc=$?
check "existing key refused rc" 1 $rc
check "no cert left behind" "" "$(ls "$T/new.pem" 2>/dev/null || true)"
rc=0; err=$("$CA" create --out-cert "$T/ca.pem" --out-key "$T/new.key" 2>&1) || rc=$?
check "existing cert refused rc" 1 $rc
has "refusal names the file" "$T/ca.pem" "$err"
check "no key left behind" "" "$(ls "$T/new.key" 2>/dev/null || true)"
check "files unchanged" "$sum" "$(cat "$T/ca.key" "$T/ca.pem" | cksum)"

# defaults, and usage errors
umask 022
"$CA" create --out-cert "$T/d.pem" --out-key "$T/d.key" >/dev/null
check "default key mode" 600 "$(stat -c %a "$T/d.key")"
has "default CN" "CN = Vigil trial CA" "$(openssl x509 -in "$T/d.pem" -noout -subject)"
rc=0; "$CA" create --out-cert "$T/x.pem" >/dev/null 2>&1 || rc=$?
check "missing --out-key" 2 $rc
rc=0; "$CA" create --out-cert "$T/x.pem" --out-key "$T/x.key" --days 0 >/dev/null 2>&1 || rc=$?
check "bad --days" 2 $rc
rc=0; "$CA" frobnicate >/dev/null 2>&1 || rc=$?
check "unknown command" 2 $rc

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed" >&2
    exit 1
fi
echo "vigil-ca: all checks passed"
