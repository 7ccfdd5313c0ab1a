// Scalar fully connected head: the oracle; the packed layout is the [out_c][in_c] weights unchanged.
#include "scalar/scalar.h"

#include <string.h>

void qk_fc_u8s8_scalar_pack(const qk_path_config *path, int32_t in_c, int32_t out_c, const int8_t *weight,
                            void *packed) {
    (void)path;
    memcpy(packed, weight, (size_t)in_c * (size_t)out_c);
}

void qk_fc_u8s8_scalar_unpack(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                              int8_t *weight) {
    (void)path;
    memcpy(weight, packed, (size_t)in_c * (size_t)out_c);
}

void qk_fc_u8s8_scalar_share(const qk_path_config *path, int32_t batch, int32_t in_c, int32_t out_c,
                             const void *packed, const int32_t *bias, const float *multiplier, const uint8_t *input,
                             float *logits, const qk_team *team) {
    (void)path;
    const int8_t *weights = (const int8_t *)packed;
    const int64_t outputs = (int64_t)batch * out_c;
    int64_t first, end;
    qk_team_share(team, outputs, &first, &end);
    for (int64_t i = first; i < end; i++) {
        const int32_t n = (int32_t)(i / out_c);
        const int32_t k = (int32_t)(i % out_c);
        const uint8_t *x = input + (size_t)n * in_c;
        const int8_t *w = weights + (size_t)k * in_c;
        int32_t acc = 0;
        for (int32_t c = 0; c < in_c; c++) acc += (int32_t)x[c] * (int32_t)w[c];
        float t = (float)(acc + bias[k]);
        logits[i] = t * multiplier[k];
    }
}
