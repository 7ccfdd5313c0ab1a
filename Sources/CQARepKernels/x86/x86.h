// x86 helpers shared by the x86 paths: CPU checks, target attributes, and the SIMD forms of the exact
// requantization.
#ifndef QK_X86_H
#define QK_X86_H

#include "driver/blocked.h"

// Whether the OS saves the register state a path needs (XCR0 bits: 1 = SSE, 2 = AVX upper ymm, 5..7 =
// AVX-512 opmask and zmm). A path's CPU check is its CPUID features (__builtin_cpu_supports) and this.
bool qk_x86_os_saves_state(uint64_t xcr0_bits);
enum { QK_XCR0_AVX = 0x6, QK_XCR0_AVX512 = 0xE6 };
// AVX-VNNI (VEX vpdpbusd): CPUID.(EAX=7,ECX=1):EAX bit 4, read directly rather than through
// __builtin_cpu_supports, whose answer for it depends on the compiler's runtime library.
bool qk_x86_has_avx_vnni(void);

#if QK_HAVE_X86
#include <immintrin.h>
#include <string.h>

// The int16 paths' unit order for a chunk of weights[lane][4]: [pair][lane][2], pair 0 holding inputs (0, 1)
// and pair 1 (2, 3), so that one broadcast input pair meets a vector of lanes. Their conv units hold these
// values widened to int16, their fc units as bytes (widened in the fc kernel).
static inline void qk_arrange_pairs(const int8_t *weights, int32_t lanes, int8_t *arranged) {
    for (int32_t pair = 0; pair < 2; pair++)
        for (int32_t lane = 0; lane < lanes; lane++)
            for (int32_t i = 0; i < 2; i++) arranged[(pair * lanes + lane) * 2 + i] = weights[lane * 4 + 2 * pair + i];
}

static inline void qk_unarrange_pairs(const int8_t *arranged, int32_t lanes, int8_t *weights) {
    for (int32_t pair = 0; pair < 2; pair++)
        for (int32_t lane = 0; lane < lanes; lane++)
            for (int32_t i = 0; i < 2; i++) weights[lane * 4 + 2 * pair + i] = arranged[(pair * lanes + lane) * 2 + i];
}

// The same order as int16 values (a conv unit of 4 * lanes of them), and back.
static inline void qk_arrange_pairs_s16(const int8_t *weights, int32_t lanes, uint8_t *unit) {
    int8_t arranged[4 * QK_MAX_PACK_LANES];
    qk_arrange_pairs(weights, lanes, arranged);
    for (int32_t k = 0; k < 4 * lanes; k++) {
        const int16_t value = arranged[k];
        memcpy(unit + 2 * k, &value, sizeof value);
    }
}

static inline void qk_unarrange_pairs_s16(const uint8_t *unit, int32_t lanes, int8_t *weights) {
    int8_t arranged[4 * QK_MAX_PACK_LANES];
    for (int32_t k = 0; k < 4 * lanes; k++) {
        int16_t value;
        memcpy(&value, unit + 2 * k, sizeof value);
        arranged[k] = (int8_t)value;
    }
    qk_unarrange_pairs(arranged, lanes, weights);
}

#define QK_TARGET_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
// What the AVX-512 helpers below need; both AVX-512 paths (with and without VNNI) can inline them.
#define QK_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define QK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define QK_INLINE static inline __attribute__((always_inline))

// The share of the tile's L2 prefetches (see qk_conv_tile) of taps [tap, tap + taps): where its lines start;
// *lines of them (0: none).
QK_INLINE const char *qk_prefetch_lines(const qk_conv_tile *tile, int32_t tap, int32_t taps, int32_t *lines) {
    *lines = tile->prefetch_lines_per_tap > 0 ? tile->prefetch_lines_per_tap * taps : 0;
    return *lines > 0 ? (const char *)tile->prefetch + (size_t)(tap - tile->first_tap) * tile->prefetch_lines_per_tap * 64
                      : NULL;
}

// The same share spread evenly over `steps` steps of a microkernel's loop: one prefetch before every `every`
// steps, and the lines beyond one a step at once. In the network, where a streamed layer's next channel tile
// comes from memory, prefetches issued together at a run's start held up its own loads (docs/performance.md,
// "Prefetches spread over the run").
typedef struct qk_spread_prefetch {
    const char *line;
    int32_t lines, every;
} qk_spread_prefetch;

QK_INLINE qk_spread_prefetch qk_spread_prefetch_taps(const qk_conv_tile *tile, int32_t tap, int32_t taps, int32_t steps) {
    qk_spread_prefetch spread;
    spread.line = qk_prefetch_lines(tile, tap, taps, &spread.lines);
#pragma clang loop unroll(disable)
    for (; spread.lines > steps; spread.lines--, spread.line += 64) _mm_prefetch(spread.line, _MM_HINT_T1);
    spread.every = spread.lines > 0 ? steps / spread.lines : 0;
    return spread;
}

// Where the loop's next stretch of steps ends, from step k of `steps`: after issuing the next prefetch, `every`
// steps on; once they are all issued, the run's end. One loop over the stretches keeps one copy of the steps.
QK_INLINE int32_t qk_spread_prefetch_next(qk_spread_prefetch *spread, int32_t k, int32_t steps) {
    if (spread->lines == 0) return steps;
    _mm_prefetch(spread->line, _MM_HINT_T1);
    spread->line += 64;
    spread->lines--;
    return k + spread->every;
}

// The share of the next item's L2 prefetches of taps [tap, tap + taps), run over `chunks` chunk steps, paced
// one per chunk: issued all at the run's start they queued in front of the microkernel's own loads
// (docs/performance.md, "Prefetch pacing"). Lines beyond one per chunk go at once; the rest, one in each
// chunk step, through qk_paced_prefetch_chunk.
typedef struct qk_paced_prefetch {
    const char *lines;
    int32_t count;
} qk_paced_prefetch;

QK_INLINE qk_paced_prefetch qk_paced_prefetch_taps(const qk_conv_tile *tile, int32_t tap, int32_t taps, int32_t chunks) {
    qk_paced_prefetch paced;
    paced.lines = qk_prefetch_lines(tile, tap, taps, &paced.count);
    for (; paced.count > chunks; paced.count--, paced.lines += 64) _mm_prefetch(paced.lines, _MM_HINT_T1);
    return paced;
}

QK_INLINE void qk_paced_prefetch_chunk(const qk_paced_prefetch *paced, int32_t k) {
    if (k < paced->count) _mm_prefetch(paced->lines + 64 * k, _MM_HINT_T1);
}

// Where a tile's requantized bytes go: its first pixel, from its first block's channel on. Dense mode
// (stems) stores one output byte per 8-12 multiply-adds into lines no layer has touched yet in this run;
// loading the same pixels' lines one row below brings them in about a row of tiles early (the first channel
// tile fetches all channels; docs/performance.md, "Stem output prefetch").
QK_INLINE uint8_t *qk_conv_tile_output(const qk_conv_args *args, const qk_conv_tile *tile, int32_t lanes, int pixels) {
    const qk_conv_geometry *geo = &args->geo;
    uint8_t *out = args->output +
                   (((size_t)tile->image * geo->out_h + tile->out_y) * geo->out_w + tile->out_x) * geo->out_c +
                   (size_t)tile->group * geo->out_per_group + (size_t)tile->first_block * lanes;
    if (tile->im2col != NULL && tile->group == 0 && tile->first_block == 0) {
        const char *below = (const char *)out + (size_t)geo->out_w * (size_t)geo->out_c;
        for (int32_t offset = 0; offset < pixels * geo->out_c; offset += 64) _mm_prefetch(below + offset, _MM_HINT_T0);
    }
    return out;
}

// The scalar qk_requantize on sixteen lanes: convert, multiply, clamp, round half to even (cvtps2dq under
// the default MXCSR, like nearbyintf), narrow to bytes.
QK_INLINE QK_TARGET_AVX512 __m128i qk_requantize16(__m512i acc, __m512i bias, __m512 multiplier) {
    __m512 t = _mm512_cvtepi32_ps(_mm512_add_epi32(acc, bias));
    t = _mm512_mul_ps(t, multiplier);
    t = _mm512_max_ps(t, _mm512_setzero_ps());
    t = _mm512_min_ps(t, _mm512_set1_ps(255.0f));
    return _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(t));
}

// The same up to the narrowing, for callers that accumulated the bias already and narrow with saturating
// packs (signed 32 -> 16, then unsigned 16 -> 8): int32 results, where the packs' saturation stands in for
// the clamps. round(t) saturated to [0, 255] equals round(min(max(t, 0), 255)) because both bounds are
// integers (rounding is monotonic and leaves integers alone). cvtps2dq cannot represent values beyond
// 2^31, so qk_round16 is only for |t| < 2^31 (every multiplier below 1); otherwise the float min stays.
QK_INLINE QK_TARGET_AVX512 __m512i qk_round16(__m512i acc_plus_bias, __m512 multiplier) {
    return _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(acc_plus_bias), multiplier));
}

QK_INLINE QK_TARGET_AVX512 __m512i qk_round_clamped16(__m512i acc_plus_bias, __m512 multiplier) {
    __m512 t = _mm512_cvtepi32_ps(acc_plus_bias);
    t = _mm512_mul_ps(t, multiplier);
    t = _mm512_min_ps(t, _mm512_set1_ps(255.0f));
    return _mm512_cvtps_epi32(t);
}

QK_INLINE QK_TARGET_AVX512 __mmask16 qk_lane_mask16(int32_t valid) {
    return valid >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << valid) - 1);
}

// The same on eight lanes; stores `valid` (1..8) bytes.
QK_INLINE QK_TARGET_AVX2 void qk_requantize8_store(__m256i acc, __m256i bias, __m256 multiplier, uint8_t *out,
                                                   int32_t valid) {
    __m256 t = _mm256_cvtepi32_ps(_mm256_add_epi32(acc, bias));
    t = _mm256_mul_ps(t, multiplier);
    t = _mm256_max_ps(t, _mm256_setzero_ps());
    t = _mm256_min_ps(t, _mm256_set1_ps(255.0f));
    const __m256i y = _mm256_cvtps_epi32(t);
    const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256(y, 1));
    const __m128i bytes = _mm_packus_epi16(words, words);
    if (valid >= 8) {
        _mm_storel_epi64((__m128i *)out, bytes);
    } else {
        uint8_t lanes[16];
        _mm_storeu_si128((__m128i *)lanes, bytes);
        memcpy(out, lanes, (size_t)valid);
    }
}

// Loads `valid` (1..8) int32 or float values without reading past them (bias and multiplier arrays carry
// no slack); missing lanes are zero.
QK_INLINE QK_TARGET_AVX2 __m256i qk_load8_epi32(const int32_t *p, int32_t valid) {
    if (valid >= 8) return _mm256_loadu_si256((const __m256i *)p);
    int32_t lanes[8] = {0};
    memcpy(lanes, p, (size_t)valid * sizeof(int32_t));
    return _mm256_loadu_si256((const __m256i *)lanes);
}

QK_INLINE QK_TARGET_AVX2 __m256 qk_load8_ps(const float *p, int32_t valid) {
    if (valid >= 8) return _mm256_loadu_ps(p);
    float lanes[8] = {0};
    memcpy(lanes, p, (size_t)valid * sizeof(float));
    return _mm256_loadu_ps(lanes);
}

#endif

#endif  // QK_X86_H
