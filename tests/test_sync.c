/*
 * test_sync.c - eg_wg (Go's sync.WaitGroup, with Go 1.25's Go method) and
 * eg_once (Go's sync.Once).
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ---- WaitGroup ------------------------------------------------------------- */

typedef struct wg_waiter {
    eg_wg *wg;
    atomic_int returned;
} wg_waiter;

static void *wg_waiter_main(void *p)
{
    wg_waiter *w = p;
    eg_wg_wait(w->wg);
    atomic_store(&w->returned, 1);
    return NULL;
}

static void test_wg_basic(void **state)
{
    eg_wg wg;
    assert_int_equal(eg_wg_init(&wg), 0);
    eg_wg_wait(&wg); /* zero: returns at once */

    assert_int_equal(eg_wg_add(&wg, 3), 0);
    enum { NW = 4 };
    wg_waiter w[NW];
    pthread_t th[NW];
    for (int i = 0; i < NW; i++) {
        w[i].wg = &wg;
        atomic_init(&w[i].returned, 0);
        assert_int_equal(pthread_create(&th[i], NULL, wg_waiter_main, &w[i]), 0);
    }
    sleep_ms(20);
    assert_int_equal(eg_wg_done(&wg), 0);
    assert_int_equal(eg_wg_add(&wg, -1), 0);
    sleep_ms(20);
    for (int i = 0; i < NW; i++)
        assert_int_equal(atomic_load(&w[i].returned), 0);
    assert_int_equal(eg_wg_done(&wg), 0); /* zero: every waiter returns */
    for (int i = 0; i < NW; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&w[i].returned), 1);
    }
    eg_wg_wait(&wg);

    /* Reuse after reaching zero (Go: TestWaitGroup runs twice). */
    assert_int_equal(eg_wg_add(&wg, 1), 0);
    w[0].wg = &wg;
    atomic_store(&w[0].returned, 0);
    assert_int_equal(pthread_create(&th[0], NULL, wg_waiter_main, &w[0]), 0);
    sleep_ms(10);
    assert_int_equal(atomic_load(&w[0].returned), 0);
    assert_int_equal(eg_wg_done(&wg), 0);
    pthread_join(th[0], NULL);
    eg_wg_destroy(&wg);
}

/* Below zero: -EINVAL and no change (Go panics: "negative WaitGroup counter"). */
static void test_wg_negative(void **state)
{
    eg_wg wg;
    assert_int_equal(eg_wg_init(&wg), 0);
    assert_int_equal(eg_wg_done(&wg), -EINVAL);
    assert_int_equal(eg_wg_add(&wg, -1), -EINVAL);
    eg_wg_wait(&wg); /* still zero */
    assert_int_equal(eg_wg_add(&wg, 2), 0);
    assert_int_equal(eg_wg_add(&wg, -3), -EINVAL);
    /* Unchanged: still 2, so one done leaves it positive. */
    wg_waiter w = {.wg = &wg};
    atomic_init(&w.returned, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, wg_waiter_main, &w), 0);
    assert_int_equal(eg_wg_done(&wg), 0);
    sleep_ms(20);
    assert_int_equal(atomic_load(&w.returned), 0);
    assert_int_equal(eg_wg_done(&wg), 0);
    pthread_join(th, NULL);
    assert_int_equal(eg_wg_done(&wg), -EINVAL);
    assert_int_equal(eg_wg_add(NULL, 1), -EINVAL);
    assert_int_equal(eg_wg_done(NULL), -EINVAL);
    eg_wg_destroy(&wg);
}

/* Go: TestWaitGroup. */
typedef struct wg_pair {
    eg_wg *wg1, *wg2;
    atomic_int *exited;
} wg_pair;

static void *wg_pair_main(void *p)
{
    wg_pair *wp = p;
    eg_wg_done(wp->wg1);
    eg_wg_wait(wp->wg2);
    atomic_fetch_add(wp->exited, 1);
    return NULL;
}

static void test_wg_go_test(void **state)
{
    eg_wg wg1, wg2;
    assert_int_equal(eg_wg_init(&wg1), 0);
    assert_int_equal(eg_wg_init(&wg2), 0);
    enum { N = 16 };
    for (int round = 0; round < 8; round++) {
        atomic_int exited = 0;
        assert_int_equal(eg_wg_add(&wg1, N), 0);
        assert_int_equal(eg_wg_add(&wg2, N), 0);
        pthread_t th[N];
        wg_pair wp = {&wg1, &wg2, &exited};
        for (int i = 0; i < N; i++)
            assert_int_equal(pthread_create(&th[i], NULL, wg_pair_main, &wp), 0);
        eg_wg_wait(&wg1);
        for (int i = 0; i < N; i++) {
            assert_int_equal(atomic_load(&exited),
                             0); /* WaitGroup released group too soon */
            eg_wg_done(&wg2);
        }
        for (int i = 0; i < N; i++)
            pthread_join(th[i], NULL);
        assert_int_equal(atomic_load(&exited), N);
    }
    eg_wg_destroy(&wg1);
    eg_wg_destroy(&wg2);
}

/* ---- EG_WG_INIT and concurrent adds ------------------------------------------- */

static eg_wg static_wg = EG_WG_INIT;

typedef struct adder {
    eg_wg *wg;
    atomic_long *sum;
    int failures;
} adder;

static void *adder_main(void *p)
{
    adder *a = p;
    for (int i = 0; i < 5000; i++) {
        if (eg_wg_add(a->wg, 2) != 0)
            a->failures++;
        atomic_fetch_add(a->sum, 1);
        if (eg_wg_done(a->wg) != 0)
            a->failures++;
    }
    return NULL;
}

static void test_wg_concurrent_adds(void **state)
{
    /* Hold the counter above zero so waiters cannot return early. */
    assert_int_equal(eg_wg_add(&static_wg, 1), 0);
    enum { NT = 8 };
    pthread_t th[NT];
    adder a[NT];
    atomic_long sum = 0;
    wg_waiter w = {.wg = &static_wg};
    atomic_init(&w.returned, 0);
    pthread_t wt;
    assert_int_equal(pthread_create(&wt, NULL, wg_waiter_main, &w), 0);
    for (int i = 0; i < NT; i++) {
        a[i] = (adder){&static_wg, &sum, 0};
        assert_int_equal(pthread_create(&th[i], NULL, adder_main, &a[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(a[i].failures, 0);
    }
    assert_int_equal(atomic_load(&sum), NT * 5000);
    /* Each adder left +1 per iteration, plus our 1. */
    sleep_ms(10);
    assert_int_equal(atomic_load(&w.returned), 0);
    assert_int_equal(eg_wg_add(&static_wg, -(NT * 5000)), 0);
    sleep_ms(10);
    assert_int_equal(atomic_load(&w.returned), 0);
    assert_int_equal(eg_wg_add(&static_wg, -2), -EINVAL);
    assert_int_equal(eg_wg_done(&static_wg), 0);
    pthread_join(wt, NULL);
    assert_int_equal(atomic_load(&w.returned), 1);
    eg_wg_wait(&static_wg);
}

/* ---- eg_wg_go ------------------------------------------------------------------ */

typedef struct wg_go_arg {
    atomic_int *ran;
    pthread_t thread;
    int sleep;
} wg_go_arg;

static void wg_go_fn(void *p)
{
    wg_go_arg *a = p;
    if (a->sleep)
        sleep_ms(a->sleep);
    a->thread = pthread_self();
    atomic_fetch_add(a->ran, 1);
}

static void test_wg_go(void **state)
{
    eg_wg wg;
    assert_int_equal(eg_wg_init(&wg), 0);
    atomic_int ran = 0;
    enum { N = 100 };
    static wg_go_arg args[N];
    for (int i = 0; i < N; i++) {
        args[i] = (wg_go_arg){&ran, pthread_self(), i % 10 == 0 ? 20 : 0};
        assert_int_equal(eg_wg_go(&wg, wg_go_fn, &args[i]), 0);
    }
    eg_wg_wait(&wg);
    /* wait saw every fn finish */
    assert_int_equal(atomic_load(&ran), N);
    for (int i = 0; i < N; i++)
        assert_false(pthread_equal(args[i].thread, pthread_self()));

    /* Mixed with add/done. */
    assert_int_equal(eg_wg_add(&wg, 1), 0);
    wg_go_arg slow = {&ran, pthread_self(), 30};
    assert_int_equal(eg_wg_go(&wg, wg_go_fn, &slow), 0);
    assert_int_equal(eg_wg_done(&wg), 0);
    eg_wg_wait(&wg);
    assert_int_equal(atomic_load(&ran), N + 1);

    /* Invalid: no change. */
    assert_int_equal(eg_wg_go(NULL, wg_go_fn, &slow), -EINVAL);
    assert_int_equal(eg_wg_go(&wg, NULL, &slow), -EINVAL);
    assert_int_equal(eg_wg_done(&wg), -EINVAL); /* counter still zero */
    eg_wg_wait(&wg);
    eg_wg_destroy(&wg);

    /* On a statically initialised one. */
    static eg_wg swg = EG_WG_INIT;
    wg_go_arg one = {&ran, pthread_self(), 10};
    assert_int_equal(eg_wg_go(&swg, wg_go_fn, &one), 0);
    eg_wg_wait(&swg);
    assert_int_equal(atomic_load(&ran), N + 2);
}

/* ---- Once ---------------------------------------------------------------------- */

typedef struct once_state {
    atomic_int calls;
    atomic_int flag;
} once_state;

static void once_fn(void *p)
{
    once_state *s = p;
    atomic_fetch_add(&s->calls, 1);
    sleep_ms(50);
    atomic_store(&s->flag, 1);
}

static void once_other_fn(void *p)
{
    atomic_fetch_add((atomic_int *)p, 1);
}

static eg_once static_once = EG_ONCE_INIT;

typedef struct once_caller {
    eg_once *once;
    once_state *s;
    atomic_int *go;
    int flag_on_return;
} once_caller;

static void *once_caller_main(void *p)
{
    once_caller *c = p;
    while (!atomic_load(c->go))
        sched_yield(); /* a start gate; valgrind runs one thread at a time */
    eg_once_do(c->once, once_fn, c->s);
    c->flag_on_return = atomic_load(&c->s->flag);
    return NULL;
}

static void test_once(void **state)
{
    for (int round = 0; round < 5; round++) {
        eg_once local = EG_ONCE_INIT;
        eg_once *once = round == 0 ? &static_once : &local;
        once_state s;
        atomic_init(&s.calls, 0);
        atomic_init(&s.flag, 0);
        atomic_int go = 0;
        enum { NT = 8 };
        pthread_t th[NT];
        once_caller c[NT];
        for (int i = 0; i < NT; i++) {
            c[i] = (once_caller){once, &s, &go, -1};
            assert_int_equal(pthread_create(&th[i], NULL, once_caller_main, &c[i]), 0);
        }
        atomic_store(&go, 1);
        for (int i = 0; i < NT; i++) {
            pthread_join(th[i], NULL);
            /* returned only after fn finished */
            assert_int_equal(c[i].flag_on_return, 1);
        }
        assert_int_equal(atomic_load(&s.calls), 1);
        /* Later calls, with any function, run nothing. */
        atomic_int other = 0;
        eg_once_do(once, once_other_fn, &other);
        eg_once_do(once, once_fn, &s);
        assert_int_equal(atomic_load(&other), 0);
        assert_int_equal(atomic_load(&s.calls), 1);
    }

    /* Go: TestOnce - sequential calls. */
    eg_once o = EG_ONCE_INIT;
    atomic_int n = 0;
    for (int i = 0; i < 10; i++) {
        eg_once_do(&o, once_other_fn, &n);
        assert_int_equal(atomic_load(&n), 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_wg_basic),   EG_TEST(test_wg_negative),
        EG_TEST(test_wg_go_test), EG_TEST(test_wg_concurrent_adds),
        EG_TEST(test_wg_go),      EG_TEST(test_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
