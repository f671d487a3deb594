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

/* A new group whose context is a child of parent (Go's WithContext); NULL
 * parent means eg_background(). Returns NULL on ENOMEM. */
EG_EXPORT eg_group *eg_group_new(eg_ctx *parent);

/* The group's context, borrowed: valid until eg_group_free (retain it to
 * keep it longer). */
EG_EXPORT eg_ctx *eg_group_ctx(eg_group *g);

/* Starts fn(ctx, arg) on the pool. Returns 0 once fn is started: it will
 * run exactly once. On failure fn is not started and arg still belongs to
 * the caller: -EINVAL (NULL g or fn, or a limit of 0), -ENOMEM, -EAGAIN (no
 * thread could be started to run it).
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

/* "ok", "failed" or "cancelled". */
EG_EXPORT const char *eg_outcome_name(eg_outcome outcome);

/* Waits for running tasks (as eg_wait does, without cancelling), then frees
 * the group and drops its context. NULL-safe. Called from inside one of the
 * group's own tasks it does nothing (the group cannot be freed there).
 * Using g after this call is undefined behaviour that is not detected. */
EG_EXPORT void eg_group_free(eg_group *g);

#ifdef __cplusplus
}
#endif
#endif
