// The i8mm path (FEAT_I8MM: Neoverse V1/V2/N2, Cortex-A510/A710 and later, Apple M2+): usmmla multiplies a
// 2x8 matrix of u8 by an 8x2 matrix of s8 into a 2x2 int32 block, so u8 activations and s8 weights meet
// directly, with no shift and no correction. The two rows of the u8 matrix are two output pixels' 8-channel
// chunks; the two columns of the s8 matrix are two output channels' 8 weights. A block is 8 output channels,
// i.e. 4 channel pairs, and a pixel pair's accumulators for a block are 4 int32x4 holding
// (pixel 0, lane 2r), (pixel 0, lane 2r + 1), (pixel 1, lane 2r), (pixel 1, lane 2r + 1). The unit is the
// natural [lane][8] order (64 bytes): 16 bytes are one channel pair, as usmmla wants its second operand.
// Each pixel loads 16 bytes (2 chunks) at once and a zip of two pixels' loads makes both chunks' rows.
#ifndef QK_I8MM_H
#define QK_I8MM_H

#include "arm/neon/neon.h"

enum { QK_I8MM_LANES = 8, QK_I8MM_DEPTH = 8, QK_I8MM_UNIT_BYTES = 64 };
// Conv tiles: up to 12 pixel-blocks (24 accumulator registers): 8 x 1, 6 x 2 or 4 x 3. An odd pixel count
// pairs its last pixel with itself and discards the copy.
enum { QK_I8MM_MAX_PIXELS = 8, QK_I8MM_MAX_BLOCKS = 3, QK_I8MM_MAX_ACCUMULATORS = 12 };

extern const qk_conv_tile_fn qk_conv3x3_u8s8_4x3c8_i8mm[QK_I8MM_MAX_PIXELS * QK_I8MM_MAX_BLOCKS];
void qk_fc_u8s8_c8_i8mm(const qk_fc_block *block);

#endif  // QK_I8MM_H
