#if defined(__linux__)
#define _GNU_SOURCE
#include <sched.h>
#endif
#include "network/team-binding.h"
#include "qarep_kernels.h"

#include <stdlib.h>
#include <string.h>

static _Atomic uint64_t bound_cpus = 0;

uint64_t qk_testing_bound_cpus(void) {
    return atomic_exchange(&bound_cpus, 0);
}

#if defined(__linux__)

_Static_assert(sizeof(cpu_set_t) <= sizeof(((qk_team_binding *)0)->caller_cpus), "a cpu_set_t fits");

// Whether to bind: not when the user asked OpenMP (or its runtimes) for an affinity, nor when turned off.
static bool binding_wanted(void) {
    static const char *const others[] = {"OMP_PROC_BIND", "OMP_PLACES", "KMP_AFFINITY", "GOMP_CPU_AFFINITY"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        if (getenv(others[i]) != NULL) return false;
    const char *ours = getenv("QAREP_BIND_THREADS");
    return ours == NULL || strcmp(ours, "0") != 0;
}

// Takes `cpu` if it is allowed and free.
static bool take(qk_team_binding *binding, int cpu) {
    if (cpu < 0 || cpu >= 64 || (binding->allowed >> cpu & 1) == 0) return false;
    const uint64_t bit = UINT64_C(1) << cpu;
    return (atomic_fetch_or(&binding->taken, bit) & bit) == 0;
}

// Per thread: the run's caller (which is never bound), and the one CPU a worker is bound to (-1: none), so
// that a worker still where it was costs no system call.
static _Thread_local bool is_caller;
static _Thread_local int bound_to = -1;

// The CPUs the calling thread may use, into `set`, and those of them below 64 as a mask; false if that
// cannot be read.
static bool caller_cpus(cpu_set_t *set, uint64_t *below_64) {
    if (sched_getaffinity(0, sizeof *set, set) != 0) return false;
    *below_64 = 0;
    for (int cpu = 0; cpu < 64; cpu++)
        if (CPU_ISSET(cpu, set)) *below_64 |= UINT64_C(1) << cpu;
    return true;
}

void qk_team_binding_plan(qk_team_binding *binding, int32_t threads) {
    binding->active = false;
    binding->allowed = 0;
    atomic_init(&binding->taken, 0);
    binding->has_caller_cpus = false;
    if (threads < 2) return;
    cpu_set_t *set = (cpu_set_t *)binding->caller_cpus;
    binding->has_caller_cpus = caller_cpus(set, &binding->allowed);
    if (!binding->has_caller_cpus || CPU_COUNT(set) != threads || __builtin_popcountll(binding->allowed) != threads ||
        !binding_wanted())
        return;
    // The caller's CPU is the one no worker takes.
    if (!take(binding, sched_getcpu())) return;
    binding->active = true;
    is_caller = true;
}

void qk_team_bind(qk_team_binding *binding) {
    if (is_caller) return;
    if (!binding->active) {
        if (bound_to >= 0 && binding->has_caller_cpus &&
            sched_setaffinity(0, sizeof(cpu_set_t), (const cpu_set_t *)binding->caller_cpus) == 0)
            bound_to = -1;
        return;
    }
    int cpu = sched_getcpu();
    if (!take(binding, cpu)) {
        cpu = -1;
        for (int c = 0; c < 64 && cpu < 0; c++)
            if (take(binding, c)) cpu = c;
        if (cpu < 0) return;  // more members than CPUs: the plan's count rules it out; never bind two together
    }
    if (cpu != bound_to) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        bound_to = sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
    }
    if (bound_to == cpu) atomic_fetch_or_explicit(&bound_cpus, UINT64_C(1) << cpu, memory_order_relaxed);
}

void qk_team_binding_end(const qk_team_binding *binding) {
    (void)binding;
    is_caller = false;
}

int32_t qk_testing_binding_threads(void) {
    cpu_set_t set;
    uint64_t below_64;
    if (!binding_wanted() || !caller_cpus(&set, &below_64) || __builtin_popcountll(below_64) != CPU_COUNT(&set)) return 0;
    return CPU_COUNT(&set);
}

#else

void qk_team_binding_plan(qk_team_binding *binding, int32_t threads) {
    (void)threads;
    binding->active = false;
    binding->allowed = 0;
    atomic_init(&binding->taken, 0);
    binding->has_caller_cpus = false;
}

void qk_team_bind(qk_team_binding *binding) {
    (void)binding;
}

void qk_team_binding_end(const qk_team_binding *binding) {
    (void)binding;
}

int32_t qk_testing_binding_threads(void) {
    return 0;
}

#endif
