/*
 * test_chan.c - channels: rendezvous, buffering, close, FIFO order for
 * senders and receivers, cancellation of every blocking point (by another
 * thread, by a group sibling's failure, by a deadline, and beforehand),
 * exactness of cancelled sends, a three-stage pipeline and a stress run.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a channel operation on its own thread ------------------------------ */

typedef struct op {
    pthread_t thread;
    eg_ctx *ctx;
    eg_chan *ch;
    bool send;
    int value; /* sent, or received */
    int rc;
    atomic_int finished;
    atomic_int tid;
} op;

static void *op_main(void *arg)
{
    op *o = arg;
    atomic_store(&o->tid, thread_id());
    o->rc = o->send ? eg_chan_send(o->ctx, o->ch, &o->value)
                    : eg_chan_recv(o->ctx, o->ch, &o->value);
    atomic_store(&o->finished, 1);
    return NULL;
}

static void op_start(op *o, eg_ctx *ctx, eg_chan *ch, bool send, int value)
{
    o->ctx = ctx;
    o->ch = ch;
    o->send = send;
    o->value = value;
    o->rc = 1;
    atomic_store(&o->finished, 0);
    atomic_store(&o->tid, 0);
    assert_int_equal(pthread_create(&o->thread, NULL, op_main, o), 0);
}

static int op_join(op *o)
{
    pthread_join(o->thread, NULL);
    return o->rc;
}

/* ---- basics --------------------------------------------------------------- */

static void test_new_invalid(void **state)
{
    (void)state;
    long live = eg_live_objects();
    assert_null(eg_chan_new(4, 0));
    assert_null(eg_chan_new(SIZE_MAX, 2));
    eg_chan_free(NULL);
    eg_chan_close(NULL);
    assert_int_equal(eg_chan_len(NULL), 0);
    int x = 0;
    assert_int_equal(eg_chan_send(eg_background(), NULL, &x), -EINVAL);
    assert_int_equal(eg_chan_recv(eg_background(), NULL, &x), -EINVAL);
    assert_int_equal(eg_chan_try_send(NULL, &x), -EINVAL);
    assert_int_equal(eg_chan_try_recv(NULL, &x), -EINVAL);
    eg_chan *ch = eg_chan_new(1, sizeof(int));
    assert_non_null(ch);
    assert_int_equal(eg_live_objects(), live + 1);
    assert_int_equal(eg_chan_send(NULL, ch, &x), -EINVAL);
    assert_int_equal(eg_chan_send(eg_background(), ch, NULL), -EINVAL);
    assert_int_equal(eg_chan_recv(NULL, ch, &x), -EINVAL);
    assert_int_equal(eg_chan_len(ch), 0);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

static void test_buffered_order(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_chan *ch = eg_chan_new(4, sizeof(int));
    assert_non_null(ch);
    for (int i = 1; i <= 4; i++)
        assert_int_equal(eg_chan_send(eg_background(), ch, &i), 0);
    int five = 5;
    assert_int_equal(eg_chan_try_send(ch, &five), -EAGAIN);
    assert_int_equal(eg_chan_len(ch), 4);
    /* Wrap around the ring a few times. */
    for (int round = 0; round < 10; round++) {
        int v = 0;
        assert_int_equal(eg_chan_recv(eg_background(), ch, &v), 0);
        assert_int_equal(v, round + 1);
        int next = round + 5;
        assert_int_equal(eg_chan_try_send(ch, &next), 0);
    }
    for (int i = 11; i <= 14; i++) {
        int v = 0;
        assert_int_equal(eg_chan_try_recv(ch, &v), 0);
        assert_int_equal(v, i);
    }
    int v = 0;
    assert_int_equal(eg_chan_try_recv(ch, &v), -EAGAIN);
    /* A NULL destination drops the element. */
    assert_int_equal(eg_chan_try_send(ch, &five), 0);
    assert_int_equal(eg_chan_recv(eg_background(), ch, NULL), 0);
    assert_int_equal(eg_chan_len(ch), 0);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

static void test_large_elements(void **state)
{
    (void)state;
    typedef struct big {
        char text[100];
        double d;
    } big;
    eg_chan *ch = eg_chan_new(3, sizeof(big));
    assert_non_null(ch);
    for (int i = 0; i < 3; i++) {
        big b;
        memset(&b, 0, sizeof b);
        snprintf(b.text, sizeof b.text, "element %d", i);
        b.d = i * 1.5;
        assert_int_equal(eg_chan_try_send(ch, &b), 0);
    }
    for (int i = 0; i < 3; i++) {
        big b;
        char want[100];
        snprintf(want, sizeof want, "element %d", i);
        assert_int_equal(eg_chan_try_recv(ch, &b), 0);
        assert_string_equal(b.text, want);
        assert_true(b.d == i * 1.5);
    }
    eg_chan_free(ch);
}

/* A send on an unbuffered channel returns only after a receiver took it. */
static void test_unbuffered_rendezvous(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_chan *ch = eg_chan_new(0, sizeof(int));
    assert_non_null(ch);
    int x = 7;
    assert_int_equal(eg_chan_try_send(ch, &x), -EAGAIN);
    assert_int_equal(eg_chan_try_recv(ch, &x), -EAGAIN);

    op s;
    op_start(&s, eg_background(), ch, true, 42);
    sleep_ms(50);
    assert_int_equal(atomic_load(&s.finished), 0);
    assert_int_equal(eg_chan_len(ch), 0);
    int v = 0;
    assert_int_equal(eg_chan_recv(eg_background(), ch, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(op_join(&s), 0);

    /* The other way round: a blocked receiver, then try_send succeeds. */
    op r;
    op_start(&r, eg_background(), ch, false, 0);
    int y = 99;
    while (eg_chan_try_send(ch, &y) == -EAGAIN)
        sleep_ms(1);
    assert_int_equal(op_join(&r), 0);
    assert_int_equal(r.value, 99);

    /* And try_recv takes from a blocked sender. */
    op_start(&s, eg_background(), ch, true, 5);
    v = 0;
    while (eg_chan_try_recv(ch, &v) == -EAGAIN)
        sleep_ms(1);
    assert_int_equal(v, 5);
    assert_int_equal(op_join(&s), 0);

    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

/* A full buffered channel blocks its sender until a slot frees; the blocked
 * element lands behind the buffered ones. */
static void test_buffered_full_blocks(void **state)
{
    (void)state;
    eg_chan *ch = eg_chan_new(2, sizeof(int));
    assert_non_null(ch);
    for (int i = 1; i <= 2; i++)
        assert_int_equal(eg_chan_try_send(ch, &i), 0);
    op s;
    op_start(&s, eg_background(), ch, true, 3);
    sleep_ms(50);
    assert_int_equal(atomic_load(&s.finished), 0);
    int v = 0;
    assert_int_equal(eg_chan_recv(eg_background(), ch, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(op_join(&s), 0);
    assert_int_equal(eg_chan_len(ch), 2);
    for (int want = 2; want <= 3; want++) {
        assert_int_equal(eg_chan_try_recv(ch, &v), 0);
        assert_int_equal(v, want);
    }
    eg_chan_free(ch);
}

/* ---- close ---------------------------------------------------------------- */

static void test_close_semantics(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_chan *ch = eg_chan_new(4, sizeof(int));
    assert_non_null(ch);
    for (int i = 1; i <= 2; i++)
        assert_int_equal(eg_chan_try_send(ch, &i), 0);
    eg_chan_close(ch);
    eg_chan_close(ch); /* harmless */
    int x = 3;
    assert_int_equal(eg_chan_send(eg_background(), ch, &x), -EPIPE);
    assert_int_equal(eg_chan_try_send(ch, &x), -EPIPE);
    assert_int_equal(eg_chan_len(ch), 2);
    int v = 0;
    assert_int_equal(eg_chan_recv(eg_background(), ch, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(eg_chan_try_recv(ch, &v), 0);
    assert_int_equal(v, 2);
    assert_int_equal(eg_chan_recv(eg_background(), ch, &v), -EPIPE);
    assert_int_equal(eg_chan_try_recv(ch, &v), -EPIPE);
    assert_int_equal(eg_chan_recv(eg_background(), ch, &v), -EPIPE);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

static void test_close_wakes_receivers(void **state)
{
    (void)state;
    eg_chan *ch = eg_chan_new(0, sizeof(int));
    assert_non_null(ch);
    op r[4];
    for (int i = 0; i < 4; i++)
        op_start(&r[i], eg_background(), ch, false, 0);
    sleep_ms(50);
    eg_chan_close(ch);
    for (int i = 0; i < 4; i++)
        assert_int_equal(op_join(&r[i]), -EPIPE);
    eg_chan_free(ch);
}

/* Blocked senders get -EPIPE and their elements are not delivered. */
static void test_close_fails_senders(void **state)
{
    (void)state;
    for (size_t cap = 0; cap <= 1; cap++) {
        eg_chan *ch = eg_chan_new(cap, sizeof(int));
        assert_non_null(ch);
        int first = 100;
        if (cap)
            assert_int_equal(eg_chan_try_send(ch, &first), 0);
        op s[3];
        for (int i = 0; i < 3; i++)
            op_start(&s[i], eg_background(), ch, true, i);
        sleep_ms(50);
        eg_chan_close(ch);
        for (int i = 0; i < 3; i++)
            assert_int_equal(op_join(&s[i]), -EPIPE);
        int v = 0;
        if (cap) {
            assert_int_equal(eg_chan_try_recv(ch, &v), 0);
            assert_int_equal(v, 100);
        }
        assert_int_equal(eg_chan_try_recv(ch, &v), -EPIPE);
        eg_chan_free(ch);
    }
}

/* ---- FIFO ----------------------------------------------------------------- */

#define FIFO_N 6

static void test_fifo_senders(void **state)
{
    (void)state;
    for (size_t cap = 0; cap <= 2; cap += 2) {
        eg_chan *ch = eg_chan_new(cap, sizeof(int));
        assert_non_null(ch);
        int base = -1;
        for (size_t i = 0; i < cap; i++, base--)
            assert_int_equal(eg_chan_try_send(ch, &base), 0);
        op s[FIFO_N];
        for (int i = 0; i < FIFO_N; i++) {
            op_start(&s[i], eg_background(), ch, true, i);
            wait_asleep(&s[i].tid); /* queued before the next one starts */
        }
        /* Buffered elements first (-1, -2, ...), then senders in order. */
        for (int i = 1; i <= (int)cap; i++) {
            int v = 1000;
            assert_int_equal(eg_chan_recv(eg_background(), ch, &v), 0);
            assert_int_equal(v, -i);
        }
        for (int i = 0; i < FIFO_N; i++) {
            int v = 1000;
            assert_int_equal(eg_chan_recv(eg_background(), ch, &v), 0);
            assert_int_equal(v, i);
        }
        for (int i = 0; i < FIFO_N; i++)
            assert_int_equal(op_join(&s[i]), 0);
        eg_chan_free(ch);
    }
}

static void test_fifo_receivers(void **state)
{
    (void)state;
    eg_chan *ch = eg_chan_new(2, sizeof(int));
    assert_non_null(ch);
    op r[FIFO_N];
    for (int i = 0; i < FIFO_N; i++) {
        op_start(&r[i], eg_background(), ch, false, -1);
        wait_asleep(&r[i].tid);
    }
    for (int i = 0; i < FIFO_N; i++)
        assert_int_equal(eg_chan_send(eg_background(), ch, &i), 0);
    for (int i = 0; i < FIFO_N; i++) {
        assert_int_equal(op_join(&r[i]), 0);
        assert_int_equal(r[i].value, i);
    }
    assert_int_equal(eg_chan_len(ch), 0);
    eg_chan_free(ch);
}

/* ---- cancellation --------------------------------------------------------- */

/* A send blocked on an unbuffered or full channel returns the context's
 * error when cancelled from another thread, and its element is not sent. */
static void test_send_cancelled(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (size_t cap = 0; cap <= 1; cap++) {
        eg_chan *ch = eg_chan_new(cap, sizeof(int));
        assert_non_null(ch);
        int first = 1;
        if (cap)
            assert_int_equal(eg_chan_try_send(ch, &first), 0);
        eg_ctx *ctx = eg_with_cancel(NULL);
        assert_non_null(ctx);
        canceller c;
        cancel_later(&c, ctx, 50);
        int x = 2;
        assert_int_equal(eg_chan_send(ctx, ch, &x), -ECANCELED);
        canceller_join(&c);
        int v = 0;
        if (cap) {
            assert_int_equal(eg_chan_try_recv(ch, &v), 0);
            assert_int_equal(v, 1);
        }
        assert_int_equal(eg_chan_try_recv(ch, &v), -EAGAIN);
        /* The channel still works. */
        op r;
        op_start(&r, eg_background(), ch, false, 0);
        int y = 3;
        assert_int_equal(eg_chan_send(eg_background(), ch, &y), 0);
        assert_int_equal(op_join(&r), 0);
        assert_int_equal(r.value, 3);
        eg_ctx_release(ctx);
        eg_chan_free(ch);
    }
    assert_int_equal(eg_live_objects(), live);
}

static void test_recv_cancelled(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_chan *ch = eg_chan_new(1, sizeof(int));
    assert_non_null(ch);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    canceller c;
    cancel_later(&c, ctx, 50);
    int v = -1;
    assert_int_equal(eg_chan_recv(ctx, ch, &v), -ECANCELED);
    assert_int_equal(v, -1);
    canceller_join(&c);
    /* A later element is buffered, not handed to the departed receiver. */
    int x = 8;
    assert_int_equal(eg_chan_try_send(ch, &x), 0);
    assert_int_equal(eg_chan_len(ch), 1);
    assert_int_equal(eg_chan_try_recv(ch, &v), 0);
    assert_int_equal(v, 8);
    eg_ctx_release(ctx);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

static void test_deadline(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_chan *ch = eg_chan_new(0, sizeof(int));
    assert_non_null(ch);
    int x = 1;
    eg_ctx *ctx = eg_with_timeout(NULL, MS(30));
    assert_non_null(ctx);
    assert_int_equal(eg_chan_send(ctx, ch, &x), -ETIMEDOUT);
    eg_ctx_release(ctx);
    ctx = eg_with_timeout(NULL, MS(30));
    assert_non_null(ctx);
    assert_int_equal(eg_chan_recv(ctx, ch, &x), -ETIMEDOUT);
    eg_ctx_release(ctx);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

/* A context that is already done fails the call without touching the
 * channel, even when the operation could complete at once. */
static void test_already_done(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_chan *ch = eg_chan_new(2, sizeof(int));
    assert_non_null(ch);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    eg_cancel(ctx, -EIO);
    int x = 1;
    assert_int_equal(eg_chan_send(ctx, ch, &x), -ECANCELED);
    assert_int_equal(eg_chan_len(ch), 0);
    assert_int_equal(eg_chan_try_send(ch, &x), 0);
    assert_int_equal(eg_chan_recv(ctx, ch, &x), -ECANCELED);
    assert_int_equal(eg_chan_len(ch), 1);
    /* A blocked receiver is not served by a send on a done context. */
    eg_chan *unbuf = eg_chan_new(0, sizeof(int));
    assert_non_null(unbuf);
    op r;
    op_start(&r, eg_background(), unbuf, false, 0);
    sleep_ms(30);
    assert_int_equal(eg_chan_send(ctx, unbuf, &x), -ECANCELED);
    eg_chan_close(unbuf);
    assert_int_equal(op_join(&r), -EPIPE);
    eg_ctx_release(ctx);
    eg_chan_free(unbuf);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

/* A group task blocked on the channel is cancelled by a sibling's failure. */
typedef struct sibling_case {
    eg_chan *ch;
    bool send;
    int rc;
    int cause;
} sibling_case;

static int task_blocked(eg_ctx *ctx, void *arg)
{
    sibling_case *sc = arg;
    int v = 1;
    sc->rc = sc->send ? eg_chan_send(ctx, sc->ch, &v) : eg_chan_recv(ctx, sc->ch, &v);
    sc->cause = eg_ctx_cause(ctx);
    return sc->rc;
}

static int task_fail_later(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    sleep_ms(50);
    return -EIO;
}

static void test_group_sibling_failure(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (int send = 0; send <= 1; send++) {
        eg_chan *ch = eg_chan_new(0, sizeof(int));
        assert_non_null(ch);
        eg_group *g = eg_group_new(NULL);
        assert_non_null(g);
        sibling_case sc = {.ch = ch, .send = send, .rc = 1};
        assert_int_equal(eg_go(g, task_blocked, &sc), 0);
        assert_int_equal(eg_go(g, task_fail_later, NULL), 0);
        assert_int_equal(eg_wait(g), -EIO);
        assert_int_equal(sc.rc, -ECANCELED);
        assert_int_equal(sc.cause, -EIO);
        assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -EIO);
        assert_int_equal(eg_chan_try_recv(ch, NULL), -EAGAIN);
        eg_group_free(g);
        eg_chan_free(ch);
    }
    assert_int_equal(eg_live_objects(), live);
}

/* Senders and receivers with short deadlines race on an unbuffered channel:
 * every send that returned 0 was received exactly once, and no element of a
 * failed send was. */
typedef struct exact_side {
    eg_chan *ch;
    int n;
    long ok;
    long long sum;
    unsigned seed;
    int bad; /* unexpected results; cmocka asserts only on the main thread */
} exact_side;

static int64_t jitter_ns(unsigned *seed)
{
    return (int64_t)(rand_r(seed) % 200) * EG_NSEC_PER_USEC;
}

static void *exact_sender(void *arg)
{
    exact_side *s = arg;
    for (int i = 1; i <= s->n; i++) {
        eg_ctx *ctx = eg_with_timeout(NULL, jitter_ns(&s->seed));
        if (!ctx) {
            s->bad++;
            return NULL;
        }
        int rc = eg_chan_send(ctx, s->ch, &i);
        if (rc == 0) {
            s->ok++;
            s->sum += i;
        } else if (rc != -ETIMEDOUT) {
            s->bad++;
        }
        eg_ctx_release(ctx);
    }
    return NULL;
}

static void *exact_receiver(void *arg)
{
    exact_side *s = arg;
    for (;;) {
        eg_ctx *ctx = eg_with_timeout(NULL, jitter_ns(&s->seed));
        if (!ctx) {
            s->bad++;
            return NULL;
        }
        int v = 0;
        int rc = eg_chan_recv(ctx, s->ch, &v);
        eg_ctx_release(ctx);
        if (rc == -EPIPE)
            break;
        if (rc == 0) {
            s->ok++;
            s->sum += v;
        } else if (rc != -ETIMEDOUT) {
            s->bad++;
        }
    }
    return NULL;
}

static void test_cancelled_send_is_exact(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_chan *ch = eg_chan_new(0, sizeof(int));
    assert_non_null(ch);
    exact_side snd = {.ch = ch, .n = 2000, .seed = 1};
    exact_side rcv = {.ch = ch, .seed = 2};
    pthread_t ts, tr;
    assert_int_equal(pthread_create(&ts, NULL, exact_sender, &snd), 0);
    assert_int_equal(pthread_create(&tr, NULL, exact_receiver, &rcv), 0);
    pthread_join(ts, NULL);
    eg_chan_close(ch);
    pthread_join(tr, NULL);
    assert_int_equal(snd.bad, 0);
    assert_int_equal(rcv.bad, 0);
    assert_true(snd.ok > 0);
    assert_int_equal(snd.ok, rcv.ok);
    assert_int_equal(snd.sum, rcv.sum);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- a pipeline of three stages in a group -------------------------------- */

typedef struct pipeline {
    eg_chan *nums, *squares;
    int n;
    int fail_after; /* the consumer fails after this many items; 0: never */
    long long sum;
    int rc[3];
} pipeline;

static int stage_generate(eg_ctx *ctx, void *arg)
{
    pipeline *p = arg;
    int rc = 0;
    for (int i = 1; i <= p->n && rc == 0; i++)
        rc = eg_chan_send(ctx, p->nums, &i);
    eg_chan_close(p->nums);
    p->rc[0] = rc;
    return rc;
}

static int stage_square(eg_ctx *ctx, void *arg)
{
    pipeline *p = arg;
    int rc, v;
    while ((rc = eg_chan_recv(ctx, p->nums, &v)) == 0) {
        long long sq = (long long)v * v;
        if ((rc = eg_chan_send(ctx, p->squares, &sq)) != 0)
            break;
    }
    eg_chan_close(p->squares);
    if (rc == -EPIPE)
        rc = eg_ctx_err(ctx); /* input closed: drained, or upstream gave up */
    p->rc[1] = rc;
    return rc;
}

static int stage_sum(eg_ctx *ctx, void *arg)
{
    pipeline *p = arg;
    int rc, seen = 0;
    long long sq;
    while ((rc = eg_chan_recv(ctx, p->squares, &sq)) == 0) {
        p->sum += sq;
        if (++seen == p->fail_after) {
            rc = -EIO;
            break;
        }
    }
    if (rc == -EPIPE)
        rc = 0;
    p->rc[2] = rc;
    return rc;
}

static int run_pipeline(pipeline *p)
{
    p->nums = eg_chan_new(0, sizeof(int));
    p->squares = eg_chan_new(8, sizeof(long long));
    assert_non_null(p->nums);
    assert_non_null(p->squares);
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    assert_int_equal(eg_go(g, stage_generate, p), 0);
    assert_int_equal(eg_go(g, stage_square, p), 0);
    assert_int_equal(eg_go(g, stage_sum, p), 0);
    int rc = eg_wait(g);
    eg_group_free(g);
    eg_chan_free(p->nums);
    eg_chan_free(p->squares);
    return rc;
}

static void test_pipeline(void **state)
{
    (void)state;
    long live = eg_live_objects();
    pipeline p = {.n = 1000};
    assert_int_equal(run_pipeline(&p), 0);
    long long want = 0;
    for (long long i = 1; i <= p.n; i++)
        want += i * i;
    assert_int_equal(p.sum, want);
    assert_int_equal(p.rc[0], 0);
    assert_int_equal(p.rc[1], 0);
    assert_int_equal(p.rc[2], 0);
    assert_int_equal(eg_live_objects(), live);
}

/* The last stage fails; the stages upstream, blocked on full channels, are
 * cancelled and the group reports the failure. */
static void test_pipeline_failure(void **state)
{
    (void)state;
    long live = eg_live_objects();
    pipeline p = {.n = 100000, .fail_after = 10};
    assert_int_equal(run_pipeline(&p), -EIO);
    assert_int_equal(p.rc[2], -EIO);
    assert_int_equal(p.rc[0], -ECANCELED);
    assert_int_equal(p.rc[1], -ECANCELED);
    assert_int_equal(p.sum, 1 + 4 + 9 + 16 + 25 + 36 + 49 + 64 + 81 + 100);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- many senders and receivers ------------------------------------------- */

#define STRESS_SENDERS 6
#define STRESS_RECEIVERS 6
#define STRESS_ITEMS 3000

typedef struct stress {
    eg_chan *ch;
    atomic_int senders_left;
    atomic_llong received, sum;
} stress;

typedef struct stress_sender {
    stress *st;
    int id;
} stress_sender;

static int stress_send(eg_ctx *ctx, void *arg)
{
    stress_sender *s = arg;
    for (int i = 0; i < STRESS_ITEMS; i++) {
        int item[2] = {s->id, i};
        int rc = eg_chan_send(ctx, s->st->ch, item);
        if (rc)
            return rc;
    }
    if (atomic_fetch_sub(&s->st->senders_left, 1) == 1)
        eg_chan_close(s->st->ch);
    return 0;
}

static int stress_recv(eg_ctx *ctx, void *arg)
{
    stress *st = arg;
    int last[STRESS_SENDERS];
    for (int i = 0; i < STRESS_SENDERS; i++)
        last[i] = -1;
    int item[2], rc;
    while ((rc = eg_chan_recv(ctx, st->ch, item)) == 0) {
        if (item[0] < 0 || item[0] >= STRESS_SENDERS || item[1] <= last[item[0]])
            return -EPROTO; /* one sender's elements must arrive in order */
        last[item[0]] = item[1];
        atomic_fetch_add(&st->received, 1);
        atomic_fetch_add(&st->sum, item[1]);
    }
    return rc == -EPIPE ? 0 : rc;
}

static void test_stress(void **state)
{
    (void)state;
    long live = eg_live_objects();
    size_t caps[] = {0, 1, 16};
    for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
        stress st = {.ch = eg_chan_new(caps[c], 2 * sizeof(int))};
        assert_non_null(st.ch);
        atomic_store(&st.senders_left, STRESS_SENDERS);
        eg_group *g = eg_group_new(NULL);
        assert_non_null(g);
        stress_sender ss[STRESS_SENDERS];
        for (int i = 0; i < STRESS_RECEIVERS; i++)
            assert_int_equal(eg_go(g, stress_recv, &st), 0);
        for (int i = 0; i < STRESS_SENDERS; i++) {
            ss[i] = (stress_sender){.st = &st, .id = i};
            assert_int_equal(eg_go(g, stress_send, &ss[i]), 0);
        }
        assert_int_equal(eg_wait(g), 0);
        assert_int_equal(atomic_load(&st.received),
                         (long long)STRESS_SENDERS * STRESS_ITEMS);
        assert_int_equal(atomic_load(&st.sum), (long long)STRESS_SENDERS * STRESS_ITEMS *
                                                   (STRESS_ITEMS - 1) / 2);
        assert_int_equal(eg_chan_len(st.ch), 0);
        eg_group_free(g);
        eg_chan_free(st.ch);
    }
    assert_int_equal(eg_live_objects(), live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_new_invalid),
        EG_TEST(test_buffered_order),
        EG_TEST(test_large_elements),
        EG_TEST(test_unbuffered_rendezvous),
        EG_TEST(test_buffered_full_blocks),
        EG_TEST(test_close_semantics),
        EG_TEST(test_close_wakes_receivers),
        EG_TEST(test_close_fails_senders),
        EG_TEST(test_fifo_senders),
        EG_TEST(test_fifo_receivers),
        EG_TEST(test_send_cancelled),
        EG_TEST(test_recv_cancelled),
        EG_TEST(test_deadline),
        EG_TEST(test_already_done),
        EG_TEST(test_group_sibling_failure),
        EG_TEST(test_cancelled_send_is_exact),
        EG_TEST(test_pipeline),
        EG_TEST(test_pipeline_failure),
        EG_TEST(test_stress),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
