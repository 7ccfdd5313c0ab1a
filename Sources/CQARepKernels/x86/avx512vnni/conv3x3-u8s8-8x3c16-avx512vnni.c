// AVX-512 VNNI 3x3 conv microkernels: tiles of up to 8 pixels x 3 blocks or 6 pixels x 4 blocks of 16
// channels, so every weight load feeds up to 8 products and every input broadcast 3 or 4; the driver picks
// the shape per layer.
#include "x86/avx512vnni/avx512vnni.h"

#if QK_HAVE_X86

enum { VNNI_LANES = QK_VNNI_LANES, VNNI_MAX_PIXELS = QK_VNNI_MAX_PIXELS, VNNI_MAX_BLOCKS = QK_VNNI_MAX_BLOCKS,
       VNNI_MAX_ACCUMULATORS = QK_VNNI_MAX_ACCUMULATORS };
_Static_assert(VNNI_MAX_BLOCKS <= 4, "the narrowing packs four blocks at most");
_Static_assert(VNNI_MAX_PIXELS <= QK_MAX_TILE_PIXELS && VNNI_MAX_BLOCKS * VNNI_LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

QK_INLINE QK_TARGET_VNNI void vnni_tile(const qk_conv_args *args, const qk_conv_blocking *b, const qk_conv_tile *tile,
               const int pixels, const int blocks) {
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *image = args->input + (size_t)tile->image * geo->in_h * geo->in_w * geo->in_c;
    const int32_t first_channel = tile->group * geo->in_per_group;
    const uint8_t *w = tile->weights;
    const int32_t chunks = b->chunks;

    const int32_t partial_stride = b->blocks_per_tile * VNNI_LANES;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_lane = tile->first_block * VNNI_LANES;  // within the group
    __mmask16 lane_mask[VNNI_MAX_BLOCKS];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) lane_mask[j] = qk_lane_mask16(geo->out_per_group - first_lane - j * VNNI_LANES);

    // Accumulation starts from the bias: the integer sum acc + bias is the same, one add fewer per output.
    __m512i acc[VNNI_MAX_PIXELS][VNNI_MAX_BLOCKS];
    if (tile->first_tap == 0) {
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) {
            const __m512i bias =
                _mm512_maskz_loadu_epi32(lane_mask[j], args->bias + first_out + first_lane + j * VNNI_LANES);
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) acc[p][j] = bias;
        }
    } else {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                acc[p][j] = _mm512_load_si512(tile->partial + p * partial_stride + j * VNNI_LANES);
    }

    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * QK_VNNI_UNIT_BYTES;
    for (int32_t tap = tile->first_tap; tap < tile->first_tap + tile->taps; tap++) {
        const uint8_t *src[VNNI_MAX_PIXELS];
        qk_conv_tile_sources(args, tile, image, first_channel, tap, pixels, src);
        const qk_paced_prefetch prefetch = qk_paced_prefetch_taps(tile, tap, 1, chunks);
        for (int32_t k = 0; k < chunks; k++) {
            qk_paced_prefetch_chunk(&prefetch, k);
            __m512i wv[VNNI_MAX_BLOCKS];
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) wv[j] = _mm512_loadu_si512(w + j * QK_VNNI_UNIT_BYTES);
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) {
                const __m512i x = _mm512_set1_epi32(qk_load_u32(src[p] + 4 * k));
#pragma clang loop unroll(full)
                for (int j = 0; j < blocks; j++) acc[p][j] = _mm512_dpbusd_epi32(acc[p][j], x, wv[j]);
            }
            w += blocks * QK_VNNI_UNIT_BYTES;
        }
    }

    if (tile->first_tap + tile->taps < b->taps) {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                _mm512_store_si512(tile->partial + p * partial_stride + j * VNNI_LANES, acc[p][j]);
        return;
    }

    uint8_t *out = qk_conv_tile_output(args, tile, VNNI_LANES, pixels);
    __m512 multiplier[VNNI_MAX_BLOCKS];
    __mmask64 store_mask = 0;
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        multiplier[j] = _mm512_maskz_loadu_ps(lane_mask[j], args->multiplier + first_out + first_lane + j * VNNI_LANES);
        store_mask |= (__mmask64)lane_mask[j] << (j * VNNI_LANES);
    }
    // Saturating packs narrow up to four blocks at once: dword i*4 + j of the packed vector holds lanes
    // 4i..4i+3 of block j, and this permutation puts the blocks back in channel order.
    const __m512i channel_order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    // Read once: the byte stores below may alias *args, so the compiler reloaded and tested the flag for
    // every pixel and block.
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
        _mm512_mask_storeu_epi8(out + (size_t)p * out_c, store_mask,
                                _mm512_permutexvar_epi32(channel_order, bytes));
    }
}

#define VNNI_TILE(P, B)                                                                                \
    static QK_TARGET_VNNI void vnni_tile_##P##x##B(const qk_conv_args *args, const qk_conv_blocking *b, \
                                                   const qk_conv_tile *tile) {                         \
        vnni_tile(args, b, tile, P, B);                                                                \
    }
#define VNNI_TILES_FOR_PIXELS(P) VNNI_TILE(P, 1) VNNI_TILE(P, 2) VNNI_TILE(P, 3)
#define VNNI_TILES_FOR_PIXELS_4(P) VNNI_TILES_FOR_PIXELS(P) VNNI_TILE(P, 4)
VNNI_TILES_FOR_PIXELS_4(1)
VNNI_TILES_FOR_PIXELS_4(2)
VNNI_TILES_FOR_PIXELS_4(3)
VNNI_TILES_FOR_PIXELS_4(4)
VNNI_TILES_FOR_PIXELS_4(5)
VNNI_TILES_FOR_PIXELS_4(6)
VNNI_TILES_FOR_PIXELS(7)
VNNI_TILES_FOR_PIXELS(8)

// 7 or 8 pixels x 4 blocks would need 28 or 32 accumulators, leaving too few registers for the weights
// and broadcasts (docs/performance.md has the 7 x 4 variant that was tried).
#define VNNI_ROW(P) vnni_tile_##P##x1, vnni_tile_##P##x2, vnni_tile_##P##x3, vnni_tile_##P##x4
#define VNNI_ROW_WITHOUT_4(P) vnni_tile_##P##x1, vnni_tile_##P##x2, vnni_tile_##P##x3, NULL
const qk_conv_tile_fn qk_conv3x3_u8s8_8x3c16_avx512vnni[VNNI_MAX_PIXELS * VNNI_MAX_BLOCKS] = {
    VNNI_ROW(1), VNNI_ROW(2), VNNI_ROW(3), VNNI_ROW(4), VNNI_ROW(5), VNNI_ROW(6), VNNI_ROW_WITHOUT_4(7),
    VNNI_ROW_WITHOUT_4(8),
};
_Static_assert(6 * 4 <= VNNI_MAX_ACCUMULATORS && 7 * 4 > VNNI_MAX_ACCUMULATORS && 8 * 3 <= VNNI_MAX_ACCUMULATORS,
               "the table holds exactly the tiles within the accumulator budget");

#endif
