/*
 * eg/hedge.h - hedged calls: start a backup attempt when the first is slow.
 *
 * A tail-latency tool: the same request is sent again, to another replica
 * or the same service, when the first attempt has not answered after a
 * delay; the first answer wins and the others are cancelled. Each attempt
 * runs on the pool with a context of its own; eg_hedge returns only after
 * every attempt it started has returned.
 */
#ifndef EG_HEDGE_H
#define EG_HEDGE_H

#include "eg/group.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * eg_hedge() - run hedged attempts of a call; the first success wins
 *
 * Runs fn(ctx, args[0]) on the pool; each time delay_ns passes without a
 * success, and at once when an attempt fails, starts the next attempt
 * fn(ctx, args[i]), up to attempts in all. The first attempt to return 0
 * wins: the others' context is cancelled (cause -ECANCELED). With a parent
 * already done no attempt runs.
 *
 * Returns: 0 when an attempt succeeded, with *winner set to its index.
 * Otherwise *winner is -1 and it returns:
 * - the first failure in finishing order, or the parent's error when the
 *   parent is cancelled first;
 * - -EINVAL: fn NULL, attempts < 1 or delay_ns < 0;
 * - -ENOMEM, -EAGAIN: not even the first attempt could start (a later
 *   attempt that cannot start counts as a failed attempt).
 * Blocks: The caller, until every attempt it started has returned.
 * Thread-safety: Any thread, also from inside a task.
 * Ownership: args is read during the call; args[i] passes to attempt i for
 * its run and is the caller's again when eg_hedge() returns.
 * NULL: parent NULL means eg_background(); args NULL gives every attempt
 * NULL (otherwise it holds attempts elements); winner may be NULL.
 */
EG_EXPORT int eg_hedge(eg_ctx *parent, eg_fn fn, void *const *args, int attempts,
                       int64_t delay_ns, int *winner);

#ifdef __cplusplus
}
#endif
#endif
