// What one CPU path is: the description each line of qk_paths.h points to. The entry points, the network
// runner and the peak measurement read everything path-specific from here, so nothing outside a path's
// folder and the table switches over paths.
#ifndef QK_PATH_H
#define QK_PATH_H

#include "common/qk-internal.h"

typedef struct qk_path_config qk_path_config;

// ---- Packing geometry of the blocked layout (driver/blocked.h) ----
// Output channels are cut into blocks of `lanes`, input values into chunks of `depth` (one dot-product
// step: 4 for vpdpbusd, sdot and vpmaddwd pairs, 8 for smmla). One [lanes][depth] unit takes `unit_bytes`
// in the path's own arrangement; `trailer_bytes` follow each block's units when the path needs per-lane
// terms derived from the weights (an sdot path's sum of weights, which corrects for the shifted input).
enum { QK_MAX_PACK_LANES = 32, QK_MAX_PACK_DEPTH = 8 };
typedef struct qk_pack_geometry {
    int32_t lanes, depth, unit_bytes, trailer_bytes;
    // Lays out one unit from weights[lane][depth] (int8, zero where a lane or input does not exist).
    void (*pack_unit)(const int8_t *weights, uint8_t *unit);
    // True when a unit is exactly weights[lane][depth] as bytes (pack_unit a copy), so packing may write
    // units in place.
    bool units_are_lane_major;
    // The inverse: weights[lane][depth] back from a unit.
    void (*unpack_unit)(const uint8_t *unit, int8_t *weights);
    // Writes a block's trailer from the sum of each lane's weights (NULL when trailer_bytes is 0).
    void (*pack_trailer)(const int32_t *lane_sums, uint8_t *trailer);
} qk_pack_geometry;

// ---- The blocked conv microkernels and the driver's cost model ----
struct qk_conv_args;
struct qk_conv_blocking;
struct qk_conv_tile;
typedef void (*qk_conv_tile_fn)(const struct qk_conv_args *args, const struct qk_conv_blocking *blocking,
                                const struct qk_conv_tile *tile);

typedef struct qk_conv_microkernels {
    int32_t max_pixels, max_blocks;
    int32_t max_accumulators;  // largest pixels x blocks of a tile (tiles beyond it are NULL)
    // One per tile shape: tiles[(pixels - 1) * max_blocks + blocks - 1].
    const qk_conv_tile_fn *tiles;
    // Paths whose microkernels multiply int16 inputs: widens `values` input bytes to int16 by zero
    // extension (writing and reading up to 31 values more, which the driver leaves room for). Set, the
    // driver widens each work item's input rows once into the thread's scratch and the microkernels read
    // them from there (qk_conv_tile.wide), and in dense mode it builds the window rows as int16, zero-extended
    // by its own copies (qk_conv_tile.im2col); NULL: the microkernels read u8 inputs.
    void (*widen)(const uint8_t *bytes, int32_t values, int16_t *words);
    // Optional, with widen: layers of one group of 3 input channels (RGB stems), packed as in dense mode
    // but read from the widened band rows (qk_conv_tile.wide) instead of window rows. One call runs
    // tile->pixels pixels of row out_y from out_x on, for channel tile `tile` (qk_tile_blocks of its blocks),
    // and fetches the prefetch_lines_per_tap lines from `prefetch` on (the row's share), spread over the row.
    qk_conv_tile_fn stem3;
    // Microkernels that take pixel tiles running on across rows: outside dense mode the driver cuts a band's
    // pixels, in raster order, into tiles as even as possible (a 14-pixel row no longer leaves tiles a pixel
    // short of the widest). Byte-input ones read their sources through qk_conv_tile_run_sources and the
    // runs' chunk offsets the driver builds; widened ones through qk_conv_int16_sources (driver/blocked.h).
    bool raster_tiles;
} qk_conv_microkernels;

// The tile-shape cost model (driver/blocked-conv.c), in hundredths of a dot-product instruction: the cost
// of one load, and of streaming one block's weights from L2 for one input chunk when a tile's weights
// exceed l1_weight_bytes. Zero costs: the widest tile at the most pixels. slice_bytes bounds the weights
// one tap slice spans.
typedef struct qk_conv_costs {
    int32_t load_cost, streamed_block_cost;
    size_t l1_weight_bytes, slice_bytes;
} qk_conv_costs;

// One block of `lanes` logits of one image: a blocked path's part of the fully connected head.
typedef struct qk_fc_block {
    int32_t chunks;            // ceil(in_c / depth)
    int32_t outputs;           // logits of this block that exist (1..lanes)
    const uint8_t *weights;    // the block's packed units (and trailer)
    const uint8_t *input;      // the image's in_c bytes (+ readable slack)
    const int32_t *bias;       // from this block's first output on
    const float *multiplier;
    float *logits;
} qk_fc_block;
typedef void (*qk_fc_block_fn)(const qk_fc_block *block);

// ---- Operations ----
// How a path packs and runs each step. Blocked paths share the driver's (qk_blocked_ops), which reads their
// geometry, microkernels and costs; the scalar oracle has its own.
typedef struct qk_path_ops {
    size_t (*conv_packed_size)(const qk_path_config *path, const qk_conv_geometry *geo);
    void (*conv_pack)(const qk_path_config *path, const qk_conv_geometry *geo, const int8_t *weight_oihw,
                      void *packed);
    void (*conv_unpack)(const qk_path_config *path, const qk_conv_geometry *geo, const void *packed,
                        int8_t *weight_oihw);
    // Packing in place (NULL: never): the OIHW weights lie at the end of the layer's region of region_bytes
    // and are packed to its start, so a model load needs no buffer of its own for them. With packed == NULL
    // it only answers whether this layer can; otherwise false means nothing was written (no memory).
    bool (*conv_pack_in_place)(const qk_path_config *path, const qk_conv_geometry *geo, void *packed,
                               size_t region_bytes);
    // One member's share of a conv step (see qk_team).
    void (*conv_share)(const qk_path_config *path, const qk_conv_args *args, const qk_team *team);
    // conv_share takes every item through qk_claim_next, with its output region, and writes nothing else
    // of the output, so the network runner's rescue mode can run it (network/team-rescue.h).
    bool claims_items;
    // The packed weights a member reads first in a conv step (*bytes = 0: none worth fetching ahead).
    void (*conv_first_weights)(const qk_path_config *path, const qk_conv_args *args, const qk_team *team,
                               const uint8_t **weights, size_t *bytes);
    // Bytes of qk_conv_args.scratch each thread needs for a layer of this geometry, any batch and team
    // size (NULL: none).
    size_t (*conv_scratch_bytes)(const qk_path_config *path, const qk_conv_geometry *geo);
    size_t (*fc_packed_size)(const qk_path_config *path, int32_t in_c, int32_t out_c);
    void (*fc_pack)(const qk_path_config *path, int32_t in_c, int32_t out_c, const int8_t *weight, void *packed);
    void (*fc_unpack)(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed, int8_t *weight);
    // The same for the head's [out_c][in_c] weights (NULL: never).
    bool (*fc_pack_in_place)(const qk_path_config *path, int32_t in_c, int32_t out_c, void *packed,
                             size_t region_bytes);
    void (*fc_share)(const qk_path_config *path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
                     const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits,
                     const qk_team *team);
    void (*fc_first_weights)(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                             const qk_team *team, const uint8_t **weights, size_t *bytes);
} qk_path_ops;

typedef void (*qk_pool_share_fn)(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                 float multiplier, uint8_t *output, const qk_team *team);

struct qk_path_config {
    const char *name;
    // Among the supported paths the highest runs by default.
    int32_t preference;
    // Whether this CPU and OS can run the path; NULL where the build has no code for it (another
    // architecture), which reads as "not supported".
    bool (*supported)(void);
    // The CPU features it needs as Linux's /proc/cpuinfo names them, space separated, so that tests can
    // check detection against what the OS reports.
    const char *linux_cpu_flags;
    const qk_path_ops *ops;
    qk_pool_share_fn pool_share;
    // Blocked paths only.
    qk_pack_geometry packing;
    // The fc head's units where they differ from the convs' (unit_bytes 0: the same as `packing`): the
    // head reads each weight once per batch, so a path may keep them as bytes and widen them in fc_block.
    qk_pack_geometry fc_packing;
    qk_conv_microkernels conv;
    qk_conv_costs costs;
    qk_fc_block_fn fc_block;
    // The peak yardstick: the instruction mix of the path's inner loop, and a loop of exactly that mix
    // (peak/peak.h) returning GMAC/s of one core.
    const char *peak_mix;
    double (*peak_gmacs)(double seconds);
    // Winograd F(2x2,3x3) kernels for stride-1 layers (driver/winograd.h); NULL: direct only.
    const struct qk_winograd_kernels *winograd;
};

// The table (paths.c), indexed by qk_path (test-only paths included); NULL for a value that is not a path.
const qk_path_config *qk_path_config_of(qk_path path);
// The config of a path this CPU can run; NULL otherwise.
const qk_path_config *qk_supported_path_config(qk_path path);

#define QK_PATH_DECLARE_CONFIG(id, config) extern const qk_path_config config;
QK_PATH_TABLE(QK_PATH_DECLARE_CONFIG)
QK_TEST_PATH_TABLE(QK_PATH_DECLARE_CONFIG)
#undef QK_PATH_DECLARE_CONFIG

// One conv layer on a team of up to `threads`, each member calling `share` (api/entry-points.c), after the
// argument checks of qk_conv3x3_u8, each with its own scratch of the bytes `scratch_of` gives (what `share` asks
// for: the op's conv_scratch_bytes; NULL for none), allocated for the call.
typedef void (*qk_conv_share_fn)(const qk_path_config *path, const qk_conv_args *args, const qk_team *team);
typedef size_t (*qk_conv_scratch_fn)(const qk_path_config *path, const qk_conv_geometry *geo);
qk_status qk_conv_run_team(const qk_path_config *config, const qk_conv_shape *shape, int32_t batch, const void *packed,
                            const int32_t *bias, const float *multiplier, const uint8_t *pad_value, const uint8_t *input,
                            uint8_t *output, int32_t threads, qk_conv_share_fn share, qk_conv_scratch_fn scratch_of);

extern const qk_path_ops qk_blocked_ops;
extern const qk_path_ops qk_scalar_ops;

#endif  // QK_PATH_H
