// NEON (ARMv8.0) 3x3 conv microkernels: tiles of up to 4 pixels x 3 blocks of 8 channels. Per input
// channel and block: one 16-byte weight load feeds 2 x pixels smlal/smlal2 by element.
#include "arm/neon/neon.h"

#if QK_HAVE_ARM64

enum { NEON_LANES = QK_NEON_LANES, NEON_MAX_PIXELS = QK_NEON_MAX_PIXELS, NEON_MAX_BLOCKS = QK_NEON_MAX_BLOCKS };
_Static_assert(NEON_MAX_PIXELS <= QK_MAX_TILE_PIXELS && NEON_MAX_BLOCKS * NEON_LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

// One input channel q of the chunk: the 8 lanes' int16 weights of each block times element q of each
// pixel's widened chunk. The lane index of smlal by element must be a constant, hence a macro.
#define NEON_CHANNEL(q)                                                                                    \
    QK_UNROLL for (int j = 0; j < blocks; j++) {                                                           \
        const int16x8_t wq = vld1q_s16((const int16_t *)(w + j * QK_NEON_UNIT_BYTES) + (q) * NEON_LANES);  \
        QK_UNROLL for (int p = 0; p < pixels; p++) {                                                       \
            acc[p][j][0] = vmlal_laneq_s16(acc[p][j][0], vget_low_s16(wq), x[p], (q));                     \
            acc[p][j][1] = vmlal_high_laneq_s16(acc[p][j][1], wq, x[p], (q));                              \
        }                                                                                                  \
    }

QK_INLINE void neon_tile(const qk_conv_args *args, const qk_conv_blocking *b, const qk_conv_tile *tile,
                         const int pixels, const int blocks) {
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *image = args->input + (size_t)tile->image * geo->in_h * geo->in_w * geo->in_c;
    const int32_t first_channel = tile->group * geo->in_per_group;
    const uint8_t *w = tile->weights;
    const int32_t chunks = b->chunks;
    const int32_t partial_stride = b->blocks_per_tile * NEON_LANES;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_lane = tile->first_block * NEON_LANES;  // within the group

    // Accumulation starts from the bias (the integer sum is the same).
    qk_arm_sums acc;
    QK_UNROLL for (int j = 0; j < blocks; j++) {
        const int32_t valid = geo->out_per_group - first_lane - j * NEON_LANES;
        QK_UNROLL for (int h = 0; h < 2; h++) {
            const int32x4_t bias = qk_arm_load4_s32(args->bias + first_out + first_lane + j * NEON_LANES + 4 * h, valid - 4 * h);
            QK_UNROLL for (int p = 0; p < pixels; p++)
                acc[p][j][h] = tile->first_tap == 0 ? bias
                                                    : vld1q_s32(tile->partial + p * partial_stride + j * NEON_LANES + 4 * h);
        }
    }

    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * QK_NEON_UNIT_BYTES;
    for (int32_t tap = tile->first_tap; tap < tile->first_tap + tile->taps; tap++) {
        const uint8_t *src[NEON_MAX_PIXELS];
        qk_conv_tile_sources(args, tile, image, first_channel, tap, pixels, src);
        qk_arm_prefetch_tap(tile, tap);
        for (int32_t k = 0; k < chunks; k++) {
            // 8 input bytes per pixel, zero-extended to int16 (u8 fits int16); bytes past the group's
            // channels meet zero weights.
            int16x8_t x[NEON_MAX_PIXELS];
            QK_UNROLL for (int p = 0; p < pixels; p++) x[p] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(src[p] + 8 * k)));
            NEON_CHANNEL(0) NEON_CHANNEL(1) NEON_CHANNEL(2) NEON_CHANNEL(3)
            NEON_CHANNEL(4) NEON_CHANNEL(5) NEON_CHANNEL(6) NEON_CHANNEL(7)
            w += blocks * QK_NEON_UNIT_BYTES;
        }
    }

    qk_arm_finish_tile(args, b, tile, acc, pixels, blocks);
}

#define NEON_TILE(P, B)                                                                            \
    static void neon_tile_##P##x##B(const qk_conv_args *args, const qk_conv_blocking *b,           \
                                    const qk_conv_tile *tile) {                                    \
        neon_tile(args, b, tile, P, B);                                                            \
    }
#define NEON_TILES_FOR_PIXELS(P) NEON_TILE(P, 1) NEON_TILE(P, 2) NEON_TILE(P, 3)
NEON_TILES_FOR_PIXELS(1)
NEON_TILES_FOR_PIXELS(2)
NEON_TILES_FOR_PIXELS(3)
NEON_TILES_FOR_PIXELS(4)

#define NEON_ROW(P) neon_tile_##P##x1, neon_tile_##P##x2, neon_tile_##P##x3
const qk_conv_tile_fn qk_conv3x3_u8s16_4x3c8_neon[NEON_MAX_PIXELS * NEON_MAX_BLOCKS] = {
    NEON_ROW(1), NEON_ROW(2), NEON_ROW(3), NEON_ROW(4),
};
#endif
