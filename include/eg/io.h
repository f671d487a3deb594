/*
 * eg/io.h - blocking points that listen to a context.
 *
 * Each call blocks like its libc twin and returns early, with the context's
 * error (-ECANCELED, or -ETIMEDOUT for a passed deadline), as soon as the
 * context is done. A call made on a context that is already done returns its
 * error at once, without doing the operation. Failures are -errno; errno is
 * left as it was.
 *
 * Wrapping any client library that exposes its socket
 * ----------------------------------------------------
 * A client library with a non-blocking mode and a way to get its socket
 * (hiredis, libpq, libmemcached, an LDAP client, ...) can be made to
 * listen to a context with eg_poll alone; eg/redis.h and eg/pq.h are built
 * this way, and because they wait only in eg_poll they run unchanged on any
 * executor that parks there. The loop:
 *
 *     queue the request with the library (non-blocking)
 *     for (;;) {
 *         take a response the library already has in its buffer;
 *             done if there is one                             (pitfall 1)
 *         let the library write what it has queued
 *         rv = eg_poll(ctx, sock, POLLIN | (output queued ? POLLOUT : 0));
 *         if (rv < 0) -> the context is done: deal with the
 *             outstanding request                              (pitfall 2)
 *         let the library read what arrived
 *     }
 *
 * Connect the same way: the library's asynchronous connect (PQconnectPoll)
 * or, when it has none that can be interrupted, your own non-blocking
 * socket and eg_connect, then hand the fd over (redisConnectFd).
 *
 * Pitfall 1, the buffered response: one read can bring several responses
 * (pipelining), or a response can arrive with the previous one. The socket
 * then stays silent while the library holds the data, so waiting in
 * eg_poll first would block until ctx is done. Always ask the library
 * before waiting (redisGetReplyFromReader, PQisBusy).
 *
 * Pitfall 2, the outstanding request: a call cut by the context has sent a
 * request whose response is still coming. Returning the connection as it
 * is would hand that response to the next request. Either stop the request
 * on the server and read its response away under a short deadline of its
 * own (the caller's ctx is already done: PostgreSQL's PQcancel, then drain;
 * if that fails, give the connection up), or mark the connection unusable
 * and shut its socket down so the server stops working for it (Redis: no
 * cancel exists). Never leave the choice to the next caller.
 *
 * Also: name resolution inside a library (getaddrinfo) cannot be
 * interrupted (pass numeric addresses); a library call that writes a large
 * buffer on a blocking socket can block where eg_poll cannot help, so put
 * the socket in non-blocking mode.
 */
#ifndef EG_IO_H
#define EG_IO_H

#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "eg/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sleeps ns nanoseconds: 0 when they passed, the context's error as soon as
 * it is done (-ETIMEDOUT if its deadline comes first). */
EG_EXPORT int eg_sleep(eg_ctx *ctx, int64_t ns);

/* pthread_cond_wait that listens to ctx. Called with mu held; returns with
 * mu held, either way. Returns 0 when woken (spurious wake-ups included:
 * loop on your predicate), or the context's error once it is done.
 * eg_cancel may be called by a thread that holds mu: the wake-up is then
 * delivered once mu is free by the library's one waker thread (started by
 * the first call; -EAGAIN, without waiting, if it cannot start), never
 * lost, and never by a pool thread, so it works with the pool at its
 * maximum. On a coroutine the call blocks its carrier thread (the user's
 * condition variable knows nothing of coroutines): the carrier's other
 * tasks move to another carrier meanwhile. cond and mu must
 * stay valid until the call returns (after it returns, no wake-up refers
 * to them any more). Calling it without holding mu is undefined behaviour,
 * as with pthread_cond_wait, and is not detected. */
EG_EXPORT int eg_cond_wait(eg_ctx *ctx, pthread_cond_t *cond,
                           pthread_mutex_t *mu);
/* Like eg_cond_wait, and returns -ETIMEDOUT once eg_now() reaches
 * deadline_ns. */
EG_EXPORT int eg_cond_timedwait(eg_ctx *ctx, pthread_cond_t *cond,
                                pthread_mutex_t *mu, int64_t deadline_ns);

/* Waits until fd has one of events (POLLIN, POLLOUT, ...): returns revents
 * (> 0; POLLERR/POLLHUP/POLLNVAL included), the context's error, or -errno. */
EG_EXPORT int eg_poll(eg_ctx *ctx, int fd, short events);

/* read(2)/write(2) for sockets and pipes, blocking or non-blocking fds
 * alike: waits for readiness with eg_poll, then does one read/write.
 * Returns bytes transferred (0 at end of file for eg_read), the context's
 * error, or -errno. A cancelled call transferred nothing and leaves the fd
 * usable. Regular files never block and ignore the context after the first
 * check. On a blocking pipe or socket, eg_write writes at most PIPE_BUF
 * bytes per call (a larger write could block where the context cannot
 * interrupt it), so it may return a short count; eg_write_all loops. */
EG_EXPORT ssize_t eg_read(eg_ctx *ctx, int fd, void *buf, size_t len);
EG_EXPORT ssize_t eg_write(eg_ctx *ctx, int fd, const void *buf, size_t len);
/* eg_write until all len bytes are written: returns len, or an error
 * (bytes may have been written before it). */
EG_EXPORT ssize_t eg_write_all(eg_ctx *ctx, int fd, const void *buf,
                               size_t len);

/* connect(2) that listens to ctx. Works on blocking and non-blocking
 * sockets (the fd's O_NONBLOCK flag is restored). Returns 0, the context's
 * error, or -errno. A connect cancelled while in progress leaves the socket
 * in an unspecified connection state: close it. */
EG_EXPORT int eg_connect(eg_ctx *ctx, int fd, const struct sockaddr *addr,
                         socklen_t len);
/* accept(2) that listens to ctx. Returns the new fd (>= 0, close-on-exec),
 * the context's error, or -errno. A cancelled accept leaves the listening
 * socket usable. */
EG_EXPORT int eg_accept(eg_ctx *ctx, int fd, struct sockaddr *addr,
                        socklen_t *len);

#ifdef __cplusplus
}
#endif
#endif
