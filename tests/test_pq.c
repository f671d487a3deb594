/*
 * test_pq.c - the libpq adapter against a real PostgreSQL server the test
 * starts (servers.h; as an unprivileged user when run as root).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "eg/pq.h"
#include "servers.h"

static testsrv srv;

static int start_server(void **state)
{
    (void)state;
    return testsrv_pg_start(&srv) == 0 ? 0 : -1; /* no server: FAIL */
}

static int stop_server(void **state)
{
    (void)state;
    testsrv_stop(&srv);
    return 0;
}

static PGconn *conn_with(const char *extra)
{
    char info[700];
    snprintf(info, sizeof info, "%s %s", srv.conninfo, extra ? extra : "");
    int err = 1;
    PGconn *c = eg_pq_connect(eg_background(), info, &err);
    if (!c)
        fprintf(stderr, "connect: %s\n", eg_strerror(err));
    assert_non_null(c);
    assert_int_equal(err, 0);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    return c;
}

static PGconn *conn(void)
{
    return conn_with(NULL);
}

/* Runs query, which must succeed, and returns row 0 column 0 (copied). */
static void value(PGconn *c, const char *query, char *out, size_t n)
{
    PGresult *res = NULL;
    int rc = eg_pq_exec(eg_background(), c, query, &res);
    if (rc != 0)
        fprintf(stderr, "%s: %s\n", query,
                res ? PQresultErrorMessage(res) : eg_strerror(rc));
    assert_int_equal(rc, 0);
    assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
    assert_true(PQntuples(res) >= 1);
    snprintf(out, n, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
}

/* The state of backend pid in pg_stat_activity ("" when gone). */
static void backend_state(PGconn *mon, int pid, char *out, size_t n)
{
    char q[160];
    snprintf(q, sizeof q,
             "SELECT coalesce((SELECT state FROM pg_stat_activity WHERE pid = %d), '')",
             pid);
    value(mon, q, out, n);
}

/* Waits (bounded, about 10 s) for backend pid to reach state. */
static bool wait_state(PGconn *mon, int pid, const char *state)
{
    char s[64];
    for (int i = 0; i < 1000; i++) {
        backend_state(mon, pid, s, sizeof s);
        if (strcmp(s, state) == 0)
            return true;
        sleep_ms(10);
    }
    return false;
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- success paths ------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    PGconn *c = conn();
    char v[128];
    value(c, "SELECT 'hello ' || 'world'", v, sizeof v);
    assert_string_equal(v, "hello world");

    /* Several statements: the last result, as PQexec. */
    value(c, "SELECT 1; SELECT 2", v, sizeof v);
    assert_string_equal(v, "2");

    /* A command, an empty query. */
    PGresult *res = NULL;
    assert_int_equal(eg_pq_exec(eg_background(), c,
                                "CREATE TEMP TABLE t (k int, b bytea, s text)", &res),
                     0);
    assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
    PQclear(res);
    assert_int_equal(eg_pq_exec(eg_background(), c, "", &res), 0);
    assert_int_equal(PQresultStatus(res), PGRES_EMPTY_QUERY);
    PQclear(res);

    /* Parameters: binary int4 and bytea (with NUL bytes), a SQL NULL. */
    uint32_t k = htonl(42);
    const char bytes[] = {'x', 0, (char)0xff, 0, 'y'};
    const char *values[] = {(const char *)&k, bytes, NULL};
    int lengths[] = {sizeof k, sizeof bytes, 0};
    int formats[] = {1, 1, 0};
    Oid types[] = {23 /* int4 */, 17 /* bytea */, 25 /* text */};
    assert_int_equal(eg_pq_exec_params(eg_background(), c,
                                       "INSERT INTO t VALUES ($1, $2, $3)", 3, types,
                                       values, lengths, formats, 0, &res),
                     0);
    assert_string_equal(PQcmdTuples(res), "1");
    PQclear(res);

    /* Binary results: the same bytes come back. */
    const char *kv[] = {"42"};
    assert_int_equal(eg_pq_exec_params(eg_background(), c,
                                       "SELECT k, b, s FROM t WHERE k = $1", 1, NULL, kv,
                                       NULL, NULL, 1, &res),
                     0);
    assert_int_equal(PQntuples(res), 1);
    assert_int_equal(PQgetlength(res, 0, 0), 4);
    uint32_t got;
    memcpy(&got, PQgetvalue(res, 0, 0), 4);
    assert_int_equal(ntohl(got), 42);
    assert_int_equal(PQgetlength(res, 0, 1), sizeof bytes);
    assert_memory_equal(PQgetvalue(res, 0, 1), bytes, sizeof bytes);
    assert_true(PQgetisnull(res, 0, 2));
    PQclear(res);

    /* A NULL round trip in text format. */
    const char *nullv[] = {NULL};
    assert_int_equal(eg_pq_exec_params(eg_background(), c, "SELECT $1::text IS NULL", 1,
                                       NULL, nullv, NULL, NULL, 0, &res),
                     0);
    assert_string_equal(PQgetvalue(res, 0, 0), "t");
    PQclear(res);

    /* A large result (many reads). */
    value(c,
          "SELECT count(*) FROM (SELECT repeat('x', 1000) FROM generate_series(1, "
          "20000)) s",
          v, sizeof v);
    assert_string_equal(v, "20000");
    assert_int_equal(eg_pq_exec(eg_background(), c,
                                "SELECT repeat('x', 1000) FROM generate_series(1, 5000)",
                                &res),
                     0);
    assert_int_equal(PQntuples(res), 5000);
    PQclear(res);
    PQfinish(c);
}

/* A connection from plain PQconnectdb (blocking mode) works too. */
static void test_blocking_connection_works(void **state)
{
    (void)state;
    PGconn *c = PQconnectdb(srv.conninfo);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    char v[16];
    value(c, "SELECT 7", v, sizeof v);
    assert_string_equal(v, "7");
    PQfinish(c);
}

/* ---- errors -------------------------------------------------------------- */

static void test_server_error(void **state)
{
    (void)state;
    PGconn *c = conn();
    PGresult *res = NULL;
    assert_int_equal(eg_pq_exec(eg_background(), c, "SELECT 1/0", &res), -EIO);
    assert_non_null(res); /* kept, for the SQLSTATE */
    assert_int_equal(PQresultStatus(res), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "22012");
    PQclear(res);
    assert_int_equal(eg_pq_exec(eg_background(), c, "SELEC nonsense", &res), -EIO);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42601");
    PQclear(res);
    /* The first error of several statements is kept. */
    assert_int_equal(
        eg_pq_exec(eg_background(), c, "SELECT 1; SELECT * FROM no_such_table", &res),
        -EIO);
    assert_string_equal(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42P01");
    PQclear(res);
    /* The connection is usable after a server error. */
    char v[16];
    value(c, "SELECT 1", v, sizeof v);
    assert_string_equal(v, "1");
    PQfinish(c);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    PGconn *c = conn();
    PGresult *res = (PGresult *)1;
    assert_int_equal(eg_pq_exec(NULL, c, "SELECT 1", &res), -EINVAL);
    assert_null(res);
    assert_int_equal(eg_pq_exec(eg_background(), NULL, "SELECT 1", &res), -EINVAL);
    assert_int_equal(eg_pq_exec(eg_background(), c, NULL, &res), -EINVAL);
    assert_int_equal(eg_pq_exec(eg_background(), c, "SELECT 1", NULL), -EINVAL);
    assert_int_equal(eg_pq_exec_params(eg_background(), c, "SELECT $1", 1, NULL, NULL,
                                       NULL, NULL, 0, &res),
                     -EINVAL);
    assert_int_equal(eg_pq_exec_params(eg_background(), c, "SELECT 1", -1, NULL, NULL,
                                       NULL, NULL, 0, &res),
                     -EINVAL);
    int err = 0;
    assert_null(eg_pq_connect(eg_background(), NULL, &err));
    assert_int_equal(err, -EINVAL);
    assert_null(eg_pq_connect(NULL, srv.conninfo, &err));
    assert_int_equal(err, -EINVAL);
    PQfinish(c);
}

static void test_connect_errors(void **state)
{
    (void)state;
    char info[700];
    snprintf(info, sizeof info, "hostaddr=127.0.0.1 port=%d user=postgres",
             closed_port());
    int err = 0;
    assert_null(eg_pq_connect(eg_background(), info, &err));
    assert_int_equal(err, -ECONNREFUSED);
    snprintf(info, sizeof info, "%s dbname=no_such_db", srv.conninfo);
    assert_null(eg_pq_connect(eg_background(), info, &err));
    assert_int_equal(err, -EIO);
    assert_null(eg_pq_connect(eg_background(), "no_such_option=1", &err));
    assert_int_equal(err, -EIO);
}

static void test_done_at_entry(void **state)
{
    (void)state;
    PGconn *c = conn();
    eg_ctx *ctx = eg_with_cancel(NULL);
    eg_cancel(ctx, 0);
    PGresult *res = (PGresult *)1;
    assert_int_equal(eg_pq_exec(ctx, c, "SELECT 1", &res), -ECANCELED);
    assert_null(res);
    int err = 0;
    assert_null(eg_pq_connect(ctx, srv.conninfo, &err));
    assert_int_equal(err, -ECANCELED);
    eg_ctx_release(ctx);
    char v[16];
    value(c, "SELECT 1", v, sizeof v);
    assert_string_equal(v, "1");
    PQfinish(c);
}

/* ---- cancel, deadline ------------------------------------------------------ */

typedef struct sleep_job {
    PGconn *c;
    PGconn *mon;
    int pid;
    int rc;
    testsrv *kill; /* kill this server once the query runs, or NULL */
} sleep_job;

static int sleep_task(eg_ctx *ctx, void *arg)
{
    sleep_job *j = arg;
    PGresult *res = NULL;
    j->rc = eg_pq_exec(ctx, j->c, "SELECT pg_sleep(30)", &res);
    PQclear(res);
    return j->rc;
}

static int fail_when_active(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    sleep_job *j = arg;
    bool active = wait_state(j->mon, j->pid, "active");
    if (j->kill) {
        testsrv_kill(j->kill);
        return active ? 0 : -ETIME;
    }
    if (!active)
        return -ETIME;
    return eg_errorf(-EIO, "sibling failed");
}

static void test_cancel_by_sibling(void **state)
{
    (void)state;
    sleep_job j = {.c = conn(), .mon = conn()};
    j.pid = PQbackendPID(j.c);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, sleep_task, &j), 0);
    assert_int_equal(eg_go(g, fail_when_active, &j), 0);
    assert_int_equal(eg_wait(g), -EIO);
    eg_group_free(g);
    assert_int_equal(j.rc, -ECANCELED);
    /* The query stopped on the server: the backend is idle, not active
     * (bounded poll; the adapter already waited for the cancel). */
    assert_true(wait_state(j.mon, j.pid, "idle"));
    /* The same connection answers the next query. */
    assert_int_equal(PQstatus(j.c), CONNECTION_OK);
    char v[16];
    value(j.c, "SELECT 1", v, sizeof v);
    assert_string_equal(v, "1");
    PQfinish(j.c);
    PQfinish(j.mon);
}

static void test_deadline(void **state)
{
    (void)state;
    PGconn *c = conn();
    PGconn *mon = conn();
    eg_ctx *ctx = eg_with_timeout(NULL, MS(100));
    PGresult *res = (PGresult *)1;
    assert_int_equal(eg_pq_exec(ctx, c, "SELECT pg_sleep(30)", &res), -ETIMEDOUT);
    assert_null(res);
    eg_ctx_release(ctx);
    assert_true(wait_state(mon, PQbackendPID(c), "idle"));
    char v[16];
    value(c, "SELECT 1", v, sizeof v);
    assert_string_equal(v, "1");

    /* With parameters, inside a transaction: the cancel aborts it. */
    value(c, "BEGIN; SELECT 1", v, sizeof v);
    ctx = eg_with_timeout(NULL, MS(50));
    const char *secs[] = {"30"};
    assert_int_equal(eg_pq_exec_params(ctx, c, "SELECT pg_sleep($1::float8)", 1, NULL,
                                       secs, NULL, NULL, 0, &res),
                     -ETIMEDOUT);
    eg_ctx_release(ctx);
    assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
    assert_int_equal(eg_pq_exec(eg_background(), c, "ROLLBACK", &res), 0);
    PQclear(res);
    value(c, "SELECT 2", v, sizeof v);
    assert_string_equal(v, "2");
    PQfinish(c);
    PQfinish(mon);
}

/* ---- 100 connections at once --------------------------------------------- */

#define MANY 100

typedef struct many_job {
    PGconn *holder; /* holds advisory lock 42 exclusively */
    atomic_int *failed;
} many_job;

/* Each task waits on the server for a lock the releaser frees only once
 * all MANY sessions wait for it: the calls are in flight together. */
static int many_task(eg_ctx *ctx, void *arg)
{
    (void)arg;
    char info[700];
    snprintf(info, sizeof info, "%s application_name=egmany", srv.conninfo);
    int err;
    PGconn *c = eg_pq_connect(ctx, info, &err);
    if (!c)
        return err;
    PGresult *res = NULL;
    int rc = eg_pq_exec(ctx, c, "SELECT pg_advisory_lock_shared(42)", &res);
    PQclear(res);
    PQfinish(c);
    return rc;
}

static int release_task(eg_ctx *ctx, void *arg)
{
    many_job *j = arg;
    int err;
    PGconn *mon = eg_pq_connect(ctx, srv.conninfo, &err);
    if (!mon)
        return err;
    int rc = -ETIME;
    for (int i = 0; i < 3000; i++) {
        PGresult *res = NULL;
        int r = eg_pq_exec(ctx, mon,
                           "SELECT count(*) FROM pg_stat_activity WHERE "
                           "application_name = 'egmany' AND wait_event_type = 'Lock'",
                           &res);
        int n = r == 0 ? atoi(PQgetvalue(res, 0, 0)) : -1;
        PQclear(res);
        if (r < 0) {
            rc = r;
            break;
        }
        if (n == MANY) {
            rc = 0;
            break;
        }
        eg_sleep(ctx, MS(10));
    }
    PQfinish(mon);
    PGresult *res = NULL;
    int r = eg_pq_exec(ctx, j->holder, "SELECT pg_advisory_unlock(42)", &res);
    PQclear(res);
    return rc < 0 ? rc : r;
}

static void test_hundred_connections(void **state)
{
    (void)state;
    many_job j = {.holder = conn()};
    char v[16];
    value(j.holder, "SELECT pg_advisory_lock(42)", v, sizeof v);
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(eg_go(g, many_task, NULL), 0);
    assert_int_equal(eg_go(g, release_task, &j), 0);
    int rc = eg_wait(g);
    if (rc != 0)
        fprintf(stderr, "group: %s\n", eg_group_errmsg(g));
    assert_int_equal(rc, 0);
    eg_group_free(g);
    PQfinish(j.holder);
}

/* ---- a killed server (last: it takes the server down) -------------------- */

static void test_server_killed(void **state)
{
    (void)state;
    sleep_job j = {.c = conn(), .mon = conn(), .kill = &srv};
    j.pid = PQbackendPID(j.c);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, sleep_task, &j), 0);
    assert_int_equal(eg_go(g, fail_when_active, &j), 0);
    int rc = eg_wait(g);
    eg_group_free(g);
    assert_int_equal(rc, j.rc);
    assert_true(j.rc == -EIO || j.rc == -ECONNRESET);
    /* The connection is broken now; a later call says so at once. */
    PGresult *res = NULL;
    rc = eg_pq_exec(eg_background(), j.c, "SELECT 1", &res);
    PQclear(res);
    assert_true(rc == -ENOTCONN || rc == -ECONNRESET);
    assert_int_equal(PQstatus(j.c), CONNECTION_BAD);
    PQfinish(j.c);
    PQfinish(j.mon);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_round_trip),          EG_TEST(test_blocking_connection_works),
        EG_TEST(test_server_error),        EG_TEST(test_bad_arguments),
        EG_TEST(test_connect_errors),      EG_TEST(test_done_at_entry),
        EG_TEST(test_cancel_by_sibling),   EG_TEST(test_deadline),
        EG_TEST(test_hundred_connections), EG_TEST(test_server_killed),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
