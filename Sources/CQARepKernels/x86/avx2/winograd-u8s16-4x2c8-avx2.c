// AVX2 Winograd F(2x2,3x3) kernels (driver/winograd.h): the input transform on 16 channels at a time, and
// the GEMM over the 16 transformed positions for up to 4 tiles x 2 blocks of 8 channels (or 6 x 1), whose
// inner loop is the direct kernel's: broadcast int16 pairs of V, vpmaddwd with U' pairs, vpaddd. Then the
// output transform, the exact /4 (arithmetic shift of 4 * acc), bias and requantization. Stride 2: the
// phases' 25 positions, the same GEMM, and an output transform that gives the sum itself.
#include "driver/winograd.h"
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

enum { WG_LANES = QK_AVX2_LANES, WG_MAX_TILES = 6, WG_MAX_BLOCKS = 2, WG_MAX_ACCUMULATORS = 8 };

// Unit arrangement as the direct kernel's (avx2.h): [pair][lane][2].
static int32_t unit_index(int32_t lane, int32_t q) { return (q / 2) * WG_LANES * 2 + lane * 2 + q % 2; }

// V = Bt d B of 16 channels; |V| <= 4 * 255, so int16 adds cannot overflow.
static QK_TARGET_AVX2 void input_transform(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 16) {
        __m256i d[16];
        for (int i = 0; i < 16; i++) d[i] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src[i] + c)));
#define STORE(e, value) _mm256_storeu_si256((__m256i *)(v + (size_t)(e) * v_stride + c), value)
        QK_WINOGRAD_INPUT_TRANSFORM(__m256i, d, _mm256_add_epi16, _mm256_sub_epi16, STORE);
#undef STORE
    }
}

// Stride 2: V of the 5x5 patch's phases, 16 channels at a time; |V| <= 2 * 255.
static QK_TARGET_AVX2 void input_transform_s2(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 16) {
        __m256i d[25];
        for (int i = 0; i < 25; i++) d[i] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src[i] + c)));
#define STORE(e, value) _mm256_storeu_si256((__m256i *)(v + (size_t)(e) * v_stride + c), value)
        QK_WINOGRAD_S2_INPUT_TRANSFORM(__m256i, d, _mm256_sub_epi16, STORE);
#undef STORE
    }
}

// The 4 outputs of one tile and 8 channels, from its column of the position sums: At M A >> 2 at stride 1,
// the stride-2 transform's sums as they are.
QK_INLINE QK_TARGET_AVX2 void wg_outputs(const int32_t *m_column, size_t position_step, const int stride2, __m256i *y) {
    if (stride2) {
        __m256i mm[QK_WINOGRAD_S2_POSITIONS];
        for (int e = 0; e < QK_WINOGRAD_S2_POSITIONS; e++) mm[e] = _mm256_load_si256((const __m256i *)(m_column + e * position_step));
        QK_WINOGRAD_S2_OUTPUT_TRANSFORM(__m256i, mm, y, _mm256_add_epi32);
        return;
    }
    __m256i mm[16];
    for (int e = 0; e < 16; e++) mm[e] = _mm256_load_si256((const __m256i *)(m_column + e * position_step));
    QK_WINOGRAD_OUTPUT_TRANSFORM(__m256i, mm, y, _mm256_add_epi32, _mm256_sub_epi32);
    for (int q = 0; q < 4; q++) y[q] = _mm256_srai_epi32(y[q], 2);
}

enum { WG_TILE_STEP = WG_MAX_BLOCKS * WG_LANES, WG_POSITION_STEP = WG_MAX_TILES * WG_TILE_STEP };

// A call's output stage from its position sums m[e][tile][lane]: transform, bias, requantization, stores. Once
// per tile and block against the GEMM's positions x chunks steps, so one copy with loops serves every tile
// shape (unrolled into each of them, it was most of the Winograd kernels' code).
static QK_TARGET_AVX2 __attribute__((noinline)) void wg_store(const qk_winograd_call *call, const int32_t *m, int tiles,
                                                               int blocks, int stride2) {
    const qk_conv_args *args = call->args;
    const qk_conv_geometry *geo = &args->geo;
    const int32_t first_out = call->group * geo->out_per_group;
    const int32_t first_o = call->first_block * WG_LANES;
    if (blocks == 2 && geo->out_per_group - first_o >= 2 * WG_LANES) {
        // Both blocks whole: one 16-byte store per output pixel, as the direct kernel does.
        const __m256i bias0 = _mm256_loadu_si256((const __m256i *)(args->bias + first_out + first_o));
        const __m256i bias1 = _mm256_loadu_si256((const __m256i *)(args->bias + first_out + first_o + WG_LANES));
        const __m256 multiplier0 = _mm256_loadu_ps(args->multiplier + first_out + first_o);
        const __m256 multiplier1 = _mm256_loadu_ps(args->multiplier + first_out + first_o + WG_LANES);
        const int below_one = args->multipliers_below_one;
        for (int p = 0; p < tiles; p++) {
            __m256i y0[4], y1[4];
            wg_outputs(m + p * WG_TILE_STEP, WG_POSITION_STEP, stride2, y0);
            wg_outputs(m + p * WG_TILE_STEP + WG_LANES, WG_POSITION_STEP, stride2, y1);
            for (int q = 0; q < 4; q++) {
                uint8_t *out = qk_winograd_output(call, p, q, first_o);
                if (out == NULL) continue;
                qk_avx2_requantize16_store(_mm256_add_epi32(y0[q], bias0), _mm256_add_epi32(y1[q], bias1), multiplier0,
                                           multiplier1, below_one, out);
            }
        }
        return;
    }
    for (int j = 0; j < blocks; j++) {
        const int32_t o = (call->first_block + j) * WG_LANES;
        const int32_t valid = geo->out_per_group - o;
        const __m256i bias = qk_load8_epi32(args->bias + first_out + o, valid);
        const __m256 multiplier = qk_load8_ps(args->multiplier + first_out + o, valid);
        for (int p = 0; p < tiles; p++) {
            __m256i y[4];
            wg_outputs(m + p * WG_TILE_STEP + j * WG_LANES, WG_POSITION_STEP, stride2, y);
            for (int q = 0; q < 4; q++) {
                uint8_t *out = qk_winograd_output(call, p, q, o);
                if (out == NULL) continue;
                qk_requantize8_store(y[q], bias, multiplier, out, valid);
            }
        }
    }
}

QK_INLINE QK_TARGET_AVX2 void wg_tile(const qk_winograd_call *call, const int tiles, const int blocks, const int stride2) {
    const int positions = stride2 ? QK_WINOGRAD_S2_POSITIONS : 16;
    int32_t m[QK_WINOGRAD_S2_POSITIONS][WG_MAX_TILES][WG_MAX_BLOCKS * WG_LANES] __attribute__((aligned(32)));
    const uint8_t *w = call->weights;
    const int32_t chunks = call->chunks;
    const size_t tile_step = (size_t)positions * (size_t)call->v_stride;
    // The call's L2 prefetches, paced over the positions rather than queued at once in front of its own loads.
    const char *fetch = call->prefetch;
    const int32_t fetch_per_e = (call->prefetch_lines + 15) / 16;
    int32_t fetch_left = call->prefetch_lines;
    for (int e = 0; e < positions; e++) {
        for (int32_t i = 0; i < fetch_per_e && fetch_left > 0; i++, fetch_left--, fetch += 64) _mm_prefetch(fetch, _MM_HINT_T1);
        const int16_t *v = call->v + (size_t)e * call->v_stride;
        __m256i acc[WG_MAX_TILES][QK_AVX2_MAX_BLOCKS];
        const int16_t *x[WG_MAX_TILES];
#pragma clang loop unroll(full)
        for (int p = 0; p < tiles; p++) {
            x[p] = v + (size_t)p * tile_step;
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) acc[p][j] = _mm256_setzero_si256();
        }
        for (int32_t k = 0; k < chunks; k++, w += blocks * QK_AVX2_UNIT_BYTES)
            qk_avx2_chunk(acc, x, (size_t)k * QK_AVX2_DEPTH, w, tiles, blocks);
#pragma clang loop unroll(full)
        for (int p = 0; p < tiles; p++)
#pragma clang loop unroll(full)
            for (int j = 0; j < blocks; j++) _mm256_store_si256((__m256i *)&m[e][p][j * WG_LANES], acc[p][j]);
    }

    wg_store(call, &m[0][0][0], tiles, blocks, stride2);
}

#define WG_TILE(P, B)                                                                                          \
    static QK_TARGET_AVX2 void wg_tile_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 0); }  \
    static QK_TARGET_AVX2 void wg_tile_s2_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 1); }
WG_TILE(1, 1) WG_TILE(1, 2) WG_TILE(2, 1) WG_TILE(2, 2) WG_TILE(3, 1) WG_TILE(3, 2)
WG_TILE(4, 1) WG_TILE(4, 2) WG_TILE(5, 1) WG_TILE(6, 1)

static const qk_winograd_tile_fn tiles[WG_MAX_TILES * WG_MAX_BLOCKS] = {
    wg_tile_1x1, wg_tile_1x2, wg_tile_2x1, wg_tile_2x2, wg_tile_3x1, wg_tile_3x2,
    wg_tile_4x1, wg_tile_4x2, wg_tile_5x1, NULL,        wg_tile_6x1, NULL,
};
static const qk_winograd_tile_fn tiles_s2[WG_MAX_TILES * WG_MAX_BLOCKS] = {
    wg_tile_s2_1x1, wg_tile_s2_1x2, wg_tile_s2_2x1, wg_tile_s2_2x2, wg_tile_s2_3x1, wg_tile_s2_3x2,
    wg_tile_s2_4x1, wg_tile_s2_4x2, wg_tile_s2_5x1, NULL,           wg_tile_s2_6x1, NULL,
};

const qk_winograd_kernels qk_winograd_u8s16_4x2c8_avx2 = {
    .lanes = WG_LANES, .depth = QK_AVX2_DEPTH, .unit_bytes = QK_AVX2_UNIT_BYTES, .unit_index = unit_index,
    .input = input_transform, .input_width = 16,
    .max_tiles = WG_MAX_TILES, .max_blocks = WG_MAX_BLOCKS, .max_accumulators = WG_MAX_ACCUMULATORS, .tiles = tiles,
    .input_s2 = input_transform_s2, .tiles_s2 = tiles_s2,
    .gemm_percent = 75, .direct_percent = 76, .input_macs = 16, .output_macs = 48,
};
#endif
