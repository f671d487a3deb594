/*
 * group.h - the group's state, shared by its three files: group.c (tasks,
 * admission, eg_wait, freeing), group_result.c (recording results, the
 * trace, error texts) and group_wait.c (eg_wait_grace, eg_wait_async).
 * Each file's top comment describes its part; this one holds the fields,
 * the waiter lists and the few calls between the files. Nothing here is
 * exported.
 */
#ifndef EG_GROUP_INTERNAL_H
#define EG_GROUP_INTERNAL_H

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
    atomic_uint state;     /* count | WAITERS | DETACHED */
    atomic_int limit;
    atomic_bool tracing; /* changed only while the count is 0 */
    atomic_int policy;   /* changed only while the count is 0 */
    /* EG_FIRST_SUCCESS: set once under mu with winner_arg; read without mu
     * by later successes, which then record nothing. */
    atomic_bool won;
    int err; /* the first error; under mu, set once */
    char errmsg[EG_ERRMSG_MAX];
    /* The rest is under mu. */
    eg__trace trace;
    eg__trace errors;    /* every failed (and detached) task, finishing order */
    msg_node *msgs;      /* the errmsg strings of the entries */
    size_t winner_index; /* in trace; SIZE_MAX when none or not traced */
    void *winner_arg;
    eg__list running; /* running tasks, while tracing */
    /* eg_wait_grace (group_wait.c) */
    bool detached, free_pending;
    size_t ndetached;
    /* eg_wait_async (group_wait.c) */
    bool async_pending, async_posted, async_running;
    eg_done_fn async_fn;
    void *async_arg;
    eg__task async_task;
};

typedef struct {
    eg__task base; /* the executor hands us &base */
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

/* A caller parked on idle_waiters or slot_waiters (in its own frame). */
typedef struct {
    eg__link link;
    eg__parker parker;
    bool linked; /* on a list; under mu */
} group_waiter;

#define WAITERS 0x40000000u
#define DETACHED 0x20000000u
#define COUNT(s) ((s) & ~(WAITERS | DETACHED))

/* ---- the waiter lists, under mu ------------------------------------------- */

/* Unlinks and unparks the oldest waiter of l, if any. */
static inline void eg__group_unpark_first(eg__list *l)
{
    eg__link *n = eg__list_pop(l);
    if (n) {
        group_waiter *w = EG__CONTAINER_OF(n, group_waiter, link);
        w->linked = false;
        eg__unpark(&w->parker);
    }
}

/* Sleeps on list l until unparked (the caller re-checks why). Called with
 * mu held and WAITERS set; returns with mu held. */
static inline void eg__group_wait_on(eg_group *g, eg__list *l)
{
    group_waiter w = {.linked = true};
    eg__parker_init(&w.parker);
    eg__list_push(l, &w.link);
    pthread_mutex_unlock(&g->mu);
    eg__park(&w.parker, INT64_MAX);
    pthread_mutex_lock(&g->mu);
    /* The unparker unlinked w before unparking it. */
}

/* Sets WAITERS so that completions take mu and look at the lists. */
static inline void eg__group_mark_waiting_locked(eg_group *g)
{
    /* Relaxed: the completion that must see the bit reads it in the CAS of
     * release_slot, which fails if the bit appeared, and then takes mu. */
    atomic_fetch_or_explicit(&g->state, WAITERS, memory_order_relaxed);
}

/* Clears WAITERS once nobody waits: both lists empty, no async wait. */
static inline void eg__group_unmark_waiting_locked(eg_group *g)
{
    /* Relaxed: with nobody waiting, a completion that still sees the bit
     * only takes mu needlessly; the bit changes only under mu. */
    if (!g->idle_waiters.head && !g->slot_waiters.head && !g->async_pending &&
        !g->async_running)
        atomic_fetch_and_explicit(&g->state, ~WAITERS, memory_order_relaxed);
}

/* ---- the group's state ------------------------------------------------------ */

/* True when no task is admitted (an eg__spin_wait condition; arg is g). */
static inline bool eg__group_idle(void *arg)
{
    eg_group *g = arg;
    /* Acquire: pairs with release_slot's release, so every task's effects
     * are visible once the count reads 0. */
    return COUNT(atomic_load_explicit(&g->state, memory_order_acquire)) == 0;
}

/* True when the caller runs inside one of g's tasks. */
static inline bool eg__group_inside_own_task(const eg_group *g)
{
    for (eg__frame *f = eg__current; f; f = f->prev)
        if (f->owner == g)
            return true;
    return false;
}

/* Whether an EG_FIRST_SUCCESS task has won (its arg may be NULL). Under mu:
 * won is written under mu, so relaxed is enough here. */
static inline bool eg__group_won_locked(eg_group *g)
{
    return atomic_load_explicit(&g->won, memory_order_relaxed);
}

/* What eg_wait returns, by policy. Under mu. */
static inline int eg__group_result_locked(eg_group *g)
{
    return eg__group_won_locked(g) ? 0 : g->err;
}

/* ---- group_result.c --------------------------------------------------------- */

/* Puts rt on g->running if tracing is on (reading the start time); returns
 * rt then, else NULL. Called by the task before it runs. */
EG_HIDDEN running_task *eg__group_trace_begin(eg_group *g, running_task *rt);
/* Records the result r of gt (f: its frame; rt: from eg__group_trace_begin)
 * and cancels g's context if the policy says so. Takes mu, unless nothing
 * is to be recorded. */
EG_HIDDEN void eg__group_record(eg_group *g, group_task *gt, int r, const eg__frame *f,
                                running_task *rt);
/* Gives the calling task's frame (if any) the text of err, eg_wait's result
 * for g, so that a task returning it passes the text up. Takes mu. */
EG_HIDDEN void eg__group_pass_errmsg(eg_group *g, int err);
/* Frees the trace, the errors and their texts. */
EG_HIDDEN void eg__group_results_free(eg_group *g);

/* ---- group_wait.c ----------------------------------------------------------- */

/* Called under mu by the completion that takes the count to 0: true when
 * the caller must post g->async_task (with eg__pool_post) after unlocking. */
EG_HIDDEN bool eg__group_async_due_locked(eg_group *g);
/* True when the calling thread runs g's eg_wait_async callback. */
EG_HIDDEN bool eg__group_in_async_fn(const eg_group *g);
/* Tells the running eg_wait_async callback's caller that the callback freed
 * its group. */
EG_HIDDEN void eg__group_async_freed(void);

#endif
