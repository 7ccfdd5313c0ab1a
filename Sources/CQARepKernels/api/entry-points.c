// The single-layer entry points: argument validation, then the chosen path's operations. Kernels behind
// them trust their arguments, so every check lives here (and in network/network.c for whole networks).
#include "common/qk-path.h"

#include <stdlib.h>

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

bool qk_pool_shape_is_valid(int32_t batch, int32_t pixels, int32_t channels) {
    // The int32 channel sum must not overflow: pixels * 255 < 2^31.
    return batch >= 1 && pixels >= 1 && channels >= 1 && pixels <= INT32_MAX / 255;
}

bool qk_fc_shape_is_valid(int32_t in_c, int32_t out_c) {
    return in_c >= 1 && in_c <= QK_MAX_CHANNELS && out_c >= 1 && out_c <= QK_MAX_CLASSES;
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

// The path's config after the common checks, or the status that refuses the call.
static qk_status checked_path(qk_path path, const qk_path_config **config) {
    if (qk_path_config_of(path) == NULL) return QK_ERROR_INVALID_ARGUMENT;
    *config = qk_supported_path_config(path);
    return *config != NULL ? QK_OK : QK_ERROR_UNSUPPORTED_PATH;
}

size_t qk_conv3x3_packed_size(qk_path path, const qk_conv_shape *shape) {
    const qk_path_config *config;
    if (!qk_conv_shape_is_valid(shape) || checked_path(path, &config) != QK_OK) return 0;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    return config->ops->conv_packed_size(config, &geo);
}

qk_status qk_conv3x3_pack(qk_path path, const qk_conv_shape *shape, const int8_t *weight_oihw, void *packed) {
    const qk_path_config *config;
    const qk_status status = checked_path(path, &config);
    if (status != QK_OK) return status;
    if (!qk_conv_shape_is_valid(shape) || weight_oihw == NULL || packed == NULL) return QK_ERROR_INVALID_ARGUMENT;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    config->ops->conv_pack(config, &geo, weight_oihw, packed);
    return QK_OK;
}

qk_status qk_conv3x3_unpack(qk_path path, const qk_conv_shape *shape, const void *packed, int8_t *weight_oihw) {
    const qk_path_config *config;
    const qk_status status = checked_path(path, &config);
    if (status != QK_OK) return status;
    if (!qk_conv_shape_is_valid(shape) || weight_oihw == NULL || packed == NULL) return QK_ERROR_INVALID_ARGUMENT;
    const qk_conv_geometry geo = qk_conv_geometry_of(shape);
    config->ops->conv_unpack(config, &geo, packed, weight_oihw);
    return QK_OK;
}

qk_status qk_conv_run_team(const qk_path_config *config, const qk_conv_shape *shape, int32_t batch, const void *packed,
                            const int32_t *bias, const float *multiplier, const uint8_t *pad_value, const uint8_t *input,
                            uint8_t *output, int32_t threads, qk_conv_share_fn share, qk_conv_scratch_fn scratch_of) {
    if (!qk_conv_shape_is_valid(shape) || batch < 1 || batch > QK_MAX_BATCH) return QK_ERROR_INVALID_ARGUMENT;
    if (packed == NULL || bias == NULL || multiplier == NULL || pad_value == NULL || input == NULL || output == NULL)
        return QK_ERROR_INVALID_ARGUMENT;
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
    // Each member's scratch, allocated per call: the network runner takes it from the session's workspace instead.
    const size_t scratch_bytes = scratch_of != NULL ? qk_round_to_line(scratch_of(config, &args.geo)) : 0;
    uint8_t *scratch = NULL;
    if (scratch_bytes > 0) {
        if (scratch_bytes > SIZE_MAX / (size_t)args.threads) return QK_ERROR_OUT_OF_MEMORY;
        scratch = aligned_alloc(64, scratch_bytes * (size_t)args.threads);
        if (scratch == NULL) return QK_ERROR_OUT_OF_MEMORY;
    }
    int32_t joined = 0;
#pragma omp parallel num_threads(args.threads) if (args.threads > 1)
    {
        const qk_team team = qk_team_join(&joined);
        qk_conv_args own = args;
        own.scratch = scratch != NULL ? (int16_t *)(scratch + (size_t)team.member * scratch_bytes) : NULL;
        share(config, &own, &team);
    }
    free(scratch);
    return QK_OK;
}

qk_status qk_conv3x3_u8(qk_path path, const qk_conv_shape *shape, int32_t batch, const void *packed,
                        const int32_t *bias, const float *multiplier, const uint8_t *pad_value,
                        const uint8_t *input, uint8_t *output, int32_t threads) {
    const qk_path_config *config;
    const qk_status status = checked_path(path, &config);
    if (status != QK_OK) return status;
    return qk_conv_run_team(config, shape, batch, packed, bias, multiplier, pad_value, input, output, threads,
                            config->ops->conv_share, config->ops->conv_scratch_bytes);
}

qk_status qk_global_avgpool_u8(qk_path path, int32_t batch, int32_t pixels, int32_t channels,
                               const uint8_t *input, float multiplier, uint8_t *output, int32_t threads) {
    const qk_path_config *config;
    const qk_status status = checked_path(path, &config);
    if (status != QK_OK) return status;
    if (!qk_pool_shape_is_valid(batch, pixels, channels) || input == NULL || output == NULL)
        return QK_ERROR_INVALID_ARGUMENT;
    if (threads < 1) threads = 1;
    int32_t joined = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const qk_team team = qk_team_join(&joined);
        config->pool_share(batch, pixels, channels, input, multiplier, output, &team);
    }
    return QK_OK;
}

size_t qk_fc_packed_size(qk_path path, int32_t in_c, int32_t out_c) {
    const qk_path_config *config;
    if (!qk_fc_shape_is_valid(in_c, out_c) || checked_path(path, &config) != QK_OK) return 0;
    return config->ops->fc_packed_size(config, in_c, out_c);
}

qk_status qk_fc_pack(qk_path path, int32_t in_c, int32_t out_c, const int8_t *weight, void *packed) {
    const qk_path_config *config;
    const qk_status status = checked_path(path, &config);
    if (status != QK_OK) return status;
    if (!qk_fc_shape_is_valid(in_c, out_c) || weight == NULL || packed == NULL) return QK_ERROR_INVALID_ARGUMENT;
    config->ops->fc_pack(config, in_c, out_c, weight, packed);
    return QK_OK;
}

qk_status qk_fc_unpack(qk_path path, int32_t in_c, int32_t out_c, const void *packed, int8_t *weight) {
    const qk_path_config *config;
    const qk_status status = checked_path(path, &config);
    if (status != QK_OK) return status;
    if (!qk_fc_shape_is_valid(in_c, out_c) || weight == NULL || packed == NULL) return QK_ERROR_INVALID_ARGUMENT;
    config->ops->fc_unpack(config, in_c, out_c, packed, weight);
    return QK_OK;
}

qk_status qk_fc_u8(qk_path path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
                   const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits,
                   int32_t threads) {
    const qk_path_config *config;
    const qk_status status = checked_path(path, &config);
    if (status != QK_OK) return status;
    if (!qk_fc_shape_is_valid(in_c, out_c) || batch < 1 || batch > QK_MAX_BATCH) return QK_ERROR_INVALID_ARGUMENT;
    if (packed == NULL || bias == NULL || multiplier == NULL || input == NULL || logits == NULL)
        return QK_ERROR_INVALID_ARGUMENT;
    if (threads < 1) threads = 1;
    int32_t joined = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const qk_team team = qk_team_join(&joined);
        config->ops->fc_share(config, batch, in_c, out_c, packed, bias, multiplier, input, logits, &team);
    }
    return QK_OK;
}
