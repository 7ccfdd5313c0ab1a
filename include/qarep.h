/*
 * qarep.h - C API of QARep, an INT8 inference runtime for QARepVGG / RepVGG-family image classifiers.
 *
 * This is the only header a C or C++ program includes; link with libqarep (pkg-config: qarep).
 *
 * Objects and ownership
 *   qarep_model    immutable after loading; any number of threads may use one model at once.
 *                  Created by qarep_model_load_*, freed by qarep_model_release. Sessions keep their model
 *                  alive, so a model may be released while sessions made from it still exist.
 *   qarep_session  a workspace (activation buffers, logits) for one thread at a time. Created by
 *                  qarep_session_create, freed by qarep_session_destroy.
 *   Strings returned by the library are owned by the library: labels live as long as their model,
 *   qarep_last_error_message until the next failing call on the same thread.
 *
 * Errors
 *   Every function that can fail returns a qarep_status; on failure it leaves its output arguments unset
 *   (output handles are set to NULL) and records a message for qarep_last_error_message (per thread).
 *   No function aborts on bad arguments. The status enum may grow: treat unknown values as errors.
 *
 * Model files are described in docs/model-format.md (safetensors with INT8 weights and scales).
 */
#ifndef QAREP_H
#define QAREP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define QAREP_API __declspec(dllimport)
#else
#define QAREP_API __attribute__((visibility("default")))
#endif

#define QAREP_VERSION_MAJOR 0
#define QAREP_VERSION_MINOR 1
#define QAREP_VERSION_PATCH 0
/* The highest model-file format version this header's library reads. */
#define QAREP_MODEL_FORMAT_VERSION 1

typedef enum qarep_status {
    QAREP_OK = 0,
    QAREP_ERROR_INVALID_ARGUMENT = 1,     /* NULL pointer, zero or out-of-range count, bad option */
    QAREP_ERROR_BUFFER_SIZE = 2,          /* a buffer's size does not match what the call needs */
    QAREP_ERROR_IO = 3,                   /* a file could not be opened or read */
    QAREP_ERROR_INVALID_MODEL = 4,        /* the model file is malformed; the message names the tensor or key */
    QAREP_ERROR_UNSUPPORTED_VERSION = 5,  /* the model's format version is newer than this library reads */
    QAREP_ERROR_UNSUPPORTED_KERNEL = 6,   /* the requested kernel path cannot run on this CPU */
    QAREP_ERROR_OUT_OF_MEMORY = 7,
    QAREP_ERROR_NO_RESULT = 8,            /* results asked for before a successful run */
    QAREP_ERROR_INTERNAL = 9
} qarep_status;

/* Which kernel path (CPU instruction set) a session runs; all give identical outputs. AUTO picks the
   fastest this CPU supports (avx512vnni > avxvnni > avx512bw > avx2 > scalar on x86-64), unless the
   environment variable QAREP_KERNEL names one. The paths are numbered 1..qarep_kernel_count() and never
   renumbered; a library newer than this header may have more, reached by name (qarep_kernel_from_name)
   or by number. */
typedef enum qarep_kernel {
    QAREP_KERNEL_AUTO = 0,
    QAREP_KERNEL_SCALAR = 1,
    QAREP_KERNEL_AVX2 = 2,       /* x86-64 AVX2 */
    QAREP_KERNEL_AVX512VNNI = 3, /* x86-64 AVX-512 VNNI (zmm vpdpbusd) */
    QAREP_KERNEL_NEON = 4,       /* ARMv8 NEON */
    QAREP_KERNEL_NEONDOT = 5,    /* ARMv8.2 dot product (sdot) */
    QAREP_KERNEL_I8MM = 6,       /* ARMv8.6 int8 matrix multiply (smmla) */
    QAREP_KERNEL_AVX512BW = 7,   /* x86-64 AVX-512BW without VNNI */
    QAREP_KERNEL_AVXVNNI = 8     /* x86-64 AVX-VNNI (VEX ymm vpdpbusd), without AVX-512 */
} qarep_kernel;

typedef struct qarep_model qarep_model;
typedef struct qarep_session qarep_session;

/* ---- Library ---------------------------------------------------------------------------------- */

/* Library version as (major << 16) | (minor << 8) | patch. */
QAREP_API uint32_t qarep_version(void);
/* Library version as "major.minor.patch"; static storage. */
QAREP_API const char *qarep_version_string(void);
/* The highest model-file format version this library reads. */
QAREP_API uint32_t qarep_max_model_format_version(void);
/* A short constant description of a status, e.g. "invalid model"; never NULL. */
QAREP_API const char *qarep_status_string(qarep_status status);
/* The message of the last failed call on this thread ("" if none); valid until the next failing call. */
QAREP_API const char *qarep_last_error_message(void);
/* How many kernel paths this library has, whether or not this CPU runs them: values 1..count. */
QAREP_API int32_t qarep_kernel_count(void);
/* 1 if this CPU can run the kernel path, else 0 (AUTO is always 1). */
QAREP_API int qarep_kernel_supported(qarep_kernel kernel);
/* The path's name ("auto", "scalar", "avx2", ...), static storage; NULL for an unknown value. */
QAREP_API const char *qarep_kernel_name(qarep_kernel kernel);
/* The kernel named `name` ("auto" or a path name), into *out_kernel. */
QAREP_API qarep_status qarep_kernel_from_name(const char *name, qarep_kernel *out_kernel);

/* ---- Model ------------------------------------------------------------------------------------ */

/* Loads and validates a model file. On success *out_model owns a new model. Layers with over 512 KB of
   Winograd weights are packed by up to OpenMP's default number of threads (OMP_NUM_THREADS, else all CPUs). */
QAREP_API qarep_status qarep_model_load_file(const char *path, qarep_model **out_model);
/* Loads a model from memory; the bytes are copied, so the caller may free them after the call. */
QAREP_API qarep_status qarep_model_load_memory(const void *data, size_t size, qarep_model **out_model);
/* What a model's packed weights may give up to take less memory, for the _with_flags loaders; bits may be
   or-ed. Results are the same bytes whichever is chosen. Where the kernels find it faster, the int16 paths
   (avx2, avx512bw, neon) run a layer with exact Winograd, whose transformed weights take 16 (F(2x2,3x3)),
   25 (stride 2) or 36 (F(4x4,3x3)) int16 per 9 weights. By default a model keeps them while its packed
   weights stay within a quarter of the machine's memory (F(4x4,3x3) given up first, then Winograd). */
#define QAREP_LOAD_NO_WINOGRAD_4X4 0x1u  /* no F(4x4,3x3) */
#define QAREP_LOAD_NO_WINOGRAD 0x2u      /* the direct kernels' weights only: the least memory */

/* qarep_model_load_file with QAREP_LOAD_* flags; an unknown bit is QAREP_ERROR_INVALID_ARGUMENT. */
QAREP_API qarep_status qarep_model_load_file_with_flags(const char *path, uint32_t flags, qarep_model **out_model);
/* qarep_model_load_memory with QAREP_LOAD_* flags. */
QAREP_API qarep_status qarep_model_load_memory_with_flags(const void *data, size_t size, uint32_t flags,
                                                          qarep_model **out_model);
/* Drops the caller's reference; NULL is accepted and ignored. */
QAREP_API void qarep_model_release(qarep_model *model);

typedef struct qarep_model_info {
    int32_t input_height;     /* pixels the network takes, e.g. 224 */
    int32_t input_width;
    int32_t input_channels;   /* always 3 (RGB) */
    int32_t num_classes;
    int32_t num_conv_layers;
    uint32_t format_version;  /* of the loaded file */
    double macs_per_image;    /* multiply-accumulates of one forward pass (3x3 taps incl. padding, and FC) */
} qarep_model_info;

/* Fills *out_info. */
QAREP_API qarep_status qarep_model_get_info(const qarep_model *model, qarep_model_info *out_info);
/* Bytes of the packed weights the model holds for its default path, into *out_bytes (a session forcing
   another path adds that path's own, once per model). */
QAREP_API qarep_status qarep_model_packed_bytes(const qarep_model *model, size_t *out_bytes);
/* Class label, owned by the model; NULL if model is NULL or index is out of range. */
QAREP_API const char *qarep_model_label(const qarep_model *model, int32_t class_index);

/* Resizes and center-crops an RGB image of any size to the model's input, as its metadata says
   (docs/model-format.md, Preprocessing). rgb: height rows of width * 3 bytes, rows row_stride bytes apart
   (row_stride >= width * 3). out: input_height * input_width * 3 bytes (out_size must equal that). */
QAREP_API qarep_status qarep_model_preprocess(const qarep_model *model, const uint8_t *rgb, int32_t width,
                                              int32_t height, size_t row_stride, uint8_t *out,
                                              size_t out_size);

/* ---- Session ---------------------------------------------------------------------------------- */

typedef struct qarep_session_options {
    int32_t num_threads;   /* OpenMP threads; 0 means the number of online CPUs. A batch of at least this
                              many images runs image by image, one image per thread at a time; a smaller
                              batch runs layer by layer with all threads, or, for a while after one of
                              them was kept off its core long enough to hold the others up (another
                              process on that core), with one. Results are the same bytes either way.
                              On Linux, when it equals the CPUs the calling thread may use, each OpenMP
                              worker is bound to one CPU other than the caller's (the caller is not bound),
                              as OMP_PROC_BIND would, and stays bound after the run; setting
                              QAREP_BIND_THREADS=0, or any of OMP_PROC_BIND, OMP_PLACES, KMP_AFFINITY and
                              GOMP_CPU_AFFINITY, leaves affinity alone. */
    int32_t max_batch;     /* largest batch a run may take, >= 1; sizes the workspace */
    qarep_kernel kernel;   /* QAREP_KERNEL_AUTO unless a test or benchmark forces a path */
} qarep_session_options;

/* Default options: all CPUs, max_batch 1, AUTO. */
QAREP_API qarep_session_options qarep_session_options_default(void);
/* Creates a session for the model (options may be NULL for the defaults). The session keeps the model alive. */
QAREP_API qarep_status qarep_session_create(const qarep_model *model, const qarep_session_options *options,
                                            qarep_session **out_session);
/* Frees the session; NULL is accepted and ignored. */
QAREP_API void qarep_session_destroy(qarep_session *session);
/* The kernel path the session really runs (never AUTO). */
QAREP_API qarep_kernel qarep_session_kernel(const qarep_session *session);
/* Bytes of memory the session holds for its runs (input, activations, pooled features, logits, and on the
   int16 paths (avx2, avx512bw, neon) each thread's kernel scratch: widened input rows, and Winograd's
   transformed inputs, up to 320 KB, or up to 2 MB where a layer has over 4 MB of transformed weights), all
   of it allocated by qarep_session_create: a run allocates no more than a few bytes of work counters per
   thread.
   Not counted: the model's packed weights, and rescue mode's threads and buffers, which a session makes
   when load first makes a team of more threads than images late, and grows with the batch (num_threads - 1
   threads of its own, and num_threads sets of (2 x num_threads + 1) activation buffers of the batch, about
   6 MB for RepVGG-A0 at batch 1 on 2 threads; held until the session is destroyed, which waits for those
   threads to finish what they hold; without them such runs use one thread). A process forked after they
   were made (fork copies only the calling thread) makes its own for its runs, and destroying the session
   there does not wait for the parent's. */
QAREP_API qarep_status qarep_session_workspace_bytes(const qarep_session *session, size_t *out_bytes);
/* qarep_session_create with a limit on that workspace: a model or options->max_batch whose workspace would
   exceed max_workspace_bytes fails with QAREP_ERROR_OUT_OF_MEMORY before anything is allocated. 0 means
   no limit. (A parameter rather than a field of qarep_session_options, whose size programs built against
   earlier versions of this header have fixed.) */
QAREP_API qarep_status qarep_session_create_limited(const qarep_model *model, const qarep_session_options *options,
                                                    size_t max_workspace_bytes, qarep_session **out_session);

/* Runs a batch of uint8 RGB images, each input_height x input_width x 3 (HWC), stored one after another;
   size must equal batch * input_height * input_width * 3. 1 <= batch <= max_batch. */
QAREP_API qarep_status qarep_session_run_u8(qarep_session *session, const uint8_t *images, size_t size,
                                            int32_t batch);
/* Runs normalized float input, NCHW [batch][3][H][W] (x = (pixel/255 - mean) / std); count is the number
   of floats and must equal batch * 3 * H * W. Converted back to pixels as docs/model-format.md says. */
QAREP_API qarep_status qarep_session_run_f32(qarep_session *session, const float *input, size_t count,
                                             int32_t batch);
/* Copies the logits of the last run, [batch][num_classes]; count must equal batch * num_classes. */
QAREP_API qarep_status qarep_session_get_logits(const qarep_session *session, float *out, size_t count);

typedef struct qarep_prediction {
    int32_t class_index;
    float probability;     /* softmax over all classes */
    const char *label;     /* owned by the model */
} qarep_prediction;

/* The k most probable classes of image `image_index` of the last run, most probable first (ties: lower
   index first). out has room for k entries; *out_count receives min(k, num_classes). */
QAREP_API qarep_status qarep_session_top_k(const qarep_session *session, int32_t image_index, int32_t k,
                                           qarep_prediction *out, int32_t *out_count);

#ifdef __cplusplus
}
#endif

#endif /* QAREP_H */
