// The Winograd F(2x2,3x3) driver (winograd.h), stride 1 and, over the input's phases, stride 2: which layers
// take it, packing of the transformed weights, and the work split: bands of tile rows of one image,
// optionally cut by output channels, claimed like the blocked driver's items. The path contributes the input
// transform and the GEMM + output microkernels.
#include "driver/winograd.h"
#include "driver/blocked.h"
#include "network/network.h"
#include "network/team-sync.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// ---- Which layers ----

// QAREP_WINOGRAD: "0" never, "always" every eligible layer, "2x2" the cost model without F(4x4,3x3), anything
// else (or unset) the cost model. Read once per process, so that a layer is always run the way it was packed.
enum { QK_WINOGRAD_NEVER = 1, QK_WINOGRAD_AUTO = 2, QK_WINOGRAD_ALWAYS = 3, QK_WINOGRAD_2X2 = 4 };
static int policy(void) {
    static int cached;
    int value = __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
    if (value != 0) return value;
    const char *text = getenv("QAREP_WINOGRAD");
    value = QK_WINOGRAD_AUTO;
    if (text != NULL && strcmp(text, "0") == 0) value = QK_WINOGRAD_NEVER;
    if (text != NULL && strcmp(text, "always") == 0) value = QK_WINOGRAD_ALWAYS;
    if (text != NULL && strcmp(text, "2x2") == 0) value = QK_WINOGRAD_2X2;
    int expected = 0;
    __atomic_compare_exchange_n(&cached, &expected, value, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&cached, __ATOMIC_ACQUIRE);
}

static bool eligible(const qk_path_config *path, const qk_conv_geometry *geo) {
    if (path->winograd == NULL) return false;
    if (geo->stride == 1) return geo->in_per_group <= QK_WINOGRAD_MAX_CHANNELS;
    return geo->stride == 2 && path->winograd->tiles_s2 != NULL && geo->in_per_group <= QK_WINOGRAD_S2_MAX_CHANNELS;
}

// Products per channel pair and output tile: F(2x2,3x3) and F(4x4,3x3) at stride 1, the phases' 25 at stride 2.
static int32_t positions_of(qk_winograd_form form) {
    return form == QK_WINOGRAD_F4 ? QK_WINOGRAD_F4_POSITIONS : form == QK_WINOGRAD_S2 ? QK_WINOGRAD_S2_POSITIONS : QK_WINOGRAD_POSITIONS;
}
// Output side of a tile, input patch side, and the patch origin's step per tile (origin: step * t - 1).
static int32_t tile_side_of(qk_winograd_form form) { return form == QK_WINOGRAD_F4 ? 4 : 2; }
// Whole tiles along an output side of `pixels`.
static int32_t tiles_along(int32_t pixels, qk_winograd_form form) { return (pixels + tile_side_of(form) - 1) / tile_side_of(form); }
static int32_t patch_side_of(qk_winograd_form form) { return form == QK_WINOGRAD_F4 ? 6 : form == QK_WINOGRAD_S2 ? 5 : 4; }
static int32_t patch_step_of(qk_winograd_form form) { return form == QK_WINOGRAD_F2 ? 2 : 4; }

// Transformed inputs of a segment of tiles: the weights are then streamed once per up to 40 tiles at 192 channels.
enum { QK_WINOGRAD_V_BYTES = 256 << 10 };
// F(4x4,3x3) transforms 2.25x as many inputs per output; a band that holds a whole 14x14 layer of 256 channels (16
// tiles) streams its 2.4 MB of weights once instead of twice, 1.2x faster on a Zen 3 (docs/performance.md).
enum { QK_WINOGRAD_F4_V_BYTES = 320 << 10 };

// Input and output channels of a group, padded to whole chunks and whole blocks.
static int64_t padded_inputs(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    return (int64_t)(geo->in_per_group + k->depth - 1) / k->depth * k->depth;
}
static int64_t padded_outputs(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    return (int64_t)(geo->out_per_group + k->lanes - 1) / k->lanes * k->lanes;
}

// Int16 values from one transformed input channel to the next within a tile's V rows.
static int32_t v_stride_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    const int32_t values = (int32_t)padded_inputs(k, geo);
    return (values + k->input_width - 1) / k->input_width * k->input_width;
}

// Bytes of one group's transformed weights under a form.
static int64_t group_weight_bytes(const qk_winograd_kernels *k, const qk_conv_geometry *geo, qk_winograd_form form) {
    return positions_of(form) * padded_inputs(k, geo) * padded_outputs(k, geo) * (int64_t)sizeof(int16_t);
}

// Layers with more transformed weights than this hold a whole image's transformed inputs, up to the cap: every
// band streams all of a layer's weights, and B3's 14x14x768 layers (19 MB, 4 bands) streamed 76 MB per image
// from DRAM. With one band they stream once, and the inputs, 1.2 MB here, come from L3 for each channel tile
// instead: those layers took 7.9 ms instead of 11-12 (docs/performance.md, "Whole images for big layers").
enum { QK_WINOGRAD_WHOLE_IMAGE_WEIGHT_BYTES = 4 << 20, QK_WINOGRAD_MAX_V_BYTES = 2 << 20 };

// The transformed inputs a member holds at once, its kernel scratch (conv_scratch_bytes, from the session's
// workspace).
static int32_t v_bytes_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo, qk_winograd_form form) {
    const int32_t segment = form == QK_WINOGRAD_F4 ? QK_WINOGRAD_F4_V_BYTES : QK_WINOGRAD_V_BYTES;
    if (geo->groups * group_weight_bytes(k, geo, form) <= QK_WINOGRAD_WHOLE_IMAGE_WEIGHT_BYTES) return segment;
    const int64_t tile_values = positions_of(form) * (int64_t)v_stride_of(k, geo);
    int64_t whole = (int64_t)tiles_along(geo->out_h, form) * tiles_along(geo->out_w, form) * tile_values * (int64_t)sizeof(int16_t);
    if (whole > QK_WINOGRAD_MAX_V_BYTES) whole = QK_WINOGRAD_MAX_V_BYTES;
    return whole > segment ? (int32_t)whole : segment;
}

// Tiles whose transformed inputs a segment holds.
static int32_t segment_tiles_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo, qk_winograd_form form) {
    return v_bytes_of(k, geo, form) / (positions_of(form) * v_stride_of(k, geo) * (int32_t)sizeof(int16_t));
}

// Bands of an image: one segment each, at most one per row of tiles.
static int64_t image_bands_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo, qk_winograd_form form) {
    const int32_t tiles_h = tiles_along(geo->out_h, form), tiles_w = tiles_along(geo->out_w, form);
    const int32_t segment = segment_tiles_of(k, geo, form);
    const int64_t bands = ((int64_t)tiles_w * tiles_h + segment - 1) / segment;
    return bands < tiles_h ? bands : tiles_h;
}

// One core's L2 cache, read once (the model's choices then stay fixed for the process); 512 KB where the OS
// does not say.
static int64_t l2_bytes(void) {
    static int64_t cached;
    int64_t bytes = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (bytes != 0) return bytes;
    bytes = 512 << 10;
#if defined(_SC_LEVEL2_CACHE_SIZE)
    const long reported = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (reported > 0) bytes = reported;
#endif
    __atomic_store_n(&cached, bytes, __ATOMIC_RELAXED);
    return bytes;
}

// Weight bytes one image streams under a form: each band streams the group's weights once, and again for every
// further call of a channel tile in the band when the tile's weights (every position and chunk) outgrow L2, as
// F(4x4,3x3)'s do from 512 channels on avx2 (590 KB against Zen 3's 512 KB; docs/performance.md).
static int64_t streamed_bytes(const qk_winograd_kernels *k, const qk_conv_geometry *geo, qk_winograd_form form,
                              int64_t weight_bytes) {
    const int64_t bands = image_bands_of(k, geo, form);
    const int32_t blocks = (geo->out_per_group + k->lanes - 1) / k->lanes;
    const int32_t tile_blocks = blocks < k->max_blocks ? blocks : k->max_blocks;
    if (weight_bytes / ((blocks + tile_blocks - 1) / tile_blocks) <= l2_bytes()) return bands * weight_bytes;
    const int32_t tiles_h = tiles_along(geo->out_h, form), tiles_w = tiles_along(geo->out_w, form);
    int32_t widest = k->max_accumulators / tile_blocks;
    if (widest > k->max_tiles) widest = k->max_tiles;
    const int64_t band_rows = (tiles_h + bands - 1) / bands;
    return bands * band_rows * ((tiles_w + widest - 1) / widest) * weight_bytes;
}

// Estimated time of a Winograd form in MACs at the path's peak: products per tile at the GEMM's efficiency,
// plus the transforms, whose loads and stores grow with the positions, plus the weights streamed. Tiles are
// whole, so an output side that is no multiple of the tile's pays for its padding. The third term is what makes B3's 768-channel 14x14 layers faster under F(2x2,3x3) than under
// F(4x4,3x3), whose 42 MB of weights four bands stream (docs/performance.md, "Weights streamed per band").
static int64_t winograd_cost(const qk_winograd_kernels *k, const qk_conv_geometry *geo, qk_winograd_form form) {
    const int64_t cpad = padded_inputs(k, geo), kpad = padded_outputs(k, geo);
    const int64_t tiles = (int64_t)tiles_along(geo->out_h, form) * tiles_along(geo->out_w, form);
    const int64_t positions = positions_of(form);
    const int64_t weight_bytes = group_weight_bytes(k, geo, form);  // of a group, as the rest
    return tiles * (positions * cpad * kpad * 100 / k->gemm_percent +
                    ((int64_t)k->input_macs * cpad + (int64_t)k->output_macs * kpad) * positions / 16) +
           streamed_bytes(k, geo, form, weight_bytes) * k->stream_macs_per_byte;
}

// Testing: 1 forces F(4x4,3x3) wherever a path has it, -1 keeps it off, 0 leaves it to the cost model.
static _Atomic int f4_forced;

// F(4x4,3x3) where the path has it, the layer's channels allow it and the cost model prefers it to F(2x2,3x3).
static qk_winograd_form form_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    if (geo->stride == 2) return QK_WINOGRAD_S2;
    if (k->tiles_f4 == NULL || geo->in_per_group > QK_WINOGRAD_F4_MAX_CHANNELS) return QK_WINOGRAD_F2;
    const int forced = atomic_load(&f4_forced);
    if (forced != 0) return forced > 0 ? QK_WINOGRAD_F4 : QK_WINOGRAD_F2;
    if (policy() == QK_WINOGRAD_2X2) return QK_WINOGRAD_F2;
    return winograd_cost(k, geo, QK_WINOGRAD_F4) < winograd_cost(k, geo, QK_WINOGRAD_F2) ? QK_WINOGRAD_F4 : QK_WINOGRAD_F2;
}

// Estimated time of both algorithms in MACs at the path's peak: the direct kernel's MACs at its measured
// efficiency, against 16 (stride 2: 25) products per tile instead of 36 at the GEMM's efficiency, plus the
// transforms, whose loads and stores grow with the positions.
// Tiles are whole, so an odd output side pays for its padding row. Layers of up to 7 channels per group run
// the direct driver's dense mode, which Winograd's per-channel transforms cannot beat.
static bool cheaper(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    if (geo->in_per_group <= 7) return false;
    const int64_t cpad = padded_inputs(k, geo), kpad = padded_outputs(k, geo);
    const int64_t winograd = winograd_cost(k, geo, form_of(k, geo));
    const int64_t direct = (int64_t)geo->out_h * geo->out_w * 9 * cpad * kpad * 100 / k->direct_percent;
    return winograd < direct;
}

// Stride 2 packs 25 int16 per channel pair against the direct layout's 9, and a layer whose weights then
// outgrow L2 streams them from L3 or DRAM for every image: A0's conv.21 (192 -> 1280, 12.3 MB, a 7x7 output
// of 16 tiles for 49 pixels) ran at 0.86-0.92x the direct kernel's speed, conv.7 (0.9 MB) at 1.26-1.43x
// (docs/performance.md, "Winograd for stride 2").
enum { QK_WINOGRAD_S2_MAX_WEIGHT_BYTES = 2 << 20 };

static size_t packed_size(const qk_winograd_kernels *k, const qk_conv_geometry *geo);

bool qk_winograd_chosen(const qk_path_config *path, const qk_conv_geometry *geo) {
    if (!eligible(path, geo)) return false;
    const int p = policy();
    if (p == QK_WINOGRAD_NEVER) return false;
    if (p == QK_WINOGRAD_ALWAYS) return true;
    if (geo->stride == 2 && packed_size(path->winograd, geo) > QK_WINOGRAD_S2_MAX_WEIGHT_BYTES) return false;
    return cheaper(path->winograd, geo);
}

// ---- Layout ----

typedef struct qk_winograd_blocking {
    qk_winograd_form form;
    int32_t chunks, blocks_per_group, tiles_per_group;
    int32_t positions;
    size_t header_bytes;  // F(4x4,3x3): a line in front of the weights holding the chunks per channel group
    size_t block_bytes;   // one block's units over the positions and all chunks
} qk_winograd_blocking;

static qk_winograd_blocking blocking_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    qk_winograd_blocking b;
    b.form = form_of(k, geo);
    b.chunks = (geo->in_per_group + k->depth - 1) / k->depth;
    b.blocks_per_group = (geo->out_per_group + k->lanes - 1) / k->lanes;
    b.tiles_per_group = (b.blocks_per_group + k->max_blocks - 1) / k->max_blocks;
    b.positions = positions_of(b.form);
    b.header_bytes = b.form == QK_WINOGRAD_F4 ? 64 : 0;
    b.block_bytes = (size_t)b.positions * (size_t)b.chunks * (size_t)k->unit_bytes;
    return b;
}

// Channel tiles split a group's blocks as evenly as blocked.h does.
static int32_t first_block_of(const qk_winograd_blocking *b, int32_t tile) {
    return (int32_t)((int64_t)tile * b->blocks_per_group / b->tiles_per_group);
}

static size_t packed_size(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    const qk_winograd_blocking b = blocking_of(k, geo);
    return b.header_bytes + (size_t)geo->groups * (size_t)b.blocks_per_group * b.block_bytes;
}

// U' = G' g G't of one 3x3 kernel (row-major), G' = [2 0 0; 1 1 1; 1 -1 1; 0 0 2].
static void transform_weights(const int8_t *g, int16_t *u) {
    int32_t t[4][3];  // G' g
    for (int j = 0; j < 3; j++) {
        t[0][j] = 2 * g[j];
        t[1][j] = g[j] + g[3 + j] + g[6 + j];
        t[2][j] = g[j] - g[3 + j] + g[6 + j];
        t[3][j] = 2 * g[6 + j];
    }
    for (int i = 0; i < 4; i++) {
        u[4 * i + 0] = (int16_t)(2 * t[i][0]);
        u[4 * i + 1] = (int16_t)(t[i][0] + t[i][1] + t[i][2]);
        u[4 * i + 2] = (int16_t)(t[i][0] - t[i][1] + t[i][2]);
        u[4 * i + 3] = (int16_t)(2 * t[i][2]);
    }
}

// The inverse, from rows 0, 1, 3 and columns 0, 1, 3 of U': G' g's rows 0 and 3 are twice g's rows 0 and 2,
// row 1 their sum with g's row 1; likewise for the columns.
static void restore_weights(const int16_t *u, int8_t *g) {
    int32_t t[4][3];
    for (int i = 0; i < 4; i += (i == 1 ? 2 : 1)) {
        t[i][0] = u[4 * i + 0] / 2;
        t[i][2] = u[4 * i + 3] / 2;
        t[i][1] = u[4 * i + 1] - t[i][0] - t[i][2];
    }
    for (int j = 0; j < 3; j++) {
        g[j] = (int8_t)(t[0][j] / 2);
        g[6 + j] = (int8_t)(t[3][j] / 2);
        g[3 + j] = (int8_t)(t[1][j] - t[0][j] / 2 - t[3][j] / 2);
    }
}

// Stride 2 (winograd.h): U of the phases' parts, F(2,2)'s G = [1 0; 1 1; 0 1] on every two-tap axis.
static void transform_weights_s2(const int8_t *g, int16_t *u) {
    const int32_t corner[2][2] = {{g[0], g[2]}, {g[6], g[8]}};  // the 2x2 part: rows 0, 2 and columns 0, 2
    int32_t t[3][2];
    for (int j = 0; j < 2; j++) {
        t[0][j] = corner[0][j];
        t[1][j] = corner[0][j] + corner[1][j];
        t[2][j] = corner[1][j];
    }
    for (int i = 0; i < 3; i++) {
        u[3 * i + 0] = (int16_t)t[i][0];
        u[3 * i + 1] = (int16_t)(t[i][0] + t[i][1]);
        u[3 * i + 2] = (int16_t)t[i][1];
    }
    for (int b = 0; b < 2; b++) {
        u[9 + 3 * b + 0] = g[1];  // the 2x1 part, the same taps for both columns
        u[9 + 3 * b + 1] = (int16_t)(g[1] + g[7]);
        u[9 + 3 * b + 2] = g[7];
        u[15 + 3 * b + 0] = g[3];  // the 1x2 part, the same taps for both rows
        u[15 + 3 * b + 1] = (int16_t)(g[3] + g[5]);
        u[15 + 3 * b + 2] = g[5];
    }
    for (int e = 21; e < 25; e++) u[e] = g[4];
}

// F(4x4,3x3): U = E g Et, E's rows g's values at 0, 1, -1, 2, -2 and infinity (winograd.h).
static void transform_weights_f4(const int8_t *g, int16_t *u) {
    static const int8_t e[6][3] = {{1, 0, 0}, {1, 1, 1}, {1, -1, 1}, {1, 2, 4}, {1, -2, 4}, {0, 0, 1}};
    int32_t t[6][3];  // E g
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 3; j++) t[i][j] = e[i][0] * g[j] + e[i][1] * g[3 + j] + e[i][2] * g[6 + j];
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 6; j++) u[6 * i + j] = (int16_t)(e[j][0] * t[i][0] + e[j][1] * t[i][1] + e[j][2] * t[i][2]);
}

// The inverse from rows and columns 0 (g's first), 5 (its last) and 1 - 2 (twice its middle one).
static void restore_weights_f4(const int16_t *u, int8_t *g) {
    int32_t t[3][6];  // g Et, from E (g Et)'s rows 0, 5 and 1 - 2
    for (int j = 0; j < 6; j++) {
        t[0][j] = u[j];
        t[2][j] = u[30 + j];
        t[1][j] = (u[6 + j] - u[12 + j]) / 2;
    }
    for (int i = 0; i < 3; i++) {
        g[3 * i + 0] = (int8_t)t[i][0];
        g[3 * i + 2] = (int8_t)t[i][5];
        g[3 * i + 1] = (int8_t)((t[i][1] - t[i][2]) / 2);
    }
}

static void restore_weights_s2(const int16_t *u, int8_t *g) {
    g[0] = (int8_t)u[0];
    g[2] = (int8_t)u[2];
    g[6] = (int8_t)u[6];
    g[8] = (int8_t)u[8];
    g[1] = (int8_t)u[9];
    g[7] = (int8_t)u[11];
    g[3] = (int8_t)u[15];
    g[5] = (int8_t)u[17];
    g[4] = (int8_t)u[21];
}

// U' of one channel pair's 3x3 kernel under the layer's form.
static void transform_of(qk_winograd_form form, const int8_t *kernel, int16_t *u) {
    if (form == QK_WINOGRAD_S2) transform_weights_s2(kernel, u);
    else if (form == QK_WINOGRAD_F4) transform_weights_f4(kernel, u);
    else transform_weights(kernel, u);
}

// Where U'[e] of output channel o (within its group g) and input channel c lies in the packed weights.
static size_t weight_offset(const qk_winograd_kernels *k, const qk_winograd_blocking *b, int32_t g, int32_t o,
                            int32_t c, int32_t e) {
    const int32_t block = o / k->lanes, lane = o % k->lanes;
    int32_t tile = (int32_t)((int64_t)block * b->tiles_per_group / b->blocks_per_group);
    while (first_block_of(b, tile + 1) <= block) tile++;
    while (first_block_of(b, tile) > block) tile--;
    const int32_t first = first_block_of(b, tile), tile_blocks = first_block_of(b, tile + 1) - first;
    const size_t tile_base = b->header_bytes + ((size_t)g * (size_t)b->blocks_per_group + (size_t)first) * b->block_bytes;
    const int32_t chunk = c / k->depth, q = c % k->depth;
    return tile_base + (((size_t)e * (size_t)b->chunks + (size_t)chunk) * (size_t)tile_blocks + (size_t)(block - first)) *
                           (size_t)k->unit_bytes +
           (size_t)k->unit_index(lane, q) * sizeof(int16_t);
}

// Big layers are summed (F(4x4,3x3)'s groups) and packed by several threads, one per this many bytes up to
// OpenMP's default team: each writes its own units, and the kernel zeroes their fresh pages on the CPU that
// touches them first (the three were most of a big model's load).
#define QK_WINOGRAD_PARALLEL_SUM_BYTES (64 * 1024)
#define QK_WINOGRAD_PACK_BYTES_PER_THREAD (512 * 1024)

extern int omp_get_max_threads(void);

static int pack_threads(size_t bytes, size_t bytes_per_thread) {
    const size_t wanted = bytes / bytes_per_thread, most = (size_t)omp_get_max_threads();
    return wanted < 1 ? 1 : (int)(wanted < most ? wanted : most);
}

// F(4x4,3x3)'s channel groups: the most chunks per group for which every output channel's |acc| over a group
// stays below 2^25 with inputs up to 255 (winograd.h). One chunk always does: 255 * 127 * 9 * 8 < 2^25.
static int32_t f4_group_chunks(const qk_winograd_kernels *k, const qk_conv_geometry *geo, const int8_t *weight_oihw) {
    const int32_t chunks = (geo->in_per_group + k->depth - 1) / k->depth;
    // sums[o * chunks + chunk]: 255 * sum of |w| of the chunk's input channels; without memory, one chunk per group.
    int64_t *sums = malloc((size_t)geo->out_c * (size_t)chunks * sizeof *sums);
    if (sums == NULL) return 1;
    const int threads = pack_threads((size_t)geo->out_c * (size_t)geo->in_per_group * 9, QK_WINOGRAD_PARALLEL_SUM_BYTES);
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
    for (int32_t o = 0; o < geo->out_c; o++) {
        const int8_t *w = weight_oihw + (size_t)o * (size_t)geo->in_per_group * 9;
        for (int32_t chunk = 0; chunk < chunks; chunk++) {
            int32_t sum = 0;  // at most 128 * 9 * depth
            const int32_t end_c = (chunk + 1) * k->depth < geo->in_per_group ? (chunk + 1) * k->depth : geo->in_per_group;
            for (int32_t i = chunk * k->depth * 9; i < end_c * 9; i++) sum += w[i] < 0 ? -w[i] : w[i];
            sums[(size_t)o * (size_t)chunks + (size_t)chunk] = 255 * (int64_t)sum;
        }
    }
    int32_t n = chunks;
    for (; n > 1; n--) {
        bool fits = true;
        for (int32_t o = 0; o < geo->out_c && fits; o++) {
            const int64_t *row = sums + (size_t)o * (size_t)chunks;
            for (int32_t first = 0; first < chunks && fits; first += n) {
                int64_t bound = 0;
                for (int32_t chunk = first; chunk < first + n && chunk < chunks; chunk++) bound += row[chunk];
                fits = bound < QK_WINOGRAD_F4_GROUP_BOUND;
            }
        }
        if (fits) break;
    }
    free(sums);
    return n;
}

// U' of a unit's channel pairs at once, from their taps (taps[t][i]: tap t of the pair at unit index i),
// written as the unit of each position (u + e * stride). The same integers as transform_of, pair by pair, in
// int16 lanes: |G' g G't| <= 4 * 3 * 3 * 128 and |E g Et| <= 7 * 7 * 128. Unit-wide, the compiler vectorizes
// across the pairs (a pair at a time, packing took most of a load: docs/performance.md).
enum { QK_WINOGRAD_MAX_UNIT_VALUES = QK_WINOGRAD_MAX_UNIT_BYTES / (int)sizeof(int16_t) };
typedef int16_t qk_winograd_taps[9][QK_WINOGRAD_MAX_UNIT_VALUES];

// A row of the second product, (G' g) G't or (E g) Et, from its three columns a, b, c into the units of its
// positions. The units are distinct, and saying so (restrict) lets the compiler vectorize across the pairs.
static inline void f2_row(const int16_t *restrict a, const int16_t *restrict b, const int16_t *restrict c, int32_t n,
                          int16_t *restrict u0, int16_t *restrict u1, int16_t *restrict u2, int16_t *restrict u3) {
    for (int32_t i = 0; i < n; i++) {
        u0[i] = (int16_t)(2 * a[i]);
        u1[i] = (int16_t)(a[i] + b[i] + c[i]);
        u2[i] = (int16_t)(a[i] - b[i] + c[i]);
        u3[i] = (int16_t)(2 * c[i]);
    }
}

static inline void f4_row(const int16_t *restrict a, const int16_t *restrict b, const int16_t *restrict c, int32_t n,
                          int16_t *restrict u0, int16_t *restrict u1, int16_t *restrict u2, int16_t *restrict u3,
                          int16_t *restrict u4, int16_t *restrict u5) {
    for (int32_t i = 0; i < n; i++) {
        const int16_t even = (int16_t)(a[i] + c[i]), even4 = (int16_t)(a[i] + 4 * c[i]), odd2 = (int16_t)(2 * b[i]);
        u0[i] = a[i];
        u1[i] = (int16_t)(even + b[i]);
        u2[i] = (int16_t)(even - b[i]);
        u3[i] = (int16_t)(even4 + odd2);
        u4[i] = (int16_t)(even4 - odd2);
        u5[i] = c[i];
    }
}

static void transform_unit_f2(const qk_winograd_taps taps, int32_t n, int16_t *u, size_t stride) {
    int16_t t[4][3][QK_WINOGRAD_MAX_UNIT_VALUES];  // G' g
    for (int j = 0; j < 3; j++)
        for (int32_t i = 0; i < n; i++) {
            const int16_t g0 = taps[j][i], g1 = taps[3 + j][i], g2 = taps[6 + j][i];
            t[0][j][i] = (int16_t)(2 * g0);
            t[1][j][i] = (int16_t)(g0 + g1 + g2);
            t[2][j][i] = (int16_t)(g0 - g1 + g2);
            t[3][j][i] = (int16_t)(2 * g2);
        }
    for (int r = 0; r < 4; r++) {
        int16_t *row = u + (size_t)(4 * r) * stride;
        f2_row(t[r][0], t[r][1], t[r][2], n, row, row + stride, row + 2 * stride, row + 3 * stride);
    }
}

// E's rows: g's values at 0, 1, -1, 2, -2 and infinity.
static void transform_unit_f4(const qk_winograd_taps taps, int32_t n, int16_t *u, size_t stride) {
    int16_t t[6][3][QK_WINOGRAD_MAX_UNIT_VALUES];  // E g
    for (int j = 0; j < 3; j++)
        for (int32_t i = 0; i < n; i++) {
            const int16_t g0 = taps[j][i], g1 = taps[3 + j][i], g2 = taps[6 + j][i];
            const int16_t even = (int16_t)(g0 + g2), even4 = (int16_t)(g0 + 4 * g2), odd2 = (int16_t)(2 * g1);
            t[0][j][i] = g0;
            t[1][j][i] = (int16_t)(even + g1);
            t[2][j][i] = (int16_t)(even - g1);
            t[3][j][i] = (int16_t)(even4 + odd2);
            t[4][j][i] = (int16_t)(even4 - odd2);
            t[5][j][i] = g2;
        }
    for (int r = 0; r < 6; r++) {
        int16_t *row = u + (size_t)(6 * r) * stride;
        f4_row(t[r][0], t[r][1], t[r][2], n, row, row + stride, row + 2 * stride, row + 3 * stride, row + 4 * stride,
               row + 5 * stride);
    }
}

// Stride 2's 25 positions, as transform_weights_s2 lays them out.
static void transform_unit_s2(const qk_winograd_taps taps, int32_t n, int16_t *u, size_t stride) {
    for (int32_t i = 0; i < n; i++) {
        const int16_t g0 = taps[0][i], g1 = taps[1][i], g2 = taps[2][i], g3 = taps[3][i], g4 = taps[4][i];
        const int16_t g5 = taps[5][i], g6 = taps[6][i], g7 = taps[7][i], g8 = taps[8][i];
        const int16_t corner[3][2] = {{g0, g2}, {(int16_t)(g0 + g6), (int16_t)(g2 + g8)}, {g6, g8}};
        for (int r = 0; r < 3; r++) {
            u[(size_t)(3 * r) * stride + i] = corner[r][0];
            u[(size_t)(3 * r + 1) * stride + i] = (int16_t)(corner[r][0] + corner[r][1]);
            u[(size_t)(3 * r + 2) * stride + i] = corner[r][1];
        }
        for (int b = 0; b < 2; b++) {
            u[(size_t)(9 + 3 * b) * stride + i] = g1;
            u[(size_t)(10 + 3 * b) * stride + i] = (int16_t)(g1 + g7);
            u[(size_t)(11 + 3 * b) * stride + i] = g7;
            u[(size_t)(15 + 3 * b) * stride + i] = g3;
            u[(size_t)(16 + 3 * b) * stride + i] = (int16_t)(g3 + g5);
            u[(size_t)(17 + 3 * b) * stride + i] = g5;
        }
        for (int e = 21; e < 25; e++) u[(size_t)e * stride + i] = g4;
    }
}

// One block of output channels by one chunk of input channels: the units of its positions (unit + e *
// position_stride, in int16) and where its channel pairs' 3x3 kernels lie in the OIHW weights.
typedef struct qk_winograd_unit_pairs {
    size_t unit;             // byte offset of position 0's unit in the packed weights
    size_t position_stride;  // int16 values from one position's unit to the next
    size_t kernels;          // OIHW offset of the block's first output channel and the chunk's first input channel
    int32_t lanes, depth;    // of them present (the last block and chunk may be partial)
} qk_winograd_unit_pairs;

typedef struct qk_winograd_unit_walk {
    qk_winograd_blocking blocking;
    int32_t unit_values;
    int32_t index[QK_WINOGRAD_MAX_UNIT_VALUES];  // unit index of lane * depth + q
} qk_winograd_unit_walk;

static qk_winograd_unit_walk unit_walk_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo) {
    qk_winograd_unit_walk walk;
    walk.blocking = blocking_of(k, geo);
    walk.unit_values = k->unit_bytes / (int32_t)sizeof(int16_t);
    for (int32_t lane = 0; lane < k->lanes; lane++)
        for (int32_t q = 0; q < k->depth; q++) walk.index[lane * k->depth + q] = k->unit_index(lane, q);
    return walk;
}

// The unit of block `block` and chunk `chunk` (block within group g, in channel tile `tile`).
static qk_winograd_unit_pairs unit_pairs_of(const qk_winograd_kernels *k, const qk_conv_geometry *geo,
                                            const qk_winograd_blocking *b, int32_t g, int32_t tile, int32_t block, int32_t chunk) {
    const int32_t first = first_block_of(b, tile), tile_blocks = first_block_of(b, tile + 1) - first;
    const size_t tile_base = b->header_bytes + ((size_t)g * (size_t)b->blocks_per_group + (size_t)first) * b->block_bytes;
    qk_winograd_unit_pairs pairs;
    pairs.unit = tile_base + ((size_t)chunk * (size_t)tile_blocks + (size_t)(block - first)) * (size_t)k->unit_bytes;
    pairs.position_stride = (size_t)b->chunks * (size_t)tile_blocks * (size_t)k->unit_bytes / sizeof(int16_t);
    pairs.kernels = ((size_t)(g * geo->out_per_group + block * k->lanes) * geo->in_per_group + (size_t)chunk * (size_t)k->depth) * 9;
    pairs.lanes = geo->out_per_group - block * k->lanes < k->lanes ? geo->out_per_group - block * k->lanes : k->lanes;
    pairs.depth = geo->in_per_group - chunk * k->depth < k->depth ? geo->in_per_group - chunk * k->depth : k->depth;
    return pairs;
}

// The channel tile that holds block `block` of a group.
static int32_t tile_of_block(const qk_winograd_blocking *b, int32_t block) {
    int32_t tile = 0;
    while (tile + 1 < b->tiles_per_group && first_block_of(b, tile + 1) <= block) tile++;
    return tile;
}

// Every unit once, each block's chunks in order. The units of different blocks are independent, and handed out
// a block at a time (in static shares one CPU waited for the other: the pages a CPU touches first cost it more).
static void for_each_unit(const qk_winograd_kernels *k, const qk_conv_geometry *geo, const qk_winograd_blocking *b,
                          void (*visit)(const void *context, const qk_winograd_unit_pairs *pairs), const void *context) {
    const int64_t blocks = (int64_t)geo->groups * b->blocks_per_group;
    const int threads = pack_threads((size_t)blocks * b->block_bytes, QK_WINOGRAD_PACK_BYTES_PER_THREAD);
    _Atomic int64_t next_block = 0;  // not schedule(dynamic): the libomp of LLVM 14 lacks what clang emits for it
#pragma omp parallel num_threads(threads) if (threads > 1)
    for (int64_t i; (i = atomic_fetch_add_explicit(&next_block, 1, memory_order_relaxed)) < blocks;) {
        const int32_t g = (int32_t)(i / b->blocks_per_group), block = (int32_t)(i % b->blocks_per_group);
        const int32_t tile = tile_of_block(b, block);
        for (int32_t chunk = 0; chunk < b->chunks; chunk++) {
            const qk_winograd_unit_pairs pairs = unit_pairs_of(k, geo, b, g, tile, block, chunk);
            visit(context, &pairs);
        }
    }
}

// Packing reads OIHW weights and writes packed ones; unpacking the other way round.
typedef struct qk_winograd_unit_job {
    const qk_winograd_kernels *k;
    const qk_conv_geometry *geo;
    const qk_winograd_unit_walk *walk;
    union {
        const int8_t *weight_oihw;
        const uint8_t *packed;
    } from;
    union {
        uint8_t *packed;
        int8_t *weight_oihw;
    } to;
} qk_winograd_unit_job;

// The pairs' taps gathered in the unit's arrangement, then transformed together and written as each
// position's unit, whole (the units of a pair lie positions apart).
static void pack_unit(const void *context, const qk_winograd_unit_pairs *pairs) {
    const qk_winograd_unit_job *job = (const qk_winograd_unit_job *)context;
    const qk_winograd_kernels *k = job->k;
    _Alignas(64) qk_winograd_taps taps;
    if (pairs->lanes < k->lanes || pairs->depth < k->depth) memset(taps, 0, sizeof taps);
    for (int32_t lane = 0; lane < pairs->lanes; lane++) {
        const int8_t *w = job->from.weight_oihw + pairs->kernels + (size_t)lane * (size_t)job->geo->in_per_group * 9;
        for (int32_t q = 0; q < pairs->depth; q++)
            for (int t = 0; t < 9; t++) taps[t][job->walk->index[lane * k->depth + q]] = w[9 * q + t];
    }
    int16_t *unit = (int16_t *)(job->to.packed + pairs->unit);
    const qk_winograd_form form = job->walk->blocking.form;
    if (form == QK_WINOGRAD_S2) transform_unit_s2(taps, job->walk->unit_values, unit, pairs->position_stride);
    else if (form == QK_WINOGRAD_F4) transform_unit_f4(taps, job->walk->unit_values, unit, pairs->position_stride);
    else transform_unit_f2(taps, job->walk->unit_values, unit, pairs->position_stride);
}

// The inverse, pair by pair (value by value through weight_offset, repacking B0 for another path took 0.8 s).
static void unpack_unit(const void *context, const qk_winograd_unit_pairs *pairs) {
    const qk_winograd_unit_job *job = (const qk_winograd_unit_job *)context;
    const qk_winograd_kernels *k = job->k;
    const qk_winograd_blocking *b = &job->walk->blocking;
    const int16_t *unit = (const int16_t *)(job->from.packed + pairs->unit);
    for (int32_t lane = 0; lane < pairs->lanes; lane++)
        for (int32_t q = 0; q < pairs->depth; q++) {
            const int32_t i = job->walk->index[lane * k->depth + q];
            int16_t u[QK_WINOGRAD_F4_POSITIONS];
            for (int32_t e = 0; e < b->positions; e++) u[e] = unit[(size_t)e * pairs->position_stride + (size_t)i];
            int8_t *kernel = job->to.weight_oihw + pairs->kernels + ((size_t)lane * (size_t)job->geo->in_per_group + (size_t)q) * 9;
            if (b->form == QK_WINOGRAD_S2) restore_weights_s2(u, kernel);
            else if (b->form == QK_WINOGRAD_F4) restore_weights_f4(u, kernel);
            else restore_weights(u, kernel);
        }
}

static void pack(const qk_winograd_kernels *k, const qk_conv_geometry *geo, const int8_t *weight_oihw, uint8_t *packed) {
    const qk_winograd_unit_walk walk = unit_walk_of(k, geo);
    memset(packed, 0, walk.blocking.header_bytes);
    if (walk.blocking.form == QK_WINOGRAD_F4) {
        const int32_t group_chunks = f4_group_chunks(k, geo, weight_oihw);
        memcpy(packed, &group_chunks, sizeof group_chunks);
    }
    const qk_winograd_unit_job job = {k, geo, &walk, {.weight_oihw = weight_oihw}, {.packed = packed}};
    for_each_unit(k, geo, &walk.blocking, pack_unit, &job);
}

static void unpack(const qk_winograd_kernels *k, const qk_conv_geometry *geo, const uint8_t *packed, int8_t *weight_oihw) {
    const qk_winograd_unit_walk walk = unit_walk_of(k, geo);
    const qk_winograd_unit_job job = {k, geo, &walk, {.packed = packed}, {.weight_oihw = weight_oihw}};
    for_each_unit(k, geo, &walk.blocking, unpack_unit, &job);
}

// ---- Work split ----

_Static_assert(16 * ((QK_WINOGRAD_MAX_CHANNELS + 63) / 64 * 64) * 2 <= QK_WINOGRAD_V_BYTES,
               "a segment holds a tile at the channel bound");
_Static_assert(QK_WINOGRAD_F4_POSITIONS * ((QK_WINOGRAD_F4_MAX_CHANNELS + 63) / 64 * 64) * 2 <= QK_WINOGRAD_F4_V_BYTES,
               "a segment holds an F(4x4,3x3) tile at its channel bound");
_Static_assert(QK_WINOGRAD_S2_POSITIONS * ((QK_WINOGRAD_S2_MAX_CHANNELS + 63) / 64 * 64) * 2 <= QK_WINOGRAD_V_BYTES,
               "a segment holds a stride-2 tile at its channel bound");

typedef struct qk_winograd_plan {
    qk_winograd_blocking blocking;
    int32_t tiles_w, tiles_h, v_stride, segment_tiles;
    int32_t band_rows, bands, parts;
    int64_t items;  // [image][band][group][part]
} qk_winograd_plan;

// With several threads: bands of equal height (up to twice the segment's) whose count the members share exactly,
// each item all of a group's output channels, so each member writes whole pixels of its own rows, which the next
// layer reads mostly from its own core. RepVGG's 14- and 28-row layers were cut into 5 + 5 + 4 or 6 x 4 + 4
// rows, and the shares of those items left one member up to 25% more work (docs/performance.md, "Winograd work
// split").
static bool even_row_split(qk_winograd_plan *plan, const qk_conv_args *args) {
    for (int32_t count = 1; count <= plan->tiles_h; count++) {
        if (plan->tiles_h % count != 0 || plan->tiles_h / count > 2 * plan->band_rows) continue;
        if ((int64_t)args->batch * count * args->geo.groups % args->threads != 0) continue;
        plan->band_rows = plan->tiles_h / count;
        return true;
    }
    return false;
}

enum { QK_WINOGRAD_ITEMS_PER_THREAD = 16 };

static qk_winograd_plan plan_of(const qk_winograd_kernels *k, const qk_conv_args *args) {
    const qk_conv_geometry *geo = &args->geo;
    qk_winograd_plan plan;
    plan.blocking = blocking_of(k, geo);
    plan.tiles_w = tiles_along(geo->out_w, plan.blocking.form);
    plan.tiles_h = tiles_along(geo->out_h, plan.blocking.form);
    plan.v_stride = v_stride_of(k, geo);
    plan.segment_tiles = segment_tiles_of(k, geo, plan.blocking.form);
    // Bands as even as the segment allows: one segment each.
    const int64_t bands = image_bands_of(k, geo, plan.blocking.form);
    plan.band_rows = (int32_t)((plan.tiles_h + bands - 1) / bands);
    plan.parts = 1;
    if (plan.blocking.form == QK_WINOGRAD_F4 && args->threads > 1 && bands == 1 && args->batch < args->threads) {
        // F(4x4,3x3) on an image that is one band (14x14 layers): the members split the output channels, each
        // reading its part of the weights (2.25x F(2x2,3x3)'s bytes) rather than all of them for half the
        // tiles; each transforms the band's inputs (a few percent of its work).
        plan.parts = plan.blocking.tiles_per_group;
    } else if (args->threads > 1 && !even_row_split(&plan, args)) {
        if ((int64_t)plan.band_rows * plan.tiles_w <= plan.segment_tiles) {
            // No even split of the rows (RepVGG's 7-row layers on 2 threads): one item per channel tile, shared
            // by work (share_of), so that no member gets a whole band more. A member's consecutive items of one
            // band reuse its transformed inputs (winograd_share); only the band whose channel tiles two members
            // split is transformed twice.
            plan.parts = plan.blocking.tiles_per_group;
        } else {
            // Bands of several segments cannot keep their inputs: enough items that claiming evens out the
            // shares, each part transforming its band's inputs again (under 2% of its work at 16 parts).
            // At 4 items per thread B2's 14x14x640 layers (4 bands of 2, 2, 2 and 1 tile rows) left a member
            // waiting a whole item, 0.5-1 ms of their 4.3 (docs/performance.md, "Waits of big layers").
            const int64_t base = (int64_t)args->batch * ((plan.tiles_h + plan.band_rows - 1) / plan.band_rows) * geo->groups;
            while (base * plan.parts < QK_WINOGRAD_ITEMS_PER_THREAD * (int64_t)args->threads &&
                   plan.parts < plan.blocking.tiles_per_group)
                plan.parts++;
        }
    }
    plan.bands = (plan.tiles_h + plan.band_rows - 1) / plan.band_rows;
    plan.items = (int64_t)args->batch * plan.bands * geo->groups * plan.parts;
    return plan;
}

typedef struct qk_winograd_item {
    int32_t image, band, group, first_tile, end_tile;  // tiles: channel tiles of the group
} qk_winograd_item;

static qk_winograd_item locate(const qk_winograd_plan *plan, const qk_conv_geometry *geo, int64_t item) {
    qk_winograd_item it;
    const int32_t part = (int32_t)(item % plan->parts);
    item /= plan->parts;
    it.group = (int32_t)(item % geo->groups);
    item /= geo->groups;
    it.band = (int32_t)(item % plan->bands);
    it.image = (int32_t)(item / plan->bands);
    const int32_t tiles = plan->blocking.tiles_per_group;
    it.first_tile = (int32_t)((int64_t)part * tiles / plan->parts);
    it.end_tile = (int32_t)((int64_t)(part + 1) * tiles / plan->parts);
    return it;
}

static const uint8_t *tile_weights(const qk_winograd_plan *plan, const void *packed, int32_t group, int32_t tile) {
    const qk_winograd_blocking *b = &plan->blocking;
    return (const uint8_t *)packed + b->header_bytes +
           ((size_t)group * (size_t)b->blocks_per_group + (size_t)first_block_of(b, tile)) * b->block_bytes;
}

typedef struct qk_winograd_share_context {
    const qk_winograd_plan *plan;
    const qk_winograd_kernels *kernels;
    const qk_conv_geometry *geo;
} qk_winograd_share_context;

// Work of an item: its band's tiles times its part's blocks.
static int64_t item_work(const qk_winograd_plan *plan, const qk_conv_geometry *geo, int64_t item) {
    const qk_winograd_item it = locate(plan, geo, item);
    const int32_t first_row = it.band * plan->band_rows;
    const int32_t rows = plan->tiles_h - first_row < plan->band_rows ? plan->tiles_h - first_row : plan->band_rows;
    return (int64_t)rows * plan->tiles_w * (first_block_of(&plan->blocking, it.end_tile) - first_block_of(&plan->blocking, it.first_tile));
}

// The member's contiguous items, cut where the running work is nearest to its even share (items of equal work,
// the common case, split by count).
static void share_of(const void *context, const qk_team *member, int64_t *first, int64_t *end) {
    const qk_winograd_share_context *share = (const qk_winograd_share_context *)context;
    const qk_winograd_plan *plan = share->plan;
    const qk_winograd_blocking *b = &plan->blocking;
    const bool equal_items = plan->tiles_h % plan->band_rows == 0 && b->blocks_per_group % plan->parts == 0 &&
                             b->tiles_per_group % plan->parts == 0;
    if (member->size == 1 || equal_items) {
        qk_team_share(member, plan->items, first, end);
        return;
    }
    int64_t total = 0;
    for (int64_t item = 0; item < plan->items; item++) total += item_work(plan, share->geo, item);
    const int64_t targets[2] = {total * member->member / member->size, total * (member->member + 1) / member->size};
    int64_t bounds[2] = {0, plan->items};
    int64_t item = 0, done = 0;
    for (int side = 0; side < 2; side++) {
        while (item < plan->items && done < targets[side]) {
            const int64_t work = item_work(plan, share->geo, item);
            if (done + work > targets[side] && targets[side] - done < done + work - targets[side]) break;  // nearer without it
            done += work;
            item++;
        }
        bounds[side] = item;
    }
    *first = bounds[0];
    *end = bounds[1];
}

static void item_region(const void *context, int64_t item, qk_item_region *region) {
    const qk_winograd_share_context *share = (const qk_winograd_share_context *)context;
    const qk_winograd_plan *plan = share->plan;
    const qk_conv_geometry *geo = share->geo;
    const qk_winograd_item it = locate(plan, geo, item);
    const int32_t first_tile_row = it.band * plan->band_rows;
    const int32_t end_tile_row = first_tile_row + plan->band_rows < plan->tiles_h ? first_tile_row + plan->band_rows : plan->tiles_h;
    const int32_t side = tile_side_of(plan->blocking.form);
    region->image = it.image;
    region->first_row = side * first_tile_row;
    region->end_row = side * end_tile_row < geo->out_h ? side * end_tile_row : geo->out_h;
    const int32_t lanes = share->kernels->lanes, per_group = geo->out_per_group;
    int32_t end_channel = first_block_of(&plan->blocking, it.end_tile) * lanes;
    if (end_channel > per_group) end_channel = per_group;
    region->first_channel = it.group * per_group + first_block_of(&plan->blocking, it.first_tile) * lanes;
    region->end_channel = it.group * per_group + end_channel;
}

// The input pointers of tile (ty, tx), its 4x4 patch (F(2x2,3x3)) from (2 ty - 1, 2 tx - 1), 5x5 (stride 2) or
// 6x6 (F(4x4,3x3)) from (4 ty - 1, 4 tx - 1): the group's first channel of each input pixel, or the pad values.
static void tile_sources(const qk_conv_args *args, qk_winograd_form form, const uint8_t *image, int32_t group, int32_t ty,
                         int32_t tx, const uint8_t **src) {
    const qk_conv_geometry *geo = &args->geo;
    const size_t first_channel = (size_t)group * (size_t)geo->in_per_group;
    const int32_t side = patch_side_of(form), step = patch_step_of(form);
    for (int32_t r = 0; r < side; r++) {
        const int32_t iy = step * ty - 1 + r;
        for (int32_t c = 0; c < side; c++) {
            const int32_t ix = step * tx - 1 + c;
            src[side * r + c] = (uint32_t)iy < (uint32_t)geo->in_h && (uint32_t)ix < (uint32_t)geo->in_w
                                 ? image + ((size_t)iy * (size_t)geo->in_w + (size_t)ix) * (size_t)geo->in_c + first_channel
                                 : args->pad_value + first_channel;
        }
    }
}

// Weights of channel tile `tile` of a group and their bytes.
static const uint8_t *channel_tile_weights(const qk_winograd_plan *plan, const void *packed, int32_t group, int32_t tile,
                                           size_t *bytes) {
    const qk_winograd_blocking *b = &plan->blocking;
    *bytes = (size_t)(first_block_of(b, tile + 1) - first_block_of(b, tile)) * b->block_bytes;
    return tile_weights(plan, packed, group, tile);
}

// What an item fetches into L2 ahead of use (the blocked driver's plan, docs/performance.md "Winograd"): while
// a channel tile runs, the next one's weights; during its last channel tile, what runs after the item.
typedef struct qk_winograd_prefetch {
    bool every_band;           // the layer's weights outgrow L2 and the item is of the member's first image
    bool first_pass;           // the member's first band: its channel tiles come from L3 or DRAM the first time
    const uint8_t *after;      // after the item: the member's next item's first weights, or the next step's
    size_t after_bytes;
} qk_winograd_prefetch;

// Layers with more transformed weights than this stream them from L3 for every band (L2 holds the band's
// transformed inputs, QK_WINOGRAD_V_BYTES, beside them).
enum { QK_WINOGRAD_STREAMED_BYTES = 512 << 10 };

// The band whose transformed inputs the member's buffer holds whole (a band of one segment), so that its next
// item of that band (another part of the output channels) skips the input transform.
typedef struct qk_winograd_held {
    bool valid;
    int32_t image, band, group;
} qk_winograd_held;

static void run_item(const qk_winograd_kernels *k, const qk_conv_args *args, const qk_winograd_plan *plan,
                     const qk_winograd_item *it, int16_t *v, const qk_winograd_prefetch *fetch, qk_winograd_held *held) {
    const qk_conv_geometry *geo = &args->geo;
    const int32_t segment_tiles = plan->segment_tiles;
    const qk_winograd_blocking *b = &plan->blocking;
    const uint8_t *image = args->input + (size_t)it->image * geo->in_h * geo->in_w * geo->in_c;
    const int32_t tw = plan->tiles_w;
    const int32_t first_row = it->band * plan->band_rows;
    const int32_t end_row = first_row + plan->band_rows < plan->tiles_h ? first_row + plan->band_rows : plan->tiles_h;
    const size_t tile_values = (size_t)b->positions * (size_t)plan->v_stride;
    const qk_winograd_form form = b->form;
    const qk_winograd_input_fn input = form == QK_WINOGRAD_S2 ? k->input_s2 : form == QK_WINOGRAD_F4 ? k->input_f4 : k->input;
    const qk_winograd_tile_fn *tile_fns = form == QK_WINOGRAD_S2 ? k->tiles_s2 : form == QK_WINOGRAD_F4 ? k->tiles_f4 : k->tiles;
    qk_winograd_call call;
    call.args = args;
    call.v_stride = plan->v_stride;
    call.chunks = b->chunks;
    call.image = it->image;
    call.group = it->group;
    call.group_chunks = b->chunks;
    if (form == QK_WINOGRAD_F4) memcpy(&call.group_chunks, args->packed, sizeof call.group_chunks);
    const bool one_segment = (end_row - first_row) * tw <= segment_tiles;
    const bool reuse = one_segment && held->valid && held->image == it->image && held->band == it->band &&
                       held->group == it->group;
    held->valid = one_segment;
    held->image = it->image;
    held->band = it->band;
    held->group = it->group;
    for (int32_t segment = first_row * tw; segment < end_row * tw; segment += segment_tiles) {
        const int32_t segment_end = segment + segment_tiles < end_row * tw ? segment + segment_tiles : end_row * tw;
        for (int32_t i = segment; i < segment_end && !reuse; i++) {
            const uint8_t *src[QK_WINOGRAD_F4_POSITIONS];
            tile_sources(args, form, image, it->group, i / tw, i % tw, src);
            input(src, plan->v_stride, v + (size_t)(i - segment) * tile_values, plan->v_stride);
        }
        for (int32_t tile = it->first_tile; tile < it->end_tile; tile++) {
            call.first_block = first_block_of(b, tile);
            call.tile_blocks = first_block_of(b, tile + 1) - call.first_block;
            call.weights = tile_weights(plan, args->packed, it->group, tile);
            // The weights that run next: the item's next channel tile, its first one again for the next segment,
            // or what follows the item; spread over the segment's tiles.
            const uint8_t *next = NULL;
            size_t next_bytes = 0;
            if (tile + 1 < it->end_tile) {
                if (fetch->every_band || fetch->first_pass) next = channel_tile_weights(plan, args->packed, it->group, tile + 1, &next_bytes);
            } else if (segment_end < end_row * tw) {
                if (fetch->every_band) next = channel_tile_weights(plan, args->packed, it->group, it->first_tile, &next_bytes);
            } else {
                next = fetch->after;
                next_bytes = fetch->after_bytes;
            }
            const int32_t next_lines = next != NULL ? (int32_t)((next_bytes + 63) / 64) : 0;
            const int32_t lines_per_tile = (next_lines + (segment_end - segment) - 1) / (segment_end - segment);
            const qk_winograd_tile_fn *of_width = tile_fns + (call.tile_blocks - 1);
            int32_t widest = k->max_accumulators / call.tile_blocks;
            if (widest > k->max_tiles) widest = k->max_tiles;
            for (int32_t i = segment; i < segment_end;) {
                call.tile_y = i / tw;
                call.tile_x = i % tw;
                int32_t count = segment_end - i;
                if (count > tw - call.tile_x) count = tw - call.tile_x;
                if (count > widest) count = widest;
                call.v = v + (size_t)(i - segment) * tile_values;
                const int32_t first_line = (i - segment) * lines_per_tile;
                const int32_t lines = next_lines - first_line < count * lines_per_tile ? next_lines - first_line : count * lines_per_tile;
                call.prefetch = lines > 0 ? (const char *)next + (size_t)first_line * 64 : NULL;
                call.prefetch_lines = lines > 0 ? lines : 0;
                of_width[(count - 1) * k->max_blocks](&call);
                i += count;
            }
        }
    }
}

static void winograd_share(const qk_path_config *path, const qk_conv_args *caller_args, const qk_team *team) {
    const qk_winograd_kernels *k = path->winograd;
    const qk_conv_args layer = qk_conv_args_with_multiplier_bound(caller_args);
    const qk_conv_args *args = &layer;
    const qk_winograd_plan plan = plan_of(k, args);
    int16_t *v = args->scratch;  // winograd_scratch_bytes, as conv_scratch_bytes asked of every caller
    const qk_winograd_share_context context = {&plan, k, &args->geo};
    qk_item_claim claim;
    qk_claim_begin(&claim, team, &context, share_of, item_region);
    // The member's own share, which its prefetch plan follows (the claim starts with it). Layers whose weights
    // outgrow L2 fetch the next channel tile on every band of the member's first image, whose weights come
    // from DRAM; for later images they come from L3, where the prefetches slowed batch 8 by 4-5%.
    const int64_t first_item = claim.first, end_item = claim.end;
    const bool streamed = packed_size(k, &args->geo) > QK_WINOGRAD_STREAMED_BYTES;
    // The member's first pass over the weights: its items of the first item's band (one item, or one per
    // channel tile where the plan cuts them so).
    const qk_winograd_item first = locate(&plan, &args->geo, first_item < end_item ? first_item : 0);
    int64_t item;
    bool own;
    qk_winograd_held held = {false, 0, 0, 0};
    while (qk_claim_next(&claim, team, &item, &own)) {
        const qk_winograd_item it = locate(&plan, &args->geo, item);
        const bool first_band = it.image == first.image && it.band == first.band && it.group == first.group;
        qk_winograd_prefetch fetch = {streamed && it.image == first.image, own && first_band, NULL, 0};
        if (!own) {
            // Taken over from another member's share: that member planned the prefetches around it.
            fetch.every_band = false;
        } else if (item + 1 < end_item) {
            if (fetch.every_band || fetch.first_pass) {
                const qk_winograd_item next = locate(&plan, &args->geo, item + 1);
                fetch.after = channel_tile_weights(&plan, args->packed, next.group, next.first_tile, &fetch.after_bytes);
            }
        } else {
            fetch.after = args->prefetch_next;
            fetch.after_bytes = fetch.after != NULL ? args->prefetch_next_bytes : 0;
        }
        run_item(k, args, &plan, &it, v, &fetch, &held);
    }
}

// ---- The ops: Winograd where chosen, the blocked driver elsewhere ----

static size_t conv_packed_size(const qk_path_config *path, const qk_conv_geometry *geo) {
    if (qk_winograd_chosen(path, geo)) return packed_size(path->winograd, geo);
    return qk_conv_blocked_packed_size(path, geo);
}

static void conv_pack(const qk_path_config *path, const qk_conv_geometry *geo, const int8_t *weight_oihw, void *packed) {
    if (qk_winograd_chosen(path, geo)) {
        pack(path->winograd, geo, weight_oihw, packed);
        return;
    }
    qk_conv_blocked_pack(path, geo, weight_oihw, packed);
}

static void conv_unpack(const qk_path_config *path, const qk_conv_geometry *geo, const void *packed, int8_t *weight_oihw) {
    if (qk_winograd_chosen(path, geo)) {
        unpack(path->winograd, geo, packed, weight_oihw);
        return;
    }
    qk_conv_blocked_unpack(path, geo, packed, weight_oihw);
}

// Winograd's transform reads a whole layer's weights, so only the blocked layers pack in place.
static bool conv_pack_in_place(const qk_path_config *path, const qk_conv_geometry *geo, void *packed, size_t region_bytes) {
    return !qk_winograd_chosen(path, geo) && qk_conv_blocked_pack_in_place(path, geo, packed, region_bytes);
}

static void conv_share(const qk_path_config *path, const qk_conv_args *args, const qk_team *team) {
    if (qk_winograd_chosen(path, &args->geo)) {
        winograd_share(path, args, team);
        return;
    }
    qk_blocked_ops.conv_share(path, args, team);
}

// The transformed inputs' segment, whether or not the cost model would pick Winograd (the testing entry forces it).
static size_t winograd_scratch_bytes(const qk_path_config *path, const qk_conv_geometry *geo) {
    return (size_t)v_bytes_of(path->winograd, geo, form_of(path->winograd, geo));
}

static size_t conv_scratch_bytes(const qk_path_config *path, const qk_conv_geometry *geo) {
    return qk_winograd_chosen(path, geo) ? winograd_scratch_bytes(path, geo) : qk_conv_blocked_scratch_bytes(path, geo);
}

// The member's first channel tile's weights (the member transforms its first band meanwhile).
static void conv_first_weights(const qk_path_config *path, const qk_conv_args *args, const qk_team *team,
                               const uint8_t **weights, size_t *bytes) {
    if (!qk_winograd_chosen(path, &args->geo)) {
        qk_blocked_ops.conv_first_weights(path, args, team, weights, bytes);
        return;
    }
    const qk_winograd_plan plan = plan_of(path->winograd, args);
    const qk_winograd_share_context context = {&plan, path->winograd, &args->geo};
    int64_t first, end;
    share_of(&context, team, &first, &end);  // where the member's claim starts (winograd_share)
    *weights = NULL;
    *bytes = 0;
    if (first >= end) return;
    const qk_winograd_item it = locate(&plan, &args->geo, first);
    *weights = tile_weights(&plan, args->packed, it.group, it.first_tile);
    *bytes = (size_t)(first_block_of(&plan.blocking, it.first_tile + 1) - first_block_of(&plan.blocking, it.first_tile)) *
             plan.blocking.block_bytes;
}

const qk_path_ops qk_winograd_ops = {
    .conv_packed_size = conv_packed_size,
    .conv_pack = conv_pack,
    .conv_unpack = conv_unpack,
    .conv_pack_in_place = conv_pack_in_place,
    .conv_share = conv_share,
    .claims_items = true,
    .conv_first_weights = conv_first_weights,
    .conv_scratch_bytes = conv_scratch_bytes,
    .fc_packed_size = qk_fc_blocked_packed_size,
    .fc_pack = qk_fc_blocked_pack,
    .fc_unpack = qk_fc_blocked_unpack,
    .fc_pack_in_place = qk_fc_blocked_pack_in_place,
    .fc_share = qk_fc_blocked_share,
    .fc_first_weights = qk_fc_blocked_first_weights,
};

// ---- Public queries and the testing entry ----

static const char *algorithm_of(const qk_path_config *config, const qk_conv_shape *shape) {
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    if (config->ops == &qk_scalar_ops) return "direct";
    if (config->ops == &qk_winograd_ops && qk_winograd_chosen(config, &geo))
        return form_of(config->winograd, &geo) == QK_WINOGRAD_F4 ? "winograd-4x4" : "winograd";
    return geo.in_per_group <= 7 ? "direct-dense" : "direct";
}

static size_t winograd_bytes_of(const qk_path_config *config, const qk_conv_shape *shape) {
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    return qk_winograd_chosen(config, &geo) ? packed_size(config->winograd, &geo) : 0;
}

const char *qk_conv3x3_algorithm(qk_path path, const qk_conv_shape *shape) {
    if (!qk_conv_shape_is_valid(shape) || qk_path_config_of(path) == NULL) return NULL;
    const qk_path_config *config = qk_supported_path_config(path);
    return config != NULL ? algorithm_of(config, shape) : NULL;
}

size_t qk_conv3x3_winograd_bytes(qk_path path, const qk_conv_shape *shape) {
    if (!qk_conv_shape_is_valid(shape) || qk_path_config_of(path) == NULL) return 0;
    const qk_path_config *config = qk_supported_path_config(path);
    return config != NULL ? winograd_bytes_of(config, shape) : 0;
}

const char *qk_network_conv_algorithm(const qk_network *network, int32_t index) {
    if (network == NULL || index < 0 || index >= network->conv_count) return NULL;
    return algorithm_of(network->config, &network->convs[index].shape);
}

size_t qk_network_conv_packed_bytes(const qk_network *network, int32_t index) {
    if (network == NULL || index < 0 || index >= network->conv_count) return 0;
    const qk_conv_geometry geo = qk_conv_geometry_of(&network->convs[index].shape);
    return network->config->ops->conv_packed_size(network->config, &geo);
}

// Copies of each path's config with Winograd limited (qk_winograd_use), made by the first caller; the others
// wait for it (a few microseconds, once per process).
static qk_path_config limited_configs[QK_PATH_TEST_END][2];
static qk_winograd_kernels limited_kernels[QK_PATH_TEST_END];
static int limited_state;  // 0: not made, 1: being made, 2: made

static void make_limited_configs(void) {
    int expected = 0;
    if (__atomic_compare_exchange_n(&limited_state, &expected, 1, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        for (int path = 0; path < QK_PATH_TEST_END; path++) {
            const qk_path_config *config = qk_path_config_of((qk_path)path);
            if (config == NULL) continue;
            limited_configs[path][0] = *config;
            limited_configs[path][1] = *config;
            limited_configs[path][1].winograd = NULL;
            if (config->winograd != NULL) {
                limited_kernels[path] = *config->winograd;
                limited_kernels[path].tiles_f4 = NULL;
                limited_kernels[path].input_f4 = NULL;
                limited_configs[path][0].winograd = &limited_kernels[path];
            }
        }
        __atomic_store_n(&limited_state, 2, __ATOMIC_RELEASE);
    }
    while (__atomic_load_n(&limited_state, __ATOMIC_ACQUIRE) != 2) {
    }
}

const qk_path_config *qk_winograd_limited_config(qk_path path, const qk_path_config *config, qk_winograd_use use) {
    if (config == NULL || use == QK_WINOGRAD_USE_ANY || (unsigned)path >= QK_PATH_TEST_END) return config;
    make_limited_configs();
    return &limited_configs[path][use == QK_WINOGRAD_USE_NO_4X4 ? 0 : 1];
}

qk_status qk_testing_conv3x3_winograd(qk_path path, const qk_conv_shape *shape, int32_t batch, const int8_t *weight_oihw,
                                      const int32_t *bias, const float *multiplier, const uint8_t *pad_value,
                                      const uint8_t *input, uint8_t *output, int32_t threads, int8_t *unpacked_oihw) {
    if (qk_path_config_of(path) == NULL) return QK_ERROR_INVALID_ARGUMENT;
    const qk_path_config *config = qk_supported_path_config(path);
    if (config == NULL) return QK_ERROR_UNSUPPORTED_PATH;
    if (!qk_conv_shape_is_valid(shape) || weight_oihw == NULL || unpacked_oihw == NULL) return QK_ERROR_INVALID_ARGUMENT;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    if (!eligible(config, &geo)) return QK_ERROR_UNSUPPORTED_PATH;
    void *packed = aligned_alloc(64, qk_round_to_line(packed_size(config->winograd, &geo)));
    if (packed == NULL) return QK_ERROR_OUT_OF_MEMORY;
    pack(config->winograd, &geo, weight_oihw, packed);
    unpack(config->winograd, &geo, packed, unpacked_oihw);
    const qk_status status = qk_conv_run_team(config, shape, batch, packed, bias, multiplier, pad_value, input, output,
                                              threads, winograd_share, winograd_scratch_bytes);
    free(packed);
    return status;
}

int qk_testing_winograd_packing_matches(qk_path path, const qk_conv_shape *shape, const int8_t *weight_oihw) {
    const qk_path_config *config = qk_path_config_of(path);
    if (config == NULL || !qk_conv_shape_is_valid(shape) || weight_oihw == NULL) return -1;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    if (!eligible(config, &geo)) return -1;
    const qk_winograd_kernels *k = config->winograd;
    const qk_winograd_blocking b = blocking_of(k, &geo);
    const size_t size = packed_size(k, &geo);
    uint8_t *packed = malloc(size), *reference = calloc(1, size);
    int matches = -1;
    if (packed != NULL && reference != NULL) {
        pack(k, &geo, weight_oihw, packed);
        if (b.form == QK_WINOGRAD_F4) {
            const int32_t group_chunks = f4_group_chunks(k, &geo, weight_oihw);
            memcpy(reference, &group_chunks, sizeof group_chunks);
        }
        for (int32_t g = 0; g < geo.groups; g++)
            for (int32_t o = 0; o < geo.out_per_group; o++)
                for (int32_t c = 0; c < geo.in_per_group; c++) {
                    int16_t u[QK_WINOGRAD_F4_POSITIONS];
                    const int8_t *kernel = weight_oihw + ((size_t)(g * geo.out_per_group + o) * geo.in_per_group + c) * 9;
                    transform_of(b.form, kernel, u);
                    for (int32_t e = 0; e < b.positions; e++) memcpy(reference + weight_offset(k, &b, g, o, c, e), &u[e], sizeof u[e]);
                }
        matches = memcmp(packed, reference, size) == 0;
    }
    free(packed);
    free(reference);
    return matches;
}

void qk_testing_winograd_force_4x4(int mode) {
    atomic_store(&f4_forced, mode > 0 ? 1 : mode < 0 ? -1 : 0);
}

int qk_testing_path_has_winograd_4x4(qk_path path) {
    const qk_path_config *config = qk_path_config_of(path);
    return config != NULL && config->winograd != NULL && config->winograd->tiles_f4 != NULL;
}

size_t qk_network_winograd_bytes(const qk_network *network) {
    if (network == NULL) return 0;
    size_t bytes = 0;
    for (int32_t i = 0; i < network->conv_count; i++)
        if (network->convs[i].packed != NULL) bytes += winograd_bytes_of(network->config, &network->convs[i].shape);
    return bytes;
}
