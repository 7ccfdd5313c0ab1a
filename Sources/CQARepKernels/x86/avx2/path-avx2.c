// The AVX2 path's entry in the table of paths (qk_paths.h): exact int16 vpmaddwd on 8-lane blocks.
#include "peak/peak.h"
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

static bool avx2_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && qk_x86_os_saves_state(QK_XCR0_AVX);
}

// The unit arrangements of avx2.h (qk_arrange_pairs): int16 for the convs, bytes for the fc head.
static void pack_unit(const int8_t *weights, uint8_t *unit) { qk_arrange_pairs_s16(weights, QK_AVX2_LANES, unit); }
static void unpack_unit(const uint8_t *unit, int8_t *weights) { qk_unarrange_pairs_s16(unit, QK_AVX2_LANES, weights); }
static void pack_fc_unit(const int8_t *weights, uint8_t *unit) { qk_arrange_pairs(weights, QK_AVX2_LANES, (int8_t *)unit); }
static void unpack_fc_unit(const uint8_t *unit, int8_t *weights) {
    qk_unarrange_pairs((const int8_t *)unit, QK_AVX2_LANES, weights);
}
_Static_assert(2 * 2 * QK_AVX2_LANES * sizeof(int16_t) == QK_AVX2_UNIT_BYTES && 2 * 2 * QK_AVX2_LANES == QK_AVX2_FC_UNIT_BYTES,
               "unit sizes");

// The conv's inner mix: vpmaddwd (16 products) plus vpaddd, counted as 16 MACs. Eight accumulators take
// distinct products of four inputs and two weight vectors, which an empty asm makes opaque each iteration:
// with loop-invariant operands the compiler hoisted vpmaddwd out of the loop and only vpaddd was timed.
QK_TARGET_AVX2 static double avx2_peak_gmacs(double seconds) {
    volatile int32_t seed = 3;
    __m256i x0 = _mm256_set1_epi32(seed), x1 = _mm256_set1_epi32(seed + 1);
    __m256i x2 = _mm256_set1_epi32(seed + 2), x3 = _mm256_set1_epi32(seed + 3);
    __m256i w0 = _mm256_set1_epi32(seed + 4), w1 = _mm256_set1_epi32(seed + 5);
    __m256i acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_set1_epi32(i + seed);
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(w0), "+x"(w1));
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(x0, w0));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(x1, w0));
            acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(x2, w0));
            acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(x3, w0));
            acc[4] = _mm256_add_epi32(acc[4], _mm256_madd_epi16(x0, w1));
            acc[5] = _mm256_add_epi32(acc[5], _mm256_madd_epi16(x1, w1));
            acc[6] = _mm256_add_epi32(acc[6], _mm256_madd_epi16(x2, w1));
            acc[7] = _mm256_add_epi32(acc[7], _mm256_madd_epi16(x3, w1));
        }
    } while (qk_bursts_end_one(&bursts, 8.0 * (double)QK_PEAK_INNER) < seconds);
    __m256i total = acc[0];
    for (int i = 1; i < 8; i++) total = _mm256_add_epi32(total, acc[i]);
    qk_peak_sink = _mm256_extract_epi32(total, 0);
    return qk_bursts_finish(&bursts) * 16.0 * 1e-9;
}

// Weight bytes per tap slice (see driver/blocked-conv.c); AVX2 CPUs mostly have a 32 KB L1.
enum { AVX2_SLICE_BYTES = 24576 };

const qk_path_config qk_path_config_avx2 = {
    .name = "avx2",
    .preference = 10,
    .supported = avx2_supported,
    .linux_cpu_flags = "avx2 fma",
    .ops = &qk_winograd_ops,
    .pool_share = qk_gavgpool_u8_c32_avx2_share,
    .packing = {.lanes = QK_AVX2_LANES, .depth = QK_AVX2_DEPTH, .unit_bytes = QK_AVX2_UNIT_BYTES,
                .pack_unit = pack_unit, .unpack_unit = unpack_unit},
    .fc_packing = {.lanes = QK_AVX2_LANES, .depth = QK_AVX2_DEPTH, .unit_bytes = QK_AVX2_FC_UNIT_BYTES,
                   .pack_unit = pack_fc_unit, .unpack_unit = unpack_fc_unit},
    .conv = {.max_pixels = QK_AVX2_MAX_PIXELS, .max_blocks = QK_AVX2_MAX_BLOCKS,
             .max_accumulators = QK_AVX2_MAX_ACCUMULATORS, .tiles = qk_conv3x3_u8s16_4x2c8_avx2,
             .widen = qk_widen_u8s16_avx2, .stem3 = qk_conv3x3_c3_u8s16_4x2c8_avx2, .raster_tiles = true},
    // Bound by the vector ALU ports, not by loads: always the largest tile.
    .costs = {.load_cost = 0, .streamed_block_cost = 0, .l1_weight_bytes = AVX2_SLICE_BYTES,
              .slice_bytes = AVX2_SLICE_BYTES},
    .fc_block = qk_fc_u8s16_c8_avx2,
    .peak_mix = "vpmaddwd + vpaddd ymm, 16 MACs",
    .peak_gmacs = avx2_peak_gmacs,
    .winograd = &qk_winograd_u8s16_4x2c8_avx2,
};
#else
const qk_path_config qk_path_config_avx2 = {.name = "avx2", .linux_cpu_flags = "avx2 fma",
                                            .peak_mix = "vpmaddwd + vpaddd ymm, 16 MACs"};
#endif
