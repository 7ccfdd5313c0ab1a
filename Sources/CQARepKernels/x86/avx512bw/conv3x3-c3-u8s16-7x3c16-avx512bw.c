// AVX-512BW microkernel for 3x3 layers of 3 input channels (RGB stems; qk_conv_microkernels.stem3), as
// avx2's (conv3x3-c3-u8s16-4x2c8-avx2.c) on zmm: the dense packing's 14 int16 pairs broadcast straight
// from the driver's widened rows (the one spanning kernel rows 0 and 1 blended from two), a whole row per
// call, in tiles of 8 x 1-2, 7 x 3 or 5 x 4 blocks of 16 channels.
#include "x86/avx512bw/avx512bw.h"

#if QK_HAVE_X86

enum { STEM_LANES = QK_BW_LANES };
_Static_assert(QK_STEM3_CHUNKS * QK_BW_DEPTH == 28, "27 window values in 7 chunks of 4");

QK_INLINE QK_TARGET_AVX512 __m512i stem_broadcast(const int16_t *pair) {
    return _mm512_set1_epi32(qk_load_u32((const uint8_t *)pair));
}

// One chunk step of `pixels` pixels (kernel row 0 of the first at r0, the next ones `step` values further),
// a pair at a time.
QK_INLINE QK_TARGET_AVX512 void stem_chunk(__m512i (*acc)[QK_BW_MAX_BLOCKS], const int16_t *r0, size_t step,
                                           const size_t *offsets, size_t row_values, const uint8_t *w,
                                           const int pixels, const int blocks, int straddling) {
#pragma clang loop unroll(full)
    for (int half = 0; half < 2; half++) {
        __m512i weights[QK_BW_MAX_BLOCKS];
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) weights[j] = _mm512_loadu_si512(w + j * QK_BW_UNIT_BYTES + half * 64);
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) {
            const int16_t *x = r0 + (size_t)p * step;
            __m512i pair = stem_broadcast(x + offsets[half]);
            if (half == 0 && straddling)
                pair = _mm512_mask_blend_epi16(0xAAAAAAAAu, pair, stem_broadcast(x + row_values - 1));
            // A pixel's products ahead of their adds, as in the direct kernels: without, 67-69% of peak
            // instead of 77% (docs/performance.md, "Stem kernels over widened rows").
            __m512i products[QK_BW_MAX_BLOCKS];
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) products[j] = _mm512_madd_epi16(pair, weights[j]);
            qk_bw_hold_one(products, blocks);
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) acc[p][j] = _mm512_add_epi32(acc[p][j], products[j]);
        }
    }
}

// `pixels` pixels from the one whose kernel row 0 starts at r0 times `blocks` blocks (their lanes in
// lane_mask), stored at out, the next pixels out_c bytes further.
QK_INLINE QK_TARGET_AVX512 void stem_pixels(const qk_conv_args *args, const uint8_t *w, const int32_t *bias,
                                            const float *multiplier, const __mmask16 *lane_mask,
                                            const int16_t *r0, size_t step, const size_t pair_offsets[QK_STEM3_CHUNKS][2],
                                            size_t row_values, uint8_t *out, const int pixels, const int blocks) {
    __m512i acc[QK_BW_MAX_PIXELS][QK_BW_MAX_BLOCKS];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        const __m512i b = _mm512_maskz_loadu_epi32(lane_mask[j], bias + j * STEM_LANES);
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) acc[p][j] = b;
    }
    const size_t chunk_bytes = (size_t)blocks * QK_BW_UNIT_BYTES;
#pragma clang loop unroll(disable)
    for (int c = 0; c < QK_STEM3_CHUNKS; c++)
        stem_chunk(acc, r0, step, pair_offsets[c], row_values, w + c * chunk_bytes, pixels, blocks,
                   c == QK_STEM3_STRADDLING_CHUNK);

    // The direct kernel's epilogue: saturating packs narrow up to four blocks at once, a permutation
    // restores channel order.
    __m512 m[QK_BW_MAX_BLOCKS];
    __mmask64 store_mask = 0;
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        m[j] = _mm512_maskz_loadu_ps(lane_mask[j], multiplier + j * STEM_LANES);
        store_mask |= (__mmask64)lane_mask[j] << (j * STEM_LANES);
    }
    const __m512i channel_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const size_t out_c = (size_t)args->geo.out_c;
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++) {
        __m512i y[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++)
            y[j] = args->multipliers_below_one ? qk_round16(acc[p][j], m[j]) : qk_round_clamped16(acc[p][j], m[j]);
        const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(y[0], y[1]), _mm512_packs_epi32(y[2], y[3]));
        _mm512_mask_storeu_epi8(out + (size_t)p * out_c, store_mask, _mm512_permutexvar_epi32(channel_order, bytes));
    }
}

QK_INLINE QK_TARGET_AVX512 void stem_run(const qk_conv_args *args, const qk_conv_tile *tile, const int tile_pixels,
                                         const int blocks) {
    const int32_t first_o = tile->first_block * STEM_LANES;
    __mmask16 lane_mask[QK_BW_MAX_BLOCKS];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) lane_mask[j] = qk_lane_mask16(args->geo.out_c - first_o - j * STEM_LANES);
    const int32_t *bias = args->bias + first_o;
    const float *multiplier = args->multiplier + first_o;
    qk_stem3_row row;
    qk_stem3_row_of(args, tile, STEM_LANES, tile_pixels, &row);
    // The row's fields go in one by one: handing stem_pixels the row itself, as avx2's does, made clang's
    // code for this kernel 20% slower (0.210 -> 0.249 ms in the harness).
#define STEM_PIXELS(P, N)                                                                                          \
    stem_pixels(args, tile->weights, bias, multiplier, lane_mask, row.r0 + (size_t)(P) * row.step, row.step,       \
                row.pair_offsets, row.row_values, row.out + (size_t)(P) * row.out_c, N, blocks)
    int32_t p = 0;
    for (; p + tile_pixels <= tile->pixels; p += tile_pixels) {
        qk_stem3_prefetch_tile(&row, p, tile_pixels);
        STEM_PIXELS(p, tile_pixels);
    }
    qk_stem3_prefetch_rest(&row);
    // A row that does not split into whole tiles ends with one more tile over its last pixels, some of
    // them again (the same bytes): single pixels ran at a third of the rate.
    if (p < tile->pixels && tile->pixels >= tile_pixels) {
        STEM_PIXELS(tile->pixels - tile_pixels, tile_pixels);
        return;
    }
    for (; p < tile->pixels; p++) STEM_PIXELS(p, 1);
#undef STEM_PIXELS
}

// Tiles within the direct kernels' budget of 21 accumulators.
QK_TARGET_AVX512 void qk_conv3x3_c3_u8s16_7x3c16_avx512bw(const qk_conv_args *args, const qk_conv_blocking *b,
                                                          const qk_conv_tile *tile) {
    switch (qk_tile_blocks(b, tile->tile)) {
    case 1:
        stem_run(args, tile, 8, 1);
        break;
    case 2:
        stem_run(args, tile, 8, 2);
        break;
    case 3:
        stem_run(args, tile, 7, 3);
        break;
    default:
        stem_run(args, tile, 5, 4);
        break;
    }
}
#endif
