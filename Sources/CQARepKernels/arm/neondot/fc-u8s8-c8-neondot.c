// Dot-product fully connected head: one block of 8 logits; 16 shifted input bytes per 4 chunks, two sets
// of accumulators (even and odd chunks), started from 128 * sum(w) (the block's trailer).
#include "arm/neondot/neondot.h"

#if QK_HAVE_ARM64

#define FC_CHUNK(set, c)                                                                                         \
    do {                                                                                                         \
        const int8_t *unit = (const int8_t *)block->weights + (size_t)(k + (c)) * QK_NEONDOT_UNIT_BYTES;         \
        acc[set][0] = vdotq_laneq_s32(acc[set][0], vld1q_s8(unit), x, (c));                                      \
        acc[set][1] = vdotq_laneq_s32(acc[set][1], vld1q_s8(unit + 16), x, (c));                                 \
    } while (0)

QK_TARGET_DOTPROD
void qk_fc_u8s8_c8_neondot(const qk_fc_block *block) {
    const int32_t *trailer = (const int32_t *)(block->weights + (size_t)block->chunks * QK_NEONDOT_UNIT_BYTES);
    int32x4_t acc[2][2] = {{vld1q_s32(trailer), vld1q_s32(trailer + 4)}, {vdupq_n_s32(0), vdupq_n_s32(0)}};
    const uint8x16_t shift = vdupq_n_u8(0x80);
    int32_t k = 0;
    for (; k + 4 <= block->chunks; k += 4) {
        const int8x16_t x = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(block->input + 4 * k), shift));
        FC_CHUNK(0, 0);
        FC_CHUNK(1, 1);
        FC_CHUNK(0, 2);
        FC_CHUNK(1, 3);
    }
    if (k < block->chunks) {
        // The input carries QK_EXTRA_BYTES of slack; bytes past in_c meet zero weights.
        const int8x16_t x = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(block->input + 4 * k), shift));
        FC_CHUNK(0, 0);
        if (k + 1 < block->chunks) FC_CHUNK(1, 1);
        if (k + 2 < block->chunks) FC_CHUNK(0, 2);
    }
    qk_arm_fc_logits8(vaddq_s32(acc[0][0], acc[1][0]), vaddq_s32(acc[0][1], acc[1][1]), block);
}
#endif
