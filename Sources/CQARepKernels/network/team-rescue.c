// Rescue mode's claiming (team-rescue.h). Every shared word is an atomic; an item's bytes reach the step's
// output only through the one commit that moved its state from claimed to committing, and the step ends
// (its `done` count reaches the items) only after every item's copy.
#include "network/team-rescue.h"

#include <string.h>

enum { QK_ITEM_CLAIMED = 1, QK_ITEM_COMMITTING = 2, QK_ITEM_DONE = 3 };

// An item claimed this long ago is not running late but off its core: at least this long, and a few times
// the items the member itself ran lately (quiet, an item runs within 2x of another of its step).
#define QK_RESCUE_MIN_GRACE_SECONDS 50e-6
#define QK_RESCUE_GRACE_ITEMS 3.0
#define QK_RESCUE_FIRST_GRACE_SECONDS 300e-6

static _Atomic int64_t redone_items = 0;

int64_t qk_testing_redone_items(void) {
    return atomic_exchange(&redone_items, 0);
}

static uint32_t tag(int32_t step, uint32_t status) {
    return ((uint32_t)step + 1u) << 2 | status;
}

static uint32_t microseconds_since(const qk_rescue *rescue, double start) {
    const double elapsed = qk_monotonic_seconds() - start;
    return elapsed <= 0.0 ? 0u : (uint32_t)(elapsed * 1e6);
}

int32_t qk_rescue_enter_step(qk_rescue *rescue, int32_t step, int32_t input) {
    if (input >= 0) atomic_fetch_add(&rescue->readers[input], 1);
    for (;;) {
        const int32_t chosen = atomic_load(&rescue->output[step]);
        if (chosen >= 0) return chosen;
        // Not the input, and nobody reading it: no late member can still read an older step's input there.
        for (int32_t b = 0; b < rescue->buffers; b++) {
            if (b == input || atomic_load(&rescue->readers[b]) != 0) continue;
            int32_t expected = -1;
            if (atomic_compare_exchange_strong(&rescue->output[step], &expected, b)) return b;
            break;  // another member chose first
        }
        qk_spin_pause();
    }
}

void qk_rescue_leave_step(qk_rescue *rescue, int32_t input) {
    if (input >= 0) atomic_fetch_sub(&rescue->readers[input], 1);
}

void qk_rescue_claim_begin(qk_item_claim *claim, const qk_team *team) {
    // The shares tile the items in member order, so the last one ends at their count.
    qk_team last = *team;
    last.member = team->size - 1;
    int64_t first, end;
    claim->share(claim->context, &last, &first, &end);
    // The runner sizes `capacity` above any step's items (network-run.c); a step beyond it would leave
    // items uncomputed, so it is clamped only to keep the state array in bounds.
    claim->items = end < team->rescue->capacity ? end : team->rescue->capacity;
    if (claim->end > claim->items) claim->end = claim->items;
    claim->visited = 0;
    claim->pending = -1;
}

// The next item nobody has claimed: the member's own share first (the rows it wrote the step before stay in
// its L2), then what is left of the others', as qk_claim_next takes them; -1 when all are claimed.
static int64_t claim_fresh(qk_item_claim *claim, const qk_team *team) {
    qk_rescue *rescue = team->rescue;
    for (; claim->visited < team->size; claim->visited++) {
        if (claim->visited > 0) {
            qk_team victim = *team;
            victim.member = (team->member + claim->visited) % team->size;
            claim->share(claim->context, &victim, &claim->first, &claim->end);
            if (claim->end > claim->items) claim->end = claim->items;
        }
        if (claim->first >= claim->end) continue;
        _Atomic int64_t *taken = &rescue->next[(size_t)team->step * QK_RESCUE_MAX_BUFFERS +
                                               (size_t)((team->member + claim->visited) % team->size)];
        if (atomic_load_explicit(taken, memory_order_relaxed) >= claim->end - claim->first) continue;
        const int64_t index = atomic_fetch_add(taken, 1);
        if (claim->first + index < claim->end) return claim->first + index;
    }
    return -1;
}

static void copy_region(const qk_rescue_member *member, const qk_item_region *region) {
    const size_t channels = (size_t)member->out_c;
    const size_t row = (size_t)member->out_w * channels;
    const size_t first = ((size_t)region->image * (size_t)member->out_h + (size_t)region->first_row) * row;
    const size_t rows = (size_t)(region->end_row - region->first_row);
    const size_t width = (size_t)(region->end_channel - region->first_channel);
    if (width == channels) {
        memcpy(member->shared + first, member->own + first, rows * row);
        return;
    }
    for (size_t pixel = 0; pixel < rows * (size_t)member->out_w; pixel++) {
        const size_t at = first + pixel * channels + (size_t)region->first_channel;
        memcpy(member->shared + at, member->own + at, width);
    }
}

static void commit(const qk_item_claim *claim, const qk_team *team, int64_t item) {
    qk_rescue *rescue = team->rescue;
    uint32_t expected = tag(team->step, QK_ITEM_CLAIMED);
    // Lost: another member committed it (or is copying it), or the step is long over.
    if (!atomic_compare_exchange_strong(&rescue->state[item], &expected, tag(team->step, QK_ITEM_COMMITTING))) return;
    qk_item_region region;
    claim->region(claim->context, item, &region);
    copy_region(&rescue->members[team->member], &region);
    atomic_store_explicit(&rescue->state[item], tag(team->step, QK_ITEM_DONE), memory_order_release);
    atomic_fetch_add(&rescue->done[team->step], 1);
}

bool qk_rescue_claim_next(qk_item_claim *claim, const qk_team *team, int64_t *item, bool *own) {
    qk_rescue *rescue = team->rescue;
    qk_rescue_member *me = &rescue->members[team->member];
    const int32_t step = team->step;
    if (claim->pending >= 0) {
        commit(claim, team, claim->pending);
        const double seconds = qk_monotonic_seconds() - claim->pending_start;
        me->item_seconds = me->item_seconds > 0.0 ? 0.5 * (me->item_seconds + seconds) : seconds;
        claim->pending = -1;
    }
    const uint32_t claimed = tag(step, QK_ITEM_CLAIMED);
    for (;;) {
        if (atomic_load(&rescue->done[step]) >= claim->items) return false;
        const int64_t fresh = claim_fresh(claim, team);
        if (fresh >= 0) {
            atomic_store_explicit(&rescue->since[fresh], microseconds_since(rescue, rescue->start), memory_order_relaxed);
            atomic_store_explicit(&rescue->state[fresh], claimed, memory_order_release);
            if (!claim->started) {
                claim->started = true;
                qk_team_straggle(team);  // a test's late member: asleep holding the item
            }
            claim->pending = fresh;
            claim->pending_start = qk_monotonic_seconds();
            *item = fresh;
            *own = claim->visited == 0;
            return true;
        }
        // Everything is claimed: redo an item whose member is late, or wait for the last commits.
        double grace = me->item_seconds > 0.0 ? QK_RESCUE_GRACE_ITEMS * me->item_seconds : QK_RESCUE_FIRST_GRACE_SECONDS;
        if (grace < QK_RESCUE_MIN_GRACE_SECONDS) grace = QK_RESCUE_MIN_GRACE_SECONDS;
        const uint32_t now = microseconds_since(rescue, rescue->start);
        for (int64_t i = 0; i < claim->items; i++) {
            if (atomic_load_explicit(&rescue->state[i], memory_order_acquire) != claimed) continue;
            const uint32_t since = atomic_load_explicit(&rescue->since[i], memory_order_relaxed);
            if (now < since || (double)(now - since) * 1e-6 < grace) continue;
            atomic_fetch_add_explicit(&redone_items, 1, memory_order_relaxed);
            claim->pending = i;
            claim->pending_start = qk_monotonic_seconds();
            *item = i;
            *own = false;
            return true;
        }
        for (int spin = 0; spin < 16; spin++) qk_spin_pause();
    }
}
