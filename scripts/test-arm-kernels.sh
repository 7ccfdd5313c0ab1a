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

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# The runs go on side by side (each qemu run is mostly one emulated thread), each into its own log; report
# reads a finished run's log in a fixed order.
execute() {  # log, command...
    local log=$1 begin=$SECONDS
    shift
    "$@" > "$log" 2>&1 || true
    echo $((SECONDS - begin)) > "$log.seconds"
}
report() {  # label, log
    local label=$1 log=$2 line
    grep -E '^(best path|paths|FAIL|note|detection|[0-9]+ passed)' "$log" || true
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
    echo "$label: $(cat "$log.seconds")s"
}

step "host build, then its run beside the aarch64 cross build"
make -s -C "$tests" BUILD="$(realpath -m "$build")" ARCH=host
execute "$logs/host" "$build/kernel-tests-host" &
host=$!
make -s -C "$tests" BUILD="$(realpath -m "$build")" ARCH=aarch64
# A dot-product-only model: cortex-a76 where this qemu has it, else neoverse-n1.
models=$("$qemu" -cpu help 2>&1 || true)
dot_cpu=cortex-a76
grep -qw cortex-a76 <<< "$models" || dot_cpu=neoverse-n1
cpus=(cortex-a72 "$dot_cpu" max)
wait "$host"
step "aarch64 under qemu -cpu ${cpus[*]}, at once"
runs=()
for cpu in "${cpus[@]}"; do
    execute "$logs/qemu-$cpu" "$qemu" -L "$sysroot" -cpu "$cpu" "$build/kernel-tests-aarch64" &
    runs+=($!)
done
report host "$logs/host"
for i in "${!cpus[@]}"; do
    wait "${runs[$i]}"
    echo "--- qemu -cpu ${cpus[$i]}"
    report "qemu ${cpus[$i]}" "$logs/qemu-${cpus[$i]}"
done

step "done in $((SECONDS - started))s"
echo "$total_passed passed, $total_failed failed"
exit $status
