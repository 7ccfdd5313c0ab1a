// AVX-512 VNNI 3x3 conv. Each vpdpbusd multiplies one broadcast 4-channel input chunk (u8) by the 16x4
// weights (s8) of a block of 16 output channels, exactly (int32 sums of four products cannot overflow).
// A microkernel keeps up to 24 zmm accumulators: 8 output pixels x 3 blocks (48 channels), so every
// weight load feeds 8 products and every input broadcast 3, or 6 pixels x 4 blocks (64 channels); the
// driver picks the shape per layer.
#include "qk-x86.h"

#if QK_HAVE_X86

enum { VNNI_LANES = 16, VNNI_MAX_PIXELS = 8, VNNI_MAX_BLOCKS = 4, VNNI_MAX_ACCUMULATORS = 24 };
_Static_assert(VNNI_MAX_BLOCKS <= 4, "the narrowing packs four blocks at most");
_Static_assert(VNNI_MAX_PIXELS <= QK_MAX_TILE_PIXELS && VNNI_MAX_BLOCKS * VNNI_LANES <= QK_MAX_TILE_LANES,
               "partial-sum buffer too small");

// Weight bytes per tap slice. Measured on a Xeon with 48 KB L1 / 2 MB L2 (RepVGG-A0, batch 1): L1-sized
// slices were 2.5% slower than none, because L2 streams the weights fast enough and every slice costs
// a store and reload of the sums. So slices only keep a tile's weights well inside L2 (in_c >= ~600).
#ifndef QK_VNNI_SLICE_BYTES
#define QK_VNNI_SLICE_BYTES 262144
#endif

// vpdpbusd wants lane l's four weights in dword l, which is the natural [lane][4] order.
static void pack_unit_vnni(const int8_t weights[][4], int32_t lanes, uint8_t unit[QK_PACK_UNIT_BYTES]) {
    memcpy(unit, weights, (size_t)lanes * 4);
}

static void unpack_unit_vnni(const uint8_t unit[QK_PACK_UNIT_BYTES], int32_t lanes, int8_t weights[][4]) {
    memcpy(weights, unit, (size_t)lanes * 4);
}

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

    w += (size_t)tile->first_tap * (size_t)chunks * (size_t)blocks * QK_PACK_UNIT_BYTES;
    for (int32_t tap = tile->first_tap; tap < tile->first_tap + tile->taps; tap++) {
        const uint8_t *src[VNNI_MAX_PIXELS];
        qk_conv_tile_sources(args, tile, image, first_channel, tap, pixels, src);
        // The next weights' prefetches go one per chunk rather than all at the tap's start, where they queued
        // in front of the microkernel's own loads: RepVGG-A0 at batch 1 on one thread, conv.21 (2.2 MB of
        // weights from L3) 85% -> 95% of peak, the 192-channel layers 96% -> 98%.
        const char *prefetch = NULL;
        int32_t prefetch_lines = 0;
        if (tile->prefetch_lines_per_tap > 0) {
            prefetch_lines = tile->prefetch_lines_per_tap;
            prefetch = (const char *)tile->prefetch + (size_t)(tap - tile->first_tap) * (size_t)prefetch_lines * 64;
        }
        for (; prefetch_lines > chunks; prefetch_lines--, prefetch += 64) _mm_prefetch(prefetch, _MM_HINT_T1);
        for (int32_t k = 0; k < chunks; k++) {
            if (k < prefetch_lines) _mm_prefetch(prefetch + 64 * k, _MM_HINT_T1);
            __m512i wv[VNNI_MAX_BLOCKS];
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) wv[j] = _mm512_loadu_si512(w + j * QK_PACK_UNIT_BYTES);
#pragma clang loop unroll(full)
            for (int p = 0; p < pixels; p++) {
                const __m512i x = _mm512_set1_epi32(qk_load_u32(src[p] + 4 * k));
#pragma clang loop unroll(full)
                for (int j = 0; j < blocks; j++) acc[p][j] = _mm512_dpbusd_epi32(acc[p][j], x, wv[j]);
            }
            w += blocks * QK_PACK_UNIT_BYTES;
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

    uint8_t *out = args->output +
                   (((size_t)tile->image * geo->out_h + tile->out_y) * geo->out_w + tile->out_x) * geo->out_c +
                   first_out + first_lane;
    // Dense mode (stems) stores one output byte per 8-12 multiply-adds, into a region of the batch buffer
    // no layer has touched yet in this run. Loading the lines of the same pixels one row below (the first
    // channel tile fetches all channels) brings them in about a row of tiles early. One thread, batch 8, five
    // interleaved runs of 4-7 rounds on a busy machine: A0's stem 10-17% faster (e.g. 1.19 -> 1.09 ms), B0's
    // 8-16% (1.64 -> 1.37 ms); batch 1 within noise; two rows ahead was no better.
    if (tile->im2col != NULL && tile->group == 0 && tile->first_block == 0) {
        const char *below = (const char *)out + (size_t)geo->out_w * (size_t)geo->out_c;
        for (int32_t offset = 0; offset < pixels * geo->out_c; offset += 64) _mm_prefetch(below + offset, _MM_HINT_T0);
    }
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
// and broadcasts. Keeping two blocks' weights as memory operands made 7 x 4 compile without spills, but
// it ran RepVGG's 128- and 256-channel layers at 82-84% of peak (against 94-95%) and gained nothing
// measurable on the stem.
#define VNNI_ROW(P) vnni_tile_##P##x1, vnni_tile_##P##x2, vnni_tile_##P##x3, vnni_tile_##P##x4
#define VNNI_ROW_WITHOUT_4(P) vnni_tile_##P##x1, vnni_tile_##P##x2, vnni_tile_##P##x3, NULL
static const qk_conv_tile_fn vnni_tiles[VNNI_MAX_PIXELS * VNNI_MAX_BLOCKS] = {
    VNNI_ROW(1), VNNI_ROW(2), VNNI_ROW(3), VNNI_ROW(4), VNNI_ROW(5), VNNI_ROW(6), VNNI_ROW_WITHOUT_4(7),
    VNNI_ROW_WITHOUT_4(8),
};
_Static_assert(6 * 4 <= VNNI_MAX_ACCUMULATORS && 7 * 4 > VNNI_MAX_ACCUMULATORS && 8 * 3 <= VNNI_MAX_ACCUMULATORS,
               "the table holds exactly the tiles within the accumulator budget");

const qk_conv_microkernels qk_conv_microkernels_avx512vnni = {
    .lanes = VNNI_LANES,
    .max_pixels = VNNI_MAX_PIXELS,
    .max_blocks = VNNI_MAX_BLOCKS,
    .max_accumulators = VNNI_MAX_ACCUMULATORS,
    // Fitted to RepVGG A0 and B0 layers (see blocked-driver.c): a load (weights or a broadcast) costs about
    // half a vpdpbusd; streamed weights arrive at about 20 bytes a cycle, 10 per vpdpbusd slot, so a
    // 64-byte unit takes 6.4 slots (with 4.6, 4 x 5 tiles were picked for 14-pixel rows of 192 and 256
    // channels and ran 1-3% slower than 3 x 7); up to 32 KB of a tile's weights stay in the 48 KB L1 next
    // to the input rows.
    .load_cost = 50,
    .streamed_block_cost = 640,
    .l1_weight_bytes = 32768,
    .slice_bytes = QK_VNNI_SLICE_BYTES,
    .pack_unit = pack_unit_vnni,
    .unpack_unit = unpack_unit_vnni,
    .tiles = vnni_tiles,
};
#endif
