/*
 * cond.c - waiting under a mutex while listening to a context.
 *
 * Two ways to wait here, for two kinds of wakers.
 *
 * eg__wait_parked (internal: channels, semaphores): the waiter's node holds
 * a parker, and every waker (a peer under the object's lock, or the context
 * under its own lock) just unparks it. Unparking never blocks and needs no
 * lock, so a cancel's wake-up never depends on anything but the waiter.
 *
 * eg_cond_wait (public: the user's pthread condition variable). The waiter
 * registers on the context, then sleeps in pthread_cond_wait. The canceller
 * runs wake() under the context's lock and must broadcast cond while
 * holding mu, or a waiter between its check and its sleep would miss the
 * wake-up. It cannot block on mu: the canceller may be the thread holding
 * it. So wake() tries the lock:
 *
 *   trylock(mu) succeeds -> broadcast, unlock: the waiter, if it holds no
 *       mu, is asleep in the condition variable and wakes.
 *   trylock fails -> mark the waiter pending and hand it to the waker
 *       thread, one thread of the library for every such wake-up of the
 *       process, which retries the trylock with a short back-off (never
 *       blocking on a user's mutex, so one busy mutex delays no other
 *       wake-up), then broadcasts and clears pending under mu.
 *
 * States of an eg_cond_wait waiter: registered -> (woken: pending or not)
 * -> unregistered. Before returning, the waiter waits (on cond, releasing
 * mu) until pending is clear, so the waker thread is done with cond and mu
 * and the caller may destroy them as soon as it returns.
 *
 * Lock order: mu -> context lock (register/unregister while holding mu);
 * context lock -> waker lock; context lock -> mu and waker thread -> mu
 * only by trylock.
 */
#include <stddef.h>
#include <time.h>

#include "exec.h"
#include "list.h"

/* ---- parked waits ------------------------------------------------------- */

int eg__wait_parked(eg_ctx *ctx, pthread_mutex_t *mu, eg__parker *p)
{
    eg__parker_watch pw = EG__PARKER_WATCH(p);
    eg__parker_init(p);
    int err = eg__ctx_watch(ctx, &pw.waiter);
    if (err < 0)
        return err;
    pthread_mutex_unlock(mu);
    eg__park(p, INT64_MAX);
    pthread_mutex_lock(mu);
    if (err == 0)
        eg__ctx_unwatch(ctx, &pw.waiter); /* false: wake() has completed */
    return eg_ctx_err(ctx);
}

/* ---- the waker thread ----------------------------------------------------- */

typedef struct {
    eg__waiter waiter;
    eg__link link; /* in W.pending, under W.mu */
    pthread_cond_t *cond;
    pthread_mutex_t *mu;
    atomic_int pending; /* the waker thread will still lock mu */
} cond_waiter;

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cond; /* the waker sleeps here when nothing is pending */
    eg__list pending;
    bool started;
} W = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, false};

/* Broadcasts cw's cond if its mutex is free now. Frees the caller from cw. */
static bool try_wake(cond_waiter *cw)
{
    pthread_mutex_t *mu = cw->mu;
    if (pthread_mutex_trylock(mu) != 0)
        return false;
    pthread_cond_broadcast(cw->cond);
    /* Under mu: the waiter reads pending under mu and cannot return (and
     * free cw) until we unlock. */
    atomic_store_explicit(&cw->pending, 0, memory_order_relaxed);
    pthread_mutex_unlock(mu);
    return true;
}

static void *waker_main(void *arg)
{
    long backoff_ns = 0;
    pthread_mutex_lock(&W.mu);
    for (;;) {
        if (!W.pending.head) {
            backoff_ns = 0;
            pthread_cond_wait(&W.cond, &W.mu);
            continue;
        }
        /* One pass over the pending waiters; the busy ones stay queued. */
        eg__list busy = {0};
        eg__link *n;
        while ((n = eg__list_pop(&W.pending))) {
            cond_waiter *cw = EG__CONTAINER_OF(n, cond_waiter, link);
            if (!try_wake(cw))
                eg__list_push(&busy, n);
        }
        W.pending = busy;
        if (!busy.head)
            continue;
        /* Back off from 10 us up to 1 ms while a mutex stays busy. */
        backoff_ns = backoff_ns ? (backoff_ns * 2 > EG_NSEC_PER_MSEC ? EG_NSEC_PER_MSEC
                                                                     : backoff_ns * 2)
                                : 10 * EG_NSEC_PER_USEC;
        pthread_mutex_unlock(&W.mu);
        struct timespec ts = {0, backoff_ns};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&W.mu);
    }
    return NULL;
}

static atomic_bool waker_started;

/* fork(): the waker thread is gone in the child, and W.mu may have been held
 * by a thread that is gone too; the parent's pending waiters are not ours. */
void eg__cond_atfork_child(void)
{
    W.mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    W.cond = (pthread_cond_t)PTHREAD_COND_INITIALIZER;
    W.pending = (eg__list){0};
    W.started = false;
    atomic_store_explicit(&waker_started, false, memory_order_relaxed);
}

/* Starts the waker thread once. Returns 0 or -EAGAIN. */
static int waker_start(void)
{
    /* Acquire: pairs with the release below; the thread exists. */
    if (atomic_load_explicit(&waker_started, memory_order_acquire))
        return 0;
    pthread_mutex_lock(&W.mu);
    if (!W.started) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        W.started = eg__pthread_create(&t, &attr, waker_main, NULL) == 0;
        pthread_attr_destroy(&attr);
        if (W.started)
            atomic_store_explicit(&waker_started, true, memory_order_release);
    }
    bool ok = W.started;
    pthread_mutex_unlock(&W.mu);
    return ok ? 0 : -EAGAIN;
}

/* Hands cw to the waker thread (started before cw registered). Under the
 * context's lock: W.mu is held only for list operations. */
static void waker_post(cond_waiter *cw)
{
    pthread_mutex_lock(&W.mu);
    eg__list_push(&W.pending, &cw->link);
    pthread_cond_signal(&W.cond);
    pthread_mutex_unlock(&W.mu);
}

static void cond_wake(eg__waiter *w)
{
    cond_waiter *cw = EG__CONTAINER_OF(w, cond_waiter, waiter);
    if (pthread_mutex_trylock(cw->mu) == 0) {
        pthread_cond_broadcast(cw->cond);
        pthread_mutex_unlock(cw->mu);
        return;
    }
    atomic_store_explicit(&cw->pending, 1, memory_order_relaxed);
    waker_post(cw);
}

static int timed_cond_wait(pthread_cond_t *cond, pthread_mutex_t *mu, int64_t deadline_ns)
{
    if (deadline_ns == INT64_MAX)
        return pthread_cond_wait(cond, mu);
    struct timespec ts;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 30))
    /* Whatever clock the caller's cond was made with. */
    eg__ts_from_ns(&ts, deadline_ns);
    return pthread_cond_clockwait(cond, mu, CLOCK_MONOTONIC, &ts);
#else
    /* Assumes the default CLOCK_REALTIME cond (documented). */
    struct timespec rt;
    clock_gettime(CLOCK_REALTIME, &rt);
    int64_t left = deadline_ns - eg_now();
    eg__ts_from_ns(&ts, eg__add_sat((int64_t)rt.tv_sec * EG_NSEC_PER_SEC + rt.tv_nsec,
                                    left > 0 ? left : 0));
    return pthread_cond_timedwait(cond, mu, &ts);
#endif
}

int eg_cond_timedwait(eg_ctx *ctx, pthread_cond_t *cond, pthread_mutex_t *mu,
                      int64_t deadline_ns)
{
    if (!ctx || !cond || !mu)
        return -EINVAL;
    /* Started up front, so that no wake-up can be stranded later. */
    int rc = waker_start();
    if (rc < 0)
        return rc;
    cond_waiter cw = {.cond = cond, .mu = mu};
    cw.waiter.wake = cond_wake;
    atomic_init(&cw.pending, 0);

    int err = eg__ctx_watch(ctx, &cw.waiter);
    if (err < 0)
        return err;

    /* The user's condition variable blocks the thread outside the library. */
    eg__blocking_begin();
    rc = timed_cond_wait(cond, mu, deadline_ns);
    if (err == 0 && !eg__ctx_unwatch(ctx, &cw.waiter)) {
        /* wake() ran; if it handed us to the waker, let it finish with cond
         * and mu. */
        while (atomic_load_explicit(&cw.pending, memory_order_relaxed))
            pthread_cond_wait(cond, mu);
    }
    eg__blocking_end();
    err = eg_ctx_err(ctx);
    if (err)
        return err;
    return rc == ETIMEDOUT ? -ETIMEDOUT : 0;
}

int eg_cond_wait(eg_ctx *ctx, pthread_cond_t *cond, pthread_mutex_t *mu)
{
    return eg_cond_timedwait(ctx, cond, mu, INT64_MAX);
}
