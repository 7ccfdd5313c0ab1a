// Packing and threading shared by the blocked SIMD conv paths (layout described in qk-internal.h).
#include "qk-internal.h"

#include <string.h>

qk_conv_blocking qk_conv_blocking_of(const qk_conv_geometry *geo, int32_t lanes, int32_t max_blocks_per_tile) {
    qk_conv_blocking b;
    b.lanes = lanes;
    b.blocks_per_group = (geo->out_per_group + lanes - 1) / lanes;
    b.blocks_per_tile = b.blocks_per_group < max_blocks_per_tile ? b.blocks_per_group : max_blocks_per_tile;
    b.tiles_per_group = (b.blocks_per_group + b.blocks_per_tile - 1) / b.blocks_per_tile;
    b.chunks = (geo->in_per_group + 3) / 4;
    return b;
}

size_t qk_conv_blocked_size(const qk_conv_geometry *geo, const qk_conv_blocking *blocking) {
    return (size_t)geo->groups * (size_t)blocking->blocks_per_group * 9 * (size_t)blocking->chunks *
           QK_PACK_UNIT_BYTES;
}

void qk_conv_pack_blocked(const qk_conv_geometry *geo, const qk_conv_blocking *blocking,
                          const int8_t *weight_oihw, void *packed, qk_pack_unit_fn pack_unit) {
    const int32_t ipg = geo->in_per_group, opg = geo->out_per_group, lanes = blocking->lanes;
    uint8_t *unit = (uint8_t *)packed;
    for (int32_t g = 0; g < geo->groups; g++) {
        for (int32_t tile = 0; tile < blocking->tiles_per_group; tile++) {
            const int32_t first_block = tile * blocking->blocks_per_tile;
            int32_t blocks = blocking->blocks_per_group - first_block;
            if (blocks > blocking->blocks_per_tile) blocks = blocking->blocks_per_tile;
            for (int32_t tap = 0; tap < 9; tap++) {
                for (int32_t chunk = 0; chunk < blocking->chunks; chunk++) {
                    for (int32_t block = 0; block < blocks; block++) {
                        int8_t weights[16][4];
                        memset(weights, 0, sizeof weights);
                        for (int32_t lane = 0; lane < lanes; lane++) {
                            const int32_t o = (first_block + block) * lanes + lane;
                            if (o >= opg) break;
                            for (int32_t q = 0; q < 4; q++) {
                                const int32_t c = chunk * 4 + q;
                                if (c >= ipg) break;
                                const size_t oc = (size_t)g * opg + (size_t)o;
                                weights[lane][q] = weight_oihw[(oc * (size_t)ipg + (size_t)c) * 9 + (size_t)tap];
                            }
                        }
                        pack_unit((const int8_t(*)[4])weights, lanes, unit);
                        unit += QK_PACK_UNIT_BYTES;
                    }
                }
            }
        }
    }
}

size_t qk_fc_blocked_size(int32_t in_c, int32_t out_c, int32_t lanes) {
    const size_t blocks = (size_t)(out_c + lanes - 1) / (size_t)lanes, chunks = (size_t)(in_c + 3) / 4;
    return blocks * chunks * QK_PACK_UNIT_BYTES;
}

void qk_fc_pack_blocked(int32_t in_c, int32_t out_c, int32_t lanes, const int8_t *weight, void *packed,
                        qk_pack_unit_fn pack_unit) {
    const int32_t blocks = (out_c + lanes - 1) / lanes, chunks = (in_c + 3) / 4;
    uint8_t *unit = (uint8_t *)packed;
    for (int32_t block = 0; block < blocks; block++) {
        for (int32_t chunk = 0; chunk < chunks; chunk++) {
            int8_t weights[16][4];
            memset(weights, 0, sizeof weights);
            for (int32_t lane = 0; lane < lanes; lane++) {
                const int32_t k = block * lanes + lane;
                if (k >= out_c) break;
                for (int32_t q = 0; q < 4 && chunk * 4 + q < in_c; q++)
                    weights[lane][q] = weight[(size_t)k * (size_t)in_c + (size_t)(chunk * 4 + q)];
            }
            pack_unit((const int8_t(*)[4])weights, lanes, unit);
            unit += QK_PACK_UNIT_BYTES;
        }
    }
}

// Pixel tiles of a row are as even as possible (e.g. 14 -> 7 + 7, not 8 + 6), so rows whose width is a
// multiple of 7 (every RepVGG width at 224 px) run only full-size microkernels.
//
// When a channel tile's weights outgrow L1 (deep layers: 9 taps x 48 chunks x 192 bytes = 83 KB at 192
// input channels), every pixel tile would stream them again from L2. Instead the taps are cut into slices
// whose weights fit the budget, and each slice visits all pixel tiles of a row segment, carrying the int32
// sums between slices in a small per-thread buffer. The sums are exact integers, so slicing cannot change
// a result.
enum { QK_SEGMENT_TILES = 8 };

void qk_conv3x3_tiled(const qk_conv_args *args, const qk_conv_blocking *blocking, int32_t max_pixels,
                      size_t slice_bytes, qk_conv_tile_fn run_tile) {
    const qk_conv_geometry *geo = &args->geo;
    const int32_t row_tiles = (geo->out_w + max_pixels - 1) / max_pixels;
    const int32_t base_pixels = geo->out_w / row_tiles, wider_tiles = geo->out_w % row_tiles;
    const size_t tap_bytes = (size_t)blocking->chunks * (size_t)blocking->blocks_per_tile * QK_PACK_UNIT_BYTES;
    int32_t taps_per_slice = (int32_t)(slice_bytes / tap_bytes);
    if (taps_per_slice < 1) taps_per_slice = 1;
    if (taps_per_slice > 9) taps_per_slice = 9;
    // Channel tiles outermost: consecutive work items of one thread reuse the same packed weights,
    // which matter more than the input rows once the weights outgrow L1 (deep, narrow layers).
    const int64_t rows = (int64_t)args->batch * geo->out_h;
    const int64_t items = (int64_t)geo->groups * blocking->tiles_per_group * rows;
#pragma omp parallel for num_threads(args->threads) schedule(static) if (args->threads > 1)
    for (int64_t item = 0; item < items; item++) {
        // Sums of one row segment between tap slices: [pixel][lane of the tile].
        int32_t partial[QK_SEGMENT_TILES * QK_MAX_TILE_PIXELS * QK_MAX_TILE_LANES] __attribute__((aligned(64)));
        const int64_t channel_tile = item / rows, row = item % rows;
        qk_conv_tile tile;
        tile.group = (int32_t)(channel_tile / blocking->tiles_per_group);
        tile.tile = (int32_t)(channel_tile % blocking->tiles_per_group);
        tile.image = (int32_t)(row / geo->out_h);
        tile.out_y = (int32_t)(row % geo->out_h);
        const int32_t tile_lanes = blocking->blocks_per_tile * blocking->lanes;
        for (int32_t first_row_tile = 0; first_row_tile < row_tiles; first_row_tile += QK_SEGMENT_TILES) {
            const int32_t segment_end = first_row_tile + QK_SEGMENT_TILES < row_tiles ? first_row_tile + QK_SEGMENT_TILES
                                                                                      : row_tiles;
            for (int32_t first_tap = 0; first_tap < 9; first_tap += taps_per_slice) {
                tile.first_tap = first_tap;
                tile.taps = 9 - first_tap < taps_per_slice ? 9 - first_tap : taps_per_slice;
                tile.out_x = first_row_tile * base_pixels + (first_row_tile < wider_tiles ? first_row_tile : wider_tiles);
                int32_t *sums = partial;
                for (int32_t t = first_row_tile; t < segment_end; t++) {
                    tile.pixels = base_pixels + (t < wider_tiles ? 1 : 0);
                    tile.partial = taps_per_slice < 9 ? sums : NULL;
                    run_tile(args, blocking, &tile);
                    tile.out_x += tile.pixels;
                    sums += tile.pixels * tile_lanes;
                }
            }
        }
    }
}
