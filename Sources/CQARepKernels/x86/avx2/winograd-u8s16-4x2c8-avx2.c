// AVX2 Winograd F(2x2,3x3) kernels (driver/winograd.h): the input transform on 16 channels at a time, and
// the GEMM over the 16 transformed positions for up to 4 tiles x 2 blocks of 8 channels (or 6 x 1), whose
// inner loop is the direct kernel's: broadcast int16 pairs of V, vpmaddwd with U' pairs, vpaddd. Then the
// output transform, the exact /4 (arithmetic shift of 4 * acc), bias and requantization. Stride 2: the
// phases' 25 positions, the same GEMM, and an output transform that gives the sum itself.
#include "driver/winograd.h"
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

enum { WG_LANES = QK_AVX2_LANES, WG_MAX_TILES = QK_AVX2_WG_MAX_TILES, WG_MAX_BLOCKS = QK_AVX2_WG_MAX_BLOCKS,
       WG_MAX_ACCUMULATORS = QK_AVX2_WG_MAX_ACCUMULATORS };

// Unit arrangement as the direct kernel's (avx2.h): [pair][lane][2].
_Static_assert(QK_AVX2_UNIT_BYTES <= QK_WINOGRAD_MAX_UNIT_BYTES, "packing builds a unit on the stack");
int32_t qk_winograd_unit_index_avx2(int32_t lane, int32_t q) { return (q / 2) * WG_LANES * 2 + lane * 2 + q % 2; }

// V = Bt d B of 16 channels; |V| <= 4 * 255, so int16 adds cannot overflow.
QK_TARGET_AVX2 void qk_winograd_input_u8s16_avx2(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
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

enum { WG_F4_OUTPUTS = 16 };

// The outputs of one tile and 8 channels: from its column of the position sums, At M A >> 2 for F(2x2,3x3) and
// the stride-2 transform's sums as they are; F(4x4,3x3)'s 16, reduced already (wg_reduce_f4), as they are.
QK_INLINE QK_TARGET_AVX2 void wg_outputs(const int32_t *m_column, size_t position_step, const qk_winograd_form form, __m256i *y) {
    if (form == QK_WINOGRAD_F4) {
        for (int q = 0; q < WG_F4_OUTPUTS; q++) y[q] = _mm256_load_si256((const __m256i *)(m_column + q * position_step));
        return;
    }
    if (form == QK_WINOGRAD_S2) {
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

// A call's output stage from its position sums m[e][tile][lane] (F(4x4,3x3): its sums[tile][q][lane]): transform,
// bias, requantization, stores. Once per tile and block against the GEMM's positions x chunks steps, so one copy
// with loops serves every tile shape (unrolled into each of them, it was most of the Winograd kernels' code).
static QK_TARGET_AVX2 __attribute__((noinline)) void wg_store(const qk_winograd_call *call, const int32_t *m, int tiles,
                                                               int blocks, qk_winograd_form form) {
    const int outputs = form == QK_WINOGRAD_F4 ? WG_F4_OUTPUTS : 4;
    const size_t tile_step = form == QK_WINOGRAD_F4 ? (size_t)WG_F4_OUTPUTS * WG_TILE_STEP : WG_TILE_STEP;
    const size_t position_step = form == QK_WINOGRAD_F4 ? WG_TILE_STEP : WG_POSITION_STEP;
    uint8_t *(*const output_of)(const qk_winograd_call *, int32_t, int32_t, int32_t) =
        form == QK_WINOGRAD_F4 ? qk_winograd_output4 : qk_winograd_output;
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
            __m256i y0[WG_F4_OUTPUTS], y1[WG_F4_OUTPUTS];
            wg_outputs(m + p * tile_step, position_step, form, y0);
            wg_outputs(m + p * tile_step + WG_LANES, position_step, form, y1);
            for (int q = 0; q < outputs; q++) {
                uint8_t *out = output_of(call, p, q, first_o);
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
            __m256i y[WG_F4_OUTPUTS];
            wg_outputs(m + p * tile_step + j * WG_LANES, position_step, form, y);
            for (int q = 0; q < outputs; q++) {
                uint8_t *out = output_of(call, p, q, o);
                if (out == NULL) continue;
                qk_requantize8_store(y[q], bias, multiplier, out, valid);
            }
        }
    }
}

// One position's GEMM over chunks [first, end) of the call's tiles (V rows at v, tile_step apart; the position's
// weights of chunk `first` at w), into m_row[tile][lane].
QK_INLINE QK_TARGET_AVX2 void wg_position(const int16_t *v, size_t tile_step, const uint8_t *w, int32_t first, int32_t end,
                                          const int tiles, const int blocks, int32_t (*m_row)[WG_MAX_BLOCKS * WG_LANES]) {
    __m256i acc[WG_MAX_TILES][QK_AVX2_MAX_BLOCKS];
    const int16_t *x[WG_MAX_TILES];
#pragma clang loop unroll(full)
    for (int p = 0; p < tiles; p++) {
        x[p] = v + (size_t)p * tile_step;
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) acc[p][j] = _mm256_setzero_si256();
    }
    for (int32_t k = first; k < end; k++, w += blocks * QK_AVX2_UNIT_BYTES) qk_avx2_chunk(acc, x, (size_t)k * QK_AVX2_DEPTH, w, tiles, blocks);
#pragma clang loop unroll(full)
    for (int p = 0; p < tiles; p++)
#pragma clang loop unroll(full)
        for (int j = 0; j < blocks; j++) _mm256_store_si256((__m256i *)&m_row[p][j * WG_LANES], acc[p][j]);
}

QK_INLINE QK_TARGET_AVX2 void wg_tile(const qk_winograd_call *call, const int tiles, const int blocks, const int stride2) {
    const int positions = stride2 ? QK_WINOGRAD_S2_POSITIONS : 16;
    int32_t m[QK_WINOGRAD_S2_POSITIONS][WG_MAX_TILES][WG_MAX_BLOCKS * WG_LANES] __attribute__((aligned(32)));
    const int32_t chunks = call->chunks;
    const size_t tile_step = (size_t)positions * (size_t)call->v_stride;
    const size_t position_bytes = (size_t)chunks * (size_t)blocks * QK_AVX2_UNIT_BYTES;
    // The call's L2 prefetches, paced over the positions rather than queued at once in front of its own loads.
    const char *fetch = call->prefetch;
    const int32_t fetch_per_e = (call->prefetch_lines + 15) / 16;
    int32_t fetch_left = call->prefetch_lines;
    for (int e = 0; e < positions; e++) {
        for (int32_t i = 0; i < fetch_per_e && fetch_left > 0; i++, fetch_left--, fetch += 64) _mm_prefetch(fetch, _MM_HINT_T1);
        wg_position(call->v + (size_t)e * call->v_stride, tile_step, call->weights + (size_t)e * position_bytes, 0, chunks,
                    tiles, blocks, m[e]);
    }

    wg_store(call, &m[0][0][0], tiles, blocks, stride2 ? QK_WINOGRAD_S2 : QK_WINOGRAD_F2);
}

#define WG_TILE(P, B)                                                                                          \
    static QK_TARGET_AVX2 void wg_tile_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 0); }  \
    static QK_TARGET_AVX2 void wg_tile_s2_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 1); }
WG_TILE(1, 1) WG_TILE(1, 2) WG_TILE(2, 1) WG_TILE(2, 2) WG_TILE(3, 1) WG_TILE(3, 2)
WG_TILE(4, 1) WG_TILE(4, 2) WG_TILE(5, 1) WG_TILE(6, 1)

const qk_winograd_tile_fn qk_winograd_u8s16_4x2c8_avx2_tiles[WG_MAX_TILES * WG_MAX_BLOCKS] = {
    wg_tile_1x1, wg_tile_1x2, wg_tile_2x1, wg_tile_2x2, wg_tile_3x1, wg_tile_3x2,
    wg_tile_4x1, wg_tile_4x2, wg_tile_5x1, NULL,        wg_tile_6x1, NULL,
};
static const qk_winograd_tile_fn tiles_s2[WG_MAX_TILES * WG_MAX_BLOCKS] = {
    wg_tile_s2_1x1, wg_tile_s2_1x2, wg_tile_s2_2x1, wg_tile_s2_2x2, wg_tile_s2_3x1, wg_tile_s2_3x2,
    wg_tile_s2_4x1, wg_tile_s2_4x2, wg_tile_s2_5x1, NULL,           wg_tile_s2_6x1, NULL,
};

// ---- F(4x4,3x3) ----

// V = Bt d B of a 6x6 patch, 16 channels at a time (winograd.h: every partial sum fits int16).
QK_TARGET_AVX2 void qk_winograd_input_f4_u8s16_avx2(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 16) {
        __m256i d[QK_WINOGRAD_F4_POSITIONS];
        for (int i = 0; i < QK_WINOGRAD_F4_POSITIONS; i++) d[i] = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(src[i] + c)));
#define STORE(e, value) _mm256_storeu_si256((__m256i *)(v + (size_t)(e) * v_stride + c), value)
        QK_WINOGRAD_F4_INPUT_TRANSFORM(__m256i, d, _mm256_add_epi16, _mm256_sub_epi16, STORE);
#undef STORE
    }
}

#define WG_SHL(x, n) _mm256_slli_epi32(x, n)

// One channel group's sums m[e][tile][lane] into the tiles' accumulators: A''t M A'' = 576 * acc, times 9^-1
// (mod 2^32) = 64 * acc, exact for the group's |acc| < 2^25, then >> 6. The first group sets them.
static QK_TARGET_AVX2 __attribute__((noinline)) void wg_reduce_f4(const int32_t *m, int32_t *sums, int tiles, int blocks,
                                                                   int first_group) {
    const __m256i inverse_9 = _mm256_set1_epi32(QK_WINOGRAD_F4_INVERSE_9);
    for (int p = 0; p < tiles; p++)
        for (int j = 0; j < blocks; j++) {
            __m256i mm[QK_WINOGRAD_F4_POSITIONS], r[WG_F4_OUTPUTS];
            const int32_t *column = m + p * WG_TILE_STEP + j * WG_LANES;
            for (int e = 0; e < QK_WINOGRAD_F4_POSITIONS; e++)
                mm[e] = _mm256_load_si256((const __m256i *)(column + e * WG_POSITION_STEP));
            QK_WINOGRAD_F4_OUTPUT_TRANSFORM(__m256i, mm, r, _mm256_add_epi32, _mm256_sub_epi32, WG_SHL);
            int32_t *out = sums + (p * WG_F4_OUTPUTS) * WG_TILE_STEP + j * WG_LANES;
            for (int q = 0; q < WG_F4_OUTPUTS; q++) {
                __m256i acc = _mm256_srai_epi32(_mm256_mullo_epi32(r[q], inverse_9), 6);
                __m256i *slot = (__m256i *)(out + q * WG_TILE_STEP);
                if (!first_group) acc = _mm256_add_epi32(acc, _mm256_load_si256(slot));
                _mm256_store_si256(slot, acc);
            }
        }
}

// The GEMM over the 36 positions, one channel group at a time, each group reduced before the next.
QK_INLINE QK_TARGET_AVX2 void wg_tile_f4(const qk_winograd_call *call, const int tiles, const int blocks) {
    int32_t m[QK_WINOGRAD_F4_POSITIONS][WG_MAX_TILES][WG_MAX_BLOCKS * WG_LANES] __attribute__((aligned(32)));
    int32_t sums[WG_MAX_TILES * WG_F4_OUTPUTS][WG_MAX_BLOCKS * WG_LANES] __attribute__((aligned(32)));
    const int32_t chunks = call->chunks, group_chunks = call->group_chunks;
    const size_t tile_step = (size_t)QK_WINOGRAD_F4_POSITIONS * (size_t)call->v_stride;
    const size_t chunk_bytes = (size_t)blocks * QK_AVX2_UNIT_BYTES;
    const int32_t passes = QK_WINOGRAD_F4_POSITIONS * ((chunks + group_chunks - 1) / group_chunks);
    const char *fetch = call->prefetch;
    const int32_t fetch_per_pass = (call->prefetch_lines + passes - 1) / passes;
    int32_t fetch_left = call->prefetch_lines;
    for (int32_t first = 0; first < chunks; first += group_chunks) {
        const int32_t end = first + group_chunks < chunks ? first + group_chunks : chunks;
        for (int e = 0; e < QK_WINOGRAD_F4_POSITIONS; e++) {
            for (int32_t i = 0; i < fetch_per_pass && fetch_left > 0; i++, fetch_left--, fetch += 64) _mm_prefetch(fetch, _MM_HINT_T1);
            wg_position(call->v + (size_t)e * call->v_stride, tile_step,
                        call->weights + ((size_t)e * (size_t)chunks + (size_t)first) * chunk_bytes, first, end, tiles, blocks, m[e]);
        }
        wg_reduce_f4(&m[0][0][0], &sums[0][0], tiles, blocks, first == 0);
    }
    wg_store(call, &sums[0][0], tiles, blocks, QK_WINOGRAD_F4);
}

#define WG_TILE_F4(P, B) \
    static QK_TARGET_AVX2 void wg_tile_f4_##P##x##B(const qk_winograd_call *call) { wg_tile_f4(call, P, B); }
WG_TILE_F4(1, 1) WG_TILE_F4(1, 2) WG_TILE_F4(2, 1) WG_TILE_F4(2, 2) WG_TILE_F4(3, 1) WG_TILE_F4(3, 2)
WG_TILE_F4(4, 1) WG_TILE_F4(4, 2) WG_TILE_F4(5, 1) WG_TILE_F4(6, 1)

const qk_winograd_tile_fn qk_winograd_f4_u8s16_4x2c8_avx2_tiles[WG_MAX_TILES * WG_MAX_BLOCKS] = {
    wg_tile_f4_1x1, wg_tile_f4_1x2, wg_tile_f4_2x1, wg_tile_f4_2x2, wg_tile_f4_3x1, wg_tile_f4_3x2,
    wg_tile_f4_4x1, wg_tile_f4_4x2, wg_tile_f4_5x1, NULL,           wg_tile_f4_6x1, NULL,
};

const qk_winograd_kernels qk_winograd_u8s16_4x2c8_avx2 = {
    .lanes = WG_LANES, .depth = QK_AVX2_DEPTH, .unit_bytes = QK_AVX2_UNIT_BYTES, .unit_index = qk_winograd_unit_index_avx2,
    .input = qk_winograd_input_u8s16_avx2, .input_width = 16,
    .max_tiles = WG_MAX_TILES, .max_blocks = WG_MAX_BLOCKS, .max_accumulators = WG_MAX_ACCUMULATORS, .tiles = qk_winograd_u8s16_4x2c8_avx2_tiles,
    .input_s2 = input_transform_s2, .tiles_s2 = tiles_s2,
    .input_f4 = qk_winograd_input_f4_u8s16_avx2, .tiles_f4 = qk_winograd_f4_u8s16_4x2c8_avx2_tiles,
    .gemm_percent = 75, .direct_percent = 76, .input_macs = 16, .output_macs = 48, .stream_macs_per_byte = 6,
};
#endif
