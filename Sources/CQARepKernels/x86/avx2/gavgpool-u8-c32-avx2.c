// AVX2 global average pool: 32 channels per step; the last < 32 channels go through the scalar code,
// which does the same arithmetic.
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

enum { POOL_CHANNELS = 32 };

// OpenMP's outlined loop body does not inherit target attributes, so the SIMD work is a separate function.
QK_TARGET_AVX2
static void pool_step(int32_t pixels, int32_t channels, const uint8_t *image, int32_t first, float multiplier,
                      uint8_t *out) {
    __m256i sum[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                      _mm256_setzero_si256()};
    for (int32_t p = 0; p < pixels; p++) {
        const uint8_t *x = image + (size_t)p * channels + first;
        for (int q = 0; q < 4; q++)
            sum[q] = _mm256_add_epi32(sum[q], _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(x + 8 * q))));
    }
    const __m256 m = _mm256_set1_ps(multiplier);
    for (int q = 0; q < 4; q++) qk_requantize8_store(sum[q], _mm256_setzero_si256(), m, out + first + 8 * q, 8);
}

void qk_gavgpool_u8_c32_avx2_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
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
