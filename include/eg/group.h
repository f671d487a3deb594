/*
 * eg/group.h - a group of tasks working on one job (Go's errgroup).
 *
 * A group owns a cancellable context, a child of the parent given to
 * eg_group_new. Tasks started with eg_go run on the library's thread pool
 * (eg/pool.h) and receive that context. The first task to return non-zero
 * cancels the context with its result as the cause, so its siblings see
 * eg_ctx_err(ctx) == -ECANCELED and eg_ctx_cause(ctx) == that result;
 * eg_wait returns that first result once every task has returned.
 *
 * Thread safety: eg_go, eg_try_go, eg_wait and the getters may be called from
 * any thread, concurrently. eg_set_limit may race with them but changes
 * nothing while tasks are active. eg_group_free must be the last call.
 */
#ifndef EG_GROUP_H
#define EG_GROUP_H

#include "eg/ctx.h"
#include "eg/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eg_group eg_group;

/* A task. ctx is the group's context (borrowed for the call). Return 0 for
 * success or a negative errno value; any non-zero value counts as failure. */
typedef int (*eg_fn)(eg_ctx *ctx, void *arg);

/**
 * eg_group_new() - a new group of tasks
 *
 * Go's errgroup.WithContext: the group's context (eg_group_ctx()) is a new
 * cancellable child of parent, handed to every task.
 *
 * Returns: The group, or NULL when memory ran out (ENOMEM).
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: The caller owns the group and frees it with eg_group_free().
 * The group holds its own reference to parent.
 * NULL: parent NULL means eg_background().
 * See also: eg_go, eg_wait, eg_group_free
 */
EG_EXPORT eg_group *eg_group_new(eg_ctx *parent);

/**
 * eg_group_ctx() - the context a group gives its tasks
 *
 * Returns: The group's context; NULL for NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: Borrowed: valid until eg_group_free(); take a reference with
 * eg_ctx_retain() to keep it longer.
 * NULL: Returns NULL.
 */
EG_EXPORT eg_ctx *eg_group_ctx(eg_group *g);

/**
 * eg_go() - start a task in a group
 *
 * Starts fn(ctx, arg) on the pool, with ctx the group's context (Go's
 * g.Go). A started task never waits for a free thread: if no pool thread
 * is idle a new one starts, up to the pool's maximum (eg_pool_configure()).
 * The first task to return non-zero cancels the group's context with its
 * result as the cause.
 *
 * Returns: 0 once fn is started: it will run exactly once. On failure fn
 * is not started:
 * - -EINVAL: g or fn is NULL, or the limit is 0;
 * - -ENOMEM: out of memory;
 * - -EAGAIN: no thread could be started to run it.
 * Blocks: While the group is at its limit (eg_set_limit()), until a task
 * returns; "active" means admitted: started or waiting in the pool's
 * queue. It never runs a task inline.
 * Thread-safety: Any thread, concurrently, also from inside the group's
 * own tasks.
 * Ownership: arg passes to the task when 0 is returned; on failure it
 * still belongs to the caller.
 * NULL: g or fn NULL returns -EINVAL; arg may be NULL.
 * See also: eg_try_go, eg_go_named, eg_wait
 */
EG_EXPORT int eg_go(eg_group *g, eg_fn fn, void *arg);

/**
 * eg_try_go() - start a task unless the group is at its limit
 *
 * Like eg_go(), but never waits for the limit (Go's g.TryGo).
 *
 * Returns: 0 once fn is started; -EBUSY at once when the group is at its
 * limit; otherwise as eg_go(). fn is not started on failure.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: As eg_go(): arg passes to the task only when 0 is returned.
 * NULL: g or fn NULL returns -EINVAL.
 */
EG_EXPORT int eg_try_go(eg_group *g, eg_fn fn, void *arg);

/**
 * eg_set_limit() - limit the number of active tasks
 *
 * Go's g.SetLimit: at most n tasks are active at once; n < 0 removes the
 * limit, 0 allows none (eg_go() then returns -EINVAL).
 *
 * Returns: 0; -EBUSY and no change if any task is active; -EINVAL for NULL.
 * Blocks: No.
 * Thread-safety: Any thread; it may race with eg_go() but changes nothing
 * while tasks are active.
 * Ownership: Nothing passes.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_set_limit(eg_group *g, int n);

/**
 * eg_group_set_executor() - choose what runs a group's tasks
 *
 * Threads (EG_EXEC_THREADS) or coroutines (EG_EXEC_CORO), see eg_yield()'s
 * header; EG_EXEC_DEFAULT is the process default. Both give the same
 * semantics to everything in this library; the README's "Choosing an
 * executor" says what a coroutine task may do.
 *
 * Returns: 0;
 * - -EINVAL: g is NULL or e is unknown;
 * - -ENOTSUP: this build has no such executor;
 * - -EBUSY: a task is active (nothing changed).
 * Blocks: No.
 * Thread-safety: As eg_set_limit().
 * Ownership: Nothing passes.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_group_set_executor(eg_group *g, eg_executor e);

/**
 * eg_wait() - wait for every task of a group; the first error
 *
 * Go's g.Wait: waits until every started task has returned, then cancels
 * the group's context (cause: the first error, or -ECANCELED). It may be
 * called again, and eg_go() may be used after it: a later failure never
 * replaces the first.
 *
 * Returns: The first non-zero task result in the order tasks finished, or
 * 0 when every task returned 0;
 * - -EDEADLK: called from inside one of the group's own tasks;
 * - -EINVAL: g is NULL.
 * Blocks: Until every started task has returned. While it waits it runs,
 * on the calling thread, the group's tasks that no pool thread has picked
 * up yet.
 * Thread-safety: Any thread, concurrently with eg_go() and other waiters.
 * Ownership: The group stays the caller's. Called inside a task of another
 * group, it attaches this group's error text to that task (as
 * eg_errorf() does), so returning the result passes the text up.
 * NULL: Returns -EINVAL.
 * See also: eg_group_errmsg, eg_group_err
 */
EG_EXPORT int eg_wait(eg_group *g);

/**
 * eg_errorf() - attach text to the error a task returns
 *
 * Inside a task, attaches printf-formatted text to the result the task is
 * about to return:
 *
 *     return eg_errorf(-EIO, "user service: HTTP %d", status);
 *
 * The text (at most EG_ERRMSG_MAX - 1 bytes, truncated beyond) is kept
 * only if the task returns the same code; eg_group_errmsg() reports it when
 * that result is the group's first error. Outside a task it only returns
 * code.
 *
 * Returns: code, always.
 * Blocks: No.
 * Thread-safety: Any thread; the text belongs to the calling task.
 * Ownership: fmt and the arguments are read during the call only.
 * NULL: fmt NULL attaches no text.
 * See also: eg_group_errmsg
 */
#define EG_ERRMSG_MAX 256
EG_EXPORT int eg_errorf(int code, const char *fmt, ...) EG_PRINTF(2, 3);

/**
 * eg_group_errmsg() - the text of a group's first error
 *
 * Returns: The eg_errorf() text of the task whose result is the first
 * error, or eg_strerror() of that result when it attached none; "" while
 * no task has failed and for NULL.
 * Blocks: No.
 * Thread-safety: Any thread. The text is set once, with the first error,
 * and never changes afterwards.
 * Ownership: The string belongs to the group: valid until eg_group_free().
 * NULL: Returns "".
 */
EG_EXPORT const char *eg_group_errmsg(eg_group *g);

/**
 * eg_group_err() - a group's first error, without waiting
 *
 * Returns: The first non-zero task result so far (what eg_wait() will
 * return), or 0; -EINVAL for NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: Nothing passes.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_group_err(eg_group *g);

/* ---- per-task trace ----------------------------------------------------
 *
 * Who failed, who was cancelled, and when: with tracing on, the group keeps
 * one entry per finished task, in the order tasks finished.
 */

typedef enum eg_outcome {
    EG_OUTCOME_OK,        /* returned 0 */
    EG_OUTCOME_FAILED,    /* returned non-zero while the group's context
                           * was live: it failed on its own */
    EG_OUTCOME_CANCELLED  /* returned non-zero after the group's context was
                           * done (a sibling failed, the parent was cancelled
                           * or its deadline passed) */
} eg_outcome;

typedef struct eg_trace_entry {
    const char *name;  /* eg_go_named's name, or NULL */
    void *arg;         /* the task's argument (never dereferenced) */
    int result;        /* what the task returned */
    eg_outcome outcome;
    bool first_error;  /* result is the error eg_wait returns */
    int64_t start_ns;  /* eg_now() when the task started to run */
    int64_t end_ns;    /* eg_now() when it returned */
} eg_trace_entry;

/**
 * eg_group_set_trace() - turn a group's per-task trace on or off
 *
 * With tracing on, the group keeps one eg_trace_entry per finished task
 * started from now on (eg_group_trace()). Tracing costs two clock reads
 * and a locked append per task.
 *
 * Returns: 0; -EBUSY and no change while tasks are active; -EINVAL for
 * NULL.
 * Blocks: No.
 * Thread-safety: Any thread; not concurrently with eg_go() on the same
 * group (it would see active tasks and return -EBUSY).
 * Ownership: Nothing passes.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_group_set_trace(eg_group *g, bool on);

/**
 * eg_go_named() - start a task with a name for the trace
 *
 * eg_go() with a name that the task's eg_trace_entry carries.
 *
 * Returns: As eg_go().
 * Blocks: As eg_go(): while the group is at its limit.
 * Thread-safety: As eg_go().
 * Ownership: name is not copied: it must stay valid until eg_group_free()
 * (a string literal, typically). arg as with eg_go().
 * NULL: name may be NULL; g or fn NULL returns -EINVAL.
 */
EG_EXPORT int eg_go_named(eg_group *g, const char *name, eg_fn fn, void *arg);

/**
 * eg_group_trace() - copy a group's per-task trace
 *
 * Copies up to cap entries, in the order tasks finished. Entries of tasks
 * still running are not there yet: call it after eg_wait() for the whole
 * story. A task whose entry could not be stored (ENOMEM) is left out.
 *
 * Returns: How many entries the trace holds (more than cap means some were
 * not copied); 0 for NULL g or with tracing off.
 * Blocks: No (takes the group's trace lock briefly).
 * Thread-safety: Any thread, concurrently with running tasks.
 * Ownership: out is the caller's array of cap entries. The copied entries'
 * name fields point at the names given to eg_go_named().
 * NULL: out may be NULL when cap is 0 (to ask for the count).
 * See also: eg_group_set_trace, eg_outcome_name
 */
EG_EXPORT size_t eg_group_trace(eg_group *g, eg_trace_entry *out, size_t cap);

/**
 * eg_outcome_name() - the name of a trace outcome
 *
 * Returns: "ok", "failed" or "cancelled"; "unknown" for a value that is
 * not an eg_outcome.
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: Static storage.
 * NULL: No pointer arguments.
 */
EG_EXPORT const char *eg_outcome_name(eg_outcome outcome);

/**
 * eg_group_free() - wait for a group's tasks, then free it
 *
 * Waits for running tasks (as eg_wait() does, without cancelling the
 * context), then frees the group and drops its reference to its context.
 * Called from inside one of the group's own tasks it does nothing (the
 * group cannot be freed there).
 *
 * Returns: Nothing.
 * Blocks: Until every started task has returned.
 * Thread-safety: Must be the last call on the group; using g after it is
 * undefined behaviour that is not detected.
 * Ownership: Frees the group, its trace and its error text.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_group_free(eg_group *g);

#ifdef __cplusplus
}
#endif
#endif
