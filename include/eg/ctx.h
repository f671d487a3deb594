/*
 * eg/ctx.h - contexts: cancellation, deadlines and values (Go's "context").
 *
 * A context (eg_ctx) is a node in a tree. Cancelling a node cancels its whole
 * subtree before eg_cancel returns; cancelling a child never touches its
 * parent. A done context stays done: its error (eg_ctx_err) and cause
 * (eg_ctx_cause) never change again.
 *
 * Ownership: Every constructor returns a context holding one reference that
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

/**
 * eg_background() - the root context
 *
 * Never cancelled, no deadline, no values (Go's context.Background). The
 * parent of every tree; functions that take a parent treat NULL as this.
 *
 * Returns: The background context. Never NULL, never fails.
 * Blocks: No.
 * Thread-safety: Any thread, any time.
 * Ownership: Static: eg_ctx_retain() and eg_ctx_release() are no-ops on
 * it, and releasing it is harmless.
 * NULL: No pointer arguments.
 */
EG_EXPORT eg_ctx *eg_background(void);

/**
 * eg_with_cancel() - a child context that eg_cancel() can cancel
 *
 * Go's WithCancel and WithCancelCause: eg_cancel(child, cause) cancels
 * the child and its subtree. If parent is already done, the child is done
 * at creation with the parent's error and cause; when parent is cancelled
 * later, so is the child, before that eg_cancel() returns.
 *
 * Returns: The new context, or NULL when memory ran out (ENOMEM).
 * Blocks: No (takes the parent's lock briefly to link the child).
 * Thread-safety: Any thread, concurrently, on a parent the caller holds a
 * reference to.
 * Ownership: The caller owns one reference to the result: drop it with
 * eg_ctx_release(). The child holds its own reference to parent.
 * NULL: parent NULL means eg_background().
 * See also: eg_cancel, eg_ctx_release
 */
EG_EXPORT eg_ctx *eg_with_cancel(eg_ctx *parent);

/**
 * eg_with_deadline(), eg_with_deadline_cause() - a child context with a deadline
 *
 * Like eg_with_cancel(), and the child is cancelled with error -ETIMEDOUT
 * once eg_now() reaches deadline_ns (Go's WithDeadline and
 * WithDeadlineCause). Its cause is then -ETIMEDOUT, or cause when
 * eg_with_deadline_cause() is given a non-zero one. A deadline later than
 * the parent's reports the parent's (eg_ctx_deadline()); a passed deadline
 * gives a context that is done at creation. Deadlines are kept by one
 * library timer thread, started on first use.
 *
 * Returns: The new context, or NULL when memory ran out or the timer thread
 * could not be started.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently, on a parent the caller holds a
 * reference to.
 * Ownership: The caller owns one reference to the result (eg_ctx_release()
 * drops it and stops its timer once it is the last).
 * NULL: parent NULL means eg_background().
 * See also: eg_with_timeout, eg_ctx_deadline
 */
EG_EXPORT eg_ctx *eg_with_deadline(eg_ctx *parent, int64_t deadline_ns);
EG_EXPORT eg_ctx *eg_with_deadline_cause(eg_ctx *parent, int64_t deadline_ns, int cause);
/**
 * eg_with_timeout(), eg_with_timeout_cause() - a child context with a timeout
 *
 * eg_with_deadline(parent, eg_now() + timeout_ns), and its _cause twin
 * (Go's WithTimeout and WithTimeoutCause). The sum saturates: a huge
 * timeout_ns means no deadline in practice, never an overflow; a timeout
 * <= 0 gives a context that is done at creation.
 *
 * Returns: The new context, or NULL when memory ran out or the timer thread
 * could not be started.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently, on a parent the caller holds a
 * reference to.
 * Ownership: The caller owns one reference to the result.
 * NULL: parent NULL means eg_background().
 * See also: eg_with_deadline
 */
EG_EXPORT eg_ctx *eg_with_timeout(eg_ctx *parent, int64_t timeout_ns);
EG_EXPORT eg_ctx *eg_with_timeout_cause(eg_ctx *parent, int64_t timeout_ns, int cause);

/**
 * eg_with_value() - a child context that carries a value
 *
 * A child that carries (key, value) and otherwise behaves as parent (Go's
 * WithValue): eg_ctx_value() on it or its descendants finds value. Keys
 * compare by pointer: use the address of a static object of your own.
 *
 * Returns: The new context, or NULL when memory ran out.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: The caller owns one reference to the result. key and value
 * stay the caller's: the library never dereferences or frees them, so they
 * must outlive every use of eg_ctx_value() that may return them.
 * NULL: parent NULL means eg_background(); key and value may be NULL.
 * See also: eg_ctx_value
 */
EG_EXPORT eg_ctx *eg_with_value(eg_ctx *parent, const void *key, void *value);

/**
 * eg_without_cancel() - a child context that is never cancelled
 *
 * A child that keeps parent's values but is never cancelled and has no
 * deadline (Go's WithoutCancel): for work that must finish even when the
 * request that started it was cancelled.
 *
 * Returns: The new context, or NULL when memory ran out.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: The caller owns one reference to the result.
 * NULL: parent NULL means eg_background().
 */
EG_EXPORT eg_ctx *eg_without_cancel(eg_ctx *parent);

/**
 * eg_cancel() - cancel a context and its subtree
 *
 * Cancels ctx and, before returning, every descendant, with error
 * -ECANCELED and the given cause (0 means -ECANCELED). The first cancel
 * wins: later calls change nothing. Does nothing on contexts that cannot be
 * cancelled (background, value and without-cancel contexts).
 *
 * Returns: Nothing.
 * Blocks: Only on the library's internal locks, never on user code:
 * eg_after_func() callbacks run on pool threads, and it may be called while
 * holding a mutex that a task waits on in eg_cond_wait().
 * Thread-safety: Any thread, concurrently with every other call on ctx.
 * Ownership: ctx stays the caller's; cancelling drops no reference.
 * NULL: ctx NULL does nothing.
 */
EG_EXPORT void eg_cancel(eg_ctx *ctx, int cause);

/**
 * eg_ctx_retain() - add a reference to a context
 *
 * Returns: ctx.
 * Blocks: No (an atomic increment).
 * Thread-safety: Any thread, on a context the caller holds a reference to.
 * Ownership: The caller owns one more reference, to drop with
 * eg_ctx_release().
 * NULL: Returns NULL.
 */
EG_EXPORT eg_ctx *eg_ctx_retain(eg_ctx *ctx);
/**
 * eg_ctx_release() - drop a reference to a context
 *
 * The last reference frees ctx and detaches it from its parent (a child
 * that is never cancelled does not leak in its parent). Releasing does not
 * cancel ctx's children: each holds a reference to ctx.
 *
 * Returns: Nothing.
 * Blocks: No (the last release takes the parent's lock briefly).
 * Thread-safety: Any thread. Using ctx after its last reference is
 * released is undefined behaviour that is not detected.
 * Ownership: Consumes one reference of the caller's.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_ctx_release(eg_ctx *ctx);

/**
 * eg_ctx_err() - why a context is done, or 0
 *
 * Go's ctx.Err(). Once non-zero it never changes again.
 *
 * Returns: 0 while ctx is live; then -ECANCELED, or -ETIMEDOUT when its
 * deadline passed; -EINVAL for NULL.
 * Blocks: No (lock-free).
 * Thread-safety: Any thread, concurrently.
 * Ownership: ctx stays the caller's.
 * NULL: Returns -EINVAL.
 * See also: eg_ctx_cause, eg_ctx_done
 */
EG_EXPORT int eg_ctx_err(eg_ctx *ctx);
/**
 * eg_ctx_cause() - the cause a context was cancelled with, or 0
 *
 * Go's context.Cause(ctx).
 *
 * Returns: 0 while ctx is live; then the cause given to eg_cancel() (the
 * parent's cause when cancelled through its parent; -ETIMEDOUT or the
 * deadline's cause when its deadline passed); -EINVAL for NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: ctx stays the caller's.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_ctx_cause(eg_ctx *ctx);
/**
 * eg_ctx_deadline() - the deadline of a context
 *
 * Go's ctx.Deadline(): the earliest deadline of ctx and its ancestors.
 *
 * Returns: True and *deadline_ns set (an eg_now() value) when ctx has a
 * deadline; false and *deadline_ns untouched otherwise.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: ctx stays the caller's; *deadline_ns is the caller's memory.
 * NULL: deadline_ns may be NULL (only the answer is returned); ctx NULL
 * returns false.
 */
EG_EXPORT bool eg_ctx_deadline(eg_ctx *ctx, int64_t *deadline_ns);
/**
 * eg_ctx_value() - look up a value carried by a context
 *
 * Go's ctx.Value(key): searches ctx and then its ancestors for a context
 * made by eg_with_value() with this key (compared by pointer).
 *
 * Returns: The value of the nearest match, or NULL when there is none.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: The value is returned as stored; it stays whoever's it was.
 * NULL: ctx NULL returns NULL; a NULL key is a key like any other.
 */
EG_EXPORT void *eg_ctx_value(eg_ctx *ctx, const void *key);
/**
 * eg_ctx_done() - whether a context is done
 *
 * Returns: True once ctx is done (eg_ctx_err(ctx) != 0), false while it is
 * live.
 * Blocks: No (lock-free).
 * Thread-safety: Any thread, concurrently.
 * Ownership: ctx stays the caller's.
 * NULL: Returns true (a NULL context is reported as -EINVAL by
 * eg_ctx_err()).
 */
EG_EXPORT bool eg_ctx_done(eg_ctx *ctx);

/**
 * eg_ctx_wait() - wait until a context is done
 *
 * Go's <-ctx.Done().
 *
 * Returns: eg_ctx_err(ctx) once ctx is done (-ECANCELED or -ETIMEDOUT);
 * -EINVAL for NULL.
 * Blocks: Until ctx is done. On a context that can never be done
 * (background, without-cancel) it blocks forever, as in Go.
 * Thread-safety: Any thread, any number of waiters.
 * Ownership: ctx stays the caller's; keep a reference while waiting.
 * NULL: Returns -EINVAL.
 * See also: eg_ctx_wait_until, eg_ctx_fd
 */
EG_EXPORT int eg_ctx_wait(eg_ctx *ctx);
/**
 * eg_ctx_wait_until() - wait until a context is done or a deadline passes
 *
 * Returns: The context's error once it is done; 0 when eg_now() reaches
 * deadline_ns first; -EINVAL for NULL.
 * Blocks: Until ctx is done or deadline_ns.
 * Thread-safety: Any thread, any number of waiters.
 * Ownership: ctx stays the caller's.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_ctx_wait_until(eg_ctx *ctx, int64_t deadline_ns);

/**
 * eg_ctx_fd() - a file descriptor that polls readable once a context is done
 *
 * For event loops (poll(2), epoll, libuv): the descriptor polls readable
 * (POLLIN) once ctx is done, and stays readable. Created on the first call
 * (an eventfd; a pipe where there is no eventfd); later calls return the
 * same descriptor.
 *
 * Returns: The descriptor (>= 0); -EMFILE, -ENFILE or -ENOMEM when it could
 * not be made (a later call tries again); -EINVAL for NULL or a context
 * that can never be done.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: The descriptor belongs to the context of which ctx is a view
 * and is closed when that context is freed: do not close or read it.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_ctx_fd(eg_ctx *ctx);

typedef struct eg_after eg_after;

/**
 * eg_after_func() - run a function once a context is done
 *
 * Go's context.AfterFunc: arranges for fn(arg) to run once, on a pool
 * thread, after ctx is done (at once if it already is). fn never runs
 * inside the caller of eg_cancel(). On a context that can never be done
 * (eg_background(), eg_without_cancel() and their value children) fn never
 * runs; eg_after_stop() then returns true. A handle made before fork()
 * never runs fn in the child (eg/pool.h).
 *
 * Returns: A handle for eg_after_stop(), or NULL when memory ran out or an
 * argument is NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: The caller owns the handle and must pass it to eg_after_stop()
 * exactly once, also after fn ran. The handle keeps a reference to ctx
 * until then. arg stays the caller's; fn may free it.
 * NULL: ctx or fn NULL returns NULL; arg may be NULL.
 */
EG_EXPORT eg_after *eg_after_func(eg_ctx *ctx, void (*fn)(void *), void *arg);
/**
 * eg_after_stop() - stop an eg_after_func() callback and free its handle
 *
 * Stops fn from running if it has not started.
 *
 * Returns: True if this call prevented fn from running, false if fn already
 * started or finished.
 * Blocks: No: it does not wait for a running fn.
 * Thread-safety: Any thread, concurrently with fn and with eg_cancel().
 * Ownership: Frees the handle (and its reference to the context): call it
 * exactly once per handle, also after fn ran.
 * NULL: Returns false.
 */
EG_EXPORT bool eg_after_stop(eg_after *after);

#ifdef __cplusplus
}
#endif
#endif
