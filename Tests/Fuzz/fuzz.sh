#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer + UndefinedBehaviorSanitizer's default checks in C) of
# the four inputs a user hands us: TARGET is one of
#   loader       a .qarep model through the C API (load, info, preprocess, sessions on every path, runs)
#   pth          a torch.save .pth file (zip reader, restricted unpickler, tensor decoding)
#   safetensors  a safetensors checkpoint as `qarep import` reads it
#   image        JPEG/PNG/WebP bytes to model input (C row reader, DCT scaling, StreamingResize)
# Seeds are checked in under Tests/Fuzz/seeds/TARGET (make-seeds.py wrote them; a crash found later goes there
# too, as a regression seed). Everything built or found goes under $FUZZ_WORK (default /tmp/fuzz-work; keep
# "fuzz" in the path). docs/reliability.md ("Long campaigns") says how to run long campaigns.
#
#   Tests/Fuzz/fuzz.sh build                    # compile $FUZZ_WORK/fuzz-{loader,pth,safetensors,image}
#   Tests/Fuzz/fuzz.sh run TARGET [SECONDS [FLAG...]]  # fuzz one target (default 1200 s), one process, one
#                                               # core; FLAGs go to libFuzzer (e.g. -runs=2000000)
#   Tests/Fuzz/fuzz.sh ci [SECONDS]             # every target for SECONDS (default 30) from the checked-in
#                                               # seeds only, in a scratch corpus; any finding fails
#   Tests/Fuzz/fuzz.sh repro TARGET FILE...     # run a target on given inputs (a crash file, a seed)
#
# With FUZZ_MODE=structured, the loader's inputs are not files but choices (geometry, weights, scales, biases,
# metadata) from which the harness writes a well-formed file; byte mutations rarely get past the JSON header.
#
# The sources are compiled straight from the tree (no SwiftPM, which has no fuzzer builds of libraries): the
# runtime and offline modules with -enable-testing, each harness as a small module that @testable-imports them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${FUZZ_WORK:-/tmp/fuzz-work}
SWIFT_BIN=${SWIFT_BIN:-/opt/swift/usr/bin}
TARGETS="loader pth safetensors image"
SWIFTC=("$SWIFT_BIN/swiftc" -O -g -sanitize=fuzzer,address -package-name qarep -module-cache-path "$WORK/module-cache"
        -I "$WORK/modules" -I "$ROOT/Sources/CQARepAPI/include" -I "$ROOT/Sources/CImageCodecs"
        -I "$ROOT/Sources/COpenBLAS")
CFLAGS=(-O1 -g -fsanitize=address,undefined,fuzzer-no-link -fno-sanitize-recover=undefined)

binary() { if [ "$1" = loader ] && [ "${FUZZ_MODE:-}" = structured ]; then echo "$WORK/fuzz-structured"; else echo "$WORK/fuzz-$1"; fi; }

# One Swift module, whole-module optimized, into $WORK/modules (interface) and $WORK/obj/NAME.o.
swift_module() {
    local name=$1; shift
    "${SWIFTC[@]}" -enable-testing -parse-as-library -wmo -module-name "$name" -emit-module \
        -emit-module-path "$WORK/modules/$name.swiftmodule" -c "$@" -o "$WORK/obj/$name.o"
}

build() {
    rm -rf "$WORK/obj" "$WORK/modules"
    mkdir -p "$WORK/obj/kernels" "$WORK/modules/CQARepKernels" "$WORK/modules/CImageDecode"
    printf 'module CQARepKernels {\n    header "%s"\n    export *\n}\n' \
        "$ROOT/Sources/CQARepKernels/include/qarep_kernels.h" > "$WORK/modules/CQARepKernels/module.modulemap"
    printf 'module CImageDecode {\n    umbrella "%s"\n    export *\n}\n' \
        "$ROOT/Sources/CImageDecode/include" > "$WORK/modules/CImageDecode/module.modulemap"
    # Every kernel file of every path's folder (the paths this CPU lacks are compiled and simply not run).
    # Kernels keep edge coverage but not comparison tracing: their branches depend only on the shapes, and
    # tracing the inner loops' compares took half of the loader target's time (260 runs/s).
    # The C files compile on every core while the Swift modules, one after another, take about one core:
    # serial, the whole build took 4.5 minutes on a slow 2-core host.
    kernel_object() {
        local object
        object=$(echo "${1#"$ROOT/Sources/CQARepKernels/"}" | tr / -)
        # shellcheck disable=SC2086 # the flags are words without spaces
        "$SWIFT_BIN/clang" -c $KERNEL_CFLAGS -I "$ROOT/Sources/CQARepKernels/include" -I "$ROOT/Sources/CQARepKernels" \
            "$1" -o "$WORK/obj/kernels/${object%.c}.o"
    }
    export -f kernel_object
    export ROOT WORK SWIFT_BIN
    export KERNEL_CFLAGS="${CFLAGS[*]} -fno-sanitize-coverage=trace-cmp -fopenmp -ffp-contract=off -fno-math-errno"
    (find "$ROOT/Sources/CQARepKernels" -name '*.c' | sort | xargs -P "$(nproc)" -n 1 bash -c 'kernel_object "$1"' _) &
    local kernels=$!
    "$SWIFT_BIN/clang" -c "${CFLAGS[@]}" -I "$ROOT/Sources/CImageDecode/include" -I "$ROOT/Sources/CImageCodecs" \
        "$ROOT/Sources/CImageDecode/image_decode.c" -o "$WORK/obj/image_decode.o"
    swift_module QARep $(find "$ROOT/Sources/QARep" -name '*.swift' | sort)
    swift_module RepVGGArchitectures $(find "$ROOT/Sources/RepVGGArchitectures" -name '*.swift' | sort)
    swift_module QARepOffline $(find "$ROOT/Sources/QARepOffline" -name '*.swift' | sort)
    wait "$kernels" || { echo "a kernel file did not compile" >&2; exit 1; }
    local runtime=("$WORK/obj/QARep.o" "$WORK"/obj/kernels/*.o -Xlinker -l:libomp.so.5)
    local offline=("$WORK/obj/QARepOffline.o" "$WORK/obj/RepVGGArchitectures.o" "$WORK/obj/image_decode.o"
                   "${runtime[@]}" -ljpeg -lpng16 -lwebp -lopenblas)
    # gold warns about every ASan symbol it cannot export: a link's log is shown only when that link fails.
    link() {
        local out=${*: -1}
        "${SWIFTC[@]}" -parse-as-library "$@" 2> "$out.link.log" || { cat "$out.link.log" >&2; return 1; }
        rm -f "$out.link.log"
    }
    local links=()
    link "$ROOT/Tests/Fuzz/fuzz-loader.swift" "${runtime[@]}" -o "$WORK/fuzz-loader" & links+=($!)
    link -D STRUCTURED "$ROOT/Tests/Fuzz/fuzz-loader.swift" "${runtime[@]}" -o "$WORK/fuzz-structured" & links+=($!)
    for target in pth safetensors image; do
        link "$ROOT/Tests/Fuzz/fuzz-$target.swift" "${offline[@]}" -o "$WORK/fuzz-$target" & links+=($!)
    done
    for pid in "${links[@]}"; do wait "$pid" || { echo "a fuzz target did not link" >&2; exit 1; }; done
}

# libFuzzer on one target. $1 target, $2 seconds, $3 corpus directory (written to), then extra flags.
fuzz() {
    local target=$1 seconds=$2 corpus=$3; shift 3
    local artifacts="$WORK/artifacts-$target" dict=()
    mkdir -p "$artifacts" "$corpus"
    [ -f "$ROOT/Tests/Fuzz/$target.dict" ] && [ "${FUZZ_MODE:-}" != structured ] && dict=(-dict="$ROOT/Tests/Fuzz/$target.dict")
    # Seeds are read from the checked-in folder and never written there (the corpus dir is the first argument).
    local seeds=()
    [ "${FUZZ_MODE:-}" = structured ] && [ "$target" = loader ] || seeds=("$ROOT/Tests/Fuzz/seeds/$target")
    # One process, one core: the machine is shared. An allocation over 1 GiB or RSS over 2 GiB is a finding.
    # libFuzzer's -timeout is wall time, and a benchmark may pause this process (SIGSTOP): check a timeout
    # artifact with `repro` before believing it. Idle OpenMP workers (the loader's two-thread sessions) sleep
    # at once instead of spinning.
    (cd "$artifacts" && ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
        KMP_BLOCKTIME=0 OMP_WAIT_POLICY=passive "$(binary "$target")" "$corpus" "${seeds[@]}" "${dict[@]}" \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=300 \
        -max_len="${FUZZ_MAX_LEN:-65536}" -print_final_stats=1 -artifact_prefix="$artifacts/" "$@")
}

# One target's CI pass: prints its line, or its log's tail and returns 1 on a finding.
ci_target() {
    local target=$1 seconds=$2 corpus log
    corpus=$(mktemp -d "$WORK/ci-corpus-$target.XXXXXX")
    log="$WORK/ci-$target.log"
    if ! fuzz "$target" "$seconds" "$corpus" > "$log" 2>&1; then
        { tail -n 60 "$log"; echo "fuzz $target: FINDING (artifacts in $WORK/artifacts-$target)"; } >&2
        return 1
    fi
    echo "fuzz $target: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$') executions in ${seconds} s, no finding"
    rm -rf "$corpus"
}

case "${1:-}" in
    build) build ;;
    run)
        target=${2:?target}; seconds=${3:-1200}; shift 3 2>/dev/null || shift $#
        fuzz "$target" "$seconds" "$WORK/corpus-$target${FUZZ_MODE:+-$FUZZ_MODE}" "$@" ;;
    ci)
        # Fixed time per target from the checked-in seeds, in a fresh corpus: the result does not depend on
        # what earlier runs on this machine found. Any crash, leak, UB report, timeout or OOM fails.
        # Each libFuzzer process uses one core, so as many targets run at once as there are cores.
        seconds=${2:-30}
        status=0 running=()
        for target in $TARGETS; do
            ci_target "$target" "$seconds" & running+=($!)
            if [ "${#running[@]}" -ge "$(nproc)" ]; then
                wait "${running[0]}" || status=1
                running=("${running[@]:1}")
            fi
        done
        for pid in "${running[@]}"; do wait "$pid" || status=1; done
        exit "$status" ;;
    repro)
        target=${2:?target}; shift 2
        ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} "$(binary "$target")" -rss_limit_mb=2048 -malloc_limit_mb=1024 "$@" ;;
    *) echo "usage: $0 build | run TARGET [SECONDS] | ci [SECONDS] | repro TARGET FILE..." >&2; exit 2 ;;
esac
