// Integer kernels of the QARep runtime: 3x3 convolution with fused bias + ReLU + requantization, global
// average pooling and the fully connected head, and a whole network run in one parallel region. Each has a
// scalar reference and SIMD paths, all listed in qk_paths.h and chosen at run time.
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
// QK_EXTRA_BYTES past their end. Conv weights come in PyTorch's OIHW order, [out_c][in_c / groups][3][3],
// int8 in [-127, 127], and are packed once per layer into the layout the chosen path wants.
//
// Every function checks its arguments: those that compute return a qk_status and touch nothing on error;
// size queries return 0 for arguments they refuse.
#ifndef QAREP_KERNELS_H
#define QAREP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "qk_limits.h"
#include "qk_paths.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum qk_status {
    QK_OK = 0,
    QK_ERROR_INVALID_ARGUMENT = 1,  // a NULL pointer, a shape outside the limits, shapes that do not chain
    QK_ERROR_UNSUPPORTED_PATH = 2,  // this CPU cannot run the path (or it is not a path)
    QK_ERROR_OUT_OF_MEMORY = 3,
    QK_ERROR_INCOMPLETE = 4,        // a network run before every layer's weights were set
} qk_status;

// The CPU paths, in the order of qk_paths.h.
typedef enum qk_path {
#define QK_PATH_ENUM_VALUE(id, config) QK_PATH_##id,
    QK_PATH_TABLE(QK_PATH_ENUM_VALUE)
    QK_PATH_COUNT,
    // The test-only paths (qk_paths.h) follow one past QK_PATH_COUNT, which stays "not a path".
    QK_PATH_TEST_BEFORE_FIRST = QK_PATH_COUNT,
    QK_TEST_PATH_TABLE(QK_PATH_ENUM_VALUE)
    QK_PATH_TEST_END
#undef QK_PATH_ENUM_VALUE
} qk_path;

// ---- Paths ----

// The path's name ("scalar", "avx2", ...); NULL for a value that is not a path.
const char *qk_path_name(qk_path path);
// The path called `name`: QK_OK and *path set, or QK_ERROR_INVALID_ARGUMENT. Test-only paths are not found.
qk_status qk_path_from_name(const char *name, qk_path *path);
// 1 if this CPU (and OS, for the register state) can run the path, else 0. Detected once.
int qk_path_supported(qk_path path);
// The supported path with the highest preference (the fastest on CPUs that have it); never a test-only path.
qk_path qk_best_path(void);
// The CPU features the path needs as Linux's /proc/cpuinfo lists them, space separated ("" for none).
const char *qk_path_linux_cpu_flags(qk_path path);
// The instruction mix whose throughput qk_measure_peak_gmacs measures for the path, e.g. "vpdpbusd zmm".
const char *qk_path_peak_mix(qk_path path);
// Measured int8 multiply-accumulate throughput of one core with the path's instruction mix, in GMAC/s,
// running for about `seconds`: the median rate of short bursts. 0 if the path cannot run here.
double qk_measure_peak_gmacs(qk_path path, double seconds);

// ---- Single layers ----

typedef struct qk_conv_shape {
    int32_t in_h, in_w, in_c;  // input activation, NHWC
    int32_t out_c;
    int32_t stride;            // 1 or 2; padding is always 1 on every side
    int32_t groups;            // divides in_c and out_c
} qk_conv_shape;

// Output height or width of a 3x3, pad 1 conv: (in - 1) / stride + 1; 0 for in < 1 or another stride.
int32_t qk_conv_out_dim(int32_t in, int32_t stride);

// Bytes of packed weights the path needs for this shape (0 for an invalid shape or unsupported path).
size_t qk_conv3x3_packed_size(qk_path path, const qk_conv_shape *shape);
// Packs OIHW int8 weights into `packed` (qk_conv3x3_packed_size bytes, 64-byte aligned).
qk_status qk_conv3x3_pack(qk_path path, const qk_conv_shape *shape, const int8_t *weight_oihw, void *packed);
// The exact inverse of qk_conv3x3_pack for the same path and shape: out_c * in_c / groups * 9 OIHW bytes.
qk_status qk_conv3x3_unpack(qk_path path, const qk_conv_shape *shape, const void *packed, int8_t *weight_oihw);

// How the path runs this layer: "winograd" (exact F(2x2,3x3), or over the input's phases at stride 2),
// "winograd-4x4" (exact F(4x4,3x3)) where the cost model picks them (QAREP_WINOGRAD=0 turns Winograd off,
// =2x2 keeps F(4x4,3x3) off, =always turns Winograd on wherever allowed), "direct" or "direct-dense" (the
// blocked driver; dense for up to 7 input channels per group). NULL for an invalid shape or unsupported path.
const char *qk_conv3x3_algorithm(qk_path path, const qk_conv_shape *shape);
// Bytes of transformed Winograd weights the path packs for this shape (0 when it runs it directly).
size_t qk_conv3x3_winograd_bytes(qk_path path, const qk_conv_shape *shape);

// One 3x3 conv layer over a batch: input [batch][in_h][in_w][in_c] -> output [batch][out_h][out_w][out_c].
// bias[out_c] already includes any zero-point correction; multiplier[out_c] is the float requantization
// factor; pad_value[in_c] (+ QK_EXTRA_BYTES of slack) is the uint8 value of the padding border per input
// channel. Runs on up to `threads` OpenMP threads (values below 1 mean 1).
qk_status qk_conv3x3_u8(qk_path path, const qk_conv_shape *shape, int32_t batch, const void *packed,
                        const int32_t *bias, const float *multiplier, const uint8_t *pad_value,
                        const uint8_t *input, uint8_t *output, int32_t threads);

// Global average pool: input [batch][pixels][channels] -> output [batch][channels], as described above.
qk_status qk_global_avgpool_u8(qk_path path, int32_t batch, int32_t pixels, int32_t channels,
                               const uint8_t *input, float multiplier, uint8_t *output, int32_t threads);

// Fully connected head: weights [out_c][in_c] int8 in [-127, 127].
size_t qk_fc_packed_size(qk_path path, int32_t in_c, int32_t out_c);
qk_status qk_fc_pack(qk_path path, int32_t in_c, int32_t out_c, const int8_t *weight, void *packed);
// The exact inverse of qk_fc_pack: [out_c][in_c] weights back from `packed`.
qk_status qk_fc_unpack(qk_path path, int32_t in_c, int32_t out_c, const void *packed, int8_t *weight);
// input [batch][in_c] uint8 (+ QK_EXTRA_BYTES) -> logits [batch][out_c] float.
qk_status qk_fc_u8(qk_path path, int32_t batch, int32_t in_c, int32_t out_c, const void *packed,
                   const int32_t *bias, const float *multiplier, const uint8_t *input, float *logits,
                   int32_t threads);

// ---- Networks ----

// A whole network for one path, owned by the kernels: conv layers in order, then the global average pool
// and the fully connected head. It holds its weights packed, plus copies of the biases, multipliers and pad
// values. Immutable once complete, so any number of threads may run it at once (each with its own scratch).
typedef struct qk_network qk_network;

// How much Winograd a network may use where the cost model picks it. Its transformed weights take 16
// (F(2x2,3x3)), 25 (stride 2) or 36 (F(4x4,3x3)) int16 per 9 weights, against 9 int8 or int16 directly, so
// giving it up trades speed for memory; the results are the same bytes either way.
typedef enum qk_winograd_use {
    QK_WINOGRAD_USE_ANY = 0,      // every form the path has
    QK_WINOGRAD_USE_NO_4X4 = 1,   // no F(4x4,3x3)
    QK_WINOGRAD_USE_NONE = 2,     // the direct kernels only
} qk_winograd_use;

// An empty network of `conv_count` layers with these shapes, which must chain (layer i's input is layer
// i-1's output), and a head of `classes` outputs. Weights are set afterwards, layer by layer.
qk_status qk_network_create(qk_path path, int32_t conv_count, const qk_conv_shape *shapes, int32_t classes,
                            qk_network **out_network);
// The same with Winograd limited to `use` (QAREP_WINOGRAD, read once per process, can limit it further).
qk_status qk_network_create_limited(qk_path path, qk_winograd_use use, int32_t conv_count, const qk_conv_shape *shapes,
                                    int32_t classes, qk_network **out_network);
// Bytes of packed weights such a network holds once complete (qk_network_packed_bytes then); 0 where
// qk_network_create_limited would fail for its arguments (an unsupported path included).
size_t qk_network_packed_size(qk_path path, qk_winograd_use use, int32_t conv_count, const qk_conv_shape *shapes,
                              int32_t classes);
// Packs conv layer i's OIHW weights and copies its out_c biases and multipliers and in_c pad values.
qk_status qk_network_set_conv(qk_network *network, int32_t index, const int8_t *weight_oihw, const int32_t *bias,
                              const float *multiplier, const uint8_t *pad_value);
// Where conv layer i's OIHW weights may be written so that qk_network_set_conv, given this pointer, packs
// them where they lie: the end of the layer's own packed region, so that loading needs no buffer for them.
// NULL when the layer's packing cannot run in place (then pass weights held elsewhere). Writing there
// unsets the layer until it is set again.
int8_t *qk_network_conv_staging(qk_network *network, int32_t index);
// The same for the fc head's [classes][last out_c] weights and qk_network_set_head.
int8_t *qk_network_fc_staging(qk_network *network);
// Sets the pool's multiplier and packs the fc head's [classes][last out_c] weights.
qk_status qk_network_set_head(qk_network *network, float pool_multiplier, const int8_t *fc_weight,
                              const int32_t *fc_bias, const float *fc_multiplier);
// The same complete network for another path, packed from this one's weights (one layer unpacked at a time),
// with the same Winograd use.
qk_status qk_network_repack(const qk_network *network, qk_path path, qk_network **out_network);
// Conv layer i's OIHW weights, unpacked (out_c * in_c / groups * 9 bytes).
qk_status qk_network_conv_weights(const qk_network *network, int32_t index, int8_t *weight_oihw);
// The fc head's [classes][last out_c] weights, unpacked.
qk_status qk_network_fc_weights(const qk_network *network, int8_t *weight);
// The network's path; QK_PATH_COUNT for NULL.
qk_path qk_network_path(const qk_network *network);
// Bytes of packed weights the network holds so far.
size_t qk_network_packed_bytes(const qk_network *network);
// Of those, the bytes of layers packed as transformed Winograd weights (qk_conv3x3_winograd_bytes).
size_t qk_network_winograd_bytes(const qk_network *network);
// The Winograd use the network was created with.
qk_winograd_use qk_network_winograd_use(const qk_network *network);
// How the network runs conv layer i, as qk_conv3x3_algorithm names it; NULL for a bad index.
const char *qk_network_conv_algorithm(const qk_network *network, int32_t index);
// Bytes of conv layer i's packed weights (transformed ones where it runs Winograd); 0 for a bad index.
size_t qk_network_conv_packed_bytes(const qk_network *network, int32_t index);
// Frees the network; NULL is ignored.
void qk_network_destroy(qk_network *network);
// Returns heap memory freed while a model was loaded to the system (glibc's malloc_trim; a no-op elsewhere).
// glibc keeps freed blocks below a threshold that a large freed tensor raises, so otherwise they stay resident.
void qk_release_freed_heap(void);
// Leading layers whose output for the whole batch exceeds this many bytes run one image at a time (depth
// first, so that they stay in L2); 0 restores the default, 1 MiB. For tests and tuning.
qk_status qk_network_set_depth_first_bytes(qk_network *network, int64_t bytes);

// Bytes of each scratch buffer a run of up to `max_batch` images needs, slack included.
typedef struct qk_network_scratch {
    size_t input;   // the images, [batch][in_h][in_w][3]
    size_t ping;    // activations of odd layers
    size_t pong;    // activations of even layers
    size_t pooled;  // [batch][last out_c]
    size_t logits;  // floats, [batch][classes]
    size_t thread;  // kernel scratch of each thread of a run (widened input rows, Winograd's transformed inputs; may be 0)
} qk_network_scratch;
qk_status qk_network_scratch_sizes(const qk_network *network, int32_t max_batch, qk_network_scratch *out_sizes);

// Runs `batch` images on one team of up to `threads` threads, with the same result, byte for byte, as
// calling qk_conv3x3_u8 for each layer, then qk_global_avgpool_u8 and qk_fc_u8. The buffers are at least
// qk_network_scratch_sizes(batch) large, distinct and not overlapping; `input` holds the images and its
// slack, `logits` receives [batch][classes]. `thread_scratch` (best 64-byte aligned) holds `threads` times
// the `thread` size (NULL: the run allocates it, QK_ERROR_OUT_OF_MEMORY if it cannot). With `step_clock` (conv_count + 3 doubles) member 0 stores the
// monotonic clock in seconds at the start and after each step, when all threads have finished it.
qk_status qk_network_run(const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                         uint8_t *pong, uint8_t *pooled, float *logits, uint8_t *thread_scratch, int32_t threads,
                         double *step_clock);

// What a session remembers of its recent runs (network/team-pace.c): when a member of the team was held
// off its core long enough to keep the others waiting at a barrier (another process on that core), runs of
// fewer images than threads go in rescue mode for a while (network/team-rescue.c: no member waits for
// another, late items are redone), or on one thread where rescue mode cannot run, then try the usual team
// again. Zeroed by the caller before the first run; read and written only by the thread that calls
// qk_network_run_paced; released with qk_team_history_release.
typedef struct qk_team_history {
    double solo_until;   // CLOCK_MONOTONIC seconds; before then, layer-by-layer runs use rescue mode or one thread
    double solo_length;  // of the last such period (0: the last team run kept pace); doubles while load lasts
    int64_t late_runs;   // team runs in which a member was late (for tests and bench)
    int32_t late_in_a_row;  // consecutive late team runs; one alone is a hiccup, not load
    int64_t team_runs;      // layer-by-layer team runs recorded, the first of which is not judged
    int64_t rescue_runs;    // runs made in rescue mode (for tests and bench)
    // This loaded period's runs and summed seconds per image, by mode (index: team, solo, rescue), and
    // the mode of the last run.
    int32_t loaded_runs[3];
    double loaded_seconds[3];
    int32_t last_mode;
    // Rescue mode's partner threads and their runs' buffers (network/team-crew.h), made at its first run. A
    // partner may still be inside a run after qk_network_run_paced has returned, reading that run's network:
    // a network must outlive the history's runs of it, so release the history before destroying one.
    struct qk_crew *crew;
    int32_t crew_failed;  // 1: the threads could not be made, rescue mode is not tried again
} qk_team_history;

// Waits for rescue mode's partners to leave their runs, frees what the history holds and zeroes it; NULL is
// ignored.
void qk_team_history_release(qk_team_history *history);

// qk_network_run with a history (NULL: none, the team as asked); results are the same bytes either way.
qk_status qk_network_run_paced(const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                               uint8_t *pong, uint8_t *pooled, float *logits, uint8_t *thread_scratch, int32_t threads,
                               double *step_clock, qk_team_history *history);

// ---- Testing ----

// In every team that runs a network, member `member` (-1: none, the default) sleeps `microseconds` before
// the first work item of each conv step, so the other members take its items over.
void qk_testing_set_straggler(int32_t member, int32_t microseconds);
// How many times the straggler began such a sleep since the last call.
int64_t qk_testing_straggles(void);
// How many conv work items a member took over from another's share since the last call.
int64_t qk_testing_taken_over_items(void);
// How many work items rescue mode redid because their member was late, since the last call.
int64_t qk_testing_redone_items(void);
// Forces rescue mode for layer-by-layer team runs that have a history (1), or leaves it to the pace (0).
void qk_testing_force_rescue(int on);
// Judges every team run as having kept pace (1: no member held up), or as measured (0), so that a test of
// what a run on time does cannot fail on a loaded machine where every run is late for real.
void qk_testing_judge_on_time(int on);
// Runs made in rescue mode, by any session, since the last call.
int64_t qk_testing_rescue_runs(void);
// Rescue mode's partners inside a run, in the whole process (one returned without waiting for them), and the
// crews of partner threads that exist (qk_team_history_release ends a history's; a forked child also counts
// those it inherited, until it releases them).
int32_t qk_testing_partners_in_runs(void);
int32_t qk_testing_live_crews(void);
// Rescue-mode runs start once every partner has entered the run, all members at once (1), so that each takes
// part from the start; or the caller starts at once and partners join as they come (0, the default).
void qk_testing_crew_roll_call(int on);
// The team size whose runs bind their workers to CPUs (network/team-binding.h): the CPUs the calling thread
// may use; 0 where runs are never bound (not Linux, more than 64 CPUs, OMP_PROC_BIND and the like set, or
// QAREP_BIND_THREADS=0).
int32_t qk_testing_binding_threads(void);
// The CPUs workers were bound to in runs since the last call (bit n: CPU n).
uint64_t qk_testing_bound_cpus(void);
// Packs and unpacks OIHW weights in the blocked layout with a synthetic geometry (lanes up to 32, chunk
// depth up to 8, with or without a per-block trailer of weight sums), so that geometries no path in the
// table uses yet are exercised; 1 when unpacking gives the weights back and every trailer is right.
int qk_testing_blocked_packing_round_trip(int32_t lanes, int32_t depth, int with_trailer, const qk_conv_shape *shape,
                                          const int8_t *weight_oihw);

// The path's Winograd kernels on any eligible layer (stride 1, up to 1841 input channels per group),
// whatever the cost model says: packs, unpacks into unpacked_oihw (for the round trip), runs like
// qk_conv3x3_u8. QK_ERROR_UNSUPPORTED_PATH where the path has no Winograd or the layer is not eligible.
qk_status qk_testing_conv3x3_winograd(qk_path path, const qk_conv_shape *shape, int32_t batch, const int8_t *weight_oihw,
                                      const int32_t *bias, const float *multiplier, const uint8_t *pad_value,
                                      const uint8_t *input, uint8_t *output, int32_t threads, int8_t *unpacked_oihw);

// Packs the layer's Winograd weights for the path, whether or not this CPU can run it, both as the library
// does and value by value at each value's offset (the layout's definition, as unpacking reads it): 1 when the
// bytes are the same, 0 when not, -1 where the path has no Winograd, the layer is not eligible or memory ran out.
int qk_testing_winograd_packing_matches(qk_path path, const qk_conv_shape *shape, const int8_t *weight_oihw);

// For the whole process: 1 makes every path that has F(4x4,3x3) kernels use them on every stride-1 Winograd
// layer of up to 800 input channels per group, -1 never, 0 as the cost model says. Packing and running must
// see the same setting; tests set it around qk_testing_conv3x3_winograd and networks they build.
void qk_testing_winograd_force_4x4(int mode);
// Whether the path has F(4x4,3x3) kernels (whether or not this CPU can run them).
int qk_testing_path_has_winograd_4x4(qk_path path);

#ifdef __cplusplus
}
#endif

#endif  // QAREP_KERNELS_H
