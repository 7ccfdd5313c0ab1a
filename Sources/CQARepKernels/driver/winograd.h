#ifndef QK_WINOGRAD_H
#define QK_WINOGRAD_H

#include "common/qk-path.h"

// Exact integer Winograd F(2x2,3x3) for stride-1 layers of the int16 paths (docs/performance.md,
// "Winograd F(2x2,3x3)", gives the exactness argument). Per 2x2 output tile and input channel:
//   V = Bt d B        (d: the 4x4 u8 input tile; |V| <= 1020, int16)
//   U' = G' g G't     (G' = 2G: integer; |U'| <= 9 * 127 = 1143, int16, packed at load)
//   M[e] = sum over channels of U'[e] * V[e]  (vpmaddwd / smlal: exact int32 pair sums, wrapping adds)
//   Y' = At M A = 4 * acc  (exact modulo 2^32, hence exact while |4 * acc| < 2^31), acc = Y' >> 2.
// Bt = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G' = [2 0 0; 1 1 1; 1 -1 1; 0 0 2], At = [1 1 1 0; 0 1 -1 -1].
//
// Packed weights, per group: output blocks of `lanes` cut into channel tiles of up to max_blocks blocks (as
// evenly as blocked.h cuts them), each tile [e 0..15 (stride 2: 0..24)][chunk][block within tile][unit], a unit holding
// lanes x depth int16 values of U' in the path's arrangement (unit_index), zero where a lane or an input
// channel does not exist.

// Largest input channels per group for which |4 * acc| < 2^31 always holds: 4 * 255 * 127 * 9 * C < 2^31.
enum { QK_WINOGRAD_MAX_CHANNELS = 1841 };

// Stride 2 (docs/performance.md, "Winograd for stride 2"): the layer splits into the four phases of its input
// (even and odd rows and columns), each a stride-1 convolution with the taps of that phase: a 2x2 kernel
// (w00 w02 w20 w22), 2x1 (w01 w21), 1x2 (w10 w12) and 1x1 (w11). A 2x2 output tile reads a 5x5 input patch
// from (4 ty - 1, 4 tx - 1); the two-tap parts take F(2,2), whose transforms are integer:
//   V = [d0 - d1, d1, d2 - d1],  U = [g0, g0 + g1, g1],  y0 = m0 + m1, y1 = m1 + m2,
// so 25 products per channel pair instead of 36: 9 (F(2x2,2x2)), 6 + 6 (F(2,2) down two columns, along two
// rows) and 4 (the 1x1 taps). |V| <= 2 * 255 and |U| <= 4 * 127 fit int16; nothing is scaled, so the int32
// result is the direct convolution's sum itself, wrapped alike. Positions e: 0..8 the 2x2 part (3 x 3, row
// major), 9..14 the 2x1 part (column jb, then the F(2,2) index), 15..20 the 1x2 part (row ib, then index),
// 21..24 the 1x1 taps (2 dy + dx). The channel bound is the stack buffer's (one tile's 25 rows).
enum { QK_WINOGRAD_POSITIONS = 16, QK_WINOGRAD_S2_POSITIONS = 25, QK_WINOGRAD_S2_MAX_CHANNELS = 1152 };

// F(4x4,3x3) (docs/performance.md, "Winograd F(4x4,3x3)"), stride 1, on paths that have its kernels: a 4x4
// output tile from a 6x6 input patch at (4 ty - 1, 4 tx - 1), 36 products per channel pair instead of 144.
// Points 0, 1, -1, 2, -2 and infinity; Lavin's Bt, with G's row factors moved into the output transform:
//   V = Bt d B                 |V| <= 68 * 255 = 17340 (int16; the first pass |.| <= 2040)
//   U = E g Et                 E = [1 0 0; 1 1 1; 1 -1 1; 1 2 4; 1 -2 4; 0 0 1]: |U| <= 49 * 127 = 6223 (int16)
//   R = A'' M A''t = 576 * acc  (exact modulo 2^32), A''t = At diag(6, -4, -4, 1, 1, 24)
// 576 = 64 * 9: R * 9^-1 (mod 2^32) = 64 * acc, exact while |acc| < 2^25, and acc = that >> 6. So the
// input channels are summed in groups whose |acc| cannot reach 2^25 (255 * sum of |w| over the group's
// weights of each output channel, known at packing), each group transformed and reduced on its own.
enum { QK_WINOGRAD_F4_POSITIONS = 36, QK_WINOGRAD_F4_MAX_CHANNELS = 800 };

// Which transform a layer runs: F(2x2,3x3), stride 2 over the input's phases, or F(4x4,3x3).
typedef enum qk_winograd_form { QK_WINOGRAD_F2 = 0, QK_WINOGRAD_S2 = 1, QK_WINOGRAD_F4 = 2 } qk_winograd_form;
#define QK_WINOGRAD_F4_INVERSE_9 954437177  // 9 * 954437177 = 2 * 2^32 + 1
#define QK_WINOGRAD_F4_GROUP_BOUND (1 << 25)

// Bt x of six values (int16; every partial sum stays within 10 * 2040).
#define QK_WINOGRAD_F4_INPUT_1D(x0, x1, x2, x3, x4, x5, t, ADD, SUB)                                    \
    do {                                                                                                 \
        const __typeof__(x0) d02_ = SUB(x0, x2), d42_ = SUB(x4, x2), d31_ = SUB(x3, x1);                 \
        const __typeof__(x0) s12_ = ADD(x1, x2), d12_ = SUB(x1, x2), s34_ = ADD(x3, x4);                \
        const __typeof__(x0) d43_ = SUB(x4, x3), d13_ = SUB(x1, x3), d53_ = SUB(x5, x3);                 \
        const __typeof__(x0) d02x2_ = ADD(d02_, d02_), s12x2_ = ADD(s12_, s12_);                        \
        const __typeof__(x0) d12x2_ = ADD(d12_, d12_), d31x2_ = ADD(d31_, d31_), d13x2_ = ADD(d13_, d13_); \
        t[0] = ADD(ADD(d02x2_, d02x2_), d42_);             /* 4 x0 - 5 x2 + x4 */                        \
        t[1] = SUB(s34_, ADD(s12x2_, s12x2_));             /* -4 x1 - 4 x2 + x3 + x4 */                  \
        t[2] = ADD(d43_, ADD(d12x2_, d12x2_));             /* 4 x1 - 4 x2 - x3 + x4 */                   \
        t[3] = ADD(d42_, d31x2_);                          /* -2 x1 - x2 + 2 x3 + x4 */                  \
        t[4] = SUB(d42_, d31x2_);                          /* 2 x1 - x2 - 2 x3 + x4 */                   \
        t[5] = ADD(ADD(d13x2_, d13x2_), d53_);             /* 4 x1 - 5 x3 + x5 */                        \
    } while (0)

// Input: d[6 * row + column] (the widened patch); STORE(e, value) receives V[e] = (Bt d B)[e].
#define QK_WINOGRAD_F4_INPUT_TRANSFORM(T, d, ADD, SUB, STORE)                                           \
    do {                                                                                                 \
        T w_[36]; /* Bt d: w_[6 * i + column] */                                                         \
        for (int c_ = 0; c_ < 6; c_++) {                                                                 \
            T t_[6];                                                                                     \
            QK_WINOGRAD_F4_INPUT_1D(d[c_], d[6 + c_], d[12 + c_], d[18 + c_], d[24 + c_], d[30 + c_], t_, ADD, SUB); \
            for (int i_ = 0; i_ < 6; i_++) w_[6 * i_ + c_] = t_[i_];                                    \
        }                                                                                                \
        for (int i_ = 0; i_ < 6; i_++) {                                                                 \
            T t_[6];                                                                                     \
            const T *r_ = &w_[6 * i_];                                                                   \
            QK_WINOGRAD_F4_INPUT_1D(r_[0], r_[1], r_[2], r_[3], r_[4], r_[5], t_, ADD, SUB);             \
            for (int j_ = 0; j_ < 6; j_++) STORE(6 * i_ + j_, t_[j_]);                                   \
        }                                                                                                \
    } while (0)

// A''t m of six int32 values, wrapping: SHL(x, n) = x * 2^n.
#define QK_WINOGRAD_F4_OUTPUT_1D(m0, m1, m2, m3, m4, m5, y, ADD, SUB, SHL)                              \
    do {                                                                                                 \
        const __typeof__(m0) sa_ = ADD(m1, m2), sb_ = SUB(m1, m2), sc_ = ADD(m3, m4), sd_ = SUB(m3, m4);    \
        const __typeof__(m0) sa4_ = SHL(sa_, 2), sb4_ = SHL(sb_, 2);                                         \
        y[0] = ADD(SUB(ADD(SHL(m0, 2), SHL(m0, 1)), sa4_), sc_); /* 6 m0 - 4 a + c */                      \
        y[1] = SUB(SHL(sd_, 1), sb4_);                           /* 2 d - 4 b */                           \
        y[2] = SUB(SHL(sc_, 2), sa4_);                           /* 4 c - 4 a */                           \
        y[3] = ADD(SUB(SHL(sd_, 3), sb4_), ADD(SHL(m5, 4), SHL(m5, 3))); /* 8 d - 4 b + 24 m5 */           \
    } while (0)

// Output: r[4 * dy + dx] = (A''t M A'')[dy][dx] = 576 * acc (mod 2^32) from the 36 sums m[e].
#define QK_WINOGRAD_F4_OUTPUT_TRANSFORM(T, m, r, ADD, SUB, SHL)                                         \
    do {                                                                                                 \
        T u_[24]; /* A''t M: u_[6 * dy + column] */                                                      \
        for (int c_ = 0; c_ < 6; c_++) {                                                                 \
            T t_[4];                                                                                     \
            QK_WINOGRAD_F4_OUTPUT_1D(m[c_], m[6 + c_], m[12 + c_], m[18 + c_], m[24 + c_], m[30 + c_], t_, ADD, SUB, SHL); \
            for (int i_ = 0; i_ < 4; i_++) u_[6 * i_ + c_] = t_[i_];                                    \
        }                                                                                                \
        for (int i_ = 0; i_ < 4; i_++) {                                                                 \
            T t_[4];                                                                                     \
            const T *q_ = &u_[6 * i_];                                                                   \
            QK_WINOGRAD_F4_OUTPUT_1D(q_[0], q_[1], q_[2], q_[3], q_[4], q_[5], t_, ADD, SUB, SHL);       \
            for (int j_ = 0; j_ < 4; j_++) r[4 * i_ + j_] = t_[j_];                                      \
        }                                                                                                \
    } while (0)

// Transformed inputs of the tiles a call covers: [tile][e][v_stride] int16, channel order.
typedef struct qk_winograd_call {
    const qk_conv_args *args;
    const int16_t *v;          // the call's first tile
    int32_t v_stride;          // values per (tile, e) row; rows of one tile are v_stride apart, tiles 16
                               // rows (stride 2: 25, F(4x4,3x3): 36)
    const uint8_t *weights;    // the channel tile's packed weights
    int32_t chunks;            // per e: ceil(in_per_group / depth)
    int32_t tile_blocks;       // blocks of the channel tile (the weights' interleave)
    int32_t image, group, first_block;  // first_block: the channel tile's, within the group
    int32_t tile_y, tile_x;    // the first tile's place; the call's tiles are consecutive in one row
    int32_t group_chunks;      // F(4x4,3x3): chunks per channel group (the last group may have fewer)
    // Cache lines the call fetches into L2 over its 16 positions (none: prefetch_lines 0): its share of the
    // weights that run next, which would otherwise come from L3 or DRAM at the speed of one demand stream.
    const char *prefetch;
    int32_t prefetch_lines;
} qk_winograd_call;
typedef void (*qk_winograd_tile_fn)(const qk_winograd_call *call);

// Writes V of one input patch (4x4; stride 2: 5x5; F(4x4,3x3): 6x6): src[side * row + column] points at the
// group's first channel of that input pixel (or at the pad values); `values` (a multiple of input_width)
// channels are transformed, those past the group's channels being readable slack that meets zero weights.
typedef void (*qk_winograd_input_fn)(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride);

// The largest unit a path may have (packing builds a position's units on the stack).
enum { QK_WINOGRAD_MAX_UNIT_BYTES = 128 };

typedef struct qk_winograd_kernels {
    int32_t lanes, depth, unit_bytes;  // unit_bytes = lanes * depth * 2 <= QK_WINOGRAD_MAX_UNIT_BYTES
    // Index of weight (lane, q) among the unit's int16 values.
    int32_t (*unit_index)(int32_t lane, int32_t q);
    qk_winograd_input_fn input;
    int32_t input_width;       // channels per vector step of `input`: V rows are rounded up to it
    int32_t max_tiles, max_blocks, max_accumulators;  // a call's tiles x blocks stay within max_accumulators
    // tiles[(tiles - 1) * max_blocks + blocks - 1]: GEMM over the 16 positions, output transform, /4, bias,
    // requantization and the stores of `tiles` tiles x `blocks` blocks.
    const qk_winograd_tile_fn *tiles;
    // Stride 2 (NULL: the path runs stride-2 layers directly): the 5x5 patch's 25 V rows, and the tiles over
    // the 25 positions with the stride-2 output transform (no /4).
    qk_winograd_input_fn input_s2;
    const qk_winograd_tile_fn *tiles_s2;
    // F(4x4,3x3) (NULL: the path runs stride-1 layers with F(2x2,3x3) only): the 6x6 patch's 36 V rows, and
    // the tiles over the 36 positions in channel groups, each group's output transform reduced on its own.
    qk_winograd_input_fn input_f4;
    const qk_winograd_tile_fn *tiles_f4;
    // The per-layer choice (winograd-conv.c): the GEMM's and the direct kernel's measured fraction of the
    // path's peak, in percent, and the transforms' cost per tile and channel in MACs at peak.
    int32_t gemm_percent, direct_percent, input_macs, output_macs;
    // What each byte of weights costs, in MACs at peak, each time a band of tiles streams them (from L3 or
    // DRAM once they outgrow L2); 0 where it is not measured.
    int32_t stream_macs_per_byte;
} qk_winograd_kernels;

// The transforms' algebra on any vector type T, one macro for every path so that their arithmetic cannot
// differ. Input: d[4 * row + column] (the widened tile), STORE(e, value) receives V[e] = (Bt d B)[e].
#define QK_WINOGRAD_INPUT_TRANSFORM(T, d, ADD, SUB, STORE)             \
    do {                                                               \
        T w_[16]; /* Bt d */                                           \
        for (int col_ = 0; col_ < 4; col_++) {                         \
            w_[col_] = SUB(d[col_], d[8 + col_]);                      \
            w_[4 + col_] = ADD(d[4 + col_], d[8 + col_]);              \
            w_[8 + col_] = SUB(d[8 + col_], d[4 + col_]);              \
            w_[12 + col_] = SUB(d[4 + col_], d[12 + col_]);            \
        }                                                              \
        for (int row_ = 0; row_ < 4; row_++) {                         \
            const T *r_ = &w_[4 * row_];                               \
            STORE(4 * row_ + 0, SUB(r_[0], r_[2]));                    \
            STORE(4 * row_ + 1, ADD(r_[1], r_[2]));                    \
            STORE(4 * row_ + 2, SUB(r_[2], r_[1]));                    \
            STORE(4 * row_ + 3, SUB(r_[1], r_[3]));                    \
        }                                                              \
    } while (0)

// Output: y[2 * dy + dx] = (At M A)[dy][dx] from the 16 sums m[e], in wrapping int32 adds (exact modulo
// 2^32, and the result 4 * acc fits int32).
#define QK_WINOGRAD_OUTPUT_TRANSFORM(T, m, y, ADD, SUB)                \
    do {                                                               \
        T t0_[4], t1_[4]; /* At M */                                   \
        for (int c_ = 0; c_ < 4; c_++) {                               \
            t0_[c_] = ADD(ADD(m[c_], m[4 + c_]), m[8 + c_]);           \
            t1_[c_] = SUB(SUB(m[4 + c_], m[8 + c_]), m[12 + c_]);      \
        }                                                              \
        y[0] = ADD(ADD(t0_[0], t0_[1]), t0_[2]);                       \
        y[1] = SUB(SUB(t0_[1], t0_[2]), t0_[3]);                       \
        y[2] = ADD(ADD(t1_[0], t1_[1]), t1_[2]);                       \
        y[3] = SUB(SUB(t1_[1], t1_[2]), t1_[3]);                       \
    } while (0)

// Stride 2: d[5 * row + column] is the widened 5x5 patch; STORE(e, value) receives V[e].
#define QK_WINOGRAD_S2_INPUT_TRANSFORM(T, d, SUB, STORE)                                                 \
    do {                                                                                                 \
        T a_[9]; /* the 2x2 part's 3x3 phase, its rows transformed */                                    \
        for (int j_ = 0; j_ < 3; j_++) {                                                                 \
            a_[j_] = SUB(d[2 * j_], d[10 + 2 * j_]);                                                     \
            a_[3 + j_] = d[10 + 2 * j_];                                                                 \
            a_[6 + j_] = SUB(d[20 + 2 * j_], d[10 + 2 * j_]);                                            \
        }                                                                                                \
        for (int i_ = 0; i_ < 3; i_++) {                                                                 \
            STORE(3 * i_ + 0, SUB(a_[3 * i_], a_[3 * i_ + 1]));                                          \
            STORE(3 * i_ + 1, a_[3 * i_ + 1]);                                                           \
            STORE(3 * i_ + 2, SUB(a_[3 * i_ + 2], a_[3 * i_ + 1]));                                      \
        }                                                                                                \
        for (int b_ = 0; b_ < 2; b_++) {                                                                 \
            const int c_ = 1 + 2 * b_; /* the 2x1 part: column c_, rows 0, 2, 4 */                       \
            STORE(9 + 3 * b_ + 0, SUB(d[c_], d[10 + c_]));                                               \
            STORE(9 + 3 * b_ + 1, d[10 + c_]);                                                           \
            STORE(9 + 3 * b_ + 2, SUB(d[20 + c_], d[10 + c_]));                                          \
            const int r_ = 5 * (1 + 2 * b_); /* the 1x2 part: row 1 + 2 b_, columns 0, 2, 4 */           \
            STORE(15 + 3 * b_ + 0, SUB(d[r_], d[r_ + 2]));                                               \
            STORE(15 + 3 * b_ + 1, d[r_ + 2]);                                                           \
            STORE(15 + 3 * b_ + 2, SUB(d[r_ + 4], d[r_ + 2]));                                           \
        }                                                                                                \
        STORE(21, d[6]);                                                                                 \
        STORE(22, d[8]);                                                                                 \
        STORE(23, d[16]);                                                                                \
        STORE(24, d[18]);                                                                                \
    } while (0)

// Stride 2: y[2 * dy + dx] from the 25 sums m[e], in wrapping int32 adds; the result is the sum itself.
#define QK_WINOGRAD_S2_OUTPUT_TRANSFORM(T, m, y, ADD)                                                    \
    do {                                                                                                 \
        T s_[6]; /* the 2x2 part, At M: s_[3 * dy + j] */                                                \
        for (int j_ = 0; j_ < 3; j_++) {                                                                 \
            s_[j_] = ADD(m[j_], m[3 + j_]);                                                              \
            s_[3 + j_] = ADD(m[3 + j_], m[6 + j_]);                                                      \
        }                                                                                                \
        for (int dy_ = 0; dy_ < 2; dy_++)                                                                \
            for (int dx_ = 0; dx_ < 2; dx_++) {                                                          \
                const T part2x2_ = ADD(s_[3 * dy_ + dx_], s_[3 * dy_ + dx_ + 1]);                        \
                const T part2x1_ = ADD(m[9 + 3 * dx_ + dy_], m[9 + 3 * dx_ + dy_ + 1]);                  \
                const T part1x2_ = ADD(m[15 + 3 * dy_ + dx_], m[15 + 3 * dy_ + dx_ + 1]);                \
                y[2 * dy_ + dx_] = ADD(ADD(part2x2_, part2x1_), ADD(part1x2_, m[21 + 2 * dy_ + dx_]));   \
            }                                                                                            \
    } while (0)

// Where output q (2 * dy + dx) of tile p of the call goes for the block starting at channel o of the group;
// NULL where the tile reaches past the image.
static inline uint8_t *qk_winograd_output(const qk_winograd_call *call, int32_t p, int32_t q, int32_t o) {
    const qk_conv_geometry *geo = &call->args->geo;
    const int32_t oy = 2 * call->tile_y + q / 2, ox = 2 * (call->tile_x + p) + q % 2;
    if (oy >= geo->out_h || ox >= geo->out_w) return NULL;
    return call->args->output + (((size_t)call->image * geo->out_h + oy) * geo->out_w + ox) * geo->out_c +
           (size_t)call->group * geo->out_per_group + o;
}

// Where output q (4 * dy + dx) of F(4x4,3x3) tile p goes, as qk_winograd_output.
static inline uint8_t *qk_winograd_output4(const qk_winograd_call *call, int32_t p, int32_t q, int32_t o) {
    const qk_conv_geometry *geo = &call->args->geo;
    const int32_t oy = 4 * call->tile_y + q / 4, ox = 4 * (call->tile_x + p) + q % 4;
    if (oy >= geo->out_h || ox >= geo->out_w) return NULL;
    return call->args->output + (((size_t)call->image * geo->out_h + oy) * geo->out_w + ox) * geo->out_c +
           (size_t)call->group * geo->out_per_group + o;
}

// Whether this path runs this layer with Winograd (stride 1, channels within the bound, cheaper by the
// cost model; QAREP_WINOGRAD=0 never, =always wherever allowed).
bool qk_winograd_chosen(const qk_path_config *path, const qk_conv_geometry *geo);
// The path's config with Winograd limited to `use`: itself for QK_WINOGRAD_USE_ANY, else a copy without
// the F(4x4,3x3) kernels or without Winograd, made once per process. NULL for a NULL config.
const qk_path_config *qk_winograd_limited_config(qk_path path, const qk_path_config *config, qk_winograd_use use);
// The ops of the int16 paths: Winograd for the layers it is chosen for, the blocked driver otherwise.
extern const qk_path_ops qk_winograd_ops;

#endif  // QK_WINOGRAD_H
