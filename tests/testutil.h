/*
 * testutil.h - helpers shared by the cmocka test programs.
 */
#ifndef EG_TESTUTIL_H
#define EG_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "errgroup.h"

#ifndef EG_TEST_CASE_SECONDS
#define EG_TEST_CASE_SECONDS 60
#endif

/* valgrind runs one thread at a time, tens of times slower: the watchdog
 * allows it four times as long. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

static void eg_test_on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: test case hung, aborting\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    abort();
}

/* cmocka setup: arm a per-case watchdog so a deadlock fails the case. */
static int eg_test_watchdog(void **state)
{
    (void)state;
    signal(SIGALRM, eg_test_on_alarm);
    alarm(EG_TEST_CASE_SECONDS * (RUNNING_ON_VALGRIND ? 4 : 1));
    return 0;
}

static int eg_test_watchdog_off(void **state)
{
    (void)state;
    alarm(0);
    return 0;
}

/* A test case with the watchdog around it. */
#define EG_TEST(f) \
    cmocka_unit_test_setup_teardown(f, eg_test_watchdog, eg_test_watchdog_off)

#define MS(x) ((int64_t)(x)*EG_NSEC_PER_MSEC)

/* The helpers below are static inline so that a program that does not use
 * one does not warn about it. */

#define LONG_NS (INT64_C(3600) * EG_NSEC_PER_SEC) /* "very long": 1 h */
#define GATE_WAIT_NS (INT64_C(20) * EG_NSEC_PER_SEC)

/* ---- sleeping and polling -------------------------------------------------- */

static inline void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline void nap_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Waits (bounded, about 10 s) until *v reaches want; false on time-out. */
static inline bool wait_for_int(atomic_int *v, int want)
{
    for (int i = 0; i < 200000; i++) {
        if (atomic_load(v) == want)
            return true;
        nap_us(50);
    }
    return atomic_load(v) == want;
}

/* wait_for_int for a task: sleeps with eg_sleep, a library blocking call,
 * so that on the coroutine executor the siblings that share its carrier run
 * meanwhile (a nanosleep would hold the carrier; README, "Choosing an
 * executor"). */
static inline bool wait_for_int_in_task(eg_ctx *ctx, atomic_int *v, int want)
{
    for (int i = 0; i < 200000; i++) {
        if (atomic_load(v) == want)
            return true;
        eg_sleep(ctx, 50 * EG_NSEC_PER_USEC);
    }
    return atomic_load(v) == want;
}

/* Waits (bounded, about 10 s) until eg_live_objects() is back to base. */
static inline void assert_live_back_to(long base)
{
    for (int i = 0; i < 200000 && eg_live_objects() != base; i++)
        nap_us(50);
    assert_int_equal(eg_live_objects(), base);
}

/* ---- a gate: a counter threads can wait on or take tokens from ------------ */

/* Every wait has a time-out, so a bug fails a check instead of hanging. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n;
} gate;

static inline void gate_init(gate *g)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, &a);
    pthread_condattr_destroy(&a);
    g->n = 0;
}

static inline void gate_destroy(gate *g)
{
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
}

static inline void gate_add(gate *g, int n)
{
    pthread_mutex_lock(&g->mu);
    g->n += n;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static inline void gate_post(gate *g)
{
    gate_add(g, 1);
}

static inline int gate_count(gate *g)
{
    pthread_mutex_lock(&g->mu);
    int n = g->n;
    pthread_mutex_unlock(&g->mu);
    return n;
}

/* The CLOCK_MONOTONIC time ns from now, for pthread_cond_timedwait. */
static inline struct timespec abs_after(int64_t ns)
{
    struct timespec now, ts;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t end = (int64_t)now.tv_sec * EG_NSEC_PER_SEC + now.tv_nsec + ns;
    ts.tv_sec = (time_t)(end / EG_NSEC_PER_SEC);
    ts.tv_nsec = (long)(end % EG_NSEC_PER_SEC);
    return ts;
}

/* Waits until at least target posts; false on timeout. */
static inline bool gate_wait(gate *g, int target, int64_t timeout_ns)
{
    struct timespec ts = abs_after(timeout_ns);
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (g->n < target && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    bool ok = g->n >= target;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

/* Takes one token (like receiving from a channel); false on timeout. */
static inline bool gate_take(gate *g, int64_t timeout_ns)
{
    struct timespec ts = abs_after(timeout_ns);
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (g->n <= 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &ts);
    bool ok = g->n > 0;
    if (ok)
        g->n--;
    pthread_mutex_unlock(&g->mu);
    return ok;
}

/* ---- threads --------------------------------------------------------------- */

/* The kernel id of the calling thread. */
static inline pid_t thread_id(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Waits until thread tid sleeps in the kernel. The threads watched with it
 * sleep in nothing but the call under test, so once asleep they are queued
 * in it: no guessing how long a thread needs to get there. */
static inline void wait_asleep(atomic_int *tid)
{
    while (atomic_load(tid) == 0)
        sleep_ms(1);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", atomic_load(tid));
    for (;;) {
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char buf[512];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        char *p = strrchr(buf, ')'); /* the state follows the command name */
        if (p && p[1] == ' ' && (p[2] == 'S' || p[2] == 'D'))
            return;
        sleep_ms(1);
    }
}

/* ---- cancelling from another thread ---------------------------------------- */

/* A thread that cancels ctx with cause after delay_ms. */
typedef struct test_canceller {
    pthread_t thread;
    eg_ctx *ctx;
    int delay_ms;
    int cause;
} canceller;

static inline void *canceller_main(void *arg)
{
    canceller *c = arg;
    sleep_ms(c->delay_ms);
    eg_cancel(c->ctx, c->cause);
    return NULL;
}

static inline void cancel_later_cause(canceller *c, eg_ctx *ctx, int delay_ms, int cause)
{
    c->ctx = ctx;
    c->delay_ms = delay_ms;
    c->cause = cause;
    assert_int_equal(pthread_create(&c->thread, NULL, canceller_main, c), 0);
}

/* Cancels ctx (cause 0) after delay_ms. */
static inline void cancel_later(canceller *c, eg_ctx *ctx, int delay_ms)
{
    cancel_later_cause(c, ctx, delay_ms, 0);
}

static inline void canceller_join(canceller *c)
{
    pthread_join(c->thread, NULL);
}

/* ---- tasks and callbacks ----------------------------------------------------- */

/* Counts its runs in the atomic_int at arg. */
/* A group on the thread pool whatever EG_EXECUTOR says: for tests of the
 * pool's own behaviour (its threads, its queue, its stall report). */
static inline eg_group *pool_group_new(void)
{
    eg_group *g = eg_group_new(NULL);
    if (g && eg_group_set_executor(g, EG_EXEC_THREADS) != 0) {
        eg_group_free(g);
        return NULL;
    }
    return g;
}

static inline int count_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

/* Counts its start in the atomic_int at arg, then waits for ctx to end. */
static inline int wait_ctx_task(eg_ctx *ctx, void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    return eg_ctx_wait(ctx);
}

static inline void count_fn(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

#endif
