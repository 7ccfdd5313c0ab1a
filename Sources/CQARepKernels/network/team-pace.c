// When another process holds one of the cores, the member of a layer-by-layer team that runs there is
// descheduled for a time slice (about 1.5 ms here) now and then, often in the middle of an item that the
// others then wait for at the step's barrier, and its team cannot leave the run (OpenMP's join) until it
// runs again. Claiming (team-sync.c) moves the items it has not started; these waits remain, and made two
// threads slower than one (docs/performance.md, "Under load"). So a session that sees a member keep the
// others waiting runs a loaded period: on one thread (which the kernel may move to the free core) or in
// rescue mode (team-rescue.h, where nobody waits), whichever it measures faster; then it tries the whole
// team again, for twice as long each time the load is still there.
// Runs of at least as many images as threads are left alone: each thread takes whole images, and a late one
// simply takes fewer.
#include "network/team-pace.h"
#include "network/team-sync.h"

// A wait this long is no uneven split of a step (tens of microseconds) but a member off its core. Layers of
// several milliseconds (B2's, B3's) split to within a few percent still leave waits of a few hundred
// microseconds, and one time slice off core costs a long run little: there a wait is late from 1/32 of the
// run (docs/performance.md, "Waits of big layers").
#define QK_LATE_SECONDS 300e-6
#define QK_LATE_SHARE_OF_RUN (1.0 / 32.0)
#define QK_SOLO_FIRST_SECONDS 0.25
#define QK_SOLO_LONGEST_SECONDS 4.0
// A lone late run also happens on a quiet machine (an interrupt, a VM's stolen slice); going solo for it cost
// 2-thread batch 1 its second thread in 2 of 8 quiet rounds (A0: 3.3 -> 6.4 ms medians). Load makes runs late
// one after another.
#define QK_LATE_RUNS_FOR_SOLO 2

// libomp's workers spin for KMP_BLOCKTIME (200 ms by default) after a team run before they sleep. A session
// that has just gone solo would share its core with that spinning for its first 200 ms (A0 batch 1 under
// bench --busy-core: 2 threads 3-6% slower than 1), so an empty region with a zero block time sends them to
// sleep at once. Weak: libgomp (the aarch64 build's runtime) has no such call, and spins far shorter.
extern int kmp_get_blocktime(void) __attribute__((weak));
extern void kmp_set_blocktime(int milliseconds) __attribute__((weak));

static void park_idle_workers(int32_t threads) {
    if (kmp_get_blocktime == NULL || kmp_set_blocktime == NULL) return;
    const int blocktime = kmp_get_blocktime();
    kmp_set_blocktime(0);
#pragma omp parallel num_threads(threads)
    {
    }
    kmp_set_blocktime(blocktime);
}

// Runs of each mode a loaded period times before it keeps to the faster; the first of each is not
// counted (it may make rescue mode's threads and touch its memory first, or park libomp's workers).
#define QK_LOADED_TRIAL_RUNS 4

// Seconds per image of a mode's counted runs in this loaded period.
static double loaded_mean(const qk_team_history *history, qk_pace_mode mode) {
    return history->loaded_seconds[mode] / (history->loaded_runs[mode] - 1);
}

qk_pace_mode qk_team_pace_mode(qk_team_history *history, int32_t threads, bool rescue_possible) {
    if (history == NULL || threads < 2) return QK_PACE_TEAM;
    if (qk_monotonic_seconds() >= history->solo_until) {
        history->last_mode = QK_PACE_TEAM;
        return QK_PACE_TEAM;
    }
    qk_pace_mode mode = QK_PACE_SOLO;
    if (rescue_possible) {
        const int32_t *runs = history->loaded_runs;
        if (runs[QK_PACE_RESCUE] < QK_LOADED_TRIAL_RUNS) mode = QK_PACE_RESCUE;
        else if (runs[QK_PACE_SOLO] < QK_LOADED_TRIAL_RUNS) mode = QK_PACE_SOLO;
        else mode = loaded_mean(history, QK_PACE_RESCUE) < loaded_mean(history, QK_PACE_SOLO) ? QK_PACE_RESCUE : QK_PACE_SOLO;
    }
    qk_team_pace_begin(history, mode, threads);
    return mode;
}

void qk_team_pace_begin(qk_team_history *history, qk_pace_mode mode, int32_t threads) {
    // Without the OpenMP team after a run with it: libomp's idle workers would spin beside the lone thread, or
    // beside rescue mode's partners on the CPUs they are bound to.
    if (mode != QK_PACE_TEAM && history->last_mode == QK_PACE_TEAM) park_idle_workers(threads);
    history->last_mode = mode;
}

void qk_team_pace_record_loaded(qk_team_history *history, qk_pace_mode mode, double seconds, int32_t batch) {
    if (history == NULL || (mode != QK_PACE_SOLO && mode != QK_PACE_RESCUE) || batch < 1) return;
    if (history->loaded_runs[mode]++ > 0) history->loaded_seconds[mode] += seconds / batch;
}

void qk_team_pace_record(qk_team_history *history, int32_t threads, double longest_wait, double run_seconds) {
    if (history == NULL || threads < 2) return;
    // A session's first team run starts the OpenMP workers and touches its scratch for the first time, so a
    // member is often late there on a quiet machine; judged, it made the next run late twice in a row and sent
    // a quiet 2-thread session solo (bench's quiet A0 batch 1: 6.07 ms instead of 3.4).
    if (history->team_runs++ == 0) return;
    const double late = run_seconds * QK_LATE_SHARE_OF_RUN > QK_LATE_SECONDS ? run_seconds * QK_LATE_SHARE_OF_RUN : QK_LATE_SECONDS;
    if (longest_wait <= late) {
        history->solo_length = 0.0;
        history->late_in_a_row = 0;
        return;
    }
    history->late_runs++;
    // Right after a loaded period (no team run has kept pace since), one late run says the load is still
    // there: two more would cost the time of two held-up runs each period.
    const bool load_went_on = history->solo_length > 0.0;
    if (++history->late_in_a_row < (load_went_on ? 1 : QK_LATE_RUNS_FOR_SOLO)) return;
    double length = load_went_on ? 2.0 * history->solo_length : QK_SOLO_FIRST_SECONDS;
    if (length > QK_SOLO_LONGEST_SECONDS) length = QK_SOLO_LONGEST_SECONDS;
    history->solo_length = length;
    history->solo_until = qk_monotonic_seconds() + length;
    // A new bout of load measures its modes afresh (it may not be the last one's). A period that continues
    // one keeps what the last period measured, but times the slower mode twice more, its earlier runs then
    // weighing as one, so that a choice made on unlucky runs does not last the whole bout.
    if (!load_went_on) {
        for (int m = 0; m < 3; m++) {
            history->loaded_runs[m] = 0;
            history->loaded_seconds[m] = 0.0;
        }
        return;
    }
    if (history->loaded_runs[QK_PACE_SOLO] < 2 || history->loaded_runs[QK_PACE_RESCUE] < 2) return;
    const qk_pace_mode slower =
        loaded_mean(history, QK_PACE_RESCUE) >= loaded_mean(history, QK_PACE_SOLO) ? QK_PACE_RESCUE : QK_PACE_SOLO;
    history->loaded_seconds[slower] = loaded_mean(history, slower);
    history->loaded_runs[slower] = 2;
}
