// AVX-512 VNNI fully connected head: a matrix-vector product per image, 16 outputs per zmm. Each item
// of work is a group of output blocks for all images, so a block's weights are fetched once per batch.
// Integer sums are exact in any order, so two accumulators per block (even and odd chunks) shorten the
// dependency chain without changing results.
#include "qk-x86.h"

#if QK_HAVE_X86

enum { FC_LANES = 16, FC_BLOCKS_PER_ITEM = 4 };

QK_TARGET_VNNI
static void fc_block_vnni(int32_t chunks, const uint8_t *weights, const uint8_t *x, __m512i *result) {
    __m512i even = _mm512_setzero_si512(), odd = _mm512_setzero_si512();
    int32_t k = 0;
    for (; k + 1 < chunks; k += 2) {
        even = _mm512_dpbusd_epi32(even, _mm512_set1_epi32(qk_load_u32(x + 4 * k)),
                                   _mm512_loadu_si512(weights + (size_t)k * QK_PACK_UNIT_BYTES));
        odd = _mm512_dpbusd_epi32(odd, _mm512_set1_epi32(qk_load_u32(x + 4 * k + 4)),
                                  _mm512_loadu_si512(weights + (size_t)(k + 1) * QK_PACK_UNIT_BYTES));
    }
    if (k < chunks)
        even = _mm512_dpbusd_epi32(even, _mm512_set1_epi32(qk_load_u32(x + 4 * k)),
                                   _mm512_loadu_si512(weights + (size_t)k * QK_PACK_UNIT_BYTES));
    *result = _mm512_add_epi32(even, odd);
}

// OpenMP's outlined loop body does not inherit target attributes, so the SIMD work is a separate function.
QK_TARGET_VNNI
static void fc_item(int32_t item, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
                    const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits) {
    const int32_t chunks = (in_c + 3) / 4;
    const int32_t blocks = (out_c + FC_LANES - 1) / FC_LANES;
    const size_t block_bytes = (size_t)chunks * QK_PACK_UNIT_BYTES;
    for (int32_t n = 0; n < batch; n++) {
        const uint8_t *x = input + (size_t)n * in_c;
        for (int32_t block = item * FC_BLOCKS_PER_ITEM; block < blocks && block < (item + 1) * FC_BLOCKS_PER_ITEM;
             block++) {
            __m512i acc;
            fc_block_vnni(chunks, (const uint8_t *)packed + (size_t)block * block_bytes, x, &acc);
            const int32_t k = block * FC_LANES;
            const __mmask16 mask = qk_lane_mask16(out_c - k);
            __m512 t = _mm512_cvtepi32_ps(_mm512_add_epi32(acc, _mm512_maskz_loadu_epi32(mask, bias + k)));
            t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(mask, multiplier + k));
            _mm512_mask_storeu_ps(logits + (size_t)n * out_c + k, mask, t);
        }
    }
}

void qk_fc_avx512vnni(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                      const float *multiplier, const uint8_t *input, float *logits, int32_t threads) {
    const int32_t blocks = (out_c + FC_LANES - 1) / FC_LANES;
    const int32_t items = (blocks + FC_BLOCKS_PER_ITEM - 1) / FC_BLOCKS_PER_ITEM;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int32_t item = 0; item < items; item++)
        fc_item(item, batch, in_c, out_c, packed, bias, multiplier, input, logits);
}
#endif
