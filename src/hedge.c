/*
 * hedge.c - hedged calls.
 *
 * One context for all attempts (a child of the parent), a WaitGroup for the
 * attempts started, and a small state under mu:
 *
 *   started   attempts launched so far (only the caller changes it)
 *   finished  attempts that returned
 *   failed    attempts that returned non-zero since the last launch
 *   winner    index of the first attempt that returned 0, or -1
 *   err       the first failure, in finishing order
 *
 * The caller launches attempt 0, then sleeps on cond (eg_cond_timedwait on
 * the hedge's context) until a winner, a failure, the delay or the parent's
 * cancel; a failure or the delay launches the next attempt. Once there is a
 * winner, or every attempt has been launched and returned, it cancels the
 * context, waits for the stragglers and returns.
 *
 * Lock order: mu -> context lock (eg_cond_timedwait registers while holding
 * mu); an attempt cancels the context after releasing mu.
 */
#include "internal.h"

typedef struct hedge {
    eg_ctx *ctx;
    eg_fn fn;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int finished, failed, winner, err;
    eg_wg wg;
} hedge;

typedef struct attempt {
    hedge *h;
    int index;
    void *arg;
} attempt;

static void attempt_main(void *p)
{
    attempt *a = p;
    hedge *h = a->h;
    int r = h->fn(h->ctx, a->arg);
    pthread_mutex_lock(&h->mu);
    bool won = r == 0 && h->winner < 0;
    if (won)
        h->winner = a->index;
    if (r != 0) {
        h->failed++;
        if (!h->err)
            h->err = r;
    }
    h->finished++;
    pthread_cond_broadcast(&h->cond);
    pthread_mutex_unlock(&h->mu);
    if (won)
        eg_cancel(h->ctx, 0); /* stop the others at once */
}

int eg_hedge(eg_ctx *parent, eg_fn fn, void *const *args, int attempts,
             int64_t delay_ns, int *winner)
{
    if (winner)
        *winner = -1;
    if (!fn || attempts < 1 || delay_ns < 0)
        return -EINVAL;
    attempt *at = eg__calloc((size_t)attempts, sizeof *at);
    if (!at)
        return -ENOMEM;
    hedge h = {.fn = fn, .winner = -1};
    h.ctx = eg_with_cancel(parent);
    if (!h.ctx) {
        free(at);
        return -ENOMEM;
    }
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cond, NULL);
    eg_wg_init(&h.wg);

    int started = 0, rc = 0;
    pthread_mutex_lock(&h.mu);
    for (;;) {
        if (h.winner >= 0)
            break;
        bool launch = started < attempts && (started == 0 || h.failed > 0) &&
                      !eg_ctx_done(h.ctx);
        if (!launch && started < attempts && !eg_ctx_done(h.ctx)) {
            /* Wait for the delay, a failure, a winner or the parent. */
            int64_t until = eg__deadline_after(delay_ns);
            while (h.winner < 0 && h.failed == 0 && !eg_ctx_done(h.ctx)) {
                if (eg_cond_timedwait(h.ctx, &h.cond, &h.mu, until) == -ETIMEDOUT &&
                    !eg_ctx_done(h.ctx))
                    break;
            }
            if (h.winner >= 0)
                break;
            launch = !eg_ctx_done(h.ctx);
        }
        if (launch) {
            h.failed = 0;
            attempt *a = &at[started];
            *a = (attempt){&h, started, args ? args[started] : NULL};
            pthread_mutex_unlock(&h.mu);
            int r = eg_wg_go(&h.wg, attempt_main, a);
            pthread_mutex_lock(&h.mu);
            if (r < 0) {
                if (started == 0) {
                    rc = r;
                    break;
                }
                /* Count it as a failed attempt; the next may start. */
                h.finished++;
                h.failed++;
                if (!h.err)
                    h.err = r;
            }
            started++;
            continue;
        }
        /* Nothing more to launch: wait for the outcome. */
        if (h.finished == started)
            break;
        eg_cond_wait(eg_background(), &h.cond, &h.mu);
    }
    pthread_mutex_unlock(&h.mu);

    eg_cancel(h.ctx, 0);
    eg_wg_wait(&h.wg);
    if (rc == 0) {
        if (h.winner >= 0) {
            if (winner)
                *winner = h.winner;
        } else {
            rc = h.err ? h.err : eg_ctx_err(parent ? parent : eg_background());
            if (!rc)
                rc = -ECANCELED;
        }
    }
    eg_wg_destroy(&h.wg);
    pthread_cond_destroy(&h.cond);
    pthread_mutex_destroy(&h.mu);
    eg_ctx_release(h.ctx);
    free(at);
    return rc;
}
