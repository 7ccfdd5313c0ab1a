// The register-state check every x86 path's CPU check ends with, and the CPUID bits that
// __builtin_cpu_supports does not answer reliably (see x86.h).
#include "x86/x86.h"

#if QK_HAVE_X86
// __builtin_cpu_supports reports what CPUID advertises; the OS must also save the wider register state
// (XCR0), otherwise the first ymm/zmm instruction faults, so that is checked explicitly.
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static void cpuid(uint32_t leaf, uint32_t subleaf, uint32_t *eax, uint32_t *ebx, uint32_t *ecx, uint32_t *edx) {
    *eax = leaf;
    *ecx = subleaf;
    __asm__ volatile("cpuid" : "+a"(*eax), "=b"(*ebx), "+c"(*ecx), "=d"(*edx));
}

bool qk_x86_os_saves_state(uint64_t xcr0_bits) {
    uint32_t eax, ebx, ecx, edx;
    cpuid(1, 0, &eax, &ebx, &ecx, &edx);
    const uint32_t osxsave = 1u << 27;
    if ((ecx & osxsave) == 0) return false;
    return (read_xcr0() & xcr0_bits) == xcr0_bits;
}

bool qk_x86_has_avx_vnni(void) {
    uint32_t eax, ebx, ecx, edx;
    cpuid(0, 0, &eax, &ebx, &ecx, &edx);
    if (eax < 7) return false;  // no leaf 7
    cpuid(7, 0, &eax, &ebx, &ecx, &edx);
    if (eax < 1) return false;  // leaf 7 has no subleaf 1
    cpuid(7, 1, &eax, &ebx, &ecx, &edx);
    return (eax >> 4) & 1;
}
#endif
