// i8mm fully connected head: one block of 8 logits of one image. usmmla takes two rows; with one image both
// rows are its chunk and the second row's results are dropped. Two sets of accumulators (even and odd
// chunks) halve the dependency chains.
#include "arm/i8mm/i8mm.h"

#if QK_HAVE_ARM64

QK_TARGET_I8MM
void qk_fc_u8s8_c8_i8mm(const qk_fc_block *block) {
    int32x4_t acc[2][4];
    for (int s = 0; s < 2; s++)
        for (int r = 0; r < 4; r++) acc[s][r] = vdupq_n_s32(0);
    for (int32_t k = 0; k < block->chunks; k++) {
        uint64_t chunk;
        memcpy(&chunk, block->input + 8 * k, sizeof chunk);  // bytes past in_c (slack) meet zero weights
        const uint8x16_t rows = vreinterpretq_u8_u64(vdupq_n_u64(chunk));
        const int8_t *unit = (const int8_t *)block->weights + (size_t)k * QK_I8MM_UNIT_BYTES;
        const int s = k & 1;
        for (int r = 0; r < 4; r++) acc[s][r] = vusmmlaq_s32(acc[s][r], rows, vld1q_s8(unit + 16 * r));
    }
    int64x2_t pairs[4];
    for (int r = 0; r < 4; r++) pairs[r] = vreinterpretq_s64_s32(vaddq_s32(acc[0][r], acc[1][r]));
    qk_arm_fc_logits8(vreinterpretq_s32_s64(vzip1q_s64(pairs[0], pairs[1])),
                      vreinterpretq_s32_s64(vzip1q_s64(pairs[2], pairs[3])), block);
}
#endif
