/*
 * test_redis.c - the hiredis adapter against a real redis-server the test
 * starts (servers.h).
 */
#include "testutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "eg/redis.h"
#include "servers.h"

static testsrv srv;

static int start_server(void **state)
{
    (void)state;
    return testsrv_redis_start(&srv) == 0 ? 0 : -1; /* no server: FAIL */
}

static int stop_server(void **state)
{
    (void)state;
    testsrv_stop(&srv);
    return 0;
}

static redisContext *connect_to(int port)
{
    int err = 1;
    redisContext *c = eg_redis_connect(eg_background(), "127.0.0.1", port, &err);
    assert_non_null(c);
    assert_int_equal(err, 0);
    return c;
}

static redisContext *conn(void)
{
    return connect_to(srv.port);
}

/* The command must succeed; returns the reply (freed by the caller). */
static redisReply *must(redisContext *c, const char *fmt, const char *arg)
{
    redisReply *r = NULL;
    assert_int_equal(eg_redis_command(eg_background(), c, &r, fmt, arg), 0);
    assert_non_null(r);
    return r;
}

static long long client_id(redisContext *c)
{
    redisReply *r = must(c, "CLIENT ID", NULL);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long id = r->integer;
    freeReplyObject(r);
    return id;
}

/* The CLIENT LIST line of client id (copied into line), or false. */
static bool client_line(redisContext *mon, long long id, char *line, size_t n)
{
    redisReply *r = must(mon, "CLIENT LIST", NULL);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    char key[40];
    snprintf(key, sizeof key, "id=%lld ", id);
    bool found = false;
    for (char *p = r->str; p && *p;) {
        char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (strncmp(p, key, strlen(key)) == 0) {
            snprintf(line, n, "%.*s", (int)len, p);
            found = true;
            break;
        }
        p = end ? end + 1 : NULL;
    }
    freeReplyObject(r);
    return found;
}

/* Waits (bounded, about 10 s) until client id is blocked in cmd, or gone. */
static bool wait_client(redisContext *mon, long long id, const char *cmd, bool gone)
{
    char want[40], line[1024];
    snprintf(want, sizeof want, " cmd=%s ", cmd ? cmd : "");
    for (int i = 0; i < 1000; i++) {
        bool present = client_line(mon, id, line, sizeof line);
        if (gone ? !present : (present && strstr(line, want)))
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
    close(fd); /* bound, never listened: nothing accepts on it now */
    return ntohs(a.sin_port);
}

/* ---- success paths ------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    redisContext *c = conn();
    redisReply *r = NULL;
    assert_int_equal(
        eg_redis_command(eg_background(), c, &r, "SET %s %s", "rt:k", "hello"), 0);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->str, "OK");
    freeReplyObject(r);
    r = must(c, "GET %s", "rt:k");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "hello");
    freeReplyObject(r);

    /* Binary values through argv (an embedded NUL). */
    const char bin[] = {'a', 0, 'b', (char)0xff};
    const char *argv[] = {"SET", "rt:bin", bin};
    size_t lens[] = {3, 6, sizeof bin};
    assert_int_equal(eg_redis_command_argv(eg_background(), c, &r, 3, argv, lens), 0);
    freeReplyObject(r);
    const char *get[] = {"GET", "rt:bin"};
    assert_int_equal(eg_redis_command_argv(eg_background(), c, &r, 2, get, NULL), 0);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_int_equal(r->len, sizeof bin);
    assert_memory_equal(r->str, bin, sizeof bin);
    freeReplyObject(r);

    /* A missing key is a nil reply, not an error. */
    r = must(c, "GET %s", "rt:none");
    assert_int_equal(r->type, REDIS_REPLY_NIL);
    freeReplyObject(r);

    /* An array reply. */
    freeReplyObject(must(c, "DEL %s", "rt:list"));
    assert_int_equal(eg_redis_command(eg_background(), c, &r, "RPUSH rt:list a b c"), 0);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 3);
    freeReplyObject(r);
    r = must(c, "LRANGE %s 0 -1", "rt:list");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 3);
    assert_string_equal(r->element[0]->str, "a");
    assert_string_equal(r->element[2]->str, "c");
    freeReplyObject(r);
    redisFree(c);
}

static void test_pipeline(void **state)
{
    (void)state;
    redisContext *c = conn();
    /* Three commands, one flush: the replies arrive together, and the
     * second and third are taken from hiredis's buffer without waiting (a
     * wait would never end: the deadline turns it into a failure). */
    for (int round = 0; round < 50; round++) {
        assert_int_equal(redisAppendCommand(c, "SET pl:%d %d", round, round * 7),
                         REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "INCR pl:%d", round), REDIS_OK);
        assert_int_equal(redisAppendCommand(c, "GET pl:%d", round), REDIS_OK);
        eg_ctx *ctx = eg_with_timeout(NULL, INT64_C(10) * EG_NSEC_PER_SEC);
        redisReply *r[3];
        for (int i = 0; i < 3; i++)
            assert_int_equal(eg_redis_get_reply(ctx, c, &r[i]), 0);
        assert_int_equal(eg_ctx_err(ctx), 0);
        assert_string_equal(r[0]->str, "OK");
        assert_int_equal(r[1]->integer, round * 7 + 1);
        char want[32];
        snprintf(want, sizeof want, "%d", round * 7 + 1);
        assert_string_equal(r[2]->str, want);
        for (int i = 0; i < 3; i++)
            freeReplyObject(r[i]);
        eg_cancel(ctx, 0);
        eg_ctx_release(ctx);
    }
    /* Many at once: more output than one write and more replies than one
     * read. */
    for (int i = 0; i < 2000; i++)
        assert_int_equal(redisAppendCommand(c, "PING"), REDIS_OK);
    for (int i = 0; i < 2000; i++) {
        redisReply *r;
        assert_int_equal(eg_redis_get_reply(eg_background(), c, &r), 0);
        assert_string_equal(r->str, "PONG");
        freeReplyObject(r);
    }
    redisFree(c);
}

static void test_blocking_context_works(void **state)
{
    (void)state;
    redisContext *c = redisConnect("127.0.0.1", srv.port);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    redisReply *r;
    assert_int_equal(eg_redis_command(eg_background(), c, &r, "PING"), 0);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    redisFree(c);
}

/* ---- errors -------------------------------------------------------------- */

static void test_server_error(void **state)
{
    (void)state;
    redisContext *c = conn();
    freeReplyObject(must(c, "SET %s x", "err:str"));
    redisReply *r = NULL;
    assert_int_equal(eg_redis_command(eg_background(), c, &r, "LPUSH err:str y"), -EIO);
    assert_non_null(r); /* kept: the error's text */
    assert_int_equal(r->type, REDIS_REPLY_ERROR);
    assert_non_null(strstr(r->str, "WRONGTYPE"));
    freeReplyObject(r);
    assert_int_equal(eg_redis_command(eg_background(), c, &r, "NOSUCHCOMMAND"), -EIO);
    freeReplyObject(r);
    /* An error reply leaves the connection usable. */
    r = must(c, "PING", NULL);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    redisFree(c);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    redisContext *c = conn();
    redisReply *r = (redisReply *)1;
    assert_int_equal(eg_redis_command(NULL, c, &r, "PING"), -EINVAL);
    assert_null(r);
    assert_int_equal(eg_redis_command(eg_background(), NULL, &r, "PING"), -EINVAL);
    assert_int_equal(eg_redis_command(eg_background(), c, NULL, "PING"), -EINVAL);
    assert_int_equal(eg_redis_command(eg_background(), c, &r, NULL), -EINVAL);
    assert_int_equal(eg_redis_command_argv(eg_background(), c, &r, 0, NULL, NULL),
                     -EINVAL);
    assert_int_equal(eg_redis_get_reply(eg_background(), c, NULL), -EINVAL);
    /* A bad format string fails without poisoning c. */
    assert_int_equal(eg_redis_command(eg_background(), c, &r, "SET k %q"), -EINVAL);
    r = must(c, "PING", NULL);
    freeReplyObject(r);
    int err = 0;
    assert_null(eg_redis_connect(eg_background(), "127.0.0.1", 0, &err));
    assert_int_equal(err, -EINVAL);
    assert_null(eg_redis_connect(eg_background(), NULL, 6379, &err));
    assert_int_equal(err, -EINVAL);
    redisFree(c);
}

static void test_connect_refused(void **state)
{
    (void)state;
    int err = 0;
    assert_null(eg_redis_connect(eg_background(), "127.0.0.1", closed_port(), &err));
    assert_int_equal(err, -ECONNREFUSED);
    assert_null(eg_redis_connect(eg_background(), "no-such-host.invalid", 6379, &err));
    assert_int_equal(err, -EHOSTUNREACH);
}

static void test_done_at_entry(void **state)
{
    (void)state;
    redisContext *c = conn();
    eg_ctx *ctx = eg_with_cancel(NULL);
    eg_cancel(ctx, 0);
    redisReply *r;
    assert_int_equal(eg_redis_command(ctx, c, &r, "PING"), -ECANCELED);
    assert_null(r);
    int err = 0;
    assert_null(eg_redis_connect(ctx, "127.0.0.1", srv.port, &err));
    assert_int_equal(err, -ECANCELED);
    eg_ctx_release(ctx);
    /* Nothing was sent: c is still usable. */
    r = must(c, "PING", NULL);
    assert_string_equal(r->str, "PONG");
    freeReplyObject(r);
    redisFree(c);
}

/* ---- cancel, deadline, a killed server ---------------------------------- */

typedef struct blpop_job {
    redisContext *c;
    redisContext *mon;
    long long id;
    int rc;
    const char *key;
} blpop_job;

static int blpop_task(eg_ctx *ctx, void *arg)
{
    blpop_job *j = arg;
    redisReply *r = NULL;
    j->rc = eg_redis_command(ctx, j->c, &r, "BLPOP %s 0", j->key);
    if (r)
        freeReplyObject(r);
    return j->rc;
}

static int fail_when_blocked(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    blpop_job *j = arg;
    if (!wait_client(j->mon, j->id, "blpop", false))
        return -ETIME; /* never blocked: the test fails on this code */
    return eg_errorf(-EIO, "sibling failed");
}

static void test_cancel_by_sibling(void **state)
{
    (void)state;
    blpop_job j = {.c = conn(), .mon = conn(), .key = "cancel:nothing"};
    j.id = client_id(j.c);
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, blpop_task, &j), 0);
    assert_int_equal(eg_go(g, fail_when_blocked, &j), 0);
    assert_int_equal(eg_wait(g), -EIO);
    eg_group_free(g);
    assert_int_equal(j.rc, -ECANCELED);
    /* The server dropped the blocked client (bounded poll, not a timing). */
    assert_true(wait_client(j.mon, j.id, NULL, true));
    /* The connection is marked: a later call fails at once. */
    assert_int_not_equal(j.c->err, 0);
    redisReply *r = (redisReply *)1;
    assert_int_equal(eg_redis_command(eg_background(), j.c, &r, "PING"), -ENOTCONN);
    assert_null(r);
    assert_int_equal(eg_redis_get_reply(eg_background(), j.c, &r), -ENOTCONN);
    redisFree(j.c);
    redisFree(j.mon);
}

static void test_deadline(void **state)
{
    (void)state;
    redisContext *c = conn();
    redisContext *mon = conn();
    long long id = client_id(c);
    eg_ctx *ctx = eg_with_timeout(NULL, MS(100));
    redisReply *r = NULL;
    assert_int_equal(eg_redis_command(ctx, c, &r, "BLPOP deadline:nothing 0"),
                     -ETIMEDOUT);
    assert_null(r);
    eg_ctx_release(ctx);
    assert_int_equal(eg_redis_command(eg_background(), c, &r, "PING"), -ENOTCONN);
    assert_true(wait_client(mon, id, NULL, true));
    redisFree(c);

    /* A pipelined get_reply cut by a deadline marks the context too. */
    c = conn();
    assert_int_equal(redisAppendCommand(c, "BLPOP deadline:nothing 0"), REDIS_OK);
    ctx = eg_with_timeout(NULL, MS(50));
    assert_int_equal(eg_redis_get_reply(ctx, c, &r), -ETIMEDOUT);
    eg_ctx_release(ctx);
    assert_int_equal(eg_redis_get_reply(eg_background(), c, &r), -ENOTCONN);
    redisFree(c);
    redisFree(mon);
}

static int kill_when_blocked(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    blpop_job *j = arg;
    bool blocked = wait_client(j->mon, j->id, "blpop", false);
    testsrv_kill((testsrv *)j->key);
    return blocked ? 0 : -ETIME;
}

static void test_server_killed(void **state)
{
    (void)state;
    testsrv own;
    assert_int_equal(testsrv_redis_start(&own), 0);
    blpop_job j = {.c = connect_to(own.port), .mon = connect_to(own.port)};
    j.id = client_id(j.c);
    /* key doubles as the server to kill; the BLPOP key is fixed. */
    blpop_job b = j;
    b.key = "killed:nothing";
    j.key = (const char *)&own;
    eg_group *g = eg_group_new(NULL);
    assert_int_equal(eg_go(g, blpop_task, &b), 0);
    assert_int_equal(eg_go(g, kill_when_blocked, &j), 0);
    int rc = eg_wait(g);
    eg_group_free(g);
    assert_int_equal(rc, b.rc); /* the killer succeeded; the error is BLPOP's */
    assert_true(b.rc < 0);
    assert_int_not_equal(b.rc, -ECANCELED);
    assert_int_not_equal(b.rc, -ETIME);
    redisReply *r;
    assert_int_equal(eg_redis_command(eg_background(), b.c, &r, "PING"), -ENOTCONN);
    redisFree(b.c);
    redisFree(j.mon);
    testsrv_stop(&own);
}

/* ---- 100 connections at once --------------------------------------------- */

#define MANY 100

typedef struct many_job {
    int i;
    atomic_int *ready;
} many_job;

/* Each task connects, checks in, and blocks in BLPOP until the releaser
 * has seen all MANY check in: the calls are in flight together. */
static int many_task(eg_ctx *ctx, void *arg)
{
    many_job *j = arg;
    int err;
    redisContext *c = eg_redis_connect(ctx, "127.0.0.1", srv.port, &err);
    if (!c)
        return err;
    redisReply *r = NULL;
    int rc = eg_redis_command(ctx, c, &r, "SET many:%d %d", j->i, j->i);
    if (r)
        freeReplyObject(r);
    r = NULL;
    if (rc == 0) {
        atomic_fetch_add(j->ready, 1);
        rc = eg_redis_command(ctx, c, &r, "BLPOP many:go 30");
        if (rc == 0 && r->type != REDIS_REPLY_ARRAY)
            rc = -EPROTO; /* nil: timed out on the server */
    }
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return rc;
}

static int release_task(eg_ctx *ctx, void *arg)
{
    many_job *j = arg;
    if (!wait_for_int_in_task(ctx, j->ready, MANY))
        return -ETIME;
    int err;
    redisContext *c = eg_redis_connect(ctx, "127.0.0.1", srv.port, &err);
    if (!c)
        return err;
    int rc = 0;
    for (int i = 0; i < MANY && rc == 0; i++) {
        redisReply *r = NULL;
        rc = eg_redis_command(ctx, c, &r, "RPUSH many:go %d", i);
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    return rc;
}

static void test_hundred_connections(void **state)
{
    (void)state;
    atomic_int ready = 0;
    many_job jobs[MANY + 1];
    eg_group *g = eg_group_new(NULL);
    for (int i = 0; i < MANY; i++) {
        jobs[i] = (many_job){.i = i, .ready = &ready};
        assert_int_equal(eg_go(g, many_task, &jobs[i]), 0);
    }
    jobs[MANY] = (many_job){.i = MANY, .ready = &ready};
    assert_int_equal(eg_go(g, release_task, &jobs[MANY]), 0);
    assert_int_equal(eg_wait(g), 0);
    eg_group_free(g);
    assert_int_equal(atomic_load(&ready), MANY);
    redisContext *c = conn();
    redisReply *r = must(c, "LLEN %s", "many:go");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        EG_TEST(test_round_trip),
        EG_TEST(test_pipeline),
        EG_TEST(test_blocking_context_works),
        EG_TEST(test_server_error),
        EG_TEST(test_bad_arguments),
        EG_TEST(test_connect_refused),
        EG_TEST(test_done_at_entry),
        EG_TEST(test_cancel_by_sibling),
        EG_TEST(test_deadline),
        EG_TEST(test_server_killed),
        EG_TEST(test_hundred_connections),
    };
    return cmocka_run_group_tests(tests, start_server, stop_server);
}
