// The crew (team-crew.h). A set changes hands through two words: the caller makes a set's `run` invalid and
// then reads its `inside`; a partner counts itself `inside` and then reads `run`. Both sequentially
// consistent, so either the partner sees the set withdrawn (and leaves without touching it) or the caller
// sees the partner (and takes another set). Posting publishes the set's job with release order.
#include "network/team-crew.h"
#include "network/team-sync.h"
#include "qarep_kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

// A partner with nothing to do spins this long before it sleeps: in a loaded period runs follow each other
// closely, and a sleeping partner costs each post a wake-up.
#define QK_CREW_SPIN_SECONDS 1e-3

typedef struct crew_set {
    _Alignas(64) _Atomic uint64_t run;  // the run posted on the set; 0: none (withdrawn)
    _Atomic int32_t inside;             // partners inside its run
    _Atomic bool finished;              // the caller is done with its run
    uint8_t *memory;
    size_t bytes;
} crew_set;

typedef struct partner {
    qk_crew *crew;
    int32_t member;
    pthread_t thread;
} partner;

struct qk_crew {
    qk_crew_part_fn part;
    uint32_t forks;               // fork_count when made: the partners are threads of that process
    int32_t partners, set_count;  // sets: one more than partners
    partner *threads;
    uint64_t runs;  // posted so far; the caller's alone
    // The latest post: run << 3 | set. Partners wait for it to change.
    _Alignas(64) _Atomic uint64_t posted;
    _Atomic bool stopping;
    _Atomic int32_t sleepers;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    crew_set sets[QK_CREW_MAX_PARTNERS + 1];
};

_Static_assert(QK_CREW_MAX_PARTNERS + 1 <= 8, "a set's index fits in the post's three low bits");

// Tests: partners inside a run's part, and crews whose threads exist, in the whole process.
static _Atomic int32_t partners_in_runs = 0, live_crews = 0;

// Forks the process has come from since its first crew (a child handler counts them): a crew made at another
// count belongs to an ancestor, whose threads fork did not copy. A count rather than the process id, which a
// grandchild could share with the ancestor.
static _Atomic uint32_t fork_count = 0;
static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;

static void count_fork_in_child(void) {
    atomic_fetch_add(&fork_count, 1);
}

static void install_fork_handler(void) {
    pthread_atfork(NULL, NULL, count_fork_in_child);
}

// The next post after `seen`, or `seen` itself once the crew is stopping.
static uint64_t wait_for_post(qk_crew *crew, uint64_t seen) {
    const double until = qk_monotonic_seconds() + QK_CREW_SPIN_SECONDS;
    for (int spins = 0;; spins++) {
        const uint64_t posted = atomic_load_explicit(&crew->posted, memory_order_acquire);
        if (posted != seen) return posted;
        if (atomic_load_explicit(&crew->stopping, memory_order_relaxed)) return seen;
        if (spins % 64 == 63 && qk_monotonic_seconds() >= until) break;
        qk_spin_pause();
    }
    pthread_mutex_lock(&crew->lock);
    atomic_fetch_add(&crew->sleepers, 1);
    uint64_t posted;
    while ((posted = atomic_load(&crew->posted)) == seen && !atomic_load(&crew->stopping))
        pthread_cond_wait(&crew->wake, &crew->lock);
    atomic_fetch_sub(&crew->sleepers, 1);
    pthread_mutex_unlock(&crew->lock);
    return posted;
}

static void *partner_main(void *argument) {
    partner *self = argument;
    qk_crew *crew = self->crew;
    uint64_t seen = 0;
    for (;;) {
        const uint64_t posted = wait_for_post(crew, seen);
        if (posted == seen) return NULL;  // stopping
        seen = posted;
        crew_set *set = &crew->sets[posted & 7];
        atomic_fetch_add(&set->inside, 1);
        if (atomic_load(&set->run) == posted >> 3 && !atomic_load(&set->finished)) {
            atomic_fetch_add_explicit(&partners_in_runs, 1, memory_order_relaxed);
            crew->part(set->memory, self->member);
            atomic_fetch_sub_explicit(&partners_in_runs, 1, memory_order_relaxed);
        }
        atomic_fetch_sub_explicit(&set->inside, 1, memory_order_release);
    }
}

static void stop(qk_crew *crew, int32_t started) {
    pthread_mutex_lock(&crew->lock);
    atomic_store(&crew->stopping, true);
    pthread_cond_broadcast(&crew->wake);
    pthread_mutex_unlock(&crew->lock);
    for (int32_t i = 0; i < started; i++) pthread_join(crew->threads[i].thread, NULL);
}

qk_crew *qk_crew_create(int32_t partners, qk_crew_part_fn part) {
    if (partners < 1 || partners > QK_CREW_MAX_PARTNERS || part == NULL) return NULL;
    pthread_once(&fork_handler_once, install_fork_handler);
    qk_crew *crew = aligned_alloc(64, qk_round_to_line(sizeof(qk_crew)));
    if (crew == NULL) return NULL;
    *crew = (qk_crew){.part = part, .forks = atomic_load(&fork_count), .partners = partners, .set_count = partners + 1};
    crew->threads = calloc((size_t)partners, sizeof(partner));
    if (crew->threads == NULL || pthread_mutex_init(&crew->lock, NULL) != 0) goto no_lock;
    if (pthread_cond_init(&crew->wake, NULL) != 0) goto no_condition;
    for (int32_t i = 0; i < partners; i++) {
        crew->threads[i] = (partner){crew, i + 1, 0};
        if (pthread_create(&crew->threads[i].thread, NULL, partner_main, &crew->threads[i]) != 0) {
            stop(crew, i);
            pthread_cond_destroy(&crew->wake);
            goto no_condition;
        }
    }
    atomic_fetch_add(&live_crews, 1);
    return crew;
no_condition:
    pthread_mutex_destroy(&crew->lock);
no_lock:
    free(crew->threads);
    free(crew);
    return NULL;
}

void qk_crew_destroy(qk_crew *crew) {
    if (crew == NULL) return;
    // In a forked child nobody is inside a set and nobody will be; the lock and the condition variable may
    // have been copied in use (a partner asleep on it), so they are neither taken nor destroyed.
    if (qk_crew_is_here(crew)) {
        stop(crew, crew->partners);
        pthread_cond_destroy(&crew->wake);
        pthread_mutex_destroy(&crew->lock);
    }
    atomic_fetch_sub(&live_crews, 1);
    for (int32_t s = 0; s < crew->set_count; s++) free(crew->sets[s].memory);
    free(crew->threads);
    free(crew);
}

int32_t qk_crew_partners(const qk_crew *crew) {
    return crew->partners;
}

bool qk_crew_is_here(const qk_crew *crew) {
    return crew->forks == atomic_load(&fork_count);
}

int32_t qk_crew_claim_set(qk_crew *crew) {
    // A partner leaving one set may be counted in a second, the latest posted, which it enters and leaves at
    // once (withdrawn, below): a pass can miss the free set, but once every set is withdrawn nobody enters
    // one, and the next pass sees only partners really inside, at most one set each.
    for (int pass = 0; pass < 3; pass++) {
        for (int32_t s = 0; s < crew->set_count; s++) {
            crew_set *set = &crew->sets[s];
            // Withdrawn first: a partner that enters from now on sees it and leaves. Its run, if any, is over.
            atomic_store(&set->run, 0);
            if (atomic_load(&set->inside) == 0) return s;
        }
    }
    return -1;
}

uint8_t *qk_crew_set_memory(qk_crew *crew, int32_t set, size_t bytes) {
    crew_set *own = &crew->sets[set];
    if (own->bytes < bytes) {
        free(own->memory);
        own->memory = aligned_alloc(64, qk_round_to_line(bytes));
        own->bytes = own->memory != NULL ? bytes : 0;
    }
    return own->memory;
}

void qk_crew_post(qk_crew *crew, int32_t set) {
    crew_set *own = &crew->sets[set];
    const uint64_t run = ++crew->runs;
    atomic_store_explicit(&own->finished, false, memory_order_relaxed);
    atomic_store(&own->run, run);
    atomic_store(&crew->posted, run << 3 | (uint64_t)set);
    if (atomic_load(&crew->sleepers) > 0) {
        pthread_mutex_lock(&crew->lock);
        pthread_cond_broadcast(&crew->wake);
        pthread_mutex_unlock(&crew->lock);
    }
}

void qk_crew_finish(qk_crew *crew, int32_t set) {
    atomic_store(&crew->sets[set].finished, true);
}

int32_t qk_testing_partners_in_runs(void) {
    return atomic_load(&partners_in_runs);
}

int32_t qk_testing_live_crews(void) {
    return atomic_load(&live_crews);
}
