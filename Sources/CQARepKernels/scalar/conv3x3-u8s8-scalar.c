// Scalar 3x3 conv: the oracle every SIMD path is compared against, and the path of CPUs without one.
// Written for obviousness first; the tap-pointer table keeps the padding logic in one place.
#include "scalar/scalar.h"

size_t qk_conv3x3_u8s8_scalar_packed_size(const qk_path_config *path, const qk_conv_geometry *geo) {
    (void)path;
    return (size_t)geo->out_c * (size_t)geo->in_per_group * 9;
}

// OIHW -> [out][tap][in]: the innermost loop then runs over contiguous input channels of both the pixel
// and the weights, which compilers vectorize (1.7x faster on the A0 layers with SSE2 only).
void qk_conv3x3_u8s8_scalar_pack(const qk_path_config *path, const qk_conv_geometry *geo, const int8_t *weight_oihw,
                                  void *packed) {
    (void)path;
    int8_t *out = (int8_t *)packed;
    const size_t ipg = (size_t)geo->in_per_group;
    for (size_t o = 0; o < (size_t)geo->out_c; o++)
        for (size_t tap = 0; tap < 9; tap++)
            for (size_t c = 0; c < ipg; c++) out[(o * 9 + tap) * ipg + c] = weight_oihw[(o * ipg + c) * 9 + tap];
}

void qk_conv3x3_u8s8_scalar_unpack(const qk_path_config *path, const qk_conv_geometry *geo, const void *packed,
                                    int8_t *weight_oihw) {
    (void)path;
    const int8_t *in = (const int8_t *)packed;
    const size_t ipg = (size_t)geo->in_per_group;
    for (size_t o = 0; o < (size_t)geo->out_c; o++)
        for (size_t tap = 0; tap < 9; tap++)
            for (size_t c = 0; c < ipg; c++) weight_oihw[(o * ipg + c) * 9 + tap] = in[(o * 9 + tap) * ipg + c];
}

// One output pixel, all output channels. tap[t] points at the input pixel for tap t (or at the padding
// values), already offset to channel 0.
static void conv_pixel(const qk_conv_args *args, const uint8_t *const tap[9], uint8_t *out) {
    const qk_conv_geometry *geo = &args->geo;
    const int8_t *weights = (const int8_t *)args->packed;
    const int32_t ipg = geo->in_per_group;
    for (int32_t o = 0; o < geo->out_c; o++) {
        const int32_t first_in = (o / geo->out_per_group) * ipg;
        const int8_t *w = weights + (size_t)o * (size_t)ipg * 9;
        int32_t acc = 0;
        for (int t = 0; t < 9; t++) {
            const uint8_t *x = tap[t] + first_in;
            const int8_t *wt = w + t * ipg;
            for (int32_t c = 0; c < ipg; c++) acc += (int32_t)x[c] * (int32_t)wt[c];
        }
        out[o] = qk_requantize(acc + args->bias[o], args->multiplier[o]);
    }
}

void qk_conv3x3_u8s8_scalar_share(const qk_path_config *path, const qk_conv_args *args, const qk_team *team) {
    (void)path;
    const qk_conv_geometry *geo = &args->geo;
    const int64_t rows = (int64_t)args->batch * geo->out_h;
    int64_t first, end;
    qk_team_share(team, rows, &first, &end);
    for (int64_t row = first; row < end; row++) {
        const int32_t n = (int32_t)(row / geo->out_h);
        const int32_t oy = (int32_t)(row % geo->out_h);
        const uint8_t *image = args->input + (size_t)n * geo->in_h * geo->in_w * geo->in_c;
        uint8_t *out = args->output + ((size_t)n * geo->out_h + oy) * geo->out_w * geo->out_c;
        for (int32_t ox = 0; ox < geo->out_w; ox++) {
            const uint8_t *tap[9];
            for (int ky = 0; ky < 3; ky++) {
                for (int kx = 0; kx < 3; kx++) {
                    const int32_t iy = oy * geo->stride + ky - 1;
                    const int32_t ix = ox * geo->stride + kx - 1;
                    const int inside = iy >= 0 && iy < geo->in_h && ix >= 0 && ix < geo->in_w;
                    tap[ky * 3 + kx] =
                        inside ? image + ((size_t)iy * geo->in_w + ix) * geo->in_c : args->pad_value;
                }
            }
            conv_pixel(args, tap, out + (size_t)ox * geo->out_c);
        }
    }
}
