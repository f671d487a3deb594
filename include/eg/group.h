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

/* A new group whose context is a child of parent (Go's WithContext); NULL
 * parent means eg_background(). Returns NULL on ENOMEM. */
EG_EXPORT eg_group *eg_group_new(eg_ctx *parent);

/* The group's context, borrowed: valid until eg_group_free (retain it to
 * keep it longer). */
EG_EXPORT eg_ctx *eg_group_ctx(eg_group *g);

/* Starts fn(ctx, arg) on the pool. Returns 0 once fn is started: it will
 * run exactly once. On failure fn is not started and arg still belongs to
 * the caller: -EINVAL (NULL g or fn, or a limit of 0), -ENOMEM, -EAGAIN (no
 * thread could be started to run it), -ECANCELED (eg_wait_grace detached
 * tasks of g: the group takes no more).
 * Blocks while the group is at its limit (eg_set_limit) until a task
 * returns; it never runs a task inline. "Active" means admitted: started or
 * waiting in the pool's queue.
 * A started task never waits for a free thread: if no pool thread is idle a
 * new one starts, up to the pool's maximum (eg/pool.h). */
EG_EXPORT int eg_go(eg_group *g, eg_fn fn, void *arg);

/* Like eg_go, but returns -EBUSY at once instead of blocking when the group
 * is at its limit (fn not started). */
EG_EXPORT int eg_try_go(eg_group *g, eg_fn fn, void *arg);

/* Limits the number of active tasks to n; n < 0 removes the limit, 0 allows
 * none (eg_go then returns -EINVAL). Returns 0, -EINVAL for NULL, or -EBUSY
 * and no change if any task is active. */
EG_EXPORT int eg_set_limit(eg_group *g, int n);

/* Chooses what runs g's tasks (eg/pool.h): threads or coroutines. Both give
 * the same semantics to everything in this library; see the README's
 * "Choosing an executor" for what a coroutine task may do.
 * Returns: 0; -EINVAL (NULL g, unknown e); -ENOTSUP (this build has no such
 *   executor); -EBUSY and no change while any task is active.
 * Blocks: no. Thread-safety: as eg_set_limit. */
EG_EXPORT int eg_group_set_executor(eg_group *g, eg_executor e);

/* Blocks until every started task has returned; returns the first non-zero
 * result in the order tasks finished, or 0. Then cancels the group's context
 * (cause: that result, or -ECANCELED). While it waits, it runs the group's
 * tasks that no pool thread has picked up yet on the calling thread.
 * May be called again, and eg_go may be used after it: a later failure never
 * replaces the first. Returns -EDEADLK when called from inside one of the
 * group's own tasks, -EINVAL for NULL. */
EG_EXPORT int eg_wait(eg_group *g);

/* Inside a task: attaches text to the result the task is about to return,
 * and returns code: return eg_errorf(-EIO, "user service: HTTP %d", st);
 * The text (at most EG_ERRMSG_MAX - 1 bytes, truncated beyond) is kept only
 * if the task returns the same code. Outside a task it only returns code.
 * eg_wait called inside a task attaches its group's error text the same
 * way, so a task that returns its inner group's error passes the text up. */
#define EG_ERRMSG_MAX 256
EG_EXPORT int eg_errorf(int code, const char *fmt, ...) EG_PRINTF(2, 3);

/* The first error's text: the task's eg_errorf text, or eg_strerror() of the
 * result when none was attached; "" while no task has failed. Valid until
 * eg_group_free. */
EG_EXPORT const char *eg_group_errmsg(eg_group *g);

/* The first error (as eg_wait would return it), without waiting. */
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
    const char *name;  /* eg_go_named's name, or NULL */
    void *arg;         /* the task's argument (never dereferenced) */
    int result;        /* what the task returned */
    eg_outcome outcome;
    bool first_error;  /* result is the error eg_wait returns */
    int64_t start_ns;  /* eg_now() when the task started to run */
    int64_t end_ns;    /* eg_now() when it returned (detached: when it was
                        * detached) */
    const char *errmsg; /* the failure's text (eg_errorf's, else
                         * eg_strerror(result)); "" for a success. Owned by
                         * the group, valid until eg_group_free. */
} eg_trace_entry;

/* Turns tracing on or off for tasks started from now on. Returns 0, -EINVAL
 * for NULL, or -EBUSY (no change) while tasks are active. Tracing costs two
 * clock reads and a locked append per task. */
EG_EXPORT int eg_group_set_trace(eg_group *g, bool on);

/* eg_go with a name for the trace. name is not copied: it must stay valid
 * until eg_group_free (a string literal, typically). */
EG_EXPORT int eg_go_named(eg_group *g, const char *name, eg_fn fn, void *arg);

/* Copies up to cap entries (out may be NULL when cap is 0), oldest first,
 * and returns how many tasks the trace holds (more than cap means some were
 * not copied). Entries of tasks still running are not there yet: call it
 * after eg_wait for the whole story. A task whose entry could not be
 * stored (ENOMEM) is left out. */
EG_EXPORT size_t eg_group_trace(eg_group *g, eg_trace_entry *out, size_t cap);

/* ---- every error, with its task ---------------------------------------- */

/* Copies the group's failed tasks, in the order they finished, with the
 * same convention as eg_group_trace: up to cap entries to out (NULL when
 * cap is 0), returns how many the group holds. Kept whether or not tracing
 * is on: name, arg, result, errmsg, outcome (EG_OUTCOME_FAILED,
 * EG_OUTCOME_CANCELLED, or EG_OUTCOME_DETACHED for tasks eg_wait_grace
 * left running: result 0, errmsg says so) and end_ns. start_ns is only
 * measured with tracing on (a success must cost no clock read); without
 * it, start_ns is 0. first_error marks the entry whose result eg_wait
 * returns (none after an EG_FIRST_SUCCESS win). A failure whose entry could
 * not be stored (ENOMEM) is left out; the group's error is still right.
 * Returns: the count; 0 for NULL g.
 * Blocks: no (takes the group's lock briefly).
 * Thread-safety: any thread, any time before eg_group_free; entries of
 * tasks still running are not there yet.
 * Ownership: entries are copies; their name and errmsg point into memory
 * the caller and the group own (errmsg: valid until eg_group_free). */
EG_EXPORT size_t eg_group_errors(eg_group *g, eg_trace_entry *out, size_t cap);

/* Prints the trace (with tracing on) or else the errors to f as an
 * aligned table: task (its name, else its arg as a pointer), outcome,
 * result text, start and end in ms relative to the first start (start "-"
 * when not measured), and a mark: "<- first error" on the entry eg_wait
 * returns, "<- winner" on the EG_FIRST_SUCCESS winner, "<- detached" on
 * tasks eg_wait_grace left running. A last line gives eg_wait's result.
 * Returns: 0; -EINVAL for NULL g or f; -ENOMEM (nothing printed); -EIO when
 * writing to f failed.
 * Blocks: on f's writes.
 * Thread-safety: any thread; prints a snapshot (call it after eg_wait for
 * the whole story).
 * Ownership: f stays the caller's; it is not flushed. */
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

/* Chooses how task results steer the group (see eg_policy). Limits,
 * tracing, nested groups and both executors work with every policy; the
 * parent's cancel and deadline reach the tasks under every policy.
 * Returns: 0; -EINVAL for NULL g or an unknown policy; -EBUSY and no change
 *   while any task is active.
 * Blocks: no. Thread-safety: as eg_set_limit. Ownership: nothing moves. */
EG_EXPORT int eg_group_set_policy(eg_group *g, eg_policy p);

/* The winner of an EG_FIRST_SUCCESS group: the arg its task was started
 * with. NULL before any task succeeded, under other policies, and for NULL
 * g (so a winner whose arg is NULL cannot be told from none: give tasks
 * distinct args).
 * Blocks: no. Thread-safety: any thread. Ownership: arg is the caller's. */
EG_EXPORT void *eg_group_winner(eg_group *g);

/* ---- a bounded wait -------------------------------------------------------- */

/* As eg_wait while the group's context is live (except that it does not
 * run queued tasks on the calling thread). Once the context is done (a
 * failure, the first success, the parent's cancel or deadline) it waits at
 * most grace_ns more; tasks still admitted then are detached: their
 * results are ignored, they appear in the trace (with tracing on) and in
 * eg_group_errors with outcome EG_OUTCOME_DETACHED (without tracing, and
 * for tasks still queued, not started, the group only counts them, and
 * eg_group_print says how many), and the group
 * accepts no new task (eg_go returns -ECANCELED). The context is cancelled
 * as eg_wait does.
 * After a detach, eg_group_free returns at once: the group's memory and
 * context live until the last detached task returns, which frees them
 * (eg_live_objects drops then). For tasks stuck in code no context reaches
 * (a blocking gethostbyname, a library without a cancellable call).
 * Returns: what eg_wait returns (the first error; 0 for an EG_FIRST_SUCCESS
 *   win); when tasks were detached and that is 0 without a win, the
 *   context's error (-ECANCELED, -ETIMEDOUT); -EINVAL for NULL g or
 *   grace_ns < 0; -EDEADLK from inside one of the group's own tasks.
 * Blocks: until the tasks return, or grace_ns after the context is done.
 * Thread-safety: as eg_wait. Ownership: detached tasks keep their args;
 *   the caller must let them finish with them (they may return any time). */
EG_EXPORT int eg_wait_grace(eg_group *g, int64_t grace_ns);

/* ---- waiting from an event loop ------------------------------------------- */

/* Called once by eg_wait_async: err is what eg_wait would return. */
typedef void (*eg_done_fn)(eg_group *g, int err, void *arg);

/* Returns at once; fn(g, err, arg) runs exactly once, on a library thread
 * (a pool thread; never inside this call, even on an idle group), after
 * every task started before this call has returned (and any started since
 * that kept the group busy), with err as eg_wait would return it and the
 * group's context cancelled as eg_wait does. fn may call eg_group_free(g)
 * (then nobody else may); fn may start more tasks and call eg_wait_async
 * again. Typical use: fn posts to an event loop (uv_async_send, a write to
 * an eventfd) and the loop thread reads the result.
 * Returns: 0; -EINVAL for NULL g or fn; -EBUSY when an async wait is
 *   already pending (fn will not be called).
 * Blocks: no. Thread-safety: any thread; the caller may exit before fn
 *   runs. eg_group_free called meanwhile (not from fn) waits until fn has
 *   returned.
 * Ownership: arg stays the caller's; it is passed to fn unchanged. */
EG_EXPORT int eg_wait_async(eg_group *g, eg_done_fn fn, void *arg);

/* "ok", "failed", "cancelled" or "detached". */
EG_EXPORT const char *eg_outcome_name(eg_outcome outcome);

/* Waits for running tasks (as eg_wait does, without cancelling) and for a
 * pending or running eg_wait_async callback to return (unless called from
 * that callback), then frees the group and drops
 * its context. After eg_wait_grace detached tasks it returns at once and
 * the last of them frees the group. NULL-safe. Called from inside one of the
 * group's own tasks it does nothing (the group cannot be freed there).
 * Using g after this call is undefined behaviour that is not detected. */
EG_EXPORT void eg_group_free(eg_group *g);

#ifdef __cplusplus
}
#endif
#endif
