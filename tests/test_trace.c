/*
 * test_trace.c - the per-task trace: who failed, who was cancelled, when.
 */
#include "testutil.h"

#include <errno.h>
#include <string.h>

static int task_ok(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

/* Fails once the waiter has announced it blocks, so the waiter is surely
 * cancelled by this failure. */
static int task_fail(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    gate *blocked = arg;
    if (!gate_wait(blocked, 1, GATE_WAIT_NS))
        return -ETIME;
    return eg_errorf(-EIO, "B: HTTP 500");
}

static int task_wait(eg_ctx *ctx, void *arg)
{
    gate *blocked = arg;
    gate_post(blocked);
    return eg_ctx_wait(ctx);
}

static const eg_trace_entry *find(const eg_trace_entry *e, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (e[i].name && strcmp(e[i].name, name) == 0)
            return &e[i];
    return NULL;
}

static void test_trace_outcomes(void **state)
{
    (void)state;
    long live = eg_live_objects();
    gate blocked;
    gate_init(&blocked);
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    assert_int_equal(eg_group_set_trace(g, true), 0);
    assert_int_equal(eg_go_named(g, "A", task_wait, &blocked), 0);
    assert_int_equal(eg_go_named(g, "B", task_fail, &blocked), 0);
    assert_int_equal(eg_go_named(g, "C", task_ok, NULL), 0);
    assert_int_equal(eg_wait(g), -EIO);

    eg_trace_entry e[8];
    size_t n = eg_group_trace(g, e, 8);
    assert_int_equal(n, 3);
    const eg_trace_entry *a = find(e, n, "A"), *b = find(e, n, "B"), *c = find(e, n, "C");
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);

    assert_int_equal(b->result, -EIO);
    assert_int_equal(b->outcome, EG_OUTCOME_FAILED);
    assert_true(b->first_error);
    assert_ptr_equal(b->arg, &blocked);

    assert_int_equal(a->result, -ECANCELED);
    assert_int_equal(a->outcome, EG_OUTCOME_CANCELLED);
    assert_false(a->first_error);

    assert_int_equal(c->result, 0);
    assert_int_equal(c->outcome, EG_OUTCOME_OK);
    assert_false(c->first_error);

    /* Finishing order: A returned only after B's failure was recorded. */
    assert_true(b < a);
    for (size_t i = 0; i < n; i++)
        assert_true(e[i].start_ns <= e[i].end_ns);
    assert_true(a->end_ns >= b->end_ns);

    assert_string_equal(eg_outcome_name(EG_OUTCOME_OK), "ok");
    assert_string_equal(eg_outcome_name(EG_OUTCOME_FAILED), "failed");
    assert_string_equal(eg_outcome_name(EG_OUTCOME_CANCELLED), "cancelled");

    eg_group_free(g);
    gate_destroy(&blocked);
    assert_int_equal(eg_live_objects(), live);
}

static void test_trace_off_by_default(void **state)
{
    (void)state;
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < 10; i++)
        assert_int_equal(eg_go(g, task_ok, NULL), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(eg_group_trace(g, NULL, 0), 0);
    eg_group_free(g);
}

static void test_trace_many_and_partial_copy(void **state)
{
    (void)state;
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_trace(g, true), 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(eg_go(g, task_ok, (void *)(intptr_t)i), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(eg_group_trace(g, NULL, 0), 1000);
    eg_trace_entry e[10];
    assert_int_equal(eg_group_trace(g, e, 10), 1000);
    for (int i = 0; i < 10; i++) {
        assert_null(e[i].name);
        assert_int_equal(e[i].outcome, EG_OUTCOME_OK);
    }
    /* Every task appears exactly once. */
    eg_trace_entry *all = calloc(1000, sizeof *all);
    char *seen = calloc(1000, 1);
    assert_int_equal(eg_group_trace(g, all, 1000), 1000);
    for (int i = 0; i < 1000; i++) {
        intptr_t k = (intptr_t)all[i].arg;
        assert_true(k >= 0 && k < 1000);
        assert_int_equal(seen[k], 0);
        seen[k] = 1;
    }
    free(all);
    free(seen);
    eg_group_free(g);
}

static int task_block(eg_ctx *ctx, void *arg)
{
    gate *started = arg;
    gate_post(started);
    return eg_ctx_wait(ctx);
}

static void test_trace_set_while_active(void **state)
{
    (void)state;
    gate started;
    gate_init(&started);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, task_block, &started), 0);
    assert_true(gate_wait(&started, 1, GATE_WAIT_NS));
    assert_int_equal(eg_group_set_trace(g, true), -EBUSY);
    assert_int_equal(eg_group_set_trace(NULL, true), -EINVAL);
    eg_cancel(eg_group_ctx(g), 0);
    assert_int_equal(eg_wait(g), -ECANCELED);
    /* The cancelled task ran untraced: tracing was refused. */
    assert_int_equal(eg_group_trace(g, NULL, 0), 0);
    eg_group_free(g);
    gate_destroy(&started);
}

/* A parent cancelled from outside: every task is "cancelled", and the
 * first of them still carries the group's error. */
static void test_trace_parent_cancel(void **state)
{
    (void)state;
    gate started;
    gate_init(&started);
    eg_ctx *parent = eg_with_cancel(NULL);
    eg_group *g = eg_group_new(parent);
    assert_int_equal(eg_group_set_trace(g, true), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(eg_go_named(g, "blocked", task_block, &started), 0);
    assert_true(gate_wait(&started, 3, GATE_WAIT_NS));
    eg_cancel(parent, -EPIPE);
    assert_int_equal(eg_wait(g), -ECANCELED);
    eg_trace_entry e[3];
    assert_int_equal(eg_group_trace(g, e, 3), 3);
    int firsts = 0;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(e[i].result, -ECANCELED);
        firsts += e[i].first_error;
        assert_int_equal(e[i].outcome, EG_OUTCOME_CANCELLED);
    }
    assert_int_equal(firsts, 1);
    eg_group_free(g);
    eg_ctx_release(parent);
    gate_destroy(&started);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_trace_outcomes),
        EG_TEST(test_trace_off_by_default),
        EG_TEST(test_trace_many_and_partial_copy),
        EG_TEST(test_trace_set_while_active),
        EG_TEST(test_trace_parent_cancel),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
