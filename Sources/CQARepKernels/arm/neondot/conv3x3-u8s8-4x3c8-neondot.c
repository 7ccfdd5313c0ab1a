// Dot-product 3x3 conv microkernels: tiles of 8 pixels x 1, 6 x 2 or 4 x 3 blocks of 8 channels. Per chunk
// and block, two 16-byte weight loads feed 2 x pixels sdot by element; each pixel's 16 input bytes are
// loaded and shifted once per 4 chunks.
#include "arm/neondot/neondot.h"

#if QK_HAVE_ARM64

enum { DOT_LANES = QK_NEONDOT_LANES, DOT_MAX_PIXELS = QK_NEONDOT_MAX_PIXELS, DOT_MAX_BLOCKS = QK_NEONDOT_MAX_BLOCKS,
       DOT_UNIT = QK_NEONDOT_UNIT_BYTES };
_Static_assert(DOT_MAX_PIXELS <= QK_MAX_TILE_PIXELS && DOT_MAX_BLOCKS * DOT_LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

// Chunk c (0..3) of the 16 input bytes each pixel holds: sdot's element index must be a constant.
#define DOT_CHUNK(c)                                                                            \
    QK_UNROLL for (int j = 0; j < blocks; j++) {                                                \
        const int8x16_t w_low = vld1q_s8((const int8_t *)(w + j * DOT_UNIT));                   \
        const int8x16_t w_high = vld1q_s8((const int8_t *)(w + j * DOT_UNIT + 16));             \
        QK_UNROLL for (int p = 0; p < pixels; p++) {                                            \
            acc[p][j][0] = vdotq_laneq_s32(acc[p][j][0], w_low, x[p], (c));                     \
            acc[p][j][1] = vdotq_laneq_s32(acc[p][j][1], w_high, x[p], (c));                    \
        }                                                                                       \
    }                                                                                           \
    w += blocks * DOT_UNIT;

QK_INLINE QK_TARGET_DOTPROD void dot_tile(const qk_conv_args *args, const qk_conv_blocking *b,
                                          const qk_conv_tile *tile, const int pixels, const int blocks) {
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *image = args->input + (size_t)tile->image * geo->in_h * geo->in_w * geo->in_c;
    const int32_t first_channel = tile->group * geo->in_per_group;
    const uint8_t *w = tile->weights;
    const int32_t chunks = b->chunks;
    const int32_t partial_stride = b->blocks_per_tile * DOT_LANES;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_lane = tile->first_block * DOT_LANES;  // within the group

    // The first slice starts from bias + 128 * sum(w): the trailers follow the tile's units.
    qk_arm_sums acc;
    const int32_t *trailer =
        (const int32_t *)(tile->weights + (size_t)b->taps * (size_t)chunks * (size_t)blocks * DOT_UNIT);
    QK_UNROLL for (int j = 0; j < blocks; j++) {
        const int32_t valid = geo->out_per_group - first_lane - j * DOT_LANES;
        QK_UNROLL for (int h = 0; h < 2; h++) {
            const int32x4_t start =
                vaddq_s32(qk_arm_load4_s32(args->bias + first_out + first_lane + j * DOT_LANES + 4 * h, valid - 4 * h),
                          vld1q_s32(trailer + j * DOT_LANES + 4 * h));
            QK_UNROLL for (int p = 0; p < pixels; p++)
                acc[p][j][h] = tile->first_tap == 0 ? start
                                                    : vld1q_s32(tile->partial + p * partial_stride + j * DOT_LANES + 4 * h);
        }
    }

    const uint8x16_t shift = vdupq_n_u8(0x80);
    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * DOT_UNIT;
    for (int32_t tap = tile->first_tap; tap < tile->first_tap + tile->taps; tap++) {
        const uint8_t *src[DOT_MAX_PIXELS];
        qk_conv_tile_sources(args, tile, image, first_channel, tap, pixels, src);
        qk_arm_prefetch_tap(tile, tap);
        // x - 128 as s8: x ^ 0x80. Loads reach at most 15 bytes past the group's last chunk (within the
        // QK_EXTRA_BYTES slack of inputs and pad values); those bytes meet zero weights or are not used.
        int8x16_t x[DOT_MAX_PIXELS];
        int32_t k = 0;
        for (; k + 4 <= chunks; k += 4) {
            QK_UNROLL for (int p = 0; p < pixels; p++) x[p] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(src[p] + 4 * k), shift));
            DOT_CHUNK(0) DOT_CHUNK(1) DOT_CHUNK(2) DOT_CHUNK(3)
        }
        if (k < chunks) {
            QK_UNROLL for (int p = 0; p < pixels; p++) x[p] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(src[p] + 4 * k), shift));
            DOT_CHUNK(0)
            if (k + 1 < chunks) { DOT_CHUNK(1) }
            if (k + 2 < chunks) { DOT_CHUNK(2) }
        }
    }

    qk_arm_finish_tile(args, b, tile, acc, pixels, blocks);
}

#define DOT_TILE(P, B)                                                                                   \
    static QK_TARGET_DOTPROD void dot_tile_##P##x##B(const qk_conv_args *args, const qk_conv_blocking *b, \
                                                     const qk_conv_tile *tile) {                         \
        dot_tile(args, b, tile, P, B);                                                                   \
    }
#define DOT_TILES_1(P) DOT_TILE(P, 1)
#define DOT_TILES_2(P) DOT_TILE(P, 1) DOT_TILE(P, 2)
#define DOT_TILES_3(P) DOT_TILE(P, 1) DOT_TILE(P, 2) DOT_TILE(P, 3)
DOT_TILES_3(1)
DOT_TILES_3(2)
DOT_TILES_3(3)
DOT_TILES_3(4)
DOT_TILES_2(5)
DOT_TILES_2(6)
DOT_TILES_1(7)
DOT_TILES_1(8)

// Only the tiles within 12 pixel-blocks (24 accumulator registers): 5-6 pixels take at most 2 blocks, 7-8
// pixels one.
#define DOT_ROW_3(P) dot_tile_##P##x1, dot_tile_##P##x2, dot_tile_##P##x3
#define DOT_ROW_2(P) dot_tile_##P##x1, dot_tile_##P##x2, NULL
#define DOT_ROW_1(P) dot_tile_##P##x1, NULL, NULL
const qk_conv_tile_fn qk_conv3x3_u8s8_4x3c8_neondot[DOT_MAX_PIXELS * DOT_MAX_BLOCKS] = {
    DOT_ROW_3(1), DOT_ROW_3(2), DOT_ROW_3(3), DOT_ROW_3(4), DOT_ROW_2(5), DOT_ROW_2(6), DOT_ROW_1(7), DOT_ROW_1(8),
};
_Static_assert(4 * 3 <= QK_NEONDOT_MAX_ACCUMULATORS && 5 * 3 > QK_NEONDOT_MAX_ACCUMULATORS &&
                   6 * 2 <= QK_NEONDOT_MAX_ACCUMULATORS && 7 * 2 > QK_NEONDOT_MAX_ACCUMULATORS,
               "the table holds exactly the tiles within the accumulator budget");
#endif
