// When another process holds one of the cores, the member of a layer-by-layer team that runs there is
// descheduled for a time slice (about 1.5 ms here) now and then, often in the middle of an item that the
// others then wait for at the step's barrier, and its team cannot leave the run (OpenMP's join) until it
// runs again. Claiming (team-sync.c) moves the items it has not started; these waits remain, and made two
// threads slower than one (docs/performance.md, "Under load"). So a session that sees a member keep the
// others waiting runs on one thread for a while, and the kernel moves that lone thread to the free core;
// then it tries the whole team again, for twice as long each time the load is still there.
// Runs of at least as many images as threads are left alone: each thread takes whole images, and a late one
// simply takes fewer.
#include "network/team-pace.h"
#include "network/team-sync.h"

// A wait this long is no uneven split of a step (tens of microseconds) but a member off its core.
#define QK_LATE_SECONDS 300e-6
#define QK_SOLO_FIRST_SECONDS 0.25
#define QK_SOLO_LONGEST_SECONDS 4.0
// A lone late run also happens on a quiet machine (an interrupt, a VM's stolen slice); going solo for it cost
// 2-thread batch 1 its second thread in 2 of 8 quiet rounds (A0: 3.3 -> 6.4 ms medians). Load makes runs late
// one after another.
#define QK_LATE_RUNS_FOR_SOLO 2

int32_t qk_team_pace_threads(const qk_team_history *history, int32_t threads) {
    if (history == NULL || threads < 2) return threads;
    return qk_monotonic_seconds() < history->solo_until ? 1 : threads;
}

void qk_team_pace_record(qk_team_history *history, int32_t threads, double longest_wait) {
    if (history == NULL || threads < 2) return;
    if (longest_wait <= QK_LATE_SECONDS) {
        history->solo_length = 0.0;
        history->late_in_a_row = 0;
        return;
    }
    history->late_runs++;
    if (++history->late_in_a_row < QK_LATE_RUNS_FOR_SOLO) return;
    double length = history->solo_length > 0.0 ? 2.0 * history->solo_length : QK_SOLO_FIRST_SECONDS;
    if (length > QK_SOLO_LONGEST_SECONDS) length = QK_SOLO_LONGEST_SECONDS;
    history->solo_length = length;
    history->solo_until = qk_monotonic_seconds() + length;
}
