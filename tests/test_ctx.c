/*
 * test_ctx.c - contexts: Go's context tests (cancellation trees, causes,
 * deadlines, values), WithoutCancel, AfterFunc, eg_ctx_fd and ownership.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

/* ---- helpers ------------------------------------------------------------ */

/* Polls eg_live_objects() until it equals want (objects freed by pool
 * threads may go a little after the call that released them). */
static long wait_live(long want)
{
    long n = eg_live_objects();
    for (int i = 0; i < 2000 && n != want; i++) {
        sleep_ms(5);
        n = eg_live_objects();
    }
    return n;
}

static bool fd_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int r;
    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    return r == 1 && (p.revents & POLLIN);
}

static void assert_live_ctx(eg_ctx *c)
{
    assert_int_equal(eg_ctx_err(c), 0);
    assert_int_equal(eg_ctx_cause(c), 0);
    assert_false(eg_ctx_done(c));
}

static void assert_done_ctx(eg_ctx *c, int err, int cause)
{
    assert_true(eg_ctx_done(c));
    assert_int_equal(eg_ctx_err(c), err);
    assert_int_equal(eg_ctx_cause(c), cause);
}

/* Keys: addresses of static objects. k1 and k2 have equal contents, so a
 * comparison by value instead of by pointer would confuse them. */
static const int k1 = 1;
static const int k2 = 1;
static const int k3 = 3;

/* ---- background ---------------------------------------------------------- */

static void test_background(void **state)
{
    long live = eg_live_objects();
    eg_ctx *bg = eg_background();
    assert_non_null(bg);
    assert_ptr_equal(eg_background(), bg);
    assert_live_ctx(bg);
    int64_t d = 123;
    assert_false(eg_ctx_deadline(bg, &d));
    assert_false(eg_ctx_deadline(bg, NULL));
    assert_null(eg_ctx_value(bg, &k1));

    eg_cancel(bg, -EIO);
    assert_live_ctx(bg);

    assert_ptr_equal(eg_ctx_retain(bg), bg);
    eg_ctx_release(bg);
    eg_ctx_release(bg);
    assert_live_ctx(bg);
    assert_int_equal(eg_live_objects(), live);

    /* Can never be done: wait_until returns 0 at the deadline. */
    int64_t until = eg_now() + MS(20);
    assert_int_equal(eg_ctx_wait_until(bg, until), 0);
    assert_true(eg_now() >= until);
    assert_int_equal(eg_ctx_fd(bg), -EINVAL);
}

/* ---- Go: TestWithCancel ------------------------------------------------- */

static void test_with_cancel(void **state)
{
    long live = eg_live_objects();
    eg_ctx *c1 = eg_with_cancel(eg_background());
    assert_non_null(c1);
    eg_ctx *o = eg_with_value(c1, &k1, (void *)"v");
    assert_non_null(o);
    eg_ctx *c2 = eg_with_cancel(o);
    assert_non_null(c2);
    eg_ctx *all[] = {c1, o, c2};
    for (int i = 0; i < 3; i++)
        assert_live_ctx(all[i]);

    eg_cancel(c1, 0); /* propagates synchronously */
    for (int i = 0; i < 3; i++)
        assert_done_ctx(all[i], -ECANCELED, -ECANCELED);
    assert_live_ctx(eg_background());

    for (int i = 2; i >= 0; i--)
        eg_ctx_release(all[i]);
    assert_int_equal(eg_live_objects(), live);

    /* NULL parent means background. */
    eg_ctx *c = eg_with_cancel(NULL);
    assert_non_null(c);
    assert_live_ctx(c);
    assert_false(eg_ctx_deadline(c, NULL));
    eg_cancel(c, -EIO);
    assert_done_ctx(c, -ECANCELED, -EIO);
    assert_live_ctx(eg_background());
    eg_ctx_release(c);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- Go: TestParentFinishesChild ---------------------------------------- */

static void test_parent_finishes_child(void **state)
{
    long live = eg_live_objects();
    /* parent -> cancelChild; parent -> valueChild -> timerChild */
    eg_ctx *parent = eg_with_cancel(NULL);
    eg_ctx *cancel_child = eg_with_cancel(parent);
    eg_ctx *value_child = eg_with_value(parent, &k1, (void *)"value");
    eg_ctx *timer_child = eg_with_timeout(value_child, LONG_NS);
    assert_non_null(parent);
    assert_non_null(cancel_child);
    assert_non_null(value_child);
    assert_non_null(timer_child);
    assert_live_ctx(parent);
    assert_live_ctx(cancel_child);
    assert_live_ctx(value_child);
    assert_live_ctx(timer_child);

    eg_cancel(parent, -EPIPE);
    assert_done_ctx(parent, -ECANCELED, -EPIPE);
    assert_done_ctx(cancel_child, -ECANCELED, -EPIPE);
    assert_done_ctx(value_child, -ECANCELED, -EPIPE);
    assert_done_ctx(timer_child, -ECANCELED, -EPIPE);
    assert_string_equal((const char *)eg_ctx_value(timer_child, &k1), "value");

    /* Children of a done parent are done at creation with its err and cause. */
    eg_ctx *pre_value = eg_with_value(parent, &k2, (void *)"x");
    eg_ctx *pre_cancel = eg_with_cancel(parent);
    eg_ctx *pre_timer = eg_with_timeout(parent, LONG_NS);
    eg_ctx *pre_timer_cause = eg_with_timeout_cause(parent, LONG_NS, -EIO);
    assert_non_null(pre_value);
    assert_non_null(pre_cancel);
    assert_non_null(pre_timer);
    assert_non_null(pre_timer_cause);
    assert_done_ctx(pre_value, -ECANCELED, -EPIPE);
    assert_done_ctx(pre_cancel, -ECANCELED, -EPIPE);
    assert_done_ctx(pre_timer, -ECANCELED, -EPIPE);
    assert_done_ctx(pre_timer_cause, -ECANCELED, -EPIPE);
    /* And cancelling them changes nothing: the first cancel won. */
    eg_cancel(pre_cancel, -EIO);
    assert_done_ctx(pre_cancel, -ECANCELED, -EPIPE);

    eg_ctx_release(pre_timer_cause);
    eg_ctx_release(pre_timer);
    eg_ctx_release(pre_cancel);
    eg_ctx_release(pre_value);
    eg_ctx_release(timer_child);
    eg_ctx_release(value_child);
    eg_ctx_release(cancel_child);
    eg_ctx_release(parent);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- Go: TestChildFinishesFirst ----------------------------------------- */

static void test_child_finishes_first(void **state)
{
    long live = eg_live_objects();
    eg_ctx *cancelable = eg_with_cancel(NULL);
    eg_ctx *parents[] = {eg_background(), cancelable};
    for (int i = 0; i < 2; i++) {
        eg_ctx *parent = parents[i];
        eg_ctx *child = eg_with_cancel(parent);
        assert_non_null(child);
        assert_live_ctx(parent);
        assert_live_ctx(child);
        eg_cancel(child, -EIO);
        assert_done_ctx(child, -ECANCELED, -EIO);
        assert_live_ctx(parent);
        eg_ctx_release(child);
        assert_live_ctx(parent);
    }
    /* A deadline child cancelled early does not touch its parent either. */
    eg_ctx *tchild = eg_with_timeout(cancelable, LONG_NS);
    eg_cancel(tchild, 0);
    assert_done_ctx(tchild, -ECANCELED, -ECANCELED);
    assert_live_ctx(cancelable);
    eg_ctx_release(tchild);
    eg_ctx_release(cancelable);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- cancellation of a tree ----------------------------------------------- */

#define TREE_N 100

typedef struct tree {
    eg_ctx *node[TREE_N];
    int parent[TREE_N]; /* index, -1 for the root */
    int n;
} tree;

static void tree_build(tree *t)
{
    /* Breadth-first, four children per node (Go's TestSimultaneousCancels). */
    t->node[0] = eg_with_cancel(NULL);
    assert_non_null(t->node[0]);
    t->parent[0] = -1;
    t->n = 1;
    for (int q = 0; t->n < TREE_N; q++) {
        for (int i = 0; i < 4 && t->n < TREE_N; i++) {
            t->node[t->n] = eg_with_cancel(t->node[q]);
            assert_non_null(t->node[t->n]);
            t->parent[t->n] = q;
            t->n++;
        }
    }
}

static void tree_free(tree *t)
{
    /* Release parents first: children hold references to them. */
    for (int i = 0; i < t->n; i++)
        eg_ctx_release(t->node[i]);
}

static void test_cancel_tree(void **state)
{
    long live = eg_live_objects();
    tree t;
    tree_build(&t);
    for (int i = 0; i < t.n; i++)
        assert_live_ctx(t.node[i]);

    /* Cancelling an inner node cancels exactly its subtree. */
    eg_cancel(t.node[1], -EIO);
    for (int i = 0; i < t.n; i++) {
        bool in_subtree = false;
        for (int j = i; j >= 0; j = t.parent[j])
            if (j == 1)
                in_subtree = true;
        if (in_subtree)
            assert_done_ctx(t.node[i], -ECANCELED, -EIO);
        else
            assert_live_ctx(t.node[i]);
    }
    /* Cancelling the root reaches everything else before returning; the
     * subtree already cancelled keeps its cause. */
    eg_cancel(t.node[0], -EPIPE);
    for (int i = 0; i < t.n; i++) {
        bool in_subtree = false;
        for (int j = i; j >= 0; j = t.parent[j])
            if (j == 1)
                in_subtree = true;
        assert_done_ctx(t.node[i], -ECANCELED, in_subtree ? -EIO : -EPIPE);
    }
    tree_free(&t);
    assert_int_equal(eg_live_objects(), live);
}

typedef struct cancel_job {
    tree *t;
    int *order;
    int from, to;
    atomic_int *go;
} cancel_job;

static void *cancel_some(void *p)
{
    cancel_job *j = p;
    while (!atomic_load(j->go))
        sched_yield(); /* a start gate; valgrind runs one thread at a time */
    for (int i = j->from; i < j->to; i++) {
        int k = j->order[i];
        eg_cancel(j->t->node[k], -(1000 + k));
    }
    return NULL;
}

/* Go's TestSimultaneousCancels, checking causes: each node is cancelled
 * either directly (its own cause) or through its parent (the parent's). */
static void test_simultaneous_cancels(void **state)
{
    long live = eg_live_objects();
    unsigned seed = 12345;
    for (int iter = 0; iter < 100; iter++) {
        tree t;
        tree_build(&t);
        int order[TREE_N];
        for (int i = 0; i < t.n; i++)
            order[i] = i;
        for (int i = t.n - 1; i > 0; i--) {
            seed = seed * 1103515245u + 12345u;
            int j = (int)((seed >> 16) % (unsigned)(i + 1));
            int x = order[i];
            order[i] = order[j];
            order[j] = x;
        }
        enum { NT = 4 };
        pthread_t th[NT];
        cancel_job jobs[NT];
        atomic_int go = 0;
        for (int i = 0; i < NT; i++) {
            jobs[i] = (cancel_job){&t, order, i * t.n / NT, (i + 1) * t.n / NT, &go};
            assert_int_equal(pthread_create(&th[i], NULL, cancel_some, &jobs[i]), 0);
        }
        atomic_store(&go, 1);
        for (int i = 0; i < NT; i++)
            pthread_join(th[i], NULL);
        for (int i = 0; i < t.n; i++) {
            assert_int_equal(eg_ctx_err(t.node[i]), -ECANCELED);
            int cause = eg_ctx_cause(t.node[i]);
            if (t.parent[i] < 0)
                assert_int_equal(cause, -(1000 + i));
            else if (cause != -(1000 + i))
                assert_int_equal(cause, eg_ctx_cause(t.node[t.parent[i]]));
        }
        tree_free(&t);
    }
    assert_int_equal(eg_live_objects(), live);
}

typedef struct interlock {
    eg_ctx *parent, *child;
} interlock;

static void *interlock_main(void *p)
{
    interlock *il = p;
    eg_ctx_wait(il->parent);
    eg_cancel(il->child, -EIO);
    return NULL;
}

/* Go: TestInterlockedCancels. */
static void test_interlocked_cancels(void **state)
{
    long live = eg_live_objects();
    for (int i = 0; i < 200; i++) {
        interlock il;
        il.parent = eg_with_cancel(NULL);
        il.child = eg_with_cancel(il.parent);
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, interlock_main, &il), 0);
        eg_cancel(il.parent, -EPIPE);
        assert_int_equal(eg_ctx_wait(il.child), -ECANCELED);
        pthread_join(th, NULL);
        /* As in Go, the parent is marked done before its cancel reaches
         * the child, so the other thread may cancel the child first: the
         * child is done either way, with one of the two causes. */
        assert_true(eg_ctx_done(il.child));
        int cause = eg_ctx_cause(il.child);
        assert_true(cause == -EPIPE || cause == -EIO);
        eg_ctx_release(il.child);
        eg_ctx_release(il.parent);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* ---- causes (Go 1.20/1.21: TestCause) ---------------------------------------- */

static void test_cancel_first_wins(void **state)
{
    long live = eg_live_objects();
    eg_ctx *c = eg_with_cancel(NULL);
    eg_cancel(c, -EIO);
    eg_cancel(c, -EPIPE);
    eg_cancel(c, 0);
    assert_done_ctx(c, -ECANCELED, -EIO);
    eg_ctx_release(c);

    /* cause 0 means -ECANCELED */
    c = eg_with_cancel(NULL);
    eg_cancel(c, 0);
    assert_done_ctx(c, -ECANCELED, -ECANCELED);
    eg_cancel(c, -EIO);
    assert_done_ctx(c, -ECANCELED, -ECANCELED);
    eg_ctx_release(c);

    /* Child cancelled first keeps its cause when the parent is cancelled. */
    eg_ctx *parent = eg_with_cancel(NULL);
    eg_ctx *child = eg_with_cancel(parent);
    eg_ctx *grandchild = eg_with_cancel(child);
    eg_cancel(child, -EIO);
    assert_live_ctx(parent);
    assert_done_ctx(grandchild, -ECANCELED, -EIO);
    eg_cancel(parent, -EPIPE);
    assert_done_ctx(parent, -ECANCELED, -EPIPE);
    assert_done_ctx(child, -ECANCELED, -EIO);
    assert_done_ctx(grandchild, -ECANCELED, -EIO);
    /* A child of a cancelled parent has the parent's err and cause. */
    eg_ctx *late = eg_with_cancel(child);
    assert_done_ctx(late, -ECANCELED, -EIO);
    eg_ctx *late_v = eg_with_value(parent, &k1, NULL);
    assert_done_ctx(late_v, -ECANCELED, -EPIPE);
    eg_ctx_release(late_v);
    eg_ctx_release(late);
    eg_ctx_release(grandchild);
    eg_ctx_release(child);
    eg_ctx_release(parent);
    assert_int_equal(eg_live_objects(), live);
}

static void test_cause_deadlines(void **state)
{
    long live = eg_live_objects();

    /* WithTimeout: err and cause -ETIMEDOUT. */
    eg_ctx *c = eg_with_timeout(NULL, MS(1));
    assert_non_null(c);
    assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    /* A cancel after the timeout changes nothing. */
    eg_cancel(c, -EPIPE);
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    eg_ctx_release(c);

    /* WithTimeoutCause / WithDeadlineCause: err -ETIMEDOUT, the given cause. */
    c = eg_with_timeout_cause(NULL, MS(1), -EIO);
    assert_non_null(c);
    assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
    assert_done_ctx(c, -ETIMEDOUT, -EIO);
    eg_ctx_release(c);

    c = eg_with_deadline_cause(NULL, eg_now() + MS(1), -EPIPE);
    assert_non_null(c);
    assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
    assert_done_ctx(c, -ETIMEDOUT, -EPIPE);
    eg_ctx_release(c);

    /* cause 0 means -ETIMEDOUT */
    c = eg_with_timeout_cause(NULL, MS(1), 0);
    assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    eg_ctx_release(c);

    /* Cancelled before the deadline: -ECANCELED with the cancel's cause. */
    c = eg_with_timeout_cause(NULL, LONG_NS, -EIO);
    eg_cancel(c, -EPIPE);
    assert_done_ctx(c, -ECANCELED, -EPIPE);
    eg_ctx_release(c);
    c = eg_with_timeout_cause(NULL, LONG_NS, -EIO);
    eg_cancel(c, 0);
    assert_done_ctx(c, -ECANCELED, -ECANCELED);
    eg_ctx_release(c);

    /* Go: TestCanceledTimeout. */
    eg_ctx *p = eg_with_timeout(NULL, EG_NSEC_PER_SEC * 60);
    eg_ctx *v = eg_with_value(p, &k1, NULL);
    c = eg_with_timeout(v, LONG_NS);
    eg_cancel(c, 0);
    assert_done_ctx(c, -ECANCELED, -ECANCELED);
    assert_live_ctx(p);
    eg_ctx_release(c);
    eg_ctx_release(v);
    eg_ctx_release(p);

    /* A child with a later deadline gets the parent's err and cause. */
    p = eg_with_timeout_cause(NULL, MS(5), -EIO);
    eg_ctx *child = eg_with_timeout(p, LONG_NS);
    eg_ctx *child2 = eg_with_cancel(p);
    eg_ctx *child3 = eg_with_timeout_cause(p, LONG_NS, -EPIPE);
    assert_int_equal(eg_ctx_wait(child), -ETIMEDOUT);
    assert_done_ctx(p, -ETIMEDOUT, -EIO);
    assert_done_ctx(child, -ETIMEDOUT, -EIO);
    assert_done_ctx(child2, -ETIMEDOUT, -EIO);
    assert_done_ctx(child3, -ETIMEDOUT, -EIO);
    /* And so does a child created after the parent timed out. */
    eg_ctx *late = eg_with_cancel(p);
    assert_done_ctx(late, -ETIMEDOUT, -EIO);
    eg_ctx_release(late);
    eg_ctx_release(child3);
    eg_ctx_release(child2);
    eg_ctx_release(child);
    eg_ctx_release(p);

    /* A cancelled parent, then a deadline child: the parent's cancel. */
    p = eg_with_cancel(NULL);
    eg_cancel(p, -EIO);
    child = eg_with_deadline_cause(p, eg_now() - MS(1), -EPIPE);
    assert_done_ctx(child, -ECANCELED, -EIO);
    eg_ctx_release(child);
    eg_ctx_release(p);

    assert_int_equal(wait_live(live), live);
}

/* ---- deadlines ------------------------------------------------------------- */

static void test_deadlines(void **state)
{
    long live = eg_live_objects();
    int64_t now = eg_now();
    int64_t d1 = now + LONG_NS;
    eg_ctx *p = eg_with_deadline(NULL, d1);
    assert_non_null(p);
    int64_t got = 0;
    assert_true(eg_ctx_deadline(p, &got));
    assert_true(got == d1);
    assert_true(eg_ctx_deadline(p, NULL));

    /* later than the parent's: reports the parent's */
    eg_ctx *later = eg_with_deadline(p, d1 + LONG_NS);
    got = 0;
    assert_true(eg_ctx_deadline(later, &got));
    assert_true(got == d1);
    /* earlier: its own */
    eg_ctx *earlier = eg_with_deadline(p, d1 - LONG_NS / 2);
    got = 0;
    assert_true(eg_ctx_deadline(earlier, &got));
    assert_true(got == d1 - LONG_NS / 2);
    /* value and cancel children inherit the deadline */
    eg_ctx *v = eg_with_value(earlier, &k1, NULL);
    eg_ctx *c = eg_with_cancel(v);
    got = 0;
    assert_true(eg_ctx_deadline(v, &got));
    assert_true(got == d1 - LONG_NS / 2);
    got = 0;
    assert_true(eg_ctx_deadline(c, &got));
    assert_true(got == d1 - LONG_NS / 2);
    /* timeout: the deadline is now + timeout */
    int64_t before = eg_now();
    eg_ctx *t = eg_with_timeout(NULL, LONG_NS);
    int64_t after = eg_now();
    got = 0;
    assert_true(eg_ctx_deadline(t, &got));
    assert_true(got >= before + LONG_NS && got <= after + LONG_NS);
    /* cancel children without a deadline have none */
    eg_ctx *nd = eg_with_cancel(NULL);
    assert_false(eg_ctx_deadline(nd, &got));

    assert_live_ctx(p);
    assert_live_ctx(later);
    assert_live_ctx(earlier);
    eg_ctx_release(nd);
    eg_ctx_release(t);
    eg_ctx_release(c);
    eg_ctx_release(v);
    eg_ctx_release(earlier);
    eg_ctx_release(later);
    eg_ctx_release(p);

    /* A passed deadline: done at creation. */
    c = eg_with_deadline(NULL, eg_now() - MS(1));
    assert_non_null(c);
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    eg_ctx_release(c);
    c = eg_with_deadline_cause(NULL, eg_now() - MS(1), -EIO);
    assert_done_ctx(c, -ETIMEDOUT, -EIO);
    eg_ctx_release(c);
    c = eg_with_timeout(NULL, 0);
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    eg_ctx_release(c);
    c = eg_with_timeout(NULL, -MS(5));
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    eg_ctx_release(c);
    c = eg_with_deadline(NULL, INT64_MIN);
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    eg_ctx_release(c);
    /* Go's "WithDeadline+now" */
    c = eg_with_deadline(NULL, eg_now());
    assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
    eg_ctx_release(c);

    /* A deadline never fires early. */
    for (int i = 0; i < 20; i++) {
        int64_t d = eg_now() + MS(2 + i % 5);
        c = eg_with_deadline(NULL, d);
        assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
        assert_true(eg_now() >= d);
        eg_ctx_release(c);
    }

    /* Go: TestDeadline "WithDeadline+otherContext+WithDeadline": a long
     * deadline under a short one times out with the short one. */
    p = eg_with_timeout(NULL, MS(1));
    v = eg_with_value(p, &k1, NULL);
    c = eg_with_timeout(v, LONG_NS);
    assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
    assert_done_ctx(c, -ETIMEDOUT, -ETIMEDOUT);
    eg_ctx_release(c);
    eg_ctx_release(v);
    eg_ctx_release(p);

    /* Many deadlines in mixed order all fire, each not before its time. */
    enum { ND = 50 };
    eg_ctx *many[ND];
    int64_t when[ND];
    int64_t base = eg_now();
    for (int i = 0; i < ND; i++) {
        when[i] = base + MS((i * 7) % 23 + 1);
        many[i] = eg_with_deadline(NULL, when[i]);
        assert_non_null(many[i]);
    }
    for (int i = 0; i < ND; i++) {
        assert_int_equal(eg_ctx_wait(many[i]), -ETIMEDOUT);
        assert_true(eg_now() >= when[i]);
    }
    for (int i = 0; i < ND; i++)
        eg_ctx_release(many[i]);

    assert_int_equal(wait_live(live), live);
}

/* Go: testLayers, cancel and timeout flavours. */
static void test_layers(void **state)
{
    long live = eg_live_objects();
    static char keys[64];
    unsigned seed = 777;
    for (int timeout = 0; timeout < 2; timeout++) {
        for (int round = 0; round < 20; round++) {
            eg_ctx *layer[64];
            eg_ctx *cancels[64];
            int nvals = 0, ncancels = 0, ntimers = 0, n = 0;
            eg_ctx *ctx = eg_background();
            int valkey[64];
            for (int i = 0;
                 n < 60 && (i < 30 || ntimers == 0 || ncancels == 0 || nvals == 0); i++) {
                seed = seed * 1103515245u + 12345u;
                switch ((seed >> 16) % 3) {
                case 0:
                    ctx = eg_with_value(ctx, &keys[nvals], &keys[nvals]);
                    valkey[nvals] = nvals;
                    nvals++;
                    break;
                case 1:
                    ctx = eg_with_cancel(ctx);
                    cancels[ncancels++] = ctx;
                    break;
                default:
                    ctx = eg_with_timeout(ctx, timeout ? MS(1) : LONG_NS);
                    cancels[ncancels++] = ctx;
                    ntimers++;
                    break;
                }
                assert_non_null(ctx);
                layer[n++] = ctx;
            }
            for (int i = 0; i < nvals; i++)
                assert_ptr_equal(eg_ctx_value(ctx, &keys[valkey[i]]), &keys[valkey[i]]);
            if (!timeout) {
                assert_live_ctx(ctx);
                seed = seed * 1103515245u + 12345u;
                eg_ctx *victim = cancels[(seed >> 16) % (unsigned)ncancels];
                eg_cancel(victim, -EIO);
                assert_done_ctx(ctx, -ECANCELED, -EIO);
            } else {
                assert_int_equal(eg_ctx_wait(ctx), -ETIMEDOUT);
            }
            for (int i = 0; i < nvals; i++)
                assert_ptr_equal(eg_ctx_value(ctx, &keys[valkey[i]]), &keys[valkey[i]]);
            for (int i = 0; i < n; i++)
                eg_ctx_release(layer[i]);
        }
    }
    assert_int_equal(wait_live(live), live);
}

/* ---- values ---------------------------------------------------------------- */

static void check_values(eg_ctx *c, const char *v1, const char *v2, const char *v3)
{
    const char *g1 = eg_ctx_value(c, &k1);
    const char *g2 = eg_ctx_value(c, &k2);
    const char *g3 = eg_ctx_value(c, &k3);
    if (v1)
        assert_string_equal(g1, v1);
    else
        assert_null(g1);
    if (v2)
        assert_string_equal(g2, v2);
    else
        assert_null(g2);
    if (v3)
        assert_string_equal(g3, v3);
    else
        assert_null(g3);
}

/* Go: TestValues. */
static void test_values(void **state)
{
    long live = eg_live_objects();
    eg_ctx *c0 = eg_background();
    check_values(c0, NULL, NULL, NULL);
    eg_ctx *c1 = eg_with_value(NULL, &k1, (void *)"c1k1");
    check_values(c1, "c1k1", NULL, NULL);
    eg_ctx *c2 = eg_with_value(c1, &k2, (void *)"c2k2");
    check_values(c2, "c1k1", "c2k2", NULL);
    eg_ctx *c3 = eg_with_value(c2, &k3, (void *)"c3k3");
    check_values(c3, "c1k1", "c2k2", "c3k3");
    eg_ctx *c4 = eg_with_value(c3, &k1, NULL); /* shadows with NULL */
    check_values(c4, NULL, "c2k2", "c3k3");
    check_values(c3, "c1k1", "c2k2", "c3k3");

    /* Through cancel and deadline layers. */
    eg_ctx *o1 = eg_with_cancel(c1);
    check_values(o1, "c1k1", NULL, NULL);
    eg_ctx *o2 = eg_with_value(o1, &k2, (void *)"o2k2");
    check_values(o2, "c1k1", "o2k2", NULL);
    eg_ctx *o3 = eg_with_timeout(c4, LONG_NS);
    check_values(o3, NULL, "c2k2", "c3k3");
    eg_ctx *o4 = eg_with_value(o3, &k3, NULL);
    check_values(o4, NULL, "c2k2", NULL);
    /* Shadowing with a different value. */
    eg_ctx *o5 = eg_with_value(o4, &k2, (void *)"o5k2");
    check_values(o5, NULL, "o5k2", NULL);
    check_values(o4, NULL, "c2k2", NULL);

    /* Values survive cancellation. */
    eg_cancel(o1, -EIO);
    check_values(o2, "c1k1", "o2k2", NULL);
    /* An unknown key: NULL. */
    static const int other = 1;
    assert_null(eg_ctx_value(o5, &other));

    eg_ctx *all[] = {c1, c2, c3, c4, o1, o2, o3, o4, o5};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        eg_ctx_release(all[i]);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- WithoutCancel ----------------------------------------------------------- */

static void test_without_cancel(void **state)
{
    long live = eg_live_objects();
    eg_ctx *v = eg_with_value(NULL, &k1, (void *)"one");
    eg_ctx *p = eg_with_timeout(v, LONG_NS);
    eg_ctx *pv = eg_with_value(p, &k2, (void *)"two");
    eg_ctx *wc = eg_without_cancel(pv);
    assert_non_null(wc);
    check_values(wc, "one", "two", NULL);
    assert_false(eg_ctx_deadline(wc, NULL));
    assert_live_ctx(wc);

    eg_ctx *wc_child = eg_with_cancel(wc);
    eg_ctx *wc_value = eg_with_value(wc, &k3, (void *)"three");
    check_values(wc_value, "one", "two", "three");

    eg_cancel(p, -EIO);
    assert_done_ctx(pv, -ECANCELED, -EIO);
    assert_live_ctx(wc);
    assert_live_ctx(wc_child);
    assert_live_ctx(wc_value);
    check_values(wc, "one", "two", NULL);

    /* Cannot be cancelled itself. */
    eg_cancel(wc, -EPIPE);
    assert_live_ctx(wc);
    assert_live_ctx(wc_child);
    /* Never done: fd is -EINVAL and waits time out. */
    assert_int_equal(eg_ctx_fd(wc), -EINVAL);
    assert_int_equal(eg_ctx_wait_until(wc, eg_now() + MS(10)), 0);

    /* A child of a without-cancel of a cancelled parent is live, and a
     * deadline under it is its own. */
    eg_ctx *late = eg_with_cancel(wc);
    assert_live_ctx(late);
    eg_ctx *late_t = eg_with_timeout(wc, LONG_NS);
    assert_live_ctx(late_t);
    int64_t got = 0;
    assert_true(eg_ctx_deadline(late_t, &got));

    /* WithoutCancel of an already-cancelled parent is live. */
    eg_ctx *wc2 = eg_without_cancel(p);
    assert_live_ctx(wc2);
    assert_false(eg_ctx_deadline(wc2, NULL));
    check_values(wc2, "one", NULL, NULL);

    /* Its cancellable children still cancel normally. */
    eg_cancel(wc_child, -EPIPE);
    assert_done_ctx(wc_child, -ECANCELED, -EPIPE);
    assert_live_ctx(wc);

    eg_ctx *all[] = {v, p, pv, wc, wc_child, wc_value, late, late_t, wc2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        eg_ctx_release(all[i]);
    assert_int_equal(wait_live(live), live);
}

/* ---- misuse and non-cancellable contexts ------------------------------------- */

static void test_misuse(void **state)
{
    long live = eg_live_objects();
    eg_cancel(NULL, -EIO);
    eg_cancel(NULL, 0);
    assert_int_equal(eg_ctx_err(NULL), -EINVAL);
    assert_int_equal(eg_ctx_cause(NULL), -EINVAL);
    assert_null(eg_ctx_retain(NULL));
    eg_ctx_release(NULL);
    assert_int_equal(eg_ctx_fd(NULL), -EINVAL);
    assert_false(eg_after_stop(NULL));

    /* eg_cancel on a value context does nothing, to it or its parent. */
    eg_ctx *c = eg_with_cancel(NULL);
    eg_ctx *v = eg_with_value(c, &k1, NULL);
    eg_ctx *vc = eg_with_cancel(v);
    eg_cancel(v, -EIO);
    assert_live_ctx(v);
    assert_live_ctx(c);
    assert_live_ctx(vc);
    /* A value ctx on background. */
    eg_ctx *bv = eg_with_value(NULL, &k1, NULL);
    eg_cancel(bv, -EIO);
    assert_live_ctx(bv);
    assert_false(eg_ctx_deadline(bv, NULL));
    assert_int_equal(eg_ctx_fd(bv), -EINVAL);

    /* After-func with NULL arguments. */
    static int dummy;
    assert_null(eg_after_func(NULL, (void (*)(void *))abort, &dummy));
    assert_null(eg_after_func(c, NULL, &dummy));

    /* Retain/release counting. */
    assert_ptr_equal(eg_ctx_retain(c), c);
    assert_ptr_equal(eg_ctx_retain(c), c);
    eg_ctx_release(c);
    eg_ctx_release(c);
    assert_live_ctx(c);

    eg_ctx_release(bv);
    eg_ctx_release(vc);
    eg_ctx_release(v);
    eg_ctx_release(c);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- ownership and leaks ------------------------------------------------------- */

static void test_release_no_leak(void **state)
{
    long live = eg_live_objects();
    eg_ctx *parent = eg_with_cancel(NULL);
    long with_parent = eg_live_objects();
    assert_true(with_parent > live);
    for (int i = 0; i < 1000; i++) {
        eg_ctx *c = eg_with_cancel(parent);
        eg_ctx *t = eg_with_timeout(parent, LONG_NS);
        eg_ctx *v = eg_with_value(c, &k1, NULL);
        eg_ctx *w = eg_without_cancel(t);
        assert_non_null(c);
        assert_non_null(t);
        assert_non_null(v);
        assert_non_null(w);
        eg_ctx_release(w);
        eg_ctx_release(v);
        eg_ctx_release(t);
        eg_ctx_release(c);
    }
    assert_int_equal(eg_live_objects(), with_parent);
    assert_live_ctx(parent);
    eg_cancel(parent, -EIO);
    eg_ctx_release(parent);
    assert_int_equal(eg_live_objects(), live);
}

static void test_release_parent_first(void **state)
{
    long live = eg_live_objects();

    /* The parent's deadline still reaches a child after the parent's handle
     * was dropped. */
    eg_ctx *p = eg_with_timeout_cause(NULL, MS(20), -EIO);
    eg_ctx *c = eg_with_cancel(p);
    eg_ctx_release(p);
    assert_int_equal(eg_ctx_wait(c), -ETIMEDOUT);
    assert_done_ctx(c, -ETIMEDOUT, -EIO);
    eg_ctx_release(c);
    assert_int_equal(wait_live(live), live);

    /* Values and cancellation through released ancestors. */
    eg_ctx *root = eg_with_cancel(NULL);
    eg_ctx *a = eg_with_value(root, &k1, (void *)"a");
    eg_ctx *b = eg_with_cancel(a);
    eg_ctx *d = eg_with_value(b, &k2, (void *)"d");
    eg_ctx *e = eg_with_cancel(d);
    eg_ctx_release(a);
    eg_ctx_release(b);
    eg_ctx_release(d);
    check_values(e, "a", "d", NULL);
    assert_live_ctx(e);
    eg_cancel(root, -EPIPE);
    assert_done_ctx(e, -ECANCELED, -EPIPE);
    eg_ctx_release(root);
    check_values(e, "a", "d", NULL);
    eg_ctx_release(e);
    assert_int_equal(eg_live_objects(), live);

    /* Releasing a child that holds the last reference to a chain frees all. */
    root = eg_with_cancel(NULL);
    a = eg_with_cancel(root);
    b = eg_with_timeout(a, LONG_NS);
    eg_ctx_release(root);
    eg_ctx_release(a);
    assert_live_ctx(b);
    eg_ctx_release(b);
    assert_int_equal(wait_live(live), live);
}

/* ---- eg_ctx_fd ----------------------------------------------------------------- */

static void test_ctx_fd(void **state)
{
    long live = eg_live_objects();
    eg_ctx *c = eg_with_cancel(NULL);
    eg_ctx *v = eg_with_value(c, &k1, NULL);
    eg_ctx *child = eg_with_cancel(c);
    int fd = eg_ctx_fd(c);
    assert_true(fd >= 0);
    assert_int_equal(eg_ctx_fd(c), fd);
    int vfd = eg_ctx_fd(v);
    assert_true(vfd >= 0);
    int cfd = eg_ctx_fd(child);
    assert_true(cfd >= 0);
    assert_false(fd_readable(fd, 0));
    assert_false(fd_readable(vfd, 0));
    assert_false(fd_readable(cfd, 0));
    sleep_ms(10);
    assert_false(fd_readable(fd, 0));

    eg_cancel(c, -EIO);
    assert_true(fd_readable(fd, 0));
    assert_true(fd_readable(vfd, 0));
    assert_true(fd_readable(cfd, 0)); /* cancelled through its parent */
    /* Stays readable: level-triggered, nobody reads it. */
    assert_true(fd_readable(fd, 0));
    assert_true(fd_readable(fd, 0));

    /* A context already done when the fd is made. */
    eg_ctx *late = eg_with_cancel(c);
    int lfd = eg_ctx_fd(late);
    assert_true(lfd >= 0);
    assert_true(fd_readable(lfd, 0));

    eg_ctx_release(late);
    eg_ctx_release(child);
    eg_ctx_release(v);
    eg_ctx_release(c);
    assert_int_equal(eg_live_objects(), live);
    /* Closed when its context was freed. */
    errno = 0;
    assert_int_equal(fcntl(fd, F_GETFD), -1);
    assert_int_equal(errno, EBADF);

    /* A deadline makes it readable; poll blocks until then. */
    c = eg_with_timeout(NULL, MS(20));
    fd = eg_ctx_fd(c);
    assert_true(fd >= 0);
    assert_false(fd_readable(fd, 0));
    assert_true(fd_readable(fd, 30000));
    assert_int_equal(eg_ctx_err(c), -ETIMEDOUT);
    eg_ctx_release(c);

    /* Cancelled from another thread while poll blocks. */
    c = eg_with_cancel(NULL);
    fd = eg_ctx_fd(c);
    assert_true(fd >= 0);
    assert_false(fd_readable(fd, 0));
    canceller cl;
    cancel_later_cause(&cl, c, 20, -EIO);
    assert_true(fd_readable(fd, 30000));
    canceller_join(&cl);
    assert_done_ctx(c, -ECANCELED, -EIO);
    eg_ctx_release(c);
    assert_int_equal(wait_live(live), live);
}

typedef struct waiter_arg {
    eg_ctx *ctx;
    atomic_int returned;
    int result;
    int64_t until; /* 0: eg_ctx_wait */
} waiter_arg;

static void *waiter_main(void *p)
{
    waiter_arg *w = p;
    w->result = w->until ? eg_ctx_wait_until(w->ctx, w->until) : eg_ctx_wait(w->ctx);
    atomic_store(&w->returned, 1);
    return NULL;
}

static void test_ctx_wait(void **state)
{
    long live = eg_live_objects();
    eg_ctx *p = eg_with_cancel(NULL);
    eg_ctx *c = eg_with_cancel(p);
    waiter_arg w1 = {.ctx = c}, w2 = {.ctx = p}, w3 = {.ctx = c};
    w3.until = eg_now() + LONG_NS;
    atomic_init(&w1.returned, 0);
    atomic_init(&w2.returned, 0);
    atomic_init(&w3.returned, 0);
    pthread_t t1, t2, t3;
    assert_int_equal(pthread_create(&t1, NULL, waiter_main, &w1), 0);
    assert_int_equal(pthread_create(&t2, NULL, waiter_main, &w2), 0);
    assert_int_equal(pthread_create(&t3, NULL, waiter_main, &w3), 0);
    sleep_ms(30);
    assert_false(atomic_load(&w1.returned));
    assert_false(atomic_load(&w2.returned));
    assert_false(atomic_load(&w3.returned));

    eg_cancel(c, -EIO); /* wakes the child's waiters only */
    pthread_join(t1, NULL);
    pthread_join(t3, NULL);
    assert_int_equal(w1.result, -ECANCELED);
    assert_int_equal(w3.result, -ECANCELED);
    sleep_ms(10);
    assert_false(atomic_load(&w2.returned));
    eg_cancel(p, 0);
    pthread_join(t2, NULL);
    assert_int_equal(w2.result, -ECANCELED);

    /* Already done: returns at once with the error. */
    assert_int_equal(eg_ctx_wait(c), -ECANCELED);
    assert_int_equal(eg_ctx_wait_until(c, 0), -ECANCELED);
    eg_ctx_release(c);
    eg_ctx_release(p);

    /* wait_until on a live context: 0 at the deadline, not before. */
    c = eg_with_cancel(NULL);
    int64_t until = eg_now() + MS(20);
    assert_int_equal(eg_ctx_wait_until(c, until), 0);
    assert_true(eg_now() >= until);
    assert_int_equal(eg_ctx_wait_until(c, eg_now() - MS(1)), 0);
    assert_live_ctx(c);
    eg_ctx_release(c);

    /* Deadline: -ETIMEDOUT, not before it. */
    int64_t d = eg_now() + MS(15);
    c = eg_with_deadline(NULL, d);
    eg_ctx *v = eg_with_value(c, &k1, NULL);
    assert_int_equal(eg_ctx_wait(v), -ETIMEDOUT);
    assert_true(eg_now() >= d);
    eg_ctx_release(v);
    eg_ctx_release(c);

    /* wait_until: the context's deadline first. */
    c = eg_with_timeout(NULL, MS(5));
    assert_int_equal(eg_ctx_wait_until(c, eg_now() + LONG_NS), -ETIMEDOUT);
    eg_ctx_release(c);
    assert_int_equal(wait_live(live), live);
}

/* ---- AfterFunc ---------------------------------------------------------------------- */

typedef struct af_arg {
    atomic_int ran;
    pthread_t thread;
    eg_ctx *ctx;
    int err_seen;
    gate *release; /* if set, fn waits for one post on it first */
    bool release_ok;
    gate *done;
} af_arg;

static void af_fn(void *p)
{
    af_arg *a = p;
    a->thread = pthread_self();
    if (a->ctx)
        a->err_seen = eg_ctx_err(a->ctx);
    if (a->release)
        a->release_ok = gate_wait(a->release, 1, GATE_WAIT_NS);
    atomic_fetch_add(&a->ran, 1);
    if (a->done)
        gate_post(a->done);
}

/* Go: TestAfterFuncCalledAfterCancel / CalledAsynchronously. */
static void test_after_func_after_cancel(void **state)
{
    long live = eg_live_objects();
    gate done, release;
    gate_init(&done);
    gate_init(&release);
    eg_ctx *c = eg_with_cancel(NULL);
    af_arg a = {.ctx = c, .release = &release, .done = &done};
    atomic_init(&a.ran, 0);
    eg_after *h = eg_after_func(c, af_fn, &a);
    assert_non_null(h);
    sleep_ms(20);
    assert_int_equal(atomic_load(&a.ran), 0);

    /* fn blocks until released, so if eg_cancel ran it inline, eg_cancel
     * would not return until the gate timed out. */
    eg_cancel(c, -EIO);
    gate_post(&release);
    assert_true(gate_wait(&done, 1, GATE_WAIT_NS));
    assert_true(a.release_ok); /* released after eg_cancel returned */
    assert_int_equal(atomic_load(&a.ran), 1);
    assert_false(pthread_equal(a.thread, pthread_self()));
    assert_int_equal(a.err_seen, -ECANCELED); /* ran after the cancel */
    assert_false(eg_after_stop(h));
    sleep_ms(10);
    assert_int_equal(atomic_load(&a.ran), 1);
    eg_ctx_release(c);
    assert_int_equal(wait_live(live), live);
    gate_destroy(&done);
    gate_destroy(&release);
}

/* Cancelled through the parent, and through a deadline. */
static void test_after_func_via_parent(void **state)
{
    long live = eg_live_objects();
    gate done;
    gate_init(&done);
    eg_ctx *p = eg_with_cancel(NULL);
    eg_ctx *c = eg_with_value(p, &k1, NULL);
    eg_ctx *t = eg_with_timeout(NULL, MS(10));
    af_arg a = {.ctx = c, .done = &done};
    af_arg b = {.ctx = t, .done = &done};
    atomic_init(&a.ran, 0);
    atomic_init(&b.ran, 0);
    eg_after *ha = eg_after_func(c, af_fn, &a);
    eg_after *hb = eg_after_func(t, af_fn, &b);
    assert_non_null(ha);
    assert_non_null(hb);
    eg_cancel(p, 0);
    assert_true(gate_wait(&done, 2, GATE_WAIT_NS));
    assert_int_equal(a.err_seen, -ECANCELED);
    assert_int_equal(b.err_seen, -ETIMEDOUT);
    assert_false(eg_after_stop(ha));
    assert_false(eg_after_stop(hb));
    eg_ctx_release(t);
    eg_ctx_release(c);
    eg_ctx_release(p);
    assert_int_equal(wait_live(live), live);
    gate_destroy(&done);
}

/* Go: TestAfterFuncCalledImmediately. */
static void test_after_func_immediately(void **state)
{
    long live = eg_live_objects();
    gate done;
    gate_init(&done);
    eg_ctx *c = eg_with_cancel(NULL);
    eg_cancel(c, -EIO);
    af_arg a = {.ctx = c, .done = &done};
    atomic_init(&a.ran, 0);
    eg_after *h = eg_after_func(c, af_fn, &a);
    assert_non_null(h);
    assert_true(gate_wait(&done, 1, GATE_WAIT_NS));
    assert_int_equal(atomic_load(&a.ran), 1);
    assert_false(pthread_equal(a.thread, pthread_self()));
    assert_false(eg_after_stop(h));
    eg_ctx_release(c);
    assert_int_equal(wait_live(live), live);
    gate_destroy(&done);
}

/* Go: TestAfterFuncNotCalledAfterStop. */
static void test_after_func_stop(void **state)
{
    long live = eg_live_objects();
    eg_ctx *c = eg_with_cancel(NULL);
    af_arg a = {.ctx = NULL};
    atomic_init(&a.ran, 0);
    eg_after *h = eg_after_func(c, af_fn, &a);
    assert_non_null(h);
    assert_true(eg_after_stop(h));
    eg_cancel(c, -EIO);
    sleep_ms(30);
    assert_int_equal(atomic_load(&a.ran), 0);
    eg_ctx_release(c);

    /* On contexts that can never be done: stop prevents the (never) call. */
    eg_ctx *wc = eg_without_cancel(eg_background());
    eg_after *h1 = eg_after_func(eg_background(), af_fn, &a);
    eg_after *h2 = eg_after_func(wc, af_fn, &a);
    assert_non_null(h1);
    assert_non_null(h2);
    assert_true(eg_after_stop(h1));
    assert_true(eg_after_stop(h2));
    eg_ctx_release(wc);
    sleep_ms(10);
    assert_int_equal(atomic_load(&a.ran), 0);
    assert_int_equal(wait_live(live), live);
}

/* The handle keeps its context alive after the caller's release. */
static void test_after_func_keeps_ctx(void **state)
{
    long live = eg_live_objects();
    gate done;
    gate_init(&done);
    eg_ctx *p = eg_with_cancel(NULL);
    eg_ctx *c = eg_with_cancel(p);
    af_arg a = {.ctx = c, .done = &done};
    atomic_init(&a.ran, 0);
    eg_after *h = eg_after_func(c, af_fn, &a);
    assert_non_null(h);
    eg_ctx_release(c);
    eg_cancel(p, -EIO);
    assert_true(gate_wait(&done, 1, GATE_WAIT_NS));
    assert_int_equal(a.err_seen, -ECANCELED);
    assert_false(eg_after_stop(h));
    eg_ctx_release(p);
    assert_int_equal(wait_live(live), live);

    /* Stopped without ever being done: frees everything too. */
    c = eg_with_cancel(NULL);
    h = eg_after_func(c, af_fn, &a);
    eg_ctx_release(c);
    assert_true(eg_after_stop(h));
    assert_int_equal(wait_live(live), live);
    assert_int_equal(atomic_load(&a.ran), 1);
    gate_destroy(&done);
}

/* Many callbacks on one context: each runs exactly once. */
static void test_after_func_many(void **state)
{
    long live = eg_live_objects();
    enum { N = 200 };
    static af_arg args[N];
    static eg_after *hs[N];
    gate done;
    gate_init(&done);
    eg_ctx *c = eg_with_cancel(NULL);
    for (int i = 0; i < N; i++) {
        args[i] = (af_arg){.ctx = NULL, .done = &done};
        atomic_init(&args[i].ran, 0);
        hs[i] = eg_after_func(c, af_fn, &args[i]);
        assert_non_null(hs[i]);
    }
    /* Stop every fourth one first. */
    for (int i = 0; i < N; i += 4)
        assert_true(eg_after_stop(hs[i]));
    eg_cancel(c, 0);
    assert_true(gate_wait(&done, N - N / 4, GATE_WAIT_NS));
    sleep_ms(20);
    for (int i = 0; i < N; i++) {
        assert_int_equal(atomic_load(&args[i].ran), i % 4 == 0 ? 0 : 1);
        if (i % 4)
            assert_false(eg_after_stop(hs[i]));
    }
    assert_int_equal(gate_count(&done), N - N / 4);
    eg_ctx_release(c);
    assert_int_equal(wait_live(live), live);
    gate_destroy(&done);
}

typedef struct race_arg {
    eg_ctx *ctx;
    atomic_int *go;
} race_arg;

static void *race_cancel(void *p)
{
    race_arg *r = p;
    while (!atomic_load(r->go))
        sched_yield(); /* a start gate; valgrind runs one thread at a time */
    eg_cancel(r->ctx, -EIO);
    return NULL;
}

/* stop racing cancel: exactly one of "stop returned true" and "fn ran". */
static void test_after_func_race(void **state)
{
    long live = eg_live_objects();
    enum { N = 1000 };
    static af_arg args[N];
    static bool stopped[N];
    gate done;
    gate_init(&done);
    int nran_expected = 0;
    for (int i = 0; i < N; i++) {
        eg_ctx *c = eg_with_cancel(NULL);
        args[i] = (af_arg){.ctx = NULL, .done = &done};
        atomic_init(&args[i].ran, 0);
        eg_after *h = eg_after_func(c, af_fn, &args[i]);
        assert_non_null(h);
        atomic_int go = 0;
        race_arg r = {c, &go};
        pthread_t th;
        assert_int_equal(pthread_create(&th, NULL, race_cancel, &r), 0);
        atomic_store(&go, 1);
        if (i % 2)
            sched_yield();
        stopped[i] = eg_after_stop(h);
        pthread_join(th, NULL);
        if (!stopped[i])
            nran_expected++;
        eg_ctx_release(c);
    }
    /* Every fn not stopped has started or will; wait for all of them. */
    assert_true(gate_wait(&done, nran_expected, GATE_WAIT_NS));
    sleep_ms(50); /* give a wrongly scheduled fn time to show up */
    int stops = 0;
    for (int i = 0; i < N; i++) {
        int ran = atomic_load(&args[i].ran);
        assert_true(stopped[i] != (ran == 1));
        assert_true(ran <= 1);
        stops += stopped[i];
    }
    assert_int_equal(gate_count(&done), nran_expected);
    print_message("after-func race: %d stopped, %d ran\n", stops, N - stops);
    assert_int_equal(wait_live(live), live);
    gate_destroy(&done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_background),
        EG_TEST(test_with_cancel),
        EG_TEST(test_parent_finishes_child),
        EG_TEST(test_child_finishes_first),
        EG_TEST(test_cancel_tree),
        EG_TEST(test_simultaneous_cancels),
        EG_TEST(test_interlocked_cancels),
        EG_TEST(test_cancel_first_wins),
        EG_TEST(test_cause_deadlines),
        EG_TEST(test_deadlines),
        EG_TEST(test_layers),
        EG_TEST(test_values),
        EG_TEST(test_without_cancel),
        EG_TEST(test_misuse),
        EG_TEST(test_release_no_leak),
        EG_TEST(test_release_parent_first),
        EG_TEST(test_ctx_fd),
        EG_TEST(test_ctx_wait),
        EG_TEST(test_after_func_after_cancel),
        EG_TEST(test_after_func_via_parent),
        EG_TEST(test_after_func_immediately),
        EG_TEST(test_after_func_stop),
        EG_TEST(test_after_func_keeps_ctx),
        EG_TEST(test_after_func_many),
        EG_TEST(test_after_func_race),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
