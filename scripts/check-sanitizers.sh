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

# ClassifyCLITests and EngineTests: about half of the ASan suite's time.
asan_first_half='QARepOfflineTests.ClassifyCLITests|QARepTests.EngineTests'
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
asan_log="$logs/asan-first-half.log"
asan_tests() {
    ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1" \
    LSAN_OPTIONS="suppressions=$suppressions/lsan.supp:print_suppressions=0" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    KMP_BLOCKTIME=0 \
        swift test --skip-build "$@"
}

# One step: its build and its tests, output to stdout.
run_step() {
    case "$1" in
    asan)
        echo "=== sanitizers: whole suite, ASan + UBSan"
        # Swift has no UBSan on Linux (its own checks trap anyway): UBSan goes to the C targets through -Xcc,
        # and ASan's runtime carries its handlers. -fno-sanitize-recover: a report stops the process.
        local asan=(--build-path .build-asan --sanitize=address -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined)
        swift build --build-tests "${asan[@]}" || return 1
        # XCTest runs one test at a time: two processes, the slowest suites in the first and the rest in the
        # second, keep both cores busy once the TSan step is done (alone, the suite took 257 s on one core).
        local status=0 first
        asan_tests "${asan[@]}" --filter "$asan_first_half" > "$asan_log" 2>&1 & first=$!
        asan_tests "${asan[@]}" --skip "$asan_first_half" || status=1
        wait "$first" || status=1
        cat "$asan_log"
        return "$status" ;;
    tsan)
        [ -n "$archer" ] && [ -f "$archer" ] || { echo "libarcher.so not found (Debian: libomp-dev)" >&2; return 1; }
        echo "=== sanitizers: threading tests, TSan + Archer ($archer)"
        # ignore_noninstrumented_modules: reports whose every frame is in an uninstrumented library (libomp's
        # own runtime, libc) are not ours to fix; Archer's documentation asks for it.
        OMP_TOOL_LIBRARIES="$archer" ARCHER_OPTIONS="verbose=1" \
        TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$suppressions/tsan.supp" \
            swift test --build-path .build-tsan --sanitize=thread --filter "$threading_tests" ;;
    *) echo "usage: $0 [asan|tsan]..." >&2; return 2 ;;
    esac
}

started=$SECONDS
if [ "${#steps[@]}" -gt 1 ] && [ "$(nproc)" -gt 1 ]; then
    # The steps at once, each to its own log, printed whole when it ends: the TSan step is the shorter, and the
    # ASan step's tests then run as two processes on the two cores.
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
