// The AVX2 path, exact: vpmaddubsw would saturate its int16 pair sums (255 * 127 * 2 > 32767), so inputs
// and weights are both used as int16 and multiplied with vpmaddwd, whose int32 pair sums are exact.
// A block is 8 output channels (one ymm of int32) and a chunk 4 input channels. Inputs are widened to int16
// and broadcast a pair at a time, so the unit holds the chunk's weights as int16 pairs in the same order:
// [pair 0..1][lane 0..7][2], pair 0 holding channels (0, 1), pair 1 (2, 3).
#ifndef QK_AVX2_H
#define QK_AVX2_H

#include "driver/winograd.h"
#include "x86/x86.h"

enum { QK_AVX2_LANES = 8, QK_AVX2_DEPTH = 4, QK_AVX2_UNIT_BYTES = 64 };
// The fc head's units keep the same order as bytes ([pair][lane][2] int8), which its kernel widens: the head
// reads each weight once per batch, from L3 or memory, so half the bytes cost it no speed.
enum { QK_AVX2_FC_UNIT_BYTES = 32 };
// Conv tiles: up to 4 pixels x 2 blocks, or 6 pixels x 1 block (8 accumulators).
enum { QK_AVX2_MAX_PIXELS = 6, QK_AVX2_MAX_BLOCKS = 2, QK_AVX2_MAX_ACCUMULATORS = 8 };
_Static_assert(QK_AVX2_MAX_BLOCKS == 2, "qk_avx2_chunk's accumulator rows hold two blocks");

extern const qk_conv_tile_fn qk_conv3x3_u8s16_4x2c8_avx2[QK_AVX2_MAX_PIXELS * QK_AVX2_MAX_BLOCKS];
void qk_conv3x3_c3_u8s16_4x2c8_avx2(const qk_conv_args *args, const qk_conv_blocking *b, const qk_conv_tile *tile);
extern const qk_winograd_kernels qk_winograd_u8s16_4x2c8_avx2;
// Its stride-1 parts, which the AVX-VNNI path runs too, costed against its own peak (path-avxvnni.c).
enum { QK_AVX2_WG_MAX_TILES = 6, QK_AVX2_WG_MAX_BLOCKS = 2, QK_AVX2_WG_MAX_ACCUMULATORS = 8 };
int32_t qk_winograd_unit_index_avx2(int32_t lane, int32_t q);
void qk_winograd_input_u8s16_avx2(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride);
void qk_winograd_input_f4_u8s16_avx2(const uint8_t *const *src, int32_t values, int16_t *v, int32_t v_stride);
extern const qk_winograd_tile_fn qk_winograd_u8s16_4x2c8_avx2_tiles[QK_AVX2_WG_MAX_TILES * QK_AVX2_WG_MAX_BLOCKS];
extern const qk_winograd_tile_fn qk_winograd_f4_u8s16_4x2c8_avx2_tiles[QK_AVX2_WG_MAX_TILES * QK_AVX2_WG_MAX_BLOCKS];
void qk_widen_u8s16_avx2(const uint8_t *bytes, int32_t values, int16_t *words);
void qk_fc_u8s16_c8_avx2(const qk_fc_block *block);
void qk_gavgpool_u8_c32_avx2_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                   float multiplier, uint8_t *output, const qk_team *team);

#if QK_HAVE_X86
// One pixel's (or Winograd tile's) chunk step on up to 2 blocks: the int16 pairs x01 and x23 times each
// block's weight vectors, all products first, then their adds: interleaved one by one (clang's order),
// the adds take the multiply pipes often enough to cost a large share of the rate.
QK_INLINE QK_TARGET_AVX2 void qk_avx2_madd_pixel(__m256i *acc, __m256i x01, __m256i x23, const __m256i *low,
                                                 const __m256i *high, const int blocks) {
    __m256i t0[2], t1[2];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        t0[j] = _mm256_madd_epi16(x01, low[j]);
        t1[j] = _mm256_madd_epi16(x23, high[j]);
    }
    if (blocks == 1) __asm__ volatile("" : "+x"(t0[0]), "+x"(t1[0]));
    if (blocks == 2) __asm__ volatile("" : "+x"(t0[0]), "+x"(t1[0]), "+x"(t0[1]), "+x"(t1[1]));
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        acc[j] = _mm256_add_epi32(acc[j], t0[j]);
        acc[j] = _mm256_add_epi32(acc[j], t1[j]);
    }
}

// One chunk step of a tile of `pixels` pixels (or Winograd tiles): the chunk's weights of each block (at w)
// times the int16 pairs at x[p] + offset and x[p] + offset + 2 of each pixel.
QK_INLINE QK_TARGET_AVX2 void qk_avx2_chunk(__m256i (*acc)[2], const int16_t *const *x, size_t offset,
                                            const uint8_t *w, const int pixels, const int blocks) {
    __m256i low[2], high[2];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        low[j] = _mm256_loadu_si256((const __m256i *)(w + j * QK_AVX2_UNIT_BYTES));
        high[j] = _mm256_loadu_si256((const __m256i *)(w + j * QK_AVX2_UNIT_BYTES + 32));
    }
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++) {
        const __m256i x01 = _mm256_set1_epi32(qk_load_u32((const uint8_t *)(x[p] + offset)));
        const __m256i x23 = _mm256_set1_epi32(qk_load_u32((const uint8_t *)(x[p] + offset + 2)));
        qk_avx2_madd_pixel(acc[p], x01, x23, low, high, blocks);
    }
}

// Two blocks of one pixel requantized as qk_requantize8_store does, from accumulators that started at the
// bias, packed into one 16-byte store. Every multiplier below 1 keeps |t| < 2^31, so the saturating packs
// (signed 32 -> 16 first: an unsigned pack would turn values past 65535 into -1, then 0) do the clamping
// exactly: rounding is monotonic and leaves the bounds 0 and 255 alone. Otherwise the upper clamp stays,
// since cvtps2dq cannot represent 2^31. 4 shuffles for 16 outputs instead of 6.
QK_INLINE QK_TARGET_AVX2 __m256i qk_avx2_round8(__m256i acc_plus_bias, __m256 multiplier, int below_one) {
    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(acc_plus_bias), multiplier);
    if (!below_one) t = _mm256_min_ps(t, _mm256_set1_ps(255.0f));
    return _mm256_cvtps_epi32(t);
}

QK_INLINE QK_TARGET_AVX2 void qk_avx2_requantize16_store(__m256i acc0, __m256i acc1, __m256 multiplier0, __m256 multiplier1,
                                                         int below_one, uint8_t *out) {
    // packs_epi32 interleaves the two blocks by 128-bit lane; vpermq puts each block's 8 words together.
    __m256i words = _mm256_packs_epi32(qk_avx2_round8(acc0, multiplier0, below_one), qk_avx2_round8(acc1, multiplier1, below_one));
    words = _mm256_permute4x64_epi64(words, 0xD8);
    const __m128i bytes = _mm_packus_epi16(_mm256_castsi256_si128(words), _mm256_extracti128_si256(words, 1));
    _mm_storeu_si128((__m128i *)out, bytes);
}
#endif

#endif  // QK_AVX2_H
