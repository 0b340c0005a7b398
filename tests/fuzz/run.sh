#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer targets with clang in build-fuzz and run each for a bounded time.
#
#   tests/fuzz/run.sh [TARGET...]          default: every target, FUZZ_SECONDS (20) each
#   FUZZ_SECONDS=600 tests/fuzz/run.sh http
#   FUZZ_JOBS=2 ...                        targets run side by side (default: the number of cores)
#   FUZZ_BUILD_DIR=build-fuzz ...          where to build (CC=clang, -DVIGIL_FUZZ=ON)
#
# Each target first replays its reproducers (regressions/<target>/), then fuzzes from its committed
# seed corpus (corpus/<target>/, read-only: new inputs go to $FUZZ_BUILD_DIR/corpus/<target>/, kept
# between runs) with the dictionary <target>.dict when there is one. A crash, leak, timeout or
# sanitizer report stops that target; its input is saved as $FUZZ_BUILD_DIR/artifacts/<target>/crash-*
# and the script exits 1 after printing the report. To keep a finding as a regression test, copy the
# artifact to regressions/<target>/ (tests/fuzz/README.md): ctest "fuzz/<target>" replays it in every build.
#
# Exit 0 when every target ran clean; 1 when one found something; 0 with a "skipped" line when clang
# or its libFuzzer runtime is missing (tools/setup.sh installs both), so CI says why it ran none.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SECONDS_EACH=${FUZZ_SECONDS:-20}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
ALL="clienthello http config detectors segment"
TARGETS=${*:-$ALL}
CC_FUZZ=${FUZZ_CC:-clang}

# libFuzzer is in clang's runtime package (Debian: libclang-rt-<N>-dev): check that a target links.
probe=$(mktemp -d /tmp/vigil-fuzz-probe.XXXXXX)
trap 'rm -rf "$probe"' EXIT
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' \
    >"$probe/p.c"
if ! command -v "$CC_FUZZ" >/dev/null 2>&1; then
    echo "fuzz: skipped: $CC_FUZZ not found (tools/setup.sh deps installs clang)" >&2
    exit 0
fi
if ! "$CC_FUZZ" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err"; then
    echo "fuzz: skipped: $CC_FUZZ cannot link libFuzzer (install libclang-rt-dev):" >&2
    sed 's/^/  /' "$probe/err" | head -5 >&2
    exit 0
fi

echo "fuzz: building in $BUILD ($("$CC_FUZZ" --version | head -1))" >&2
CC=$CC_FUZZ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVIGIL_FUZZ=ON -DVIGIL_TESTS=OFF >/dev/null ||
    exit 1
bins=()
for t in $TARGETS; do bins+=("fuzz_$t"); done
cmake --build "$BUILD" -j"$JOBS" --target "${bins[@]}" >"$BUILD/build.log" 2>&1 || {
    tail -40 "$BUILD/build.log" >&2
    exit 1
}

# One target: replay the reproducers, then fuzz. Writes its log to $BUILD/logs/<target>.log.
run_one() {
    local t=$1 bin="$ROOT/$BUILD/bin/fuzz_$1" log="$ROOT/$BUILD/logs/$1.log" work="$ROOT/$BUILD/work/$1"
    local dict=() regress=()
    mkdir -p "$ROOT/$BUILD/corpus/$t" "$ROOT/$BUILD/artifacts/$t" "$work"
    [ -f "$ROOT/tests/fuzz/$t.dict" ] && dict=(-dict="$ROOT/tests/fuzz/$t.dict")
    [ -d "$ROOT/tests/fuzz/regressions/$t" ] && regress=("$ROOT/tests/fuzz/regressions/$t"/*)
    # the targets write temp files under /tmp; the working dir catches anything a config names
    cd "$work" || return 1
    {
        if [ ${#regress[@]} -gt 0 ] && [ -e "${regress[0]}" ]; then
            echo "== replaying ${#regress[@]} reproducers"
            "$bin" -runs=1 "${regress[@]}" || return 1
        fi
        echo "== fuzzing for ${SECONDS_EACH}s"
        "$bin" "${dict[@]}" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
            -artifact_prefix="$ROOT/$BUILD/artifacts/$t/" -print_final_stats=1 \
            "$ROOT/$BUILD/corpus/$t" "$ROOT/tests/fuzz/corpus/$t"
    } >"$log" 2>&1
}
export -f run_one
export ROOT BUILD SECONDS_EACH

mkdir -p "$BUILD/logs"
start=$(date +%s)
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'run_one {} && echo "ok {}" || echo "FAIL {}"' \
    >"$BUILD/logs/summary" 2>&1
fail=0
for t in $TARGETS; do
    log="$BUILD/logs/$t.log"
    if grep -qx "ok $t" "$BUILD/logs/summary"; then
        stats=$(grep -E '^stat::(number_of_executed_units|new_units_added)' "$log" | awk '{print $2}' | paste -sd/)
        cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -1)
        echo "fuzz: $t: ok (${SECONDS_EACH}s; execs/new ${stats:-?}; $cov)"
    else
        fail=1
        echo "fuzz: $t: FAILED; report ($log):"
        grep -nE 'ERROR|WARNING|SUMMARY|==[0-9]+==|Test unit written|runtime error|abort' "$log" | head -20
        tail -60 "$log" | sed 's/^/    /'
    fi
done
echo "fuzz: done in $(($(date +%s) - start))s" >&2
exit $fail
