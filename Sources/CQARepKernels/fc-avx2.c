// AVX2 fully connected head, exact: int16 operands and vpmaddwd (see conv3x3-avx2.c for the unit layout).
#include "qk-x86.h"

#if QK_HAVE_X86

enum { FC_LANES = 8, FC_BLOCKS_PER_ITEM = 4 };

QK_TARGET_AVX2
static __m256i fc_block_avx2(int32_t chunks, const uint8_t *weights, const uint8_t *x) {
    __m256i acc = _mm256_setzero_si256();
    for (int32_t k = 0; k < chunks; k++) {
        __m256i even, odd;
        qk_split_chunk(_mm256_set1_epi32(qk_load_u32(x + 4 * k)), &even, &odd);
        const uint8_t *unit = weights + (size_t)k * QK_PACK_UNIT_BYTES;
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(even, _mm256_loadu_si256((const __m256i *)unit)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(odd, _mm256_loadu_si256((const __m256i *)(unit + 32))));
    }
    return acc;
}

// OpenMP's outlined loop body does not inherit target attributes, so the SIMD work is a separate function.
QK_TARGET_AVX2
static void fc_item(int32_t item, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
                    const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits) {
    const int32_t chunks = (in_c + 3) / 4;
    const int32_t blocks = (out_c + FC_LANES - 1) / FC_LANES;
    const size_t block_bytes = (size_t)chunks * QK_PACK_UNIT_BYTES;
    for (int32_t n = 0; n < batch; n++) {
        const uint8_t *x = input + (size_t)n * in_c;
        for (int32_t block = item * FC_BLOCKS_PER_ITEM; block < blocks && block < (item + 1) * FC_BLOCKS_PER_ITEM;
             block++) {
            const __m256i acc = fc_block_avx2(chunks, (const uint8_t *)packed + (size_t)block * block_bytes, x);
            const int32_t k = block * FC_LANES, valid = out_c - k;
            __m256 t = _mm256_cvtepi32_ps(_mm256_add_epi32(acc, qk_load8_epi32(bias + k, valid)));
            t = _mm256_mul_ps(t, qk_load8_ps(multiplier + k, valid));
            float lanes[8];
            _mm256_storeu_ps(lanes, t);
            memcpy(logits + (size_t)n * out_c + k, lanes, (size_t)(valid < 8 ? valid : 8) * sizeof(float));
        }
    }
}

void qk_fc_avx2(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                const float *multiplier, const uint8_t *input, float *logits, int32_t threads) {
    const int32_t blocks = (out_c + FC_LANES - 1) / FC_LANES;
    const int32_t items = (blocks + FC_BLOCKS_PER_ITEM - 1) / FC_BLOCKS_PER_ITEM;
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (int32_t item = 0; item < items; item++)
        fc_item(item, batch, in_c, out_c, packed, bias, multiplier, input, logits);
}
#endif
