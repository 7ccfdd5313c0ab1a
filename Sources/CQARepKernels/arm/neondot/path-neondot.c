// The dot-product path's entry in the table of paths (qk_paths.h): sdot by element on 8-lane blocks, inputs
// shifted to s8 and corrected by the block trailer (neondot.h). Cortex-A55/A76/A78, Neoverse N1 and later.
#include "arm/neondot/neondot.h"
#include "peak/peak.h"

// Named on every architecture: the tests ask every path of the table for its mix.
#define NEONDOT_PEAK_MIX "sdot by element, 16 MACs"

#if QK_HAVE_ARM64

static bool neondot_supported(void) { return qk_arm_has(QK_ARM_HWCAP_ASIMD | QK_ARM_HWCAP_ASIMDDP, 0); }

// sdot wants lane l's four weights in word l: the natural [lane][4] order.
static void pack_unit(const int8_t *weights, uint8_t *unit) { memcpy(unit, weights, QK_NEONDOT_UNIT_BYTES); }
static void unpack_unit(const uint8_t *unit, int8_t *weights) { memcpy(weights, unit, QK_NEONDOT_UNIT_BYTES); }
_Static_assert(QK_NEONDOT_LANES * QK_NEONDOT_DEPTH == QK_NEONDOT_UNIT_BYTES, "unit size");

// The trailer: 128 * sum(w) per lane as int32, what the shift of every input by -128 takes away. At most
// 128 * 127 * 9 * 8192 < 2^31 (QK_MAX_CHANNELS inputs per group).
static void pack_trailer(const int32_t *lane_sums, uint8_t *trailer) {
    int32_t corrections[QK_NEONDOT_LANES];
    for (int32_t lane = 0; lane < QK_NEONDOT_LANES; lane++) corrections[lane] = 128 * lane_sums[lane];
    memcpy(trailer, corrections, sizeof corrections);
}
_Static_assert(QK_NEONDOT_LANES * sizeof(int32_t) == QK_NEONDOT_TRAILER_BYTES, "trailer size");

// The conv's inner instruction: sdot by element, 16 MACs. Twelve independent accumulators cover its
// latency (3 cycles) at up to 4 per cycle (Neoverse V1/V2); the operands are made opaque each iteration.
QK_TARGET_DOTPROD static double neondot_peak_gmacs(double seconds) {
    volatile int8_t seed = 3;
    int8x16_t x = vdupq_n_s8(seed), w0 = vdupq_n_s8((int8_t)(seed + 1)), w1 = vdupq_n_s8((int8_t)(seed + 2));
    int32x4_t acc[12];
    for (int i = 0; i < 12; i++) acc[i] = vdupq_n_s32(i + seed);
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            __asm__ volatile("" : "+w"(x), "+w"(w0), "+w"(w1));
            acc[0] = vdotq_laneq_s32(acc[0], w0, x, 0);
            acc[1] = vdotq_laneq_s32(acc[1], w1, x, 0);
            acc[2] = vdotq_laneq_s32(acc[2], w0, x, 1);
            acc[3] = vdotq_laneq_s32(acc[3], w1, x, 1);
            acc[4] = vdotq_laneq_s32(acc[4], w0, x, 2);
            acc[5] = vdotq_laneq_s32(acc[5], w1, x, 2);
            acc[6] = vdotq_laneq_s32(acc[6], w0, x, 3);
            acc[7] = vdotq_laneq_s32(acc[7], w1, x, 3);
            acc[8] = vdotq_laneq_s32(acc[8], x, w0, 0);
            acc[9] = vdotq_laneq_s32(acc[9], x, w1, 1);
            acc[10] = vdotq_laneq_s32(acc[10], x, w0, 2);
            acc[11] = vdotq_laneq_s32(acc[11], x, w1, 3);
        }
    } while (qk_bursts_end_one(&bursts, 12.0 * (double)QK_PEAK_INNER) < seconds);
    int32x4_t total = acc[0];
    for (int i = 1; i < 12; i++) total = vaddq_s32(total, acc[i]);
    qk_peak_sink = vaddvq_s32(total);
    return qk_bursts_finish(&bursts) * 16.0 * 1e-9;
}

// Weight bytes per tap slice (driver/blocked-conv.c): a tile's weights stay well inside L2.
enum { NEONDOT_SLICE_BYTES = 131072 };

const qk_path_config qk_path_config_neondot = {
    .name = "neondot",
    .preference = 15,
    .supported = neondot_supported,
    .linux_cpu_flags = "asimd asimddp",
    .ops = &qk_blocked_ops,
    .pool_share = qk_gavgpool_u8_c16_neon_share,
    .packing = {.lanes = QK_NEONDOT_LANES, .depth = QK_NEONDOT_DEPTH, .unit_bytes = QK_NEONDOT_UNIT_BYTES,
                .units_are_lane_major = true,
                .trailer_bytes = QK_NEONDOT_TRAILER_BYTES, .pack_unit = pack_unit, .unpack_unit = unpack_unit,
                .pack_trailer = pack_trailer},
    .conv = {.max_pixels = QK_NEONDOT_MAX_PIXELS, .max_blocks = QK_NEONDOT_MAX_BLOCKS,
             .max_accumulators = QK_NEONDOT_MAX_ACCUMULATORS, .tiles = qk_conv3x3_u8s8_4x3c8_neondot},
    // No measured constants yet (no board): zero costs keep the widest tile at the most pixels.
    .costs = {.load_cost = 0, .streamed_block_cost = 0, .l1_weight_bytes = NEONDOT_SLICE_BYTES,
              .slice_bytes = NEONDOT_SLICE_BYTES},
    .fc_block = qk_fc_u8s8_c8_neondot,
    .peak_mix = NEONDOT_PEAK_MIX,
    .peak_gmacs = neondot_peak_gmacs,
};
#else
const qk_path_config qk_path_config_neondot = {.name = "neondot", .linux_cpu_flags = "asimd asimddp",
                                               .peak_mix = NEONDOT_PEAK_MIX};
#endif
