// AVX-VNNI fully connected head: a matrix-vector product per image, 8 outputs per ymm. Integer sums are
// exact in any order, so the chunks are spread over 8 accumulators, as on the AVX-512 VNNI path.
#include "x86/avxvnni/avxvnni.h"

#if QK_HAVE_X86

enum { FC_CHAINS = 8 };

QK_TARGET_AVXVNNI
void qk_fc_u8s8_c8_avxvnni(const qk_fc_block *block) {
    const uint8_t *x = block->input, *w = block->weights;
    __m256i acc[FC_CHAINS];
#pragma clang loop unroll(full)
    for (int c = 0; c < FC_CHAINS; c++) acc[c] = _mm256_setzero_si256();
    int32_t k = 0;
    for (; k + FC_CHAINS <= block->chunks; k += FC_CHAINS) {
#pragma clang loop unroll(full)
        for (int c = 0; c < FC_CHAINS; c++)
            acc[c] = qk_avxvnni_dpbusd(acc[c], _mm256_set1_epi32(qk_load_u32(x + 4 * (k + c))),
                                       _mm256_loadu_si256((const __m256i *)(w + (size_t)(k + c) * QK_AVXVNNI_UNIT_BYTES)));
    }
    for (int c = 0; k < block->chunks; k++, c++)
        acc[c] = qk_avxvnni_dpbusd(acc[c], _mm256_set1_epi32(qk_load_u32(x + 4 * k)),
                                   _mm256_loadu_si256((const __m256i *)(w + (size_t)k * QK_AVXVNNI_UNIT_BYTES)));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3])),
                                         _mm256_add_epi32(_mm256_add_epi32(acc[4], acc[5]), _mm256_add_epi32(acc[6], acc[7])));
    const int32_t valid = block->outputs < QK_AVXVNNI_LANES ? block->outputs : QK_AVXVNNI_LANES;
    __m256 t = _mm256_cvtepi32_ps(_mm256_add_epi32(sum, qk_load8_epi32(block->bias, valid)));
    t = _mm256_mul_ps(t, qk_load8_ps(block->multiplier, valid));
    float lanes[QK_AVXVNNI_LANES];
    _mm256_storeu_ps(lanes, t);
    memcpy(block->logits, lanes, (size_t)valid * sizeof(float));
}

#endif
