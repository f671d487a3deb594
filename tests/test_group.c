/*
 * test_group.c - groups: Go's errgroup tests (TestZeroGroup, TestWithContext,
 * TestTryGo, TestGoLimit, the parallel example) and the rest of the
 * contract of eg/group.h.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------ */

static int task_return(eg_ctx *ctx, void *arg)
{
    return *(const int *)arg;
}

static atomic_int count_ran;
static int task_count(eg_ctx *ctx, void *arg)
{
    atomic_fetch_add(&count_ran, 1);
    return 0;
}

/* Waits for a token on the gate given as arg. */
static int task_take(eg_ctx *ctx, void *arg)
{
    return gate_take(arg, GATE_WAIT_NS) ? 0 : -ETIMEDOUT;
}

/* Waits until its context is done, returns 0. */
static int task_wait_ctx(eg_ctx *ctx, void *arg)
{
    eg_ctx_wait(ctx);
    return 0;
}

/* Waits until its context is done, returns its error. */
static int task_wait_ctx_err(eg_ctx *ctx, void *arg)
{
    return eg_ctx_wait(ctx);
}

/* ---- Go: TestZeroGroup ------------------------------------------------------ */

static void test_zero_group(void **state)
{
    long live = eg_live_objects();
    static const int e1 = -EIO, e2 = -EPIPE, ok = 0;
    const int *cases[][3] = {
        {NULL}, {&ok, NULL}, {&e1, NULL}, {&e1, &ok, NULL}, {&e1, &ok, &e2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eg_group *g = eg_group_new(NULL);
        assert_non_null(g);
        assert_int_equal(eg_wait(g), 0);
        int first = 0;
        for (int i = 0; i < 3 && cases[c][i]; i++) {
            assert_int_equal(eg_go(g, task_return, (void *)cases[c][i]), 0);
            if (first == 0)
                first = *cases[c][i];
            assert_int_equal(eg_wait(g), first);
            assert_int_equal(eg_group_err(g), first);
        }
        eg_group_free(g);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- Go: TestWithContext ----------------------------------------------------- */

static void test_with_context(void **state)
{
    long live = eg_live_objects();
    static const int doom = -ENOTRECOVERABLE, ok = 0;
    struct {
        const int *errs[2];
        int want;
    } cases[] = {
        {{NULL}, 0},
        {{&ok, NULL}, 0},
        {{&doom, NULL}, -ENOTRECOVERABLE},
        {{&doom, &ok}, -ENOTRECOVERABLE},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        eg_ctx *parent = eg_with_cancel(NULL);
        eg_group *g = eg_group_new(parent);
        assert_non_null(g);
        eg_ctx *ctx = eg_group_ctx(g);
        assert_non_null(ctx);
        assert_false(eg_ctx_done(ctx));
        for (int i = 0; i < 2 && cases[c].errs[i]; i++)
            assert_int_equal(eg_go(g, task_return, (void *)cases[c].errs[i]), 0);
        assert_int_equal(eg_wait(g), cases[c].want);
        /* eg_wait cancels the context; the cause is the error or -ECANCELED. */
        assert_true(eg_ctx_done(ctx));
        assert_int_equal(eg_ctx_err(ctx), -ECANCELED);
        assert_int_equal(eg_ctx_cause(ctx), cases[c].want ? cases[c].want : -ECANCELED);
        /* ... and never touches the parent. */
        assert_false(eg_ctx_done(parent));
        eg_group_free(g);
        eg_ctx_release(parent);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- Go: TestTryGo ------------------------------------------------------------- */

static void test_try_go(void **state)
{
    long live = eg_live_objects();
    gate ch;
    gate_init(&ch);
    atomic_store(&count_ran, 0);
    eg_group *g = eg_group_new(NULL);
    const int n = 42;
    assert_int_equal(eg_set_limit(g, n), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(eg_try_go(g, task_take, &ch), 0);
    assert_int_equal(eg_try_go(g, task_count, NULL), -EBUSY);
    gate_add(&ch, n);
    assert_int_equal(eg_wait(g), 0);

    assert_int_equal(eg_try_go(g, task_take, &ch), 0);
    gate_post(&ch);
    assert_int_equal(eg_wait(g), 0);

    /* Switch limit. */
    assert_int_equal(eg_set_limit(g, 1), 0);
    assert_int_equal(eg_try_go(g, task_take, &ch), 0);
    assert_int_equal(eg_try_go(g, task_count, NULL), -EBUSY);
    gate_post(&ch);
    assert_int_equal(eg_wait(g), 0);

    /* Block all calls. */
    assert_int_equal(eg_set_limit(g, 0), 0);
    for (int i = 0; i < 1 << 10; i++) {
        int r = eg_try_go(g, task_count, NULL);
        assert_true(r == -EBUSY || r == -EINVAL);
    }
    assert_int_equal(eg_go(g, task_count, NULL), -EINVAL);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&count_ran), 0);

    /* And back to unlimited. */
    assert_int_equal(eg_set_limit(g, -1), 0);
    assert_int_equal(eg_try_go(g, task_count, NULL), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&count_ran), 1);
    eg_group_free(g);
    gate_destroy(&ch);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- Go: TestGoLimit ------------------------------------------------------------ */

typedef struct limit_arg {
    atomic_int active;
    atomic_int max_active;
    int limit;
} limit_arg;

static int task_limited(eg_ctx *ctx, void *arg)
{
    limit_arg *l = arg;
    int n = atomic_fetch_add(&l->active, 1) + 1;
    int m = atomic_load(&l->max_active);
    while (n > m && !atomic_compare_exchange_weak(&l->max_active, &m, n)) {
    }
    if (n > l->limit)
        return -EOVERFLOW;
    struct timespec ts = {0, 1000};
    nanosleep(&ts, NULL); /* give other tasks a chance to increment active */
    atomic_fetch_sub(&l->active, 1);
    return 0;
}

static void test_go_limit(void **state)
{
    long live = eg_live_objects();
    limit_arg l = {.limit = 10};
    atomic_init(&l.active, 0);
    atomic_init(&l.max_active, 0);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_set_limit(g, l.limit), 0);
    for (int i = 0; i <= 1 << 10; i++)
        assert_int_equal(eg_go(g, task_limited, &l), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_true(atomic_load(&l.max_active) <= l.limit);
    assert_true(atomic_load(&l.max_active) >= 1);
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- Go: ExampleGroup_parallel ------------------------------------------------------ */

typedef struct search {
    const char *kind;
    const char *query;
    char *result;
} search;

static int task_search(eg_ctx *ctx, void *arg)
{
    search *s = arg;
    snprintf(s->result, 64, "%s result for \"%s\"", s->kind, s->query);
    return 0;
}

static void test_parallel_example(void **state)
{
    long live = eg_live_objects();
    for (int iter = 0; iter < 50; iter++) {
        char results[3][64] = {{0}};
        search s[3] = {
            {"web", "golang", results[0]},
            {"image", "golang", results[1]},
            {"video", "golang", results[2]},
        };
        eg_group *g = eg_group_new(NULL);
        for (int i = 0; i < 3; i++)
            assert_int_equal(eg_go(g, task_search, &s[i]), 0);
        assert_int_equal(eg_wait(g), 0);
        assert_string_equal(results[0], "web result for \"golang\"");
        assert_string_equal(results[1], "image result for \"golang\"");
        assert_string_equal(results[2], "video result for \"golang\"");
        eg_group_free(g);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- first error = first to finish --------------------------------------------------- */

/* Fails with its arg once a sibling's failure has cancelled the context. */
static int task_fail_after_cancel(eg_ctx *ctx, void *arg)
{
    eg_ctx_wait(ctx);
    return eg_errorf(*(const int *)arg, "late failure %d", *(const int *)arg);
}

static int task_fail_text(eg_ctx *ctx, void *arg)
{
    return eg_errorf(*(const int *)arg, "early failure %d", *(const int *)arg);
}

static void test_first_error_is_first_to_finish(void **state)
{
    long live = eg_live_objects();
    static const int late1 = -EIO, late2 = -ENOENT, early = -EPIPE;
    char want[64];
    snprintf(want, sizeof want, "early failure %d", early);
    for (int iter = 0; iter < 200; iter++) {
        eg_group *g = eg_group_new(NULL);
        /* Started first, finish last. */
        assert_int_equal(eg_go(g, task_fail_after_cancel, (void *)&late1), 0);
        assert_int_equal(eg_go(g, task_fail_after_cancel, (void *)&late2), 0);
        assert_int_equal(eg_go(g, task_fail_text, (void *)&early), 0);
        assert_int_equal(eg_wait(g), early);
        assert_int_equal(eg_group_err(g), early);
        assert_string_equal(eg_group_errmsg(g), want);
        assert_int_equal(eg_ctx_err(eg_group_ctx(g)), -ECANCELED);
        assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), early);
        eg_group_free(g);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- siblings see the failure as cancellation + cause ------------------------------- */

typedef struct sibling {
    gate *started;
    int err, cause;
} sibling;

static int task_sibling(eg_ctx *ctx, void *arg)
{
    sibling *s = arg;
    gate_post(s->started);
    eg_ctx_wait(ctx);
    s->err = eg_ctx_err(ctx);
    s->cause = eg_ctx_cause(ctx);
    return 0;
}

typedef struct failer {
    gate *started;
    int n;
    int code;
} failer;

static int task_fail_when_all_started(eg_ctx *ctx, void *arg)
{
    failer *f = arg;
    if (!gate_wait(f->started, f->n, GATE_WAIT_NS))
        return -ETIMEDOUT;
    return f->code;
}

static void test_siblings_observe_cancel(void **state)
{
    long live = eg_live_objects();
    enum { N = 8 };
    gate started;
    gate_init(&started);
    sibling s[N];
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < N; i++) {
        s[i] = (sibling){&started, 1, 1};
        assert_int_equal(eg_go(g, task_sibling, &s[i]), 0);
    }
    failer f = {&started, N, -ENOENT};
    assert_int_equal(eg_go(g, task_fail_when_all_started, &f), 0);
    assert_int_equal(eg_wait(g), -ENOENT);
    for (int i = 0; i < N; i++) {
        assert_int_equal(s[i].err, -ECANCELED);
        assert_int_equal(s[i].cause, -ENOENT);
    }
    assert_string_equal(eg_group_errmsg(g), eg_strerror(-ENOENT));
    eg_group_free(g);
    gate_destroy(&started);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_set_limit while active ----------------------------------------------------- */

static void test_set_limit_busy(void **state)
{
    long live = eg_live_objects();
    gate ch;
    gate_init(&ch);
    atomic_store(&count_ran, 0);
    assert_int_equal(eg_set_limit(NULL, 1), -EINVAL);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_set_limit(g, 2), 0);
    assert_int_equal(eg_go(g, task_take, &ch), 0);
    assert_int_equal(eg_go(g, task_take, &ch), 0);
    assert_int_equal(eg_set_limit(g, 5), -EBUSY);
    assert_int_equal(eg_set_limit(g, -1), -EBUSY);
    assert_int_equal(eg_set_limit(g, 0), -EBUSY);
    /* Still 2. */
    assert_int_equal(eg_try_go(g, task_count, NULL), -EBUSY);
    gate_add(&ch, 2);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&count_ran), 0);
    assert_int_equal(eg_set_limit(g, 3), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(eg_try_go(g, task_take, &ch), 0);
    assert_int_equal(eg_try_go(g, task_count, NULL), -EBUSY);
    gate_add(&ch, 3);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    gate_destroy(&ch);
    assert_int_equal(eg_live_objects(), live);
}

/* SetLimit(-1), tasks active, SetLimit(n): refused, and Wait must not hang. */
static void test_unlimited_then_limit(void **state)
{
    long live = eg_live_objects();
    gate ch;
    gate_init(&ch);
    for (int iter = 0; iter < 50; iter++) {
        eg_group *g = eg_group_new(NULL);
        assert_int_equal(eg_set_limit(g, -1), 0);
        for (int i = 0; i < 5; i++)
            assert_int_equal(eg_go(g, task_take, &ch), 0);
        assert_int_equal(eg_set_limit(g, 2), -EBUSY);
        /* Still unlimited: more tasks are admitted at once. */
        for (int i = 0; i < 3; i++)
            assert_int_equal(eg_try_go(g, task_take, &ch), 0);
        gate_add(&ch, 8);
        assert_int_equal(eg_wait(g), 0);
        assert_int_equal(eg_set_limit(g, 2), 0);
        for (int i = 0; i < 2; i++)
            assert_int_equal(eg_try_go(g, task_take, &ch), 0);
        assert_int_equal(eg_try_go(g, task_take, &ch), -EBUSY);
        gate_add(&ch, 2);
        assert_int_equal(eg_wait(g), 0);
        eg_group_free(g);
    }
    gate_destroy(&ch);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_go blocks at the limit until a task returns ---------------------------------- */

typedef struct go_thread {
    eg_group *g;
    atomic_int returned;
    int result;
} go_thread;

static void *go_thread_main(void *p)
{
    go_thread *t = p;
    t->result = eg_go(t->g, task_count, NULL);
    atomic_store(&t->returned, 1);
    return NULL;
}

static void test_go_blocks_at_limit(void **state)
{
    long live = eg_live_objects();
    gate ch;
    gate_init(&ch);
    atomic_store(&count_ran, 0);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_set_limit(g, 1), 0);
    assert_int_equal(eg_go(g, task_take, &ch), 0);
    go_thread t = {.g = g};
    atomic_init(&t.returned, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, go_thread_main, &t), 0);
    sleep_ms(50);
    assert_int_equal(atomic_load(&t.returned), 0);
    assert_int_equal(atomic_load(&count_ran), 0);
    gate_post(&ch);
    pthread_join(th, NULL);
    assert_int_equal(t.result, 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&count_ran), 1);
    eg_group_free(g);
    gate_destroy(&ch);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- no starvation: 64 tasks that all wait for each other ---------------------------- */

typedef struct barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, n;
} barrier;

static int task_barrier(eg_ctx *ctx, void *arg)
{
    barrier *b = arg;
    struct timespec ts = abs_after(GATE_WAIT_NS);
    pthread_mutex_lock(&b->mu);
    b->started++;
    pthread_cond_broadcast(&b->cv);
    int rc = 0;
    while (b->started < b->n && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&b->cv, &b->mu, &ts);
    bool ok = b->started >= b->n;
    pthread_mutex_unlock(&b->mu);
    return ok ? 0 : -ETIMEDOUT;
}

static void test_barrier_64(void **state)
{
    long live = eg_live_objects();
    for (int iter = 0; iter < 5; iter++) {
        barrier b = {.started = 0, .n = 64};
        pthread_condattr_t a;
        pthread_condattr_init(&a);
        pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
        pthread_mutex_init(&b.mu, NULL);
        pthread_cond_init(&b.cv, &a);
        pthread_condattr_destroy(&a);
        eg_group *g = eg_group_new(NULL);
        for (int i = 0; i < b.n; i++)
            assert_int_equal(eg_go(g, task_barrier, &b), 0);
        assert_int_equal(eg_wait(g), 0);
        assert_int_equal(b.started, 64);
        eg_group_free(g);
        pthread_mutex_destroy(&b.mu);
        pthread_cond_destroy(&b.cv);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- nested groups ------------------------------------------------------------------- */

typedef struct nest {
    int depth, max_depth;
    struct nest *levels; /* array indexed by depth */
    sibling sib;         /* a sibling at this depth that watches the ctx */
    gate *started;
    bool fail; /* the deepest task fails (else waits on its ctx) */
    int deepest_err, deepest_cause;
} nest;

static int task_nest(eg_ctx *ctx, void *arg)
{
    nest *n = arg;
    if (n->depth == n->max_depth) {
        if (n->fail)
            return eg_errorf(-EIO, "deep failure at %d", n->depth);
        gate_post(n->started);
        eg_ctx_wait(ctx);
        n->deepest_err = eg_ctx_err(ctx);
        n->deepest_cause = eg_ctx_cause(ctx);
        return 0;
    }
    eg_group *g = eg_group_new(ctx);
    if (!g)
        return -ENOMEM;
    nest *next = &n->levels[n->depth + 1];
    int r = eg_go(g, task_sibling, &next->sib);
    if (r == 0)
        r = eg_go(g, task_nest, next);
    int w = eg_wait(g);
    if (r == 0)
        r = w;
    char msg[EG_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", eg_group_errmsg(g));
    eg_group_free(g);
    if (r)
        return eg_errorf(r, "level %d: %s", n->depth, msg);
    return 0;
}

static void test_nested_groups(void **state)
{
    long live = eg_live_objects();
    enum { DEPTH = 3 };
    /* Errors propagate up. */
    for (int iter = 0; iter < 20; iter++) {
        gate started;
        gate_init(&started);
        nest levels[DEPTH + 1];
        for (int d = 0; d <= DEPTH; d++) {
            levels[d] = (nest){.depth = d,
                               .max_depth = DEPTH,
                               .levels = levels,
                               .started = &started,
                               .fail = true};
            levels[d].sib = (sibling){&started, 1, 1};
        }
        eg_group *g = eg_group_new(NULL);
        assert_int_equal(eg_go(g, task_sibling, &levels[1].sib), 0);
        assert_int_equal(eg_go(g, task_nest, &levels[1]), 0);
        assert_int_equal(eg_wait(g), -EIO);
        assert_string_equal(eg_group_errmsg(g), "level 1: level 2: deep failure at 3");
        for (int d = 1; d <= DEPTH; d++) {
            assert_int_equal(levels[d].sib.err, -ECANCELED);
            assert_int_equal(levels[d].sib.cause, -EIO);
        }
        eg_group_free(g);
        gate_destroy(&started);
    }
    assert_int_equal(eg_live_objects(), live);

    /* Cancellation propagates down. */
    for (int iter = 0; iter < 20; iter++) {
        gate started;
        gate_init(&started);
        nest levels[DEPTH + 1];
        for (int d = 0; d <= DEPTH; d++) {
            levels[d] = (nest){.depth = d,
                               .max_depth = DEPTH,
                               .levels = levels,
                               .started = &started,
                               .fail = false};
            levels[d].sib = (sibling){&started, 1, 1};
        }
        eg_ctx *parent = eg_with_cancel(NULL);
        eg_group *g = eg_group_new(parent);
        assert_int_equal(eg_go(g, task_sibling, &levels[1].sib), 0);
        assert_int_equal(eg_go(g, task_nest, &levels[1]), 0);
        /* 3 siblings and the deepest task have started. */
        assert_true(gate_wait(&started, DEPTH + 1, GATE_WAIT_NS));
        eg_cancel(parent, -EPIPE);
        assert_int_equal(eg_wait(g), 0);
        assert_int_equal(levels[DEPTH].deepest_err, -ECANCELED);
        assert_int_equal(levels[DEPTH].deepest_cause, -EPIPE);
        for (int d = 1; d <= DEPTH; d++) {
            assert_int_equal(levels[d].sib.err, -ECANCELED);
            assert_int_equal(levels[d].sib.cause, -EPIPE);
        }
        assert_string_equal(eg_group_errmsg(g), "");
        eg_group_free(g);
        eg_ctx_release(parent);
        gate_destroy(&started);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- a parent's cancel racing eg_wait -------------------------------------------------- */

typedef struct wait_racer {
    eg_ctx *ctx;
    atomic_int *go;
} wait_racer;

static void *wait_racer_main(void *p)
{
    wait_racer *c = p;
    while (!atomic_load(c->go))
        sched_yield(); /* a start gate; valgrind runs one thread at a time */
    eg_cancel(c->ctx, -EIO);
    return NULL;
}

static void test_cancel_racing_wait(void **state)
{
    long live = eg_live_objects();
    for (int iter = 0; iter < 900; iter++) {
        int variant = iter % 3;
        eg_ctx *parent = eg_with_cancel(NULL);
        eg_group *g = eg_group_new(parent);
        eg_ctx *ctx = eg_group_ctx(g);
        static const int zero = 0;
        for (int i = 0; i < 4; i++) {
            eg_fn fn = variant == 0   ? task_wait_ctx
                       : variant == 1 ? task_wait_ctx_err
                                      : task_return;
            assert_int_equal(eg_go(g, fn, (void *)&zero), 0);
        }
        atomic_int go = 0;
        wait_racer c = {parent, &go};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, wait_racer_main, &c), 0);
        atomic_store(&go, 1);
        int r = eg_wait(g);
        pthread_join(th, NULL);
        assert_int_equal(eg_ctx_err(ctx), -ECANCELED);
        assert_int_equal(eg_ctx_cause(parent), -EIO);
        switch (variant) {
        case 0: /* tasks end only through the parent's cancel */
            assert_int_equal(r, 0);
            assert_int_equal(eg_ctx_cause(ctx), -EIO);
            break;
        case 1: /* and report it */
            assert_int_equal(r, -ECANCELED);
            assert_int_equal(eg_ctx_cause(ctx), -EIO);
            break;
        default: { /* tasks succeed at once: either cancel may come first */
            assert_int_equal(r, 0);
            int cause = eg_ctx_cause(ctx);
            assert_true(cause == -EIO || cause == -ECANCELED);
            break;
        }
        }
        eg_group_free(g);
        eg_ctx_release(parent);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_wait inside one of the group's own tasks ---------------------------------------- */

typedef struct self_wait {
    eg_group *g;
    int result;
} self_wait;

static int task_self_wait(eg_ctx *ctx, void *arg)
{
    self_wait *s = arg;
    s->result = eg_wait(s->g);
    return 0;
}

static void test_wait_in_task_edeadlk(void **state)
{
    long live = eg_live_objects();
    for (int iter = 0; iter < 20; iter++) {
        eg_group *g = eg_group_new(NULL);
        self_wait s = {g, 1};
        assert_int_equal(eg_go(g, task_self_wait, &s), 0);
        assert_int_equal(eg_wait(g), 0);
        assert_int_equal(s.result, -EDEADLK);
        eg_group_free(g);
    }
    assert_int_equal(eg_wait(NULL), -EINVAL);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_go after eg_wait ------------------------------------------------------------ */

typedef struct after_wait {
    int err_seen, cause_seen;
} after_wait;

static int task_first(eg_ctx *ctx, void *arg)
{
    return eg_errorf(-EIO, "first failure");
}

static int task_second(eg_ctx *ctx, void *arg)
{
    after_wait *a = arg;
    a->err_seen = eg_ctx_err(ctx);
    a->cause_seen = eg_ctx_cause(ctx);
    return eg_errorf(-EPIPE, "second failure");
}

static void test_go_after_wait(void **state)
{
    long live = eg_live_objects();
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_first, NULL), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_string_equal(eg_group_errmsg(g), "first failure");
    after_wait a = {0, 0};
    assert_int_equal(eg_go(g, task_second, &a), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_int_equal(eg_group_err(g), -EIO);
    assert_string_equal(eg_group_errmsg(g), "first failure");
    /* The context stays cancelled with the first cause. */
    assert_int_equal(a.err_seen, -ECANCELED);
    assert_int_equal(a.cause_seen, -EIO);
    eg_group_free(g);

    /* After a successful eg_wait, tasks see the cancelled context, and a
     * later failure is the first. */
    g = eg_group_new(NULL);
    static const int zero = 0;
    assert_int_equal(eg_go(g, task_return, (void *)&zero), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_string_equal(eg_group_errmsg(g), "");
    a = (after_wait){0, 0};
    assert_int_equal(eg_go(g, task_second, &a), 0);
    assert_int_equal(eg_wait(g), -EPIPE);
    assert_string_equal(eg_group_errmsg(g), "second failure");
    assert_int_equal(a.err_seen, -ECANCELED);
    assert_int_equal(a.cause_seen, -ECANCELED);
    /* The context was cancelled by the first eg_wait: its cause stays. */
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -ECANCELED);
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_errorf / eg_group_errmsg --------------------------------------------------- */

static int task_http(eg_ctx *ctx, void *arg)
{
    return eg_errorf(-EIO, "user service: HTTP %d", 503);
}

static int task_text_mismatch(eg_ctx *ctx, void *arg)
{
    (void)eg_errorf(-EIO, "not kept");
    return -EPIPE;
}

static int task_text_then_success(eg_ctx *ctx, void *arg)
{
    (void)eg_errorf(-EIO, "stale text");
    return 0;
}

static int task_long_text(eg_ctx *ctx, void *arg)
{
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    return eg_errorf(-E2BIG, "%s", big);
}

static int task_plain(eg_ctx *ctx, void *arg)
{
    return *(const int *)arg;
}

static void test_errorf(void **state)
{
    long live = eg_live_objects();
    /* Outside a task it only returns code. */
    assert_int_equal(eg_errorf(-EIO, "outside %d", 1), -EIO);
    assert_int_equal(eg_errorf(0, "zero"), 0);

    eg_group *g = eg_group_new(NULL);
    assert_string_equal(eg_group_errmsg(g), "");
    assert_int_equal(eg_group_err(g), 0);
    assert_int_equal(eg_go(g, task_http, NULL), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_string_equal(eg_group_errmsg(g), "user service: HTTP 503");
    eg_group_free(g);

    /* No text attached: eg_strerror of the result. */
    static const int epipe = -EPIPE, odd = -12345;
    g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_plain, (void *)&epipe), 0);
    assert_int_equal(eg_wait(g), -EPIPE);
    assert_string_equal(eg_group_errmsg(g), eg_strerror(-EPIPE));
    eg_group_free(g);
    g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_plain, (void *)&odd), 0);
    assert_int_equal(eg_wait(g), -12345);
    assert_string_equal(eg_group_errmsg(g), eg_strerror(-12345));
    eg_group_free(g);

    /* Text for another code than the one returned: not kept. */
    g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_text_mismatch, NULL), 0);
    assert_int_equal(eg_wait(g), -EPIPE);
    assert_string_equal(eg_group_errmsg(g), eg_strerror(-EPIPE));
    eg_group_free(g);

    /* Text from a task that succeeded does not stick to a later failure. */
    static const int eio = -EIO;
    for (int iter = 0; iter < 20; iter++) {
        g = eg_group_new(NULL);
        assert_int_equal(eg_set_limit(g, 1), 0);
        assert_int_equal(eg_go(g, task_text_then_success, NULL), 0);
        assert_int_equal(eg_wait(g), 0);
        assert_string_equal(eg_group_errmsg(g), "");
        assert_int_equal(eg_go(g, task_plain, (void *)&eio), 0);
        assert_int_equal(eg_wait(g), -EIO);
        assert_string_equal(eg_group_errmsg(g), eg_strerror(-EIO));
        eg_group_free(g);
    }

    /* Truncated to EG_ERRMSG_MAX - 1 bytes. */
    g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_long_text, NULL), 0);
    assert_int_equal(eg_wait(g), -E2BIG);
    const char *m = eg_group_errmsg(g);
    assert_int_equal(strlen(m), EG_ERRMSG_MAX - 1);
    for (size_t i = 0; i < EG_ERRMSG_MAX - 1; i++)
        assert_int_equal(m[i], 'x');
    eg_group_free(g);

    /* The first error's text wins over a later one's. */
    static const int late = -ENOENT;
    g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_fail_after_cancel, (void *)&late), 0);
    assert_int_equal(eg_go(g, task_http, NULL), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_string_equal(eg_group_errmsg(g), "user service: HTTP 503");
    eg_group_free(g);

    /* No error: "" */
    static const int zero = 0;
    g = eg_group_new(NULL);
    for (int i = 0; i < 10; i++)
        assert_int_equal(eg_go(g, task_plain, (void *)&zero), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_string_equal(eg_group_errmsg(g), "");
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- contexts of a group ------------------------------------------------------------ */

static const int value_key = 0;

typedef struct ctx_seen {
    void *value;
    pthread_t thread;
    gate *done;
} ctx_seen;

static int task_see_ctx(eg_ctx *ctx, void *arg)
{
    ctx_seen *s = arg;
    s->value = eg_ctx_value(ctx, &value_key);
    s->thread = pthread_self();
    gate_post(s->done);
    return 0;
}

static void test_group_ctx(void **state)
{
    long live = eg_live_objects();
    gate done;
    gate_init(&done);
    eg_ctx *v = eg_with_value(NULL, &value_key, (void *)"hello");
    eg_group *g = eg_group_new(v);
    eg_ctx *ctx = eg_group_ctx(g);
    assert_string_equal((const char *)eg_ctx_value(ctx, &value_key), "hello");
    ctx_seen s = {NULL, pthread_self(), &done};
    assert_int_equal(eg_go(g, task_see_ctx, &s), 0);
    /* eg_go never runs the task inline: it ran on a pool thread. */
    assert_true(gate_wait(&done, 1, GATE_WAIT_NS));
    assert_false(pthread_equal(s.thread, pthread_self()));
    assert_int_equal(eg_wait(g), 0);
    assert_string_equal((const char *)s.value, "hello");

    /* The context can outlive the group when retained. */
    eg_ctx *kept = eg_ctx_retain(ctx);
    eg_group_free(g);
    assert_int_equal(eg_ctx_err(kept), -ECANCELED);
    assert_string_equal((const char *)eg_ctx_value(kept, &value_key), "hello");
    eg_ctx_release(kept);
    eg_ctx_release(v);
    gate_destroy(&done);
    assert_int_equal(eg_live_objects(), live);
}

/* A cancelled parent cancels the group's context, which is not a task error. */
static void test_parent_cancel(void **state)
{
    long live = eg_live_objects();
    eg_ctx *parent = eg_with_cancel(NULL);
    eg_group *g = eg_group_new(parent);
    eg_ctx *ctx = eg_group_ctx(g);
    sibling s[4];
    gate started;
    gate_init(&started);
    for (int i = 0; i < 4; i++) {
        s[i] = (sibling){&started, 1, 1};
        assert_int_equal(eg_go(g, task_sibling, &s[i]), 0);
    }
    assert_true(gate_wait(&started, 4, GATE_WAIT_NS));
    assert_false(eg_ctx_done(ctx));
    eg_cancel(parent, -ENETDOWN);
    assert_int_equal(eg_ctx_err(ctx), -ECANCELED);
    assert_int_equal(eg_ctx_cause(ctx), -ENETDOWN);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(eg_group_err(g), 0);
    assert_string_equal(eg_group_errmsg(g), "");
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s[i].err, -ECANCELED);
        assert_int_equal(s[i].cause, -ENETDOWN);
    }
    eg_group_free(g);

    /* A group made on a cancelled parent starts cancelled; tasks still run. */
    atomic_store(&count_ran, 0);
    g = eg_group_new(parent);
    assert_int_equal(eg_ctx_err(eg_group_ctx(g)), -ECANCELED);
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -ENETDOWN);
    assert_int_equal(eg_go(g, task_count, NULL), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&count_ran), 1);
    eg_group_free(g);
    eg_ctx_release(parent);
    gate_destroy(&started);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- every started task runs exactly once -------------------------------------------- */

typedef struct once_arg {
    atomic_int *slots;
    int index;
    limit_arg *l;
} once_arg;

static int task_slot(eg_ctx *ctx, void *arg)
{
    once_arg *o = arg;
    int n = atomic_fetch_add(&o->l->active, 1) + 1;
    int m = atomic_load(&o->l->max_active);
    while (n > m && !atomic_compare_exchange_weak(&o->l->max_active, &m, n)) {
    }
    atomic_fetch_add(&o->slots[o->index], 1);
    atomic_fetch_sub(&o->l->active, 1);
    return 0;
}

static void test_exactly_once(void **state)
{
    long live = eg_live_objects();
    enum { N = 1000 };
    static atomic_int slots[N];
    static once_arg args[N];
    limit_arg l = {.limit = 2};
    atomic_init(&l.active, 0);
    atomic_init(&l.max_active, 0);
    for (int i = 0; i < N; i++) {
        atomic_init(&slots[i], 0);
        args[i] = (once_arg){slots, i, &l};
    }
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_set_limit(g, 2), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg_go(g, task_slot, &args[i]), 0);
    assert_int_equal(eg_wait(g), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&slots[i]), 1);
    assert_true(atomic_load(&l.max_active) <= 2);
    eg_group_free(g);

    /* Unlimited. */
    for (int i = 0; i < N; i++)
        atomic_store(&slots[i], 0);
    l.limit = N;
    g = eg_group_new(NULL);
    for (int i = 0; i < N; i++)
        assert_int_equal(eg_go(g, task_slot, &args[i]), 0);
    assert_int_equal(eg_wait(g), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&slots[i]), 1);
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), live);
}

typedef struct submitter {
    eg_group *g;
    once_arg *args;
    int from, to;
    int failures;
} submitter;

static void *submitter_main(void *p)
{
    submitter *s = p;
    for (int i = s->from; i < s->to; i++)
        if (eg_go(s->g, task_slot, &s->args[i]) != 0)
            s->failures++;
    return NULL;
}

typedef struct waiter {
    eg_group *g;
    int result;
} waiter;

static void *waiter_main(void *p)
{
    waiter *w = p;
    w->result = eg_wait(w->g);
    return NULL;
}

/* eg_go and eg_wait from several threads concurrently. */
static void test_concurrent_callers(void **state)
{
    long live = eg_live_objects();
    enum { N = 1000, NT = 4 };
    static atomic_int slots[N];
    static once_arg args[N];
    limit_arg l = {.limit = N};
    atomic_init(&l.active, 0);
    atomic_init(&l.max_active, 0);
    for (int i = 0; i < N; i++) {
        atomic_init(&slots[i], 0);
        args[i] = (once_arg){slots, i, &l};
    }
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_set_limit(g, 3), 0);
    pthread_t th[NT];
    submitter s[NT];
    for (int i = 0; i < NT; i++) {
        s[i] = (submitter){g, args, i * N / NT, (i + 1) * N / NT, 0};
        assert_int_equal(pthread_create(&th[i], NULL, submitter_main, &s[i]), 0);
    }
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(s[i].failures, 0);
    }
    assert_int_equal(eg_wait(g), 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&slots[i]), 1);
    assert_true(atomic_load(&l.max_active) <= 3);
    eg_group_free(g);

    /* Several waiters all get the first error. */
    gate ch;
    gate_init(&ch);
    static const int fail = -EIO;
    g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_take, &ch), 0);
    assert_int_equal(eg_go(g, task_fail_after_cancel, (void *)&fail), 0);
    waiter w[3];
    pthread_t wt[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (waiter){g, 1};
        assert_int_equal(pthread_create(&wt[i], NULL, waiter_main, &w[i]), 0);
    }
    sleep_ms(20);
    static const int first = -ENOENT;
    assert_int_equal(eg_go(g, task_return, (void *)&first), 0);
    gate_post(&ch);
    for (int i = 0; i < 3; i++) {
        pthread_join(wt[i], NULL);
        assert_int_equal(w[i].result, -ENOENT);
    }
    assert_int_equal(eg_wait(g), -ENOENT);
    eg_group_free(g);
    gate_destroy(&ch);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_group_free waits for running tasks ------------------------------------------- */

static int task_slow(eg_ctx *ctx, void *arg)
{
    sleep_ms(50);
    atomic_fetch_add((atomic_int *)arg, 1);
    return -EIO;
}

static void test_free_waits(void **state)
{
    long live = eg_live_objects();
    for (int iter = 0; iter < 10; iter++) {
        atomic_int finished = 0;
        eg_group *g = eg_group_new(NULL);
        for (int i = 0; i < 4; i++)
            assert_int_equal(eg_go(g, task_slow, &finished), 0);
        eg_group_free(g);
        assert_int_equal(atomic_load(&finished), 4);
    }
    eg_group_free(NULL);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- misuse ------------------------------------------------------------------------ */

static void test_null_args(void **state)
{
    long live = eg_live_objects();
    atomic_store(&count_ran, 0);
    assert_int_equal(eg_go(NULL, task_count, NULL), -EINVAL);
    assert_int_equal(eg_try_go(NULL, task_count, NULL), -EINVAL);
    assert_int_equal(eg_set_limit(NULL, 3), -EINVAL);
    assert_int_equal(eg_wait(NULL), -EINVAL);
    eg_group_free(NULL);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, NULL, NULL), -EINVAL);
    assert_int_equal(eg_try_go(g, NULL, NULL), -EINVAL);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    assert_int_equal(atomic_load(&count_ran), 0);
    assert_int_equal(eg_live_objects(), live);
}

static void test_live_objects(void **state)
{
    long live = eg_live_objects();
    eg_group *gs[50];
    for (int i = 0; i < 50; i++) {
        gs[i] = eg_group_new(i % 2 ? eg_background() : NULL);
        assert_non_null(gs[i]);
    }
    assert_true(eg_live_objects() > live);
    for (int i = 0; i < 50; i++)
        eg_group_free(gs[i]);
    assert_int_equal(eg_live_objects(), live);

    /* A group whose tasks ran and failed, freed without eg_wait. */
    static const int eio = -EIO;
    eg_ctx *parent = eg_with_timeout(NULL, INT64_C(3600) * EG_NSEC_PER_SEC);
    eg_group *g = eg_group_new(parent);
    for (int i = 0; i < 10; i++)
        assert_int_equal(eg_go(g, task_return, (void *)&eio), 0);
    eg_group_free(g);
    eg_ctx_release(parent);
    assert_int_equal(eg_live_objects(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_zero_group),
        EG_TEST(test_with_context),
        EG_TEST(test_try_go),
        EG_TEST(test_go_limit),
        EG_TEST(test_parallel_example),
        EG_TEST(test_first_error_is_first_to_finish),
        EG_TEST(test_siblings_observe_cancel),
        EG_TEST(test_set_limit_busy),
        EG_TEST(test_unlimited_then_limit),
        EG_TEST(test_go_blocks_at_limit),
        EG_TEST(test_barrier_64),
        EG_TEST(test_nested_groups),
        EG_TEST(test_cancel_racing_wait),
        EG_TEST(test_wait_in_task_edeadlk),
        EG_TEST(test_go_after_wait),
        EG_TEST(test_errorf),
        EG_TEST(test_group_ctx),
        EG_TEST(test_parent_cancel),
        EG_TEST(test_exactly_once),
        EG_TEST(test_concurrent_callers),
        EG_TEST(test_free_waits),
        EG_TEST(test_null_args),
        EG_TEST(test_live_objects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
