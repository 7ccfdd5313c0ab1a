// The network object behind qk_network (qarep_kernels.h), shared by its builder and its runner.
#ifndef QK_NETWORK_H
#define QK_NETWORK_H

#include "common/qk-path.h"

typedef struct qk_network_conv {
    qk_conv_shape shape;
    size_t packed_offset;  // of the layer's packed weights in the network's arena
    void *packed;          // NULL until the layer's weights are set
    int32_t *bias;         // out_c values
    float *multiplier;     // out_c values
    uint8_t *pad_value;    // in_c values + QK_EXTRA_BYTES of readable slack
} qk_network_conv;

struct qk_network {
    const qk_path_config *config;  // the path's, limited to `use` (qk_winograd_limited_config)
    qk_path path;
    qk_winograd_use use;
    int32_t conv_count;
    qk_network_conv *convs;
    float pool_multiplier;
    int32_t classes;
    size_t fc_packed_offset;
    void *fc_packed;       // NULL until the head is set
    // Every layer's packed weights in one allocation, sized when the network is created: one block of huge
    // pages where the OS offers them, instead of thousands of page faults per model load.
    uint8_t *arena;
    int32_t *fc_bias;
    float *fc_multiplier;
    size_t packed_bytes;
    size_t thread_scratch_bytes;  // qk_network_thread_scratch, set by qk_network_create
    int64_t depth_first_bytes;
};

// Bytes of one image's input of a layer and of its output.
size_t qk_layer_input_bytes(const qk_conv_shape *shape);
size_t qk_layer_output_bytes(const qk_conv_shape *shape);
// Whether every layer's weights and the head are set.
bool qk_network_is_complete(const qk_network *network);
// Largest per-image activation each scratch buffer holds: ping the network input (when the caller puts it
// there) and the odd layers' outputs, pong the even layers' outputs (network-run.c's alternation).
size_t qk_network_largest_in_ping(const qk_network *network);
size_t qk_network_largest_in_pong(const qk_network *network);
// Kernel scratch each thread of a run needs: the largest conv_scratch_bytes of the network's layers.
size_t qk_network_thread_scratch(const qk_network *network);

#endif  // QK_NETWORK_H
