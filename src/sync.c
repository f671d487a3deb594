/*
 * sync.c - WaitGroup and Once.
 *
 * eg_wg: count and waiters under mu; a waiter sleeps until count == 0.
 * eg_once: done is set (release) after fn returned, under mu; the fast
 * path reads it with acquire and takes no lock.
 */
#include <stddef.h>

#include "internal.h"

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
    if (wg->count == 0 && wg->waiters)
        pthread_cond_broadcast(&wg->cond);
    /* The last touch of wg: a waiter may free it once we unlock. */
    pthread_mutex_unlock(&wg->mu);
    return 0;
}

int eg_wg_done(eg_wg *wg) { return eg_wg_add(wg, -1); }

void eg_wg_wait(eg_wg *wg)
{
    if (!wg)
        return;
    pthread_mutex_lock(&wg->mu);
    wg->waiters++;
    while (wg->count > 0)
        pthread_cond_wait(&wg->cond, &wg->mu);
    wg->waiters--;
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
    int rc = eg__pool_submit(NULL, &wt->task);
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
    /* Acquire: pairs with the release below, so fn's effects are visible. */
    if (__atomic_load_n(&once->done, __ATOMIC_ACQUIRE))
        return;
    pthread_mutex_lock(&once->mu);
    if (!__atomic_load_n(&once->done, __ATOMIC_RELAXED)) {
        fn(arg);
        __atomic_store_n(&once->done, 1, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&once->mu);
}
