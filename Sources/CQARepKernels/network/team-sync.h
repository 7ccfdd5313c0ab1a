// Synchronization of the team that runs a whole network in one parallel region (network.c).
#ifndef QK_TEAM_SYNC_H
#define QK_TEAM_SYNC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/qk-internal.h"

// Work claiming. Each member owns a contiguous share of a step's items (the static split, which keeps a
// thread on the rows it wrote in the layer before) and takes them in order through its own counter; when
// its share is done it takes what is left of the others'. On a quiet machine nothing is taken over; when
// another process holds a core, the member still running does the rest of the layer (docs/performance.md,
// "Work claiming").
// Counters come in two sets used by alternate steps: a member resets its own counter of the next step
// while the current one runs, and the barrier between steps orders the reset before any use.
typedef struct qk_team_counter {
    _Alignas(64) _Atomic int64_t taken;
    // In the first set only: the longest this member waited at a step's barrier in this run (seconds),
    // written by the member alone and read after the region (network/team-pace.c).
    double longest_wait;
    // In the first set only: when this member left its last step; the caller's wait in OpenMP's join, from
    // the earliest of these, counts as a wait too (a member off its core there held the run up as long).
    double finished;
    // In the first set only: how long this member was off its core during the run (its wall time less its
    // thread's CPU time; members spin, never sleep, in a run). Another process that shares the core slows the
    // member evenly, with no long wait at any one barrier, and this still sees it.
    double off_core;
} qk_team_counter;

typedef struct qk_team_work {
    qk_team_counter *counters;  // [2][size]
} qk_team_work;

double qk_monotonic_seconds(void);
// One step of a spin wait: the CPU's hint that this is one (frees the core's shared resources a little).
static inline void qk_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}
// CPU time of the calling thread, in seconds.
double qk_thread_cpu_seconds(void);
// A test's late member (qk_testing_set_straggler) sleeps here; others return at once.
void qk_team_straggle(const qk_team *team);

// Starts a step: resets this member's counter of the step after it.
void qk_team_step_begin(const qk_team *team);
// Ends a step: waits for every member, then moves on to the next step.
void qk_team_step_end(qk_team *team);

// A member's pass over a step's items. `share` gives any member's [first, end).
typedef void (*qk_share_fn)(const void *context, const qk_team *member, int64_t *first, int64_t *end);
// The output an item writes: rows [first_row, end_row) of image `image`, channels [first_channel,
// end_channel) of each of their pixels (rescue mode copies it from the member's buffer).
typedef struct qk_item_region {
    int32_t image, first_row, end_row, first_channel, end_channel;
} qk_item_region;
typedef void (*qk_region_fn)(const void *context, int64_t item, qk_item_region *region);
typedef struct qk_item_claim {
    const void *context;
    qk_share_fn share;
    qk_region_fn region;
    int32_t victim;       // whose share the next item comes from; the member itself first
    int64_t first, end;   // the victim's share
    bool started;
    // Rescue mode: the step's items, and the item last handed out (-1: none), committed at the next call;
    // `visited` counts the shares whose fresh items are all claimed (the member's own first).
    int64_t items, pending;
    int32_t visited;
    double pending_start;
} qk_item_claim;

void qk_claim_begin(qk_item_claim *claim, const qk_team *team, const void *context, qk_share_fn share,
                    qk_region_fn region);
// The next item this member runs; false when every share is exhausted. *own tells whether it came from the
// member's own share (its prefetch plan applies) or was taken over.
bool qk_claim_next(qk_item_claim *claim, const qk_team *team, int64_t *item, bool *own);

#endif
