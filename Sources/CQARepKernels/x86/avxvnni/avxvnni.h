// The AVX-VNNI path, for x86 CPUs with VEX-encoded 256-bit vpdpbusd and no AVX-512 (Alder Lake and later,
// N100/N305, Zen 5 desktops): the arithmetic of the AVX-512 VNNI path on ymm. vpdpbusd multiplies a
// broadcast chunk of 4 input channels (u8) by the 8 x 4 weights (s8) of a block of 8 output channels,
// exactly (int32 sums of four products cannot overflow); the unit is the natural [lane][4] order, 32 bytes.
//
// Every source of this folder compiles twice: as the path itself (VEX vpdpbusd, target avxvnni), and, from
// the *-evex.c files, as its "EVEX twin" (QK_AVXVNNI_EVEX_TWIN: the same 256-bit instruction EVEX-encoded,
// target avx512vnni + avx512vl), a test-only path that runs the same C on CPUs with AVX-512 VNNI but not
// AVX-VNNI (docs/architecture.md, "Test-only paths").
#ifndef QK_AVXVNNI_H
#define QK_AVXVNNI_H

#include "x86/x86.h"

enum { QK_AVXVNNI_LANES = 8, QK_AVXVNNI_DEPTH = 4, QK_AVXVNNI_UNIT_BYTES = 32 };
// Conv tiles within 12 ymm accumulators, leaving registers for a block's weights and a broadcast:
// 8 pixels x 1 block, 6 x 2, 4 x 3, 3 x 4.
enum { QK_AVXVNNI_MAX_PIXELS = 8, QK_AVXVNNI_MAX_BLOCKS = 4, QK_AVXVNNI_MAX_ACCUMULATORS = 12 };

#ifdef QK_AVXVNNI_EVEX_TWIN
#define QK_AVXVNNI_SYMBOL(name) name##_evex
#define QK_TARGET_AVXVNNI __attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni")))
#define qk_avxvnni_dpbusd _mm256_dpbusd_epi32
#else
#define QK_AVXVNNI_SYMBOL(name) name
#define QK_TARGET_AVXVNNI __attribute__((target("avx2,fma,avxvnni")))
#define qk_avxvnni_dpbusd _mm256_dpbusd_avx_epi32
#endif

#define qk_conv3x3_u8s8_6x2c8_avxvnni QK_AVXVNNI_SYMBOL(qk_conv3x3_u8s8_6x2c8_avxvnni)
#define qk_fc_u8s8_c8_avxvnni QK_AVXVNNI_SYMBOL(qk_fc_u8s8_c8_avxvnni)

extern const qk_conv_tile_fn qk_conv3x3_u8s8_6x2c8_avxvnni[QK_AVXVNNI_MAX_PIXELS * QK_AVXVNNI_MAX_BLOCKS];
void qk_fc_u8s8_c8_avxvnni(const qk_fc_block *block);

#endif  // QK_AVXVNNI_H
