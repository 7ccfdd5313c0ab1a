// A team that shrinks when a member is late (qk_team_history in qarep_kernels.h).
#ifndef QK_TEAM_PACE_H
#define QK_TEAM_PACE_H

#include <stdint.h>

#include "qarep_kernels.h"

// Threads for a run of images that go layer by layer (fewer images than threads): `threads`, or 1 while a
// recent team run was held up by a late member.
int32_t qk_team_pace_threads(const qk_team_history *history, int32_t threads);
// After a layer-by-layer run on `threads` threads whose longest wait at a barrier was `longest_wait` seconds.
void qk_team_pace_record(qk_team_history *history, int32_t threads, double longest_wait);

#endif
