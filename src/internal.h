/*
 * internal.h - what the library's files share and users never see.
 *
 * Dependencies point one way: group -> executor (exec.h: pool, coroutines)
 * and ctx; ctx -> timer, pool; blocking points (io, cond, chan, sem, sync)
 * -> ctx, exec.h; adapters (curl, redis, pq) -> the public blocking points.
 * Nothing here is exported.
 *
 * Lock order of the whole library (a lock may be taken while holding the
 * ones to its left, never the other way round):
 *
 *   user mutex (eg_cond_wait's mu)     -> context lock
 *   channel / semaphore lock           -> context lock
 *   context lock -> child context lock (cancellation walks down: an
 *                                       iterative walk that holds the locks
 *                                       of the path, as deep as the tree)
 *   context lock -> pool lock          (eg_after_func posts its callback)
 *   context lock -> timer lock         (arming and disarming a deadline)
 *   context lock -> cond.c waker lock  (handing over a deferred wake-up)
 *   pool lock    -> timer lock         (arming the thread-start retry and
 *                                       the stall check; fork.c takes both
 *                                       in this order around fork())
 *   group lock   -> nothing            (waiters are unparked under it)
 *
 * Taken only by trylock against that order: a user mutex from under a
 * context lock or from the waker thread (cond.c). Unparking (exec.h) takes
 * no lock, so any lock may be held around eg__unpark and eg__futex_wake.
 * No user code runs under a library lock.
 */
#ifndef EG_INTERNAL_H
#define EG_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "errgroup.h"
#include "list.h"

#define EG_HIDDEN __attribute__((visibility("hidden")))
#define EG_LIKELY(x) __builtin_expect(!!(x), 1)
#define EG_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- fault injection (fault.c) -------------------------------------- */
/* Every allocation, thread start and fd creation of the library goes
 * through these, so tests can make the Nth call fail (tests/fault.h).
 * Without EG_FAULT_INJECTION they are the libc calls. */
#ifdef EG_FAULT_INJECTION
EG_HIDDEN void *eg__malloc(size_t n);
EG_HIDDEN void *eg__calloc(size_t n, size_t size);
EG_HIDDEN int eg__pthread_create(pthread_t *t, const pthread_attr_t *a,
                                 void *(*fn)(void *), void *arg);
/* True when the fd about to be created must fail (as with EMFILE). */
EG_HIDDEN bool eg__fault_fd(void);
#else
#define eg__malloc(n) malloc(n)
#define eg__calloc(n, s) calloc(n, s)
#define eg__pthread_create(t, a, f, x) pthread_create(t, a, f, x)
#define eg__fault_fd() false
#endif

/* ---- pool.c ------------------------------------------------------------ */
/* A unit of work. The pool never allocates: callers embed eg__task in their
 * own objects. run() owns the task from the moment it is called. */
typedef struct eg__task eg__task;
typedef struct eg__queue eg__queue;
struct eg__task {
    eg__link link;  /* in its pool queue (pool.c) */
    eg__task *next; /* in the coroutine executor's queues (coro.c) */
    void (*run)(eg__task *t);
    eg__queue *queue;
    int64_t queued_at; /* eg__now_coarse() when queued: the stall report and stats */
};
/* A FIFO of tasks that the pool serves round-robin with the other ready
 * queues. A group owns one, so eg_wait can take its own pending tasks.
 * Guarded by the pool lock. */
struct eg__queue {
    eg__list tasks;      /* of eg__task, through link */
    eg__link ready_link; /* in the pool's ready list, while ready */
    int ready;
};
/* Queues t on q (NULL: the pool's shared queue) and makes sure a thread
 * will run it. Returns 0, or -EAGAIN when no thread exists or can be
 * started to run it (t was not queued). */
EG_HIDDEN int eg__pool_submit(eg__queue *q, eg__task *t);
/* Like eg__pool_submit, but never fails: if no thread can start now, t
 * stays queued, and the pool retries starting one every millisecond (from
 * the timer thread) until one starts or a worker frees. */
EG_HIDDEN void eg__pool_post(eg__task *t);
/* A thread that spins waiting for tasks to finish (eg_go at the limit,
 * eg_wait) brackets its spin with begin/end and calls poll(eg_now()) in the
 * loop: workers then defer waking other workers while it watches. */
EG_HIDDEN void eg__pool_watch_begin(void);
EG_HIDDEN void eg__pool_watch_poll(int64_t now);
EG_HIDDEN void eg__pool_watch_end(void);
/* Removes and returns the first task of q not yet picked by a thread, or
 * NULL. */
EG_HIDDEN eg__task *eg__pool_take(eg__queue *q);

/* ---- timer.c ----------------------------------------------------------- */
typedef struct eg__timer eg__timer;
struct eg__timer {
    int64_t when;
    size_t index;               /* in the heap; SIZE_MAX when not armed */
    void (*fire)(eg__timer *t); /* called on the timer thread, unlocked */
};
/* Arms t to fire at t->when. Returns 0 or -ENOMEM/-EAGAIN. */
EG_HIDDEN int eg__timer_add(eg__timer *t);
/* Disarms t. Returns true if it was armed (fire will not be called);
 * false if it fired or is firing: then the caller must not free t before
 * eg__timer_wait(t). */
EG_HIDDEN bool eg__timer_del(eg__timer *t);
/* Waits until t's fire callback is not running. Called from a fire callback
 * (on the timer thread) it returns at once: the callback then must not touch
 * t after the call that freed it. */
EG_HIDDEN void eg__timer_wait(eg__timer *t);

/* ---- ctx.c: waiting on a context ---------------------------------------- */
/* A waiter is told once when its context is done: wake() runs with the
 * context's lock held and must not block or call back into the context. */
typedef struct eg__waiter eg__waiter;
struct eg__waiter {
    eg__link link; /* in its context's waiter list */
    void (*wake)(eg__waiter *w);
    int linked;
};
/* Registers w on ctx. Returns 0 (registered; wake() will run once unless
 * removed), or ctx's error when ctx is already done (not registered), or
 * 1 when ctx can never be done (not registered). */
EG_HIDDEN int eg__ctx_watch(eg_ctx *ctx, eg__waiter *w);
/* Unregisters w. Returns true if w was still registered (wake() never ran
 * and never will). After it returns false, wake() has completed. */
EG_HIDDEN bool eg__ctx_unwatch(eg_ctx *ctx, eg__waiter *w);

/* ---- group.c: the task running on this thread ---------------------------- */
/* One frame per running task, on the task's own stack; eg__current is the
 * innermost. It is the only per-task thread-local state of the library: a
 * coroutine switch saves and restores the pointer. */
typedef struct eg__frame eg__frame;
struct eg__frame {
    eg__frame *prev;
    const void *owner; /* the group whose task runs in this frame */
    int msg_code;      /* eg_errorf's code and text for this task */
    bool msg_set;
    char msg[EG_ERRMSG_MAX];
};
EG_HIDDEN extern _Thread_local eg__frame *eg__current;

/* ---- saturating time arithmetic ----------------------------------------- */
/* a + b clamped to [INT64_MIN, INT64_MAX]: every `now + duration` in the
 * library goes through these, so a huge duration means "never", not a time
 * in the past. */
static inline int64_t eg__add_sat(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}
/* eg_now() within the kernel's tick (a few ms; never ahead of eg_now()),
 * at a fraction of its cost: for timestamps that only feed reports, such as
 * a queued task's wait. Falls back to eg_now() where the clock is missing. */
static inline int64_t eg__now_coarse(void)
{
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return (int64_t)ts.tv_sec * EG_NSEC_PER_SEC + ts.tv_nsec;
#endif
    return eg_now();
}

/* eg_now() + ns, saturated (INT64_MAX: no deadline). */
static inline int64_t eg__deadline_after(int64_t ns)
{
    return eg__add_sat(eg_now(), ns);
}

/* ---- fork.c: what survives fork() --------------------------------------- */
/* Bumped in the child after every fork: state stamped with an older
 * generation belongs to the parent (eg__waiter.gen). */
EG_HIDDEN extern atomic_uint eg__fork_gen;
/* Registers the fork handlers (once); every module calls it at init. */
EG_HIDDEN void eg__fork_init(void);
EG_HIDDEN void eg__pool_atfork_prepare(void);
EG_HIDDEN void eg__pool_atfork_parent(void);
EG_HIDDEN void eg__pool_atfork_child(void);
EG_HIDDEN void eg__timer_atfork_prepare(void);
EG_HIDDEN void eg__timer_atfork_parent(void);
EG_HIDDEN void eg__timer_atfork_child(void);
EG_HIDDEN void eg__io_atfork_child(void);
EG_HIDDEN void eg__cond_atfork_child(void);
/* ---- trace.c ------------------------------------------------------------ */
/* A group's per-task trace, in finishing order; the group's lock guards it. */
typedef struct eg__trace {
    eg_trace_entry *v;
    size_t n, cap;
} eg__trace;
/* Appends e; drops it if the array cannot grow (documented). */
EG_HIDDEN void eg__trace_append(eg__trace *t, const eg_trace_entry *e);
/* Copies up to cap entries to out; returns how many t holds. */
EG_HIDDEN size_t eg__trace_copy(const eg__trace *t, eg_trace_entry *out, size_t cap);
EG_HIDDEN void eg__trace_free(eg__trace *t);

/* ---- group_result.c, for print.c ----------------------------------------- */
/* A snapshot of what eg_group_print shows: the trace when tracing was on,
 * else the errors (v: malloc'd copy, the caller frees it). */
typedef struct eg__print_info {
    eg_trace_entry *v;
    size_t n;
    bool tracing;
    bool has_winner;
    size_t winner_index; /* in v; SIZE_MAX: none known */
    size_t ndetached;
    int err; /* what eg_wait returns */
} eg__print_info;
EG_HIDDEN size_t eg__group_print_info(eg_group *g, eg__print_info *pi);

/* ---- cond.c: waiting on a parker under a mutex ------------------------------- */
typedef struct eg__parker eg__parker;
/* Called with mu held, after queuing a node holding p where a peer finds it
 * and unparks p under mu. Releases mu, parks until unparked or ctx is done,
 * takes mu again. Returns 0 or ctx's error; either way the caller decides
 * from its node's state under mu whether a peer settled it. */
EG_HIDDEN int eg__wait_parked(eg_ctx *ctx, pthread_mutex_t *mu, eg__parker *p);

/* ---- common.c ---------------------------------------------------------- */
/* Counts live objects for eg_live_objects(); delta +1 on create, -1 on free. */
EG_HIDDEN void eg__live(long delta);
EG_HIDDEN void eg__errtext(int err, char *buf, size_t len);
EG_HIDDEN void eg__ts_from_ns(struct timespec *ts, int64_t ns);
/* Initializes attr for condition variables timed on CLOCK_MONOTONIC. */
EG_HIDDEN void eg__condattr_monotonic(pthread_condattr_t *attr);

#endif
