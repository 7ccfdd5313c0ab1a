// The AVX2 path, exact: vpmaddubsw would saturate its int16 pair sums (255 * 127 * 2 > 32767), so inputs
// and weights are both used as int16 and multiplied with vpmaddwd, whose int32 pair sums are exact.
// A block is 8 output channels (one ymm of int32), a chunk 4 input channels broadcast as one dword, and
// the unit holds the chunk's weights as int16 in the even/odd arrangement the microkernels split the
// input into: [half 0..1][lane 0..7][2], half 0 holding channels (0, 2), half 1 (1, 3).
#ifndef QK_AVX2_H
#define QK_AVX2_H

#include "x86/x86.h"

enum { QK_AVX2_LANES = 8, QK_AVX2_DEPTH = 4, QK_AVX2_UNIT_BYTES = 64 };
// Conv tiles: up to 4 pixels x 3 blocks.
enum { QK_AVX2_MAX_PIXELS = 4, QK_AVX2_MAX_BLOCKS = 3 };

extern const qk_conv_tile_fn qk_conv3x3_u8s16_4x3c8_avx2[QK_AVX2_MAX_PIXELS * QK_AVX2_MAX_BLOCKS];
void qk_fc_u8s16_c8_avx2(const qk_fc_block *block);
void qk_gavgpool_u8_c32_avx2_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                   float multiplier, uint8_t *output, const qk_team *team);

#endif  // QK_AVX2_H
