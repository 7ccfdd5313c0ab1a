// The whole forward pass in one OpenMP parallel region. Per-layer calls open and close a region for every
// step (24 on RepVGG-A0): each costs a wake-up of the team and a join, and the calling thread's return to
// Swift in between. Here the team stays together and the steps are separated by the barriers that end
// each step's shared loop, which the data dependencies between layers need anyway.
#include "qk-internal.h"

#include <time.h>

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

static qk_conv_args conv_args(const qk_network *network, int32_t i, int32_t batch, int32_t threads,
                             const uint8_t *input, uint8_t *ping, uint8_t *pong) {
    const qk_network_conv *conv = &network->convs[i];
    const qk_conv_args args = {
        .geo = qk_conv_geometry_of(&conv->shape),
        .batch = batch,
        .threads = threads,
        .packed = conv->packed,
        .bias = conv->bias,
        .multiplier = conv->multiplier,
        .pad_value = conv->pad_value,
        .input = i == 0 ? input : (i % 2 == 1 ? pong : ping),
        .output = i % 2 == 0 ? pong : ping,
    };
    return args;
}

static double monotonic_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

int qk_network_run(qk_path path, const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                   uint8_t *pong, uint8_t *pooled, float *logits, int32_t threads) {
    return qk_network_run_timed(path, network, batch, input, ping, pong, pooled, logits, threads, NULL);
}

int qk_network_run_timed(qk_path path, const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                         uint8_t *pong, uint8_t *pooled, float *logits, int32_t threads, double *step_clock) {
    if (!network_is_valid(path, network, batch)) return -1;
    if (input == NULL || ping == NULL || pong == NULL || pooled == NULL || logits == NULL) return -1;
    if (threads < 1) threads = 1;
    const int32_t layers = network->conv_count;
    const qk_conv_geometry last = qk_conv_geometry_of(&network->convs[layers - 1].shape);
    int32_t joined = 0;
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        const qk_team team = qk_team_join(&joined);
        // One member writes the clock, right after a barrier: every member has finished the step.
        double *clock = team.member == 0 ? step_clock : NULL;
        if (clock != NULL) *clock++ = monotonic_seconds();
        qk_conv_args args = conv_args(network, 0, batch, team.size, input, ping, pong);
        for (int32_t i = 0; i < layers; i++) {
            // While finishing this layer, fetch what this member starts the next step with.
            qk_conv_args next;
            if (i + 1 < layers) {
                next = conv_args(network, i + 1, batch, team.size, input, ping, pong);
                qk_conv3x3_first_weights(path, &next, &team, &args.prefetch_next, &args.prefetch_next_bytes);
            } else {
                qk_fc_first_weights(path, last.out_c, network->classes, network->fc_packed, &team, &args.prefetch_next,
                                    &args.prefetch_next_bytes);
            }
            qk_conv3x3_share(path, &args, &team);
#pragma omp barrier
            if (clock != NULL) *clock++ = monotonic_seconds();
            if (i + 1 < layers) args = next;
        }
        uint8_t *x = layers % 2 == 1 ? pong : ping;
        qk_global_avgpool_share(path, batch, last.out_h * last.out_w, last.out_c, x, network->pool_multiplier, pooled,
                                &team);
#pragma omp barrier
        if (clock != NULL) *clock++ = monotonic_seconds();
        qk_fc_share(path, batch, last.out_c, network->classes, network->fc_packed, network->fc_bias,
                    network->fc_multiplier, pooled, logits, &team);
        if (step_clock != NULL) {
#pragma omp barrier
            if (clock != NULL) *clock = monotonic_seconds();
        }
    }
    return 0;
}
