// i8mm 3x3 conv microkernels: usmmla on pixel pairs, tiles of 8 pixels x 1, 6 x 2 or 4 x 3 blocks of 8
// channels. Per chunk, each 16-byte channel-pair load feeds one usmmla per pixel pair (32 MACs each).
#include "arm/i8mm/i8mm.h"

#if QK_HAVE_ARM64

enum { MM_LANES = QK_I8MM_LANES, MM_MAX_PIXELS = QK_I8MM_MAX_PIXELS, MM_MAX_BLOCKS = QK_I8MM_MAX_BLOCKS,
       MM_MAX_PAIRS = (QK_I8MM_MAX_PIXELS + 1) / 2, MM_UNIT = QK_I8MM_UNIT_BYTES };
_Static_assert(MM_MAX_PIXELS <= QK_MAX_TILE_PIXELS && MM_MAX_BLOCKS * MM_LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

// One chunk: rows[q] holds pixel pair q's chunk (pixel 2q in the low half, 2q + 1 in the high half).
QK_INLINE QK_TARGET_I8MM void mm_chunk(int32x4_t acc[MM_MAX_PAIRS][MM_MAX_BLOCKS][4], const uint8x16_t *rows,
                                       const uint8_t *w, const int pairs, const int blocks) {
    QK_UNROLL for (int j = 0; j < blocks; j++) {
        QK_UNROLL for (int r = 0; r < 4; r++) {
            const int8x16_t channel_pair = vld1q_s8((const int8_t *)(w + j * MM_UNIT + 16 * r));
            QK_UNROLL for (int q = 0; q < pairs; q++) acc[q][j][r] = vusmmlaq_s32(acc[q][j][r], rows[q], channel_pair);
        }
    }
}

QK_INLINE QK_TARGET_I8MM void mm_tile(const qk_conv_args *args, const qk_conv_blocking *b, const qk_conv_tile *tile,
                                      const int pixels, const int blocks) {
    const int pairs = (pixels + 1) / 2;
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *image = args->input + (size_t)tile->image * geo->in_h * geo->in_w * geo->in_c;
    const int32_t first_channel = tile->group * geo->in_per_group;
    const uint8_t *w = tile->weights;
    const int32_t chunks = b->chunks;
    const int32_t partial_stride = b->blocks_per_tile * MM_LANES;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_lane = tile->first_block * MM_LANES;  // within the group

    // Accumulators start from the bias, lanes (2r, 2r + 1) for both pixels of the pair; or from the
    // partial sums, stored per pixel (the copy of an odd tile's last pixel reads that pixel again).
    int32x4_t acc[MM_MAX_PAIRS][MM_MAX_BLOCKS][4];
    QK_UNROLL for (int j = 0; j < blocks; j++) {
        const int32_t valid = geo->out_per_group - first_lane - j * MM_LANES;
        const int32_t *bias = args->bias + first_out + first_lane + j * MM_LANES;
        const int32x4_t bias_low = qk_arm_load4_s32(bias, valid), bias_high = qk_arm_load4_s32(bias + 4, valid - 4);
        const int32x2_t bias_pairs[4] = {vget_low_s32(bias_low), vget_high_s32(bias_low), vget_low_s32(bias_high),
                                         vget_high_s32(bias_high)};
        QK_UNROLL for (int q = 0; q < pairs; q++) {
            const int32_t *first = tile->partial + (2 * q) * partial_stride + j * MM_LANES;
            const int32_t *second = tile->partial + (2 * q + 1 < pixels ? 2 * q + 1 : 2 * q) * partial_stride + j * MM_LANES;
            QK_UNROLL for (int r = 0; r < 4; r++)
                acc[q][j][r] = tile->first_tap == 0 ? vcombine_s32(bias_pairs[r], bias_pairs[r])
                                                    : vcombine_s32(vld1_s32(first + 2 * r), vld1_s32(second + 2 * r));
        }
    }

    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * MM_UNIT;
    for (int32_t tap = tile->first_tap; tap < tile->first_tap + tile->taps; tap++) {
        const uint8_t *src[MM_MAX_PIXELS + 1];
        qk_conv_tile_sources(args, tile, image, first_channel, tap, pixels, src);
        src[pixels] = src[pixels - 1];
        qk_arm_prefetch_tap(tile, tap);
        int32_t k = 0;
        // Two chunks per load: 16 bytes of each pixel, zipped by 64-bit halves into the rows of chunk k
        // (zip1) and k + 1 (zip2). The loads stay within the group's chunks rounded up to 8 bytes.
        for (; k + 2 <= chunks; k += 2) {
            uint8x16_t rows_even[MM_MAX_PAIRS], rows_odd[MM_MAX_PAIRS];
            QK_UNROLL for (int q = 0; q < pairs; q++) {
                const uint64x2_t a = vreinterpretq_u64_u8(vld1q_u8(src[2 * q] + 8 * k));
                const uint64x2_t c = vreinterpretq_u64_u8(vld1q_u8(src[2 * q + 1] + 8 * k));
                rows_even[q] = vreinterpretq_u8_u64(vzip1q_u64(a, c));
                rows_odd[q] = vreinterpretq_u8_u64(vzip2q_u64(a, c));
            }
            mm_chunk(acc, rows_even, w, pairs, blocks);
            w += blocks * MM_UNIT;
            mm_chunk(acc, rows_odd, w, pairs, blocks);
            w += blocks * MM_UNIT;
        }
        if (k < chunks) {
            uint8x16_t rows[MM_MAX_PAIRS];
            QK_UNROLL for (int q = 0; q < pairs; q++) rows[q] = vcombine_u8(vld1_u8(src[2 * q] + 8 * k), vld1_u8(src[2 * q + 1] + 8 * k));
            mm_chunk(acc, rows, w, pairs, blocks);
            w += blocks * MM_UNIT;
        }
    }

    // Back to [pixel][lane]: zip1 of two channel-pair accumulators gives pixel 2q's four lanes, zip2 pixel
    // 2q + 1's.
    qk_arm_sums sums;
    QK_UNROLL for (int q = 0; q < pairs; q++) {
        QK_UNROLL for (int j = 0; j < blocks; j++) {
            QK_UNROLL for (int h = 0; h < 2; h++) {
                const int64x2_t a = vreinterpretq_s64_s32(acc[q][j][2 * h]), c = vreinterpretq_s64_s32(acc[q][j][2 * h + 1]);
                sums[2 * q][j][h] = vreinterpretq_s32_s64(vzip1q_s64(a, c));
                sums[2 * q + 1][j][h] = vreinterpretq_s32_s64(vzip2q_s64(a, c));
            }
        }
    }
    qk_arm_finish_tile(args, b, tile, sums, pixels, blocks);
}

#define MM_TILE(P, B)                                                                                 \
    static QK_TARGET_I8MM void mm_tile_##P##x##B(const qk_conv_args *args, const qk_conv_blocking *b, \
                                                 const qk_conv_tile *tile) {                          \
        mm_tile(args, b, tile, P, B);                                                                 \
    }
#define MM_TILES_1(P) MM_TILE(P, 1)
#define MM_TILES_2(P) MM_TILE(P, 1) MM_TILE(P, 2)
#define MM_TILES_3(P) MM_TILE(P, 1) MM_TILE(P, 2) MM_TILE(P, 3)
MM_TILES_3(1)
MM_TILES_3(2)
MM_TILES_3(3)
MM_TILES_3(4)
MM_TILES_2(5)
MM_TILES_2(6)
MM_TILES_1(7)
MM_TILES_1(8)

// Only the tiles within 12 pixel-blocks (24 accumulator registers).
#define MM_ROW_3(P) mm_tile_##P##x1, mm_tile_##P##x2, mm_tile_##P##x3
#define MM_ROW_2(P) mm_tile_##P##x1, mm_tile_##P##x2, NULL
#define MM_ROW_1(P) mm_tile_##P##x1, NULL, NULL
const qk_conv_tile_fn qk_conv3x3_u8s8_4x3c8_i8mm[MM_MAX_PIXELS * MM_MAX_BLOCKS] = {
    MM_ROW_3(1), MM_ROW_3(2), MM_ROW_3(3), MM_ROW_3(4), MM_ROW_2(5), MM_ROW_2(6), MM_ROW_1(7), MM_ROW_1(8),
};
_Static_assert(4 * 3 <= QK_I8MM_MAX_ACCUMULATORS && 5 * 3 > QK_I8MM_MAX_ACCUMULATORS &&
                   6 * 2 <= QK_I8MM_MAX_ACCUMULATORS && 7 * 2 > QK_I8MM_MAX_ACCUMULATORS,
               "the table holds exactly the tiles within the accumulator budget");
#endif
