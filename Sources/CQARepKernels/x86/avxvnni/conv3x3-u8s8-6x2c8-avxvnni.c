// AVX-VNNI 3x3 conv microkernels: tiles of up to 8 pixels x 1 block, 6 x 2, 4 x 3 or 3 x 4 blocks of 8
// channels, so every weight load feeds up to 8 products and every input broadcast up to 4; the driver picks
// the shape per layer. The arithmetic and its order are the AVX-512 VNNI kernel's on 8 lanes.
#include "x86/avxvnni/avxvnni.h"

#if QK_HAVE_X86

enum { LANES = QK_AVXVNNI_LANES, MAX_PIXELS = QK_AVXVNNI_MAX_PIXELS, MAX_BLOCKS = QK_AVXVNNI_MAX_BLOCKS,
       MAX_ACCUMULATORS = QK_AVXVNNI_MAX_ACCUMULATORS, UNIT_BYTES = QK_AVXVNNI_UNIT_BYTES };
_Static_assert(MAX_BLOCKS <= 4, "the narrowing packs four blocks at most");
_Static_assert(MAX_PIXELS <= QK_MAX_TILE_PIXELS && MAX_BLOCKS * LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

// qk_round16 and qk_round_clamped16 (x86.h) on 8 lanes: the same float operations, with the saturating
// packs below standing in for the clamps.
QK_INLINE QK_TARGET_AVX2 __m256i round8(__m256i acc_plus_bias, __m256 multiplier) {
    return _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(acc_plus_bias), multiplier));
}

QK_INLINE QK_TARGET_AVX2 __m256i round_clamped8(__m256i acc_plus_bias, __m256 multiplier) {
    const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(acc_plus_bias), multiplier);
    return _mm256_cvtps_epi32(_mm256_min_ps(t, _mm256_set1_ps(255.0f)));
}

// The first `bytes` bytes of `v` (a whole tile when bytes == blocks * 8) at out, and nothing past them:
// the next channels belong to another tile, which another thread may be writing.
QK_INLINE QK_TARGET_AVX2 void store_bytes(uint8_t *out, __m256i v, int32_t bytes, const int blocks) {
    if (bytes == blocks * LANES) {
        if (blocks == 1) _mm_storel_epi64((__m128i *)out, _mm256_castsi256_si128(v));
        if (blocks == 2) _mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(v));
        if (blocks == 3) {
            _mm_storeu_si128((__m128i *)out, _mm256_castsi256_si128(v));
            _mm_storel_epi64((__m128i *)(out + 16), _mm256_extracti128_si256(v, 1));
        }
        if (blocks == 4) _mm256_storeu_si256((__m256i *)out, v);
        return;
    }
    uint8_t lanes[32];
    _mm256_storeu_si256((__m256i *)lanes, v);
    memcpy(out, lanes, (size_t)bytes);
}

// A chunk step holds either every block's weights and one broadcast at a time (pixel by pixel), or, where
// that would not fit the 16 ymm registers beside the sums (3 x 4: 12 + 4 + 1), every pixel's broadcast and
// one block's weights at a time.
#define WEIGHTS_OUTER(pixels, blocks) ((pixels) * (blocks) + (blocks) + 1 > 16)

// Empty asms that take a pixel's (or a block's) sums in and out, so that its products are issued before
// the next broadcast (or weight load): at 16 live registers clang, free to interleave them, spilled sums
// of the 4 x 3 and 3 x 4 tiles.
QK_INLINE QK_TARGET_AVX2 void hold_pixel(__m256i *acc, const int blocks) {
    if (blocks == 3) __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]));
}

QK_INLINE QK_TARGET_AVX2 void hold_block(__m256i (*acc)[MAX_BLOCKS], int j, const int pixels) {
    if (pixels == 3) __asm__ volatile("" : "+x"(acc[0][j]), "+x"(acc[1][j]), "+x"(acc[2][j]));
}

// One chunk step of a tile: every pixel's four input bytes at src[p] + offset times every block's weights.
QK_INLINE QK_TARGET_AVXVNNI const uint8_t *avxvnni_chunk(__m256i (*acc)[MAX_BLOCKS], const uint8_t *w,
                                                        const uint8_t *const *src, int32_t offset, const int pixels,
                                                        const int blocks) {
    if (WEIGHTS_OUTER(pixels, blocks)) {
        __m256i x[MAX_PIXELS];
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) x[p] = _mm256_set1_epi32(qk_load_u32(src[p] + offset));
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) {
            const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + j * UNIT_BYTES));
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) acc[p][j] = qk_avxvnni_dpbusd(acc[p][j], x[p], wv);
            hold_block(acc, j, pixels);
        }
    } else {
        __m256i wv[MAX_BLOCKS];
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) wv[j] = _mm256_loadu_si256((const __m256i *)(w + j * UNIT_BYTES));
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) {
            const __m256i x = _mm256_set1_epi32(qk_load_u32(src[p] + offset));
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) acc[p][j] = qk_avxvnni_dpbusd(acc[p][j], x, wv[j]);
            hold_pixel(acc[p], blocks);
        }
    }
    return w + blocks * UNIT_BYTES;
}

// Two chunk steps whose inputs are adjacent: the second reads one chunk (4 u8 channels, 4 bytes) past the first.
QK_INLINE QK_TARGET_AVXVNNI const uint8_t *avxvnni_chunk_pair(__m256i (*acc)[MAX_BLOCKS], const uint8_t *w,
                                                             const uint8_t *const *src, int32_t offset,
                                                             const int pixels, const int blocks) {
    w = avxvnni_chunk(acc, w, src, offset, pixels, blocks);
    return avxvnni_chunk(acc, w, src, offset + QK_AVXVNNI_DEPTH, pixels, blocks);
}

QK_INLINE QK_TARGET_AVXVNNI void avxvnni_tile(const qk_conv_args *args, const qk_conv_blocking *b,
                                              const qk_conv_tile *tile, const int pixels, const int blocks) {
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *image = args->input + (size_t)tile->image * geo->in_h * geo->in_w * geo->in_c;
    const int32_t first_channel = tile->group * geo->in_per_group;
    const uint8_t *w = tile->weights;
    const int32_t chunks = b->chunks;

    const int32_t partial_stride = b->blocks_per_tile * LANES;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_lane = tile->first_block * LANES;  // within the group
    // Output channels of this tile that exist; every block has at least one.
    const int32_t valid = geo->out_per_group - first_lane;

    // Accumulation starts from the bias: the integer sum acc + bias is the same, one add fewer per output.
    __m256i acc[MAX_PIXELS][MAX_BLOCKS];
    if (tile->first_tap == 0) {
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) {
            const __m256i bias = qk_load8_epi32(args->bias + first_out + first_lane + j * LANES, valid - j * LANES);
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) acc[p][j] = bias;
        }
    } else {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                acc[p][j] = _mm256_load_si256((const __m256i *)(tile->partial + p * partial_stride + j * LANES));
    }

    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * UNIT_BYTES;
    const int32_t end_tap = tile->first_tap + tile->taps;
    for (int32_t tap = tile->first_tap, run_end; tap < end_tap; tap = run_end) {
        const uint8_t *src[MAX_PIXELS];
        run_end = qk_conv_tile_run_sources(args, b, tile, image, first_channel, tap, end_tap, pixels, src);
        const int32_t run_chunks = (run_end - tap) * chunks;
        // A copy the out-of-line sources never saw, which the compiler can keep in registers.
        const uint8_t *pixel_src[MAX_PIXELS];
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++) pixel_src[p] = src[p];
        const int32_t *offset = tile->run_offsets;
        if (chunks % 2 == 0) {
            // Chunks in pairs, which never straddle a run's jump from one kernel row to the next: one offset
            // load and one loop test per two chunk steps. The next item's prefetches spread evenly over the
            // pairs (qk_spread_prefetch_taps), so that no step tests for them. Odd chunk counts (the stems'
            // 7) keep one per step from the start: spread over such short runs, the stems were 2% slower.
            const int32_t pairs = run_chunks / 2;
            qk_spread_prefetch spread = qk_spread_prefetch_taps(tile, tap, run_end - tap, pairs);
            for (int32_t k = 0; k < pairs;)
#pragma clang loop unroll(disable)
                for (const int32_t end = qk_spread_prefetch_next(&spread, k, pairs); k < end; k++, offset += 2)
                    w = avxvnni_chunk_pair(acc, w, pixel_src, *offset, pixels, blocks);
        } else {
            const qk_paced_prefetch prefetch = qk_paced_prefetch_taps(tile, tap, run_end - tap, run_chunks);
            for (int32_t k = 0; k < run_chunks; k++) {
                qk_paced_prefetch_chunk(&prefetch, k);
                w = avxvnni_chunk(acc, w, pixel_src, offset[k], pixels, blocks);
            }
        }
    }

    if (tile->first_tap + tile->taps < b->taps) {
#pragma clang loop unroll(full)
        for (int p = 0; p < pixels; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++)
                _mm256_store_si256((__m256i *)(tile->partial + p * partial_stride + j * LANES), acc[p][j]);
        return;
    }

    uint8_t *out = qk_conv_tile_output(args, tile, LANES, pixels);
    __m256 multiplier[MAX_BLOCKS];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++)
        multiplier[j] = qk_load8_ps(args->multiplier + first_out + first_lane + j * LANES, valid - j * LANES);
    const int32_t bytes = valid < blocks * LANES ? valid : blocks * LANES;
    // The packs work within 128-bit halves: dword 4h + j of the packed vector holds lanes 4h..4h+3 of block
    // j, and this permutation puts the blocks back in channel order.
    const __m256i channel_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    // Read once: the byte stores below may alias *args.
    const int multipliers_below_one = args->multipliers_below_one;
    const size_t out_c = (size_t)geo->out_c;
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++) {
        __m256i y[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++)
            y[j] = multipliers_below_one ? round8(acc[p][j], multiplier[j]) : round_clamped8(acc[p][j], multiplier[j]);
        // Signed saturation first: int32 beyond 32767 must become 32767 (then 255), which the unsigned
        // pack would turn into 65535, read as -1 (then 0) by the second pack.
        const __m256i packed = _mm256_packus_epi16(_mm256_packs_epi32(y[0], y[1]), _mm256_packs_epi32(y[2], y[3]));
        store_bytes(out + (size_t)p * out_c, _mm256_permutevar8x32_epi32(packed, channel_order), bytes, blocks);
    }
}

#define AVXVNNI_TILE(P, B)                                                                       \
    static QK_TARGET_AVXVNNI void tile_##P##x##B(const qk_conv_args *args, const qk_conv_blocking *b, \
                                                 const qk_conv_tile *tile) {                     \
        avxvnni_tile(args, b, tile, P, B);                                                      \
    }
AVXVNNI_TILE(1, 1) AVXVNNI_TILE(1, 2) AVXVNNI_TILE(1, 3) AVXVNNI_TILE(1, 4)
AVXVNNI_TILE(2, 1) AVXVNNI_TILE(2, 2) AVXVNNI_TILE(2, 3) AVXVNNI_TILE(2, 4)
AVXVNNI_TILE(3, 1) AVXVNNI_TILE(3, 2) AVXVNNI_TILE(3, 3) AVXVNNI_TILE(3, 4)
AVXVNNI_TILE(4, 1) AVXVNNI_TILE(4, 2) AVXVNNI_TILE(4, 3)
AVXVNNI_TILE(5, 1) AVXVNNI_TILE(5, 2)
AVXVNNI_TILE(6, 1) AVXVNNI_TILE(6, 2)
AVXVNNI_TILE(7, 1)
AVXVNNI_TILE(8, 1)

// Only the shapes within the 12 accumulators: with 16 ymm registers, more would spill.
const qk_conv_tile_fn qk_conv3x3_u8s8_6x2c8_avxvnni[MAX_PIXELS * MAX_BLOCKS] = {
    tile_1x1, tile_1x2, tile_1x3, tile_1x4, tile_2x1, tile_2x2, tile_2x3, tile_2x4,
    tile_3x1, tile_3x2, tile_3x3, tile_3x4, tile_4x1, tile_4x2, tile_4x3, NULL,
    tile_5x1, tile_5x2, NULL,     NULL,     tile_6x1, tile_6x2, NULL,     NULL,
    tile_7x1, NULL,     NULL,     NULL,     tile_8x1, NULL,     NULL,     NULL,
};
_Static_assert(6 * 2 <= MAX_ACCUMULATORS && 7 * 2 > MAX_ACCUMULATORS && 3 * 4 <= MAX_ACCUMULATORS &&
                   5 * 3 > MAX_ACCUMULATORS,
               "the table holds exactly the tiles within the accumulator budget");

#endif
