// AVX-512BW fully connected head: one block of 16 logits, int16 operands and vpmaddwd; the weights come as
// bytes (QK_BW_FC_UNIT_BYTES, avx512bw.h) and are widened here. The input is widened 32 channels at a time,
// as in the conv microkernels; the chunks of a piece go to separate accumulators, so the sums are not one
// chain bound by vpmaddwd latency.
#include "x86/avx512bw/avx512bw.h"

#if QK_HAVE_X86

enum { FC_PIECE_CHUNKS = 8 };

// Chunk c of the widened piece times its unit's two byte halves, widened.
QK_INLINE QK_TARGET_AVX512 void fc_chunk(__m512i *acc, const int16_t *widened, int c, const uint8_t *unit) {
    const __m512i low = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)unit));
    const __m512i high = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(unit + 32)));
    *acc = _mm512_add_epi32(*acc, _mm512_madd_epi16(qk_bw_pair(widened, c, 0), low));
    *acc = _mm512_add_epi32(*acc, _mm512_madd_epi16(qk_bw_pair(widened, c, 1), high));
}

QK_TARGET_AVX512
void qk_fc_u8s16_c16_avx512bw(const qk_fc_block *block) {
    int16_t widened[FC_PIECE_CHUNKS * QK_BW_DEPTH] __attribute__((aligned(64)));
    __m512i acc[FC_PIECE_CHUNKS];
#pragma clang loop unroll(full)
    for (int c = 0; c < FC_PIECE_CHUNKS; c++) acc[c] = _mm512_setzero_si512();
    const uint8_t *w = block->weights;
    for (int32_t first = 0; first < block->chunks; first += FC_PIECE_CHUNKS) {
        const int32_t piece = block->chunks - first < FC_PIECE_CHUNKS ? block->chunks - first : FC_PIECE_CHUNKS;
        qk_bw_widen32(block->input + QK_BW_DEPTH * first, QK_BW_DEPTH * piece, widened);
        if (piece == FC_PIECE_CHUNKS) {
#pragma clang loop unroll(full)
            for (int c = 0; c < FC_PIECE_CHUNKS; c++) {
                fc_chunk(&acc[c], widened, c, w + (size_t)c * QK_BW_FC_UNIT_BYTES);
            }
        } else {
            for (int c = 0; c < piece; c++) {
                fc_chunk(&acc[c], widened, c, w + (size_t)c * QK_BW_FC_UNIT_BYTES);
            }
        }
        w += (size_t)piece * QK_BW_FC_UNIT_BYTES;
    }
    const __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(acc[0], acc[1]), _mm512_add_epi32(acc[2], acc[3])),
                                         _mm512_add_epi32(_mm512_add_epi32(acc[4], acc[5]), _mm512_add_epi32(acc[6], acc[7])));
    const __mmask16 mask = qk_lane_mask16(block->outputs);
    __m512 t = _mm512_cvtepi32_ps(_mm512_add_epi32(sum, _mm512_maskz_loadu_epi32(mask, block->bias)));
    t = _mm512_mul_ps(t, _mm512_maskz_loadu_ps(mask, block->multiplier));
    _mm512_mask_storeu_ps(block->logits, mask, t);
}

#endif
