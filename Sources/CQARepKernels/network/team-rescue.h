// Rescue mode: a layer-by-layer team run in which no member ever waits for another (team-pace.c chooses
// it while another process holds a core). A member kept off its core in the middle of an item would hold
// the whole team at the step's end until it runs again (about a time slice); here the others redo that
// item instead and move on. Safe by construction, at the price of a copy per item:
// - each member computes its items into buffers of its own and commits an item by copying its region
//   into the step's output; the first to commit wins, later ones are discarded;
// - a step's output goes to one of the team's buffers that no member is still reading, so a late member
//   that wakes up reads the same bytes it started with (its result is then discarded).
// Nor does the caller wait for a late member at the end: its partners are a crew of threads that need not
// join it (team-crew.h).
#ifndef QK_TEAM_RESCUE_H
#define QK_TEAM_RESCUE_H

#include "network/team-sync.h"

// A step's input, its output, and one buffer per other member that a late member may still be reading:
// teams up to 7 members.
enum { QK_RESCUE_MAX_BUFFERS = 8 };
// (So at most 7 members: `next` keeps one counter per possible member, QK_RESCUE_MAX_BUFFERS per step.)

typedef struct qk_rescue_member {
    _Alignas(64) uint8_t *own;  // where the member's kernels write the step's output
    uint8_t *shared;            // the step's output, where items are committed
    int32_t out_h, out_w, out_c;  // of one image, one byte per value
    double item_seconds;          // the member's last mean item time, the others' grace before a redo
} qk_rescue_member;

typedef struct qk_rescue {
    _Atomic uint32_t *state;  // [capacity]: (step + 1) << 2 | status of item i of the step that uses it
    _Atomic uint32_t *since;  // [capacity]: when it was claimed, microseconds from `start`
    int64_t capacity;
    _Atomic int64_t *next;    // [steps][QK_RESCUE_MAX_BUFFERS]: items claimed from each member's share
    _Atomic int64_t *done;    // [steps]: items committed
    _Atomic int32_t *output;  // [steps]: the buffer the step writes (-1: not chosen yet)
    _Atomic int32_t readers[QK_RESCUE_MAX_BUFFERS];
    int32_t buffers;
    double start;
    qk_rescue_member *members;
} qk_rescue;

// A member starts step `step`, which reads buffer `input` (-1: not one of the team's): it counts itself
// among its readers and returns the buffer the step writes, choosing one nobody reads if no member has yet.
int32_t qk_rescue_enter_step(qk_rescue *rescue, int32_t step, int32_t input);
// The member has finished the step (all its items are committed) and no longer reads `input`.
void qk_rescue_leave_step(qk_rescue *rescue, int32_t input);

// The claiming of qk_claim_begin / qk_claim_next in rescue mode: every item of the step, first the ones
// nobody has claimed, then late ones again; returns false once every item is committed.
void qk_rescue_claim_begin(qk_item_claim *claim, const qk_team *team);
bool qk_rescue_claim_next(qk_item_claim *claim, const qk_team *team, int64_t *item, bool *own);

#endif
