/*
 * fanout.c - one request handler calls three services, three ways.
 *
 * A handler needs answers from services A, B and C. With the defaults,
 * A answers after 300 ms, B fails (HTTP 500) after 100 ms, C answers after
 * 200 ms. The demo runs the handler three ways, each call made with libcurl
 * through eg_curl_perform:
 *
 *   serial     one call after the other               ~ A+B+C = 600 ms
 *   waitgroup  concurrent, eg_wg: waits for every     ~ max   = 300 ms
 *              call, even after B has failed
 *   errgroup   concurrent, eg_group: B's failure      ~ B     = 100 ms
 *              cancels the context, and the transfers
 *              to A and C are aborted (their
 *              connections closed)
 *
 * Every variant makes every call it needs and returns the first error, so
 * they differ only in how they wait. With no --url the services are
 * in-process stubs (httpstub.c) that also report, from the server's side,
 * whether the client closed the connection before the answer was due.
 *
 * After the table, the errgroup variant's own account of its tasks is
 * printed with eg_group_print (with --trace, every task with its start and
 * end; without, the failed ones).
 *
 * Run `fanout --help` for the flags.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errgroup.h>
#include <eg/curl.h>

#include "httpstub.h"

#define NSERVICES 3
#define MS_NS EG_NSEC_PER_MSEC
/* Each handler run gets a request context with this deadline, as a
 * server would give each incoming request. */
#define REQUEST_TIMEOUT_NS (10 * EG_NSEC_PER_SEC)
/* How long to wait for a stub to report a connection it is closing. */
#define RECORD_WAIT_NS (2 * EG_NSEC_PER_SEC)

/* ---- the services ------------------------------------------------------- */

struct service {
    const char *name;
    int64_t latency_ns; /* of the built-in stub */
    int status;         /* of the built-in stub: 200, or 500 with --fail */
    char url[1024];     /* --url, or the stub's */
    httpstub *stub;     /* NULL when --url points elsewhere */
};

/* ---- one downstream call ----------------------------------------------- */

enum outcome { OUTCOME_OK, OUTCOME_FAILED, OUTCOME_CANCELLED };

static const char *outcome_name(enum outcome o)
{
    switch (o) {
    case OUTCOME_OK:
        return "ok";
    case OUTCOME_FAILED:
        return "failed";
    case OUTCOME_CANCELLED:
        return "cancelled";
    }
    return "?";
}

struct call {
    const struct service *svc;
    enum outcome outcome;
    int err;            /* 0, or the negative errno call_service returned */
    char msg[256];      /* the error's text, "" when ok */
    int64_t elapsed_ns; /* from the start of the call to its end */
    bool sent;          /* the request went out: a stub will report it */
};

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
    return size * nmemb;
}

/* Records how c ended, and returns err with msg attached for the group
 * (eg_errorf; outside a group task it just returns err). */
EG_PRINTF(5, 6)
static int call_end(struct call *c, int64_t start, enum outcome outcome, int err,
                    const char *fmt, ...)
{
    c->outcome = outcome;
    c->err = err;
    c->elapsed_ns = eg_now() - start;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
    return err == 0 ? 0 : eg_errorf(err, "%s", c->msg);
}

/* GET the service's URL; a 2xx answer is success. Returns 0 or a negative
 * errno with text: "B: HTTP 500", "A: Operation canceled", ... */
static int call_service(eg_ctx *ctx, struct call *c)
{
    const char *name = c->svc->name;
    int64_t start = eg_now();
    CURL *easy = curl_easy_init();
    if (!easy)
        return call_end(c, start, OUTCOME_FAILED, -ENOMEM, "%s: %s", name,
                        eg_strerror(-ENOMEM));
    curl_easy_setopt(easy, CURLOPT_URL, c->svc->url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);

    CURLcode rc = eg_curl_perform(ctx, easy);
    long status = 0, sent = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(easy, CURLINFO_REQUEST_SIZE, &sent);
    curl_easy_cleanup(easy);
    c->sent = sent > 0;

    int err = eg_curl_err(ctx, rc);
    if (rc == CURLE_ABORTED_BY_CALLBACK)
        return call_end(c, start, OUTCOME_CANCELLED, err, "%s: %s", name,
                        eg_strerror(err));
    if (rc != CURLE_OK)
        return call_end(c, start, OUTCOME_FAILED, err, "%s: %s", name,
                        curl_easy_strerror(rc));
    if (status < 200 || status > 299)
        return call_end(c, start, OUTCOME_FAILED, -EIO, "%s: HTTP %ld", name, status);
    return call_end(c, start, OUTCOME_OK, 0, "%s", "");
}

/* The first error of calls[0..n), in call order, with its text. */
static int first_error(const struct call *calls, int n, char *errmsg, size_t len)
{
    for (int i = 0; i < n; i++) {
        if (calls[i].err != 0) {
            snprintf(errmsg, len, "%s", calls[i].msg);
            return calls[i].err;
        }
    }
    return 0;
}

/* ---- the handler, three ways -------------------------------------------- */

/* 1. Serial: each call waits for the one before. */
static int handle_serial(eg_ctx *ctx, struct call *calls, int n, char *errmsg, size_t len)
{
    for (int i = 0; i < n; i++)
        call_service(ctx, &calls[i]);
    return first_error(calls, n, errmsg, len);
}

/* 2. WaitGroup: the calls run concurrently, but a failure stops nothing:
 * eg_wg_wait returns when the slowest call is done. */
struct wg_call {
    eg_ctx *ctx;
    struct call *call;
};

static void wg_call_fn(void *arg)
{
    struct wg_call *w = arg;
    call_service(w->ctx, w->call);
}

static int handle_waitgroup(eg_ctx *ctx, struct call *calls, int n, char *errmsg,
                            size_t len)
{
    eg_wg wg;
    struct wg_call args[NSERVICES];
    if (eg_wg_init(&wg) != 0)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        args[i] = (struct wg_call){ctx, &calls[i]};
        if (eg_wg_go(&wg, wg_call_fn, &args[i]) != 0)
            wg_call_fn(&args[i]); /* no thread to spare: call it here */
    }
    eg_wg_wait(&wg);
    eg_wg_destroy(&wg);
    return first_error(calls, n, errmsg, len);
}

/* 3. errgroup: the first failure cancels the group's context, and the
 * calls still in flight are aborted. The Go original:
 *
 *     g, ctx := errgroup.WithContext(ctx)
 *     for _, c := range calls {
 *         g.Go(func() error { return callService(ctx, c) })
 *     }
 *     return g.Wait()
 */
static int call_task(eg_ctx *ctx, void *arg)
{
    return call_service(ctx, arg);
}

/* eg_group_print's table of the last errgroup run (malloc'd), and whether
 * to trace every task. */
static char *group_table;
static bool trace_tasks;

static int handle_errgroup(eg_ctx *ctx, struct call *calls, int n, char *errmsg,
                           size_t len)
{
    eg_group *g = eg_group_new(ctx);
    if (!g)
        return -ENOMEM;
    eg_group_set_trace(g, trace_tasks);
    for (int i = 0; i < n; i++) {
        int err = eg_go_named(g, calls[i].svc->name, call_task, &calls[i]);
        if (err != 0) { /* out of memory or threads: give up the request */
            eg_cancel(eg_group_ctx(g), err);
            break;
        }
    }
    int err = eg_wait(g);
    snprintf(errmsg, len, "%s", eg_group_errmsg(g));
    size_t size = 0;
    FILE *f = open_memstream(&group_table, &size);
    if (f) {
        eg_group_print(g, f);
        fclose(f);
    }
    eg_group_free(g);
    return err;
}

/* ---- running and reporting ---------------------------------------------- */

typedef int handler_fn(eg_ctx *ctx, struct call *calls, int n, char *errmsg, size_t len);

struct variant {
    const char *name;
    handler_fn *handle;
    int err;
    char errmsg[EG_ERRMSG_MAX];
    int64_t elapsed_ns;
    struct call calls[NSERVICES];
    /* The stubs' side of each call, when it reached one. */
    bool has_record[NSERVICES];
    httpstub_record record[NSERVICES];
};

/* The stub's record of the connection that carried call c: the next one
 * with a request in it. False when c sent no request or none came. */
static bool take_record(httpstub *stub, const struct call *c, httpstub_record *r)
{
    if (!stub || !c->sent)
        return false;
    while (httpstub_next(stub, r, RECORD_WAIT_NS) == 0)
        if (r->outcome != HTTPSTUB_NO_REQUEST)
            return true;
    return false;
}

static void run_variant(struct variant *v, struct service *svcs)
{
    httpstub_record stale;
    for (int i = 0; i < NSERVICES; i++) {
        v->calls[i] = (struct call){.svc = &svcs[i]};
        /* Connections an earlier run opened but never used. */
        while (svcs[i].stub && httpstub_next(svcs[i].stub, &stale, 0) == 0)
            ;
    }
    eg_ctx *request = eg_with_timeout(NULL, REQUEST_TIMEOUT_NS);
    int64_t start = eg_now();
    v->err = request
                 ? v->handle(request, v->calls, NSERVICES, v->errmsg, sizeof v->errmsg)
                 : -ENOMEM;
    v->elapsed_ns = eg_now() - start;
    eg_ctx_release(request);
    if (v->err != 0 && v->errmsg[0] == '\0')
        snprintf(v->errmsg, sizeof v->errmsg, "%s", eg_strerror(v->err));

    /* Each call that reached a stub left one record there; the stub may
     * still be noticing the client's close. */
    for (int i = 0; i < NSERVICES; i++)
        v->has_record[i] = take_record(svcs[i].stub, &v->calls[i], &v->record[i]);
}

static long ms(int64_t ns)
{
    return (long)((ns + MS_NS / 2) / MS_NS);
}

static void call_cell(const struct call *c, char *buf, size_t len)
{
    if (c->outcome == OUTCOME_CANCELLED)
        snprintf(buf, len, "cancelled after %ld ms", ms(c->elapsed_ns));
    else
        snprintf(buf, len, "%s, %ld ms", outcome_name(c->outcome), ms(c->elapsed_ns));
}

static void record_cell(const struct service *svc, const struct variant *v, int i,
                        char *buf, size_t len)
{
    const httpstub_record *r = &v->record[i];
    if (!svc->stub)
        snprintf(buf, len, "-");
    else if (!v->has_record[i])
        snprintf(buf, len, "no request");
    else if (r->outcome == HTTPSTUB_ANSWERED)
        snprintf(buf, len, "answered at %ld ms", ms(r->after_ns));
    else if (r->outcome == HTTPSTUB_CLIENT_CLOSED)
        snprintf(buf, len, "client closed at %ld ms", ms(r->after_ns));
    else
        snprintf(buf, len, "%s", httpstub_outcome_name(r->outcome));
}

#define CELL_WIDTH 24

/* Prints the cells of one row's service columns, padded but the last. */
static void print_cells(char cells[NSERVICES][64])
{
    for (int i = 0; i + 1 < NSERVICES; i++)
        printf("%-*s  ", CELL_WIDTH, cells[i]);
    printf("%s\n", cells[NSERVICES - 1]);
}

static void print_table(const struct service *svcs, struct variant *vs, int nv)
{
    int errw = (int)strlen("error");
    for (int k = 0; k < nv; k++) {
        int w = (int)strlen(vs[k].err ? vs[k].errmsg : "-");
        errw = w > errw ? w : errw;
    }
    char cells[NSERVICES][64];

    /* What the handler saw. */
    printf("%-10s %8s  %-*s  ", "variant", "elapsed", errw, "error");
    for (int i = 0; i < NSERVICES; i++)
        snprintf(cells[i], sizeof cells[i], "%s", svcs[i].name);
    print_cells(cells);
    for (int k = 0; k < nv; k++) {
        struct variant *v = &vs[k];
        printf("%-10s %5ld ms  %-*s  ", v->name, ms(v->elapsed_ns), errw,
               v->err ? v->errmsg : "-");
        for (int i = 0; i < NSERVICES; i++)
            call_cell(&v->calls[i], cells[i], sizeof cells[i]);
        print_cells(cells);
    }

    /* What the built-in services saw. */
    bool any_stub = false;
    for (int i = 0; i < NSERVICES; i++)
        any_stub |= svcs[i].stub != NULL;
    if (!any_stub)
        return;
    printf("\nserver side (ms after the request)\n%-10s  ", "variant");
    for (int i = 0; i < NSERVICES; i++)
        snprintf(cells[i], sizeof cells[i], "%s", svcs[i].name);
    print_cells(cells);
    for (int k = 0; k < nv; k++) {
        printf("%-10s  ", vs[k].name);
        for (int i = 0; i < NSERVICES; i++)
            record_cell(&svcs[i], &vs[k], i, cells[i], sizeof cells[i]);
        print_cells(cells);
    }

    /* The point of the demo, in words. */
    bool first = true;
    for (int k = 0; k < nv; k++) {
        struct variant *v = &vs[k];
        for (int i = 0; i < NSERVICES; i++) {
            if (!v->has_record[i] || v->record[i].outcome != HTTPSTUB_CLIENT_CLOSED)
                continue;
            printf("%s%s: the client closed %s's connection after %ld ms, "
                   "before its answer was due at %ld ms\n",
                   first ? "\n" : "", v->name, svcs[i].name, ms(v->record[i].after_ns),
                   ms(svcs[i].latency_ns));
            first = false;
        }
    }
}

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

static void print_json(struct variant *vs, int nv)
{
    for (int k = 0; k < nv; k++) {
        struct variant *v = &vs[k];
        printf("{\"variant\":");
        json_string(v->name);
        printf(",\"elapsed_ms\":%ld,\"error\":", ms(v->elapsed_ns));
        if (v->err)
            json_string(v->errmsg);
        else
            printf("null");
        printf(",\"calls\":[");
        for (int i = 0; i < NSERVICES; i++) {
            const struct call *c = &v->calls[i];
            printf("%s{\"name\":", i ? "," : "");
            json_string(c->svc->name);
            printf(",\"outcome\":\"%s\",\"elapsed_ms\":%ld}", outcome_name(c->outcome),
                   ms(c->elapsed_ns));
        }
        printf("]}\n");
    }
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *out)
{
    fprintf(out, "usage: fanout [--latency A=300,B=100,C=200] [--fail B|none]\n"
                 "              [--url NAME=URL]... [--trace] [--executor threads|coro]\n"
                 "              [--json] [--help]\n"
                 "\n"
                 "Runs a handler that calls services A, B and C three ways\n"
                 "(serial, WaitGroup, errgroup) and prints how long each took.\n"
                 "\n"
                 "  --latency LIST  built-in services' answer delays in ms\n"
                 "  --fail LIST     services that answer HTTP 500 (default B),\n"
                 "                  comma separated, or none\n"
                 "  --url NAME=URL  call URL instead of the built-in service NAME\n"
                 "                  (repeatable); 2xx is success\n"
                 "  --trace         trace every errgroup task (eg_group_set_trace)\n"
                 "                  in the group table printed after the others\n"
                 "  --executor E    run the tasks on threads (default) or coroutines\n"
                 "  --json          one JSON object per variant, one per line\n"
                 "  --help          this text\n");
}

static struct service *find_service(struct service *svcs, const char *name, size_t len)
{
    for (int i = 0; i < NSERVICES; i++)
        if (strlen(svcs[i].name) == len && strncmp(svcs[i].name, name, len) == 0)
            return &svcs[i];
    return NULL;
}

/* "A=300,B=100": true if every item names a service and a number of ms. */
static bool parse_latency(struct service *svcs, const char *arg)
{
    while (*arg) {
        const char *eq = strchr(arg, '=');
        struct service *s = eq ? find_service(svcs, arg, (size_t)(eq - arg)) : NULL;
        if (!s)
            return false;
        char *end;
        long v = strtol(eq + 1, &end, 10);
        if (end == eq + 1 || v < 0 || v > 3600 * 1000 || (*end && *end != ','))
            return false;
        s->latency_ns = v * MS_NS;
        arg = *end ? end + 1 : end;
    }
    return true;
}

/* "B", "A,C" or "none". */
static bool parse_fail(struct service *svcs, const char *arg)
{
    for (int i = 0; i < NSERVICES; i++)
        svcs[i].status = 200;
    if (strcmp(arg, "none") == 0)
        return true;
    while (*arg) {
        size_t len = strcspn(arg, ",");
        struct service *s = find_service(svcs, arg, len);
        if (!s)
            return false;
        s->status = 500;
        arg += len;
        if (*arg == ',')
            arg++;
    }
    return true;
}

/* "NAME=URL": marks the service external (the stub is not started). */
static bool parse_url(struct service *svcs, const char *arg, bool *external)
{
    const char *eq = strchr(arg, '=');
    struct service *s = eq ? find_service(svcs, arg, (size_t)(eq - arg)) : NULL;
    if (!s || eq[1] == '\0' || strlen(eq + 1) >= sizeof s->url)
        return false;
    snprintf(s->url, sizeof s->url, "%s", eq + 1);
    external[s - svcs] = true;
    return true;
}

/* The value of --flag VALUE or --flag=VALUE at argv[*i], or NULL. */
static const char *flag_value(int argc, char **argv, int *i, const char *flag)
{
    size_t n = strlen(flag);
    if (strncmp(argv[*i], flag, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

int main(int argc, char **argv)
{
    struct service svcs[NSERVICES] = {
        {.name = "A", .latency_ns = 300 * MS_NS, .status = 200},
        {.name = "B", .latency_ns = 100 * MS_NS, .status = 500},
        {.name = "C", .latency_ns = 200 * MS_NS, .status = 200},
    };
    bool external[NSERVICES] = {false};
    bool json = false;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val;
        bool ok = true;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--trace") == 0) {
            trace_tasks = true;
        } else if ((val = flag_value(argc, argv, &i, "--executor"))) {
            /* Before any group exists: the default is read once. */
            if (strcmp(val, "threads") != 0 && strcmp(val, "coro") != 0) {
                fprintf(stderr, "fanout: --executor: threads or coro\n");
                return 2;
            }
            setenv("EG_EXECUTOR", val, 1);
        } else if ((val = flag_value(argc, argv, &i, "--latency"))) {
            ok = parse_latency(svcs, val);
        } else if ((val = flag_value(argc, argv, &i, "--fail"))) {
            ok = parse_fail(svcs, val);
        } else if ((val = flag_value(argc, argv, &i, "--url"))) {
            ok = parse_url(svcs, val, external);
        } else {
            ok = false;
        }
        if (!ok) {
            fprintf(stderr, "fanout: bad argument '%s'\n", arg);
            usage(stderr);
            return 2;
        }
    }

    /* libcurl's rule: initialise it once, before any thread uses it. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "fanout: curl_global_init failed\n");
        return 1;
    }
    int status = 0;
    for (int i = 0; i < NSERVICES && status == 0; i++) {
        if (external[i])
            continue;
        int err = httpstub_start(&svcs[i].stub, svcs[i].status, svcs[i].latency_ns);
        if (err != 0) {
            fprintf(stderr, "fanout: cannot start service %s: %s\n", svcs[i].name,
                    eg_strerror(err));
            status = 1;
            break;
        }
        snprintf(svcs[i].url, sizeof svcs[i].url, "http://127.0.0.1:%d/%s",
                 httpstub_port(svcs[i].stub), svcs[i].name);
    }

    struct variant vs[] = {
        {.name = "serial", .handle = handle_serial},
        {.name = "waitgroup", .handle = handle_waitgroup},
        {.name = "errgroup", .handle = handle_errgroup},
    };
    int nv = (int)(sizeof vs / sizeof vs[0]);
    if (status == 0) {
        if (!json) {
            printf("services:\n");
            for (int i = 0; i < NSERVICES; i++) {
                if (svcs[i].stub)
                    printf("  %s  %-28s HTTP %d after %ld ms\n", svcs[i].name,
                           svcs[i].url, svcs[i].status, ms(svcs[i].latency_ns));
                else
                    printf("  %s  %s\n", svcs[i].name, svcs[i].url);
            }
            printf("\n");
            fflush(stdout);
        }
        for (int k = 0; k < nv; k++)
            run_variant(&vs[k], svcs);
        if (json) {
            print_json(vs, nv);
        } else {
            print_table(svcs, vs, nv);
            if (group_table)
                printf("\nthe errgroup variant's group (eg_group_print)\n%s",
                       group_table);
        }
    }
    free(group_table);

    for (int i = 0; i < NSERVICES; i++)
        httpstub_stop(svcs[i].stub);
    curl_global_cleanup();
    return status;
}
