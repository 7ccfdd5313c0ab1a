// Integer kernels of the QARep runtime: 3x3 convolution with fused bias + ReLU + requantization, global
// average pooling and the fully connected head, each with a scalar reference and SIMD paths chosen at run time.
//
// Arithmetic (docs/model-format.md, "Quantization arithmetic", is the normative text):
//   conv: acc[o] = sum over taps and the group's input channels of (int32)x_u8 * (int32)w_s8   (exact int32)
//         t = (float)(acc[o] + bias[o]);  t = t * multiplier[o];          (two roundings, never fused)
//         t = max(t, 0); t = min(t, 255);  y = round-half-to-even(t)       (ReLU is the clamp at 0)
//   pool: s[c] = sum over pixels of x[c];  t = (float)s * multiplier;  clamp to [0, 255];  round half to even
//   fc:   logit[k] = (float)(acc[k] + bias[k]) * multiplier[k]
// Every path performs exactly these float operations in this order, so outputs are byte-identical across
// paths and thread counts (each output element is computed by one thread, in one fixed order).
//
// Layouts: activations are NHWC uint8, one image after another. Input buffers must stay readable for
// QK_EXTRA_BYTES past their end (SIMD paths may load, but never use, up to that many bytes beyond the
// last pixel). Conv weights come in PyTorch's OIHW order, [out_c][in_c / groups][3][3], int8 in [-127, 127],
// and are packed once per layer into the layout the chosen path wants.
#ifndef QAREP_KERNELS_H
#define QAREP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Readable slack required after every input activation buffer and after the pad-value array.
#define QK_EXTRA_BYTES 64

typedef enum qk_path {
    QK_PATH_SCALAR = 0,      // plain C, the oracle
    QK_PATH_AVX2 = 1,        // x86-64 AVX2, exact (no vpmaddubsw saturation)
    QK_PATH_AVX512VNNI = 2,  // x86-64 AVX-512 F/BW/VL + VNNI (vpdpbusd)
    // Reserved: QK_PATH_NEON_DOT = 3 (ARMv8.2 SDOT), a later addition.
} qk_path;

// 1 if this CPU (and OS, for the register state) can run the path, else 0.
int qk_path_supported(qk_path path);
// The fastest supported path.
qk_path qk_best_path(void);
// "scalar", "avx2", "avx512vnni"; NULL for an unknown value.
const char *qk_path_name(qk_path path);

typedef struct qk_conv_shape {
    int32_t in_h, in_w, in_c;  // input activation, NHWC
    int32_t out_c;
    int32_t stride;            // 1 or 2; padding is always 1 on every side
    int32_t groups;            // divides in_c and out_c
} qk_conv_shape;

// Output height or width of a 3x3, pad 1 conv: (in - 1) / stride + 1.
int32_t qk_conv_out_dim(int32_t in, int32_t stride);

// Bytes of packed weights the path needs for this shape (0 for an invalid shape).
size_t qk_conv3x3_packed_size(qk_path path, const qk_conv_shape *shape);
// Packs OIHW int8 weights into `packed` (qk_conv3x3_packed_size bytes, 64-byte aligned).
void qk_conv3x3_pack(qk_path path, const qk_conv_shape *shape, const int8_t *weight_oihw, void *packed);
// The exact inverse of qk_conv3x3_pack for the same path and shape: the OIHW weights back from `packed`
// (out_c * in_c / groups * 9 bytes), so that a holder of packed weights needs no other copy.
void qk_conv3x3_unpack(qk_path path, const qk_conv_shape *shape, const void *packed, int8_t *weight_oihw);

// One 3x3 conv layer over a batch: input [batch][in_h][in_w][in_c] -> output [batch][out_h][out_w][out_c].
// bias[out_c] already includes any zero-point correction; multiplier[out_c] is the float requantization
// factor; pad_value[in_c] is the uint8 value of the padding border per input channel (0 after the first
// layer; the mean pixel for the network input). Runs on up to `threads` OpenMP threads (>= 1).
void qk_conv3x3_u8(qk_path path, const qk_conv_shape *shape, int32_t batch, const void *packed,
                   const int32_t *bias, const float *multiplier, const uint8_t *pad_value,
                   const uint8_t *input, uint8_t *output, int32_t threads);

// Global average pool: input [batch][pixels][channels] -> output [batch][channels], as described above.
void qk_global_avgpool_u8(qk_path path, int32_t batch, int32_t pixels, int32_t channels,
                          const uint8_t *input, float multiplier, uint8_t *output, int32_t threads);

// Fully connected head: weights [out_c][in_c] int8 in [-127, 127].
size_t qk_fc_packed_size(qk_path path, int32_t in_c, int32_t out_c);
void qk_fc_pack(qk_path path, int32_t in_c, int32_t out_c, const int8_t *weight, void *packed);
// The exact inverse of qk_fc_pack: [out_c][in_c] weights back from `packed`.
void qk_fc_unpack(qk_path path, int32_t in_c, int32_t out_c, const void *packed, int8_t *weight);
// input [batch][in_c] uint8 -> logits [batch][out_c] float.
void qk_fc_u8(qk_path path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
              const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits,
              int32_t threads);

// A whole network: conv layers in order, then the global average pool and the fully connected head, with
// the arguments the single-layer functions above take. Layer i's shape must chain from layer i-1's output
// (in_h, in_w, in_c equal to its out_h, out_w, out_c).
typedef struct qk_network_conv {
    qk_conv_shape shape;
    const void *packed;
    const int32_t *bias;
    const float *multiplier;
    const uint8_t *pad_value;  // in_c values + QK_EXTRA_BYTES of readable slack
} qk_network_conv;

typedef struct qk_network {
    int32_t conv_count;  // >= 1
    const qk_network_conv *convs;
    float pool_multiplier;
    int32_t classes;
    const void *fc_packed;  // qk_fc_pack of [classes][last out_c] for the same path
    const int32_t *fc_bias;
    const float *fc_multiplier;
    // Leading layers whose output for the whole batch exceeds this many bytes run one image at a time
    // (depth first, so that they stay in L2) when `input` is not `ping`; 0 means the default, 1 MiB.
    int64_t depth_first_bytes;
} qk_network;

// Runs the network over a batch on one team of up to `threads` threads, with the same result, byte for byte,
// as calling qk_conv3x3_u8 for each layer, then qk_global_avgpool_u8 and qk_fc_u8 (one parallel region
// instead of one per step; the steps still wait for each other). Layer 0 reads `input`; layer i writes
// `pong` when i is even and `ping` when it is odd, so `input` may be `ping` but never `pong`. ping and pong
// are scratch of batch x (largest per-image activation + QK_EXTRA_BYTES) bytes each (with the input in a
// buffer of its own and a batch that the threads divide, each thread runs its images alone, each in its own
// part of them); `input` has QK_EXTRA_BYTES of slack; `pooled` holds batch x last out_c bytes plus the
// slack, `logits` batch x classes floats.
// Returns 0, or -1 (nothing computed) for an invalid network or argument.
int qk_network_run(qk_path path, const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                   uint8_t *pong, uint8_t *pooled, float *logits, int32_t threads);
// The same, also storing the monotonic clock (seconds) at the start and after each step, when all threads
// have finished it: step_clock[0] before layer 0, step_clock[i + 1] after conv i, then after the pool and
// after the fc (conv_count + 3 values). For profiling a run as it really executes.
int qk_network_run_timed(qk_path path, const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                         uint8_t *pong, uint8_t *pooled, float *logits, int32_t threads, double *step_clock);

// Testing only: in every team that runs a network, member `member` (-1: none, the default) sleeps
// `microseconds` before the first work item of each conv step, so the other members take its items over.
void qk_testing_set_straggler(int32_t member, int32_t microseconds);
// Testing only: how many conv work items a member took over from another's share since the last call.
int64_t qk_testing_taken_over_items(void);

// Measured int8 multiply-accumulate throughput of one core, in GMAC/s, with the best dot-product
// instruction this CPU has (vpdpbusd where present), running for about `seconds`: the median rate of
// short bursts, i.e. at the clock the core sustains most of the time (peak.c says why not the fastest).
double qk_measure_peak_gmacs(double seconds);

#ifdef __cplusplus
}
#endif

#endif  // QAREP_KERNELS_H
