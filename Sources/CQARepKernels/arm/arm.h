// aarch64 helpers shared by the ARM paths: CPU checks, target attributes, and the NEON form of the exact
// requantization. Every function that uses an extension beyond ARMv8.0 (dot product, i8mm) carries its
// own target attribute, so the library still runs on any ARMv8.0 core.
#ifndef QK_ARM_H
#define QK_ARM_H

#include "driver/blocked.h"

// Linux's hwcap bits (arch/arm64/include/uapi/asm/hwcap.h), as getauxval(AT_HWCAP / AT_HWCAP2) reports them;
// /proc/cpuinfo's "Features" names them asimd, asimddp and i8mm.
enum { QK_ARM_HWCAP_ASIMD = 1 << 1, QK_ARM_HWCAP_ASIMDDP = 1 << 20 };
enum { QK_ARM_HWCAP2_I8MM = 1 << 13 };
// Whether the CPU has every bit of `hwcap` and of `hwcap2` (cpu-arm.c).
bool qk_arm_has(unsigned long hwcap, unsigned long hwcap2);

#if QK_HAVE_ARM64
#include <arm_neon.h>
#include <string.h>

// gcc declares the intrinsics under "arch=armv8.2-a+dotprod" and "arch=armv8.2-a+i8mm" (arm_neon.h), and
// inlines them only into functions with at least those options; clang accepts the same spelling. Both
// extensions exist only on ARMv8.2 cores and later, so the ARMv8.2 baseline these functions may assume
// holds wherever they run.
#define QK_TARGET_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))
#define QK_TARGET_I8MM __attribute__((target("arch=armv8.2-a+i8mm")))
#define QK_INLINE static inline __attribute__((always_inline))
// Tile loops run over compile-time pixel and block counts; unrolled, their accumulator arrays live in
// registers. (gcc ignores clang's loop pragmas; both read this one.)
#define QK_UNROLL _Pragma("GCC unroll 16")

// Prefetches into L2 for the next work item (see qk_conv_tile).
QK_INLINE void qk_arm_prefetch_l2(const void *address) { __builtin_prefetch(address, 0, 2); }

// Up to 4 int32 or float values without reading past `valid` (bias and multiplier arrays carry no slack);
// missing lanes are zero, and valid <= 0 gives zeros.
QK_INLINE int32x4_t qk_arm_load4_s32(const int32_t *p, int32_t valid) {
    if (valid >= 4) return vld1q_s32(p);
    int32_t lanes[4] = {0, 0, 0, 0};
    if (valid > 0) memcpy(lanes, p, (size_t)valid * sizeof(int32_t));
    return vld1q_s32(lanes);
}

QK_INLINE float32x4_t qk_arm_load4_f32(const float *p, int32_t valid) {
    if (valid >= 4) return vld1q_f32(p);
    float lanes[4] = {0, 0, 0, 0};
    if (valid > 0) memcpy(lanes, p, (size_t)valid * sizeof(float));
    return vld1q_f32(lanes);
}

// The scalar qk_requantize on eight lanes whose sums already hold the bias: scvtf (round to nearest even,
// like the C conversion), fmul, then fcvtns (round half to even) and two saturating narrowings. The
// narrowings stand in for the float clamps: fcvtns saturates to the int32 range instead of overflowing
// (unlike x86's cvtps2dq), rounding is monotonic and both bounds are integers, so
// sat_u8(round(t)) == round(min(max(t, 0), 255)) for every float t, multipliers of 1 and more included.
QK_INLINE uint8x8_t qk_arm_requantize8(int32x4_t low, int32x4_t high, float32x4_t multiplier_low,
                                       float32x4_t multiplier_high) {
    const int32x4_t rounded_low = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(low), multiplier_low));
    const int32x4_t rounded_high = vcvtnq_s32_f32(vmulq_f32(vcvtq_f32_s32(high), multiplier_high));
    return vqmovn_u16(vcombine_u16(vqmovun_s32(rounded_low), vqmovun_s32(rounded_high)));
}

// Stores `valid` (1..8) of the bytes: a partial block must not touch the next tile's channels, which
// another thread may be writing.
QK_INLINE void qk_arm_store8(uint8_t *out, uint8x8_t bytes, int32_t valid) {
    if (valid >= 8) {
        vst1_u8(out, bytes);
    } else {
        uint8_t lanes[8];
        vst1_u8(lanes, bytes);
        memcpy(out, lanes, (size_t)valid);
    }
}

// The tap's share of the tile's L2 prefetches (see qk_conv_tile).
QK_INLINE void qk_arm_prefetch_tap(const qk_conv_tile *tile, int32_t tap) {
    if (tile->prefetch_lines_per_tap <= 0) return;
    const char *lines = (const char *)tile->prefetch + (size_t)(tap - tile->first_tap) * tile->prefetch_lines_per_tap * 64;
    for (int32_t i = 0; i < tile->prefetch_lines_per_tap; i++) qk_arm_prefetch_l2(lines + 64 * i);
}

// Pixel tiles of up to 8 pixels (9 rows, for pair kernels' spare row) x 3 blocks of 8 lanes, as two int32x4.
enum { QK_ARM_LANES = 8, QK_ARM_MAX_BLOCKS = 3 };
typedef int32x4_t qk_arm_sums[QK_MAX_TILE_PIXELS + 1][QK_ARM_MAX_BLOCKS][2];

// The end of a microkernel call on 8-lane blocks, sums[pixel][block][half] holding acc + bias: the sums
// back to the partial buffer when more tap slices follow, else the requantized bytes to the output.
QK_INLINE void qk_arm_finish_tile(const qk_conv_args *args, const qk_conv_blocking *b, const qk_conv_tile *tile,
                                  qk_arm_sums sums, const int pixels, const int blocks) {
    const qk_conv_geometry *geo = &args->geo;
    const int32_t first_out = tile->group * geo->out_per_group;
    const int32_t first_lane = tile->first_block * QK_ARM_LANES;  // within the group
    if (tile->first_tap + tile->taps < b->taps) {
        const int32_t partial_stride = b->blocks_per_tile * QK_ARM_LANES;
        QK_UNROLL for (int p = 0; p < pixels; p++)
            QK_UNROLL for (int j = 0; j < blocks; j++)
                QK_UNROLL for (int h = 0; h < 2; h++)
                    vst1q_s32(tile->partial + p * partial_stride + j * QK_ARM_LANES + 4 * h, sums[p][j][h]);
        return;
    }
    uint8_t *out = args->output +
                   (((size_t)tile->image * geo->out_h + tile->out_y) * geo->out_w + tile->out_x) * geo->out_c +
                   first_out + first_lane;
    QK_UNROLL for (int j = 0; j < blocks; j++) {
        const int32_t valid = geo->out_per_group - first_lane - j * QK_ARM_LANES;
        const float *multiplier = args->multiplier + first_out + first_lane + j * QK_ARM_LANES;
        const float32x4_t m_low = qk_arm_load4_f32(multiplier, valid), m_high = qk_arm_load4_f32(multiplier + 4, valid - 4);
        QK_UNROLL for (int p = 0; p < pixels; p++)
            qk_arm_store8(out + (size_t)p * geo->out_c + j * QK_ARM_LANES,
                          qk_arm_requantize8(sums[p][j][0], sums[p][j][1], m_low, m_high), valid);
    }
}

// Logits of one fc block of 8 outputs: (float)(sum + bias) * multiplier, `valid` of them stored.
QK_INLINE void qk_arm_fc_logits8(int32x4_t sum_low, int32x4_t sum_high, const qk_fc_block *block) {
    const int32_t valid = block->outputs < 8 ? block->outputs : 8;
    float logits[8];
    vst1q_f32(logits, vmulq_f32(vcvtq_f32_s32(vaddq_s32(sum_low, qk_arm_load4_s32(block->bias, valid))),
                                qk_arm_load4_f32(block->multiplier, valid)));
    vst1q_f32(logits + 4, vmulq_f32(vcvtq_f32_s32(vaddq_s32(sum_high, qk_arm_load4_s32(block->bias + 4, valid - 4))),
                                    qk_arm_load4_f32(block->multiplier + 4, valid - 4)));
    memcpy(block->logits, logits, (size_t)valid * sizeof(float));
}
#endif

#endif  // QK_ARM_H
