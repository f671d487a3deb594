/*
 * parallel.c - Go's errgroup ExampleGroup_parallel in C.
 *
 * The "Google Search 2.0" function from
 * https://talks.golang.org/2012/concurrency.slide#46: three searches run
 * concurrently in a group; each writes only its own result slot, so the
 * results come out in search order however the tasks finish. The first
 * failing search would cancel the others and be returned by eg_wait.
 *
 * Output:
 *   web result for "golang"
 *   image result for "golang"
 *   video result for "golang"
 */
#include <errno.h>
#include <stdio.h>

#include <errgroup.h>

#define RESULT_MAX 128

/* Go's `type Result string`. */
struct result {
    char text[RESULT_MAX];
};

/* A search backend: writes its result for query into out. Returns 0 or a
 * negative errno (the context's error if it gives up on cancellation). */
struct search {
    const char *kind;
    int (*fn)(eg_ctx *ctx, const struct search *self, const char *query,
              struct result *out);
};

/* A fake backend that answers at once, like Go's fakeSearch. */
static int fake_search(eg_ctx *ctx, const struct search *self, const char *query,
                       struct result *out)
{
    snprintf(out->text, sizeof out->text, "%s result for \"%s\"", self->kind, query);
    return 0;
}

static const struct search web = {"web", fake_search};
static const struct search image = {"image", fake_search};
static const struct search video = {"video", fake_search};

/* One task's arguments: which search, and the slot it fills. */
struct search_task {
    const struct search *search;
    const char *query;
    struct result *slot;
};

static int run_search(eg_ctx *ctx, void *arg)
{
    struct search_task *t = arg;
    return t->search->fn(ctx, t->search, t->query, t->slot);
}

/* Runs every search on query concurrently; results[i] gets searches[i]'s
 * result. Returns 0 or the first search's error. */
static int google(eg_ctx *ctx, const char *query, struct result *results)
{
    const struct search *searches[] = {&web, &image, &video};
    enum { N = sizeof searches / sizeof searches[0] };
    struct search_task tasks[N];

    eg_group *g = eg_group_new(ctx);
    if (!g)
        return -ENOMEM;
    int err = 0;
    for (int i = 0; i < N && err == 0; i++) {
        tasks[i] = (struct search_task){searches[i], query, &results[i]};
        err = eg_go(g, run_search, &tasks[i]);
    }
    if (err != 0)
        eg_cancel(eg_group_ctx(g), err); /* not started: stop the others */
    int werr = eg_wait(g);
    eg_group_free(g);
    return err != 0 ? err : werr;
}

int main(void)
{
    struct result results[3];
    int err = google(eg_background(), "golang", results);
    if (err != 0) {
        fprintf(stderr, "%s\n", eg_strerror(err));
        return 1;
    }
    for (int i = 0; i < 3; i++)
        printf("%s\n", results[i].text);
    return 0;
}
