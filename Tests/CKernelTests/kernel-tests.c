// The kernel tests without Swift: every path of the table (qk_paths.h) this CPU runs, compared byte for byte
// with the scalar oracle on randomized conv shapes (3-channel stems in dense mode, strides 1 and 2, groups,
// odd channel counts, tap slices, batches 1-4), pool and fc, and whole networks through qk_network_*, at 1-3
// threads; plus packing round trips, detection against /proc/cpuinfo (or --expect-paths) and the peak loops.
// Built for the host and cross-built for aarch64 (scripts/test-arm-kernels.sh), where it runs under qemu once
// per CPU model, so that each ARM path runs somewhere; the host build also runs under qemu as other x86 CPUs
// (scripts/test-x86-emulated.sh). Prints the paths it compared and those this CPU could not run, and ends
// with "N passed, N failed"; exits 1 on any failure.
//
// Usage: kernel-tests [--quick] [--expect-paths BEST,OTHER,...]
//   --quick         fewer and smaller cases, for emulators
//   --expect-paths  the paths this CPU must run, exactly, the best first: for user-mode emulation of another
//                   x86 CPU (scripts/test-x86-emulated.sh), whose /proc/cpuinfo is the host's
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qarep_kernels.h"

enum { EXTRA = QK_EXTRA_BYTES, GUARD = 64 };
static const int32_t thread_counts[] = {1, 2, 3};
static long passed, failed;
static bool quick;
static const char *expected_paths;  // --expect-paths, or NULL
// Every path the tests run: the table's, then its test-only paths, which follow the gap at QK_PATH_COUNT
// (qarep_kernels.h).
static bool compared[QK_PATH_TEST_END];
static int next_path(int path) { return path + 1 == QK_PATH_COUNT ? path + 2 : path + 1; }
#define FOR_EACH_PATH(path) for (int path = 0; path < QK_PATH_TEST_END; path = next_path(path))

static void check(bool ok, const char *what, const char *path, int32_t threads, const char *context) {
    if (ok) {
        passed++;
        return;
    }
    failed++;
    if (failed <= 40) printf("FAIL %s: %s x%d: %s\n", what, path, threads, context);
}

// ---- Random data (SplitMix64) ----
static uint64_t rng_state;
static uint64_t next_u64(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static int32_t uniform(int32_t low, int32_t high) { return low + (int32_t)(next_u64() % (uint64_t)(high - low + 1)); }
static double unit_double(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }
static void random_bytes(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)next_u64();
}
static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}
static void *aligned(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

// ---- One conv case ----
typedef struct conv_case {
    qk_conv_shape shape;
    int32_t batch;
} conv_case;

static int32_t out_h(const conv_case *c) { return qk_conv_out_dim(c->shape.in_h, c->shape.stride); }
static int32_t out_w(const conv_case *c) { return qk_conv_out_dim(c->shape.in_w, c->shape.stride); }
static size_t input_count(const conv_case *c) { return (size_t)c->batch * c->shape.in_h * c->shape.in_w * c->shape.in_c; }
static size_t output_count(const conv_case *c) { return (size_t)c->batch * out_h(c) * out_w(c) * c->shape.out_c; }
static size_t weight_count(const conv_case *c) { return (size_t)c->shape.out_c * (c->shape.in_c / c->shape.groups) * 9; }

typedef struct conv_data {
    int8_t *weights;
    int32_t *bias;
    float *multiplier;
    uint8_t *pad, *input;  // both with EXTRA bytes of garbage after them
} conv_data;

// Outputs spread over the whole uint8 range: most channels mid-range, some pushed to 0 or 255 by huge
// biases; tiny weights (-1..1) with multipliers 1/2 and 1/4 give exact .5 ties.
static conv_data random_conv_data(const conv_case *c, bool tiny) {
    conv_data d;
    const int32_t ipg = c->shape.in_c / c->shape.groups;
    d.weights = xmalloc(weight_count(c));
    for (size_t i = 0; i < weight_count(c); i++) d.weights[i] = (int8_t)(tiny ? uniform(-1, 1) : uniform(-127, 127));
    const double acc_scale = sqrt(9.0 * ipg) * 147 * (tiny ? 0.8 : 73);
    int64_t huge = 2147483647LL - 9LL * ipg * 255 * 127 - 1;
    if (huge > 100000000) huge = 100000000;
    d.bias = xmalloc((size_t)c->shape.out_c * sizeof(int32_t));
    d.multiplier = xmalloc((size_t)c->shape.out_c * sizeof(float));
    for (int32_t o = 0; o < c->shape.out_c; o++) {
        const int32_t kind = uniform(0, 9);
        d.bias[o] = kind == 0 ? (int32_t)huge : kind == 1 ? (int32_t)-huge : (int32_t)((unit_double() * 4 - 2) * acc_scale);
        d.multiplier[o] = tiny ? (uniform(0, 1) ? 0.5f : 0.25f) : (float)(128 / (acc_scale * (0.3 + 2.7 * unit_double())));
    }
    d.pad = xmalloc((size_t)c->shape.in_c + EXTRA);
    for (int32_t i = 0; i < c->shape.in_c; i++) d.pad[i] = (uint8_t)uniform(1, 255);
    random_bytes(d.pad + c->shape.in_c, EXTRA);
    d.input = xmalloc(input_count(c) + EXTRA);
    random_bytes(d.input, input_count(c) + EXTRA);
    return d;
}

static void free_conv_data(conv_data *d) {
    free(d->weights);
    free(d->bias);
    free(d->multiplier);
    free(d->pad);
    free(d->input);
}

// The spec (docs/model-format.md) stated directly, for the scalar oracle itself.
static void naive_conv(const conv_case *c, const conv_data *d, uint8_t *out) {
    const qk_conv_shape *s = &c->shape;
    const int32_t ipg = s->in_c / s->groups, opg = s->out_c / s->groups, oh = out_h(c), ow = out_w(c);
    for (int32_t n = 0; n < c->batch; n++)
        for (int32_t y = 0; y < oh; y++)
            for (int32_t x = 0; x < ow; x++)
                for (int32_t o = 0; o < s->out_c; o++) {
                    const int32_t g = o / opg;
                    int64_t acc = 0;
                    for (int32_t ci = 0; ci < ipg; ci++)
                        for (int32_t ky = 0; ky < 3; ky++)
                            for (int32_t kx = 0; kx < 3; kx++) {
                                const int32_t iy = y * s->stride + ky - 1, ix = x * s->stride + kx - 1, ch = g * ipg + ci;
                                const int32_t v = iy >= 0 && iy < s->in_h && ix >= 0 && ix < s->in_w
                                                      ? d->input[(((size_t)n * s->in_h + iy) * s->in_w + ix) * s->in_c + ch]
                                                      : d->pad[ch];
                                acc += (int64_t)v * d->weights[(((size_t)o * ipg + ci) * 3 + ky) * 3 + kx];
                            }
                    float t = (float)(int32_t)(acc + d->bias[o]);
                    t = t * d->multiplier[o];
                    t = fminf(fmaxf(t, 0.0f), 255.0f);
                    out[(((size_t)n * oh + y) * ow + x) * s->out_c + o] = (uint8_t)nearbyintf(t);
                }
}

// One conv on `path` into a guarded buffer; false when the path refused. *guards_ok tells whether the
// bytes around the output survived.
static bool run_conv(qk_path path, const conv_case *c, const conv_data *d, int32_t threads, uint8_t *out,
                     bool *guards_ok) {
    const size_t size = qk_conv3x3_packed_size(path, &c->shape);
    if (size == 0) return false;
    void *packed = aligned(size);
    bool ok = qk_conv3x3_pack(path, &c->shape, d->weights, packed) == QK_OK;
    const size_t count = output_count(c);
    uint8_t *fenced = xmalloc(count + 2 * GUARD);
    memset(fenced, 0xA5, count + 2 * GUARD);
    ok = ok && qk_conv3x3_u8(path, &c->shape, c->batch, packed, d->bias, d->multiplier, d->pad, d->input,
                             fenced + GUARD, threads) == QK_OK;
    memcpy(out, fenced + GUARD, count);
    *guards_ok = true;
    for (size_t i = 0; i < GUARD; i++)
        if (fenced[i] != 0xA5 || fenced[GUARD + count + i] != 0xA5) *guards_ok = false;
    // The packing is exactly invertible.
    int8_t *unpacked = xmalloc(weight_count(c));
    if (ok && path != QK_PATH_SCALAR) {
        ok = qk_conv3x3_unpack(path, &c->shape, packed, unpacked) == QK_OK;
        check(ok && memcmp(unpacked, d->weights, weight_count(c)) == 0, "conv unpack(pack) round trip",
              qk_path_name(path), 1, "");
    }
    free(unpacked);
    free(fenced);
    free(packed);
    return ok;
}

static void describe(const conv_case *c, uint64_t seed, char *text, size_t size) {
    snprintf(text, size, "seed %llu: %dx%dx%d -> %d, stride %d, groups %d, batch %d", (unsigned long long)seed,
             c->shape.in_h, c->shape.in_w, c->shape.in_c, c->shape.out_c, c->shape.stride, c->shape.groups, c->batch);
}

// Scalar against the spec (when `naive`), then every supported path at 1-3 threads against scalar.
static void check_conv(const conv_case *c, uint64_t seed, bool naive, bool tiny, bool big_multipliers) {
    rng_state = seed;
    conv_data d = random_conv_data(c, tiny);
    if (big_multipliers) {
        // Multipliers of 1 and more: t passes 2^31, where a conversion could overflow (x86's cvtps2dq).
        for (int32_t o = 0; o < c->shape.out_c; o++) {
            d.multiplier[o] = o == 0 ? 1.0f : (float)(1 + 4095 * unit_double());
            d.bias[o] = o % 3 == 0 ? 2000000 : o % 3 == 1 ? -2000000 : uniform(-300, 300);
        }
    }
    char context[160];
    describe(c, seed, context, sizeof context);
    const size_t count = output_count(c);
    uint8_t *oracle = xmalloc(count), *result = xmalloc(count);
    bool guards;
    check(run_conv(QK_PATH_SCALAR, c, &d, 1, oracle, &guards) && guards, "conv", "scalar", 1, context);
    if (naive) {
        naive_conv(c, &d, result);
        check(memcmp(oracle, result, count) == 0, "conv against the spec", "scalar", 1, context);
    }
    FOR_EACH_PATH(path) {
        if (!qk_path_supported((qk_path)path)) continue;
        for (int t = 0; t < 3; t++) {
            memset(result, 0, count);
            const bool ran = run_conv((qk_path)path, c, &d, thread_counts[t], result, &guards);
            check(ran && guards && memcmp(result, oracle, count) == 0, "conv", qk_path_name((qk_path)path),
                  thread_counts[t], context);
        }
        compared[path] = true;
    }
    free(oracle);
    free(result);
    free_conv_data(&d);
}

static void conv_tests(void) {
    // Random small shapes, checked against the spec as well.
    rng_state = 0x5EEDC0DE2024ull;
    const int random_cases = quick ? 24 : 60;
    for (int i = 0; i < random_cases; i++) {
        rng_state = 0x5EEDC0DE2024ull + 7919u * (uint64_t)i;
        const int32_t groups_choice[] = {1, 1, 2, 4};
        const int32_t groups = groups_choice[uniform(0, 3)];
        conv_case c = {{uniform(1, 9), uniform(1, 9), groups * uniform(1, 11), groups * uniform(1, 26), uniform(1, 2), groups},
                       uniform(1, 4)};
        check_conv(&c, 1000 + (uint64_t)i, true, i % 5 == 4, false);
    }
    // Edges: stems (dense mode), 1x1 and 2x2 images, odd sizes at stride 2, groups off every SIMD width,
    // several channel tiles, partial last blocks.
    const conv_case edges[] = {
        {{17, 15, 3, 48, 2, 1}, 2}, {{1, 1, 20, 33, 1, 1}, 4},  {{1, 1, 5, 17, 2, 1}, 3},
        {{2, 2, 7, 19, 2, 1}, 3},   {{2, 2, 16, 16, 1, 1}, 1},  {{9, 7, 24, 40, 1, 4}, 2},
        {{6, 6, 10, 6, 2, 2}, 4},   {{5, 11, 12, 100, 1, 4}, 1}, {{5, 5, 13, 100, 1, 1}, 1},
        {{7, 9, 8, 64, 2, 2}, 2},   {{9, 11, 3, 64, 2, 1}, 2},  {{6, 5, 8, 112, 1, 2}, 3},
        {{5, 13, 9, 50, 1, 1}, 2},  {{7, 17, 4, 120, 2, 2}, 1},
        // 3-channel stems (avx2's stem3 kernel): odd widths at stride 2 (the last pair reads past the row),
        // rows ending in 1 to 3 pixels, 1-block tiles and partial last blocks.
        {{11, 13, 3, 20, 2, 1}, 3}, {{5, 9, 3, 40, 1, 1}, 2},   {{4, 22, 3, 8, 1, 1}, 2},
        {{1, 1, 3, 8, 2, 1}, 2},    {{2, 1, 3, 20, 1, 1}, 1},   {{1, 3, 3, 72, 2, 1}, 3},  {{3, 2, 3, 64, 1, 1}, 2},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) check_conv(&edges[i], 2000 + i, true, false, false);
    // Stems of 1 to 7 channels, wide enough for interior runs of window rows.
    const int32_t stem_channels[] = {1, 2, 3, 4, 5, 7};
    for (int i = 0; i < 6; i++)
        for (int32_t stride = 1; stride <= 2; stride++) {
            conv_case c = {{7 + i % 2, stride == 1 ? 19 + i : 33 + i, stem_channels[i], i % 2 == 0 ? 48 : 64, stride, 1},
                           1 + i % 2};
            check_conv(&c, 3000 + 2 * (uint64_t)i + (uint64_t)stride, !quick, false, false);
        }
    // Multipliers of 1 and more.
    const conv_case saturating[] = {{{6, 9, 3, 48, 2, 1}, 2}, {{5, 7, 32, 40, 1, 1}, 1}};
    for (int i = 0; i < 2; i++) check_conv(&saturating[i], 4000 + (uint64_t)i, false, false, true);
    // RepVGG-sized layers and deep ones whose weights go through tap slices (scalar only as the oracle).
    const conv_case sized[] = {
        {{32, 32, 3, 48, 2, 1}, 1},  {{14, 14, 48, 48, 1, 1}, 2},  {{13, 13, 96, 192, 2, 1}, 1},
        {{7, 7, 64, 1280, 1, 1}, 1}, {{10, 10, 64, 64, 1, 4}, 2},  {{9, 14, 64, 64, 1, 1}, 2},
        {{5, 7, 32, 256, 2, 1}, 1},  {{6, 6, 20, 80, 1, 1}, 3},    {{3, 70, 160, 20, 1, 1}, 2},
        {{5, 9, 512, 36, 1, 2}, 1},  {{3, 20, 1200, 40, 1, 1}, 1}, {{3, 13, 1200, 61, 1, 1}, 1},
        // Direct with over 512 KB of int16 weights: the widening paths' 16-tile segments and taller bands.
        {{28, 28, 128, 512, 2, 1}, 2},
        // Windows too deep for one run of all nine taps (qk_conv_tile_run_sources): kernel rows instead.
        {{4, 9, 2800, 24, 1, 1}, 1},
    };
    const size_t sized_count = sizeof sized / sizeof sized[0];
    for (size_t i = 0; i < sized_count; i++) {
        if (quick && (i == 3 || i == 2 || i == 12 || i == 13)) continue;  // the largest: minutes under an emulator
        check_conv(&sized[i], 5000 + i, false, false, false);
    }
}

// ---- Winograd F(2x2,3x3) ----
static bool winograd_ran[QK_PATH_TEST_END], winograd_4x4_ran[QK_PATH_TEST_END], winograd_packing_checked[QK_PATH_TEST_END];

// The path's Winograd kernels forced on (qk_testing_conv3x3_winograd), against the scalar oracle at 1-3
// threads, with the transformed weights' round trip; paths without Winograd refuse and are reported. Stride 1
// runs twice where the path has F(4x4,3x3): with it and with F(2x2,3x3).
static void check_winograd(const conv_case *c, const conv_data *d, const char *plain_context) {
    const size_t count = output_count(c);
    uint8_t *oracle = xmalloc(count), *fenced = xmalloc(count + 2 * GUARD);
    int8_t *unpacked = xmalloc(weight_count(c));
    bool guards;
    check(run_conv(QK_PATH_SCALAR, c, d, 1, oracle, &guards) && guards, "conv", "scalar", 1, plain_context);
    const int forms = c->shape.stride == 1 && c->shape.in_c / c->shape.groups <= 800 ? 2 : 1;
    for (int form = 0; form < forms; form++) {
        FOR_EACH_PATH(path) {
            if (form == 1 && !qk_testing_path_has_winograd_4x4((qk_path)path)) continue;
            qk_testing_winograd_force_4x4(form == 1 ? 1 : -1);
            char context[200];
            snprintf(context, sizeof context, "%s%s", plain_context, form == 1 ? ", F(4x4,3x3)" : "");
            // Packing is plain C: checked on every path, whether or not this CPU runs it.
            const int packing = qk_testing_winograd_packing_matches((qk_path)path, &c->shape, d->weights);
            if (packing >= 0) {
                winograd_packing_checked[path] = true;
                check(packing == 1, "winograd packing against value by value", qk_path_name((qk_path)path), 1, context);
            }
            if (!qk_path_supported((qk_path)path)) {
                qk_testing_winograd_force_4x4(0);
                continue;
            }
            if (form == 1) winograd_4x4_ran[path] = true;
            for (int t = 0; t < 3; t++) {
                memset(fenced, 0xA5, count + 2 * GUARD);
                memset(unpacked, 0, weight_count(c));
                const qk_status status = qk_testing_conv3x3_winograd((qk_path)path, &c->shape, c->batch, d->weights, d->bias,
                                                                     d->multiplier, d->pad, d->input, fenced + GUARD,
                                                                     thread_counts[t], unpacked);
                if (status == QK_ERROR_UNSUPPORTED_PATH) break;
                winograd_ran[path] = true;
                guards = true;
                for (size_t i = 0; i < GUARD; i++)
                    if (fenced[i] != 0xA5 || fenced[GUARD + count + i] != 0xA5) guards = false;
                check(status == QK_OK && guards && memcmp(fenced + GUARD, oracle, count) == 0, "winograd conv",
                      qk_path_name((qk_path)path), thread_counts[t], context);
                check(memcmp(unpacked, d->weights, weight_count(c)) == 0, "winograd unpack(pack) round trip",
                      qk_path_name((qk_path)path), thread_counts[t], context);
            }
            qk_testing_winograd_force_4x4(0);
        }
    }
    free(oracle);
    free(fenced);
    free(unpacked);
}

static void check_winograd_case(const conv_case *c, uint64_t seed, bool tiny) {
    rng_state = seed;
    conv_data d = random_conv_data(c, tiny);
    char context[160];
    describe(c, seed, context, sizeof context);
    check_winograd(c, &d, context);
    free_conv_data(&d);
}

// All inputs and pad values 255 and every weight +127, -127 or a random sign of 127, at `in_c` input
// channels: every output's sum is the largest a layer can have, 255 * 127 * 9 * in_c in magnitude. The bias
// brings each channel's sum back into [0, 255] with multiplier 1, so the bytes show whether the sum was exact.
static void check_winograd_maxima(int32_t in_c, int32_t stride, int sign, uint64_t seed) {
    const conv_case c = {{5, 6, in_c, 20, stride, 1}, 1};
    rng_state = seed;
    conv_data d = random_conv_data(&c, false);
    for (size_t i = 0; i < weight_count(&c); i++) d.weights[i] = (int8_t)(sign != 0 ? 127 * sign : (uniform(0, 1) ? 127 : -127));
    memset(d.input, 255, input_count(&c));
    memset(d.pad, 255, (size_t)in_c);
    for (int32_t o = 0; o < c.shape.out_c; o++) {
        int64_t sum = 0;
        for (size_t i = 0; i < (size_t)in_c * 9; i++) sum += 255 * (int64_t)d.weights[(size_t)o * in_c * 9 + i];
        d.bias[o] = (int32_t)(-sum + 7 * o);
        d.multiplier[o] = 1.0f;
    }
    char context[160];
    snprintf(context, sizeof context, "maxima: %d channels, stride %d, weights %s", in_c, stride,
             sign > 0 ? "+127" : sign < 0 ? "-127" : "+-127");
    check_winograd(&c, &d, context);
    // The expected bytes themselves, so that the oracle is checked too: 7 * o everywhere.
    uint8_t *oracle = xmalloc(output_count(&c));
    bool guards;
    run_conv(QK_PATH_SCALAR, &c, &d, 1, oracle, &guards);
    bool exact = true;
    for (size_t i = 0; i < output_count(&c); i++) exact = exact && oracle[i] == (uint8_t)(7 * (int32_t)(i % 20));
    check(exact, "maxima oracle", "scalar", 1, context);
    free(oracle);
    free_conv_data(&d);
}

static void winograd_tests(void) {
    // Random shapes: odd and even sides from 1 to 56, groups, channels off every block and chunk width;
    // every third at stride 2 (the phases' 25 positions).
    const int cases = quick ? 24 : 72;
    for (int i = 0; i < cases; i++) {
        rng_state = 0x3A11AD0ull + 104729u * (uint64_t)i;
        const int32_t groups_choice[] = {1, 1, 1, 2, 4};
        const int32_t groups = groups_choice[uniform(0, 4)];
        const int32_t side = i % 4 == 0 ? 56 : 24;
        conv_case c = {{uniform(1, side), uniform(1, side), groups * uniform(1, 40), groups * uniform(1, 40), i % 3 == 1 ? 2 : 1,
                        groups},
                       uniform(1, 3)};
        if (quick && c.shape.in_h * c.shape.in_w > 400) c.shape.in_h = 400 / c.shape.in_w + 1;
        check_winograd_case(&c, 9000 + (uint64_t)i, i % 6 == 5);
    }
    // Edges: 1x1 to 3x3 images (every tile partly outside), single rows and columns, the stem's 3 channels
    // with its per-channel pad values, wide channel tiles, several segments per band.
    const conv_case edges[] = {
        {{1, 1, 8, 8, 1, 1}, 2},     {{2, 2, 16, 24, 1, 1}, 1},   {{3, 3, 5, 17, 1, 1}, 3},  {{1, 9, 12, 40, 1, 1}, 1},
        {{9, 1, 12, 40, 1, 1}, 1},   {{7, 7, 3, 48, 1, 1}, 2},    {{32, 32, 3, 16, 1, 1}, 1}, {{14, 14, 64, 64, 1, 1}, 1},
        {{8, 8, 32, 100, 1, 4}, 2},  {{6, 10, 130, 56, 1, 2}, 1}, {{5, 5, 200, 200, 1, 1}, 1}, {{13, 11, 48, 48, 1, 1}, 2},
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) check_winograd_case(&edges[i], 9500 + i, false);
    // The same at stride 2: 1x1 to 5x5 images (one tile's 5x5 patch reaches past every side), odd sides whose
    // last tile has one output row or column, single rows and columns, the stem's 3 channels with pad values.
    const conv_case edges_s2[] = {
        {{1, 1, 8, 8, 2, 1}, 2},     {{2, 2, 16, 24, 2, 1}, 1},   {{3, 3, 5, 17, 2, 1}, 3},  {{5, 5, 12, 40, 2, 1}, 1},
        {{1, 9, 12, 40, 2, 1}, 1},   {{9, 1, 12, 40, 2, 1}, 1},   {{7, 7, 3, 48, 2, 1}, 2},  {{14, 14, 64, 64, 2, 1}, 1},
        {{8, 8, 32, 100, 2, 4}, 2},  {{6, 10, 130, 56, 2, 2}, 1}, {{11, 13, 48, 96, 2, 1}, 2}, {{28, 28, 96, 48, 2, 1}, 1},
    };
    for (size_t i = 0; i < sizeof edges_s2 / sizeof edges_s2[0]; i++) check_winograd_case(&edges_s2[i], 9550 + i, false);
    if (!quick) {
        // Past 4 MB of transformed weights a member holds a whole image's inputs: 12x12x400 (F(2x2,3x3) in one
        // band of 36 tiles), 20x20x400 (F(4x4,3x3) too), 20x20x800 -> 168 (past the 2 MB cap: two bands).
        const conv_case big[] = {{{56, 56, 48, 48, 1, 1}, 1},   {{7, 7, 640, 24, 1, 1}, 1},    {{112, 112, 48, 48, 2, 1}, 1},
                                 {{14, 14, 192, 200, 2, 1}, 2}, {{12, 12, 400, 400, 1, 1}, 2}, {{20, 20, 400, 400, 1, 1}, 1},
                                 {{20, 20, 800, 168, 1, 1}, 1}};
        for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) check_winograd_case(&big[i], 9600 + i, false);
    }
    // The channel bounds, exact with the largest sums of either sign: 1841 input channels at stride 1 (where
    // 4 * acc must fit int32), 1152 at stride 2 (one tile's transformed inputs fit the stack buffer).
    for (int sign = -1; sign <= 1; sign++) check_winograd_maxima(1841, 1, sign, 9700 + (uint64_t)(sign + 1));
    for (int sign = -1; sign <= 1; sign++) check_winograd_maxima(1152, 2, sign, 9705 + (uint64_t)(sign + 1));
    // F(4x4,3x3) at its bound, 800 channels: groups of 28 chunks sum up to 255 * 127 * 9 * 112 < 2^25 each.
    for (int sign = -1; sign <= 1; sign++) check_winograd_maxima(800, 1, sign, 9720 + (uint64_t)(sign + 1));
    // Past the bound the path must not take Winograd: refused when forced, direct when chosen.
    const conv_case overs[] = {{{4, 4, 1842, 16, 1, 1}, 1}, {{6, 6, 1153, 16, 2, 1}, 1}};
    for (size_t o = 0; o < sizeof overs / sizeof overs[0]; o++) {
        const conv_case *over = &overs[o];
        char context[80];
        snprintf(context, sizeof context, "%d channels, stride %d", over->shape.in_c, over->shape.stride);
        rng_state = 9710 + o;
        conv_data d = random_conv_data(over, false);
        uint8_t *output = xmalloc(output_count(over));
        int8_t *unpacked = xmalloc(weight_count(over));
        FOR_EACH_PATH(path) {
            if (!qk_path_supported((qk_path)path)) continue;
            const char *algorithm = qk_conv3x3_algorithm((qk_path)path, &over->shape);
            check(algorithm != NULL && strncmp(algorithm, "winograd", 8) != 0, "past the bound: runs directly",
                  qk_path_name((qk_path)path), 0, context);
            check(qk_conv3x3_winograd_bytes((qk_path)path, &over->shape) == 0, "past the bound: packs no Winograd weights",
                  qk_path_name((qk_path)path), 0, context);
            const qk_status status = qk_testing_conv3x3_winograd((qk_path)path, &over->shape, 1, d.weights, d.bias,
                                                                 d.multiplier, d.pad, d.input, output, 1, unpacked);
            check(status == QK_ERROR_UNSUPPORTED_PATH, "past the bound: refused by the forced Winograd",
                  qk_path_name((qk_path)path), 0, context);
        }
        free(output);
        free(unpacked);
        free_conv_data(&d);
    }
    printf("paths run with Winograd against scalar:");
    FOR_EACH_PATH(path)
        if (winograd_ran[path]) printf(" %s", qk_path_name((qk_path)path));
    printf("\npaths without a Winograd run here (no Winograd kernels, or this CPU lacks the path):");
    FOR_EACH_PATH(path)
        if (!winograd_ran[path]) printf(" %s", qk_path_name((qk_path)path));
    printf("\npaths whose Winograd packing was checked (on any CPU):");
    FOR_EACH_PATH(path)
        if (winograd_packing_checked[path]) printf(" %s", qk_path_name((qk_path)path));
    printf("\npaths run with Winograd F(4x4,3x3) against scalar:");
    FOR_EACH_PATH(path)
        if (winograd_4x4_ran[path]) printf(" %s", qk_path_name((qk_path)path));
    printf("\npaths without an F(4x4,3x3) run here (no such kernels, or this CPU lacks the path):");
    FOR_EACH_PATH(path)
        if (!winograd_4x4_ran[path]) printf(" %s", qk_path_name((qk_path)path));
    printf("\n");
}

// ---- Pool and fc ----
static void pool_tests(void) {
    const struct { int32_t batch, pixels, channels; float scale; } cases[] = {
        {1, 49, 1280, 1}, {2, 49, 1283, 2}, {3, 1, 17, 0.5f}, {4, 4, 64, 1}, {1, 3, 1, 1},
        {4, 50, 100, 2},  {2, 1, 200, 0.5f}, {1, 9, 31, 1e-6f}, {3, 7, 33, 1}, {1, 2, 65, 0.5f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rng_state = 6000 + i;
        const size_t in = (size_t)cases[i].batch * cases[i].pixels * cases[i].channels, out = (size_t)cases[i].batch * cases[i].channels;
        uint8_t *input = xmalloc(in + EXTRA), *oracle = xmalloc(out), *fenced = xmalloc(out + 2 * GUARD);
        random_bytes(input, in + EXTRA);
        const float multiplier = cases[i].pixels == 1 ? cases[i].scale : cases[i].scale / (float)cases[i].pixels;
        char context[96];
        snprintf(context, sizeof context, "pool case %zu", i);
        check(qk_global_avgpool_u8(QK_PATH_SCALAR, cases[i].batch, cases[i].pixels, cases[i].channels, input, multiplier,
                                   oracle, 1) == QK_OK, "pool", "scalar", 1, context);
        FOR_EACH_PATH(path) {
            if (!qk_path_supported((qk_path)path)) continue;
            for (int t = 0; t < 3; t++) {
                memset(fenced, 0xA5, out + 2 * GUARD);
                const bool ran = qk_global_avgpool_u8((qk_path)path, cases[i].batch, cases[i].pixels, cases[i].channels,
                                                      input, multiplier, fenced + GUARD, thread_counts[t]) == QK_OK;
                bool guards = true;
                for (size_t g = 0; g < GUARD; g++) guards = guards && fenced[g] == 0xA5 && fenced[GUARD + out + g] == 0xA5;
                check(ran && guards && memcmp(fenced + GUARD, oracle, out) == 0, "pool", qk_path_name((qk_path)path),
                      thread_counts[t], context);
            }
            compared[path] = true;
        }
        free(input);
        free(oracle);
        free(fenced);
    }
}

// Logits of `path`, bit patterns; false when refused.
static bool run_fc(qk_path path, int32_t batch, int32_t in_c, int32_t out_c, const int8_t *weight, const int32_t *bias,
                   const float *multiplier, const uint8_t *input, int32_t threads, float *logits) {
    const size_t size = qk_fc_packed_size(path, in_c, out_c);
    if (size == 0) return false;
    void *packed = aligned(size);
    bool ok = qk_fc_pack(path, in_c, out_c, weight, packed) == QK_OK &&
              qk_fc_u8(path, batch, in_c, out_c, packed, bias, multiplier, input, logits, threads) == QK_OK;
    int8_t *unpacked = xmalloc((size_t)in_c * out_c);
    if (ok) {
        ok = qk_fc_unpack(path, in_c, out_c, packed, unpacked) == QK_OK &&
             memcmp(unpacked, weight, (size_t)in_c * out_c) == 0;
    }
    free(unpacked);
    free(packed);
    return ok;
}

static void fc_tests(void) {
    const int cases = quick ? 8 : 16;
    for (int i = 0; i < cases; i++) {
        rng_state = 7000 + (uint64_t)i;
        const int32_t batch = uniform(1, 4), in_c = i == 0 ? 1280 : uniform(1, 300), out_c = i == 0 ? 1000 : uniform(1, 70);
        int8_t *weight = xmalloc((size_t)in_c * out_c);
        for (size_t k = 0; k < (size_t)in_c * out_c; k++) weight[k] = (int8_t)uniform(-127, 127);
        int32_t *bias = xmalloc((size_t)out_c * sizeof(int32_t));
        float *multiplier = xmalloc((size_t)out_c * sizeof(float));
        for (int32_t k = 0; k < out_c; k++) {
            bias[k] = uniform(-5000000, 5000000);
            multiplier[k] = (float)(1e-6 + 1e-3 * unit_double());
        }
        uint8_t *input = xmalloc((size_t)batch * in_c + EXTRA);
        random_bytes(input, (size_t)batch * in_c + EXTRA);
        const size_t count = (size_t)batch * out_c;
        float *oracle = xmalloc(count * sizeof(float)), *logits = xmalloc(count * sizeof(float));
        char context[96];
        snprintf(context, sizeof context, "fc batch %d, %d -> %d", batch, in_c, out_c);
        check(run_fc(QK_PATH_SCALAR, batch, in_c, out_c, weight, bias, multiplier, input, 1, oracle), "fc", "scalar", 1, context);
        FOR_EACH_PATH(path) {
            if (!qk_path_supported((qk_path)path)) continue;
            for (int t = 0; t < 3; t++) {
                memset(logits, 0, count * sizeof(float));
                const bool ran = run_fc((qk_path)path, batch, in_c, out_c, weight, bias, multiplier, input, thread_counts[t], logits);
                check(ran && memcmp(logits, oracle, count * sizeof(float)) == 0, "fc (logit bits, round trip)",
                      qk_path_name((qk_path)path), thread_counts[t], context);
            }
            compared[path] = true;
        }
        free(weight);
        free(bias);
        free(multiplier);
        free(input);
        free(oracle);
        free(logits);
    }
}

// ---- Whole networks ----
typedef struct network_case {
    int32_t layers, classes;
    conv_case convs[8];
    conv_data data[8];
    int8_t *fc_weight;
    int32_t *fc_bias;
    float *fc_multiplier;
    float pool_multiplier;
} network_case;

static network_case random_network(int32_t in_h, int32_t in_w, int32_t layers, const int32_t (*spec)[3], int32_t classes,
                                   uint64_t seed) {
    network_case net;
    net.layers = layers;
    net.classes = classes;
    int32_t h = in_h, w = in_w, c = 3;
    rng_state = seed;
    for (int32_t i = 0; i < layers; i++) {
        conv_case conv = {{h, w, c, spec[i][0], spec[i][1], spec[i][2]}, 1};
        net.convs[i] = conv;
        net.data[i] = random_conv_data(&conv, false);
        h = out_h(&conv);
        w = out_w(&conv);
        c = spec[i][0];
    }
    net.fc_weight = xmalloc((size_t)classes * c);
    for (size_t k = 0; k < (size_t)classes * c; k++) net.fc_weight[k] = (int8_t)uniform(-127, 127);
    net.fc_bias = xmalloc((size_t)classes * sizeof(int32_t));
    net.fc_multiplier = xmalloc((size_t)classes * sizeof(float));
    for (int32_t k = 0; k < classes; k++) {
        net.fc_bias[k] = uniform(-5000000, 5000000);
        net.fc_multiplier[k] = (float)(1e-6 + 1e-3 * unit_double());
    }
    net.pool_multiplier = (float)(0.8 + 0.8 * unit_double()) / (float)(h * w);
    return net;
}

static int32_t last_channels(const network_case *net) { return net->convs[net->layers - 1].shape.out_c; }
static int32_t last_pixels(const network_case *net) {
    const conv_case *c = &net->convs[net->layers - 1];
    return out_h(c) * out_w(c);
}
static size_t image_bytes(const network_case *net) {
    return (size_t)net->convs[0].shape.in_h * net->convs[0].shape.in_w * 3;
}

// The oracle: scalar kernels, one call per step, one thread. pooled and logits receive the results.
static void per_layer_scalar(const network_case *net, const uint8_t *images, int32_t batch, uint8_t *pooled, float *logits) {
    uint8_t *activation = xmalloc((size_t)batch * image_bytes(net) + EXTRA);
    memcpy(activation, images, (size_t)batch * image_bytes(net) + EXTRA);
    for (int32_t i = 0; i < net->layers; i++) {
        conv_case c = net->convs[i];
        c.batch = batch;
        void *packed = aligned(qk_conv3x3_packed_size(QK_PATH_SCALAR, &c.shape));
        qk_conv3x3_pack(QK_PATH_SCALAR, &c.shape, net->data[i].weights, packed);
        uint8_t *output = xmalloc(output_count(&c) + EXTRA);
        memset(output, 0, output_count(&c) + EXTRA);
        qk_conv3x3_u8(QK_PATH_SCALAR, &c.shape, batch, packed, net->data[i].bias, net->data[i].multiplier, net->data[i].pad,
                      activation, output, 1);
        free(packed);
        free(activation);
        activation = output;
    }
    uint8_t *pooled_slack = xmalloc((size_t)batch * last_channels(net) + EXTRA);
    memset(pooled_slack, 0, (size_t)batch * last_channels(net) + EXTRA);
    qk_global_avgpool_u8(QK_PATH_SCALAR, batch, last_pixels(net), last_channels(net), activation, net->pool_multiplier,
                         pooled_slack, 1);
    void *packed = aligned(qk_fc_packed_size(QK_PATH_SCALAR, last_channels(net), net->classes));
    qk_fc_pack(QK_PATH_SCALAR, last_channels(net), net->classes, net->fc_weight, packed);
    qk_fc_u8(QK_PATH_SCALAR, batch, last_channels(net), net->classes, packed, net->fc_bias, net->fc_multiplier, pooled_slack,
             logits, 1);
    memcpy(pooled, pooled_slack, (size_t)batch * last_channels(net));
    free(packed);
    free(pooled_slack);
    free(activation);
}

// Staged: the weights are written where qk_network_*_staging says, wherever it offers a place, and packed
// in place from there (as a model load does).
static long staged_layers;
static qk_network *make_network_limited(const network_case *net, qk_path path, qk_winograd_use use, bool staged) {
    qk_conv_shape shapes[8];
    for (int32_t i = 0; i < net->layers; i++) shapes[i] = net->convs[i].shape;
    qk_network *network = NULL;
    if (qk_network_create_limited(path, use, net->layers, shapes, net->classes, &network) != QK_OK) return NULL;
    bool ok = true;
    for (int32_t i = 0; i < net->layers; i++) {
        const int8_t *weights = net->data[i].weights;
        int8_t *staging = staged ? qk_network_conv_staging(network, i) : NULL;
        if (staging != NULL) {
            memcpy(staging, weights, weight_count(&net->convs[i]));
            weights = staging;
            staged_layers++;
        }
        ok = ok && qk_network_set_conv(network, i, weights, net->data[i].bias, net->data[i].multiplier,
                                       net->data[i].pad) == QK_OK;
    }
    const int8_t *fc_weight = net->fc_weight;
    int8_t *fc_staging = staged ? qk_network_fc_staging(network) : NULL;
    if (fc_staging != NULL) {
        memcpy(fc_staging, fc_weight, (size_t)net->classes * (size_t)net->convs[net->layers - 1].shape.out_c);
        fc_weight = fc_staging;
        staged_layers++;
    }
    ok = ok && qk_network_set_head(network, net->pool_multiplier, fc_weight, net->fc_bias, net->fc_multiplier) == QK_OK;
    if (!ok) {
        qk_network_destroy(network);
        return NULL;
    }
    return network;
}

static qk_network *make_network_staged(const network_case *net, qk_path path, bool staged) {
    return make_network_limited(net, path, QK_WINOGRAD_USE_ANY, staged);
}

static qk_network *make_network(const network_case *net, qk_path path) { return make_network_staged(net, path, false); }

static void check_network(const network_case *net, uint64_t seed, int32_t max_batch, const char *name) {
    rng_state = seed + 77;
    const size_t images_size = (size_t)max_batch * image_bytes(net) + EXTRA;
    uint8_t *images = xmalloc(images_size);
    random_bytes(images, images_size);
    const int64_t budgets[] = {0, 1, 600};
    for (int32_t batch = 1; batch <= max_batch; batch++) {
        // The slack after this batch's images is garbage that must never reach a result.
        uint8_t *batch_images = xmalloc((size_t)batch * image_bytes(net) + EXTRA);
        memcpy(batch_images, images, (size_t)batch * image_bytes(net));
        random_bytes(batch_images + (size_t)batch * image_bytes(net), EXTRA);
        const size_t pooled_count = (size_t)batch * last_channels(net), logit_count = (size_t)batch * net->classes;
        uint8_t *expected_pooled = xmalloc(pooled_count);
        float *expected_logits = xmalloc(logit_count * sizeof(float));
        per_layer_scalar(net, batch_images, batch, expected_pooled, expected_logits);
        char context[128];
        FOR_EACH_PATH(path) {
            if (!qk_path_supported((qk_path)path)) continue;
            for (int b = 0; b < 3; b++) {
                // The last budget's network is packed in place from staged weights.
                qk_network *network = make_network_staged(net, (qk_path)path, b == 2);
                snprintf(context, sizeof context, "%s batch %d depth-first budget %lld%s", name, batch, (long long)budgets[b],
                         b == 2 ? ", packed in place" : "");
                check(network != NULL, "network build", qk_path_name((qk_path)path), 0, context);
                if (network == NULL) continue;
                // The transformed weights' memory, as reported, is the sum of the layers packed that way.
                size_t winograd_bytes = 0;
                for (int32_t i = 0; i < net->layers; i++)
                    winograd_bytes += qk_conv3x3_winograd_bytes((qk_path)path, &net->convs[i].shape);
                check(qk_network_winograd_bytes(network) == winograd_bytes &&
                          qk_network_packed_bytes(network) >= winograd_bytes,
                      "network Winograd bytes", qk_path_name((qk_path)path), 0, context);
                qk_network_set_depth_first_bytes(network, budgets[b]);
                qk_network_scratch scratch;
                qk_network_scratch_sizes(network, batch, &scratch);
                for (int t = 0; t < 3; t++) {
                    for (int in_ping = 0; in_ping < 2; in_ping++) {
                        uint8_t *ping = xmalloc(scratch.ping), *pong = xmalloc(scratch.pong), *pooled = xmalloc(scratch.pooled);
                        float *logits = xmalloc(scratch.logits);
                        uint8_t *input = xmalloc(scratch.input);
                        // Each thread's kernel scratch, and a fence after it that the run must leave alone.
                        const size_t scratch_reach = (size_t)thread_counts[t] * scratch.thread;
                        uint8_t *thread_scratch = xmalloc(scratch_reach + EXTRA);
                        memset(thread_scratch, 0x5A, scratch_reach + EXTRA);
                        memset(ping, 0x5A, scratch.ping);
                        memset(pong, 0x5A, scratch.pong);
                        memset(pooled, 0x5A, scratch.pooled);
                        memcpy(input, batch_images, (size_t)batch * image_bytes(net) + EXTRA);
                        if (in_ping) memcpy(ping, batch_images, (size_t)batch * image_bytes(net) + EXTRA);
                        const qk_status status = qk_network_run(network, batch, in_ping ? ping : input, ping, pong, pooled,
                                                                logits, thread_scratch, thread_counts[t], NULL);
                        int fence_intact = 1;
                        for (size_t i = scratch_reach; i < scratch_reach + EXTRA; i++) fence_intact &= thread_scratch[i] == 0x5A;
                        check(fence_intact, "network thread scratch fence", qk_path_name((qk_path)path), thread_counts[t], name);
                        free(thread_scratch);
                        snprintf(context, sizeof context, "%s batch %d depth-first budget %lld, input in %s", name, batch,
                                 (long long)budgets[b], in_ping ? "ping" : "own buffer");
                        check(status == QK_OK && memcmp(pooled, expected_pooled, pooled_count) == 0 &&
                                  memcmp(logits, expected_logits, logit_count * sizeof(float)) == 0,
                              "network (pooled bytes, logit bits)", qk_path_name((qk_path)path), thread_counts[t], context);
                        free(ping);
                        free(pong);
                        free(pooled);
                        free(logits);
                        free(input);
                    }
                }
                qk_network_destroy(network);
            }
            // Repacked from the scalar network: the same weights and results.
            qk_network *scalar = make_network(net, QK_PATH_SCALAR), *copy = NULL;
            bool same = scalar != NULL && qk_network_repack(scalar, (qk_path)path, &copy) == QK_OK;
            for (int32_t i = 0; same && i < net->layers; i++) {
                int8_t *weights = xmalloc(weight_count(&net->convs[i]));
                same = qk_network_conv_weights(copy, i, weights) == QK_OK &&
                       memcmp(weights, net->data[i].weights, weight_count(&net->convs[i])) == 0;
                free(weights);
            }
            snprintf(context, sizeof context, "%s", name);
            check(same, "network repack", qk_path_name((qk_path)path), 0, context);
            qk_network_destroy(copy);
            qk_network_destroy(scalar);
            compared[path] = true;
        }
        free(batch_images);
        free(expected_pooled);
        free(expected_logits);
    }
    free(images);
}

static void network_tests(void) {
    static const int32_t net0[][3] = {{16, 2, 1}, {24, 1, 1}, {24, 1, 2}, {40, 2, 1}, {40, 1, 1}};
    static const int32_t net1[][3] = {{48, 2, 1}, {100, 1, 1}, {52, 2, 4}, {20, 1, 1}};
    static const int32_t net2[][3] = {{5, 1, 1}};
    static const int32_t net3[][3] = {{12, 1, 1}, {6, 1, 1}, {24, 1, 1}, {8, 2, 1}, {8, 1, 1}};
    struct { int32_t h, w, layers; const int32_t (*spec)[3]; int32_t classes; } nets[] = {
        {11, 13, 5, net0, 7}, {9, 9, 4, net1, 33}, {7, 5, 1, net2, 3}, {8, 8, 5, net3, 5},
    };
    for (int i = 0; i < 4; i++) {
        network_case net = random_network(nets[i].h, nets[i].w, nets[i].layers, nets[i].spec, nets[i].classes, 8000 + (uint64_t)i);
        char name[32];
        snprintf(name, sizeof name, "network %d", i);
        check_network(&net, 8000 + (uint64_t)i, quick ? 3 : 4, name);
        for (int32_t l = 0; l < net.layers; l++) free_conv_data(&net.data[l]);
        free(net.fc_weight);
        free(net.fc_bias);
        free(net.fc_multiplier);
    }
}

// Winograd limited per network (qk_winograd_use): the same pooled bytes and logit bits as the scalar layers,
// the algorithms the limit allows, less memory for each step down, and the size foretold before creation.
static bool winograd_use_compared[QK_PATH_TEST_END];

static void winograd_use_tests(void) {
    // Layers large enough for the cost model to pick F(4x4,3x3), F(2x2,3x3) and stride 2 on the int16 paths.
    static const int32_t spec[][3] = {{32, 1, 1}, {64, 1, 1}, {64, 1, 1}, {96, 2, 1}, {96, 1, 1}};
    network_case net = random_network(24, 24, 5, spec, 10, 8100);
    rng_state = 8177;
    const int32_t batch = 2;
    uint8_t *images = xmalloc((size_t)batch * image_bytes(&net) + EXTRA);
    random_bytes(images, (size_t)batch * image_bytes(&net) + EXTRA);
    const size_t pooled_count = (size_t)batch * last_channels(&net), logit_count = (size_t)batch * net.classes;
    uint8_t *expected_pooled = xmalloc(pooled_count);
    float *expected_logits = xmalloc(logit_count * sizeof(float));
    per_layer_scalar(&net, images, batch, expected_pooled, expected_logits);
    qk_conv_shape shapes[8];
    for (int32_t i = 0; i < net.layers; i++) shapes[i] = net.convs[i].shape;
    static const char *const use_names[] = {"any", "no 4x4", "none"};
    FOR_EACH_PATH(path) {
        if (!qk_path_supported((qk_path)path)) continue;
        size_t previous_bytes = 0;
        bool plain_winograd_under_any[8] = {false};  // F(2x2,3x3) or stride 2, which no-4x4 keeps
        for (int use = QK_WINOGRAD_USE_ANY; use <= QK_WINOGRAD_USE_NONE; use++) {
            char context[96];
            snprintf(context, sizeof context, "winograd use %s", use_names[use]);
            const size_t foretold = qk_network_packed_size((qk_path)path, (qk_winograd_use)use, net.layers, shapes, net.classes);
            qk_network *network = make_network_limited(&net, (qk_path)path, (qk_winograd_use)use, false);
            check(network != NULL && qk_network_packed_bytes(network) == foretold &&
                      qk_network_winograd_use(network) == (qk_winograd_use)use,
                  "network packed size foretold", qk_path_name((qk_path)path), 0, context);
            if (network == NULL) continue;
            bool allowed = true, any_winograd = false, any_4x4 = false, plain_kept = true;
            for (int32_t i = 0; i < net.layers; i++) {
                const char *algorithm = qk_network_conv_algorithm(network, i);
                allowed &= algorithm != NULL;
                if (algorithm == NULL) continue;
                any_winograd |= strncmp(algorithm, "winograd", 8) == 0;
                any_4x4 |= strcmp(algorithm, "winograd-4x4") == 0;
                const bool plain = strcmp(algorithm, "winograd") == 0;
                if (use == QK_WINOGRAD_USE_ANY) plain_winograd_under_any[i] = plain;
                if (use == QK_WINOGRAD_USE_NO_4X4) plain_kept &= plain || !plain_winograd_under_any[i];
            }
            allowed &= !(use == QK_WINOGRAD_USE_NONE && any_winograd) && !(use == QK_WINOGRAD_USE_NO_4X4 && any_4x4);
            allowed &= use != QK_WINOGRAD_USE_NONE || qk_network_winograd_bytes(network) == 0;
            // The shapes are chosen so that each limit has something to give up (QAREP_WINOGRAD unset): F(4x4,3x3)
            // where the path has it, and F(2x2,3x3) or stride 2 still run without it.
            if (use == QK_WINOGRAD_USE_ANY) {
                allowed &= any_4x4 || !qk_testing_path_has_winograd_4x4((qk_path)path);
            }
            // Without F(4x4,3x3) the layers that ran F(2x2,3x3) or stride 2 still do; an F(4x4,3x3) layer may fall
            // back to either F(2x2,3x3) or direct, whichever the path's cost model prefers (avxvnni: direct).
            if (use == QK_WINOGRAD_USE_NO_4X4) allowed &= plain_kept;
            check(allowed, "network algorithms within the Winograd use", qk_path_name((qk_path)path), 0, context);
            // Each step down gives up what the step above used, so it holds less, or the same where that was unused.
            if (use > QK_WINOGRAD_USE_ANY)
                check(foretold <= previous_bytes, "network packed bytes shrink with the Winograd use", qk_path_name((qk_path)path),
                      0, context);
            previous_bytes = foretold;
            qk_network_scratch scratch;
            qk_network_scratch_sizes(network, batch, &scratch);
            for (int t = 0; t < 3; t++) {
                uint8_t *ping = xmalloc(scratch.ping), *pong = xmalloc(scratch.pong), *pooled = xmalloc(scratch.pooled);
                uint8_t *input = xmalloc(scratch.input), *thread_scratch = xmalloc((size_t)thread_counts[t] * scratch.thread + 1);
                float *logits = xmalloc(scratch.logits);
                memcpy(input, images, (size_t)batch * image_bytes(&net) + EXTRA);
                const qk_status status = qk_network_run(network, batch, input, ping, pong, pooled, logits, thread_scratch,
                                                        thread_counts[t], NULL);
                check(status == QK_OK && memcmp(pooled, expected_pooled, pooled_count) == 0 &&
                          memcmp(logits, expected_logits, logit_count * sizeof(float)) == 0,
                      "network with Winograd limited (pooled bytes, logit bits)", qk_path_name((qk_path)path), thread_counts[t],
                      context);
                free(ping);
                free(pong);
                free(pooled);
                free(input);
                free(thread_scratch);
                free(logits);
            }
            // A repacked copy keeps the limit.
            qk_network *copy = NULL;
            check(qk_network_repack(network, (qk_path)path, &copy) == QK_OK && qk_network_winograd_use(copy) == (qk_winograd_use)use &&
                      qk_network_packed_bytes(copy) == foretold,
                  "network repack keeps the Winograd use", qk_path_name((qk_path)path), 0, context);
            qk_network_destroy(copy);
            qk_network_destroy(network);
        }
        winograd_use_compared[path] = true;
    }
    qk_network *network = NULL;
    check(qk_network_create_limited(QK_PATH_SCALAR, (qk_winograd_use)3, net.layers, shapes, net.classes, &network) ==
                  QK_ERROR_INVALID_ARGUMENT && network == NULL && qk_network_packed_size(QK_PATH_SCALAR, (qk_winograd_use)3, net.layers,
                                                                                        shapes, net.classes) == 0,
          "network refuses an unknown Winograd use", "scalar", 0, "");
    printf("paths run with each Winograd use against scalar:");
    FOR_EACH_PATH(path)
        if (winograd_use_compared[path]) printf(" %s", qk_path_name((qk_path)path));
    printf("\n");
    free(images);
    free(expected_pooled);
    free(expected_logits);
    for (int32_t l = 0; l < net.layers; l++) free_conv_data(&net.data[l]);
    free(net.fc_weight);
    free(net.fc_bias);
    free(net.fc_multiplier);
}

// ---- Detection and peak ----
// The CPU features line of /proc/cpuinfo for the architecture this program was built for. User-mode
// emulators show the host's file, without that line: then there is nothing to compare with.
static bool cpuinfo_features(char *line, size_t size) {
#if defined(__aarch64__)
    const char *key = "Features";
#else
    const char *key = "flags";
#endif
    FILE *file = fopen("/proc/cpuinfo", "r");
    if (file == NULL) return false;
    bool found = false;
    while (!found && fgets(line, (int)size, file) != NULL) found = strncmp(line, key, strlen(key)) == 0;
    fclose(file);
    return found;
}

static bool has_flag(const char *line, const char *flag) {
    const size_t length = strlen(flag);
    for (const char *p = strstr(line, flag); p != NULL; p = strstr(p + 1, flag))
        if ((p == line || p[-1] == ' ' || p[-1] == '\t' || p[-1] == ':') && (p[length] == ' ' || p[length] == '\n' || p[length] == '\0'))
            return true;
    return false;
}

// Whether `name` is one of the comma-separated names in `list`.
static bool in_list(const char *list, const char *name) {
    const size_t length = strlen(name);
    for (const char *p = list; p != NULL; p = strchr(p, ',')) {
        if (*p == ',') p++;
        if (strncmp(p, name, length) == 0 && (p[length] == ',' || p[length] == '\0')) return true;
    }
    return false;
}

static void detection_tests(void) {
    static char line[16384];
    if (expected_paths != NULL) {
        // An emulated CPU: detection must find exactly the paths given, and pick the first of them. Every name
        // given must be a path's, so a misspelled one cannot pass as "not supported".
        for (const char *name = expected_paths; *name != '\0';) {
            const size_t length = strcspn(name, ",");
            bool known = false;
            FOR_EACH_PATH(path) {
                const char *path_name = qk_path_name((qk_path)path);
                known = known || (strlen(path_name) == length && strncmp(path_name, name, length) == 0);
            }
            check(known && length > 0, "--expect-paths names a path", "any", 0, expected_paths);
            name += length;
            if (*name == ',') name++;
        }
        FOR_EACH_PATH(path)
            check(qk_path_supported((qk_path)path) == (in_list(expected_paths, qk_path_name((qk_path)path)) ? 1 : 0),
                  "detection against --expect-paths", qk_path_name((qk_path)path), 0, expected_paths);
        const size_t best_length = strcspn(expected_paths, ",");
        const char *best = qk_path_name(qk_best_path());
        check(strlen(best) == best_length && strncmp(best, expected_paths, best_length) == 0,
              "best path is the first of --expect-paths", best, 0, expected_paths);
    } else if (!cpuinfo_features(line, sizeof line)) {
        printf("detection: /proc/cpuinfo has no features line for this architecture (user-mode emulation); not compared\n");
    } else {
        FOR_EACH_PATH(path) {
            char flags[256];
            snprintf(flags, sizeof flags, "%s", qk_path_linux_cpu_flags((qk_path)path));
            bool all = true;
            for (char *flag = strtok(flags, " "); flag != NULL; flag = strtok(NULL, " ")) all = all && has_flag(line, flag);
            check(qk_path_supported((qk_path)path) == (all ? 1 : 0), "detection against /proc/cpuinfo",
                  qk_path_name((qk_path)path), 0, qk_path_linux_cpu_flags((qk_path)path));
        }
    }
    const qk_path best = qk_best_path();
    bool simd = false;
    for (int path = 1; path < QK_PATH_COUNT; path++) simd = simd || qk_path_supported((qk_path)path);
    check(qk_path_supported(best) && (!simd || best != QK_PATH_SCALAR), "best path is supported and not scalar beside SIMD",
          qk_path_name(best), 0, "");
    // Test-only paths are never the default and have no name a user could give.
    check(best < QK_PATH_COUNT, "best path is a path of the table", qk_path_name(best), 0, "");
    for (int path = QK_PATH_COUNT + 1; path < QK_PATH_TEST_END; path++) {
        qk_path found;
        check(qk_path_from_name(qk_path_name((qk_path)path), &found) == QK_ERROR_INVALID_ARGUMENT,
              "test-only path not found by name", qk_path_name((qk_path)path), 0, "");
    }
    // Every path this CPU runs names its peak mix; another architecture's configs may not (the x86 ones'
    // #else branches name none), which is only reported.
    int unnamed = 0;
    FOR_EACH_PATH(path) {
        if (!qk_path_supported((qk_path)path)) {
            if (qk_path_peak_mix((qk_path)path) == NULL)
                printf("%s %s", unnamed++ ? "," : "note: no peak mix named by the unsupported path(s)", qk_path_name((qk_path)path));
            continue;
        }
        check(qk_path_peak_mix((qk_path)path) != NULL, "peak mix named", qk_path_name((qk_path)path), 0, "");
        const double peak = qk_measure_peak_gmacs((qk_path)path, 0.01);
        check(isfinite(peak) && peak > 0, "peak measurement", qk_path_name((qk_path)path), 1, qk_path_peak_mix((qk_path)path));
    }
    if (unnamed) printf("\n");
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--expect-paths") == 0 && i + 1 < argc) {
            expected_paths = argv[++i];
        } else {
            fprintf(stderr, "usage: %s [--quick] [--expect-paths BEST,OTHER,...]\n", argv[0]);
            return 2;
        }
    }
    printf("best path: %s\n", qk_path_name(qk_best_path()));
    detection_tests();
    conv_tests();
    winograd_tests();
    pool_tests();
    fc_tests();
    network_tests();
    winograd_use_tests();
    printf("layers packed in place from staged weights: %ld\n", staged_layers);
    // The scalar path packs nothing in place: a CPU without SIMD (x86-64 baseline, emulated) stages nothing.
    bool simd_ran = false;
    FOR_EACH_PATH(path) simd_ran = simd_ran || (path != QK_PATH_SCALAR && compared[path]);
    if (simd_ran) check(staged_layers > 0, "some layers packed in place", "any", 0, "");
    printf("paths compared with scalar:");
    FOR_EACH_PATH(path)
        if (compared[path]) printf(" %s", qk_path_name((qk_path)path));
    // Each by name, with the features /proc/cpuinfo does not list (where it has a features line).
    printf("\npaths this CPU could not run:");
    static char features[16384];
    // Under emulation (--expect-paths) /proc/cpuinfo describes the host, not the CPU the tests ran on.
    const bool have_features = expected_paths == NULL && cpuinfo_features(features, sizeof features);
    int missing = 0;
    FOR_EACH_PATH(path) {
        if (qk_path_supported((qk_path)path)) continue;
        printf("%s %s", missing++ ? "," : "", qk_path_name((qk_path)path));
        if (!have_features) continue;
        char flags[256];
        snprintf(flags, sizeof flags, "%s", qk_path_linux_cpu_flags((qk_path)path));
        printf(" (CPU lacks");
        for (char *flag = strtok(flags, " "); flag != NULL; flag = strtok(NULL, " "))
            if (!has_flag(features, flag)) printf(" %s", flag);
        printf(")");
    }
    printf("%s\n", missing ? "" : " none");
    FOR_EACH_PATH(path)
        check(compared[path] == (qk_path_supported((qk_path)path) != 0), "every supported path compared",
              qk_path_name((qk_path)path), 0, "");
    printf("%ld passed, %ld failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
