// The AVX-512BW path's entry in the table of paths (qk_paths.h): exact int16 vpmaddwd on 16-lane blocks,
// for AVX-512 CPUs without VNNI.
#include "peak/peak.h"
#include "x86/avx512bw/avx512bw.h"

#if QK_HAVE_X86

static bool avx512bw_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && qk_x86_os_saves_state(QK_XCR0_AVX512);
}

// The unit arrangements of avx512bw.h (qk_arrange_pairs): int16 for the convs, bytes for the fc head.
static void pack_unit(const int8_t *weights, uint8_t *unit) { qk_arrange_pairs_s16(weights, QK_BW_LANES, unit); }
static void unpack_unit(const uint8_t *unit, int8_t *weights) { qk_unarrange_pairs_s16(unit, QK_BW_LANES, weights); }
static void pack_fc_unit(const int8_t *weights, uint8_t *unit) { qk_arrange_pairs(weights, QK_BW_LANES, (int8_t *)unit); }
static void unpack_fc_unit(const uint8_t *unit, int8_t *weights) {
    qk_unarrange_pairs((const int8_t *)unit, QK_BW_LANES, weights);
}
_Static_assert(2 * 2 * QK_BW_LANES * sizeof(int16_t) == QK_BW_UNIT_BYTES && 2 * 2 * QK_BW_LANES == QK_BW_FC_UNIT_BYTES,
               "unit sizes");

// The conv's inner mix: vpmaddwd zmm (32 products) whose result vpaddd adds to an accumulator, counted as
// 32 MACs. Four input vectors pass through an empty asm every iteration, so the compiler can neither hoist
// the multiplies out of the loop nor merge them (twelve distinct input x weight pairs); twelve accumulators
// hide the latency. The twelve products are issued before their adds (a second empty asm holds them), as
// in the microkernels: on Zen 4 adds interleaved one by one with the multiplies run the mix well below its
// rate (docs/performance.md, "AVX-512BW path"), which would understate the peak.
QK_TARGET_AVX512 static double avx512bw_peak_gmacs(double seconds) {
    volatile int32_t seed = 3;
    __m512i x[4], w[3], acc[12];
    for (int i = 0; i < 4; i++) x[i] = _mm512_set1_epi32(seed + i);
    for (int i = 0; i < 3; i++) w[i] = _mm512_set1_epi32(seed + 4 + i);
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(seed + 7 + i);
    enum { ROUNDS = QK_PEAK_INNER / 12 };
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < ROUNDS; r++) {
            __asm__ volatile("" : "+v"(x[0]), "+v"(x[1]), "+v"(x[2]), "+v"(x[3]));
            __m512i t[12];
            for (int i = 0; i < 12; i++) t[i] = _mm512_madd_epi16(x[i % 4], w[i / 4]);
            __asm__ volatile("" : "+v"(t[0]), "+v"(t[1]), "+v"(t[2]), "+v"(t[3]), "+v"(t[4]), "+v"(t[5]),
                                  "+v"(t[6]), "+v"(t[7]), "+v"(t[8]), "+v"(t[9]), "+v"(t[10]), "+v"(t[11]));
            for (int i = 0; i < 12; i++) acc[i] = _mm512_add_epi32(acc[i], t[i]);
        }
    } while (qk_bursts_end_one(&bursts, 12.0 * ROUNDS) < seconds);
    __m512i total = acc[0];
    for (int i = 1; i < 12; i++) total = _mm512_add_epi32(total, acc[i]);
    qk_peak_sink = _mm512_reduce_add_epi32(total);
    return qk_bursts_finish(&bursts) * 32.0 * 1e-9;
}

// Tap slices keep a tile's weights well inside L2 (1-2 MB per core on AVX-512 CPUs), as on the VNNI path.
enum { BW_SLICE_BYTES = 262144 };

const qk_path_config qk_path_config_avx512bw = {
    .name = "avx512bw",
    // Above avx2 (10), below avx512vnni (30), room for avxvnni at 25.
    .preference = 20,
    .supported = avx512bw_supported,
    .linux_cpu_flags = "avx512f avx512bw avx512vl",
    .ops = &qk_winograd_ops,
    .pool_share = qk_gavgpool_u8_c64_avx512bw_share,
    .packing = {.lanes = QK_BW_LANES, .depth = QK_BW_DEPTH, .unit_bytes = QK_BW_UNIT_BYTES,
                .pack_unit = pack_unit, .unpack_unit = unpack_unit},
    .fc_packing = {.lanes = QK_BW_LANES, .depth = QK_BW_DEPTH, .unit_bytes = QK_BW_FC_UNIT_BYTES,
                   .pack_unit = pack_fc_unit, .unpack_unit = unpack_fc_unit},
    .conv = {.max_pixels = QK_BW_MAX_PIXELS, .max_blocks = QK_BW_MAX_BLOCKS,
             .max_accumulators = QK_BW_MAX_ACCUMULATORS, .tiles = qk_conv3x3_u8s16_7x3c16_avx512bw,
             .widen = qk_widen_u8s16_avx512bw, .stem3 = qk_conv3x3_c3_u8s16_7x3c16_avx512bw},
    // In hundredths of a chunk step of one pixel and block (two vpmaddwd, two vpaddd); the load cost is fitted
    // to RepVGG A0 and B0 layers (docs/performance.md, "AVX-512BW path"), the L2 and L1 terms are the VNNI
    // path's.
    .costs = {.load_cost = 75, .streamed_block_cost = 640, .l1_weight_bytes = 32768, .slice_bytes = BW_SLICE_BYTES},
    .fc_block = qk_fc_u8s16_c16_avx512bw,
    .peak_mix = "vpmaddwd + vpaddd zmm, 32 MACs",
    .peak_gmacs = avx512bw_peak_gmacs,
    .winograd = &qk_winograd_u8s16_7x3c16_avx512bw,
};
#else
const qk_path_config qk_path_config_avx512bw = {.name = "avx512bw", .linux_cpu_flags = "avx512f avx512bw avx512vl",
                                                 .peak_mix = "vpmaddwd + vpaddd zmm, 32 MACs"};
#endif
