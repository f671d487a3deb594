/*
 * eg/group.h - a group of tasks working on one job (Go's errgroup).
 *
 * A group owns a cancellable context, a child of the parent given to
 * eg_group_new. Tasks started with eg_go run on the library's thread pool
 * (eg/pool.h) and receive that context. The first task to return non-zero
 * cancels the context with its result as the cause, so its siblings see
 * eg_ctx_err(ctx) == -ECANCELED and eg_ctx_cause(ctx) == that result;
 * eg_wait returns that first result once every task has returned. That is
 * the default policy, EG_FAIL_FAST; eg_group_set_policy chooses another
 * (the first success wins, or every task runs to its end).
 *
 * Thread safety: eg_go, eg_try_go, eg_wait and the getters may be called from
 * any thread, concurrently. eg_set_limit may race with them but changes
 * nothing while tasks are active. eg_group_free must be the last call.
 */
#ifndef EG_GROUP_H
#define EG_GROUP_H

#include <stdio.h>

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
 * - -EAGAIN: no thread could be started to run it;
 * - -ECANCELED: eg_wait_grace() detached tasks of g: it takes no more.
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
 * Thread-safety: Any thread once eg_group_err(g) != 0 or after eg_wait():
 * the text is set once, with the first error, and is stable from then on.
 * Reading it while tasks run and before any failed is a data race.
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
    EG_OUTCOME_CANCELLED, /* returned non-zero after the group's context was
                           * done (a sibling failed, the parent was cancelled
                           * or its deadline passed) */
    EG_OUTCOME_DETACHED   /* still running when eg_wait_grace stopped waiting
                           * for it; whatever it returns is ignored */
} eg_outcome;

typedef struct eg_trace_entry {
    const char *name; /* eg_go_named's name, or NULL */
    void *arg;        /* the task's argument (never dereferenced) */
    int result;       /* what the task returned */
    eg_outcome outcome;
    bool first_error;   /* result is the error eg_wait returns */
    int64_t start_ns;   /* eg_now() when the task started to run */
    int64_t end_ns;     /* eg_now() when it returned (detached: when it was
                        * detached) */
    const char *errmsg; /* the failure's text (eg_errorf's, else
                         * eg_strerror(result)); "" for a success. Owned by
                         * the group, valid until eg_group_free. */
} eg_trace_entry;

/**
 * eg_group_set_trace() - turn a group's per-task trace on or off
 *
 * With tracing on, the group keeps one eg_trace_entry per finished task
 * started from now on (eg_group_trace()). Tracing costs two clock reads
 * and two short locked sections per task.
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
 * Returns: "ok", "failed", "cancelled" or "detached"; "unknown" for a value that is
 * not an eg_outcome.
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: Static storage.
 * NULL: No pointer arguments.
 */
EG_EXPORT const char *eg_outcome_name(eg_outcome outcome);

/* ---- every error, with its task ---------------------------------------- */

/**
 * eg_group_errors() - every failed task of a group, in finishing order
 *
 * Kept whether tracing is on or not: each entry has the task's name, arg,
 * result, errmsg, outcome (EG_OUTCOME_FAILED, EG_OUTCOME_CANCELLED, or
 * EG_OUTCOME_DETACHED for a task eg_wait_grace() left running: result 0,
 * errmsg says so) and end_ns. start_ns is measured only with tracing on (a
 * success must cost no clock read): without it, start_ns is 0.
 * first_error marks the entry whose result eg_wait() returns (none after
 * an EG_FIRST_SUCCESS win). A failure whose entry could not be stored
 * (ENOMEM) is left out; the group's error is still right.
 *
 * Returns: How many entries the group holds (more than cap means some were
 * not copied), as eg_group_trace(); 0 for NULL g.
 * Blocks: No (takes the group's lock briefly).
 * Thread-safety: Any thread, before eg_group_free(); entries of tasks still
 * running are not there yet.
 * Ownership: out is the caller's array of cap entries. errmsg points into
 * the group (valid until eg_group_free()), name at the eg_go_named() name.
 * NULL: out may be NULL when cap is 0 (to ask for the count).
 * See also: eg_group_print, eg_group_trace
 */
EG_EXPORT size_t eg_group_errors(eg_group *g, eg_trace_entry *out, size_t cap);

/**
 * eg_group_print() - print a group's tasks as a table
 *
 * Prints the trace (with tracing on) or else the errors as an aligned
 * table: task (its name, else its arg as a pointer), outcome, result text,
 * start and end in ms from the first start ("-" when not measured; without
 * tracing, times count from the first failure), and a mark: "<- first
 * error" on the entry eg_wait() returns, "<- winner" on the
 * EG_FIRST_SUCCESS winner, "<- detached" on tasks eg_wait_grace() left
 * running. A last line gives eg_wait()'s result.
 *
 * Returns: 0;
 * - -EINVAL: g or f is NULL;
 * - -ENOMEM: no memory for the snapshot (nothing printed);
 * - -EIO: writing to f failed.
 * Blocks: On f's writes; never while holding the group's lock.
 * Thread-safety: Any thread; prints a snapshot (after eg_wait() it is the
 * whole story).
 * Ownership: f stays the caller's and is not flushed.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_group_print(eg_group *g, FILE *f);

/* ---- policies ------------------------------------------------------------ */

typedef enum eg_policy {
    /* The default, Go's errgroup: the first failure cancels the group's
     * context (cause: that failure); eg_wait returns it. */
    EG_FAIL_FAST = 0,
    /* A race: the first task to return 0 wins and cancels the rest (cause
     * -ECANCELED); failures cancel nothing. eg_wait returns 0 if any task
     * succeeded, else the first failure in finishing order.
     * eg_group_winner names the winner. */
    EG_FIRST_SUCCESS = 1,
    /* Every task runs to its end: failures cancel nothing. eg_wait returns
     * the first failure in finishing order; eg_group_errors has them all. */
    EG_COLLECT_ALL = 2,
} eg_policy;

/**
 * eg_group_set_policy() - choose how task results steer a group
 *
 * EG_FAIL_FAST (the default), EG_FIRST_SUCCESS or EG_COLLECT_ALL (see
 * eg_policy). Limits, tracing, nested groups and both executors work with
 * every policy; the parent's cancel and deadline reach the tasks under
 * every policy. A first error or a winner, once there, stays for the
 * group's life.
 *
 * Returns: 0;
 * - -EINVAL: g is NULL or p is unknown;
 * - -EBUSY: a task is active (nothing changed).
 * Blocks: No.
 * Thread-safety: As eg_set_limit().
 * Ownership: Nothing passes.
 * NULL: Returns -EINVAL.
 * See also: eg_group_winner
 */
EG_EXPORT int eg_group_set_policy(eg_group *g, eg_policy p);

/**
 * eg_group_winner() - the winner of an EG_FIRST_SUCCESS group
 *
 * Returns: The arg the first task to return 0 was started with; NULL
 * before any task succeeded, under the other policies, and for NULL g. A
 * winner whose arg is NULL cannot be told from none (eg_wait() returning 0
 * can): give the tasks distinct args.
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: The arg is the caller's, as it was.
 * NULL: Returns NULL.
 */
EG_EXPORT void *eg_group_winner(eg_group *g);

/* ---- a bounded wait -------------------------------------------------------- */

/**
 * eg_wait_grace() - wait for a group, but not long after its context is done
 *
 * As eg_wait() while the group's context is live (except that it does not
 * run queued tasks on the calling thread). Once the context is done (a
 * failure, the first success, the parent's cancel or deadline) it waits at
 * most grace_ns more; tasks still admitted then are detached: their
 * results are ignored, they appear in the trace (with tracing on) and in
 * eg_group_errors() with outcome EG_OUTCOME_DETACHED (without tracing, and
 * for tasks still queued, the group only counts them; eg_group_print()
 * says how many), and the group takes no new task (eg_go() returns
 * -ECANCELED). The context is cancelled as eg_wait() does. For tasks stuck
 * where no context reaches (a blocking gethostbyname(), a library without
 * a cancellable call): the caller answers on time, the straggler cleans up
 * after itself.
 *
 * Returns: What eg_wait() returns (the first error; 0 for an
 * EG_FIRST_SUCCESS win); when tasks were detached and that is 0 without a
 * win, the context's error (-ECANCELED, -ETIMEDOUT);
 * - -EINVAL: g is NULL or grace_ns < 0;
 * - -EDEADLK: called from inside one of the group's own tasks.
 * Blocks: Until the tasks return, or grace_ns after the context is done.
 * Thread-safety: As eg_wait().
 * Ownership: After a detach, eg_group_free() returns at once: the group's
 * memory and context live until the last detached task returns, which
 * frees them (eg_live_objects() drops then). Detached tasks keep their
 * args: the caller must let them finish with them.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_wait_grace(eg_group *g, int64_t grace_ns);

/* ---- waiting from an event loop ------------------------------------------- */

/* Called once by eg_wait_async(): err is what eg_wait() would return. */
typedef void (*eg_done_fn)(eg_group *g, int err, void *arg);

/**
 * eg_wait_async() - wait for a group without blocking; a callback when done
 *
 * Returns at once; fn(g, err, arg) runs exactly once, on a library thread
 * (a pool thread; never inside this call, even on an idle group), after
 * every task started before this call has returned (and any started since
 * that kept the group busy), with err as eg_wait() would return it and the
 * group's context cancelled as eg_wait() does. fn may start tasks, call
 * eg_wait_async() again, or call eg_group_free(g) (then nobody else may).
 * Typical use: fn posts to an event loop (uv_async_send(), a write to an
 * eventfd) and the loop thread reads the result; see the README's "Using
 * groups from an event loop".
 *
 * Returns: 0;
 * - -EINVAL: g or fn is NULL;
 * - -EBUSY: an async wait is already pending (fn will not be called).
 * Blocks: No.
 * Thread-safety: Any thread; the caller may exit before fn runs.
 * eg_group_free() called meanwhile (not from fn) waits until fn returned.
 * Ownership: arg stays the caller's and is passed to fn unchanged.
 * NULL: g or fn NULL returns -EINVAL; arg may be NULL.
 */
EG_EXPORT int eg_wait_async(eg_group *g, eg_done_fn fn, void *arg);

/**
 * eg_group_free() - wait for a group's tasks, then free it
 *
 * Waits for running tasks (as eg_wait() does, without cancelling the
 * context) and for a pending or running eg_wait_async() callback (unless
 * called from it), then frees the group and drops its reference to its
 * context. After eg_wait_grace() detached tasks it returns at once and the
 * last of them frees the group.
 * Called from inside one of the group's own tasks it does nothing (the
 * group cannot be freed there).
 *
 * Returns: Nothing.
 * Blocks: Until every started task has returned (not for detached ones).
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
