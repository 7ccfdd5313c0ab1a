// AVX-512BW Winograd F(2x2,3x3) kernels (driver/winograd.h): the input transform on 32 channels at a time,
// and the GEMM over the 16 transformed positions for up to 8 tiles x 2, 7 x 3 blocks of 16 channels, whose
// inner loop is the direct kernel's (broadcast int16 pairs of V, vpmaddwd with U' pairs, vpaddd). Then the
// output transform, the exact /4 (arithmetic shift of 4 * acc), bias and requantization. Stride 2: the
// phases' 25 positions, the same GEMM, and an output transform that gives the sum itself.
#include "x86/avx512bw/avx512bw.h"

#if QK_HAVE_X86

enum { WG_LANES = QK_BW_LANES, WG_MAX_TILES = 8, WG_MAX_BLOCKS = 3, WG_MAX_ACCUMULATORS = 21 };

// Unit arrangement as the direct kernel's (avx512bw.h): [half][lane][2].
_Static_assert(QK_BW_UNIT_BYTES <= QK_WINOGRAD_MAX_UNIT_BYTES, "packing builds a unit on the stack");
static int32_t unit_index(int32_t lane, int32_t q) { return (q / 2) * WG_LANES * 2 + lane * 2 + q % 2; }

// V = Bt d B of 32 channels; |V| <= 4 * 255, so int16 adds cannot overflow.
static QK_TARGET_AVX512 void input_transform(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 32) {
        __m512i d[16];
        for (int i = 0; i < 16; i++) d[i] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(src[i] + c)));
#define STORE(e, value) _mm512_storeu_si512(v + (size_t)(e) * v_stride + c, value)
        QK_WINOGRAD_INPUT_TRANSFORM(__m512i, d, _mm512_add_epi16, _mm512_sub_epi16, STORE);
#undef STORE
    }
}

// Stride 2: V of the 5x5 patch's phases, 32 channels at a time; |V| <= 2 * 255.
static QK_TARGET_AVX512 void input_transform_s2(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 32) {
        __m512i d[25];
        for (int i = 0; i < 25; i++) d[i] = _mm512_cvtepu8_epi16(_mm256_loadu_si256((const __m256i *)(src[i] + c)));
#define STORE(e, value) _mm512_storeu_si512(v + (size_t)(e) * v_stride + c, value)
        QK_WINOGRAD_S2_INPUT_TRANSFORM(__m512i, d, _mm512_sub_epi16, STORE);
#undef STORE
    }
}

// The 4 outputs of one tile and 16 channels, from its column of the position sums: At M A >> 2 at stride 1,
// the stride-2 transform's sums as they are.
QK_INLINE QK_TARGET_AVX512 void wg_outputs(const int32_t *m_column, size_t position_step, const int stride2, __m512i *y) {
    if (stride2) {
        __m512i mm[QK_WINOGRAD_S2_POSITIONS];
        for (int e = 0; e < QK_WINOGRAD_S2_POSITIONS; e++) mm[e] = _mm512_load_si512(m_column + e * position_step);
        QK_WINOGRAD_S2_OUTPUT_TRANSFORM(__m512i, mm, y, _mm512_add_epi32);
        return;
    }
    __m512i mm[16];
    for (int e = 0; e < 16; e++) mm[e] = _mm512_load_si512(m_column + e * position_step);
    QK_WINOGRAD_OUTPUT_TRANSFORM(__m512i, mm, y, _mm512_add_epi32, _mm512_sub_epi32);
    for (int q = 0; q < 4; q++) y[q] = _mm512_srai_epi32(y[q], 2);
}

enum { WG_TILE_STEP = WG_MAX_BLOCKS * WG_LANES, WG_POSITION_STEP = WG_MAX_TILES * WG_TILE_STEP };

// A call's output stage from its position sums m[e][tile][lane]: transform, bias, requantization, stores. Once
// per tile and block against the GEMM's positions x chunks steps, so one copy with loops serves every tile
// shape (unrolled into each of them, it was most of the Winograd kernels' code).
static QK_TARGET_AVX512 __attribute__((noinline)) void wg_store(const qk_winograd_call *call, const int32_t *m, int tiles,
                                                                 int blocks, int stride2) {
    const qk_conv_args *args = call->args;
    const qk_conv_geometry *geo = &args->geo;
    const int32_t first_out = call->group * geo->out_per_group;
    for (int j = 0; j < blocks; j++) {
        const int32_t o = (call->first_block + j) * WG_LANES;
        const __mmask16 mask = qk_lane_mask16(geo->out_per_group - o);
        const __m512i bias = _mm512_maskz_loadu_epi32(mask, args->bias + first_out + o);
        const __m512 multiplier = _mm512_maskz_loadu_ps(mask, args->multiplier + first_out + o);
        for (int p = 0; p < tiles; p++) {
            __m512i y[4];
            wg_outputs(m + p * WG_TILE_STEP + j * WG_LANES, WG_POSITION_STEP, stride2, y);
            for (int q = 0; q < 4; q++) {
                uint8_t *out = qk_winograd_output(call, p, q, o);
                if (out == NULL) continue;
                _mm_mask_storeu_epi8(out, mask, qk_requantize16(y[q], bias, multiplier));
            }
        }
    }
}

QK_INLINE QK_TARGET_AVX512 void wg_tile(const qk_winograd_call *call, const int tiles, const int blocks, const int stride2) {
    const int positions = stride2 ? QK_WINOGRAD_S2_POSITIONS : 16;
    int32_t m[QK_WINOGRAD_S2_POSITIONS][WG_MAX_TILES][WG_MAX_BLOCKS * WG_LANES] __attribute__((aligned(64)));
    const uint8_t *w = call->weights;
    const int32_t chunks = call->chunks;
    const size_t tile_step = (size_t)positions * (size_t)call->v_stride;
    for (int e = 0; e < positions; e++) {
        const int16_t *v = call->v + (size_t)e * call->v_stride;
        __m512i acc[WG_MAX_TILES][QK_BW_MAX_BLOCKS];
        const int16_t *x[WG_MAX_TILES];
#pragma clang loop unroll(full)
        for (int p = 0; p < tiles; p++) {
            x[p] = v + (size_t)p * tile_step;
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) acc[p][j] = _mm512_setzero_si512();
        }
        for (int32_t k = 0; k < chunks; k++, w += blocks * QK_BW_UNIT_BYTES) qk_bw_chunk(acc, x, k, w, tiles, blocks);
#pragma clang loop unroll(full)
        for (int p = 0; p < tiles; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) _mm512_store_si512(&m[e][p][j * WG_LANES], acc[p][j]);
    }

    wg_store(call, &m[0][0][0], tiles, blocks, stride2);
}

#define WG_TILE(P, B)                                                                                            \
    static QK_TARGET_AVX512 void wg_tile_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 0); }  \
    static QK_TARGET_AVX512 void wg_tile_s2_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 1); }
#define WG_TILES_3(P) WG_TILE(P, 1) WG_TILE(P, 2) WG_TILE(P, 3)
WG_TILES_3(1) WG_TILES_3(2) WG_TILES_3(3) WG_TILES_3(4) WG_TILES_3(5) WG_TILES_3(6) WG_TILES_3(7)
WG_TILE(8, 1) WG_TILE(8, 2)

#define WG_ROW(P) wg_tile_##P##x1, wg_tile_##P##x2, wg_tile_##P##x3
static const qk_winograd_tile_fn tiles[WG_MAX_TILES * WG_MAX_BLOCKS] = {
    WG_ROW(1), WG_ROW(2), WG_ROW(3), WG_ROW(4), WG_ROW(5), WG_ROW(6), WG_ROW(7), wg_tile_8x1, wg_tile_8x2, NULL,
};
#define WG_ROW_S2(P) wg_tile_s2_##P##x1, wg_tile_s2_##P##x2, wg_tile_s2_##P##x3
static const qk_winograd_tile_fn tiles_s2[WG_MAX_TILES * WG_MAX_BLOCKS] = {
    WG_ROW_S2(1), WG_ROW_S2(2), WG_ROW_S2(3), WG_ROW_S2(4), WG_ROW_S2(5), WG_ROW_S2(6), WG_ROW_S2(7),
    wg_tile_s2_8x1, wg_tile_s2_8x2, NULL,
};

const qk_winograd_kernels qk_winograd_u8s16_7x3c16_avx512bw = {
    .lanes = WG_LANES, .depth = QK_BW_DEPTH, .unit_bytes = QK_BW_UNIT_BYTES, .unit_index = unit_index,
    .input = input_transform, .input_width = 32,
    .max_tiles = WG_MAX_TILES, .max_blocks = WG_MAX_BLOCKS, .max_accumulators = WG_MAX_ACCUMULATORS, .tiles = tiles,
    .input_s2 = input_transform_s2, .tiles_s2 = tiles_s2,
    .gemm_percent = 82, .direct_percent = 88, .input_macs = 16, .output_macs = 48,
};
#endif
