#!/usr/bin/env bash
# tools/setup.sh - the two set-up commands of the README, for a fresh Debian machine.
#
#   tools/setup.sh run [vigil options]   install what is missing, build, run vigil
#   tools/setup.sh test                  install what is missing, build, run every test
#                                        (default build, then the ASan+UBSan build, then each
#                                        libFuzzer target for FUZZ_SECONDS, 20 by default)
#   tools/setup.sh deps | build          the steps alone
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PKGS="build-essential cmake pkg-config libssl-dev libevent-dev node-llhttp librdkafka-dev libzstd-dev
  libsodium-dev libcmocka-dev libjansson-dev libvectorscan-dev libidn2-dev zstd"
TEST_PKGS="curl openssl kcat rsyslog rsyslog-openssl clang libclang-rt-dev"
JOBS=$(nproc 2>/dev/null || echo 2)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

deps() {
  local missing=()
  for p in $BUILD_PKGS ${1:-}; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

build() { # build DIR [cmake args]
  local dir=$1; shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$JOBS"
}

case "${1:-}" in
  deps)  deps "$TEST_PKGS" ;;
  build) deps; build build ;;
  run)   shift; deps; build build; exec build/bin/vigil "$@" ;;
  test)
    deps "$TEST_PKGS"
    build build
    (cd build && ctest --output-on-failure -j"$JOBS")
    build build-asan -DVIGIL_SANITIZE=ON
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j"$JOBS")
    tests/fuzz/run.sh   # clang + libFuzzer, build-fuzz; bounded by FUZZ_SECONDS per target
    ;;
  *) echo "usage: $0 run [vigil options] | test | deps | build" >&2; exit 2 ;;
esac
