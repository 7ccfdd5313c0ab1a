// AVX2 microkernel for 3x3 layers of 3 input channels (RGB stems; qk_conv_microkernels.stem3): tiles of 4
// pixels (then the row's last 1-3) x 2 blocks of 8 channels over the dense packing, 7 chunks of the 27 window
// values in the order tap * 3 + channel. In NHWC a kernel row's 9 values are adjacent in the driver's
// widened rows (qk_conv_tile.wide), so every int16 pair of the packing is one 4-byte broadcast from there but
// the one spanning kernel rows 0 and 1, blended from two: no window rows to build. One call runs a whole
// row, so the call's setup is paid once per row rather than once per 4 pixels.
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

enum { STEM_LANES = QK_AVX2_LANES, STEM_TILE_PIXELS = 4 };
_Static_assert(QK_STEM3_CHUNKS * QK_AVX2_DEPTH == 28, "27 window values in 7 chunks of 4");

QK_INLINE QK_TARGET_AVX2 __m256i stem_broadcast(const int16_t *pair) {
    return _mm256_set1_epi32(qk_load_u32((const uint8_t *)pair));
}

// One chunk step of `pixels` pixels, the first one's kernel row 0 at r0, the next ones `step` values further,
// a pair at a time: with both pairs' weights live (as qk_avx2_chunk holds them) an accumulator spilled, and
// its store-to-load chain outlasted the multiplies. The straddling chunk's first pair blends r0[8] with
// r1[0], broadcast from r1 - 1 (row 0's end).
QK_INLINE QK_TARGET_AVX2 void stem_chunk(__m256i (*acc)[QK_AVX2_MAX_BLOCKS], const int16_t *r0, size_t step,
                                         const size_t *offsets, size_t row_values, const uint8_t *w,
                                         const int pixels, const int blocks, const int straddling) {
#pragma clang loop unroll(full)
    for (int half = 0; half < 2; half++) {
        __m256i weights[QK_AVX2_MAX_BLOCKS];
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++)
            weights[j] = _mm256_loadu_si256((const __m256i *)(w + j * QK_AVX2_UNIT_BYTES + half * 32));
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) {
            const int16_t *x = r0 + (size_t)p * step;
            __m256i pair = stem_broadcast(x + offsets[half]);
            if (straddling && half == 0) pair = _mm256_blend_epi16(pair, stem_broadcast(x + row_values - 1), 0xAA);
            // No empty asm holding the products ahead of their adds here (qk_avx2_madd_pixel has one): with it
            // an accumulator spilled again (docs/performance.md, "Stem kernels over widened rows").
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) acc[p][j] = _mm256_add_epi32(acc[p][j], _mm256_madd_epi16(pair, weights[j]));
        }
    }
}

// The 7 chunks of a stride-2 row (RGB stems nearly always are): unrolled with the pixels 6 values apart,
// every broadcast addresses one of three row pointers plus a constant, which took 3-4% off the stem.
QK_INLINE QK_TARGET_AVX2 void stem_chunks_stride2(__m256i (*acc)[QK_AVX2_MAX_BLOCKS], const int16_t *r0,
                                                  size_t row_values, const uint8_t *w, const int pixels,
                                                  const int blocks) {
    const int16_t *r1 = r0 + row_values, *r2 = r0 + 2 * row_values;
#pragma clang loop unroll(full)
    for (int q = 0; q < 2 * QK_STEM3_CHUNKS; q++) {
        __m256i weights[QK_AVX2_MAX_BLOCKS];
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++)
            weights[j] = _mm256_loadu_si256((const __m256i *)(w + ((q / 2) * blocks + j) * QK_AVX2_UNIT_BYTES + (q % 2) * 32));
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) {
            const size_t at = (size_t)p * 6;
            __m256i pair;
            if (q < 4)
                pair = stem_broadcast(r0 + at + 2 * q);
            else if (q == 4)
                pair = _mm256_blend_epi16(stem_broadcast(r0 + at + 8), stem_broadcast(r1 + at - 1), 0xAA);
            else if (q < 9)
                pair = stem_broadcast(r1 + at + 2 * q - 9);
            else
                pair = stem_broadcast(r2 + at + 2 * q - 18);
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) acc[p][j] = _mm256_add_epi32(acc[p][j], _mm256_madd_epi16(pair, weights[j]));
        }
    }
}

// `pixels` pixels of the row from pixel `first` on times `blocks` blocks, requantized and stored. Other
// strides keep the chunk loop (unrolled with the products held ahead of their adds, the compiler spilled
// them).
QK_INLINE QK_TARGET_AVX2 void stem_pixels(const qk_conv_args *args, const uint8_t *w, const int32_t *bias,
                                          const float *multiplier, int32_t valid, const qk_stem3_row *row,
                                          int32_t first, const int pixels, const int blocks) {
    const int16_t *r0 = row->r0 + (size_t)first * row->step;
    const size_t step = row->step, row_values = row->row_values, out_c = row->out_c;
    uint8_t *out = row->out + (size_t)first * out_c;
    __m256i acc[STEM_TILE_PIXELS][QK_AVX2_MAX_BLOCKS];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        const __m256i b = qk_load8_epi32(bias + j * STEM_LANES, valid - j * STEM_LANES);
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) acc[p][j] = b;
    }
    const size_t chunk_bytes = (size_t)blocks * QK_AVX2_UNIT_BYTES;
    if (step == 6) {
        stem_chunks_stride2(acc, r0, row_values, w, pixels, blocks);
    } else {
#pragma clang loop unroll(disable)
        for (int c = 0; c < QK_STEM3_STRADDLING_CHUNK; c++)
            stem_chunk(acc, r0, step, row->pair_offsets[c], row_values, w + c * chunk_bytes, pixels, blocks, 0);
        stem_chunk(acc, r0, step, row->pair_offsets[QK_STEM3_STRADDLING_CHUNK], row_values,
                   w + QK_STEM3_STRADDLING_CHUNK * chunk_bytes, pixels, blocks, 1);
#pragma clang loop unroll(disable)
        for (int c = QK_STEM3_STRADDLING_CHUNK + 1; c < QK_STEM3_CHUNKS; c++)
            stem_chunk(acc, r0, step, row->pair_offsets[c], row_values, w + c * chunk_bytes, pixels, blocks, 0);
    }
    if (blocks == 2 && valid >= 2 * STEM_LANES) {
        const __m256 multiplier0 = _mm256_loadu_ps(multiplier), multiplier1 = _mm256_loadu_ps(multiplier + STEM_LANES);
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
            qk_avx2_requantize16_store(acc[p][0], acc[p][1], multiplier0, multiplier1, args->multipliers_below_one,
                                       out + (size_t)p * out_c);
        return;
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        const __m256 m = qk_load8_ps(multiplier + j * STEM_LANES, valid - j * STEM_LANES);
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
            qk_requantize8_store(acc[p][j], _mm256_setzero_si256(), m, out + (size_t)p * out_c + j * STEM_LANES,
                                 valid - j * STEM_LANES);
    }
}

QK_INLINE QK_TARGET_AVX2 void stem_run(const qk_conv_args *args, const qk_conv_tile *tile, const int blocks) {
    const int32_t first_o = tile->first_block * STEM_LANES;
    const int32_t valid = args->geo.out_c - first_o;
    const int32_t *bias = args->bias + first_o;
    const float *multiplier = args->multiplier + first_o;
    qk_stem3_row row;
    qk_stem3_row_of(args, tile, STEM_LANES, STEM_TILE_PIXELS, &row);
    int32_t p = 0;
    for (; p + STEM_TILE_PIXELS <= tile->pixels; p += STEM_TILE_PIXELS) {
        qk_stem3_prefetch_tile(&row, p, STEM_TILE_PIXELS);
        stem_pixels(args, tile->weights, bias, multiplier, valid, &row, p, STEM_TILE_PIXELS, blocks);
    }
    qk_stem3_prefetch_rest(&row);
    switch (tile->pixels - p) {
    case 3:
        stem_pixels(args, tile->weights, bias, multiplier, valid, &row, p, 3, blocks);
        break;
    case 2:
        stem_pixels(args, tile->weights, bias, multiplier, valid, &row, p, 2, blocks);
        break;
    case 1:
        stem_pixels(args, tile->weights, bias, multiplier, valid, &row, p, 1, blocks);
        break;
    default:
        break;
    }
}

QK_TARGET_AVX2 void qk_conv3x3_c3_u8s16_4x2c8_avx2(const qk_conv_args *args, const qk_conv_blocking *b,
                                                   const qk_conv_tile *tile) {
    if (qk_tile_blocks(b, tile->tile) == 2)
        stem_run(args, tile, 2);
    else
        stem_run(args, tile, 1);
}
#endif
