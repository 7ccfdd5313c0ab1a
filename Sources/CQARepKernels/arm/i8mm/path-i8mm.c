// The i8mm path's entry in the table of paths (qk_paths.h): usmmla (u8 x s8, 2x8 by 8x2) on pixel pairs and
// 8-lane blocks, 8-deep chunks (i8mm.h).
#include "arm/i8mm/i8mm.h"
#include "peak/peak.h"

// Named on every architecture: the tests ask every path of the table for its mix.
#define I8MM_PEAK_MIX "usmmla, 32 MACs"

#if QK_HAVE_ARM64

static bool i8mm_supported(void) { return qk_arm_has(QK_ARM_HWCAP_ASIMD, QK_ARM_HWCAP2_I8MM); }

// usmmla wants each output channel's 8 weights contiguous, channel pairs in 16 bytes: [lane][8].
static void pack_unit(const int8_t *weights, uint8_t *unit) { memcpy(unit, weights, QK_I8MM_UNIT_BYTES); }
static void unpack_unit(const uint8_t *unit, int8_t *weights) { memcpy(weights, unit, QK_I8MM_UNIT_BYTES); }
_Static_assert(QK_I8MM_LANES * QK_I8MM_DEPTH == QK_I8MM_UNIT_BYTES, "unit size");

// The conv's inner instruction: usmmla, 32 MACs. Twelve independent accumulators cover its latency (3
// cycles) at 4 per cycle (Neoverse V1/V2); the operands are made opaque each iteration.
QK_TARGET_I8MM static double i8mm_peak_gmacs(double seconds) {
    volatile uint8_t seed = 3;
    uint8x16_t x0 = vdupq_n_u8(seed), x1 = vdupq_n_u8((uint8_t)(seed + 1)), x2 = vdupq_n_u8((uint8_t)(seed + 2));
    int8x16_t w0 = vdupq_n_s8((int8_t)(seed + 3)), w1 = vdupq_n_s8((int8_t)(seed + 4)), w2 = vdupq_n_s8((int8_t)(seed + 5));
    int8x16_t w3 = vdupq_n_s8((int8_t)(seed + 6));
    int32x4_t acc[12];
    for (int i = 0; i < 12; i++) acc[i] = vdupq_n_s32(i + seed);
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            __asm__ volatile("" : "+w"(x0), "+w"(x1), "+w"(x2), "+w"(w0), "+w"(w1), "+w"(w2), "+w"(w3));
            acc[0] = vusmmlaq_s32(acc[0], x0, w0);
            acc[1] = vusmmlaq_s32(acc[1], x0, w1);
            acc[2] = vusmmlaq_s32(acc[2], x0, w2);
            acc[3] = vusmmlaq_s32(acc[3], x0, w3);
            acc[4] = vusmmlaq_s32(acc[4], x1, w0);
            acc[5] = vusmmlaq_s32(acc[5], x1, w1);
            acc[6] = vusmmlaq_s32(acc[6], x1, w2);
            acc[7] = vusmmlaq_s32(acc[7], x1, w3);
            acc[8] = vusmmlaq_s32(acc[8], x2, w0);
            acc[9] = vusmmlaq_s32(acc[9], x2, w1);
            acc[10] = vusmmlaq_s32(acc[10], x2, w2);
            acc[11] = vusmmlaq_s32(acc[11], x2, w3);
        }
    } while (qk_bursts_end_one(&bursts, 12.0 * (double)QK_PEAK_INNER) < seconds);
    int32x4_t total = acc[0];
    for (int i = 1; i < 12; i++) total = vaddq_s32(total, acc[i]);
    qk_peak_sink = vaddvq_s32(total);
    return qk_bursts_finish(&bursts) * 32.0 * 1e-9;
}

// Weight bytes per tap slice (driver/blocked-conv.c): a tile's weights stay well inside L2.
enum { I8MM_SLICE_BYTES = 131072 };

const qk_path_config qk_path_config_i8mm = {
    .name = "i8mm",
    .preference = 25,
    .supported = i8mm_supported,
    .linux_cpu_flags = "asimd i8mm",
    .ops = &qk_blocked_ops,
    .pool_share = qk_gavgpool_u8_c16_neon_share,
    .packing = {.lanes = QK_I8MM_LANES, .depth = QK_I8MM_DEPTH, .unit_bytes = QK_I8MM_UNIT_BYTES, .units_are_lane_major = true,
                .pack_unit = pack_unit, .unpack_unit = unpack_unit},
    .conv = {.max_pixels = QK_I8MM_MAX_PIXELS, .max_blocks = QK_I8MM_MAX_BLOCKS,
             .max_accumulators = QK_I8MM_MAX_ACCUMULATORS, .tiles = qk_conv3x3_u8s8_4x3c8_i8mm},
    // No measured constants yet (no board): zero costs keep the widest tile at the most pixels.
    .costs = {.load_cost = 0, .streamed_block_cost = 0, .l1_weight_bytes = I8MM_SLICE_BYTES,
              .slice_bytes = I8MM_SLICE_BYTES},
    .fc_block = qk_fc_u8s8_c8_i8mm,
    .peak_mix = I8MM_PEAK_MIX,
    .peak_gmacs = i8mm_peak_gmacs,
};
#else
const qk_path_config qk_path_config_i8mm = {.name = "i8mm", .linux_cpu_flags = "asimd i8mm", .peak_mix = I8MM_PEAK_MIX};
#endif
