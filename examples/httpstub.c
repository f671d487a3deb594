/*
 * httpstub.c - a tiny HTTP/1.1 server on a loopback port, for the examples.
 *
 * Structure: the stub owns a group. One task accepts connections and
 * starts one task per connection; httpstub_stop cancels the group's
 * context, which ends the accept and every wait, then frees the group
 * (waiting for the tasks). Each connection task:
 *
 *   read the request headers           eg_read on the group's context
 *   wait until the answer is due       eg_poll on a child context whose
 *                                      deadline is the latency
 *   answer, or record that the client  the poll wakes early when the
 *   closed first                       client closes (EOF is readable)
 *
 * Records of finished connections are queued under mu for httpstub_next.
 */
#include "httpstub.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <errgroup.h>

#define LOG_MAX 64 /* records kept; older ones are dropped when full */
#define REQUEST_MAX 8192

struct httpstub {
    int status;
    int64_t latency_ns;
    int listen_fd;
    int port;
    eg_group *group; /* the accept task and one task per connection */

    pthread_mutex_t mu; /* guards the record queue */
    pthread_cond_t cond;
    httpstub_record log[LOG_MAX];
    size_t log_head, log_count;
    long counts[HTTPSTUB_STOPPED + 1]; /* every record, by outcome */
    long pending;                      /* requests read whose answer is not yet due */
};

struct conn {
    httpstub *stub;
    int fd;
};

const char *httpstub_outcome_name(enum httpstub_outcome o)
{
    switch (o) {
    case HTTPSTUB_ANSWERED:
        return "answered";
    case HTTPSTUB_CLIENT_CLOSED:
        return "client closed";
    case HTTPSTUB_NO_REQUEST:
        return "no request";
    case HTTPSTUB_STOPPED:
        return "stopped";
    }
    return "?";
}

static void add_pending(httpstub *s, long d)
{
    pthread_mutex_lock(&s->mu);
    s->pending += d;
    pthread_mutex_unlock(&s->mu);
}

static void record(httpstub *s, const httpstub_record *r)
{
    pthread_mutex_lock(&s->mu);
    if (s->log_count == LOG_MAX) {
        s->log_head = (s->log_head + 1) % LOG_MAX;
        s->log_count--;
    }
    s->log[(s->log_head + s->log_count) % LOG_MAX] = *r;
    s->log_count++;
    s->counts[r->outcome]++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

/* Reads until the end of the request headers. A GET has no body, so that
 * is the whole request. Returns 0 and the request's path in path[len], or
 * an error (the client closed: -EPIPE). */
static int read_request(eg_ctx *ctx, int fd, char *path, size_t path_len)
{
    char buf[REQUEST_MAX];
    size_t len = 0;
    path[0] = '\0';
    while (!memmem(buf, len, "\r\n\r\n", 4)) {
        if (len == sizeof buf)
            return -E2BIG;
        ssize_t n = eg_read(ctx, fd, buf + len, sizeof buf - len);
        if (n == 0)
            return -EPIPE;
        if (n < 0)
            return (int)n;
        len += (size_t)n;
    }
    /* "GET /path HTTP/1.1" */
    const char *sp = memchr(buf, ' ', len);
    if (sp) {
        const char *end = buf + len;
        size_t n = 0;
        while (sp + 1 + n < end && sp[1 + n] != ' ' && sp[1 + n] != '\r')
            n++;
        if (n >= path_len)
            n = path_len - 1;
        memcpy(path, sp + 1, n);
        path[n] = '\0';
    }
    return 0;
}

/* Waits until the answer is due, watching the connection meanwhile: an
 * HTTP/1.1 client sends nothing more before its answer, so the socket
 * turns readable only when the client closes it (EOF or reset). */
static enum httpstub_outcome wait_until_due(eg_ctx *ctx, httpstub *s, int fd)
{
    eg_ctx *due = eg_with_timeout(ctx, s->latency_ns);
    if (!due)
        return HTTPSTUB_STOPPED;
    int rc = eg_poll(due, fd, POLLIN);
    eg_ctx_release(due);
    if (rc == -ETIMEDOUT)
        return HTTPSTUB_ANSWERED; /* the deadline passed: time to answer */
    if (rc > 0)
        return HTTPSTUB_CLIENT_CLOSED;
    return HTTPSTUB_STOPPED;
}

/* The body is "ok <path>\n" (or "error <path>\n"): a client can check it
 * got the answer to its own request. */
static void answer(eg_ctx *ctx, httpstub *s, int fd, const char *path)
{
    const char *reason = s->status < 400 ? "OK" : "Internal Server Error";
    char body[320];
    snprintf(body, sizeof body, "%s %s\n", s->status < 400 ? "ok" : "error", path);
    char msg[640];
    int len = snprintf(msg, sizeof msg,
                       "HTTP/1.1 %d %s\r\n"
                       "Content-Type: text/plain\r\n"
                       "Content-Length: %zu\r\n"
                       "Connection: close\r\n"
                       "\r\n"
                       "%s",
                       s->status, reason, strlen(body), body);
    /* A client gone meanwhile is not the stub's problem. */
    (void)eg_write_all(ctx, fd, msg, (size_t)len);
}

static int serve_conn(eg_ctx *ctx, void *arg)
{
    struct conn *c = arg;
    httpstub *s = c->stub;
    httpstub_record r = {.outcome = HTTPSTUB_NO_REQUEST};

    char path[256];
    if (read_request(ctx, c->fd, path, sizeof path) == 0) {
        int64_t received = eg_now();
        add_pending(s, 1);
        r.outcome = wait_until_due(ctx, s, c->fd);
        add_pending(s, -1);
        r.after_ns = eg_now() - received;
        if (r.outcome == HTTPSTUB_ANSWERED)
            answer(ctx, s, c->fd, path);
    } else if (eg_ctx_done(ctx)) {
        r.outcome = HTTPSTUB_STOPPED;
    }
    close(c->fd);
    free(c);
    record(s, &r);
    return 0; /* a failed connection must not stop the stub */
}

static int accept_loop(eg_ctx *ctx, void *arg)
{
    httpstub *s = arg;
    for (;;) {
        int fd = eg_accept(ctx, s->listen_fd, NULL, NULL);
        if (fd < 0) {
            if (eg_ctx_done(ctx))
                return 0; /* httpstub_stop */
            if (fd == -EMFILE || fd == -ENFILE)
                eg_sleep(ctx, 10 * EG_NSEC_PER_MSEC);
            continue; /* also -ECONNABORTED, -EINTR */
        }
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        *c = (struct conn){.stub = s, .fd = fd};
        if (eg_go(s->group, serve_conn, c) != 0) {
            close(fd);
            free(c);
        }
    }
}

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 1024) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

int httpstub_start(httpstub **out, int status, int64_t latency_ns)
{
    httpstub *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->status = status;
    s->latency_ns = latency_ns;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);

    int err = 0;
    s->listen_fd = listen_loopback(&s->port);
    if (s->listen_fd < 0) {
        err = s->listen_fd;
    } else if (!(s->group = eg_group_new(NULL))) {
        err = -ENOMEM;
    } else {
        err = eg_go(s->group, accept_loop, s);
    }
    if (err != 0) {
        eg_group_free(s->group);
        if (s->listen_fd >= 0)
            close(s->listen_fd);
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->mu);
        free(s);
        return err;
    }
    *out = s;
    return 0;
}

int httpstub_port(const httpstub *s)
{
    return s->port;
}

int httpstub_next(httpstub *s, httpstub_record *r, int64_t timeout_ns)
{
    int64_t deadline = eg_now() + timeout_ns;
    int err = 0;
    pthread_mutex_lock(&s->mu);
    while (s->log_count == 0 && err == 0)
        err = eg_cond_timedwait(eg_background(), &s->cond, &s->mu, deadline);
    if (s->log_count > 0) {
        *r = s->log[s->log_head];
        s->log_head = (s->log_head + 1) % LOG_MAX;
        s->log_count--;
        err = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return err;
}

void httpstub_counts(httpstub *s, long counts[HTTPSTUB_STOPPED + 1])
{
    pthread_mutex_lock(&s->mu);
    memcpy(counts, s->counts, sizeof s->counts);
    pthread_mutex_unlock(&s->mu);
}

long httpstub_pending(httpstub *s)
{
    pthread_mutex_lock(&s->mu);
    long n = s->pending;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void httpstub_stop(httpstub *s)
{
    if (!s)
        return;
    eg_cancel(eg_group_ctx(s->group), 0);
    eg_group_free(s->group);
    close(s->listen_fd);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}
