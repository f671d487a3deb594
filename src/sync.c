/*
 * sync.c - WaitGroup and Once.
 *
 * eg_wg: count under mu. A waiter sleeps on the word `epoch` (the public
 * struct's `waiters` field), which eg_wg_add bumps, under mu, each time the
 * count reaches zero while someone waits; the waiter re-checks the count
 * under mu, so the adder's unlock is its last touch of wg. Sleeping on a
 * word (eg__futex_wait) instead of the struct's condition variable lets a
 * coroutine wait without blocking its carrier; `cond` stays for the layout.
 *
 * eg_once: `done` is a state word, NEW -> RUNNING (one caller's CAS) ->
 * DONE (release, after fn returned). Latecomers sleep on it while RUNNING;
 * the fast path reads DONE with acquire and takes no lock. mu is unused
 * (kept for the layout of EG_ONCE_INIT).
 */
#include <limits.h>
#include <stddef.h>

#include "exec.h"

enum { ONCE_NEW, ONCE_RUNNING, ONCE_DONE };

static atomic_uint *word(int *p)
{
    return (atomic_uint *)(void *)p;
}

int eg_wg_init(eg_wg *wg)
{
    if (!wg)
        return -EINVAL;
    int rc = pthread_mutex_init(&wg->mu, NULL);
    if (rc)
        return -rc;
    rc = pthread_cond_init(&wg->cond, NULL);
    if (rc) {
        pthread_mutex_destroy(&wg->mu);
        return -rc;
    }
    wg->count = 0;
    wg->waiters = 0;
    return 0;
}

void eg_wg_destroy(eg_wg *wg)
{
    if (!wg)
        return;
    pthread_cond_destroy(&wg->cond);
    pthread_mutex_destroy(&wg->mu);
}

int eg_wg_add(eg_wg *wg, int delta)
{
    if (!wg)
        return -EINVAL;
    pthread_mutex_lock(&wg->mu);
    if (wg->count + delta < 0) {
        pthread_mutex_unlock(&wg->mu);
        return -EINVAL;
    }
    wg->count += delta;
    if (wg->count == 0) {
        /* Relaxed: waiters read the count under mu, not through epoch. */
        atomic_fetch_add_explicit(word(&wg->waiters), 1, memory_order_relaxed);
        eg__futex_wake(word(&wg->waiters), INT_MAX);
    }
    /* The last touch of wg: a waiter may free it once we unlock. */
    pthread_mutex_unlock(&wg->mu);
    return 0;
}

int eg_wg_done(eg_wg *wg)
{
    return eg_wg_add(wg, -1);
}

void eg_wg_wait(eg_wg *wg)
{
    if (!wg)
        return;
    pthread_mutex_lock(&wg->mu);
    while (wg->count > 0) {
        unsigned epoch = atomic_load_explicit(word(&wg->waiters), memory_order_relaxed);
        pthread_mutex_unlock(&wg->mu);
        eg__futex_wait(word(&wg->waiters), epoch, INT64_MAX);
        pthread_mutex_lock(&wg->mu);
    }
    pthread_mutex_unlock(&wg->mu);
}

typedef struct {
    eg__task task;
    eg_wg *wg;
    void (*fn)(void *);
    void *arg;
} wg_task;

static void wg_task_run(eg__task *t)
{
    wg_task *wt = (wg_task *)t;
    eg_wg *wg = wt->wg;
    wt->fn(wt->arg);
    free(wt);
    eg_wg_done(wg);
}

int eg_wg_go(eg_wg *wg, void (*fn)(void *), void *arg)
{
    if (!wg || !fn)
        return -EINVAL;
    wg_task *wt = eg__malloc(sizeof *wt);
    if (!wt)
        return -ENOMEM;
    wt->task.run = wg_task_run;
    wt->wg = wg;
    wt->fn = fn;
    wt->arg = arg;
    eg_wg_add(wg, 1);
    int rc = eg__exec_default()->submit(NULL, &wt->task);
    if (rc < 0) {
        eg_wg_add(wg, -1);
        free(wt);
    }
    return rc;
}

void eg_once_do(eg_once *once, void (*fn)(void *), void *arg)
{
    if (!once || !fn)
        return;
    atomic_uint *st = word(&once->done);
    /* Acquire: pairs with the release below, so fn's effects are visible. */
    unsigned s = atomic_load_explicit(st, memory_order_acquire);
    if (s == ONCE_DONE)
        return;
    if (s == ONCE_NEW && atomic_compare_exchange_strong_explicit(st, &s, ONCE_RUNNING,
                                                                 memory_order_acquire,
                                                                 memory_order_acquire)) {
        fn(arg);
        atomic_store_explicit(st, ONCE_DONE, memory_order_release);
        eg__futex_wake(st, INT_MAX);
        return;
    }
    while ((s = atomic_load_explicit(st, memory_order_acquire)) != ONCE_DONE)
        eg__futex_wait(st, s, INT64_MAX);
}
