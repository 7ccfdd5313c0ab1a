// The AVX2 path, exact: vpmaddubsw would saturate its int16 pair sums (255 * 127 * 2 > 32767), so inputs
// and weights are both used as int16 and multiplied with vpmaddwd, whose int32 pair sums are exact.
// A block is 8 output channels (one ymm of int32) and a chunk 4 input channels. Inputs are widened to int16
// and broadcast a pair at a time, so the unit holds the chunk's weights as int16 pairs in the same order:
// [pair 0..1][lane 0..7][2], pair 0 holding channels (0, 1), pair 1 (2, 3).
#ifndef QK_AVX2_H
#define QK_AVX2_H

#include "x86/x86.h"

enum { QK_AVX2_LANES = 8, QK_AVX2_DEPTH = 4, QK_AVX2_UNIT_BYTES = 64 };
// Conv tiles: up to 4 pixels x 2 blocks, or 6 pixels x 1 block (8 accumulators).
enum { QK_AVX2_MAX_PIXELS = 6, QK_AVX2_MAX_BLOCKS = 2, QK_AVX2_MAX_ACCUMULATORS = 8 };

extern const qk_conv_tile_fn qk_conv3x3_u8s16_4x2c8_avx2[QK_AVX2_MAX_PIXELS * QK_AVX2_MAX_BLOCKS];
void qk_fc_u8s16_c8_avx2(const qk_fc_block *block);
void qk_gavgpool_u8_c32_avx2_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                   float multiplier, uint8_t *output, const qk_team *team);

#endif  // QK_AVX2_H
