// Limits shared by the kernels and the Swift runtime above them (which imports these macros), defined
// once here. They bound every size computation far below overflow; docs/model-format.md states them for
// model files.
#ifndef QK_LIMITS_H
#define QK_LIMITS_H

// Readable slack after every input activation buffer and after the pad values: SIMD paths may load, but
// never use, up to this many bytes past the last pixel.
#define QK_EXTRA_BYTES 64

#define QK_MAX_CHANNELS 8192           // input and output channels of a conv layer, inputs of the fc layer
#define QK_MAX_SIDE 4096               // pixels per side of any activation
#define QK_MAX_CLASSES 100000          // outputs of the fc layer
#define QK_MAX_CONV_LAYERS 256
#define QK_MAX_ACTIVATION_BYTES 268435456  // one image's activation of one layer (256 MiB)
#define QK_MAX_BATCH 65536

#endif  // QK_LIMITS_H
