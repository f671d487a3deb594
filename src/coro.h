/*
 * coro.h - the coroutine scheduler's internal interface (coro.c, stack.c).
 *
 * A coroutine runs one eg__task on its own small stack on a carrier thread.
 * Carriers are a few threads (one per CPU the process may use); a task that
 * blocks in the library parks its coroutine and the carrier runs another.
 * A started coroutine never moves to another carrier, so thread-local
 * storage and errno seen by a task stay those of one thread for its whole
 * life. Unstarted tasks are freely stolen between carriers.
 */
#ifndef EG_CORO_H
#define EG_CORO_H

#include <stdbool.h>
#include <stdint.h>

#include "exec.h"

/* ---- coro.c ------------------------------------------------------------- */
typedef struct eg__coro eg__coro;

/* Park states. WAITING is where a park starts; NOTIFIED and TIMEDOUT end it
 * (a compare-and-swap from WAITING or PARKED decides which, once). PARKED
 * means the coroutine has fully switched out and the winner of the CAS must
 * make it runnable; from WAITING the CAS winner need do nothing, the
 * parking coroutine sees the result itself. */
enum {
    EG__CPARK_WAITING = 0,
    EG__CPARK_NOTIFIED = 1,
    EG__CPARK_TIMEDOUT = 2,
    EG__CPARK_PARKED = 3
};

/* Queues t to run on a new coroutine. Returns 0, or -EAGAIN when no carrier
 * thread could be started (t was not queued). Any thread. */
EG_HIDDEN int eg__coro_submit(eg__task *t);
/* The same, for a task of q (a group's queue): eg__coro_help(q) finds it. */
EG_HIDDEN int eg__coro_submit_q(eg__queue *q, eg__task *t);
/* The coroutine running on this thread, or NULL on a plain thread
 * (eg__coro_self, exec.h, is the same as a void *). */
EG_HIDDEN eg__coro *eg__coro_current(void);
/* Parks the calling coroutine until eg__coro_unpark(st, self) or
 * deadline_ns (INT64_MAX: none). *st must be WAITING or already NOTIFIED.
 * Returns 0 when notified, -ETIMEDOUT. Coroutine only. */
EG_HIDDEN int eg__coro_park(atomic_uint *st, int64_t deadline_ns);
/* Ends c's park on st (or makes a park that has not switched out yet
 * return at once). Any thread, under any lock; never blocks or allocates.
 * Returns true if this call won (the park ends as notified). */
EG_HIDDEN bool eg__coro_unpark(atomic_uint *st, eg__coro *c);
/* eg__coro_batch_begin/end (exec.h) defer the carrier wake-ups of the
 * unparks between them to the end, one per carrier. */
/* Sleeps the calling coroutine until deadline_ns. */
EG_HIDDEN void eg__coro_sleep_until(int64_t deadline_ns);
/* Waits on the carrier's poller for fd to report one of events (POLLIN,
 * POLLOUT, POLLPRI) or deadline_ns, or an eg__coro_unpark(st, self).
 * *st must be WAITING. Returns poll revents (>0), 0 at the deadline,
 * -ECANCELED when unparked, or a negative errno from epoll (-EBADF...). */
EG_HIDDEN int eg__coro_poll_fd(int fd, short events, int64_t deadline_ns,
                               atomic_uint *st);
/* eg__coro_yield, eg__coro_blocking_begin/end: see exec.h. */
/* Runs the unstarted tasks of q that wait in the global queue on the
 * calling thread, which becomes a temporary carrier for them, until they
 * and every coroutine it started are done. No-op on a coroutine. */
EG_HIDDEN void eg__coro_help(eg__queue *q);
/* Number of carriers the scheduler aims for (starts them on first use). */
EG_HIDDEN int eg__coro_carriers(void);

/* Scheduler counters, for tests and benchmarks. */
typedef struct eg__coro_stats {
    long carriers; /* carrier threads started, rescue ones included */
    long rescues;  /* carriers started by the monitor */
    long started;  /* coroutines started */
    long wakes;    /* thread wake-ups sent to sleeping carriers */
    long steals;   /* successful steals */
} eg__coro_stats;
EG_HIDDEN void eg__coro_get_stats(eg__coro_stats *s);

/* Parses a size from the environment ("65536", "64k", "1m"); dflt when
 * unset or malformed. */
EG_HIDDEN long eg__env_size(const char *name, long dflt);

/* ---- stack.c ------------------------------------------------------------ */
/* Usable bytes per stack (EG_CORO_STACK, rounded up to pages). */
EG_HIDDEN size_t eg__stack_size(void);
/* A stack's lowest usable address, or NULL when out of memory. */
EG_HIDDEN void *eg__stack_get(void);
EG_HIDDEN void eg__stack_put(void *lo);
/* Up to n stacks into out (free ones first, most recently freed first, then
 * fresh ones) under one lock; returns how many (fewer when out of memory). */
EG_HIDDEN int eg__stack_get_n(void **out, int n);
/* Frees n stacks under one lock; lo[0] is the first to be handed out again. */
EG_HIDDEN void eg__stack_put_n(void *const *lo, int n);
EG_HIDDEN void eg__stack_stats(size_t *total, size_t *guarded, size_t *nfree);
/* Resets the allocator's lock in a forked child. */
EG_HIDDEN void eg__stack_atfork_child(void);

#endif
