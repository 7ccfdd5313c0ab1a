// AVX2 3x3 conv microkernels: tiles of up to 4 pixels x 2 blocks of 8 channels (or 6 pixels x 1 block), all
// weights of a chunk held in registers next to the 8 accumulators. The inputs come widened to int16 by the
// driver, once per work item (qk_conv_tile.wide; in dense mode the window rows), so the inner loop is only
// broadcasts of int16 pairs (loads), vpmaddwd and vpaddd: no per-chunk splitting, no spilled accumulators.
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

enum { AVX2_LANES = QK_AVX2_LANES, AVX2_MAX_PIXELS = QK_AVX2_MAX_PIXELS, AVX2_MAX_BLOCKS = QK_AVX2_MAX_BLOCKS };
_Static_assert(AVX2_MAX_PIXELS <= QK_MAX_TILE_PIXELS && AVX2_MAX_BLOCKS * AVX2_LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

QK_INLINE QK_TARGET_AVX2 void avx2_tile(const qk_conv_args *args, const qk_conv_blocking *b, const qk_conv_tile *tile,
                                        const int pixels, const int blocks) {
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *w = tile->weights;
    const int32_t chunks = b->chunks;
    const int32_t partial_stride = b->blocks_per_tile * AVX2_LANES;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_o = tile->first_block * AVX2_LANES;  // within the group

    // Accumulation starts from the bias: the integer sum acc + bias is the same, one add fewer per output.
    __m256i acc[AVX2_MAX_PIXELS][AVX2_MAX_BLOCKS];
    if (tile->first_tap == 0) {
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) {
            const __m256i bias = qk_load8_epi32(args->bias + first_out + first_o + j * AVX2_LANES,
                                                geo->out_per_group - first_o - j * AVX2_LANES);
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) acc[p][j] = bias;
        }
    } else {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                acc[p][j] = _mm256_load_si256((const __m256i *)(tile->partial + p * partial_stride + j * AVX2_LANES));
    }

    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * QK_AVX2_UNIT_BYTES;
    const int32_t end_tap = tile->first_tap + tile->taps;
    // The driver widened the inputs once (the band's rows, or in dense mode the window rows), so the loop is
    // only weight loads, broadcasts from its buffer, vpmaddwd and vpaddd, over whole kernel rows where the
    // inputs allow. The run's prefetches are spread evenly over its chunk steps (one per step from the start,
    // as avx512bw paces them, was 0.5-1.6% slower here in the network).
    for (int32_t tap = tile->first_tap, run_end; tap < end_tap; tap = run_end) {
        const int16_t *x[AVX2_MAX_PIXELS];
        run_end = qk_conv_int16_sources(args, b, tile, tap, end_tap, pixels, x, 1);
        const int32_t steps = (run_end - tap) * chunks;
        qk_spread_prefetch spread = qk_spread_prefetch_taps(tile, tap, run_end - tap, steps);
        for (int32_t k = 0; k < steps;)
#pragma clang loop unroll(disable)
            for (const int32_t end = qk_spread_prefetch_next(&spread, k, steps); k < end; k++, w += blocks * QK_AVX2_UNIT_BYTES)
                qk_avx2_chunk(acc, x, (size_t)k * QK_AVX2_DEPTH, w, pixels, blocks);
    }

    if (end_tap < b->taps) {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                _mm256_store_si256((__m256i *)(tile->partial + p * partial_stride + j * AVX2_LANES), acc[p][j]);
        return;
    }

    uint8_t *out = qk_conv_tile_output(args, tile, AVX2_LANES, pixels);
    if (blocks == 2 && geo->out_per_group - first_o >= 2 * AVX2_LANES) {
        const __m256 multiplier0 = _mm256_loadu_ps(args->multiplier + first_out + first_o);
        const __m256 multiplier1 = _mm256_loadu_ps(args->multiplier + first_out + first_o + AVX2_LANES);
        const int below_one = args->multipliers_below_one;
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
            qk_avx2_requantize16_store(acc[p][0], acc[p][1], multiplier0, multiplier1, below_one,
                               out + (size_t)p * geo->out_c);
        return;
    }
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        const int32_t o = first_o + j * AVX2_LANES;
        const int32_t valid = geo->out_per_group - o;
        const __m256 multiplier = qk_load8_ps(args->multiplier + first_out + o, valid);
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
            qk_requantize8_store(acc[p][j], _mm256_setzero_si256(), multiplier, out + (size_t)p * geo->out_c + j * AVX2_LANES, valid);
    }
}

// The driver's widening of input rows (qk_conv_microkernels.widen): 16 values at a time, so up to 15 more
// are read and written.
QK_TARGET_AVX2 void qk_widen_u8s16_avx2(const uint8_t *bytes, int32_t values, int16_t *words) {
    for (int32_t i = 0; i < values; i += 16)
        _mm256_storeu_si256((__m256i *)(words + i), _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(bytes + i))));
}

#define AVX2_TILE(P, B)                                                                                \
    static QK_TARGET_AVX2 void avx2_tile_##P##x##B(const qk_conv_args *args, const qk_conv_blocking *b, \
                                                   const qk_conv_tile *tile) {                         \
        avx2_tile(args, b, tile, P, B);                                                                \
    }
#define AVX2_TILES_FOR_PIXELS(P) AVX2_TILE(P, 1) AVX2_TILE(P, 2)
AVX2_TILES_FOR_PIXELS(1)
AVX2_TILES_FOR_PIXELS(2)
AVX2_TILES_FOR_PIXELS(3)
AVX2_TILES_FOR_PIXELS(4)
AVX2_TILE(5, 1)
AVX2_TILE(6, 1)

// 5 or 6 pixels x 2 blocks would need more than the 16 ymm registers (accumulators, four weight vectors,
// two broadcasts and a product).
#define AVX2_ROW(P) avx2_tile_##P##x1, avx2_tile_##P##x2
const qk_conv_tile_fn qk_conv3x3_u8s16_4x2c8_avx2[AVX2_MAX_PIXELS * AVX2_MAX_BLOCKS] = {
    AVX2_ROW(1), AVX2_ROW(2), AVX2_ROW(3), AVX2_ROW(4), avx2_tile_5x1, NULL, avx2_tile_6x1, NULL,
};
#endif
