// Keeping a team's workers on CPUs of their own, none on the caller's (docs/performance.md, "Under load").
// When another process holds a core, the guest scheduler here (and any scheduler that packs threads) often
// put both members on the free core, where they shared it; bound one per CPU, the member on the busy core
// still gets its share of that core, and rescue mode lets the other take over what it is late with.
#ifndef QK_TEAM_BINDING_H
#define QK_TEAM_BINDING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

// The CPUs a run's workers may take, one each. Inactive (nobody is bound) unless the team has exactly as many
// threads as the caller may use CPUs (fewer leave the scheduler free cores to balance with; more share CPUs
// anyway), on Linux, with no OpenMP affinity asked for in the environment, and unless QAREP_BIND_THREADS=0.
// The caller is never bound: bound to the busy core, it could not leave the run before its slice came round
// (8 ms runs where one thread takes 6.5), while unbound the scheduler moves it. The OpenMP runtime's workers
// stay bound between runs, as OMP_PROC_BIND leaves them: unbound, a worker spinning after a run (libomp spins
// for 200 ms) was moved onto the caller's core and slowed it.
// A worker bound in an earlier run is given the caller's affinity back in a run that binds nobody.
typedef struct qk_team_binding {
    bool active;
    uint64_t allowed;        // CPUs 0-63; a caller allowed any CPU above 63 is not bound
    _Atomic uint64_t taken;  // the caller's CPU at the start, and the CPUs workers took
    bool has_caller_cpus;
    uint64_t caller_cpus[16];  // the caller's affinity (a cpu_set_t's bytes)
} qk_team_binding;

// Before the region, on the calling thread.
void qk_team_binding_plan(qk_team_binding *binding, int32_t threads);
// Each member, first thing in the region (the caller returns at once): a worker keeps the CPU it is on if no
// one has taken it, else moves to the first free one.
void qk_team_bind(qk_team_binding *binding);
// After the region, on the calling thread.
void qk_team_binding_end(const qk_team_binding *binding);

#endif
