// The blocked conv driver: tile shapes, work items and their share among threads, dense mode and tap
// slices (the layout is in blocked.h); the path contributes its microkernels and costs.
#include "driver/blocked.h"
#include "network/team-sync.h"

#include <string.h>

// Up to 7 channels per group the window row fits 64 bytes, and the 8-byte copies that build it (see
// build_window_rows) initialize every byte of it.
enum { QK_DENSE_MAX_CHANNELS = 7, QK_DENSE_ROW_BYTES = 64 };
_Static_assert((9 * QK_DENSE_MAX_CHANNELS + QK_MAX_PACK_DEPTH - 1) / QK_MAX_PACK_DEPTH * QK_MAX_PACK_DEPTH <=
                   QK_DENSE_ROW_BYTES,
               "a window row rounded up to whole chunks fits its 64 bytes");

static int uses_dense_mode(const qk_conv_geometry *geo) {
    return geo->in_per_group <= QK_DENSE_MAX_CHANNELS;
}

static int uses_raster_tiles(const qk_conv_geometry *geo, const qk_path_config *path) {
    return path->conv.raster_tiles && !uses_dense_mode(geo);
}

// A row of `out_w` pixels cut into tiles of at most `pixels_per_tile` as evenly as possible (see
// place_row_tile).
static void split_row(int32_t out_w, int32_t pixels_per_tile, int32_t *row_tiles, int32_t *base_pixels,
                      int32_t *wider_tiles) {
    *row_tiles = (out_w + pixels_per_tile - 1) / pixels_per_tile;
    *base_pixels = out_w / *row_tiles;
    *wider_tiles = out_w % *row_tiles;
}

// Estimated time of one input chunk step of a pixels x blocks tile, in hundredths of a vpdpbusd slot: the
// dot products, plus the loads (one per block for the weights, one broadcast per pixel), or, when the
// tile's weights stream from L2, the time L2 takes to deliver them, whichever is longer.
static int64_t step_cost(const qk_conv_costs *costs, int32_t pixels, int32_t blocks, int streamed) {
    const int64_t compute = (int64_t)pixels * blocks * 100 + (int64_t)costs->load_cost * (pixels + blocks);
    const int64_t stream = streamed ? (int64_t)blocks * costs->streamed_block_cost : 0;
    return compute > stream ? compute : stream;
}

// The tile shape is chosen per layer. More blocks per tile means fewer loads per dot product, but fewer
// pixels, which costs where a row splits badly into tiles and where the weights stream from L2 once per
// pixel tile (docs/performance.md, "Tile shape per layer"). Paths that set no costs keep the widest tile,
// at the most pixels.
qk_conv_blocking qk_conv_blocking_of(const qk_conv_geometry *geo, const qk_path_config *path) {
    const qk_conv_microkernels *kernels = &path->conv;
    const int32_t lanes = path->packing.lanes, depth = path->packing.depth;
    qk_conv_blocking b;
    b.lanes = lanes;
    b.depth = depth;
    b.unit_bytes = path->packing.unit_bytes;
    b.blocks_per_group = (geo->out_per_group + lanes - 1) / lanes;
    if (uses_dense_mode(geo)) {
        b.taps = 1;
        b.chunks = (9 * geo->in_per_group + depth - 1) / depth;
    } else {
        b.taps = 9;
        b.chunks = (geo->in_per_group + depth - 1) / depth;
    }
    const size_t block_weight_bytes = (size_t)b.taps * (size_t)b.chunks * (size_t)b.unit_bytes;
    b.block_bytes = block_weight_bytes + (size_t)path->packing.trailer_bytes;
    int64_t best_cost = INT64_MAX;
    for (int32_t blocks_per_tile = kernels->max_blocks < b.blocks_per_group ? kernels->max_blocks : b.blocks_per_group;
         blocks_per_tile >= 1; blocks_per_tile--) {
        const int32_t tiles = (b.blocks_per_group + blocks_per_tile - 1) / blocks_per_tile;
        if ((b.blocks_per_group + tiles - 1) / tiles != blocks_per_tile) continue;  // the even split is narrower
        int32_t pixels_per_tile = kernels->max_accumulators / blocks_per_tile;
        if (pixels_per_tile > kernels->max_pixels) pixels_per_tile = kernels->max_pixels;
        // Raster tiles (qk_conv_microkernels.raster_tiles) split whole bands, costed as the whole image.
        const int32_t split_pixels = uses_raster_tiles(geo, path) ? geo->out_h * geo->out_w : geo->out_w;
        int32_t row_tiles, base_pixels, wider_tiles;
        split_row(split_pixels, pixels_per_tile, &row_tiles, &base_pixels, &wider_tiles);
        // The even split gives `full_tiles` tiles of blocks_per_tile blocks and the rest one block fewer.
        const int32_t full_tiles = b.blocks_per_group - tiles * (blocks_per_tile - 1);
        int64_t cost = 0;
        for (int32_t blocks = blocks_per_tile - 1; blocks <= blocks_per_tile; blocks++) {
            const int32_t count = blocks == blocks_per_tile ? full_tiles : tiles - full_tiles;
            if (count == 0) continue;
            const int streamed = (size_t)blocks * block_weight_bytes > path->costs.l1_weight_bytes;
            cost += count * (wider_tiles * step_cost(&path->costs, base_pixels + 1, blocks, streamed) +
                             (row_tiles - wider_tiles) * step_cost(&path->costs, base_pixels, blocks, streamed));
        }
        if (cost < best_cost) {
            best_cost = cost;
            b.tiles_per_group = tiles;
            b.blocks_per_tile = blocks_per_tile;
            b.pixels_per_tile = pixels_per_tile;
        }
    }
    return b;
}

// Pixel tiles of a row are as even as possible (e.g. 14 -> 7 + 7, not 8 + 6), so rows whose width is a
// multiple of 7 (every RepVGG width at 224 px) run only full-size microkernels.
//
// Every pixel tile streams its channel tile's weights once (9 taps x 48 chunks x 192 bytes = 83 KB at 192
// input channels). When they outgrow the path's budget (a cache level), the taps are cut into slices whose
// weights fit, and each slice visits all pixel tiles of a segment (up to QK_SEGMENT_TILES tiles, possibly
// over several rows), carrying the int32 sums between slices in a small per-thread buffer. The sums are
// exact integers, so slicing cannot change a result.
enum { QK_SEGMENT_TILES = 8, QK_SEGMENT_PIXELS = QK_SEGMENT_TILES * QK_MAX_TILE_PIXELS };
// Widened layers whose weights stream from L3 (QK_STREAMED_LAYER_BYTES) take segments, and bands, twice as
// long: the weights then stream once per segment, and RepVGG's 7x7 last layers (2 pixel tiles a row on
// avx2) become one segment per image instead of two (docs/performance.md, "Streamed layers").
enum { QK_STREAMED_SEGMENT_TILES = 2 * QK_SEGMENT_TILES, QK_MAX_SEGMENT_PIXELS = QK_STREAMED_SEGMENT_TILES * QK_MAX_TILE_PIXELS };
// Widened mode: layers whose weights exceed this stream them from L3 for every band, so each channel tile
// fetches the next one's into L2 while it runs; smaller ones stay in L2 after the first band.
enum { QK_STREAMED_LAYER_BYTES = 512 << 10 };

// Dense mode: the 3x3 windows of `pixels` output pixels from out_x on, each as one row of
// QK_DENSE_ROW_BYTES. On the border every tap is an 8-byte copy at offset tap * in_per_group, in
// increasing order, so each copy's excess is overwritten by the next one and the last reaches the end of
// the row (8 * ipg + 8 >= the row's rounded-up length for ipg <= 7). Inside the image, with one group, the
// three taps of a window row are adjacent in memory and one 32-byte copy per kernel row does (6 * ipg +
// 32 >= the row's length). Sources may be read up to 32 bytes past a pixel: covered by QK_EXTRA_BYTES
// after the input and the pad values.
enum { QK_WINDOW_COPY_SLACK = 32 };
// Up to 4 channels a kernel row (3 * ipg bytes) fits 16 bytes and 6 * ipg + 16 still covers the row's
// rounded-up length (36 bytes at ipg 4, 28 at 3), so one 16-byte move per kernel row does: half the
// stores of the 32-byte copies, which were most of the window cost at 3 channels.
enum { QK_NARROW_COPY_MAX_CHANNELS = 4, QK_NARROW_COPY_BYTES = 16 };
_Static_assert(6 * QK_NARROW_COPY_MAX_CHANNELS + QK_NARROW_COPY_BYTES >=
                   (9 * QK_NARROW_COPY_MAX_CHANNELS + QK_MAX_PACK_DEPTH - 1) / QK_MAX_PACK_DEPTH * QK_MAX_PACK_DEPTH,
               "narrow copies must reach the end of the window row");

// Copies of `n` input bytes into a window row, as bytes or, on the paths that widen (avx2, avx512bw), as
// int16 zero-extended through generic vectors (SSE2 unpacks here), so the window rows need no second
// widening pass: that pass and the byte rows' stores were about 3% of the stem (docs/performance.md).
typedef uint8_t qk_bytes8 __attribute__((vector_size(8)));
typedef int16_t qk_words8 __attribute__((vector_size(16)));

static inline __attribute__((always_inline)) void window_copy(void *row, size_t at, const uint8_t *src, int n, int wide) {
    if (wide) {
        // The copy's whole vectors are stored after they are converted; successive copies into one row
        // overlap, and each one's excess is overwritten by the next.
        qk_words8 words[QK_WINDOW_COPY_SLACK / 8];
        for (int i = 0; i < n / 8; i++) {
            qk_bytes8 bytes;
            memcpy(&bytes, src + 8 * i, sizeof bytes);
            words[i] = __builtin_convertvector(bytes, qk_words8);
        }
        memcpy((int16_t *)row + at, words, (size_t)n * sizeof(int16_t));
    } else {
        memcpy((uint8_t *)row + at, src, (size_t)n);
    }
}

static inline __attribute__((always_inline)) void build_window_rows_as(const qk_conv_args *args, const qk_conv_tile *tile,
                                                                       int32_t pixels, void *rows, int wide) {
    const qk_conv_geometry *geo = &args->geo;
    const uint8_t *image = args->input + (size_t)tile->image * geo->in_h * geo->in_w * geo->in_c;
    const int32_t ipg = geo->in_per_group, first_channel = tile->group * ipg, stride = geo->stride;
    const int32_t top = tile->out_y * stride - 1;
    // Pixels [first_inside, end_inside) have their whole window inside the image; found once per tile
    // rather than tested per pixel, so the interior loop is only the three copies (a third of the stem's
    // time went into building windows).
    int32_t first_inside = pixels, end_inside = pixels;
    if (geo->groups == 1 && top >= 0 && top + 2 < geo->in_h) {
        first_inside = tile->out_x * stride - 1 >= 0 ? 0 : 1;
        const int32_t last_inside_x = (geo->in_w - 3 + 1) / stride;  // largest x with x * stride + 1 < in_w
        end_inside = last_inside_x + 1 - tile->out_x;
        if (end_inside > pixels) end_inside = pixels;
        if (end_inside < first_inside) end_inside = first_inside;
    }
    const size_t row_stride = (size_t)geo->in_w * (size_t)geo->in_c, pixel_step = (size_t)stride * (size_t)geo->in_c;
    for (int32_t p = 0; p < pixels; p++) {
        if (p == first_inside) {
            const uint8_t *src = image + ((size_t)top * (size_t)geo->in_w +
                                          (size_t)((tile->out_x + p) * stride - 1)) * (size_t)geo->in_c;
            size_t row = (size_t)p * QK_DENSE_ROW_BYTES;
            if (ipg <= QK_NARROW_COPY_MAX_CHANNELS) {
                for (; p < end_inside; p++, src += pixel_step, row += QK_DENSE_ROW_BYTES) {
                    window_copy(rows, row, src, QK_NARROW_COPY_BYTES, wide);
                    window_copy(rows, row + 3 * (size_t)ipg, src + row_stride, QK_NARROW_COPY_BYTES, wide);
                    window_copy(rows, row + 6 * (size_t)ipg, src + 2 * row_stride, QK_NARROW_COPY_BYTES, wide);
                }
            } else {
                for (; p < end_inside; p++, src += pixel_step, row += QK_DENSE_ROW_BYTES) {
                    window_copy(rows, row, src, QK_WINDOW_COPY_SLACK, wide);
                    window_copy(rows, row + 3 * (size_t)ipg, src + row_stride, QK_WINDOW_COPY_SLACK, wide);
                    window_copy(rows, row + 6 * (size_t)ipg, src + 2 * row_stride, QK_WINDOW_COPY_SLACK, wide);
                }
            }
            if (p >= pixels) break;
        }
        const size_t row = (size_t)p * QK_DENSE_ROW_BYTES;
        for (int32_t tap = 0; tap < 9; tap++) {
            const uint8_t *src =
                qk_conv_tap_source(args, image, tile->out_y, tile->out_x + p, tap / 3, tap % 3, first_channel);
            window_copy(rows, row + (size_t)tap * (size_t)ipg, src, 8, wide);
        }
    }
}

// The windows as bytes, or widened to int16 on the paths that widen (rows of QK_DENSE_ROW_BYTES values).
static void build_window_rows(const qk_conv_args *args, const qk_conv_tile *tile, int32_t pixels, uint8_t *rows) {
    build_window_rows_as(args, tile, pixels, rows, 0);
}

static void build_wide_window_rows(const qk_conv_args *args, const qk_conv_tile *tile, int32_t pixels, int16_t *rows) {
    build_window_rows_as(args, tile, pixels, rows, 1);
}

// Pixel tile `index` of a row: the first `wider` tiles get one pixel more.
static void place_row_tile(int32_t index, int32_t base_pixels, int32_t wider, qk_conv_tile *tile) {
    tile->out_x = index * base_pixels + (index < wider ? index : wider);
    tile->pixels = base_pixels + (index < wider ? 1 : 0);
}

// The pixel tiles of a band of rows: each row cut alike (place_row_tile), or with raster tiles the band's
// pixels in raster order, cut as evenly (qk_conv_microkernels.raster_tiles). Tiles are numbered from 0 in
// the band; a cursor walks them in order without a division per tile.
typedef struct qk_band_tiles {
    int32_t first_row, out_w, count;
    int32_t row_tiles, base_pixels, wider;  // row_tiles == 0: raster tiles
} qk_band_tiles;

typedef struct qk_tile_cursor {
    int32_t index, out_y, out_x;
} qk_tile_cursor;

// Places tile t (0 <= t < band->count) and returns the cursor after it.
static qk_tile_cursor place_band_tile(const qk_band_tiles *band, int32_t t, qk_conv_tile *tile) {
    qk_tile_cursor at;
    if (band->row_tiles > 0) {
        at.out_y = band->first_row + t / band->row_tiles;
        at.index = t % band->row_tiles;
        tile->out_y = at.out_y;
        place_row_tile(at.index, band->base_pixels, band->wider, tile);
        at.out_x = 0;
    } else {
        const int32_t first = t * band->base_pixels + (t < band->wider ? t : band->wider);
        at.index = t;
        tile->out_y = at.out_y = band->first_row + first / band->out_w;
        tile->out_x = at.out_x = first % band->out_w;
        tile->pixels = band->base_pixels + (t < band->wider ? 1 : 0);
    }
    return at;
}

// Places the tile after the one `at` placed (at most band->count - 1 of them).
static void place_next_band_tile(const qk_band_tiles *band, qk_tile_cursor *at, qk_conv_tile *tile) {
    if (band->row_tiles > 0) {
        if (++at->index == band->row_tiles) at->index = 0, at->out_y++;
        tile->out_y = at->out_y;
        place_row_tile(at->index, band->base_pixels, band->wider, tile);
        return;
    }
    for (at->out_x += tile->pixels; at->out_x >= band->out_w; at->out_x -= band->out_w) at->out_y++;
    at->index++;
    tile->out_y = at->out_y;
    tile->out_x = at->out_x;
    tile->pixels = band->base_pixels + (at->index < band->wider ? 1 : 0);
}

// How a layer is cut into work items: a band of output rows of one image for a part of the channel tiles.
// Narrow rows are banded together so that a segment still has up to QK_SEGMENT_TILES pixel tiles sharing
// each weight slice (a 7x7 layer: 7 rows of one tile each). Bands shrink again while they would leave
// threads idle (a 7x7 layer with one channel tile).
//
// Without widening, a part is one channel tile (all of a group's in dense mode) and channel tiles are
// outermost: consecutive work items of one thread reuse the same packed weights, which outweigh the input
// rows in deep, narrow layers. With several threads, channel tiles outermost give each thread a share of the
// weights but the whole input, half of which the other thread wrote (it sits in the other core's L2). Image
// bands go outermost instead unless the weights dwarf the input (RepVGG A0's last layer): each thread then
// reads the rows (or images) it wrote itself, plus a halo row, and streams all the weights. At batch 1 too,
// every layer but the weight-dominated ones is banded, so a thread keeps its own rows from layer to layer;
// each switch back would read the other core's half (docs/performance.md, "Work split").
//
// Widened mode (the int16 paths): each item widens its band's input rows to int16 once, into the thread's
// scratch, and runs every channel tile of its part over them, so a part is as many channel tiles as the
// work split allows: all of them on one thread (each input pixel widened once per layer, not once per
// channel tile), a few parts per thread where the bands alone would not share out evenly.
typedef struct qk_conv_plan {
    qk_conv_blocking blocking;
    int32_t row_tiles, base_pixels, wider_tiles, band_rows, bands, segment_tiles;
    int64_t channel_tiles, image_bands, items;  // channel_tiles: the parts, each a range of channel tiles
    int64_t all_tiles;                          // groups x tiles_per_group
    int channels_outermost, widened, raster;
} qk_conv_plan;

// With several threads, bands of one height that the threads share evenly, where the rows allow one up to
// twice the preferred height: RepVGG's 14-row layers, cut into bands of 4, 4, 4 and 2 rows, left one thread
// the short band's less efficient items (docs/performance.md, "Work split").
static int32_t even_band_rows(int32_t rows, int32_t batch, int32_t threads, int32_t preferred) {
    const int64_t bands = (rows + preferred - 1) / preferred;
    if (threads <= 1 || (rows % preferred == 0 && (int64_t)batch * bands % threads == 0)) return preferred;
    for (int32_t count = 1; count <= rows; count++) {
        if (rows % count != 0 || (int64_t)batch * count % threads != 0) continue;
        if (rows / count <= 2 * preferred) return rows / count;
    }
    return preferred;
}

// Which part of the channel tiles and which band of which image work item `item` covers.
static void locate_item(const qk_conv_plan *plan, int64_t item, int64_t *channel_tile, int64_t *image_band) {
    if (plan->channels_outermost) {
        *channel_tile = item / plan->image_bands;
        *image_band = item % plan->image_bands;
    } else {
        *image_band = item / plan->channel_tiles;
        *channel_tile = item % plan->channel_tiles;
    }
}

// Channel tiles [*first, *end) of part `part`, numbered over all groups (group * tiles_per_group + tile).
static void part_tiles(const qk_conv_plan *plan, int64_t part, int64_t *first, int64_t *end) {
    *first = part * plan->all_tiles / plan->channel_tiles;
    *end = (part + 1) * plan->all_tiles / plan->channel_tiles;
}

// First block of channel tile `tile` (numbered over all groups), counted over all groups.
static int64_t global_first_block(const qk_conv_blocking *b, int64_t tile) {
    return tile / b->tiles_per_group * b->blocks_per_group + qk_tile_first_block(b, (int32_t)(tile % b->tiles_per_group));
}

// Layers the path's stem3 microkernel runs: packed as in dense mode, read from widened rows.
static int uses_stem3(const qk_conv_geometry *geo, const qk_path_config *path) {
    return path->conv.stem3 != NULL && path->conv.widen != NULL && geo->groups == 1 && geo->in_c == 3;
}

static int uses_widening(const qk_conv_geometry *geo, const qk_path_config *path) {
    return path->conv.widen != NULL && (!uses_dense_mode(geo) || uses_stem3(geo, path));
}

// Framed mode (qk_conv_tile.framed): for the microkernels that read runs, layers whose border tiles, a third
// to a half of the tiles at 14 to 28 pixels a row, would otherwise run tap by tap. The copy, once per image
// and member, pays where the layer does at least 128 multiply-adds per framed byte (docs/performance.md,
// "Framed input"), and the frame stays within the thread's scratch.
enum { QK_FRAMED_MACS_PER_BYTE = 128, QK_MAX_FRAMED_BYTES = 262144 };

static size_t framed_bytes(const qk_conv_geometry *geo) {
    return (size_t)(geo->in_h + 2) * (size_t)(geo->in_w + 2) * (size_t)geo->in_c;
}

static int reads_runs(const qk_path_config *path) {
    return path->conv.raster_tiles && path->conv.widen == NULL;
}

static int frames_input(const qk_path_config *path, const qk_conv_geometry *geo, const qk_conv_blocking *b) {
    if (!reads_runs(path) || uses_dense_mode(geo) || !qk_conv_taps_run_on(geo, b) || 9 * b->chunks > QK_RUN_OFFSETS ||
        framed_bytes(geo) > QK_MAX_FRAMED_BYTES)
        return 0;
    const double macs = (double)geo->out_h * geo->out_w * geo->out_c * geo->in_c * 9.0;
    return macs >= (double)QK_FRAMED_MACS_PER_BYTE * (double)framed_bytes(geo);
}

// Image `image` of the input with its frame of pad values, as qk_conv_tile.framed describes.
static void frame_image(const qk_conv_args *args, int32_t image, uint8_t *framed) {
    const qk_conv_geometry *geo = &args->geo;
    const size_t in_c = (size_t)geo->in_c, row_bytes = (size_t)geo->in_w * in_c, framed_row = row_bytes + 2 * in_c;
    const uint8_t *pixels = args->input + (size_t)image * (size_t)geo->in_h * row_bytes;
    uint8_t *last_row = framed + (size_t)(geo->in_h + 1) * framed_row;
    for (int32_t x = 0; x < geo->in_w + 2; x++) {
        memcpy(framed + (size_t)x * in_c, args->pad_value, in_c);
        memcpy(last_row + (size_t)x * in_c, args->pad_value, in_c);
    }
    for (int32_t y = 0; y < geo->in_h; y++) {
        uint8_t *row = framed + (size_t)(y + 1) * framed_row;
        memcpy(row, args->pad_value, in_c);
        memcpy(row + in_c, pixels + (size_t)y * row_bytes, row_bytes);
        memcpy(row + in_c + row_bytes, args->pad_value, in_c);
    }
}

// The preferred band height of a layer (before the work split evens it out) and the tallest band any batch
// or team size can give it.
static int32_t preferred_band_rows(int32_t row_tiles, int32_t segment_tiles) {
    return row_tiles >= segment_tiles ? 1 : segment_tiles / row_tiles;
}

// Widened layers whose weights stream from L3 for every band (QK_STREAMED_LAYER_BYTES).
static int streams_weights(const qk_path_config *path, const qk_conv_geometry *geo, const qk_conv_blocking *b) {
    return uses_widening(geo, path) && qk_conv_blocked_size(b, geo) > QK_STREAMED_LAYER_BYTES;
}

// Pixel tiles per segment (QK_STREAMED_SEGMENT_TILES above).
static int32_t segment_tiles_of(const qk_path_config *path, const qk_conv_geometry *geo, const qk_conv_blocking *b) {
    return streams_weights(path, geo, b) ? QK_STREAMED_SEGMENT_TILES : QK_SEGMENT_TILES;
}

static qk_conv_plan plan_of(const qk_conv_args *args, const qk_path_config *path) {
    const qk_conv_geometry *geo = &args->geo;
    qk_conv_plan plan;
    plan.blocking = qk_conv_blocking_of(geo, path);
    plan.widened = uses_widening(geo, path);
    plan.raster = uses_raster_tiles(geo, path);
    split_row(geo->out_w, plan.blocking.pixels_per_tile, &plan.row_tiles, &plan.base_pixels, &plan.wider_tiles);
    plan.all_tiles = (int64_t)geo->groups * plan.blocking.tiles_per_group;
    // Dense mode: one item covers all channel tiles of its group, so that they share the window rows
    // (RepVGG-B0's 64-channel stem has two tiles, which built every window twice).
    const int32_t tiles_per_item = plan.blocking.taps == 1 ? plan.blocking.tiles_per_group : 1;
    const int64_t channel_tiles = plan.all_tiles / tiles_per_item;
    plan.segment_tiles = segment_tiles_of(path, geo, &plan.blocking);
    int32_t band_rows = preferred_band_rows(plan.row_tiles, plan.segment_tiles);
    while (band_rows > 1 &&
           channel_tiles * args->batch * ((geo->out_h + band_rows - 1) / band_rows) < (int64_t)args->threads)
        band_rows = (band_rows + 1) / 2;
    plan.band_rows = even_band_rows(geo->out_h, args->batch, args->threads, band_rows);
    plan.bands = (geo->out_h + plan.band_rows - 1) / plan.band_rows;
    plan.image_bands = (int64_t)args->batch * plan.bands;
    const uint64_t input_bytes = (uint64_t)args->batch * (uint64_t)geo->in_h * (uint64_t)geo->in_w * (uint64_t)geo->in_c;
    const uint64_t weight_bytes = (uint64_t)qk_conv_blocked_size(&plan.blocking, geo);
    // One thread keeps a channel tile's weights for every image's bands, except where the layer is framed and
    // the batch has several images: there bands go outermost too, so that each image is framed once rather than
    // left unframed, its border tiles then run tap by tap (docs/performance.md, "Framed input at batch 8").
    const int frames_batch = args->batch > 1 && frames_input(path, geo, &plan.blocking);
    plan.channels_outermost = (args->threads <= 1 && !frames_batch) || 16 * input_bytes <= weight_bytes;
    plan.channel_tiles = channel_tiles;
    if (plan.widened) {
        // One thread: one part, bands in order. Weight-dominated layers on a team: two parts per member,
        // each over every band. Otherwise bands outermost, cut into parts only while there are fewer than
        // four items per member.
        int64_t parts = 1;
        if (args->threads > 1 && plan.channels_outermost) {
            parts = 2 * (int64_t)args->threads;
        } else {
            while (plan.image_bands * parts < 4 * (int64_t)args->threads && parts < plan.all_tiles) parts++;
        }
        plan.channel_tiles = parts < plan.all_tiles ? parts : plan.all_tiles;
        plan.channels_outermost = args->threads > 1 && plan.channels_outermost;
    }
    plan.items = plan.channel_tiles * plan.image_bands;
    return plan;
}

// Packed weights of the first channel tiles that work item `item` uses: all of its part's, or in widened
// mode (where a part may be the whole layer) its first channel tile's.
static const uint8_t *item_weights(const qk_conv_args *args, const qk_conv_plan *plan, int64_t item, size_t *bytes) {
    const qk_conv_blocking *b = &plan->blocking;
    int64_t part, image_band, first, end;
    locate_item(plan, item, &part, &image_band);
    part_tiles(plan, part, &first, &end);
    if (plan->widened) end = first + 1;
    *bytes = (size_t)(global_first_block(b, end) - global_first_block(b, first)) * b->block_bytes;
    return qk_conv_tile_weights(args->packed, b, (int32_t)(first / b->tiles_per_group),
                                (int32_t)(first % b->tiles_per_group));
}

// Work of an item: its output blocks times its rows (tiles of a group differ by a block, the last band
// may be shorter).
static int64_t item_cost(const qk_conv_args *args, const qk_conv_plan *plan, int64_t item) {
    const qk_conv_blocking *b = &plan->blocking;
    int64_t part, image_band, first, end;
    locate_item(plan, item, &part, &image_band);
    part_tiles(plan, part, &first, &end);
    const int64_t blocks = global_first_block(b, end) - global_first_block(b, first);
    const int32_t first_row = (int32_t)(image_band % plan->bands) * plan->band_rows;
    const int32_t rows = args->geo.out_h - first_row < plan->band_rows ? args->geo.out_h - first_row : plan->band_rows;
    return blocks * rows;
}

// The member's contiguous items, cut where the running work is nearest to its even share: counting items
// alone gave RepVGG-A0's 1280-channel layer (27 tiles of 2 or 3 blocks) 38 and 42 blocks on 2 threads.
// Items of equal work (the common case) are split by count, without visiting them.
static void share_items(const qk_conv_args *args, const qk_conv_plan *plan, const qk_team *team, int64_t *first,
                        int64_t *end) {
    const qk_conv_blocking *b = &plan->blocking;
    const int equal_parts = plan->widened ? plan->channel_tiles == 1
                                          : b->blocks_per_group % (b->tiles_per_group / (plan->all_tiles / plan->channel_tiles)) == 0;
    if (team->size == 1 || (equal_parts && args->geo.out_h % plan->band_rows == 0)) {
        qk_team_share(team, plan->items, first, end);
        return;
    }
    // Every block of every group, for every output row of every image.
    const int64_t total = (int64_t)args->geo.groups * b->blocks_per_group * args->geo.out_h * args->batch;
    const int64_t targets[2] = {total * team->member / team->size, total * (team->member + 1) / team->size};
    int64_t bounds[2] = {0, plan->items};
    int64_t item = 0, done = 0;
    for (int side = 0; side < 2; side++) {
        while (item < plan->items && done < targets[side]) {
            const int64_t cost = item_cost(args, plan, item);
            if (done + cost > targets[side] && targets[side] - done < done + cost - targets[side]) break;  // nearer without it
            done += cost;
            item++;
        }
        bounds[side] = item;
    }
    *first = bounds[0];
    *end = bounds[1];
}

typedef struct qk_share_context {
    const qk_conv_args *args;
    const qk_conv_plan *plan;
} qk_share_context;

static void share_items_of(const void *context, const qk_team *member, int64_t *first, int64_t *end) {
    const qk_share_context *share = (const qk_share_context *)context;
    share_items(share->args, share->plan, member, first, end);
}

// Output channel where channel tile `tile` (numbered over all groups) starts, or where tile `tile - 1`
// ends when `after` (clipped to its group: the last block may have lanes beyond the channels).
static int32_t tile_channel(const qk_conv_args *args, const qk_conv_blocking *b, int64_t tile, int after) {
    const int32_t per_group = args->geo.out_c / args->geo.groups;
    if (after) tile--;
    const int32_t group = (int32_t)(tile / b->tiles_per_group), in_group = (int32_t)(tile % b->tiles_per_group);
    int32_t channel = (after ? qk_tile_first_block(b, in_group + 1) : qk_tile_first_block(b, in_group)) * b->lanes;
    if (channel > per_group) channel = per_group;
    return group * per_group + channel;
}

static void item_region(const void *context, int64_t item, qk_item_region *region) {
    const qk_share_context *share = (const qk_share_context *)context;
    const qk_conv_plan *plan = share->plan;
    int64_t part, image_band, first, end;
    locate_item(plan, item, &part, &image_band);
    part_tiles(plan, part, &first, &end);
    region->image = (int32_t)(image_band / plan->bands);
    region->first_row = (int32_t)(image_band % plan->bands) * plan->band_rows;
    region->end_row = region->first_row + plan->band_rows < share->args->geo.out_h ? region->first_row + plan->band_rows
                                                                                  : share->args->geo.out_h;
    region->first_channel = tile_channel(share->args, &plan->blocking, first, 0);
    region->end_channel = tile_channel(share->args, &plan->blocking, end, 1);
}

static void conv_first_weights(const qk_path_config *path, const qk_conv_args *args, const qk_team *team,
                               const uint8_t **weights, size_t *bytes) {
    const qk_conv_plan plan = plan_of(args, path);
    int64_t first_item, end_item;
    share_items(args, &plan, team, &first_item, &end_item);
    *bytes = 0;
    *weights = NULL;
    if (first_item < end_item) *weights = item_weights(args, &plan, first_item, bytes);
}

void qk_conv_wide_sources_across_rows(const qk_conv_args *args, const qk_conv_tile *tile, int pixels,
                                      const int16_t **x) {
    const qk_conv_geometry *geo = &args->geo;
    const size_t step = (size_t)geo->stride * (size_t)geo->in_c;
    const size_t row_values = (size_t)(geo->in_w + 2) * (size_t)geo->in_c * (size_t)geo->stride;
    const int16_t *row_start = x[0] - (size_t)tile->out_x * step;
    for (int p = 1, out_x = tile->out_x + 1; p < pixels; p++, out_x++) {
        if (out_x == geo->out_w) out_x = 0, row_start += row_values;
        x[p] = row_start + (size_t)out_x * step;
    }
}

void qk_conv_tile_tap_sources(const qk_conv_args *args, const qk_conv_tile *tile, const uint8_t *image,
                              int32_t first_channel, int32_t tap, int pixels, const uint8_t **src) {
    const qk_conv_geometry *geo = &args->geo;
    if (tile->out_x + pixels <= geo->out_w) {
        qk_conv_tile_sources(args, tile, image, first_channel, tap, pixels, src);
        return;
    }
    for (int p = 0, y = tile->out_y, x = tile->out_x; p < pixels; p++) {
        for (; x >= geo->out_w; x -= geo->out_w) y++;
        src[p] = qk_conv_tap_source(args, image, y, x++, tap / 3, tap % 3, first_channel);
    }
}

// Widened mode: input rows [first, first + rows) of a band (some may be above or below the image) with a pad
// column on each side, as qk_conv_tile.wide describes. The path's widen may write up to 31 values past each
// piece (the next piece, written after it, or the scratch's slack) and read as far past its source (the
// next input bytes, or QK_EXTRA_BYTES after the input and the pad values).
enum { QK_WIDEN_SLACK_VALUES = 64 };

static void widen_rows(const qk_path_config *path, const qk_conv_args *args, int32_t image, int32_t first, int32_t rows,
                       int16_t *wide) {
    const qk_conv_geometry *geo = &args->geo;
    void (*widen)(const uint8_t *, int32_t, int16_t *) = path->conv.widen;
    const size_t in_c = (size_t)geo->in_c, row_values = (size_t)(geo->in_w + 2) * in_c;
    const uint8_t *pixels = args->input + (size_t)image * geo->in_h * geo->in_w * in_c;
    for (int32_t r = 0; r < rows; r++) {
        const int32_t iy = first + r;
        int16_t *out = wide + (size_t)r * row_values;
        if ((uint32_t)iy >= (uint32_t)geo->in_h) {
            for (int32_t x = 0; x < geo->in_w + 2; x++) widen(args->pad_value, geo->in_c, out + (size_t)x * in_c);
            continue;
        }
        widen(args->pad_value, geo->in_c, out);
        widen(pixels + (size_t)iy * geo->in_w * in_c, geo->in_w * geo->in_c, out + in_c);
        widen(args->pad_value, geo->in_c, out + (size_t)(geo->in_w + 1) * in_c);
    }
}

// Input rows a band of `band_rows` output rows reads.
static int32_t band_input_rows(const qk_conv_geometry *geo, int32_t band_rows) {
    return (band_rows - 1) * geo->stride + 3;
}

size_t qk_conv_blocked_scratch_bytes(const qk_path_config *path, const qk_conv_geometry *geo) {
    const qk_conv_blocking b = qk_conv_blocking_of(geo, path);
    if (frames_input(path, geo, &b)) return qk_round_to_line(framed_bytes(geo));
    if (!uses_widening(geo, path)) return 0;
    int32_t row_tiles, base_pixels, wider_tiles;
    split_row(geo->out_w, b.pixels_per_tile, &row_tiles, &base_pixels, &wider_tiles);
    // even_band_rows gives at most twice the preferred height.
    int32_t rows = 2 * preferred_band_rows(row_tiles, segment_tiles_of(path, geo, &b));
    if (rows > geo->out_h) rows = geo->out_h;
    const size_t values = (size_t)band_input_rows(geo, rows) * (size_t)(geo->in_w + 2) * (size_t)geo->in_c;
    return qk_round_to_line((values + QK_WIDEN_SLACK_VALUES) * sizeof(int16_t));
}

// Prefetches of one work item are spread evenly over its taps; more than this many lines per tap would
// crowd out the microkernel's own loads.
enum { QK_MAX_PREFETCH_LINES_PER_TAP = 64 };

static int32_t lines_per_tap(size_t bytes, int64_t taps) {
    int64_t lines = ((int64_t)(bytes + 63) / 64 + taps - 1) / taps;
    return (int32_t)(lines > QK_MAX_PREFETCH_LINES_PER_TAP ? QK_MAX_PREFETCH_LINES_PER_TAP : lines);
}

qk_conv_args qk_conv_args_with_multiplier_bound(const qk_conv_args *caller_args) {
    qk_conv_args layer = *caller_args;
    float largest_multiplier = 0.0f;
    for (int32_t o = 0; o < layer.geo.out_c; o++)
        largest_multiplier = layer.multiplier[o] > largest_multiplier ? layer.multiplier[o] : largest_multiplier;
    layer.multipliers_below_one = largest_multiplier < 1.0f;
    return layer;
}

static void conv_share(const qk_path_config *path, const qk_conv_args *caller_args, const qk_team *team) {
    const qk_conv_microkernels *kernels = &path->conv;
    const qk_conv_args layer = qk_conv_args_with_multiplier_bound(caller_args);
    const qk_conv_args *args = &layer;
    const qk_conv_geometry *geo = &args->geo;
    const qk_conv_plan plan = plan_of(args, path);
    const qk_conv_blocking *blocking = &plan.blocking;
    const int32_t row_tiles = plan.row_tiles;
    const size_t tap_bytes = (size_t)blocking->chunks * (size_t)blocking->blocks_per_tile * (size_t)blocking->unit_bytes;
    int32_t taps_per_slice = (int32_t)(path->costs.slice_bytes / tap_bytes);
    if (taps_per_slice < 1) taps_per_slice = 1;
    if (taps_per_slice > blocking->taps) taps_per_slice = blocking->taps;
    // Widened mode: slices of whole kernel rows, which the microkernels run as one loop each.
    if (plan.widened && taps_per_slice >= 3) taps_per_slice -= taps_per_slice % 3;
    const int dense = blocking->taps == 1;
    const int streamed = streams_weights(path, geo, blocking);
    const qk_share_context share_context = {args, &plan};
    qk_item_claim claim;
    qk_claim_begin(&claim, team, &share_context, share_items_of, item_region);
    // The member's own share, which its prefetch plan follows (the claim starts with it).
    const int64_t first_item = claim.first, end_item = claim.end;
    // The chunk offsets of runs, for the microkernels that read through qk_conv_tile_run_sources. Framed mode
    // only where a member's items keep to one image for long: with channel tiles outermost, a batch's items
    // change image at every item.
    int32_t run_offsets[QK_RUN_OFFSETS];
    const int runs = reads_runs(path);
    const int framed = frames_input(path, geo, blocking) && (args->batch == 1 || !plan.channels_outermost) &&
                       args->scratch != NULL;
    const int32_t run_row_bytes = (geo->in_w + (framed ? 2 : 0)) * geo->in_c;
    const int window_runs = runs ? qk_conv_build_run_offsets(blocking, run_row_bytes, run_offsets) : 0;
    int32_t framed_image = -1;  // the image the scratch holds framed
    int64_t item;
    bool own;
    while (qk_claim_next(&claim, team, &item, &own)) {
        // Sums of one segment between tap slices: [pixel][lane of the tile].
        int32_t partial[QK_MAX_SEGMENT_PIXELS * QK_MAX_TILE_LANES] __attribute__((aligned(64)));
        // Window rows of one segment in dense mode, plus room for the last row's copies.
        uint8_t windows[QK_SEGMENT_PIXELS * QK_DENSE_ROW_BYTES + QK_WINDOW_COPY_SLACK] __attribute__((aligned(64)));
        // The same widened to int16 on the paths that widen, once per segment for all its channel tiles.
        int16_t wide_windows[QK_SEGMENT_PIXELS * QK_DENSE_ROW_BYTES + QK_WIDEN_SLACK_VALUES] __attribute__((aligned(64)));
        const uint8_t *dense_rows = windows;
        int64_t part, image_band, part_first, part_end;
        locate_item(&plan, item, &part, &image_band);
        part_tiles(&plan, part, &part_first, &part_end);
        qk_conv_tile tile;
        tile.image = (int32_t)(image_band / plan.bands);
        tile.im2col_stride = kernels->widen != NULL ? QK_DENSE_ROW_BYTES * (int32_t)sizeof(int16_t) : QK_DENSE_ROW_BYTES;
        const int32_t first_row = (int32_t)(image_band % plan.bands) * plan.band_rows;
        const int32_t end_row = first_row + plan.band_rows < geo->out_h ? first_row + plan.band_rows : geo->out_h;
        const int32_t tile_lanes = blocking->blocks_per_tile * blocking->lanes;
        // Pixel tiles of the band, taken plan.segment_tiles at a time.
        qk_band_tiles band = {first_row, geo->out_w, (end_row - first_row) * row_tiles, row_tiles, plan.base_pixels,
                              plan.wider_tiles};
        if (plan.raster) {
            const int32_t pixels = (end_row - first_row) * geo->out_w;
            split_row(pixels, blocking->pixels_per_tile, &band.count, &band.base_pixels, &band.wider);
            band.row_tiles = 0;
        }
        tile.wide = NULL;
        tile.wide_first_row = 0;
        tile.run_offsets = runs ? run_offsets : NULL;
        tile.window_runs = window_runs;
        tile.framed = NULL;
        if (framed) {
            if (tile.image != framed_image) frame_image(args, tile.image, (uint8_t *)args->scratch);
            framed_image = tile.image;
            tile.framed = (const uint8_t *)args->scratch;
        }
        if (plan.widened) {
            tile.wide_first_row = first_row * geo->stride - 1;
            widen_rows(path, args, tile.image, tile.wide_first_row, band_input_rows(geo, end_row - first_row),
                       args->scratch);
            tile.wide = args->scratch;
        }

        // The first item of a channel tile would stream its weights from L3 at the speed of L3; fetch them
        // into L2 during the item before, when the channel tile changes, and in the member's last item fetch
        // what it needs first in the next step. Widened mode does this per channel tile within the item (below).
        const uint8_t *prefetch = NULL;
        size_t prefetch_bytes = 0;
        const uint8_t *after_item = NULL;  // widened mode: what the item's last channel tile fetches
        size_t after_item_bytes = 0;
        const int first_pass = plan.channels_outermost ? (item + 1) / plan.image_bands != part
                                                       : item + 1 - first_item < plan.channel_tiles;
        if (!own) {
            // Taken over from another member's share: that member planned the prefetches around it.
        } else if (item + 1 < end_item) {
            // Bands outermost: every item changes tile, but only the member's first pass over the tiles
            // reads them from L3.
            if (first_pass || streamed) after_item = item_weights(args, &plan, item + 1, &after_item_bytes);
        } else {
            after_item = args->prefetch_next;
            after_item_bytes = after_item != NULL ? args->prefetch_next_bytes : 0;
        }
        if (!plan.widened) {
            prefetch = after_item;
            prefetch_bytes = after_item_bytes;
            tile.prefetch_lines_per_tap = lines_per_tap(prefetch_bytes, (int64_t)band.count * blocking->taps);
            tile.prefetch = prefetch;
        }
        // Widened mode: each channel tile fetches the next one's weights while the layer streams them (or in
        // the member's first item, when they come from L3 the first time).
        const int fetch_next_tile = own && (streamed || item == first_item);

        if (uses_stem3(geo, path)) {
            // Whole rows per call, whose kernel fetches the next item's weights (or the next layer's) spread
            // over its pixel tiles, as the tiles of the other modes do.
            tile.im2col = NULL;
            tile.partial = NULL;
            tile.first_tap = 0;
            tile.taps = 1;
            tile.out_x = 0;
            tile.pixels = geo->out_w;
            tile.group = 0;
            for (int64_t channel_tile = part_first; channel_tile < part_end; channel_tile++) {
                tile.tile = (int32_t)channel_tile;
                tile.first_block = qk_tile_first_block(blocking, tile.tile);
                tile.weights = qk_conv_tile_weights(args->packed, blocking, 0, tile.tile);
                tile.prefetch = channel_tile + 1 == part_end ? after_item : NULL;
                const int64_t rows = end_row - first_row, lines = tile.prefetch != NULL ? ((int64_t)after_item_bytes + 63) / 64 : 0;
                tile.prefetch_lines_per_tap = (int32_t)((lines + rows - 1) / rows);
                for (tile.out_y = first_row; tile.out_y < end_row; tile.out_y++) {
                    kernels->stem3(args, blocking, &tile);
                    if (tile.prefetch != NULL) tile.prefetch += (size_t)tile.prefetch_lines_per_tap * 64;
                }
            }
            continue;
        }
        for (int32_t segment = 0; segment < band.count; segment += plan.segment_tiles) {
            const int32_t segment_end =
                segment + plan.segment_tiles < band.count ? segment + plan.segment_tiles : band.count;
            if (dense) {
                tile.group = (int32_t)(part_first / blocking->tiles_per_group);
                size_t row = 0;
                qk_tile_cursor at = place_band_tile(&band, segment, &tile);
                for (int32_t t = segment; t < segment_end; t++) {
                    if (t > segment) place_next_band_tile(&band, &at, &tile);
                    if (kernels->widen != NULL)
                        build_wide_window_rows(args, &tile, tile.pixels, wide_windows + row);
                    else
                        build_window_rows(args, &tile, tile.pixels, windows + row);
                    row += (size_t)tile.pixels * QK_DENSE_ROW_BYTES;
                }
                if (kernels->widen != NULL) dense_rows = (const uint8_t *)wide_windows;
            }
            for (int64_t channel_tile = part_first; channel_tile < part_end; channel_tile++) {
                tile.group = (int32_t)(channel_tile / blocking->tiles_per_group);
                tile.tile = (int32_t)(channel_tile % blocking->tiles_per_group);
                tile.first_block = qk_tile_first_block(blocking, tile.tile);
                tile.weights = qk_conv_tile_weights(args->packed, blocking, tile.group, tile.tile);
                if (plan.widened) {
                    const uint8_t *next = NULL;
                    size_t next_bytes = 0;
                    if (channel_tile + 1 < part_end) {
                        if (fetch_next_tile) {
                            next = qk_conv_tile_weights(args->packed, blocking, (int32_t)((channel_tile + 1) / blocking->tiles_per_group),
                                                        (int32_t)((channel_tile + 1) % blocking->tiles_per_group));
                            next_bytes = (size_t)(global_first_block(blocking, channel_tile + 2) -
                                                  global_first_block(blocking, channel_tile + 1)) * blocking->block_bytes;
                        }
                    } else if (segment_end == band.count) {
                        next = after_item;
                        next_bytes = after_item_bytes;
                    }
                    tile.prefetch = next;
                    tile.prefetch_lines_per_tap = lines_per_tap(next_bytes, (int64_t)(segment_end - segment) * blocking->taps);
                }
                const qk_conv_tile_fn *tiles_of_width = kernels->tiles + (qk_tile_blocks(blocking, tile.tile) - 1);
                for (int32_t first_tap = 0; first_tap < blocking->taps; first_tap += taps_per_slice) {
                    tile.first_tap = first_tap;
                    tile.taps = blocking->taps - first_tap < taps_per_slice ? blocking->taps - first_tap : taps_per_slice;
                    int32_t *sums = partial;
                    const uint8_t *rows = dense_rows;
                    // Placed along rather than divided out per pixel tile.
                    qk_tile_cursor at = place_band_tile(&band, segment, &tile);
                    for (int32_t t = segment; t < segment_end; t++) {
                        if (t > segment) place_next_band_tile(&band, &at, &tile);
                        tile.partial = taps_per_slice < blocking->taps ? sums : NULL;
                        tile.im2col = dense ? rows : NULL;
                        tiles_of_width[(tile.pixels - 1) * kernels->max_blocks](args, blocking, &tile);
                        sums += tile.pixels * tile_lanes;
                        rows += (size_t)tile.pixels * (size_t)tile.im2col_stride;
                        if (tile.prefetch != NULL)
                            tile.prefetch += (size_t)tile.prefetch_lines_per_tap * tile.taps * 64;
                    }
                }
            }
        }
    }
}

const qk_path_ops qk_blocked_ops = {
    .conv_packed_size = qk_conv_blocked_packed_size,
    .conv_pack = qk_conv_blocked_pack,
    .conv_unpack = qk_conv_blocked_unpack,
    .conv_pack_in_place = qk_conv_blocked_pack_in_place,
    .conv_share = conv_share,
    .claims_items = true,
    .conv_first_weights = conv_first_weights,
    .conv_scratch_bytes = qk_conv_blocked_scratch_bytes,
    .fc_packed_size = qk_fc_blocked_packed_size,
    .fc_pack = qk_fc_blocked_pack,
    .fc_unpack = qk_fc_blocked_unpack,
    .fc_pack_in_place = qk_fc_blocked_pack_in_place,
    .fc_share = qk_fc_blocked_share,
    .fc_first_weights = qk_fc_blocked_first_weights,
};
