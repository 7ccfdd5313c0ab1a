// The scalar path: plain C, the oracle every SIMD path is compared against, and the path of CPUs without
// one. Its packed layouts are the weights nearly as given (see each file).
#ifndef QK_SCALAR_H
#define QK_SCALAR_H

#include "common/qk-path.h"

size_t qk_conv3x3_u8s8_scalar_packed_size(const qk_path_config *path, const qk_conv_geometry *geo);
void qk_conv3x3_u8s8_scalar_pack(const qk_path_config *path, const qk_conv_geometry *geo, const int8_t *weight_oihw,
                                  void *packed);
void qk_conv3x3_u8s8_scalar_unpack(const qk_path_config *path, const qk_conv_geometry *geo, const void *packed,
                                    int8_t *weight_oihw);
void qk_conv3x3_u8s8_scalar_share(const qk_path_config *path, const qk_conv_args *args, const qk_team *team);

void qk_gavgpool_u8_scalar_share(int32_t batch, int32_t pixels, int32_t channels, const uint8_t *input,
                                 float multiplier, uint8_t *output, const qk_team *team);

void qk_fc_u8s8_scalar_pack(const qk_path_config *path, int32_t in_c, int32_t out_c, const int8_t *weight,
                            void *packed);
void qk_fc_u8s8_scalar_unpack(const qk_path_config *path, int32_t in_c, int32_t out_c, const void *packed,
                              int8_t *weight);
void qk_fc_u8s8_scalar_share(const qk_path_config *path, int32_t batch, int32_t in_c, int32_t out_c,
                             const void *packed, const int32_t *bias, const float *multiplier, const uint8_t *input,
                             float *logits, const qk_team *team);

#endif  // QK_SCALAR_H
