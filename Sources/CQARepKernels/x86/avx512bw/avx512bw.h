// The AVX-512BW path, for AVX-512 CPUs without VNNI (Skylake-SP, Cascade Lake without it, ...): the exact
// int16 route of the AVX2 path on zmm. vpmaddwd multiplies int16 pairs into exact int32 sums, vpaddd
// accumulates them; a block is 16 output channels (one zmm of int32), a chunk 4 input channels.
//
// The inputs are widened to int16 in the microkernel, 32 channels with one vpmovzxbw per pixel and tap,
// into a small buffer from which each chunk's two channel pairs are broadcast as dwords (vpbroadcastd
// from memory takes a load slot, not a vector ALU slot). So the unit pairs channels in their natural
// order: [half 0..1][lane 0..15][2] int16, half h holding channels (2h, 2h + 1): 128 bytes.
// Weights stay int16 in memory: widening them in the kernel would add two shuffles per block and chunk,
// against four ALU instructions of real work (docs/performance.md, "AVX-512BW path").
#ifndef QK_AVX512BW_H
#define QK_AVX512BW_H

#include "driver/winograd.h"
#include "x86/x86.h"

enum { QK_BW_LANES = 16, QK_BW_DEPTH = 4, QK_BW_UNIT_BYTES = 128 };
// The fc head's units: the same order as bytes, widened in its kernel (as avx2's, avx2.h).
enum { QK_BW_FC_UNIT_BYTES = 64 };
// Conv tiles: pixels x blocks within QK_BW_MAX_ACCUMULATORS zmm accumulators, leaving registers for the
// 2 x blocks weight vectors, the two broadcasts and the products: 8 x 2, 7 x 3, 5 x 4.
enum { QK_BW_MAX_PIXELS = 8, QK_BW_MAX_BLOCKS = 4, QK_BW_MAX_ACCUMULATORS = 21 };
_Static_assert(QK_BW_MAX_BLOCKS == 4, "qk_bw_chunk's accumulator rows hold four blocks");

extern const qk_conv_tile_fn qk_conv3x3_u8s16_7x3c16_avx512bw[QK_BW_MAX_PIXELS * QK_BW_MAX_BLOCKS];
void qk_conv3x3_c3_u8s16_7x3c16_avx512bw(const qk_conv_args *args, const qk_conv_blocking *b, const qk_conv_tile *tile);
extern const qk_winograd_kernels qk_winograd_u8s16_7x3c16_avx512bw;
void qk_widen_u8s16_avx512bw(const uint8_t *bytes, int32_t values, int16_t *words);
void qk_fc_u8s16_c16_avx512bw(const qk_fc_block *block);
void qk_gavgpool_u8_c64_avx512bw_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                       float multiplier, uint8_t *output, const qk_team *team);

#if QK_HAVE_X86
// Up to 32 input bytes (`bytes`, 1..32, read and no more) widened to int16 and stored at `words`.
QK_INLINE QK_TARGET_AVX512 void qk_bw_widen32(const uint8_t *bytes_in, int32_t bytes, int16_t *words) {
    const __mmask32 mask = bytes >= 32 ? (__mmask32)0xFFFFFFFFu : (__mmask32)((1u << bytes) - 1);
    _mm512_store_si512(words, _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(mask, bytes_in)));
}

// Chunk k's channel pair `half` (0: channels 4k, 4k+1; 1: 4k+2, 4k+3) of widened inputs, in every dword.
QK_INLINE QK_TARGET_AVX512 __m512i qk_bw_pair(const int16_t *words, int32_t k, int half) {
    return _mm512_set1_epi32(qk_load_u32((const uint8_t *)(words + 4 * k + 2 * half)));
}

// An empty asm that takes a pixel's products in and out, so that the compiler issues all its vpmaddwd
// before their vpaddd: on Zen 4, adds interleaved one by one with the multiplies (what clang emits
// otherwise) take the multiply pipes often enough to cost a large share of the rate (docs/performance.md,
// "AVX-512BW path").
QK_INLINE QK_TARGET_AVX512 void qk_bw_hold(__m512i *t0, __m512i *t1, const int blocks) {
    if (blocks == 1) __asm__ volatile("" : "+v"(t0[0]), "+v"(t1[0]));
    if (blocks == 2) __asm__ volatile("" : "+v"(t0[0]), "+v"(t1[0]), "+v"(t0[1]), "+v"(t1[1]));
    if (blocks == 3)
        __asm__ volatile("" : "+v"(t0[0]), "+v"(t1[0]), "+v"(t0[1]), "+v"(t1[1]), "+v"(t0[2]), "+v"(t1[2]));
    if (blocks == 4)
        __asm__ volatile("" : "+v"(t0[0]), "+v"(t1[0]), "+v"(t0[1]), "+v"(t1[1]), "+v"(t0[2]), "+v"(t1[2]),
                              "+v"(t0[3]), "+v"(t1[3]));
}

// The same for one pair's products (the stem kernel's pair-at-a-time steps).
QK_INLINE QK_TARGET_AVX512 void qk_bw_hold_one(__m512i *t, const int blocks) {
    if (blocks == 1) __asm__ volatile("" : "+v"(t[0]));
    if (blocks == 2) __asm__ volatile("" : "+v"(t[0]), "+v"(t[1]));
    if (blocks == 3) __asm__ volatile("" : "+v"(t[0]), "+v"(t[1]), "+v"(t[2]));
    if (blocks == 4) __asm__ volatile("" : "+v"(t[0]), "+v"(t[1]), "+v"(t[2]), "+v"(t[3]));
}

// One pixel's (or Winograd tile's) chunk step: pairs x0, x1 times each block's two weight vectors.
QK_INLINE QK_TARGET_AVX512 void qk_bw_madd_pixel(__m512i *acc, __m512i x0, __m512i x1, const __m512i *w0,
                                                 const __m512i *w1, const int blocks) {
    __m512i t0[4], t1[4];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        t0[j] = _mm512_madd_epi16(x0, w0[j]);
        t1[j] = _mm512_madd_epi16(x1, w1[j]);
    }
    qk_bw_hold(t0, t1, blocks);
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        acc[j] = _mm512_add_epi32(acc[j], t0[j]);
        acc[j] = _mm512_add_epi32(acc[j], t1[j]);
    }
}

// One chunk step (chunk k from x[p] on) of a tile of `pixels` pixels (or Winograd tiles): the chunk's weights
// of each block (at w) times each pixel's two channel pairs.
QK_INLINE QK_TARGET_AVX512 void qk_bw_chunk(__m512i (*acc)[4], const int16_t *const *x, int32_t k, const uint8_t *w,
                                            const int pixels, const int blocks) {
    __m512i w0[4], w1[4];
#pragma clang loop unroll(full)
    for (int j = 0; j < blocks; j++) {
        w0[j] = _mm512_loadu_si512(w + j * QK_BW_UNIT_BYTES);
        w1[j] = _mm512_loadu_si512(w + j * QK_BW_UNIT_BYTES + 64);
    }
#pragma clang loop unroll(full)
    for (int p = 0; p < pixels; p++) qk_bw_madd_pixel(acc[p], qk_bw_pair(x[p], k, 0), qk_bw_pair(x[p], k, 1), w0, w1, blocks);
}
#endif

#endif  // QK_AVX512BW_H
