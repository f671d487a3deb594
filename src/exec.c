/*
 * exec.c - the executor seam's shared half: the futex for any task, the
 * parker on top of it, waiting for an fd, the bounded spin, and the choice
 * of executor.
 *
 * Each call asks once whether the caller is a coroutine (eg__coro_self, one
 * thread-local load) and takes that executor's path; otherwise the thread
 * path below. A parker's state machine:
 *
 *   WAITING --owner about to sleep--> SLEEPING --unpark--> NOTIFIED (+ wake)
 *   WAITING --unpark (owner still awake)--> NOTIFIED       (no wake needed)
 *   WAITING/SLEEPING --deadline, owner's CAS wins--> TIMEDOUT
 *
 * Only the unparker's exchange and the owner's CAS leave WAITING/SLEEPING,
 * so exactly one of them decides the outcome. The wake after the exchange
 * uses only p's address: the owner may have returned and reused the memory,
 * which at worst causes a spurious wake that every futex user tolerates.
 *
 * Lock order: none. Nothing here takes a lock but the non-Linux fallback's
 * bucket lock, a leaf.
 */
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

#include "exec.h"

#define PARK_SLEEPING 3u

/* ---- the futex, thread side ----------------------------------------------- */

#ifdef __linux__
static int thread_futex_wait(atomic_uint *word, unsigned expected, int64_t deadline_ns)
{
    struct timespec ts, *tsp = NULL;
    if (deadline_ns != INT64_MAX) {
        if (eg_now() >= deadline_ns)
            return -ETIMEDOUT;
        eg__ts_from_ns(&ts, deadline_ns);
        tsp = &ts;
    }
    /* An absolute CLOCK_MONOTONIC deadline (FUTEX_WAIT_BITSET). */
    long r = syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, expected, tsp, NULL,
                     FUTEX_BITSET_MATCH_ANY);
    if (r == 0)
        return 0;
    return errno == ETIMEDOUT ? -ETIMEDOUT : errno == EAGAIN ? -EAGAIN : 0;
}

static void thread_futex_wake(atomic_uint *word, int n)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}
#else
/* Without futexes: a small table of condition variables hashed by address. */
#define NBUCKETS 64
static struct bucket {
    pthread_mutex_t mu;
    pthread_cond_t cond;
} buckets[NBUCKETS];
static pthread_once_t buckets_once = PTHREAD_ONCE_INIT;

static void buckets_init(void)
{
    pthread_condattr_t attr;
    eg__condattr_monotonic(&attr);
    for (int i = 0; i < NBUCKETS; i++) {
        pthread_mutex_init(&buckets[i].mu, NULL);
        pthread_cond_init(&buckets[i].cond, &attr);
    }
    pthread_condattr_destroy(&attr);
}

static struct bucket *bucket_of(const void *word)
{
    pthread_once(&buckets_once, buckets_init);
    return &buckets[((uintptr_t)word >> 2) % NBUCKETS];
}

static int thread_futex_wait(atomic_uint *word, unsigned expected, int64_t deadline_ns)
{
    struct bucket *b = bucket_of(word);
    int rc = 0;
    pthread_mutex_lock(&b->mu);
    if (atomic_load(word) != expected) {
        rc = -EAGAIN;
    } else if (deadline_ns == INT64_MAX) {
        pthread_cond_wait(&b->cond, &b->mu);
    } else {
        struct timespec ts;
        eg__ts_from_ns(&ts, deadline_ns);
        if (pthread_cond_timedwait(&b->cond, &b->mu, &ts) == ETIMEDOUT)
            rc = -ETIMEDOUT;
    }
    pthread_mutex_unlock(&b->mu);
    return rc;
}

static void thread_futex_wake(atomic_uint *word, int n)
{
    struct bucket *b = bucket_of(word);
    pthread_mutex_lock(&b->mu);
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->mu);
}
#endif

int eg__futex_wait(atomic_uint *word, unsigned expected, int64_t deadline_ns)
{
    if (eg__coro_self())
        return eg__coro_futex_wait(word, expected, deadline_ns);
    return thread_futex_wait(word, expected, deadline_ns);
}

void eg__futex_wake(atomic_uint *word, int n)
{
    int woken = eg__coro_futex_wake(word, n);
    if (woken < n)
        thread_futex_wake(word, n - woken);
}

/* ---- the parker ------------------------------------------------------------ */

int eg__park(eg__parker *p, int64_t deadline_ns)
{
    unsigned s = EG__PARK_WAITING;
    /* Acquire on every read that can see NOTIFIED: the unparker's writes
     * before eg__unpark happen before the owner's reads after eg__park. */
    if (!atomic_compare_exchange_strong_explicit(
            &p->state, &s, PARK_SLEEPING, memory_order_acquire, memory_order_acquire))
        return s == EG__PARK_NOTIFIED ? 0 : -ETIMEDOUT;
    for (;;) {
        int rc = eg__futex_wait(&p->state, PARK_SLEEPING, deadline_ns);
        s = atomic_load_explicit(&p->state, memory_order_acquire);
        if (s == EG__PARK_NOTIFIED)
            return 0;
        if (rc == -ETIMEDOUT && atomic_compare_exchange_strong_explicit(
                                    &p->state, &s, EG__PARK_TIMEDOUT,
                                    memory_order_acquire, memory_order_acquire))
            return -ETIMEDOUT;
        if (s == EG__PARK_NOTIFIED)
            return 0;
    }
}

void eg__parker_watch_wake(eg__waiter *w)
{
    eg__unpark(EG__CONTAINER_OF(w, eg__parker_watch, waiter)->parker);
}

void eg__unpark(eg__parker *p)
{
    unsigned s = atomic_load_explicit(&p->state, memory_order_relaxed);
    while (s == EG__PARK_WAITING || s == PARK_SLEEPING) {
        /* Release: pairs with the owner's acquire in eg__park. */
        if (atomic_compare_exchange_weak_explicit(&p->state, &s, EG__PARK_NOTIFIED,
                                                  memory_order_release,
                                                  memory_order_relaxed)) {
            if (s == PARK_SLEEPING)
                eg__futex_wake(&p->state, 1);
            return;
        }
    }
}

/* ---- waiting for a descriptor --------------------------------------------- */

/* Milliseconds for poll(2) until deadline_ns, rounded up; -1 for none. */
static int poll_timeout(int64_t deadline_ns)
{
    if (deadline_ns == INT64_MAX)
        return -1;
    int64_t left = deadline_ns - eg_now();
    if (left <= 0)
        return 0;
    int64_t ms = (left + EG_NSEC_PER_MSEC - 1) / EG_NSEC_PER_MSEC;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* poll(2) on the caller's fd and the context's eg_ctx_fd, which polls
 * readable once the context is done (including at its own deadline). A
 * context that can never be done has no fd: the caller's is polled alone. */
static int thread_wait_fd(eg_ctx *ctx, int fd, short events, int64_t deadline_ns)
{
    struct pollfd pfd[2] = {{.fd = fd, .events = events}};
    nfds_t nfds = 1;
    int cfd = eg_ctx_fd(ctx);
    if (cfd >= 0) {
        pfd[1].fd = cfd;
        pfd[1].events = POLLIN;
        nfds = 2;
    } else if (cfd != -EINVAL) {
        return cfd; /* no fd could be made: fail rather than not listen */
    }
    for (;;) {
        pfd[0].revents = pfd[1].revents = 0;
        int n = poll(pfd, nfds, poll_timeout(deadline_ns));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0 && deadline_ns != INT64_MAX && eg_now() >= deadline_ns)
            return 0;
        /* The context wins a tie: the caller asked to stop. */
        if (pfd[1].revents) {
            int err = eg_ctx_err(ctx);
            if (err)
                return err;
        }
        if (pfd[0].revents)
            return pfd[0].revents;
    }
}

int eg__wait_fd(eg_ctx *ctx, int fd, short events, int64_t deadline_ns)
{
    if (eg__coro_self())
        return eg__coro_wait_fd(ctx, fd, events, deadline_ns);
    return thread_wait_fd(ctx, fd, events, deadline_ns);
}

/* ---- spinning --------------------------------------------------------------- */

/* One step of a bounded spin: a few pauses, and now and then a yield, so
 * that on few cores the thread we wait for gets to run (a yield per step
 * would cost a system call every few hundred nanoseconds). */
#define YIELD_NS (4 * EG_NSEC_PER_USEC)

void eg__spin_pause(void)
{
    for (int i = 0; i < 16; i++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        __asm__ __volatile__("yield");
#endif
    }
}

bool eg__spin_wait(bool (*done)(void *), void *arg)
{
    if (done(arg))
        return true;
    if (eg__coro_self())
        return false;
    /* While we spin, pool workers defer waking each other (pool.c). */
    eg__pool_watch_begin();
    eg__coro_watch_begin();
    int64_t now = eg_now(), last_yield = now, until = now + EG__SPIN_NS;
    bool ok;
    while (!(ok = done(arg)) && (now = eg_now()) < until) {
        eg__pool_watch_poll(now);
        eg__spin_pause();
        if (now - last_yield > YIELD_NS) {
            sched_yield();
            last_yield = now;
        }
    }
    eg__coro_watch_end();
    eg__pool_watch_end();
    return ok;
}

void eg__blocking_begin(void)
{
    if (eg__coro_self())
        eg__coro_blocking_begin();
}

void eg__blocking_end(void)
{
    if (eg__coro_self())
        eg__coro_blocking_end();
}

void eg_yield(void)
{
    if (eg__coro_self())
        eg__coro_yield();
    else
        sched_yield();
}

eg_executor eg_task_executor(void)
{
    return eg__coro_self() ? EG_EXEC_CORO : EG_EXEC_THREADS;
}

/* ---- choosing an executor --------------------------------------------------- */

const eg__exec *eg__exec_get(eg_executor kind)
{
    switch (kind) {
    case EG_EXEC_THREADS:
        return &eg__exec_threads;
    case EG_EXEC_CORO:
        return eg__exec_coro.submit ? &eg__exec_coro : NULL;
    case EG_EXEC_DEFAULT:
        return eg__exec_default();
    }
    return NULL;
}

static const eg__exec *_Atomic default_exec;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
    default_exec = &eg__exec_threads;
    const char *s = getenv("EG_EXECUTOR");
    if (!s || !*s || strcmp(s, "threads") == 0)
        return;
    if (strcmp(s, "coro") == 0 && eg__exec_get(EG_EXEC_CORO))
        default_exec = &eg__exec_coro;
    else
        fprintf(stderr, "errgroup: EG_EXECUTOR=%s not available; using threads\n", s);
}

const eg__exec *eg__exec_default(void)
{
    pthread_once(&default_once, default_init);
    /* Relaxed: the executors are constant objects. */
    return atomic_load_explicit(&default_exec, memory_order_relaxed);
}

int eg__exec_set_default(eg_executor kind)
{
    const eg__exec *x = kind == EG_EXEC_DEFAULT ? NULL : eg__exec_get(kind);
    if (!x)
        return kind == EG_EXEC_CORO ? -ENOTSUP : -EINVAL;
    pthread_once(&default_once, default_init);
    atomic_store_explicit(&default_exec, x, memory_order_relaxed);
    return 0;
}
