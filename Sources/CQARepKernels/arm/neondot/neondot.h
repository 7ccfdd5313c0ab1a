// The dot-product path (ARMv8.2 FEAT_DotProd, Cortex-A55/A76 and later): sdot multiplies s8 by s8 only,
// so every u8 input x enters as x - 128 (an eor with 0x80), and each output channel gets back
// 128 * (sum of its weights) exactly: sum((x - 128) * w) + 128 * sum(w) = sum(x * w). The correction is the
// block trailer (8 int32 per block, written at packing time from the weights alone), added to the bias when
// the accumulators start. It holds at padded taps too: they read the pad values (layer 0's input zero
// point), which are shifted like any input, and the correction covers every weight of the 9 taps.
// A block is 8 output channels (two int32x4 accumulators), a chunk 4 input channels; the unit is the natural
// [lane][4] order that sdot's 4-byte groups want (32 bytes). Each pixel loads and shifts 16 input bytes once
// per 4 chunks and multiplies them by element.
#ifndef QK_NEONDOT_H
#define QK_NEONDOT_H

#include "arm/neon/neon.h"

enum { QK_NEONDOT_LANES = 8, QK_NEONDOT_DEPTH = 4, QK_NEONDOT_UNIT_BYTES = 32, QK_NEONDOT_TRAILER_BYTES = 32 };
// Conv tiles: up to 12 pixel-blocks, i.e. 8 x 1, 6 x 2 or 4 x 3 (at most 24 accumulator registers).
enum { QK_NEONDOT_MAX_PIXELS = 8, QK_NEONDOT_MAX_BLOCKS = 3, QK_NEONDOT_MAX_ACCUMULATORS = 12 };

extern const qk_conv_tile_fn qk_conv3x3_u8s8_4x3c8_neondot[QK_NEONDOT_MAX_PIXELS * QK_NEONDOT_MAX_BLOCKS];
void qk_fc_u8s8_c8_neondot(const qk_fc_block *block);

#endif  // QK_NEONDOT_H
