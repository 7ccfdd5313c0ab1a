// The scalar path's entry in the table of paths (qk_paths.h): it runs everywhere.
#include "peak/peak.h"
#include "scalar/scalar.h"

static bool scalar_supported(void) { return true; }

static size_t fc_packed_size(const qk_path_config *path, int32_t in_c, int32_t out_c) {
    (void)path;
    return (size_t)in_c * (size_t)out_c;
}

// The scalar path prefetches nothing ahead.
static void no_conv_first_weights(const qk_path_config *path, const qk_conv_args *args, const qk_team *team,
                                  const uint8_t **weights, size_t *bytes) {
    (void)path, (void)args, (void)team;
    *weights = NULL;
    *bytes = 0;
}

static void no_fc_first_weights(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                                const qk_team *team, const uint8_t **weights, size_t *bytes) {
    (void)path, (void)in_c, (void)out_c, (void)packed, (void)team;
    *weights = NULL;
    *bytes = 0;
}

const qk_path_ops qk_scalar_ops = {
    .conv_packed_size = qk_conv3x3_u8s8_scalar_packed_size,
    .conv_pack = qk_conv3x3_u8s8_scalar_pack,
    .conv_unpack = qk_conv3x3_u8s8_scalar_unpack,
    .conv_share = qk_conv3x3_u8s8_scalar_share,
    .conv_first_weights = no_conv_first_weights,
    .fc_packed_size = fc_packed_size,
    .fc_pack = qk_fc_u8s8_scalar_pack,
    .fc_unpack = qk_fc_u8s8_scalar_unpack,
    .fc_share = qk_fc_u8s8_scalar_share,
    .fc_first_weights = no_fc_first_weights,
};

// Eight independent int32 multiply-adds, the scalar conv's inner operation.
static double scalar_peak_gmacs(double seconds) {
    volatile int32_t seed = 3;
    int32_t a = seed, b = seed + 1;
    int32_t acc[8] = {0};
    qk_bursts bursts;
    qk_bursts_begin(&bursts);
    do {
        for (int r = 0; r < QK_PEAK_INNER; r++) {
            for (int i = 0; i < 8; i++) acc[i] += a * b;
            __asm__ volatile("" : "+r"(a), "+r"(b));
        }
    } while (qk_bursts_end_one(&bursts, 8.0 * (double)QK_PEAK_INNER) < seconds);
    int32_t total = 0;
    for (int i = 0; i < 8; i++) total += acc[i];
    qk_peak_sink = total;
    return qk_bursts_finish(&bursts) * 1e-9;
}

const qk_path_config qk_path_config_scalar = {
    .name = "scalar",
    .preference = 0,
    .supported = scalar_supported,
    .linux_cpu_flags = "",
    .ops = &qk_scalar_ops,
    .pool_share = qk_gavgpool_u8_scalar_share,
    .peak_mix = "scalar imul + add, 1 MAC each",
    .peak_gmacs = scalar_peak_gmacs,
};
