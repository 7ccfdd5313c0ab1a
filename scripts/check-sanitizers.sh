#!/usr/bin/env bash
# The test suite under the sanitizers (run by .ci/run; docs/fuzzing.md, "Sanitizers"):
#   1. every test, built with AddressSanitizer (leak checking on) and UndefinedBehaviorSanitizer;
#   2. the threading tests (engine, C API, network kernels, the concurrency stress test) with ThreadSanitizer,
#      and LLVM's Archer tool loaded into libomp so that TSan sees OpenMP's barriers, locks and task
#      dependences (without it, every kernel that splits rows across a team is reported as a race).
# Any sanitizer report fails the run: ASan and TSan abort the test process on their first report
# (halt_on_error), UBSan is made fatal with -fno-sanitize-recover. Suppressions live in
# scripts/sanitizer-suppressions/, each with a comment saying why it is a false positive.
#
#   scripts/check-sanitizers.sh [asan|tsan]...    # default: both
#
# Builds go to .build-asan and .build-tsan (debug), so the release build in .build is untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
steps=("$@")
[ "${#steps[@]}" -gt 0 ] || steps=(asan tsan)

# Debian's libomp-dev (LLVM 14) installs Archer where the Swift toolchain's clang does not look.
archer=${QAREP_ARCHER:-$(ls /usr/lib/llvm-*/lib/libarcher.so 2>/dev/null | sort -V | tail -n 1 || true)}
threading_tests='QARepTests.EngineTests|QARepTests.CAPITests|QARepKernelTests.NetworkKernelTests|QARepTests.ConcurrencyStressTests'
suppressions="$root/scripts/sanitizer-suppressions"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Swift has no UBSan on Linux (its own checks trap anyway): UBSan goes to the C targets through -Xcc, and ASan's
# runtime carries its handlers. -fno-sanitize-recover: a report stops the process.
asan_flags=(--build-path .build-asan --sanitize=address -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined)
asan_tests() {
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1" \
    LSAN_OPTIONS="suppressions=$suppressions/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    KMP_BLOCKTIME=0 \
        swift test --skip-build --ignore-lock "${asan_flags[@]}" "$@"
}
tsan_flags=(--build-path .build-tsan --sanitize=thread)
# ignore_noninstrumented_modules: reports whose every frame is in an uninstrumented library (libomp's own runtime,
# libc) are not ours to fix; Archer's documentation asks for it.
tsan_tests() {
    OMP_TOOL_LIBRARIES="$archer" ARCHER_OPTIONS="verbose=1" \
    TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$suppressions/tsan.supp" \
        swift test --skip-build --ignore-lock "${tsan_flags[@]}" "$@"
}

# A step's tests as two processes at once, since XCTest runs one test at a time: RUNNER --filter FIRST (suites
# with about half of the step's time) beside RUNNER REST... (the others). The rest's output comes first. The
# runners pass --ignore-lock: SwiftPM holds the build folder's lock for a whole `swift test`, even one that
# builds nothing, so the second would wait for the first.
in_two_processes() {
    local runner=$1 first=$2; shift 2
    local status=0 pid
    "$runner" --filter "$first" > "$logs/$runner-first.log" 2>&1 & pid=$!
    "$runner" "$@" || status=1
    wait "$pid" || status=1
    cat "$logs/$runner-first.log"
    return "$status"
}

# One step: its build and its tests, output to stdout. Alone on this 2-core host, the ASan suite took 257 s of
# one core, so halves run at once (ClassifyCLITests and EngineTests against the rest); the TSan halves are the
# stress test against the other threading tests.
run_step() {
    case "$1" in
    asan)
        echo "=== sanitizers: whole suite, ASan + UBSan"
        swift build --build-tests "${asan_flags[@]}" || return 1
        local first='QARepOfflineTests.ClassifyCLITests|QARepTests.EngineTests'
        in_two_processes asan_tests "$first" --skip "$first" ;;
    tsan)
        [ -n "$archer" ] && [ -f "$archer" ] || { echo "libarcher.so not found (Debian: libomp-dev)" >&2; return 1; }
        echo "=== sanitizers: threading tests, TSan + Archer ($archer)"
        swift build --build-tests "${tsan_flags[@]}" || return 1
        local first='QARepTests.ConcurrencyStressTests'
        in_two_processes tsan_tests "$first" --filter "$threading_tests" --skip "$first" ;;
    *) echo "usage: $0 [asan|tsan]..." >&2; return 2 ;;
    esac
}

started=$SECONDS
if [ "${#steps[@]}" -gt 1 ] && [ "$(nproc)" -gt 1 ]; then
    # The steps at once, each to its own log, printed whole when it ends.
    pids=()
    for step in "${steps[@]}"; do
        run_step "$step" > "$logs/$step.log" 2>&1 & pids+=($!)
    done
    status=0
    for i in "${!steps[@]}"; do
        wait "${pids[$i]}" || { status=1; echo "=== sanitizers: the ${steps[$i]} step failed" >&2; }
        cat "$logs/${steps[$i]}.log"
    done
    [ "$status" -eq 0 ] || exit 1
else
    for step in "${steps[@]}"; do run_step "$step"; done
fi
echo "=== sanitizers: no report in $((SECONDS - started)) s"
