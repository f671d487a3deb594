/*
 * eg/ctx.h - contexts: cancellation, deadlines and values (Go's "context").
 *
 * A context (eg_ctx) is a node in a tree. Cancelling a node cancels its whole
 * subtree before eg_cancel returns; cancelling a child never touches its
 * parent. A done context stays done: its error (eg_ctx_err) and cause
 * (eg_ctx_cause) never change again.
 *
 * Ownership: every constructor returns a context holding one reference that
 * belongs to the caller; drop it with eg_ctx_release. A child holds a
 * reference to its parent, so a parent may be released before its children.
 * Releasing the last reference detaches the context from its parent (a child
 * that is never cancelled does not leak in its parent). eg_background() is
 * static: retain and release are no-ops on it.
 *
 * Thread safety: every function here may be called from any thread on a
 * context the caller holds a reference to. Using a context after its last
 * reference was released is undefined behaviour that is not detected.
 *
 * Errors: -ECANCELED (Go's context.Canceled) and -ETIMEDOUT (Go's
 * context.DeadlineExceeded). A cause is any negative int the canceller chose.
 */
#ifndef EG_CTX_H
#define EG_CTX_H

#include "eg/common.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eg_ctx eg_ctx;

/* The root: never cancelled, no deadline, no values. Never NULL. */
EG_EXPORT eg_ctx *eg_background(void);

/* A child of parent that eg_cancel can cancel. NULL parent means
 * eg_background(). If parent is already done, the child is done at creation
 * with the parent's error and cause. Returns NULL on ENOMEM. */
EG_EXPORT eg_ctx *eg_with_cancel(eg_ctx *parent);

/* Like eg_with_cancel, and the child is cancelled with -ETIMEDOUT (cause
 * -ETIMEDOUT, or cause when given non-zero) once eg_now() reaches deadline_ns.
 * A deadline later than the parent's reports the parent's deadline. A passed
 * deadline gives a context that is done at creation. Deadlines are kept by
 * one library timer thread started on first use. Returns NULL on ENOMEM (or
 * when the timer thread cannot start). */
EG_EXPORT eg_ctx *eg_with_deadline(eg_ctx *parent, int64_t deadline_ns);
EG_EXPORT eg_ctx *eg_with_deadline_cause(eg_ctx *parent, int64_t deadline_ns,
                                         int cause);
/* eg_with_deadline(parent, eg_now() + timeout_ns), and its _cause twin. */
EG_EXPORT eg_ctx *eg_with_timeout(eg_ctx *parent, int64_t timeout_ns);
EG_EXPORT eg_ctx *eg_with_timeout_cause(eg_ctx *parent, int64_t timeout_ns,
                                        int cause);

/* A child that carries (key, value) and otherwise behaves as parent.
 * Keys compare by pointer; use the address of a static object. The library
 * never dereferences key or value. A NULL parent means eg_background(): the
 * child is then a child of background (never done, no deadline). Returns
 * NULL on ENOMEM. */
EG_EXPORT eg_ctx *eg_with_value(eg_ctx *parent, const void *key, void *value);

/* A child that keeps parent's values but is never cancelled and has no
 * deadline (Go's WithoutCancel). A NULL parent means eg_background() (a
 * child of background, with no values). Returns NULL on ENOMEM. */
EG_EXPORT eg_ctx *eg_without_cancel(eg_ctx *parent);

/* Cancels ctx and, before returning, every descendant, with error
 * -ECANCELED and the given cause (0 means -ECANCELED). The first cancel wins:
 * later calls change nothing. Does nothing on contexts that cannot be
 * cancelled (background, value and without-cancel contexts) and on NULL.
 * Never blocks on user code: callbacks (eg_after_func) run on pool threads,
 * and it may be called while holding a mutex that a task waits on in
 * eg_cond_wait. */
EG_EXPORT void eg_cancel(eg_ctx *ctx, int cause);

/* Adds a reference and returns ctx. NULL-safe. */
EG_EXPORT eg_ctx *eg_ctx_retain(eg_ctx *ctx);
/* Drops a reference; the last one frees ctx and detaches it from its
 * parent. NULL-safe. Does not cancel ctx's children: they hold references. */
EG_EXPORT void eg_ctx_release(eg_ctx *ctx);

/* 0 while ctx is live; then -ECANCELED or -ETIMEDOUT. -EINVAL for NULL.
 * Lock-free. */
EG_EXPORT int eg_ctx_err(eg_ctx *ctx);
/* 0 while ctx is live; then the cause it was cancelled with (the parent's
 * cause when cancelled through its parent). -EINVAL for NULL. */
EG_EXPORT int eg_ctx_cause(eg_ctx *ctx);
/* True and *deadline_ns set when ctx has a deadline. deadline_ns may be
 * NULL. */
EG_EXPORT bool eg_ctx_deadline(eg_ctx *ctx, int64_t *deadline_ns);
/* The value of the nearest ancestor-or-self made by eg_with_value with this
 * key, or NULL. */
EG_EXPORT void *eg_ctx_value(eg_ctx *ctx, const void *key);
/* True once ctx is done (eg_ctx_err(ctx) != 0). */
EG_EXPORT bool eg_ctx_done(eg_ctx *ctx);

/* Blocks until ctx is done and returns eg_ctx_err(ctx). On a context that
 * can never be done (background, without-cancel) it blocks forever, as
 * <-ctx.Done() does in Go. */
EG_EXPORT int eg_ctx_wait(eg_ctx *ctx);
/* Blocks until ctx is done or eg_now() reaches deadline_ns; returns the
 * context's error, or 0 at the deadline. */
EG_EXPORT int eg_ctx_wait_until(eg_ctx *ctx, int64_t deadline_ns);

/* A file descriptor that polls readable (POLLIN) once ctx is done, for event
 * loops. Created on first call (an eventfd; a pipe where there is no
 * eventfd), owned by the context of which ctx is a view, closed when it is
 * freed: do not close or read it. Returns the fd or -EMFILE/-ENFILE/-ENOMEM;
 * -EINVAL for NULL or a context that can never be done. */
EG_EXPORT int eg_ctx_fd(eg_ctx *ctx);

typedef struct eg_after eg_after;

/* Arranges for fn(arg) to run once, on a pool thread, after ctx is done (at
 * once if it already is). Never runs fn inside the caller of eg_cancel. On a
 * context that can never be done (eg_background, eg_without_cancel and
 * their value children) fn never runs; eg_after_stop then returns true. The
 * handle keeps ctx alive until eg_after_stop. After fork(), a handle made in
 * the parent never runs fn in the child (eg/pool.h). Returns NULL on ENOMEM
 * or NULL arguments. */
EG_EXPORT eg_after *eg_after_func(eg_ctx *ctx, void (*fn)(void *), void *arg);
/* Stops fn from running if it has not started: returns true if this call
 * prevented it, false if fn already started or finished (it does not wait
 * for a running fn). Frees the handle: call it exactly once per handle,
 * also after fn ran. NULL-safe (returns false). */
EG_EXPORT bool eg_after_stop(eg_after *after);

#ifdef __cplusplus
}
#endif
#endif
