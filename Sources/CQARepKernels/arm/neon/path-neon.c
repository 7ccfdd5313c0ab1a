// The NEON path's entry in the table of paths (qk_paths.h): exact int16 smlal/smlal2 by element on 8-lane
// blocks, for any ARMv8.0 core (Raspberry Pi 4's Cortex-A72 and later).
#include "arm/neon/neon.h"
#include "peak/peak.h"

// Named on every architecture: the tests ask every path of the table for its mix.
#define NEON_PEAK_MIX "smlal + smlal2 by element (int16), 4 MACs each"

#if QK_HAVE_ARM64

static bool neon_supported(void) { return qk_arm_has(QK_ARM_HWCAP_ASIMD, 0); }

// The unit arrangement of neon.h: int16 [channel][lane].
static void pack_unit(const int8_t *weights, uint8_t *unit) {
    int16_t arranged[QK_NEON_DEPTH][QK_NEON_LANES];
    for (int32_t lane = 0; lane < QK_NEON_LANES; lane++)
        for (int32_t q = 0; q < QK_NEON_DEPTH; q++) arranged[q][lane] = weights[lane * QK_NEON_DEPTH + q];
    memcpy(unit, arranged, sizeof arranged);
}

static void unpack_unit(const uint8_t *unit, int8_t *weights) {
    int16_t arranged[QK_NEON_DEPTH][QK_NEON_LANES];
    memcpy(arranged, unit, sizeof arranged);
    for (int32_t lane = 0; lane < QK_NEON_LANES; lane++)
        for (int32_t q = 0; q < QK_NEON_DEPTH; q++) weights[lane * QK_NEON_DEPTH + q] = (int8_t)arranged[q][lane];
}
_Static_assert(sizeof(int16_t[QK_NEON_DEPTH][QK_NEON_LANES]) == QK_NEON_UNIT_BYTES, "unit size");

// The conv's inner instruction pair: smlal + smlal2 by element, 4 MACs each. The multiplied operands are
// made opaque every iteration by an empty asm: smlal is a multiply and an add to the compiler, which would
// otherwise hoist the loop-invariant multiply and time the adds alone (the AVX2 loop's old mistake).
static double neon_peak_gmacs(double seconds) {
    volatile int16_t seed = 3;
    int16x8_t x0 = vdupq_n_s16(seed), x1 = vdupq_n_s16((int16_t)(seed + 1));
    int16x8_t w0 = vdupq_n_s16((int16_t)(seed + 2)), w1 = vdupq_n_s16((int16_t)(seed + 3));
    int32x4_t acc[8];
    for (int i = 0; i < 8; i++) acc[i] = vdupq_n_s32(i + seed);
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            __asm__ volatile("" : "+w"(x0), "+w"(x1), "+w"(w0), "+w"(w1));
            acc[0] = vmlal_laneq_s16(acc[0], vget_low_s16(w0), x0, 0);
            acc[1] = vmlal_high_laneq_s16(acc[1], w0, x0, 0);
            acc[2] = vmlal_laneq_s16(acc[2], vget_low_s16(w1), x0, 1);
            acc[3] = vmlal_high_laneq_s16(acc[3], w1, x0, 1);
            acc[4] = vmlal_laneq_s16(acc[4], vget_low_s16(w0), x1, 2);
            acc[5] = vmlal_high_laneq_s16(acc[5], w0, x1, 2);
            acc[6] = vmlal_laneq_s16(acc[6], vget_low_s16(w1), x1, 3);
            acc[7] = vmlal_high_laneq_s16(acc[7], w1, x1, 3);
        }
    } while (qk_bursts_end_one(&bursts, 8.0 * (double)QK_PEAK_INNER) < seconds);
    int32x4_t total = acc[0];
    for (int i = 1; i < 8; i++) total = vaddq_s32(total, acc[i]);
    qk_peak_sink = vaddvq_s32(total);
    return qk_bursts_finish(&bursts) * 4.0 * 1e-9;
}

// Weight bytes per tap slice (driver/blocked-conv.c): int16 weights take twice the bytes of the int8 paths'
// for the same channels; A72/A76-class cores have 32-64 KB of L1d.
enum { NEON_SLICE_BYTES = 32768 };

const qk_path_config qk_path_config_neon = {
    .name = "neon",
    .preference = 5,
    .supported = neon_supported,
    .linux_cpu_flags = "asimd",
    .ops = &qk_winograd_ops,
    .pool_share = qk_gavgpool_u8_c16_neon_share,
    .packing = {.lanes = QK_NEON_LANES, .depth = QK_NEON_DEPTH, .unit_bytes = QK_NEON_UNIT_BYTES,
                .pack_unit = pack_unit, .unpack_unit = unpack_unit},
    .conv = {.max_pixels = QK_NEON_MAX_PIXELS, .max_blocks = QK_NEON_MAX_BLOCKS,
             .max_accumulators = QK_NEON_MAX_PIXELS * QK_NEON_MAX_BLOCKS, .tiles = qk_conv3x3_u8s16_4x3c8_neon},
    // Bound by the multiply pipe, not by loads (docs/performance.md, "ARM paths"): always the largest tile.
    .costs = {.load_cost = 0, .streamed_block_cost = 0, .l1_weight_bytes = NEON_SLICE_BYTES,
              .slice_bytes = NEON_SLICE_BYTES},
    .fc_block = qk_fc_u8s16_c8_neon,
    .peak_mix = NEON_PEAK_MIX,
    .peak_gmacs = neon_peak_gmacs,
    .winograd = &qk_winograd_u8s16_4x3c8_neon,
};
#else
const qk_path_config qk_path_config_neon = {.name = "neon", .linux_cpu_flags = "asimd", .peak_mix = NEON_PEAK_MIX};
#endif
