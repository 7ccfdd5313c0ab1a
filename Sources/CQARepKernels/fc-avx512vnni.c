// AVX-512 VNNI fully connected head: a matrix-vector product per image, 16 outputs per zmm.
// Integer sums are exact in any order, so two accumulators per block (even and odd chunks) shorten the
// dependency chain without changing results.
#include "qk-x86.h"

#if QK_HAVE_X86

QK_TARGET_VNNI
static void fc_block_vnni(const qk_fc_block *block) {
    const uint8_t *x = block->input, *w = block->weights;
    __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
    int32_t k = 0;
    for (; k + 1 < block->chunks; k += 2) {
        even = _mm512_dpbusd_epi32(even, _mm512_set1_epi32(qk_load_u32(x + 4 * k)),
                                   _mm512_loadu_si512(w + (size_t)k * QK_PACK_UNIT_BYTES));
        odd = _mm512_dpbusd_epi32(odd, _mm512_set1_epi32(qk_load_u32(x + 4 * k + 4)),
                                  _mm512_loadu_si512(w + (size_t)(k + 1) * QK_PACK_UNIT_BYTES));
    }
    if (k < block->chunks)
        even = _mm512_dpbusd_epi32(even, _mm512_set1_epi32(qk_load_u32(x + 4 * k)),
                                   _mm512_loadu_si512(w + (size_t)k * QK_PACK_UNIT_BYTES));
    const __mmask16 mask = qk_lane_mask16(block->outputs);
    const __m512i acc = _mm512_add_epi32(even, odd);
    __m512 t = _mm512_cvtepi32_ps(_mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(mask, block->bias)));
    t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(mask, block->multiplier));
    _mm512_mask_storeu_ps(block->logits, mask, t);
}

void qk_fc_avx512vnni_share(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                            const float *multiplier, const uint8_t *input, float *logits, const qk_team *team) {
    qk_fc_blocked_share(batch, in_c, out_c, packed, bias, multiplier, input, logits,
                        qk_conv_microkernels_avx512vnni.lanes, fc_block_vnni, team);
}
#endif
