/*
 * redis.c - hiredis commands that listen to a context.
 *
 * The pattern (see "Wrapping any client library that exposes its socket" in
 * eg/io.h): hiredis does the protocol, this file does the waiting. Each
 * call loops
 *   take a reply hiredis already parsed (redisGetReplyFromReader)
 *   -> write what is queued (redisBufferWrite)
 *   -> eg_poll(ctx, c->fd, POLLIN [| POLLOUT while output is queued])
 *   -> read what arrived (redisBufferRead)
 * until a reply is complete. Taking the buffered reply first matters: one
 * read may bring several pipelined replies, and the socket then stays
 * silent while they wait in hiredis's reader.
 *
 * The connect is ours (socket + eg_connect), then the fd goes to hiredis
 * with redisConnectFd: Debian's hiredis 0.14 has no connect a context can
 * interrupt.
 *
 * The "unusable" mark is c->err (see eg/redis.h): once set, neither this
 * file nor hiredis uses the context again. A cancelled call also shuts the
 * socket down (shutdown, not close: the fd stays hiredis's to close in
 * redisFree), so the server drops the client at once.
 *
 * Only the public API of the library is used here.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "eg/group.h"
#include "eg/io.h"
#include "eg/redis.h"

/* ---- connect ------------------------------------------------------------- */

static int connect_addr(eg_ctx *ctx, const struct addrinfo *ai, int *fd_out)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0)
        return -errno;
    int rc = eg_connect(ctx, fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    *fd_out = fd;
    return 0;
}

redisContext *eg_redis_connect(eg_ctx *ctx, const char *host, int port, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    if (!ctx || !host || port < 1 || port > 65535) {
        *err = -EINVAL;
        return NULL;
    }
    int rc = eg_ctx_err(ctx);
    if (rc < 0) {
        *err = rc;
        return NULL;
    }

    char service[8];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    int gai = getaddrinfo(host, service, &hints, &list);
    if (gai != 0) {
        *err = eg_errorf(gai == EAI_MEMORY ? -ENOMEM : -EHOSTUNREACH, "redis %s:%d: %s",
                         host, port, gai_strerror(gai));
        return NULL;
    }
    int fd = -1;
    rc = -EHOSTUNREACH;
    for (const struct addrinfo *ai = list; ai; ai = ai->ai_next) {
        rc = connect_addr(ctx, ai, &fd);
        if (rc == 0 || eg_ctx_done(ctx))
            break;
    }
    freeaddrinfo(list);
    if (rc < 0) {
        *err = eg_errorf(rc, "redis %s:%d: %s", host, port, eg_strerror(rc));
        return NULL;
    }

    redisContext *c = redisConnectFd(fd);
    if (!c || c->err) {
        if (c)
            redisFree(c); /* closes fd */
        else
            close(fd);
        *err = eg_errorf(-ENOMEM, "redis %s:%d: out of memory", host, port);
        return NULL;
    }
    c->flags &= ~REDIS_BLOCK;
    *err = 0;
    return c;
}

/* ---- errors and the unusable mark ---------------------------------------- */

/* hiredis set c->err during the call that just failed: its errno. sys_err
 * is errno right after the failing hiredis call (for REDIS_ERR_IO). */
static int failed(redisContext *c, int sys_err)
{
    int rc;
    switch (c->err) {
    case REDIS_ERR_EOF:
        rc = -ECONNRESET;
        break;
    case REDIS_ERR_PROTOCOL:
        rc = -EPROTO;
        break;
    case REDIS_ERR_OOM:
        rc = -ENOMEM;
        break;
    case REDIS_ERR_IO:
        rc = sys_err > 0 ? -sys_err : -EIO;
        break;
    default:
        rc = -EIO;
        break;
    }
    return eg_errorf(rc, "redis: %s", c->errstr);
}

/* A command is outstanding and will not be read: make c unusable. */
static int abandon(redisContext *c, int rc)
{
    if (c->fd >= 0)
        (void)shutdown(c->fd, SHUT_RDWR);
    c->err = REDIS_ERR_OTHER;
    snprintf(c->errstr, sizeof c->errstr,
             "connection abandoned with a command outstanding (%s)", eg_strerror(rc));
    return rc;
}

/* 0 when c can take a call; -ENOTCONN when it is marked or broken. Puts a
 * context from redisConnect into non-blocking mode (once: REDIS_BLOCK is
 * cleared after). */
static int check_usable(redisContext *c)
{
    if (c->err || c->fd < 0)
        return eg_errorf(-ENOTCONN, "redis: connection unusable: %s",
                         c->err ? c->errstr : "no socket");
    if (c->flags & REDIS_BLOCK) {
        int fl = fcntl(c->fd, F_GETFL);
        if (fl < 0 || fcntl(c->fd, F_SETFL, fl | O_NONBLOCK) < 0)
            return -errno;
        c->flags &= ~REDIS_BLOCK;
    }
    return 0;
}

/* ---- one reply ----------------------------------------------------------- */

/* Reads the next reply (flushing queued output first). When ctx ended the
 * wait, c is abandoned: a reply is still owed. */
static int next_reply(eg_ctx *ctx, redisContext *c, redisReply **reply)
{
    for (;;) {
        void *r = NULL;
        /* A reply already buffered is taken before waiting: the socket may
         * never become readable again for it. */
        if (redisGetReplyFromReader(c, &r) != REDIS_OK)
            return failed(c, errno);
        if (r) {
            *reply = r;
            if (((redisReply *)r)->type == REDIS_REPLY_ERROR)
                return eg_errorf(-EIO, "redis: %s", ((redisReply *)r)->str);
            return 0;
        }
        int done = 0;
        errno = 0;
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return failed(c, errno);
        int rv = eg_poll(ctx, c->fd, done ? POLLIN : POLLIN | POLLOUT);
        if (rv < 0)
            return eg_ctx_done(ctx) ? abandon(c, rv) : rv;
        if (rv & POLLNVAL)
            return -EBADF;
        if (rv & (POLLIN | POLLERR | POLLHUP)) {
            errno = 0;
            if (redisBufferRead(c) != REDIS_OK)
                return failed(c, errno);
        }
    }
}

int eg_redis_get_reply(eg_ctx *ctx, redisContext *c, redisReply **reply)
{
    if (reply)
        *reply = NULL;
    if (!ctx || !c || !reply)
        return -EINVAL;
    int rc = check_usable(c);
    if (rc < 0)
        return rc;
    rc = eg_ctx_err(ctx);
    if (rc < 0)
        return abandon(c, rc);
    return next_reply(ctx, c, reply);
}

/* Queues the formatted command cmd (len bytes) and reads its reply. */
static int run_formatted(eg_ctx *ctx, redisContext *c, redisReply **reply, char *cmd,
                         long len)
{
    if (len == -1)
        return -ENOMEM;
    if (len < 0)
        return eg_errorf(-EINVAL, "redis: invalid format string");
    int rc = redisAppendFormattedCommand(c, cmd, (size_t)len);
    redisFreeCommand(cmd);
    if (rc != REDIS_OK)
        return failed(c, ENOMEM);
    return next_reply(ctx, c, reply);
}

/* The checks every command call makes first: 1 to go on, else a result. */
static int command_precheck(eg_ctx *ctx, redisContext *c, redisReply **reply, int *rc)
{
    if (reply)
        *reply = NULL;
    if (!ctx || !c || !reply) {
        *rc = -EINVAL;
        return 0;
    }
    *rc = check_usable(c);
    if (*rc < 0)
        return 0;
    *rc = eg_ctx_err(ctx); /* done at entry: nothing sent, c stays usable */
    return *rc == 0;
}

int eg_redis_command(eg_ctx *ctx, redisContext *c, redisReply **reply, const char *fmt,
                     ...)
{
    int rc;
    if (!fmt) {
        if (reply)
            *reply = NULL;
        return -EINVAL;
    }
    if (!command_precheck(ctx, c, reply, &rc))
        return rc;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    return run_formatted(ctx, c, reply, cmd, len);
}

int eg_redis_command_argv(eg_ctx *ctx, redisContext *c, redisReply **reply, int argc,
                          const char **argv, const size_t *argvlen)
{
    int rc;
    if (argc < 1 || !argv) {
        if (reply)
            *reply = NULL;
        return -EINVAL;
    }
    if (!command_precheck(ctx, c, reply, &rc))
        return rc;
    for (int i = 0; i < argc; i++)
        if (!argv[i])
            return -EINVAL;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    return run_formatted(ctx, c, reply, cmd, len);
}
