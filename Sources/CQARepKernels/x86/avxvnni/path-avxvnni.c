// The AVX-VNNI path's entry in the table of paths (qk_paths.h): VEX vpdpbusd on 8-lane blocks. Compiled a
// second time by path-avxvnni-evex.c as the test-only EVEX twin (avxvnni.h).
#include "peak/peak.h"
#include "x86/avx2/avx2.h"
#include "x86/avxvnni/avxvnni.h"

#ifdef QK_AVXVNNI_EVEX_TWIN
#define AVXVNNI_CONFIG qk_path_config_avxvnni_evex
#define AVXVNNI_NAME "avxvnni-evex"
#define AVXVNNI_CPU_FLAGS "avx2 fma avx512f avx512vl avx512_vnni"
#define AVXVNNI_PEAK_MIX "vpdpbusd ymm (EVEX), 32 MACs"
#define AVXVNNI_PREFERENCE 0  // never chosen: test paths are not candidates of qk_best_path anyway
#else
#define AVXVNNI_CONFIG qk_path_config_avxvnni
#define AVXVNNI_NAME "avxvnni"
#define AVXVNNI_CPU_FLAGS "avx2 fma avx_vnni"
#define AVXVNNI_PEAK_MIX "vpdpbusd ymm, 32 MACs"
#define AVXVNNI_PREFERENCE 25  // below avx512vnni (30), above avx512bw (20) and avx2 (10)
#endif

#if QK_HAVE_X86

static bool avxvnni_supported(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return false;
#ifdef QK_AVXVNNI_EVEX_TWIN
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512vnni") && qk_x86_os_saves_state(QK_XCR0_AVX512);
#else
    return qk_x86_has_avx_vnni() && qk_x86_os_saves_state(QK_XCR0_AVX);
#endif
}

// vpdpbusd wants lane l's four weights in dword l: the natural [lane][4] order.
static void pack_unit(const int8_t *weights, uint8_t *unit) { memcpy(unit, weights, QK_AVXVNNI_UNIT_BYTES); }
static void unpack_unit(const uint8_t *unit, int8_t *weights) { memcpy(weights, unit, QK_AVXVNNI_UNIT_BYTES); }
_Static_assert(QK_AVXVNNI_LANES * QK_AVXVNNI_DEPTH == QK_AVXVNNI_UNIT_BYTES, "unit size");

// The conv's inner instruction: vpdpbusd ymm, 32 MACs. Twelve chains on loop-carried accumulators (the
// compiler can neither hoist nor merge them; the empty asm keeps iterations apart) hide its latency on
// cores that issue two per cycle, and with the two operands they fit the 16 ymm registers.
QK_TARGET_AVXVNNI static double avxvnni_peak_gmacs(double seconds) {
    volatile int32_t seed = 3;
    const __m256i a = _mm256_set1_epi32(seed * 0x01010101);
    const __m256i b = _mm256_set1_epi32((seed + 1) * 0x01010101);
    __m256i acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_epi32(i + seed);
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 12; i++) acc[i] = qk_avxvnni_dpbusd(acc[i], a, b);
            __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[6]));
        }
    } while (qk_bursts_end_one(&bursts, 12.0 * (double)QK_PEAK_INNER) < seconds);
    __m256i total = acc[0];
    for (int i = 1; i < 12; i++) total = _mm256_add_epi32(total, acc[i]);
    qk_peak_sink = _mm256_extract_epi32(total, 0);
    return qk_bursts_finish(&bursts) * 32.0 * 1e-9;
}

// Stride-1 layers where Winograd is cheaper run the AVX2 path's exact int16 kernels (vpmaddwd + vpaddd: an
// int8 transform would not be exact), costed in this path's peak, 2.7x theirs. Fitted to the measured ratio
// of Winograd to direct on RepVGG's stride-1 shapes (docs/performance.md, "Winograd on the AVX-VNNI path"):
// 28x28 layers gain, 56x56 little, 14x14 lose. Stride 2 stays direct, where vpdpbusd ran twice as fast.
static const qk_winograd_kernels avxvnni_winograd = {
    .lanes = QK_AVX2_LANES, .depth = QK_AVX2_DEPTH, .unit_bytes = QK_AVX2_UNIT_BYTES,
    .unit_index = qk_winograd_unit_index_avx2, .input = qk_winograd_input_u8s16_avx2, .input_width = 16,
    .max_tiles = QK_AVX2_WG_MAX_TILES, .max_blocks = QK_AVX2_WG_MAX_BLOCKS,
    .max_accumulators = QK_AVX2_WG_MAX_ACCUMULATORS, .tiles = qk_winograd_u8s16_4x2c8_avx2_tiles,
    .input_f4 = qk_winograd_input_f4_u8s16_avx2, .tiles_f4 = qk_winograd_f4_u8s16_4x2c8_avx2_tiles,
    .gemm_percent = 33, .direct_percent = 85, .input_macs = 259, .output_macs = 777, .stream_macs_per_byte = 6,
};

// The AVX-512 VNNI path's constants scaled to 32-byte units; on an Emerald Rapids, L1-sized slices and
// 6 x 2 tiles were slower (docs/performance.md, "AVX-VNNI measured").
enum { AVXVNNI_SLICE_BYTES = 262144 };

const qk_path_config AVXVNNI_CONFIG = {
    .name = AVXVNNI_NAME,
    .preference = AVXVNNI_PREFERENCE,
    .supported = avxvnni_supported,
    .linux_cpu_flags = AVXVNNI_CPU_FLAGS,
    .ops = &qk_winograd_ops,
    .pool_share = qk_gavgpool_u8_c32_avx2_share,  // the AVX2 path's: it needs no VNNI
    .packing = {.lanes = QK_AVXVNNI_LANES, .depth = QK_AVXVNNI_DEPTH, .unit_bytes = QK_AVXVNNI_UNIT_BYTES,
                .pack_unit = pack_unit, .unpack_unit = unpack_unit, .units_are_lane_major = true},
    .conv = {.max_pixels = QK_AVXVNNI_MAX_PIXELS, .max_blocks = QK_AVXVNNI_MAX_BLOCKS,
             .max_accumulators = QK_AVXVNNI_MAX_ACCUMULATORS, .tiles = qk_conv3x3_u8s8_6x2c8_avxvnni,
             .raster_tiles = true},
    .costs = {.load_cost = 50, .streamed_block_cost = 320, .l1_weight_bytes = 32768,
              .slice_bytes = AVXVNNI_SLICE_BYTES},
    .fc_block = qk_fc_u8s8_c8_avxvnni,
    .peak_mix = AVXVNNI_PEAK_MIX,
    .peak_gmacs = avxvnni_peak_gmacs,
    .winograd = &avxvnni_winograd,
};
#else
const qk_path_config AVXVNNI_CONFIG = {.name = AVXVNNI_NAME, .linux_cpu_flags = AVXVNNI_CPU_FLAGS,
                                       .peak_mix = AVXVNNI_PEAK_MIX};
#endif
