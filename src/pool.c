/*
 * pool.c - the process-wide elastic thread pool.
 *
 * Work is a set of FIFO queues (eg__queue: one per group, plus a shared one)
 * served round-robin: a queue with tasks is on the ready list. All state is
 * guarded by one lock, P.mu; a task body always runs unlocked.
 *
 * A worker is in one of four states:
 *
 *   spinning --pop--> running --task returns--> spinning
 *   spinning --no work for a while--> sleeping --signal--> signaled --> spinning
 *   sleeping --idle timeout--> exits
 *
 * "avail" = spinning + signaled: workers that will look at the queues
 * without anyone waking them. The invariant that makes a started task never
 * wait for a free worker (and keeps the fast path free of syscalls) is
 *
 *   queued > 0  =>  avail > 0, or threads == max_threads, or a thread
 *                   start failed: then the submitter was told -EAGAIN, or
 *                   (when a worker passing the duty on failed) a retry is
 *                   armed on the timer thread
 *
 * A submitter wakes a sleeper (or starts a thread) only when avail == 0; a
 * spinner that pops a task and leaves the queue non-empty with avail == 0
 * passes the duty on the same way. So a burst of submissions costs at most
 * one wake at the submitter, and the rest of the wake-ups happen on pool
 * threads, in parallel with the submitter.
 *
 * Passing the duty costs a thread wake, wasted when the task just popped
 * returns at once, as in a group at its limit whose eg_go spins for a slot.
 * So while some thread spins in eg_go or eg_wait (a "watcher"), a worker
 * defers the pass: it is cancelled when the worker comes back for work, and
 * made by a watcher once it is WATCH_NS old or when the watcher stops
 * spinning. A watcher never runs a task, it only wakes a worker. An eg_go
 * that spun for a slot stays a watcher until its task is queued, so its own
 * submission defers too, instead of waking a second worker while the first
 * is about to come back.
 *
 * Spinning is bounded (SPIN_NS) and at most max_spinners workers spin at
 * once, so idle pools cost no CPU and busy ones do not steal the cores the
 * tasks need.
 *
 * Lock order: callers may hold a context lock (ctx.c posts eg_after_func
 * callbacks and deferred condition-variable wake-ups); while holding P.mu the
 * pool takes only the timer lock (to arm a thread-start retry), and the
 * timer runs the retry without its own lock.
 */
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"

#define DEFAULT_MAX_THREADS 4096
#define DEFAULT_STACK_SIZE (256 * 1024)
#define DEFAULT_IDLE_NS (10 * EG_NSEC_PER_SEC)
#define MIN_STACK_SIZE (64 * 1024)
#define SPIN_NS (50 * EG_NSEC_PER_USEC)
#define WATCH_NS (20 * EG_NSEC_PER_USEC)
#define YIELD_NS (4 * EG_NSEC_PER_USEC)

/* The pool lock is held for a few dozen instructions at a time by many
 * threads: where glibc has it, an adaptive mutex spins briefly instead of
 * sleeping in the kernel at once. */
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#define EG_POOL_MUTEX_INITIALIZER PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
#else
#define EG_POOL_MUTEX_INITIALIZER PTHREAD_MUTEX_INITIALIZER
#endif

typedef struct worker worker;
struct worker {
    pthread_cond_t cond;
    worker *next; /* in P.sleepers */
    bool signaled;
};

static struct {
    pthread_mutex_t mu;
    eg__queue shared;
    eg__queue *ready_head, *ready_tail;
    int queued;
    atomic_int queued_hint; /* mirror of queued for spinners' unlocked peek */
    int threads, running, spinning, signaled;
    worker *sleepers;
    int max_spinners;
    bool configured;
    eg_pool_config cfg;
    uint64_t started;
    atomic_int watchers;          /* threads spinning in eg__pool_watch_* */
    atomic_llong pass_pending;    /* when a worker deferred its duty pass */
    bool retry_armed;   /* retry_timer is armed */
    eg__timer retry_timer;
} P = {.mu = EG_POOL_MUTEX_INITIALIZER, .retry_timer = {.index = SIZE_MAX}};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_condattr_t mono_attr;

/* ---- configuration ------------------------------------------------------ */

static long env_long(const char *name, long dflt, long unit_k, long unit_m)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0)
        return dflt;
    if ((*end == 'k' || *end == 'K') && unit_k)
        v *= unit_k, end++;
    else if ((*end == 'm' || *end == 'M') && unit_m)
        v *= unit_m, end++;
    return *end ? dflt : v;
}

static void pool_atfork_child(void);

static void pool_init_once(void)
{
    pthread_condattr_init(&mono_attr);
    pthread_condattr_setclock(&mono_attr, CLOCK_MONOTONIC);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    P.max_spinners = ncpu > 2 ? (int)(ncpu / 2) : 1;
    if (!P.configured) {
        P.cfg.max_threads = (int)env_long("EG_MAX_THREADS", DEFAULT_MAX_THREADS, 0, 0);
        if (P.cfg.max_threads < 1 || P.cfg.max_threads > 1 << 20)
            P.cfg.max_threads = DEFAULT_MAX_THREADS;
        P.cfg.stack_size = (size_t)env_long("EG_STACK_SIZE", DEFAULT_STACK_SIZE, 1024,
                                            1024 * 1024);
        if (P.cfg.stack_size < MIN_STACK_SIZE)
            P.cfg.stack_size = DEFAULT_STACK_SIZE;
        long ms = env_long("EG_IDLE_TIMEOUT_MS", -1, 0, 0);
        P.cfg.idle_timeout_ns = ms >= 0 ? ms * EG_NSEC_PER_MSEC : DEFAULT_IDLE_NS;
        P.configured = true;
    }
    pthread_atfork(NULL, NULL, pool_atfork_child);
}

static inline void pool_init(void) { pthread_once(&pool_once, pool_init_once); }

int eg_pool_configure(const eg_pool_config *cfg)
{
    if (!cfg || cfg->max_threads < 0 || cfg->idle_timeout_ns < 0 ||
        (cfg->stack_size && cfg->stack_size < MIN_STACK_SIZE) ||
        (cfg->executor != EG_EXEC_DEFAULT && cfg->executor != EG_EXEC_THREADS &&
         cfg->executor != EG_EXEC_CORO))
        return -EINVAL;
    if (cfg->executor != EG_EXEC_DEFAULT) {
        int r = eg__exec_set_default(cfg->executor);
        if (r)
            return r;
    }
    pool_init();
    pthread_mutex_lock(&P.mu);
    if (cfg->max_threads)
        P.cfg.max_threads = cfg->max_threads;
    if (cfg->stack_size)
        P.cfg.stack_size = cfg->stack_size;
    P.cfg.idle_timeout_ns = cfg->idle_timeout_ns;
    /* Sleepers re-read the timeout when woken: wake them so a shorter one
     * takes effect now. */
    for (worker *w = P.sleepers; w; w = w->next)
        pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&P.mu);
    return 0;
}

void eg_pool_get_config(eg_pool_config *cfg)
{
    if (!cfg)
        return;
    pool_init();
    pthread_mutex_lock(&P.mu);
    *cfg = P.cfg;
    pthread_mutex_unlock(&P.mu);
    cfg->executor = eg__exec_default()->kind;
}

void eg_pool_get_stats(eg_pool_stats *st)
{
    if (!st)
        return;
    pool_init();
    pthread_mutex_lock(&P.mu);
    st->threads = P.threads;
    st->idle = P.threads - P.running;
    st->queued = P.queued;
    st->started = P.started;
    pthread_mutex_unlock(&P.mu);
}

/* ---- queues (all under P.mu) ------------------------------------------- */

static void ready_push(eg__queue *q)
{
    q->ready = 1;
    q->rnext = NULL;
    q->rprev = P.ready_tail;
    if (P.ready_tail)
        P.ready_tail->rnext = q;
    else
        P.ready_head = q;
    P.ready_tail = q;
}

static void ready_unlink(eg__queue *q)
{
    if (q->rprev)
        q->rprev->rnext = q->rnext;
    else
        P.ready_head = q->rnext;
    if (q->rnext)
        q->rnext->rprev = q->rprev;
    else
        P.ready_tail = q->rprev;
    q->ready = 0;
}

static void queue_push(eg__queue *q, eg__task *t)
{
    t->queue = q;
    t->next = NULL;
    t->prev = q->tail;
    if (q->tail)
        q->tail->next = t;
    else
        q->head = t;
    q->tail = t;
    if (!q->ready)
        ready_push(q);
    P.queued++;
    atomic_store_explicit(&P.queued_hint, P.queued, memory_order_relaxed);
}

static void queue_unlink(eg__task *t)
{
    eg__queue *q = t->queue;
    if (t->prev)
        t->prev->next = t->next;
    else
        q->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        q->tail = t->prev;
    t->queue = NULL;
    if (!q->head && q->ready)
        ready_unlink(q);
    P.queued--;
    atomic_store_explicit(&P.queued_hint, P.queued, memory_order_relaxed);
}

/* Pops the head task of the first ready queue and rotates that queue to the
 * back, so groups share the pool fairly. */
static eg__task *ready_pop(void)
{
    eg__queue *q = P.ready_head;
    if (!q)
        return NULL;
    eg__task *t = q->head;
    queue_unlink(t);
    if (q->ready && q != P.ready_tail) {
        ready_unlink(q);
        ready_push(q);
    }
    return t;
}

/* ---- workers -------------------------------------------------------------- */

static void *worker_main(void *arg);

/* Makes one more worker available: wakes a sleeper, or starts a thread.
 * Called with P.mu held; may drop and retake it to start a thread. Returns
 * 0, or -EAGAIN if no thread could be started (P.threads == 0 or at max is
 * not an error: queued work then waits for a running worker). */
static int add_avail_locked(void)
{
    worker *w = P.sleepers;
    if (w) {
        P.sleepers = w->next;
        w->signaled = true;
        P.signaled++;
        /* Under P.mu: the sleeper cannot time out and exit before it sees
         * the signal. */
        pthread_cond_signal(&w->cond);
        return 0;
    }
    if (P.threads >= P.cfg.max_threads)
        return 0;
    /* Count the new thread as spinning from now: it looks for work first. */
    P.threads++;
    P.spinning++;
    P.started++;
    size_t stack = P.cfg.stack_size;
    pthread_mutex_unlock(&P.mu);

    pthread_attr_t attr;
    pthread_t tid;
    int rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, stack);
        rc = eg__pthread_create(&tid, &attr, worker_main, NULL);
        pthread_attr_destroy(&attr);
    }
    pthread_mutex_lock(&P.mu);
    if (rc != 0) {
        P.threads--;
        P.spinning--;
        P.started--;
        return -EAGAIN;
    }
    return 0;
}

static inline int avail(void) { return P.spinning + P.signaled; }

/* A thread start failed while queued work has no worker to look at it:
 * retry from the timer thread until one starts or a worker frees. Without
 * this, a task accepted earlier could wait behind a task that waits for it. */
static void retry_fire(eg__timer *t);

static void arm_retry_locked(void)
{
    if (P.retry_armed)
        return;
    P.retry_armed = true;
    P.retry_timer.fire = retry_fire;
    P.retry_timer.when = eg_now() + EG_NSEC_PER_MSEC;
    if (eg__timer_add(&P.retry_timer) < 0)
        P.retry_armed = false; /* the next submission retries instead */
}

static void retry_fire(eg__timer *t)
{
    (void)t;
    pthread_mutex_lock(&P.mu);
    P.retry_armed = false;
    if (P.queued > 0 && avail() == 0 && add_avail_locked() < 0)
        arm_retry_locked();
    pthread_mutex_unlock(&P.mu);
}

/* Defers making a worker available if a watcher spins (see above).
 * Publishes the deferral, then looks for a watcher (seq_cst, pairs with
 * eg__pool_watch_end): either it sees one, or the watcher sees the deferral
 * and settles it. Returns false, with nothing deferred, when none watches. */
static bool defer_pass_locked(void)
{
    if (!atomic_load(&P.pass_pending))
        atomic_store(&P.pass_pending, eg_now());
    if (atomic_load(&P.watchers) > 0)
        return true;
    atomic_store(&P.pass_pending, 0);
    return false;
}

static void *worker_main(void *arg)
{
    (void)arg;
    worker self = {.signaled = false};
    pthread_cond_init(&self.cond, &mono_attr);

    pthread_mutex_lock(&P.mu);
    for (;;) {
        eg__task *t = ready_pop();
        if (t) {
            P.spinning--;
            P.running++;
            /* Pass the duty to look for work on if we leave work behind,
             * unless a watcher spins nearby: then defer it, as this task
             * most likely returns before a woken thread would run. */
            if (P.queued > 0 && avail() == 0) {
                if (!defer_pass_locked()) {
                    /* Two at a time while work piles up: a burst of N
                     * blocking tasks then takes log2(N) rounds of
                     * wake-ups to start, not N. */
                    int n = P.queued > 1 ? 2 : 1;
                    while (n-- > 0 && avail() < P.queued) {
                        if (add_avail_locked() < 0) {
                            arm_retry_locked();
                            break;
                        }
                    }
                }
            }
            pthread_mutex_unlock(&P.mu);
            t->run(t);
            pthread_mutex_lock(&P.mu);
            P.running--;
            P.spinning++;
            /* Spinning again: a deferred pass is no longer needed. */
            atomic_store_explicit(&P.pass_pending, 0, memory_order_relaxed);
            continue;
        }

        /* No work: spin for a moment without the lock if few others do. */
        if (P.spinning <= P.max_spinners) {
            pthread_mutex_unlock(&P.mu);
            int64_t last_yield = eg_now(), until = last_yield + SPIN_NS;
            bool seen = false;
            for (unsigned i = 1;; i++) {
                if (atomic_load_explicit(&P.queued_hint, memory_order_relaxed) > 0) {
                    seen = true;
                    break;
                }
#if defined(__x86_64__) || defined(__i386__)
                __builtin_ia32_pause();
#endif
                /* Yield now and then: on few cores a spinner must not keep
                 * a just-woken thread off the CPU. */
                if ((i & 63) == 0) {
                    int64_t now = eg_now();
                    if (now > until)
                        break;
                    if (now - last_yield > YIELD_NS) {
                        sched_yield();
                        last_yield = now;
                    }
                }
            }
            pthread_mutex_lock(&P.mu);
            if (seen || P.queued > 0)
                continue;
        }

        /* Sleep. */
        P.spinning--;
        self.next = P.sleepers;
        P.sleepers = &self;
        int rc = 0;
        while (!self.signaled && rc != ETIMEDOUT) {
            struct timespec ts;
            eg__ts_from_ns(&ts, eg_now() + P.cfg.idle_timeout_ns);
            rc = pthread_cond_timedwait(&self.cond, &P.mu, &ts);
        }
        if (self.signaled) {
            self.signaled = false;
            P.signaled--;
            P.spinning++;
            continue;
        }
        /* Idle timeout: unlink and exit. */
        for (worker **pp = &P.sleepers; *pp; pp = &(*pp)->next) {
            if (*pp == &self) {
                *pp = self.next;
                break;
            }
        }
        P.threads--;
        pthread_mutex_unlock(&P.mu);
        pthread_cond_destroy(&self.cond);
        return NULL;
    }
}

/* ---- watchers ----------------------------------------------------------- */

/* Passes a deferred duty if it is still owed. Called with P.mu held. */
static void settle_pass_locked(void)
{
    if (!atomic_load_explicit(&P.pass_pending, memory_order_relaxed))
        return;
    atomic_store_explicit(&P.pass_pending, 0, memory_order_relaxed);
    if (P.queued > 0 && avail() == 0 && add_avail_locked() < 0)
        arm_retry_locked();
}

void eg__pool_watch_begin(void)
{
    atomic_fetch_add_explicit(&P.watchers, 1, memory_order_relaxed);
}

void eg__pool_watch_poll(int64_t now)
{
    long long since = atomic_load_explicit(&P.pass_pending, memory_order_relaxed);
    if (since && now - since > WATCH_NS) {
        pthread_mutex_lock(&P.mu);
        settle_pass_locked();
        pthread_mutex_unlock(&P.mu);
    }
}

void eg__pool_watch_end(void)
{
    atomic_fetch_sub(&P.watchers, 1);
    long long since = atomic_load(&P.pass_pending);
    if (!since)
        return;
    /* A deferral is pending. Most often its worker is about to come back
     * (its task just returned and freed the slot we waited for): give it
     * until the deferral is WATCH_NS old before waking anyone. */
    int64_t now;
    while (atomic_load_explicit(&P.pass_pending, memory_order_relaxed) &&
           (now = eg_now()) - since < WATCH_NS) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
    }
    if (atomic_load_explicit(&P.pass_pending, memory_order_relaxed)) {
        pthread_mutex_lock(&P.mu);
        settle_pass_locked();
        pthread_mutex_unlock(&P.mu);
    }
}

/* ---- submission ------------------------------------------------------- */

int eg__pool_submit(eg__queue *q, eg__task *t)
{
    pool_init();
    pthread_mutex_lock(&P.mu);
    queue_push(q ? q : &P.shared, t);
    int rc = 0;
    if (avail() == 0 && P.threads > 0 && defer_pass_locked())
        ; /* a watcher (maybe the caller) settles it */
    else if (avail() == 0 && add_avail_locked() < 0 && t->queue && avail() == 0) {
        /* No worker will look at the queue and none could start: take the
         * task back rather than strand it behind tasks that may never
         * return. */
        queue_unlink(t);
        rc = -EAGAIN;
    }
    pthread_mutex_unlock(&P.mu);
    return rc;
}

/* If no thread can start now, t waits until a retry starts one or a worker
 * frees. */
void eg__pool_post(eg__task *t)
{
    pool_init();
    pthread_mutex_lock(&P.mu);
    queue_push(&P.shared, t);
    if (avail() == 0 && add_avail_locked() < 0)
        arm_retry_locked();
    pthread_mutex_unlock(&P.mu);
}

eg__task *eg__pool_take(eg__queue *q)
{
    pthread_mutex_lock(&P.mu);
    eg__task *t = q->head;
    if (t)
        queue_unlink(t);
    pthread_mutex_unlock(&P.mu);
    return t;
}

/* ---- fork ------------------------------------------------------------- */

/* Threads do not survive fork: the child starts with an empty pool. */
static void pool_atfork_child(void)
{
    P.mu = (pthread_mutex_t)EG_POOL_MUTEX_INITIALIZER;
    memset(&P.shared, 0, sizeof P.shared);
    P.ready_head = P.ready_tail = NULL;
    P.queued = 0;
    atomic_store(&P.queued_hint, 0);
    P.threads = P.running = P.spinning = P.signaled = 0;
    P.sleepers = NULL;
    P.retry_armed = false;
    P.retry_timer.index = SIZE_MAX;
    atomic_store(&P.watchers, 0);
    atomic_store(&P.pass_pending, 0);
}

/* ---- the thread executor ---------------------------------------------- */

/* eg_wait runs the group's queued tasks itself: each is a plain call on the
 * waiting thread, which would otherwise sleep. */
static void pool_help(eg__queue *q)
{
    eg__task *t;
    while ((t = eg__pool_take(q)))
        t->run(t);
}

const eg__exec eg__exec_threads = {
    .kind = EG_EXEC_THREADS,
    .submit = eg__pool_submit,
    .help = pool_help,
};
