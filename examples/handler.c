/*
 * handler - the README's request handler as a program.
 *
 *   handler URL...
 *
 * Fetches every URL at once, in a group: the first failure (a transfer
 * error or an HTTP status >= 500) cancels the other transfers, and the
 * program prints each URL's status and the group's first error. Exit
 * status 0 when every call succeeded, 1 otherwise, 2 for bad usage.
 */
#include <errgroup.h>
#include <eg/curl.h>
#include <stdio.h>
#include <stdlib.h>

struct call {
    const char *url;
    long status;
};

static int fetch(eg_ctx *ctx, void *arg)
{
    struct call *c = arg;
    CURL *h = curl_easy_init();
    if (!h)
        return -ENOMEM;
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    CURLcode rc = eg_curl_perform(ctx, h); /* aborted when ctx is done */
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
    curl_easy_cleanup(h);
    if (rc != CURLE_OK)
        return eg_errorf(eg_curl_err(ctx, rc), "%s: %s", c->url, curl_easy_strerror(rc));
    if (c->status >= 500)
        return eg_errorf(-EIO, "%s: HTTP %ld", c->url, c->status);
    return 0;
}

static int handle(eg_ctx *request_ctx, struct call *calls, int n)
{
    eg_group *g = eg_group_new(request_ctx); /* errgroup.WithContext */
    if (!g)
        return -ENOMEM;
    int err = 0;
    for (int i = 0; i < n && !err; i++)
        err = eg_go(g, fetch, &calls[i]); /* fails only on ENOMEM/EAGAIN */
    int werr = eg_wait(g);                /* the first error */
    if (werr)
        fprintf(stderr, "handler: %s\n", eg_group_errmsg(g));
    err = err ? err : werr;
    eg_group_free(g);
    return err;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s URL...\n", argv[0]);
        return 2;
    }
    struct call *calls = calloc((size_t)argc - 1, sizeof *calls);
    if (!calls || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    for (int i = 1; i < argc; i++)
        calls[i - 1].url = argv[i];
    int err = handle(NULL, calls, argc - 1);
    for (int i = 1; i < argc; i++)
        printf("%s: HTTP %ld\n", calls[i - 1].url, calls[i - 1].status);
    printf("result: %s\n", eg_strerror(err));
    curl_global_cleanup();
    free(calls);
    return err ? 1 : 0;
}
