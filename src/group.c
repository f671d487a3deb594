/*
 * group.c - errgroup: a WaitGroup, a first error, a limit and a context.
 *
 * g->state packs the number of admitted tasks (queued or running) and a
 * SLOT_WAITERS bit set while some eg_go sleeps at the limit. Admission and
 * most completions are one compare-and-swap on it; g->mu is taken only:
 *   - by the completion that takes the count from 1 to 0, so that eg_wait
 *     and eg_group_free, which check the count under g->mu, cannot free the
 *     group while that completion still touches it;
 *   - by a completion that sees SLOT_WAITERS, to signal a sleeping eg_go
 *     (the bit is in the same word, so a completion that did not see it
 *     never touches the group again after its CAS);
 *   - to record the first error (err and errmsg, set once).
 * limit < 0 means none; it changes only while the count is 0.
 *
 * A task's life: admitted (count++) -> queued on the pool -> run by a pool
 * thread, or by eg_wait inline -> result recorded (the first failure
 * cancels ctx) -> freed -> count-- (its last touch of the group).
 *
 * Waiting spins briefly before sleeping: most waits in a fan-out end within
 * microseconds, and a spin saves the futex wake-up on both sides.
 *
 * Lock order: g->mu -> nothing. The context is cancelled and the pool is
 * called with g->mu released.
 */
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct eg_group {
    eg_ctx *ctx;
    eg__queue queue; /* tasks not yet picked by a thread; under the pool lock */
    pthread_mutex_t mu;
    pthread_cond_t idle_cond; /* eg_wait: count reached 0 */
    pthread_cond_t slot_cond; /* eg_go: count dropped below limit */
    atomic_uint state;        /* count | SLOT_WAITERS */
    atomic_int limit;
    int idle_waiters, slot_waiters; /* under mu */
    int err;
    char errmsg[EG_ERRMSG_MAX];
    atomic_bool tracing;    /* changed only while the count is 0 */
    eg_trace_entry *trace;  /* under mu */
    size_t ntrace, trace_cap;
};

typedef struct {
    eg__task base; /* first: the pool hands us &base */
    eg_group *g;
    eg_fn fn;
    void *arg;
    const char *name;
} group_task;

#define SLOT_WAITERS 0x40000000u
#define COUNT(s) ((s) & ~SLOT_WAITERS)
#define SPIN_NS (20 * EG_NSEC_PER_USEC)

_Thread_local eg__frame *eg__current;

/* One step of a bounded spin: a few pauses, and now and then a yield, so
 * that on few cores the thread we wait for gets to run (a yield per step
 * would cost a system call every few hundred nanoseconds). */
#define YIELD_NS (4 * EG_NSEC_PER_USEC)
static inline void spin_step(int64_t now, int64_t *last_yield)
{
    for (int i = 0; i < 16; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (now - *last_yield > YIELD_NS) {
        sched_yield();
        *last_yield = now;
    }
}

/* eg_errorf's text for the task running on this thread. */
static _Thread_local struct {
    int code;
    bool set;
    char msg[EG_ERRMSG_MAX];
} task_msg;

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
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->idle_cond, NULL);
    pthread_cond_init(&g->slot_cond, NULL);
    atomic_init(&g->limit, -1);
    eg__live(+1);
    return g;
}

eg_ctx *eg_group_ctx(eg_group *g) { return g ? g->ctx : NULL; }

int eg_errorf(int code, const char *fmt, ...)
{
    if (!eg__current || !fmt)
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(task_msg.msg, sizeof task_msg.msg, fmt, ap);
    va_end(ap);
    task_msg.code = code;
    task_msg.set = true;
    return code;
}

/* Appends e to the trace; drops it if the trace cannot grow. Under mu. */
static void trace_append_locked(eg_group *g, const eg_trace_entry *e)
{
    if (g->ntrace == g->trace_cap) {
        size_t cap = g->trace_cap ? 2 * g->trace_cap : 16;
        eg_trace_entry *t = eg__malloc(cap * sizeof *t);
        if (!t)
            return;
        if (g->ntrace)
            memcpy(t, g->trace, g->ntrace * sizeof *t);
        free(g->trace);
        g->trace = t;
        g->trace_cap = cap;
    }
    g->trace[g->ntrace++] = *e;
}

/* Records a task's result r (and its trace entry e, if tracing): the first
 * failure is the group's error and cancels the group's context. The entry
 * goes in under the same lock, before the cancel, so the trace lists a
 * failure before the siblings it cancelled. */
static void record_result(eg_group *g, int r, eg_trace_entry *e)
{
    if (!r && !e)
        return;
    pthread_mutex_lock(&g->mu);
    bool first = r && g->err == 0;
    if (first) {
        g->err = r;
        if (task_msg.set && task_msg.code == r)
            memcpy(g->errmsg, task_msg.msg, sizeof g->errmsg);
        else
            eg__errtext(r, g->errmsg, sizeof g->errmsg);
    }
    if (e) {
        e->first_error = first;
        trace_append_locked(g, e);
    }
    pthread_mutex_unlock(&g->mu);
    if (first)
        eg_cancel(g->ctx, r);
}

/* Drops one admitted task: the task's last touch of g. */
static void release_slot(eg_group *g)
{
    unsigned old = atomic_load_explicit(&g->state, memory_order_relaxed);
    while (COUNT(old) > 1 && !(old & SLOT_WAITERS)) {
        /* Release: the task's effects happen before a waiter sees the
         * count drop. */
        if (atomic_compare_exchange_weak_explicit(&g->state, &old, old - 1,
                                                  memory_order_release,
                                                  memory_order_relaxed))
            return;
    }
    pthread_mutex_lock(&g->mu);
    unsigned now = atomic_fetch_sub_explicit(&g->state, 1, memory_order_release) - 1;
    if (COUNT(now) == 0 && g->idle_waiters)
        pthread_cond_broadcast(&g->idle_cond);
    if (g->slot_waiters)
        pthread_cond_signal(&g->slot_cond);
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
    task_msg.set = false;
    int r = gt->fn(g->ctx, gt->arg);
    eg__current = frame.prev;

    if (tracing) {
        eg_trace_entry e = {
            .name = gt->name,
            .arg = gt->arg,
            .result = r,
            .outcome = !r                       ? EG_OUTCOME_OK
                       : eg_ctx_done(g->ctx)    ? EG_OUTCOME_CANCELLED
                                                : EG_OUTCOME_FAILED,
            .start_ns = start,
            .end_ns = eg_now(),
        };
        record_result(g, r, &e);
    } else {
        record_result(g, r, NULL);
    }
    free(gt);
    task_msg.set = false;
    release_slot(g);
}

/* Takes a slot: 0, -EBUSY (at the limit and !block) or -EINVAL (limit 0).
 * *watching is set when it returns 0 while still registered as a pool
 * watcher (it spun for the slot): the caller ends that after submitting, so
 * the submission itself can defer waking a worker. */
static int admit(eg_group *g, bool block, bool *watching)
{
    *watching = false;
    int limit = atomic_load_explicit(&g->limit, memory_order_relaxed);
    if (limit < 0) {
        atomic_fetch_add_explicit(&g->state, 1, memory_order_relaxed);
        return 0;
    }
    if (limit == 0)
        return block ? -EINVAL : -EBUSY;
    int64_t spin_until = 0, last_yield = 0;
    unsigned old = atomic_load_explicit(&g->state, memory_order_relaxed);
    for (;;) {
        if (COUNT(old) < (unsigned)limit) {
            if (atomic_compare_exchange_weak_explicit(&g->state, &old, old + 1,
                                                      memory_order_relaxed,
                                                      memory_order_relaxed)) {
                *watching = spin_until != 0;
                return 0;
            }
            continue;
        }
        if (!block)
            return -EBUSY;
        /* Spin first: a slot usually frees within microseconds, and the
         * finishing task then need not wake us. */
        int64_t now = eg_now();
        if (spin_until == 0) {
            spin_until = now + SPIN_NS;
            last_yield = now;
            eg__pool_watch_begin();
        }
        if (now < spin_until) {
            eg__pool_watch_poll(now);
            spin_step(now, &last_yield);
            old = atomic_load_explicit(&g->state, memory_order_relaxed);
            continue;
        }
        eg__pool_watch_end();
        pthread_mutex_lock(&g->mu);
        if (g->slot_waiters++ == 0)
            atomic_fetch_or(&g->state, SLOT_WAITERS);
        while (COUNT(atomic_load(&g->state)) >= (unsigned)limit)
            pthread_cond_wait(&g->slot_cond, &g->mu);
        if (--g->slot_waiters == 0)
            atomic_fetch_and(&g->state, ~SLOT_WAITERS);
        pthread_mutex_unlock(&g->mu);
        old = atomic_load_explicit(&g->state, memory_order_relaxed);
        spin_until = 0;
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
    gt->base.run = run_task;
    gt->g = g;
    gt->fn = fn;
    gt->arg = arg;
    gt->name = name;

    bool watching;
    int rc = admit(g, block, &watching);
    if (rc == 0) {
        rc = eg__pool_submit(&g->queue, &gt->base);
        if (watching)
            eg__pool_watch_end();
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

int eg_group_set_trace(eg_group *g, bool on)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    int rc = COUNT(atomic_load(&g->state)) ? -EBUSY : 0;
    if (rc == 0)
        atomic_store_explicit(&g->tracing, on, memory_order_relaxed);
    pthread_mutex_unlock(&g->mu);
    return rc;
}

size_t eg_group_trace(eg_group *g, eg_trace_entry *out, size_t cap)
{
    if (!g)
        return 0;
    pthread_mutex_lock(&g->mu);
    size_t n = g->ntrace;
    if (out && cap && n)
        memcpy(out, g->trace, (n < cap ? n : cap) * sizeof *out);
    pthread_mutex_unlock(&g->mu);
    return n;
}

const char *eg_outcome_name(eg_outcome outcome)
{
    switch (outcome) {
    case EG_OUTCOME_OK:
        return "ok";
    case EG_OUTCOME_FAILED:
        return "failed";
    case EG_OUTCOME_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}

int eg_set_limit(eg_group *g, int n)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    int rc = COUNT(atomic_load(&g->state)) ? -EBUSY : 0;
    if (rc == 0)
        atomic_store_explicit(&g->limit, n < 0 ? -1 : n, memory_order_relaxed);
    pthread_mutex_unlock(&g->mu);
    return rc;
}

static bool inside_own_task(eg_group *g)
{
    for (eg__frame *f = eg__current; f; f = f->prev)
        if (f->owner == g)
            return true;
    return false;
}

/* Runs the group's queued tasks here, then waits until none is admitted. */
static int wait_idle(eg_group *g)
{
    eg__task *t;
    while ((t = eg__pool_take(&g->queue)))
        t->run(t);
    if (COUNT(atomic_load_explicit(&g->state, memory_order_relaxed))) {
        eg__pool_watch_begin();
        int64_t now, last_yield = eg_now(), spin_until = last_yield + SPIN_NS;
        while (COUNT(atomic_load_explicit(&g->state, memory_order_relaxed)) &&
               (now = eg_now()) < spin_until) {
            eg__pool_watch_poll(now);
            spin_step(now, &last_yield);
        }
        eg__pool_watch_end();
    }
    /* Under mu even when the count is already 0: the completion that took
     * it to 0 holds mu until it no longer touches g. */
    pthread_mutex_lock(&g->mu);
    g->idle_waiters++;
    while (COUNT(atomic_load_explicit(&g->state, memory_order_acquire)))
        pthread_cond_wait(&g->idle_cond, &g->mu);
    g->idle_waiters--;
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
    if (err && eg__current) {
        /* A task that returns what its own group's eg_wait returned passes
         * the text up with the code, as a Go error value would. */
        task_msg.code = err;
        task_msg.set = true;
        memcpy(task_msg.msg, g->errmsg, sizeof task_msg.msg);
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
    pthread_cond_destroy(&g->slot_cond);
    pthread_cond_destroy(&g->idle_cond);
    pthread_mutex_destroy(&g->mu);
    eg_ctx_release(g->ctx);
    free(g->trace);
    free(g);
    eg__live(-1);
}
