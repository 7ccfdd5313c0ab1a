// NEON fully connected head: one block of 8 logits, int16 operands and smlal/smlal2 by element (units as in
// neon.h). Two sets of accumulators for even and odd chunks halve the dependency chains.
#include "arm/neon/neon.h"

#if QK_HAVE_ARM64

#define FC_CHANNEL(set, q)                                                              \
    do {                                                                                \
        const int16x8_t wq = vld1q_s16((const int16_t *)unit + (q) * QK_NEON_LANES);    \
        acc[set][0] = vmlal_laneq_s16(acc[set][0], vget_low_s16(wq), x, (q));           \
        acc[set][1] = vmlal_high_laneq_s16(acc[set][1], wq, x, (q));                    \
    } while (0)
#define FC_CHUNK(set)                                                                                   \
    FC_CHANNEL(set, 0); FC_CHANNEL(set, 1); FC_CHANNEL(set, 2); FC_CHANNEL(set, 3);                     \
    FC_CHANNEL(set, 4); FC_CHANNEL(set, 5); FC_CHANNEL(set, 6); FC_CHANNEL(set, 7)

void qk_fc_u8s16_c8_neon(const qk_fc_block *block) {
    int32x4_t acc[2][2] = {{vdupq_n_s32(0), vdupq_n_s32(0)}, {vdupq_n_s32(0), vdupq_n_s32(0)}};
    for (int32_t k = 0; k < block->chunks; k++) {
        const int16x8_t x = vreinterpretq_s16_u16(vmovl_u8(vld1_u8(block->input + 8 * k)));
        const uint8_t *unit = block->weights + (size_t)k * QK_NEON_UNIT_BYTES;
        if (k & 1) {
            FC_CHUNK(1);
        } else {
            FC_CHUNK(0);
        }
    }
    qk_arm_fc_logits8(vaddq_s32(acc[0][0], acc[1][0]), vaddq_s32(acc[0][1], acc[1][1]), block);
}
#endif
