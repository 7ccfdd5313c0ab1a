#ifndef QK_BLOCKED_H
#define QK_BLOCKED_H

#include "common/qk-path.h"

#include <string.h>

// The blocked layout and driver shared by the SIMD paths: packing, tiling and threading live here, and a
// path contributes only its microkernels and its packing geometry (common/qk-path.h).
//
// Output channels of each group are cut into blocks of `lanes`; up to `blocks_per_tile` consecutive blocks
// form a tile, the output channels one microkernel call produces. Input channels of a group are cut into
// chunks of `depth` (one dot-product step). Packed weights:
//   [group][tile][tap 0..8][chunk][block within tile][unit] then [block within tile][trailer]
// so one microkernel call streams its weights strictly sequentially. A unit holds lanes x depth weights in
// the path's own arrangement, zero where the output channel or the input channel does not exist: a zero
// weight makes the over-read input bytes of a partial chunk contribute exactly 0.
//
// Dense mode, for groups of few input channels (the 3-channel stem): 9 taps x 3 channels would take 9
// chunks of which a quarter is padding, and the per-tap setup would dominate. Instead the driver copies
// each output pixel's 3x3 window into one contiguous row (im2col, 9 * in_per_group bytes), and the
// weights are packed as a single "tap" whose chunks run over (tap, channel) pairs: 7 chunks for the stem.
typedef struct qk_conv_blocking {
    int32_t lanes;             // output channels per block
    int32_t depth;             // input values per chunk
    int32_t unit_bytes;
    size_t block_bytes;        // one block's units over all taps and chunks, and its trailer
    int32_t blocks_per_group;  // ceil(out_per_group / lanes)
    int32_t blocks_per_tile;   // the largest tile; see qk_tile_first_block
    int32_t pixels_per_tile;   // the widest pixel tile of a row
    int32_t tiles_per_group;
    int32_t taps;              // 9, or 1 in dense mode
    int32_t chunks;            // per tap: ceil(in_per_group / depth), or ceil(9 * in_per_group / depth) dense
} qk_conv_blocking;

// Tiles split a group's blocks as evenly as possible (64 channels: 2 + 2 blocks, not 3 + 1; 256: 3, 3, 2,
// 3, 2, 3): a 1-block tile feeds each input broadcast to a single dot product and is bound by the loads.
static inline int32_t qk_tile_first_block(const qk_conv_blocking *b, int32_t tile) {
    return (int32_t)((int64_t)tile * b->blocks_per_group / b->tiles_per_group);
}

static inline int32_t qk_tile_blocks(const qk_conv_blocking *b, int32_t tile) {
    return qk_tile_first_block(b, tile + 1) - qk_tile_first_block(b, tile);
}

// Start of tile `tile` of group `group` inside the packed weights.
static inline const uint8_t *qk_conv_tile_weights(const void *packed, const qk_conv_blocking *b,
                                                  int32_t group, int32_t tile) {
    const size_t first_block = (size_t)group * (size_t)b->blocks_per_group + (size_t)qk_tile_first_block(b, tile);
    return (const uint8_t *)packed + first_block * b->block_bytes;
}

// Largest microkernel any path uses, which sizes the driver's buffer of partial sums.
enum { QK_MAX_TILE_PIXELS = 8, QK_MAX_TILE_LANES = 64 };

// One microkernel call: `pixels` consecutive output pixels of one row (or, with raster tiles, running on into
// the next rows), starting at (out_y, out_x), times the output channels of tile `tile` of group `group`, over
// taps [first_tap, first_tap + taps).
// partial == NULL: all taps of the packing (9, or the one dense-mode tap) at once, then store the
// requantized bytes. Otherwise the call is one slice: it starts afresh (first_tap == 0) or from the sums in
// partial[pixel][lane] (lanes counted over a full tile), and stores either the sums back there or, on the
// last slice, the requantized bytes.
// In dense mode im2col points at the first pixel's window row, the next pixel's is im2col_stride bytes
// further; on the paths that widen (qk_conv_microkernels.widen) the rows are int16, widened by the driver.
// Each tap also prefetches `prefetch_lines_per_tap` cache lines into L2, from `prefetch` on: weights the
// thread needs in its next work item, streamed while this one computes.
// `weights` and `first_block` locate channel tile `tile` (qk_conv_tile_weights, qk_tile_first_block); the
// driver finds them once per channel tile, since divisions per call cost the stem's small calls much.
typedef struct qk_conv_tile {
    int32_t image, out_y, out_x, pixels, group, tile, first_block;
    const uint8_t *weights;
    int32_t first_tap, taps;
    int32_t *partial;
    const uint8_t *im2col;
    int32_t im2col_stride;
    const uint8_t *prefetch;
    int32_t prefetch_lines_per_tap;
    // Widened mode (qk_conv_microkernels.widen; not in dense mode, except for the stem3 microkernels): the
    // item's input rows as int16, with the padding around them, written by the driver once per work item.
    // Row r of the buffer holds input row wide_first_row + r (pad values above and below the image), as
    // in_w + 2 pixels of in_c values each, from column -1 (pad values) to in_w (pad values). NULL otherwise.
    const int16_t *wide;
    int32_t wide_first_row;
    // Offsets of a run's chunks (qk_conv_tile_run_sources), and whether runs may span whole windows; NULL
    // and 0 but for the microkernels that read runs (raster_tiles without widen).
    const int32_t *run_offsets;
    int32_t window_runs;
    // Framed mode (runs only): the tile's image copied by the driver with a frame of pad values around it,
    // in_h + 2 rows of in_w + 2 pixels, so that every tile's taps run as whole windows, border tiles too;
    // run_offsets then step (in_w + 2) * in_c bytes from one kernel row to the next. NULL otherwise.
    const uint8_t *framed;
} qk_conv_tile;

// With one group whose channels fill whole chunks, the taps of one kernel row read adjacent input pixels, so
// their inputs form one contiguous run (3 * in_c values) in the order of their packed weights.
static inline int qk_conv_taps_run_on(const qk_conv_geometry *geo, const qk_conv_blocking *b) {
    return geo->groups == 1 && b->chunks * b->depth == geo->in_c;
}

// Widened mode: where the taps run on (qk_conv_taps_run_on), a microkernel can run a kernel row's taps as one
// loop: fewer loop exits and pointer setups, which at 48 channels cost as much as a tenth of the
// multiply-adds. The run that starts at `tap` ends before the returned tap (at most end_tap).
static inline int32_t qk_conv_wide_run_end(const qk_conv_geometry *geo, const qk_conv_blocking *b, int32_t tap,
                                           int32_t end_tap) {
    if (!qk_conv_taps_run_on(geo, b)) return tap + 1;
    const int32_t row_end = tap - tap % 3 + 3;
    return row_end < end_tap ? row_end : end_tap;
}

// Widened mode: where tap `tap` of the tile's first pixel reads its group's channels (qk_conv_tile.wide);
// the tile's next pixels are stride * in_c values further. No borders to check: the buffer holds them.
static inline const int16_t *qk_conv_wide_source(const qk_conv_args *args, const qk_conv_tile *tile, int32_t tap) {
    const qk_conv_geometry *geo = &args->geo;
    const int32_t row = tile->out_y * geo->stride + tap / 3 - 1 - tile->wide_first_row;
    const int32_t column = tile->out_x * geo->stride + tap % 3;  // ix + 1
    return tile->wide + ((size_t)row * (size_t)(geo->in_w + 2) + (size_t)column) * (size_t)geo->in_c +
           (size_t)tile->group * (size_t)geo->in_per_group;
}

// x[1..pixels) of a raster tile across rows, from x[0]; out of line, as the slow paths of the sources below
// are, so that each microkernel's copy of its callers stays small (blocked-conv.c).
void qk_conv_wide_sources_across_rows(const qk_conv_args *args, const qk_conv_tile *tile, int pixels,
                                      const int16_t **x);
// qk_conv_tile_sources for one tap of a tile in one row, or pixel by pixel for a raster tile across rows.
void qk_conv_tile_tap_sources(const qk_conv_args *args, const qk_conv_tile *tile, const uint8_t *image,
                              int32_t first_channel, int32_t tap, int pixels, const uint8_t **src);

// The same for each of the tile's `pixels` pixels; on paths with raster tiles (raster_tiles, a constant of
// the caller), a tile goes on at the next row's first pixel, still inside the band's rows.
static inline __attribute__((always_inline)) void qk_conv_wide_sources(const qk_conv_args *args, const qk_conv_tile *tile,
                                                                       int32_t tap, int pixels, const int16_t **x,
                                                                       const int raster_tiles) {
    const qk_conv_geometry *geo = &args->geo;
    const size_t step = (size_t)geo->stride * (size_t)geo->in_c;
    x[0] = qk_conv_wide_source(args, tile, tap);
    if (raster_tiles && tile->out_x + pixels > geo->out_w) {
        qk_conv_wide_sources_across_rows(args, tile, pixels, x);
        return;
    }
    for (int p = 1; p < pixels; p++) x[p] = x[p - 1] + step;
}

// stem3 microkernels (qk_conv_microkernels.stem3) broadcast the dense packing's int16 pairs straight from
// the widened rows. Window values 0..8 are kernel row 0's, 9..17 row 1's, 18..26 row 2's (value = tap * 3 +
// channel), so chunk c holds the pairs at r0 + pair_offsets[c][0] and [1] of the pixel's kernel row 0 (r0),
// but for chunk 2, whose first pair (r0[8], r1[0]) spans two rows: the kernels blend a broadcast at r0 + 8
// with one at r1 - 1 (row 0's end, inside the buffer). Chunk 6's last value, r2[9], has a zero weight; it
// is the next pixel's, the pad column's or (odd widths) the scratch's slack (qk_conv_blocked_scratch_bytes).
enum { QK_STEM3_CHUNKS = 7, QK_STEM3_STRADDLING_CHUNK = 2 };

// What a stem3 call needs besides its weights, bias and multipliers: where its row's pixels read and write,
// and its prefetches: the row below's output lines (the stem writes one byte per 27 multiply-adds into lines
// nothing has touched in this run; loading them a row early pays, docs/performance.md, "Stem output
// prefetch") and the row's share of the next item's weights, spread over its pixel tiles.
typedef struct qk_stem3_row {
    const int16_t *r0;  // the first pixel's kernel row 0; the next pixels' `step` values further
    size_t step, row_values;
    size_t pair_offsets[QK_STEM3_CHUNKS][2];
    uint8_t *out;  // the first pixel's output from the tile's first channel; the next pixels' out_c further
    size_t out_c;
    const char *below, *next;
    int32_t next_lines, lines_per_tile;
} qk_stem3_row;

static inline void qk_stem3_row_of(const qk_conv_args *args, const qk_conv_tile *tile, int32_t lanes,
                                   int32_t tile_pixels, qk_stem3_row *row) {
    const qk_conv_geometry *geo = &args->geo;
    row->r0 = qk_conv_wide_source(args, tile, 0);
    row->step = (size_t)geo->stride * 3;
    row->row_values = (size_t)(geo->in_w + 2) * 3;
    const size_t r1 = row->row_values, r2 = 2 * row->row_values;
    const size_t offsets[QK_STEM3_CHUNKS][2] = {{0, 2}, {4, 6}, {8, r1 + 1}, {r1 + 3, r1 + 5}, {r1 + 7, r2}, {r2 + 2, r2 + 4}, {r2 + 6, r2 + 8}};
    memcpy(row->pair_offsets, offsets, sizeof offsets);
    row->out_c = (size_t)geo->out_c;
    row->out = args->output + (((size_t)tile->image * geo->out_h + tile->out_y) * geo->out_w + tile->out_x) * row->out_c +
               (size_t)tile->first_block * (size_t)lanes;
    row->below = tile->first_block == 0 && tile->out_y + 1 < geo->out_h ? (const char *)row->out + geo->out_w * row->out_c
                                                                        : NULL;
    row->next = (const char *)tile->prefetch;
    row->next_lines = row->next != NULL ? tile->prefetch_lines_per_tap : 0;
    const int32_t pixel_tiles = (tile->pixels + tile_pixels - 1) / tile_pixels;
    row->lines_per_tile = (row->next_lines + pixel_tiles - 1) / pixel_tiles;
}

// The prefetches that go with the pixel tile from pixel p on (`pixels` of them).
static inline void qk_stem3_prefetch_tile(qk_stem3_row *row, int32_t p, int32_t pixels) {
    for (int32_t i = 0; i < row->lines_per_tile && row->next_lines > 0; i++, row->next_lines--, row->next += 64)
        __builtin_prefetch(row->next, 0, 2);  // into L2 (prefetcht1)
    if (row->below != NULL)
        for (size_t offset = 0; offset < (size_t)pixels * row->out_c; offset += 64)
            __builtin_prefetch(row->below + (size_t)p * row->out_c + offset, 0, 3);
}

// The row's weight prefetches not issued yet.
static inline void qk_stem3_prefetch_rest(qk_stem3_row *row) {
    for (; row->next_lines > 0; row->next_lines--, row->next += 64) __builtin_prefetch(row->next, 0, 2);
}

// On the paths that widen: x[p], the int16 inputs of pixel p for the taps from `tap` on, of the widened band or
// (dense mode) of the pixel's window row; returns the end of their run (qk_conv_wide_run_end; dense mode's one
// tap). raster_tiles: the path's qk_conv_microkernels.raster_tiles, as a constant.
static inline __attribute__((always_inline)) int32_t qk_conv_int16_sources(const qk_conv_args *args,
                                                                           const qk_conv_blocking *b,
                                                                           const qk_conv_tile *tile, int32_t tap,
                                                                           int32_t end_tap, int pixels,
                                                                           const int16_t **x, const int raster_tiles) {
    if (tile->im2col != NULL) {
        for (int p = 0; p < pixels; p++) x[p] = (const int16_t *)(tile->im2col + (size_t)p * (size_t)tile->im2col_stride);
        return end_tap;
    }
    qk_conv_wide_sources(args, tile, tap, pixels, x, raster_tiles);
    return qk_conv_wide_run_end(&args->geo, b, tap, end_tap);
}

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

// Runs of taps, for the byte-input microkernels that read them (raster_tiles without widen: avxvnni). With
// one group whose channels fill whole chunks, a pixel's three taps of one kernel row read adjacent input
// pixels, 3 * in_c contiguous bytes in the order of their packed weights, and its whole 3x3 window is three
// such rows, in_w * in_c bytes apart. Where every pixel of a tile has its neighbours inside the image, a
// microkernel runs a kernel row's taps, or all nine, as one loop: chunk k of a run reads each pixel's source
// + run_offsets[k] (qk_conv_build_run_offsets). Each loop exit costs a mispredicted branch and each run a
// setup, which at 48 channels took a sixth of a 4 x 3 ymm tile's time (docs/performance.md, "AVX-VNNI
// measured"). Elsewhere (border tiles, rows in the padding, slices that cut a kernel row, dense mode) a run
// is one tap.
enum { QK_RUN_OFFSETS = 6144 };
_Static_assert(QK_RUN_OFFSETS >= 3 * (QK_MAX_CHANNELS / 4), "a kernel row's run of 4-deep chunks always fits");

// run_offsets[k] for a layer: k * depth along a kernel row's taps, and the next rows row_bytes on (in_w * in_c,
// or (in_w + 2) * in_c in framed mode); returns whether whole windows fit the table.
static inline int qk_conv_build_run_offsets(const qk_conv_blocking *b, int32_t row_bytes, int32_t *run_offsets) {
    const int32_t row_chunks = 3 * b->chunks;
    const int32_t count = 3 * row_chunks < QK_RUN_OFFSETS ? 3 * row_chunks : QK_RUN_OFFSETS;
    for (int32_t k = 0, row = 0, in_row = 0; k < count; k++) {
        run_offsets[k] = row * row_bytes + in_row * b->depth;
        if (++in_row == row_chunks) in_row = 0, row++;
    }
    return 3 * row_chunks <= QK_RUN_OFFSETS;
}

// Framed mode: every pixel's window lies inside the framed image, so a run goes on to the last whole kernel
// row before end_tap (or to the end of tap's own row, for a slice that cuts one), the tile's pixels in raster
// order from (out_y, out_x).
static inline __attribute__((always_inline)) int32_t qk_conv_framed_run_sources(const qk_conv_geometry *geo,
                                                                                const qk_conv_tile *tile, int32_t tap,
                                                                                int32_t end_tap, int pixels,
                                                                                const uint8_t **src) {
    const int32_t kx = tap % 3;
    const int32_t run_end = kx == 0 && end_tap - tap >= 3 ? tap + (end_tap - tap) / 3 * 3
                                                          : (tap - kx + 3 < end_tap ? tap - kx + 3 : end_tap);
    const size_t in_c = (size_t)geo->in_c, framed_row = (size_t)(geo->in_w + 2) * in_c;
    const size_t step = (size_t)geo->stride * in_c, row_step = (size_t)geo->stride * framed_row;
    const uint8_t *row = tile->framed + (size_t)tile->out_y * row_step + (size_t)(tap / 3) * framed_row + (size_t)kx * in_c;
    for (int p = 0, x = tile->out_x; p < pixels; p++, x++) {
        if (x == geo->out_w) x = 0, row += row_step;
        src[p] = row + (size_t)x * step;
    }
    return run_end;
}

// src[p] for the taps from `tap` on, and the end of their run (at most end_tap): all nine taps where
// tile->window_runs allows, a kernel row's three, or one (out of line: border tiles, and raster tiles across
// rows, pixel by pixel).
static inline __attribute__((always_inline)) int32_t qk_conv_tile_run_sources(const qk_conv_args *args,
                                                                              const qk_conv_blocking *b,
                                                                              const qk_conv_tile *tile,
                                                                              const uint8_t *image, int32_t first_channel,
                                                                              int32_t tap, int32_t end_tap, int pixels,
                                                                              const uint8_t **src) {
    const qk_conv_geometry *geo = &args->geo;
    if (tile->im2col != NULL) {
        for (int p = 0; p < pixels; p++) src[p] = tile->im2col + p * tile->im2col_stride;
        return tap + 1;
    }
    if (tile->framed != NULL) return qk_conv_framed_run_sources(geo, tile, tap, end_tap, pixels, src);
    if (tile->out_x + pixels <= geo->out_w && tap % 3 == 0 && tap + 3 <= end_tap && qk_conv_taps_run_on(geo, b)) {
        const int32_t iy = tile->out_y * geo->stride + tap / 3 - 1;
        const int32_t first_ix = tile->out_x * geo->stride - 1;
        const int32_t last_ix = first_ix + (pixels - 1) * geo->stride + 2;
        if ((uint32_t)iy < (uint32_t)geo->in_h && first_ix >= 0 && last_ix < geo->in_w) {
            const uint8_t *first = image + ((size_t)iy * (size_t)geo->in_w + (size_t)first_ix) * (size_t)geo->in_c;
            const size_t step = (size_t)geo->stride * (size_t)geo->in_c;
            for (int p = 0; p < pixels; p++) src[p] = first + (size_t)p * step;
            return tile->window_runs && tap == 0 && end_tap == 9 && iy + 2 < geo->in_h ? 9 : tap + 3;
        }
    }
    qk_conv_tile_tap_sources(args, tile, image, first_channel, tap, pixels, src);
    return tap + 1;
}

// The tiling of a layer for a path (blocked-conv.c), and the bytes its packed weights take.
qk_conv_blocking qk_conv_blocking_of(const qk_conv_geometry *geo, const qk_path_config *path);
size_t qk_conv_blocked_size(const qk_conv_blocking *blocking, const qk_conv_geometry *geo);
// Bytes of scratch (qk_conv_args.scratch) a thread needs for the layer: its widened input rows, 0 when the
// path does not widen or the layer runs in dense mode.
size_t qk_conv_blocked_scratch_bytes(const qk_path_config *path, const qk_conv_geometry *geo);
// The caller's args with multipliers_below_one set: with every multiplier below 1, |t| < 2^31 and the
// kernels may leave the clamping to the saturating packs.
qk_conv_args qk_conv_args_with_multiplier_bound(const qk_conv_args *caller_args);

// The operations of qk_blocked_ops (common/qk-path.h).
size_t qk_conv_blocked_packed_size(const qk_path_config *path, const qk_conv_geometry *geo);
void qk_conv_blocked_pack(const qk_path_config *path, const qk_conv_geometry *geo, const int8_t *weight_oihw,
                          void *packed);
void qk_conv_blocked_unpack(const qk_path_config *path, const qk_conv_geometry *geo, const void *packed,
                            int8_t *weight_oihw);
bool qk_conv_blocked_pack_in_place(const qk_path_config *path, const qk_conv_geometry *geo, void *packed,
                                   size_t region_bytes);
// The units of the fc head's weights: the path's fc_packing, or where it sets none, the convs' packing.
static inline const qk_pack_geometry *qk_fc_packing(const qk_path_config *path) {
    return path->fc_packing.unit_bytes > 0 ? &path->fc_packing : &path->packing;
}
// One fc block's units and trailer.
size_t qk_fc_blocked_block_bytes(const qk_path_config *path, int32_t in_c);
size_t qk_fc_blocked_packed_size(const qk_path_config *path, int32_t in_c, int32_t out_c);
void qk_fc_blocked_pack(const qk_path_config *path, int32_t in_c, int32_t out_c, const int8_t *weight, void *packed);
void qk_fc_blocked_unpack(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                          int8_t *weight);
bool qk_fc_blocked_pack_in_place(const qk_path_config *path, int32_t in_c, int32_t out_c, void *packed,
                                 size_t region_bytes);
void qk_fc_blocked_share(const qk_path_config *path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
                         const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits,
                         const qk_team *team);
void qk_fc_blocked_first_weights(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                                 const qk_team *team, const uint8_t **weights, size_t *bytes);

#endif  // QK_BLOCKED_H
