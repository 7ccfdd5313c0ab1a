// The timing harness of the peak measurements: each path's loop (in its folder) runs bursts of a fixed
// number of its dot-product instructions, and the MEDIAN burst's rate counts, i.e. the rate at the clock
// the core runs at most of the time. The fastest burst catches brief turbo steps the kernels cannot count
// on; preempted bursts on a busy machine are the slow tail, which the median ignores
// (docs/performance.md, "Peak").
#include "peak/peak.h"

#include <stdlib.h>
#include <time.h>

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { QK_PEAK_MAX_BURSTS = 1 << 17 };

void qk_bursts_begin(qk_bursts *bursts) {
    bursts->rates = malloc(QK_PEAK_MAX_BURSTS * sizeof(float));
    bursts->count = 0;
    bursts->fastest = 0.0;
    bursts->start = bursts->burst_start = now_seconds();
}

double qk_bursts_end_one(qk_bursts *bursts, double operations) {
    const double now = now_seconds();
    const double elapsed = now - bursts->burst_start;
    if (elapsed > 0.0) {
        const double rate = operations / elapsed;
        if (rate > bursts->fastest) bursts->fastest = rate;
        if (bursts->rates != NULL && bursts->count < QK_PEAK_MAX_BURSTS) bursts->rates[bursts->count++] = (float)rate;
    }
    bursts->burst_start = now;
    return now - bursts->start;
}

static int compare_floats(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

double qk_bursts_finish(qk_bursts *bursts) {
    double rate = bursts->fastest;
    if (bursts->rates != NULL && bursts->count > 0) {
        qsort(bursts->rates, (size_t)bursts->count, sizeof(float), compare_floats);
        rate = bursts->rates[bursts->count / 2];
    }
    free(bursts->rates);
    return rate;
}

volatile int32_t qk_peak_sink;

double qk_measure_peak_gmacs(qk_path path, double seconds) {
    const qk_path_config *config = qk_supported_path_config(path);
    if (config == NULL || config->peak_gmacs == NULL) return 0.0;
    if (!(seconds > 0.0)) seconds = 0.0;
    if (seconds > 10.0) seconds = 10.0;
    return config->peak_gmacs(seconds);
}

const char *qk_path_peak_mix(qk_path path) {
    const qk_path_config *config = qk_path_config_of(path);
    return config != NULL ? config->peak_mix : NULL;
}
