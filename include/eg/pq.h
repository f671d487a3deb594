/*
 * eg/pq.h - libpq (PostgreSQL) calls that listen to a context.
 *
 * Part of the optional errgroup-pq library (link with
 * `pkg-config --libs errgroup-pq`, or the CMake target errgroup::pq); the
 * core library never needs libpq.
 *
 * The calls drive libpq's asynchronous API (PQconnectStart/PQconnectPoll,
 * PQsendQuery*, PQflush, PQconsumeInput, PQisBusy) and wait with eg_poll,
 * so a group's cancel or a deadline ends them, on any executor that parks
 * in eg_poll.
 *
 * A cancel stops the query on the server. When ctx is done while a query
 * runs, the call sends PostgreSQL's cancel request (PQgetCancel/PQcancel),
 * then reads and discards the query's results, so the connection is idle
 * and usable for the next query when the call returns the context's error.
 * That drain has its own bound, EG_PQ_DRAIN_MS, independent of ctx: if the
 * server does not answer within it (gone, partitioned), the connection is
 * shut down and PQstatus becomes CONNECTION_BAD (later calls: -ENOTCONN;
 * PQreset or PQfinish it). Inside a transaction block a cancelled statement
 * aborts the transaction, as any failed statement does: ROLLBACK next.
 * PQcancel itself is blocking in libpq 15: one TCP connect to the server
 * and a 16-byte write, which is quick when the server is up or refuses; a
 * host that drops packets can hold it for the system's connect timeout.
 *
 * A connection made by PQconnectdb works too: the first exec switches it
 * to non-blocking mode (PQsetnonblocking), as eg_pq_connect's already is.
 *
 * Name resolution happens inside libpq (getaddrinfo) and cannot be
 * interrupted: use hostaddr= (a numeric address) where that matters.
 */
#ifndef EG_PQ_H
#define EG_PQ_H

#include <libpq-fe.h>

#include "eg/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How long a cancelled call waits for the server to finish the cancelled
 * query before it gives the connection up. */
#define EG_PQ_DRAIN_MS 2000

/**
 * eg_pq_connect() - connect to PostgreSQL, listening to a context
 *
 * Connects with conninfo (as PQconnectdb), in non-blocking mode
 * (PQsetnonblocking).
 *
 * Returns: the connection, or NULL with *err set: -EINVAL (NULL ctx or
 *   conninfo), -ENOMEM, -ECONNREFUSED (nothing listens),
 *   -ETIMEDOUT / -EHOSTUNREACH / -ENETUNREACH / -ECONNRESET when libpq
 *   reports that system error, the context's error (-ECANCELED,
 *   -ETIMEDOUT), or -EIO for other failures (bad conninfo, authentication,
 *   unknown database). PQerrorMessage's text goes through eg_errorf.
 * Blocks: in eg_poll until connected or ctx is done.
 * Thread-safety: any thread (libpq is built thread-safe on Debian).
 * Ownership: the caller PQfinishes the connection.
 * NULL: ctx or conninfo NULL returns NULL with *err = -EINVAL; err may
 *   be NULL (the error is then not reported).
 */
EG_EXPORT PGconn *eg_pq_connect(eg_ctx *ctx, const char *conninfo, int *err);

/**
 * eg_pq_exec(), eg_pq_exec_params() - run SQL, listening to a context
 *
 * eg_pq_exec() runs query (one or more SQL statements, as PQexec) and
 * waits for its results. eg_pq_exec_params() does the same with
 * parameters, as PQexecParams (one statement; $1, $2, ...; values[i] NULL
 * is SQL NULL; formats[i] 1 is binary with lengths[i] bytes;
 * result_format 1 asks for binary results), with the same contract.
 *
 * Returns: 0 and *res (the last result: PGRES_TUPLES_OK, PGRES_COMMAND_OK,
 *   PGRES_EMPTY_QUERY, or a COPY state the caller continues);
 *   -EIO for a server error, with *res the error result (PQresultErrorField
 *   gives the SQLSTATE) and PQresultErrorMessage through eg_errorf; the
 *   context's error once ctx is done (see the cancel above; *res NULL);
 *   -ENOTCONN when the connection is bad, without sending; -ECONNRESET when
 *   it broke during the call; -EBUSY when another query is in progress on
 *   it; -EINVAL for NULL arguments; -ENOMEM.
 * Blocks: in eg_poll until the results are in or ctx is done, then (after
 *   a cancel) at most about EG_PQ_DRAIN_MS more plus PQcancel's connect.
 *   A ctx done at entry returns its error without sending anything.
 * Thread-safety: one call at a time per connection; different connections
 *   on different threads freely.
 * Ownership: *res is NULL unless the result is 0 or -EIO; the caller
 *   PQclears it.
 * NULL: ctx, conn, query or res NULL returns -EINVAL; types, lengths and
 *   formats may be NULL as for PQexecParams.
 */
EG_EXPORT int eg_pq_exec(eg_ctx *ctx, PGconn *conn, const char *query, PGresult **res);

EG_EXPORT int eg_pq_exec_params(eg_ctx *ctx, PGconn *conn, const char *query, int nparams,
                                const Oid *types, const char *const *values,
                                const int *lengths, const int *formats, int result_format,
                                PGresult **res);

#ifdef __cplusplus
}
#endif
#endif
