// NEON (ARMv8.0) Winograd F(2x2,3x3) kernels (driver/winograd.h): the input transform on 8 channels at a
// time, and the GEMM over the 16 transformed positions for up to 4 tiles x 3 blocks of 8 channels, whose
// inner loop is the direct kernel's smlal/smlal2 by element (int16 x int16 -> exact int32, wrapping adds).
// Then the output transform, the exact /4 (arithmetic shift of 4 * acc), bias and requantization. Stride 2:
// the phases' 25 positions, the same GEMM, and an output transform that gives the sum itself. F(4x4,3x3):
// 36 positions in channel groups, each group's output transform times 9^-1 modulo 2^32, as on avx2.
#include "arm/neon/neon.h"

#if QK_HAVE_ARM64

enum { WG_LANES = QK_NEON_LANES, WG_MAX_TILES = 4, WG_MAX_BLOCKS = 3 };

// Unit arrangement as the direct kernel's (neon.h): [channel][lane].
_Static_assert(QK_NEON_UNIT_BYTES <= QK_WINOGRAD_MAX_UNIT_BYTES, "packing builds a unit on the stack");
static int32_t unit_index(int32_t lane, int32_t q) { return q * WG_LANES + lane; }

// V = Bt d B of 8 channels; |V| <= 4 * 255, so int16 adds cannot overflow.
static void input_transform(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 8) {
        int16x8_t d[16];
        for (int i = 0; i < 16; i++) d[i] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(src[i] + c)));
#define STORE(e, value) vst1q_s16(v + (size_t)(e) * v_stride + c, value)
        QK_WINOGRAD_INPUT_TRANSFORM(int16x8_t, d, vaddq_s16, vsubq_s16, STORE);
#undef STORE
    }
}

// Stride 2: V of the 5x5 patch's phases, 8 channels at a time; |V| <= 2 * 255.
static void input_transform_s2(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 8) {
        int16x8_t d[25];
        for (int i = 0; i < 25; i++) d[i] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(src[i] + c)));
#define STORE(e, value) vst1q_s16(v + (size_t)(e) * v_stride + c, value)
        QK_WINOGRAD_S2_INPUT_TRANSFORM(int16x8_t, d, vsubq_s16, STORE);
#undef STORE
    }
}

enum { WG_F4_OUTPUTS = 16 };

// The outputs of one tile and 4 channels, from its column of the position sums: At M A >> 2 for F(2x2,3x3),
// the stride-2 transform's sums as they are; F(4x4,3x3)'s 16, reduced already (wg_reduce_f4), as they are.
QK_INLINE void wg_outputs(const int32_t *m_column, size_t position_step, const qk_winograd_form form, int32x4_t *y) {
    if (form == QK_WINOGRAD_F4) {
        for (int q = 0; q < WG_F4_OUTPUTS; q++) y[q] = vld1q_s32(m_column + q * position_step);
        return;
    }
    if (form == QK_WINOGRAD_S2) {
        int32x4_t mm[QK_WINOGRAD_S2_POSITIONS];
        for (int e = 0; e < QK_WINOGRAD_S2_POSITIONS; e++) mm[e] = vld1q_s32(m_column + e * position_step);
        QK_WINOGRAD_S2_OUTPUT_TRANSFORM(int32x4_t, mm, y, vaddq_s32);
        return;
    }
    int32x4_t mm[16];
    for (int e = 0; e < 16; e++) mm[e] = vld1q_s32(m_column + e * position_step);
    QK_WINOGRAD_OUTPUT_TRANSFORM(int32x4_t, mm, y, vaddq_s32, vsubq_s32);
    for (int q = 0; q < 4; q++) y[q] = vshrq_n_s32(y[q], 2);
}

// Input channel q of the chunk: each block's 8 lanes of U' times element q of each tile's V.
#define WG_CHANNEL(q)                                                                                     \
    QK_UNROLL for (int j = 0; j < blocks; j++) {                                                          \
        const int16x8_t wq = vld1q_s16((const int16_t *)(w + j * QK_NEON_UNIT_BYTES) + (q) * WG_LANES);  \
        QK_UNROLL for (int p = 0; p < tiles; p++) {                                                       \
            acc[p][j][0] = vmlal_laneq_s16(acc[p][j][0], vget_low_s16(wq), x[p], (q));                    \
            acc[p][j][1] = vmlal_high_laneq_s16(acc[p][j][1], wq, x[p], (q));                             \
        }                                                                                                 \
    }

enum { WG_TILE_STEP = WG_MAX_BLOCKS * WG_LANES, WG_POSITION_STEP = WG_MAX_TILES * WG_TILE_STEP };

// A call's output stage from its position sums m[e][tile][lane] (F(4x4,3x3): its sums[tile][q][lane]): transform,
// bias, requantization, stores. Once per tile and block against the GEMM's positions x chunks steps, so one copy
// with loops serves every tile shape (unrolled into each of them, it was most of the Winograd kernels' code).
static __attribute__((noinline)) void wg_store(const qk_winograd_call *call, const int32_t *m, int tiles, int blocks,
                                               qk_winograd_form form) {
    const int outputs = form == QK_WINOGRAD_F4 ? WG_F4_OUTPUTS : 4;
    const size_t tile_step = form == QK_WINOGRAD_F4 ? (size_t)WG_F4_OUTPUTS * WG_TILE_STEP : WG_TILE_STEP;
    const size_t position_step = form == QK_WINOGRAD_F4 ? WG_TILE_STEP : WG_POSITION_STEP;
    uint8_t *(*const output_of)(const qk_winograd_call *, int32_t, int32_t, int32_t) =
        form == QK_WINOGRAD_F4 ? qk_winograd_output4 : qk_winograd_output;
    const qk_conv_args *args = call->args;
    const qk_conv_geometry *geo = &args->geo;
    const int32_t first_out = call->group * geo->out_per_group;
    for (int j = 0; j < blocks; j++) {
        const int32_t o = (call->first_block + j) * WG_LANES;
        const int32_t valid = geo->out_per_group - o;
        const int32x4_t bias[2] = {qk_arm_load4_s32(args->bias + first_out + o, valid),
                                   qk_arm_load4_s32(args->bias + first_out + o + 4, valid - 4)};
        const float32x4_t multiplier[2] = {qk_arm_load4_f32(args->multiplier + first_out + o, valid),
                                           qk_arm_load4_f32(args->multiplier + first_out + o + 4, valid - 4)};
        for (int p = 0; p < tiles; p++) {
            int32x4_t y[WG_F4_OUTPUTS][2];
            for (int h = 0; h < 2; h++) {
                int32x4_t yh[WG_F4_OUTPUTS];
                wg_outputs(m + p * tile_step + j * WG_LANES + 4 * h, position_step, form, yh);
                for (int q = 0; q < outputs; q++) y[q][h] = yh[q];
            }
            for (int q = 0; q < outputs; q++) {
                uint8_t *out = output_of(call, p, q, o);
                if (out == NULL) continue;
                const uint8x8_t bytes = qk_arm_requantize8(vaddq_s32(y[q][0], bias[0]), vaddq_s32(y[q][1], bias[1]),
                                                           multiplier[0], multiplier[1]);
                qk_arm_store8(out, bytes, valid);
            }
        }
    }
}

// One position's GEMM over chunks [first, end) of the call's tiles (V rows at v, tile_step apart; the position's
// weights of chunk `first` at w), into m_row[tile][lane].
QK_INLINE void wg_position(const int16_t *v, size_t tile_step, const uint8_t *w, int32_t first, int32_t end,
                           const int tiles, const int blocks, int32_t (*m_row)[WG_TILE_STEP]) {
    qk_arm_sums acc;
    QK_UNROLL for (int p = 0; p < tiles; p++) QK_UNROLL for (int j = 0; j < blocks; j++)
        acc[p][j][0] = acc[p][j][1] = vdupq_n_s32(0);
    for (int32_t k = first; k < end; k++) {
        int16x8_t x[WG_MAX_TILES];
        QK_UNROLL for (int p = 0; p < tiles; p++) x[p] = vld1q_s16(v + (size_t)p * tile_step + 8 * k);
        WG_CHANNEL(0) WG_CHANNEL(1) WG_CHANNEL(2) WG_CHANNEL(3)
        WG_CHANNEL(4) WG_CHANNEL(5) WG_CHANNEL(6) WG_CHANNEL(7)
        w += blocks * QK_NEON_UNIT_BYTES;
    }
    QK_UNROLL for (int p = 0; p < tiles; p++) QK_UNROLL for (int j = 0; j < blocks; j++) {
        vst1q_s32(&m_row[p][j * WG_LANES], acc[p][j][0]);
        vst1q_s32(&m_row[p][j * WG_LANES + 4], acc[p][j][1]);
    }
}

QK_INLINE void wg_tile(const qk_winograd_call *call, const int tiles, const int blocks, const int stride2) {
    const int positions = stride2 ? QK_WINOGRAD_S2_POSITIONS : 16;
    int32_t m[QK_WINOGRAD_S2_POSITIONS][WG_MAX_TILES][WG_TILE_STEP] __attribute__((aligned(16)));
    const int32_t chunks = call->chunks;
    const size_t tile_step = (size_t)positions * (size_t)call->v_stride;
    const size_t position_bytes = (size_t)chunks * (size_t)blocks * QK_NEON_UNIT_BYTES;
    for (int e = 0; e < positions; e++)
        wg_position(call->v + (size_t)e * call->v_stride, tile_step, call->weights + (size_t)e * position_bytes, 0, chunks,
                    tiles, blocks, m[e]);

    wg_store(call, &m[0][0][0], tiles, blocks, stride2 ? QK_WINOGRAD_S2 : QK_WINOGRAD_F2);
}

#define WG_TILE(P, B)                                                                        \
    static void wg_tile_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 0); }  \
    static void wg_tile_s2_##P##x##B(const qk_winograd_call *call) { wg_tile(call, P, B, 1); }
#define WG_TILES_3(P) WG_TILE(P, 1) WG_TILE(P, 2) WG_TILE(P, 3)
WG_TILES_3(1) WG_TILES_3(2) WG_TILES_3(3) WG_TILES_3(4)

#define WG_ROW(P) wg_tile_##P##x1, wg_tile_##P##x2, wg_tile_##P##x3
static const qk_winograd_tile_fn tiles[WG_MAX_TILES * WG_MAX_BLOCKS] = {WG_ROW(1), WG_ROW(2), WG_ROW(3), WG_ROW(4)};
#define WG_ROW_S2(P) wg_tile_s2_##P##x1, wg_tile_s2_##P##x2, wg_tile_s2_##P##x3
static const qk_winograd_tile_fn tiles_s2[WG_MAX_TILES * WG_MAX_BLOCKS] = {WG_ROW_S2(1), WG_ROW_S2(2), WG_ROW_S2(3),
                                                                           WG_ROW_S2(4)};

// ---- F(4x4,3x3) ----

// V = Bt d B of a 6x6 patch, 8 channels at a time (winograd.h: every partial sum fits int16).
static void input_transform_f4(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride) {
    for (int32_t c = 0; c < values; c += 8) {
        int16x8_t d[QK_WINOGRAD_F4_POSITIONS];
        for (int i = 0; i < QK_WINOGRAD_F4_POSITIONS; i++) d[i] = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(src[i] + c)));
#define STORE(e, value) vst1q_s16(v + (size_t)(e) * v_stride + c, value)
        QK_WINOGRAD_F4_INPUT_TRANSFORM(int16x8_t, d, vaddq_s16, vsubq_s16, STORE);
#undef STORE
    }
}

#define WG_SHL(x, n) vshlq_n_s32(x, n)

// One channel group's sums m[e][tile][lane] into the tiles' accumulators: A''t M A'' = 576 * acc, times 9^-1
// (mod 2^32) = 64 * acc, exact for the group's |acc| < 2^25, then >> 6. The first group sets them.
static __attribute__((noinline)) void wg_reduce_f4(const int32_t *m, int32_t *sums, int tiles, int blocks, int first_group) {
    const int32x4_t inverse_9 = vdupq_n_s32(QK_WINOGRAD_F4_INVERSE_9);
    for (int p = 0; p < tiles; p++)
        for (int lane = 0; lane < blocks * WG_LANES; lane += 4) {
            int32x4_t mm[QK_WINOGRAD_F4_POSITIONS], r[WG_F4_OUTPUTS];
            const int32_t *column = m + p * WG_TILE_STEP + lane;
            for (int e = 0; e < QK_WINOGRAD_F4_POSITIONS; e++) mm[e] = vld1q_s32(column + e * WG_POSITION_STEP);
            QK_WINOGRAD_F4_OUTPUT_TRANSFORM(int32x4_t, mm, r, vaddq_s32, vsubq_s32, WG_SHL);
            int32_t *out = sums + (p * WG_F4_OUTPUTS) * WG_TILE_STEP + lane;
            for (int q = 0; q < WG_F4_OUTPUTS; q++) {
                int32x4_t acc = vshrq_n_s32(vmulq_s32(r[q], inverse_9), 6);
                int32_t *slot = out + q * WG_TILE_STEP;
                if (!first_group) acc = vaddq_s32(acc, vld1q_s32(slot));
                vst1q_s32(slot, acc);
            }
        }
}

// The GEMM over the 36 positions, one channel group at a time, each group reduced before the next.
QK_INLINE void wg_tile_f4(const qk_winograd_call *call, const int tiles, const int blocks) {
    int32_t m[QK_WINOGRAD_F4_POSITIONS][WG_MAX_TILES][WG_TILE_STEP] __attribute__((aligned(16)));
    int32_t sums[WG_MAX_TILES * WG_F4_OUTPUTS][WG_TILE_STEP] __attribute__((aligned(16)));
    const int32_t chunks = call->chunks, group_chunks = call->group_chunks;
    const size_t tile_step = (size_t)QK_WINOGRAD_F4_POSITIONS * (size_t)call->v_stride;
    const size_t chunk_bytes = (size_t)blocks * QK_NEON_UNIT_BYTES;
    for (int32_t first = 0; first < chunks; first += group_chunks) {
        const int32_t end = first + group_chunks < chunks ? first + group_chunks : chunks;
        for (int e = 0; e < QK_WINOGRAD_F4_POSITIONS; e++)
            wg_position(call->v + (size_t)e * call->v_stride, tile_step,
                        call->weights + ((size_t)e * (size_t)chunks + (size_t)first) * chunk_bytes, first, end, tiles, blocks, m[e]);
        wg_reduce_f4(&m[0][0][0], &sums[0][0], tiles, blocks, first == 0);
    }
    wg_store(call, &sums[0][0], tiles, blocks, QK_WINOGRAD_F4);
}

#define WG_TILE_F4(P, B) \
    static void wg_tile_f4_##P##x##B(const qk_winograd_call *call) { wg_tile_f4(call, P, B); }
#define WG_TILES_F4_3(P) WG_TILE_F4(P, 1) WG_TILE_F4(P, 2) WG_TILE_F4(P, 3)
WG_TILES_F4_3(1) WG_TILES_F4_3(2) WG_TILES_F4_3(3) WG_TILES_F4_3(4)

#define WG_ROW_F4(P) wg_tile_f4_##P##x1, wg_tile_f4_##P##x2, wg_tile_f4_##P##x3
static const qk_winograd_tile_fn tiles_f4[WG_MAX_TILES * WG_MAX_BLOCKS] = {WG_ROW_F4(1), WG_ROW_F4(2), WG_ROW_F4(3),
                                                                           WG_ROW_F4(4)};

const qk_winograd_kernels qk_winograd_u8s16_4x3c8_neon = {
    .lanes = WG_LANES, .depth = QK_NEON_DEPTH, .unit_bytes = QK_NEON_UNIT_BYTES, .unit_index = unit_index,
    .input = input_transform, .input_width = 8,
    .max_tiles = WG_MAX_TILES, .max_blocks = WG_MAX_BLOCKS, .max_accumulators = WG_MAX_TILES * WG_MAX_BLOCKS,
    .tiles = tiles, .input_s2 = input_transform_s2, .tiles_s2 = tiles_s2,
    .input_f4 = input_transform_f4, .tiles_f4 = tiles_f4,
    .gemm_percent = 75, .direct_percent = 75, .input_macs = 16, .output_macs = 48,
};
#endif
