/*
 * test_pool.c - the thread pool: configuration (defaults, environment,
 * validation), idle retirement, running at a small maximum, and groups
 * whose queued tasks eg_wait runs inline.
 */
#include "testutil.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

/* The configuration the program started with; every case restores it. */
static eg_pool_config initial;

static int restore_config(void **state)
{
    (void)state;
    eg_test_watchdog_off(state);
    return eg_pool_configure(&initial);
}

#define POOL_TEST(f) cmocka_unit_test_setup_teardown(f, eg_test_watchdog, restore_config)

static void assert_config_equal(const eg_pool_config *a, const eg_pool_config *b)
{
    assert_int_equal(a->max_threads, b->max_threads);
    assert_int_equal(a->stack_size, b->stack_size);
    assert_true(a->idle_timeout_ns == b->idle_timeout_ns);
}

/* Polls the stats until no pool thread is alive; false if that never
 * happens within a generous bound. */
static bool wait_no_threads(void)
{
    eg_pool_stats st;
    for (int i = 0; i < 6000; i++) { /* up to ~30 s */
        eg_pool_get_stats(&st);
        if (st.threads == 0)
            return true;
        sleep_ms(5);
    }
    return false;
}

/* Retires every pool thread, then applies max_threads. */
static void fresh_pool(int max_threads, int64_t idle_timeout_ns)
{
    eg_pool_config c = {.max_threads = 0, .stack_size = 0, .idle_timeout_ns = 1};
    assert_int_equal(eg_pool_configure(&c), 0);
    assert_true(wait_no_threads());
    c.max_threads = max_threads;
    c.idle_timeout_ns = idle_timeout_ns;
    assert_int_equal(eg_pool_configure(&c), 0);
}

static atomic_int tasks_ran;

static int task_sleep(eg_ctx *ctx, void *arg)
{
    sleep_ms((int)(intptr_t)arg);
    atomic_fetch_add(&tasks_ran, 1);
    return 0;
}

/* ---- configuration --------------------------------------------------------- */

static void test_defaults(void **state)
{
    eg_pool_config c;
    memset(&c, 0xa5, sizeof c);
    eg_pool_get_config(&c);
    if (!getenv("EG_MAX_THREADS"))
        assert_true(c.max_threads >= 64 && c.max_threads <= 1 << 20);
    if (!getenv("EG_STACK_SIZE"))
        assert_int_equal(c.stack_size, 256 * 1024);
    if (!getenv("EG_IDLE_TIMEOUT_MS"))
        assert_true(c.idle_timeout_ns == INT64_C(10) * EG_NSEC_PER_SEC);
    eg_pool_stats st;
    memset(&st, 0xa5, sizeof st);
    eg_pool_get_stats(&st);
    assert_true(st.threads >= 0);
    assert_true(st.idle >= 0 && st.idle <= st.threads);
    assert_true(st.queued >= 0);
}

/* Runs this program with an environment and returns the config it prints. */
/* This program's path, to run it again with other environment variables. */
static char self_path[PATH_MAX];

static bool child_config(const char *max, const char *stack, const char *idle,
                         eg_pool_config *out)
{
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        unsetenv("EG_MAX_THREADS");
        unsetenv("EG_STACK_SIZE");
        unsetenv("EG_IDLE_TIMEOUT_MS");
        if (max)
            setenv("EG_MAX_THREADS", max, 1);
        if (stack)
            setenv("EG_STACK_SIZE", stack, 1);
        if (idle)
            setenv("EG_IDLE_TIMEOUT_MS", idle, 1);
        char *argv[] = {(char *)"test_pool", (char *)"--print-config", NULL};
        /* argv[0], not /proc/self/exe: under valgrind that is the tool. */
        execv(self_path, argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[256];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fds[0], buf + n, sizeof buf - 1 - n)) != 0) {
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return false;
    long long m, s, i;
    if (sscanf(buf, "%lld %lld %lld", &m, &s, &i) != 3)
        return false;
    out->max_threads = (int)m;
    out->stack_size = (size_t)s;
    out->idle_timeout_ns = (int64_t)i;
    return true;
}

static int print_config(void)
{
    eg_pool_config c;
    eg_pool_get_config(&c);
    printf("%lld %lld %lld\n", (long long)c.max_threads, (long long)c.stack_size,
           (long long)c.idle_timeout_ns);
    return 0;
}

static void test_env_overrides(void **state)
{
    eg_pool_config c;
    assert_true(child_config(NULL, NULL, NULL, &c));
    int dflt_max = c.max_threads; /* derived from the machine's limits */
    assert_true(dflt_max >= 64);
    assert_int_equal(c.stack_size, 256 * 1024);
    assert_true(c.idle_timeout_ns == INT64_C(10) * EG_NSEC_PER_SEC);

    assert_true(child_config("7", "512K", "1234", &c));
    assert_int_equal(c.max_threads, 7);
    assert_int_equal(c.stack_size, 512 * 1024);
    assert_true(c.idle_timeout_ns == INT64_C(1234) * EG_NSEC_PER_MSEC);

    assert_true(child_config(NULL, "1M", NULL, &c));
    assert_int_equal(c.max_threads, dflt_max);
    assert_int_equal(c.stack_size, 1024 * 1024);
    assert_true(c.idle_timeout_ns == INT64_C(10) * EG_NSEC_PER_SEC);

    assert_true(child_config(NULL, "131072", "0", &c));
    assert_int_equal(c.stack_size, 131072);
    assert_true(c.idle_timeout_ns == 0);
}

/* Issue 8, point 8: out-of-range values are rejected (default kept, one line
 * on stderr), never wrapped. */
static void regress_env_out_of_range(void **state)
{
    eg_pool_config d, c;
    assert_true(child_config(NULL, NULL, NULL, &d));
    /* 9223372036854775807 ms overflowed to a negative timeout before. */
    assert_true(child_config(NULL, NULL, "9223372036854775807", &c));
    assert_true(c.idle_timeout_ns == d.idle_timeout_ns);
    assert_true(child_config(NULL, NULL, "99999999999999999999", &c));
    assert_true(c.idle_timeout_ns == d.idle_timeout_ns);
    assert_true(child_config(NULL, NULL, "-5", &c));
    assert_true(c.idle_timeout_ns == d.idle_timeout_ns);
    assert_true(child_config(NULL, "9223372036854775807M", NULL, &c));
    assert_int_equal(c.stack_size, d.stack_size);
    assert_true(child_config(NULL, "17592186044416K", NULL, &c));
    assert_int_equal(c.stack_size, d.stack_size);
    assert_true(child_config("2147483648", NULL, NULL, &c));
    assert_int_equal(c.max_threads, d.max_threads);
    assert_true(child_config("12abc", NULL, NULL, &c));
    assert_int_equal(c.max_threads, d.max_threads);
    /* In range still applies. */
    assert_true(child_config("3", "2M", "9223372036854", &c));
    assert_int_equal(c.max_threads, 3);
    assert_int_equal(c.stack_size, 2 * 1024 * 1024);
    assert_true(c.idle_timeout_ns == INT64_C(9223372036854) * EG_NSEC_PER_MSEC);
}

static void test_configure_validation(void **state)
{
    eg_pool_config before, now;
    eg_pool_get_config(&before);
    const eg_pool_config bad[] = {
        {.max_threads = -1, .stack_size = 0, .idle_timeout_ns = MS(100)},
        {.max_threads = 8, .stack_size = 1000, .idle_timeout_ns = MS(100)},
        {.max_threads = 8, .stack_size = 64 * 1024 - 1, .idle_timeout_ns = MS(100)},
        {.max_threads = 8, .stack_size = 128 * 1024, .idle_timeout_ns = -2},
        {.max_threads = (1 << 20) + 1, .stack_size = 0, .idle_timeout_ns = MS(1)},
        {.max_threads = 8, .stack_size = 0, .idle_timeout_ns = MS(1), .stall_warning = 2},
        {.max_threads = INT32_MIN, .stack_size = 128 * 1024, .idle_timeout_ns = MS(1)},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(eg_pool_configure(&bad[i]), -EINVAL);
        eg_pool_get_config(&now);
        assert_config_equal(&now, &before);
    }
    assert_int_equal(eg_pool_configure(NULL), -EINVAL);
    eg_pool_get_config(&now);
    assert_config_equal(&now, &before);

    /* Valid values apply. */
    eg_pool_config c = {.max_threads = 100,
                        .stack_size = 128 * 1024,
                        .idle_timeout_ns = INT64_C(5) * EG_NSEC_PER_SEC};
    assert_int_equal(eg_pool_configure(&c), 0);
    eg_pool_get_config(&now);
    assert_config_equal(&now, &c);
    /* Minimums. */
    eg_pool_config lo = {.max_threads = 1, .stack_size = 64 * 1024, .idle_timeout_ns = 1};
    assert_int_equal(eg_pool_configure(&lo), 0);
    eg_pool_get_config(&now);
    assert_config_equal(&now, &lo);
    /* max_threads 0 and stack_size 0 keep the current values. */
    eg_pool_config keep = {.max_threads = 0, .stack_size = 0, .idle_timeout_ns = MS(7)};
    assert_int_equal(eg_pool_configure(&keep), 0);
    eg_pool_get_config(&now);
    assert_int_equal(now.max_threads, 1);
    assert_int_equal(now.stack_size, 64 * 1024);
    assert_true(now.idle_timeout_ns == MS(7));

    /* Tasks still run with a big stack configured. */
    eg_pool_config big = {
        .max_threads = 4, .stack_size = 2 * 1024 * 1024, .idle_timeout_ns = MS(100)};
    assert_int_equal(eg_pool_configure(&big), 0);
    atomic_store(&tasks_ran, 0);
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < 8; i++)
        assert_int_equal(eg_go(g, task_sleep, (void *)(intptr_t)1), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    assert_int_equal(atomic_load(&tasks_ran), 8);

    assert_int_equal(eg_pool_configure(&initial), 0);
    eg_pool_get_config(&now);
    assert_config_equal(&now, &initial);
}

/* ---- idle retirement --------------------------------------------------------- */

static void test_idle_retire(void **state)
{
    long live = eg_live_objects();
    eg_pool_config c = {.max_threads = 0, .stack_size = 0, .idle_timeout_ns = MS(50)};
    assert_int_equal(eg_pool_configure(&c), 0);
    for (int round = 0; round < 3; round++) {
        atomic_store(&tasks_ran, 0);
        eg_group *g = eg_group_new(NULL);
        for (int i = 0; i < 8; i++)
            assert_int_equal(eg_go(g, task_sleep, (void *)(intptr_t)10), 0);
        assert_int_equal(eg_wait(g), 0);
        eg_group_free(g);
        assert_int_equal(atomic_load(&tasks_ran), 8);
        /* Behaviour, not speed: the threads go away eventually. */
        assert_true(wait_no_threads());
        eg_pool_stats st;
        eg_pool_get_stats(&st);
        assert_int_equal(st.threads, 0);
        assert_int_equal(st.idle, 0);
        assert_int_equal(st.queued, 0);

        /* With no thread alive, a task starts a new one. */
        uint64_t started = st.started;
        g = eg_group_new(NULL);
        assert_int_equal(eg_go(g, task_sleep, (void *)(intptr_t)1), 0);
        assert_int_equal(eg_wait(g), 0);
        eg_group_free(g);
        eg_pool_get_stats(&st);
        /* The task may have run inline in eg_wait, so only "not fewer". */
        assert_true(st.started >= started);
    }

    /* idle_timeout 1 ns: threads exit as soon as idle (0 keeps the value). */
    c.idle_timeout_ns = 1;
    assert_int_equal(eg_pool_configure(&c), 0);
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < 4; i++)
        assert_int_equal(eg_go(g, task_sleep, (void *)(intptr_t)5), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    assert_true(wait_no_threads());
    assert_int_equal(eg_live_objects(), live);
}

/* A task started on an empty pool starts a thread (it is not run inline by
 * eg_go, and it runs without anyone calling eg_wait). */
typedef struct thread_rec {
    pthread_t thread;
    gate *done;
    int threads_seen;
} thread_rec;

static int task_record(eg_ctx *ctx, void *arg)
{
    thread_rec *r = arg;
    r->thread = pthread_self();
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    r->threads_seen = st.threads;
    gate_post(r->done);
    return 0;
}

static void test_start_on_empty_pool(void **state)
{
    long live = eg_live_objects();
    fresh_pool(4096, INT64_C(10) * EG_NSEC_PER_SEC);
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    uint64_t started = st.started;
    gate done;
    gate_init(&done);
    thread_rec r = {pthread_self(), &done, 0};
    eg_group *g = eg_group_new(NULL);
    /* The pool's own behaviour: on the thread executor whatever the
     * process default (EG_EXECUTOR=coro runs tasks on carriers). */
    assert_int_equal(eg_group_set_executor(g, EG_EXEC_THREADS), 0);
    assert_int_equal(eg_go(g, task_record, &r), 0);
    assert_true(gate_wait(&done, 1, GATE_WAIT_NS));
    assert_false(pthread_equal(r.thread, pthread_self()));
    assert_true(r.threads_seen >= 1);
    eg_pool_get_stats(&st);
    assert_true(st.started >= started + 1);
    assert_true(st.threads >= 1);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    gate_destroy(&done);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- a small maximum ------------------------------------------------------------ */

typedef struct bounded {
    atomic_int max_threads_seen;
    atomic_int ran;
} bounded;

static void note_threads(bounded *b)
{
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    int m = atomic_load(&b->max_threads_seen);
    while (st.threads > m &&
           !atomic_compare_exchange_weak(&b->max_threads_seen, &m, st.threads)) {
    }
}

static int task_bounded(eg_ctx *ctx, void *arg)
{
    bounded *b = arg;
    note_threads(b);
    sleep_ms(1);
    atomic_fetch_add(&b->ran, 1);
    return 0;
}

static void wg_bounded(void *arg)
{
    bounded *b = arg;
    note_threads(b);
    atomic_fetch_add(&b->ran, 1);
}

static void after_bounded(void *arg)
{
    wg_bounded(arg);
}

static void test_low_max_threads(void **state)
{
    long live = eg_live_objects();
    fresh_pool(2, INT64_C(10) * EG_NSEC_PER_SEC);
    bounded b;
    atomic_init(&b.max_threads_seen, 0);
    atomic_init(&b.ran, 0);

    /* Three groups at once, 100 tasks each: eg_go still returns 0. */
    eg_group *g[3];
    for (int i = 0; i < 3; i++)
        g[i] = eg_group_new(NULL);
    for (int n = 0; n < 100; n++)
        for (int i = 0; i < 3; i++)
            assert_int_equal(eg_go(g[i], task_bounded, &b), 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(eg_wait(g[i]), 0);
        eg_group_free(g[i]);
    }
    assert_int_equal(atomic_load(&b.ran), 300);

    /* WaitGroup.Go and after-funcs too. */
    eg_wg wg;
    assert_int_equal(eg_wg_init(&wg), 0);
    for (int n = 0; n < 50; n++)
        assert_int_equal(eg_wg_go(&wg, wg_bounded, &b), 0);
    eg_wg_wait(&wg);
    eg_wg_destroy(&wg);
    assert_int_equal(atomic_load(&b.ran), 350);

    eg_ctx *c = eg_with_cancel(NULL);
    eg_after *h[20];
    for (int n = 0; n < 20; n++) {
        h[n] = eg_after_func(c, after_bounded, &b);
        assert_non_null(h[n]);
    }
    eg_cancel(c, 0);
    for (int i = 0; i < 6000 && atomic_load(&b.ran) < 370; i++)
        sleep_ms(5);
    assert_int_equal(atomic_load(&b.ran), 370);
    for (int n = 0; n < 20; n++)
        assert_false(eg_after_stop(h[n]));
    eg_ctx_release(c);

    assert_true(atomic_load(&b.max_threads_seen) <= 2);
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    assert_true(st.threads <= 2);
    for (int i = 0; i < 2000 && eg_live_objects() != live; i++)
        sleep_ms(5);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_wait runs its own queued tasks inline ----------------------------------------- */

static int task_block(eg_ctx *ctx, void *arg)
{
    gate **gs = arg; /* [0]: post when started, [1]: wait for release */
    gate_post(gs[0]);
    return gate_wait(gs[1], 1, GATE_WAIT_NS) ? 0 : -ETIMEDOUT;
}

static void test_wait_runs_queued_inline(void **state)
{
    long live = eg_live_objects();
    fresh_pool(1, INT64_C(10) * EG_NSEC_PER_SEC);
    gate started, release, done;
    gate_init(&started);
    gate_init(&release);
    gate_init(&done);
    gate *gs[2] = {&started, &release};

    /* Occupy the only thread. */
    eg_group *busy = eg_group_new(NULL);
    assert_int_equal(eg_group_set_executor(busy, EG_EXEC_THREADS),
                     0); /* the pool's own behaviour */
    assert_int_equal(eg_go(busy, task_block, gs), 0);
    assert_true(gate_wait(&started, 1, GATE_WAIT_NS));

    /* A task of another group queues: eg_go still returns 0. */
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_executor(g, EG_EXEC_THREADS), 0);
    thread_rec r = {pthread_self(), &done, 0};
    assert_int_equal(eg_go(g, task_record, &r), 0);
    sleep_ms(30);
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    assert_int_equal(st.threads, 1);
    assert_true(st.queued >= 1);
    assert_false(gate_wait(&done, 1, 0)); /* not run: queued */
    /* eg_wait runs it on this thread. */
    assert_int_equal(eg_wait(g), 0);
    assert_true(gate_wait(&done, 1, 0));
    assert_true(pthread_equal(r.thread, pthread_self()));
    eg_group_free(g);

    gate_post(&release);
    assert_int_equal(eg_wait(busy), 0);
    eg_group_free(busy);
    gate_destroy(&started);
    gate_destroy(&release);
    gate_destroy(&done);
    assert_int_equal(eg_live_objects(), live);
}

/* Nested groups whose tasks do not block on each other complete even with a
 * single pool thread: each level's eg_wait runs the next level inline. */
typedef struct level {
    int depth, max;
    atomic_int *ran;
    atomic_int *max_threads_seen;
} level;

static int task_level(eg_ctx *ctx, void *arg)
{
    level *l = arg;
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    int m = atomic_load(l->max_threads_seen);
    while (st.threads > m &&
           !atomic_compare_exchange_weak(l->max_threads_seen, &m, st.threads)) {
    }
    atomic_fetch_add(l->ran, 1);
    if (l->depth == l->max)
        return l->depth == 4 ? eg_errorf(-EIO, "bottom") : 0;
    eg_group *g = eg_group_new(ctx);
    if (!g)
        return -ENOMEM;
    level next[3];
    int r = 0;
    for (int i = 0; i < 3 && r == 0; i++) {
        next[i] = (level){l->depth + 1, l->max, l->ran, l->max_threads_seen};
        r = eg_go(g, task_level, &next[i]);
    }
    int w = eg_wait(g);
    eg_group_free(g);
    return r ? r : w;
}

static void test_nested_at_max_1(void **state)
{
    long live = eg_live_objects();
    fresh_pool(1, INT64_C(10) * EG_NSEC_PER_SEC);
    for (int max = 3; max <= 4; max++) {
        atomic_int ran = 0, seen = 0;
        level top = {1, max, &ran, &seen};
        eg_group *g = eg_group_new(NULL);
        assert_int_equal(eg_go(g, task_level, &top), 0);
        assert_int_equal(eg_wait(g), max == 4 ? -EIO : 0);
        /* Each level returns what its eg_wait returned, so the bottom
         * task's text travels up with the code. */
        if (max == 4)
            assert_string_equal(eg_group_errmsg(g), "bottom");
        eg_group_free(g);
        /* 1 + 3 + 9 (+ 27) tasks: a failure cancels the contexts, but
         * every started task still runs. */
        assert_int_equal(atomic_load(&ran), max == 3 ? 1 + 3 + 9 : 1 + 3 + 9 + 27);
        assert_true(atomic_load(&seen) <= 1);
    }
    assert_int_equal(eg_live_objects(), live);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--print-config") == 0)
        return print_config();
    if (!realpath(argv[0], self_path))
        snprintf(self_path, sizeof self_path, "/proc/self/exe");
    eg_pool_get_config(&initial);
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_defaults),
        POOL_TEST(test_env_overrides),
        POOL_TEST(regress_env_out_of_range),
        POOL_TEST(test_configure_validation),
        POOL_TEST(test_start_on_empty_pool),
        POOL_TEST(test_idle_retire),
        POOL_TEST(test_low_max_threads),
        POOL_TEST(test_wait_runs_queued_inline),
        POOL_TEST(test_nested_at_max_1),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
