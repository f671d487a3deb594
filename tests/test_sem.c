/*
 * test_sem.c - the weighted semaphore: golang.org/x/sync/semaphore's tests
 * ported (TestWeighted, TestWeightedPanic, TestWeightedTryAcquire,
 * TestWeightedAcquire, TestWeightedDoesntBlockIfTooBig,
 * TestLargeAcquireDoesntStarve, TestAllocCancelDoesntStarve,
 * TestWeightedAcquireCanceled), plus FIFO order and cancellation of a blocked
 * acquire by another thread, a group sibling's failure and a deadline.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- an acquire on its own thread --------------------------------------- */

typedef struct acq {
    pthread_t thread;
    eg_ctx *ctx;
    eg_sem *s;
    int64_t n;
    int rc;
    atomic_int finished;
    atomic_int *order; /* finish order counter, optional */
    int rank;
    atomic_int tid;
} acq;

static void *acq_main(void *arg)
{
    acq *a = arg;
    atomic_store(&a->tid, thread_id());
    a->rc = eg_sem_acquire(a->ctx, a->s, a->n);
    if (a->order)
        a->rank = atomic_fetch_add(a->order, 1);
    atomic_store(&a->finished, 1);
    return NULL;
}

static void acq_start(acq *a, eg_ctx *ctx, eg_sem *s, int64_t n, atomic_int *order)
{
    *a = (acq){.ctx = ctx, .s = s, .n = n, .rc = 1, .order = order};
    assert_int_equal(pthread_create(&a->thread, NULL, acq_main, a), 0);
}

static int acq_join(acq *a)
{
    pthread_join(a->thread, NULL);
    return a->rc;
}

/* ---- TestWeighted: hammer with weights 0..n-1 ----------------------------- */

#define HAMMER_N 4
#define HAMMER_LOOPS 400

typedef struct hammer {
    eg_sem *s;
    int64_t n;
    atomic_llong *held;
    atomic_int *bad;
    unsigned seed;
} hammer;

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    for (int i = 0; i < HAMMER_LOOPS; i++) {
        if (eg_sem_acquire(eg_background(), h->s, h->n) != 0)
            atomic_fetch_add(h->bad, 1);
        if (atomic_fetch_add(h->held, h->n) + h->n > HAMMER_N)
            atomic_fetch_add(h->bad, 1); /* more weight out than exists */
        nap_us(rand_r(&h->seed) % 1000);
        atomic_fetch_sub(h->held, h->n);
        eg_sem_release(h->s, h->n);
    }
    return NULL;
}

static void test_weighted(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(HAMMER_N);
    assert_non_null(s);
    atomic_llong held = 0;
    atomic_int bad = 0;
    pthread_t t[HAMMER_N];
    hammer h[HAMMER_N];
    for (int i = 0; i < HAMMER_N; i++) {
        h[i] = (hammer){.s = s, .n = i, .held = &held, .bad = &bad, .seed = (unsigned)i};
        assert_int_equal(pthread_create(&t[i], NULL, hammer_main, &h[i]), 0);
    }
    for (int i = 0; i < HAMMER_N; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&bad), 0);
    assert_true(eg_sem_try_acquire(s, HAMMER_N)); /* all weight returned */
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- TestWeightedPanic, and the requests Go would block on forever ------- */

static void test_weighted_panic(void **state)
{
    (void)state;
    long live = eg_live_objects();
    assert_null(eg_sem_new(0));
    assert_null(eg_sem_new(-1));
    eg_sem_free(NULL);
    assert_false(eg_sem_try_acquire(NULL, 1));
    eg_sem_release(NULL, 1);

    eg_sem *s = eg_sem_new(1);
    assert_non_null(s);
    assert_int_equal(eg_sem_acquire(eg_background(), s, 2), -EINVAL);
    assert_int_equal(eg_sem_acquire(eg_background(), s, -1), -EINVAL);
    assert_int_equal(eg_sem_acquire(NULL, s, 1), -EINVAL);
    assert_int_equal(eg_sem_acquire(eg_background(), NULL, 1), -EINVAL);
    assert_false(eg_sem_try_acquire(s, 2));
    assert_false(eg_sem_try_acquire(s, -1));
    assert_true(eg_sem_try_acquire(s, 1));
    eg_sem_release(s, 1);

    /* Go panics when more is released than held. Debug builds abort; release
     * builds clamp to nothing held. Run it in a child to allow either. */
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        eg_sem_release(s, 1);
        /* Clamped: the whole weight, and no more, is available. */
        bool ok = eg_sem_try_acquire(s, 1) && !eg_sem_try_acquire(s, 1);
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
#ifdef NDEBUG
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
#else
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
#endif
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- TestWeightedTryAcquire ------------------------------------------------ */

static void test_weighted_try_acquire(void **state)
{
    (void)state;
    eg_ctx *ctx = eg_background();
    eg_sem *s = eg_sem_new(2);
    assert_non_null(s);
    bool tries[4];
    assert_int_equal(eg_sem_acquire(ctx, s, 1), 0);
    tries[0] = eg_sem_try_acquire(s, 1);
    tries[1] = eg_sem_try_acquire(s, 1);
    eg_sem_release(s, 2);
    tries[2] = eg_sem_try_acquire(s, 1);
    assert_int_equal(eg_sem_acquire(ctx, s, 1), 0);
    tries[3] = eg_sem_try_acquire(s, 1);
    bool want[4] = {true, false, true, false};
    for (int i = 0; i < 4; i++)
        assert_int_equal(tries[i], want[i]);
    eg_sem_free(s);
}

/* ---- TestWeightedAcquire --------------------------------------------------- */

static bool acquire_briefly(eg_sem *s, int64_t n)
{
    eg_ctx *ctx = eg_with_timeout(NULL, MS(10));
    assert_non_null(ctx);
    int rc = eg_sem_acquire(ctx, s, n);
    eg_ctx_release(ctx);
    assert_true(rc == 0 || rc == -ETIMEDOUT);
    return rc == 0;
}

static void test_weighted_acquire(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_ctx *ctx = eg_background();
    eg_sem *s = eg_sem_new(2);
    assert_non_null(s);
    bool tries[4];
    assert_int_equal(eg_sem_acquire(ctx, s, 1), 0);
    tries[0] = acquire_briefly(s, 1);
    tries[1] = acquire_briefly(s, 1);
    eg_sem_release(s, 2);
    tries[2] = acquire_briefly(s, 1);
    assert_int_equal(eg_sem_acquire(ctx, s, 1), 0);
    tries[3] = acquire_briefly(s, 1);
    bool want[4] = {true, false, true, false};
    for (int i = 0; i < 4; i++)
        assert_int_equal(tries[i], want[i]);
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- TestWeightedDoesntBlockIfTooBig --------------------------------------- */

static int acquire_one_briefly(eg_ctx *ctx, void *arg)
{
    eg_sem *s = arg;
    int rc = eg_sem_acquire(ctx, s, 1);
    if (rc == 0) {
        sleep_ms(1);
        eg_sem_release(s, 1);
    }
    return rc;
}

static void test_weighted_doesnt_block_if_too_big(void **state)
{
    (void)state;
    long live = eg_live_objects();
    const int n = 2;
    eg_sem *s = eg_sem_new(n);
    assert_non_null(s);
    /* Go parks this acquire until its context ends; here it fails at once,
     * and in neither case does it hold up the acquires below. */
    assert_int_equal(eg_sem_acquire(eg_background(), s, n + 1), -EINVAL);
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    for (int i = n * 3; i > 0; i--)
        assert_int_equal(eg_go(g, acquire_one_briefly, s), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- TestLargeAcquireDoesntStarve ------------------------------------------ */

#define STARVE_N 4

typedef struct starver {
    eg_sem *s;
    atomic_bool *running;
} starver;

static void *starver_main(void *arg)
{
    starver *st = arg;
    while (atomic_load(st->running)) {
        sleep_ms(1);
        eg_sem_release(st->s, 1);
        eg_sem_acquire(eg_background(), st->s, 1);
    }
    eg_sem_release(st->s, 1);
    return NULL;
}

static void test_large_acquire_doesnt_starve(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(STARVE_N);
    assert_non_null(s);
    atomic_bool running = true;
    pthread_t t[STARVE_N];
    starver st = {.s = s, .running = &running};
    for (int i = 0; i < STARVE_N; i++) {
        assert_int_equal(eg_sem_acquire(eg_background(), s, 1), 0);
        assert_int_equal(pthread_create(&t[i], NULL, starver_main, &st), 0);
    }
    /* Would hang (and trip the watchdog) if the readers starved it. */
    assert_int_equal(eg_sem_acquire(eg_background(), s, STARVE_N), 0);
    atomic_store(&running, false);
    eg_sem_release(s, STARVE_N);
    for (int i = 0; i < STARVE_N; i++)
        pthread_join(t[i], NULL);
    assert_true(eg_sem_try_acquire(s, STARVE_N));
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- TestAllocCancelDoesntStarve ------------------------------------------- */

static void test_alloc_cancel_doesnt_starve(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(10);
    assert_non_null(s);
    /* Block off a portion so that acquire(10) queues. */
    assert_int_equal(eg_sem_acquire(eg_background(), s, 1), 0);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    acq big;
    acq_start(&big, ctx, s, 10, NULL);
    /* Wait until acquire(10) is queued: it then blocks try_acquire(1). */
    while (eg_sem_try_acquire(s, 1)) {
        eg_sem_release(s, 1);
        nap_us(100);
    }
    /* Cancel it while another acquire(1) queues behind it: the cancelled
     * head must hand on to the waiter behind, which then succeeds. */
    canceller c;
    cancel_later(&c, ctx, 0);
    assert_int_equal(eg_sem_acquire(eg_background(), s, 1), 0);
    eg_sem_release(s, 1);
    pthread_join(c.thread, NULL);
    assert_int_equal(acq_join(&big), -ECANCELED);
    eg_sem_release(s, 1);
    assert_true(eg_sem_try_acquire(s, 10));
    eg_ctx_release(ctx);
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- TestWeightedAcquireCanceled (golang/go#63615) ------------------------- */

typedef struct cancel_then_release {
    eg_sem *s;
    eg_ctx *ctx;
} cancel_then_release;

static void *cancel_then_release_main(void *arg)
{
    cancel_then_release *cr = arg;
    /* Synchronise with the acquire(2): it blocks try_acquire once queued. */
    while (eg_sem_try_acquire(cr->s, 1)) {
        eg_sem_release(cr->s, 1);
        nap_us(100);
    }
    eg_cancel(cr->ctx, 0);
    eg_sem_release(cr->s, 1);
    return NULL;
}

static void test_weighted_acquire_canceled(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (int round = 0; round < 20; round++) {
        eg_sem *s = eg_sem_new(2);
        assert_non_null(s);
        eg_ctx *ctx = eg_with_cancel(NULL);
        assert_non_null(ctx);
        assert_int_equal(eg_sem_acquire(eg_background(), s, 1), 0);
        cancel_then_release cr = {.s = s, .ctx = ctx};
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, cancel_then_release_main, &cr), 0);
        /* The context ends before the weight comes free: must fail, even if
         * the release granted the weight before this thread woke up. */
        assert_int_equal(eg_sem_acquire(ctx, s, 2), -ECANCELED);
        pthread_join(t, NULL);
        /* Both units are back. */
        assert_true(eg_sem_try_acquire(s, 2));
        eg_sem_release(s, 2);
        /* A done context fails even when nothing would block. */
        assert_int_equal(eg_sem_acquire(ctx, s, 1), -ECANCELED);
        assert_true(eg_sem_try_acquire(s, 2));
        eg_ctx_release(ctx);
        eg_sem_free(s);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- order and cancellation ------------------------------------------------ */

/* Waiters are served in arrival order, and a large request at the head holds
 * back smaller ones behind it. */
static void test_fifo_order(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(4);
    assert_non_null(s);
    assert_int_equal(eg_sem_acquire(eg_background(), s, 4), 0);
    atomic_int order = 0;
    int64_t weights[] = {3, 1, 2, 1};
    acq a[4];
    for (int i = 0; i < 4; i++) {
        acq_start(&a[i], eg_background(), s, weights[i], &order);
        wait_asleep(&a[i].tid); /* queued before the next one starts */
    }
    /* 1 free: the head wants 3, so nobody (not even the 1s) goes. */
    eg_sem_release(s, 1);
    sleep_ms(30);
    for (int i = 0; i < 4; i++)
        assert_int_equal(atomic_load(&a[i].finished), 0);
    assert_false(eg_sem_try_acquire(s, 1)); /* waiters queued */
    /* 4 free: 3 then 1 go; 2 does not fit and holds back the last 1. */
    eg_sem_release(s, 3);
    assert_int_equal(acq_join(&a[0]), 0);
    assert_int_equal(acq_join(&a[1]), 0);
    sleep_ms(30);
    assert_int_equal(atomic_load(&a[2].finished), 0);
    assert_int_equal(atomic_load(&a[3].finished), 0);
    eg_sem_release(s, 3); /* a[0] is done */
    assert_int_equal(acq_join(&a[2]), 0);
    assert_int_equal(acq_join(&a[3]), 0);
    assert_true(a[0].rank < a[2].rank && a[1].rank < a[2].rank);
    eg_sem_release(s, 4); /* what a[1], a[2] and a[3] hold */
    assert_true(eg_sem_try_acquire(s, 4));
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* A cancelled waiter in the middle of the queue leaves the others in order
 * and nothing acquired. */
static void test_cancel_middle_waiter(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(2);
    assert_non_null(s);
    assert_int_equal(eg_sem_acquire(eg_background(), s, 2), 0);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    acq a[3];
    acq_start(&a[0], eg_background(), s, 1, NULL);
    wait_asleep(&a[0].tid);
    acq_start(&a[1], ctx, s, 2, NULL);
    wait_asleep(&a[1].tid);
    acq_start(&a[2], eg_background(), s, 1, NULL);
    wait_asleep(&a[2].tid);
    eg_cancel(ctx, 0);
    assert_int_equal(acq_join(&a[1]), -ECANCELED);
    assert_int_equal(atomic_load(&a[0].finished), 0);
    assert_int_equal(atomic_load(&a[2].finished), 0);
    eg_sem_release(s, 2);
    assert_int_equal(acq_join(&a[0]), 0);
    assert_int_equal(acq_join(&a[2]), 0);
    eg_sem_release(s, 2);
    assert_true(eg_sem_try_acquire(s, 2));
    eg_ctx_release(ctx);
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

static void test_acquire_cancelled_by_thread(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(1);
    assert_non_null(s);
    assert_true(eg_sem_try_acquire(s, 1));
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    canceller c;
    cancel_later(&c, ctx, 50);
    assert_int_equal(eg_sem_acquire(ctx, s, 1), -ECANCELED);
    pthread_join(c.thread, NULL);
    assert_false(eg_sem_try_acquire(s, 1)); /* still held by us only */
    eg_sem_release(s, 1);
    assert_true(eg_sem_try_acquire(s, 1));
    eg_ctx_release(ctx);
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

static void test_acquire_deadline(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(3);
    assert_non_null(s);
    assert_int_equal(eg_sem_acquire(eg_background(), s, 2), 0);
    eg_ctx *ctx = eg_with_timeout(NULL, MS(30));
    assert_non_null(ctx);
    assert_int_equal(eg_sem_acquire(ctx, s, 2), -ETIMEDOUT);
    eg_ctx_release(ctx);
    assert_true(eg_sem_try_acquire(s, 1));
    eg_sem_release(s, 3);
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

static void test_acquire_already_done(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(3);
    assert_non_null(s);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    eg_cancel(ctx, -EIO);
    assert_int_equal(eg_sem_acquire(ctx, s, 1), -ECANCELED);
    assert_true(eg_sem_try_acquire(s, 3)); /* nothing was taken */
    eg_ctx_release(ctx);
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

typedef struct sibling_case {
    eg_sem *s;
    int rc;
    int cause;
} sibling_case;

static int task_blocked(eg_ctx *ctx, void *arg)
{
    sibling_case *sc = arg;
    sc->rc = eg_sem_acquire(ctx, sc->s, 1);
    sc->cause = eg_ctx_cause(ctx);
    return sc->rc;
}

static int task_fail_later(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    sleep_ms(50);
    return -EIO;
}

static void test_group_sibling_failure(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_sem *s = eg_sem_new(1);
    assert_non_null(s);
    assert_true(eg_sem_try_acquire(s, 1));
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    sibling_case sc = {.s = s, .rc = 1};
    assert_int_equal(eg_go(g, task_blocked, &sc), 0);
    assert_int_equal(eg_go(g, task_fail_later, NULL), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_int_equal(sc.rc, -ECANCELED);
    assert_int_equal(sc.cause, -EIO);
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -EIO);
    eg_group_free(g);
    eg_sem_release(s, 1);
    assert_true(eg_sem_try_acquire(s, 1));
    eg_sem_free(s);
    assert_int_equal(eg_live_objects(), live);
}

/* Bounded concurrency: a group's tasks share a semaphore of 3; never more
 * than 3 hold it, and every task ran. */
typedef struct bounded {
    eg_sem *s;
    atomic_int inside, max_inside, ran;
} bounded;

static int bounded_task(eg_ctx *ctx, void *arg)
{
    bounded *b = arg;
    int rc = eg_sem_acquire(ctx, b->s, 1);
    if (rc)
        return rc;
    int now = atomic_fetch_add(&b->inside, 1) + 1;
    int prev = atomic_load(&b->max_inside);
    while (now > prev && !atomic_compare_exchange_weak(&b->max_inside, &prev, now)) {
    }
    nap_us(200);
    atomic_fetch_sub(&b->inside, 1);
    atomic_fetch_add(&b->ran, 1);
    eg_sem_release(b->s, 1);
    return 0;
}

static void test_bounded_group(void **state)
{
    (void)state;
    long live = eg_live_objects();
    bounded b = {.s = eg_sem_new(3)};
    assert_non_null(b.s);
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    for (int i = 0; i < 64; i++)
        assert_int_equal(eg_go(g, bounded_task, &b), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&b.ran), 64);
    assert_true(atomic_load(&b.max_inside) <= 3);
    eg_group_free(g);
    eg_sem_free(b.s);
    assert_int_equal(eg_live_objects(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_weighted),
        EG_TEST(test_weighted_panic),
        EG_TEST(test_weighted_try_acquire),
        EG_TEST(test_weighted_acquire),
        EG_TEST(test_weighted_doesnt_block_if_too_big),
        EG_TEST(test_large_acquire_doesnt_starve),
        EG_TEST(test_alloc_cancel_doesnt_starve),
        EG_TEST(test_weighted_acquire_canceled),
        EG_TEST(test_fifo_order),
        EG_TEST(test_cancel_middle_waiter),
        EG_TEST(test_acquire_cancelled_by_thread),
        EG_TEST(test_acquire_deadline),
        EG_TEST(test_acquire_already_done),
        EG_TEST(test_group_sibling_failure),
        EG_TEST(test_bounded_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
