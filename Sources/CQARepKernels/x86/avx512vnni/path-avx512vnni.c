// The AVX-512 VNNI path's entry in the table of paths (qk_paths.h): vpdpbusd on 16-lane blocks.
#include "peak/peak.h"
#include "x86/avx512bw/avx512bw.h"
#include "x86/avx512vnni/avx512vnni.h"

#if QK_HAVE_X86

static bool avx512vnni_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           qk_x86_os_saves_state(QK_XCR0_AVX512);
}

// vpdpbusd wants lane l's four weights in dword l: the natural [lane][4] order.
static void pack_unit(const int8_t *weights, uint8_t *unit) { memcpy(unit, weights, QK_VNNI_UNIT_BYTES); }
static void unpack_unit(const uint8_t *unit, int8_t *weights) { memcpy(weights, unit, QK_VNNI_UNIT_BYTES); }
_Static_assert(QK_VNNI_LANES * QK_VNNI_DEPTH == QK_VNNI_UNIT_BYTES, "unit size");

// The conv's inner instruction: vpdpbusd zmm, 64 MACs. Twelve independent accumulators hide its latency
// on cores that issue two per cycle, so the loop is bound by throughput alone.
QK_TARGET_VNNI static double avx512vnni_peak_gmacs(double seconds) {
    volatile int32_t seed = 3;
    const __m512i a = _mm512_set1_epi32(seed * 0x01010101);
    const __m512i b = _mm512_set1_epi32((seed + 1) * 0x01010101);
    __m512i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm512_set1_epi32(i + seed);
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 12; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
            // Keeps the compiler from hoisting or merging iterations while costing nothing in the loop.
            __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[6]));
        }
    } while (qk_bursts_end_one(&bursts, 12.0 * (double)QK_PEAK_INNER) < seconds);
    __m512i total = acc[0];
    for (int i = 1; i < 12; i++) total = _mm512_add_epi32(total, acc[i]);
    qk_peak_sink = _mm512_reduce_add_epi32(total);
    return qk_bursts_finish(&bursts) * 64.0 * 1e-9;
}

// Tap slices only keep a tile's weights well inside L2: L1-sized slices cost more in storing and reloading
// the sums than L2 streaming does (docs/performance.md, "Tried and not kept").
enum { VNNI_SLICE_BYTES = 262144 };

const qk_path_config qk_path_config_avx512vnni = {
    .name = "avx512vnni",
    .preference = 30,
    .supported = avx512vnni_supported,
    .linux_cpu_flags = "avx512f avx512bw avx512vl avx512_vnni",
    .ops = &qk_blocked_ops,
    .pool_share = qk_gavgpool_u8_c64_avx512bw_share,  // the AVX-512BW path's: it needs no VNNI
    .packing = {.lanes = QK_VNNI_LANES, .depth = QK_VNNI_DEPTH, .unit_bytes = QK_VNNI_UNIT_BYTES,
                .pack_unit = pack_unit, .unpack_unit = unpack_unit, .units_are_lane_major = true},
    .conv = {.max_pixels = QK_VNNI_MAX_PIXELS, .max_blocks = QK_VNNI_MAX_BLOCKS,
             .max_accumulators = QK_VNNI_MAX_ACCUMULATORS, .tiles = qk_conv3x3_u8s8_8x3c16_avx512vnni},
    // Fitted to RepVGG A0 and B0 layers (docs/performance.md, "Tile shape per layer"): a load costs about half a
    // vpdpbusd; a streamed 64-byte unit about 6.4 vpdpbusd slots; 32 KB of a tile's weights stay in L1.
    .costs = {.load_cost = 50, .streamed_block_cost = 640, .l1_weight_bytes = 32768,
              .slice_bytes = VNNI_SLICE_BYTES},
    .fc_block = qk_fc_u8s8_c16_avx512vnni,
    .peak_mix = "vpdpbusd zmm, 64 MACs",
    .peak_gmacs = avx512vnni_peak_gmacs,
};
#else
const qk_path_config qk_path_config_avx512vnni = {.name = "avx512vnni",
                                                   .linux_cpu_flags = "avx512f avx512bw avx512vl avx512_vnni",
                                                   .peak_mix = "vpdpbusd zmm, 64 MACs"};
#endif
