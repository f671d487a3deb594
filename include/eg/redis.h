/*
 * eg/redis.h - hiredis commands that listen to a context.
 *
 * Part of the optional errgroup-redis library (link with
 * `pkg-config --libs errgroup-redis`, or the CMake target errgroup::redis);
 * the core library never needs hiredis.
 *
 * The calls below drive hiredis's non-blocking API and wait with eg_poll,
 * so a group's cancel or a deadline ends them: on a thread-pool task and
 * on any executor that parks in eg_poll alike.
 *
 * The connection state, and what a cancel leaves behind:
 *   usable --(call returns 0 or -EIO)--> usable
 *   usable --(ctx done at entry of eg_redis_command)--> usable (nothing sent)
 *   usable --(ctx done while a command is outstanding)--> unusable
 *   usable --(I/O or protocol error)--> unusable
 * A command whose reply was not read is outstanding: its reply would come
 * back as the answer to the next command. So a cancelled call marks the
 * context unusable: it shuts the socket down (the server sees the client
 * leave, which also ends a blocking command such as BLPOP on the server)
 * and sets c->err to REDIS_ERR_OTHER with c->errstr saying why. hiredis
 * then refuses the context as well. Every later call returns -ENOTCONN at
 * once; redisFree the context and connect again. The mark is c->err
 * itself (hiredis 0.14 has no privdata): no side table, nothing to free.
 *
 * A context from eg_redis_connect is in non-blocking mode. A context made
 * by redisConnect works too: the first call here switches it to
 * non-blocking mode (O_NONBLOCK, REDIS_BLOCK cleared), so hiredis's
 * blocking calls (redisCommand, redisGetReply) must not be used on it
 * afterwards; redisAppendCommand* stay fine.
 */
#ifndef EG_REDIS_H
#define EG_REDIS_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "eg/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * eg_redis_connect() - connect to a Redis server, listening to a context
 *
 * Connects to host:port over TCP (TCP_NODELAY set) in non-blocking mode.
 *
 * Returns: the context, or NULL with *err set: -EINVAL (NULL ctx or host,
 *   port outside 1..65535), -EHOSTUNREACH (host did not resolve),
 *   -ECONNREFUSED (nothing listens), another -errno of connect(2), -ENOMEM,
 *   or the context's error (-ECANCELED, -ETIMEDOUT). The text goes through
 *   eg_errorf.
 * Blocks: in eg_connect until connected or ctx is done. host is resolved
 *   with getaddrinfo, which the context cannot interrupt: pass a numeric
 *   address where that matters.
 * Thread-safety: any thread.
 * Ownership: the caller redisFrees the context.
 * NULL: ctx or host NULL returns NULL with *err = -EINVAL; err may be
 *   NULL (the error is then not reported).
 */
EG_EXPORT redisContext *eg_redis_connect(eg_ctx *ctx, const char *host, int port,
                                         int *err);

/**
 * eg_redis_command(), eg_redis_command_argv() - send a Redis command and read its reply
 *
 * Sends one command (formatted as redisCommand does) and reads its reply.
 * eg_redis_command_argv() takes the command as argc arguments, as
 * redisCommandArgv (with argvlen NULL, each argument is a C string), with
 * the same contract.
 *
 * Returns: 0 and *reply; -EIO for a Redis error reply (*reply is kept:
 *   the error's text, also passed to eg_errorf); the context's error
 *   (-ECANCELED, -ETIMEDOUT) once ctx is done; -ENOTCONN when c was
 *   already unusable (c->err set), without sending; -ECONNRESET when the
 *   server closed the connection; -EPROTO for a protocol error; -ENOMEM;
 *   another -errno of the socket; -EINVAL for NULL arguments or a bad
 *   format string (c stays usable). *reply is NULL unless the result is 0
 *   or -EIO.
 * Blocks: in eg_poll until the reply is read or ctx is done. A ctx done at
 *   entry returns its error without sending (c stays usable); a cancel
 *   after the command was queued marks c unusable (see above).
 * Thread-safety: one call at a time per context (hiredis contexts are not
 *   thread-safe); different contexts on different threads freely.
 * Ownership: the caller frees *reply with freeReplyObject. Replies of
 *   earlier appended commands must be read first (eg_redis_get_reply):
 *   this call returns the next reply on the connection.
 * NULL: ctx, c, reply or fmt (argv) NULL returns -EINVAL; argvlen may be
 *   NULL.
 */
EG_EXPORT int eg_redis_command(eg_ctx *ctx, redisContext *c, redisReply **reply,
                               const char *fmt, ...);

EG_EXPORT int eg_redis_command_argv(eg_ctx *ctx, redisContext *c, redisReply **reply,
                                    int argc, const char **argv, const size_t *argvlen);

/**
 * eg_redis_get_reply() - read the next reply of pipelined Redis commands
 *
 * Pipelining: after queueing commands with redisAppendCommand /
 * redisAppendCommandArgv, flushes whatever is queued and reads one reply,
 * as redisGetReply does; call it once per queued command. A reply hiredis
 * has already buffered is returned at once, without waiting.
 *
 * Returns: as eg_redis_command(), except that a cancel (even with ctx done
 *   at entry) marks c unusable, since the caller's queued commands still
 *   owe replies.
 * Blocks: in eg_poll until a reply is read or ctx is done.
 * Thread-safety: as eg_redis_command().
 * Ownership: as eg_redis_command(): the caller frees *reply.
 * NULL: ctx, c or reply NULL returns -EINVAL.
 */
EG_EXPORT int eg_redis_get_reply(eg_ctx *ctx, redisContext *c, redisReply **reply);

#ifdef __cplusplus
}
#endif
#endif
