// Declarations shared by the kernel files; not part of the public interface.
// Each kernel variant lives in its own file (conv3x3-scalar.c, conv3x3-avx2.c, ...) and is reached only
// through the validating entry points in dispatch.c, so variants may assume well-formed arguments.
#ifndef QK_INTERNAL_H
#define QK_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <stddef.h>

#include "qarep_kernels.h"

#if defined(__x86_64__)
#define QK_HAVE_X86 1
#else
#define QK_HAVE_X86 0
#endif

// The exact float tail every path must reproduce (see qarep_kernels.h): separate rounding of the
// conversion and of the multiply, clamp, then round half to even (the default rounding mode, which is what
// cvtps2dq uses too).
static inline uint8_t qk_requantize(int32_t acc_plus_bias, float multiplier) {
    float t = (float)acc_plus_bias;
    t = t * multiplier;
    t = fmaxf(t, 0.0f);
    t = fminf(t, 255.0f);
    return (uint8_t)nearbyintf(t);
}

// Geometry derived once from a validated shape.
typedef struct qk_conv_geometry {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, stride, groups;
    int32_t in_per_group, out_per_group;
} qk_conv_geometry;

qk_conv_geometry qk_conv_geometry_of(const qk_conv_shape *shape);

typedef struct qk_conv_args {
    qk_conv_geometry geo;
    int32_t batch, threads;
    const void *packed;
    const int32_t *bias;
    const float *multiplier;
    const uint8_t *pad_value;
    const uint8_t *input;
    uint8_t *output;
} qk_conv_args;

// Scalar: the oracle. Packed layout is the OIHW weights unchanged.
size_t qk_conv3x3_packed_size_scalar(const qk_conv_geometry *geo);
void qk_conv3x3_pack_scalar(const qk_conv_geometry *geo, const int8_t *weight_oihw, void *packed);
void qk_conv3x3_scalar(const qk_conv_args *args);
void qk_global_avgpool_scalar(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                              float multiplier, uint8_t *output, int32_t threads);
void qk_fc_pack_scalar(int32_t in_c, int32_t out_c, const int8_t *weight, void *packed);
void qk_fc_scalar(int32_t batch, int32_t in_c, int32_t out_c, const void *packed, const int32_t *bias,
                  const float *multiplier, const uint8_t *input, float *logits, int32_t threads);

double qk_measure_peak_gmacs_impl(double seconds);

#endif  // QK_INTERNAL_H
