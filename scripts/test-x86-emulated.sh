#!/usr/bin/env bash
# x86 CPUs this machine is not, emulated by qemu-user (TCG), so that detection and dispatch are checked on CPUs
# without AVX-512, and the library on an x86-64 without AVX at all:
#   qemu64       the x86-64 baseline (SSE2): scalar only, and nothing may execute a newer instruction
#   SandyBridge  AVX without AVX2: scalar only
#   EPYC-Milan   AMD Zen 3, AVX2 without AVX-512 (the CPU of issue 10): avx2, picked by default
# For each: the kernel tests (Tests/CKernelTests, --quick) with --expect-paths, so that detection must find
# exactly that CPU's paths and pick the first; and, given a model and a C example (examples/c/classify), its
# --list-kernels and its default run's logits, bitwise equal to a native scalar run. TCG has no AVX-512, and
# this qemu (7.2) no AVX-VNNI: those paths stay with real CPUs and the EVEX twin (docs/architecture.md).
#
#   scripts/test-x86-emulated.sh [MODEL CLASSIFY]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(uname -m)" != x86_64 ]; then
    echo "not an x86_64 host: nothing emulated"
    exit 0
fi
started=$SECONDS
step() { echo "=== [$((SECONDS - started))s] $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
tests=Tests/CKernelTests
build=${KERNEL_TESTS_BUILD:-$tests/build}
qemu=${QEMU_X86_64:-qemu-x86_64-static}
model=${1:-}
classify=${2:-}
[ -z "$model" ] || [ -x "$classify" ] || fail "usage: $0 [MODEL CLASSIFY]: no executable C example '$classify'"
command -v "$qemu" > /dev/null || fail "$qemu not found (Debian: qemu-user-static; scripts/setup.sh installs it)"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

make -s -C "$tests" BUILD="$(realpath -m "$build")" ARCH=host
if [ -n "$model" ]; then
    "$classify" "$model" --random 2 --batch 2 --logits --kernel scalar > "$logs/scalar" 2> "$logs/scalar.err" ||
        { cat "$logs/scalar.err"; fail "the native scalar run of the C example failed"; }
fi

# One CPU model, given its paths with the best first; its files are $logs/CPU.*.
check_cpu() {
    local cpu=$1 paths=$2 best=${2%%,*} log="$logs/$1" status=0 line listed wanted
    # TCG warns about every feature of the model it does not emulate; those lines are dropped.
    "$qemu" -cpu "$cpu" "$build/kernel-tests-host" --quick --expect-paths "$paths" > "$log" 2>&1 || status=$?
    grep -v '^qemu-x86_64[a-z-]*: warning' "$log" | grep -E '^(best path|paths compared|FAIL|[0-9]+ passed)' || true
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
    [ -n "$line" ] || { grep -v '^qemu-x86_64[a-z-]*: warning' "$log" | tail -n 5 || true; fail "the kernel tests under -cpu $cpu printed no closing count (status $status; crashed?)"; }
    [ "${line#* passed, }" = "0 failed" ] && [ "$status" -eq 0 ] || fail "the kernel tests under -cpu $cpu: $line, status $status"
    [ -n "$model" ] || return 0
    listed=$("$qemu" -cpu "$cpu" "$classify" --list-kernels 2> "$log" | sort | xargs) ||
        { cat "$log"; fail "classify --list-kernels under -cpu $cpu failed"; }
    wanted=$(tr ',' '\n' <<< "$paths" | sort | xargs)
    [ "$listed" = "$wanted" ] || fail "classify --list-kernels under -cpu $cpu: '$listed', expected '$wanted'"
    "$qemu" -cpu "$cpu" "$classify" "$model" --random 2 --batch 2 --logits > "$log.emulated" 2> "$log" ||
        { grep -v '^qemu-x86_64[a-z-]*: warning' "$log" || true; fail "the C example under -cpu $cpu failed"; }
    grep -q "kernel $best\$" "$log" || fail "-cpu $cpu ran $(grep -o 'kernel [a-z0-9]*' "$log"), expected $best"
    cmp "$logs/scalar" "$log.emulated" || fail "the C example under -cpu $cpu disagrees with the native scalar run"
    echo "classify: paths $listed; default $best; logits bitwise equal to the native scalar run"
}

# The three at once (each qemu runs on one core), each reported whole in turn.
cpus=(qemu64:scalar SandyBridge:scalar EPYC-Milan:avx2,scalar)
runs=()
step "qemu -cpu ${cpus[*]%%:*}, at once"
for cpu_paths in "${cpus[@]}"; do
    check_cpu "${cpu_paths%%:*}" "${cpu_paths#*:}" > "$logs/${cpu_paths%%:*}.report" 2>&1 & runs+=($!)
done
status=0
for i in "${!cpus[@]}"; do
    cpu=${cpus[$i]%%:*}
    echo "--- qemu -cpu $cpu: expecting ${cpus[$i]#*:}"
    wait "${runs[$i]}" || status=1
    cat "$logs/$cpu.report"
done
[ "$status" -eq 0 ] || exit 1
step "done in $((SECONDS - started))s"
