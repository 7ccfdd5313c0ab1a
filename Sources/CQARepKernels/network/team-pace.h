// A team that shrinks, or stops waiting, when a member is late (qk_team_history in qarep_kernels.h).
#ifndef QK_TEAM_PACE_H
#define QK_TEAM_PACE_H

#include <stdbool.h>
#include <stdint.h>

#include "qarep_kernels.h"

// How a run of images that go layer by layer (fewer images than threads) runs: the whole team; or, while a
// recent team run was held up by a late member, rescue mode or one thread, whichever has been faster in
// this period (each is tried first). `rescue_possible`: the path and team allow rescue mode.
typedef enum qk_pace_mode { QK_PACE_TEAM, QK_PACE_SOLO, QK_PACE_RESCUE } qk_pace_mode;
qk_pace_mode qk_team_pace_mode(qk_team_history *history, int32_t threads, bool rescue_possible);
// Before a run in `mode` that was not the pace's choice (a test or bench forcing rescue mode); the pace's
// choice calls it itself.
void qk_team_pace_begin(qk_team_history *history, qk_pace_mode mode, int32_t threads);
// After a layer-by-layer team run on `threads` threads that took `run_seconds` and whose longest wait at a
// barrier was `longest_wait` seconds.
void qk_team_pace_record(qk_team_history *history, int32_t threads, double longest_wait, double run_seconds);
// After a run in a loaded period (solo or rescue mode) that took `seconds` for `batch` images.
void qk_team_pace_record_loaded(qk_team_history *history, qk_pace_mode mode, double seconds, int32_t batch);

#endif
