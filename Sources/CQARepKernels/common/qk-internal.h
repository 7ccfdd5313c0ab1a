// Types shared by every kernel file; not part of the public interface. Kernels are reached only through
// the validating entry points (api/) and the network runner (network/), so they may assume well-formed
// arguments.
#ifndef QK_INTERNAL_H
#define QK_INTERNAL_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "qarep_kernels.h"

// Which architecture's paths this build compiles; the others' configs exist but report "not supported".
#if defined(__x86_64__)
#define QK_HAVE_X86 1
#else
#define QK_HAVE_X86 0
#endif
#if defined(__aarch64__)
#define QK_HAVE_ARM64 1
#else
#define QK_HAVE_ARM64 0
#endif

// `bytes` rounded up to whole 64-byte cache lines.
static inline size_t qk_round_to_line(size_t bytes) {
    return (bytes + 63) & ~(size_t)63;
}

// The exact float tail every path must reproduce (see qarep_kernels.h): separate rounding of the
// conversion and of the multiply, clamp, then round half to even (the default rounding mode, which is what
// cvtps2dq uses too).
static inline uint8_t qk_requantize(int32_t acc_plus_bias, float multiplier) {
    float t = (float)acc_plus_bias;
    t = t * multiplier;
    t = fmaxf(t, 0.0f);
    t = fminf(t, 255.0f);
    return (uint8_t)nearbyintf(t);
}

// Geometry derived once from a validated shape.
typedef struct qk_conv_geometry {
    int32_t in_h, in_w, in_c, out_h, out_w, out_c, stride, groups;
    int32_t in_per_group, out_per_group;
} qk_conv_geometry;

qk_conv_geometry qk_conv_geometry_of(const qk_conv_shape *shape);

typedef struct qk_conv_args {
    qk_conv_geometry geo;
    int32_t batch;
    int32_t threads;  // the team size the work split plans for
    const void *packed;
    const int32_t *bias;
    const float *multiplier;
    const uint8_t *pad_value;
    const uint8_t *input;
    uint8_t *output;
    // What the calling thread needs first in the step after this one (its first weight tile of the next
    // layer, its share of the fc weights), fetched into L2 during its last work item; NULL for nothing.
    const uint8_t *prefetch_next;
    size_t prefetch_next_bytes;
    // Set by the blocked driver when every multiplier is below 1: then |t| < 2^31 (|acc + bias| < 2^31 is
    // the caller's contract), cvtps2dq cannot overflow and the saturating packs alone clamp at 255.
    int multipliers_below_one;
    // The calling thread's own scratch, path->ops->conv_scratch_bytes of the layer (NULL where that is 0).
    int16_t *scratch;
} qk_conv_args;

// The threads of one parallel region. Functions named *_share do one member's share of a step: a
// contiguous range of the step's work items. They do not wait for the others; the caller puts a barrier
// between steps that depend on each other. One region can thus run a whole network (network.c), and a
// member knows which items it takes next, which lets it fetch their weights ahead of time.
// Which thread computes an output never changes its value, so results do not depend on the team size.
// `work`, when set (network.c), lets a member that finished its share take items from the others' shares,
// so one descheduled thread does not hold up a whole layer; `step` numbers the region's steps.
struct qk_team_work;
struct qk_rescue;
typedef struct qk_team {
    int32_t member, size;
    struct qk_team_work *work;
    int32_t step;
    // Rescue mode (network/team-rescue.h): items are claimed one by one, computed into the member's own
    // buffer and committed by copy, and an item whose member is late is redone by another.
    struct qk_rescue *rescue;
} qk_team;

// Every member of a parallel region (or a lone caller outside one) calls this once with the same
// `joined` counter, initialized to 0 before the region. Member numbers come from the counter rather than
// the OpenMP runtime API, so the kernels need nothing but pragmas (no omp.h). Ends in a barrier.
static inline qk_team qk_team_join(int32_t *joined) {
    int32_t member, size;
#pragma omp atomic capture
    member = (*joined)++;
#pragma omp barrier
#pragma omp atomic read
    size = *joined;
    qk_team team = {member, size, NULL, 0, NULL};
    return team;
}

// Items [*first, *end) of `items`: contiguous shares whose sizes differ by at most one.
static inline void qk_team_share(const qk_team *team, int64_t items, int64_t *first, int64_t *end) {
    *first = items * team->member / team->size;
    *end = items * (team->member + 1) / team->size;
}

// Argument checks of the entry points (api/entry-points.c), shared with the network runner.
bool qk_conv_shape_is_valid(const qk_conv_shape *shape);
bool qk_pool_shape_is_valid(int32_t batch, int32_t pixels, int32_t channels);
bool qk_fc_shape_is_valid(int32_t in_c, int32_t out_c);

// Channels [first, end) of one image's average pool; SIMD paths finish their channel tails with
// it (scalar/gavgpool-u8-scalar.c).
void qk_avgpool_channels_scalar(const uint8_t *image, int32_t pixels, int32_t channels, int32_t first,
                                int32_t end, float multiplier, uint8_t *out);

static inline int32_t qk_load_u32(const uint8_t *p) {
    int32_t v;
    __builtin_memcpy(&v, p, sizeof v);
    return v;
}

#endif  // QK_INTERNAL_H
