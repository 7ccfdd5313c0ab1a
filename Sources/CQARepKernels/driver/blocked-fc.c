// The fully connected head on a blocked path: work items of a few output blocks for every image; the path
// contributes the block's dot products (qk_path_config.fc_block).
#include "driver/blocked.h"

// Each work item is a group of output blocks for all images, so a block's weights are fetched once per
// batch; each logit is computed by exactly one item.
enum { QK_FC_BLOCKS_PER_ITEM = 4 };

void qk_fc_blocked_share(const qk_path_config *path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
                         const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits,
                         const qk_team *team) {
    const qk_pack_geometry *geometry = qk_fc_packing(path);
    const int32_t lanes = geometry->lanes;
    const int32_t chunks = (in_c + geometry->depth - 1) / geometry->depth;
    const int32_t blocks = (out_c + lanes - 1) / lanes;
    const int32_t items = (blocks + QK_FC_BLOCKS_PER_ITEM - 1) / QK_FC_BLOCKS_PER_ITEM;
    const size_t block_bytes = qk_fc_blocked_block_bytes(path, in_c);
    int64_t first_item, end_item;
    qk_team_share(team, items, &first_item, &end_item);
    for (int32_t item = (int32_t)first_item; item < (int32_t)end_item; item++) {
        const int32_t end = (item + 1) * QK_FC_BLOCKS_PER_ITEM < blocks ? (item + 1) * QK_FC_BLOCKS_PER_ITEM : blocks;
        for (int32_t n = 0; n < batch; n++) {
            for (int32_t b = item * QK_FC_BLOCKS_PER_ITEM; b < end; b++) {
                const int32_t k = b * lanes;
                const qk_fc_block block = {
                    .chunks = chunks,
                    .outputs = out_c - k,
                    .weights = (const uint8_t *)packed + (size_t)b * block_bytes,
                    .input = input + (size_t)n * in_c,
                    .bias = bias + k,
                    .multiplier = multiplier + k,
                    .logits = logits + (size_t)n * out_c + k,
                };
                path->fc_block(&block);
            }
        }
    }
}

// The member's whole share: the head reads each weight once per batch, straight from L3 or memory unless
// it was fetched during the last conv layer.
void qk_fc_blocked_first_weights(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                                 const qk_team *team, const uint8_t **weights, size_t *bytes) {
    const int32_t lanes = qk_fc_packing(path)->lanes;
    const int32_t blocks = (out_c + lanes - 1) / lanes;
    const int32_t items = (blocks + QK_FC_BLOCKS_PER_ITEM - 1) / QK_FC_BLOCKS_PER_ITEM;
    const size_t item_bytes = qk_fc_blocked_block_bytes(path, in_c) * QK_FC_BLOCKS_PER_ITEM;
    int64_t first_item, end_item;
    qk_team_share(team, items, &first_item, &end_item);
    *weights = (const uint8_t *)packed + (size_t)first_item * item_bytes;
    *bytes = (size_t)(end_item - first_item) * item_bytes;
}

