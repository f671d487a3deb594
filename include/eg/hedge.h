/*
 * eg/hedge.h - hedged calls: start a backup attempt when the first is slow.
 *
 * A tail-latency tool: the same request is sent again, to another replica
 * or the same service, when the first attempt has not answered after a
 * delay; the first answer wins and the others are cancelled. eg_hedge
 * returns only after every attempt it started has returned.
 *
 * It is a thin layer over a group with the EG_FIRST_SUCCESS policy
 * (eg/group.h): the attempts are that group's tasks and all share its one
 * context, a child of parent (values and deadline come from parent). The
 * first attempt to return 0 cancels that context for the others (cause
 * -ECANCELED); a parent's cancel or deadline reaches all of them.
 */
#ifndef EG_HEDGE_H
#define EG_HEDGE_H

#include "eg/group.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs fn(ctx, args[0]); each time delay_ns passes without a success, and
 * at once when an attempt fails, starts the next attempt fn(ctx, args[i]),
 * up to attempts in all. The first attempt to return 0 wins: the others'
 * context is cancelled (cause -ECANCELED), eg_hedge waits for them to
 * return, sets *winner (may be NULL) to the winner's index and returns 0.
 * If no attempt succeeds it returns the first failure in finishing order
 * (the parent's error when the parent is cancelled first), and *winner is
 * -1; with a parent already done no attempt runs (the parent's error is
 * returned). attempts >= 1; args may be NULL (every attempt gets NULL) and holds
 * attempts elements otherwise; delay_ns >= 0. Returns -EINVAL for bad
 * arguments and -ENOMEM, -EAGAIN when not even the first attempt could
 * start (a later attempt that cannot start counts as a failed attempt).
 * Blocks the caller for the whole call. */
EG_EXPORT int eg_hedge(eg_ctx *parent, eg_fn fn, void *const *args, int attempts,
                       int64_t delay_ns, int *winner);

#ifdef __cplusplus
}
#endif
#endif
