/*
 * pq.c - libpq calls that listen to a context.
 *
 * The pattern (see "Wrapping any client library that exposes its socket" in
 * eg/io.h): libpq does the protocol in its asynchronous API, this file does
 * the waiting with eg_poll on PQsocket. An exec is
 *   PQsendQuery*                       queue the query
 *   PQflush until 0                    send it (reading while the server
 *                                      talks, as libpq requires)
 *   PQisBusy / PQconsumeInput / eg_poll  until a result is complete
 *   PQgetResult until NULL             collect; the connection is idle again
 * Each PQgetResult can need more input: PQisBusy is asked again before
 * each one, never only before the first.
 *
 * An interrupted exec leaves a query outstanding. Unlike Redis, PostgreSQL
 * can be told to stop it, so the connection is saved rather than dropped:
 *   running --(ctx done)--> PQcancel --> drain under its own deadline
 *     --(results end, connection OK)--> idle (the call returns ctx's error)
 *     --(deadline or broken)--> shutdown + PQconsumeInput: CONNECTION_BAD
 * The drain deadline is a fresh context (eg_with_timeout of background): the
 * caller's ctx is already done and cannot bound anything any more.
 *
 * Only the public API of the library is used here.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "eg/group.h"
#include "eg/io.h"
#include "eg/pq.h"

/* One wait: *cut records that the context, not the connection, ended it. */
static int wait_sock(eg_ctx *ctx, PGconn *conn, short events, bool *cut)
{
    int fd = PQsocket(conn);
    if (fd < 0)
        return eg_errorf(-ENOTCONN, "postgres: no connection");
    int rv = eg_poll(ctx, fd, events);
    if (rv < 0 && eg_ctx_done(ctx))
        *cut = true;
    return rv;
}

/* The connection failed in a libpq call: an errno and the message. */
static int conn_failed(PGconn *conn)
{
    int rc = PQstatus(conn) == CONNECTION_BAD ? -ECONNRESET : -EIO;
    return eg_errorf(rc, "postgres: %s", PQerrorMessage(conn));
}

/* Sends what libpq has queued. */
static int flush_out(eg_ctx *ctx, PGconn *conn, bool *cut)
{
    for (;;) {
        int f = PQflush(conn);
        if (f == 0)
            return 0;
        if (f < 0)
            return conn_failed(conn);
        int rv = wait_sock(ctx, conn, POLLIN | POLLOUT, cut);
        if (rv < 0)
            return rv;
        if ((rv & (POLLIN | POLLERR | POLLHUP)) && !PQconsumeInput(conn))
            return conn_failed(conn);
    }
}

/* Waits until PQgetResult will not block. */
static int wait_result(eg_ctx *ctx, PGconn *conn, bool *cut)
{
    while (PQisBusy(conn)) {
        int rv = wait_sock(ctx, conn, POLLIN, cut);
        if (rv < 0)
            return rv;
        if (!PQconsumeInput(conn))
            return conn_failed(conn);
    }
    return 0;
}

/* Collects every result of the query; keeps the first error, else the
 * last result (as PQexec does). */
static int collect(eg_ctx *ctx, PGconn *conn, PGresult **res, bool *cut)
{
    PGresult *keep = NULL;
    int rc = 0;
    for (;;) {
        int w = wait_result(ctx, conn, cut);
        if (w < 0) {
            PQclear(keep);
            return w;
        }
        PGresult *r = PQgetResult(conn);
        if (!r)
            break;
        ExecStatusType st = PQresultStatus(r);
        bool error = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE;
        if (rc == 0) {
            PQclear(keep);
            keep = r;
            if (error)
                rc = eg_errorf(-EIO, "postgres: %s", PQresultErrorMessage(r));
        } else {
            PQclear(r);
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)
            break; /* the caller continues the COPY; no NULL result comes */
    }
    *res = keep;
    return rc;
}

/* Marks conn bad: the peer sees the close, libpq sees EOF on its next read
 * and sets CONNECTION_BAD (bounded: each round consumes what is buffered). */
static void give_up(PGconn *conn)
{
    int fd = PQsocket(conn);
    if (fd >= 0)
        (void)shutdown(fd, SHUT_RDWR);
    for (int i = 0; i < 64 && PQstatus(conn) != CONNECTION_BAD; i++)
        (void)PQconsumeInput(conn);
}

/* ctx ended an exec: stop the query on the server and bring conn back to
 * idle, or mark it bad. */
static void cancel_and_drain(PGconn *conn)
{
    PGcancel *cancel = PQgetCancel(conn);
    if (cancel) {
        char errbuf[256];
        (void)PQcancel(cancel, errbuf, sizeof errbuf);
        PQfreeCancel(cancel);
    }
    bool idle = false;
    eg_ctx *drain = eg_with_timeout(NULL, (int64_t)EG_PQ_DRAIN_MS * EG_NSEC_PER_MSEC);
    if (drain) {
        bool cut = false;
        PGresult *junk = NULL;
        int rc = flush_out(drain, conn, &cut);
        if (rc == 0)
            rc = collect(drain, conn, &junk, &cut);
        PQclear(junk);
        idle = (rc == 0 || rc == -EIO) && PQstatus(conn) == CONNECTION_OK &&
               PQtransactionStatus(conn) != PQTRANS_ACTIVE;
        eg_cancel(drain, 0);
        eg_ctx_release(drain);
    }
    if (!idle)
        give_up(conn);
}

/* The checks before sending: 1 to go on, else 0 and *rc. */
static int precheck(eg_ctx *ctx, PGconn *conn, const char *query, PGresult **res, int *rc)
{
    if (res)
        *res = NULL;
    if (!ctx || !conn || !query || !res) {
        *rc = -EINVAL;
        return 0;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        *rc = eg_errorf(-ENOTCONN, "postgres: connection unusable: %s",
                        PQerrorMessage(conn));
        return 0;
    }
    if (PQisBusy(conn) || PQtransactionStatus(conn) == PQTRANS_ACTIVE) {
        *rc = -EBUSY;
        return 0;
    }
    if (!PQisnonblocking(conn) && PQsetnonblocking(conn, 1) != 0) {
        *rc = conn_failed(conn);
        return 0;
    }
    *rc = eg_ctx_err(ctx); /* done at entry: nothing sent */
    return *rc == 0;
}

/* After a successful PQsendQuery*: sends, waits, collects. */
static int finish(eg_ctx *ctx, PGconn *conn, PGresult **res)
{
    bool cut = false;
    int rc = flush_out(ctx, conn, &cut);
    if (rc == 0)
        rc = collect(ctx, conn, res, &cut);
    if (cut && PQstatus(conn) == CONNECTION_OK) {
        cancel_and_drain(conn);
        rc = eg_ctx_err(ctx);
    }
    return rc;
}

int eg_pq_exec(eg_ctx *ctx, PGconn *conn, const char *query, PGresult **res)
{
    int rc;
    if (!precheck(ctx, conn, query, res, &rc))
        return rc;
    if (!PQsendQuery(conn, query))
        return conn_failed(conn);
    return finish(ctx, conn, res);
}

int eg_pq_exec_params(eg_ctx *ctx, PGconn *conn, const char *query, int nparams,
                      const Oid *types, const char *const *values, const int *lengths,
                      const int *formats, int result_format, PGresult **res)
{
    int rc;
    if (nparams < 0 || (nparams > 0 && !values)) {
        if (res)
            *res = NULL;
        return -EINVAL;
    }
    if (!precheck(ctx, conn, query, res, &rc))
        return rc;
    if (!PQsendQueryParams(conn, query, nparams, types, values, lengths, formats,
                           result_format))
        return conn_failed(conn);
    return finish(ctx, conn, res);
}

/* ---- connect ------------------------------------------------------------- */

/* The errno libpq's message names, for the system errors a caller may want
 * to tell apart; -EIO otherwise. libpq prints strerror's text, in this
 * process's locale, so comparing with strerror_r's is locale-proof. */
static int connect_errno(const char *msg)
{
    static const int known[] = {ECONNREFUSED, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH,
                                ECONNRESET};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        char buf[128];
        const char *text = strerror_r(known[i], buf, sizeof buf);
        if (text && *text && strstr(msg, text))
            return -known[i];
    }
    return -EIO;
}

PGconn *eg_pq_connect(eg_ctx *ctx, const char *conninfo, int *err)
{
    int dummy;
    if (!err)
        err = &dummy;
    if (!ctx || !conninfo) {
        *err = -EINVAL;
        return NULL;
    }
    int rc = eg_ctx_err(ctx);
    if (rc < 0) {
        *err = rc;
        return NULL;
    }
    PGconn *conn = PQconnectStart(conninfo);
    if (!conn) {
        *err = -ENOMEM;
        return NULL;
    }
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (PQstatus(conn) == CONNECTION_BAD)
        st = PGRES_POLLING_FAILED;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        bool cut = false;
        int rv =
            wait_sock(ctx, conn, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, &cut);
        if (rv < 0) {
            PQfinish(conn);
            *err = rv;
            return NULL;
        }
        st = PQconnectPoll(conn);
    }
    if (st == PGRES_POLLING_FAILED) {
        const char *msg = PQerrorMessage(conn);
        *err = eg_errorf(connect_errno(msg), "postgres: %s", msg);
        PQfinish(conn);
        return NULL;
    }
    if (PQsetnonblocking(conn, 1) != 0) {
        *err = eg_errorf(-EIO, "postgres: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return NULL;
    }
    *err = 0;
    return conn;
}
