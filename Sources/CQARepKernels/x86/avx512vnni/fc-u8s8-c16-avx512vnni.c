// AVX-512 VNNI fully connected head: a matrix-vector product per image, 16 outputs per zmm.
// Integer sums are exact in any order, so the chunks are spread over 8 accumulators: fewer chains are bound
// by vpdpbusd latency.
#include "x86/avx512vnni/avx512vnni.h"

#if QK_HAVE_X86

enum { FC_CHAINS = 8 };

QK_TARGET_VNNI
void qk_fc_u8s8_c16_avx512vnni(const qk_fc_block *block) {
    const uint8_t *x = block->input, *w = block->weights;
    __m512i acc[FC_CHAINS];
#pragma clang loop unroll(full)
    for (int c = 0; c < FC_CHAINS; c++) acc[c] = _mm512_setzero_si512();
    int32_t k = 0;
    for (; k + FC_CHAINS <= block->chunks; k += FC_CHAINS) {
#pragma clang loop unroll(full)
        for (int c = 0; c < FC_CHAINS; c++)
            acc[c] = _mm512_dpbusd_epi32(acc[c], _mm512_set1_epi32(qk_load_u32(x + 4 * (k + c))),
                                         _mm512_loadu_si512(w + (size_t)(k + c) * QK_VNNI_UNIT_BYTES));
    }
    for (int c = 0; k < block->chunks; k++, c++)
        acc[c] = _mm512_dpbusd_epi32(acc[c], _mm512_set1_epi32(qk_load_u32(x + 4 * k)),
                                     _mm512_loadu_si512(w + (size_t)k * QK_VNNI_UNIT_BYTES));
    const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3])),
                                         _mm512_add_epi32(_mm512_add_epi32(acc[4], acc[5]), _mm512_add_epi32(acc[6], acc[7])));
    const __mmask16 mask = qk_lane_mask16(block->outputs);
    __m512 t = _mm512_cvtepi32_ps(_mm512_add_epi32(sum, _mm512_maskz_loadu_epi32(mask, block->bias)));
    t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(mask, block->multiplier));
    _mm512_mask_storeu_ps(block->logits, mask, t);
}

#endif
