// LD_PRELOAD library that shows a process an x86 CPU with fewer ISA extensions than it has, so that peers
// which pick their kernels from CPUID (ONNX Runtime's MLAS, oneDNN in OpenVINO) run the code they would run
// on that CPU. Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID) turns every CPUID into a SIGSEGV, which the
// handler answers with the real leaf less the masked bits.
//   QAREP_CPUID_MASK=avx2      no AVX-512, AVX-VNNI or AMX (a Zen 3 or a Haswell-to-Comet-Lake core's view)
//   QAREP_CPUID_MASK=avxvnni   no AVX-512 or AMX, AVX-VNNI kept (an Alder Lake-class core's view)
//   QAREP_CPUID_MASK=avx512bw  AVX-512 F, CD, BW, DQ and VL only: no VNNI of either kind, no AMX (Skylake-SP's)
//   QAREP_CPUID_MASK=avx512vnni  AVX-512 with VNNI, no AMX and no VEX AVX-VNNI (Ice Lake-SP's, Zen 4's)
// Only the CPUID view changes: the core's pipes and caches stay this machine's.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

enum { ARCH_SET_CPUID = 0x1012 };

// CPUID leaf 7 bits. Subleaf 0, EBX: AVX-512 F (16), DQ (17), IFMA (21), PF (26), ER (27), CD (28), BW (30),
// VL (31); ECX: VBMI (1), VBMI2 (6), VNNI (11), BITALG (12), VPOPCNTDQ (14); EDX: 4VNNIW (2), 4FMAPS (3),
// VP2INTERSECT (8), AMX-BF16 (22), AVX512-FP16 (23), AMX-TILE (24), AMX-INT8 (25). Subleaf 1, EAX: AVX-VNNI (4),
// AVX512-BF16 (5), AMX-FP16 (21); EDX: AVX-VNNI-INT8 (4), AMX-COMPLEX (8), AVX-VNNI-INT16 (10), AVX10 (19).
#define BIT(n) (1u << (n))
enum {
    AVX512_EBX = BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31),
    SKYLAKE_SP_EBX = BIT(16) | BIT(17) | BIT(28) | BIT(30) | BIT(31),
    AVX512_ECX = BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14),
    AMX_AND_FP16_EDX = BIT(22) | BIT(23) | BIT(24) | BIT(25),
    AVX512_EDX = BIT(2) | BIT(3) | BIT(8) | AMX_AND_FP16_EDX,
    AVX_VNNI_EAX = BIT(4),
    AVX512_BF16_EAX = BIT(5),
    AMX_FP16_EAX = BIT(21),
    LATER_EDX_1 = BIT(4) | BIT(8) | BIT(10) | BIT(19),
};

// The bits a view clears in leaf 7: subleaf 0's EBX, ECX and EDX, subleaf 1's EAX and EDX.
typedef struct { uint32_t ebx, ecx, edx, eax_1, edx_1; } view_mask;
static const struct { const char *name; view_mask clear; } views[] = {
    {"avx2", {AVX512_EBX, AVX512_ECX, AVX512_EDX, AVX_VNNI_EAX | AVX512_BF16_EAX | AMX_FP16_EAX, LATER_EDX_1}},
    {"avxvnni", {AVX512_EBX, AVX512_ECX, AVX512_EDX, AVX512_BF16_EAX | AMX_FP16_EAX, LATER_EDX_1}},
    {"avx512bw", {AVX512_EBX & ~SKYLAKE_SP_EBX, AVX512_ECX, AVX512_EDX, AVX_VNNI_EAX | AVX512_BF16_EAX | AMX_FP16_EAX, LATER_EDX_1}},
    {"avx512vnni", {0, 0, AMX_AND_FP16_EDX, AVX_VNNI_EAX | AMX_FP16_EAX, LATER_EDX_1}},
};
static view_mask clear;
static volatile long emulated;
static struct sigaction chained;  // the program's own SIGSEGV handler, called for every other fault
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void set_faulting(int on) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void mask_leaf(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    if (leaf == 7 && subleaf == 0) r[1] &= ~clear.ebx, r[2] &= ~clear.ecx, r[3] &= ~clear.edx;
    if (leaf == 7 && subleaf == 1) r[0] &= ~clear.eax_1, r[3] &= ~clear.edx_1;
    if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) r[0] = r[1] = r[2] = r[3] = 0;  // AMX palettes, AVX10
}

static void on_segv(int signal, siginfo_t *info, void *context) {
    ucontext_t *uc = context;
    greg_t *regs = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)regs[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t r[4], leaf = (uint32_t)regs[REG_RAX], subleaf = (uint32_t)regs[REG_RCX];
        set_faulting(0);
        __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(subleaf));
        set_faulting(1);
        mask_leaf(leaf, subleaf, r);
        regs[REG_RAX] = r[0], regs[REG_RBX] = r[1], regs[REG_RCX] = r[2], regs[REG_RDX] = r[3];
        regs[REG_RIP] += 2;
        __atomic_add_fetch(&emulated, 1, __ATOMIC_RELAXED);
        return;
    }
    if (chained.sa_flags & SA_SIGINFO) {
        if (chained.sa_sigaction != NULL) chained.sa_sigaction(signal, info, context);
        return;
    }
    if (chained.sa_handler != SIG_DFL && chained.sa_handler != SIG_IGN && chained.sa_handler != NULL) {
        chained.sa_handler(signal);
        return;
    }
    // No handler of the program's: the default action, by returning into the same fault.
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    real_sigaction(SIGSEGV, &dfl, NULL);
}

// The program's SIGSEGV handler is kept for the faults that are not CPUID; ours stays installed.
int sigaction(int signal, const struct sigaction *action, struct sigaction *old) {
    if (real_sigaction == NULL) real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    if (signal != SIGSEGV || getenv("QAREP_CPUID_MASK") == NULL) return real_sigaction(signal, action, old);
    if (old != NULL) *old = chained;
    if (action != NULL) chained = *action;
    return 0;
}

static void report(void) {
    if (getenv("QAREP_CPUID_MASK_VERBOSE") != NULL)
        fprintf(stderr, "cpuid-mask: %ld CPUID instructions answered (pid %d)\n", emulated, (int)getpid());
}

__attribute__((constructor)) static void install(void) {
    const char *mask = getenv("QAREP_CPUID_MASK");
    if (mask == NULL) return;
    size_t v = 0;
    while (v < sizeof views / sizeof views[0] && strcmp(mask, views[v].name) != 0) v++;
    if (v == sizeof views / sizeof views[0]) {
        fprintf(stderr, "cpuid-mask: QAREP_CPUID_MASK must be avx2, avxvnni, avx512bw or avx512vnni, not %s\n", mask);
        exit(2);
    }
    clear = views[v].clear;
    if (real_sigaction == NULL) real_sigaction = (int (*)(int, const struct sigaction *, struct sigaction *))dlsym(RTLD_NEXT, "sigaction");
    struct sigaction action = {.sa_sigaction = on_segv, .sa_flags = SA_SIGINFO | SA_NODEFER};
    sigemptyset(&action.sa_mask);
    real_sigaction(SIGSEGV, &action, NULL);
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr, "cpuid-mask: this kernel or CPU has no CPUID faulting (arch_prctl ARCH_SET_CPUID)\n");
        exit(2);
    }
    atexit(report);
}
