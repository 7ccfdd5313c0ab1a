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

typedef enum { VIEW_AVX2, VIEW_AVXVNNI, VIEW_AVX512BW, VIEW_AVX512VNNI } cpu_view;
static cpu_view view;
static volatile long emulated;
static struct sigaction chained;  // the program's own SIGSEGV handler, called for every other fault
static int (*real_sigaction)(int, const struct sigaction *, struct sigaction *);

static void set_faulting(int on) { syscall(SYS_arch_prctl, ARCH_SET_CPUID, on ? 0 : 1); }

static void mask_leaf(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
    if (view == VIEW_AVX512VNNI) {
        // Leaf 7.0 EDX: AVX512-FP16 (23), AMX-BF16, -TILE, -INT8 (22, 24, 25); 7.1 EAX: AVX-VNNI (4), AMX-FP16
        // (21); 7.1 EDX as below.
        if (leaf == 7 && subleaf == 0) r[3] &= ~((1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
        if (leaf == 7 && subleaf == 1) r[0] &= ~((1u << 4) | (1u << 21)), r[3] &= ~((1u << 4) | (1u << 8) | (1u << 10) | (1u << 19));
        if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) r[0] = r[1] = r[2] = r[3] = 0;
        return;
    }
    if (leaf == 7 && subleaf == 0) {
        // EBX: AVX-512 F DQ IFMA PF ER CD BW VL (Skylake-SP keeps F DQ CD BW VL); ECX: VBMI VBMI2 VNNI BITALG
        // VPOPCNTDQ; EDX: 4VNNIW 4FMAPS VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8.
        const uint32_t skylake_sp = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
        r[1] &= ~(((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31)) &
                  (view == VIEW_AVX512BW ? ~skylake_sp : ~0u));
        r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
        r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25));
    } else if (leaf == 7 && subleaf == 1) {
        // EAX: AVX-VNNI (4, kept for the avxvnni view), AVX512-BF16 (5), AMX-FP16 (21); EDX: AVX-VNNI-INT8 (4),
        // AMX-COMPLEX (8), AVX-VNNI-INT16 (10), AVX10 (19).
        r[0] &= ~((view == VIEW_AVXVNNI ? 0u : 1u << 4) | (1u << 5) | (1u << 21));
        r[3] &= ~((1u << 4) | (1u << 8) | (1u << 10) | (1u << 19));
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        r[0] = r[1] = r[2] = r[3] = 0;  // AMX palettes and AVX10's leaf
    }
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
    if (strcmp(mask, "avx2") == 0) view = VIEW_AVX2;
    else if (strcmp(mask, "avxvnni") == 0) view = VIEW_AVXVNNI;
    else if (strcmp(mask, "avx512bw") == 0) view = VIEW_AVX512BW;
    else if (strcmp(mask, "avx512vnni") == 0) view = VIEW_AVX512VNNI;
    else {
        fprintf(stderr, "cpuid-mask: QAREP_CPUID_MASK must be avx2, avxvnni, avx512bw or avx512vnni, not %s\n", mask);
        exit(2);
    }
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
