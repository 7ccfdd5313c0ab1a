// AVX2 fully connected head: one block of 8 logits, int16 operands and vpmaddwd (units as in avx2.h).
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

QK_TARGET_AVX2
void qk_fc_u8s16_c8_avx2(const qk_fc_block *block) {
    __m256i acc = _mm256_setzero_si256();
    for (int32_t k = 0; k < block->chunks; k++) {
        __m256i even, odd;
        qk_split_chunk(_mm256_set1_epi32(qk_load_u32(block->input + 4 * k)), &even, &odd);
        const uint8_t *unit = block->weights + (size_t)k * QK_AVX2_UNIT_BYTES;
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(even, _mm256_loadu_si256((const __m256i *)unit)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(odd, _mm256_loadu_si256((const __m256i *)(unit + 32))));
    }
    const int32_t valid = block->outputs < 8 ? block->outputs : 8;
    __m256 t = _mm256_cvtepi32_ps(_mm256_add_epi32(acc, qk_load8_epi32(block->bias, valid)));
    t = _mm256_mul_ps(t, qk_load8_ps(block->multiplier, valid));
    float lanes[8];
    _mm256_storeu_ps(lanes, t);
    memcpy(block->logits, lanes, (size_t)valid * sizeof(float));
}

#endif
