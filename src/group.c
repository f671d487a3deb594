/*
 * group.c - errgroup: a count of tasks, a first error, a limit, a context.
 *
 * g->state packs the number of admitted tasks (queued or running) and the
 * WAITERS bit, set while a waiter (eg_wait, or eg_go at the limit) is on one
 * of g's lists. Admission and most completions are one CAS on it. g->mu
 * guards the lists, the first error and the trace; a completion takes it
 * only when WAITERS is set or it takes the count to 0, so that eg_wait and
 * eg_group_free, which read the count under mu, cannot free g while that
 * completion still touches it. limit < 0: none; it changes only at count 0.
 *
 * A task: admitted (count++) -> submitted to g's executor -> run (by the
 * executor, or by eg_wait's help) -> result recorded (the first failure
 * cancels ctx) -> freed -> count-- (its last touch of g).
 *
 * Lock order: g->mu -> nothing (a waiter is unparked under mu, which never
 * blocks). The context is cancelled and the executor called without mu.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "exec.h"
#include "list.h"

struct eg_group {
    eg_ctx *ctx;
    const eg__exec *exec; /* changed only while the count is 0 */
    eg__queue queue;      /* tasks not yet started; the executor's lock guards it */
    pthread_mutex_t mu;
    eg__list idle_waiters; /* eg_wait: wake when the count reaches 0 */
    eg__list slot_waiters; /* eg_go: wake one when a slot frees */
    atomic_uint state;     /* count | WAITERS */
    atomic_int limit;
    atomic_bool tracing; /* changed only while the count is 0 */
    int err;             /* the first error; under mu, set once */
    char errmsg[EG_ERRMSG_MAX];
    eg__trace trace; /* under mu */
};

typedef struct {
    eg__task base; /* first: the executor hands us &base */
    eg_group *g;
    eg_fn fn;
    void *arg;
    const char *name;
} group_task;

typedef struct {
    eg__link link;
    eg__parker parker;
} group_waiter;

#define WAITERS 0x40000000u
#define COUNT(s) ((s) & ~WAITERS)

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
    eg__live(+1);
    return g;
}

eg_ctx *eg_group_ctx(eg_group *g) { return g ? g->ctx : NULL; }

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

/* ---- waiting on the group's lists ----------------------------------------- */

/* Sleeps on list l until unparked (the caller re-checks why). Called with
 * mu held and WAITERS set; returns with mu held. */
static void wait_on(eg_group *g, eg__list *l)
{
    group_waiter w;
    eg__parker_init(&w.parker);
    eg__list_push(l, &w.link);
    pthread_mutex_unlock(&g->mu);
    eg__park(&w.parker, INT64_MAX);
    pthread_mutex_lock(&g->mu);
    /* The unparker unlinked w before unparking it. */
}

static void unpark_first(eg__list *l)
{
    eg__link *n = eg__list_pop(l);
    if (n)
        eg__unpark(&EG__CONTAINER_OF(n, group_waiter, link)->parker);
}

/* Sets WAITERS (under mu) so that completions take mu and look at the lists. */
static void mark_waiting_locked(eg_group *g)
{
    /* Relaxed: the completion that must see the bit reads it in the CAS of
     * release_slot, which fails if the bit appeared, and then takes mu. */
    atomic_fetch_or_explicit(&g->state, WAITERS, memory_order_relaxed);
}

/* Clears WAITERS once both lists are empty. Under mu. */
static void unmark_waiting_locked(eg_group *g)
{
    if (!g->idle_waiters.head && !g->slot_waiters.head)
        atomic_fetch_and_explicit(&g->state, ~WAITERS, memory_order_relaxed);
}

/* ---- running a task ------------------------------------------------------- */

/* Records a task's result r (and its trace entry e, if tracing): the first
 * failure is the group's error and cancels the group's context. The entry
 * goes in under the same lock, before the cancel, so the trace lists a
 * failure before the siblings it cancelled. */
static void record_result(eg_group *g, int r, const eg__frame *f, eg_trace_entry *e)
{
    if (!r && !e)
        return;
    pthread_mutex_lock(&g->mu);
    bool first = r && g->err == 0;
    if (first) {
        g->err = r;
        if (f->msg_set && f->msg_code == r)
            memcpy(g->errmsg, f->msg, sizeof g->errmsg);
        else
            eg__errtext(r, g->errmsg, sizeof g->errmsg);
    }
    if (e) {
        e->first_error = first;
        eg__trace_append(&g->trace, e);
    }
    pthread_mutex_unlock(&g->mu);
    if (first)
        eg_cancel(g->ctx, r);
}

/* Drops one admitted task: the task's last touch of g. */
static void release_slot(eg_group *g)
{
    unsigned old = atomic_load_explicit(&g->state, memory_order_relaxed);
    while (COUNT(old) > 1 && !(old & WAITERS)) {
        /* Release: the task's effects happen before a waiter sees the
         * count drop (its acquire load in group_idle). */
        if (atomic_compare_exchange_weak_explicit(&g->state, &old, old - 1,
                                                  memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
    pthread_mutex_lock(&g->mu);
    unsigned now = atomic_fetch_sub_explicit(&g->state, 1, memory_order_release) - 1;
    if (COUNT(now) == 0)
        while (g->idle_waiters.head)
            unpark_first(&g->idle_waiters);
    unpark_first(&g->slot_waiters);
    unmark_waiting_locked(g);
    pthread_mutex_unlock(&g->mu);
}

static void run_task(eg__task *t)
{
    group_task *gt = (group_task *)t;
    eg_group *g = gt->g;

    /* Relaxed: changed only while no task is admitted. */
    bool tracing = atomic_load_explicit(&g->tracing, memory_order_relaxed);
    int64_t start = tracing ? eg_now() : 0;
    eg__frame frame = {.prev = eg__current, .owner = g};
    eg__current = &frame;
    int r = gt->fn(g->ctx, gt->arg);
    eg__current = frame.prev;

    if (tracing) {
        eg_trace_entry e = {
            .name = gt->name,
            .arg = gt->arg,
            .result = r,
            .outcome = !r                    ? EG_OUTCOME_OK
                       : eg_ctx_done(g->ctx) ? EG_OUTCOME_CANCELLED
                                             : EG_OUTCOME_FAILED,
            .start_ns = start,
            .end_ns = eg_now(),
        };
        record_result(g, r, &frame, &e);
    } else {
        record_result(g, r, &frame, NULL);
    }
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

/* Takes a slot: 0, -EBUSY (at the limit and !block) or -EINVAL (limit 0). */
static int admit(eg_group *g, bool block)
{
    int limit = atomic_load_explicit(&g->limit, memory_order_relaxed);
    if (limit < 0) {
        atomic_fetch_add_explicit(&g->state, 1, memory_order_relaxed);
        return 0;
    }
    if (limit == 0)
        return block ? -EINVAL : -EBUSY;
    slot_probe probe = {g, (unsigned)limit};
    unsigned old = atomic_load_explicit(&g->state, memory_order_relaxed);
    for (;;) {
        /* Relaxed: admission orders nothing; the task's start is ordered by
         * the executor's queue. */
        if (COUNT(old) < probe.limit) {
            if (atomic_compare_exchange_weak_explicit(&g->state, &old, old + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed))
                return 0;
            continue;
        }
        if (!block)
            return -EBUSY;
        /* A slot usually frees within microseconds; then the finishing task
         * need not wake us. */
        if (!eg__spin_wait(slot_free, &probe)) {
            pthread_mutex_lock(&g->mu);
            mark_waiting_locked(g);
            if (!slot_free(&probe))
                wait_on(g, &g->slot_waiters);
            unmark_waiting_locked(g);
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

int eg_go(eg_group *g, eg_fn fn, void *arg) { return group_go(g, NULL, fn, arg, true); }

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
static void set_exec(eg_group *g, intptr_t e) { g->exec = (const eg__exec *)e; }

int eg_set_limit(eg_group *g, int n) { return set_idle(g, set_limit, n); }

int eg_group_set_trace(eg_group *g, bool on) { return set_idle(g, set_trace, on); }

int eg_group_set_executor(eg_group *g, eg_executor e)
{
    if (!g || (e != EG_EXEC_DEFAULT && e != EG_EXEC_THREADS && e != EG_EXEC_CORO))
        return -EINVAL;
    const eg__exec *x = eg__exec_get(e);
    if (!x)
        return -ENOTSUP;
    return set_idle(g, set_exec, (intptr_t)x);
}

size_t eg_group_trace(eg_group *g, eg_trace_entry *out, size_t cap)
{
    if (!g)
        return 0;
    pthread_mutex_lock(&g->mu);
    size_t n = eg__trace_copy(&g->trace, out, cap);
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* ---- waiting ------------------------------------------------------------------ */

static bool inside_own_task(eg_group *g)
{
    for (eg__frame *f = eg__current; f; f = f->prev)
        if (f->owner == g)
            return true;
    return false;
}

static bool group_idle(void *arg)
{
    eg_group *g = arg;
    /* Acquire: pairs with release_slot's release, so every task's effects
     * are visible once the count reads 0. */
    return COUNT(atomic_load_explicit(&g->state, memory_order_acquire)) == 0;
}

/* Runs the group's unstarted tasks here, then waits until none is admitted.
 * Returns the first error. */
static int wait_idle(eg_group *g)
{
    g->exec->help(&g->queue);
    eg__spin_wait(group_idle, g);
    /* Under mu even when the count is already 0: the completion that took
     * it to 0 holds mu until it no longer touches g. */
    pthread_mutex_lock(&g->mu);
    if (!group_idle(g)) {
        mark_waiting_locked(g);
        while (!group_idle(g))
            wait_on(g, &g->idle_waiters);
        unmark_waiting_locked(g);
    }
    int err = g->err;
    pthread_mutex_unlock(&g->mu);
    return err;
}

int eg_wait(eg_group *g)
{
    if (!g)
        return -EINVAL;
    if (inside_own_task(g))
        return -EDEADLK;
    int err = wait_idle(g);
    eg_cancel(g->ctx, err ? err : -ECANCELED);
    eg__frame *f = eg__current;
    if (err && f) {
        /* A task that returns what its own group's eg_wait returned passes
         * the text up with the code, as a Go error value would. */
        f->msg_code = err;
        f->msg_set = true;
        memcpy(f->msg, g->errmsg, sizeof f->msg);
    }
    return err;
}

int eg_group_err(eg_group *g)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    int err = g->err;
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

void eg_group_free(eg_group *g)
{
    /* From inside its own task, freeing would pull the group from under
     * the running task and waiting would never end: refuse (and leak). */
    if (!g || inside_own_task(g))
        return;
    wait_idle(g);
    pthread_mutex_destroy(&g->mu);
    eg_ctx_release(g->ctx);
    eg__trace_free(&g->trace);
    free(g);
    eg__live(-1);
}
