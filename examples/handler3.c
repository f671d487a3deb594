/*
 * handler3 - the seed's handler with three different backends in one group:
 * an HTTP call (libcurl, to an in-process stub), a Redis GET (hiredis) and
 * a PostgreSQL query (libpq). Each call listens to the group's context, so
 * the first failure cancels the other two, in each client library.
 *
 *   handler3 --redis PORT --pg CONNINFO [--fail http] [--pg-sleep SECONDS]
 *
 * Under ctest it runs against the test servers (tests/withservers). With
 * --fail http the profile service answers 500: the handler returns at once
 * and the PostgreSQL query (make it slow with --pg-sleep 30) is cancelled
 * on the server, the Redis command abandoned.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errgroup.h>
#include <eg/curl.h>
#include <eg/pq.h>
#include <eg/redis.h>

#include "httpstub.h"

/* ---- the handler --------------------------------------------------------- */

struct request {
    const char *profile_url; /* HTTP */
    int redis_port;          /* Redis: the session */
    const char *pg_conninfo; /* PostgreSQL: the orders */
    const char *pg_sleep;    /* how slow the orders query is, seconds */
    long http_status;        /* results */
    char session[64];
    int orders;
};

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    (void)p, (void)arg;
    return size * n;
}

static int fetch_profile(eg_ctx *ctx, void *arg)
{
    struct request *rq = arg;
    CURL *h = curl_easy_init();
    if (!h)
        return -ENOMEM;
    curl_easy_setopt(h, CURLOPT_URL, rq->profile_url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
    CURLcode rc = eg_curl_perform(ctx, h); /* aborted when ctx is done */
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rq->http_status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK)
        return eg_curl_err(ctx, rc);
    if (rq->http_status >= 500)
        return eg_errorf(-EIO, "profile service: HTTP %ld", rq->http_status);
    return 0;
}

static int fetch_session(eg_ctx *ctx, void *arg)
{
    struct request *rq = arg;
    int err;
    redisContext *c = eg_redis_connect(ctx, "127.0.0.1", rq->redis_port, &err);
    if (!c)
        return err;
    redisReply *r = NULL;
    err = eg_redis_command(ctx, c, &r, "GET %s",
                           "session:42"); /* abandoned when ctx is done */
    if (err == 0 && r->type == REDIS_REPLY_STRING)
        snprintf(rq->session, sizeof rq->session, "%s", r->str);
    else if (err == 0)
        err = eg_errorf(-ENOENT, "session:42 not found");
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return err;
}

static int fetch_orders(eg_ctx *ctx, void *arg)
{
    struct request *rq = arg;
    int err;
    PGconn *c = eg_pq_connect(ctx, rq->pg_conninfo, &err);
    if (!c)
        return err;
    PGresult *res = NULL;
    const char *params[] = {rq->pg_sleep};
    err = eg_pq_exec_params(
        ctx, c, /* cancelled on the server when ctx is done */
        "SELECT count(*) FROM generate_series(1, 3), pg_sleep($1::float8)", 1, NULL,
        params, NULL, NULL, 0, &res);
    if (err == 0)
        rq->orders = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    PQfinish(c);
    return err;
}

static int handle(eg_ctx *request_ctx, struct request *rq)
{
    eg_group *g = eg_group_new(request_ctx);
    if (!g)
        return -ENOMEM;
    eg_group_set_trace(g, true);
    int err = eg_go_named(g, "profile (HTTP)", fetch_profile, rq);
    if (!err)
        err = eg_go_named(g, "session (Redis)", fetch_session, rq);
    if (!err)
        err = eg_go_named(g, "orders (PostgreSQL)", fetch_orders, rq);
    int werr = eg_wait(g);
    if (werr) {
        fprintf(stderr, "handler: %s\n", eg_group_errmsg(g));
        eg_trace_entry t[3];
        size_t n = eg_group_trace(g, t, 3);
        for (size_t i = 0; i < n; i++)
            printf("%s: %s\n", t[i].name, eg_outcome_name(t[i].outcome));
    }
    eg_group_free(g);
    return err ? err : werr;
}

/* ---- the demo around it -------------------------------------------------- */

static int usage(FILE *to)
{
    fprintf(to, "usage: handler3 --redis PORT --pg CONNINFO [--fail http] [--pg-sleep "
                "SECONDS]\n");
    return to == stdout ? 0 : 2;
}

/* Demo data: the session the handler reads. */
static int seed(int redis_port)
{
    int err;
    redisContext *c = eg_redis_connect(eg_background(), "127.0.0.1", redis_port, &err);
    if (!c)
        return err;
    redisReply *r = NULL;
    err = eg_redis_command(eg_background(), c, &r, "SET session:42 %s", "alice");
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return err;
}

int main(int argc, char **argv)
{
    struct request rq = {.pg_sleep = "0.05"};
    int fail_http = 0;
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(argv[i], "--help"))
            return usage(stdout);
        if (!strcmp(argv[i], "--redis") && next)
            rq.redis_port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--pg") && next)
            rq.pg_conninfo = argv[++i];
        else if (!strcmp(argv[i], "--pg-sleep") && next)
            rq.pg_sleep = argv[++i];
        else if (!strcmp(argv[i], "--fail") && next && !strcmp(next, "http"))
            fail_http = 1, i++;
        else
            return usage(stderr);
    }
    if (rq.redis_port <= 0 || !rq.pg_conninfo)
        return usage(stderr);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    httpstub *stub;
    int err = httpstub_start(&stub, fail_http ? 500 : 200, 20 * EG_NSEC_PER_MSEC);
    if (err == 0)
        err = seed(rq.redis_port);
    if (err) {
        fprintf(stderr, "handler3: set-up: %s\n", eg_strerror(err));
        return 1;
    }
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/profile/42", httpstub_port(stub));
    rq.profile_url = url;

    err = handle(eg_background(), &rq);
    if (err == 0)
        printf("profile: HTTP %ld\nsession: %s\norders: %d\n", rq.http_status, rq.session,
               rq.orders);
    httpstub_stop(stub);
    curl_global_cleanup();
    return err ? 1 : 0;
}
