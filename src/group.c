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
 * executor, or by eg_wait's help) -> result recorded (what cancels ctx
 * depends on the policy) -> freed -> count-- (its last touch of g).
 *
 * Recording a result: a success under EG_FAIL_FAST or EG_COLLECT_ALL with
 * tracing off records nothing (no clock read, no lock); under
 * EG_FIRST_SUCCESS only the first success takes mu (later ones see `won`).
 * A failure takes mu, reads the clock once and keeps an entry in `errors`
 * (its text in `msgs`, owned by g).
 *
 * The group itself:
 *
 *   LIVE --eg_wait_grace, tasks left at the deadline--> DETACHED
 *   DETACHED --eg_group_free--> FREE_PENDING --last task returns--> freed
 *
 * DETACHED is a bit in state (so completions leave the CAS fast path and
 * take mu) and g->detached under mu: a task finishing after it has its
 * result ignored. eg_group_free of a DETACHED group with tasks left only
 * sets free_pending; the task that takes the count to 0 frees g.
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
 * With tracing on, running tasks are also on `running` (under mu), so that
 * a detach can name them; tasks still queued at a detach are only counted.
 *
 * Lock order: g->mu -> nothing (a waiter is unparked under mu, which never
 * blocks). The context is cancelled, watched, and the executor and the
 * pool called without mu.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "exec.h"
#include "list.h"

typedef struct msg_node {
    struct msg_node *next;
    char text[];
} msg_node;

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
    atomic_int policy;   /* changed only while the count is 0 */
    /* EG_FIRST_SUCCESS: set once under mu with winner_arg; read without mu
     * by later successes, which then record nothing. */
    atomic_bool won;
    int err;             /* the first error; under mu, set once */
    char errmsg[EG_ERRMSG_MAX];
    /* The rest is under mu. */
    eg__trace trace;
    eg__trace errors;    /* every failed (and detached) task, finishing order */
    msg_node *msgs;      /* the errmsg strings of the entries */
    size_t winner_index; /* in trace; SIZE_MAX when none or not traced */
    void *winner_arg;
    eg__list running;    /* running tasks, while tracing */
    bool detached, free_pending;
    size_t ndetached;
    /* eg_wait_async */
    bool async_pending, async_posted, async_running;
    eg_done_fn async_fn;
    void *async_arg;
    eg__task async_task;
};

typedef struct {
    eg__task base; /* first: the executor hands us &base */
    eg_group *g;
    eg_fn fn;
    void *arg;
    const char *name;
} group_task;

/* A running task, on g->running while tracing (in run_task's frame). */
typedef struct {
    eg__link link;
    const group_task *gt;
    int64_t start_ns;
} running_task;

typedef struct {
    eg__link link;
    eg__parker parker;
    bool linked; /* on a list; under mu */
} group_waiter;

#define WAITERS 0x40000000u
#define DETACHED 0x20000000u
#define COUNT(s) ((s) & ~(WAITERS | DETACHED))

static const char detached_text[] = "still running when the group stopped waiting";

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
    group_waiter w = {.linked = true};
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
    if (n) {
        group_waiter *w = EG__CONTAINER_OF(n, group_waiter, link);
        w->linked = false;
        eg__unpark(&w->parker);
    }
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
    if (!g->idle_waiters.head && !g->slot_waiters.head && !g->async_pending &&
        !g->async_running)
        atomic_fetch_and_explicit(&g->state, ~WAITERS, memory_order_relaxed);
}

/* ---- running a task ------------------------------------------------------- */

static void destroy(eg_group *g);
static void post_async_locked(eg_group *g, bool *post);

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

/* Records a task's result r. A success records nothing unless tracing is on
 * or it may be the first success of EG_FIRST_SUCCESS. A failure is kept in
 * errors; the first one is the group's error and, under EG_FAIL_FAST,
 * cancels the group's context. Entries go in under the same lock, before
 * the cancel, so the trace lists a failure (or the winner) before the
 * siblings it cancelled. */
static void record_result(eg_group *g, group_task *gt, int r, const eg__frame *f,
                          running_task *rt)
{
    bool tracing = rt != NULL;
    /* Relaxed: policy changes only while no task is admitted; won is only
     * a hint here, decided again under mu. */
    int policy = atomic_load_explicit(&g->policy, memory_order_relaxed);
    if (!r && !tracing &&
        (policy != EG_FIRST_SUCCESS || atomic_load_explicit(&g->won, memory_order_relaxed)))
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

/* Drops one admitted task: the task's last touch of g (unless it frees g). */
static void release_slot(eg_group *g)
{
    unsigned old = atomic_load_explicit(&g->state, memory_order_relaxed);
    while (COUNT(old) > 1 && !(old & (WAITERS | DETACHED))) {
        /* Release: the task's effects happen before a waiter sees the
         * count drop (its acquire load in group_idle). */
        if (atomic_compare_exchange_weak_explicit(&g->state, &old, old - 1,
                                                  memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
    bool post = false, last = false;
    pthread_mutex_lock(&g->mu);
    unsigned now = atomic_fetch_sub_explicit(&g->state, 1, memory_order_release) - 1;
    if (COUNT(now) == 0) {
        while (g->idle_waiters.head)
            unpark_first(&g->idle_waiters);
        post_async_locked(g, &post);
        last = g->free_pending;
    }
    unpark_first(&g->slot_waiters);
    unmark_waiting_locked(g);
    pthread_mutex_unlock(&g->mu);
    if (post)
        eg__pool_post(&g->async_task);
    else if (last)
        destroy(g);
}

static void run_task(eg__task *t)
{
    group_task *gt = (group_task *)t;
    eg_group *g = gt->g;

    /* Relaxed: changed only while no task is admitted. */
    bool tracing = atomic_load_explicit(&g->tracing, memory_order_relaxed);
    running_task rt = {.gt = gt};
    if (tracing) {
        rt.start_ns = eg_now();
        pthread_mutex_lock(&g->mu);
        eg__list_push(&g->running, &rt.link);
        pthread_mutex_unlock(&g->mu);
    }
    eg__frame frame = {.prev = eg__current, .owner = g};
    eg__current = &frame;
    int r = gt->fn(g->ctx, gt->arg);
    eg__current = frame.prev;

    record_result(g, gt, r, &frame, tracing ? &rt : NULL);
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
    int limit = atomic_load_explicit(&g->limit, memory_order_relaxed);
    if (limit < 0) {
        /* Relaxed: as below. */
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
            if (!slot_free(&probe) && !g->detached)
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
static void set_policy(eg_group *g, intptr_t p)
{
    atomic_store_explicit(&g->policy, (int)p, memory_order_relaxed);
}
static void set_exec(eg_group *g, intptr_t e) { g->exec = (const eg__exec *)e; }

int eg_set_limit(eg_group *g, int n) { return set_idle(g, set_limit, n); }

int eg_group_set_trace(eg_group *g, bool on) { return set_idle(g, set_trace, on); }

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

/* Whether an EG_FIRST_SUCCESS task has won (its arg may be NULL). Under mu:
 * won is written under mu, so relaxed is enough here. */
static bool won_locked(eg_group *g)
{
    return atomic_load_explicit(&g->won, memory_order_relaxed);
}

/* Copies t under mu; first_error marks go when a winner made eg_wait's
 * result 0. */
static size_t copy_entries(eg_group *g, const eg__trace *t, eg_trace_entry *out, size_t cap)
{
    if (!g)
        return 0;
    pthread_mutex_lock(&g->mu);
    size_t n = eg__trace_copy(t, out, cap);
    if (won_locked(g) && out)
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

/* What eg_wait returns, by policy. Under mu. */
static int result_locked(eg_group *g)
{
    if (won_locked(g))
        return 0;
    return g->err;
}

/* Runs the group's unstarted tasks here, then waits until none is admitted.
 * Returns what eg_wait returns. */
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
    int err = result_locked(g);
    pthread_mutex_unlock(&g->mu);
    return err;
}

/* Cancels ctx as eg_wait does, and passes the error text to the calling
 * task's frame. */
static int finish_wait(eg_group *g, int err, int cause)
{
    eg_cancel(g->ctx, cause ? cause : -ECANCELED);
    eg__frame *f = eg__current;
    if (err && f) {
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
    return err;
}

int eg_wait(eg_group *g)
{
    if (!g)
        return -EINVAL;
    if (inside_own_task(g))
        return -EDEADLK;
    int err = wait_idle(g);
    return finish_wait(g, err, err);
}

/* ---- a bounded wait ------------------------------------------------------------ */

typedef struct {
    eg__waiter waiter;
    eg__parker *parker;
} ctx_watch;

static void ctx_watch_wake(eg__waiter *w) { eg__unpark(((ctx_watch *)w)->parker); }

/* Parks on the idle list until the count is 0, deadline_ns passes, or (with
 * watch) the context is done. Called with mu held and WAITERS set; returns
 * with mu held and the waiter off the list. */
static void wait_idle_bounded(eg_group *g, bool watch, int64_t deadline_ns)
{
    group_waiter w = {.linked = true};
    eg__parker_init(&w.parker);
    eg__list_push(&g->idle_waiters, &w.link);
    pthread_mutex_unlock(&g->mu);
    ctx_watch cw = {.waiter.wake = ctx_watch_wake, .parker = &w.parker};
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
        unpark_first(&g->slot_waiters);
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
    if (inside_own_task(g))
        return -EDEADLK;
    pthread_mutex_lock(&g->mu);
    mark_waiting_locked(g);
    /* While the context is live: as eg_wait (without running queued tasks
     * here, which could hold the caller past the grace). */
    while (!group_idle(g) && !eg_ctx_done(g->ctx))
        wait_idle_bounded(g, true, INT64_MAX);
    int64_t deadline = eg__add_sat(eg_now(), grace_ns);
    while (!group_idle(g) && eg_now() < deadline)
        wait_idle_bounded(g, false, deadline);
    bool detached = !group_idle(g);
    if (detached)
        detach_locked(g);
    unmark_waiting_locked(g);
    int err = result_locked(g);
    bool won = won_locked(g);
    pthread_mutex_unlock(&g->mu);
    int cause = err;
    if (detached && !err && !won)
        err = eg_ctx_err(g->ctx); /* done: that is why we stopped waiting */
    return finish_wait(g, err, cause);
}

/* ---- waiting from an event loop ------------------------------------------------- */

/* Posts the async callback if one is pending and not posted yet. Under mu,
 * with the count at 0; the caller posts after unlocking when *post. */
static void post_async_locked(eg_group *g, bool *post)
{
    if (g->async_pending && !g->async_posted) {
        g->async_posted = true;
        *post = true;
    }
}

/* The group whose eg_wait_async callback runs on this thread, and whether
 * that callback freed it. */
static _Thread_local struct {
    eg_group *g;
    bool freed;
} async_self;

static void run_async(eg__task *t)
{
    eg_group *g = EG__CONTAINER_OF(t, eg_group, async_task);
    pthread_mutex_lock(&g->mu);
    int err = result_locked(g);
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
        unpark_first(&g->idle_waiters);
    unmark_waiting_locked(g);
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
    mark_waiting_locked(g);
    if (COUNT(atomic_load_explicit(&g->state, memory_order_relaxed)) == 0)
        post_async_locked(g, &post);
    pthread_mutex_unlock(&g->mu);
    if (post)
        eg__pool_post(&g->async_task);
    return 0;
}

/* ---- getters and freeing ---------------------------------------------------------- */

int eg_group_err(eg_group *g)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    int err = result_locked(g);
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

size_t eg__group_print_info(eg_group *g, eg__print_info *pi)
{
    pthread_mutex_lock(&g->mu);
    pi->tracing = atomic_load_explicit(&g->tracing, memory_order_relaxed);
    const eg__trace *t = pi->tracing ? &g->trace : &g->errors;
    pi->n = t->n;
    pi->v = pi->n ? eg__malloc(pi->n * sizeof *pi->v) : NULL;
    if (pi->n && !pi->v)
        pi->n = 0;
    eg__trace_copy(t, pi->v, pi->n);
    pi->winner_index = pi->tracing ? g->winner_index : SIZE_MAX;
    pi->has_winner = won_locked(g);
    pi->ndetached = g->ndetached;
    pi->err = result_locked(g);
    pthread_mutex_unlock(&g->mu);
    return pi->n;
}

static void destroy(eg_group *g)
{
    pthread_mutex_destroy(&g->mu);
    eg_ctx_release(g->ctx);
    eg__trace_free(&g->trace);
    eg__trace_free(&g->errors);
    for (msg_node *m = g->msgs, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    free(g);
    eg__live(-1);
}

void eg_group_free(eg_group *g)
{
    /* From inside its own task, freeing would pull the group from under
     * the running task and waiting would never end: refuse (and leak). */
    if (!g || inside_own_task(g))
        return;
    /* Relaxed: a hint; g->detached under mu decides. A detached group's
     * queued tasks are not run here: that could block. */
    if (!(atomic_load_explicit(&g->state, memory_order_relaxed) & DETACHED)) {
        g->exec->help(&g->queue);
        eg__spin_wait(group_idle, g);
    }
    bool in_fn = async_self.g == g;
    /* Under mu even when idle: the completion that took the count to 0
     * holds mu until it no longer touches g. */
    pthread_mutex_lock(&g->mu);
    if (g->detached && !group_idle(g)) {
        /* The last detached task frees g (release_slot). */
        g->free_pending = true;
        pthread_mutex_unlock(&g->mu);
        return;
    }
    /* Tasks, and an eg_wait_async callback pending or running elsewhere. */
    if (!group_idle(g) || g->async_pending || (g->async_running && !in_fn)) {
        mark_waiting_locked(g);
        while (!group_idle(g) || g->async_pending || (g->async_running && !in_fn))
            wait_on(g, &g->idle_waiters);
        unmark_waiting_locked(g);
    }
    pthread_mutex_unlock(&g->mu);
    if (in_fn)
        async_self.freed = true;
    destroy(g);
}
