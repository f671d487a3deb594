/*
 * sem.c - weighted semaphore (golang.org/x/sync/semaphore).
 *
 * State, guarded by s->mu:
 *   size     total weight, fixed at creation
 *   cur      weight held by callers, 0 <= cur <= size
 *   waiters  FIFO of blocked acquirers, each a node in its own stack frame
 *
 * Admission is strictly FIFO: an acquire (or try_acquire) succeeds at once
 * only if nobody is queued and its weight is free. A release grants weight to
 * waiters from the head for as long as the head's request fits and stops at
 * the first one that does not, even if smaller requests behind it would fit:
 * a large request is never starved by a stream of small ones.
 *
 * A waiter node moves once, under mu:
 *
 *   queued --granted by notify_waiters--> ready     (weight added to cur)
 *   queued --its context ended-----------> unlinked by its own thread
 *
 * A waiter that wakes to find its context done fails either way; if it was
 * granted meanwhile it gives the weight back (Go since golang/go#63615), so a
 * context that ended before the weight was handed over always means failure
 * and nothing held. A waiter that leaves from the head of the queue may have
 * been the only thing blocking those behind it, so it runs notify_waiters
 * for them before returning.
 *
 * Lock order: s->mu is the semaphore's only lock and is taken before any
 * context lock (eg__wait_parked registers with the context while mu is held).
 */
#include <assert.h>

#include "exec.h"
#include "list.h"

typedef struct sem_waiter sem_waiter;
struct sem_waiter {
    eg__link link; /* in the semaphore's FIFO */
    eg__parker parker;
    int64_t n;
    bool ready;
};

struct eg_sem {
    pthread_mutex_t mu;
    int64_t size, cur;
    eg__list waiters;
};

static void waiter_push(eg_sem *s, sem_waiter *w)
{
    eg__list_push(&s->waiters, &w->link);
}

static void waiter_unlink(eg_sem *s, sem_waiter *w)
{
    eg__list_unlink(&s->waiters, &w->link);
}

/* The oldest waiter, or NULL. */
static sem_waiter *waiter_head(eg_sem *s)
{
    return s->waiters.head ? EG__CONTAINER_OF(s->waiters.head, sem_waiter, link) : NULL;
}

/* Grants weight to queued waiters in order, stopping at the first request
 * that does not fit. Called with mu held; unparks under mu so a granted
 * waiter cannot return (and free its node) before the unpark returned. */
static void notify_waiters(eg_sem *s)
{
    sem_waiter *w;
    while ((w = waiter_head(s)) && s->size - s->cur >= w->n) {
        s->cur += w->n;
        waiter_unlink(s, w);
        w->ready = true;
        eg__unpark(&w->parker);
    }
}

eg_sem *eg_sem_new(int64_t n)
{
    if (n <= 0)
        return NULL;
    eg_sem *s = eg__calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    s->size = n;
    eg__live(+1);
    return s;
}

int eg_sem_acquire(eg_ctx *ctx, eg_sem *s, int64_t n)
{
    /* size never changes, so reading it unlocked is safe. A request larger
     * than size could never be granted: Go blocks until ctx is done; failing
     * at once tells the caller about the bug without parking a thread. */
    if (!ctx || !s || n < 0 || n > s->size)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;

    pthread_mutex_lock(&s->mu);
    if (!waiter_head(s) && s->size - s->cur >= n) {
        s->cur += n;
        pthread_mutex_unlock(&s->mu);
        return 0;
    }

    sem_waiter w = {.n = n};
    int rc = 0;
    waiter_push(s, &w);
    do
        err = eg__wait_parked(ctx, &s->mu, &w.parker);
    while (!err && !w.ready);

    if (!w.ready) {
        bool was_head = waiter_head(s) == &w;
        waiter_unlink(s, &w);
        if (was_head && s->size > s->cur)
            notify_waiters(s);
        rc = err;
    } else if ((err = eg_ctx_err(ctx))) {
        s->cur -= n;
        notify_waiters(s);
        rc = err;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

bool eg_sem_try_acquire(eg_sem *s, int64_t n)
{
    if (!s || n < 0)
        return false;
    pthread_mutex_lock(&s->mu);
    bool ok = !waiter_head(s) && s->size - s->cur >= n;
    if (ok)
        s->cur += n;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

int eg_sem_release(eg_sem *s, int64_t n)
{
    if (!s || n < 0)
        return -EINVAL;
    pthread_mutex_lock(&s->mu);
    /* Releasing weight that is not held is the caller's bug (Go panics):
     * an error, and nothing changes. */
    int rc = n > s->cur ? -EINVAL : 0;
    if (rc == 0) {
        s->cur -= n;
        notify_waiters(s);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

void eg_sem_free(eg_sem *s)
{
    if (!s)
        return;
    pthread_mutex_destroy(&s->mu);
    free(s);
    eg__live(-1);
}
