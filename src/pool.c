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
 * worker_main is the loop; run_locked, spin_locked and sleep_locked are
 * the running, spinning and sleeping (to signaled or exit) steps.
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
 * A submission decides that a thread will run its task (a free worker, a
 * woken sleeper, a started thread, or the pool at its maximum) before the
 * task is queued; a failed thread start then returns -EAGAIN for a task no
 * other thread ever saw (eg__pool_submit).
 *
 * Lock order: callers may hold a context lock (ctx.c posts eg_after_func
 * callbacks); while holding P.mu the pool takes only the timer lock (to arm
 * a thread-start retry or the stall check), and the timer runs both without
 * its own lock.
 */
#include <limits.h>
#include <sched.h>
#include <sys/resource.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "exec.h"

/* Used where the machine's limits cannot be read (see default_max_threads). */
#define FALLBACK_MAX_THREADS 4096
#define CEILING_MAX_THREADS (1 << 20)
#define FLOOR_MAX_THREADS 64
#define DEFAULT_STACK_SIZE (256 * 1024)
#define DEFAULT_IDLE_NS (10 * EG_NSEC_PER_SEC)
#define MIN_STACK_SIZE (64 * 1024)
#define SPIN_NS (50 * EG_NSEC_PER_USEC)
#define WATCH_NS (20 * EG_NSEC_PER_USEC)
#define YIELD_NS (4 * EG_NSEC_PER_USEC)
#define STALL_NS EG_NSEC_PER_SEC

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
    eg__link link; /* in P.sleepers */
    bool signaled;
};

static struct {
    pthread_mutex_t mu;
    eg__queue shared;
    eg__list ready; /* of eg__queue, through ready_link */
    int queued;
    atomic_int queued_hint; /* mirror of queued for spinners' unlocked peek */
    int threads, running, spinning, signaled;
    eg__list sleepers; /* of worker; the newest is woken first */
    int max_spinners;
    bool configured;
    eg_pool_config cfg;
    uint64_t started;
    atomic_int watchers;       /* threads spinning in eg__pool_watch_* */
    atomic_llong pass_pending; /* when a worker deferred its duty pass */
    bool retry_armed;          /* retry_timer is armed */
    eg__timer retry_timer;
    bool stall_armed;    /* stall_timer is armed */
    bool stall_reported; /* the current stall was reported */
    eg__timer stall_timer;
} P = {.mu = EG_POOL_MUTEX_INITIALIZER,
       .retry_timer = {.index = SIZE_MAX},
       .stall_timer = {.index = SIZE_MAX}};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int64_t oldest_queued_locked(void);
static void watch_stall_locked(void);
static pthread_condattr_t mono_attr;

/* ---- configuration ------------------------------------------------------ */

/* Reads a non-negative integer from the environment, with an optional K or
 * M suffix where unit_k/unit_m allow it, in [lo, hi]. A value that does not
 * parse or is out of range is rejected with one line on stderr; dflt is
 * used then. */
static long long env_num(const char *name, long long dflt, long long lo, long long hi,
                         long long unit_k, long long unit_m)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    bool ok = end != s && errno == 0;
    if (ok && (*end == 'k' || *end == 'K') && unit_k)
        ok = !__builtin_mul_overflow(v, unit_k, &v), end++;
    else if (ok && (*end == 'm' || *end == 'M') && unit_m)
        ok = !__builtin_mul_overflow(v, unit_m, &v), end++;
    if (ok && !*end && v >= lo && v <= hi)
        return v;
    fprintf(stderr,
            "errgroup: ignoring %s=%s (expected an integer in %lld..%lld); using %lld\n",
            name, s, lo, hi, dflt);
    return dflt;
}

/* Reads one integer from a /proc file; -1 if it cannot. */
static long long read_proc_num(const char *path)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    long long v = -1;
    if (fscanf(f, "%lld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

/* The default maximum: what the machine allows for blocked threads (see
 * eg/pool.h for the rule). */
static int default_max_threads(void)
{
    if (sizeof(void *) < 8)
        return FALLBACK_MAX_THREADS; /* 32 bits: address space, not memory, limits */
    long long cap = CEILING_MAX_THREADS;
    bool known = false;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        cap = (long long)rl.rlim_cur < cap ? (long long)rl.rlim_cur : cap;
        known = true;
    }
    long long tmax = read_proc_num("/proc/sys/kernel/threads-max");
    if (tmax > 0) {
        cap = tmax / 2 < cap ? tmax / 2 : cap;
        known = true;
    }
    /* Each thread stack is two mappings (stack and guard page): leave the
     * program at least half of vm.max_map_count. */
    long long maps = read_proc_num("/proc/sys/vm/max_map_count");
    if (maps > 0) {
        cap = maps / 4 < cap ? maps / 4 : cap;
        known = true;
    }
    /* About 64 KiB of memory per blocked thread (its resident stack pages,
     * kernel stack and task structures), from at most a quarter of RAM. */
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    if (pages > 0 && psize > 0) {
        long long mem = (long long)pages * psize / 4 / (64 * 1024);
        cap = mem < cap ? mem : cap;
        known = true;
    }
    if (!known)
        return FALLBACK_MAX_THREADS;
    return (int)(cap < FLOOR_MAX_THREADS ? FLOOR_MAX_THREADS : cap);
}

static void pool_init_once(void)
{
    eg__condattr_monotonic(&mono_attr);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    P.max_spinners = ncpu > 2 ? (int)(ncpu / 2) : 1;
    if (!P.configured) {
        P.cfg.max_threads = (int)env_num("EG_MAX_THREADS", default_max_threads(), 1,
                                         CEILING_MAX_THREADS, 0, 0);
        P.cfg.stack_size =
            (size_t)env_num("EG_STACK_SIZE", DEFAULT_STACK_SIZE, MIN_STACK_SIZE,
                            (long long)1 << 40, 1024, 1024 * 1024);
        /* ms, so INT64_MAX / 1e6 keeps the product in range. */
        long long ms = env_num("EG_IDLE_TIMEOUT_MS", DEFAULT_IDLE_NS / EG_NSEC_PER_MSEC,
                               0, INT64_MAX / EG_NSEC_PER_MSEC, 0, 0);
        P.cfg.idle_timeout_ns = ms * EG_NSEC_PER_MSEC;
        P.cfg.stall_warning = env_num("EG_STALL_WARN", 1, 0, 1, 0, 0) ? 1 : -1;
        P.configured = true;
    }
    eg__fork_init();
}

static inline void pool_init(void)
{
    pthread_once(&pool_once, pool_init_once);
}

int eg_pool_configure(const eg_pool_config *cfg)
{
    if (!cfg || cfg->max_threads < 0 || cfg->max_threads > CEILING_MAX_THREADS ||
        (cfg->idle_timeout_ns < 0 && cfg->idle_timeout_ns != EG_IDLE_FOREVER) ||
        (cfg->stack_size && cfg->stack_size < MIN_STACK_SIZE) ||
        cfg->stall_warning < -1 || cfg->stall_warning > 1 ||
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
    /* Every field: 0 keeps the current value. */
    if (cfg->max_threads)
        P.cfg.max_threads = cfg->max_threads;
    if (cfg->stack_size)
        P.cfg.stack_size = cfg->stack_size;
    if (cfg->idle_timeout_ns)
        P.cfg.idle_timeout_ns = cfg->idle_timeout_ns;
    if (cfg->stall_warning)
        P.cfg.stall_warning = cfg->stall_warning;
    /* Sleepers re-read the timeout when woken: wake them so a shorter one
     * takes effect now. */
    for (eg__link *l = P.sleepers.head; l; l = l->next)
        pthread_cond_signal(&EG__CONTAINER_OF(l, worker, link)->cond);
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
    int64_t oldest = oldest_queued_locked();
    st->longest_wait_ns = oldest == INT64_MAX ? 0 : eg_now() - oldest;
    pthread_mutex_unlock(&P.mu);
}

/* ---- queues (all under P.mu) ------------------------------------------- */

/* The oldest task of q, or NULL. */
static eg__task *queue_head(eg__queue *q)
{
    return q->tasks.head ? EG__CONTAINER_OF(q->tasks.head, eg__task, link) : NULL;
}

/* When the longest-waiting queued task was queued; INT64_MAX if none. Each
 * queue is FIFO, so its head is its oldest. */
static int64_t oldest_queued_locked(void)
{
    int64_t oldest = INT64_MAX;
    for (eg__link *l = P.ready.head; l; l = l->next) {
        eg__task *t = queue_head(EG__CONTAINER_OF(l, eg__queue, ready_link));
        if (t && t->queued_at < oldest)
            oldest = t->queued_at;
    }
    return oldest;
}

static void ready_push(eg__queue *q)
{
    q->ready = 1;
    eg__list_push(&P.ready, &q->ready_link);
}

static void ready_unlink(eg__queue *q)
{
    eg__list_unlink(&P.ready, &q->ready_link);
    q->ready = 0;
}

static void queue_push(eg__queue *q, eg__task *t)
{
    t->queue = q;
    eg__list_push(&q->tasks, &t->link);
    if (!q->ready)
        ready_push(q);
    P.queued++;
    atomic_store_explicit(&P.queued_hint, P.queued, memory_order_relaxed);
}

static void queue_unlink(eg__task *t)
{
    eg__queue *q = t->queue;
    eg__list_unlink(&q->tasks, &t->link);
    t->queue = NULL;
    if (eg__list_empty(&q->tasks) && q->ready)
        ready_unlink(q);
    P.queued--;
    atomic_store_explicit(&P.queued_hint, P.queued, memory_order_relaxed);
}

/* Pops the head task of the first ready queue and rotates that queue to the
 * back, so groups share the pool fairly. */
static eg__task *ready_pop(void)
{
    if (!P.ready.head)
        return NULL;
    eg__queue *q = EG__CONTAINER_OF(P.ready.head, eg__queue, ready_link);
    eg__task *t = queue_head(q);
    queue_unlink(t);
    if (q->ready && P.ready.tail != &q->ready_link) {
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
    eg__link *l = eg__list_pop_last(&P.sleepers);
    if (l) {
        worker *w = EG__CONTAINER_OF(l, worker, link);
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

static inline int avail(void)
{
    return P.spinning + P.signaled;
}

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
    P.retry_timer.when = eg__deadline_after(EG_NSEC_PER_MSEC);
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

/* Spinning -> running: runs t, just popped, then back to spinning. Called
 * and returns with P.mu held; t runs without it. */
static void run_locked(eg__task *t)
{
    P.spinning--;
    P.running++;
    if (P.queued > 0)
        watch_stall_locked();
    /* Pass the duty to look for work on if we leave work behind, unless a
     * watcher spins nearby: then defer it, as this task most likely returns
     * before a woken thread would run. */
    if (P.queued > 0 && avail() == 0) {
        if (!defer_pass_locked()) {
            /* Two at a time while work piles up: a burst of N blocking
             * tasks then takes log2(N) rounds of wake-ups to start, not N. */
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
}

/* Spinning with no work: spins for a moment without the lock if few others
 * do. Returns true if work showed up meanwhile. Called and returns with
 * P.mu held. */
static bool spin_locked(void)
{
    if (P.spinning > P.max_spinners)
        return false;
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
        /* Yield now and then: on few cores a spinner must not keep a
         * just-woken thread off the CPU. */
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
    return seen || P.queued > 0;
}

/* Spinning -> sleeping, until signaled (-> spinning: returns true) or the
 * idle timeout (unlinked and uncounted: returns false, the thread exits).
 * Called and returns with P.mu held. */
static bool sleep_locked(worker *self)
{
    P.spinning--;
    eg__list_push(&P.sleepers, &self->link);
    int rc = 0;
    while (!self->signaled && rc != ETIMEDOUT) {
        struct timespec ts;
        int64_t until = P.cfg.idle_timeout_ns == EG_IDLE_FOREVER
                            ? INT64_MAX
                            : eg__deadline_after(P.cfg.idle_timeout_ns);
        if (until == INT64_MAX) {
            pthread_cond_wait(&self->cond, &P.mu);
            continue;
        }
        eg__ts_from_ns(&ts, until);
        rc = pthread_cond_timedwait(&self->cond, &P.mu, &ts);
    }
    if (self->signaled) {
        /* add_avail_locked took us off P.sleepers. */
        self->signaled = false;
        P.signaled--;
        P.spinning++;
        return true;
    }
    eg__list_unlink(&P.sleepers, &self->link);
    P.threads--;
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
        if (t)
            run_locked(t);
        else if (!spin_locked() && !sleep_locked(&self))
            break;
    }
    pthread_mutex_unlock(&P.mu);
    pthread_cond_destroy(&self.cond);
    return NULL;
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

/* ---- stall report --------------------------------------------------------- */

/* At the maximum, queued tasks wait for a running one to return; when that
 * never happens (the running ones wait for the queued ones) the program
 * hangs. The library cannot tell a long wait from a deadlock, so it says
 * once per stall what it sees: tasks queued STALL_NS or longer while every
 * thread is busy at the maximum. The check runs on the timer thread (no
 * pool thread is free then): armed when a task queues at the maximum,
 * re-armed while tasks stay queued, and a stall ends when the queue's
 * oldest task is younger than STALL_NS. */
static void stall_fire(eg__timer *t);

static void arm_stall_locked(int64_t when)
{
    P.stall_timer.fire = stall_fire;
    P.stall_timer.when = when;
    P.stall_armed = eg__timer_add(&P.stall_timer) == 0;
}

static void watch_stall_locked(void)
{
    if (!P.stall_armed && P.cfg.stall_warning > 0 && P.threads >= P.cfg.max_threads &&
        avail() == 0)
        arm_stall_locked(eg__add_sat(oldest_queued_locked(), STALL_NS));
}

static void stall_fire(eg__timer *t)
{
    (void)t;
    pthread_mutex_lock(&P.mu);
    P.stall_armed = false;
    int64_t oldest = oldest_queued_locked(), now = eg_now();
    if (oldest == INT64_MAX || P.cfg.stall_warning < 0) {
        P.stall_reported = false;
    } else if (now - oldest < STALL_NS || P.running < P.threads ||
               P.threads < P.cfg.max_threads) {
        P.stall_reported = false;
        arm_stall_locked(eg__add_sat(now - oldest < STALL_NS ? oldest : now, STALL_NS));
    } else {
        if (!P.stall_reported) {
            P.stall_reported = true;
            fprintf(
                stderr,
                "errgroup: %d task(s) queued for %lld ms with all %d pool threads busy "
                "(the maximum); raise it with EG_MAX_THREADS or eg_pool_configure() "
                "(EG_STALL_WARN=0 silences this)\n",
                P.queued, (long long)((now - oldest) / EG_NSEC_PER_MSEC),
                P.cfg.max_threads);
        }
        arm_stall_locked(eg__add_sat(now, STALL_NS));
    }
    pthread_mutex_unlock(&P.mu);
}

/* ---- submission ------------------------------------------------------- */

/* Decides, before t is visible to any other thread, that a thread will look
 * at it: a spinner or a signalled sleeper exists, a watcher settles a
 * deferred pass, a sleeper was woken, a thread started, or the pool is at
 * its maximum (a running worker comes back to it). Only then is t queued,
 * still under P.mu. A failed thread start leaves t unpublished and the
 * caller gets -EAGAIN with t (and its argument) untouched: once queued, t
 * belongs to the worker that pops it and this function never reads it
 * again. add_avail_locked drops P.mu around pthread_create, which is why the
 * decision comes first. */
int eg__pool_submit(eg__queue *q, eg__task *t)
{
    pool_init();
    int64_t now = eg__now_coarse();
    pthread_mutex_lock(&P.mu);
    int rc = 0;
    uint64_t started = P.started;
    if (avail() == 0 && !(P.threads > 0 && defer_pass_locked()) &&
        add_avail_locked() < 0 && avail() == 0)
        rc = -EAGAIN; /* no worker will look at the queue and none could start */
    if (rc == 0) {
        t->queued_at = now;
        queue_push(q ? q : &P.shared, t);
        /* A thread started above (P.mu was dropped meanwhile) may have found
         * the queues empty and gone to sleep, or even exited. Make sure a
         * thread looks at t, without dropping P.mu now that t is visible:
         * wake a sleeper, or let the retry timer start one. */
        if (P.started != started && avail() == 0) {
            if (!eg__list_empty(&P.sleepers))
                (void)add_avail_locked(); /* signals a sleeper: P.mu stays held */
            else if (P.threads < P.cfg.max_threads)
                arm_retry_locked();
        }
        watch_stall_locked();
    }
    pthread_mutex_unlock(&P.mu);
    return rc;
}

/* If no thread can start now, t waits until a retry starts one or a worker
 * frees. */
void eg__pool_post(eg__task *t)
{
    pool_init();
    int64_t now = eg__now_coarse();
    pthread_mutex_lock(&P.mu);
    t->queued_at = now;
    queue_push(&P.shared, t);
    if (avail() == 0 && add_avail_locked() < 0)
        arm_retry_locked();
    watch_stall_locked();
    pthread_mutex_unlock(&P.mu);
}

eg__task *eg__pool_take(eg__queue *q)
{
    pthread_mutex_lock(&P.mu);
    eg__task *t = queue_head(q);
    if (t)
        queue_unlink(t);
    pthread_mutex_unlock(&P.mu);
    return t;
}

/* ---- fork ------------------------------------------------------------- */

/* fork.c takes P.mu before the timer lock (the pool arms timers under P.mu)
 * around fork(), so the child inherits consistent queues. */
void eg__pool_atfork_prepare(void)
{
    pthread_mutex_lock(&P.mu);
}

void eg__pool_atfork_parent(void)
{
    pthread_mutex_unlock(&P.mu);
}

/* Threads do not survive fork, and nothing of the parent runs in the child:
 * every queue is emptied (the tasks are dropped, not run, not freed), the
 * counters restart at zero and the timers are forgotten (timer.c clears its
 * heap). */
void eg__pool_atfork_child(void)
{
    eg__link *l;
    while ((l = eg__list_pop(&P.ready))) {
        eg__queue *q = EG__CONTAINER_OF(l, eg__queue, ready_link);
        q->tasks = (eg__list){0};
        q->ready = 0;
    }
    P.mu = (pthread_mutex_t)EG_POOL_MUTEX_INITIALIZER;
    memset(&P.shared, 0, sizeof P.shared);
    P.queued = 0;
    atomic_store(&P.queued_hint, 0);
    P.threads = P.running = P.spinning = P.signaled = 0;
    P.sleepers = (eg__list){0};
    P.retry_armed = false;
    P.retry_timer.index = SIZE_MAX;
    P.stall_armed = P.stall_reported = false;
    P.stall_timer.index = SIZE_MAX;
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
