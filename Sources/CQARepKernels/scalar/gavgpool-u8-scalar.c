// Scalar global average pool: the oracle, and the channel tail of the SIMD pools.
#include "scalar/scalar.h"

void qk_avgpool_channels_scalar(const uint8_t *image, int32_t pixels, int32_t channels, int32_t first,
                                int32_t end, float multiplier, uint8_t *out) {
    for (int32_t c = first; c < end; c++) {
        int32_t sum = 0;
        for (int32_t p = 0; p < pixels; p++) sum += image[(size_t)p * channels + c];
        out[c] = qk_requantize(sum, multiplier);
    }
}

void qk_gavgpool_u8_scalar_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                    float multiplier, uint8_t *output, const qk_team *team) {
    int64_t first, end;
    qk_team_share(team, batch, &first, &end);
    for (int32_t n = (int32_t)first; n < (int32_t)end; n++) {
        qk_avgpool_channels_scalar(input + (size_t)n * pixels * channels, pixels, channels, 0, channels, multiplier,
                                   output + (size_t)n * channels);
    }
}
