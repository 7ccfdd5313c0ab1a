// Measured multiply-accumulate ceiling of one core, the yardstick the benchmark reports kernel speed
// against. Twelve independent accumulators hide the dot-product latency (about 5 cycles) on CPUs that
// issue two of them per cycle, so the loop is bound by throughput alone. The time is cut into short bursts
// and the fastest burst counts: on a shared machine, a preempted burst would otherwise understate the peak.
#include "qk-internal.h"

#include <time.h>

#if QK_HAVE_X86
#include <immintrin.h>
#endif

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

enum { QK_PEAK_INNER = 4096 };

// Ends a burst of `operations`: keeps the best rate (operations per second) and starts the next burst.
static double qk_best_burst(double *best, double operations, double *burst_start) {
    const double now = now_seconds();
    const double elapsed = now - *burst_start;
    if (elapsed > 0.0 && operations / elapsed > *best) *best = operations / elapsed;
    *burst_start = now;
    return now;
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
    const double start = now_seconds();
    double burst_start = start, best = 0.0, now = start;
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
            // Keeps the compiler from hoisting or merging iterations while costing nothing in the loop.
            __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[6]));
        }
        now = qk_best_burst(&best, 12.0 * (double)QK_PEAK_INNER, &burst_start);
    } while (now - start < seconds);
    __m512i total = acc[0];
    for (int i = 1; i < 12; i++) total = _mm512_add_epi32(total, acc[i]);
    peak_sink = _mm512_reduce_add_epi32(total);
    return best * 64.0 * 1e-9;
}

// Without VNNI the exact int8 path is vpmaddwd (16 products) plus vpaddd, counted as 16 MACs.
__attribute__((target("avx2,fma")))
static double peak_avx2(double seconds) {
    volatile int32_t seed = 3;
    const __m256i a = _mm256_set1_epi32(seed);
    const __m256i b = _mm256_set1_epi32(seed + 1);
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_epi32(i + seed);
    const double start = now_seconds();
    double burst_start = start, best = 0.0, now = start;
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 12; i++) acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(a, b));
            __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[6]));
        }
        now = qk_best_burst(&best, 12.0 * (double)QK_PEAK_INNER, &burst_start);
    } while (now - start < seconds);
    __m256i total = acc[0];
    for (int i = 1; i < 12; i++) total = _mm256_add_epi32(total, acc[i]);
    peak_sink = _mm256_extract_epi32(total, 0);
    return best * 16.0 * 1e-9;
}
#endif

static double peak_scalar(double seconds) {
    volatile int32_t seed = 3;
    int32_t a = seed, b = seed + 1;
    int32_t acc[8] = {0};
    const double start = now_seconds();
    double burst_start = start, best = 0.0, now = start;
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 8; i++) acc[i] += a * b;
            __asm__ volatile("" : "+r"(a), "+r"(b));
        }
        now = qk_best_burst(&best, 8.0 * (double)QK_PEAK_INNER, &burst_start);
    } while (now - start < seconds);
    int32_t total = 0;
    for (int i = 0; i < 8; i++) total += acc[i];
    peak_sink = total;
    return best * 1e-9;
}

double qk_measure_peak_gmacs_impl(double seconds) {
#if QK_HAVE_X86
    if (qk_path_supported(QK_PATH_AVX512VNNI)) return peak_avx512vnni(seconds);
    if (qk_path_supported(QK_PATH_AVX2)) return peak_avx2(seconds);
#endif
    return peak_scalar(seconds);
}
