// Public entry points: argument validation, CPU feature detection and the choice of kernel variant.
// Variants behind these functions trust their arguments, so every check lives here.
#include "qk-internal.h"

#include <stdbool.h>

// Limits mirror the model loader's (docs/model-format.md): 1..8192 channels, 1..4096 pixels a side
// (stride-2 layers only shrink). They also keep every size computation below far from overflow.
enum { QK_MAX_CHANNELS = 8192, QK_MAX_SIDE = 4096 };

#if QK_HAVE_X86
// __builtin_cpu_supports reports what CPUID advertises; the OS must also save the wider register state
// (XCR0), otherwise the first ymm/zmm instruction faults. Check that explicitly rather than trusting the
// runtime library's version to do it.
static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static bool os_saves_state(uint64_t required_xcr0_bits) {
    uint32_t eax = 1, ebx, ecx = 0, edx;
    __asm__ volatile("cpuid" : "+a"(eax), "=b"(ebx), "+c"(ecx), "=d"(edx));
    const uint32_t osxsave = 1u << 27;
    if ((ecx & osxsave) == 0) return false;
    return (read_xcr0() & required_xcr0_bits) == required_xcr0_bits;
}

// XCR0 bits: 1 = SSE, 2 = AVX (upper ymm), 5..7 = AVX-512 opmask, upper zmm0-15, zmm16-31.
static bool detect_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && os_saves_state(0x6);
}

static bool detect_avx512vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
           os_saves_state(0xE6);
}
#endif

// Bit (1 << path) set for each supported path, plus a "detected" bit. CPUID and XGETBV trap to the
// hypervisor in a VM (about 8 us per query measured on KVM), too slow for every kernel call, so detection
// runs once; concurrent first calls compute the same value, so a relaxed race is harmless.
enum { QK_DETECTED = 1 << 30 };
static int detected_paths;

static int detect_paths(void) {
    int paths = QK_DETECTED | (1 << QK_PATH_SCALAR);
#if QK_HAVE_X86
    if (detect_avx2()) paths |= 1 << QK_PATH_AVX2;
    if (detect_avx512vnni()) paths |= 1 << QK_PATH_AVX512VNNI;
#endif
    return paths;
}

int qk_path_supported(qk_path path) {
    if ((unsigned)path > QK_PATH_AVX512VNNI) return 0;
    int paths = __atomic_load_n(&detected_paths, __ATOMIC_RELAXED);
    if (paths == 0) {
        paths = detect_paths();
        __atomic_store_n(&detected_paths, paths, __ATOMIC_RELAXED);
    }
    return (paths >> path) & 1;
}

qk_path qk_best_path(void) {
    if (qk_path_supported(QK_PATH_AVX512VNNI)) return QK_PATH_AVX512VNNI;
    if (qk_path_supported(QK_PATH_AVX2)) return QK_PATH_AVX2;
    return QK_PATH_SCALAR;
}

const char *qk_path_name(qk_path path) {
    switch (path) {
    case QK_PATH_SCALAR: return "scalar";
    case QK_PATH_AVX2: return "avx2";
    case QK_PATH_AVX512VNNI: return "avx512vnni";
    default: return NULL;
    }
}

int32_t qk_conv_out_dim(int32_t in, int32_t stride) {
    if (in < 1 || (stride != 1 && stride != 2)) return 0;
    return (in - 1) / stride + 1;
}

bool qk_conv_shape_is_valid(const qk_conv_shape *shape) {
    if (shape == NULL) return false;
    if (shape->in_h < 1 || shape->in_h > QK_MAX_SIDE || shape->in_w < 1 || shape->in_w > QK_MAX_SIDE) return false;
    if (shape->in_c < 1 || shape->in_c > QK_MAX_CHANNELS || shape->out_c < 1 || shape->out_c > QK_MAX_CHANNELS)
        return false;
    if (shape->stride != 1 && shape->stride != 2) return false;
    if (shape->groups < 1 || shape->in_c % shape->groups != 0 || shape->out_c % shape->groups != 0) return false;
    return true;
}

qk_conv_geometry qk_conv_geometry_of(const qk_conv_shape *shape) {
    qk_conv_geometry geo;
    geo.in_h = shape->in_h;
    geo.in_w = shape->in_w;
    geo.in_c = shape->in_c;
    geo.out_c = shape->out_c;
    geo.stride = shape->stride;
    geo.groups = shape->groups;
    geo.out_h = qk_conv_out_dim(shape->in_h, shape->stride);
    geo.out_w = qk_conv_out_dim(shape->in_w, shape->stride);
    geo.in_per_group = shape->in_c / shape->groups;
    geo.out_per_group = shape->out_c / shape->groups;
    return geo;
}

size_t qk_conv3x3_packed_size(qk_path path, const qk_conv_shape *shape) {
    if (!qk_conv_shape_is_valid(shape) || !qk_path_supported(path)) return 0;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: return qk_conv_blocked_packed_size(&geo, &qk_conv_microkernels_avx2);
    case QK_PATH_AVX512VNNI: return qk_conv_blocked_packed_size(&geo, &qk_conv_microkernels_avx512vnni);
#endif
    default: return qk_conv3x3_packed_size_scalar(&geo);
    }
}

void qk_conv3x3_pack(qk_path path, const qk_conv_shape *shape, const int8_t *weight_oihw, void *packed) {
    if (!qk_conv_shape_is_valid(shape) || !qk_path_supported(path) || weight_oihw == NULL || packed == NULL) return;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_conv_blocked_pack(&geo, &qk_conv_microkernels_avx2, weight_oihw, packed); return;
    case QK_PATH_AVX512VNNI: qk_conv_blocked_pack(&geo, &qk_conv_microkernels_avx512vnni, weight_oihw, packed); return;
#endif
    default: qk_conv3x3_pack_scalar(&geo, weight_oihw, packed); return;
    }
}

void qk_conv3x3_unpack(qk_path path, const qk_conv_shape *shape, const void *packed, int8_t *weight_oihw) {
    if (!qk_conv_shape_is_valid(shape) || !qk_path_supported(path) || weight_oihw == NULL || packed == NULL) return;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_conv_blocked_unpack(&geo, &qk_conv_microkernels_avx2, packed, weight_oihw); return;
    case QK_PATH_AVX512VNNI: qk_conv_blocked_unpack(&geo, &qk_conv_microkernels_avx512vnni, packed, weight_oihw); return;
#endif
    default: qk_conv3x3_unpack_scalar(&geo, packed, weight_oihw); return;
    }
}

void qk_conv3x3_u8(qk_path path, const qk_conv_shape *shape, int32_t batch, const void *packed,
                   const int32_t *bias, const float *multiplier, const uint8_t *pad_value,
                   const uint8_t *input, uint8_t *output, int32_t threads) {
    if (!qk_conv_shape_is_valid(shape) || !qk_path_supported(path) || batch < 1) return;
    if (packed == NULL || bias == NULL || multiplier == NULL || pad_value == NULL || input == NULL || output == NULL)
        return;
    const qk_conv_args args = {
        .geo = qk_conv_geometry_of(shape),
        .batch = batch,
        .threads = threads < 1 ? 1 : threads,
        .packed = packed,
        .bias = bias,
        .multiplier = multiplier,
        .pad_value = pad_value,
        .input = input,
        .output = output,
    };
    int32_t joined = 0;
#pragma omp parallel num_threads(args.threads) if (args.threads > 1)
    {
        const qk_team team = qk_team_join(&joined);
        qk_conv3x3_share(path, &args, &team);
    }
}

void qk_conv3x3_share(qk_path path, const qk_conv_args *args, const qk_team *team) {
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_conv_blocked_share(args, &qk_conv_microkernels_avx2, team); return;
    case QK_PATH_AVX512VNNI: qk_conv_blocked_share(args, &qk_conv_microkernels_avx512vnni, team); return;
#endif
    default: qk_conv3x3_scalar_share(args, team); return;
    }
}

void qk_conv3x3_first_weights(qk_path path, const qk_conv_args *args, const qk_team *team, const uint8_t **weights,
                              size_t *bytes) {
    *weights = NULL;
    *bytes = 0;
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_conv_blocked_first_weights(args, &qk_conv_microkernels_avx2, team, weights, bytes); return;
    case QK_PATH_AVX512VNNI:
        qk_conv_blocked_first_weights(args, &qk_conv_microkernels_avx512vnni, team, weights, bytes);
        return;
#endif
    default: return;  // the scalar path does not prefetch
    }
}

void qk_global_avgpool_u8(qk_path path, int32_t batch, int32_t pixels, int32_t channels,
                          const uint8_t *input, float multiplier, uint8_t *output, int32_t threads) {
    if (!qk_path_supported(path) || !qk_pool_shape_is_valid(batch, pixels, channels) || input == NULL ||
        output == NULL)
        return;
    if (threads < 1) threads = 1;
    int32_t joined = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const qk_team team = qk_team_join(&joined);
        qk_global_avgpool_share(path, batch, pixels, channels, input, multiplier, output, &team);
    }
}

bool qk_pool_shape_is_valid(int32_t batch, int32_t pixels, int32_t channels) {
    // The int32 channel sum must not overflow: pixels * 255 < 2^31.
    return batch >= 1 && pixels >= 1 && channels >= 1 && pixels <= INT32_MAX / 255;
}

void qk_global_avgpool_share(qk_path path, int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                             float multiplier, uint8_t *output, const qk_team *team) {
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_global_avgpool_avx2_share(batch, pixels, channels, input, multiplier, output, team); return;
    case QK_PATH_AVX512VNNI:
        qk_global_avgpool_avx512vnni_share(batch, pixels, channels, input, multiplier, output, team);
        return;
#endif
    default: qk_global_avgpool_scalar_share(batch, pixels, channels, input, multiplier, output, team); return;
    }
}

bool qk_fc_shape_is_valid(int32_t in_c, int32_t out_c) {
    return in_c >= 1 && in_c <= QK_MAX_CHANNELS && out_c >= 1 && out_c <= 100000;
}

size_t qk_fc_packed_size(qk_path path, int32_t in_c, int32_t out_c) {
    if (!qk_fc_shape_is_valid(in_c, out_c) || !qk_path_supported(path)) return 0;
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: return qk_fc_blocked_size(in_c, out_c, qk_conv_microkernels_avx2.lanes);
    case QK_PATH_AVX512VNNI: return qk_fc_blocked_size(in_c, out_c, qk_conv_microkernels_avx512vnni.lanes);
#endif
    default: return (size_t)in_c * (size_t)out_c;
    }
}

void qk_fc_pack(qk_path path, int32_t in_c, int32_t out_c, const int8_t *weight, void *packed) {
    if (!qk_fc_shape_is_valid(in_c, out_c) || !qk_path_supported(path) || weight == NULL || packed == NULL) return;
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_fc_pack_blocked(in_c, out_c, &qk_conv_microkernels_avx2, weight, packed); return;
    case QK_PATH_AVX512VNNI:
        qk_fc_pack_blocked(in_c, out_c, &qk_conv_microkernels_avx512vnni, weight, packed);
        return;
#endif
    default: qk_fc_pack_scalar(in_c, out_c, weight, packed); return;
    }
}

void qk_fc_unpack(qk_path path, int32_t in_c, int32_t out_c, const void *packed, int8_t *weight) {
    if (!qk_fc_shape_is_valid(in_c, out_c) || !qk_path_supported(path) || weight == NULL || packed == NULL) return;
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_fc_unpack_blocked(in_c, out_c, &qk_conv_microkernels_avx2, packed, weight); return;
    case QK_PATH_AVX512VNNI:
        qk_fc_unpack_blocked(in_c, out_c, &qk_conv_microkernels_avx512vnni, packed, weight);
        return;
#endif
    default: qk_fc_unpack_scalar(in_c, out_c, packed, weight); return;
    }
}

void qk_fc_u8(qk_path path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
              const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits,
              int32_t threads) {
    if (!qk_fc_shape_is_valid(in_c, out_c) || !qk_path_supported(path) || batch < 1) return;
    if (packed == NULL || bias == NULL || multiplier == NULL || input == NULL || logits == NULL) return;
    if (threads < 1) threads = 1;
    int32_t joined = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const qk_team team = qk_team_join(&joined);
        qk_fc_share(path, batch, in_c, out_c, packed, bias, multiplier, input, logits, &team);
    }
}

void qk_fc_share(qk_path path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                 const float *multiplier, const uint8_t *input, float *logits, const qk_team *team) {
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2: qk_fc_avx2_share(batch, in_c, out_c, packed, bias, multiplier, input, logits, team); return;
    case QK_PATH_AVX512VNNI:
        qk_fc_avx512vnni_share(batch, in_c, out_c, packed, bias, multiplier, input, logits, team);
        return;
#endif
    default: qk_fc_scalar_share(batch, in_c, out_c, packed, bias, multiplier, input, logits, team); return;
    }
}

void qk_fc_first_weights(qk_path path, int32_t in_c, int32_t out_c, const void *packed, const qk_team *team,
                         const uint8_t **weights, size_t *bytes) {
    *weights = NULL;
    *bytes = 0;
    switch (path) {
#if QK_HAVE_X86
    case QK_PATH_AVX2:
        qk_fc_blocked_first_weights(in_c, out_c, packed, qk_conv_microkernels_avx2.lanes, team, weights, bytes);
        return;
    case QK_PATH_AVX512VNNI:
        qk_fc_blocked_first_weights(in_c, out_c, packed, qk_conv_microkernels_avx512vnni.lanes, team, weights, bytes);
        return;
#endif
    default: return;
    }
}

double qk_measure_peak_gmacs(double seconds) {
    if (!(seconds > 0.0)) seconds = 0.0;
    if (seconds > 10.0) seconds = 10.0;
    return qk_measure_peak_gmacs_impl(seconds);
}
