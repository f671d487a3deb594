/*
 * test_fault.c - every allocation, thread start and fd creation of the
 * library fails in turn (a library built with -DEG_FAULT_INJECTION=ON).
 *
 * For each kind, the scenario runs with the Nth call failing, for N = 1, 2,
 * ... until a run completes without reaching the Nth call. Each run must
 * report the documented error from the public call that failed (NULL,
 * -ENOMEM, -EAGAIN, -EMFILE), never hang, crash or leak: eg_live_objects()
 * is back to its baseline after cleanup. Then, with the fault off, a plain
 * group run must work.
 *
 * Order matters: the first case makes the first deadline of the process,
 * so it is the one that starts the timer thread.
 */
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "fault.h"

/* Weak, so that this program also links against a library built without
 * the hooks; it then has nothing to test and says so. */
#pragma weak eg_fault_set
#pragma weak eg_fault_calls

#define MAX_N 2000

/* ---- helpers ------------------------------------------------------------- */

static int sleepy_task(eg_ctx *ctx, void *arg)
{
    atomic_fetch_add((atomic_int *)arg, 1);
    eg_sleep(ctx, 200 * EG_NSEC_PER_USEC);
    return 0;
}

/* With every fault off, the library works: a group with a few tasks. */
static void assert_library_works(void)
{
    for (int k = 0; k < EG_FAULT_KINDS; k++)
        eg_fault_set(k, 0);
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    atomic_int ran = 0;
    for (int i = 0; i < 8; i++)
        assert_int_equal(eg_go(g, sleepy_task, &ran), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&ran), 8);
    eg_group_free(g);
}

/* Makes the pool drop every thread, so the next task must start one. */
static void empty_the_pool(void)
{
    eg_pool_config cfg;
    eg_pool_get_config(&cfg);
    cfg.idle_timeout_ns = EG_NSEC_PER_MSEC;
    assert_int_equal(eg_pool_configure(&cfg), 0);
    eg_pool_stats st;
    for (int i = 0; i < 20000; i++) {
        eg_pool_get_stats(&st);
        if (st.threads == 0)
            return;
        nap_us(100);
    }
    eg_pool_get_stats(&st);
    assert_int_equal(st.threads, 0);
}

static void restore_pool(void)
{
    eg_pool_config cfg;
    eg_pool_get_config(&cfg);
    cfg.idle_timeout_ns = 10 * EG_NSEC_PER_SEC;
    assert_int_equal(eg_pool_configure(&cfg), 0);
}

/* ---- the timer thread (must be the first deadline of the process) ------ */

static void fault_timer_thread_cannot_start(void **state)
{
    (void)state;
    long base = eg_live_objects();
    eg_fault_set(EG_FAULT_THREAD, -1);
    /* The first deadline starts the timer thread: it cannot, so no
     * context (documented: NULL "when the timer thread cannot start"). */
    assert_null(eg_with_timeout(NULL, EG_NSEC_PER_SEC));
    eg_ctx *parent = eg_with_cancel(NULL);
    assert_non_null(parent);
    assert_null(eg_with_deadline(parent, eg_now() + EG_NSEC_PER_SEC));
    /* A passed deadline needs no thread. */
    eg_ctx *past = eg_with_deadline(parent, eg_now() - 1);
    assert_non_null(past);
    assert_int_equal(eg_ctx_err(past), -ETIMEDOUT);
    eg_ctx_release(past);
    /* The parent did not keep the failed children. */
    eg_cancel(parent, 0);
    eg_ctx_release(parent);
    assert_int_equal(eg_live_objects(), base);

    /* Fault off: the next deadline starts the thread and fires. */
    eg_fault_set(EG_FAULT_THREAD, 0);
    eg_ctx *d = eg_with_timeout(NULL, EG_NSEC_PER_MSEC);
    assert_non_null(d);
    assert_int_equal(eg_ctx_wait(d), -ETIMEDOUT);
    eg_ctx_release(d);
    assert_int_equal(eg_live_objects(), base);
    assert_library_works();
}

/* ---- the scenario run with each fault ------------------------------------- */

static const int value_key = 1;

typedef struct outcome {
    int failures;         /* public calls that reported a documented failure */
    atomic_int after_ran; /* the eg_after_func callback, which may outlive */
    bool after_pending;   /* the scenario when eg_after_stop lost to it */
} outcome;

/* Runs contexts, a group, eg_ctx_fd, eg_after_func, a deadline, eg_wg_go,
 * a channel and a semaphore; any step may fail as documented. Cleans up
 * everything it made. */
static void scenario(outcome *o)
{
    atomic_int ran = 0, wg_ran = 0;
    int started = 0;

    eg_ctx *parent = eg_with_cancel(NULL);
    if (!parent) {
        o->failures++;
        return;
    }
    eg_ctx *val = eg_with_value(parent, &value_key, (void *)&value_key);
    if (!val)
        o->failures++;
    eg_ctx *dl = eg_with_timeout(val ? val : parent, 10 * EG_NSEC_PER_SEC);
    if (!dl)
        o->failures++;
    eg_ctx *wo = eg_without_cancel(parent);
    if (!wo)
        o->failures++;
    else
        assert_int_equal(eg_ctx_fd(wo), -EINVAL); /* can never be done */

    int fd = eg_ctx_fd(dl ? dl : parent);
    if (fd < 0) {
        assert_true(fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM);
        o->failures++;
    }

    eg_after *after = eg_after_func(parent, count_fn, &o->after_ran);
    if (!after)
        o->failures++;

    eg_group *g = eg_group_new(dl ? dl : parent);
    if (!g) {
        o->failures++;
    } else {
        for (int i = 0; i < 6; i++) {
            int rc = eg_go(g, i % 2 ? sleepy_task : count_task, &ran);
            if (rc == 0)
                started++;
            else {
                assert_true(rc == -ENOMEM || rc == -EAGAIN);
                o->failures++;
            }
        }
    }

    eg_wg wg;
    assert_int_equal(eg_wg_init(&wg), 0);
    int wg_started = 0;
    for (int i = 0; i < 3; i++) {
        int rc = eg_wg_go(&wg, count_fn, &wg_ran);
        if (rc == 0)
            wg_started++;
        else {
            assert_true(rc == -ENOMEM || rc == -EAGAIN);
            o->failures++;
        }
    }

    eg_chan *ch = eg_chan_new(2, sizeof(int));
    if (!ch) {
        o->failures++;
    } else {
        int v = 5, out = 0;
        assert_int_equal(eg_chan_send(parent, ch, &v), 0);
        assert_int_equal(eg_chan_recv(parent, ch, &out), 0);
        assert_int_equal(out, 5);
        eg_chan_close(ch);
        eg_chan_free(ch);
    }

    eg_sem *sem = eg_sem_new(3);
    if (!sem) {
        o->failures++;
    } else {
        assert_int_equal(eg_sem_acquire(parent, sem, 2), 0);
        eg_sem_release(sem, 2);
        eg_sem_free(sem);
    }

    if (g) {
        assert_int_equal(eg_wait(g), 0);
        /* Accepted tasks ran once; refused ones never (not even inline by
         * eg_wait: they were not left in the queue). */
        assert_int_equal(atomic_load(&ran), started);
        eg_group_free(g);
    }
    eg_wg_wait(&wg);
    assert_int_equal(atomic_load(&wg_ran), wg_started);
    eg_wg_destroy(&wg);

    eg_cancel(parent, 0);
    if (dl)
        assert_int_equal(eg_ctx_err(dl), -ECANCELED);
    /* When stop loses, fn will run: with the thread fault its run may wait
     * for a pool thread, which the caller provides once the fault is off. */
    if (after && !eg_after_stop(after))
        o->after_pending = true;
    eg_ctx_release(wo);
    eg_ctx_release(dl);
    eg_ctx_release(val);
    eg_ctx_release(parent);
}

/* Runs the scenario with the Nth call of kind failing, for every N. */
static void fault_every_call(int kind, bool fresh_pool)
{
    long base = eg_live_objects();
    int n;
    for (n = 1; n <= MAX_N; n++) {
        if (fresh_pool)
            empty_the_pool();
        long calls0 = eg_fault_calls(kind);
        eg_fault_set(kind, n);
        outcome o = {.failures = 0};
        atomic_init(&o.after_ran, 0);
        scenario(&o);
        long calls = eg_fault_calls(kind) - calls0;
        eg_fault_set(kind, 0);
        bool hit = calls >= n;
        /* A stranded eg_after_func run (thread fault) needs a worker. */
        assert_library_works();
        if (o.after_pending)
            assert_true(wait_for_int(&o.after_ran, 1));
        else
            assert_int_equal(atomic_load(&o.after_ran), 0);
        assert_live_back_to(base);
        if (!hit) {
            assert_int_equal(o.failures, 0);
            break;
        }
    }
    assert_true(n > 1); /* the scenario reached at least one call */
    assert_true(n <= MAX_N);
    if (fresh_pool)
        restore_pool();
    assert_library_works();
    assert_live_back_to(base);
}

static void fault_malloc_each_call(void **state)
{
    (void)state;
    fault_every_call(EG_FAULT_MALLOC, false);
}

static void fault_fd_each_call(void **state)
{
    (void)state;
    fault_every_call(EG_FAULT_FD, false);
}

static void fault_thread_each_call(void **state)
{
    (void)state;
    fault_every_call(EG_FAULT_THREAD, true);
}

/* ---- threads: no worker and none can start ------------------------------ */

static void fault_thread_eg_go_returns_eagain(void **state)
{
    (void)state;
    long base = eg_live_objects();
    empty_the_pool();
    eg_fault_set(EG_FAULT_THREAD, -1);

    eg_group *g = pool_group_new();
    assert_non_null(g);
    atomic_int ran = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(eg_go(g, count_task, &ran), -EAGAIN);
    assert_int_equal(eg_try_go(g, count_task, &ran), -EAGAIN);
    /* Refused tasks are not queued: eg_wait, which runs queued tasks
     * inline, finds none, and the group is not left "active". */
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&ran), 0);
    assert_int_equal(eg_set_limit(g, 2), 0);

    /* A WaitGroup runs on the default executor: only the thread pool needs
     * a thread start for it (coroutine carriers are already running). */
    eg_pool_config cfg;
    eg_pool_get_config(&cfg);
    bool wg_on_pool = cfg.executor != EG_EXEC_CORO;
    int wg_ran = wg_on_pool ? 0 : 1;
    eg_wg wg;
    assert_int_equal(eg_wg_init(&wg), 0);
    if (wg_on_pool) {
        assert_int_equal(eg_wg_go(&wg, count_fn, &ran), -EAGAIN);
        eg_wg_wait(&wg); /* count unchanged: returns at once */
        assert_int_equal(eg_wg_done(&wg), -EINVAL);
    } else {
        assert_int_equal(eg_wg_go(&wg, count_fn, &ran), 0);
        eg_wg_wait(&wg);
        assert_int_equal(atomic_load(&ran), 1);
    }

    eg_pool_stats st;
    eg_pool_get_stats(&st);
    assert_int_equal(st.threads, 0);
    assert_int_equal(st.queued, 0);

    /* Fault off: the same group works again. */
    eg_fault_set(EG_FAULT_THREAD, 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(eg_go(g, count_task, &ran), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(atomic_load(&ran), 4 + wg_ran);
    assert_int_equal(eg_wg_go(&wg, count_fn, &ran), 0);
    eg_wg_wait(&wg);
    assert_int_equal(atomic_load(&ran), 5 + wg_ran);
    eg_wg_destroy(&wg);
    eg_group_free(g);
    restore_pool();
    assert_live_back_to(base);
}

/* A worker that cannot start while another is busy: the task is either
 * refused or run, never left queued behind a task that never returns. */
typedef struct blocker {
    atomic_int started;
    atomic_int release;
} blocker;

static int blocking_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    blocker *b = arg;
    atomic_store(&b->started, 1);
    while (!atomic_load(&b->release))
        nap_us(100);
    return 0;
}

static void fault_thread_busy_worker_does_not_strand(void **state)
{
    (void)state;
    long base = eg_live_objects();
    empty_the_pool();
    eg_group *g = pool_group_new();
    blocker b = {0};
    assert_int_equal(eg_go(g, blocking_task, &b), 0);
    assert_true(wait_for_int(&b.started, 1));

    eg_fault_set(EG_FAULT_THREAD, -1);
    eg_group *g2 = pool_group_new();
    atomic_int ran = 0;
    int rc = eg_go(g2, count_task, &ran);
    /* The only worker is busy and no other can start: refused. */
    assert_int_equal(rc, -EAGAIN);
    assert_int_equal(eg_wait(g2), 0);
    assert_int_equal(atomic_load(&ran), 0);
    eg_fault_set(EG_FAULT_THREAD, 0);

    atomic_store(&b.release, 1);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(eg_go(g2, count_task, &ran), 0);
    assert_int_equal(eg_wait(g2), 0);
    assert_int_equal(atomic_load(&ran), 1);
    eg_group_free(g2);
    eg_group_free(g);
    restore_pool();
    assert_live_back_to(base);
}

/* Two tasks submitted back to back on an empty pool: the first submission
 * starts a worker, the second sees it (counted as looking for work) and
 * starts none. The worker pops the first task and, leaving the second
 * queued with no one else looking, starts another thread, which fails. The
 * second task was accepted (0): it must run while the first one runs. */
typedef struct pair {
    atomic_int a_started, b_ran, b_late;
} pair;

static void pair_a(void *arg)
{
    pair *p = arg;
    atomic_store(&p->a_started, 1);
    for (int i = 0; i < 20000 && !atomic_load(&p->b_ran); i++)
        nap_us(100);
    if (!atomic_load(&p->b_ran))
        atomic_store(&p->b_late, 1);
}

static void pair_b(void *arg)
{
    pair *p = arg;
    atomic_store(&p->b_ran, 1);
}

static void fault_thread_failed_handoff_does_not_strand(void **state)
{
    (void)state;
    long base = eg_live_objects();
    int accepted_both = 0;
    for (int it = 0; it < 20; it++) {
        empty_the_pool();
        eg_wg wg;
        assert_int_equal(eg_wg_init(&wg), 0);
        pair p = {0};
        eg_fault_set(EG_FAULT_THREAD, 2); /* the first start works, the next fails */
        assert_int_equal(eg_wg_go(&wg, pair_a, &p), 0);
        int rc = eg_wg_go(&wg, pair_b, &p);
        assert_true(rc == 0 || rc == -EAGAIN);
        if (rc == 0)
            accepted_both++;
        else
            pair_b(&p); /* refused: run it here, as a caller would */
        eg_wg_wait(&wg);
        eg_fault_set(EG_FAULT_THREAD, 0);
        assert_int_equal(atomic_load(&p.b_late), 0);
        eg_wg_destroy(&wg);
    }
    print_message("both accepted in %d of 20 runs\n", accepted_both);
    restore_pool();
    assert_library_works();
    assert_live_back_to(base);
}

/* eg_after_func's run is posted to the pool and cannot be refused: with no
 * thread able to start it waits for the next worker, and the next
 * submission delivers it once threads can start again. eg_cond_wait's
 * deferred wake-up goes to the waker thread, which needs no pool thread. */
typedef struct cond_job {
    pthread_t tid;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    eg_ctx *ctx;
    atomic_int waiting;
    int rc;
} cond_job;

static void *cond_main(void *arg)
{
    cond_job *j = arg;
    pthread_mutex_lock(&j->mu);
    atomic_store(&j->waiting, 1);
    int rc;
    while ((rc = eg_cond_wait(j->ctx, &j->cond, &j->mu)) == 0) {
    }
    j->rc = rc;
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static void fault_thread_posted_work_runs_later(void **state)
{
    (void)state;
    long base = eg_live_objects();
    empty_the_pool();
    cond_job j = {0};
    pthread_mutex_init(&j.mu, NULL);
    pthread_cond_init(&j.cond, NULL);
    /* eg_cond_wait's waker thread starts at the first call: before the
     * faults (with them on, that call returns -EAGAIN). */
    pthread_mutex_lock(&j.mu);
    int first = eg_cond_timedwait(eg_background(), &j.cond, &j.mu, eg_now());
    assert_true(first == -ETIMEDOUT || first == 0);
    pthread_mutex_unlock(&j.mu);
    eg_fault_set(EG_FAULT_THREAD, -1);

    eg_ctx *ctx = eg_with_cancel(NULL);
    j.ctx = ctx;
    atomic_int after_ran = 0;
    eg_after *a = eg_after_func(ctx, count_fn, &after_ran);
    assert_non_null(a);

    assert_int_equal(pthread_create(&j.tid, NULL, cond_main, &j), 0);
    assert_true(wait_for_int(&j.waiting, 1));
    /* Cancel while holding the waiter's mutex: its wake-up is deferred to
     * the waker thread, while the after_func callback waits for a pool
     * thread. */
    pthread_mutex_lock(&j.mu);
    eg_cancel(ctx, 0);
    pthread_mutex_unlock(&j.mu);
    /* The callback was claimed (it will run), so stop cannot prevent it. */
    assert_false(eg_after_stop(a));

    eg_fault_set(EG_FAULT_THREAD, 0);
    assert_library_works(); /* a submission starts a worker */
    assert_true(wait_for_int(&after_ran, 1));
    pthread_join(j.tid, NULL);
    assert_int_equal(j.rc, -ECANCELED);
    pthread_cond_destroy(&j.cond);
    pthread_mutex_destroy(&j.mu);
    eg_ctx_release(ctx);
    restore_pool();
    assert_live_back_to(base);
}

/* ---- fds -------------------------------------------------------------------- */

static void fault_fd_blocking_points_fail(void **state)
{
    (void)state;
    long base = eg_live_objects();
    int p[2];
    assert_int_equal(pipe(p), 0);
    eg_ctx *ctx = eg_with_cancel(NULL);

    eg_fault_set(EG_FAULT_FD, -1);
    assert_int_equal(eg_ctx_fd(ctx), -EMFILE);
    char buf[4];
    /* Waiting needs the context's fd: the call fails rather than wait
     * deaf to the context. */
    assert_int_equal(eg_read(ctx, p[0], buf, sizeof buf), -EMFILE);
    assert_int_equal(eg_poll(ctx, p[0], POLLIN), -EMFILE);
    /* Data already there needs no fd. */
    assert_int_equal(write(p[1], "ab", 2), 2);
    assert_int_equal(eg_read(ctx, p[0], buf, sizeof buf), 2);
    eg_fault_set(EG_FAULT_FD, 0);

    int fd = eg_ctx_fd(ctx);
    assert_true(fd >= 0);
    assert_int_equal(eg_ctx_fd(ctx), fd); /* made once */
    eg_cancel(ctx, 0);
    assert_int_equal(eg_read(ctx, p[0], buf, sizeof buf), -ECANCELED);
    eg_ctx_release(ctx);
    close(p[0]);
    close(p[1]);
    assert_int_equal(eg_live_objects(), base);
    assert_library_works();
}

/* ---- point 1: a task visible to other threads is never touched again ---- */

enum { UAF_SUBMITTERS = 4, UAF_TASKS = 16 };

typedef struct uaf_job {
    pthread_t tid;
    atomic_bool *stop;
    int bad;       /* a result that breaks "exactly once" */
    long accepted; /* eg_go/eg_wg_go that returned 0 */
    long refused;  /* ... that returned -EAGAIN */
} uaf_job;

/* Tasks of a few microseconds keep the workers running, so submitters find
 * no idle worker and start threads (some of which fail). */
static void uaf_work(atomic_int *slot)
{
    atomic_fetch_add(slot, 1);
    unsigned n = ((unsigned)(uintptr_t)slot >> 4) % 4000;
    for (volatile unsigned i = 0; i < n; i = i + 1) {
    }
}

static int uaf_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    uaf_work(arg);
    return 0;
}

static void uaf_wg_task(void *arg)
{
    uaf_work(arg);
}

static void *uaf_submitter(void *arg)
{
    uaf_job *j = arg;
    while (!atomic_load(j->stop)) {
        atomic_int slot[UAF_TASKS], wslot[UAF_TASKS];
        int rc[UAF_TASKS], wrc[UAF_TASKS];
        eg_group *g = eg_group_new(NULL);
        eg_wg wgv, *wg = &wgv;
        if (!g || eg_wg_init(wg) != 0) {
            j->bad++;
            break;
        }
        for (int i = 0; i < UAF_TASKS; i++) {
            atomic_init(&slot[i], 0);
            atomic_init(&wslot[i], 0);
            rc[i] = eg_go(g, uaf_task, &slot[i]);
            wrc[i] = eg_wg_go(wg, uaf_wg_task, &wslot[i]);
        }
        if (eg_wait(g) != 0)
            j->bad++;
        eg_wg_wait(wg);
        for (int i = 0; i < UAF_TASKS; i++) {
            int s = atomic_load(&slot[i]), w = atomic_load(&wslot[i]);
            /* 0: ran exactly once; -EAGAIN: never ran (arg still ours). */
            if (!((rc[i] == 0 && s == 1) || (rc[i] == -EAGAIN && s == 0)))
                j->bad++;
            if (!((wrc[i] == 0 && w == 1) || (wrc[i] == -EAGAIN && w == 0)))
                j->bad++;
            j->accepted += (rc[i] == 0) + (wrc[i] == 0);
            j->refused += (rc[i] != 0) + (wrc[i] != 0);
        }
        eg_group_free(g);
        eg_wg_destroy(wg);
    }
    return NULL;
}

static void regress_pool_submit_uaf(void **state)
{
    (void)state;
    long base = eg_live_objects();
    eg_pool_config cfg;
    eg_pool_get_config(&cfg);
    /* Idle threads exit at once, so submissions keep starting threads. */
    eg_pool_config quick = {.idle_timeout_ns = 1};
    assert_int_equal(eg_pool_configure(&quick), 0);
    atomic_bool stop = false;
    uaf_job jobs[UAF_SUBMITTERS];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < UAF_SUBMITTERS; i++) {
        jobs[i].stop = &stop;
        assert_int_equal(pthread_create(&jobs[i].tid, NULL, uaf_submitter, &jobs[i]), 0);
    }
    /* Thread starts fail at random while the submitters run. */
    unsigned x = 2463534242u;
    int64_t until = eg_now() + 3 * EG_NSEC_PER_SEC;
    while (eg_now() < until) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        eg_fault_set(EG_FAULT_THREAD, 1 + (long)(x % 3));
        nap_us(20 + x % 200);
    }
    eg_fault_set(EG_FAULT_THREAD, 0);
    atomic_store(&stop, true);
    long accepted = 0, refused = 0;
    for (int i = 0; i < UAF_SUBMITTERS; i++) {
        pthread_join(jobs[i].tid, NULL);
        assert_int_equal(jobs[i].bad, 0);
        accepted += jobs[i].accepted;
        refused += jobs[i].refused;
    }
    print_message("pool_submit_uaf: %ld accepted, %ld refused\n", accepted, refused);
    assert_true(accepted > 0);
    cfg.idle_timeout_ns = cfg.idle_timeout_ns ? cfg.idle_timeout_ns : EG_IDLE_FOREVER;
    assert_int_equal(eg_pool_configure(&cfg), 0);
    assert_int_equal(eg_live_objects(), base);
    assert_library_works();
}

/* An optional argument runs only the tests whose names match it (a glob). */
int main(int argc, char **argv)
{
    if (argc > 1)
        cmocka_set_test_filter(argv[1]);
    if (!eg_fault_set || !eg_fault_calls) {
        print_message("test_fault: library built without EG_FAULT_INJECTION, skipped\n");
        return 0;
    }
    const struct CMUnitTest tests[] = {
        EG_TEST(fault_timer_thread_cannot_start),
        EG_TEST(fault_malloc_each_call),
        EG_TEST(fault_fd_each_call),
        EG_TEST(fault_fd_blocking_points_fail),
        EG_TEST(fault_thread_eg_go_returns_eagain),
        EG_TEST(fault_thread_busy_worker_does_not_strand),
        EG_TEST(fault_thread_posted_work_runs_later),
        EG_TEST(fault_thread_failed_handoff_does_not_strand),
        EG_TEST(fault_thread_each_call),
        EG_TEST(regress_pool_submit_uaf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
