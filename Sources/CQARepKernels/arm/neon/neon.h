// The NEON path, for any ARMv8.0 core: u8 x s8 products do not fit int8 arithmetic, so both sides are used
// as int16 and multiplied with smlal/smlal2 by element (int16 x int16 -> int32, exact). A block is 8 output
// channels (two int32x4 accumulators), a chunk 8 input channels, widened once per pixel with uxtl; the unit
// holds the chunk's weights as int16 in [channel 0..7][lane 0..7] order, so that one 16-byte load gives the
// 8 lanes' weights of one input channel, multiplied by that channel's input element.
#ifndef QK_NEON_H
#define QK_NEON_H

#include "arm/arm.h"
#include "driver/winograd.h"

enum { QK_NEON_LANES = 8, QK_NEON_DEPTH = 8, QK_NEON_UNIT_BYTES = 128 };
// Conv tiles: up to 4 pixels x 3 blocks (24 accumulators of the 32 vector registers).
enum { QK_NEON_MAX_PIXELS = 4, QK_NEON_MAX_BLOCKS = 3 };

extern const qk_conv_tile_fn qk_conv3x3_u8s16_4x3c8_neon[QK_NEON_MAX_PIXELS * QK_NEON_MAX_BLOCKS];
extern const qk_winograd_kernels qk_winograd_u8s16_4x3c8_neon;
void qk_fc_u8s16_c8_neon(const qk_fc_block *block);
// The global average pool of every ARM path (plain ARMv8.0 NEON: widening adds).
void qk_gavgpool_u8_c16_neon_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                   float multiplier, uint8_t *output, const qk_team *team);

#endif  // QK_NEON_H
