// AVX2 fully connected head: one block of 8 logits, int16 operands and vpmaddwd; the weights come as bytes
// (QK_AVX2_FC_UNIT_BYTES, avx2.h) and are widened here.
#include "x86/avx2/avx2.h"

#if QK_HAVE_X86

// Inputs widened to int16 a piece at a time, as in the conv microkernels; four accumulators cover the
// vpmaddwd latency.
enum { FC_PIECE_CHUNKS = 64 };

QK_TARGET_AVX2
void qk_fc_u8s16_c8_avx2(const qk_fc_block *block) {
    int16_t wide[FC_PIECE_CHUNKS * QK_AVX2_DEPTH] __attribute__((aligned(32)));
    __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
    for (int32_t k0 = 0; k0 < block->chunks; k0 += FC_PIECE_CHUNKS) {
        const int32_t piece = block->chunks - k0 < FC_PIECE_CHUNKS ? block->chunks - k0 : FC_PIECE_CHUNKS;
        // Up to 15 bytes past the last chunk: inside the input's QK_EXTRA_BYTES; those meet zero weights.
        for (int32_t c = 0; c < piece * QK_AVX2_DEPTH; c += 16)
            _mm256_store_si256((__m256i *)(wide + c), _mm256_cvtepu8_epi16(_mm_loadu_si128(
                                                          (const __m128i *)(block->input + (size_t)k0 * QK_AVX2_DEPTH + c))));
        for (int32_t k = 0; k < piece; k++) {
            int32_t pair01, pair23;
            __builtin_memcpy(&pair01, &wide[k * QK_AVX2_DEPTH], sizeof pair01);
            __builtin_memcpy(&pair23, &wide[k * QK_AVX2_DEPTH + 2], sizeof pair23);
            const uint8_t *unit = block->weights + (size_t)(k0 + k) * QK_AVX2_FC_UNIT_BYTES;
            const __m256i low = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)unit));
            const __m256i high = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(unit + 16)));
            acc[2 * (k & 1)] = _mm256_add_epi32(acc[2 * (k & 1)], _mm256_madd_epi16(_mm256_set1_epi32(pair01), low));
            acc[2 * (k & 1) + 1] = _mm256_add_epi32(acc[2 * (k & 1) + 1], _mm256_madd_epi16(_mm256_set1_epi32(pair23), high));
        }
    }
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3]));
    const int32_t valid = block->outputs < 8 ? block->outputs : 8;
    __m256 t = _mm256_cvtepi32_ps(_mm256_add_epi32(sum, qk_load8_epi32(block->bias, valid)));
    t = _mm256_mul_ps(t, qk_load8_ps(block->multiplier, valid));
    float lanes[8];
    _mm256_storeu_ps(lanes, t);
    memcpy(block->logits, lanes, (size_t)valid * sizeof(float));
}

#endif
