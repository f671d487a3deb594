/*
 * coro.c - the coroutine scheduler: carriers, run queues, parking, the
 * poller, timers and the monitor.
 *
 * Carriers. One thread per CPU the process may use (sched_getaffinity, and
 * a cgroup v2 cpu.max quota rounded up), or EG_CORO_CARRIERS. Each owns:
 *
 *   runq    a ring of RUNQ unstarted tasks. The owner pushes and pops at
 *           the tail/head with plain release stores (no locked instruction
 *           on the push); other carriers steal half of it with a CAS on
 *           head (Go's runqput/runqget/runqsteal). When full, half of it
 *           moves to the global queue.
 *   ready   a FIFO of started coroutines ready to resume, touched only by
 *           the owner. Started coroutines never migrate: this list is never
 *           stolen from.
 *   inbox   a lock-free stack where other threads push coroutines they made
 *           ready; the owner takes it whole with one exchange.
 *   heap    a min-heap of parked coroutines' deadlines (owner only).
 *   ep      an epoll instance for fd waits of its coroutines, plus an
 *           eventfd that wakes the carrier when it sleeps.
 *
 * Unstarted tasks cost no stack: a stack is taken when a carrier first runs
 * the task, from a per-carrier cache that stack.c refills and drains in
 * batches; the coroutine's record lives at the top of its stack. A coroutine
 * whose task returned without parking runs the next unstarted task itself
 * when the scheduler would pick that one next anyway (next_inline).
 *
 * Waking carriers. A carrier with nothing to run becomes "spinning" (looks
 * at the global queue and steals) if fewer than half the carriers spin,
 * then lists itself idle and sleeps in epoll_wait. New unstarted work wakes
 * an idle carrier only when no carrier spins (wakep); a spinner that finds
 * work wakes the next one, so a burst of submissions ramps up carriers one
 * wake at a time, off the submitter. While some thread spins in
 * eg__spin_wait (an eg_go at a group's limit, an eg_wait), a spinning
 * carrier keeps looking for up to EG__SPIN_NS before it sleeps, so the
 * waiter's next submission finds it awake (spin_for_work). A coroutine
 * made ready by another thread goes to its own carrier's inbox, and the
 * carrier is woken only if it is asleep: the sleeping flag is exchanged to
 * 0 by the first waker, so a cancel that readies a thousand coroutines
 * wakes each carrier once.
 *
 * Parking (see eg__coro_park): the coroutine switches out with status
 * PARKING; back on the scheduler's stack the carrier CASes the park state
 * WAITING -> PARKED. Whoever then CASes PARKED -> NOTIFIED/TIMEDOUT makes
 * the coroutine ready, exactly once. A CAS from WAITING (the coroutine has
 * not switched out yet) makes the carrier's CAS fail and the carrier resumes
 * the coroutine itself.
 *
 * Foreign blocking. Code that blocks the carrier without this library
 * (read, nanosleep, pthread_cond_wait, a spin) stops its carrier. The
 * monitor thread samples each carrier's switch counter; a carrier that has
 * stayed in one coroutine for STUCK_NS (or is inside
 * eg__coro_blocking_begin/end) while unstarted work waits and no carrier is
 * idle gets a rescue carrier: a new carrier thread that steals the runnable
 * unstarted work. Coroutines already started on the stuck carrier stay
 * there (they resume when it returns to its scheduler); unstarted work
 * always progresses. A rescue carrier exits once it is idle, has no live
 * coroutine, and the carriers that are not stuck are enough again.
 *
 * Lock order: G.mu (carrier creation) -> G.idle_mu; G.gq_mu is a leaf;
 * the stack allocator's lock (stack.c) is a leaf. The ready paths
 * (eg__coro_unpark) take no lock.
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "coro.h"
#include "coro_switch.h"

/* ---- sanitizers ----------------------------------------------------------- */
#if defined(__SANITIZE_ADDRESS__)
#define EG_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define EG_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define EG_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EG_TSAN 1
#endif
#endif
#ifdef EG_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom,
                                    size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#endif
#ifdef EG_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

#define RUNQ 256
#define STACK_CACHE 32
/* Stacks moved between a carrier's cache and stack.c per lock. */
#define STACK_BATCH (STACK_CACHE / 2)
#define MAX_CARRIERS 4096
#define STUCK_NS (10 * EG_NSEC_PER_MSEC)
#define MONITOR_NS (2 * EG_NSEC_PER_MSEC)
#define NO_HEAP SIZE_MAX
/* Coroutines a guest carrier (eg__coro_help) keeps at most. */
#define GUEST_MAX_LIVE 64

typedef struct carrier carrier;

enum { ST_RUNNING, ST_PARKING, ST_YIELD, ST_DONE };

struct eg__coro {
    eg__mctx ctx;
    eg__coro *next;  /* ready list, inbox, free list */
    carrier *car;    /* home: its ready list, timers and poller */
    carrier *runner; /* the carrier whose thread runs it now */
    eg__task *task;
    void *stack;          /* lowest usable address */
    int status;           /* ST_*, set by the coroutine before it switches out */
    atomic_uint *park_st; /* the park state while parking */
    int64_t deadline;
    size_t heap_idx;  /* in car->heap, NO_HEAP when not armed */
    unsigned revents; /* epoll events that ended a fd wait */
    eg__frame *frame; /* eg__current while switched out */
    int err;          /* errno while switched out */
#ifdef EG_ASAN
    void *asan_fake;
#endif
#ifdef EG_TSAN
    void *tsan_fiber;
#endif
};

struct carrier {
    /* Shared with thieves. */
    _Alignas(64) atomic_uint head;
    atomic_uint tail;
    _Atomic(eg__task *) buf[RUNQ];
    /* Shared with other threads that ready coroutines or wake us. */
    _Alignas(64) _Atomic(eg__coro *) inbox;
    atomic_int sleeping;     /* 1 while in (or about to enter) epoll_wait */
    atomic_bool idle_listed; /* on G.idle (changed under G.idle_mu) */
    atomic_bool wake_spin;   /* woken by wakep: starts out spinning */
    atomic_uint tick;        /* coroutine switches, sampled by the monitor */
    atomic_bool in_coro;     /* running a coroutine now */
    atomic_int blocking;     /* inside eg__coro_blocking_begin/end */
    atomic_bool retired;     /* a rescue carrier that exited */
    atomic_bool stuck;       /* monitor: in one coroutine too long */
    atomic_long nlive;       /* started coroutines homed here, not done */
    atomic_int nfd;          /* fd waits registered on ep */
    atomic_size_t nheap;     /* mirror of heap_len for unlocked peeks */
    pthread_mutex_t rq_mu;   /* ready list */
    pthread_mutex_t heap_mu; /* heap */
    carrier *idle_next;      /* under G.idle_mu */
    /* Under rq_mu. */
    _Alignas(64) eg__coro *ready_head, *ready_tail;
    /* Owner only. */
    void *stacks[STACK_CACHE]; /* free stacks, the last one the warmest */
    int nstacks;
    eg__coro **heap;
    size_t heap_len, heap_cap;
    int ep, evfd;
    bool spinning;
    bool rescue;
    bool guest;        /* a waiting thread's temporary carrier */
    eg__queue *help_q; /* a guest's: the queue eg__coro_help runs */
    unsigned schedtick;
    uint32_t rnd;
    eg__mctx sched;
    eg__coro *cur;
#ifdef EG_ASAN
    void *asan_fake;
    const void *sched_bottom;
    size_t sched_size;
#endif
#ifdef EG_TSAN
    void *tsan_fiber;
#endif
    int id;
    pthread_t th;
    /* Monitor only. */
    unsigned mon_tick;
    _Atomic int64_t mon_since; /* when the monitor last saw it switch */
};

static struct {
    pthread_mutex_t mu; /* startup and carrier creation */
    int state;          /* 0 not started, 1 running, <0 failed (-errno) */
    int n;              /* carriers aimed for */
    carrier *cars[MAX_CARRIERS];
    atomic_int ncars; /* entries of cars in use (they are never freed) */
    pthread_mutex_t gq_mu;
    eg__task *gq_head, *gq_tail;
    atomic_long gq_len;
    pthread_mutex_t idle_mu;
    carrier *idle;
    atomic_int nidle;
    atomic_int nspinning;
    atomic_int nrescue_live; /* rescue carriers not retired */
    size_t stack_size;       /* bytes a coroutine runs on, below its record */
    pthread_mutex_t mon_mu;
    pthread_cond_t mon_cond;
    atomic_bool mon_kick;
    atomic_bool mon_parked; /* the monitor waits without a timeout */
    atomic_long st_started, st_wakes, st_steals, st_rescues;
    /* Threads in eg__spin_wait, and when the last one stopped (eg_now). */
    _Alignas(64) atomic_int nwatch;
    _Atomic int64_t watch_end;
} G = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .gq_mu = PTHREAD_MUTEX_INITIALIZER,
    .idle_mu = PTHREAD_MUTEX_INITIALIZER,
    .mon_mu = PTHREAD_MUTEX_INITIALIZER,
    .mon_cond = PTHREAD_COND_INITIALIZER,
};

static _Thread_local carrier *tls_car;   /* the carrier this thread is */
static _Thread_local eg__coro *tls_self; /* the coroutine running now */
static _Thread_local carrier *tls_guest; /* this thread's temporary carrier */

static void wakep(void);
static carrier *guest_get(void);

/* ---- small helpers ---------------------------------------------------------- */

long eg__env_size(const char *name, long dflt)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0)
        return dflt;
    if (*end == 'k' || *end == 'K')
        v *= 1024, end++;
    else if (*end == 'm' || *end == 'M')
        v *= 1024 * 1024, end++;
    return *end ? dflt : v;
}

static uint32_t rnd_next(carrier *c)
{
    /* xorshift32: steal victims need spread, not quality. */
    uint32_t x = c->rnd;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return c->rnd = x;
}

eg__coro *eg__coro_current(void)
{
    return tls_self;
}
void *eg__coro_self(void)
{
    return tls_self;
}

/* ---- the run queue ring (Go's runqput / runqget / runqsteal) ------------- */

static unsigned runq_len(carrier *c)
{
    unsigned h = atomic_load_explicit(&c->head, memory_order_acquire);
    unsigned t = atomic_load_explicit(&c->tail, memory_order_acquire);
    return t - h;
}

static void global_put_batch(eg__task *first, eg__task *last, long n)
{
    last->next = NULL;
    pthread_mutex_lock(&G.gq_mu);
    if (G.gq_tail)
        G.gq_tail->next = first;
    else
        G.gq_head = first;
    G.gq_tail = last;
    /* seq_cst: pairs with the idle carrier's nidle++ then gq_len load. */
    atomic_fetch_add(&G.gq_len, n);
    pthread_mutex_unlock(&G.gq_mu);
}

/* Moves half the full ring and t to the global queue. Owner only. */
static bool runq_put_slow(carrier *c, eg__task *t, unsigned h, unsigned tl)
{
    eg__task *batch[RUNQ / 2 + 1];
    unsigned n = (tl - h) / 2;
    for (unsigned i = 0; i < n; i++)
        batch[i] = atomic_load_explicit(&c->buf[(h + i) % RUNQ], memory_order_relaxed);
    /* Release-free CAS suffices to claim them: the slots were written by
     * us (the owner) and we read them before the claim. */
    if (!atomic_compare_exchange_strong_explicit(
            &c->head, &h, h + n, memory_order_release, memory_order_relaxed))
        return false; /* thieves took some: the ring has room now */
    batch[n] = t;
    for (unsigned i = 0; i < n; i++)
        batch[i]->next = batch[i + 1];
    global_put_batch(batch[0], batch[n], n + 1);
    return true;
}

/* Owner only: a plain release store publishes the slot to thieves. */
static void runq_put(carrier *c, eg__task *t)
{
    for (;;) {
        /* Acquire: a thief's head CAS released the slots it read. */
        unsigned h = atomic_load_explicit(&c->head, memory_order_acquire);
        unsigned tl = atomic_load_explicit(&c->tail, memory_order_relaxed);
        if (tl - h < RUNQ) {
            atomic_store_explicit(&c->buf[tl % RUNQ], t, memory_order_relaxed);
            atomic_store_explicit(&c->tail, tl + 1, memory_order_release);
            return;
        }
        if (runq_put_slow(c, t, h, tl))
            return;
    }
}

static eg__task *runq_get(carrier *c)
{
    for (;;) {
        unsigned h = atomic_load_explicit(&c->head, memory_order_acquire);
        unsigned tl = atomic_load_explicit(&c->tail, memory_order_relaxed);
        if (h == tl)
            return NULL;
        eg__task *t = atomic_load_explicit(&c->buf[h % RUNQ], memory_order_relaxed);
        /* Release: hands the slot back to the owner's next put. */
        if (atomic_compare_exchange_weak_explicit(
                &c->head, &h, h + 1, memory_order_release, memory_order_relaxed))
            return t;
    }
}

/* Steals half of src's ring into dst's (empty) ring; returns one task to
 * run now, or NULL. dst's owner only. */
static eg__task *runq_steal(carrier *dst, carrier *src)
{
    unsigned dt = atomic_load_explicit(&dst->tail, memory_order_relaxed);
    unsigned n;
    for (;;) {
        unsigned h = atomic_load_explicit(&src->head, memory_order_acquire);
        /* Acquire: the slots up to tail were written before tail. */
        unsigned tl = atomic_load_explicit(&src->tail, memory_order_acquire);
        n = tl - h;
        n -= n / 2;
        if (n == 0)
            return NULL;
        if (n > RUNQ / 2)
            continue; /* read head and tail inconsistently: retry */
        for (unsigned i = 0; i < n; i++) {
            eg__task *t =
                atomic_load_explicit(&src->buf[(h + i) % RUNQ], memory_order_relaxed);
            atomic_store_explicit(&dst->buf[(dt + i) % RUNQ], t, memory_order_relaxed);
        }
        if (atomic_compare_exchange_weak_explicit(
                &src->head, &h, h + n, memory_order_acq_rel, memory_order_relaxed))
            break;
    }
    n--;
    eg__task *t = atomic_load_explicit(&dst->buf[(dt + n) % RUNQ], memory_order_relaxed);
    if (n)
        atomic_store_explicit(&dst->tail, dt + n, memory_order_release);
    atomic_fetch_add_explicit(&G.st_steals, 1, memory_order_relaxed);
    return t;
}

/* Takes a batch from the global queue: returns one, puts the rest (a fair
 * share, at most half a ring, no more than c's ring has room for) on c's
 * ring. Owner only. */
static eg__task *global_get(carrier *c)
{
    if (atomic_load_explicit(&G.gq_len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&G.gq_mu);
    long len = atomic_load_explicit(&G.gq_len, memory_order_relaxed);
    if (len == 0) {
        pthread_mutex_unlock(&G.gq_mu);
        return NULL;
    }
    long n = len / atomic_load_explicit(&G.ncars, memory_order_relaxed) + 1;
    if (n > len)
        n = len;
    /* What fits: a batch that overflowed the ring would go straight
     * back here (runq_put_slow). Thieves only shrink the ring. */
    long room = RUNQ - (long)runq_len(c);
    if (room > RUNQ / 2)
        room = RUNQ / 2;
    if (n > room + 1)
        n = room + 1;
    eg__task *t = G.gq_head;
    eg__task *rest = t->next;
    eg__task *p = t;
    for (long i = 1; i < n; i++)
        p = p->next;
    G.gq_head = p->next;
    if (!G.gq_head)
        G.gq_tail = NULL;
    atomic_fetch_sub_explicit(&G.gq_len, n, memory_order_relaxed);
    pthread_mutex_unlock(&G.gq_mu);
    for (long i = 1; i < n; i++) {
        eg__task *nx = rest->next;
        runq_put(c, rest);
        rest = nx;
    }
    /* More than we run now: an idle carrier may steal some. */
    if (n > 1)
        wakep();
    return t;
}

/* ---- the timer heap (owner only) ------------------------------------------ */

static void heap_swap(carrier *c, size_t i, size_t j)
{
    eg__coro *a = c->heap[i], *b = c->heap[j];
    c->heap[i] = b, b->heap_idx = i;
    c->heap[j] = a, a->heap_idx = j;
}

static void heap_up(carrier *c, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (c->heap[p]->deadline <= c->heap[i]->deadline)
            break;
        heap_swap(c, i, p);
        i = p;
    }
}

static void heap_down(carrier *c, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->heap_len && c->heap[l]->deadline < c->heap[m]->deadline)
            m = l;
        if (r < c->heap_len && c->heap[r]->deadline < c->heap[m]->deadline)
            m = r;
        if (m == i)
            return;
        heap_swap(c, i, m);
        i = m;
    }
}

static int heap_add(carrier *c, eg__coro *co)
{
    if (c->heap_len == c->heap_cap) {
        size_t cap = c->heap_cap ? 2 * c->heap_cap : 64;
        eg__coro **h = realloc(c->heap, cap * sizeof *h);
        if (!h)
            return -ENOMEM;
        c->heap = h;
        c->heap_cap = cap;
    }
    co->heap_idx = c->heap_len;
    c->heap[c->heap_len++] = co;
    heap_up(c, co->heap_idx);
    atomic_store_explicit(&c->nheap, c->heap_len, memory_order_relaxed);
    return 0;
}

static void heap_del(carrier *c, eg__coro *co)
{
    size_t i = co->heap_idx;
    co->heap_idx = NO_HEAP;
    c->heap_len--;
    atomic_store_explicit(&c->nheap, c->heap_len, memory_order_relaxed);
    if (i == c->heap_len)
        return;
    c->heap[i] = c->heap[c->heap_len];
    c->heap[i]->heap_idx = i;
    heap_down(c, i);
    heap_up(c, i);
}

/* ---- making coroutines ready ------------------------------------------------ */

/* The ready list, under a lock that is uncontended in practice (only the
 * carrier's own thread touches it; other threads use the inbox). */
static void ready_local(carrier *c, eg__coro *co)
{
    co->next = NULL;
    pthread_mutex_lock(&c->rq_mu);
    if (c->ready_tail)
        c->ready_tail->next = co;
    else
        __atomic_store_n(&c->ready_head, co, __ATOMIC_RELAXED);
    c->ready_tail = co;
    pthread_mutex_unlock(&c->rq_mu);
}

static eg__coro *ready_pop(carrier *c)
{
    /* Racy peek first: most loops find nothing. */
    if (!__atomic_load_n(&c->ready_head, __ATOMIC_RELAXED))
        return NULL;
    pthread_mutex_lock(&c->rq_mu);
    eg__coro *co = c->ready_head;
    if (co) {
        __atomic_store_n(&c->ready_head, co->next, __ATOMIC_RELAXED);
        if (!co->next)
            c->ready_tail = NULL;
    }
    pthread_mutex_unlock(&c->rq_mu);
    return co;
}

/* Wakes c if it sleeps. The first waker after c announced its sleep sends
 * the one wake-up; later ones see 0. */
static void carrier_notify(carrier *c)
{
    /* seq_cst: pairs with the sleeper's store of 1 then its queue checks. */
    if (atomic_load(&c->sleeping) && atomic_exchange(&c->sleeping, 0)) {
        uint64_t one = 1;
        ssize_t r = write(c->evfd, &one, sizeof one);
        (void)r; /* EAGAIN: the counter is already non-zero, c will wake */
        atomic_fetch_add_explicit(&G.st_wakes, 1, memory_order_relaxed);
    }
}

/* Wake-ups deferred by eg__coro_batch_begin: each carrier once. */
#define BATCH_MAX 16
static _Thread_local int tls_batch;
static _Thread_local int tls_npending;
static _Thread_local carrier *tls_pending[BATCH_MAX];

void eg__coro_batch_begin(void)
{
    tls_batch++;
}

void eg__coro_batch_end(void)
{
    if (--tls_batch > 0)
        return;
    int n = tls_npending;
    tls_npending = 0;
    for (int i = 0; i < n; i++)
        carrier_notify(tls_pending[i]);
}

static void notify_or_defer(carrier *c)
{
    if (tls_batch) {
        for (int i = 0; i < tls_npending; i++)
            if (tls_pending[i] == c)
                return;
        if (tls_npending < BATCH_MAX) {
            tls_pending[tls_npending++] = c;
            return;
        }
    }
    carrier_notify(c);
}

static void make_ready(eg__coro *co)
{
    carrier *c = co->car;
    if (tls_car == c) {
        ready_local(c, co);
        return;
    }
    eg__coro *old = atomic_load_explicit(&c->inbox, memory_order_relaxed);
    do
        co->next = old;
    /* Release: what the waker did before is visible when co resumes;
     * seq_cst on success orders the push before carrier_notify's load. */
    while (!atomic_compare_exchange_weak_explicit(
        &c->inbox, &old, co, memory_order_seq_cst, memory_order_relaxed));
    notify_or_defer(c);
}

static bool drain_inbox(carrier *c)
{
    if (!atomic_load_explicit(&c->inbox, memory_order_relaxed))
        return false;
    /* Acquire: pairs with make_ready's push. */
    eg__coro *l = atomic_exchange_explicit(&c->inbox, NULL, memory_order_acquire);
    eg__coro *rev = NULL, *last = l;
    while (l) { /* the stack is LIFO: reverse to keep wake order */
        eg__coro *n = l->next;
        l->next = rev;
        rev = l;
        l = n;
    }
    pthread_mutex_lock(&c->rq_mu);
    if (c->ready_tail)
        c->ready_tail->next = rev;
    else
        __atomic_store_n(&c->ready_head, rev, __ATOMIC_RELAXED);
    c->ready_tail = last;
    pthread_mutex_unlock(&c->rq_mu);
    return true;
}

/* Ends co's park with state to (NOTIFIED/TIMEDOUT) if it is still parked. */
static bool park_end(atomic_uint *st, eg__coro *co, unsigned to)
{
    unsigned s = atomic_load_explicit(st, memory_order_acquire);
    for (;;) {
        if (s == EG__CPARK_WAITING) {
            /* The coroutine has not switched out: the carrier's
             * WAITING->PARKED CAS will fail and resume it. */
            if (atomic_compare_exchange_weak_explicit(st, &s, to, memory_order_acq_rel,
                                                      memory_order_acquire))
                return true;
        } else if (s == EG__CPARK_PARKED) {
            if (atomic_compare_exchange_weak_explicit(st, &s, to, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                make_ready(co);
                return true;
            }
        } else {
            return false;
        }
    }
}

bool eg__coro_unpark(atomic_uint *st, eg__coro *co)
{
    return park_end(st, co, EG__CPARK_NOTIFIED);
}

/* ---- switching ---------------------------------------------------------------- */

/* Scheduler -> co. Returns when co switches back. */
static void switch_in(carrier *c, eg__coro *co)
{
    eg__frame *sf = eg__current;
    int serr = errno;
    eg__current = co->frame;
    errno = co->err;
    c->cur = co;
    co->runner = c;
    tls_self = co;
    atomic_store_explicit(&c->tick,
                          atomic_load_explicit(&c->tick, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&c->in_coro, true, memory_order_relaxed);
#ifdef EG_ASAN
    __sanitizer_start_switch_fiber(&c->asan_fake, co->stack, G.stack_size);
#endif
#ifdef EG_TSAN
    __tsan_switch_to_fiber(co->tsan_fiber, 0);
#endif
    eg__mctx_switch(&c->sched, &co->ctx);
#ifdef EG_ASAN
    __sanitizer_finish_switch_fiber(c->asan_fake, NULL, NULL);
#endif
    atomic_store_explicit(&c->in_coro, false, memory_order_relaxed);
    if (atomic_load_explicit(&c->stuck, memory_order_relaxed))
        atomic_store_explicit(&c->stuck, false, memory_order_relaxed);
    tls_self = NULL;
    c->cur = NULL;
    co->frame = eg__current;
    co->err = errno;
    eg__current = sf;
    errno = serr;
}

/* co -> the scheduler of the thread running it (co->status says why). */
static void switch_out(eg__coro *co)
{
    carrier *c = co->runner;
#ifdef EG_ASAN
    __sanitizer_start_switch_fiber(co->status == ST_DONE ? NULL : &co->asan_fake,
                                   c->sched_bottom, c->sched_size);
#endif
#ifdef EG_TSAN
    __tsan_switch_to_fiber(c->tsan_fiber, 0);
#endif
    eg__mctx_switch(&co->ctx, &c->sched);
#ifdef EG_ASAN
    __sanitizer_finish_switch_fiber(co->asan_fake, &c->sched_bottom, &c->sched_size);
#endif
}

static eg__task *next_inline(eg__coro *co);
static eg__task *global_take_queue(eg__queue *q);

static void coro_entry(void *arg)
{
    eg__coro *co = arg;
#ifdef EG_ASAN
    __sanitizer_finish_switch_fiber(NULL, &co->runner->sched_bottom,
                                    &co->runner->sched_size);
#endif
    for (;;) {
        co->task->run(co->task);
        eg__task *t = next_inline(co);
        if (!t)
            break;
        co->task = t;
        errno = 0; /* as a fresh coroutine starts */
    }
    co->status = ST_DONE;
    switch_out(co);
    abort(); /* a done coroutine is never resumed */
}

/* ---- the coroutine side of blocking ------------------------------------------- */

int eg__coro_park(atomic_uint *st, int64_t deadline)
{
    eg__coro *co = tls_self;
    if (!co)
        return -EINVAL;
    carrier *c = co->car;
    co->park_st = st;
    co->heap_idx = NO_HEAP;
    if (deadline != INT64_MAX) {
        co->deadline = deadline;
        int hr = -ETIMEDOUT;
        if (deadline > eg_now()) {
            pthread_mutex_lock(&c->heap_mu);
            hr = heap_add(c, co);
            pthread_mutex_unlock(&c->heap_mu);
        }
        if (hr != 0) {
            /* Already due (or no memory for the timer: end as a timeout
             * rather than sleep forever). */
            unsigned w = EG__CPARK_WAITING;
            if (atomic_compare_exchange_strong_explicit(st, &w, EG__CPARK_TIMEDOUT,
                                                        memory_order_acq_rel,
                                                        memory_order_acquire))
                return -ETIMEDOUT;
            return 0;
        }
    }
    co->status = ST_PARKING;
    switch_out(co);
    if (deadline != INT64_MAX) {
        pthread_mutex_lock(&c->heap_mu);
        if (co->heap_idx != NO_HEAP)
            heap_del(c, co);
        pthread_mutex_unlock(&c->heap_mu);
    }
    /* Acquire: what the unparker did before its CAS happens before us. */
    return atomic_load_explicit(st, memory_order_acquire) == EG__CPARK_NOTIFIED
               ? 0
               : -ETIMEDOUT;
}

void eg__coro_yield(void)
{
    eg__coro *co = tls_self;
    if (!co) {
        sched_yield();
        return;
    }
    co->status = ST_YIELD;
    switch_out(co);
}

void eg__coro_sleep_until(int64_t deadline)
{
    atomic_uint st = EG__CPARK_WAITING;
    if (tls_self) {
        eg__coro_park(&st, deadline);
        return;
    }
    for (;;) {
        int64_t now = eg_now();
        if (now >= deadline)
            return;
        struct timespec ts;
        eg__ts_from_ns(&ts, deadline - now);
        nanosleep(&ts, NULL);
    }
}

static unsigned to_epoll(short ev)
{
    unsigned e = 0;
    if (ev & POLLIN)
        e |= EPOLLIN;
    if (ev & POLLOUT)
        e |= EPOLLOUT;
    if (ev & POLLPRI)
        e |= EPOLLPRI;
    return e;
}

static short from_epoll(unsigned e)
{
    short r = 0;
    if (e & EPOLLIN)
        r |= POLLIN;
    if (e & EPOLLOUT)
        r |= POLLOUT;
    if (e & EPOLLPRI)
        r |= POLLPRI;
    if (e & EPOLLERR)
        r |= POLLERR;
    if (e & EPOLLHUP)
        r |= POLLHUP;
    if (e & EPOLLRDHUP)
        r |= POLLRDHUP;
    return r;
}

int eg__coro_poll_fd(int fd, short events, int64_t deadline, atomic_uint *st)
{
    eg__coro *co = tls_self;
    if (!co)
        return -EINVAL;
    carrier *c = co->car;
    struct epoll_event ev = {.events = to_epoll(events) | EPOLLONESHOT, .data.ptr = co};
    int efd = fd;
    if (epoll_ctl(c->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        int e = errno;
        if (e == EPERM) /* a regular file or directory: always ready */
            return events & (POLLIN | POLLOUT);
        if (e != EEXIST)
            return -e;
        /* Another coroutine of this carrier waits on fd: a duplicate is
         * a different epoll key. */
        efd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (efd < 0)
            return -errno;
        if (epoll_ctl(c->ep, EPOLL_CTL_ADD, efd, &ev) != 0) {
            e = errno;
            close(efd);
            return -e;
        }
    }
    co->revents = 0;
    atomic_fetch_add_explicit(&c->nfd, 1, memory_order_relaxed);
    int r = eg__coro_park(st, deadline);
    epoll_ctl(c->ep, EPOLL_CTL_DEL, efd, NULL);
    atomic_fetch_sub_explicit(&c->nfd, 1, memory_order_relaxed);
    if (efd != fd)
        close(efd);
    if (co->revents)
        return from_epoll(co->revents);
    return r == -ETIMEDOUT ? 0 : -ECANCELED;
}

void eg__coro_blocking_begin(void)
{
    carrier *c = tls_self ? tls_self->car : NULL;
    if (!c)
        return;
    atomic_fetch_add_explicit(&c->blocking, 1, memory_order_relaxed);
    /* Hand the runnable work on now rather than at the monitor's next
     * sample. */
    if (runq_len(c) || atomic_load_explicit(&G.gq_len, memory_order_relaxed)) {
        atomic_store(&G.mon_kick, true);
        pthread_mutex_lock(&G.mon_mu);
        pthread_cond_signal(&G.mon_cond);
        pthread_mutex_unlock(&G.mon_mu);
    }
}

void eg__coro_blocking_end(void)
{
    carrier *c = tls_self ? tls_self->car : NULL;
    if (c)
        atomic_fetch_sub_explicit(&c->blocking, 1, memory_order_relaxed);
}

/* ---- the scheduler loop ------------------------------------------------------- */

static void after_switch(carrier *c, eg__coro *co);

/* A coroutine's record sits at the top of its stack, above the G.stack_size
 * bytes it runs on: it costs no allocation and shares the page the first
 * frames touch anyway. Free stacks hold no live record (stack.c keeps its
 * free list in the top bytes of free stacks). */
static eg__coro *coro_of_stack(void *stack)
{
    return (eg__coro *)((char *)stack + G.stack_size);
}

/* Stacks come from the carrier's cache, refilled STACK_BATCH at a time
 * (one lock in stack.c per batch). */
static void *stack_take(carrier *c)
{
    if (!c->nstacks) {
        void *b[STACK_BATCH];
        int n = eg__stack_get_n(b, STACK_BATCH);
        /* b[0] is stack.c's warmest: it goes last, to be taken first. */
        for (int i = 0; i < n; i++)
            c->stacks[i] = b[n - 1 - i];
        c->nstacks = n;
        if (!n)
            return NULL;
    }
    return c->stacks[--c->nstacks];
}

/* A full cache gives its coldest half back in one batch. */
static void stack_give(carrier *c, void *s)
{
    if (c->nstacks == STACK_CACHE) {
        eg__stack_put_n(c->stacks, STACK_BATCH);
        memmove(c->stacks, c->stacks + STACK_BATCH,
                (STACK_CACHE - STACK_BATCH) * sizeof *c->stacks);
        c->nstacks -= STACK_BATCH;
    }
    c->stacks[c->nstacks++] = s;
}

static void stack_cache_flush(carrier *c)
{
    eg__stack_put_n(c->stacks, c->nstacks);
    c->nstacks = 0;
}

static void start_task(carrier *c, eg__task *t)
{
    void *stack = stack_take(c);
    if (!stack) {
        /* Out of memory: requeue and let the carrier breathe. */
        global_put_batch(t, t, 1);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
        return;
    }
    eg__coro *co = coro_of_stack(stack);
    memset(co, 0, sizeof *co);
    co->car = c;
    co->task = t;
    co->stack = stack;
    co->heap_idx = NO_HEAP;
    co->status = ST_RUNNING;
    eg__mctx_make(&co->ctx, stack, G.stack_size, coro_entry, co);
#ifdef EG_TSAN
    co->tsan_fiber = __tsan_create_fiber(0);
#endif
    atomic_fetch_add_explicit(&c->nlive, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&G.st_started, 1, memory_order_relaxed);
    switch_in(c, co);
    after_switch(c, co);
}

/* A coroutine whose task returned without parking runs the carrier's next
 * unstarted task on the same stack, instead of switching out, freeing its
 * stack and record, and a fresh coroutine switching in for that task: the
 * next task's start costs no switch. Only when the scheduler would pick that
 * task next anyway: nothing ready, no inbox, no timer or poller to look at
 * (find_work takes the rings and the global queue in the same order). A
 * guest takes only tasks of the queue it helps, as eg__coro_help does. Returns NULL to
 * end the coroutine. */
static eg__task *next_inline(eg__coro *co)
{
    carrier *c = co->runner;
    if (c != co->car)
        return NULL; /* a rescuer runs it: let the scheduler decide */
    if (__atomic_load_n(&c->ready_head, __ATOMIC_RELAXED) ||
        atomic_load_explicit(&c->inbox, memory_order_relaxed) ||
        atomic_load_explicit(&c->nheap, memory_order_relaxed) ||
        atomic_load_explicit(&c->nfd, memory_order_relaxed) ||
        atomic_load_explicit(&c->blocking, memory_order_relaxed) ||
        atomic_load_explicit(&c->retired, memory_order_relaxed))
        return NULL;
    if (c->guest &&
        atomic_load_explicit(&c->nlive, memory_order_relaxed) >= GUEST_MAX_LIVE)
        return NULL;
    unsigned tick = c->schedtick + 1;
    eg__task *t = NULL;
    if (c->guest) {
        t = runq_get(c);
        if (t && t->queue != c->help_q) {
            /* Not ours to run here (eg__coro_help's rule): to the carriers. */
            global_put_batch(t, t, 1);
            wakep();
            return NULL;
        }
        if (!t)
            t = global_take_queue(c->help_q);
    } else {
        /* find_work's order: now and then the global queue first. */
        if (tick % 61 == 0)
            t = global_get(c);
        if (!t)
            t = runq_get(c);
        if (!t)
            t = global_get(c);
    }
    if (!t)
        return NULL;
    c->schedtick = tick;
    /* A switch for the monitor, which takes a carrier that stays in one
     * coroutine for long for stuck. */
    atomic_store_explicit(&c->tick,
                          atomic_load_explicit(&c->tick, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&G.st_started, 1, memory_order_relaxed);
    return t;
}

/* On the runner c's thread, after co switched out: co goes back to its
 * home's ready list (c's own, unless c is rescuing co's home). */
static void after_switch(carrier *c, eg__coro *co)
{
    carrier *home = co->car;
    switch (co->status) {
    case ST_PARKING: {
        unsigned w = EG__CPARK_WAITING;
        /* acq_rel: publishes that co is switched out (the winner of the
         * next CAS may resume it at once); acquire on failure sees the
         * notifier's writes. */
        if (!atomic_compare_exchange_strong_explicit(co->park_st, &w, EG__CPARK_PARKED,
                                                     memory_order_acq_rel,
                                                     memory_order_acquire))
            ready_local(home, co);
        break;
    }
    case ST_YIELD:
        co->status = ST_RUNNING;
        /* Alone on this carrier: let the other threads of this CPU run,
         * as a yielding thread would (a spin on eg_yield would otherwise
         * hold the CPU until the kernel's tick). */
        if (!__atomic_load_n(&home->ready_head, __ATOMIC_RELAXED) && !runq_len(c) &&
            !atomic_load_explicit(&c->inbox, memory_order_relaxed))
            sched_yield();
        ready_local(home, co);
        break;
    case ST_DONE:
#ifdef EG_TSAN
        __tsan_destroy_fiber(co->tsan_fiber);
#endif
        atomic_fetch_sub_explicit(&home->nlive, 1, memory_order_relaxed);
        /* Last: the record dies with its stack (another carrier may take
         * it from stack.c at once). */
        stack_give(c, co->stack);
        break;
    default:
        break;
    }
}

static void resume(carrier *c, eg__coro *co)
{
    co->status = ST_RUNNING;
    switch_in(c, co);
    after_switch(c, co);
}

/* Ends the parks whose deadline passed. The home's thread, or its rescuer. */
static void run_timers(carrier *c)
{
    if (!atomic_load_explicit(&c->nheap, memory_order_relaxed))
        return;
    int64_t now = eg_now();
    pthread_mutex_lock(&c->heap_mu);
    while (c->heap_len && c->heap[0]->deadline <= now) {
        eg__coro *co = c->heap[0];
        heap_del(c, co);
        park_end(co->park_st, co, EG__CPARK_TIMEDOUT);
    }
    pthread_mutex_unlock(&c->heap_mu);
}

/* Nanoseconds until c's next deadline (-1: none; 0: due), for the poller. */
static int64_t timer_timeout(carrier *c)
{
    if (!atomic_load_explicit(&c->nheap, memory_order_relaxed))
        return -1;
    pthread_mutex_lock(&c->heap_mu);
    int64_t d = c->heap_len ? c->heap[0]->deadline - eg_now() : INT64_MAX;
    pthread_mutex_unlock(&c->heap_mu);
    if (d == INT64_MAX)
        return -1;
    return d > 0 ? d : 0;
}

/* epoll_wait with a nanosecond timeout: epoll_pwait2 (Linux 5.11), else
 * epoll_wait rounded up to whole milliseconds. */
static int epoll_wait_ns(int ep, struct epoll_event *evs, int max, int64_t timeout_ns)
{
#ifdef SYS_epoll_pwait2
    static atomic_bool no_pwait2;
    if (timeout_ns > 0 && !atomic_load_explicit(&no_pwait2, memory_order_relaxed)) {
        struct timespec ts = {.tv_sec = timeout_ns / EG_NSEC_PER_SEC,
                              .tv_nsec = timeout_ns % EG_NSEC_PER_SEC};
        long n = syscall(SYS_epoll_pwait2, ep, evs, max, &ts, NULL, (size_t)0);
        if (n >= 0 || errno != ENOSYS)
            return (int)n;
        atomic_store_explicit(&no_pwait2, true, memory_order_relaxed);
    }
#endif
    int ms;
    if (timeout_ns < 0)
        ms = -1;
    else if (timeout_ns > (int64_t)INT_MAX * EG_NSEC_PER_MSEC)
        ms = INT_MAX;
    else
        ms = (int)((timeout_ns + EG_NSEC_PER_MSEC - 1) / EG_NSEC_PER_MSEC);
    return epoll_wait(ep, evs, max, ms);
}

/* Harvests the poller; timeout_ns as timer_timeout gives it (-1: none). */
static void poll_events(carrier *c, int64_t timeout_ns)
{
    struct epoll_event evs[64];
    int n = epoll_wait_ns(c->ep, evs, 64, timeout_ns);
    for (int i = 0; i < n; i++) {
        if (evs[i].data.ptr == NULL) {
            uint64_t v;
            ssize_t r = read(c->evfd, &v, sizeof v);
            (void)r;
            continue;
        }
        eg__coro *co = evs[i].data.ptr;
        /* The park has switched out (we are its carrier's scheduler), so
         * park_end either readies co here or loses to the deadline or an
         * unpark. */
        unsigned s = atomic_load_explicit(co->park_st, memory_order_acquire);
        if (s == EG__CPARK_PARKED) {
            co->revents = evs[i].events;
            if (!park_end(co->park_st, co, EG__CPARK_NOTIFIED))
                co->revents = 0;
        }
    }
}

static eg__task *steal_work(carrier *c)
{
    int n = atomic_load_explicit(&G.ncars, memory_order_acquire);
    for (int round = 0; round < 4; round++) {
        int start = (int)(rnd_next(c) % (unsigned)n);
        for (int i = 0; i < n; i++) {
            carrier *v = G.cars[(start + i) % n];
            if (v == c || atomic_load_explicit(&v->retired, memory_order_relaxed))
                continue;
            eg__task *t = runq_steal(c, v);
            if (t)
                return t;
        }
        eg__task *t = global_get(c);
        if (t)
            return t;
    }
    return NULL;
}

static bool any_runq_work(void)
{
    if (atomic_load(&G.gq_len))
        return true;
    int n = atomic_load_explicit(&G.ncars, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (runq_len(G.cars[i]))
            return true;
    return false;
}

/* Stops spinning; a last spinner that found work wakes the next one (Go's
 * resetspinning), since more work may be queued behind it. */
static void stop_spinning(carrier *c, bool found)
{
    if (!c->spinning)
        return;
    c->spinning = false;
    if (atomic_fetch_sub(&G.nspinning, 1) == 1 && found)
        wakep();
}

static void idle_remove(carrier *c)
{
    if (!atomic_load(&c->idle_listed))
        return;
    pthread_mutex_lock(&G.idle_mu);
    if (atomic_load(&c->idle_listed)) {
        carrier **pp = &G.idle;
        while (*pp && *pp != c)
            pp = &(*pp)->idle_next;
        if (*pp)
            *pp = c->idle_next;
        atomic_store(&c->idle_listed, false);
        atomic_fetch_sub(&G.nidle, 1);
    }
    pthread_mutex_unlock(&G.idle_mu);
}

/* Wakes one idle carrier to look for work, unless one already looks. */
static void wakep(void)
{
    /* The caller's push (a release store of a ring's tail) must be
     * ordered before our load of nidle: pairs with carrier_sleep's nidle++
     * then its look at the rings (Dekker), or both miss each other. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&G.nidle) == 0 || atomic_load(&G.nspinning) != 0)
        return;
    int z = 0;
    if (!atomic_compare_exchange_strong(&G.nspinning, &z, 1))
        return;
    pthread_mutex_lock(&G.idle_mu);
    carrier *c = G.idle;
    if (c) {
        G.idle = c->idle_next;
        atomic_fetch_sub(&G.nidle, 1);
        atomic_store(&c->wake_spin, true);
        atomic_store(&c->idle_listed, false);
    }
    pthread_mutex_unlock(&G.idle_mu);
    if (!c) {
        atomic_fetch_sub(&G.nspinning, 1);
        return;
    }
    carrier_notify(c);
}

static int active_carriers(void)
{
    int n = atomic_load_explicit(&G.ncars, memory_order_acquire), k = 0;
    for (int i = 0; i < n; i++) {
        carrier *v = G.cars[i];
        if (v->guest || atomic_load_explicit(&v->retired, memory_order_relaxed))
            continue;
        if (atomic_load_explicit(&v->in_coro, memory_order_relaxed) &&
            (atomic_load_explicit(&v->blocking, memory_order_relaxed) ||
             eg_now() - atomic_load_explicit(&v->mon_since, memory_order_relaxed) >=
                 STUCK_NS))
            continue; /* stuck: does not count */
        k++;
    }
    return k;
}

static void monitor_wake(void);

/* Sleeps until something may be runnable. Returns false when a rescue
 * carrier should exit. */
static bool carrier_sleep(carrier *c)
{
    stop_spinning(c, false);
    if (c->rescue && atomic_load(&c->nlive) == 0 && active_carriers() > G.n)
        return false;
    pthread_mutex_lock(&G.idle_mu);
    c->idle_next = G.idle;
    G.idle = c;
    atomic_store(&c->idle_listed, true);
    atomic_fetch_add(&G.nidle, 1);
    pthread_mutex_unlock(&G.idle_mu);
    atomic_store(&c->sleeping, 1);
    /* seq_cst loads after the seq_cst stores above: a submitter that
     * pushed before our nidle++ is seen here; one that pushes after sees
     * nidle and wakes us. */
    bool work =
        atomic_load(&c->inbox) || any_runq_work() || !atomic_load(&c->idle_listed);
    if (!work) {
        poll_events(c, timer_timeout(c));
    }
    atomic_store(&c->sleeping, 0);
    idle_remove(c);
    if (atomic_exchange(&c->wake_spin, false))
        c->spinning = true; /* wakep counted us in nspinning */
    monitor_wake();
    return true;
}

/* A spinning carrier that found nothing looks again for a moment before it
 * sleeps (Go's spinning M, with a time bound like the pool's idle workers)
 * while a thread spins in eg__spin_wait or did so a moment ago (a
 * "watcher": an eg_go waiting at a group's limit, about to submit the next
 * task, or an eg_wait): the submission then needs no thread wake, since
 * wakep sees the spinner. Returns true when something may be runnable,
 * false once *until (set on the first call of an idle stretch) passed or
 * no thread watches. */
#define CARRIER_SPIN_NS EG__SPIN_NS
#define CARRIER_YIELD_NS (4 * EG_NSEC_PER_USEC)
#define CARRIER_WATCH_NS (5 * EG_NSEC_PER_USEC)

void eg__coro_watch_begin(void)
{
    /* Relaxed: a hint for spinning carriers; missing it costs a wake. */
    atomic_fetch_add_explicit(&G.nwatch, 1, memory_order_relaxed);
}

void eg__coro_watch_end(void)
{
    atomic_store_explicit(&G.watch_end, eg_now(), memory_order_relaxed);
    atomic_fetch_sub_explicit(&G.nwatch, 1, memory_order_relaxed);
}

/* Whether a thread spins for a result now or did a moment ago. */
static bool watched(int64_t now)
{
    return atomic_load_explicit(&G.nwatch, memory_order_relaxed) > 0 ||
           now - atomic_load_explicit(&G.watch_end, memory_order_relaxed) <
               CARRIER_WATCH_NS;
}

static bool spin_for_work(carrier *c, int64_t *until)
{
    int64_t now = eg_now(), last_yield = now;
    if (*until == 0)
        *until = now + CARRIER_SPIN_NS;
    if (!watched(now))
        return false;
    for (unsigned i = 1; now < *until; i++) {
        if (atomic_load_explicit(&c->inbox, memory_order_relaxed) ||
            __atomic_load_n(&c->ready_head, __ATOMIC_RELAXED) || any_runq_work())
            return true;
        eg__spin_pause();
        if ((i & 7) == 0) {
            now = eg_now();
            if (!watched(now))
                return false;
            if (now - last_yield > CARRIER_YIELD_NS) {
                /* On few cores the thread we wait for must get to run. */
                sched_yield();
                last_yield = now;
                if (atomic_load_explicit(&c->nfd, memory_order_relaxed)) {
                    poll_events(c, 0);
                    if (__atomic_load_n(&c->ready_head, __ATOMIC_RELAXED))
                        return true;
                }
                if (atomic_load_explicit(&c->nheap, memory_order_relaxed))
                    return true; /* find_work runs the due timers, then here */
            }
        }
    }
    return false;
}

/* The next thing to run: a ready coroutine (*co) or an unstarted task. */
static bool find_work(carrier *c, eg__coro **co, eg__task **t)
{
    int64_t spin_until = 0;
    for (;;) {
        c->schedtick++;
        run_timers(c);
        drain_inbox(c);
        *co = NULL;
        *t = NULL;
        /* Fairness: now and then the global queue, the poller and the
         * unstarted tasks go before this carrier's ready coroutines. */
        if (c->schedtick % 61 == 0 && (*t = global_get(c)))
            goto found;
        if (atomic_load_explicit(&c->nfd, memory_order_relaxed) && c->schedtick % 31 == 0)
            poll_events(c, 0);
        if (c->schedtick % 7 == 0 && (*t = runq_get(c)))
            goto found;
        if ((*co = ready_pop(c)))
            goto found;
        if ((*t = runq_get(c)) || (*t = global_get(c)))
            goto found;
        if (atomic_load_explicit(&c->nfd, memory_order_relaxed)) {
            poll_events(c, 0);
            if ((*co = ready_pop(c)))
                goto found;
        }
        int n = atomic_load_explicit(&G.ncars, memory_order_acquire);
        if (!c->spinning && 2 * atomic_load(&G.nspinning) < n) {
            c->spinning = true;
            atomic_fetch_add(&G.nspinning, 1);
        }
        if (c->spinning && (*t = steal_work(c)))
            goto found;
        if (c->spinning && spin_for_work(c, &spin_until))
            continue;
        if (!carrier_sleep(c))
            return false;
        spin_until = 0;
    }
found:
    stop_spinning(c, true);
    return true;
}

static void *carrier_main(void *arg)
{
    carrier *c = arg;
    tls_car = c;
#ifdef EG_TSAN
    c->tsan_fiber = __tsan_get_current_fiber();
#endif
    eg__coro *co;
    eg__task *t;
    while (find_work(c, &co, &t)) {
        if (co)
            resume(c, co);
        else
            start_task(c, t);
    }
    /* Retiring rescue carrier: nothing live, caches back to the pool. */
    stack_cache_flush(c);
    tls_car = NULL;
    atomic_fetch_sub(&G.nrescue_live, 1);
    /* Release: our last touch of c; the record may be reused at once. */
    atomic_store(&c->retired, true);
    return NULL;
}

/* ---- carriers and the monitor ---------------------------------------------- */

static int carrier_init(carrier *c, int id, bool rescue)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    int ev = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (ev < 0) {
        int e = -errno;
        close(ep);
        return e;
    }
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) != 0) {
        int r = -errno;
        close(ep);
        close(ev);
        return r;
    }
    c->ep = ep;
    c->evfd = ev;
    pthread_mutex_init(&c->rq_mu, NULL);
    pthread_mutex_init(&c->heap_mu, NULL);
    c->id = id;
    c->rescue = rescue;
    c->rnd = 0x9E3779B9u * (unsigned)(id + 1);
    return 0;
}

static int carrier_start(bool rescue)
{
    carrier *c = NULL;
    int n = atomic_load(&G.ncars);
    if (rescue) { /* reuse a retired rescue carrier's record */
        for (int i = 0; i < n && !c; i++) {
            carrier *v = G.cars[i];
            if (atomic_load(&v->retired) && v->rescue)
                c = v;
        }
    }
    bool fresh = !c;
    if (fresh) {
        if (n >= MAX_CARRIERS)
            return -EAGAIN;
        c = aligned_alloc(64, (sizeof *c + 63) & ~(size_t)63);
        if (!c)
            return -ENOMEM;
        memset(c, 0, sizeof *c);
        int r = carrier_init(c, n, rescue);
        if (r) {
            free(c);
            return r;
        }
    } else {
        atomic_store(&c->retired, false);
        c->rescue = true;
    }
    atomic_store(&c->wake_spin, false);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 256 * 1024);
    /* Detached: a retired rescue carrier's record is reused, its thread
     * touches it no more once it set retired. */
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (fresh) {
        G.cars[n] = c;
        /* Release: the record is complete before thieves see it. */
        atomic_store_explicit(&G.ncars, n + 1, memory_order_release);
    }
    if (rescue)
        atomic_fetch_add(&G.nrescue_live, 1);
    int r = eg__pthread_create(&c->th, &a, carrier_main, c);
    pthread_attr_destroy(&a);
    if (r) {
        if (rescue)
            atomic_fetch_sub(&G.nrescue_live, 1);
        /* Keep the record in cars (thieves may look at it), retired. */
        c->rescue = true;
        atomic_store(&c->retired, true);
        return -r;
    }
    return 0;
}

/* A carrier woke: if the monitor waits without a timeout, it resumes
 * sampling. seq_cst load after the caller's nidle-- (pairs with the
 * monitor's store of mon_parked then its nidle check). */
static void monitor_wake(void)
{
    if (!atomic_load(&G.mon_parked))
        return;
    atomic_store(&G.mon_kick, true);
    pthread_mutex_lock(&G.mon_mu);
    pthread_cond_signal(&G.mon_cond);
    pthread_mutex_unlock(&G.mon_mu);
}

static void *monitor_main(void *arg)
{
    (void)arg;
    for (;;) {
        int n = atomic_load_explicit(&G.ncars, memory_order_acquire);
        bool busy = atomic_load(&G.nidle) < n;
        pthread_mutex_lock(&G.mon_mu);
        if (!atomic_exchange(&G.mon_kick, false)) {
            if (busy) {
                /* CLOCK_REALTIME: mon_cond has the default clock. */
                struct timespec ts;
                clock_gettime(CLOCK_REALTIME, &ts);
                int64_t d =
                    (int64_t)ts.tv_sec * EG_NSEC_PER_SEC + ts.tv_nsec + MONITOR_NS;
                eg__ts_from_ns(&ts, d);
                pthread_cond_timedwait(&G.mon_cond, &G.mon_mu, &ts);
            } else {
                /* Every carrier sleeps: nothing can be stuck until one
                 * wakes, and a waking carrier kicks us. */
                atomic_store(&G.mon_parked, true);
                if (atomic_load(&G.nidle) >= n && !atomic_load(&G.mon_kick))
                    pthread_cond_wait(&G.mon_cond, &G.mon_mu);
                atomic_store(&G.mon_parked, false);
            }
            atomic_store(&G.mon_kick, false);
        }
        pthread_mutex_unlock(&G.mon_mu);

        int64_t now = eg_now();
        n = atomic_load_explicit(&G.ncars, memory_order_acquire);
        int stuck = 0, active = 0;
        for (int i = 0; i < n; i++) {
            carrier *v = G.cars[i];
            if (v->guest || atomic_load_explicit(&v->retired, memory_order_relaxed))
                continue;
            unsigned tk = atomic_load_explicit(&v->tick, memory_order_relaxed);
            if (tk != v->mon_tick ||
                !atomic_load_explicit(&v->in_coro, memory_order_relaxed)) {
                v->mon_tick = tk;
                atomic_store_explicit(&v->mon_since, now, memory_order_relaxed);
            }
            bool in = atomic_load_explicit(&v->in_coro, memory_order_relaxed);
            if (in && (atomic_load_explicit(&v->blocking, memory_order_relaxed) ||
                       now - atomic_load_explicit(&v->mon_since, memory_order_relaxed) >=
                           STUCK_NS)) {
                stuck++;
                if (!atomic_load_explicit(&v->stuck, memory_order_relaxed))
                    atomic_store(&v->stuck, true);
            } else {
                active++;
            }
        }
        if (!any_runq_work())
            continue;
        if (atomic_load(&G.nidle) > 0) {
            wakep(); /* someone idle can take it */
            continue;
        }
        if (stuck && active < G.n) {
            pthread_mutex_lock(&G.mu);
            if (carrier_start(true) == 0)
                atomic_fetch_add_explicit(&G.st_rescues, 1, memory_order_relaxed);
            pthread_mutex_unlock(&G.mu);
        }
    }
    return NULL;
}

static int cgroup_cpus(void)
{
    FILE *f = fopen("/sys/fs/cgroup/cpu.max", "re");
    if (!f)
        return 0;
    char q[32];
    long period = 0;
    int n = 0;
    if (fscanf(f, "%31s %ld", q, &period) == 2 && strcmp(q, "max") != 0 && period > 0) {
        long quota = strtol(q, NULL, 10);
        if (quota > 0)
            n = (int)((quota + period - 1) / period);
    }
    fclose(f);
    return n;
}

static int default_carriers(void)
{
    long env = eg__env_size("EG_CORO_CARRIERS", 0);
    if (env > 0)
        return env > 1024 ? 1024 : (int)env;
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = CPU_COUNT(&set);
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    int q = cgroup_cpus();
    if (q > 0 && q < n)
        n = q;
    return n > 1024 ? 1024 : n;
}

static void atfork_child(void)
{
    /* The child has none of the carriers: start over on first use. The
     * old records and coroutines are unreachable (as threads' tasks are
     * in a forked child). */
    pthread_mutex_init(&G.mu, NULL);
    pthread_mutex_init(&G.gq_mu, NULL);
    pthread_mutex_init(&G.idle_mu, NULL);
    pthread_mutex_init(&G.mon_mu, NULL);
    pthread_cond_init(&G.mon_cond, NULL);
    G.state = 0;
    atomic_store(&G.ncars, 0);
    G.gq_head = G.gq_tail = NULL;
    atomic_store(&G.gq_len, 0);
    G.idle = NULL;
    atomic_store(&G.nidle, 0);
    atomic_store(&G.nspinning, 0);
    atomic_store(&G.nrescue_live, 0);
    atomic_store(&G.mon_kick, false);
    tls_car = NULL;
    tls_self = NULL;
    tls_guest = NULL;
    eg__stack_atfork_child();
}

static int coro_start(void)
{
    /* Acquire: pairs with the release store below. */
    int s = __atomic_load_n(&G.state, __ATOMIC_ACQUIRE);
    if (EG_LIKELY(s == 1))
        return 0;
    pthread_mutex_lock(&G.mu);
    if (G.state == 0) {
        static bool atfork_done;
        if (!atfork_done) {
            pthread_atfork(NULL, NULL, atfork_child);
            atfork_done = true;
        }
        /* Below the record at each stack's top (coro_of_stack). */
        G.stack_size = eg__stack_size() - ((sizeof(eg__coro) + 63) & ~(size_t)63);
        G.n = default_carriers();
        int started = 0, err = 0;
        for (int i = 0; i < G.n; i++) {
            int r = carrier_start(false);
            if (r) {
                err = r;
                break;
            }
            started++;
        }
        if (started == 0) {
            G.state = err ? err : -EAGAIN;
        } else {
            G.n = started;
            pthread_t mon;
            pthread_attr_t a;
            pthread_attr_init(&a);
            pthread_attr_setstacksize(&a, 128 * 1024);
            pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
            int r = eg__pthread_create(&mon, &a, monitor_main, NULL);
            pthread_attr_destroy(&a);
            /* Without a monitor the scheduler still works; only the
             * rescue of stuck carriers is lost. */
            (void)r;
            __atomic_store_n(&G.state, 1, __ATOMIC_RELEASE);
        }
    }
    s = G.state;
    pthread_mutex_unlock(&G.mu);
    /* A failed start is retried by the next submission. */
    if (s < 0) {
        pthread_mutex_lock(&G.mu);
        if (G.state < 0)
            G.state = 0;
        pthread_mutex_unlock(&G.mu);
        return s;
    }
    return 0;
}

int eg__coro_carriers(void)
{
    if (coro_start() != 0)
        return 0;
    return G.n;
}

static int coro_submit(eg__task *t, eg__queue *q);

int eg__coro_submit(eg__task *t)
{
    return coro_submit(t, NULL);
}

int eg__coro_submit_q(eg__queue *q, eg__task *t)
{
    return coro_submit(t, q);
}

static int coro_submit(eg__task *t, eg__queue *q)
{
    if (!t)
        return -EINVAL;
    int r = coro_start();
    if (r)
        return r == -ENOMEM ? -ENOMEM : -EAGAIN;
    t->queue = q;
    carrier *c = tls_car;
    /* A thread that is no carrier queues a group's tasks on its guest
     * ring: carriers steal them, and its eg_wait runs the rest itself
     * without a thread wake. */
    if (!c && q)
        c = guest_get();
    if (c && !atomic_load_explicit(&c->retired, memory_order_relaxed))
        runq_put(c, t);
    else
        global_put_batch(t, t, 1);
    wakep();
    return 0;
}

/* ---- the waiting thread as a temporary carrier ------------------------------ */

/* A thread that waits for a coroutine group (eg_wait from main, or from a
 * pool thread) would sleep on a futex and cost a thread wake per group. It
 * runs the group's tasks itself instead, as coroutines on its own stack
 * pool, with its own poller and timers: a task that parks resumes here, and
 * a cancel by a sibling readies it here with no wake at all. It takes only
 * tasks of that group still in the global queue (carriers may have taken
 * others), and returns once those and every coroutine it started are done,
 * because its coroutines cannot move to another carrier. */
static pthread_key_t guest_key;
static pthread_once_t guest_once = PTHREAD_ONCE_INIT;

/* Thread exit: tasks still in the ring go to the global queue; the record
 * stays in G.cars (thieves may be looking at it), retired, for the next
 * thread's guest. */
static void guest_free(void *p)
{
    carrier *c = p;
    eg__task *t;
    while ((t = runq_get(c)))
        global_put_batch(t, t, 1);
    stack_cache_flush(c);
    tls_guest = NULL;
    /* Release: our last touch of c. */
    atomic_store(&c->retired, true);
}

static void guest_key_init(void)
{
    if (pthread_key_create(&guest_key, guest_free) != 0)
        guest_key = (pthread_key_t)-1;
}

static carrier *guest_get(void)
{
    if (tls_guest)
        return tls_guest;
    pthread_once(&guest_once, guest_key_init);
    if (guest_key == (pthread_key_t)-1)
        return NULL;
    /* A guest is in G.cars so carriers steal from its ring (the tasks
     * this thread submits wait there, and eg_wait runs them here). */
    pthread_mutex_lock(&G.mu);
    carrier *c = NULL;
    int n = atomic_load(&G.ncars);
    for (int i = 0; i < n && !c; i++)
        if (G.cars[i]->guest && atomic_load(&G.cars[i]->retired))
            c = G.cars[i];
    if (c) {
        atomic_store(&c->retired, false);
    } else if (n < MAX_CARRIERS &&
               (c = aligned_alloc(64, (sizeof *c + 63) & ~(size_t)63))) {
        memset(c, 0, sizeof *c);
        if (carrier_init(c, n, false) != 0) {
            free(c);
            c = NULL;
        } else {
            c->guest = true;
            G.cars[n] = c;
            /* Release: the record is complete before thieves see it. */
            atomic_store_explicit(&G.ncars, n + 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&G.mu);
    if (!c)
        return NULL;
    if (pthread_setspecific(guest_key, c) != 0) {
        guest_free(c);
        return NULL;
    }
    tls_guest = c;
    return c;
}

/* Unlinks a task of q from the first few of the global queue. */
static eg__task *global_take_queue(eg__queue *q)
{
    if (atomic_load_explicit(&G.gq_len, memory_order_relaxed) == 0)
        return NULL;
    pthread_mutex_lock(&G.gq_mu);
    eg__task *prev = NULL, *t = G.gq_head, *found = NULL;
    for (int i = 0; t && i < 64; i++, prev = t, t = t->next) {
        if (t->queue != q)
            continue;
        if (prev)
            prev->next = t->next;
        else
            G.gq_head = t->next;
        if (G.gq_tail == t)
            G.gq_tail = prev;
        atomic_fetch_sub_explicit(&G.gq_len, 1, memory_order_relaxed);
        found = t;
        break;
    }
    pthread_mutex_unlock(&G.gq_mu);
    return found;
}

void eg__coro_help(eg__queue *q)
{
    if (tls_self || tls_car || __atomic_load_n(&G.state, __ATOMIC_ACQUIRE) != 1)
        return;
    if (!q)
        return;
    carrier *c = tls_guest;
    if (!c && atomic_load_explicit(&G.gq_len, memory_order_relaxed) == 0)
        return;
    if (!c && !(c = guest_get()))
        return;
#ifdef EG_TSAN
    c->tsan_fiber = __tsan_get_current_fiber();
#endif
    tls_car = c;
    c->help_q = q;
    for (;;) {
        run_timers(c);
        drain_inbox(c);
        eg__coro *co = ready_pop(c);
        if (co) {
            resume(c, co);
            continue;
        }
        eg__task *t = NULL;
        if (atomic_load(&c->nlive) >= GUEST_MAX_LIVE) {
            /* Enough parked here: the rest is the carriers' (a third
             * running thread on few cores would slow them down). */
            while ((t = runq_get(c)))
                global_put_batch(t, t, 1);
            wakep();
        } else {
            /* Our ring holds what this thread submitted: q's tasks run
             * here, any other group's go to the carriers. */
            while ((t = runq_get(c)) && t->queue != q) {
                global_put_batch(t, t, 1);
                wakep();
            }
            if (!t)
                t = global_take_queue(q);
        }
        if (t) {
            start_task(c, t);
            continue;
        }
        if (atomic_load(&c->nlive) == 0)
            break;
        if (atomic_load_explicit(&c->nfd, memory_order_relaxed)) {
            poll_events(c, 0);
            if (__atomic_load_n(&c->ready_head, __ATOMIC_RELAXED))
                continue;
        }
        atomic_store(&c->sleeping, 1);
        /* seq_cst: pairs with make_ready's push then carrier_notify. */
        if (!atomic_load(&c->inbox))
            poll_events(c, timer_timeout(c));
        atomic_store(&c->sleeping, 0);
    }
    c->help_q = NULL;
    tls_car = NULL;
}

void eg__coro_get_stats(eg__coro_stats *s)
{
    s->carriers = atomic_load(&G.ncars);
    s->rescues = atomic_load(&G.st_rescues);
    s->started = atomic_load(&G.st_started);
    s->wakes = atomic_load(&G.st_wakes);
    s->steals = atomic_load(&G.st_steals);
}
