/*
 * cond.c - eg_cond_wait: a pthread condition variable that listens to a
 * context.
 *
 * The waiter registers on the context, then sleeps in pthread_cond_wait.
 * The canceller runs wake() under the context's lock and must broadcast
 * cond while holding mu, or a waiter between its check and its sleep would
 * miss the wake-up. It cannot block on mu: the canceller may be the thread
 * holding it. So wake() tries the lock:
 *
 *   trylock(mu) succeeds -> broadcast, unlock: the waiter, if it holds
 *       no mu, is asleep in the condition variable and wakes.
 *   trylock fails -> mark the waiter pending and post a task to the pool
 *       that locks mu, clears pending and broadcasts.
 *
 * States of a waiter: registered -> (woken by the context: pending or not)
 * -> unregistered. Before returning, the waiter waits (on cond, releasing
 * mu) until no posted task still refers to its cond and mu, so the caller
 * may destroy them as soon as it returns.
 *
 * Lock order: mu -> context lock (register/unregister while holding mu);
 * context lock -> mu only by trylock.
 */
#include <stddef.h>

#include "internal.h"

typedef struct {
    eg__waiter waiter;
    eg__task task;
    pthread_cond_t *cond;
    pthread_mutex_t *mu;
    atomic_int pending; /* a posted task will still lock mu */
} cond_waiter;

static void deferred_wake(eg__task *t)
{
    cond_waiter *cw = (cond_waiter *)((char *)t - offsetof(cond_waiter, task));
    pthread_mutex_lock(cw->mu);
    /* Under mu: the waiter reads pending under mu and cannot return (and
     * free cw) until we unlock. */
    atomic_store_explicit(&cw->pending, 0, memory_order_relaxed);
    pthread_cond_broadcast(cw->cond);
    pthread_mutex_unlock(cw->mu);
}

static void cond_wake(eg__waiter *w)
{
    cond_waiter *cw = (cond_waiter *)((char *)w - offsetof(cond_waiter, waiter));
    if (pthread_mutex_trylock(cw->mu) == 0) {
        pthread_cond_broadcast(cw->cond);
        pthread_mutex_unlock(cw->mu);
        return;
    }
    atomic_store_explicit(&cw->pending, 1, memory_order_relaxed);
    eg__pool_post(&cw->task);
}

int eg_cond_timedwait(eg_ctx *ctx, pthread_cond_t *cond, pthread_mutex_t *mu,
                      int64_t deadline_ns)
{
    if (!ctx || !cond || !mu)
        return -EINVAL;
    cond_waiter cw = {.cond = cond, .mu = mu};
    cw.waiter.wake = cond_wake;
    cw.task.run = deferred_wake;
    atomic_init(&cw.pending, 0);

    int err = eg__ctx_watch(ctx, &cw.waiter);
    if (err < 0)
        return err;

    int rc;
    if (deadline_ns == INT64_MAX) {
        rc = pthread_cond_wait(cond, mu);
    } else {
        struct timespec ts;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
        /* Whatever clock the caller's cond was made with. */
        eg__ts_from_ns(&ts, deadline_ns);
        rc = pthread_cond_clockwait(cond, mu, CLOCK_MONOTONIC, &ts);
#else
        /* Assumes the default CLOCK_REALTIME cond (documented). */
        struct timespec rt;
        clock_gettime(CLOCK_REALTIME, &rt);
        int64_t left = deadline_ns - eg_now();
        eg__ts_from_ns(&ts, eg__add_sat((int64_t)rt.tv_sec * EG_NSEC_PER_SEC + rt.tv_nsec,
                                        left > 0 ? left : 0));
        rc = pthread_cond_timedwait(cond, mu, &ts);
#endif
    }

    if (err == 0 && !eg__ctx_unwatch(ctx, &cw.waiter)) {
        /* wake() ran; if it posted a task, let it finish with cond and mu. */
        while (atomic_load_explicit(&cw.pending, memory_order_relaxed))
            pthread_cond_wait(cond, mu);
    }
    err = eg_ctx_err(ctx);
    if (err)
        return err;
    return rc == ETIMEDOUT ? -ETIMEDOUT : 0;
}

int eg_cond_wait(eg_ctx *ctx, pthread_cond_t *cond, pthread_mutex_t *mu)
{
    return eg_cond_timedwait(ctx, cond, mu, INT64_MAX);
}
