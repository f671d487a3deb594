/*
 * uv_fanout.c - an HTTP server on libuv whose handler fans out to three
 * backends through a group, without ever blocking the event loop.
 *
 *   GET /fanout/ID   calls backends A, B and C (GET /A/ID, ...) through a
 *                    group whose tasks use eg_curl_perform, and answers
 *                    "ID A:ok /A/ID B:ok /B/ID C:ok /C/ID\n"
 *   GET /slow/ID     the same against backends that take 60 s: a client
 *                    that gives up first closes its connection, and the
 *                    server cancels the request's group, which closes the
 *                    three backend connections
 *   GET /stats       counters: requests, answered, cancelled (by a client
 *                    disconnect), the backends' aborted connections, the
 *                    slow backends' requests waiting for an answer, and
 *                    the event loop's worst lag in microseconds
 *                    (/stats?reset: then starts measuring the lag afresh)
 *
 * The loop thread never waits for a group. Per request:
 *
 *   loop thread                       pool threads
 *   -----------                       ------------
 *   request read -> eg_group_new,
 *   three eg_go, eg_wait_async  --->  tasks: eg_curl_perform each
 *                                     last task returns: the library posts
 *                                     on_done to the pool; it publishes the
 *                                     result and calls uv_async_send
 *   async_cb: answer, eg_group_free <---
 *   client EOF before that: eg_cancel(group ctx) -> transfers abort
 *
 * The backends are in-process stubs (httpstub.c) on loopback ports. A uv
 * timer that should fire every millisecond measures how late it runs: the
 * loop's lag.
 *
 * usage: uv_fanout [--port N]   (0 or none: an ephemeral port; the first
 * line on stdout is "listening on 127.0.0.1:PORT")
 */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <uv.h>

#include <errgroup.h>
#include <eg/curl.h>

#include "httpstub.h"

#define NBACKENDS 3
#define REQUEST_MAX 4096
#define BODY_MAX 128
#define FAST_NS (20 * EG_NSEC_PER_MSEC)
#define SLOW_NS (60 * EG_NSEC_PER_SEC)
#define REQUEST_TIMEOUT_NS (120 * EG_NSEC_PER_SEC)

static const char *const names[NBACKENDS] = {"A", "B", "C"};
static httpstub *fast[NBACKENDS], *slow[NBACKENDS];

static struct {
    long requests, answered, cancelled;
    uint64_t max_lag_ns;
} stats;

/* ---- one backend call (a task, on a pool thread) ---------------------------- */

struct call {
    char url[256];
    char body[BODY_MAX];
    size_t len;
};

static size_t keep_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct call *c = arg;
    size_t n = size * nmemb;
    size_t room = sizeof c->body - 1 - c->len;
    memcpy(c->body + c->len, ptr, n < room ? n : room);
    c->len += n < room ? n : room;
    c->body[c->len] = '\0';
    return n;
}

static int call_task(eg_ctx *ctx, void *arg)
{
    struct call *c = arg;
    CURL *easy = curl_easy_init();
    if (!easy)
        return -ENOMEM;
    curl_easy_setopt(easy, CURLOPT_URL, c->url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, keep_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
    CURLcode rc = eg_curl_perform(ctx, easy);
    long status = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(easy);
    if (rc != CURLE_OK)
        return eg_errorf(eg_curl_err(ctx, rc), "%s: %s", c->url, curl_easy_strerror(rc));
    if (status != 200)
        return eg_errorf(-EIO, "%s: HTTP %ld", c->url, status);
    return 0;
}

/* ---- connections and requests (loop thread) ----------------------------------- */

struct request;

struct conn {
    uv_tcp_t tcp;
    char buf[REQUEST_MAX];
    size_t len;
    bool have_request; /* the headers are in; later bytes are ignored */
    bool closing;
    struct request *req; /* in flight, or NULL */
};

struct request {
    struct conn *conn; /* NULL once the client is gone */
    eg_group *g;
    uv_async_t async;
    char id[64];
    struct call calls[NBACKENDS];
    /* Written by on_done on a pool thread, read by async_cb: done's
     * release/acquire orders err (and, through the group, the calls). */
    int err;
    atomic_int done;
    char errmsg[EG_ERRMSG_MAX];
};

static void free_conn(uv_handle_t *h)
{
    free(h->data);
}

static void close_conn(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->req) {
        c->req->conn = NULL;
        c->req = NULL;
    }
    uv_close((uv_handle_t *)&c->tcp, free_conn);
}

struct write_req {
    uv_write_t w;
    struct conn *conn;
    char data[];
};

static void after_write(uv_write_t *w, int status)
{
    (void)status;
    struct write_req *wr = (struct write_req *)w;
    close_conn(wr->conn);
    free(wr);
}

/* Sends a whole answer, then closes the connection. */
static void respond(struct conn *c, int status, const char *body)
{
    const char *reason = status == 200   ? "OK"
                         : status == 404 ? "Not Found"
                                         : "Bad Gateway";
    size_t blen = strlen(body);
    struct write_req *wr = malloc(sizeof *wr + blen + 160);
    if (!wr) {
        close_conn(c);
        return;
    }
    int n = snprintf(wr->data, blen + 160,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, reason, blen, body);
    wr->conn = c;
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)n);
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, after_write) != 0) {
        free(wr);
        close_conn(c);
    }
}

static void free_request(uv_handle_t *h)
{
    free(h->data);
}

/* On the loop thread, once on_done has published the group's result. */
static void async_cb(uv_async_t *a)
{
    struct request *r = a->data;
    if (!atomic_load_explicit(&r->done, memory_order_acquire))
        return;          /* cannot happen: uv_async_send follows the store */
    eg_group_free(r->g); /* idle: returns at once */
    if (r->conn) {
        char body[NBACKENDS * (BODY_MAX + 8) + 64];
        if (r->err) {
            snprintf(body, sizeof body, "%s error: %s\n", r->id, r->errmsg);
            respond(r->conn, 502, body);
        } else {
            size_t n = (size_t)snprintf(body, sizeof body, "%s", r->id);
            for (int i = 0; i < NBACKENDS; i++) {
                struct call *c = &r->calls[i];
                size_t len = strcspn(c->body, "\n");
                n += (size_t)snprintf(body + n, sizeof body - n, " %s:%.*s", names[i],
                                      (int)len, c->body);
            }
            snprintf(body + n, sizeof body - n, "\n");
            respond(r->conn, 200, body);
        }
        r->conn->req = NULL;
        stats.answered++;
    }
    uv_close((uv_handle_t *)&r->async, free_request);
}

/* On a pool thread (eg_wait_async), once every task has returned. */
static void on_done(eg_group *g, int err, void *arg)
{
    struct request *r = arg;
    r->err = err;
    if (err)
        snprintf(r->errmsg, sizeof r->errmsg, "%s", eg_group_errmsg(g));
    atomic_store_explicit(&r->done, 1, memory_order_release);
    uv_async_send(&r->async); /* last touch of r on this thread */
}

static void start_request(struct conn *c, bool use_slow, const char *id)
{
    struct request *r = calloc(1, sizeof *r);
    eg_ctx *deadline = eg_with_timeout(NULL, REQUEST_TIMEOUT_NS);
    if (r)
        r->g = eg_group_new(deadline);
    eg_ctx_release(deadline); /* the group's context keeps its parent */
    if (!r || !r->g) {
        free(r);
        respond(c, 502, "out of memory\n");
        return;
    }
    stats.requests++;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->conn = c;
    c->req = r;
    r->async.data = r;
    uv_async_init(c->tcp.loop, &r->async, async_cb);
    for (int i = 0; i < NBACKENDS; i++) {
        httpstub *s = use_slow ? slow[i] : fast[i];
        snprintf(r->calls[i].url, sizeof r->calls[i].url, "http://127.0.0.1:%d/%s/%s",
                 httpstub_port(s), names[i], r->id);
        int err = eg_go(r->g, call_task, &r->calls[i]);
        if (err) {
            eg_cancel(eg_group_ctx(r->g), err);
            break;
        }
    }
    eg_wait_async(r->g, on_done, r); /* cannot fail: the first for r->g */
}

static void answer_stats(struct conn *c, bool reset)
{
    long aborted = 0, pending = 0;
    for (int i = 0; i < NBACKENDS; i++) {
        pending += httpstub_pending(slow[i]);
        long counts[HTTPSTUB_STOPPED + 1];
        httpstub_counts(slow[i], counts);
        aborted += counts[HTTPSTUB_CLIENT_CLOSED];
        httpstub_counts(fast[i], counts);
        aborted += counts[HTTPSTUB_CLIENT_CLOSED];
    }
    char body[256];
    snprintf(body, sizeof body,
             "requests=%ld answered=%ld cancelled=%ld backend_aborted=%ld "
             "slow_pending=%ld max_lag_us=%llu\n",
             stats.requests, stats.answered, stats.cancelled, aborted, pending,
             (unsigned long long)(stats.max_lag_ns / 1000));
    if (reset)
        stats.max_lag_ns = 0;
    respond(c, 200, body);
}

/* "GET /path HTTP/1.1..." in c->buf: route it. */
static void handle(struct conn *c)
{
    char path[256] = "";
    if (sscanf(c->buf, "GET %255s HTTP/", path) != 1) {
        respond(c, 404, "bad request\n");
        return;
    }
    if (strncmp(path, "/fanout/", 8) == 0 && path[8])
        start_request(c, false, path + 8);
    else if (strncmp(path, "/slow/", 6) == 0 && path[6])
        start_request(c, true, path + 6);
    else if (strcmp(path, "/stats") == 0 || strcmp(path, "/stats?reset") == 0)
        answer_stats(c, path[6] == '?');
    else
        respond(c, 404, "not found\n");
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)hint;
    struct conn *c = h->data;
    static char scratch[512]; /* after the request: read only to see EOF */
    if (c->have_request || c->len + 1 >= sizeof c->buf)
        *buf = uv_buf_init(scratch, sizeof scratch);
    else
        *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - 1 - c->len));
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = s->data;
    if (n < 0) {
        /* The client closed (or reset) its connection. */
        if (c->req) {
            eg_cancel(eg_group_ctx(c->req->g), -ECANCELED);
            stats.cancelled++;
        }
        close_conn(c);
        return;
    }
    if (c->have_request || n == 0)
        return;
    c->len += (size_t)n;
    c->buf[c->len] = '\0';
    if (strstr(c->buf, "\r\n\r\n")) {
        c->have_request = true;
        handle(c); /* keeps reading, to notice a client that gives up */
    } else if (c->len + 1 >= sizeof c->buf) {
        c->have_request = true;
        respond(c, 404, "request too large\n");
    }
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb) != 0)
        close_conn(c);
}

/* ---- loop lag ------------------------------------------------------------------ */

static uint64_t lag_last;

static void lag_cb(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_hrtime();
    uint64_t lag = now - lag_last > 1000000 ? now - lag_last - 1000000 : 0;
    if (lag_last && lag > stats.max_lag_ns)
        stats.max_lag_ns = lag;
    lag_last = now;
}

static void on_signal(uv_signal_t *s, int sig)
{
    (void)sig;
    uv_stop(s->loop);
}

int main(int argc, char **argv)
{
    int port = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: uv_fanout [--port N]\n");
            return 2;
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    for (int i = 0; i < NBACKENDS; i++) {
        int err = httpstub_start(&fast[i], 200, FAST_NS);
        if (!err)
            err = httpstub_start(&slow[i], 200, SLOW_NS);
        if (err) {
            fprintf(stderr, "uv_fanout: cannot start a backend: %s\n", eg_strerror(err));
            return 1;
        }
    }

    uv_loop_t *loop = uv_default_loop();
    uv_tcp_t server;
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", port, &addr);
    uv_tcp_init(loop, &server);
    int rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server, 1024, on_connection);
    if (rc != 0) {
        fprintf(stderr, "uv_fanout: listen: %s\n", uv_strerror(rc));
        return 1;
    }
    struct sockaddr_in bound;
    int len = sizeof bound;
    uv_tcp_getsockname(&server, (struct sockaddr *)&bound, &len);
    printf("listening on 127.0.0.1:%d\n", ntohs(bound.sin_port));
    fflush(stdout);

    uv_timer_t lag;
    uv_timer_init(loop, &lag);
    uv_timer_start(&lag, lag_cb, 1, 1);
    uv_signal_t sigterm, sigint;
    uv_signal_init(loop, &sigterm);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(loop, &sigint);
    uv_signal_start(&sigint, on_signal, SIGINT);

    uv_run(loop, UV_RUN_DEFAULT);

    printf("max loop lag %llu us over %ld requests\n",
           (unsigned long long)(stats.max_lag_ns / 1000), stats.requests);
    /* Requests may still be in flight (their groups hold curl handles):
     * exit without tearing down what they use. */
    fflush(stdout);
    _Exit(0);
}
