/*
 * group_result.c - what a group keeps of its tasks' results: the first
 * error and its text, every failure (errors), the trace, the winner.
 *
 * Recording a result: a success under EG_FAIL_FAST or EG_COLLECT_ALL with
 * tracing off records nothing (no clock read, no lock); under
 * EG_FIRST_SUCCESS only the first success takes mu (later ones see `won`).
 * A failure takes mu, reads the clock once and keeps an entry in `errors`
 * (its text in `msgs`, owned by g). The first failure is the group's error
 * and, under EG_FAIL_FAST, cancels the context; the first success of
 * EG_FIRST_SUCCESS is the winner and cancels it too.
 *
 * With tracing on, running tasks are also on `running` (under mu), so that
 * a detach (group_wait.c) can name them; tasks still queued at a detach
 * are only counted.
 *
 * A task's error text: eg_errorf writes it into the task's frame
 * (eg__current, on the task's stack); recording copies it into g.
 *
 * Lock order: g->mu -> nothing; the context is cancelled without mu.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "group.h"

int eg_errorf(int code, const char *fmt, ...)
{
    eg__frame *f = eg__current;
    if (!f || !fmt)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->msg, sizeof f->msg, fmt, ap);
    va_end(ap);
    f->msg_code = code;
    f->msg_set = true;
    return code;
}

running_task *eg__group_trace_begin(eg_group *g, running_task *rt)
{
    /* Relaxed: changed only while no task is admitted. */
    if (!atomic_load_explicit(&g->tracing, memory_order_relaxed))
        return NULL;
    rt->start_ns = eg_now();
    pthread_mutex_lock(&g->mu);
    eg__list_push(&g->running, &rt->link);
    pthread_mutex_unlock(&g->mu);
    return rt;
}

/* A copy of text owned by g (under mu); "" when out of memory. */
static const char *keep_text(eg_group *g, const char *text)
{
    size_t n = strlen(text) + 1;
    msg_node *m = eg__malloc(sizeof *m + n);
    if (!m)
        return "";
    memcpy(m->text, text, n);
    m->next = g->msgs;
    g->msgs = m;
    return m->text;
}

/* Entries go in under the same lock, before the cancel, so the trace lists
 * a failure (or the winner) before the siblings it cancelled. */
void eg__group_record(eg_group *g, group_task *gt, int r, const eg__frame *f,
                      running_task *rt)
{
    bool tracing = rt != NULL;
    /* Relaxed: policy changes only while no task is admitted; won is only
     * a hint here, decided again under mu. */
    int policy = atomic_load_explicit(&g->policy, memory_order_relaxed);
    if (!r && !tracing &&
        (policy != EG_FIRST_SUCCESS ||
         atomic_load_explicit(&g->won, memory_order_relaxed)))
        return;
    eg_trace_entry e = {
        .name = gt->name,
        .arg = gt->arg,
        .result = r,
        .outcome = !r                    ? EG_OUTCOME_OK
                   : eg_ctx_done(g->ctx) ? EG_OUTCOME_CANCELLED
                                         : EG_OUTCOME_FAILED,
        .start_ns = rt ? rt->start_ns : 0,
        .end_ns = eg_now(),
        .errmsg = "",
    };
    char text[EG_ERRMSG_MAX];
    if (r) {
        if (f->msg_set && f->msg_code == r)
            memcpy(text, f->msg, sizeof text);
        else
            eg__errtext(r, text, sizeof text);
    }
    int cancel = 0;
    pthread_mutex_lock(&g->mu);
    if (tracing)
        eg__list_unlink(&g->running, &rt->link);
    if (g->detached) {
        /* Ignored: eg_wait_grace stopped waiting for this task. */
        pthread_mutex_unlock(&g->mu);
        return;
    }
    if (r) {
        bool first = g->err == 0;
        if (first) {
            g->err = r;
            memcpy(g->errmsg, text, sizeof g->errmsg);
            if (policy == EG_FAIL_FAST)
                cancel = r;
        }
        e.first_error = first;
        e.errmsg = keep_text(g, text);
        eg__trace_append(&g->errors, &e);
    } else if (policy == EG_FIRST_SUCCESS &&
               !atomic_load_explicit(&g->won, memory_order_relaxed)) {
        /* Relaxed: a hint for later successes; mu orders the rest. */
        atomic_store_explicit(&g->won, true, memory_order_relaxed);
        g->winner_arg = gt->arg;
        if (tracing)
            g->winner_index = g->trace.n;
        cancel = -ECANCELED;
    }
    if (tracing)
        eg__trace_append(&g->trace, &e);
    pthread_mutex_unlock(&g->mu);
    if (cancel)
        eg_cancel(g->ctx, cancel);
}

void eg__group_pass_errmsg(eg_group *g, int err)
{
    eg__frame *f = eg__current;
    if (!err || !f)
        return;
    /* A task that returns what its own group's eg_wait returned passes
     * the text up with the code, as a Go error value would. */
    f->msg_code = err;
    f->msg_set = true;
    pthread_mutex_lock(&g->mu);
    if (g->err == err)
        memcpy(f->msg, g->errmsg, sizeof f->msg);
    else
        eg__errtext(err, f->msg, sizeof f->msg);
    pthread_mutex_unlock(&g->mu);
}

/* Copies t under mu; first_error marks go when a winner made eg_wait's
 * result 0. */
static size_t copy_entries(eg_group *g, const eg__trace *t, eg_trace_entry *out,
                           size_t cap)
{
    pthread_mutex_lock(&g->mu);
    size_t n = eg__trace_copy(t, out, cap);
    if (eg__group_won_locked(g) && out)
        for (size_t i = 0; i < n && i < cap; i++)
            out[i].first_error = false;
    pthread_mutex_unlock(&g->mu);
    return n;
}

size_t eg_group_trace(eg_group *g, eg_trace_entry *out, size_t cap)
{
    return g ? copy_entries(g, &g->trace, out, cap) : 0;
}

size_t eg_group_errors(eg_group *g, eg_trace_entry *out, size_t cap)
{
    return g ? copy_entries(g, &g->errors, out, cap) : 0;
}

void *eg_group_winner(eg_group *g)
{
    if (!g)
        return NULL;
    pthread_mutex_lock(&g->mu);
    void *w = g->winner_arg;
    pthread_mutex_unlock(&g->mu);
    return w;
}

size_t eg__group_print_info(eg_group *g, eg__print_info *pi)
{
    pthread_mutex_lock(&g->mu);
    /* Relaxed: changed only while no task is admitted, under mu. */
    pi->tracing = atomic_load_explicit(&g->tracing, memory_order_relaxed);
    const eg__trace *t = pi->tracing ? &g->trace : &g->errors;
    pi->n = t->n;
    pi->v = pi->n ? eg__malloc(pi->n * sizeof *pi->v) : NULL;
    if (pi->n && !pi->v)
        pi->n = 0;
    eg__trace_copy(t, pi->v, pi->n);
    pi->winner_index = pi->tracing ? g->winner_index : SIZE_MAX;
    pi->has_winner = eg__group_won_locked(g);
    pi->ndetached = g->ndetached;
    pi->err = eg__group_result_locked(g);
    pthread_mutex_unlock(&g->mu);
    return pi->n;
}

void eg__group_results_free(eg_group *g)
{
    eg__trace_free(&g->trace);
    eg__trace_free(&g->errors);
    for (msg_node *m = g->msgs, *next; m; m = next) {
        next = m->next;
        free(m);
    }
}
