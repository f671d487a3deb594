/*
 * eg/hedge.h - hedged calls: start a backup attempt when the first is slow.
 *
 * A tail-latency tool: the same request is sent again, to another replica
 * or the same service, when the first attempt has not answered after a
 * delay; the first answer wins and the others are cancelled. Every attempt
 * runs on the pool with the same context, a child of the parent that is
 * cancelled once an attempt wins (so cancelling it stops all attempts at
 * once; an attempt cannot be cancelled alone); eg_hedge returns only after
 * every attempt it started has returned.
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
 * -1; with a parent already done no attempt runs. A delay_ns too large for
 * eg_now() + delay_ns (up to INT64_MAX) means "never": a later attempt then
 * starts only when one fails. attempts >= 1; args may be NULL (every attempt gets NULL) and holds
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
