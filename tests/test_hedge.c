/*
 * test_hedge.c - hedged calls: a slow first attempt loses to a backup, a
 * failure starts the next attempt at once, cancellation reaches everyone.
 */
#include "testutil.h"

#include <errno.h>

typedef struct behaviour {
    int64_t sleep_ns; /* before answering; eg_sleep, so cancellable */
    int result;       /* returned after the sleep */
    atomic_int ran;
    atomic_int saw; /* what the sleep returned */
} behaviour;

static int attempt(eg_ctx *ctx, void *arg)
{
    behaviour *b = arg;
    atomic_fetch_add(&b->ran, 1);
    int r = eg_sleep(ctx, b->sleep_ns);
    atomic_store(&b->saw, r);
    return r ? r : b->result;
}

static void test_backup_wins(void **state)
{
    (void)state;
    long live = eg_live_objects();
    behaviour slow = {.sleep_ns = LONG_NS}, fast = {.sleep_ns = 0};
    void *args[] = {&slow, &fast};
    int w = -2;
    assert_int_equal(eg_hedge(NULL, attempt, args, 2, MS(1), &w), 0);
    assert_int_equal(w, 1);
    /* The slow attempt was cancelled, and had returned before eg_hedge did. */
    assert_int_equal(atomic_load(&slow.ran), 1);
    assert_int_equal(atomic_load(&slow.saw), -ECANCELED);
    assert_int_equal(atomic_load(&fast.ran), 1);
    assert_int_equal(eg_live_objects(), live);
}

static void test_first_wins_without_backup(void **state)
{
    (void)state;
    behaviour first = {.sleep_ns = 0}, never = {.sleep_ns = 0};
    void *args[] = {&first, &never};
    int w = -2;
    /* The delay is an hour: the backup starts only if the first fails. */
    assert_int_equal(eg_hedge(NULL, attempt, args, 2, LONG_NS, &w), 0);
    assert_int_equal(w, 0);
    assert_int_equal(atomic_load(&never.ran), 0);
}

static void test_failure_starts_next_at_once(void **state)
{
    (void)state;
    behaviour bad = {.sleep_ns = 0, .result = -EIO}, good = {.sleep_ns = 0};
    void *args[] = {&bad, &good};
    int w = -2;
    assert_int_equal(eg_hedge(NULL, attempt, args, 2, LONG_NS, &w), 0);
    assert_int_equal(w, 1);
}

static void test_all_fail_first_error(void **state)
{
    (void)state;
    behaviour a = {.result = -EIO}, b = {.result = -EPIPE}, c = {.result = -ENOENT};
    void *args[] = {&a, &b, &c};
    int w = -2;
    /* Each failure starts the next, so they finish in order. */
    assert_int_equal(eg_hedge(NULL, attempt, args, 3, LONG_NS, &w), -EIO);
    assert_int_equal(w, -1);
    assert_int_equal(atomic_load(&c.ran), 1);
}

static void *cancel_soon(void *p)
{
    sleep_ms(20);
    eg_cancel(p, -EPIPE);
    return NULL;
}

static void test_parent_cancel(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_ctx *parent = eg_with_cancel(NULL);
    behaviour a = {.sleep_ns = LONG_NS}, b = {.sleep_ns = LONG_NS};
    void *args[] = {&a, &b};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_soon, parent), 0);
    int w = -2;
    assert_int_equal(eg_hedge(parent, attempt, args, 2, LONG_NS, &w), -ECANCELED);
    assert_int_equal(w, -1);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&a.saw), -ECANCELED);
    assert_int_equal(atomic_load(&b.ran), 0); /* never launched */
    eg_ctx_release(parent);
    assert_int_equal(eg_live_objects(), live);
}

static void test_parent_done_before(void **state)
{
    (void)state;
    eg_ctx *parent = eg_with_timeout(NULL, 0);
    behaviour a = {.sleep_ns = 0};
    void *args[] = {&a};
    int w = -2;
    assert_int_equal(eg_hedge(parent, attempt, args, 1, 0, &w), -ETIMEDOUT);
    assert_int_equal(w, -1);
    assert_int_equal(atomic_load(&a.ran), 0);
    eg_ctx_release(parent);
}

static void test_delay_zero_starts_all(void **state)
{
    (void)state;
    behaviour b[4] = {{.sleep_ns = LONG_NS},
                      {.sleep_ns = LONG_NS},
                      {.sleep_ns = LONG_NS},
                      {.sleep_ns = 0}};
    void *args[] = {&b[0], &b[1], &b[2], &b[3]};
    int w = -2;
    assert_int_equal(eg_hedge(NULL, attempt, args, 4, 0, &w), 0);
    assert_int_equal(w, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(atomic_load(&b[i].saw), -ECANCELED);
}

static int null_arg(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    return arg == NULL ? 0 : -EINVAL;
}

static void test_misuse(void **state)
{
    (void)state;
    int w = -2;
    assert_int_equal(eg_hedge(NULL, NULL, NULL, 1, 0, &w), -EINVAL);
    assert_int_equal(w, -1);
    assert_int_equal(eg_hedge(NULL, null_arg, NULL, 0, 0, NULL), -EINVAL);
    assert_int_equal(eg_hedge(NULL, null_arg, NULL, 1, -1, NULL), -EINVAL);
    /* args NULL: every attempt gets NULL. */
    assert_int_equal(eg_hedge(NULL, null_arg, NULL, 3, MS(10000), &w), 0);
    assert_int_equal(w, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_backup_wins),
        EG_TEST(test_first_wins_without_backup),
        EG_TEST(test_failure_starts_next_at_once),
        EG_TEST(test_all_fail_first_error),
        EG_TEST(test_parent_cancel),
        EG_TEST(test_parent_done_before),
        EG_TEST(test_delay_zero_starts_all),
        EG_TEST(test_misuse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
