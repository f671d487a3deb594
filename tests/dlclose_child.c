/*
 * dlclose_child.c - loads the shared library with dlopen (it is not linked
 * in), runs a group, unloads it with dlclose, idles past the pool's idle
 * timeout (EG_IDLE_TIMEOUT_MS, set short by the caller), and keeps running.
 * Exit status 0: the idle workers did not run unmapped code.
 * Run by test_regress (regress_dlclose_then_idle).
 */
#include <dlfcn.h>
#include <stdio.h>
#include <time.h>

typedef struct eg_group eg_group;
typedef struct eg_ctx eg_ctx;

static int task(eg_ctx *ctx, void *arg)
{
    (void)ctx;
    (void)arg;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 3;
    }
    eg_group *(*group_new)(eg_ctx *) =
        (eg_group * (*)(eg_ctx *)) dlsym(h, "eg_group_new");
    int (*go)(eg_group *, int (*)(eg_ctx *, void *), void *) =
        (int (*)(eg_group *, int (*)(eg_ctx *, void *), void *))dlsym(h, "eg_go");
    int (*wait)(eg_group *) = (int (*)(eg_group *))dlsym(h, "eg_wait");
    void (*group_free)(eg_group *) = (void (*)(eg_group *))dlsym(h, "eg_group_free");
    long (*live)(void) = (long (*)(void))dlsym(h, "eg_live_objects");
    if (!group_new || !go || !wait || !group_free || !live)
        return 4;
    eg_group *g = group_new(NULL);
    for (int i = 0; i < 8; i++)
        if (go(g, task, NULL) != 0)
            return 5;
    if (wait(g) != 0)
        return 6;
    group_free(g);
    if (live() != 0)
        return 7;
    if (dlclose(h) != 0)
        return 8;
    /* Past the idle timeout: the workers exit now, in code that must still
     * be mapped. Then keep running. */
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    volatile long sum = 0;
    for (long i = 0; i < 1000000; i++)
        sum += i;
    nanosleep(&ts, NULL);
    return sum > 0 ? 0 : 9;
}
