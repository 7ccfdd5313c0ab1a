#!/usr/bin/env bash
# The kernel tests as a C program (Tests/CKernelTests), natively and cross-built for aarch64, where qemu-user
# runs them once per CPU model so that each ARM path runs: cortex-a72 (neon only), cortex-a76 (dot product)
# and max (i8mm too). Needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, libgomp1-arm64-cross and
# qemu-user-static (scripts/setup.sh installs them). Each run ends with "N passed, N failed"; the script
# fails when any run fails or reports no count.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
step() { echo "=== [$((SECONDS - started))s] $*"; }
tests=Tests/CKernelTests
build=${KERNEL_TESTS_BUILD:-$tests/build}
qemu=${QEMU_AARCH64:-qemu-aarch64-static}
sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}
total_passed=0 total_failed=0 status=0

run() {  # label, command...
    local label=$1 log begin
    shift
    log=$(mktemp)
    begin=$SECONDS
    "$@" 2>&1 | tee "$log" | grep -E '^(best path|paths|FAIL|note|detection|[0-9]+ passed)' || true
    local line
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1 || true)
    if [ -z "$line" ]; then
        echo "$label: no closing count (crashed?)"
        tail -n 5 "$log"
        status=1
    else
        read -r p _ f _ <<< "$line"
        total_passed=$((total_passed + p))
        total_failed=$((total_failed + f))
        [ "$f" -eq 0 ] || status=1
    fi
    echo "$label: $((SECONDS - begin))s"
    rm -f "$log"
}

step "host build and run"
make -s -C "$tests" BUILD="$(realpath -m "$build")" ARCH=host
run host "$build/kernel-tests-host"

step "aarch64 cross build"
make -s -C "$tests" BUILD="$(realpath -m "$build")" ARCH=aarch64
# A dot-product-only model: cortex-a76 where this qemu has it, else neoverse-n1.
models=$("$qemu" -cpu help 2>&1 || true)
dot_cpu=cortex-a76
grep -qw cortex-a76 <<< "$models" || dot_cpu=neoverse-n1
for cpu in cortex-a72 "$dot_cpu" max; do
    step "aarch64 under qemu -cpu $cpu"
    run "qemu $cpu" "$qemu" -L "$sysroot" -cpu "$cpu" "$build/kernel-tests-aarch64"
done

step "done in $((SECONDS - started))s"
echo "$total_passed passed, $total_failed failed"
exit $status
