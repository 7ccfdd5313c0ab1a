// AVX-512 global average pool: 64 channels per step, widened to int32 and summed over the pixels. It needs
// only AVX-512BW, so the VNNI path runs it too.
#include "x86/avx512bw/avx512bw.h"

#if QK_HAVE_X86

enum { POOL_CHANNELS = 64 };

// OpenMP's outlined loop body does not inherit target attributes, so the SIMD work is a separate function.
QK_TARGET_AVX512
static void pool_step(int32_t pixels, int32_t channels, const uint8_t *image, int32_t first, float multiplier,
                      uint8_t *image_out) {
    const int32_t valid = channels - first < POOL_CHANNELS ? channels - first : POOL_CHANNELS;
    __mmask16 masks[4];
    for (int q = 0; q < 4; q++) masks[q] = valid > q * 16 ? qk_lane_mask16(valid - q * 16) : 0;
    const uint8_t *x = image + first;
    __m512i sum[4] = {_mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                      _mm512_setzero_si512()};
    for (int32_t p = 0; p < pixels; p++) {
        const uint8_t *pixel = x + (size_t)p * channels;
        for (int q = 0; q < 4; q++)
            sum[q] = _mm512_add_epi32(sum[q], _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(masks[q], pixel + q * 16)));
    }
    uint8_t *out = image_out + first;
    const __m512 m = _mm512_set1_ps(multiplier);
    for (int q = 0; q < 4 && q * 16 < valid; q++)
        _mm_mask_storeu_epi8(out + q * 16, qk_lane_mask16(valid - q * 16),
                             qk_requantize16(sum[q], _mm512_setzero_si512(), m));
}

void qk_gavgpool_u8_c64_avx512bw_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                       float multiplier, uint8_t *output, const qk_team *team) {
    const int32_t steps = (channels + POOL_CHANNELS - 1) / POOL_CHANNELS;
    const int64_t items = (int64_t)batch * steps;
    int64_t first_item, end_item;
    qk_team_share(team, items, &first_item, &end_item);
    for (int64_t item = first_item; item < end_item; item++) {
        const int32_t n = (int32_t)(item / steps);
        const int32_t first = (int32_t)(item % steps) * POOL_CHANNELS;
        pool_step(pixels, channels, input + (size_t)n * pixels * channels, first, multiplier,
                  output + (size_t)n * channels);
    }
}
#endif
