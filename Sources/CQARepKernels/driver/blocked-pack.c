// Packing and unpacking of the blocked layout (blocked.h), conv layers and the fully connected head, for
// any path's geometry: lanes, chunk depth, unit arrangement and block trailer.
#include "driver/blocked.h"

#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

size_t qk_conv_blocked_size(const qk_conv_blocking *blocking, const qk_conv_geometry *geo) {
    return (size_t)geo->groups * (size_t)blocking->blocks_per_group * blocking->block_bytes;
}

size_t qk_conv_blocked_packed_size(const qk_path_config *path, const qk_conv_geometry *geo) {
    const qk_conv_blocking blocking = qk_conv_blocking_of(geo, path);
    return qk_conv_blocked_size(&blocking, geo);
}

// The sum of n int8 weights, for a block trailer (the paths without trailers skip it).
static int32_t sum_of_weights(const int8_t *weights, size_t n) {
    int32_t sum = 0;
    for (size_t i = 0; i < n; i++) sum += weights[i];
    return sum;
}

// The packing order is walked once for both directions, so that pack and unpack cannot drift apart:
// packing gathers each unit's weights from OIHW (zero where a lane or a position does not exist) and lays
// the unit out; unpacking reads the unit back and scatters the same weights to the same OIHW elements.
// Trailers are derived from the weights, so unpacking skips them.
typedef enum { QK_PACK, QK_UNPACK } qk_pack_direction;

typedef struct qk_unit_walk {
    const qk_pack_geometry *geometry;
    qk_pack_direction direction;
    uint8_t *next;  // the next unit or trailer
    int8_t weights[QK_MAX_PACK_LANES * QK_MAX_PACK_DEPTH];
} qk_unit_walk;

static void unit_begin(qk_unit_walk *walk) {
    memset(walk->weights, 0, sizeof walk->weights);
    if (walk->direction == QK_UNPACK) walk->geometry->unpack_unit(walk->next, walk->weights);
}

static void unit_end(qk_unit_walk *walk) {
    if (walk->direction == QK_PACK) walk->geometry->pack_unit(walk->weights, walk->next);
    walk->next += walk->geometry->unit_bytes;
}

// Weight (lane, q) of the current unit and its OIHW element, moved in the walk's direction; returns it.
static int8_t move_weight(qk_unit_walk *walk, int32_t lane, int32_t q, int8_t *oihw_weight) {
    int8_t *unit_weight = &walk->weights[lane * walk->geometry->depth + q];
    if (walk->direction == QK_PACK)
        *unit_weight = *oihw_weight;
    else
        *oihw_weight = *unit_weight;
    return *unit_weight;
}

// Writes (or skips) the trailers of `blocks` blocks from their lanes' weight sums.
static void trailers(qk_unit_walk *walk, const int32_t *lane_sums, int32_t blocks) {
    const qk_pack_geometry *geometry = walk->geometry;
    if (geometry->trailer_bytes == 0) return;
    for (int32_t block = 0; block < blocks; block++) {
        if (walk->direction == QK_PACK) geometry->pack_trailer(lane_sums + block * geometry->lanes, walk->next);
        walk->next += geometry->trailer_bytes;
    }
}

static void conv_blocked_traverse(const qk_path_config *path, const qk_conv_geometry *geo,
                                  qk_pack_direction direction, int8_t *weight_oihw, uint8_t *packed) {
    const qk_conv_blocking b = qk_conv_blocking_of(geo, path);
    const qk_conv_blocking *blocking = &b;
    const int32_t ipg = geo->in_per_group, opg = geo->out_per_group, lanes = blocking->lanes;
    const int32_t depth = blocking->depth;
    qk_unit_walk walk = {.geometry = &path->packing, .direction = direction, .next = packed};
    for (int32_t g = 0; g < geo->groups; g++) {
        for (int32_t tile = 0; tile < blocking->tiles_per_group; tile++) {
            const int32_t first_block = qk_tile_first_block(blocking, tile);
            const int32_t blocks = qk_tile_blocks(blocking, tile);
            int32_t lane_sums[QK_MAX_TILE_LANES] = {0};
            for (int32_t packed_tap = 0; packed_tap < blocking->taps; packed_tap++) {
                for (int32_t chunk = 0; chunk < blocking->chunks; chunk++) {
                    for (int32_t block = 0; block < blocks; block++) {
                        unit_begin(&walk);
                        for (int32_t lane = 0; lane < lanes; lane++) {
                            const int32_t o = (first_block + block) * lanes + lane;
                            if (o >= opg) break;
                            for (int32_t q = 0; q < depth; q++) {
                                // Dense mode: position chunk * depth + q of the window row is (tap, channel).
                                const int32_t position = chunk * depth + q;
                                const int32_t tap = blocking->taps == 1 ? position / ipg : packed_tap;
                                const int32_t c = blocking->taps == 1 ? position % ipg : position;
                                if (tap >= 9 || c >= ipg) break;
                                const size_t oc = (size_t)g * opg + (size_t)o;
                                lane_sums[block * lanes + lane] +=
                                    move_weight(&walk, lane, q, &weight_oihw[(oc * (size_t)ipg + (size_t)c) * 9 + (size_t)tap]);
                            }
                        }
                        unit_end(&walk);
                    }
                }
            }
            trailers(&walk, lane_sums, blocks);
        }
    }
}

#if defined(__SSE2__)
// Eight input channels' 9 taps (72 bytes, channel c at c * 9) to 9 rows of 8 bytes, `row` bytes apart: taps
// 0-7 as one 8x8 byte transpose of the 8-byte loads at c * 9 (three rounds of unpacks), tap 8 byte by byte.
// A third of the byte-by-byte gather's instructions; SSE2 is every x86-64's.
static void transpose_taps_of_8(const int8_t *channels, int8_t *taps, size_t row) {
    __m128i r[8];
    for (int j = 0; j < 8; j++) r[j] = _mm_loadl_epi64((const __m128i *)(channels + 9 * j));
    const __m128i p01 = _mm_unpacklo_epi8(r[0], r[1]), p23 = _mm_unpacklo_epi8(r[2], r[3]);
    const __m128i p45 = _mm_unpacklo_epi8(r[4], r[5]), p67 = _mm_unpacklo_epi8(r[6], r[7]);
    const __m128i q0 = _mm_unpacklo_epi16(p01, p23), q1 = _mm_unpackhi_epi16(p01, p23);  // taps 0-3, 4-7 of 0-3
    const __m128i q2 = _mm_unpacklo_epi16(p45, p67), q3 = _mm_unpackhi_epi16(p45, p67);  // of channels 4-7
    const __m128i pairs[4] = {_mm_unpacklo_epi32(q0, q2), _mm_unpackhi_epi32(q0, q2), _mm_unpacklo_epi32(q1, q3),
                              _mm_unpackhi_epi32(q1, q3)};  // taps (0, 1), (2, 3), (4, 5), (6, 7)
    for (int k = 0; k < 4; k++) {
        _mm_storel_epi64((__m128i *)(taps + (size_t)(2 * k) * row), pairs[k]);
        _mm_storel_epi64((__m128i *)(taps + (size_t)(2 * k + 1) * row), _mm_unpackhi_epi64(pairs[k], pairs[k]));
    }
    for (int j = 0; j < 8; j++) taps[8 * row + (size_t)j] = channels[9 * j + 8];
}
#endif

// The same packing order for the tap-by-tap layout, fast: each channel tile's OIHW weights are first
// transposed to [out][tap][in] with each (out, tap) row padded to whole chunks, so that a unit is gathered
// as `lanes` contiguous runs of `depth` bytes instead of weight by weight with a 9-byte stride (the packing
// walk was most of a model's load time). The trailers' weight sums are taken in the same pass, not from
// the units byte by byte. Returns false, packing nothing, when the copy cannot be allocated.
static bool conv_blocked_pack_transposed(const qk_path_config *path, const qk_conv_geometry *geo,
                                         const int8_t *weight_oihw, uint8_t *packed) {
    const qk_conv_blocking b = qk_conv_blocking_of(geo, path);
    const qk_pack_geometry *geometry = &path->packing;
    const int32_t ipg = geo->in_per_group, opg = geo->out_per_group, lanes = b.lanes, depth = b.depth;
    const size_t row = (size_t)b.chunks * (size_t)depth;
    const size_t out_stride = 9 * row;  // from one output channel's rows to the next's
    // One channel tile's rows at a time: a cache-sized copy rather than a second copy of the layer.
    int8_t *rows = malloc((size_t)b.blocks_per_tile * (size_t)lanes * out_stride);
    if (rows == NULL) return false;
    uint8_t *next = packed;
    int8_t weights[QK_MAX_PACK_LANES * QK_MAX_PACK_DEPTH];
    for (int32_t g = 0; g < geo->groups; g++) {
        for (int32_t tile = 0; tile < b.tiles_per_group; tile++) {
            const int32_t first_block = qk_tile_first_block(&b, tile), blocks = qk_tile_blocks(&b, tile);
            const int32_t first_out = first_block * lanes;
            const int32_t tile_outs = opg - first_out < blocks * lanes ? opg - first_out : blocks * lanes;
            int32_t lane_sums[QK_MAX_TILE_LANES] = {0};  // lanes beyond the layer's outputs weigh 0
            for (int32_t t = 0; t < tile_outs; t++) {
                const int8_t *channel = weight_oihw + ((size_t)g * (size_t)opg + (size_t)(first_out + t)) * (size_t)ipg * 9;
                int8_t *taps = rows + (size_t)t * out_stride;
                size_t c = 0;
#if defined(__SSE2__)
                for (; c + 8 <= (size_t)ipg; c += 8) transpose_taps_of_8(channel + c * 9, taps + c, row);
#endif
                for (; c < (size_t)ipg; c++)
                    for (size_t tap = 0; tap < 9; tap++) taps[tap * row + c] = channel[c * 9 + tap];
                for (size_t tap = 0; tap < 9; tap++)
                    memset(taps + tap * row + ipg, 0, row - (size_t)ipg);  // a partial last chunk's missing channels weigh 0
                // Summed over the contiguous OIHW run rather than inside the strided copy.
                if (geometry->trailer_bytes > 0) lane_sums[t] = sum_of_weights(channel, (size_t)ipg * 9);
            }
            for (int32_t tap = 0; tap < 9; tap++) {
                for (int32_t chunk = 0; chunk < b.chunks; chunk++) {
                    for (int32_t block = 0; block < blocks; block++) {
                        const int32_t first_t = block * lanes;  // within the tile
                        const int32_t present = tile_outs - first_t < lanes ? tile_outs - first_t : lanes;
                        const int8_t *run = rows + (size_t)first_t * out_stride + (size_t)tap * row +
                                            (size_t)chunk * (size_t)depth;
                        // Lane-major units are gathered in place; others through the path's arrangement.
                        int8_t *unit = geometry->units_are_lane_major ? (int8_t *)next : weights;
                        if (depth == 4) {  // the common depth, as 4-byte moves rather than memcpy calls
                            for (int32_t lane = 0; lane < present; lane++)
                                __builtin_memcpy(unit + 4 * lane, run + (size_t)lane * out_stride, 4);
                        } else {
                            for (int32_t lane = 0; lane < present; lane++)
                                memcpy(unit + lane * depth, run + (size_t)lane * out_stride, (size_t)depth);
                        }
                        if (present < lanes) memset(unit + present * depth, 0, (size_t)((lanes - present) * depth));
                        if (!geometry->units_are_lane_major) geometry->pack_unit(weights, next);
                        next += geometry->unit_bytes;
                    }
                }
            }
            for (int32_t block = 0; geometry->trailer_bytes > 0 && block < blocks; block++) {
                geometry->pack_trailer(lane_sums + block * lanes, next);
                next += geometry->trailer_bytes;
            }
        }
    }
    free(rows);
    return true;
}

void qk_conv_blocked_pack(const qk_path_config *path, const qk_conv_geometry *geo, const int8_t *weight_oihw,
                          void *packed) {
    const qk_conv_blocking b = qk_conv_blocking_of(geo, path);
    if (b.taps == 9 && conv_blocked_pack_transposed(path, geo, weight_oihw, (uint8_t *)packed)) return;
    // Dense mode, or no memory for the transposed copy: the general walk. Packing only reads weight_oihw: the
    // traversal writes to it in the unpack direction alone.
    conv_blocked_traverse(path, geo, QK_PACK, (int8_t *)weight_oihw, (uint8_t *)packed);
}

void qk_conv_blocked_unpack(const qk_path_config *path, const qk_conv_geometry *geo, const void *packed,
                            int8_t *weight_oihw) {
    // Unpacking only reads the packed units.
    conv_blocked_traverse(path, geo, QK_UNPACK, weight_oihw, (uint8_t *)packed);
}

// The fully connected head uses the same layout: [block of `lanes` outputs][chunk of `depth` inputs][unit],
// then the block's trailer, in the units of qk_fc_packing.
size_t qk_fc_blocked_block_bytes(const qk_path_config *path, int32_t in_c) {
    const qk_pack_geometry *geometry = qk_fc_packing(path);
    const size_t chunks = (size_t)(in_c + geometry->depth - 1) / (size_t)geometry->depth;
    return chunks * (size_t)geometry->unit_bytes + (size_t)geometry->trailer_bytes;
}

size_t qk_fc_blocked_packed_size(const qk_path_config *path, int32_t in_c, int32_t out_c) {
    const size_t lanes = (size_t)qk_fc_packing(path)->lanes;
    const size_t blocks = ((size_t)out_c + lanes - 1) / lanes;
    return blocks * qk_fc_blocked_block_bytes(path, in_c);
}

static void fc_blocked_traverse(const qk_path_config *path, int32_t in_c, int32_t out_c,
                                qk_pack_direction direction, int8_t *weight, uint8_t *packed) {
    const qk_pack_geometry *geometry = qk_fc_packing(path);
    const int32_t lanes = geometry->lanes, depth = geometry->depth;
    const int32_t blocks = (out_c + lanes - 1) / lanes, chunks = (in_c + depth - 1) / depth;
    qk_unit_walk walk = {.geometry = geometry, .direction = direction, .next = packed};
    for (int32_t block = 0; block < blocks; block++) {
        int32_t lane_sums[QK_MAX_PACK_LANES] = {0};
        for (int32_t chunk = 0; chunk < chunks; chunk++) {
            unit_begin(&walk);
            for (int32_t lane = 0; lane < lanes; lane++) {
                const int32_t k = block * lanes + lane;
                if (k >= out_c) break;
                for (int32_t q = 0; q < depth && chunk * depth + q < in_c; q++)
                    lane_sums[lane] +=
                        move_weight(&walk, lane, q, &weight[(size_t)k * (size_t)in_c + (size_t)(chunk * depth + q)]);
            }
            unit_end(&walk);
        }
        trailers(&walk, lane_sums, 1);
    }
}

// One block of the head, fast: each lane of a unit is a run of `depth` contiguous weights of its output's
// row. `rows` holds the block's `present` rows of in_c weights; returns the byte after the block.
static uint8_t *fc_pack_block(const qk_pack_geometry *geometry, int32_t in_c, const int8_t *rows, int32_t present,
                              uint8_t *next) {
    const int32_t lanes = geometry->lanes, depth = geometry->depth, chunks = (in_c + depth - 1) / depth;
    int8_t weights[QK_MAX_PACK_LANES * QK_MAX_PACK_DEPTH];
    int32_t lane_sums[QK_MAX_PACK_LANES] = {0};  // lanes beyond the classes weigh 0
    for (int32_t lane = 0; geometry->trailer_bytes > 0 && lane < present; lane++)
        lane_sums[lane] = sum_of_weights(rows + (size_t)lane * (size_t)in_c, (size_t)in_c);
    for (int32_t chunk = 0; chunk < chunks; chunk++) {
        const int32_t valid = in_c - chunk * depth < depth ? in_c - chunk * depth : depth;
        // Lane-major units are gathered in place; others through the path's arrangement.
        int8_t *unit = geometry->units_are_lane_major ? (int8_t *)next : weights;
        for (int32_t lane = 0; lane < lanes; lane++) {
            int8_t *unit_lane = unit + lane * depth;
            if (lane >= present || valid < depth) memset(unit_lane, 0, (size_t)depth);
            if (lane >= present) continue;
            const int8_t *run = rows + (size_t)lane * (size_t)in_c + (size_t)chunk * (size_t)depth;
            if (valid == 4)
                __builtin_memcpy(unit_lane, run, 4);
            else
                memcpy(unit_lane, run, (size_t)valid);
        }
        if (!geometry->units_are_lane_major) geometry->pack_unit(weights, next);
        next += geometry->unit_bytes;
    }
    if (geometry->trailer_bytes > 0) {
        geometry->pack_trailer(lane_sums, next);
        next += geometry->trailer_bytes;
    }
    return next;
}

static int32_t block_rows(int32_t lanes, int32_t out_c, int32_t block) {
    return out_c - block * lanes < lanes ? out_c - block * lanes : lanes;
}

void qk_fc_blocked_pack(const qk_path_config *path, int32_t in_c, int32_t out_c, const int8_t *weight, void *packed) {
    const qk_pack_geometry *geometry = qk_fc_packing(path);
    const int32_t lanes = geometry->lanes, blocks = (out_c + lanes - 1) / lanes;
    uint8_t *next = packed;
    for (int32_t block = 0; block < blocks; block++)
        next = fc_pack_block(geometry, in_c, weight + (size_t)block * (size_t)lanes * (size_t)in_c,
                             block_rows(lanes, out_c, block), next);
}

// ---- Packing in place (a model load's weights read straight into their layer's packed region) ----
// The weights lie at the region's end. Each tile (block) is copied out before its packed bytes are written,
// and no tile packs into fewer bytes than its weights take, so the writes never reach weights not yet copied.

static bool units_hold_their_weights(const qk_pack_geometry *geometry) {
    return geometry->unit_bytes >= (size_t)geometry->lanes * (size_t)geometry->depth;
}

bool qk_conv_blocked_pack_in_place(const qk_path_config *path, const qk_conv_geometry *geo, void *packed,
                                   size_t region_bytes) {
    const qk_conv_blocking b = qk_conv_blocking_of(geo, path);
    const size_t weights = (size_t)geo->out_c * (size_t)geo->in_per_group * 9;
    // Only the tap-by-tap layout copies a tile out first; dense mode walks the weights in another order.
    if (b.taps != 9 || !units_hold_their_weights(&path->packing) || region_bytes < weights ||
        region_bytes < qk_conv_blocked_size(&b, geo))
        return false;
    if (packed == NULL) return true;
    return conv_blocked_pack_transposed(path, geo, (const int8_t *)packed + (region_bytes - weights), packed);
}

bool qk_fc_blocked_pack_in_place(const qk_path_config *path, int32_t in_c, int32_t out_c, void *packed,
                                 size_t region_bytes) {
    const qk_pack_geometry *geometry = qk_fc_packing(path);
    const int32_t lanes = geometry->lanes, blocks = (out_c + lanes - 1) / lanes;
    const size_t weights = (size_t)in_c * (size_t)out_c;
    if (!units_hold_their_weights(geometry) || region_bytes < weights ||
        region_bytes < qk_fc_blocked_packed_size(path, in_c, out_c))
        return false;
    if (packed == NULL) return true;
    int8_t *rows = malloc((size_t)lanes * (size_t)in_c);
    if (rows == NULL) return false;
    const int8_t *source = (const int8_t *)packed + (region_bytes - weights);
    uint8_t *next = packed;
    for (int32_t block = 0; block < blocks; block++) {
        const int32_t present = block_rows(lanes, out_c, block);
        memcpy(rows, source + (size_t)block * (size_t)lanes * (size_t)in_c, (size_t)present * (size_t)in_c);
        next = fc_pack_block(geometry, in_c, rows, present, next);
    }
    free(rows);
    return true;
}

void qk_fc_blocked_unpack(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                          int8_t *weight) {
    fc_blocked_traverse(path, in_c, out_c, QK_UNPACK, weight, (uint8_t *)packed);
}

// ---- Testing: the layout's generality beyond the paths in the table ----
// A synthetic geometry whose units hold the [lane][depth] weights as given and whose trailer, when asked
// for, holds each lane's weight sum as int32. Thread-local, since the unit functions take no size.
static _Thread_local int32_t testing_unit_bytes;
static _Thread_local int32_t testing_lanes;

static void testing_pack_unit(const int8_t *weights, uint8_t *unit) { memcpy(unit, weights, (size_t)testing_unit_bytes); }
static void testing_unpack_unit(const uint8_t *unit, int8_t *weights) { memcpy(weights, unit, (size_t)testing_unit_bytes); }
static void testing_pack_trailer(const int32_t *lane_sums, uint8_t *trailer) {
    memcpy(trailer, lane_sums, (size_t)testing_lanes * sizeof(int32_t));
}

int qk_testing_blocked_packing_round_trip(int32_t lanes, int32_t depth, int with_trailer, const qk_conv_shape *shape,
                                          const int8_t *weight_oihw) {
    if (lanes < 1 || lanes > QK_MAX_PACK_LANES || depth < 1 || depth > QK_MAX_PACK_DEPTH || weight_oihw == NULL ||
        !qk_conv_shape_is_valid(shape))
        return 0;
    testing_unit_bytes = lanes * depth;
    testing_lanes = lanes;
    qk_path_config config = {
        .name = "testing",
        .packing = {.lanes = lanes, .depth = depth, .unit_bytes = lanes * depth,
                    .trailer_bytes = with_trailer ? lanes * (int32_t)sizeof(int32_t) : 0, .pack_unit = testing_pack_unit,
                    .unpack_unit = testing_unpack_unit, .pack_trailer = with_trailer ? testing_pack_trailer : NULL},
        .conv = {.max_pixels = 4, .max_blocks = QK_MAX_TILE_LANES / lanes < 3 ? QK_MAX_TILE_LANES / lanes : 3,
                 .max_accumulators = 12},
    };
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    const size_t bytes = qk_conv_blocked_packed_size(&config, &geo);
    const size_t weights = (size_t)geo.out_c * (size_t)geo.in_per_group * 9;
    uint8_t *packed = malloc(bytes);
    int8_t *unpacked = malloc(weights);
    int holds = packed != NULL && unpacked != NULL;
    if (holds) {
        memset(packed, 0xA5, bytes);
        qk_conv_blocked_pack(&config, &geo, weight_oihw, packed);
        qk_conv_blocked_unpack(&config, &geo, packed, unpacked);
        holds = memcmp(unpacked, weight_oihw, weights) == 0;
    }
    // Each tile's trailers follow its units, one per block, holding the sum of each output channel's weights.
    const qk_conv_blocking b = qk_conv_blocking_of(&geo, &config);
    for (int32_t g = 0; holds && with_trailer && g < geo.groups; g++) {
        for (int32_t tile = 0; holds && tile < b.tiles_per_group; tile++) {
            const int32_t first_block = qk_tile_first_block(&b, tile), blocks = qk_tile_blocks(&b, tile);
            const uint8_t *trailer = qk_conv_tile_weights(packed, &b, g, tile) +
                                     (size_t)blocks * (size_t)b.taps * (size_t)b.chunks * (size_t)b.unit_bytes;
            for (int32_t block = 0; holds && block < blocks; block++, trailer += config.packing.trailer_bytes) {
                for (int32_t lane = 0; lane < lanes; lane++) {
                    const int32_t o = (first_block + block) * lanes + lane;
                    int32_t expected = 0, stored;
                    for (int32_t i = 0; o < geo.out_per_group && i < geo.in_per_group * 9; i++)
                        expected += weight_oihw[((size_t)g * geo.out_per_group + (size_t)o) * (size_t)geo.in_per_group * 9 + (size_t)i];
                    memcpy(&stored, trailer + lane * sizeof(int32_t), sizeof stored);
                    if (stored != expected) holds = 0;
                }
            }
        }
    }
    free(packed);
    free(unpacked);
    return holds;
}
