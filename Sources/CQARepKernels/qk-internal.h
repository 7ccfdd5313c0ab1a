// Declarations shared by the kernel files; not part of the public interface.
// Each kernel variant lives in its own file (conv3x3-scalar.c, conv3x3-avx2.c, ...) and is reached only
// through the validating entry points in dispatch.c, so variants may assume well-formed arguments.
#ifndef QK_INTERNAL_H
#define QK_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "qarep_kernels.h"

#if defined(__x86_64__)
#define QK_HAVE_X86 1
#else
#define QK_HAVE_X86 0
#endif

// The exact float tail every path must reproduce (see qarep_kernels.h): separate rounding of the
// conversion and of the multiply, clamp, then round half to even (the default rounding mode, which is what
// cvtps2dq uses too).
static inline uint8_t qk_requantize(int32_t acc_plus_bias, float multiplier) {
    float t = (float)acc_plus_bias;
    t = t * multiplier;
    t = fmaxf(t, 0.0f);
    t = fminf(t, 255.0f);
    return (uint8_t)nearbyintf(t);
}

// Geometry derived once from a validated shape.
typedef struct qk_conv_geometry {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, stride, groups;
    int32_t in_per_group, out_per_group;
} qk_conv_geometry;

qk_conv_geometry qk_conv_geometry_of(const qk_conv_shape *shape);

typedef struct qk_conv_args {
    qk_conv_geometry geo;
    int32_t batch;
    int32_t threads;  // the team size the work split plans for
    const void *packed;
    const int32_t *bias;
    const float *multiplier;
    const uint8_t *pad_value;
    const uint8_t *input;
    uint8_t *output;
    // What the calling thread needs first in the step after this one (its first weight tile of the next
    // layer, its share of the fc weights), fetched into L2 during its last work item; NULL for nothing.
    const uint8_t *prefetch_next;
    size_t prefetch_next_bytes;
    // Set by the blocked driver when every multiplier is below 1: then |t| < 2^31 (|acc + bias| < 2^31 is
    // the caller's contract), cvtps2dq cannot overflow and the saturating packs alone clamp at 255.
    int multipliers_below_one;
} qk_conv_args;

// The threads of one parallel region. Functions named *_share do one member's share of a step: a
// contiguous range of the step's work items. They do not wait for the others; the caller puts a barrier
// between steps that depend on each other. One region can thus run a whole network (network.c), and a
// member knows which items it takes next, which lets it fetch their weights ahead of time.
// Which thread computes an output never changes its value, so results do not depend on the team size.
// `work`, when set (network.c), lets a member that finished its share take items from the others' shares,
// so one descheduled thread does not hold up a whole layer; `step` numbers the region's steps.
struct qk_team_work;
typedef struct qk_team {
    int32_t member, size;
    struct qk_team_work *work;
    int32_t step;
} qk_team;

// Every member of a parallel region (or a lone caller outside one) calls this once with the same
// `joined` counter, initialized to 0 before the region. Member numbers come from the counter rather than
// the OpenMP runtime API, so the kernels need nothing but pragmas (no omp.h). Ends in a barrier.
static inline qk_team qk_team_join(int32_t *joined) {
    int32_t member, size;
#pragma omp atomic capture
    member = (*joined)++;
#pragma omp barrier
#pragma omp atomic read
    size = *joined;
    qk_team team = {member, size, NULL, 0};
    return team;
}

// Items [*first, *end) of `items`: contiguous shares whose sizes differ by at most one.
static inline void qk_team_share(const qk_team *team, int64_t items, int64_t *first, int64_t *end) {
    *first = items * team->member / team->size;
    *end = items * (team->member + 1) / team->size;
}

// Scalar: the oracle. Packed layout is the OIHW weights unchanged.
size_t qk_conv3x3_packed_size_scalar(const qk_conv_geometry *geo);
void qk_conv3x3_pack_scalar(const qk_conv_geometry *geo, const int8_t *weight_oihw, void *packed);
void qk_conv3x3_unpack_scalar(const qk_conv_geometry *geo, const void *packed, int8_t *weight_oihw);
void qk_conv3x3_scalar_share(const qk_conv_args *args, const qk_team *team);
void qk_global_avgpool_scalar_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                    float multiplier, uint8_t *output, const qk_team *team);
void qk_fc_pack_scalar(int32_t in_c, int32_t out_c, const int8_t *weight, void *packed);
void qk_fc_unpack_scalar(int32_t in_c, int32_t out_c, const void *packed, int8_t *weight);
void qk_fc_scalar_share(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                        const float *multiplier, const uint8_t *input, float *logits, const qk_team *team);

// Argument checks of the public entry points (dispatch.c).
bool qk_conv_shape_is_valid(const qk_conv_shape *shape);
bool qk_pool_shape_is_valid(int32_t batch, int32_t pixels, int32_t channels);
bool qk_fc_shape_is_valid(int32_t in_c, int32_t out_c);

// One step on the chosen path (dispatch.c), for arguments already validated.
void qk_conv3x3_share(qk_path path, const qk_conv_args *args, const qk_team *team);
void qk_global_avgpool_share(qk_path path, int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                             float multiplier, uint8_t *output, const qk_team *team);
void qk_fc_share(qk_path path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                 const float *multiplier, const uint8_t *input, float *logits, const qk_team *team);
// The packed weights a member reads first in a conv layer or the fc head (*bytes = 0: none worth fetching).
void qk_conv3x3_first_weights(qk_path path, const qk_conv_args *args, const qk_team *team, const uint8_t **weights,
                              size_t *bytes);
void qk_fc_first_weights(qk_path path, int32_t in_c, int32_t out_c, const void *packed, const qk_team *team,
                         const uint8_t **weights, size_t *bytes);

double qk_measure_peak_gmacs_impl(double seconds);

// ---- Blocked SIMD conv layout, shared by the AVX2 and AVX-512 VNNI paths ----
//
// Output channels of each group are cut into blocks of `lanes` (16 for a zmm of int32, 8 for a ymm);
// up to `blocks_per_tile` consecutive blocks form a tile, the output channels one microkernel call produces.
// Input channels of a group are cut into chunks of 4 (one vpdpbusd step). Packed weights:
//   [group][tile][tap 0..8][chunk][block within tile][64 bytes]
// so one microkernel call streams its weights strictly sequentially. The 64-byte unit holds
// lanes x 4 weights in the path's own arrangement, zero where the output channel or the input channel
// does not exist: a zero weight makes the over-read input bytes of a partial chunk contribute exactly 0.
//
// Dense mode, for groups of few input channels (the 3-channel stem): 9 taps x 3 channels would take 9
// chunks of which a quarter is padding, and the per-tap setup would dominate. Instead the driver copies
// each output pixel's 3x3 window into one contiguous row (im2col, 9 * in_per_group bytes), and the
// weights are packed as a single "tap" whose chunks run over (tap, channel) pairs: 7 chunks for the stem.
typedef struct qk_conv_blocking {
    int32_t lanes;             // output channels per block
    int32_t blocks_per_group;  // ceil(out_per_group / lanes)
    int32_t blocks_per_tile;   // the largest tile; see qk_tile_first_block
    int32_t pixels_per_tile;   // the widest pixel tile of a row
    int32_t tiles_per_group;
    int32_t taps;              // 9, or 1 in dense mode
    int32_t chunks;            // per tap: ceil(in_per_group / 4), or ceil(9 * in_per_group / 4) in dense mode
} qk_conv_blocking;

enum { QK_PACK_UNIT_BYTES = 64 };

// Lays out one unit from weights[lane][4] (int8, already zero padded).
typedef void (*qk_pack_unit_fn)(const int8_t weights[][4], int32_t lanes, uint8_t unit[QK_PACK_UNIT_BYTES]);
// The inverse: weights[lane][4] of the first `lanes` lanes back from a unit.
typedef void (*qk_unpack_unit_fn)(const uint8_t unit[QK_PACK_UNIT_BYTES], int32_t lanes, int8_t weights[][4]);
// Tiles split a group's blocks as evenly as possible (64 channels: 2 + 2 blocks, not 3 + 1; 256: 3, 3, 2,
// 3, 2, 3): a 1-block tile feeds each input broadcast to a single dot product and is bound by the loads
// (RepVGG-B0's 64-channel layers ran at 81% of peak with a 3 + 1 split).
static inline int32_t qk_tile_first_block(const qk_conv_blocking *b, int32_t tile) {
    return (int32_t)((int64_t)tile * b->blocks_per_group / b->tiles_per_group);
}

static inline int32_t qk_tile_blocks(const qk_conv_blocking *b, int32_t tile) {
    return qk_tile_first_block(b, tile + 1) - qk_tile_first_block(b, tile);
}

// Start of tile `tile` of group `group` inside the packed weights.
static inline const uint8_t *qk_conv_tile_weights(const void *packed, const qk_conv_blocking *b,
                                                  int32_t group, int32_t tile) {
    const size_t block_bytes = (size_t)b->taps * (size_t)b->chunks * QK_PACK_UNIT_BYTES;
    const size_t first_block = (size_t)group * (size_t)b->blocks_per_group + (size_t)qk_tile_first_block(b, tile);
    return (const uint8_t *)packed + first_block * block_bytes;
}

// Largest microkernel any path uses, which sizes the driver's buffer of partial sums.
enum { QK_MAX_TILE_PIXELS = 8, QK_MAX_TILE_LANES = 64 };

// One microkernel call: `pixels` consecutive output pixels of one row, starting at out_x, times the
// output channels of tile `tile` of group `group`, over taps [first_tap, first_tap + taps).
// partial == NULL: all taps of the packing (9, or the one dense-mode tap) at once, then store the
// requantized bytes. Otherwise the call is one slice: it starts afresh (first_tap == 0) or from the sums in
// partial[pixel][lane] (lanes counted over a full tile), and stores either the sums back there or, on the
// last slice, the requantized bytes.
// In dense mode im2col points at the first pixel's window row, the next pixel's is im2col_stride further.
// Each tap also prefetches `prefetch_lines_per_tap` cache lines into L2, from `prefetch` on: weights the
// thread needs in its next work item, streamed while this one computes.
// `weights` and `first_block` locate channel tile `tile` (qk_conv_tile_weights, qk_tile_first_block); the
// driver finds them once per channel tile, since the divisions cost a stem's microkernel call about 10%.
typedef struct qk_conv_tile {
    int32_t image, out_y, out_x, pixels, group, tile, first_block;
    const uint8_t *weights;
    int32_t first_tap, taps;
    int32_t *partial;
    const uint8_t *im2col;
    int32_t im2col_stride;
    const uint8_t *prefetch;
    int32_t prefetch_lines_per_tap;
} qk_conv_tile;

typedef void (*qk_conv_tile_fn)(const qk_conv_args *args, const qk_conv_blocking *blocking,
                                const qk_conv_tile *tile);

// What a blocked SIMD path contributes: its block width, its unit arrangement and its microkernels,
// one per tile size, tiles[(pixels - 1) * max_blocks + blocks - 1]. Everything else (packing order,
// dense mode, tap slices, tiling of rows, threads) is shared, in blocked-driver.c.
typedef struct qk_conv_microkernels {
    int32_t lanes, max_pixels, max_blocks;
    int32_t max_accumulators;  // largest pixels x blocks of a tile (tiles beyond it are NULL)
    // The tile-shape cost model (blocked-driver.c), in hundredths of a dot-product instruction: the cost of
    // one load, and of streaming one block's weights from L2 for one input chunk when a tile's weights
    // exceed l1_weight_bytes. Zero costs: the widest tile at the most pixels.
    int32_t load_cost, streamed_block_cost;
    size_t l1_weight_bytes;
    size_t slice_bytes;  // weight bytes one tap slice may span (see blocked-driver.c)
    qk_pack_unit_fn pack_unit;
    qk_unpack_unit_fn unpack_unit;
    const qk_conv_tile_fn *tiles;
} qk_conv_microkernels;

size_t qk_conv_blocked_packed_size(const qk_conv_geometry *geo, const qk_conv_microkernels *kernels);
void qk_conv_blocked_pack(const qk_conv_geometry *geo, const qk_conv_microkernels *kernels,
                          const int8_t *weight_oihw, void *packed);
void qk_conv_blocked_unpack(const qk_conv_geometry *geo, const qk_conv_microkernels *kernels, const void *packed,
                            int8_t *weight_oihw);
// The layer as tiles shared by the team (args->threads is the team size the work split plans for); each
// output byte is produced by exactly one thread.
void qk_conv_blocked_share(const qk_conv_args *args, const qk_conv_microkernels *kernels, const qk_team *team);
void qk_conv_blocked_first_weights(const qk_conv_args *args, const qk_conv_microkernels *kernels, const qk_team *team,
                                   const uint8_t **weights, size_t *bytes);

// Where tap (ky, kx) of output pixel (out_y, out_x) reads its input channels from `first_channel` on:
// the input pixel, or the padding values on the border.
static inline const uint8_t *qk_conv_tap_source(const qk_conv_args *args, const uint8_t *image, int32_t out_y,
                                                int32_t out_x, int32_t ky, int32_t kx, int32_t first_channel) {
    const qk_conv_geometry *geo = &args->geo;
    const int32_t iy = out_y * geo->stride + ky - 1;
    const int32_t ix = out_x * geo->stride + kx - 1;
    if ((uint32_t)iy < (uint32_t)geo->in_h && (uint32_t)ix < (uint32_t)geo->in_w)
        return image + ((size_t)iy * (size_t)geo->in_w + (size_t)ix) * (size_t)geo->in_c + (size_t)first_channel;
    return args->pad_value + first_channel;
}

// Input pointers of tap `tap` for the `pixels` output pixels of a tile (from their window rows in dense
// mode). Inside the image the pixels are `stride * in_c` bytes apart, which needs one add per pixel.
// A tile on the left or right border (both tiles of a 14-pixel row) only has its first or last pixel
// outside for a given tap, so the per-pixel column check is a compare and a select, and whole rows
// outside the image read the padding.
static inline __attribute__((always_inline)) void qk_conv_tile_sources(const qk_conv_args *args,
                                                                       const qk_conv_tile *tile, const uint8_t *image,
                                                                       int32_t first_channel, int32_t tap, int pixels,
                                                                       const uint8_t **src) {
    if (tile->im2col != NULL) {
        for (int p = 0; p < pixels; p++) src[p] = tile->im2col + p * tile->im2col_stride;
        return;
    }
    const qk_conv_geometry *geo = &args->geo;
    const int32_t ky = tap / 3, kx = tap % 3;
    const int32_t iy = tile->out_y * geo->stride + ky - 1;
    const uint8_t *pad = args->pad_value + first_channel;
    if ((uint32_t)iy >= (uint32_t)geo->in_h) {
        for (int p = 0; p < pixels; p++) src[p] = pad;
        return;
    }
    const uint8_t *row = image + (size_t)iy * (size_t)geo->in_w * (size_t)geo->in_c + (size_t)first_channel;
    const int32_t first_ix = tile->out_x * geo->stride + kx - 1;
    const int32_t last_ix = first_ix + (pixels - 1) * geo->stride;
    if (first_ix >= 0 && last_ix < geo->in_w) {
        const uint8_t *first = row + (size_t)first_ix * (size_t)geo->in_c;
        const size_t step = (size_t)geo->stride * (size_t)geo->in_c;
        for (int p = 0; p < pixels; p++) src[p] = first + (size_t)p * step;
        return;
    }
    for (int p = 0; p < pixels; p++) {
        const int32_t ix = first_ix + p * geo->stride;
        src[p] = (uint32_t)ix < (uint32_t)geo->in_w ? row + (size_t)ix * (size_t)geo->in_c : pad;
    }
}

static inline int32_t qk_load_u32(const uint8_t *p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

// Fully connected weights use the same units: [block of `lanes` outputs][chunk of 4 inputs][64 bytes].
size_t qk_fc_blocked_size(int32_t in_c, int32_t out_c, int32_t lanes);
// The path's conv microkernels descriptor supplies the block width and the unit arrangement.
void qk_fc_pack_blocked(int32_t in_c, int32_t out_c, const qk_conv_microkernels *kernels, const int8_t *weight,
                        void *packed);
void qk_fc_unpack_blocked(int32_t in_c, int32_t out_c, const qk_conv_microkernels *kernels, const void *packed,
                          int8_t *weight);

// One block of `lanes` logits of one image: a SIMD path's part of the fully connected head.
typedef struct qk_fc_block {
    int32_t chunks;            // ceil(in_c / 4)
    int32_t outputs;           // logits of this block that exist (1..lanes)
    const uint8_t *weights;    // the block's packed units
    const uint8_t *input;      // the image's in_c bytes (+ readable slack)
    const int32_t *bias;       // from this block's first output on
    const float *multiplier;
    float *logits;
} qk_fc_block;
typedef void (*qk_fc_block_fn)(const qk_fc_block *block);
void qk_fc_blocked_share(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                         const float *multiplier, const uint8_t *input, float *logits, int32_t lanes,
                         qk_fc_block_fn run_block, const qk_team *team);
void qk_fc_blocked_first_weights(int32_t in_c, int32_t out_c, const void *packed, int32_t lanes, const qk_team *team,
                                 const uint8_t **weights, size_t *bytes);

// Channels [first, end) of one image's average pool; SIMD paths finish their channel tails with it.
void qk_avgpool_channels_scalar(const uint8_t *image, int32_t pixels, int32_t channels, int32_t first,
                                int32_t end, float multiplier, uint8_t *out);

#if QK_HAVE_X86
extern const qk_conv_microkernels qk_conv_microkernels_avx512vnni;
extern const qk_conv_microkernels qk_conv_microkernels_avx2;
void qk_global_avgpool_avx512vnni_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                        float multiplier, uint8_t *output, const qk_team *team);
void qk_global_avgpool_avx2_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                  float multiplier, uint8_t *output, const qk_team *team);
void qk_fc_avx512vnni_share(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                            const float *multiplier, const uint8_t *input, float *logits, const qk_team *team);
void qk_fc_avx2_share(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                      const float *multiplier, const uint8_t *input, float *logits, const qk_team *team);
#endif

#endif  // QK_INTERNAL_H
