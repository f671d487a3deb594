/*
 * group_wait.c - the waits beyond eg_wait: eg_wait_grace, which may stop
 * waiting for tasks that outlive a grace period, and eg_wait_async, which
 * calls back from the pool when the group is done.
 *
 * eg_wait_grace moves the group along:
 *
 *   LIVE --eg_wait_grace, tasks left at the deadline--> DETACHED
 *   DETACHED --eg_group_free--> FREE_PENDING --last task returns--> freed
 *
 * DETACHED is a bit in state (so completions leave the CAS fast path and
 * take mu) and g->detached under mu: a task finishing after it has its
 * result ignored, and eg_go returns -ECANCELED. eg_group_free of a
 * DETACHED group with tasks left only sets free_pending; the task that
 * takes the count to 0 frees g (release_slot, group.c).
 *
 * eg_wait_async: under mu it stores fn and sets WAITERS (so the completion
 * that takes the count to 0 takes mu). That completion, or eg_wait_async
 * itself if the count is 0 already, posts async_task to the pool once
 * (async_posted). The posted task cancels ctx, swaps async_pending for
 * async_running (so fn may start another async wait) and calls fn. If fn
 * freed g (seen through the thread-local async_self), it touches g no
 * more; else it clears async_running under mu. eg_group_free waits while
 * either is set, except from inside fn.
 *
 * Lock order: g->mu -> nothing; the context is watched and cancelled, and
 * the pool called, without mu.
 */
#include "group.h"

static const char detached_text[] = "still running when the group stopped waiting";

/* ---- eg_wait_grace ------------------------------------------------------------ */

/* Parks on the idle list until the count is 0, deadline_ns passes, or (with
 * watch) the context is done. Called with mu held and WAITERS set; returns
 * with mu held and the waiter off the list. */
static void wait_idle_bounded(eg_group *g, bool watch, int64_t deadline_ns)
{
    group_waiter w = {.linked = true};
    eg__parker_init(&w.parker);
    eg__list_push(&g->idle_waiters, &w.link);
    pthread_mutex_unlock(&g->mu);
    eg__parker_watch cw = EG__PARKER_WATCH(&w.parker);
    int watched = watch ? eg__ctx_watch(g->ctx, &cw.waiter) : 1;
    if (watched >= 0) /* registered, or the context can never be done */
        eg__park(&w.parker, deadline_ns);
    if (watched == 0)
        eg__ctx_unwatch(g->ctx, &cw.waiter); /* false: wake() has completed */
    pthread_mutex_lock(&g->mu);
    if (w.linked) /* woken by the context or the deadline, not by a completion */
        eg__list_unlink(&g->idle_waiters, &w.link);
}

/* Stops waiting for the tasks still admitted. Under mu, count > 0. */
static void detach_locked(eg_group *g)
{
    g->detached = true;
    g->ndetached = COUNT(atomic_load_explicit(&g->state, memory_order_relaxed));
    /* Relaxed: completions read it in release_slot's CAS (which fails) and
     * then take mu, under which g->detached is what counts. */
    atomic_fetch_or_explicit(&g->state, DETACHED, memory_order_relaxed);
    while (g->slot_waiters.head) /* eg_go at the limit: -ECANCELED now */
        eg__group_unpark_first(&g->slot_waiters);
    int64_t now = eg_now();
    for (eg__link *l = g->running.head; l; l = l->next) {
        running_task *rt = EG__CONTAINER_OF(l, running_task, link);
        eg_trace_entry e = {
            .name = rt->gt->name,
            .arg = rt->gt->arg,
            .outcome = EG_OUTCOME_DETACHED,
            .start_ns = rt->start_ns,
            .end_ns = now,
            .errmsg = detached_text,
        };
        eg__trace_append(&g->trace, &e);
        eg__trace_append(&g->errors, &e);
    }
}

int eg_wait_grace(eg_group *g, int64_t grace_ns)
{
    if (!g || grace_ns < 0)
        return -EINVAL;
    if (eg__group_inside_own_task(g))
        return -EDEADLK;
    pthread_mutex_lock(&g->mu);
    eg__group_mark_waiting_locked(g);
    /* While the context is live: as eg_wait (without running queued tasks
     * here, which could hold the caller past the grace). */
    while (!eg__group_idle(g) && !eg_ctx_done(g->ctx))
        wait_idle_bounded(g, true, INT64_MAX);
    int64_t deadline = eg__add_sat(eg_now(), grace_ns);
    while (!eg__group_idle(g) && eg_now() < deadline)
        wait_idle_bounded(g, false, deadline);
    bool detached = !eg__group_idle(g);
    if (detached)
        detach_locked(g);
    eg__group_unmark_waiting_locked(g);
    int err = eg__group_result_locked(g);
    bool won = eg__group_won_locked(g);
    pthread_mutex_unlock(&g->mu);
    int cause = err;
    if (detached && !err && !won)
        err = eg_ctx_err(g->ctx); /* done: that is why we stopped waiting */
    eg_cancel(g->ctx, cause ? cause : -ECANCELED);
    eg__group_pass_errmsg(g, err);
    return err;
}

/* ---- eg_wait_async -------------------------------------------------------------- */

/* The group whose eg_wait_async callback runs on this thread, and whether
 * that callback freed it. */
static _Thread_local struct {
    const eg_group *g;
    bool freed;
} async_self;

bool eg__group_in_async_fn(const eg_group *g)
{
    return async_self.g == g;
}

void eg__group_async_freed(void)
{
    async_self.freed = true;
}

bool eg__group_async_due_locked(eg_group *g)
{
    if (!g->async_pending || g->async_posted)
        return false;
    g->async_posted = true;
    return true;
}

static void run_async(eg__task *t)
{
    eg_group *g = EG__CONTAINER_OF(t, eg_group, async_task);
    pthread_mutex_lock(&g->mu);
    int err = eg__group_result_locked(g);
    eg_done_fn fn = g->async_fn;
    void *arg = g->async_arg;
    g->async_pending = g->async_posted = false;
    g->async_running = true;
    pthread_mutex_unlock(&g->mu);
    eg_cancel(g->ctx, err ? err : -ECANCELED);

    async_self.g = g;
    async_self.freed = false;
    fn(g, err, arg); /* may free g */
    bool freed = async_self.freed;
    async_self.g = NULL;
    if (freed)
        return;
    pthread_mutex_lock(&g->mu);
    g->async_running = false;
    while (g->idle_waiters.head)
        eg__group_unpark_first(&g->idle_waiters);
    eg__group_unmark_waiting_locked(g);
    pthread_mutex_unlock(&g->mu);
}

int eg_wait_async(eg_group *g, eg_done_fn fn, void *arg)
{
    if (!g || !fn)
        return -EINVAL;
    bool post = false;
    pthread_mutex_lock(&g->mu);
    if (g->async_pending) {
        pthread_mutex_unlock(&g->mu);
        return -EBUSY;
    }
    g->async_pending = true;
    g->async_fn = fn;
    g->async_arg = arg;
    g->async_task = (eg__task){.run = run_async};
    eg__group_mark_waiting_locked(g);
    /* Relaxed: under mu, where the completion that takes the count to 0
     * decrements it (WAITERS is set), so that one posts if this misses it. */
    if (COUNT(atomic_load_explicit(&g->state, memory_order_relaxed)) == 0)
        post = eg__group_async_due_locked(g);
    pthread_mutex_unlock(&g->mu);
    if (post)
        eg__pool_post(&g->async_task);
    return 0;
}
