/*
 * test_io.c - blocking points: eg_sleep, eg_cond_wait, eg_poll, eg_read,
 * eg_write, eg_write_all, eg_connect and eg_accept on pipes, socketpairs and
 * loopback sockets, blocking and O_NONBLOCK. Each blocking point returns
 * normally when its event comes first, and the context's error when the
 * context is cancelled from another thread, by a group sibling's failure,
 * by a deadline, or before the call; the fd stays usable afterwards.
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

static void set_nonblock(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    assert_true(fl >= 0);
    assert_int_equal(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK), 0);
}

static bool is_nonblock(int fd)
{
    return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0;
}

/* fds[0] is read, fds[1] written. kind 0: pipe, 1: socketpair. */
static void make_fds(int kind, bool nonblock, int fds[2])
{
    if (kind == 0)
        assert_int_equal(pipe(fds), 0);
    else
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    set_nonblock(fds[0], nonblock);
    set_nonblock(fds[1], nonblock);
}

static void close_fds(int fds[2])
{
    close(fds[0]);
    close(fds[1]);
}

/* Fills the write end until a non-blocking write would block. */
static size_t fill(int fd)
{
    bool was = is_nonblock(fd);
    set_nonblock(fd, true);
    static char junk[65536];
    size_t total = 0;
    ssize_t n;
    while ((n = write(fd, junk, sizeof junk)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0)
            total += (size_t)n;
    assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
    /* Shrink what is free to less than a page, so a write of any size
     * blocks, also after a pipe reports a free slot. */
    while ((n = write(fd, junk, 1)) == 1)
        total++;
    set_nonblock(fd, was);
    return total;
}

static void drain(int fd, size_t len)
{
    char buf[65536];
    while (len > 0) {
        ssize_t n = read(fd, buf, len < sizeof buf ? len : sizeof buf);
        assert_true(n > 0);
        len -= (size_t)n;
    }
}

/* ---- threads that write or read later -------------------------------------- */

typedef struct later {
    pthread_t thread;
    int delay_ms;
    int fd; /* write text to / drain len bytes from this */
    const char *text;
    size_t drain_len;
} later;

static void *later_main(void *arg)
{
    later *l = arg;
    sleep_ms(l->delay_ms);
    if (l->text) {
        ssize_t n = write(l->fd, l->text, strlen(l->text));
        (void)n;
    } else if (l->drain_len) {
        char buf[4096];
        size_t left = l->drain_len;
        while (left > 0) {
            ssize_t n = read(l->fd, buf, left < sizeof buf ? left : sizeof buf);
            if (n <= 0 && errno != EINTR && errno != EAGAIN)
                break;
            if (n > 0)
                left -= (size_t)n;
        }
    }
    return NULL;
}

static void later_start(later *l)
{
    assert_int_equal(pthread_create(&l->thread, NULL, later_main, l), 0);
}

static void write_later(later *l, int fd, const char *text, int delay_ms)
{
    *l = (later){.fd = fd, .text = text, .delay_ms = delay_ms};
    later_start(l);
}

static void later_join(later *l)
{
    pthread_join(l->thread, NULL);
}

/* A group whose task runs `call` while a sibling fails with -EIO. */
typedef struct sibling_case {
    int (*call)(eg_ctx *ctx, void *arg);
    void *arg;
    int rc;
    int cause;
} sibling_case;

static int sibling_blocked(eg_ctx *ctx, void *arg)
{
    sibling_case *sc = arg;
    sc->rc = sc->call(ctx, sc->arg);
    sc->cause = eg_ctx_cause(ctx);
    return sc->rc;
}

static int sibling_fail_later(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    sleep_ms(50);
    return -EIO;
}

static void run_with_failing_sibling(int (*call)(eg_ctx *, void *), void *arg)
{
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);
    sibling_case sc = {.call = call, .arg = arg, .rc = 1};
    assert_int_equal(eg_go(g, sibling_blocked, &sc), 0);
    assert_int_equal(eg_go(g, sibling_fail_later, NULL), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_int_equal(sc.rc, -ECANCELED);
    assert_int_equal(sc.cause, -EIO);
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -EIO);
    eg_group_free(g);
}

/* ---- eg_sleep ------------------------------------------------------------ */

static void test_sleep(void **state)
{
    (void)state;
    long live = eg_live_objects();
    int64_t t0 = eg_now();
    assert_int_equal(eg_sleep(eg_background(), MS(20)), 0);
    assert_true(eg_now() - t0 >= MS(20));
    assert_int_equal(eg_sleep(eg_background(), 0), 0);
    assert_int_equal(eg_sleep(eg_background(), -5), 0);
    assert_int_equal(eg_sleep(NULL, MS(1)), -EINVAL);

    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    canceller l;
    cancel_later(&l, ctx, 30);
    assert_int_equal(eg_sleep(ctx, LONG_NS), -ECANCELED);
    canceller_join(&l);
    assert_int_equal(eg_sleep(ctx, 0), -ECANCELED); /* already done */
    eg_ctx_release(ctx);

    ctx = eg_with_timeout(NULL, MS(20));
    assert_non_null(ctx);
    assert_int_equal(eg_sleep(ctx, LONG_NS), -ETIMEDOUT);
    eg_ctx_release(ctx);
    /* The sleep ends first: 0, the deadline is still ahead. */
    ctx = eg_with_timeout(NULL, LONG_NS);
    assert_non_null(ctx);
    assert_int_equal(eg_sleep(ctx, MS(5)), 0);
    eg_ctx_release(ctx);
    /* INT64_MAX does not overflow into the past. */
    ctx = eg_with_timeout(NULL, MS(20));
    assert_non_null(ctx);
    assert_int_equal(eg_sleep(ctx, INT64_MAX), -ETIMEDOUT);
    eg_ctx_release(ctx);
    assert_int_equal(eg_live_objects(), live);
}

static int call_sleep(eg_ctx *ctx, void *arg)
{
    (void)arg;
    return eg_sleep(ctx, LONG_NS);
}

static void test_sleep_sibling(void **state)
{
    (void)state;
    long live = eg_live_objects();
    run_with_failing_sibling(call_sleep, NULL);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_cond_wait ------------------------------------------------------- */

typedef struct cond_case {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    bool flag;
    eg_ctx *ctx;
    int rc;
    atomic_int waiting;
} cond_case;

static void cond_case_init(cond_case *c, eg_ctx *ctx)
{
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->flag = false;
    c->ctx = ctx;
    c->rc = 1;
    atomic_store(&c->waiting, 0);
}

static void cond_case_destroy(cond_case *c)
{
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
}

static int cond_wait_flag(eg_ctx *ctx, cond_case *c)
{
    pthread_mutex_lock(&c->mu);
    atomic_store(&c->waiting, 1);
    int rc = 0;
    while (!c->flag && rc == 0)
        rc = eg_cond_wait(ctx, &c->cond, &c->mu);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void *cond_waiter_main(void *arg)
{
    cond_case *c = arg;
    c->rc = cond_wait_flag(c->ctx, c);
    return NULL;
}

static void test_cond_wait(void **state)
{
    (void)state;
    long live = eg_live_objects();
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);

    /* Woken by a signal. */
    cond_case c;
    cond_case_init(&c, ctx);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cond_waiter_main, &c), 0);
    sleep_ms(20);
    pthread_mutex_lock(&c.mu);
    c.flag = true;
    pthread_cond_signal(&c.cond);
    pthread_mutex_unlock(&c.mu);
    pthread_join(t, NULL);
    assert_int_equal(c.rc, 0);
    cond_case_destroy(&c);

    /* Cancelled from another thread. */
    cond_case_init(&c, ctx);
    assert_int_equal(pthread_create(&t, NULL, cond_waiter_main, &c), 0);
    canceller l;
    cancel_later(&l, ctx, 30);
    pthread_join(t, NULL);
    canceller_join(&l);
    assert_int_equal(c.rc, -ECANCELED);
    /* Already done: returns at once, with the mutex held. */
    pthread_mutex_lock(&c.mu);
    assert_int_equal(eg_cond_wait(ctx, &c.cond, &c.mu), -ECANCELED);
    assert_int_equal(pthread_mutex_trylock(&c.mu), EBUSY);
    pthread_mutex_unlock(&c.mu);
    cond_case_destroy(&c);
    eg_ctx_release(ctx);

    /* A deadline, and eg_cond_timedwait's own deadline. */
    ctx = eg_with_timeout(NULL, MS(20));
    assert_non_null(ctx);
    cond_case_init(&c, ctx);
    assert_int_equal(cond_wait_flag(ctx, &c), -ETIMEDOUT);
    eg_ctx_release(ctx);
    pthread_mutex_lock(&c.mu);
    int rc = 0;
    int64_t deadline = eg_now() + MS(20);
    while (rc == 0)
        rc = eg_cond_timedwait(eg_background(), &c.cond, &c.mu, deadline);
    assert_int_equal(rc, -ETIMEDOUT);
    pthread_mutex_unlock(&c.mu);
    cond_case_destroy(&c);
    assert_int_equal(eg_live_objects(), live);
}

/* eg_cancel called while holding the mutex the waiter sleeps on: the wake-up
 * is delivered once the mutex is free, never lost, and nothing deadlocks. */
static void test_cond_wait_cancel_under_mutex(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (int i = 0; i < 200; i++) {
        eg_ctx *ctx = eg_with_cancel(NULL);
        assert_non_null(ctx);
        cond_case c;
        cond_case_init(&c, ctx);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, cond_waiter_main, &c), 0);
        while (!atomic_load(&c.waiting))
            sleep_ms(0);
        if (i % 20 == 0)
            sleep_ms(5); /* sometimes make sure it is asleep */
        pthread_mutex_lock(&c.mu);
        eg_cancel(ctx, -EIO);
        if (i % 2)
            sleep_ms(1); /* hold the mutex a while after the cancel */
        pthread_mutex_unlock(&c.mu);
        pthread_join(t, NULL);
        assert_int_equal(c.rc, -ECANCELED);
        assert_int_equal(eg_ctx_cause(ctx), -EIO);
        cond_case_destroy(&c);
        eg_ctx_release(ctx);
    }
    assert_int_equal(eg_live_objects(), live);
}

static int call_cond_wait(eg_ctx *ctx, void *arg)
{
    return cond_wait_flag(ctx, arg);
}

static void test_cond_wait_sibling(void **state)
{
    (void)state;
    long live = eg_live_objects();
    cond_case c;
    cond_case_init(&c, NULL);
    run_with_failing_sibling(call_cond_wait, &c);
    cond_case_destroy(&c);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_poll -------------------------------------------------------------- */

static void test_poll(void **state)
{
    (void)state;
    long live = eg_live_objects();
    int fds[2];
    make_fds(0, false, fds);
    assert_int_equal(eg_poll(NULL, fds[0], POLLIN), -EINVAL);

    /* Ready: the data comes first. With the background context (no context
     * fd) and with a cancellable one. */
    later l;
    write_later(&l, fds[1], "x", 20);
    assert_true(eg_poll(eg_background(), fds[0], POLLIN) & POLLIN);
    later_join(&l);
    drain(fds[0], 1);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    write_later(&l, fds[1], "y", 20);
    assert_true(eg_poll(ctx, fds[0], POLLIN) & POLLIN);
    later_join(&l);
    drain(fds[0], 1);
    /* Writable at once. */
    assert_true(eg_poll(ctx, fds[1], POLLOUT) & POLLOUT);

    /* Cancelled while waiting; then already done. */
    canceller cl;
    cancel_later(&cl, ctx, 30);
    assert_int_equal(eg_poll(ctx, fds[0], POLLIN), -ECANCELED);
    canceller_join(&cl);
    assert_int_equal(eg_poll(ctx, fds[1], POLLOUT), -ECANCELED);
    eg_ctx_release(ctx);

    ctx = eg_with_timeout(NULL, MS(20));
    assert_non_null(ctx);
    assert_int_equal(eg_poll(ctx, fds[0], POLLIN), -ETIMEDOUT);
    eg_ctx_release(ctx);

    /* Hang-up is reported. */
    close(fds[1]);
    assert_true(eg_poll(eg_background(), fds[0], POLLIN) & POLLHUP);
    close(fds[0]);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_read / eg_write ---------------------------------------------------- */

static void test_read_ready(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (int kind = 0; kind < 2; kind++) {
        for (int nb = 0; nb < 2; nb++) {
            int fds[2];
            make_fds(kind, nb, fds);
            eg_ctx *ctx = eg_with_cancel(NULL);
            assert_non_null(ctx);
            /* Data already there, then data that comes later. */
            assert_int_equal(write(fds[1], "now", 3), 3);
            char buf[16] = {0};
            assert_int_equal(eg_read(ctx, fds[0], buf, sizeof buf), 3);
            assert_memory_equal(buf, "now", 3);
            later l;
            write_later(&l, fds[1], "later", 20);
            assert_int_equal(eg_read(ctx, fds[0], buf, sizeof buf), 5);
            assert_memory_equal(buf, "later", 5);
            later_join(&l);
            write_later(&l, fds[1], "bg", 20);
            assert_int_equal(eg_read(eg_background(), fds[0], buf, sizeof buf), 2);
            later_join(&l);
            /* End of file. */
            close(fds[1]);
            assert_int_equal(eg_read(ctx, fds[0], buf, sizeof buf), 0);
            close(fds[0]);
            eg_ctx_release(ctx);
        }
    }
    assert_int_equal(eg_live_objects(), live);
}

static void test_read_cancelled(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (int kind = 0; kind < 2; kind++) {
        for (int nb = 0; nb < 2; nb++) {
            int fds[2];
            make_fds(kind, nb, fds);
            char buf[16];
            eg_ctx *ctx = eg_with_cancel(NULL);
            assert_non_null(ctx);
            canceller l;
            cancel_later(&l, ctx, 30);
            assert_int_equal(eg_read(ctx, fds[0], buf, sizeof buf), -ECANCELED);
            canceller_join(&l);
            /* Already done: no read happens though data is there. */
            assert_int_equal(write(fds[1], "abc", 3), 3);
            assert_int_equal(eg_read(ctx, fds[0], buf, sizeof buf), -ECANCELED);
            eg_ctx_release(ctx);
            /* The fd is still usable and nothing was consumed. */
            assert_int_equal(is_nonblock(fds[0]), nb);
            memset(buf, 0, sizeof buf);
            assert_int_equal(eg_read(eg_background(), fds[0], buf, sizeof buf), 3);
            assert_memory_equal(buf, "abc", 3);

            ctx = eg_with_timeout(NULL, MS(20));
            assert_non_null(ctx);
            assert_int_equal(eg_read(ctx, fds[0], buf, sizeof buf), -ETIMEDOUT);
            eg_ctx_release(ctx);
            close_fds(fds);
        }
    }
    assert_int_equal(eg_live_objects(), live);
}

typedef struct fd_call {
    int fd;
    size_t len;
} fd_call;

static int call_read(eg_ctx *ctx, void *arg)
{
    fd_call *fc = arg;
    char buf[16];
    return (int)eg_read(ctx, fc->fd, buf, sizeof buf);
}

static int call_write(eg_ctx *ctx, void *arg)
{
    fd_call *fc = arg;
    static const char buf[8192];
    return (int)eg_write(ctx, fc->fd, buf, sizeof buf);
}

static void test_read_write_sibling(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (int kind = 0; kind < 2; kind++) {
        for (int nb = 0; nb < 2; nb++) {
            int fds[2];
            make_fds(kind, nb, fds);
            fd_call rd = {.fd = fds[0]};
            run_with_failing_sibling(call_read, &rd);
            size_t filled = fill(fds[1]);
            fd_call wr = {.fd = fds[1]};
            run_with_failing_sibling(call_write, &wr);
            /* Nothing was written by the cancelled call. */
            drain(fds[0], filled);
            set_nonblock(fds[0], true);
            char c;
            assert_int_equal(read(fds[0], &c, 1), -1);
            assert_true(errno == EAGAIN);
            close_fds(fds);
        }
    }
    assert_int_equal(eg_live_objects(), live);
}

static void test_write_blocks_and_cancels(void **state)
{
    (void)state;
    long live = eg_live_objects();
    for (int kind = 0; kind < 2; kind++) {
        for (int nb = 0; nb < 2; nb++) {
            int fds[2];
            make_fds(kind, nb, fds);
            size_t filled = fill(fds[1]);
            static const char payload[8192];
            eg_ctx *ctx = eg_with_cancel(NULL);
            assert_non_null(ctx);
            canceller l;
            cancel_later(&l, ctx, 30);
            assert_int_equal(eg_write(ctx, fds[1], payload, sizeof payload), -ECANCELED);
            canceller_join(&l);
            assert_int_equal(eg_write(ctx, fds[1], payload, 1), -ECANCELED);
            eg_ctx_release(ctx);

            ctx = eg_with_timeout(NULL, MS(20));
            assert_non_null(ctx);
            assert_int_equal(eg_write(ctx, fds[1], payload, sizeof payload), -ETIMEDOUT);
            eg_ctx_release(ctx);

            /* A reader makes room: the write goes through. */
            later drainer = {.fd = fds[0], .drain_len = filled, .delay_ms = 20};
            later_start(&drainer);
            ssize_t n = eg_write(eg_background(), fds[1], "z", 1);
            assert_int_equal(n, 1);
            later_join(&drainer);
            char c = 0;
            assert_int_equal(eg_read(eg_background(), fds[0], &c, 1), 1);
            assert_int_equal(c, 'z');
            assert_int_equal(is_nonblock(fds[1]), nb);
            close_fds(fds);
        }
    }
    assert_int_equal(eg_live_objects(), live);
}

/* eg_write_all moves 1 MiB through a pipe or socketpair to a reader thread,
 * in order and complete. */
#define BIG (1 << 20)

typedef struct reader {
    pthread_t thread;
    int fd;
    unsigned char *buf;
    size_t got;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    for (;;) {
        ssize_t n = eg_read(eg_background(), r->fd, r->buf + r->got, BIG - r->got + 1);
        if (n <= 0)
            break;
        r->got += (size_t)n;
    }
    return NULL;
}

static void test_write_all(void **state)
{
    (void)state;
    long live = eg_live_objects();
    unsigned char *src = malloc(BIG);
    assert_non_null(src);
    for (size_t i = 0; i < BIG; i++)
        src[i] = (unsigned char)(i * 31 + (i >> 11));
    for (int kind = 0; kind < 2; kind++) {
        for (int nb = 0; nb < 2; nb++) {
            int fds[2];
            make_fds(kind, nb, fds);
            reader r = {.fd = fds[0], .buf = malloc(BIG + 1)};
            assert_non_null(r.buf);
            assert_int_equal(pthread_create(&r.thread, NULL, reader_main, &r), 0);
            eg_ctx *ctx = eg_with_cancel(NULL);
            assert_non_null(ctx);
            assert_int_equal(eg_write_all(ctx, fds[1], src, BIG), BIG);
            close(fds[1]);
            pthread_join(r.thread, NULL);
            assert_int_equal(r.got, BIG);
            assert_memory_equal(r.buf, src, BIG);
            free(r.buf);
            close(fds[0]);
            /* Cancelled part-way: an error, and the fd stays usable. */
            make_fds(kind, nb, fds);
            canceller l;
            cancel_later(&l, ctx, 30);
            assert_int_equal(eg_write_all(ctx, fds[1], src, BIG), -ECANCELED);
            canceller_join(&l);
            assert_int_equal(eg_write_all(ctx, fds[1], src, 0), -ECANCELED);
            eg_ctx_release(ctx);
            assert_int_equal(eg_write_all(eg_background(), fds[1], src, 0), 0);
            close_fds(fds);
        }
    }
    free(src);
    assert_int_equal(eg_live_objects(), live);
}

static void test_regular_file_and_errors(void **state)
{
    (void)state;
    long live = eg_live_objects();
    FILE *f = tmpfile();
    assert_non_null(f);
    int fd = fileno(f);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    assert_int_equal(eg_write_all(ctx, fd, "hello file", 10), 10);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    char buf[32] = {0};
    assert_int_equal(eg_read(ctx, fd, buf, sizeof buf), 10);
    assert_string_equal(buf, "hello file");
    assert_int_equal(eg_read(ctx, fd, buf, sizeof buf), 0);
    eg_cancel(ctx, 0);
    assert_int_equal(eg_read(ctx, fd, buf, sizeof buf), -ECANCELED);
    assert_int_equal(eg_write(ctx, fd, buf, 1), -ECANCELED);
    eg_ctx_release(ctx);
    fclose(f);

    /* Errors are -errno and errno is left alone. */
    errno = 12345;
    assert_int_equal(eg_read(eg_background(), -1, buf, 1), -EBADF);
    assert_int_equal(eg_write(eg_background(), -1, buf, 1), -EBADF);
    /* poll(2) skips negative fds; an unopened one reports POLLNVAL. */
    assert_int_equal(eg_poll(eg_background(), 1000000, POLLIN) & POLLNVAL, POLLNVAL);
    assert_int_equal(eg_read(NULL, 0, buf, 1), -EINVAL);
    assert_int_equal(eg_read(eg_background(), 0, NULL, 1), -EINVAL);
    assert_int_equal(eg_write_all(NULL, 1, buf, 1), -EINVAL);
    assert_int_equal(eg_accept(eg_background(), -1, NULL, NULL), -EBADF);
    assert_int_equal(errno, 12345);
    int fds[2];
    make_fds(0, false, fds);
    close(fds[0]);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(eg_write(eg_background(), fds[1], "x", 1), -EPIPE);
    assert_int_equal(errno, 12345);
    close(fds[1]);
    assert_int_equal(eg_live_objects(), live);
}

/* ---- eg_connect / eg_accept --------------------------------------------- */

static int tcp_listener(struct sockaddr_in *addr, int backlog)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(l >= 0);
    memset(addr, 0, sizeof *addr);
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)addr, sizeof *addr), 0);
    assert_int_equal(listen(l, backlog), 0);
    socklen_t len = sizeof *addr;
    assert_int_equal(getsockname(l, (struct sockaddr *)addr, &len), 0);
    return l;
}

static void test_connect_accept(void **state)
{
    (void)state;
    long live = eg_live_objects();
    struct sockaddr_in addr;
    int l = tcp_listener(&addr, 16);
    for (int nb = 0; nb < 2; nb++) {
        eg_ctx *ctx = eg_with_cancel(NULL);
        assert_non_null(ctx);
        int c = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(c >= 0);
        set_nonblock(c, nb);
        errno = 777;
        assert_int_equal(eg_connect(ctx, c, (struct sockaddr *)&addr, sizeof addr), 0);
        assert_int_equal(errno, 777);
        assert_int_equal(is_nonblock(c), nb); /* flags restored */
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        set_nonblock(l, nb);
        int a = eg_accept(ctx, l, (struct sockaddr *)&peer, &plen);
        assert_true(a >= 0);
        assert_int_equal(plen, sizeof peer);
        assert_int_equal(peer.sin_family, AF_INET);
        assert_true(fcntl(a, F_GETFD) & FD_CLOEXEC);
        /* The connection works through eg_write/eg_read. */
        assert_int_equal(eg_write_all(ctx, c, "ping", 4), 4);
        char buf[8] = {0};
        assert_int_equal(eg_read(ctx, a, buf, sizeof buf), 4);
        assert_memory_equal(buf, "ping", 4);
        close(a);
        close(c);
        eg_ctx_release(ctx);
    }
    close(l);

    /* Refused: nothing listens on the port any more. */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c >= 0);
    assert_int_equal(
        eg_connect(eg_background(), c, (struct sockaddr *)&addr, sizeof addr),
        -ECONNREFUSED);
    assert_false(is_nonblock(c));
    close(c);
    assert_int_equal(eg_live_objects(), live);
}

typedef struct connector {
    pthread_t thread;
    struct sockaddr_in addr;
    int delay_ms;
    int fd;
} connector;

static void *connector_main(void *arg)
{
    connector *cn = arg;
    sleep_ms(cn->delay_ms);
    cn->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (cn->fd >= 0 &&
        connect(cn->fd, (struct sockaddr *)&cn->addr, sizeof cn->addr) != 0) {
        close(cn->fd);
        cn->fd = -1;
    }
    return NULL;
}

static void test_accept_cancelled(void **state)
{
    (void)state;
    long live = eg_live_objects();
    struct sockaddr_in addr;
    int l = tcp_listener(&addr, 16);
    for (int nb = 0; nb < 2; nb++) {
        set_nonblock(l, nb);
        eg_ctx *ctx = eg_with_cancel(NULL);
        assert_non_null(ctx);
        canceller lc;
        cancel_later(&lc, ctx, 30);
        assert_int_equal(eg_accept(ctx, l, NULL, NULL), -ECANCELED);
        canceller_join(&lc);
        eg_ctx_release(ctx);

        ctx = eg_with_timeout(NULL, MS(20));
        assert_non_null(ctx);
        assert_int_equal(eg_accept(ctx, l, NULL, NULL), -ETIMEDOUT);
        eg_ctx_release(ctx);

        /* The listener is still usable: a connection that comes later is
         * accepted. */
        connector cn = {.addr = addr, .delay_ms = 20};
        assert_int_equal(pthread_create(&cn.thread, NULL, connector_main, &cn), 0);
        int a = eg_accept(eg_background(), l, NULL, NULL);
        assert_true(a >= 0);
        pthread_join(cn.thread, NULL);
        assert_true(cn.fd >= 0);
        /* Already done: no accept though a connection waits. */
        connector cn2 = {.addr = addr};
        connector_main(&cn2);
        assert_true(cn2.fd >= 0);
        ctx = eg_with_cancel(NULL);
        assert_non_null(ctx);
        eg_cancel(ctx, 0);
        assert_int_equal(eg_accept(ctx, l, NULL, NULL), -ECANCELED);
        eg_ctx_release(ctx);
        int a2 = eg_accept(eg_background(), l, NULL, NULL);
        assert_true(a2 >= 0);
        close(a2);
        close(cn2.fd);
        close(a);
        close(cn.fd);
    }
    close(l);
    assert_int_equal(eg_live_objects(), live);
}

typedef struct listen_fd {
    int fd;
} listen_fd;

static int call_accept(eg_ctx *ctx, void *arg)
{
    listen_fd *lf = arg;
    return eg_accept(ctx, lf->fd, NULL, NULL);
}

static void test_accept_sibling(void **state)
{
    (void)state;
    long live = eg_live_objects();
    struct sockaddr_in addr;
    listen_fd lf = {.fd = tcp_listener(&addr, 16)};
    run_with_failing_sibling(call_accept, &lf);
    close(lf.fd);
    assert_int_equal(eg_live_objects(), live);
}

/* A connect that cannot complete (the listener's queue is full and it never
 * accepts) is cancelled and leaves the caller's flags as they were. */
static int unix_listener(struct sockaddr_un *addr)
{
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(l >= 0);
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    /* An abstract address: nothing on the filesystem. */
    snprintf(addr->sun_path + 1, sizeof addr->sun_path - 1, "eg-test-io-%ld-%lld",
             (long)getpid(), (long long)eg_now());
    assert_int_equal(bind(l, (struct sockaddr *)addr, sizeof *addr), 0);
    assert_int_equal(listen(l, 0), 0);
    return l;
}

/* Connects until the listener's queue is full; returns the sockets made. */
static int fill_backlog(const struct sockaddr_un *addr, int *socks, int max)
{
    int n = 0;
    while (n < max) {
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        assert_true(s >= 0);
        if (connect(s, (const struct sockaddr *)addr, sizeof *addr) != 0) {
            assert_true(errno == EAGAIN);
            close(s);
            break;
        }
        socks[n++] = s;
    }
    assert_true(n < max);
    return n;
}

static int call_connect_unix(eg_ctx *ctx, void *arg)
{
    const struct sockaddr_un *addr = arg;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0)
        return -errno;
    int rc = eg_connect(ctx, s, (const struct sockaddr *)addr, sizeof *addr);
    close(s);
    return rc;
}

typedef struct acceptor {
    pthread_t thread;
    int fd, delay_ms, got;
} acceptor;

static void *acceptor_main(void *arg)
{
    acceptor *ac = arg;
    sleep_ms(ac->delay_ms);
    ac->got = accept(ac->fd, NULL, NULL);
    return NULL;
}

static void test_connect_cancelled(void **state)
{
    (void)state;
    long live = eg_live_objects();
    struct sockaddr_un addr;
    int l = unix_listener(&addr);
    int socks[64];
    int n = fill_backlog(&addr, socks, 64);

    for (int nb = 0; nb < 2; nb++) {
        int s = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_true(s >= 0);
        set_nonblock(s, nb);
        eg_ctx *ctx = eg_with_cancel(NULL);
        assert_non_null(ctx);
        canceller lc;
        cancel_later(&lc, ctx, 30);
        assert_int_equal(eg_connect(ctx, s, (struct sockaddr *)&addr, sizeof addr),
                         -ECANCELED);
        canceller_join(&lc);
        assert_int_equal(is_nonblock(s), nb);
        assert_int_equal(eg_connect(ctx, s, (struct sockaddr *)&addr, sizeof addr),
                         -ECANCELED);
        eg_ctx_release(ctx);
        ctx = eg_with_timeout(NULL, MS(20));
        assert_non_null(ctx);
        assert_int_equal(eg_connect(ctx, s, (struct sockaddr *)&addr, sizeof addr),
                         -ETIMEDOUT);
        eg_ctx_release(ctx);
        close(s);
    }
    run_with_failing_sibling(call_connect_unix, &addr);

    /* Room comes later: the waiting connect succeeds. */
    acceptor ac = {.fd = l, .delay_ms = 30};
    assert_int_equal(pthread_create(&ac.thread, NULL, acceptor_main, &ac), 0);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    assert_true(s >= 0);
    assert_int_equal(
        eg_connect(eg_background(), s, (struct sockaddr *)&addr, sizeof addr), 0);
    pthread_join(ac.thread, NULL);
    assert_true(ac.got >= 0);
    close(ac.got);
    close(s);
    for (int i = 0; i < n; i++)
        close(socks[i]);
    close(l);
    assert_int_equal(eg_live_objects(), live);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        EG_TEST(test_sleep),
        EG_TEST(test_sleep_sibling),
        EG_TEST(test_cond_wait),
        EG_TEST(test_cond_wait_cancel_under_mutex),
        EG_TEST(test_cond_wait_sibling),
        EG_TEST(test_poll),
        EG_TEST(test_read_ready),
        EG_TEST(test_read_cancelled),
        EG_TEST(test_read_write_sibling),
        EG_TEST(test_write_blocks_and_cancels),
        EG_TEST(test_write_all),
        EG_TEST(test_regular_file_and_errors),
        EG_TEST(test_connect_accept),
        EG_TEST(test_accept_cancelled),
        EG_TEST(test_accept_sibling),
        EG_TEST(test_connect_cancelled),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
