#include "network/team-sync.h"
#include "network/team-rescue.h"

#include <time.h>

double qk_monotonic_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

double qk_thread_cpu_seconds(void) {
    struct timespec now;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now) != 0) return 0.0;
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static _Atomic int32_t straggler_member = -1, straggler_microseconds = 0;
static _Atomic int64_t taken_over_items = 0, straggles = 0;

void qk_testing_set_straggler(int32_t member, int32_t microseconds) {
    atomic_store(&straggler_microseconds, microseconds);
    atomic_store(&straggler_member, member);
}

int64_t qk_testing_taken_over_items(void) {
    return atomic_exchange(&taken_over_items, 0);
}

int64_t qk_testing_straggles(void) {
    return atomic_exchange(&straggles, 0);
}

void qk_team_straggle(const qk_team *team) {
    if (atomic_load_explicit(&straggler_member, memory_order_relaxed) != team->member) return;
    const int32_t microseconds = atomic_load_explicit(&straggler_microseconds, memory_order_relaxed);
    atomic_fetch_add(&straggles, 1);  // before the sleep, so that a test sees it while the member sleeps
    const struct timespec pause = {microseconds / 1000000, (long)(microseconds % 1000000) * 1000};
    nanosleep(&pause, NULL);
}

static qk_team_counter *counter_of(const qk_team *team, int32_t step, int32_t member) {
    return &team->work->counters[(size_t)(step & 1) * (size_t)team->size + (size_t)member];
}

static bool claiming(const qk_team *team) {
    return team->work != NULL && team->work->counters != NULL;
}

void qk_team_step_begin(const qk_team *team) {
    if (!claiming(team)) return;
    atomic_store_explicit(&counter_of(team, team->step + 1, team->member)->taken, 0, memory_order_relaxed);
}

// OpenMP's barrier: a custom one (spin, then futex) was no faster quiet and worse under load
// (docs/performance.md, "Tried and not kept").
void qk_team_step_end(qk_team *team) {
    // A member running images alone inside a larger region (network.c) must not wait for the others.
    if (team->size > 1) {
        // Timed when counting: a long wait means another member was kept off its core (team-pace.c).
        const double start = claiming(team) ? qk_monotonic_seconds() : 0.0;
#pragma omp barrier
        if (claiming(team)) {
            const double waited = qk_monotonic_seconds() - start;
            qk_team_counter *mine = &team->work->counters[team->member];
            if (waited > mine->longest_wait) mine->longest_wait = waited;
        }
    }
    team->step++;
}

static void load_share(qk_item_claim *claim, const qk_team *team) {
    qk_team victim = *team;
    victim.member = claim->victim;
    claim->share(claim->context, &victim, &claim->first, &claim->end);
}

void qk_claim_begin(qk_item_claim *claim, const qk_team *team, const void *context, qk_share_fn share,
                    qk_region_fn region) {
    claim->context = context;
    claim->share = share;
    claim->region = region;
    claim->victim = team->member;
    claim->started = false;
    claim->pending = -1;
    load_share(claim, team);
    if (team->rescue != NULL) qk_rescue_claim_begin(claim, team);
}

bool qk_claim_next(qk_item_claim *claim, const qk_team *team, int64_t *item, bool *own) {
    if (team->rescue != NULL) return qk_rescue_claim_next(claim, team, item, own);
    if (!claiming(team)) {
        // No shared counters: the member's own share, in order.
        if (claim->first >= claim->end) return false;
        *item = claim->first++;
        *own = true;
        return true;
    }
    if (!claim->started) {
        claim->started = true;
        qk_team_straggle(team);
    }
    for (int32_t visited = 0; visited < team->size; visited++) {
        if (claim->first < claim->end) {
            const int64_t taken = atomic_fetch_add_explicit(&counter_of(team, team->step, claim->victim)->taken, 1,
                                                            memory_order_relaxed);
            if (claim->first + taken < claim->end) {
                *item = claim->first + taken;
                *own = claim->victim == team->member;
                if (!*own) atomic_fetch_add_explicit(&taken_over_items, 1, memory_order_relaxed);
                return true;
            }
        }
        claim->victim = (claim->victim + 1) % team->size;
        load_share(claim, team);
    }
    return false;
}
