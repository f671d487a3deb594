/*
 * test_wake.c - a cancel's wake-up of a blocking point never depends on a
 * free pool thread, and waking N waiters does not start N threads.
 *
 * The pool is capped at a few threads here (process-wide, hence a program
 * of its own), so every pool thread is a task blocked in the call under
 * test when the cancel comes.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

/* Under valgrind (one thread at a time, about 50 times slower) the race
 * loops run fewer rounds and the busy thread yields (RUNNING_ON_VALGRIND:
 * testutil.h). */

static void set_max_threads(int n)
{
    eg_pool_config cfg = {.max_threads = n};
    assert_int_equal(eg_pool_configure(&cfg), 0);
}

/* ---- eg_cond_wait cancelled by a thread holding the mutex ------------------ */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gate started;
} cond_job;

static int cond_waiter_task(eg_ctx *ctx, void *arg)
{
    cond_job *j = arg;
    pthread_mutex_lock(&j->mu);
    gate_post(&j->started);
    int rc = 0;
    while (rc == 0)
        rc = eg_cond_wait(ctx, &j->cv, &j->mu);
    pthread_mutex_unlock(&j->mu);
    return rc;
}

/* N tasks fill the pool (max N) in eg_cond_wait; the canceller holds the
 * mutex while it cancels, so no wake can take the mutex at once. */
static void cond_cancel_at_max(int n)
{
    set_max_threads(n);
    cond_job j;
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    gate_init(&j.started);
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < n; i++)
        assert_int_equal(eg_go(g, cond_waiter_task, &j), 0);
    assert_true(gate_wait(&j.started, n, GATE_WAIT_NS));
    pthread_mutex_lock(&j.mu);
    eg_cancel(eg_group_ctx(g), -EIO);
    pthread_mutex_unlock(&j.mu);
    assert_int_equal(eg_wait(g), -ECANCELED);
    eg_group_free(g);
    gate_destroy(&j.started);
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
}

static void test_wake_cond_cancel_holding_mutex_at_max_threads(void **state)
{
    for (int n = 1; n <= 8; n *= 2)
        cond_cancel_at_max(n);
    set_max_threads(64);
}

/* ---- eg_chan_recv cancelled while another thread uses the channel ---------- */

typedef struct {
    eg_chan *ch;
    atomic_int stop;
    gate started;
} chan_job;

static int recv_task(eg_ctx *ctx, void *arg)
{
    chan_job *j = arg;
    int v;
    gate_post(&j->started);
    return eg_chan_recv(ctx, j->ch, &v);
}

static void *len_main(void *arg)
{
    chan_job *j = arg;
    while (!atomic_load(&j->stop)) {
        (void)eg_chan_len(j->ch);
        if (RUNNING_ON_VALGRIND)
            sched_yield();
    }
    return NULL;
}

static void test_wake_chan_recv_cancel_with_busy_lock(void **state)
{
    set_max_threads(2);
    chan_job j = {.ch = eg_chan_new(0, sizeof(int))};
    assert_non_null(j.ch);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, len_main, &j), 0);
    for (int round = 0, n = RUNNING_ON_VALGRIND ? 20 : 300; round < n; round++) {
        gate_init(&j.started);
        eg_group *g = eg_group_new(NULL);
        assert_int_equal(eg_go(g, recv_task, &j), 0);
        assert_int_equal(eg_go(g, recv_task, &j), 0);
        assert_true(gate_wait(&j.started, 2, GATE_WAIT_NS));
        eg_cancel(eg_group_ctx(g), -EIO);
        assert_int_equal(eg_wait(g), -ECANCELED);
        eg_group_free(g);
        gate_destroy(&j.started);
    }
    atomic_store(&j.stop, 1);
    pthread_join(t, NULL);
    eg_chan_free(j.ch);
    set_max_threads(64);
}

/* ---- eg_sem_acquire at the maximum ------------------------------------------ */

typedef struct {
    eg_sem *s;
    gate started;
} sem_job;

static int acquire_task(eg_ctx *ctx, void *arg)
{
    sem_job *j = arg;
    gate_post(&j->started);
    return eg_sem_acquire(ctx, j->s, 1);
}

static void test_wake_sem_acquire_cancel_at_max_threads(void **state)
{
    set_max_threads(4);
    sem_job j = {.s = eg_sem_new(1)};
    assert_true(eg_sem_try_acquire(j.s, 1));
    gate_init(&j.started);
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(eg_go(g, acquire_task, &j), 0);
    assert_true(gate_wait(&j.started, 4, GATE_WAIT_NS));
    eg_cancel(eg_group_ctx(g), -EIO);
    assert_int_equal(eg_wait(g), -ECANCELED);
    eg_group_free(g);
    eg_sem_release(j.s, 1);
    eg_sem_free(j.s);
    gate_destroy(&j.started);
    set_max_threads(64);
}

/* ---- one cancel of many waiters starts no thread per waiter --------------- */

static void test_wake_cancel_of_many_cond_waiters_starts_few_threads(void **state)
{
    enum { N = 200 };
    set_max_threads(N + 16);
    cond_job j;
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cv, NULL);
    gate_init(&j.started);
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg_go(g, cond_waiter_task, &j), 0);
    assert_true(gate_wait(&j.started, N, GATE_WAIT_NS));
    eg_pool_stats before, after;
    eg_pool_get_stats(&before);
    pthread_mutex_lock(&j.mu);
    eg_cancel(eg_group_ctx(g), -EIO);
    eg_pool_get_stats(&after);
    pthread_mutex_unlock(&j.mu);
    /* The cancel itself started no pool thread for its wake-ups. */
    assert_true(after.started - before.started < 4);
    assert_int_equal(eg_wait(g), -ECANCELED);
    eg_group_free(g);
    gate_destroy(&j.started);
    pthread_cond_destroy(&j.cv);
    pthread_mutex_destroy(&j.mu);
    set_max_threads(64);
}

/* ---- the cancel/sleep handshake of eg_ctx_wait --------------------------------- */

static void *wait_main(void *arg)
{
    return (void *)(intptr_t)eg_ctx_wait(arg);
}

/* A sleeper racing the cancel must always wake (the store of err and the
 * load of the sleeper count are ordered by a full fence). */
static void test_wake_ctx_wait_races_cancel(void **state)
{
    for (int i = 0, n = RUNNING_ON_VALGRIND ? 100 : 2000; i < n; i++) {
        eg_ctx *c = eg_with_cancel(NULL);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, wait_main, c), 0);
        if (i & 1)
            sched_yield();
        eg_cancel(c, 0);
        void *r;
        pthread_join(t, &r);
        assert_int_equal((int)(intptr_t)r, -ECANCELED);
        eg_ctx_release(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_wake_cond_cancel_holding_mutex_at_max_threads),
        EG_TEST(test_wake_chan_recv_cancel_with_busy_lock),
        EG_TEST(test_wake_sem_acquire_cancel_at_max_threads),
        EG_TEST(test_wake_cancel_of_many_cond_waiters_starts_few_threads),
        EG_TEST(test_wake_ctx_wait_races_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
