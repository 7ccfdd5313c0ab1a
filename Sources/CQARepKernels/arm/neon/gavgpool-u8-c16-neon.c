// NEON global average pool, shared by every ARM path: 16 channels per step, widened to int32 and summed
// over the pixels; the last < 16 channels go through the scalar code, which does the same arithmetic.
#include "arm/neon/neon.h"

#if QK_HAVE_ARM64

enum { POOL_CHANNELS = 16 };

static void pool_step(int32_t pixels, int32_t channels, const uint8_t *image, int32_t first, float multiplier,
                      uint8_t *out) {
    uint32x4_t sum[4] = {vdupq_n_u32(0), vdupq_n_u32(0), vdupq_n_u32(0), vdupq_n_u32(0)};
    for (int32_t p = 0; p < pixels; p++) {
        const uint8x16_t x = vld1q_u8(image + (size_t)p * channels + first);
        const uint16x8_t low = vmovl_u8(vget_low_u8(x)), high = vmovl_high_u8(x);
        sum[0] = vaddw_u16(sum[0], vget_low_u16(low));
        sum[1] = vaddw_high_u16(sum[1], low);
        sum[2] = vaddw_u16(sum[2], vget_low_u16(high));
        sum[3] = vaddw_high_u16(sum[3], high);
    }
    // The entry points bound pixels * 255 below 2^31, so the sums fit int32, as the scalar code's do.
    const float32x4_t m = vdupq_n_f32(multiplier);
    const uint8x8_t low = qk_arm_requantize8(vreinterpretq_s32_u32(sum[0]), vreinterpretq_s32_u32(sum[1]), m, m);
    const uint8x8_t high = qk_arm_requantize8(vreinterpretq_s32_u32(sum[2]), vreinterpretq_s32_u32(sum[3]), m, m);
    vst1q_u8(out + first, vcombine_u8(low, high));
}

void qk_gavgpool_u8_c16_neon_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                   float multiplier, uint8_t *output, const qk_team *team) {
    const int32_t steps = channels / POOL_CHANNELS + 1;  // the last step is the scalar tail, maybe empty
    const int64_t items = (int64_t)batch * steps;
    int64_t first_item, end_item;
    qk_team_share(team, items, &first_item, &end_item);
    for (int64_t item = first_item; item < end_item; item++) {
        const int32_t n = (int32_t)(item / steps), first = (int32_t)(item % steps) * POOL_CHANNELS;
        const uint8_t *image = input + (size_t)n * pixels * channels;
        uint8_t *out = output + (size_t)n * channels;
        if (first + POOL_CHANNELS > channels)
            qk_avgpool_channels_scalar(image, pixels, channels, first, channels, multiplier, out);
        else
            pool_step(pixels, channels, image, first, multiplier, out);
    }
}
#endif
