// Measured multiply-accumulate ceiling of one core, the yardstick the benchmark reports kernel speed
// against. Twelve independent accumulators hide the dot-product latency (about 5 cycles) on CPUs that
// issue two of them per cycle, so the loop is bound by throughput alone.
//
// What it reports: the time is cut into bursts of about 30 us and the MEDIAN burst's rate counts, i.e. the
// rate at the clock the core runs at most of the time. Measured on the 2-core KVM Xeon (1 s, ~30000
// bursts): median 371 GMAC/s (2 x 64 MACs per cycle at 2.9 GHz), p90 372-383, fastest 397 (3.1 GHz).
// The fastest burst, which this used to report, catches brief turbo steps the kernels cannot count on
// (their own fastest runs are faster by the same 7%), so it overstated the peak by 3-7% and varied from
// run to run with how many such steps the second happened to contain. Preempted bursts on a busy machine
// are the slow tail, which the median ignores as long as they are fewer than half.
#include "qk-internal.h"

#include <stdlib.h>
#include <time.h>

#if QK_HAVE_X86
#include <immintrin.h>
#endif

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { QK_PEAK_INNER = 16384, QK_PEAK_MAX_BURSTS = 1 << 17 };

// Rates (operations per second) of the bursts so far; without memory for them, only the fastest.
typedef struct qk_bursts {
    float *rates;
    int32_t count;
    double fastest, start, burst_start;
} qk_bursts;

static void bursts_begin(qk_bursts *bursts) {
    bursts->rates = malloc(QK_PEAK_MAX_BURSTS * sizeof(float));
    bursts->count = 0;
    bursts->fastest = 0.0;
    bursts->start = bursts->burst_start = now_seconds();
}

// Ends a burst of `operations` and starts the next; returns the seconds since the first began.
static double bursts_end_one(qk_bursts *bursts, double operations) {
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

// The median rate, or the fastest when the rates could not be kept.
static double bursts_finish(qk_bursts *bursts) {
    double rate = bursts->fastest;
    if (bursts->rates != NULL && bursts->count > 0) {
        qsort(bursts->rates, (size_t)bursts->count, sizeof(float), compare_floats);
        rate = bursts->rates[bursts->count / 2];
    }
    free(bursts->rates);
    return rate;
}

// Folds the accumulators into a volatile sink so the compiler cannot drop the work.
static volatile int32_t peak_sink;

#if QK_HAVE_X86
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
static double peak_avx512vnni(double seconds) {
    volatile int32_t seed = 3;
    const __m512i a = _mm512_set1_epi32(seed * 0x01010101);
    const __m512i b = _mm512_set1_epi32((seed + 1) * 0x01010101);
    __m512i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i + seed);
    qk_bursts bursts;
    bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
            // Keeps the compiler from hoisting or merging iterations while costing nothing in the loop.
            __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[6]));
        }
    } while (bursts_end_one(&bursts, 12.0 * (double)QK_PEAK_INNER) < seconds);
    __m512i total = acc[0];
    for (int i = 1; i < 12; i++) total = _mm512_add_epi32(total, acc[i]);
    peak_sink = _mm512_reduce_add_epi32(total);
    return bursts_finish(&bursts) * 64.0 * 1e-9;
}

// Without VNNI the exact int8 path is vpmaddwd (16 products) plus vpaddd, counted as 16 MACs.
__attribute__((target("avx2,fma")))
static double peak_avx2(double seconds) {
    volatile int32_t seed = 3;
    const __m256i a = _mm256_set1_epi32(seed);
    const __m256i b = _mm256_set1_epi32(seed + 1);
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_epi32(i + seed);
    qk_bursts bursts;
    bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 12; i++) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a, b));
            __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[6]));
        }
    } while (bursts_end_one(&bursts, 12.0 * (double)QK_PEAK_INNER) < seconds);
    __m256i total = acc[0];
    for (int i = 1; i < 12; i++) total = _mm256_add_epi32(total, acc[i]);
    peak_sink = _mm256_extract_epi32(total, 0);
    return bursts_finish(&bursts) * 16.0 * 1e-9;
}
#endif

static double peak_scalar(double seconds) {
    volatile int32_t seed = 3;
    int32_t a = seed, b = seed + 1;
    int32_t acc[8] = {0};
    qk_bursts bursts;
    bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 8; i++) acc[i] += a * b;
            __asm__ volatile("" : "+r"(a), "+r"(b));
        }
    } while (bursts_end_one(&bursts, 8.0 * (double)QK_PEAK_INNER) < seconds);
    int32_t total = 0;
    for (int i = 0; i < 8; i++) total += acc[i];
    peak_sink = total;
    return bursts_finish(&bursts) * 1e-9;
}

double qk_measure_peak_gmacs_impl(double seconds) {
#if QK_HAVE_X86
    if (qk_path_supported(QK_PATH_AVX512VNNI)) return peak_avx512vnni(seconds);
    if (qk_path_supported(QK_PATH_AVX2)) return peak_avx2(seconds);
#endif
    return peak_scalar(seconds);
}
