// AVX-512BW 3x3 conv microkernels: tiles of up to 8 pixels x 2, 7 x 3 or 5 x 4 blocks of 16 channels; the
// driver picks the shape per layer. Per chunk of 4 input channels, pixel and block the work is two vpmaddwd
// and two vpaddd, nothing else: the inputs come widened to int16 by the driver, once per work item
// (qk_conv_tile.wide; in dense mode the window rows), and their channel pairs reach the multiplies through
// broadcast loads.
#include "x86/avx512bw/avx512bw.h"

#if QK_HAVE_X86

enum { BW_LANES = QK_BW_LANES, BW_MAX_PIXELS = QK_BW_MAX_PIXELS, BW_MAX_BLOCKS = QK_BW_MAX_BLOCKS,
       BW_MAX_ACCUMULATORS = QK_BW_MAX_ACCUMULATORS };
_Static_assert(BW_MAX_BLOCKS <= 4, "the narrowing packs four blocks at most");
_Static_assert(BW_MAX_PIXELS <= QK_MAX_TILE_PIXELS && BW_MAX_BLOCKS * BW_LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

QK_INLINE QK_TARGET_AVX512 void bw_tile(const qk_conv_args *args, const qk_conv_blocking *b,
                                          const qk_conv_tile *tile, const int pixels, const int blocks) {
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *w = tile->weights;
    const int32_t chunks = b->chunks;

    const int32_t partial_stride = b->blocks_per_tile * BW_LANES;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_lane = tile->first_block * BW_LANES;  // within the group
    __mmask16 lane_mask[BW_MAX_BLOCKS];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) lane_mask[j] = qk_lane_mask16(geo->out_per_group - first_lane - j * BW_LANES);

    // Accumulation starts from the bias: the integer sum acc + bias is the same, one add fewer per output.
    __m512i acc[BW_MAX_PIXELS][BW_MAX_BLOCKS];
    if (tile->first_tap == 0) {
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) {
            const __m512i bias =
                _mm512_maskz_loadu_epi32(lane_mask[j], args->bias + first_out + first_lane + j * BW_LANES);
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) acc[p][j] = bias;
        }
    } else {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                acc[p][j] = _mm512_load_si512(tile->partial + p * partial_stride + j * BW_LANES);
    }

    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * QK_BW_UNIT_BYTES;
    const int32_t end_tap = tile->first_tap + tile->taps;
    // The driver widened the inputs once (the band's rows, or in dense mode the window rows), so the loop is
    // only weight loads, broadcasts from its buffer, vpmaddwd and vpaddd (and the paced prefetches), over
    // whole kernel rows where the inputs allow.
    for (int32_t tap = tile->first_tap, run_end; tap < end_tap; tap = run_end) {
        const int16_t *x[BW_MAX_PIXELS];
        run_end = qk_conv_int16_sources(args, b, tile, tap, end_tap, pixels, x, 0);
        const int32_t run_chunks = (run_end - tap) * chunks;
        const qk_paced_prefetch prefetch = qk_paced_prefetch_taps(tile, tap, run_end - tap, run_chunks);
        for (int32_t k = 0; k < run_chunks; k++, w += blocks * QK_BW_UNIT_BYTES) {
            qk_paced_prefetch_chunk(&prefetch, k);
            qk_bw_chunk(acc, x, k, w, pixels, blocks);
        }
    }

    if (tile->first_tap + tile->taps < b->taps) {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                _mm512_store_si512(tile->partial + p * partial_stride + j * BW_LANES, acc[p][j]);
        return;
    }

    uint8_t *out = qk_conv_tile_output(args, tile, BW_LANES, pixels);
    __m512 multiplier[BW_MAX_BLOCKS];
    __mmask64 store_mask = 0;
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        multiplier[j] = _mm512_maskz_loadu_ps(lane_mask[j], args->multiplier + first_out + first_lane + j * BW_LANES);
        store_mask |= (__mmask64)lane_mask[j] << (j * BW_LANES);
    }
    // Saturating packs narrow up to four blocks at once (the VNNI path's epilogue): dword i*4 + j of the
    // packed vector holds lanes 4i..4i+3 of block j; the permutation restores channel order.
    const __m512i channel_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const int multipliers_below_one = args->multipliers_below_one;
    const size_t out_c = (size_t)geo->out_c;
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++) {
        __m512i y[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                        _mm512_setzero_si512()};
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++)
            y[j] = multipliers_below_one ? qk_round16(acc[p][j], multiplier[j])
                                         : qk_round_clamped16(acc[p][j], multiplier[j]);
        // Signed saturation first: int32 beyond 32767 must become 32767 (then 255), which the unsigned
        // pack would turn into 65535, read as -1 (then 0) by the second pack.
        const __m512i bytes = _mm512_packus_epi16(_mm512_packs_epi32(y[0], y[1]), _mm512_packs_epi32(y[2], y[3]));
        _mm512_mask_storeu_epi8(out + (size_t)p * out_c, store_mask, _mm512_permutexvar_epi32(channel_order, bytes));
    }
}

// The driver's widening of input rows (qk_conv_microkernels.widen): 32 values at a time, so up to 31 more
// are read and written.
QK_TARGET_AVX512 void qk_widen_u8s16_avx512bw(const uint8_t *bytes, int32_t values, int16_t *words) {
    for (int32_t i = 0; i < values; i += 32)
        _mm512_storeu_si512(words + i, _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(bytes + i))));
}

#define BW_TILE(P, B)                                                                                      \
    static QK_TARGET_AVX512 void bw_tile_##P##x##B(const qk_conv_args *args, const qk_conv_blocking *b, \
                                                     const qk_conv_tile *tile) {                         \
        bw_tile(args, b, tile, P, B);                                                                      \
    }
#define BW_TILES_1_TO_2(P) BW_TILE(P, 1) BW_TILE(P, 2)
#define BW_TILES_1_TO_3(P) BW_TILES_1_TO_2(P) BW_TILE(P, 3)
#define BW_TILES_1_TO_4(P) BW_TILES_1_TO_3(P) BW_TILE(P, 4)
BW_TILES_1_TO_4(1)
BW_TILES_1_TO_4(2)
BW_TILES_1_TO_4(3)
BW_TILES_1_TO_4(4)
BW_TILES_1_TO_4(5)
BW_TILES_1_TO_3(6)
BW_TILES_1_TO_3(7)
BW_TILES_1_TO_2(8)

// Exactly the shapes within the accumulator budget (pixels x blocks <= 21).
#define BW_ROW_4(P) bw_tile_##P##x1, bw_tile_##P##x2, bw_tile_##P##x3, bw_tile_##P##x4
#define BW_ROW_3(P) bw_tile_##P##x1, bw_tile_##P##x2, bw_tile_##P##x3, NULL
#define BW_ROW_2(P) bw_tile_##P##x1, bw_tile_##P##x2, NULL, NULL
const qk_conv_tile_fn qk_conv3x3_u8s16_7x3c16_avx512bw[BW_MAX_PIXELS * BW_MAX_BLOCKS] = {
    BW_ROW_4(1), BW_ROW_4(2), BW_ROW_4(3), BW_ROW_4(4), BW_ROW_4(5), BW_ROW_3(6), BW_ROW_3(7), BW_ROW_2(8),
};
_Static_assert(5 * 4 <= BW_MAX_ACCUMULATORS && 6 * 4 > BW_MAX_ACCUMULATORS && 7 * 3 <= BW_MAX_ACCUMULATORS &&
                   8 * 3 > BW_MAX_ACCUMULATORS && 8 * 2 <= BW_MAX_ACCUMULATORS,
               "the table holds exactly the tiles within the accumulator budget");

#endif
