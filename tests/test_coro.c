/*
 * test_coro.c - the coroutine scheduler on its own (src/coro.c, stack.c,
 * coro_switch.c): context switches, many coroutines, guard pages, stealing,
 * parking from other threads, fd waits, timers, the monitor's rescue of
 * carriers stuck in foreign code, and what a task may rely on about its
 * thread.
 */
#include "testutil.h"

#include <fenv.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "../src/coro.h"
#include "../src/coro_switch.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

/* ---- a task that runs a function -------------------------------------------- */

typedef struct job {
    eg__task base;
    void (*fn)(struct job *);
    atomic_int *done;
    void *arg;
    long i;
} job;

static void job_run(eg__task *t)
{
    job *j = (job *)t;
    j->fn(j);
    if (j->done)
        atomic_fetch_add(j->done, 1);
}

static job *jobs_new(size_t n, void (*fn)(job *), atomic_int *done, void *arg)
{
    job *j = calloc(n, sizeof *j);
    assert_non_null(j);
    for (size_t i = 0; i < n; i++) {
        j[i].base.run = job_run;
        j[i].fn = fn;
        j[i].done = done;
        j[i].arg = arg;
        j[i].i = (long)i;
    }
    return j;
}

static void wait_count(atomic_int *c, int n)
{
    int64_t end = eg_now() + GATE_WAIT_NS;
    while (atomic_load(c) < n) {
        assert_true(eg_now() < end);
        nap_us(200);
    }
}

/* ---- raw context switches --------------------------------------------------- */

#ifndef UNDER_SANITIZER
static eg__mctx main_ctx, co_ctx;
static int ping;

static void pingpong(void *arg)
{
    int *rounds = arg;
    for (int i = 0; i < *rounds; i++) {
        ping++;
        eg__mctx_switch(&co_ctx, &main_ctx);
    }
    ping = -1;
    eg__mctx_switch(&co_ctx, &main_ctx);
    abort();
}

/* The raw switch is not annotated for the sanitizers (the scheduler is). */
static void test_switch_pingpong(void **state)
{
    (void)state;
    size_t sz = 64 * 1024;
    void *stack = malloc(sz);
    assert_non_null(stack);
    int rounds = 1000;
    ping = 0;
    eg__mctx_make(&co_ctx, stack, sz, pingpong, &rounds);
    for (int i = 0; i < rounds; i++) {
        eg__mctx_switch(&main_ctx, &co_ctx);
        assert_int_equal(ping, i + 1);
    }
    eg__mctx_switch(&main_ctx, &co_ctx);
    assert_int_equal(ping, -1);
    free(stack);
}

/* Callee-saved registers survive a switch: a computation keeps values in
 * registers across the call (the compiler is free to), on both sides. */
static volatile double fp_sink;
static void fp_coro(void *arg)
{
    (void)arg;
    /* The coroutine starts at the ABI default rounding mode. */
    assert_int_equal(fegetround(), FE_TONEAREST);
    fesetround(FE_UPWARD);
    double acc = 1.0;
    for (int i = 0; i < 3; i++) {
        acc = acc * 1.5 + 0.25;
        eg__mctx_switch(&co_ctx, &main_ctx);
        /* Our rounding mode is ours, whatever main did meanwhile. */
        assert_int_equal(fegetround(), FE_UPWARD);
    }
    fp_sink = acc;
    fesetround(FE_TONEAREST);
    eg__mctx_switch(&co_ctx, &main_ctx);
    abort();
}

static void test_switch_fp_control(void **state)
{
    (void)state;
    size_t sz = 64 * 1024;
    void *stack = malloc(sz);
    assert_non_null(stack);
    eg__mctx_make(&co_ctx, stack, sz, fp_coro, NULL);
    fesetround(FE_DOWNWARD);
    for (int i = 0; i < 4; i++) {
        eg__mctx_switch(&main_ctx, &co_ctx);
        assert_int_equal(fegetround(), FE_DOWNWARD);
    }
    fesetround(FE_TONEAREST);
    double acc = 1.0;
    for (int i = 0; i < 3; i++)
        acc = acc * 1.5 + 0.25;
    assert_true(fp_sink >= acc); /* computed rounding up */
    free(stack);
}
#endif

/* ---- many coroutines ---------------------------------------------------------- */

static void nop_fn(job *j)
{
    (void)j;
}

static void test_many_coroutines(void **state)
{
    (void)state;
#ifdef UNDER_SANITIZER
    enum { N = 10000 }; /* a sanitizer's fiber bookkeeping is slow */
#else
    enum { N = 100000 };
#endif
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(N, nop_fn, &done, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg__coro_submit(&j[i].base), 0);
    wait_count(&done, N);
    free(j);
    assert_true(eg__coro_carriers() >= 1);
}

/* Children spawned from a coroutine go on its carrier's ring (and
 * overflow to the global queue past 256). */
static atomic_int spawn_done;
static void spawner_fn(job *j)
{
    job *kids = j->arg;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(eg__coro_submit(&kids[i].base), 0);
}

static void test_spawn_from_coroutine(void **state)
{
    (void)state;
    atomic_store(&spawn_done, 0);
    job *kids = jobs_new(1000, nop_fn, &spawn_done, NULL);
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *p = jobs_new(1, spawner_fn, &done, kids);
    assert_int_equal(eg__coro_submit(&p->base), 0);
    wait_count(&spawn_done, 1000);
    wait_count(&done, 1);
    free(kids);
    free(p);
}

/* ---- parking ------------------------------------------------------------------- */

typedef struct parkpt {
    atomic_uint st;
    _Atomic(eg__coro *) co;
    atomic_int result;
    atomic_int parked;
} parkpt;

static void park_fn(job *j)
{
    parkpt *p = j->arg;
    p += j->i;
    atomic_store(&p->co, eg__coro_current());
    atomic_store(&p->parked, 1);
    atomic_store(&p->result, eg__coro_park(&p->st, INT64_MAX));
}

static void test_park_unpark_other_thread(void **state)
{
    (void)state;
    enum { N = 200 };
    parkpt *p = calloc(N, sizeof *p);
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(N, park_fn, &done, p);
    for (int i = 0; i < N; i++) {
        atomic_init(&p[i].result, 99);
        assert_int_equal(eg__coro_submit(&j[i].base), 0);
    }
    for (int i = 0; i < N; i++) {
        while (!atomic_load(&p[i].parked))
            nap_us(100);
        /* Half are unparked at once (maybe before they switch out), half
         * after they surely sleep. */
        if (i % 2)
            nap_us(50);
        assert_true(eg__coro_unpark(&p[i].st, atomic_load(&p[i].co)));
        assert_false(eg__coro_unpark(&p[i].st, atomic_load(&p[i].co))); /* once */
    }
    wait_count(&done, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&p[i].result), 0);
    free(j);
    free(p);
}

/* Ping-pong between a thread and a coroutine: every race of unpark with
 * park's switch-out, many times. */
typedef struct pp {
    atomic_uint st[2];
    _Atomic(eg__coro *) co;
    atomic_int round;
    int rounds;
} pp;

static void pp_fn(job *j)
{
    pp *x = j->arg;
    atomic_store(&x->co, eg__coro_current());
    for (int r = 0; r < x->rounds; r++) {
        atomic_store(&x->st[r & 1], EG__CPARK_WAITING);
        atomic_store(&x->round, r + 1); /* tells the thread: park r is armed */
        assert_int_equal(eg__coro_park(&x->st[r & 1], INT64_MAX), 0);
    }
}

static void test_park_race_pingpong(void **state)
{
    (void)state;
    pp x = {.rounds = 20000};
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(1, pp_fn, &done, &x);
    assert_int_equal(eg__coro_submit(&j->base), 0);
    for (int r = 0; r < x.rounds; r++) {
        while (atomic_load(&x.round) < r + 1)
            ;
        while (!eg__coro_unpark(&x.st[r & 1], atomic_load(&x.co)))
            ;
    }
    wait_count(&done, 1);
    free(j);
}

static void timed_fn(job *j)
{
    atomic_uint st = EG__CPARK_WAITING;
    int64_t t0 = eg_now();
    int r = eg__coro_park(&st, t0 + MS(20));
    assert_int_equal(r, -ETIMEDOUT);
    assert_true(eg_now() - t0 >= MS(20));
    /* An expired deadline returns at once. */
    atomic_store(&st, EG__CPARK_WAITING);
    assert_int_equal(eg__coro_park(&st, eg_now() - 1), -ETIMEDOUT);
    (void)j;
}

static void test_park_deadline(void **state)
{
    (void)state;
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(1, timed_fn, &done, NULL);
    assert_int_equal(eg__coro_submit(&j->base), 0);
    wait_count(&done, 1);
    free(j);
}

/* Timers: many sleepers with different deadlines all wake, none early. */
static atomic_int early;
static void sleeper_fn(job *j)
{
    int64_t d = eg_now() + MS(5 + (j->i * 7919) % 60);
    eg__coro_sleep_until(d);
    if (eg_now() < d)
        atomic_fetch_add(&early, 1);
}

static void test_timers(void **state)
{
    (void)state;
    enum { N = 2000 };
    atomic_store(&early, 0);
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(N, sleeper_fn, &done, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg__coro_submit(&j[i].base), 0);
    wait_count(&done, N);
    assert_int_equal(atomic_load(&early), 0);
    free(j);
}

/* A batch of unparks from one thread wakes each sleeping carrier once. */
static void test_batch_wakes_once_per_carrier(void **state)
{
    (void)state;
    enum { N = 1000 };
    parkpt *p = calloc(N, sizeof *p);
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(N, park_fn, &done, p);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg__coro_submit(&j[i].base), 0);
    for (int i = 0; i < N; i++)
        while (!atomic_load(&p[i].parked))
            nap_us(100);
    sleep_ms(20); /* every carrier asleep */
    eg__coro_stats a, b;
    eg__coro_get_stats(&a);
    eg__coro_batch_begin();
    for (int i = 0; i < N; i++)
        assert_true(eg__coro_unpark(&p[i].st, atomic_load(&p[i].co)));
    eg__coro_batch_end();
    wait_count(&done, N);
    eg__coro_get_stats(&b);
    assert_true(b.wakes - a.wakes <= a.carriers);
    free(j);
    free(p);
}

/* ---- fd waits ------------------------------------------------------------------- */

typedef struct fdw {
    int fd;
    short events;
    int64_t timeout;
    atomic_uint st;
    _Atomic(eg__coro *) co;
    atomic_int result;
    atomic_int waiting;
} fdw;

static void fd_fn(job *j)
{
    fdw *w = (fdw *)j->arg + j->i;
    atomic_store(&w->co, eg__coro_current());
    atomic_store(&w->waiting, 1);
    int64_t d = w->timeout ? eg_now() + w->timeout : INT64_MAX;
    atomic_store(&w->result, eg__coro_poll_fd(w->fd, w->events, d, &w->st));
}

static void test_fd_wait(void **state)
{
    (void)state;
    int pr[2], pw[2];
    assert_int_equal(pipe(pr), 0);
    assert_int_equal(pipe(pw), 0);
    fdw w[4] = {
        {.fd = pr[0], .events = POLLIN},                    /* readable later */
        {.fd = pr[0], .events = POLLIN},                    /* same fd, second waiter */
        {.fd = pw[1], .events = POLLOUT},                   /* writable at once */
        {.fd = pw[0], .events = POLLIN, .timeout = MS(30)}, /* times out */
    };
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(4, fd_fn, &done, w);
    for (int i = 0; i < 4; i++)
        assert_int_equal(eg__coro_submit(&j[i].base), 0);
    for (int i = 0; i < 4; i++)
        while (!atomic_load(&w[i].waiting))
            nap_us(100);
    sleep_ms(10);
    assert_int_equal(write(pr[1], "x", 1), 1);
    wait_count(&done, 4);
    assert_true(atomic_load(&w[0].result) & POLLIN);
    assert_true(atomic_load(&w[1].result) & POLLIN);
    assert_true(atomic_load(&w[2].result) & POLLOUT);
    assert_int_equal(atomic_load(&w[3].result), 0);

    /* An unpark ends a fd wait with -ECANCELED. */
    fdw c = {.fd = pw[0], .events = POLLIN};
    atomic_store(&done, 0);
    job *k = jobs_new(1, fd_fn, &done, &c);
    assert_int_equal(eg__coro_submit(&k->base), 0);
    while (!atomic_load(&c.waiting))
        nap_us(100);
    sleep_ms(5);
    assert_true(eg__coro_unpark(&c.st, atomic_load(&c.co)));
    wait_count(&done, 1);
    assert_int_equal(atomic_load(&c.result), -ECANCELED);

    /* A bad descriptor is an error, not a hang. */
    fdw b = {.fd = 1000000, .events = POLLIN};
    atomic_store(&done, 0);
    free(k);
    k = jobs_new(1, fd_fn, &done, &b);
    assert_int_equal(eg__coro_submit(&k->base), 0);
    wait_count(&done, 1);
    assert_int_equal(atomic_load(&b.result), -EBADF);
    free(k);
    free(j);
    close(pr[0]), close(pr[1]), close(pw[0]), close(pw[1]);
}

/* ---- what a task may rely on about its thread ------------------------------------ */

static _Thread_local int tls_probe;
static atomic_int tls_bad;
static void tls_fn(job *j)
{
    pthread_t me = pthread_self();
    int *addr = &tls_probe;
    errno = 1000 + (int)j->i;
    for (int r = 0; r < 5; r++) {
        eg__coro_sleep_until(eg_now() + MS(1));
        eg__coro_yield();
        /* Pinned: same thread, same TLS, and errno as we left it. */
        if (!pthread_equal(me, pthread_self()) || addr != &tls_probe ||
            errno != 1000 + (int)j->i)
            atomic_fetch_add(&tls_bad, 1);
    }
}

static void test_tls_errno_stable(void **state)
{
    (void)state;
    enum { N = 500 };
    atomic_store(&tls_bad, 0);
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(N, tls_fn, &done, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg__coro_submit(&j[i].base), 0);
    wait_count(&done, N);
    assert_int_equal(atomic_load(&tls_bad), 0);
    free(j);
}

/* ---- stealing and rescue ------------------------------------------------------------ */

static atomic_int flag;
static void spin_fn(job *j)
{
    (void)j;
    while (!atomic_load(&flag)) {
    }
}
static void set_fn(job *j)
{
    (void)j;
    atomic_store(&flag, 1);
}

/* More spinners than carriers, then the task that releases them: the
 * spinners stop their carriers in foreign code, the monitor starts a
 * rescue carrier that runs the setter. */
static void test_spin_until_sibling_sets(void **state)
{
    (void)state;
    atomic_store(&flag, 0);
    int n = eg__coro_carriers() + 2;
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *s = jobs_new((size_t)n, spin_fn, &done, NULL);
    job *t = jobs_new(1, set_fn, &done, NULL);
    for (int i = 0; i < n; i++)
        assert_int_equal(eg__coro_submit(&s[i].base), 0);
    assert_int_equal(eg__coro_submit(&t->base), 0);
    wait_count(&done, n + 1);
    free(s);
    free(t);
}

/* 64 tasks meet on a plain pthread barrier. */
static pthread_barrier_t bar;
static void bar_fn(job *j)
{
    (void)j;
    pthread_barrier_wait(&bar);
}

static void test_pthread_barrier_64(void **state)
{
    (void)state;
    enum { N = 64 };
    pthread_barrier_init(&bar, NULL, N);
    static atomic_int done; /* static: not a stack slot a later test reuses */
    atomic_store(&done, 0);
    job *j = jobs_new(N, bar_fn, &done, NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg__coro_submit(&j[i].base), 0);
    wait_count(&done, N);
    pthread_barrier_destroy(&bar);
    free(j);
    eg__coro_stats st;
    eg__coro_get_stats(&st);
    assert_true(st.rescues > 0);
}

/* A coroutine that says it blocks hands its queue on at once. */
static atomic_int blk_gate;
static void blocker_fn(job *j)
{
    job *kids = j->arg;
    for (int i = 0; i < 8; i++)
        eg__coro_submit(&kids[i].base);
    eg__coro_blocking_begin();
    int64_t end = eg_now() + GATE_WAIT_NS;
    while (atomic_load(&blk_gate) < 8 && eg_now() < end)
        nap_us(500);
    eg__coro_blocking_end();
}
static void gate_fn(job *j)
{
    (void)j;
    atomic_fetch_add(&blk_gate, 1);
}

static void test_blocking_bracket(void **state)
{
    (void)state;
    atomic_store(&blk_gate, 0);
    int n = eg__coro_carriers();
    static atomic_int kdone, done;
    atomic_store(&kdone, 0);
    atomic_store(&done, 0);
    job *kids = jobs_new((size_t)(8 * n), gate_fn, &kdone, NULL);
    job *b = jobs_new((size_t)n, blocker_fn, &done, NULL);
    for (int i = 0; i < n; i++) {
        b[i].arg = kids + 8 * i;
        assert_int_equal(eg__coro_submit(&b[i].base), 0);
    }
    wait_count(&done, n);
    wait_count(&kdone, 8 * n);
    free(kids);
    free(b);
}

/* Work queued on a carrier that is busy is stolen by another one. */
static atomic_int stolen;
static void who_fn(job *j)
{
    pthread_t *spawner = j->arg;
    if (!pthread_equal(*spawner, pthread_self()))
        atomic_fetch_add(&stolen, 1);
}
static void busy_spawner_fn(job *j)
{
    job *kids = j->arg;
    static pthread_t me;
    me = pthread_self();
    for (int i = 0; i < 64; i++) {
        kids[i].arg = &me;
        eg__coro_submit(&kids[i].base);
    }
    /* Busy (not parked) until the others ran the children. */
    int64_t end = eg_now() + GATE_WAIT_NS;
    while (atomic_load(kids[0].done) < 64 && eg_now() < end) {
    }
}

static void test_steal(void **state)
{
    (void)state;
    atomic_store(&stolen, 0);
    static atomic_int kdone, done;
    atomic_store(&kdone, 0);
    atomic_store(&done, 0);
    job *kids = jobs_new(64, who_fn, &kdone, NULL);
    job *p = jobs_new(1, busy_spawner_fn, &done, kids);
    assert_int_equal(eg__coro_submit(&p->base), 0);
    wait_count(&done, 1);
    assert_int_equal(atomic_load(&kdone), 64);
    assert_int_equal(atomic_load(&stolen), 64);
    free(kids);
    free(p);
}

/* ---- guard pages -------------------------------------------------------------------- */

static int deep(int n, volatile char *prev)
{
    volatile char buf[1024];
    buf[0] = (char)n;
    buf[1023] = prev ? prev[0] : 0;
    return n > 0 ? deep(n - 1, buf) + buf[0] : buf[1023];
}

static void overflow_fn(job *j)
{
    (void)j;
    deep(1 << 20, NULL); /* 1 GiB of frames: far past any stack */
}

static void neighbour_fn(job *j)
{
    /* Parked with a pattern on its stack; an overflowing neighbour must
     * fault on a guard page before reaching it. */
    volatile char pat[512];
    memset((char *)pat, 0x5a, sizeof pat);
    atomic_uint st = EG__CPARK_WAITING;
    eg__coro_park(&st, eg_now() + MS(200));
    for (size_t i = 0; i < sizeof pat; i++)
        if (pat[i] != 0x5a)
            _exit(3);
    (void)j;
}

static void test_guard_page_overflow(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct rlimit rl = {0, 0};
        setrlimit(RLIMIT_CORE, &rl);
        static atomic_int done; /* static: not a stack slot a later test reuses */
        atomic_store(&done, 0);
        job *n = jobs_new(4, neighbour_fn, &done, NULL);
        for (int i = 0; i < 4; i++)
            eg__coro_submit(&n[i].base);
        sleep_ms(20);
        job *o = jobs_new(1, overflow_fn, &done, NULL);
        eg__coro_submit(&o->base);
        sleep_ms(2000);
        _exit(0); /* not reached: the overflow kills us */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
#ifdef UNDER_SANITIZER
    /* The sanitizer reports the overflow and exits non-zero. */
    assert_true(
        (WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
        (WIFEXITED(status) && WEXITSTATUS(status) != 0 && WEXITSTATUS(status) != 3));
#else
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGSEGV);
#endif
}

/* Stacks are taken only when a task first runs, and reused. */
static void test_stack_reuse(void **state)
{
    (void)state;
    size_t before;
    eg__stack_stats(&before, NULL, NULL);
    for (int round = 0; round < 5; round++) {
        static atomic_int done; /* static: not a stack slot a later test reuses */
        atomic_store(&done, 0);
        job *j = jobs_new(1000, nop_fn, &done, NULL);
        for (int i = 0; i < 1000; i++)
            assert_int_equal(eg__coro_submit(&j[i].base), 0);
        wait_count(&done, 1000);
        free(j);
    }
    size_t after;
    eg__stack_stats(&after, NULL, NULL);
    /* Non-blocking tasks run one at a time per carrier: no new slabs. */
    assert_true(after - before <= 256);
    assert_true(eg__stack_size() >= 16 * 1024);
}

/* ---- choosing the executor ------------------------------------------------ */

static int report_executor(eg_ctx *ctx, void *arg)
{
    *(eg_executor *)arg = eg_task_executor();
    return 0;
}

static eg_executor run_one_task(eg_executor set)
{
    eg_group *g = eg_group_new(NULL);
    if (set != EG_EXEC_DEFAULT)
        assert_int_equal(eg_group_set_executor(g, set), 0);
    eg_executor seen = EG_EXEC_DEFAULT;
    assert_int_equal(eg_go(g, report_executor, &seen), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    return seen;
}

static void test_choose_executor(void **state)
{
    (void)state;
    assert_int_equal(eg_task_executor(), EG_EXEC_THREADS); /* main is a thread */
    assert_int_equal(run_one_task(EG_EXEC_CORO), EG_EXEC_CORO);
    assert_int_equal(run_one_task(EG_EXEC_THREADS), EG_EXEC_THREADS);
    eg_pool_config cfg;
    eg_pool_get_config(&cfg);
    eg_executor before = cfg.executor;
    cfg.executor = EG_EXEC_CORO;
    assert_int_equal(eg_pool_configure(&cfg), 0);
    assert_int_equal(run_one_task(EG_EXEC_DEFAULT), EG_EXEC_CORO);
    cfg.executor = EG_EXEC_THREADS;
    assert_int_equal(eg_pool_configure(&cfg), 0);
    assert_int_equal(run_one_task(EG_EXEC_DEFAULT), EG_EXEC_THREADS);
    cfg.executor = (eg_executor)7;
    assert_int_equal(eg_pool_configure(&cfg), -EINVAL);
    cfg.executor = before;
    assert_int_equal(eg_pool_configure(&cfg), 0);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_executor(g, (eg_executor)9), -EINVAL);
    eg_group_free(g);
}

int main(void)
{
    /* At least two carriers, so stealing has somewhere to go. */
    if (!getenv("EG_CORO_CARRIERS"))
        setenv("EG_CORO_CARRIERS", "2", 1);
    const struct CMUnitTest tests[] = {
#ifndef UNDER_SANITIZER
        EG_TEST(test_switch_pingpong),
        EG_TEST(test_switch_fp_control),
#endif
        EG_TEST(test_guard_page_overflow),
        EG_TEST(test_many_coroutines),
        EG_TEST(test_spawn_from_coroutine),
        EG_TEST(test_park_unpark_other_thread),
        EG_TEST(test_park_race_pingpong),
        EG_TEST(test_park_deadline),
        EG_TEST(test_timers),
        EG_TEST(test_batch_wakes_once_per_carrier),
        EG_TEST(test_fd_wait),
        EG_TEST(test_tls_errno_stable),
        EG_TEST(test_steal),
        EG_TEST(test_spin_until_sibling_sets),
        EG_TEST(test_pthread_barrier_64),
        EG_TEST(test_blocking_bracket),
        EG_TEST(test_stack_reuse),
        EG_TEST(test_choose_executor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
