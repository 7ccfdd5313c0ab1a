#!/usr/bin/env bash
# The AVX-VNNI path must run on CPUs without AVX-512 (Alder Lake, N100), so its objects may hold no
# EVEX-encoded instruction at all, and its vpdpbusd must be the VEX form; its test-only EVEX twin must be
# EVEX (x86/avxvnni/avxvnni.h). This CPU-independent check guards what no test can where the CPU lacks
# AVX-VNNI: an EVEX instruction leaking into the real path (a target attribute, an inlined AVX-512 helper)
# would pass every test here and fault there. Compiles the folder with the toolchain's clang and the
# kernels' flags from Package.swift; prints the counts, exits 1 on a violation. About 10 s.
set -euo pipefail
cd "$(dirname "$0")/.."
cc=$(dirname "$(realpath "$(command -v swiftc)")")/clang
flags=$(sed -n 's/.*\.unsafeFlags(\[\(.*\)\]).*/\1/p' Package.swift | tr -d '",')
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for source in Sources/CQARepKernels/x86/avxvnni/*.c; do
    object="$out/$(basename "$source" .c).o"
    # shellcheck disable=SC2086
    "$cc" $flags -fPIC -ISources/CQARepKernels/include -ISources/CQARepKernels -c "$source" -o "$object"
    listing=$(objdump -d "$object")
    # In 64-bit mode an instruction whose opcode bytes start with 62 is EVEX (0x62 is no longer BOUND).
    evex=$(awk -F'\t' 'NF >= 3 && $2 ~ /^62 /' <<< "$listing" | wc -l)
    vex_dp=$(grep -c '{vex} vpdpbusd' <<< "$listing" || true)
    evex_dp=$(awk -F'\t' 'NF >= 3 && $2 ~ /^62 / && $3 ~ /vpdpbusd/' <<< "$listing" | wc -l)
    echo "$(basename "$source"): $evex EVEX instructions, vpdpbusd: $vex_dp VEX, $evex_dp EVEX"
    # Every file has vpdpbusd (the path file in its peak loop).
    case "$source" in
        *-evex.c) [ "$vex_dp" -eq 0 ] && [ "$evex_dp" -gt 0 ] || status=1 ;;
        *) [ "$evex" -eq 0 ] && [ "$vex_dp" -gt 0 ] || status=1 ;;
    esac
done
[ "$status" -eq 0 ] && echo "avxvnni objects: VEX only; EVEX twin: EVEX" || echo "avxvnni encoding check FAILED"
exit $status
