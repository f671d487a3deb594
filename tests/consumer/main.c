/* An out-of-tree program built against an installed errgroup, by
 * pkg-config and by CMake's find_package (see .ci/run). */
#include <errgroup.h>
#include <errno.h>
#include <stdio.h>

static int fail(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return eg_errorf(-EIO, "downstream: HTTP 500");
}

static int wait_for_cancel(eg_ctx *ctx, void *arg)
{
    (void)arg;
    return eg_ctx_wait(ctx);
}

int main(void)
{
    if (eg_version() != EG_VERSION_HEX) {
        fprintf(stderr, "header %s does not match library %s\n", EG_VERSION_STRING,
                eg_version_string());
        return 1;
    }
    eg_group *g = eg_group_new(NULL);
    if (!g || eg_go(g, wait_for_cancel, NULL) || eg_go(g, fail, NULL))
        return 1;
    int err = eg_wait(g);
    printf("errgroup %s: eg_wait = %d (%s)\n", eg_version_string(), err,
           eg_group_errmsg(g));
    eg_group_free(g);
    return err == -EIO ? 0 : 1;
}
