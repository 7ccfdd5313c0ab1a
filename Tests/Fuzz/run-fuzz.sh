#!/bin/sh
# Coverage-guided fuzzing of the model loader and the C API around a loaded model (libFuzzer + ASan).
# Not part of `swift test` or CI. Everything it builds and finds goes under $FUZZ_WORK (default
# /tmp/fuzz-work, outside the repository; keep "fuzz" in the path: the lead's benchmark script pauses
# processes whose path contains it).
#
#   Tests/Fuzz/run-fuzz.sh build           # compile $FUZZ_WORK/fuzz-loader and write the seed corpus
#   Tests/Fuzz/run-fuzz.sh run [SECONDS]   # fuzz (default 1200 s), one process, one core
#   Tests/Fuzz/run-fuzz.sh repro FILE...   # run the harness on given inputs (a crash file, a big model)
#
# With FUZZ_MODE=structured the same commands use $FUZZ_WORK/fuzz-structured, whose inputs are not files but
# choices (geometry, weights, scales, biases, metadata values) from which the harness writes a well-formed
# file: byte mutations of real files rarely get past the JSON header, these always do.
#
# The Swift runtime sources and the C kernels are compiled with -sanitize=fuzzer,address straight from the
# tree (no SwiftPM): the harness is compiled into module QARep so it can use the writer to make its seeds.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${FUZZ_WORK:-/tmp/fuzz-work}
SWIFT_BIN=${SWIFT_BIN:-/opt/swift/usr/bin}
if [ "${FUZZ_MODE:-}" = structured ]; then
    BIN="$WORK/fuzz-structured"; CORPUS="$WORK/corpus-structured"; DEFINES="-D STRUCTURED"
    ARTIFACTS="$WORK/artifacts-structured"
else
    BIN="$WORK/fuzz-loader"; CORPUS="$WORK/corpus"; DEFINES=""; ARTIFACTS="$WORK/artifacts"
fi

build() {
    mkdir -p "$WORK/obj" "$WORK/modules/CQARepKernels" "$CORPUS" "$ARTIFACTS"
    cat > "$WORK/modules/CQARepKernels/module.modulemap" <<MAP
module CQARepKernels {
    header "$ROOT/Sources/CQARepKernels/include/qarep_kernels.h"
    export *
}
MAP
    # Every kernel file, in every path's folder; objects named after their path in the tree.
    rm -f "$WORK"/obj/*.o
    for c in $(find "$ROOT/Sources/CQARepKernels" -name '*.c' | sort); do
        object=$(echo "${c#"$ROOT/Sources/CQARepKernels/"}" | tr / -)
        "$SWIFT_BIN/clang" -c -O1 -g -fopenmp -ffp-contract=off -fno-math-errno \
            -fsanitize=address,fuzzer-no-link -I "$ROOT/Sources/CQARepKernels/include" \
            -I "$ROOT/Sources/CQARepKernels" "$c" -o "$WORK/obj/${object%.c}.o"
    done
    # -package-name: the runtime shares some declarations with the offline module at `package` access.
    # shellcheck disable=SC2086
    "$SWIFT_BIN/swiftc" -O -g -sanitize=fuzzer,address -parse-as-library -module-name QARep -package-name qarep $DEFINES \
        -module-cache-path "$WORK/module-cache" \
        -I "$WORK/modules" -I "$ROOT/Sources/CQARepAPI/include" \
        $(find "$ROOT/Sources/QARep" -name '*.swift' | sort) "$ROOT/Tests/Fuzz/fuzz-loader.swift" "$WORK"/obj/*.o \
        -Xlinker -l:libomp.so.5 -o "$BIN" 2> "$WORK/link.log" || { cat "$WORK/link.log" >&2; exit 1; }
    # Structured inputs are choices, not files: that corpus starts empty.
    [ -n "$DEFINES" ] && return
    QAREP_FUZZ_WRITE_SEEDS="$CORPUS" "$BIN"
    # Truncations of one seed: the loader must reject each with a specific error.
    seed="$CORPUS/grouped.qarep"
    size=$(wc -c < "$seed")
    for cut in 0 7 8 9 16 64 128 $((size / 2)) $((size - 1)); do
        head -c "$cut" "$seed" > "$CORPUS/grouped-truncated-$cut"
    done
}

run() {
    seconds=${1:-1200}
    # One worker, one job: the machine is shared. An allocation over 1 GiB or RSS over 2 GiB is a finding.
    # libFuzzer's -timeout is wall time, and a benchmark may pause this process (SIGSTOP) for a while: a short
    # timeout then reports a unit that was merely paused. Check a timeout artifact with `repro` before
    # believing it; the slowest unit's time is in the final stats.
    cd "$ARTIFACTS"
    # The harness also runs two-thread sessions: idle OpenMP workers sleep at once instead of spinning.
    dict="-dict=$ROOT/Tests/Fuzz/qarep.dict"
    [ -n "$DEFINES" ] && dict=""
    # shellcheck disable=SC2086
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} KMP_BLOCKTIME=0 OMP_WAIT_POLICY=passive "$BIN" "$CORPUS" $dict \
        -jobs=1 -workers=1 -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
        -timeout=300 -max_len=${FUZZ_MAX_LEN:-65536} -print_final_stats=1 -artifact_prefix="$ARTIFACTS/"
}

case "${1:-}" in
    build) build ;;
    run) shift; run "$@" ;;
    repro) shift; "$BIN" -rss_limit_mb=2048 -malloc_limit_mb=1024 "$@" ;;
    *) echo "usage: $0 build | run [SECONDS] | repro FILE..." >&2; exit 2 ;;
esac
