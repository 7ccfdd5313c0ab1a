// The timing harness that each path's peak loop (qk_path_config.peak_gmacs) runs in.
#ifndef QK_PEAK_H
#define QK_PEAK_H

#include "common/qk-path.h"

// Instructions per burst of a peak loop: about 30 us at a few GHz.
enum { QK_PEAK_INNER = 16384 };

// Rates (operations per second) of the bursts so far; without memory for them, only the fastest.
typedef struct qk_bursts {
    float *rates;
    int32_t count;
    double fastest, start, burst_start;
} qk_bursts;

void qk_bursts_begin(qk_bursts *bursts);
// Ends a burst of `operations` and starts the next; returns the seconds since the first began.
double qk_bursts_end_one(qk_bursts *bursts, double operations);
// The median rate, or the fastest when the rates could not be kept; frees the rates.
double qk_bursts_finish(qk_bursts *bursts);

// Loops fold their accumulators in here, so the compiler cannot drop the work.
extern volatile int32_t qk_peak_sink;

#endif  // QK_PEAK_H
