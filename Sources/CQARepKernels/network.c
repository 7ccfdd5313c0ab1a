// The whole forward pass in one OpenMP parallel region. Per-layer calls open and close a region for every
// step (24 on RepVGG-A0): each costs a wake-up of the team and a join, and the calling thread's return to
// Swift in between. Here the team stays together and the steps are separated by the barriers that end
// each step's shared loop, which the data dependencies between layers need anyway.
#include "qk-internal.h"

static bool network_is_valid(qk_path path, const qk_network *network, int32_t batch) {
    if (network == NULL || network->conv_count < 1 || network->convs == NULL || batch < 1) return false;
    if (!qk_path_supported(path)) return false;
    const qk_network_conv *previous = NULL;
    for (int32_t i = 0; i < network->conv_count; i++) {
        const qk_network_conv *conv = &network->convs[i];
        if (!qk_conv_shape_is_valid(&conv->shape)) return false;
        if (conv->packed == NULL || conv->bias == NULL || conv->multiplier == NULL || conv->pad_value == NULL)
            return false;
        if (previous != NULL) {
            const qk_conv_shape *p = &previous->shape, *s = &conv->shape;
            if (s->in_h != qk_conv_out_dim(p->in_h, p->stride) || s->in_w != qk_conv_out_dim(p->in_w, p->stride) ||
                s->in_c != p->out_c)
                return false;
        }
        previous = conv;
    }
    const qk_conv_shape *last = &previous->shape;
    const int64_t pixels = (int64_t)qk_conv_out_dim(last->in_h, last->stride) * qk_conv_out_dim(last->in_w, last->stride);
    if (pixels > INT32_MAX || !qk_pool_shape_is_valid(batch, (int32_t)pixels, last->out_c)) return false;
    if (!qk_fc_shape_is_valid(last->out_c, network->classes)) return false;
    return network->fc_packed != NULL && network->fc_bias != NULL && network->fc_multiplier != NULL;
}

int qk_network_run(qk_path path, const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                   uint8_t *pong, uint8_t *pooled, float *logits, int32_t threads) {
    if (!network_is_valid(path, network, batch)) return -1;
    if (input == NULL || ping == NULL || pong == NULL || pooled == NULL || logits == NULL) return -1;
    if (threads < 1) threads = 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const uint8_t *x = input;
        for (int32_t i = 0; i < network->conv_count; i++) {
            const qk_network_conv *conv = &network->convs[i];
            uint8_t *y = i % 2 == 0 ? pong : ping;
            const qk_conv_args args = {
                .geo = qk_conv_geometry_of(&conv->shape),
                .batch = batch,
                .threads = threads,
                .packed = conv->packed,
                .bias = conv->bias,
                .multiplier = conv->multiplier,
                .pad_value = conv->pad_value,
                .input = x,
                .output = y,
            };
            qk_conv3x3_share(path, &args);
            x = y;
        }
        const qk_conv_geometry last = qk_conv_geometry_of(&network->convs[network->conv_count - 1].shape);
        qk_global_avgpool_share(path, batch, last.out_h * last.out_w, last.out_c, x, network->pool_multiplier, pooled);
        qk_fc_share(path, batch, last.out_c, network->classes, network->fc_packed, network->fc_bias,
                    network->fc_multiplier, pooled, logits);
    }
    return 0;
}
