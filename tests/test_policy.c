/*
 * test_policy.c - beyond the first error: every error with its task, the
 * three policies, eg_wait_grace (detaching stragglers), eg_wait_async, and
 * eg_group_print.
 */
#include "testutil.h"

#include <errno.h>

/* ---- helpers ----------------------------------------------------------------- */

/* A task that fails in a given place of the finishing order: it waits until
 * the group holds `place` errors, then returns code with text. */
typedef struct ordered {
    eg_group *g;
    size_t place;
    int code;
    const char *text; /* NULL: no eg_errorf */
    atomic_int ran;
} ordered;

static int ordered_fail(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    ordered *o = arg;
    atomic_fetch_add(&o->ran, 1);
    for (int i = 0; i < 400000 && eg_group_errors(o->g, NULL, 0) < o->place; i++)
        nap_us(25);
    if (o->text)
        return eg_errorf(o->code, "%s", o->text);
    return o->code;
}

static int ok_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

/* Sleeps on ctx (cancellable) for an hour; records what the sleep said. */
typedef struct sleeper {
    atomic_int started;
    atomic_int saw;
} sleeper;

static int sleep_task(eg_ctx *ctx, void *arg)
{
    sleeper *s = arg;
    atomic_store(&s->started, 1);
    int r = eg_sleep(ctx, LONG_NS);
    atomic_store(&s->saw, r);
    return r;
}

/* eg_group_print into a string (free it). */
static char *printed(eg_group *g)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    assert_int_equal(eg_group_print(g, f), 0);
    fclose(f);
    return buf;
}

/* ---- every error, with its task ------------------------------------------------ */

static void test_errors_in_finishing_order(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_policy(g, EG_COLLECT_ALL), 0);
    ordered o[3] = {
        {.g = g, .place = 2, .code = -ENOENT, .text = "third: no such row"},
        {.g = g, .place = 0, .code = -EIO, .text = "first: disk on fire"},
        {.g = g, .place = 1, .code = -EPIPE, .text = NULL},
    };
    const char *names[3] = {"c", "a", "b"};
    assert_int_equal(eg_go_named(g, "ok", ok_task, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(eg_go_named(g, names[i], ordered_fail, &o[i]), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_string_equal(eg_group_errmsg(g), "first: disk on fire");

    eg_trace_entry e[4];
    assert_int_equal(eg_group_errors(g, e, 4), 3);
    assert_string_equal(e[0].name, "a");
    assert_ptr_equal(e[0].arg, &o[1]);
    assert_int_equal(e[0].result, -EIO);
    assert_string_equal(e[0].errmsg, "first: disk on fire");
    assert_true(e[0].first_error);
    assert_string_equal(e[1].name, "b");
    assert_int_equal(e[1].result, -EPIPE);
    assert_string_equal(e[1].errmsg, eg_strerror(-EPIPE)); /* no eg_errorf */
    assert_false(e[1].first_error);
    assert_string_equal(e[2].name, "c");
    assert_string_equal(e[2].errmsg, "third: no such row");
    for (int i = 0; i < 3; i++) {
        assert_int_equal(e[i].outcome, EG_OUTCOME_FAILED); /* nothing cancelled */
        assert_int_equal(e[i].start_ns, 0);                /* tracing off */
        assert_true(e[i].end_ns > 0);
        if (i)
            assert_true(e[i].end_ns >= e[i - 1].end_ns);
    }
    /* Fewer slots than errors: the count still says how many. */
    assert_int_equal(eg_group_errors(g, e, 1), 3);
    assert_int_equal(eg_group_errors(g, NULL, 0), 3);
    assert_int_equal(eg_group_errors(NULL, e, 4), 0);
    /* Tracing was off: the trace is empty. */
    assert_int_equal(eg_group_trace(g, NULL, 0), 0);

    char *s = printed(g);
    assert_non_null(strstr(s, "first: disk on fire"));
    assert_non_null(strstr(s, "<- first error"));
    assert_non_null(strstr(s, "tracing off"));
    free(s);
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), live);
}

static int fail_first(eg_ctx *ctx, void *arg)
{
    sleeper *s = arg;
    for (int i = 0; i < 400000 && !atomic_load(&s->started); i++)
        nap_us(25);
    (void)ctx;
    return eg_errorf(-EIO, "backend: HTTP %d", 503);
}

static void test_fail_fast_keeps_cancelled_too(void **state)
{
    (void)state;
    eg_group *g = eg_group_new(NULL);
    sleeper s = {0};
    assert_int_equal(eg_go_named(g, "sleeper", sleep_task, &s), 0);
    assert_int_equal(eg_go_named(g, "failer", fail_first, &s), 0);
    assert_int_equal(eg_wait(g), -EIO);
    eg_trace_entry e[2];
    assert_int_equal(eg_group_errors(g, e, 2), 2);
    assert_string_equal(e[0].name, "failer");
    assert_int_equal(e[0].outcome, EG_OUTCOME_FAILED);
    assert_string_equal(e[0].errmsg, "backend: HTTP 503");
    assert_string_equal(e[1].name, "sleeper");
    assert_int_equal(e[1].outcome, EG_OUTCOME_CANCELLED);
    assert_int_equal(e[1].result, -ECANCELED);
    eg_group_free(g);
}

/* ---- EG_FIRST_SUCCESS -------------------------------------------------------------- */

typedef struct racer {
    sleeper *slow;
    int nslow;
    eg_group *g;
} racer;

/* Wins once every slow sibling is asleep and the failure is recorded. */
static int winner_task(eg_ctx *ctx, void *arg)
{
    racer *r = arg;
    for (int k = 0; k < r->nslow; k++)
        for (int i = 0; i < 400000 && !atomic_load(&r->slow[k].started); i++)
            nap_us(25);
    for (int i = 0; i < 400000 && eg_group_errors(r->g, NULL, 0) < 1; i++)
        nap_us(25);
    /* The failure cancelled nothing. */
    return eg_ctx_err(ctx) == 0 ? 0 : -EPROTO;
}

static int early_failure(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return eg_errorf(-ECONNREFUSED, "replica 3 down");
}

static void test_first_success_race(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_policy(g, EG_FIRST_SUCCESS), 0);
    assert_int_equal(eg_group_set_trace(g, true), 0);
    sleeper slow[2] = {{0}, {0}};
    racer r = {slow, 2, g};
    assert_int_equal(eg_go_named(g, "slow1", sleep_task, &slow[0]), 0);
    assert_int_equal(eg_go_named(g, "slow2", sleep_task, &slow[1]), 0);
    assert_int_equal(eg_go_named(g, "down", early_failure, NULL), 0);
    assert_int_equal(eg_go_named(g, "fast", winner_task, &r), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_ptr_equal(eg_group_winner(g), &r);
    assert_int_equal(eg_group_err(g), 0);
    for (int k = 0; k < 2; k++)
        assert_int_equal(atomic_load(&slow[k].saw), -ECANCELED);
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -ECANCELED);

    /* The trace: the failure, then the winner, then the cancelled ones. */
    eg_trace_entry e[4];
    assert_int_equal(eg_group_trace(g, e, 4), 4);
    assert_string_equal(e[0].name, "down");
    assert_int_equal(e[0].outcome, EG_OUTCOME_FAILED);
    assert_false(e[0].first_error); /* eg_wait returned 0 */
    assert_string_equal(e[1].name, "fast");
    assert_int_equal(e[1].outcome, EG_OUTCOME_OK);
    assert_string_equal(e[1].errmsg, "");
    for (int i = 2; i < 4; i++) {
        assert_int_equal(e[i].outcome, EG_OUTCOME_CANCELLED);
        assert_true(e[i].start_ns > 0 && e[i].end_ns >= e[i].start_ns);
    }
    assert_int_equal(eg_group_errors(g, NULL, 0), 3);

    char *s = printed(g);
    assert_non_null(strstr(s, "<- winner"));
    assert_null(strstr(s, "<- first error"));
    assert_non_null(strstr(s, "replica 3 down"));
    free(s);
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), live);
}

static void test_first_success_null_arg(void **state)
{
    (void)state;
    /* A winner whose arg is NULL still makes eg_wait return 0. */
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_policy(g, EG_FIRST_SUCCESS), 0);
    sleeper s = {0};
    assert_int_equal(eg_go(g, early_failure, NULL), 0);
    assert_int_equal(eg_go(g, sleep_task, &s), 0);
    for (int i = 0; i < 400000 && eg_group_errors(g, NULL, 0) < 1; i++)
        nap_us(25);
    assert_int_equal(eg_go(g, ok_task, NULL), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(eg_group_err(g), 0);
    assert_null(eg_group_winner(g));
    assert_int_equal(atomic_load(&s.saw), -ECANCELED);
    char *p = printed(g);
    assert_non_null(strstr(p, "result: ok (a task won)"));
    free(p);
    eg_group_free(g);
}

static void test_first_success_all_fail(void **state)
{
    (void)state;
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_policy(g, EG_FIRST_SUCCESS), 0);
    ordered o[3] = {
        {.g = g, .place = 1, .code = -EPIPE, .text = "b"},
        {.g = g, .place = 0, .code = -EIO, .text = "a"},
        {.g = g, .place = 2, .code = -ENOENT, .text = "c"},
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(eg_go(g, ordered_fail, &o[i]), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_null(eg_group_winner(g));
    assert_string_equal(eg_group_errmsg(g), "a");
    eg_trace_entry e[3];
    assert_int_equal(eg_group_errors(g, e, 3), 3);
    assert_int_equal(e[0].result, -EIO);
    assert_true(e[0].first_error);
    assert_int_equal(e[1].result, -EPIPE);
    assert_int_equal(e[2].result, -ENOENT);
    for (int i = 0; i < 3; i++)
        assert_int_equal(e[i].outcome, EG_OUTCOME_FAILED); /* no one cancelled */
    eg_group_free(g);
}

/* ---- EG_COLLECT_ALL ---------------------------------------------------------------- */

typedef struct counted {
    atomic_int active, max, ran, saw_cancel;
} counted;

typedef struct counted_arg {
    counted *c;
    int i;
} counted_arg;

static int counted_task(eg_ctx *ctx, void *arg)
{
    counted_arg *a = arg;
    counted *c = a->c;
    int now = atomic_fetch_add(&c->active, 1) + 1;
    int m = atomic_load(&c->max);
    while (now > m && !atomic_compare_exchange_weak(&c->max, &m, now)) {
    }
    nap_us(500);
    if (eg_ctx_err(ctx))
        atomic_fetch_add(&c->saw_cancel, 1);
    atomic_fetch_add(&c->ran, 1);
    atomic_fetch_sub(&c->active, 1);
    return a->i % 2 ? eg_errorf(-EIO - a->i, "task %d failed", a->i) : 0;
}

static void test_collect_all_with_limit(void **state)
{
    (void)state;
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_policy(g, EG_COLLECT_ALL), 0);
    assert_int_equal(eg_set_limit(g, 2), 0);
    counted c = {0};
    counted_arg a[8];
    for (int i = 0; i < 8; i++) {
        a[i] = (counted_arg){&c, i};
        assert_int_equal(eg_go(g, counted_task, &a[i]), 0);
    }
    int err = eg_wait(g);
    assert_int_equal(atomic_load(&c.ran), 8);
    assert_true(atomic_load(&c.max) <= 2);
    assert_int_equal(atomic_load(&c.saw_cancel), 0);
    eg_trace_entry e[8];
    assert_int_equal(eg_group_errors(g, e, 8), 4);
    assert_int_equal(err, e[0].result); /* the first in finishing order */
    assert_true(e[0].first_error);
    int seen = 0;
    for (int i = 0; i < 4; i++) {
        counted_arg *x = e[i].arg;
        assert_int_equal(x->i % 2, 1);
        assert_int_equal(e[i].result, -EIO - x->i);
        char want[32];
        snprintf(want, sizeof want, "task %d failed", x->i);
        assert_string_equal(e[i].errmsg, want);
        assert_int_equal(e[i].outcome, EG_OUTCOME_FAILED);
        seen |= 1 << x->i;
    }
    assert_int_equal(seen, 0xAA);
    eg_group_free(g);
}

/* ---- settings ------------------------------------------------------------------------ */

static int block_on_ctx(eg_ctx *ctx, void *arg)
{
    (void)arg;
    eg_ctx_wait(ctx);
    return 0;
}

static void test_set_policy_rules(void **state)
{
    (void)state;
    assert_int_equal(eg_group_set_policy(NULL, EG_COLLECT_ALL), -EINVAL);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_policy(g, (eg_policy)42), -EINVAL);
    assert_int_equal(eg_go(g, block_on_ctx, NULL), 0);
    assert_int_equal(eg_group_set_policy(g, EG_FIRST_SUCCESS), -EBUSY);
    eg_cancel(eg_group_ctx(g), -ECANCELED);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(eg_group_set_policy(g, EG_FIRST_SUCCESS), 0);
    assert_null(eg_group_winner(g));
    assert_null(eg_group_winner(NULL));
    assert_int_equal(eg_group_print(NULL, stdout), -EINVAL);
    assert_int_equal(eg_group_print(g, NULL), -EINVAL);
    assert_string_equal(eg_outcome_name(EG_OUTCOME_DETACHED), "detached");
    eg_group_free(g);
}

/* Every policy with tracing, a limit and a nested group. */
typedef struct nested_arg {
    eg_policy p;
    int code;
} nested_arg;

static int inner_fail(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    nested_arg *n = arg;
    return n->code ? eg_errorf(n->code, "inner %d", n->code) : 0;
}

static int nested_task(eg_ctx *ctx, void *arg)
{
    nested_arg *n = arg;
    eg_group *inner = eg_group_new(ctx);
    if (!inner)
        return -ENOMEM;
    eg_group_set_policy(inner, n->p);
    eg_group_set_trace(inner, true);
    eg_set_limit(inner, 1);
    for (int i = 0; i < 3; i++)
        eg_go(inner, inner_fail, arg);
    int r = eg_wait(inner);
    eg_group_free(inner);
    return r;
}

static void test_policies_with_trace_limit_nesting(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_policy ps[3] = {EG_FAIL_FAST, EG_FIRST_SUCCESS, EG_COLLECT_ALL};
    for (int k = 0; k < 3; k++) {
        eg_group *g = eg_group_new(NULL);
        assert_int_equal(eg_group_set_policy(g, ps[k]), 0);
        assert_int_equal(eg_group_set_trace(g, true), 0);
        assert_int_equal(eg_set_limit(g, 1), 0);
        nested_arg fail = {ps[k], -EIO}, ok = {ps[k], 0};
        assert_int_equal(eg_go_named(g, "fails", nested_task, &fail), 0);
        assert_int_equal(eg_go_named(g, "ok", nested_task, &ok), 0);
        int err = eg_wait(g);
        eg_trace_entry e[2];
        assert_int_equal(eg_group_trace(g, e, 2), 2);
        assert_string_equal(e[0].name, "fails");
        assert_int_equal(e[0].result, -EIO);
        assert_string_equal(e[0].errmsg, "inner -5"); /* passed up */
        assert_string_equal(e[1].name, "ok");
        if (ps[k] == EG_FIRST_SUCCESS) {
            assert_int_equal(err, 0);
            assert_ptr_equal(eg_group_winner(g), &ok);
            assert_int_equal(e[1].result, 0);
        } else if (ps[k] == EG_COLLECT_ALL) {
            assert_int_equal(err, -EIO);
            assert_int_equal(e[1].result, 0); /* not cancelled */
        } else {
            assert_int_equal(err, -EIO);
            /* Started after the failure cancelled the context: its inner
             * group is born cancelled, its tasks see -ECANCELED or 0. */
            assert_true(e[1].outcome == EG_OUTCOME_OK ||
                        e[1].outcome == EG_OUTCOME_CANCELLED);
        }
        assert_string_equal(eg_group_errmsg(g), "inner -5");
        eg_group_free(g);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_wait_grace ------------------------------------------------------------------- */

typedef struct straggler {
    atomic_int started, finished;
    long sleep_us; /* a plain nanosleep: no context reaches it */
    int result;
    atomic_int *hold; /* if set, also naps on until *hold != 0 */
} straggler;

static int straggle(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    straggler *s = arg;
    int r = s->result; /* read before finished: the test reuses s after it */
    long us = s->sleep_us;
    atomic_int *hold = s->hold;
    atomic_store(&s->started, 1);
    nap_us(us);
    for (int i = 0; hold && !atomic_load(hold) && i < 600000; i++)
        nap_us(100);
    atomic_store(&s->finished, 1);
    return r;
}

typedef struct failer {
    straggler *wait_for;
    _Atomic int64_t failed_at;
} failer;

static int fail_after_start(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    failer *f = arg;
    for (int i = 0; i < 400000 && f->wait_for && !atomic_load(&f->wait_for->started); i++)
        nap_us(25);
    atomic_store(&f->failed_at, eg_now());
    return eg_errorf(-EIO, "lookup failed");
}

static void grace_with_straggler(bool tracing)
{
    long live = eg_live_objects();
    /* Static: the straggler outlives this call's wait. */
    static straggler s;
    static failer f;
    static atomic_int hold;
    atomic_store(&hold, 0);
    /* The straggler ends only once the test lets it (below). */
    s = (straggler){.sleep_us = 0, .result = -EPIPE, .hold = &hold};
    f = (failer){.wait_for = &s};
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_trace(g, tracing), 0);
    assert_int_equal(eg_go_named(g, "dns", straggle, &s), 0);
    assert_int_equal(eg_go_named(g, "api", fail_after_start, &f), 0);
    int64_t grace = MS(50);
    assert_int_equal(eg_wait_grace(g, grace), -EIO);
    int64_t back = eg_now();
    assert_int_equal(atomic_load(&s.finished), 0); /* returned before it */
    assert_true(back >= atomic_load(&f.failed_at) + grace);

    eg_trace_entry e[4];
    size_t n = eg_group_errors(g, e, 4);
    assert_int_equal(n, tracing ? 2 : 1);
    assert_string_equal(e[0].name, "api");
    assert_int_equal(e[0].outcome, EG_OUTCOME_FAILED);
    if (tracing) {
        assert_string_equal(e[1].name, "dns");
        assert_int_equal(e[1].outcome, EG_OUTCOME_DETACHED);
        assert_int_equal(e[1].result, 0);
        assert_true(e[1].start_ns > 0);
        assert_int_equal(eg_group_trace(g, NULL, 0), 2);
    }
    char *p = printed(g);
    assert_non_null(strstr(p, tracing ? "<- detached" : "1 task detached"));
    free(p);
    /* The group takes no more tasks. */
    assert_int_equal(eg_go(g, ok_task, NULL), -ECANCELED);

    eg_group_free(g); /* does not wait for the straggler */
    assert_int_equal(atomic_load(&s.finished), 0);
    assert_true(eg_live_objects() > live); /* the straggler holds the group */
    atomic_store(&hold, 1);
    assert_true(wait_for_int(&s.finished, 1));
    assert_live_back_to(live);
}

static void test_grace_detaches_straggler(void **state)
{
    (void)state;
    grace_with_straggler(false);
}

static void test_grace_detaches_straggler_traced(void **state)
{
    (void)state;
    grace_with_straggler(true);
}

static void test_grace_waits_while_live(void **state)
{
    (void)state;
    /* No failure: a task slower than the grace is waited for. */
    straggler s = {.sleep_us = 30 * 1000, .result = 0};
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, straggle, &s), 0);
    assert_int_equal(eg_wait_grace(g, 0), 0);
    assert_int_equal(atomic_load(&s.finished), 1);
    /* Not detached: the group goes on. Its context is done now (as after
     * eg_wait), so the grace counts at once; a long one returns when the
     * task does. */
    assert_int_equal(eg_go(g, ok_task, NULL), 0);
    assert_int_equal(eg_wait_grace(g, GATE_WAIT_NS), 0);
    assert_int_equal(eg_wait_grace(g, -1), -EINVAL);
    assert_int_equal(eg_wait_grace(NULL, 0), -EINVAL);
    eg_group_free(g);
}

static void test_grace_parent_deadline(void **state)
{
    (void)state;
    long live = eg_live_objects();
    static straggler s;
    static atomic_int hold;
    atomic_store(&hold, 0);
    /* The task outlasts the deadline and the grace whatever the machine's
     * speed: it ends only once the test lets it, after eg_wait_grace. */
    s = (straggler){.sleep_us = 0, .result = 0, .hold = &hold};
    eg_ctx *parent = eg_with_timeout(NULL, MS(10));
    eg_group *g = eg_group_new(parent);
    assert_int_equal(eg_go(g, straggle, &s), 0);
    /* No failure: the context's error. */
    assert_int_equal(eg_wait_grace(g, MS(5)), -ETIMEDOUT);
    assert_int_equal(atomic_load(&s.finished), 0);
    eg_group_free(g);
    eg_ctx_release(parent);
    atomic_store(&hold, 1);
    assert_true(wait_for_int(&s.finished, 1));
    assert_live_back_to(live);
}

/* A straggler that ends at any moment around the detach: under ASan/TSan
 * this is the race test. */
static void test_grace_race_loop(void **state)
{
    (void)state;
    long live = eg_live_objects();
    enum { N = 300 };
    static straggler s[N];
    static failer f[N];
    for (int i = 0; i < N; i++) {
        s[i] = (straggler){.sleep_us = (i * 37) % 400, .result = i % 3 ? 0 : -EPIPE};
        f[i] = (failer){.wait_for = NULL};
        eg_group *g = eg_group_new(NULL);
        eg_group_set_trace(g, i % 2);
        if (i % 4 == 1)
            eg_group_set_policy(g, EG_COLLECT_ALL);
        assert_int_equal(eg_go(g, straggle, &s[i]), 0);
        assert_int_equal(eg_go(g, fail_after_start, &f[i]), 0);
        int r = eg_wait_grace(g, 100 * 1000 + (i % 5) * 50 * 1000);
        /* The straggler's -EPIPE may come first if it beats the failure. */
        assert_true(r == -EIO || r == -EPIPE);
        if (i % 3 == 0) {
            char *p = printed(g);
            free(p);
            eg_trace_entry e[4];
            assert_true(eg_group_errors(g, e, 4) >= 1);
        }
        eg_group_free(g);
    }
    for (int i = 0; i < N; i++)
        assert_true(wait_for_int(&s[i].finished, 1));
    assert_live_back_to(live);
}

/* ---- eg_wait_async ----------------------------------------------------------------- */

typedef struct async_probe {
    atomic_int calls;
    atomic_int err;
    atomic_int ctx_err;
    atomic_int free_group;
    atomic_int caller; /* thread id of the caller of eg_wait_async */
    atomic_int other_thread;
    gate *release;
} async_probe;

static void on_done(eg_group *g, int err, void *arg)
{
    async_probe *p = arg;
    atomic_store(&p->err, err);
    atomic_store(&p->ctx_err, eg_ctx_err(eg_group_ctx(g)));
    atomic_store(&p->other_thread, thread_id() != atomic_load(&p->caller));
    if (atomic_load(&p->free_group))
        eg_group_free(g);
    atomic_fetch_add(&p->calls, 1); /* last: the test may return after it */
}

static int gated_fail(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    async_probe *p = arg;
    gate_take(p->release, GATE_WAIT_NS);
    return eg_errorf(-EIO, "gated");
}

static int gated_ok(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    async_probe *p = arg;
    gate_take(p->release, GATE_WAIT_NS);
    return 0;
}

static void *start_and_leave(void *arg)
{
    async_probe *p = arg;
    atomic_store(&p->caller, thread_id());
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    assert_int_equal(eg_go(g, gated_ok, p), 0);
    assert_int_equal(eg_go(g, gated_fail, p), 0);
    assert_int_equal(eg_wait_async(g, on_done, p), 0);
    assert_int_equal(eg_wait_async(g, on_done, p), -EBUSY);
    return NULL; /* the thread exits with the wait pending */
}

static void test_wait_async_from_exiting_thread(void **state)
{
    (void)state;
    long live = eg_live_objects();
    gate release;
    gate_init(&release);
    async_probe p = {.release = &release};
    atomic_store(&p.free_group, 1);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, start_and_leave, &p), 0);
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&p.calls), 0); /* tasks still blocked */
    gate_add(&release, 2);
    assert_true(wait_for_int(&p.calls, 1));
    assert_int_equal(atomic_load(&p.err), -EIO);
    assert_int_equal(atomic_load(&p.ctx_err), -ECANCELED);
    assert_int_equal(atomic_load(&p.other_thread), 1);
    assert_live_back_to(live); /* fn freed the group */
    gate_destroy(&release);
}

static void test_wait_async_idle_group(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_group *g = eg_group_new(NULL);
    async_probe p = {.caller = thread_id()};
    assert_int_equal(eg_wait_async(NULL, on_done, &p), -EINVAL);
    assert_int_equal(eg_wait_async(g, NULL, &p), -EINVAL);
    assert_int_equal(eg_wait_async(g, on_done, &p), 0);
    assert_true(wait_for_int(&p.calls, 1));
    assert_int_equal(atomic_load(&p.other_thread), 1); /* never inline */
    assert_int_equal(atomic_load(&p.err), 0);
    assert_int_equal(atomic_load(&p.ctx_err), -ECANCELED);
    /* Once fn ran, another async wait may start. */
    assert_int_equal(eg_wait_async(g, on_done, &p), 0);
    assert_true(wait_for_int(&p.calls, 2));
    nap_us(2000);
    assert_int_equal(atomic_load(&p.calls), 2); /* exactly once each */
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), live);
}

static void test_wait_async_then_free(void **state)
{
    (void)state;
    /* eg_group_free while a callback is pending waits for it to start. */
    for (int i = 0; i < 200; i++) {
        eg_group *g = eg_group_new(NULL);
        async_probe p = {.caller = thread_id()};
        assert_int_equal(eg_go(g, ok_task, NULL), 0);
        assert_int_equal(eg_wait_async(g, on_done, &p), 0);
        eg_group_free(g);
        assert_true(wait_for_int(&p.calls, 1));
    }
}

static void test_wait_async_first_success(void **state)
{
    (void)state;
    gate release;
    gate_init(&release);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_policy(g, EG_FIRST_SUCCESS), 0);
    async_probe p = {.caller = thread_id(), .release = &release};
    sleeper s = {0};
    assert_int_equal(eg_go(g, sleep_task, &s), 0);
    assert_int_equal(eg_go(g, gated_ok, &p), 0);
    assert_int_equal(eg_wait_async(g, on_done, &p), 0);
    gate_add(&release, 1);
    assert_true(wait_for_int(&p.calls, 1));
    assert_int_equal(atomic_load(&p.err), 0);
    assert_int_equal(atomic_load(&s.saw), -ECANCELED);
    assert_ptr_equal(eg_group_winner(g), &p);
    eg_group_free(g);
    gate_destroy(&release);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_errors_in_finishing_order),
        EG_TEST(test_fail_fast_keeps_cancelled_too),
        EG_TEST(test_first_success_race),
        EG_TEST(test_first_success_null_arg),
        EG_TEST(test_first_success_all_fail),
        EG_TEST(test_collect_all_with_limit),
        EG_TEST(test_set_policy_rules),
        EG_TEST(test_policies_with_trace_limit_nesting),
        EG_TEST(test_grace_detaches_straggler),
        EG_TEST(test_grace_detaches_straggler_traced),
        EG_TEST(test_grace_waits_while_live),
        EG_TEST(test_grace_parent_deadline),
        EG_TEST(test_grace_race_loop),
        EG_TEST(test_wait_async_from_exiting_thread),
        EG_TEST(test_wait_async_idle_group),
        EG_TEST(test_wait_async_then_free),
        EG_TEST(test_wait_async_first_success),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
