// The whole forward pass in one OpenMP parallel region. Per-layer calls open and close a region for every
// step (24 on RepVGG-A0): each costs a wake-up of the team and a join, and the calling thread's return to
// Swift in between. Here the team stays together and the steps are separated by the barriers that end
// each step's shared loop, which the data dependencies between layers need anyway.
#include "network/network.h"
#include "network/team-binding.h"
#include "network/team-crew.h"
#include "network/team-pace.h"
#include "network/team-rescue.h"
#include "network/team-sync.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define input_bytes qk_layer_input_bytes
#define output_bytes qk_layer_output_bytes

// Layer i over images [first_image, first_image + images): layer 0 reads `input`, layer i writes pong when
// i is even and ping when it is odd, each image at its place in the batch.
static qk_conv_args conv_args(const qk_network *network, int32_t i, int32_t first_image, int32_t images,
                             int32_t threads, const uint8_t *input, uint8_t *ping, uint8_t *pong, int16_t *scratch) {
    const qk_network_conv *conv = &network->convs[i];
    const uint8_t *source = i == 0 ? input : (i % 2 == 1 ? pong : ping);
    uint8_t *destination = i % 2 == 0 ? pong : ping;
    const qk_conv_args args = {
        .geo = qk_conv_geometry_of(&conv->shape),
        .batch = images,
        .threads = threads,
        .packed = conv->packed,
        .bias = conv->bias,
        .multiplier = conv->multiplier,
        .pad_value = conv->pad_value,
        .input = source + (size_t)first_image * input_bytes(&conv->shape),
        .output = destination + (size_t)first_image * output_bytes(&conv->shape),
        .scratch = scratch,
    };
    return args;
}

// Depth first: a batch's early activations outgrow L2 (RepVGG-A0's first output is 602 KB per image, 4.8
// MB at batch 8), so layer by layer over the whole batch every early layer writes to and reads from L3.
// The leading layers whose batch output exceeds a budget (qk_network.depth_first_bytes, by default about
// half an L2) run one image at a time instead (their weights are small, so repeating them per image costs
// nothing); the rest run over the whole batch, whose weights then serve all images at once.
enum { QK_DEPTH_FIRST_BYTES = 1 << 20 };

// How many leading layers run image by image. Image n's output of layer i goes where the batched run puts
// it, so the batched layers that follow read the usual layout. Writing it must not destroy what later
// images or the batched part still need: in the buffer it shares with the last per-image layer, image n's
// slot of an earlier layer must start past the slots 0..n-1 of that last layer, which holds while those
// activations are at least as large; the network input must be in a buffer of its own (not ping).
static int32_t per_image_layers(const qk_network *network, int32_t batch, const uint8_t *input, const uint8_t *ping) {
    if (batch < 2 || input == ping) return 0;
    const uint64_t budget = network->depth_first_bytes > 0 ? (uint64_t)network->depth_first_bytes : QK_DEPTH_FIRST_BYTES;
    int32_t leading = 0;
    while (leading < network->conv_count &&
           (uint64_t)batch * output_bytes(&network->convs[leading].shape) > budget)
        leading++;
    for (; leading > 0; leading--) {
        const size_t last = output_bytes(&network->convs[leading - 1].shape);
        int safe = 1;
        for (int32_t i = (leading - 1) % 2; i < leading - 1; i += 2)
            if (output_bytes(&network->convs[i].shape) < last) safe = 0;
        if (safe) break;
    }
    return leading;
}


// One conv layer's share, fetching meanwhile the weights this member starts the step after it with (the fc
// head's are shared out by `fc_team`; NULL: the fc head does not come next).
static void run_conv(const qk_path_config *path, qk_conv_args *args, const qk_conv_args *next, const qk_network *network,
                     const qk_team *team, const qk_team *fc_team) {
    if (next != NULL) {
        path->ops->conv_first_weights(path, next, team, &args->prefetch_next, &args->prefetch_next_bytes);
    } else if (fc_team != NULL) {
        const qk_network_conv *last = &network->convs[network->conv_count - 1];
        path->ops->fc_first_weights(path, last->shape.out_c, network->classes, network->fc_packed, fc_team,
                            &args->prefetch_next, &args->prefetch_next_bytes);
    }
    path->ops->conv_share(path, args, team);
}

// Where one member records when each step ended: step_clock[s + 1] holds step s's time until the run ends,
// when the values become a running clock.
typedef struct step_timer {
    double *clock;  // NULL: not timing
    double mark;
} step_timer;

// Starts the clock of a run of `layers` conv layers (the pool and the head add two steps).
static void timer_start(step_timer *timer, int32_t layers) {
    if (timer->clock == NULL) return;
    for (int32_t s = 0; s < layers + 3; s++) timer->clock[s] = 0.0;
    timer->clock[0] = timer->mark = qk_monotonic_seconds();
}

// Turns the steps' times into the running clock.
static void timer_finish(step_timer *timer, int32_t layers) {
    if (timer->clock == NULL) return;
    for (int32_t s = 1; s < layers + 3; s++) timer->clock[s] += timer->clock[s - 1];
}

static void step_done(step_timer *timer, int32_t step) {
    if (timer->clock == NULL) return;
    const double now = qk_monotonic_seconds();
    timer->clock[step + 1] += now - timer->mark;
    timer->mark = now;
}


// Where leading layer i of the image-by-image part writes each image: layers before the last leading one
// reuse one place for every image, warm in L2 (docs/performance.md, "Depth first"), past the last leading
// layer's batch outputs when they share its buffer; the last one
// writes each image at its place in the batch, for the batched layers. `room` is what the scratch ping and
// pong each hold (index 0 pong, 1 ping, as layer i writes room[i % 2]). Returns the byte offset of image n's
// output in the layer's destination buffer.
static size_t leading_output_offset(const qk_network *network, int32_t i, int32_t n, int32_t leading, int32_t batch,
                                    const size_t room[2]) {
    const size_t mine = output_bytes(&network->convs[i].shape);
    if (i == leading - 1) return (size_t)n * mine;
    const size_t batch_outputs = (size_t)batch * output_bytes(&network->convs[leading - 1].shape);
    const size_t reused = (i - (leading - 1)) % 2 == 0 ? qk_round_to_line(batch_outputs) : 0;
    return reused + mine + QK_EXTRA_BYTES <= room[i % 2] ? reused : (size_t)n * mine;
}

// Leading layer i for image n alone.
static qk_conv_args leading_args(const qk_network *network, int32_t i, int32_t n, int32_t leading, int32_t batch,
                                 const size_t room[2], int32_t threads, const uint8_t *input, uint8_t *ping, uint8_t *pong,
                                 int16_t *scratch) {
    qk_conv_args args = conv_args(network, i, 0, 1, threads, input, ping, pong, scratch);
    if (i == 0) args.input += (size_t)n * input_bytes(&network->convs[0].shape);
    else args.input += leading_output_offset(network, i - 1, n, leading, batch, room);
    args.output += leading_output_offset(network, i, n, leading, batch, room);
    return args;
}

// The conv layers and the pool of `batch` images by `team`, with ping and pong and pooled positioned for
// those images. Steps end in the team's barriers (none for a member alone).
// `scratch`: the calling thread's own (qk_network_scratch.thread bytes).
static void run_features(const qk_path_config *path, const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                         uint8_t *pong, uint8_t *pooled, int16_t *scratch, qk_team *team, const qk_team *fc_team,
                         step_timer *timer) {
    const int32_t layers = network->conv_count;
    const qk_conv_geometry last = qk_conv_geometry_of(&network->convs[layers - 1].shape);
    const int32_t leading = per_image_layers(network, batch, input, ping);
    const size_t room[2] = {(size_t)batch * (qk_network_largest_in_pong(network) + QK_EXTRA_BYTES),
                            (size_t)batch * (qk_network_largest_in_ping(network) + QK_EXTRA_BYTES)};
    for (int32_t n = 0; n < (leading > 0 ? batch : 0); n++) {
        for (int32_t i = 0; i < leading; i++) {
            qk_conv_args args = leading_args(network, i, n, leading, batch, room, team->size, input, ping, pong, scratch);
            const qk_conv_args next = i + 1 < leading ? leading_args(network, i + 1, n, leading, batch, room, team->size, input, ping, pong, scratch)
                                      : n + 1 < batch ? leading_args(network, 0, n + 1, leading, batch, room, team->size, input, ping, pong, scratch)
                                                      : conv_args(network, i + 1 < layers ? i + 1 : i, 0, batch,
                                                                  team->size, input, ping, pong, scratch);
            qk_team_step_begin(team);
            run_conv(path, &args, i + 1 < layers || n + 1 < batch ? &next : NULL, network, team, fc_team);
            qk_team_step_end(team);
            step_done(timer, i);
        }
    }
    for (int32_t i = leading; i < layers; i++) {
        qk_conv_args args = conv_args(network, i, 0, batch, team->size, input, ping, pong, scratch);
        const qk_conv_args next = conv_args(network, i + 1 < layers ? i + 1 : i, 0, batch, team->size, input, ping, pong, scratch);
        qk_team_step_begin(team);
        run_conv(path, &args, i + 1 < layers ? &next : NULL, network, team, fc_team);
        qk_team_step_end(team);
        step_done(timer, i);
    }
    uint8_t *x = layers % 2 == 1 ? pong : ping;
    qk_team_step_begin(team);
    path->pool_share(batch, last.out_h * last.out_w, last.out_c, x, network->pool_multiplier, pooled, team);
    qk_team_step_end(team);
    step_done(timer, layers);
}

// ---- Rescue mode (network/team-rescue.h, run by a crew: network/team-crew.h) ----

// Where a set's arrays and buffers lie in its memory, each 64-byte aligned: the job, per item of a step, per
// step, per member, the team's buffers, each member's own conv output, pooled and logits, the input's copy,
// the pooled features, and each member's kernel scratch.
typedef struct rescue_layout {
    int64_t capacity;
    int32_t steps, buffers;
    size_t buffer_bytes, pooled_bytes, logits_bytes, input_bytes;
    size_t state, since, next, done, output, members, shared, own, own_pooled, own_logits, input, pooled, scratch, total;
} rescue_layout;

// What a rescue-mode run's members share, at the start of its set's memory: everything a member reads or
// writes is in the set, or is the network, or is the caller's logits (only ever committed to, which ends
// before the caller returns), so a partner that wakes up after the caller has returned touches nothing the
// caller goes on with.
typedef struct rescue_job {
    const qk_path_config *path;
    const qk_network *network;
    int32_t batch, threads;
    float *logits;
    size_t scratch_bytes;  // each member's kernel scratch
    // Tests (qk_testing_crew_roll_call): the run starts once every partner has arrived, all members at once.
    bool roll_call;
    _Atomic int32_t arrived;
    _Atomic bool go;
    qk_team_binding binding;
    rescue_layout lay;
    qk_rescue rescue;
} rescue_job;

static size_t carve(size_t *at, size_t bytes) {
    const size_t start = *at;
    *at += qk_round_to_line(bytes);
    return start;
}

static rescue_layout rescue_layout_of(const qk_network *network, int32_t batch, int32_t threads, size_t scratch_bytes) {
    rescue_layout lay;
    // Every step's items are fewer than its output values over the rows (a band is at least a row, a part at
    // least a channel): the bound the claiming relies on (qk_rescue_claim_begin).
    lay.capacity = 1;
    for (int32_t i = 0; i < network->conv_count; i++) {
        const qk_conv_shape *shape = &network->convs[i].shape;
        const qk_conv_geometry geo = qk_conv_geometry_of(shape);
        const int64_t bound = (int64_t)batch * geo.out_h * geo.out_c;
        if (bound > lay.capacity) lay.capacity = bound;
    }
    lay.steps = network->conv_count + 2;  // the convs, the pool, the head
    lay.buffers = threads + 1;
    const size_t ping = qk_network_largest_in_ping(network), pong = qk_network_largest_in_pong(network);
    const int32_t last_c = network->convs[network->conv_count - 1].shape.out_c;
    lay.buffer_bytes = (size_t)batch * ((ping > pong ? ping : pong) + QK_EXTRA_BYTES) + QK_EXTRA_BYTES;
    lay.pooled_bytes = (size_t)batch * (size_t)last_c + QK_EXTRA_BYTES;
    lay.logits_bytes = (size_t)batch * (size_t)network->classes * sizeof(float);
    lay.input_bytes = (size_t)batch * input_bytes(&network->convs[0].shape);
    size_t at = 0;
    carve(&at, sizeof(rescue_job));
    lay.state = carve(&at, (size_t)lay.capacity * sizeof(uint32_t));
    lay.since = carve(&at, (size_t)lay.capacity * sizeof(uint32_t));
    lay.next = carve(&at, (size_t)lay.steps * QK_RESCUE_MAX_BUFFERS * sizeof(int64_t));
    lay.done = carve(&at, (size_t)lay.steps * sizeof(int64_t));
    lay.output = carve(&at, (size_t)lay.steps * sizeof(int32_t));
    lay.members = carve(&at, (size_t)threads * sizeof(qk_rescue_member));
    lay.shared = carve(&at, (size_t)lay.buffers * qk_round_to_line(lay.buffer_bytes));
    lay.own = carve(&at, (size_t)threads * qk_round_to_line(lay.buffer_bytes));
    lay.own_pooled = carve(&at, (size_t)threads * qk_round_to_line(lay.pooled_bytes));
    lay.own_logits = carve(&at, (size_t)threads * qk_round_to_line(lay.logits_bytes));
    lay.input = carve(&at, lay.input_bytes + QK_EXTRA_BYTES);
    lay.pooled = carve(&at, lay.pooled_bytes);
    lay.scratch = carve(&at, (size_t)threads * qk_round_to_line(scratch_bytes));
    lay.total = at;
    return lay;
}

static uint8_t *rescue_buffer(uint8_t *base, size_t offset, size_t bytes, int32_t index) {
    return base + offset + (size_t)index * qk_round_to_line(bytes);
}

static _Atomic bool rescue_forced = false, roll_call = false, judged_on_time = false;
static _Atomic int64_t rescue_runs = 0;

void qk_testing_crew_roll_call(int on) {
    atomic_store(&roll_call, on != 0);
}

int64_t qk_testing_rescue_runs(void) {
    return atomic_exchange(&rescue_runs, 0);
}

void qk_testing_force_rescue(int on) {
    atomic_store(&rescue_forced, on != 0);
}

void qk_testing_judge_on_time(int on) {
    atomic_store(&judged_on_time, on != 0);
}

// Whether rescue mode can run this team: a history to hold its crew, kernels that claim items, a team its
// buffers can serve.
static bool rescue_possible(const qk_team_history *history, const qk_network *network, int32_t threads) {
    return history != NULL && !history->crew_failed && network->config->ops->claims_items &&
           threads + 1 <= QK_RESCUE_MAX_BUFFERS;
}

static void rescue_part(uint8_t *memory, int32_t member);

// Sets up a rescue-mode run in a free set of the history's crew (made, or remade for another team size, here)
// and posts it; NULL when there is no crew, set or memory for it (the caller then runs alone).
static rescue_job *post_rescue(qk_team_history *history, const qk_path_config *path, const qk_network *network,
                               int32_t batch, int32_t threads, const uint8_t *input, float *logits, int32_t *set) {
    // A crew made before a fork has no threads in the child: the child makes its own.
    if (history->crew != NULL && (qk_crew_partners(history->crew) != threads - 1 || !qk_crew_is_here(history->crew))) {
        qk_crew_destroy(history->crew);
        history->crew = NULL;
    }
    if (history->crew == NULL) {
        history->crew = qk_crew_create(threads - 1, rescue_part);
        history->crew_failed = history->crew == NULL ? 1 : 0;
    }
    if (history->crew == NULL || (*set = qk_crew_claim_set(history->crew)) < 0) return NULL;
    const size_t scratch_bytes = qk_network_thread_scratch(network);
    const rescue_layout lay = rescue_layout_of(network, batch, threads, scratch_bytes);
    uint8_t *base = qk_crew_set_memory(history->crew, *set, lay.total);
    if (base == NULL) return NULL;
    rescue_job *job = (rescue_job *)base;
    *job = (rescue_job){.path = path, .network = network, .batch = batch, .threads = threads, .logits = logits,
                        .scratch_bytes = scratch_bytes, .lay = lay};
    qk_rescue *rescue = &job->rescue;
    rescue->state = (_Atomic uint32_t *)(base + lay.state);
    rescue->since = (_Atomic uint32_t *)(base + lay.since);
    rescue->capacity = lay.capacity;
    rescue->next = (_Atomic int64_t *)(base + lay.next);
    rescue->done = (_Atomic int64_t *)(base + lay.done);
    rescue->output = (_Atomic int32_t *)(base + lay.output);
    rescue->members = (qk_rescue_member *)(base + lay.members);
    rescue->buffers = lay.buffers;
    for (int64_t i = 0; i < lay.capacity; i++) atomic_init(&rescue->state[i], 0u);
    for (int32_t s = 0; s < lay.steps; s++) {
        for (int32_t m = 0; m < QK_RESCUE_MAX_BUFFERS; m++) atomic_init(&rescue->next[(size_t)s * QK_RESCUE_MAX_BUFFERS + (size_t)m], 0);
        atomic_init(&rescue->done[s], 0);
        atomic_init(&rescue->output[s], -1);
    }
    for (int32_t b = 0; b < QK_RESCUE_MAX_BUFFERS; b++) atomic_init(&rescue->readers[b], 0);
    memset(rescue->members, 0, (size_t)threads * sizeof(qk_rescue_member));
    // The caller's input may change once it has returned; the kernels read its slack, which must be defined.
    memcpy(base + lay.input, input, lay.input_bytes);
    memset(base + lay.input + lay.input_bytes, 0, QK_EXTRA_BYTES);
    job->roll_call = atomic_load_explicit(&roll_call, memory_order_relaxed);
    atomic_init(&job->arrived, 0);
    atomic_init(&job->go, false);
    qk_team_binding_plan(&job->binding, threads);
    rescue->start = qk_monotonic_seconds();
    qk_crew_post(history->crew, *set);
    // (Yielding: with more threads than CPUs, a spinning caller would keep a partner from starting.)
    if (job->roll_call) {
        while (atomic_load(&job->arrived) < threads - 1) sched_yield();
        atomic_store(&job->go, true);
    }
    return job;
}

// Pool and head steps: the whole batch as one item each (together a few percent of a run).
static void single_share(const void *context, const qk_team *member, int64_t *first, int64_t *end) {
    (void)context;
    *first = member->member == 0 ? 0 : 1;
    *end = 1;
}

// The item's bytes (`context`: their count) as one row of one pixel.
static void single_region(const void *context, int64_t item, qk_item_region *region) {
    (void)item;
    region->image = 0;
    region->first_row = 0;
    region->end_row = 1;
    region->first_channel = 0;
    region->end_channel = (int32_t)*(const size_t *)context;
}

static void set_single_output(qk_rescue_member *me, uint8_t *own, uint8_t *shared, const size_t *bytes) {
    me->own = own;
    me->shared = shared;
    me->out_h = me->out_w = 1;
    me->out_c = (int32_t)*bytes;
}

// One member's part of a rescue-mode run: every step, none of which waits for another member.
static void run_rescued(rescue_job *job, int32_t member, step_timer *timer) {
    qk_rescue *rescue = &job->rescue;
    const rescue_layout *lay = &job->lay;
    const qk_network *network = job->network;
    const qk_path_config *path = job->path;
    const int32_t batch = job->batch;
    qk_team team_of_member = {member, job->threads, NULL, 0, rescue};
    qk_team *team = &team_of_member;
    qk_rescue_member *me = &rescue->members[member];
    uint8_t *base = (uint8_t *)job;
    uint8_t *input = base + lay->input;
    int16_t *scratch = job->scratch_bytes > 0 ? (int16_t *)rescue_buffer(base, lay->scratch, job->scratch_bytes, member) : NULL;
    const int32_t layers = network->conv_count;
    int32_t source = -1;
    for (int32_t i = 0; i < layers; i++) {
        team->step = i;
        const int32_t destination = qk_rescue_enter_step(rescue, i, source);
        const qk_conv_geometry geo = qk_conv_geometry_of(&network->convs[i].shape);
        me->own = rescue_buffer(base, lay->own, lay->buffer_bytes, member);
        me->shared = rescue_buffer(base, lay->shared, lay->buffer_bytes, destination);
        me->out_h = geo.out_h;
        me->out_w = geo.out_w;
        me->out_c = geo.out_c;
        // (ping and pong only place the input and output, both set here.)
        qk_conv_args args = conv_args(network, i, 0, batch, team->size, input, me->own, me->own, scratch);
        if (i > 0) args.input = rescue_buffer(base, lay->shared, lay->buffer_bytes, source);
        args.output = me->own;
        path->ops->conv_share(path, &args, team);
        qk_rescue_leave_step(rescue, source);
        source = destination;
        step_done(timer, i);
    }
    // Pool into the set's pooled features (only ever committed there, so never read while written), then the head.
    const qk_conv_geometry last = qk_conv_geometry_of(&network->convs[layers - 1].shape);
    const qk_team solo = {0, 1, NULL, 0, NULL};
    const size_t pooled_bytes = (size_t)batch * (size_t)last.out_c;
    uint8_t *pooled = base + lay->pooled;
    uint8_t *own_pooled = rescue_buffer(base, lay->own_pooled, lay->pooled_bytes, member);
    qk_item_claim claim;
    int64_t item;
    bool own;
    team->step = layers;
    qk_rescue_enter_step(rescue, layers, source);
    set_single_output(me, own_pooled, pooled, &pooled_bytes);
    qk_claim_begin(&claim, team, &pooled_bytes, single_share, single_region);
    while (qk_claim_next(&claim, team, &item, &own))
        path->pool_share(batch, last.out_h * last.out_w, last.out_c, rescue_buffer(base, lay->shared, lay->buffer_bytes, source),
                         network->pool_multiplier, own_pooled, &solo);
    qk_rescue_leave_step(rescue, source);
    step_done(timer, layers);
    team->step = layers + 1;
    qk_rescue_enter_step(rescue, layers + 1, -1);
    set_single_output(me, rescue_buffer(base, lay->own_logits, lay->logits_bytes, member), (uint8_t *)job->logits,
                      &lay->logits_bytes);
    qk_claim_begin(&claim, team, &lay->logits_bytes, single_share, single_region);
    while (qk_claim_next(&claim, team, &item, &own))
        path->ops->fc_share(path, batch, last.out_c, network->classes, network->fc_packed, network->fc_bias,
                            network->fc_multiplier, pooled, (float *)me->own, &solo);
    step_done(timer, layers + 1);
}

// A partner's part (qk_crew_part_fn).
static void rescue_part(uint8_t *memory, int32_t member) {
    rescue_job *job = (rescue_job *)memory;
    qk_team_bind(&job->binding);
    if (job->roll_call) {
        atomic_fetch_add(&job->arrived, 1);
        while (!atomic_load(&job->go)) sched_yield();
    }
    step_timer none = {NULL, 0.0};
    run_rescued(job, member, &none);
}

// The caller's part of a posted rescue-mode run, after which it leaves the run to its partners.
static void run_rescue_mode(qk_team_history *history, rescue_job *job, int32_t set, uint8_t *pooled, double *step_clock) {
    const int32_t layers = job->network->conv_count;
    step_timer timer = {step_clock, 0.0};
    timer_start(&timer, layers);
    run_rescued(job, 0, &timer);
    timer_finish(&timer, layers);
    const qk_conv_geometry last = qk_conv_geometry_of(&job->network->convs[layers - 1].shape);
    memcpy(pooled, (uint8_t *)job + job->lay.pooled, (size_t)job->batch * (size_t)last.out_c);
    qk_crew_finish(history->crew, set);
    qk_team_binding_end(&job->binding);
    history->rescue_runs++;
    atomic_fetch_add_explicit(&rescue_runs, 1, memory_order_relaxed);
}

void qk_team_history_release(qk_team_history *history) {
    if (history == NULL) return;
    qk_crew_destroy(history->crew);
    memset(history, 0, sizeof *history);
}

// Image by image: with at least as many images as threads, each thread takes the next image from a shared
// counter and runs it through every conv layer and the pool alone, as one thread would: no barrier per
// layer, no rows read from another core's L2, every layer at single-thread efficiency (one thread runs an
// image as fast alone as within a batch of 8). A thread slowed by another process simply takes fewer images.
// The last images, fewer than the threads, run layer by layer with the whole team; then the team shares
// the fc head. Member m's images use ping and pong from m * (largest + QK_EXTRA_BYTES) on (largest of that
// buffer), so that no thread's reads past its activations (the slack) touch bytes another thread writes, and
// the images after them from (images run alone) * (largest + QK_EXTRA_BYTES) on: hence the scratch contract
// of batch * (largest + QK_EXTRA_BYTES) per buffer. The input must be in a buffer of its own: in ping, image
// 0's activations would overwrite image 1's pixels.
// (docs/performance.md, "Images alone".)
static int32_t images_run_alone(int32_t batch, int32_t threads, const uint8_t *input, const uint8_t *ping) {
    return threads > 1 && batch >= threads && input != ping ? batch - batch % threads : 0;
}

qk_status qk_network_run(const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                         uint8_t *pong, uint8_t *pooled, float *logits, uint8_t *thread_scratch, int32_t threads,
                         double *step_clock) {
    return qk_network_run_paced(network, batch, input, ping, pong, pooled, logits, thread_scratch, threads, step_clock,
                                NULL);
}

qk_status qk_network_run_paced(const qk_network *network, int32_t batch, const uint8_t *input, uint8_t *ping,
                               uint8_t *pong, uint8_t *pooled, float *logits, uint8_t *thread_scratch, int32_t threads,
                               double *step_clock, qk_team_history *history) {
    if (network == NULL || batch < 1 || batch > QK_MAX_BATCH) return QK_ERROR_INVALID_ARGUMENT;
    if (input == NULL || ping == NULL || pong == NULL || pooled == NULL || logits == NULL) return QK_ERROR_INVALID_ARGUMENT;
    if (!qk_network_is_complete(network)) return QK_ERROR_INCOMPLETE;
    if (threads < 1) threads = 1;
    const qk_path_config *path = network->config;
    const int32_t layers = network->conv_count;
    const qk_conv_geometry last = qk_conv_geometry_of(&network->convs[layers - 1].shape);
    const int32_t alone_images = images_run_alone(batch, threads, input, ping);
    // Layer by layer, a late member holds the team up: rescue mode for a while after that, or one thread
    // where it cannot run (team-pace.c).
    qk_pace_mode mode = QK_PACE_TEAM;
    const double started = qk_monotonic_seconds();
    if (alone_images == 0 && threads > 1) {
        const bool possible = rescue_possible(history, network, threads);
        if (atomic_load(&rescue_forced) && possible) {
            mode = QK_PACE_RESCUE;
            qk_team_pace_begin(history, mode, threads);
        } else {
            mode = qk_team_pace_mode(history, threads, possible);
        }
        if (mode == QK_PACE_RESCUE) {
            int32_t set = -1;
            rescue_job *job = post_rescue(history, path, network, batch, threads, input, logits, &set);
            if (job != NULL) {
                run_rescue_mode(history, job, set, pooled, step_clock);
                qk_team_pace_record_loaded(history, mode, qk_monotonic_seconds() - started, batch);
                return QK_OK;
            }
            mode = QK_PACE_SOLO;
        }
        if (mode == QK_PACE_SOLO) threads = 1;
    }
    const size_t ping_slot = qk_network_largest_in_ping(network) + QK_EXTRA_BYTES;
    const size_t pong_slot = qk_network_largest_in_pong(network) + QK_EXTRA_BYTES;
    const size_t image_bytes = input_bytes(&network->convs[0].shape);
    // Each member's kernel scratch, from the caller's workspace (or allocated for this run).
    const size_t scratch_bytes = qk_network_thread_scratch(network);
    uint8_t *own_scratch = NULL;
    if (scratch_bytes > 0 && thread_scratch == NULL) {
        if (scratch_bytes > SIZE_MAX / (size_t)threads) return QK_ERROR_OUT_OF_MEMORY;
        thread_scratch = own_scratch = aligned_alloc(64, scratch_bytes * (size_t)threads);
        if (own_scratch == NULL) return QK_ERROR_OUT_OF_MEMORY;
    }
    int32_t joined = 0, next_image = 0;
    // Claim counters, two sets of one per member, each on its own cache line; without them (no memory) the
    // members keep to their static shares.
    qk_team_work work = {NULL};
    if (threads > 1) work.counters = aligned_alloc(64, (size_t)2 * (size_t)threads * sizeof(qk_team_counter));
    if (work.counters != NULL) memset(work.counters, 0, (size_t)2 * (size_t)threads * sizeof(qk_team_counter));
    // A layer-by-layer team run is judged afterwards (team-pace.c): how long members waited or were off core.
    const bool judged = alone_images == 0 && work.counters != NULL && history != NULL;
    qk_team_binding binding;
    qk_team_binding_plan(&binding, threads);
#pragma omp parallel num_threads(threads) if (threads > 1)
    {
        qk_team_bind(&binding);
        const double wall_start = judged ? qk_monotonic_seconds() : 0.0, cpu_start = judged ? qk_thread_cpu_seconds() : 0.0;
        qk_team team = qk_team_join(&joined);
        team.work = &work;
        int16_t *scratch = scratch_bytes > 0 ? (int16_t *)(thread_scratch + (size_t)team.member * scratch_bytes) : NULL;
        // Member 0 times the steps (of the images it runs alone, then of the rest and the fc head).
        step_timer timer = {team.member == 0 ? step_clock : NULL, 0.0};
        timer_start(&timer, layers);
        int32_t first_shared = 0;
        if (alone_images > 0 && team.size > 1) {
            for (;;) {
                int32_t n;
#pragma omp atomic capture
                n = next_image++;
                if (n >= alone_images) break;
                qk_team solo = {0, 1, NULL, 0, NULL};
                // The member's own slot for all its images: their activations die with the image, and a
                // region the member wrote before is warm in its L2.
                const size_t member = (size_t)team.member;
                run_features(path, network, 1, input + (size_t)n * image_bytes, ping + member * ping_slot, pong + member * pong_slot,
                             pooled + (size_t)n * (size_t)last.out_c, scratch, &solo, NULL, &timer);
            }
            first_shared = alone_images;
#pragma omp barrier
        }
        if (first_shared < batch) {
            const size_t shared = (size_t)first_shared;
            run_features(path, network, batch - first_shared, input + (size_t)first_shared * image_bytes,
                         ping + shared * ping_slot, pong + shared * pong_slot, pooled + (size_t)first_shared * (size_t)last.out_c,
                         scratch, &team, &team, &timer);
        }
        qk_team_step_begin(&team);
        path->ops->fc_share(path, batch, last.out_c, network->classes, network->fc_packed, network->fc_bias,
                            network->fc_multiplier, pooled, logits, &team);
        if (step_clock != NULL) {
            qk_team_step_end(&team);
            step_done(&timer, layers + 1);
            timer_finish(&timer, layers);
        }
        if (judged) {
            qk_team_counter *mine = &work.counters[team.member];
            mine->finished = qk_monotonic_seconds();
            mine->off_core = (mine->finished - wall_start) - (qk_thread_cpu_seconds() - cpu_start);
        }
    }
    qk_team_binding_end(&binding);
    if (mode != QK_PACE_TEAM) qk_team_pace_record_loaded(history, mode, qk_monotonic_seconds() - started, batch);
    if (judged) {
        // Held up: the longest wait at a step's barrier or at the join (from the first member to finish), or
        // the longest any member was off its core.
        double longest_wait = 0.0, first_finished = work.counters[0].finished;
        for (int32_t m = 0; m < threads; m++) {
            const qk_team_counter *counter = &work.counters[m];
            if (counter->longest_wait > longest_wait) longest_wait = counter->longest_wait;
            if (counter->off_core > longest_wait) longest_wait = counter->off_core;
            if (counter->finished < first_finished) first_finished = counter->finished;
        }
        const double join_wait = qk_monotonic_seconds() - first_finished;
        if (join_wait > longest_wait) longest_wait = join_wait;
        qk_team_pace_record(history, threads, atomic_load(&judged_on_time) ? 0.0 : longest_wait, qk_monotonic_seconds() - started);
    }
    free(work.counters);
    free(own_scratch);
    return QK_OK;
}
