/*
 * group.c - errgroup: a WaitGroup, a first error, a limit and a context.
 *
 * State under g->mu:
 *   active  tasks admitted (queued in g->queue or running); eg_go waits
 *           while active == limit; eg_wait while active > 0.
 *   err     the first non-zero result, set once (with errmsg).
 *   limit   < 0 none; changed only while active == 0.
 *
 * A task's life: admitted (active++) -> queued on the pool -> run by a pool
 * thread, or by eg_wait inline -> result recorded (the first failure
 * cancels ctx) -> freed -> active-- (the last touch of the group: eg_wait
 * or eg_group_free may free it once g->mu is released).
 *
 * Lock order: g->mu -> nothing. The context is cancelled and the pool is
 * called with g->mu released.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

struct eg_group {
    eg_ctx *ctx;
    eg__queue queue; /* tasks not yet picked by a thread; under the pool lock */
    pthread_mutex_t mu;
    pthread_cond_t idle_cond; /* eg_wait: active reached 0 */
    pthread_cond_t slot_cond; /* eg_go: active dropped below limit */
    int active;
    int limit;
    int idle_waiters, slot_waiters;
    int err;
    char errmsg[EG_ERRMSG_MAX];
};

typedef struct {
    eg__task base; /* first: the pool hands us &base */
    eg_group *g;
    eg_fn fn;
    void *arg;
} group_task;

_Thread_local eg__frame *eg__current;

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
    g->limit = -1;
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

/* Records a task's failure; the first one cancels the group's context. */
static void record_failure(eg_group *g, int r)
{
    pthread_mutex_lock(&g->mu);
    bool first = g->err == 0;
    if (first) {
        g->err = r;
        if (task_msg.set && task_msg.code == r)
            memcpy(g->errmsg, task_msg.msg, sizeof g->errmsg);
        else
            eg__errtext(r, g->errmsg, sizeof g->errmsg);
    }
    pthread_mutex_unlock(&g->mu);
    if (first)
        eg_cancel(g->ctx, r);
}

static void run_task(eg__task *t)
{
    group_task *gt = (group_task *)t;
    eg_group *g = gt->g;

    eg__frame frame = {.prev = eg__current, .owner = g};
    eg__current = &frame;
    task_msg.set = false;
    int r = gt->fn(g->ctx, gt->arg);
    eg__current = frame.prev;
    free(gt);

    if (r)
        record_failure(g, r);
    task_msg.set = false;

    pthread_mutex_lock(&g->mu);
    g->active--;
    if (g->active == 0 && g->idle_waiters)
        pthread_cond_broadcast(&g->idle_cond);
    if (g->slot_waiters)
        pthread_cond_signal(&g->slot_cond);
    pthread_mutex_unlock(&g->mu);
}

/* Admits and starts one task; block says whether to wait for a slot. */
static int group_go(eg_group *g, eg_fn fn, void *arg, bool block)
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

    pthread_mutex_lock(&g->mu);
    while (g->limit >= 0 && g->active >= g->limit) {
        if (!block || g->limit == 0) {
            int rc = g->limit == 0 && block ? -EINVAL : -EBUSY;
            pthread_mutex_unlock(&g->mu);
            free(gt);
            return rc;
        }
        g->slot_waiters++;
        pthread_cond_wait(&g->slot_cond, &g->mu);
        g->slot_waiters--;
    }
    g->active++;
    pthread_mutex_unlock(&g->mu);

    int rc = eg__pool_submit(&g->queue, &gt->base);
    if (rc < 0) {
        free(gt);
        pthread_mutex_lock(&g->mu);
        g->active--;
        if (g->active == 0 && g->idle_waiters)
            pthread_cond_broadcast(&g->idle_cond);
        if (g->slot_waiters)
            pthread_cond_signal(&g->slot_cond);
        pthread_mutex_unlock(&g->mu);
    }
    return rc;
}

int eg_go(eg_group *g, eg_fn fn, void *arg) { return group_go(g, fn, arg, true); }

int eg_try_go(eg_group *g, eg_fn fn, void *arg) { return group_go(g, fn, arg, false); }

int eg_set_limit(eg_group *g, int n)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->mu);
    int rc = g->active ? -EBUSY : 0;
    if (rc == 0)
        g->limit = n < 0 ? -1 : n;
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

/* Runs the group's queued tasks here, then sleeps until none is active. */
static int wait_idle(eg_group *g)
{
    eg__task *t;
    while ((t = eg__pool_take(&g->queue)))
        t->run(t);
    pthread_mutex_lock(&g->mu);
    g->idle_waiters++;
    while (g->active)
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
    free(g);
    eg__live(-1);
}
