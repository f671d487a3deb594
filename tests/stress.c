/*
 * stress.c - randomized stress of groups, contexts, channels, semaphores and
 * eg_after_func, with invariants checked after every round.
 *
 *   stress [--seed S] [--rounds N] [--seconds T] [--hang-seconds H] [--verbose]
 *
 * Defaults: a time-based seed, 10000 rounds (about a minute under TSan),
 * no time limit.
 *
 * A round builds a random scenario from its own seed (derived from S and the
 * round number, so "--seed S" replays the same choices; thread timing still
 * varies): a parent context, maybe a tiny deadline below it, maybe a thread
 * that cancels the parent at a random moment, then a group of 1..50 tasks
 * with a random limit. Tasks do small work (spins, yields, short eg_sleep,
 * child contexts made and dropped), fail with a unique code, nest a group of
 * their own (depth <= 3), use a semaphore, or produce/consume on a channel.
 * eg_after_func handles on the round's contexts race eg_after_stop.
 *
 * Invariants checked:
 *   - a task eg_go accepted ran exactly once; one it refused never ran;
 *   - eg_wait's result is 0 when no task failed, else the result of a task
 *     that failed, and a task that saw its group already cancelled by a
 *     sibling's failure before returning cannot be that first failure;
 *   - the group's context is done with cause == eg_wait's result
 *     (-ECANCELED for 0), or with the parent's cause when the parent was
 *     done (outside cancel, deadline);
 *   - channel: every element a send delivered was received or is still
 *     buffered (count and checksum); -EPIPE only after every producer ended;
 *   - semaphore: held weight never exceeds the size; all of it is free at
 *     the end;
 *   - eg_after_func: exactly one of (eg_after_stop returned true, fn ran);
 *     fn ran only once its context was done and never inside eg_cancel;
 *   - eg_live_objects() is back to 0 after each round.
 *
 * "First to finish" cannot be checked exactly: a task takes its finishing
 * ticket before returning and the group records the result under its lock
 * after the return, so two failures can record in the opposite order of
 * their tickets. The check above is the exact part of that contract.
 *
 * A watchdog thread aborts (printing the seed and round) when no round
 * completes for --hang-seconds (default 60). Exit status 0 and "N rounds
 * passed" on success.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "errgroup.h"

#define MAX_DEPTH 3
#define OUTSIDE_CAUSE (-7001)
#define DEADLINE_CAUSE (-7002)
#define CODE_BASE 100000 /* task failure codes: -(CODE_BASE + id) */

/* ---- run state and failure reporting ---------------------------------- */

static uint64_t opt_seed;
static atomic_ulong cur_round;
static atomic_ulong rounds_done;
static bool opt_verbose;

static void fail(const char *fmt, ...) EG_PRINTF(1, 2);
static void fail(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "stress: FAILED (seed %" PRIu64 ", round %lu): %s\n", opt_seed,
            atomic_load(&cur_round), buf);
    fflush(stderr);
    abort();
}

#define CHECK(cond, ...) \
    do { \
        if (!(cond)) \
            fail(__VA_ARGS__); \
    } while (0)

/* ---- random numbers (splitmix64: tiny, seedable, good enough) ------------ */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static int rnd(rng *r, int lo, int hi)
{
    return lo + (int)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* True with probability pct percent. */
static bool chance(rng *r, int pct)
{
    return rnd(r, 0, 99) < pct;
}

/* ---- helpers ---------------------------------------------------------------- */

/* Set while this thread is inside eg_cancel: eg_after_func callbacks must
 * never run there. */
static _Thread_local bool in_cancel;

static void cancel(eg_ctx *ctx, int cause)
{
    in_cancel = true;
    eg_cancel(ctx, cause);
    in_cancel = false;
}

static bool is_ctx_err(int e)
{
    return e == -ECANCELED || e == -ETIMEDOUT;
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i = i + 1) {
    }
}

static void nap_ns(long ns)
{
    struct timespec ts = {0, ns};
    nanosleep(&ts, NULL);
}

static atomic_int task_ids; /* per round: unique failure codes */

/* Coverage counters, printed at the end. */
static struct {
    atomic_long groups, tasks, failed_groups, outside, deadlines, nested, chans, sems,
        afters_stopped, afters_ran;
} stats;

/* ---- eg_after_func records ----------------------------------------------------- */

enum { STOP_MAIN_EARLY, STOP_CANCELLER, STOP_MAIN_LATE, STOP_KINDS };

typedef struct after_rec {
    eg_ctx *ctx; /* kept alive by the handle while fn may run */
    eg_after *h;
    int stopper;
    bool stopped;
    atomic_int ran;
} after_rec;

static void after_cb(void *arg)
{
    after_rec *a = arg;
    CHECK(!in_cancel, "after_func callback ran inside eg_cancel");
    CHECK(eg_ctx_done(a->ctx), "after_func callback ran before its context was done");
    CHECK(atomic_fetch_add(&a->ran, 1) == 0, "after_func callback ran twice");
}

static void after_stop(after_rec *a)
{
    a->stopped = eg_after_stop(a->h);
    a->h = NULL;
}

/* ---- groups and tasks ------------------------------------------------------ */

enum { T_WORK, T_NEST, T_PRODUCER, T_CONSUMER, T_SEM };

typedef struct grp grp;

typedef struct task {
    grp *G;
    int kind;
    int code;         /* this task's unique failure code */
    bool fail;        /* returns code ... */
    int fail_at;      /* ... at this point (work step, item) */
    bool ret_ctx_err; /* on cancellation return the context's error, else 0 */
    int steps;        /* work steps */
    int items;        /* producer: elements to send */
    int misuse;       /* 1: eg_set_limit must say -EBUSY, 2: eg_wait -EDEADLK */
    uint64_t seed;    /* for the work and a nested group */
    bool started;     /* eg_go returned 0 */
    atomic_int ran;
    int rc;         /* what the task returned */
    int seen_cause; /* eg_ctx_cause(group ctx) just before returning */
} task;

struct grp {
    eg_group *g;
    eg_ctx *parent;
    int depth;
    int n;
    task *tasks;
    /* channel */
    eg_chan *ch;
    atomic_int producers_left;
    atomic_long sent_n, sent_sum, recv_n, recv_sum;
    /* semaphore */
    eg_sem *sem;
    int64_t sem_size;
    atomic_long sem_held;
};

static int run_group(eg_ctx *parent, int depth, uint64_t seed);

/* Small work with cancellation points. Returns 0 or the context's error. */
static int do_work(eg_ctx *ctx, rng *r, int steps)
{
    for (int i = 0; i < steps; i++) {
        switch (rnd(r, 0, 5)) {
        case 0:
            spin((unsigned)rnd(r, 0, 3000));
            break;
        case 1:
            sched_yield();
            break;
        case 2: {
            int e = eg_sleep(ctx, rnd(r, 0, 50) * EG_NSEC_PER_USEC);
            if (e) {
                CHECK(e == eg_ctx_err(ctx), "eg_sleep returned %d, ctx err %d", e,
                      eg_ctx_err(ctx));
                return e;
            }
            break;
        }
        case 3: {
            /* A child made and dropped while the parent may be cancelled. */
            eg_ctx *c = chance(r, 50)
                            ? eg_with_cancel(ctx)
                            : eg_with_timeout(ctx, rnd(r, 0, 30) * EG_NSEC_PER_USEC);
            CHECK(c != NULL, "child context: NULL");
            if (chance(r, 10))
                CHECK(eg_ctx_fd(c) >= 0, "eg_ctx_fd failed");
            if (chance(r, 30))
                eg_ctx_wait_until(c, eg_now() + rnd(r, 0, 20) * EG_NSEC_PER_USEC);
            /* A parent's cancel reaches the child before it returns; the
             * child may lag while that cancel is still running. */
            if (eg_ctx_err(ctx))
                CHECK(eg_ctx_wait(c) != 0, "child never done after its parent");
            if (chance(r, 30))
                cancel(c, 0);
            eg_ctx_release(c);
            break;
        }
        default: {
            int e = eg_ctx_err(ctx);
            if (e)
                return e;
            break;
        }
        }
    }
    return 0;
}

static int producer(eg_ctx *ctx, task *t, rng *r)
{
    grp *G = t->G;
    int ret = 0;
    for (int i = 0; i < t->items; i++) {
        if (t->fail && i == t->fail_at) {
            ret = t->code;
            break;
        }
        if (chance(r, 30) && (ret = do_work(ctx, r, 1)))
            break;
        long v = ((long)(t - G->tasks) << 20) + i + 1;
        int e = eg_chan_send(ctx, G->ch, &v);
        if (e == 0) {
            atomic_fetch_add(&G->sent_n, 1);
            atomic_fetch_add(&G->sent_sum, v);
            continue;
        }
        CHECK(is_ctx_err(e) && e == eg_ctx_err(ctx), "eg_chan_send: %d (ctx err %d)", e,
              eg_ctx_err(ctx));
        ret = e;
        break;
    }
    if (ret == 0 && t->fail)
        ret = t->code;
    /* The last producer closes, whatever happened to it. */
    if (atomic_fetch_sub(&G->producers_left, 1) == 1)
        eg_chan_close(G->ch);
    return ret;
}

static int consumer(eg_ctx *ctx, task *t, rng *r)
{
    grp *G = t->G;
    for (int got = 0;; got++) {
        if (t->fail && got == t->fail_at)
            return t->code;
        long v = 0;
        int e = eg_chan_recv(ctx, G->ch, &v);
        if (e == 0) {
            CHECK(v > 0, "received a bad element %ld", v);
            atomic_fetch_add(&G->recv_n, 1);
            atomic_fetch_add(&G->recv_sum, v);
            if (chance(r, 20))
                sched_yield();
            continue;
        }
        if (e == -EPIPE) {
            CHECK(atomic_load(&G->producers_left) == 0, "-EPIPE before producers ended");
            return t->fail ? t->code : 0;
        }
        CHECK(is_ctx_err(e) && e == eg_ctx_err(ctx), "eg_chan_recv: %d (ctx err %d)", e,
              eg_ctx_err(ctx));
        return e;
    }
}

static int sem_user(eg_ctx *ctx, task *t, rng *r)
{
    grp *G = t->G;
    for (int i = 0; i < t->steps; i++) {
        int64_t w = rnd(r, 1, (int)G->sem_size);
        if (chance(r, 20)) {
            if (!eg_sem_try_acquire(G->sem, w))
                continue;
        } else {
            int e = eg_sem_acquire(ctx, G->sem, w);
            if (e) {
                CHECK(is_ctx_err(e) && e == eg_ctx_err(ctx), "eg_sem_acquire: %d", e);
                return e;
            }
        }
        long held = atomic_fetch_add(&G->sem_held, w) + w;
        CHECK(held <= G->sem_size, "semaphore over-granted: %ld > %" PRId64, held,
              G->sem_size);
        if (chance(r, 50))
            sched_yield();
        atomic_fetch_sub(&G->sem_held, w);
        eg_sem_release(G->sem, w);
        if (t->fail && i == t->fail_at)
            return t->code;
    }
    return t->fail ? t->code : 0;
}

static int task_fn(eg_ctx *ctx, void *arg)
{
    task *t = arg;
    CHECK(atomic_fetch_add(&t->ran, 1) == 0, "task ran twice");
    CHECK(ctx == eg_group_ctx(t->G->g), "task got a context other than its group's");
    rng r = {t->seed};
    int ret = 0;

    if (t->misuse == 1)
        CHECK(eg_set_limit(t->G->g, 3) == -EBUSY,
              "eg_set_limit inside a task: not -EBUSY");
    else if (t->misuse == 2)
        CHECK(eg_wait(t->G->g) == -EDEADLK, "eg_wait inside own task: not -EDEADLK");

    switch (t->kind) {
    case T_WORK:
        if (t->fail && t->fail_at == 0)
            ret = t->code;
        else if (!(ret = do_work(ctx, &r, t->steps)) && t->fail)
            ret = t->code;
        break;
    case T_NEST:
        ret = run_group(ctx, t->G->depth + 1, rng_next(&r));
        if (ret == 0 && t->fail)
            ret = t->code;
        break;
    case T_PRODUCER:
        ret = producer(ctx, t, &r);
        break;
    case T_CONSUMER:
        ret = consumer(ctx, t, &r);
        break;
    case T_SEM:
        ret = sem_user(ctx, t, &r);
        break;
    }
    if (is_ctx_err(ret) && !t->ret_ctx_err)
        ret = 0;
    t->seen_cause = eg_ctx_cause(ctx);
    t->rc = ret;
    return ret;
}

/* Checks a group after eg_wait returned err. parent is the group's parent. */
static void check_group(grp *G, int err)
{
    eg_ctx *gctx = eg_group_ctx(G->g);
    int perr = eg_ctx_err(G->parent);
    int pcause = eg_ctx_cause(G->parent);
    int gerr = eg_ctx_err(gctx);
    int gcause = eg_ctx_cause(gctx);

    const task *winner = NULL;
    int failures = 0;
    for (int i = 0; i < G->n; i++) {
        const task *t = &G->tasks[i];
        int ran = atomic_load(&t->ran);
        CHECK(ran == (t->started ? 1 : 0), "task %d: started %d, ran %d times", i,
              t->started, ran);
        if (t->started && t->rc) {
            failures++;
            if (t->rc == err && !winner)
                winner = t;
        }
    }
    CHECK(eg_group_err(G->g) == err, "eg_group_err %d != eg_wait %d", eg_group_err(G->g),
          err);
    if (failures == 0)
        CHECK(err == 0, "eg_wait returned %d but no task failed", err);
    else
        CHECK(winner != NULL, "eg_wait returned %d, not the result of any task", err);

    /* eg_wait cancels the group's context in any case. */
    CHECK(gerr == -ECANCELED || (gerr == -ETIMEDOUT && perr == -ETIMEDOUT),
          "group ctx err %d (parent err %d)", gerr, perr);
    int own = err ? err : -ECANCELED;
    CHECK(gcause == own || (perr && gcause == pcause),
          "group ctx cause %d; eg_wait %d, parent err %d cause %d", gcause, err, perr,
          pcause);
    if (!perr)
        CHECK(gcause == own, "group ctx cause %d != %d with a live parent", gcause, own);

    if (winner) {
        /* The first failure recorded while the context was not yet
         * cancelled by a sibling: anything it saw came from the parent. */
        CHECK(winner->seen_cause == 0 || (perr && winner->seen_cause == pcause),
              "first failure %d returned after seeing cause %d (parent cause %d)", err,
              winner->seen_cause, pcause);
        /* Returning the context's error can only win when the parent
         * cancelled the group. */
        if (is_ctx_err(err))
            CHECK(perr && gcause == pcause, "ctx error %d won without a parent cancel",
                  err);
    }
    /* eg_wait again: the same first result. */
    CHECK(eg_wait(G->g) == err, "second eg_wait differs");
}

/* Builds, runs, checks and frees one group. Returns its eg_wait result. */
static int run_group(eg_ctx *parent, int depth, uint64_t seed)
{
    rng r = {seed};
    grp G = {.parent = parent, .depth = depth};
    G.n = depth == 0 ? rnd(&r, 1, 50) : rnd(&r, 1, 8);
    G.tasks = calloc((size_t)G.n, sizeof *G.tasks);
    CHECK(G.tasks != NULL, "calloc");
    G.g = eg_group_new(parent);
    CHECK(G.g != NULL, "eg_group_new: NULL");
    CHECK(eg_live_objects() > 0, "live objects not counted");

    bool with_chan = G.n >= 2 && chance(&r, 30);
    bool with_sem = chance(&r, 30);
    int limit = chance(&r, 40) ? -1 : rnd(&r, 1, 8);
    if (with_chan)
        limit = -1; /* producers blocked on a full channel must not keep
                       consumers from being admitted */
    CHECK(eg_set_limit(G.g, limit) == 0, "eg_set_limit on an idle group");

    int fail_pct = chance(&r, 40) ? 0 : chance(&r, 50) ? 5 : 30;
    int producers = 0;
    if (with_chan) {
        G.ch = eg_chan_new((size_t)rnd(&r, 0, 4), sizeof(long));
        CHECK(G.ch != NULL, "eg_chan_new: NULL");
        producers = rnd(&r, 1, G.n - 1);
        atomic_store(&G.producers_left, producers);
    }
    if (with_sem) {
        G.sem_size = rnd(&r, 1, 4);
        G.sem = eg_sem_new(G.sem_size);
        CHECK(G.sem != NULL, "eg_sem_new: NULL");
    }

    for (int i = 0; i < G.n; i++) {
        task *t = &G.tasks[i];
        t->G = &G;
        t->code = -(CODE_BASE + atomic_fetch_add(&task_ids, 1));
        t->seed = rng_next(&r);
        t->ret_ctx_err = chance(&r, 60);
        t->steps = rnd(&r, 0, 6);
        t->fail = chance(&r, fail_pct);
        if (with_chan && i < producers) {
            t->kind = T_PRODUCER;
            t->items = rnd(&r, 0, 10);
            t->fail_at = rnd(&r, 0, t->items);
        } else if (with_chan) {
            t->kind = T_CONSUMER;
            t->fail_at = rnd(&r, 0, 12);
        } else if (with_sem && chance(&r, 60)) {
            t->kind = T_SEM;
            t->fail_at = rnd(&r, 0, t->steps);
        } else if (depth < MAX_DEPTH && chance(&r, depth == 0 ? 10 : 20)) {
            t->kind = T_NEST;
        } else {
            t->kind = T_WORK;
            t->fail_at = rnd(&r, 0, 1);
        }
        if (chance(&r, 2))
            t->misuse = rnd(&r, 1, 2);
    }

    for (int i = 0; i < G.n; i++) {
        task *t = &G.tasks[i];
        /* eg_try_go only where a refusal cannot strand a channel peer. */
        bool try = !with_chan && limit > 0 && chance(&r, 20);
        int rc = try ? eg_try_go(G.g, task_fn, t) : eg_go(G.g, task_fn, t);
        CHECK(rc == 0 || (try && rc == -EBUSY), "eg_go/eg_try_go: %d", rc);
        t->started = rc == 0;
        if (chance(&r, 5))
            sched_yield();
    }

    int err = eg_wait(G.g);
    check_group(&G, err);
    atomic_fetch_add(&stats.groups, 1);
    atomic_fetch_add(&stats.tasks, G.n);
    if (err)
        atomic_fetch_add(&stats.failed_groups, 1);
    if (depth > 0)
        atomic_fetch_add(&stats.nested, 1);
    if (G.ch)
        atomic_fetch_add(&stats.chans, 1);
    if (G.sem)
        atomic_fetch_add(&stats.sems, 1);

    if (G.ch) {
        long left_n = 0, left_sum = 0, v;
        while (eg_chan_try_recv(G.ch, &v) == 0)
            left_n++, left_sum += v;
        long sn = atomic_load(&G.sent_n), rn = atomic_load(&G.recv_n);
        CHECK(sn == rn + left_n, "channel: sent %ld, received %ld, left %ld", sn, rn,
              left_n);
        CHECK(atomic_load(&G.sent_sum) == atomic_load(&G.recv_sum) + left_sum,
              "channel: checksums differ");
        eg_chan_free(G.ch);
    }
    if (G.sem) {
        CHECK(atomic_load(&G.sem_held) == 0, "semaphore weight still counted as held");
        CHECK(eg_sem_try_acquire(G.sem, G.sem_size), "semaphore weight not all free");
        eg_sem_release(G.sem, G.sem_size);
        eg_sem_free(G.sem);
    }
    eg_group_free(G.g);
    free(G.tasks);
    return err;
}

/* ---- the outside canceller -------------------------------------------------- */

typedef struct canceller {
    pthread_t tid;
    eg_ctx *target;
    int delay_kind, delay;
    after_rec *afters;
    int nafters;
} canceller;

static void *canceller_main(void *arg)
{
    canceller *c = arg;
    switch (c->delay_kind) {
    case 0:
        break;
    case 1:
        spin((unsigned)c->delay * 20);
        break;
    case 2:
        sched_yield();
        break;
    default:
        nap_ns(c->delay * 1000L);
        break;
    }
    cancel(c->target, OUTSIDE_CAUSE);
    CHECK(eg_ctx_err(c->target) == -ECANCELED, "outside cancel: err %d",
          eg_ctx_err(c->target));
    for (int i = 0; i < c->nafters; i++)
        if (c->afters[i].stopper == STOP_CANCELLER)
            after_stop(&c->afters[i]);
    return NULL;
}

/* ---- WaitGroup ------------------------------------------------------------------ */

static void wg_fn(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void wg_round(rng *r)
{
    eg_wg wg;
    CHECK(eg_wg_init(&wg) == 0, "eg_wg_init");
    atomic_int count = 0;
    int n = rnd(r, 1, 8);
    for (int i = 0; i < n; i++)
        CHECK(eg_wg_go(&wg, wg_fn, &count) == 0, "eg_wg_go");
    eg_wg_wait(&wg);
    CHECK(atomic_load(&count) == n, "WaitGroup: %d of %d ran", atomic_load(&count), n);
    CHECK(eg_wg_done(&wg) == -EINVAL, "eg_wg_done below zero");
    eg_wg_destroy(&wg);
}

/* ---- a round ---------------------------------------------------------------------- */

static void wait_live_zero(void)
{
    /* eg_after handles drop their last reference right after fn returns. */
    for (int i = 0; eg_live_objects() != 0; i++) {
        CHECK(i < 20000, "eg_live_objects() stays at %ld after a round",
              eg_live_objects());
        nap_ns(100000);
    }
}

static void run_round(uint64_t round_seed)
{
    rng r = {round_seed};
    atomic_store(&task_ids, 0);

    eg_ctx *P = eg_with_cancel(NULL);
    CHECK(P != NULL, "eg_with_cancel: NULL");
    eg_ctx *D = NULL;
    if (chance(&r, 25)) {
        D = eg_with_timeout_cause(P, rnd(&r, 0, 300) * EG_NSEC_PER_USEC,
                                  chance(&r, 50) ? DEADLINE_CAUSE : 0);
        CHECK(D != NULL, "eg_with_timeout: NULL");
    }
    eg_ctx *parent = D ? D : P;

    int nafters = chance(&r, 40) ? rnd(&r, 1, 4) : 0;
    after_rec afters[4];
    memset(afters, 0, sizeof afters);
    bool outside = chance(&r, 35);
    for (int i = 0; i < nafters; i++) {
        after_rec *a = &afters[i];
        a->ctx = chance(&r, 50) ? P : parent;
        a->stopper = rnd(&r, 0, STOP_KINDS - 1);
        if (a->stopper == STOP_CANCELLER && !outside)
            a->stopper = STOP_MAIN_LATE;
        atomic_init(&a->ran, 0);
        a->h = eg_after_func(a->ctx, after_cb, a);
        CHECK(a->h != NULL, "eg_after_func: NULL");
    }

    canceller c = {.target = P, .afters = afters, .nafters = nafters};
    if (outside) {
        c.delay_kind = rnd(&r, 0, 3);
        c.delay = rnd(&r, 0, 200);
        CHECK(pthread_create(&c.tid, NULL, canceller_main, &c) == 0, "pthread_create");
    }
    for (int i = 0; i < nafters; i++)
        if (afters[i].stopper == STOP_MAIN_EARLY)
            after_stop(&afters[i]);

    int err = run_group(parent, 0, rng_next(&r));
    (void)err;
    if (chance(&r, 10))
        wg_round(&r);

    if (outside)
        pthread_join(c.tid, NULL);
    for (int i = 0; i < nafters; i++)
        if (afters[i].stopper == STOP_MAIN_LATE)
            after_stop(&afters[i]);

    if (D && eg_ctx_err(D) == -ETIMEDOUT)
        atomic_fetch_add(&stats.deadlines, 1);
    if (outside)
        atomic_fetch_add(&stats.outside, 1);
    cancel(P, 0);
    eg_ctx_release(D);
    eg_ctx_release(P);

    for (int i = 0; i < nafters; i++) {
        after_rec *a = &afters[i];
        CHECK(a->h == NULL, "after handle %d not stopped", i);
        if (!a->stopped)
            for (int k = 0; atomic_load(&a->ran) == 0; k++) {
                CHECK(k < 20000, "after_func: stop returned false but fn never ran");
                nap_ns(100000);
            }
    }
    wait_live_zero();
    for (int i = 0; i < nafters; i++)
        atomic_fetch_add(afters[i].stopped ? &stats.afters_stopped : &stats.afters_ran,
                         1);
    for (int i = 0; i < nafters; i++)
        CHECK(atomic_load(&afters[i].ran) == (afters[i].stopped ? 0 : 1),
              "after_func %d: stopped %d, ran %d", i, afters[i].stopped,
              atomic_load(&afters[i].ran));
}

/* ---- watchdog and main ---------------------------------------------------------- */

static int opt_hang = 60;

static void *watchdog_main(void *arg)
{
    (void)arg;
    unsigned long last = atomic_load(&rounds_done);
    int still = 0;
    for (;;) {
        nap_ns(250 * 1000 * 1000L);
        unsigned long now = atomic_load(&rounds_done);
        if (now != last) {
            last = now;
            still = 0;
        } else if (++still >= opt_hang * 4) {
            fprintf(stderr,
                    "stress: HANG: no round finished for %d s (seed %" PRIu64
                    ", round %lu); replay with --seed %" PRIu64 "\n",
                    opt_hang, opt_seed, atomic_load(&cur_round), opt_seed);
            fflush(stderr);
            abort();
        }
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "usage: stress [--seed S] [--rounds N] [--seconds T] "
                    "[--hang-seconds H] [--verbose]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    unsigned long rounds = 10000;
    bool rounds_given = false;
    double seconds = 0;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    opt_seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--verbose")) {
            opt_verbose = true;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--seed"))
            opt_seed = strtoull(v, NULL, 0);
        else if (!strcmp(a, "--rounds"))
            rounds = strtoul(v, NULL, 0), rounds_given = true;
        else if (!strcmp(a, "--seconds"))
            seconds = strtod(v, NULL);
        else if (!strcmp(a, "--hang-seconds"))
            opt_hang = atoi(v);
        else
            usage();
    }
    if (seconds > 0 && !rounds_given)
        rounds = 0; /* until the time is up */
    if (opt_hang < 1)
        opt_hang = 1;

    printf("stress: seed %" PRIu64 "\n", opt_seed);
    fflush(stdout);
    CHECK(eg_live_objects() == 0, "live objects at start");

    pthread_t wd;
    CHECK(pthread_create(&wd, NULL, watchdog_main, NULL) == 0, "pthread_create");
    pthread_detach(wd);

    int64_t start = eg_now();
    unsigned long n = 0;
    for (;; n++) {
        if (rounds && n >= rounds)
            break;
        if (seconds > 0 && (double)(eg_now() - start) / 1e9 >= seconds)
            break;
        atomic_store(&cur_round, n);
        rng seeder = {opt_seed ^ (UINT64_C(0xA24BAED4963EE407) * (n + 1))};
        run_round(rng_next(&seeder));
        atomic_store(&rounds_done, n + 1);
        if (opt_verbose && (n + 1) % 1000 == 0) {
            printf("stress: %lu rounds\n", n + 1);
            fflush(stdout);
        }
    }
    printf("stress: %ld groups (%ld nested, %ld failed), %ld tasks, %ld with a channel, "
           "%ld with a semaphore; %ld outside cancels, %ld deadlines hit; after_func: "
           "%ld stopped, %ld ran\n",
           atomic_load(&stats.groups), atomic_load(&stats.nested),
           atomic_load(&stats.failed_groups), atomic_load(&stats.tasks),
           atomic_load(&stats.chans), atomic_load(&stats.sems),
           atomic_load(&stats.outside), atomic_load(&stats.deadlines),
           atomic_load(&stats.afters_stopped), atomic_load(&stats.afters_ran));
    printf("%lu rounds passed\n", n);
    return 0;
}
