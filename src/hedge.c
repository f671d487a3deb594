/*
 * hedge.c - hedged calls: a thin layer over an EG_FIRST_SUCCESS group.
 *
 * The group does the race: its first success cancels the other attempts
 * and names the winner; eg_wait returns 0 or the first failure. What is
 * left here is when to start the next attempt. The caller is the launcher:
 * it starts attempt 0, then sleeps (eg_cond_timedwait on the group's
 * context) until the delay passes, an attempt fails or the context is done
 * (a winner, or the parent); the delay or a failure starts the next.
 *
 *   failed   attempts that failed since the launcher last looked (under mu)
 *   err      the first failure, in the order attempts returned (under mu:
 *            the group records a result only after the attempt signalled
 *            the launcher, so its own order could put a later failure of
 *            the next attempt first)
 *
 * Lock order: mu -> context lock (eg_cond_timedwait registers while holding
 * mu); an attempt takes mu only after its call returned.
 */
#include "internal.h"

typedef struct hedge {
    eg_fn fn;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int failed, err;
} hedge;

typedef struct attempt {
    hedge *h;
    int index;
    void *arg;
} attempt;

static int attempt_task(eg_ctx *ctx, void *p)
{
    attempt *a = p;
    hedge *h = a->h;
    int r = h->fn(ctx, a->arg);
    if (r != 0) {
        /* A failure starts the next attempt at once. */
        pthread_mutex_lock(&h->mu);
        h->failed++;
        if (!h->err)
            h->err = r;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->mu);
    }
    return r;
}

/* Sleeps until the delay passes, an attempt fails, or ctx is done. */
static void wait_for_next(hedge *h, eg_ctx *ctx, int64_t delay_ns)
{
    int64_t until = eg__deadline_after(delay_ns);
    pthread_mutex_lock(&h->mu);
    while (h->failed == 0 && !eg_ctx_done(ctx))
        if (eg_cond_timedwait(ctx, &h->cond, &h->mu, until) == -ETIMEDOUT &&
            !eg_ctx_done(ctx))
            break;
    h->failed = 0;
    pthread_mutex_unlock(&h->mu);
}

int eg_hedge(eg_ctx *parent, eg_fn fn, void *const *args, int attempts, int64_t delay_ns,
             int *winner)
{
    if (winner)
        *winner = -1;
    if (!fn || attempts < 1 || delay_ns < 0)
        return -EINVAL;
    attempt *at = eg__calloc((size_t)attempts, sizeof *at);
    if (!at)
        return -ENOMEM;
    eg_group *g = eg_group_new(parent);
    if (!g) {
        free(at);
        return -ENOMEM;
    }
    eg_group_set_policy(g, EG_FIRST_SUCCESS);
    eg_ctx *ctx = eg_group_ctx(g);
    hedge h = {.fn = fn};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cond, NULL);

    int rc = 0, launch_err = 0;
    for (int i = 0; i < attempts; i++) {
        if (i > 0)
            wait_for_next(&h, ctx, delay_ns);
        if (eg_ctx_done(ctx))
            break; /* a winner, or the parent is done (before attempt 0 too) */
        at[i] = (attempt){&h, i, args ? args[i] : NULL};
        int r = eg_go(g, attempt_task, &at[i]);
        if (r < 0) {
            if (i == 0) {
                rc = r;
                break;
            }
            /* Counts as a failed attempt: the next one may start at once. */
            if (!launch_err)
                launch_err = r;
            pthread_mutex_lock(&h.mu);
            h.failed++;
            pthread_mutex_unlock(&h.mu);
        }
    }
    int err = eg_wait(g);
    attempt *w = eg_group_winner(g);
    if (rc == 0) {
        if (w) {
            if (winner)
                *winner = w->index;
        } else {
            pthread_mutex_lock(&h.mu);
            rc = h.err ? h.err : err ? err : launch_err;
            pthread_mutex_unlock(&h.mu);
            if (!rc)
                rc = eg_ctx_err(parent ? parent : eg_background());
            if (!rc)
                rc = -ECANCELED;
        }
    }
    eg_group_free(g);
    pthread_cond_destroy(&h.cond);
    pthread_mutex_destroy(&h.mu);
    free(at);
    return rc;
}
