/*
 * test_regress.c - named regression tests for bug classes known from
 * similar libraries (Go's errgroup, libdill, stdexec, TileDB), and misuse
 * that must return an error rather than crash or hang.
 *
 * Most are loops over a race: they pass or fail on behaviour in a plain
 * build, and are meant to be run under ASan and TSan too, where a
 * use-after-free or a data race in the window fails the run.
 */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>

/* Under valgrind (about 50 times slower) the race loops run fewer rounds
 * (RUNNING_ON_VALGRIND: testutil.h). */

/* ---- helpers ------------------------------------------------------------ */

/* A tiny xorshift for jitter in the race loops. */
static unsigned jitter_state = 2463534242u;
static unsigned jitter(unsigned mod)
{
    unsigned x = jitter_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    jitter_state = x;
    return x % mod;
}

static void spin(unsigned n)
{
    for (volatile unsigned i = 0; i < n; i = i + 1) {
    }
}

/* A thread that cancels a context after a spin of its own. */
typedef struct cancel_job {
    pthread_t tid;
    eg_ctx *ctx;
    int cause;
    unsigned delay;
} cancel_job;

static void *cancel_main(void *arg)
{
    cancel_job *j = arg;
    spin(j->delay);
    eg_cancel(j->ctx, j->cause);
    return NULL;
}

static void cancel_async(cancel_job *j, eg_ctx *ctx, int cause, unsigned delay)
{
    j->ctx = ctx;
    j->cause = cause;
    j->delay = delay;
    assert_int_equal(pthread_create(&j->tid, NULL, cancel_main, j), 0);
}

/* ---- libdill #215, stdexec #1718: cancel racing wait and free ---------- */

/* A parent cancelled from another thread while eg_wait and eg_group_free
 * run: the group's context is being released as the cancel walks the
 * tree. */
static void regress_cancel_racing_wait_and_free(void **state)
{
    (void)state;
    long base = eg_live_objects();
    for (int it = 0; it < 400; it++) {
        eg_ctx *parent = eg_with_cancel(NULL);
        assert_non_null(parent);
        eg_group *g = eg_group_new(parent);
        assert_non_null(g);
        atomic_int ran = 0;
        int n = 1 + (int)jitter(8);
        for (int i = 0; i < n; i++)
            assert_int_equal(eg_go(g, wait_ctx_task, &ran), 0);
        cancel_job j;
        cancel_async(&j, parent, -EPIPE, jitter(20000));
        int err = eg_wait(g);
        eg_group_free(g);
        pthread_join(j.tid, NULL);
        /* Every task returned the context's error once the parent was
         * cancelled. */
        assert_int_equal(err, -ECANCELED);
        assert_int_equal(atomic_load(&ran), n);
        eg_ctx_release(parent);
    }
    assert_live_back_to(base);
}

/* The same race with the canceller also freeing the group: the cancel and
 * the free run on different threads with no order between them. */
typedef struct free_job {
    pthread_t tid;
    eg_group *g;
    unsigned delay;
} free_job;

static void *free_main(void *arg)
{
    free_job *j = arg;
    spin(j->delay);
    eg_group_free(j->g);
    return NULL;
}

static void regress_cancel_racing_free_on_other_thread(void **state)
{
    (void)state;
    long base = eg_live_objects();
    for (int it = 0; it < 400; it++) {
        eg_ctx *parent = eg_with_cancel(NULL);
        eg_group *g = eg_group_new(parent);
        atomic_int ran = 0;
        for (int i = 0; i < 3; i++)
            assert_int_equal(eg_go(g, count_task, &ran), 0);
        free_job f = {.g = g, .delay = jitter(5000)};
        assert_int_equal(pthread_create(&f.tid, NULL, free_main, &f), 0);
        spin(jitter(5000));
        eg_cancel(parent, 0);
        pthread_join(f.tid, NULL);
        assert_int_equal(atomic_load(&ran), 3);
        eg_ctx_release(parent);
    }
    assert_live_back_to(base);
}

/* ---- TileDB #1191: tasks of a cancelled group still run and are counted */

static void regress_cancelled_before_go_still_runs(void **state)
{
    (void)state;
    long base = eg_live_objects();
    eg_ctx *parent = eg_with_cancel(NULL);
    eg_cancel(parent, -ENOLINK);
    eg_group *g = eg_group_new(parent);
    assert_non_null(g);
    assert_int_equal(eg_ctx_err(eg_group_ctx(g)), -ECANCELED);
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -ENOLINK);
    assert_int_equal(eg_set_limit(g, 2), 0);

    atomic_int ran = 0;
    for (int i = 0; i < 20; i++)
        assert_int_equal(eg_go(g, wait_ctx_task, &ran), 0);
    /* Each task returns the context's error: the first is the result. */
    assert_int_equal(eg_wait(g), -ECANCELED);
    assert_int_equal(atomic_load(&ran), 20);
    /* The parent's cause stays: the group was cancelled through it. */
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -ENOLINK);
    eg_group_free(g);
    eg_ctx_release(parent);
    assert_live_back_to(base);
}

/* ---- WaitGroup: done/add below zero ----------------------------------- */

static void wg_done_fn(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void regress_wg_below_zero_is_rejected(void **state)
{
    (void)state;
    eg_wg wg;
    assert_int_equal(eg_wg_init(&wg), 0);
    assert_int_equal(eg_wg_done(&wg), -EINVAL); /* 0 - 1 */
    assert_int_equal(eg_wg_add(&wg, 2), 0);
    assert_int_equal(eg_wg_add(&wg, -3), -EINVAL); /* no change */
    assert_int_equal(eg_wg_done(&wg), 0);
    assert_int_equal(eg_wg_done(&wg), 0);
    assert_int_equal(eg_wg_done(&wg), -EINVAL);
    eg_wg_wait(&wg); /* at zero: returns at once */

    /* Still usable: a counter that went "below zero" did not move. */
    atomic_int ran = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(eg_wg_go(&wg, wg_done_fn, &ran), 0);
    eg_wg_wait(&wg);
    assert_int_equal(atomic_load(&ran), 5);
    assert_int_equal(eg_wg_add(&wg, -1), -EINVAL);
    eg_wg_destroy(&wg);
}

/* ---- golang/sync #14/#15: SetLimit while tasks are active -------------- */

typedef struct hold {
    atomic_int started;
    atomic_int release;
} hold;

static int hold_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    hold *h = arg;
    atomic_fetch_add(&h->started, 1);
    while (!atomic_load(&h->release))
        nap_us(100);
    return 0;
}

static void regress_set_limit_while_active_is_busy(void **state)
{
    (void)state;
    eg_group *g = eg_group_new(NULL);
    hold h = {0};
    assert_int_equal(eg_set_limit(g, -1), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(eg_go(g, hold_task, &h), 0);
    assert_true(wait_for_int(&h.started, 4));
    /* Lowering the limit under four active tasks would leave the count
     * above it forever (Go's bug): refused, and nothing changed. */
    assert_int_equal(eg_set_limit(g, 1), -EBUSY);
    assert_int_equal(eg_set_limit(g, -1), -EBUSY);
    /* No limit still: a fifth task is admitted without blocking. */
    assert_int_equal(eg_try_go(g, hold_task, &h), 0);
    atomic_store(&h.release, 1);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&h.started), 5);

    /* Idle again: the limit applies now. */
    assert_int_equal(eg_set_limit(g, 1), 0);
    atomic_store(&h.release, 0);
    assert_int_equal(eg_go(g, hold_task, &h), 0);
    assert_int_equal(eg_try_go(g, hold_task, &h), -EBUSY);
    atomic_store(&h.release, 1);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
}

/* ---- eg_after_stop racing the callback ---------------------------------- */

static void after_fn(void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void regress_after_stop_races_callback(void **state)
{
    (void)state;
    long base = eg_live_objects();
    int stopped_n = 0, ran_n = 0;
    for (int it = 0; it < 2000; it++) {
        eg_ctx *ctx = eg_with_cancel(NULL);
        atomic_int ran = 0;
        eg_after *a = eg_after_func(ctx, after_fn, &ran);
        assert_non_null(a);
        cancel_job j;
        cancel_async(&j, ctx, 0, jitter(3000));
        spin(jitter(3000));
        bool stopped = eg_after_stop(a);
        pthread_join(j.tid, NULL);
        if (stopped) {
            stopped_n++;
        } else {
            ran_n++;
            assert_true(wait_for_int(&ran, 1));
        }
        eg_ctx_release(ctx);
        /* Once every handle is gone, no callback can run any more. */
        assert_live_back_to(base);
        assert_int_equal(atomic_load(&ran), stopped ? 0 : 1);
    }
    assert_int_equal(stopped_n + ran_n, 2000);
}

/* ---- releasing the last reference racing a parent's cancel ------------ */

typedef struct release_job {
    pthread_t tid;
    eg_ctx **kids;
    int n;
} release_job;

static void *release_main(void *arg)
{
    release_job *j = arg;
    for (int i = 0; i < j->n; i++)
        eg_ctx_release(j->kids[i]);
    return NULL;
}

static void regress_release_races_parent_cancel(void **state)
{
    (void)state;
    long base = eg_live_objects();
    enum { KIDS = 16 };
    for (int it = 0; it < 500; it++) {
        eg_ctx *parent = eg_with_cancel(NULL);
        eg_ctx *kids[KIDS];
        for (int i = 0; i < KIDS; i++) {
            eg_ctx *p = (i % 4 == 3) ? kids[i - 1] : parent; /* some grandchildren */
            kids[i] =
                (i % 2) ? eg_with_timeout(p, 10 * EG_NSEC_PER_SEC) : eg_with_cancel(p);
            assert_non_null(kids[i]);
        }
        release_job r = {.kids = kids, .n = KIDS};
        cancel_job c;
        cancel_async(&c, parent, 0, jitter(4000));
        assert_int_equal(pthread_create(&r.tid, NULL, release_main, &r), 0);
        pthread_join(c.tid, NULL);
        pthread_join(r.tid, NULL);
        eg_ctx_release(parent);
        assert_int_equal(eg_live_objects(), base);
    }
}

/* Children with a deadline created while their parent is being cancelled:
 * arming a child's timer must not race the parent's cancel of it (a data
 * race that TSan reports; the window is tiny, hence many rounds and two
 * creators). */
typedef struct make_job {
    pthread_t tid;
    eg_ctx *parent;
    atomic_int *go;
    bool ok;
} make_job;

static void *make_main(void *arg)
{
    make_job *j = arg;
    j->ok = true;
    while (!atomic_load(j->go))
        sched_yield(); /* a start gate; valgrind runs one thread at a time */
    for (int i = 0; i < 12; i++) {
        eg_ctx *c = eg_with_timeout(j->parent, 10 * EG_NSEC_PER_SEC);
        if (!c) {
            j->ok = false;
            return NULL;
        }
        /* Done with the parent once it is, whenever c was linked. */
        if (eg_ctx_err(j->parent) && eg_ctx_wait(c) != -ECANCELED)
            j->ok = false;
        eg_ctx_release(c);
    }
    return NULL;
}

static void regress_deadline_child_races_parent_cancel(void **state)
{
    (void)state;
    long base = eg_live_objects();
    for (int it = 0; it < (RUNNING_ON_VALGRIND ? 400 : 4000); it++) {
        eg_ctx *parent = eg_with_cancel(NULL);
        atomic_int go = 0;
        make_job m[2];
        for (int k = 0; k < 2; k++) {
            m[k] = (make_job){.parent = parent, .go = &go};
            assert_int_equal(pthread_create(&m[k].tid, NULL, make_main, &m[k]), 0);
        }
        atomic_store(&go, 1);
        spin(jitter(1500));
        eg_cancel(parent, 0);
        for (int k = 0; k < 2; k++) {
            pthread_join(m[k].tid, NULL);
            assert_true(m[k].ok);
        }
        eg_ctx_release(parent);
        assert_int_equal(eg_live_objects(), base);
    }
}

/* ---- eg_group_free right after eg_wait while a worker unwinds ---------- */

static int quick_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    int i = (int)(intptr_t)arg;
    return i % 3 == 0 ? -EIO : 0;
}

static void regress_free_after_wait_while_worker_unwinds(void **state)
{
    (void)state;
    long base = eg_live_objects();
    for (int it = 0; it < 3000; it++) {
        eg_group *g = eg_group_new(NULL);
        int n = 1 + it % 4;
        for (int i = 0; i < n; i++)
            assert_int_equal(eg_go(g, quick_task, (void *)(intptr_t)(i + it)), 0);
        int err = eg_wait(g);
        assert_true(err == 0 || err == -EIO);
        eg_group_free(g);
    }
    /* And without eg_wait: eg_group_free alone waits. */
    for (int it = 0; it < 3000; it++) {
        eg_group *g = eg_group_new(NULL);
        assert_int_equal(eg_go(g, quick_task, (void *)(intptr_t)1), 0);
        eg_group_free(g);
    }
    assert_live_back_to(base);
}

/* ---- misuse returns errors ----------------------------------------------- */

static int nop_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

static void regress_null_arguments(void **state)
{
    (void)state;
    long base = eg_live_objects();
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(NULL, nop_task, NULL), -EINVAL);
    assert_int_equal(eg_go(g, NULL, NULL), -EINVAL);
    assert_int_equal(eg_try_go(NULL, nop_task, NULL), -EINVAL);
    assert_int_equal(eg_try_go(g, NULL, NULL), -EINVAL);
    assert_int_equal(eg_set_limit(NULL, 1), -EINVAL);
    assert_int_equal(eg_wait(NULL), -EINVAL);
    assert_int_equal(eg_group_err(NULL), -EINVAL);
    assert_null(eg_group_ctx(NULL));
    eg_group_free(NULL);

    assert_int_equal(eg_ctx_err(NULL), -EINVAL);
    assert_int_equal(eg_ctx_cause(NULL), -EINVAL);
    assert_int_equal(eg_ctx_fd(NULL), -EINVAL);
    assert_int_equal(eg_ctx_fd(eg_background()), -EINVAL);
    assert_int_equal(eg_ctx_wait(NULL), -EINVAL);
    assert_null(eg_after_func(NULL, after_fn, NULL));
    assert_null(eg_after_func(eg_group_ctx(g), NULL, NULL));
    assert_false(eg_after_stop(NULL));
    eg_cancel(NULL, 0);
    eg_ctx_release(NULL);
    assert_null(eg_ctx_retain(NULL));

    assert_int_equal(eg_wg_add(NULL, 1), -EINVAL);
    assert_int_equal(eg_wg_go(NULL, after_fn, NULL), -EINVAL);
    eg_wg wg = EG_WG_INIT;
    assert_int_equal(eg_wg_go(&wg, NULL, NULL), -EINVAL);

    assert_int_equal(eg_sleep(NULL, 1), -EINVAL);
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
    assert_int_equal(eg_cond_wait(NULL, &cond, &mu), -EINVAL);
    assert_int_equal(eg_cond_wait(eg_background(), NULL, &mu), -EINVAL);

    assert_null(eg_chan_new(1, 0));
    eg_chan *ch = eg_chan_new(1, sizeof(int));
    int v = 1;
    assert_int_equal(eg_chan_send(NULL, ch, &v), -EINVAL);
    assert_int_equal(eg_chan_send(eg_background(), NULL, &v), -EINVAL);
    assert_int_equal(eg_chan_send(eg_background(), ch, NULL), -EINVAL);
    assert_int_equal(eg_chan_recv(eg_background(), NULL, &v), -EINVAL);
    assert_int_equal(eg_chan_try_send(NULL, &v), -EINVAL);
    assert_int_equal(eg_chan_try_recv(NULL, &v), -EINVAL);
    eg_chan_close(NULL);
    eg_chan_free(NULL);
    eg_chan_free(ch);

    assert_null(eg_sem_new(0));
    assert_null(eg_sem_new(-1));
    eg_sem *s = eg_sem_new(2);
    assert_int_equal(eg_sem_acquire(NULL, s, 1), -EINVAL);
    assert_int_equal(eg_sem_acquire(eg_background(), NULL, 1), -EINVAL);
    assert_int_equal(eg_sem_acquire(eg_background(), s, -1), -EINVAL);
    /* More than the total could never be granted. */
    assert_int_equal(eg_sem_acquire(eg_background(), s, 3), -EINVAL);
    assert_false(eg_sem_try_acquire(NULL, 1));
    eg_sem_free(NULL);
    eg_sem_free(s);

    /* Limit 0 admits nothing: eg_go refuses instead of blocking forever. */
    assert_int_equal(eg_set_limit(g, 0), 0);
    assert_int_equal(eg_go(g, nop_task, NULL), -EINVAL);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    assert_int_equal(eg_live_objects(), base);
}

/* A task that misuses its own group. */
typedef struct self_ref {
    eg_group *g;
    int wait_rc, limit_rc;
} self_ref;

static int misuse_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    self_ref *s = arg;
    s->wait_rc = eg_wait(s->g);
    s->limit_rc = eg_set_limit(s->g, 5);
    eg_group_free(s->g); /* refused inside its own task: a no-op */
    return 0;
}

static void regress_misuse_inside_own_task(void **state)
{
    (void)state;
    long base = eg_live_objects();
    eg_group *g = eg_group_new(NULL);
    self_ref s = {.g = g};
    assert_int_equal(eg_go(g, misuse_task, &s), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(s.wait_rc, -EDEADLK);
    assert_int_equal(s.limit_rc, -EBUSY);

    eg_group_free(g);
    assert_int_equal(eg_live_objects(), base);
}

static void regress_send_on_closed_channel(void **state)
{
    (void)state;
    long base = eg_live_objects();
    eg_chan *ch = eg_chan_new(2, sizeof(int));
    int v = 7, out = 0;
    assert_int_equal(eg_chan_send(eg_background(), ch, &v), 0);
    eg_chan_close(ch);
    eg_chan_close(ch); /* twice: harmless */
    assert_int_equal(eg_chan_send(eg_background(), ch, &v), -EPIPE);
    assert_int_equal(eg_chan_try_send(ch, &v), -EPIPE);
    /* Buffered elements drain, then -EPIPE. */
    assert_int_equal(eg_chan_recv(eg_background(), ch, &out), 0);
    assert_int_equal(out, 7);
    assert_int_equal(eg_chan_recv(eg_background(), ch, &out), -EPIPE);
    assert_int_equal(eg_chan_try_recv(ch, &out), -EPIPE);
    eg_chan_free(ch);
    assert_int_equal(eg_live_objects(), base);
}

/* A sender blocked on a full channel when it closes gets -EPIPE. */
typedef struct send_job {
    pthread_t tid;
    eg_chan *ch;
    atomic_int entered;
    int rc;
} send_job;

static void *send_main(void *arg)
{
    send_job *j = arg;
    int v = 2;
    atomic_store(&j->entered, 1);
    j->rc = eg_chan_send(eg_background(), j->ch, &v);
    return NULL;
}

static void regress_close_wakes_blocked_sender(void **state)
{
    (void)state;
    for (int it = 0; it < 200; it++) {
        eg_chan *ch = eg_chan_new((size_t)(it % 2), sizeof(int));
        int v = 1;
        if (it % 2)
            assert_int_equal(eg_chan_try_send(ch, &v), 0); /* now full */
        send_job j = {.ch = ch};
        assert_int_equal(pthread_create(&j.tid, NULL, send_main, &j), 0);
        assert_true(wait_for_int(&j.entered, 1));
        spin(jitter(20000));
        eg_chan_close(ch);
        pthread_join(j.tid, NULL);
        assert_int_equal(j.rc, -EPIPE);
        eg_chan_free(ch);
    }
}

/* ---- issue 8: reliability defects, one named test per point ------------- */

#if defined(__SANITIZE_THREAD__)
#define REGRESS_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define REGRESS_TSAN 1
#endif
#endif
#ifdef REGRESS_TSAN
/* The stall test's child of a threaded process starts threads; cancelling a
 * chain a million deep holds a million context locks (parent before child,
 * as in Go), more than ThreadSanitizer's deadlock detector tracks (64). */
__attribute__((visibility("default"))) const char *__tsan_default_options(void);
const char *__tsan_default_options(void)
{
    return "die_after_fork=0 detect_deadlocks=0";
}
#endif

/* Point 3: several library callers on one blocking fd; cancel reaches all. */
typedef struct fd_user {
    int fd;
    int kind; /* 0 read, 1 accept */
    atomic_int *entered;
} fd_user;

static int fd_user_task(eg_ctx *ctx, void *arg)
{
    fd_user *u = arg;
    atomic_fetch_add(u->entered, 1);
    for (;;) {
        char b;
        int rc =
            u->kind ? eg_accept(ctx, u->fd, NULL, NULL) : (int)eg_read(ctx, u->fd, &b, 1);
        if (rc < 0)
            return rc == -ECANCELED ? 0 : rc;
        if (u->kind)
            close(rc);
    }
}

/* n tasks on fd; wake them all with one unit of readiness (one byte or one
 * connection), then cancel: every task must return -ECANCELED. */
static void shared_fd_round(int fd, int kind, int n, void (*poke)(void *), void *poke_arg)
{
    eg_group *g = eg_group_new(NULL);
    atomic_int entered = 0;
    fd_user u = {.fd = fd, .kind = kind, .entered = &entered};
    for (int i = 0; i < n; i++)
        assert_int_equal(eg_go(g, fd_user_task, &u), 0);
    while (atomic_load(&entered) < n)
        nap_us(100);
    nap_us(2000);
    poke(poke_arg);
    nap_us(2000 + jitter(3000));
    eg_cancel(eg_group_ctx(g), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
}

static void poke_write(void *arg)
{
    assert_int_equal(write(*(int *)arg, "x", 1), 1);
}

static void poke_connect(void *arg)
{
    struct sockaddr_in *sa = arg;
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c >= 0);
    assert_int_equal(connect(c, (struct sockaddr *)sa, sizeof *sa), 0);
    close(c);
}

static void regress_shared_blocking_fd_cancel(void **state)
{
    (void)state;
    for (int round = 0; round < 10; round++) {
        int p[2];
        assert_int_equal(pipe(p), 0);
        shared_fd_round(p[0], 0, 4, poke_write, &p[1]);
        close(p[0]);
        close(p[1]);
        int sp[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
        shared_fd_round(sp[0], 0, 4, poke_write, &sp[1]);
        close(sp[0]);
        close(sp[1]);

        int l = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof sa), 0);
        assert_int_equal(listen(l, 16), 0);
        assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &sl), 0);
        shared_fd_round(l, 1, 8, poke_connect, &sa);
        close(l);
    }
}

/* Point 5: cancelling a chain a million deep uses bounded stack. */
static int chain_depth(void)
{
    return RUNNING_ON_VALGRIND ? 20000 : 1000000;
}

static eg_ctx *make_chain(eg_ctx *root, int depth)
{
    eg_ctx *c = eg_ctx_retain(root);
    for (int i = 0; i < depth; i++) {
        eg_ctx *n = eg_with_cancel(c);
        assert_non_null(n);
        eg_ctx_release(c);
        c = n;
    }
    return c; /* the leaf; it holds the chain */
}

static int cancel_root_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    eg_cancel(arg, -EPIPE);
    return 0;
}

/* The cancelling walk holds a reference to the context it is at, so the
 * chain may be freed by the walk's last release, just after the leaf is
 * seen done. */
static void wait_live(long base)
{
    for (int i = 0; i < 60000 && eg_live_objects() != base; i++)
        nap_us(1000);
    assert_int_equal(eg_live_objects(), base);
}

static void regress_cancel_deep_chain(void **state)
{
    (void)state;
    long base = eg_live_objects();
    int depth = chain_depth();
    /* From the timer thread: a deadline on the root, due after the chain
     * is built (the time a first build took, three times over). */
    int64_t t0 = eg_now();
    eg_ctx *tmp = eg_with_cancel(NULL);
    eg_ctx *leaf = make_chain(tmp, depth);
    int64_t build = eg_now() - t0;
    eg_ctx_release(tmp);
    eg_ctx_release(leaf);
    wait_live(base);
    eg_ctx *root = eg_with_timeout(NULL, 3 * build + MS(100));
    assert_non_null(root);
    leaf = make_chain(root, depth);
    if (eg_ctx_err(leaf))
        print_message("deep chain: the deadline came before the chain was complete\n");
    assert_int_equal(eg_ctx_wait(leaf), -ETIMEDOUT);
    assert_int_equal(eg_ctx_err(root), -ETIMEDOUT);
    eg_ctx_release(root);
    eg_ctx_release(leaf); /* frees the whole chain: iterative too */
    wait_live(base);

    /* From a pool task. */
    root = eg_with_cancel(NULL);
    leaf = make_chain(root, depth);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, cancel_root_task, root), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    assert_int_equal(eg_ctx_wait(leaf), -ECANCELED);
    assert_int_equal(eg_ctx_cause(leaf), -EPIPE);
    eg_ctx_release(leaf);
    eg_ctx_release(root);
    wait_live(base);
}

/* Point 5, with the order kept: a second eg_cancel racing the walk returns
 * only once every descendant is done, as with the recursive walk. */
static void *cancel_thread_main(void *arg)
{
    eg_cancel(arg, 0);
    return NULL;
}

static void regress_cancel_walk_concurrent(void **state)
{
    (void)state;
    long base = eg_live_objects();
    int depth = RUNNING_ON_VALGRIND ? 5000 : 100000;
    for (int round = 0; round < 5; round++) {
        eg_ctx *root = eg_with_cancel(NULL);
        eg_ctx *mid = make_chain(root, depth / 2);
        eg_ctx *leaf = make_chain(mid, depth / 2);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, cancel_thread_main, root), 0);
        while (!eg_ctx_done(root))
            sched_yield();
        eg_cancel(mid, 0);              /* already done, or done now: either way ... */
        assert_true(eg_ctx_done(leaf)); /* ... its whole subtree is done */
        pthread_join(t, NULL);
        eg_ctx_release(leaf);
        eg_ctx_release(mid);
        eg_ctx_release(root);
        wait_live(base);
    }
}

/* Point 6: the shared library survives dlclose while its threads idle. */
static void regress_dlclose_then_idle(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setenv("EG_IDLE_TIMEOUT_MS", "50", 1);
        char *argv[] = {(char *)EG_DLCLOSE_CHILD, (char *)EG_LIB_FILE, NULL};
        execv(EG_DLCLOSE_CHILD, argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Point 7: a delay of INT64_MAX means "never": only the first attempt runs. */
static atomic_int hedge_started;

static int hedge_attempt(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    atomic_fetch_add(&hedge_started, 1);
    nap_us(20000);
    return 0;
}

static void regress_hedge_delay_max(void **state)
{
    (void)state;
    atomic_store(&hedge_started, 0);
    int winner = -2;
    assert_int_equal(eg_hedge(NULL, hedge_attempt, NULL, 3, INT64_MAX, &winner), 0);
    assert_int_equal(winner, 0);
    assert_int_equal(atomic_load(&hedge_started), 1);
    /* Other sums with INT64_MAX saturate too. */
    eg_ctx *c = eg_with_timeout(NULL, INT64_MAX);
    assert_non_null(c);
    assert_int_equal(eg_ctx_err(c), 0);
    eg_ctx_release(c);
    assert_int_equal(eg_sleep(eg_background(), -1), 0);
}

/* Point 8: edge values. */
static void regress_edge_values(void **state)
{
    (void)state;
    assert_non_null(eg_strerror(INT_MIN));
    assert_non_null(eg_strerror(INT_MIN + 1));
    /* The trace before any task finished: nothing copied, no memcpy(NULL). */
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_group_set_trace(g, true), 0);
    eg_trace_entry buf[4];
    assert_int_equal(eg_group_trace(g, buf, 4), 0);
    eg_group_free(g);

    /* idle_timeout_ns INT64_MAX: idle threads stay, they do not exit at once. */
    eg_pool_config before;
    eg_pool_get_config(&before);
    eg_pool_config forever = {.idle_timeout_ns = INT64_MAX};
    assert_int_equal(eg_pool_configure(&forever), 0);
    g = pool_group_new();
    assert_int_equal(eg_go(g, cancel_root_task, eg_background()), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    nap_us(50000);
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    assert_true(st.threads >= 1);
    assert_int_equal(eg_pool_configure(&before), 0);

    /* Semaphore misuse is an error, not a crash. */
    eg_sem *s = eg_sem_new(4);
    assert_int_equal(eg_sem_acquire(eg_background(), s, 2), 0);
    assert_int_equal(eg_sem_release(s, 3), -EINVAL);
    assert_int_equal(eg_sem_release(s, -1), -EINVAL);
    assert_int_equal(eg_sem_release(s, 2), 0);
    assert_int_equal(eg_sem_release(s, 1), -EINVAL);
    assert_true(eg_sem_try_acquire(s, 4));
    assert_int_equal(eg_sem_release(s, 4), 0);
    eg_sem_free(s);
}

/* Point 10: every zero field of eg_pool_configure keeps its value. */
static void regress_configure_zero_keeps(void **state)
{
    (void)state;
    eg_pool_config before, now;
    eg_pool_get_config(&before);
    eg_pool_config c = {.max_threads = before.max_threads + 1};
    assert_int_equal(eg_pool_configure(&c), 0);
    eg_pool_get_config(&now);
    assert_int_equal(now.max_threads, before.max_threads + 1);
    assert_true(now.idle_timeout_ns == before.idle_timeout_ns);
    assert_int_equal(now.stack_size, before.stack_size);
    assert_int_equal(now.stall_warning, before.stall_warning);
    eg_pool_config f = {.idle_timeout_ns = EG_IDLE_FOREVER};
    assert_int_equal(eg_pool_configure(&f), 0);
    eg_pool_get_config(&now);
    assert_true(now.idle_timeout_ns == EG_IDLE_FOREVER);
    assert_int_equal(eg_pool_configure(&before), 0);
    eg_pool_get_config(&now);
    assert_int_equal(now.max_threads, before.max_threads);
    assert_true(now.idle_timeout_ns == before.idle_timeout_ns);
}

/* Point 11: negative fds give -EBADF everywhere. */
static void regress_negative_fd_ebadf(void **state)
{
    (void)state;
    eg_ctx *ctx = eg_with_cancel(NULL);
    char b;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(eg_poll(ctx, -1, POLLIN), -EBADF);
    assert_int_equal(eg_poll(ctx, -7, POLLOUT), -EBADF);
    assert_int_equal(eg_read(ctx, -1, &b, 1), -EBADF);
    assert_int_equal(eg_write(ctx, -1, &b, 1), -EBADF);
    assert_int_equal(eg_write_all(ctx, -1, &b, 1), -EBADF);
    assert_int_equal(eg_accept(ctx, -1, NULL, NULL), -EBADF);
    assert_int_equal(eg_connect(ctx, -1, (struct sockaddr *)&sa, sizeof sa), -EBADF);
    eg_ctx_release(ctx);
}

/* Also: a stall at the maximum is reported once on stderr, and in stats. */
static int block_task(eg_ctx *ctx, void *arg)
{
    (void)arg;
    eg_ctx_wait(ctx);
    return 0;
}

static int stall_child(int wfd, int warn)
{
    dup2(wfd, 2);
    eg_pool_config one = {.max_threads = 1, .stall_warning = warn};
    if (eg_pool_configure(&one) != 0)
        return 10;
    eg_group *g = pool_group_new();
    if (eg_go(g, block_task, NULL) != 0 || eg_go(g, block_task, NULL) != 0)
        return 11;
    struct timespec ts = {.tv_sec = 2, .tv_nsec = 500000000};
    nanosleep(&ts, NULL);
    eg_pool_stats st;
    eg_pool_get_stats(&st);
    if (st.queued != 1 || st.longest_wait_ns < EG_NSEC_PER_SEC)
        return 12;
    eg_cancel(eg_group_ctx(g), 0);
    if (eg_wait(g) != 0)
        return 13;
    eg_group_free(g);
    eg_pool_get_stats(&st);
    if (st.longest_wait_ns != 0)
        return 14;
    return 0;
}

/* Runs stall_child in a child process; returns what it wrote on stderr. */
static void run_stall_child(int warn, char *buf, size_t cap)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        _exit(stall_child(p[1], warn));
    }
    close(p[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(p[0], buf + n, cap - 1 - n)) != 0) {
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void regress_stall_report(void **state)
{
    (void)state;
    char buf[2048];
    run_stall_child(1, buf, sizeof buf);
    int lines = 0;
    for (size_t i = 0; buf[i]; i++)
        lines += buf[i] == '\n';
    print_message("stall report: %s", buf);
    assert_int_equal(lines, 1); /* once per stall, though it lasted 2.5 s */
    assert_non_null(strstr(buf, "all 1 pool threads busy"));
    assert_non_null(strstr(buf, "EG_MAX_THREADS"));
    /* Switched off: the same stall says nothing (stats still show it). */
    run_stall_child(-1, buf, sizeof buf);
    assert_string_equal(buf, "");
}

/* Also: 10,000 tasks blocked in eg_ctx_wait and one failing sibling return
 * with the default settings. */
static atomic_int blocked_started;

static int blocked_task(eg_ctx *ctx, void *arg)
{
    (void)arg;
    atomic_fetch_add(&blocked_started, 1);
    return eg_ctx_wait(ctx) == -ECANCELED ? 0 : -EIO;
}

typedef struct fail_after {
    int n;
} fail_after;

static int fail_when_all_started(eg_ctx *ctx, void *arg)
{
    fail_after *f = arg;
    while (atomic_load(&blocked_started) < f->n && !eg_ctx_done(ctx))
        nap_us(1000);
    return -ENOTCONN;
}

static void regress_ten_thousand_blocked(void **state)
{
    (void)state;
#ifdef REGRESS_TSAN
    int n = 2000; /* ThreadSanitizer supports about 8k live threads */
#else
    int n = RUNNING_ON_VALGRIND ? 200 : 10000;
#endif
    eg_pool_config c;
    eg_pool_get_config(&c);
    if (!getenv("EG_MAX_THREADS"))
        assert_true(c.max_threads > n); /* the default allows it */
    atomic_store(&blocked_started, 0);
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < n; i++)
        assert_int_equal(eg_go(g, blocked_task, NULL), 0);
    fail_after f = {n};
    assert_int_equal(eg_go(g, fail_when_all_started, &f), 0);
    assert_int_equal(eg_wait(g), -ENOTCONN);
    assert_int_equal(atomic_load(&blocked_started), n);
    eg_group_free(g);
}

/* An optional argument runs only the tests whose names match it (a glob). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        EG_TEST(regress_cancel_racing_wait_and_free),
        EG_TEST(regress_cancel_racing_free_on_other_thread),
        EG_TEST(regress_cancelled_before_go_still_runs),
        EG_TEST(regress_wg_below_zero_is_rejected),
        EG_TEST(regress_set_limit_while_active_is_busy),
        EG_TEST(regress_after_stop_races_callback),
        EG_TEST(regress_release_races_parent_cancel),
        EG_TEST(regress_deadline_child_races_parent_cancel),
        EG_TEST(regress_free_after_wait_while_worker_unwinds),
        EG_TEST(regress_null_arguments),
        EG_TEST(regress_misuse_inside_own_task),
        EG_TEST(regress_send_on_closed_channel),
        EG_TEST(regress_close_wakes_blocked_sender),
        EG_TEST(regress_shared_blocking_fd_cancel),
        EG_TEST(regress_cancel_deep_chain),
        EG_TEST(regress_cancel_walk_concurrent),
        EG_TEST(regress_dlclose_then_idle),
        EG_TEST(regress_hedge_delay_max),
        EG_TEST(regress_edge_values),
        EG_TEST(regress_configure_zero_keeps),
        EG_TEST(regress_negative_fd_ebadf),
        EG_TEST(regress_stall_report),
        EG_TEST(regress_ten_thousand_blocked),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
