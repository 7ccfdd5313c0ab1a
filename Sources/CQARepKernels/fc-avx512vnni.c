// AVX-512 VNNI fully connected head: a matrix-vector product per image, 16 outputs per zmm.
// Integer sums are exact in any order, so the chunks are spread over 8 accumulators: with 2 (even and odd
// chunks) the head was bound by vpdpbusd latency, at 8-15% of peak.
#include "qk-x86.h"

#if QK_HAVE_X86

enum { FC_CHAINS = 8 };

QK_TARGET_VNNI
static void fc_block_vnni(const qk_fc_block *block) {
    const uint8_t *x = block->input, *w = block->weights;
    __m512i acc[FC_CHAINS];
#pragma clang loop unroll(full)
    for (int c = 0; c < FC_CHAINS; c++) acc[c] = _mm512_setzero_si512();
    int32_t k = 0;
    for (; k + FC_CHAINS <= block->chunks; k += FC_CHAINS) {
#pragma clang loop unroll(full)
        for (int c = 0; c < FC_CHAINS; c++)
            acc[c] = _mm512_dpbusd_epi32(acc[c], _mm512_set1_epi32(qk_load_u32(x + 4 * (k + c))),
                                         _mm512_loadu_si512(w + (size_t)(k + c) * QK_PACK_UNIT_BYTES));
    }
    for (int c = 0; k < block->chunks; k++, c++)
        acc[c] = _mm512_dpbusd_epi32(acc[c], _mm512_set1_epi32(qk_load_u32(x + 4 * k)),
                                     _mm512_loadu_si512(w + (size_t)k * QK_PACK_UNIT_BYTES));
    const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3])),
                                         _mm512_add_epi32(_mm512_add_epi32(acc[4], acc[5]), _mm512_add_epi32(acc[6], acc[7])));
    const __mmask16 mask = qk_lane_mask16(block->outputs);
    __m512 t = _mm512_cvtepi32_ps(_mm512_add_epi32(sum, _mm512_maskz_loadu_epi32(mask, block->bias)));
    t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(mask, block->multiplier));
    _mm512_mask_storeu_ps(block->logits, mask, t);
}

void qk_fc_avx512vnni_share(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                            const float *multiplier, const uint8_t *input, float *logits, const qk_team *team) {
    qk_fc_blocked_share(batch, in_c, out_c, packed, bias, multiplier, input, logits,
                        qk_conv_microkernels_avx512vnni.lanes, fc_block_vnni, team);
}
#endif
