// Rescue mode's team without a join (docs/performance.md, "Under load"). An OpenMP region cannot end before
// every member has reached its end, so a member kept off its core held the caller there for up to a time slice
// after the work was done. Here the caller's partners are threads of the session's own, and the caller
// returns as soon as every item is committed; a partner still inside a run finishes it later, alone.
// What a late partner may still touch is kept apart from what the caller goes on with: each run has a set of
// its own (its memory and its job), reused only once no partner is inside it. A partner is inside one set at a
// time, so one set more than there are partners always leaves one free: the caller never waits.
#ifndef QK_TEAM_CREW_H
#define QK_TEAM_CREW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// Partners a crew may have (a set's index fits in three bits).
enum { QK_CREW_MAX_PARTNERS = 6 };

typedef struct qk_crew qk_crew;
// A partner's part of the run posted on a set: `memory` is the set's, as the caller left it when posting.
typedef void (*qk_crew_part_fn)(uint8_t *memory, int32_t member);

// A crew of `partners` threads (members 1...partners of each run; the caller is member 0), or NULL if the
// threads or memory cannot be had.
qk_crew *qk_crew_create(int32_t partners, qk_crew_part_fn part);
// Waits for every partner to leave its run, then stops and frees them; NULL is ignored. In a process forked
// from the one that made the crew, its threads do not exist (fork copies only the calling thread): the crew's
// memory is freed without signalling or joining them, whose lock and condition variable may have been
// copied in use.
void qk_crew_destroy(qk_crew *crew);
int32_t qk_crew_partners(const qk_crew *crew);
// Whether the crew's threads are this process's (false in a child forked after the crew was made).
bool qk_crew_is_here(const qk_crew *crew);

// A set no partner is inside, which none will enter until it is posted (with one set more than partners,
// there is one: -1 only if that ever failed, and the caller then runs alone).
int32_t qk_crew_claim_set(qk_crew *crew);
// The claimed set's memory, at least `bytes` (64-byte aligned; kept between runs, grown when short), or NULL.
uint8_t *qk_crew_set_memory(qk_crew *crew, int32_t set, size_t bytes);
// Partners start on the claimed set (its memory holds the job).
void qk_crew_post(qk_crew *crew, int32_t set);
// The caller is done with the run: every item is committed. Partners not yet in it skip it.
void qk_crew_finish(qk_crew *crew, int32_t set);

#endif
