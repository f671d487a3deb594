/*
 * test_curl.c - eg_curl_perform and eg_curl_err against a loopback server.
 *
 * The server is plain sockets on its own thread, independent of the library
 * under test. It serves one connection at a time and counts what it saw, so
 * tests assert on events (request received, connection closed by the
 * client) instead of on elapsed time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>

#include "testutil.h"

#include "eg/curl.h"
#include "fault.h"

/* memcheck does not follow the coroutine executor's stack switches (its
 * stacks are not registered with valgrind) and reports every switch, so
 * the coroutine cases are left to ASan and TSan there, as test_coro is. */
static bool coro_skipped(void)
{
    if (!RUNNING_ON_VALGRIND)
        return false;
    print_message("coroutine case skipped under valgrind\n");
    return true;
}

/* Present only in a library built with EG_FAULT_INJECTION. */
#pragma weak eg_fault_set

/* timerfd_create for the adapter (the core library never calls it): fails
 * with EMFILE while timerfd_fail is set, to take the adapter's fallback. */
static atomic_bool timerfd_fail;
static atomic_int timerfd_failed;

__attribute__((visibility("default"))) int timerfd_create(int clockid, int flags)
{
    if (atomic_load(&timerfd_fail)) {
        atomic_fetch_add(&timerfd_failed, 1);
        errno = EMFILE;
        return -1;
    }
    return (int)syscall(SYS_timerfd_create, clockid, flags);
}

/* ---- the loopback server ---------------------------------------------- */

enum server_mode {
    SERVER_SILENT, /* read the request, never answer, wait for EOF */
    SERVER_OK,     /* answer 200 "hello" and close */
};

struct server {
    enum server_mode mode;
    int listen_fd;
    int port;
    int stop_pipe[2]; /* readable when the server must stop */
    pthread_t thread;

    pthread_mutex_t mu; /* guards the counters below */
    pthread_cond_t cond;
    int accepted; /* connections accepted */
    int requests; /* complete request headers received */
    int eofs;     /* connections the client closed (recv returned 0) */
};

static const char ok_response[] = "HTTP/1.1 200 OK\r\n"
                                  "Content-Length: 5\r\n"
                                  "Connection: close\r\n"
                                  "\r\n"
                                  "hello";

static void server_count(struct server *s, int *counter)
{
    pthread_mutex_lock(&s->mu);
    (*counter)++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

static int server_get(struct server *s, int *counter)
{
    pthread_mutex_lock(&s->mu);
    int n = *counter;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* Blocks until *counter reaches n (the test's watchdog bounds the wait). */
static void server_wait(struct server *s, int *counter, int n)
{
    pthread_mutex_lock(&s->mu);
    while (*counter < n)
        pthread_cond_wait(&s->cond, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

/* Waits for fd to be readable. False when the server must stop. */
static bool server_poll(struct server *s, int fd)
{
    struct pollfd p[2] = {{.fd = fd, .events = POLLIN},
                          {.fd = s->stop_pipe[0], .events = POLLIN}};
    for (;;) {
        int n = poll(p, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            abort(); /* cmocka's asserts belong to the main thread */
        return p[1].revents == 0;
    }
}

/* Serves one connection: reads the request headers, then answers or waits
 * for the client to close. */
static void server_conn(struct server *s, int fd)
{
    char buf[4096];
    size_t len = 0;
    while (!memmem(buf, len, "\r\n\r\n", 4)) {
        if (!server_poll(s, fd) || len == sizeof buf)
            return;
        ssize_t n = recv(fd, buf + len, sizeof buf - len, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            /* Closed before its request was complete: a deadline may pass
             * before the client has sent it. */
            server_count(s, &s->eofs);
            return;
        }
        if (n < 0)
            return;
        len += (size_t)n;
    }
    server_count(s, &s->requests);

    if (s->mode == SERVER_OK) {
        /* A short send shows up as a failed transfer in the client. */
        ssize_t n = send(fd, ok_response, sizeof ok_response - 1, MSG_NOSIGNAL);
        (void)n;
        return;
    }
    /* Silent: the only way out is the client going away (or stop). */
    while (server_poll(s, fd)) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            server_count(s, &s->eofs);
            return;
        }
    }
}

static void *server_main(void *arg)
{
    struct server *s = arg;
    while (server_poll(s, s->listen_fd)) {
        int fd = accept(s->listen_fd, NULL, NULL);
        if (fd < 0)
            continue;
        server_count(s, &s->accepted);
        server_conn(s, fd);
        close(fd);
    }
    return NULL;
}

/* A socket bound to an ephemeral loopback port; listening if asked. */
static int loopback_socket(bool listening, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    if (listening)
        assert_int_equal(listen(fd, 1024), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

static void server_start(struct server *s, enum server_mode mode)
{
    memset(s, 0, sizeof *s);
    s->mode = mode;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    assert_int_equal(pipe(s->stop_pipe), 0);
    s->listen_fd = loopback_socket(true, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(struct server *s)
{
    assert_int_equal(write(s->stop_pipe[1], "x", 1), 1);
    pthread_join(s->thread, NULL);
    close(s->listen_fd);
    close(s->stop_pipe[0]);
    close(s->stop_pipe[1]);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
}

/* ---- client helpers ----------------------------------------------------- */

struct body {
    char data[64];
    size_t len;
};

static size_t body_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct body *b = arg;
    size_t n = size * nmemb;
    size_t room = sizeof b->data - 1 - b->len;
    memcpy(b->data + b->len, ptr, n < room ? n : room);
    b->len += n < room ? n : room;
    b->data[b->len] = '\0';
    return n;
}

static CURL *easy_for(int port, struct body *body)
{
    CURL *easy = curl_easy_init();
    assert_non_null(easy);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", port);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        memset(body, 0, sizeof *body);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, body_write);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, body);
    }
    return easy;
}

static void assert_ok_transfer(eg_ctx *ctx, CURL *easy, struct body *body)
{
    CURLcode rc = eg_curl_perform(ctx, easy);
    assert_int_equal(rc, CURLE_OK);
    assert_int_equal(eg_curl_err(ctx, rc), 0);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    assert_string_equal(body->data, "hello");
}

/* ---- tests -------------------------------------------------------------- */

static void test_ok_response(void **state)
{
    struct server s;
    server_start(&s, SERVER_OK);
    struct body body;
    CURL *easy = easy_for(s.port, &body);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);

    assert_ok_transfer(ctx, easy, &body);
    /* The same handle again: it was left out of any multi handle. */
    memset(&body, 0, sizeof body);
    assert_ok_transfer(ctx, easy, &body);
    assert_int_equal(server_get(&s, &s.requests), 2);

    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);
    server_stop(&s);
    assert_int_equal(eg_live_objects(), 0);
}

/* A context that can never be done has no fd: the transfer still runs. */
static void test_background_ctx(void **state)
{
    struct server s;
    server_start(&s, SERVER_OK);
    struct body body;
    CURL *easy = easy_for(s.port, &body);
    assert_ok_transfer(eg_background(), easy, &body);
    curl_easy_cleanup(easy);
    server_stop(&s);
}

struct canceller {
    struct server *server;
    eg_ctx *ctx;
};

static void *cancel_after_request(void *arg)
{
    struct canceller *c = arg;
    server_wait(c->server, &c->server->requests, 1);
    eg_cancel(c->ctx, 0);
    return NULL;
}

static void test_cancel_closes_connection(void **state)
{
    struct server s;
    server_start(&s, SERVER_SILENT);
    CURL *easy = easy_for(s.port, NULL);
    eg_ctx *ctx = eg_with_cancel(NULL);
    assert_non_null(ctx);
    struct canceller c = {&s, ctx};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_after_request, &c), 0);

    CURLcode rc = eg_curl_perform(ctx, easy);
    pthread_join(t, NULL);
    assert_int_equal(rc, CURLE_ABORTED_BY_CALLBACK);
    assert_int_equal(eg_curl_err(ctx, rc), -ECANCELED);
    /* The server sees the connection closed by the client. */
    server_wait(&s, &s.eofs, 1);
    assert_int_equal(server_get(&s, &s.requests), 1);

    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);
    server_stop(&s);
    assert_int_equal(eg_live_objects(), 0);
}

static void test_easy_reusable_after_abort(void **state)
{
    struct server silent, ok;
    server_start(&silent, SERVER_SILENT);
    server_start(&ok, SERVER_OK);
    struct body body;
    CURL *easy = easy_for(silent.port, &body);

    eg_ctx *ctx = eg_with_cancel(NULL);
    struct canceller c = {&silent, ctx};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_after_request, &c), 0);
    assert_int_equal(eg_curl_perform(ctx, easy), CURLE_ABORTED_BY_CALLBACK);
    pthread_join(t, NULL);
    eg_ctx_release(ctx);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", ok.port);
    curl_easy_setopt(easy, CURLOPT_URL, url);
    ctx = eg_with_cancel(NULL);
    assert_ok_transfer(ctx, easy, &body);
    eg_ctx_release(ctx);

    curl_easy_cleanup(easy);
    server_stop(&silent);
    server_stop(&ok);
}

static void test_deadline(void **state)
{
    struct server s;
    server_start(&s, SERVER_SILENT);
    CURL *easy = easy_for(s.port, NULL);
    eg_ctx *ctx = eg_with_timeout(NULL, MS(50));
    assert_non_null(ctx);

    CURLcode rc = eg_curl_perform(ctx, easy);
    assert_int_equal(rc, CURLE_ABORTED_BY_CALLBACK);
    assert_int_equal(eg_curl_err(ctx, rc), -ETIMEDOUT);
    server_wait(&s, &s.eofs, 1);

    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);
    server_stop(&s);
    assert_int_equal(eg_live_objects(), 0);
}

static void test_done_at_entry(void **state)
{
    /* A port nobody listens on: a started transfer would fail to connect. */
    int port;
    int fd = loopback_socket(false, &port);
    CURL *easy = easy_for(port, NULL);
    eg_ctx *ctx = eg_with_cancel(NULL);
    eg_cancel(ctx, -EIO);

    CURLcode rc = eg_curl_perform(ctx, easy);
    assert_int_equal(rc, CURLE_ABORTED_BY_CALLBACK);
    assert_int_equal(eg_curl_err(ctx, rc), -ECANCELED);
    assert_int_equal(eg_ctx_cause(ctx), -EIO);

    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);
    close(fd);
}

static void test_connection_refused(void **state)
{
    /* Bound but not listening: connect gets ECONNREFUSED, and the port
     * cannot be taken by anyone else while the test holds it. */
    int port;
    int fd = loopback_socket(false, &port);
    CURL *easy = easy_for(port, NULL);
    eg_ctx *ctx = eg_with_cancel(NULL);

    CURLcode rc = eg_curl_perform(ctx, easy);
    assert_int_equal(rc, CURLE_COULDNT_CONNECT);
    assert_int_equal(eg_curl_err(ctx, rc), -ECONNREFUSED);

    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);
    close(fd);
}

struct fetch {
    CURL *easy;
    CURLcode rc;
    int err;
};

static int fetch_task(eg_ctx *ctx, void *arg)
{
    struct fetch *f = arg;
    f->rc = eg_curl_perform(ctx, f->easy);
    f->err = eg_curl_err(ctx, f->rc);
    return f->err;
}

static int fail_after_request(eg_ctx *ctx, void *arg)
{
    struct server *s = arg;
    /* Until the sibling's transfer is running. Waiting in eg_sleep, not in
     * server_wait: a coroutine blocked in pthread_cond_wait would hold the
     * thread that must resume the sibling to send its request. */
    while (server_get(s, &s->requests) < 1)
        eg_sleep(ctx, 50 * EG_NSEC_PER_USEC);
    return eg_errorf(-EIO, "backend: HTTP 500");
}

static void test_group_sibling_aborted(void **state)
{
    struct server s;
    server_start(&s, SERVER_SILENT);
    struct fetch f = {.easy = easy_for(s.port, NULL)};
    eg_group *g = eg_group_new(NULL);
    assert_non_null(g);

    assert_int_equal(eg_go(g, fetch_task, &f), 0);
    assert_int_equal(eg_go(g, fail_after_request, &s), 0);
    assert_int_equal(eg_wait(g), -EIO);
    assert_string_equal(eg_group_errmsg(g), "backend: HTTP 500");
    assert_int_equal(eg_ctx_cause(eg_group_ctx(g)), -EIO);

    assert_int_equal(f.rc, CURLE_ABORTED_BY_CALLBACK);
    assert_int_equal(f.err, -ECANCELED);
    server_wait(&s, &s.eofs, 1);

    eg_group_free(g);
    curl_easy_cleanup(f.easy);
    server_stop(&s);
    assert_int_equal(eg_live_objects(), 0);
}

/* Many tasks, each with its own easy handle, on pool threads that keep
 * their multi handles between transfers. */
enum { MANY_TASKS = 8, MANY_ROUNDS = 10 };

struct many {
    int port;
    int done;
};

static int many_task(eg_ctx *ctx, void *arg)
{
    struct many *m = arg;
    struct body body;
    CURL *easy = easy_for(m->port, &body);
    int err = 0;
    for (int i = 0; i < MANY_ROUNDS && err == 0; i++) {
        memset(&body, 0, sizeof body);
        err = eg_curl_err(ctx, eg_curl_perform(ctx, easy));
        if (err == 0 && strcmp(body.data, "hello") != 0)
            err = -EIO;
    }
    curl_easy_cleanup(easy);
    if (err == 0)
        m->done = 1;
    return err;
}

static void test_many_transfers(void **state)
{
    struct server s;
    server_start(&s, SERVER_OK);
    struct many m[MANY_TASKS];
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < MANY_TASKS; i++) {
        m[i] = (struct many){.port = s.port};
        assert_int_equal(eg_go(g, many_task, &m[i]), 0);
    }
    assert_int_equal(eg_wait(g), 0);
    for (int i = 0; i < MANY_TASKS; i++)
        assert_int_equal(m[i].done, 1);
    assert_int_equal(server_get(&s, &s.requests), MANY_TASKS * MANY_ROUNDS);
    eg_group_free(g);
    server_stop(&s);
}

/* eg_curl_perform from inside a write callback of another transfer on the
 * same thread: the inner call must not use the outer call's multi handle. */
struct nested {
    eg_ctx *ctx;
    int port;
    CURLcode inner_rc;
    struct body inner_body;
};

static size_t nested_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct nested *n = arg;
    CURL *inner = easy_for(n->port, &n->inner_body);
    n->inner_rc = eg_curl_perform(n->ctx, inner);
    curl_easy_cleanup(inner);
    return size * nmemb;
}

static void test_nested_call(void **state)
{
    struct server s;
    server_start(&s, SERVER_OK);
    struct nested n = {
        .ctx = eg_with_cancel(NULL), .port = s.port, .inner_rc = CURLE_FAILED_INIT};
    CURL *outer = easy_for(s.port, NULL);
    curl_easy_setopt(outer, CURLOPT_WRITEFUNCTION, nested_write);
    curl_easy_setopt(outer, CURLOPT_WRITEDATA, &n);

    assert_int_equal(eg_curl_perform(n.ctx, outer), CURLE_OK);
    assert_int_equal(n.inner_rc, CURLE_OK);
    assert_string_equal(n.inner_body.data, "hello");

    curl_easy_cleanup(outer);
    eg_ctx_release(n.ctx);
    server_stop(&s);
}

/* When the context has no fd (EMFILE), transfers poll curl in short slices
 * and still notice cancellation and deadlines. */
static void test_no_ctx_fd(void **state)
{
    if (!eg_fault_set)
        skip(); /* needs -DEG_FAULT_INJECTION=ON */
    eg_fault_set(EG_FAULT_FD, -1);

    struct server silent, ok;
    server_start(&silent, SERVER_SILENT);
    server_start(&ok, SERVER_OK);
    eg_ctx *ctx = eg_with_cancel(NULL);
    struct canceller c = {&silent, ctx};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, cancel_after_request, &c), 0);
    CURL *easy = easy_for(silent.port, NULL);
    CURLcode rc = eg_curl_perform(ctx, easy);
    pthread_join(t, NULL);
    assert_int_equal(rc, CURLE_ABORTED_BY_CALLBACK);
    assert_int_equal(eg_curl_err(ctx, rc), -ECANCELED);
    server_wait(&silent, &silent.eofs, 1);
    assert_true(eg_ctx_fd(ctx) < 0); /* the fallback was taken */
    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);

    ctx = eg_with_timeout(NULL, MS(20));
    easy = easy_for(silent.port, NULL);
    rc = eg_curl_perform(ctx, easy);
    assert_int_equal(eg_curl_err(ctx, rc), -ETIMEDOUT);
    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);

    struct body body;
    ctx = eg_with_cancel(NULL);
    easy = easy_for(ok.port, &body);
    assert_ok_transfer(ctx, easy, &body);
    eg_ctx_release(ctx);
    curl_easy_cleanup(easy);

    eg_fault_set(EG_FAULT_FD, 0);
    server_stop(&silent);
    server_stop(&ok);
}

/* ---- many connections at once ------------------------------------------- */

/* A server of many concurrent connections on its own thread (poll(2) over
 * all of them). GATHER holds every answer until `hold` requests have
 * arrived, so a test that completes proves that many transfers were in
 * flight at once; SILENT never answers and counts the clients' closes. */
enum { MSERVER_CONNS = 1024 };

struct mserver {
    struct server s; /* mode, port, stop pipe and counters as above */
    int hold;
    int fds[MSERVER_CONNS];
    bool answered[MSERVER_CONNS];
    size_t lens[MSERVER_CONNS];
    char bufs[MSERVER_CONNS][1024];
};

static void mserver_answer(struct mserver *m, int i)
{
    ssize_t n = send(m->fds[i], ok_response, sizeof ok_response - 1, MSG_NOSIGNAL);
    (void)n;
    m->answered[i] = true;
}

static void mserver_close(struct mserver *m, int i)
{
    close(m->fds[i]);
    m->fds[i] = -1;
}

/* Reads what arrived on connection i; its request may now be complete. */
static void mserver_read(struct mserver *m, int i)
{
    struct server *s = &m->s;
    size_t room = sizeof m->bufs[i] - m->lens[i];
    ssize_t n = recv(m->fds[i], m->bufs[i] + m->lens[i], room, 0);
    if (n <= 0 || (size_t)n == room) {
        if (s->mode == SERVER_SILENT && n <= 0)
            server_count(s, &s->eofs);
        mserver_close(m, i);
        return;
    }
    bool had = memmem(m->bufs[i], m->lens[i], "\r\n\r\n", 4) != NULL;
    m->lens[i] += (size_t)n;
    if (had || !memmem(m->bufs[i], m->lens[i], "\r\n\r\n", 4))
        return;
    server_count(s, &s->requests);
    if (s->mode != SERVER_OK)
        return;
    if (server_get(s, &s->requests) < m->hold)
        return;
    for (int j = 0; j < MSERVER_CONNS; j++) {
        if (m->fds[j] >= 0 && !m->answered[j] &&
            memmem(m->bufs[j], m->lens[j], "\r\n\r\n", 4)) {
            mserver_answer(m, j);
            mserver_close(m, j);
        }
    }
}

static void *mserver_main(void *arg)
{
    struct mserver *m = arg;
    struct server *s = &m->s;
    static _Thread_local struct pollfd p[MSERVER_CONNS + 2];
    int map[MSERVER_CONNS + 2];
    for (;;) {
        nfds_t n = 0;
        p[n++] = (struct pollfd){.fd = s->stop_pipe[0], .events = POLLIN};
        p[n++] = (struct pollfd){.fd = s->listen_fd, .events = POLLIN};
        for (int i = 0; i < MSERVER_CONNS; i++) {
            if (m->fds[i] >= 0) {
                map[n] = i;
                p[n++] = (struct pollfd){.fd = m->fds[i], .events = POLLIN};
            }
        }
        if (poll(p, n, -1) < 0) {
            if (errno == EINTR)
                continue;
            abort();
        }
        if (p[0].revents)
            break;
        for (nfds_t k = 2; k < n; k++) {
            if (p[k].revents)
                mserver_read(m, map[k]);
        }
        if (p[1].revents) {
            int fd = accept(s->listen_fd, NULL, NULL);
            int i = 0;
            while (fd >= 0 && i < MSERVER_CONNS && m->fds[i] >= 0)
                i++;
            if (fd >= 0 && i == MSERVER_CONNS)
                abort(); /* more connections than the test makes */
            if (fd >= 0) {
                m->fds[i] = fd;
                m->lens[i] = 0;
                m->answered[i] = false;
                server_count(s, &s->accepted);
            }
        }
    }
    for (int i = 0; i < MSERVER_CONNS; i++) {
        if (m->fds[i] >= 0)
            mserver_close(m, i);
    }
    return NULL;
}

/* SERVER_OK answers once hold requests have arrived (then each at once);
 * SERVER_SILENT never. */
static struct mserver *mserver_start(enum server_mode mode, int hold)
{
    struct mserver *m = calloc(1, sizeof *m);
    assert_non_null(m);
    struct server *s = &m->s;
    s->mode = mode;
    m->hold = hold;
    for (int i = 0; i < MSERVER_CONNS; i++)
        m->fds[i] = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    assert_int_equal(pipe(s->stop_pipe), 0);
    s->listen_fd = loopback_socket(true, &s->port);
    assert_int_equal(pthread_create(&s->thread, NULL, mserver_main, m), 0);
    return m;
}

static void mserver_stop(struct mserver *m)
{
    server_stop(&m->s);
    free(m);
}

/* A group whose tasks run on executor e. */
static eg_group *group_on(eg_ctx *parent, eg_executor e)
{
    eg_group *g = eg_group_new(parent);
    assert_non_null(g);
    assert_int_equal(eg_group_set_executor(g, e), 0);
    return g;
}

enum { CONCURRENT = 200 };

struct conc {
    int port;
    atomic_bool *cancelled; /* set just before the test cancels */
    atomic_int *progress;   /* xferinfo calls of every transfer */
    CURLcode rc;
    bool ended_after_cancel;
    struct body body;
};

static int count_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
                          curl_off_t ultotal, curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    atomic_fetch_add((atomic_int *)arg, 1);
    return 0;
}

static int conc_task(eg_ctx *ctx, void *arg)
{
    struct conc *c = arg;
    CURL *easy = easy_for(c->port, &c->body);
    if (c->progress) {
        curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
        curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, count_progress);
        curl_easy_setopt(easy, CURLOPT_XFERINFODATA, c->progress);
    }
    c->rc = eg_curl_perform(ctx, easy);
    c->ended_after_cancel = c->cancelled && atomic_load(c->cancelled);
    curl_easy_cleanup(easy);
    return eg_curl_err(ctx, c->rc);
}

/* Many coroutines in eg_curl_perform at once: the server answers none of
 * them before it has every request. */
static void test_coro_many_concurrent(void **state)
{
    if (coro_skipped())
        return;
    struct mserver *m = mserver_start(SERVER_OK, CONCURRENT);
    struct conc *c = calloc(CONCURRENT, sizeof *c);
    eg_group *g = group_on(NULL, EG_EXEC_CORO);
    for (int i = 0; i < CONCURRENT; i++) {
        c[i].port = m->s.port;
        assert_int_equal(eg_go(g, conc_task, &c[i]), 0);
    }
    assert_int_equal(eg_wait(g), 0);
    for (int i = 0; i < CONCURRENT; i++) {
        assert_int_equal(c[i].rc, CURLE_OK);
        assert_string_equal(c[i].body.data, "hello");
    }
    assert_int_equal(server_get(&m->s, &m->s.requests), CONCURRENT);
    eg_group_free(g);
    free(c);
    mserver_stop(m);
    assert_live_back_to(0);
}

/* Starts n silent transfers on executor e in a group under *parent and
 * waits until the server has every request. */
static eg_group *start_silent(struct mserver *m, struct conc *c, int n, eg_executor e,
                              eg_ctx **parent, atomic_bool *cancelled,
                              atomic_int *progress)
{
    *parent = eg_with_cancel(NULL);
    eg_group *g = group_on(*parent, e);
    for (int i = 0; i < n; i++) {
        c[i] = (struct conc){
            .port = m->s.port, .cancelled = cancelled, .progress = progress};
        assert_int_equal(eg_go(g, conc_task, &c[i]), 0);
    }
    server_wait(&m->s, &m->s.requests, n);
    return g;
}

/* Cancels the group of start_silent and checks that the cancel, and
 * nothing else, ended every transfer, each closing its connection. */
static void cancel_silent(struct mserver *m, struct conc *c, int n, eg_group *g,
                          eg_ctx *parent, atomic_bool *cancelled)
{
    atomic_store(cancelled, true);
    eg_cancel(parent, 0);
    assert_int_equal(eg_wait(g), -ECANCELED);
    for (int i = 0; i < n; i++) {
        assert_int_equal(c[i].rc, CURLE_ABORTED_BY_CALLBACK);
        assert_true(c[i].ended_after_cancel);
    }
    server_wait(&m->s, &m->s.eofs, n);
    eg_group_free(g);
    eg_ctx_release(parent);
}

/* n transfers on executor e parked on a silent server, then cancelled:
 * each ends after the cancel, aborted, and the server sees n closes. */
static void cancel_parked(eg_executor e, int n)
{
    struct mserver *m = mserver_start(SERVER_SILENT, 0);
    struct conc *c = calloc((size_t)n, sizeof *c);
    atomic_bool cancelled = false;
    eg_ctx *parent;
    eg_group *g = start_silent(m, c, n, e, &parent, &cancelled, NULL);
    cancel_silent(m, c, n, g, parent, &cancelled);
    free(c);
    mserver_stop(m);
}

/* A cancel ends all the parked transfers: the server never answers, so
 * only the cancel can have ended them, and none ended before it. */
static void test_coro_cancel_all(void **state)
{
    if (coro_skipped())
        return;
    cancel_parked(EG_EXEC_CORO, CONCURRENT);
    assert_live_back_to(0);
}

/* Coroutines parked in eg_curl_perform leave their carriers to others: a
 * sibling that yields YIELDS times meanwhile sees fewer than YIELDS runs of
 * the waiting transfers in all (libcurl calls the progress callback each
 * time it runs one; a transfer that polled in slices would run once per
 * slice, that is per yield of the sibling on its carrier). */
enum { PARKED = 50, YIELDS = 2000 };

struct yielder {
    atomic_int *progress;
    int before, after;
    atomic_int done;
};

static int yield_task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    struct yielder *y = arg;
    y->before = atomic_load(y->progress);
    for (int i = 0; i < YIELDS; i++)
        eg_yield();
    y->after = atomic_load(y->progress);
    atomic_store(&y->done, 1);
    return 0;
}

static void test_coro_parked_transfers_idle(void **state)
{
    if (coro_skipped())
        return;
    struct mserver *m = mserver_start(SERVER_SILENT, 0);
    struct conc c[PARKED];
    atomic_bool cancelled = false;
    atomic_int progress = 0;
    eg_ctx *parent;
    eg_group *g =
        start_silent(m, c, PARKED, EG_EXEC_CORO, &parent, &cancelled, &progress);

    struct yielder y = {.progress = &progress};
    assert_int_equal(eg_go(g, yield_task, &y), 0);
    assert_true(wait_for_int(&y.done, 1));
    assert_true(y.after - y.before < YIELDS);

    cancel_silent(m, c, PARKED, g, parent, &cancelled);
    mserver_stop(m);
    assert_live_back_to(0);
}

/* libcurl's own timeout comes from its timer (CURLMOPT_TIMERFUNCTION). */
static int curl_timeout_task(eg_ctx *ctx, void *arg)
{
    struct conc *c = arg;
    CURL *easy = easy_for(c->port, NULL);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 50L);
    c->rc = eg_curl_perform(ctx, easy);
    curl_easy_cleanup(easy);
    return 0;
}

static void curl_timeout_on(eg_executor e)
{
    struct mserver *m = mserver_start(SERVER_SILENT, 0);
    struct conc c = {.port = m->s.port};
    eg_ctx *ctx = eg_with_cancel(NULL);
    eg_group *g = group_on(ctx, e);
    assert_int_equal(eg_go(g, curl_timeout_task, &c), 0);
    assert_int_equal(eg_wait(g), 0);
    assert_int_equal(c.rc, CURLE_OPERATION_TIMEDOUT);
    assert_int_equal(eg_curl_err(ctx, c.rc), -ETIMEDOUT);
    assert_int_equal(eg_ctx_err(ctx), 0);
    server_wait(&m->s, &m->s.eofs, 1);
    eg_group_free(g);
    eg_ctx_release(ctx);
    mserver_stop(m);
}

static void test_curl_timeout(void **state)
{
    curl_timeout_on(EG_EXEC_THREADS);
    if (!coro_skipped())
        curl_timeout_on(EG_EXEC_CORO);
}

/* Without a timerfd (EMFILE) new multi handles poll: transfers still work,
 * time out and end on a cancel. A fresh thread has no cached handle; of
 * many concurrent coroutines, those beyond the carriers' cached handles
 * need a new one. */
static void *ok_transfer_thread(void *arg)
{
    struct conc *c = arg;
    conc_task(eg_background(), c);
    return NULL;
}

static void fallback_on(eg_executor e, int n)
{
    struct mserver *m = mserver_start(SERVER_OK, 1);
    struct conc ok = {.port = m->s.port};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, ok_transfer_thread, &ok), 0);
    pthread_join(t, NULL);
    assert_int_equal(ok.rc, CURLE_OK);
    assert_string_equal(ok.body.data, "hello");
    mserver_stop(m);

    curl_timeout_on(e);

    cancel_parked(e, n);
}

static void test_no_timerfd(void **state)
{
    atomic_store(&timerfd_fail, true);
    int before = atomic_load(&timerfd_failed);
    fallback_on(EG_EXEC_THREADS, 4);
    if (!coro_skipped())
        fallback_on(EG_EXEC_CORO, 16);
    atomic_store(&timerfd_fail, false);
    assert_true(atomic_load(&timerfd_failed) > before);
    assert_live_back_to(0);
}

static void test_bad_arguments(void **state)
{
    CURL *easy = curl_easy_init();
    assert_int_equal(eg_curl_perform(NULL, easy), CURLE_BAD_FUNCTION_ARGUMENT);
    assert_int_equal(eg_curl_perform(eg_background(), NULL), CURLE_BAD_FUNCTION_ARGUMENT);
    curl_easy_cleanup(easy);
}

static void test_err_mapping(void **state)
{
    assert_int_equal(eg_curl_err(NULL, CURLE_OK), 0);
    assert_int_equal(eg_curl_err(NULL, CURLE_OPERATION_TIMEDOUT), -ETIMEDOUT);
    assert_int_equal(eg_curl_err(NULL, CURLE_COULDNT_CONNECT), -ECONNREFUSED);
    assert_int_equal(eg_curl_err(NULL, CURLE_COULDNT_RESOLVE_HOST), -EHOSTUNREACH);
    assert_int_equal(eg_curl_err(NULL, CURLE_OUT_OF_MEMORY), -ENOMEM);
    assert_int_equal(eg_curl_err(NULL, CURLE_RECV_ERROR), -EIO);
    assert_int_equal(eg_curl_err(NULL, CURLE_HTTP_RETURNED_ERROR), -EIO);
    /* Aborted by a callback of the caller's while ctx is live. */
    assert_int_equal(eg_curl_err(eg_background(), CURLE_ABORTED_BY_CALLBACK), -ECANCELED);
    assert_int_equal(eg_curl_err(NULL, CURLE_ABORTED_BY_CALLBACK), -ECANCELED);
}

int main(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        EG_TEST(test_ok_response),
        EG_TEST(test_background_ctx),
        EG_TEST(test_cancel_closes_connection),
        EG_TEST(test_easy_reusable_after_abort),
        EG_TEST(test_deadline),
        EG_TEST(test_done_at_entry),
        EG_TEST(test_connection_refused),
        EG_TEST(test_group_sibling_aborted),
        EG_TEST(test_many_transfers),
        EG_TEST(test_nested_call),
        EG_TEST(test_no_ctx_fd),
        EG_TEST(test_coro_many_concurrent),
        EG_TEST(test_coro_cancel_all),
        EG_TEST(test_coro_parked_transfers_idle),
        EG_TEST(test_curl_timeout),
        EG_TEST(test_no_timerfd),
        EG_TEST(test_bad_arguments),
        EG_TEST(test_err_mapping),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}
