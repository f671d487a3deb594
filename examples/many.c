/*
 * many.c - 100,000 concurrent calls to an in-process HTTP service, on the
 * thread executor and on the coroutine executor, side by side.
 *
 * One group of N tasks (default 100,000), all started at once. Each task
 * takes a connection slot from a semaphore (the window: a process has only
 * so many descriptors), connects to the stub service (httpstub.c, which
 * answers 200 after --latency ms), sends a GET, reads the answer and checks
 * its status line. Every task exists, blocked, from the start: on threads
 * that is a pool thread per running task (at most 4096 by default, the rest
 * queue); on coroutines a small stack each, parked in the library's waits.
 *
 * Each executor runs in a child process of its own (this program, with
 * --child), so each gets a clean peak RSS. The parent prints:
 *
 *   executor  calls   ok      time      peak RSS
 *
 * Usage: many [--calls N] [--window W] [--latency MS] [--executor threads|coro]
 * (without --executor: both, threads first).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <errgroup.h>

#include "httpstub.h"

typedef struct {
    int port;
    eg_sem *window;
    atomic_int ok;
} shared;

static int one_call(eg_ctx *ctx, void *arg)
{
    shared *sh = arg;
    int err = eg_sem_acquire(ctx, sh->window, 1);
    if (err)
        return err;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        err = -errno;
        goto out;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)sh->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    err = eg_connect(ctx, fd, (struct sockaddr *)&sa, sizeof sa);
    static const char req[] = "GET / HTTP/1.1\r\nHost: stub\r\nConnection: close\r\n\r\n";
    if (!err) {
        ssize_t w = eg_write_all(ctx, fd, req, sizeof req - 1);
        if (w < 0)
            err = (int)w;
    }
    char buf[512];
    size_t got = 0;
    while (!err) { /* the stub closes after its answer */
        ssize_t r = eg_read(ctx, fd, buf + got, sizeof buf - 1 - got);
        if (r < 0)
            err = (int)r;
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got == sizeof buf - 1)
            break;
    }
    buf[got] = 0;
    if (!err && strncmp(buf, "HTTP/1.1 200", 12) != 0)
        err = eg_errorf(-EPROTO, "unexpected answer: %.40s", buf);
    if (!err)
        atomic_fetch_add_explicit(&sh->ok, 1, memory_order_relaxed);
    close(fd);
out:
    eg_sem_release(sh->window, 1);
    return err;
}

/* One run on the process default executor; prints one line. */
static int child(const char *executor, int calls, int window, int latency_ms)
{
    httpstub *stub;
    int err = httpstub_start(&stub, 200, (int64_t)latency_ms * EG_NSEC_PER_MSEC);
    if (err) {
        fprintf(stderr, "many: httpstub_start: %s\n", strerror(-err));
        return 1;
    }
    shared sh = {.port = httpstub_port(stub), .window = eg_sem_new(window)};
    int64_t t0 = eg_now();
    eg_group *g = eg_group_new(NULL);
    int started = 0;
    for (int i = 0; i < calls; i++) {
        if (eg_go(g, one_call, &sh) != 0)
            break;
        started++;
    }
    err = eg_wait(g);
    double secs = (double)(eg_now() - t0) / 1e9;
    const char *msg = eg_group_errmsg(g);
    eg_group_free(g);
    eg_sem_free(sh.window);
    httpstub_stop(stub);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("%-8s  %7d  %7d  %7.2f s  %7.1f MiB%s%s\n", executor, started,
           atomic_load(&sh.ok), secs, (double)ru.ru_maxrss / 1024.0,
           err ? "  first error: " : "", err ? msg : "");
    return err ? 1 : 0;
}

int main(int argc, char **argv)
{
    int calls = 100000, window = 1000, latency_ms = 10;
    const char *only = NULL;
    bool is_child = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--calls") && i + 1 < argc)
            calls = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--window") && i + 1 < argc)
            window = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--latency") && i + 1 < argc)
            latency_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--executor") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--child"))
            is_child = true;
        else {
            fprintf(stderr, "usage: many [--calls N] [--window W] [--latency MS]"
                            " [--executor threads|coro]\n");
            return 2;
        }
    }
    if (calls < 1 || window < 1 || latency_ms < 0 ||
        (only && strcmp(only, "threads") && strcmp(only, "coro"))) {
        fprintf(stderr, "many: bad arguments\n");
        return 2;
    }
    if (is_child) {
        setenv("EG_EXECUTOR", only, 1); /* read once, at the first group */
        return child(only, calls, window, latency_ms);
    }
    printf("%d calls, %d connections at a time, service latency %d ms\n", calls, window,
           latency_ms);
    printf("executor    calls       ok       time      peak RSS\n");
    fflush(stdout);
    const char *runs[2] = {"threads", "coro"};
    int rc = 0;
    for (int k = 0; k < 2; k++) {
        if (only && strcmp(only, runs[k]))
            continue;
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid == 0) {
            char n[16], w[16], l[16];
            snprintf(n, sizeof n, "%d", calls);
            snprintf(w, sizeof w, "%d", window);
            snprintf(l, sizeof l, "%d", latency_ms);
            execl("/proc/self/exe", argv[0], "--child", "--executor", runs[k], "--calls",
                  n, "--window", w, "--latency", l, (char *)NULL);
            _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = 1;
    }
    return rc;
}
