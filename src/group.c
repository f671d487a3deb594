/*
 * group.c - errgroup: a count of tasks, a first error, a limit, a context.
 *
 * g->state packs the count of admitted tasks (queued or running) and the
 * WAITERS bit, set while someone waits on g's lists (eg_wait; eg_go at the
 * limit). Admission and most completions are one CAS on it; a completion
 * takes g->mu only when WAITERS is set or it takes the count to 0, so that
 * eg_wait and eg_group_free, which read the count under mu, cannot free g
 * while that completion still touches it.
 *
 * A task: admitted (count++) -> submitted to g's executor -> run (by the
 * executor, or by eg_wait's help) -> result recorded (group_result.c) ->
 * freed -> count-- (its last touch of g).
 *
 * Lock order: g->mu -> nothing (waiters are unparked under it); the context,
 * the executor and the pool are called without mu. eg_wait_grace, DETACHED
 * and eg_wait_async: group_wait.c. The fields and the waiter lists: group.h.
 */
#include "group.h"

_Thread_local eg__frame *eg__current;

eg_group *eg_group_new(eg_ctx *parent)
{
    eg_group *g = eg__calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->ctx = eg_with_cancel(parent);
    if (!g->ctx) {
        free(g);
        return NULL;
    }
    g->exec = eg__exec_default();
    pthread_mutex_init(&g->mu, NULL);
    atomic_init(&g->limit, -1);
    atomic_init(&g->policy, EG_FAIL_FAST);
    g->winner_index = SIZE_MAX;
    eg__live(+1);
    return g;
}

eg_ctx *eg_group_ctx(eg_group *g)
{
    return g ? g->ctx : NULL;
}

static void destroy(eg_group *g);

/* Drops one admitted task: the task's last touch of g (unless it frees g). */
static void release_slot(eg_group *g)
{
    unsigned old = atomic_load_explicit(&g->state, memory_order_relaxed);
    while (COUNT(old) > 1 && !(old & (WAITERS | DETACHED))) {
        /* Release: the task's effects happen before a waiter sees the
         * count drop (its acquire load in eg__group_idle). */
        if (atomic_compare_exchange_weak_explicit(
                &g->state, &old, old - 1, memory_order_release, memory_order_relaxed))
            return;
    }
    bool post = false, last = false;
    pthread_mutex_lock(&g->mu);
    /* Release: as the CAS above. */
    unsigned now = atomic_fetch_sub_explicit(&g->state, 1, memory_order_release) - 1;
    if (COUNT(now) == 0) {
        while (g->idle_waiters.head)
            eg__group_unpark_first(&g->idle_waiters);
        post = eg__group_async_due_locked(g);
        last = g->free_pending;
    }
    eg__group_unpark_first(&g->slot_waiters);
    eg__group_unmark_waiting_locked(g);
    pthread_mutex_unlock(&g->mu);
    if (post)
        eg__pool_post(&g->async_task);
    else if (last)
        destroy(g);
}

static void run_task(eg__task *t)
{
    group_task *gt = EG__CONTAINER_OF(t, group_task, base);
    eg_group *g = gt->g;
    running_task rt = {.gt = gt};
    running_task *traced = eg__group_trace_begin(g, &rt);

    eg__frame frame = {.prev = eg__current, .owner = g};
    eg__current = &frame;
    int r = gt->fn(g->ctx, gt->arg);
    eg__current = frame.prev;

    eg__group_record(g, gt, r, &frame, traced);
    free(gt);
    release_slot(g);
}

/* ---- starting a task -------------------------------------------------------- */

typedef struct {
    eg_group *g;
    unsigned limit;
} slot_probe;

static bool slot_free(void *arg)
{
    slot_probe *p = arg;
    return COUNT(atomic_load_explicit(&p->g->state, memory_order_relaxed)) < p->limit;
}

/* Takes a slot: 0, -EBUSY (at the limit and !block), -EINVAL (limit 0) or
 * -ECANCELED (detached: the group takes no more tasks). */
static int admit(eg_group *g, bool block)
{
    /* Relaxed, limit and state alike: admission orders nothing; the
     * task's start is ordered by the executor's queue. */
    int limit = atomic_load_explicit(&g->limit, memory_order_relaxed);
    if (limit < 0) {
        unsigned old = atomic_fetch_add_explicit(&g->state, 1, memory_order_relaxed);
        if (EG_UNLIKELY(old & DETACHED)) {
            release_slot(g);
            return -ECANCELED;
        }
        return 0;
    }
    if (limit == 0)
        return block ? -EINVAL : -EBUSY;
    slot_probe probe = {g, (unsigned)limit};
    unsigned old = atomic_load_explicit(&g->state, memory_order_relaxed);
    for (;;) {
        if (EG_UNLIKELY(old & DETACHED))
            return -ECANCELED;
        if (COUNT(old) < probe.limit) {
            if (atomic_compare_exchange_weak_explicit(
                    &g->state, &old, old + 1, memory_order_relaxed, memory_order_relaxed))
                return 0;
            continue;
        }
        if (!block)
            return -EBUSY;
        /* A slot usually frees within microseconds; then the finishing task
         * need not wake us. */
        if (!eg__spin_wait(slot_free, &probe)) {
            pthread_mutex_lock(&g->mu);
            eg__group_mark_waiting_locked(g);
            if (!slot_free(&probe) && !g->detached)
                eg__group_wait_on(g, &g->slot_waiters);
            eg__group_unmark_waiting_locked(g);
            pthread_mutex_unlock(&g->mu);
        }
        old = atomic_load_explicit(&g->state, memory_order_relaxed);
    }
}

/* Admits and starts one task; block says whether to wait for a slot. */
static int group_go(eg_group *g, const char *name, eg_fn fn, void *arg, bool block)
{
    if (!g || !fn)
        return -EINVAL;
    group_task *gt = eg__malloc(sizeof *gt);
    if (!gt)
        return -ENOMEM;
    *gt = (group_task){.base.run = run_task, .g = g, .fn = fn, .arg = arg, .name = name};
    int rc = admit(g, block);
    if (rc == 0) {
        rc = g->exec->submit(&g->queue, &gt->base);
        if (rc < 0)
            release_slot(g);
    }
    if (rc < 0)
        free(gt);
    return rc;
}

int eg_go(eg_group *g, eg_fn fn, void *arg)
{
    return group_go(g, NULL, fn, arg, true);
}

int eg_go_named(eg_group *g, const char *name, eg_fn fn, void *arg)
{
    return group_go(g, name, fn, arg, true);
}

int eg_try_go(eg_group *g, eg_fn fn, void *arg)
{
    return group_go(g, NULL, fn, arg, false);
}

/* ---- settings that change only while no task is active ------------------------ */

/* Runs set(g, v) under mu if no task is admitted: 0, or -EBUSY. */
static int set_idle(eg_group *g, void (*set)(eg_group *, intptr_t), intptr_t v)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    /* Relaxed: the completion that takes the count to 0 does so under mu;
     * an eg_go racing with a setter is the caller's misuse. */
    int rc = COUNT(atomic_load_explicit(&g->state, memory_order_relaxed)) ? -EBUSY : 0;
    if (rc == 0)
        set(g, v);
    pthread_mutex_unlock(&g->mu);
    return rc;
}

/* Relaxed stores: read by tasks admitted later, ordered by their submission. */
static void set_limit(eg_group *g, intptr_t n)
{
    atomic_store_explicit(&g->limit, n < 0 ? -1 : (int)n, memory_order_relaxed);
}
static void set_trace(eg_group *g, intptr_t on)
{
    atomic_store_explicit(&g->tracing, on != 0, memory_order_relaxed);
}
static void set_policy(eg_group *g, intptr_t p)
{
    atomic_store_explicit(&g->policy, (int)p, memory_order_relaxed);
}
static void set_exec(eg_group *g, intptr_t e)
{
    g->exec = (const eg__exec *)e;
}

int eg_set_limit(eg_group *g, int n)
{
    return set_idle(g, set_limit, n);
}

int eg_group_set_trace(eg_group *g, bool on)
{
    return set_idle(g, set_trace, on);
}

int eg_group_set_policy(eg_group *g, eg_policy p)
{
    if (p != EG_FAIL_FAST && p != EG_FIRST_SUCCESS && p != EG_COLLECT_ALL)
        return -EINVAL;
    return set_idle(g, set_policy, p);
}

int eg_group_set_executor(eg_group *g, eg_executor e)
{
    if (!g || (e != EG_EXEC_DEFAULT && e != EG_EXEC_THREADS && e != EG_EXEC_CORO))
        return -EINVAL;
    const eg__exec *x = eg__exec_get(e);
    if (!x)
        return -ENOTSUP;
    return set_idle(g, set_exec, (intptr_t)x);
}

/* ---- waiting ------------------------------------------------------------------ */

int eg_wait(eg_group *g)
{
    if (!g)
        return -EINVAL;
    if (eg__group_inside_own_task(g))
        return -EDEADLK;
    /* Runs the group's unstarted tasks here, then waits for the rest. */
    g->exec->help(&g->queue);
    eg__spin_wait(eg__group_idle, g);
    /* Under mu even when the count is already 0: the completion that took
     * it to 0 holds mu until it no longer touches g. */
    pthread_mutex_lock(&g->mu);
    if (!eg__group_idle(g)) {
        eg__group_mark_waiting_locked(g);
        while (!eg__group_idle(g))
            eg__group_wait_on(g, &g->idle_waiters);
        eg__group_unmark_waiting_locked(g);
    }
    int err = eg__group_result_locked(g);
    pthread_mutex_unlock(&g->mu);
    eg_cancel(g->ctx, err ? err : -ECANCELED);
    eg__group_pass_errmsg(g, err);
    return err;
}

int eg_group_err(eg_group *g)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    int err = eg__group_result_locked(g);
    pthread_mutex_unlock(&g->mu);
    return err;
}

const char *eg_group_errmsg(eg_group *g)
{
    if (!g)
        return "";
    /* errmsg is written once, under mu, before err is set. */
    pthread_mutex_lock(&g->mu);
    const char *s = g->errmsg;
    pthread_mutex_unlock(&g->mu);
    return s;
}

/* ---- freeing ---------------------------------------------------------------------- */

static void destroy(eg_group *g)
{
    pthread_mutex_destroy(&g->mu);
    eg_ctx_release(g->ctx);
    eg__group_results_free(g);
    free(g);
    eg__live(-1);
}

void eg_group_free(eg_group *g)
{
    /* From inside its own task, freeing would pull the group from under
     * the running task and waiting would never end: refuse (and leak). */
    if (!g || eg__group_inside_own_task(g))
        return;
    /* Relaxed: a hint; g->detached under mu decides. A detached group's
     * queued tasks are not run here: that could block. */
    if (!(atomic_load_explicit(&g->state, memory_order_relaxed) & DETACHED)) {
        g->exec->help(&g->queue);
        eg__spin_wait(eg__group_idle, g);
    }
    bool in_fn = eg__group_in_async_fn(g);
    /* Under mu even when idle: the completion that took the count to 0
     * holds mu until it no longer touches g. */
    pthread_mutex_lock(&g->mu);
    if (g->detached && !eg__group_idle(g)) {
        /* The last detached task frees g (release_slot). */
        g->free_pending = true;
        pthread_mutex_unlock(&g->mu);
        return;
    }
    /* Tasks, and an eg_wait_async callback pending or running elsewhere. */
    if (!eg__group_idle(g) || g->async_pending || (g->async_running && !in_fn)) {
        eg__group_mark_waiting_locked(g);
        while (!eg__group_idle(g) || g->async_pending || (g->async_running && !in_fn))
            eg__group_wait_on(g, &g->idle_waiters);
        eg__group_unmark_waiting_locked(g);
    }
    pthread_mutex_unlock(&g->mu);
    if (in_fn)
        eg__group_async_freed();
    destroy(g);
}
