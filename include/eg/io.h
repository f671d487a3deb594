/*
 * eg/io.h - blocking points that listen to a context.
 *
 * Each call blocks like its libc twin and returns early, with the context's
 * error (-ECANCELED, or -ETIMEDOUT for a passed deadline), as soon as the
 * context is done. A call made on a context that is already done returns its
 * error at once, without doing the operation. Failures are -errno; errno is
 * left as it was. A negative fd gives -EBADF from every call.
 *
 * Several threads on one blocking fd
 * ----------------------------------
 * Each call still returns its context's error once the context is done. On
 * a blocking socket eg_read/eg_write use recv/send with MSG_DONTWAIT, so no
 * call can block out of the context's reach. On other blocking fds (pipes,
 * FIFOs, ttys) and for eg_accept on a blocking listener, where no per-call
 * non-blocking flag exists, the library serialises its own callers on the
 * fd (the fd's flags are never changed): one that loses the data to another
 * polls again. The limit: a thread that reads, writes or accepts on the same
 * blocking non-socket fd or listener OUTSIDE the library can take the data
 * between the library's readiness check and its operation; that one call
 * then blocks until more data (or a connection) comes. Make such fds
 * O_NONBLOCK if other code shares them.
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

/**
 * eg_sleep() - sleep, or less when the context is done
 *
 * Returns: 0 when ns nanoseconds passed (at once for ns <= 0); the
 * context's error as soon as it is done (-ETIMEDOUT if its deadline comes
 * first); -EINVAL for NULL ctx.
 * Blocks: Up to ns nanoseconds, until ctx is done.
 * Thread-safety: Any thread.
 * Ownership: ctx stays the caller's.
 * NULL: ctx NULL returns -EINVAL.
 */
EG_EXPORT int eg_sleep(eg_ctx *ctx, int64_t ns);

/**
 * eg_cond_wait(), eg_cond_timedwait() - pthread_cond_wait that listens to a context
 *
 * Called with mu held; returns with mu held, either way. eg_cancel() may be
 * called by a thread that holds mu: the wake-up is then delivered once mu
 * is free by the library's one waker thread (started by the first call),
 * never lost, and never by a pool thread, so it works with the pool at its
 * maximum. On a coroutine the call blocks its carrier thread (the user's
 * condition variable knows nothing of coroutines): the carrier's other
 * tasks move to another carrier meanwhile.
 *
 * Returns: 0 when woken (spurious wake-ups included: loop on your
 * predicate); the context's error once it is done; for
 * eg_cond_timedwait(), -ETIMEDOUT once eg_now() reaches deadline_ns;
 * -EAGAIN, without waiting, when the waker thread cannot be started;
 * -EINVAL for NULL arguments.
 * Blocks: Until cond is signalled, ctx is done or the deadline passes.
 * Thread-safety: As pthread_cond_wait(3). Calling it without holding mu is
 * undefined behaviour that is not detected.
 * Ownership: cond and mu stay the caller's and must stay valid until the
 * call returns (afterwards no wake-up refers to them any more).
 * NULL: Any NULL argument returns -EINVAL.
 */
EG_EXPORT int eg_cond_wait(eg_ctx *ctx, pthread_cond_t *cond, pthread_mutex_t *mu);
EG_EXPORT int eg_cond_timedwait(eg_ctx *ctx, pthread_cond_t *cond, pthread_mutex_t *mu,
                                int64_t deadline_ns);

/**
 * eg_poll() - wait for a descriptor to be ready, or the context to be done
 *
 * Waits until fd has one of events (POLLIN, POLLOUT, ... from <poll.h>).
 *
 * Returns: Revents (> 0; POLLERR, POLLHUP and POLLNVAL included); the
 * context's error; -EBADF for a negative fd (poll(2) would ignore it);
 * -errno of poll(2); -EINVAL for NULL ctx.
 * Blocks: Until fd is ready or ctx is done.
 * Thread-safety: Any thread.
 * Ownership: fd stays the caller's.
 * NULL: ctx NULL returns -EINVAL.
 */
EG_EXPORT int eg_poll(eg_ctx *ctx, int fd, short events);

/**
 * eg_read(), eg_write() - read(2) and write(2) that listen to a context
 *
 * For sockets and pipes, blocking or non-blocking descriptors alike: waits
 * for readiness with eg_poll(), then does one read or write. Regular files
 * never block and ignore the context after the first check. On a blocking
 * pipe, FIFO or tty, eg_write() writes at most PIPE_BUF bytes per call (a
 * larger write could block where the context cannot interrupt it), so it
 * may return a short count; eg_write_all() loops. On a blocking socket it
 * writes what fits without blocking (MSG_DONTWAIT).
 *
 * Returns: The number of bytes transferred (0 at end of file for
 * eg_read()); the context's error (then nothing was transferred and fd
 * stays usable); -errno (-EBADF for a negative fd); -EINVAL for NULL ctx or
 * a NULL buf with len > 0.
 * Blocks: Until fd is ready or ctx is done.
 * Thread-safety: Any thread; errno is left as it was.
 * Ownership: fd and buf stay the caller's.
 * NULL: ctx NULL returns -EINVAL; buf may be NULL only when len is 0.
 * See also: eg_write_all, eg_poll
 */
EG_EXPORT ssize_t eg_read(eg_ctx *ctx, int fd, void *buf, size_t len);
EG_EXPORT ssize_t eg_write(eg_ctx *ctx, int fd, const void *buf, size_t len);
/**
 * eg_write_all() - write a whole buffer, listening to a context
 *
 * Calls eg_write() until all len bytes are written.
 *
 * Returns: len; or an error as eg_write() returns it, after which some
 * bytes may have been written.
 * Blocks: Until everything is written or ctx is done.
 * Thread-safety: Any thread; concurrent writers to the same fd interleave.
 * Ownership: fd and buf stay the caller's.
 * NULL: ctx NULL, or buf NULL with len > 0, returns -EINVAL.
 */
EG_EXPORT ssize_t eg_write_all(eg_ctx *ctx, int fd, const void *buf, size_t len);

/**
 * eg_connect() - connect(2) that listens to a context
 *
 * Works on blocking and non-blocking sockets (the descriptor's O_NONBLOCK
 * flag is restored).
 *
 * Returns: 0; the context's error (a connect cancelled while in progress
 * leaves the socket in an unspecified state: close it); -errno of
 * connect(2); -EINVAL for NULL ctx.
 * Blocks: Until the connection is made or fails, or ctx is done.
 * Thread-safety: Any thread.
 * Ownership: fd and addr stay the caller's.
 * NULL: ctx NULL returns -EINVAL; addr as for connect(2).
 */
EG_EXPORT int eg_connect(eg_ctx *ctx, int fd, const struct sockaddr *addr, socklen_t len);
/**
 * eg_accept() - accept(2) that listens to a context
 *
 * Returns: The new descriptor (>= 0, close-on-exec); the context's error
 * (the listening socket stays usable); -errno of accept(2); -EINVAL for
 * NULL ctx.
 * Blocks: Until a connection arrives or ctx is done.
 * Thread-safety: Any thread; several threads may accept on one socket.
 * Ownership: The caller owns the new descriptor and closes it.
 * NULL: ctx NULL returns -EINVAL; addr and len may be NULL, as for
 * accept(2).
 */
EG_EXPORT int eg_accept(eg_ctx *ctx, int fd, struct sockaddr *addr, socklen_t *len);

#ifdef __cplusplus
}
#endif
#endif
