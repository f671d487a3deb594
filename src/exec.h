/*
 * exec.h - the executor seam: how tasks are run and how any task waits.
 *
 * Everything above this line (group, ctx, sync, chan, sem, io, cond, hedge,
 * the adapters) runs tasks through an eg__exec and blocks only through the
 * calls below, so none of it knows whether a task is a pool thread or a
 * coroutine. Two executors implement the seam: the thread pool (pool.c, the
 * default) and the coroutine executor (coro.c; coro_stub.c stands in where
 * it is not built).
 *
 * The one waiting primitive is a futex that works for every kind of task:
 * eg__futex_wait parks the calling thread (futex(2)) or coroutine (the
 * coroutine executor's parking lot) while a word holds an expected value,
 * and eg__futex_wake wakes both kinds. The parker, the waiter lists of
 * groups, channels and semaphores, and eg_ctx_wait are built on it.
 */
#ifndef EG_EXEC_H
#define EG_EXEC_H

#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* ---- running tasks ------------------------------------------------------ */

typedef struct eg__exec eg__exec;
struct eg__exec {
    eg_executor kind;
    /* Queues t (q: the group's queue; NULL: the executor's shared queue)
     * and makes sure it runs exactly once. Returns 0, or -EAGAIN/-ENOMEM:
     * then t was never visible to another thread and is the caller's. */
    int (*submit)(eg__queue *q, eg__task *t);
    /* Runs q's tasks that no thread has started yet, in the calling task,
     * because it is about to wait for them (eg_wait). Returns once q has no
     * unstarted task left. */
    void (*help)(eg__queue *q);
};

EG_HIDDEN extern const eg__exec eg__exec_threads; /* pool.c */
EG_HIDDEN extern const eg__exec eg__exec_coro;    /* coro.c */
/* The executor for a group that chose none: EG_EXECUTOR, else threads. */
EG_HIDDEN const eg__exec *eg__exec_default(void);
/* eg_pool_configure's executor: 0, -EINVAL, -ENOTSUP. */
EG_HIDDEN int eg__exec_set_default(eg_executor kind);
/* The executor for kind, or NULL if this build has none of that kind. */
EG_HIDDEN const eg__exec *eg__exec_get(eg_executor kind);

/* ---- waiting ------------------------------------------------------------ */

/* Blocks the calling task while *word == expected, until eg__futex_wake on
 * word or deadline_ns (monotonic; INT64_MAX: none). Returns 0 when woken
 * (possibly spuriously: callers re-check their condition), -EAGAIN when
 * *word != expected on entry, -ETIMEDOUT. */
EG_HIDDEN int eg__futex_wait(atomic_uint *word, unsigned expected, int64_t deadline_ns);
/* Wakes up to n tasks blocked on word (threads and coroutines). Callable
 * from any thread under any lock; never blocks. word may already be freed
 * memory of a waiter that returned: only its address is used. */
EG_HIDDEN void eg__futex_wake(atomic_uint *word, int n);

/* A parker puts the task that initialized it to sleep until another thread
 * unparks it. One-shot: init, park at most once, unpark any number of
 * times (the first one counts).
 *
 *   WAITING --eg__unpark--> NOTIFIED    (eg__park returns 0)
 *   WAITING --deadline----> TIMEDOUT    (eg__park returns -ETIMEDOUT)
 *
 * A compare-and-swap out of WAITING decides the race between the two. The
 * parker lives in the waiter's frame: the unparker touches it only up to
 * that CAS (the wake that follows uses the address alone), so whoever frees
 * the waiter's frame needs no further handshake with the unparker. */
struct eg__parker {
    atomic_uint state;
};

enum { EG__PARK_WAITING, EG__PARK_NOTIFIED, EG__PARK_TIMEDOUT };

static inline void eg__parker_init(eg__parker *p)
{
    atomic_init(&p->state, EG__PARK_WAITING);
}
/* Returns 0 once unparked, or -ETIMEDOUT at deadline_ns (INT64_MAX: none). */
EG_HIDDEN int eg__park(eg__parker *p, int64_t deadline_ns);
/* Ends p's park (or makes the next one return at once). Never blocks. */
EG_HIDDEN void eg__unpark(eg__parker *p);

/* A context waiter (eg__ctx_watch) whose wake unparks parker: a park that
 * also ends when the context is done. Lives in the waiter's frame. */
typedef struct eg__parker_watch {
    eg__waiter waiter;
    eg__parker *parker;
} eg__parker_watch;
EG_HIDDEN void eg__parker_watch_wake(eg__waiter *w);
#define EG__PARKER_WATCH(p) \
    ((eg__parker_watch){.waiter.wake = eg__parker_watch_wake, .parker = (p)})

/* Waits until fd is ready for events (poll(2) bits), ctx is done, or
 * deadline_ns passes. Returns the revents (> 0), 0 at the deadline, ctx's
 * error, or -errno. The context wins a tie. */
EG_HIDDEN int eg__wait_fd(eg_ctx *ctx, int fd, short events, int64_t deadline_ns);

/* Spins a little while done(arg) is false: most waits in a fan-out end
 * within microseconds, and a spin saves the sleep and the wake-up on both
 * sides. Returns done(arg)'s last value. Only threads spin; a coroutine
 * returns at once, since its carrier has better work to do. */
EG_HIDDEN bool eg__spin_wait(bool (*done)(void *), void *arg);
/* How long a waiter spins before it sleeps, and how a spinning thread (a
 * waiter, or an idle pool worker looking for work) pauses between looks. */
#define EG__SPIN_NS (20 * EG_NSEC_PER_USEC)
EG_HIDDEN void eg__spin_pause(void);

/* Brackets code that blocks its thread outside the library (the user's
 * pthread_cond_wait in eg_cond_wait): on a coroutine the carrier's other
 * work moves to another carrier meanwhile. No-ops on a thread. */
EG_HIDDEN void eg__blocking_begin(void);
EG_HIDDEN void eg__blocking_end(void);

/* ---- the coroutine executor's side (coro.c, or coro_stub.c) -------------- */

/* Non-NULL when the caller runs on a coroutine. */
EG_HIDDEN void *eg__coro_self(void);
EG_HIDDEN int eg__coro_futex_wait(atomic_uint *word, unsigned expected,
                                  int64_t deadline_ns);
/* Wakes coroutines parked on word; returns how many. */
EG_HIDDEN int eg__coro_futex_wake(atomic_uint *word, int n);
EG_HIDDEN int eg__coro_wait_fd(eg_ctx *ctx, int fd, short events, int64_t deadline_ns);
EG_HIDDEN void eg__coro_blocking_begin(void);
EG_HIDDEN void eg__coro_blocking_end(void);
EG_HIDDEN void eg__coro_yield(void);
/* Between begin and end (nesting), the carrier wake-ups that unparking
 * coroutines would send are deferred to end, one per carrier: a cancel
 * that releases many coroutines wakes each carrier once. Any thread. */
EG_HIDDEN void eg__coro_batch_begin(void);
EG_HIDDEN void eg__coro_batch_end(void);
/* Bracket a thread's eg__spin_wait: while a thread spins for a result (and
 * for a moment after, when it usually submits the next task), an idle
 * carrier spins for work too instead of sleeping, so the hand-off needs no
 * thread wake. Any thread; cheap. */
EG_HIDDEN void eg__coro_watch_begin(void);
EG_HIDDEN void eg__coro_watch_end(void);

#endif
