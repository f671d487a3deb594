/*
 * io.c - blocking points that listen to a context: sleep, poll, read, write,
 * connect, accept.
 *
 * Waiting is eg__wait_fd (exec.h): on a thread, poll(2) on the caller's fd
 * and the context's eg_ctx_fd; on a coroutine, the carrier's poller.
 *
 * The fd's O_NONBLOCK flag and type decide the order of operations:
 *   - non-blocking: try the operation, wait only on EAGAIN;
 *   - a blocking socket: the same, with MSG_DONTWAIT on recv/send, which
 *     makes this one call non-blocking without touching the fd's flags: a
 *     thread that loses the data to another one polls again, listening to
 *     its context;
 *   - other blocking fds (pipes, FIFOs, ttys) and accept on a blocking
 *     listener, where no per-call non-blocking flag exists: wait for
 *     readiness, then, under a per-fd gate (a trylock on a lock chosen by the
 *     fd's number), check readiness again with a zero-timeout poll and do one
 *     operation, which then finds what the poll saw: library callers on the
 *     same fd never take each other's data, and one that finds the gate busy
 *     waits a moment listening to its context. Writes there are capped at
 *     PIPE_BUF bytes: a pipe reporting POLLOUT takes that much without
 *     blocking. What the gate cannot stop is another thread reading the same
 *     fd outside the library between the check and the operation: that
 *     operation then blocks (documented in eg/io.h);
 *   - regular files and block devices never block: the operation is done
 *     directly after the initial context check.
 *
 * Every call returns the context's error at once, without doing anything,
 * when the context is already done, and leaves errno as it found it.
 */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "exec.h"

int eg_sleep(eg_ctx *ctx, int64_t ns)
{
    if (!ctx)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err || ns <= 0)
        return err;
    return eg_ctx_wait_until(ctx, eg__deadline_after(ns));
}

/* eg_poll without the entry checks and with errno clobbered. */
static int poll_ctx(eg_ctx *ctx, int fd, short events)
{
    return eg__wait_fd(ctx, fd, events, INT64_MAX);
}

/* Waits until fd is ready for events: 0, the context's error, or -errno
 * (-EBADF for a descriptor poll calls invalid). */
static int await_fd(eg_ctx *ctx, int fd, short events)
{
    int rc = poll_ctx(ctx, fd, events);
    if (rc < 0)
        return rc;
    return rc & POLLNVAL ? -EBADF : 0;
}

int eg_poll(eg_ctx *ctx, int fd, short events)
{
    if (!ctx)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;
    if (fd < 0)
        return -EBADF; /* poll(2) would ignore it and wait for ctx alone */
    int saved = errno;
    int rc = poll_ctx(ctx, fd, events);
    errno = saved;
    return rc;
}

/* ---- the per-fd gate of blocking non-socket fds (see the top) ----------- */

#define GATES 64
static pthread_mutex_t gates[GATES] = {[0 ... GATES - 1] = PTHREAD_MUTEX_INITIALIZER};

/* A gate held at fork() belongs to a thread that does not exist in the child. */
void eg__io_atfork_child(void)
{
    for (int i = 0; i < GATES; i++)
        gates[i] = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
}

/* Takes fd's gate, or returns false after a pause (another library caller
 * is doing its non-blocking operation on an fd with this gate). */
static bool gate_try(eg_ctx *ctx, int fd, int *err)
{
    if (pthread_mutex_trylock(&gates[(unsigned)fd % GATES]) == 0)
        return true;
    *err = eg_sleep(ctx, 20 * EG_NSEC_PER_USEC);
    return false;
}

static void gate_release(int fd)
{
    pthread_mutex_unlock(&gates[(unsigned)fd % GATES]);
}

/* How an fd is driven; see the top of the file. */
enum io_mode { IO_NONBLOCK, IO_SOCKET, IO_BLOCKING, IO_FILE };

static int io_mode(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (fl & O_NONBLOCK)
        return IO_NONBLOCK;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode))
        return IO_FILE;
    if (S_ISSOCK(st.st_mode))
        return IO_SOCKET;
    return IO_BLOCKING;
}

/* True when fd already has one of events, without creating a context fd. */
static bool ready_now(int fd, short events)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    return poll(&pfd, 1, 0) > 0;
}

/* One read (into rbuf) or write (from wbuf) under the rules at the top.
 * errno is clobbered. */
static ssize_t transfer(eg_ctx *ctx, int fd, bool reading, void *rbuf, const void *wbuf,
                        size_t len)
{
    int mode = io_mode(fd);
    if (mode < 0)
        return mode;
    short events = reading ? POLLIN : POLLOUT;
    bool gated = mode == IO_BLOCKING;
    if (gated && !reading && len > PIPE_BUF)
        len = PIPE_BUF;
    bool ready = !gated || ready_now(fd, events);
    for (;;) {
        if (!ready) {
            int rc = await_fd(ctx, fd, events);
            if (rc < 0)
                return rc;
        }
        ssize_t n;
        if (mode == IO_SOCKET) {
            n = reading ? recv(fd, rbuf, len, MSG_DONTWAIT)
                        : send(fd, wbuf, len, MSG_DONTWAIT);
        } else if (gated) {
            int err = 0;
            if (!gate_try(ctx, fd, &err)) {
                if (err)
                    return err;
                ready = false;
                continue;
            }
            /* Under the gate no other library caller takes what poll sees. */
            if (ready_now(fd, events)) {
                n = reading ? read(fd, rbuf, len) : write(fd, wbuf, len);
            } else {
                n = -1;
                errno = EAGAIN;
            }
            int e = errno;
            gate_release(fd);
            errno = e;
        } else {
            n = reading ? read(fd, rbuf, len) : write(fd, wbuf, len);
        }
        if (n >= 0)
            return n;
        int e = errno;
        if (e != EINTR && e != EAGAIN && e != EWOULDBLOCK)
            return -e;
        /* Interrupted, or not ready after all: listen to ctx again. */
        int err = eg_ctx_err(ctx);
        if (err)
            return err;
        ready = e == EINTR;
    }
}

static ssize_t io_call(eg_ctx *ctx, int fd, bool reading, void *rbuf, const void *wbuf,
                       size_t len)
{
    if (!ctx || (len && !(reading ? rbuf : wbuf)))
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;
    if (fd < 0)
        return -EBADF;
    int saved = errno;
    ssize_t n = transfer(ctx, fd, reading, rbuf, wbuf, len);
    errno = saved;
    return n;
}

ssize_t eg_read(eg_ctx *ctx, int fd, void *buf, size_t len)
{
    return io_call(ctx, fd, true, buf, NULL, len);
}

ssize_t eg_write(eg_ctx *ctx, int fd, const void *buf, size_t len)
{
    return io_call(ctx, fd, false, NULL, buf, len);
}

ssize_t eg_write_all(eg_ctx *ctx, int fd, const void *buf, size_t len)
{
    if (!ctx || (!buf && len) || len > SSIZE_MAX)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t n = eg_write(ctx, fd, p + done, len - done);
        if (n < 0)
            return n;
        if (n == 0)
            return -EIO; /* write(2) made no progress: never loop on it */
        done += (size_t)n;
    }
    return (ssize_t)len;
}

/* Waits for a connect in progress on a non-blocking socket and returns its
 * outcome. errno is clobbered. */
static int connect_wait(eg_ctx *ctx, int fd)
{
    int rc = poll_ctx(ctx, fd, POLLOUT);
    if (rc < 0)
        return rc;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return -errno;
    return -soerr;
}

/* connect(2) on a socket the caller made non-blocking. errno is clobbered. */
static int connect_nonblock(eg_ctx *ctx, int fd, const struct sockaddr *addr,
                            socklen_t len)
{
    int64_t backoff = EG_NSEC_PER_MSEC;
    for (;;) {
        if (connect(fd, addr, len) == 0)
            return 0;
        switch (errno) {
        case EINPROGRESS:
        case EINTR: /* the connect goes on asynchronously */
            return connect_wait(ctx, fd);
        case EAGAIN: {
            /* A local (AF_UNIX) listener's backlog is full; a blocking
             * connect would wait for room, which no fd reports: retry. */
            int err = eg_sleep(ctx, backoff);
            if (err)
                return err;
            if (backoff < 64 * EG_NSEC_PER_MSEC)
                backoff *= 2;
            break;
        }
        default:
            return -errno;
        }
    }
}

/* O_NONBLOCK is set on the open file description for the duration of the
 * call, so other users of the same socket see it meanwhile; connecting a
 * socket that other threads use at the same time is not meaningful anyway. */
int eg_connect(eg_ctx *ctx, int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!ctx)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;
    if (fd < 0)
        return -EBADF;
    int saved = errno;
    int fl = fcntl(fd, F_GETFL);
    int rc;
    if (fl < 0) {
        rc = -errno;
    } else if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
        rc = -errno;
    } else {
        rc = connect_nonblock(ctx, fd, addr, len);
        if (!(fl & O_NONBLOCK))
            (void)fcntl(fd, F_SETFL, fl);
    }
    errno = saved;
    return rc;
}

/* accept4 under the rules at the top: a blocking listener is gated, as
 * accept4 has no per-call non-blocking flag. errno is clobbered. */
static int accept_loop(eg_ctx *ctx, int fd, struct sockaddr *addr, socklen_t *len)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    bool nonblock = fl & O_NONBLOCK;
    socklen_t len0 = len ? *len : 0;
    bool ready = nonblock || ready_now(fd, POLLIN);
    for (;;) {
        if (!ready) {
            int rc = await_fd(ctx, fd, POLLIN);
            if (rc < 0)
                return rc;
        }
        if (len)
            *len = len0;
        int nfd;
        if (nonblock) {
            nfd = accept4(fd, addr, len, SOCK_CLOEXEC);
        } else {
            int err = 0;
            if (!gate_try(ctx, fd, &err)) {
                if (err)
                    return err;
                ready = false;
                continue;
            }
            if (ready_now(fd, POLLIN)) {
                nfd = accept4(fd, addr, len, SOCK_CLOEXEC);
            } else {
                nfd = -1;
                errno = EAGAIN;
            }
            int e = errno;
            gate_release(fd);
            errno = e;
        }
        if (nfd >= 0)
            return nfd;
        int e = errno;
        if (e != EINTR && e != EAGAIN && e != EWOULDBLOCK && e != ECONNABORTED)
            return -e;
        /* Another thread took the connection, the peer gave up, or a
         * signal came: listen to ctx again. */
        int err = eg_ctx_err(ctx);
        if (err)
            return err;
        ready = nonblock && e != EAGAIN && e != EWOULDBLOCK;
    }
}

int eg_accept(eg_ctx *ctx, int fd, struct sockaddr *addr, socklen_t *len)
{
    if (!ctx)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;
    if (fd < 0)
        return -EBADF;
    int saved = errno;
    int rc = accept_loop(ctx, fd, addr, len);
    errno = saved;
    return rc;
}
