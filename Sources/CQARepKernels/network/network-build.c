// Building a network (qarep_kernels.h, "Networks"): shapes checked once at creation, weights packed layer
// by layer into memory the network owns, and the scratch sizes a run needs.
#include "network/network.h"
#include "driver/winograd.h"

#include <stdlib.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__GLIBC__)
#include <malloc.h>
#endif

size_t qk_layer_input_bytes(const qk_conv_shape *shape) {
    return (size_t)shape->in_h * (size_t)shape->in_w * (size_t)shape->in_c;
}

size_t qk_layer_output_bytes(const qk_conv_shape *shape) {
    return (size_t)qk_conv_out_dim(shape->in_h, shape->stride) * (size_t)qk_conv_out_dim(shape->in_w, shape->stride) *
           (size_t)shape->out_c;
}

// Sized apart because the two differ a lot: RepVGG's first (even) layer's output is 4x any odd layer's.
static size_t largest_output_of_parity(const qk_network *network, int32_t parity, size_t at_least) {
    size_t largest = at_least;
    for (int32_t i = parity; i < network->conv_count; i += 2) {
        const size_t bytes = qk_layer_output_bytes(&network->convs[i].shape);
        if (bytes > largest) largest = bytes;
    }
    return largest;
}

size_t qk_network_largest_in_ping(const qk_network *network) {
    return largest_output_of_parity(network, 1, qk_layer_input_bytes(&network->convs[0].shape));
}

size_t qk_network_largest_in_pong(const qk_network *network) { return largest_output_of_parity(network, 0, 0); }

// Kernel memory is 64-byte aligned (the SIMD paths load whole units); NULL for 0 bytes or no memory.
static void *aligned_bytes(size_t bytes) {
    if (bytes == 0 || bytes > SIZE_MAX - 63) return NULL;
    return aligned_alloc(64, qk_round_to_line(bytes));
}

// The packed weights' arena: 2 MiB aligned and, on Linux, the whole 2 MiB pages of it marked for
// transparent huge pages. The partial last page is marked too when the weights fill at least 15/16 of it
// (A0 fills 97%), so that at most 128 KB beyond the weights become resident; otherwise it keeps small pages.
enum { QK_HUGE_PAGE = 2 << 20 };

static uint8_t *arena_bytes(size_t bytes) {
    if (bytes == 0 || bytes > SIZE_MAX - QK_HUGE_PAGE) return NULL;
    if (bytes < QK_HUGE_PAGE) return aligned_bytes(bytes);
    const size_t whole_pages = (bytes + QK_HUGE_PAGE - 1) & ~(size_t)(QK_HUGE_PAGE - 1);
    uint8_t *arena = aligned_alloc(QK_HUGE_PAGE, whole_pages);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    const size_t marked = whole_pages - bytes <= QK_HUGE_PAGE / 16 ? whole_pages : bytes & ~(size_t)(QK_HUGE_PAGE - 1);
    if (arena != NULL) madvise(arena, marked, MADV_HUGEPAGE);
#endif
    return arena;
}

// The largest scratch any conv layer needs per thread (64-byte multiples): fixed by the shapes and the path,
// so taken once here rather than by every run.
static size_t largest_thread_scratch(const qk_path_config *path, int32_t conv_count, const qk_network_conv *convs) {
    if (path->ops->conv_scratch_bytes == NULL) return 0;
    size_t largest = 0;
    for (int32_t i = 0; i < conv_count; i++) {
        const qk_conv_geometry geo = qk_conv_geometry_of(&convs[i].shape);
        const size_t bytes = path->ops->conv_scratch_bytes(path, &geo);
        largest = bytes > largest ? bytes : largest;
    }
    return largest;
}

static void *copy_of(const void *source, size_t bytes) {
    void *copy = aligned_bytes(bytes);
    if (copy != NULL) memcpy(copy, source, bytes);
    return copy;
}

static bool shapes_chain(int32_t conv_count, const qk_conv_shape *shapes, int32_t classes) {
    if (conv_count < 1 || conv_count > QK_MAX_CONV_LAYERS || shapes == NULL) return false;
    for (int32_t i = 0; i < conv_count; i++) {
        const qk_conv_shape *s = &shapes[i];
        if (!qk_conv_shape_is_valid(s) || qk_layer_output_bytes(s) > QK_MAX_ACTIVATION_BYTES) return false;
        if (i > 0) {
            const qk_conv_shape *p = &shapes[i - 1];
            if (s->in_h != qk_conv_out_dim(p->in_h, p->stride) || s->in_w != qk_conv_out_dim(p->in_w, p->stride) ||
                s->in_c != p->out_c)
                return false;
        }
    }
    if (qk_layer_input_bytes(&shapes[0]) > QK_MAX_ACTIVATION_BYTES) return false;
    const qk_conv_shape *last = &shapes[conv_count - 1];
    const int64_t pixels = (int64_t)qk_conv_out_dim(last->in_h, last->stride) * qk_conv_out_dim(last->in_w, last->stride);
    return pixels <= INT32_MAX && qk_pool_shape_is_valid(1, (int32_t)pixels, last->out_c) &&
           qk_fc_shape_is_valid(last->out_c, classes);
}

// The config a network of `path` limited to `use` runs with; NULL for a bad path or use, or one this CPU lacks
// (*status says which).
static const qk_path_config *limited_config(qk_path path, qk_winograd_use use, qk_status *status) {
    *status = QK_ERROR_INVALID_ARGUMENT;
    if (qk_path_config_of(path) == NULL || (unsigned)use > QK_WINOGRAD_USE_NONE) return NULL;
    const qk_path_config *config = qk_supported_path_config(path);
    *status = config != NULL ? QK_OK : QK_ERROR_UNSUPPORTED_PATH;
    return qk_winograd_limited_config(path, config, use);
}

// The arena's bytes for these (chained) shapes, and each layer's offset into `convs`.
static size_t arena_size(const qk_path_config *config, int32_t conv_count, const qk_conv_shape *shapes, int32_t classes,
                         qk_network_conv *convs, size_t *fc_offset) {
    size_t arena = 0;
    for (int32_t i = 0; i < conv_count; i++) {
        convs[i].shape = shapes[i];
        convs[i].packed_offset = arena;
        const qk_conv_geometry geo = qk_conv_geometry_of(&shapes[i]);
        arena += qk_round_to_line(config->ops->conv_packed_size(config, &geo));
    }
    *fc_offset = arena;
    return arena + qk_round_to_line(config->ops->fc_packed_size(config, shapes[conv_count - 1].out_c, classes));
}

size_t qk_network_packed_size(qk_path path, qk_winograd_use use, int32_t conv_count, const qk_conv_shape *shapes,
                              int32_t classes) {
    qk_status status;
    const qk_path_config *config = limited_config(path, use, &status);
    if (config == NULL || !shapes_chain(conv_count, shapes, classes)) return 0;
    size_t bytes = config->ops->fc_packed_size(config, shapes[conv_count - 1].out_c, classes);
    for (int32_t i = 0; i < conv_count; i++) {
        const qk_conv_geometry geo = qk_conv_geometry_of(&shapes[i]);
        bytes += config->ops->conv_packed_size(config, &geo);
    }
    return bytes;
}

qk_status qk_network_create(qk_path path, int32_t conv_count, const qk_conv_shape *shapes, int32_t classes,
                            qk_network **out_network) {
    return qk_network_create_limited(path, QK_WINOGRAD_USE_ANY, conv_count, shapes, classes, out_network);
}

qk_status qk_network_create_limited(qk_path path, qk_winograd_use use, int32_t conv_count, const qk_conv_shape *shapes,
                                    int32_t classes, qk_network **out_network) {
    if (out_network == NULL) return QK_ERROR_INVALID_ARGUMENT;
    *out_network = NULL;
    qk_status status;
    const qk_path_config *config = limited_config(path, use, &status);
    if (config == NULL) return status;
    if (!shapes_chain(conv_count, shapes, classes)) return QK_ERROR_INVALID_ARGUMENT;
    qk_network *network = calloc(1, sizeof *network);
    qk_network_conv *convs = calloc((size_t)conv_count, sizeof *convs);
    if (network == NULL || convs == NULL) {
        free(network);
        free(convs);
        return QK_ERROR_OUT_OF_MEMORY;
    }
    const size_t arena = arena_size(config, conv_count, shapes, classes, convs, &network->fc_packed_offset);
    network->arena = arena_bytes(arena);
    if (network->arena == NULL) {
        free(network);
        free(convs);
        return QK_ERROR_OUT_OF_MEMORY;
    }
    network->config = config;
    network->path = path;
    network->use = use;
    network->conv_count = conv_count;
    network->convs = convs;
    network->thread_scratch_bytes = largest_thread_scratch(config, conv_count, convs);
    network->classes = classes;
    *out_network = network;
    return QK_OK;
}

// The packed weights live in the arena, freed with the network.
static void free_conv(qk_network_conv *conv) {
    free(conv->bias);
    free(conv->multiplier);
    free(conv->pad_value);
    conv->packed = NULL;
    conv->bias = NULL;
    conv->multiplier = NULL;
    conv->pad_value = NULL;
}

static void free_head(qk_network *network) {
    free(network->fc_bias);
    free(network->fc_multiplier);
    network->fc_packed = NULL;
    network->fc_bias = NULL;
    network->fc_multiplier = NULL;
}

void qk_network_destroy(qk_network *network) {
    if (network == NULL) return;
    for (int32_t i = 0; i < network->conv_count; i++) free_conv(&network->convs[i]);
    free_head(network);
    free(network->arena);
    free(network->convs);
    free(network);
}

// A layer's region of the arena: its packed bytes rounded to a cache line (see qk_network_create).
static size_t conv_region_bytes(const qk_network *network, const qk_conv_geometry *geo) {
    return qk_round_to_line(network->config->ops->conv_packed_size(network->config, geo));
}

static size_t conv_weight_bytes(const qk_conv_geometry *geo) {
    return (size_t)geo->out_c * (size_t)geo->in_per_group * 9;
}

// The staged weights overwrite whatever the region holds, so a layer set before is unset until packed again.
int8_t *qk_network_conv_staging(qk_network *network, int32_t index) {
    if (network == NULL || index < 0 || index >= network->conv_count) return NULL;
    qk_network_conv *conv = &network->convs[index];
    const qk_path_config *config = network->config;
    const qk_conv_geometry geo = qk_conv_geometry_of(&conv->shape);
    const size_t region = conv_region_bytes(network, &geo);
    if (config->ops->conv_pack_in_place == NULL || !config->ops->conv_pack_in_place(config, &geo, NULL, region))
        return NULL;
    if (conv->packed != NULL) {
        network->packed_bytes -= config->ops->conv_packed_size(config, &geo);
        free_conv(conv);
    }
    return (int8_t *)network->arena + conv->packed_offset + (region - conv_weight_bytes(&geo));
}

qk_status qk_network_set_conv(qk_network *network, int32_t index, const int8_t *weight_oihw, const int32_t *bias,
                              const float *multiplier, const uint8_t *pad_value) {
    if (network == NULL || index < 0 || index >= network->conv_count || weight_oihw == NULL || bias == NULL ||
        multiplier == NULL || pad_value == NULL)
        return QK_ERROR_INVALID_ARGUMENT;
    qk_network_conv *conv = &network->convs[index];
    const qk_conv_geometry geo = qk_conv_geometry_of(&conv->shape);
    const qk_path_config *config = network->config;
    const size_t packed_bytes = config->ops->conv_packed_size(config, &geo);
    qk_network_conv layer = {.shape = conv->shape, .packed_offset = conv->packed_offset};
    layer.bias = copy_of(bias, (size_t)geo.out_c * sizeof(int32_t));
    layer.multiplier = copy_of(multiplier, (size_t)geo.out_c * sizeof(float));
    layer.pad_value = aligned_bytes((size_t)geo.in_c + QK_EXTRA_BYTES);
    if (layer.bias == NULL || layer.multiplier == NULL || layer.pad_value == NULL) {
        free_conv(&layer);
        return QK_ERROR_OUT_OF_MEMORY;
    }
    memcpy(layer.pad_value, pad_value, (size_t)geo.in_c);
    memset(layer.pad_value + geo.in_c, 0, QK_EXTRA_BYTES);
    layer.packed = network->arena + conv->packed_offset;
    const size_t region = conv_region_bytes(network, &geo), weight_bytes = conv_weight_bytes(&geo);
    const bool staged = region >= weight_bytes && (const uint8_t *)weight_oihw == (uint8_t *)layer.packed + (region - weight_bytes);
    if (!staged) {
        config->ops->conv_pack(config, &geo, weight_oihw, layer.packed);
    } else if (config->ops->conv_pack_in_place == NULL ||
               !config->ops->conv_pack_in_place(config, &geo, layer.packed, region)) {
        // No memory to pack in place: from a copy of the staged weights, or not at all.
        int8_t *copy = copy_of(weight_oihw, weight_bytes);
        if (copy == NULL) {
            free_conv(&layer);
            return QK_ERROR_OUT_OF_MEMORY;
        }
        config->ops->conv_pack(config, &geo, copy, layer.packed);
        free(copy);
    }
    if (conv->packed != NULL) network->packed_bytes -= packed_bytes;
    free_conv(conv);
    *conv = layer;
    network->packed_bytes += packed_bytes;
    return QK_OK;
}

static int32_t last_channels(const qk_network *network) { return network->convs[network->conv_count - 1].shape.out_c; }

static size_t fc_region_bytes(const qk_network *network) {
    return qk_round_to_line(network->config->ops->fc_packed_size(network->config, last_channels(network), network->classes));
}

int8_t *qk_network_fc_staging(qk_network *network) {
    if (network == NULL) return NULL;
    const qk_path_config *config = network->config;
    const int32_t in_c = last_channels(network), classes = network->classes;
    const size_t region = fc_region_bytes(network);
    if (config->ops->fc_pack_in_place == NULL || !config->ops->fc_pack_in_place(config, in_c, classes, NULL, region))
        return NULL;
    if (network->fc_packed != NULL) {
        network->packed_bytes -= config->ops->fc_packed_size(config, in_c, classes);
        free_head(network);
    }
    return (int8_t *)network->arena + network->fc_packed_offset + (region - (size_t)in_c * (size_t)classes);
}

qk_status qk_network_set_head(qk_network *network, float pool_multiplier, const int8_t *fc_weight,
                              const int32_t *fc_bias, const float *fc_multiplier) {
    if (network == NULL || fc_weight == NULL || fc_bias == NULL || fc_multiplier == NULL)
        return QK_ERROR_INVALID_ARGUMENT;
    const qk_path_config *config = network->config;
    const int32_t in_c = last_channels(network), classes = network->classes;
    const size_t packed_bytes = config->ops->fc_packed_size(config, in_c, classes);
    uint8_t *packed = network->arena + network->fc_packed_offset;
    int32_t *bias = copy_of(fc_bias, (size_t)classes * sizeof(int32_t));
    float *multiplier = copy_of(fc_multiplier, (size_t)classes * sizeof(float));
    if (bias == NULL || multiplier == NULL) {
        free(bias);
        free(multiplier);
        return QK_ERROR_OUT_OF_MEMORY;
    }
    const size_t region = fc_region_bytes(network), weight_bytes = (size_t)in_c * (size_t)classes;
    const bool staged = region >= weight_bytes && (const uint8_t *)fc_weight == packed + (region - weight_bytes);
    if (!staged) {
        config->ops->fc_pack(config, in_c, classes, fc_weight, packed);
    } else if (config->ops->fc_pack_in_place == NULL ||
               !config->ops->fc_pack_in_place(config, in_c, classes, packed, region)) {
        int8_t *copy = copy_of(fc_weight, weight_bytes);
        if (copy == NULL) {
            free(bias);
            free(multiplier);
            return QK_ERROR_OUT_OF_MEMORY;
        }
        config->ops->fc_pack(config, in_c, classes, copy, packed);
        free(copy);
    }
    if (network->fc_packed != NULL) network->packed_bytes -= packed_bytes;
    free_head(network);
    network->fc_packed = packed;
    network->fc_bias = bias;
    network->fc_multiplier = multiplier;
    network->pool_multiplier = pool_multiplier;
    network->packed_bytes += packed_bytes;
    return QK_OK;
}

bool qk_network_is_complete(const qk_network *network) {
    for (int32_t i = 0; i < network->conv_count; i++)
        if (network->convs[i].packed == NULL) return false;
    return network->fc_packed != NULL;
}

qk_status qk_network_conv_weights(const qk_network *network, int32_t index, int8_t *weight_oihw) {
    if (network == NULL || index < 0 || index >= network->conv_count || weight_oihw == NULL)
        return QK_ERROR_INVALID_ARGUMENT;
    const qk_network_conv *conv = &network->convs[index];
    if (conv->packed == NULL) return QK_ERROR_INCOMPLETE;
    const qk_conv_geometry geo = qk_conv_geometry_of(&conv->shape);
    network->config->ops->conv_unpack(network->config, &geo, conv->packed, weight_oihw);
    return QK_OK;
}

qk_status qk_network_fc_weights(const qk_network *network, int8_t *weight) {
    if (network == NULL || weight == NULL) return QK_ERROR_INVALID_ARGUMENT;
    if (network->fc_packed == NULL) return QK_ERROR_INCOMPLETE;
    network->config->ops->fc_unpack(network->config, last_channels(network), network->classes, network->fc_packed,
                                    weight);
    return QK_OK;
}

qk_status qk_network_repack(const qk_network *network, qk_path path, qk_network **out_network) {
    if (out_network == NULL) return QK_ERROR_INVALID_ARGUMENT;
    *out_network = NULL;
    if (network == NULL) return QK_ERROR_INVALID_ARGUMENT;
    if (!qk_network_is_complete(network)) return QK_ERROR_INCOMPLETE;
    qk_conv_shape *shapes = malloc((size_t)network->conv_count * sizeof *shapes);
    if (shapes == NULL) return QK_ERROR_OUT_OF_MEMORY;
    for (int32_t i = 0; i < network->conv_count; i++) shapes[i] = network->convs[i].shape;
    qk_network *copy = NULL;
    qk_status status = qk_network_create_limited(path, network->use, network->conv_count, shapes, network->classes, &copy);
    free(shapes);
    // One layer's OIHW weights at a time, in a buffer as large as the largest layer's (or the head's).
    size_t largest = (size_t)last_channels(network) * (size_t)network->classes;
    for (int32_t i = 0; i < network->conv_count; i++) {
        const qk_conv_geometry geo = qk_conv_geometry_of(&network->convs[i].shape);
        const size_t bytes = (size_t)geo.out_c * (size_t)geo.in_per_group * 9;
        if (bytes > largest) largest = bytes;
    }
    int8_t *weights = status == QK_OK ? malloc(largest) : NULL;
    if (status == QK_OK && weights == NULL) status = QK_ERROR_OUT_OF_MEMORY;
    for (int32_t i = 0; status == QK_OK && i < network->conv_count; i++) {
        const qk_network_conv *conv = &network->convs[i];
        status = qk_network_conv_weights(network, i, weights);
        if (status == QK_OK) status = qk_network_set_conv(copy, i, weights, conv->bias, conv->multiplier, conv->pad_value);
    }
    if (status == QK_OK) status = qk_network_fc_weights(network, weights);
    if (status == QK_OK)
        status = qk_network_set_head(copy, network->pool_multiplier, weights, network->fc_bias, network->fc_multiplier);
    free(weights);
    if (status != QK_OK) {
        qk_network_destroy(copy);
        return status;
    }
    copy->depth_first_bytes = network->depth_first_bytes;
    *out_network = copy;
    return QK_OK;
}

qk_path qk_network_path(const qk_network *network) { return network != NULL ? network->path : QK_PATH_COUNT; }

qk_winograd_use qk_network_winograd_use(const qk_network *network) {
    return network != NULL ? network->use : QK_WINOGRAD_USE_ANY;
}

size_t qk_network_packed_bytes(const qk_network *network) { return network != NULL ? network->packed_bytes : 0; }

qk_status qk_network_set_depth_first_bytes(qk_network *network, int64_t bytes) {
    if (network == NULL || bytes < 0) return QK_ERROR_INVALID_ARGUMENT;
    network->depth_first_bytes = bytes;
    return QK_OK;
}

size_t qk_network_thread_scratch(const qk_network *network) { return network->thread_scratch_bytes; }

// The runner gives each of up to batch threads its own part of ping and pong (network-run.c), so every
// image's activations carry the slack.
qk_status qk_network_scratch_sizes(const qk_network *network, int32_t max_batch, qk_network_scratch *out_sizes) {
    if (network == NULL || out_sizes == NULL || max_batch < 1 || max_batch > QK_MAX_BATCH)
        return QK_ERROR_INVALID_ARGUMENT;
    const size_t batch = (size_t)max_batch;
    out_sizes->input = batch * qk_layer_input_bytes(&network->convs[0].shape) + QK_EXTRA_BYTES;
    out_sizes->ping = batch * (qk_network_largest_in_ping(network) + QK_EXTRA_BYTES) + QK_EXTRA_BYTES;
    out_sizes->pong = batch * (qk_network_largest_in_pong(network) + QK_EXTRA_BYTES) + QK_EXTRA_BYTES;
    out_sizes->pooled = batch * (size_t)last_channels(network) + QK_EXTRA_BYTES;
    out_sizes->logits = batch * (size_t)network->classes * sizeof(float);
    out_sizes->thread = qk_network_thread_scratch(network);
    return QK_OK;
}

void qk_release_freed_heap(void) {
#if defined(__GLIBC__)
    malloc_trim(0);
#endif
}
