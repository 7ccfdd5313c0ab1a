// The AVX-512 VNNI path: vpdpbusd multiplies a broadcast chunk of 4 input channels (u8) by the 16 x 4
// weights (s8) of a block of 16 output channels, exactly (int32 sums of four products cannot overflow).
// The unit is the natural [lane][4] order vpdpbusd wants, 64 bytes.
#ifndef QK_AVX512VNNI_H
#define QK_AVX512VNNI_H

#include "x86/x86.h"

enum { QK_VNNI_LANES = 16, QK_VNNI_DEPTH = 4, QK_VNNI_UNIT_BYTES = 64 };
// Conv tiles: up to 24 zmm accumulators, 8 pixels x 3 blocks or 6 pixels x 4 blocks.
enum { QK_VNNI_MAX_PIXELS = 8, QK_VNNI_MAX_BLOCKS = 4, QK_VNNI_MAX_ACCUMULATORS = 24 };

extern const qk_conv_tile_fn qk_conv3x3_u8s8_8x3c16_avx512vnni[QK_VNNI_MAX_PIXELS * QK_VNNI_MAX_BLOCKS];
void qk_fc_u8s8_c16_avx512vnni(const qk_fc_block *block);

#endif  // QK_AVX512VNNI_H
