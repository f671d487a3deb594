/*
 * eg_bench.c - micro-benchmarks of groups, cancellation and memory, with
 * plain-pthread baselines and a condition-variable wake-up floor.
 *
 * Usage: eg_bench [--json] [--quick] [--reps N] [--list] [BENCH...]
 *
 * Benchmarks (all when none is named):
 *   group3          new + 3 x eg_go(no-op) + eg_wait + free      ns per group
 *   tasks1000       1000 no-op tasks in one group                  ns per task
 *   limit2          the same with eg_set_limit(g, 2)               ns per task
 *   cancelN         N tasks blocked in eg_ctx_wait, one failing    ns per group
 *                   task cancels them (any N, e.g. cancel3)
 *   floorN          wake N threads blocked on one condvar          ns per round
 *   fanout          tasks sleep 30/10/20 ms, the 10 ms one fails   ns until eg_wait
 *   overshoot       (reported by fanout) fanout time minus 10 ms   ns
 *   blockedN        cancelN for large N (10000, 100000, 1000000): a    ns per group
 *                   few rounds, then blockedN_rss, the peak RSS       KiB
 *   mem             RSS added per task blocked, 1000 at once        bytes per task
 *   pthread_group3  3 x pthread_create + pthread_join              ns per group
 *   pthread_tasks1000  1000 x pthread_create, then join all        ns per task
 *
 * Method. Each benchmark runs one untimed warm-up sample (it starts the
 * pool threads the timed samples reuse), then `reps` timed samples. A
 * sample times a batch of operations on CLOCK_MONOTONIC and divides by the
 * batch size, so clock reads cost nothing per operation. The result is the
 * minimum (the cost when nothing else interferes) and the median (the
 * typical cost on a noisy machine) over samples. Benchmarks that measure a
 * whole round (cancelN, floorN, fanout) time each round on its own.
 *
 * Output: one human-readable line per result, or with --json one JSON object
 * per line: {"name":..., "unit":..., "min":..., "median":..., "samples":...}.
 * The Go twin (bench/go/errgroup_bench.go) prints the same names and format;
 * bench/compare runs both and tabulates them.
 *
 * The executor is the process default: EG_EXECUTOR=coro runs every row on
 * coroutines (bench/compare runs the C side twice, threads and coro).
 *
 * mem must run before anything has started pool threads, so it always runs
 * first; run it in its own process for a clean figure (bench/compare does).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "errgroup.h"

/* ---- timing and statistics ---------------------------------------------- */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static bool json_out;

/* Sorts samples[0..n) and prints their minimum and median. */
static void report(const char *name, const char *unit, const char *what, double *samples,
                   int n)
{
    qsort(samples, (size_t)n, sizeof *samples, cmp_double);
    double min = samples[0];
    double median = n % 2 ? samples[n / 2] : (samples[n / 2 - 1] + samples[n / 2]) / 2;
    if (json_out)
        printf("{\"name\":\"%s\",\"unit\":\"%s\",\"min\":%.1f,\"median\":%.1f,"
               "\"samples\":%d}\n",
               name, unit, min, median, n);
    else
        printf("%-18s min %12.1f  median %12.1f  %-9s %s\n", name, min, median, unit,
               what);
    fflush(stdout);
}

static void die(const char *what, int err)
{
    fprintf(stderr, "eg_bench: %s: %s\n", what, eg_strerror(err));
    exit(1);
}

static void check(const char *what, int rc)
{
    if (rc < 0)
        die(what, rc);
}

/* ---- group of 3, 1000 tasks, limit 2 ------------------------------------ */

static int noop_task(eg_ctx *ctx, void *arg)
{
    return 0;
}

/* Batch: `groups` groups of `tasks` no-op tasks each, every group with the
 * given limit (-1: none). Returns the batch's wall time in ns. */
static int64_t run_groups(int groups, int tasks, int limit)
{
    int64_t t0 = now_ns();
    for (int i = 0; i < groups; i++) {
        eg_group *g = eg_group_new(NULL);
        if (!g)
            die("eg_group_new", -ENOMEM);
        if (limit >= 0)
            check("eg_set_limit", eg_set_limit(g, limit));
        for (int j = 0; j < tasks; j++)
            check("eg_go", eg_go(g, noop_task, NULL));
        check("eg_wait", eg_wait(g));
        eg_group_free(g);
    }
    return now_ns() - t0;
}

/* Per-operation cost: divides each batch by groups * (per_task ? tasks : 1). */
static void bench_groups(const char *name, const char *what, int reps, int groups,
                         int tasks, int limit, bool per_task)
{
    double *s = malloc(sizeof *s * (size_t)reps);
    double ops = (double)groups * (per_task ? tasks : 1);
    run_groups(groups, tasks, limit); /* warm-up */
    for (int r = 0; r < reps; r++)
        s[r] = (double)run_groups(groups, tasks, limit) / ops;
    report(name, per_task ? "ns/task" : "ns/group", what, s, reps);
    free(s);
}

/* ---- pthread baselines --------------------------------------------------- */

static void *noop_thread(void *arg)
{
    return arg;
}

/* Batch: `groups` times, create `tasks` threads, then join them all. */
static int64_t run_pthreads(int groups, int tasks, pthread_t *th)
{
    int64_t t0 = now_ns();
    for (int i = 0; i < groups; i++) {
        for (int j = 0; j < tasks; j++) {
            int rc = pthread_create(&th[j], NULL, noop_thread, NULL);
            if (rc)
                die("pthread_create", -rc);
        }
        for (int j = 0; j < tasks; j++)
            pthread_join(th[j], NULL);
    }
    return now_ns() - t0;
}

static void bench_pthreads(const char *name, const char *what, int reps, int groups,
                           int tasks, bool per_task)
{
    double *s = malloc(sizeof *s * (size_t)reps);
    pthread_t *th = malloc(sizeof *th * (size_t)tasks);
    double ops = (double)groups * (per_task ? tasks : 1);
    run_pthreads(groups, tasks, th);
    for (int r = 0; r < reps; r++)
        s[r] = (double)run_pthreads(groups, tasks, th) / ops;
    report(name, per_task ? "ns/task" : "ns/group", what, s, reps);
    free(th);
    free(s);
}

/* ---- cancel-N ------------------------------------------------------------ */

/* N blockers each bump `blocked` right before eg_ctx_wait; the failing task
 * yields until all N did, then fails, which cancels the group's context.
 * A blocker that bumped the counter may not be asleep yet when the failure
 * lands; it then returns from eg_ctx_wait without sleeping. That is the
 * race every real program has, and Go's version has it too. */
typedef struct {
    atomic_int blocked;
    int n;
} cancel_round;

static int blocker_task(eg_ctx *ctx, void *arg)
{
    cancel_round *cr = arg;
    atomic_fetch_add_explicit(&cr->blocked, 1, memory_order_relaxed);
    eg_ctx_wait(ctx);
    return 0;
}

static int failing_task(eg_ctx *ctx, void *arg)
{
    cancel_round *cr = arg;
    /* eg_yield, Go's runtime.Gosched: sched_yield on a thread, a switch
     * to the carrier's next task on a coroutine. */
    while (atomic_load_explicit(&cr->blocked, memory_order_relaxed) < cr->n)
        eg_yield();
    return -EIO;
}

/* One group: new -> N blockers + 1 failing task -> wait -> free. */
static int64_t run_cancel(int n)
{
    cancel_round cr = {.n = n};
    atomic_init(&cr.blocked, 0);
    int64_t t0 = now_ns();
    eg_group *g = eg_group_new(NULL);
    if (!g)
        die("eg_group_new", -ENOMEM);
    for (int i = 0; i < n; i++)
        check("eg_go", eg_go(g, blocker_task, &cr));
    check("eg_go", eg_go(g, failing_task, &cr));
    int rc = eg_wait(g);
    eg_group_free(g);
    int64_t dt = now_ns() - t0;
    if (rc != -EIO)
        die("cancel: eg_wait returned", rc);
    return dt;
}

static void bench_cancel(const char *name, int n, int reps)
{
    double *s = malloc(sizeof *s * (size_t)reps);
    run_cancel(n);
    for (int r = 0; r < reps; r++)
        s[r] = (double)run_cancel(n);
    char what[96];
    snprintf(what, sizeof what, "%d blocked in eg_ctx_wait + 1 failing, whole group", n);
    report(name, "ns/group", what, s, reps);
    free(s);
}

/* N blocked + 1 failing at scale: few rounds (one for a million), and the
 * process's peak resident memory afterwards. */
static void bench_blocked(const char *name, int n, int reps)
{
    if (n >= 1000000)
        reps = 1;
    else if (n >= 100000 && reps > 3)
        reps = 3;
    else if (reps > 7)
        reps = 7;
    double *s = malloc(sizeof *s * (size_t)reps);
    for (int r = 0; r < reps; r++)
        s[r] = (double)run_cancel(n);
    char what[96];
    snprintf(what, sizeof what, "%d blocked in eg_ctx_wait + 1 failing, start to eg_wait",
             n);
    report(name, "ns/group", what, s, reps);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double kib = (double)ru.ru_maxrss;
    char rname[64];
    snprintf(rname, sizeof rname, "%s_rss", name);
    report(rname, "KiB", "peak RSS of the process", &kib, 1);
    free(s);
}

/* ---- floor: wake N threads blocked on one condvar ------------------------ */

/* The least any cancel-N can cost once all N sleep: N pre-created threads
 * sleep on one condition variable; a round is one broadcast until all N
 * have woken and reported back (the last one signals the timing thread,
 * as the last task of a group wakes eg_wait).
 *
 * A thread counts itself `parked` under the mutex right before
 * pthread_cond_wait, which releases the mutex atomically; so once the
 * timer holds the mutex with parked == N, all N are asleep. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;      /* the N sleepers */
    pthread_cond_t main_cv; /* the timing thread */
    unsigned gen;           /* bumped per round */
    int n, parked, woken;
    bool stop;
} F = {.mu = PTHREAD_MUTEX_INITIALIZER,
       .cv = PTHREAD_COND_INITIALIZER,
       .main_cv = PTHREAD_COND_INITIALIZER};

static void *floor_thread(void *arg)
{
    pthread_mutex_lock(&F.mu);
    unsigned seen = F.gen;
    for (;;) {
        if (++F.parked == F.n)
            pthread_cond_signal(&F.main_cv);
        while (F.gen == seen && !F.stop)
            pthread_cond_wait(&F.cv, &F.mu);
        if (F.stop)
            break;
        seen = F.gen;
        if (++F.woken == F.n)
            pthread_cond_signal(&F.main_cv);
    }
    pthread_mutex_unlock(&F.mu);
    return arg;
}

static void bench_floor(const char *name, int n, int reps)
{
    double *s = malloc(sizeof *s * (size_t)reps);
    pthread_t *th = malloc(sizeof *th * (size_t)n);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    F.n = n, F.parked = 0, F.stop = false;
    for (int i = 0; i < n; i++) {
        int rc = pthread_create(&th[i], &attr, floor_thread, NULL);
        if (rc)
            die("pthread_create", -rc);
    }
    pthread_mutex_lock(&F.mu);
    for (int r = -1; r < reps; r++) { /* r == -1: warm-up */
        while (F.parked < n)
            pthread_cond_wait(&F.main_cv, &F.mu);
        F.parked = 0;
        F.woken = 0;
        int64_t t0 = now_ns();
        F.gen++;
        pthread_cond_broadcast(&F.cv);
        while (F.woken < n)
            pthread_cond_wait(&F.main_cv, &F.mu);
        int64_t dt = now_ns() - t0;
        if (r >= 0)
            s[r] = (double)dt;
    }
    F.stop = true;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    pthread_attr_destroy(&attr);
    char what[96];
    snprintf(what, sizeof what, "wake %d threads on one condvar, until all report", n);
    report(name, "ns/round", what, s, reps);
    free(th);
    free(s);
}

/* ---- the seed fan-out ---------------------------------------------------- */

typedef struct {
    int64_t ms;
    int result; /* returned after a full sleep */
} sleeper;

static int sleep_task(eg_ctx *ctx, void *arg)
{
    const sleeper *s = arg;
    int rc = eg_sleep(ctx, s->ms * EG_NSEC_PER_MSEC);
    return rc ? rc : s->result;
}

static void bench_fanout(int reps)
{
    static const sleeper tasks[] = {{30, 0}, {10, -EIO}, {20, 0}};
    double *total = malloc(sizeof *total * (size_t)reps);
    double *over = malloc(sizeof *over * (size_t)reps);
    for (int r = -1; r < reps; r++) {
        int64_t t0 = now_ns();
        eg_group *g = eg_group_new(NULL);
        if (!g)
            die("eg_group_new", -ENOMEM);
        for (int i = 0; i < 3; i++)
            check("eg_go", eg_go(g, sleep_task, (void *)&tasks[i]));
        int rc = eg_wait(g);
        int64_t dt = now_ns() - t0;
        eg_group_free(g);
        if (rc != -EIO)
            die("fanout: eg_wait returned", rc);
        if (r >= 0) {
            total[r] = (double)dt;
            over[r] = (double)(dt - 10 * EG_NSEC_PER_MSEC);
        }
    }
    report("fanout", "ns", "sleeps 30/10/20 ms, 10 ms fails: start to eg_wait", total,
           reps);
    report("overshoot", "ns", "fanout minus the 10 ms of the failing task", over, reps);
    free(total);
    free(over);
}

/* ---- memory per blocked task --------------------------------------------- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &size, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident < 0 ? -1 : resident * sysconf(_SC_PAGESIZE);
}

/* RSS added per task while 1000 tasks sleep in eg_ctx_wait at once: the
 * pool threads' touched stack pages, their thread-local state and task
 * records. Measured from a fresh process (no pool threads yet), from just
 * before the first eg_go to the moment all 1000 announced they block.
 * A single sample per process: the second round would reuse the threads. */
static void bench_mem(void)
{
    enum { N = 1000 };
    cancel_round cr = {.n = N};
    atomic_init(&cr.blocked, 0);
    eg_group *g = eg_group_new(NULL);
    if (!g)
        die("eg_group_new", -ENOMEM);
    long before = rss_bytes();
    for (int i = 0; i < N; i++)
        check("eg_go", eg_go(g, blocker_task, &cr));
    while (atomic_load_explicit(&cr.blocked, memory_order_relaxed) < N)
        sleep_ms(1);
    sleep_ms(10); /* let the last ones reach their sleep */
    long after = rss_bytes();
    eg_cancel(eg_group_ctx(g), -ECANCELED);
    eg_wait(g);
    eg_group_free(g);
    if (before < 0 || after < 0) {
        fprintf(stderr, "eg_bench: mem: cannot read /proc/self/statm\n");
        return;
    }
    double per = (double)(after - before) / N;
    report("mem", "B/task", "RSS added per task blocked, 1000 at once", &per, 1);
}

/* ---- main ---------------------------------------------------------------- */

static const char *const all_benches[] = {
    "mem",    "group3",         "tasks1000",         "limit2",     "cancel3",
    "floor3", "cancel100",      "floor100",          "cancel1000", "floor1000",
    "fanout", "pthread_group3", "pthread_tasks1000",
};

static void usage(FILE *f)
{
    fprintf(f, "usage: eg_bench [--json] [--quick] [--reps N] [--list] [BENCH...]\n"
               "benchmarks:");
    for (size_t i = 0; i < sizeof all_benches / sizeof *all_benches; i++)
        fprintf(f, " %s", all_benches[i]);
    fprintf(f, "\n(cancelN, floorN and blockedN take any N >= 1; blockedN is not in the"
               " default set)\n");
}

/* N from "cancel100" given prefix "cancel"; 0 if it does not parse. */
static int suffix_n_max(const char *name, const char *prefix, long max)
{
    size_t len = strlen(prefix);
    if (strncmp(name, prefix, len) != 0 || !name[len])
        return 0;
    char *end;
    long n = strtol(name + len, &end, 10);
    return *end || n < 1 || n > max ? 0 : (int)n;
}

static int suffix_n(const char *name, const char *prefix)
{
    return suffix_n_max(name, prefix, 100000);
}

static void run_bench(const char *name, int reps, bool quick)
{
    /* Batches are sized for a few ms each; quick mode shrinks the longest. */
    int scale = quick ? 4 : 1;
    int n;
    if (!strcmp(name, "mem"))
        bench_mem();
    else if (!strcmp(name, "group3"))
        bench_groups(name, "new + 3 eg_go + wait + free", reps, 2000 / scale, 3, -1,
                     false);
    else if (!strcmp(name, "tasks1000"))
        bench_groups(name, "1000 no-op tasks in one group", reps, 5, 1000, -1, true);
    else if (!strcmp(name, "limit2"))
        bench_groups(name, "1000 no-op tasks, eg_set_limit(g, 2)", reps, 2, 1000, 2,
                     true);
    else if ((n = suffix_n(name, "cancel")))
        bench_cancel(name, n, reps);
    else if ((n = suffix_n_max(name, "blocked", 1000000)))
        bench_blocked(name, n, reps);
    else if ((n = suffix_n(name, "floor")))
        bench_floor(name, n, reps);
    else if (!strcmp(name, "fanout"))
        bench_fanout(reps);
    else if (!strcmp(name, "pthread_group3"))
        bench_pthreads(name, "3 pthread_create + join", reps, 500 / scale, 3, false);
    else if (!strcmp(name, "pthread_tasks1000"))
        bench_pthreads(name, "1000 pthread_create, then join all", reps, 1, 1000, true);
    else {
        fprintf(stderr, "eg_bench: unknown benchmark '%s'\n", name);
        usage(stderr);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    int reps = 0;
    bool quick = false;
    size_t nall = sizeof all_benches / sizeof *all_benches;
    const char **names = calloc((size_t)argc + nall, sizeof *names);
    int nnames = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            json_out = true;
        else if (!strcmp(argv[i], "--quick"))
            quick = true;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--list")) {
            for (size_t j = 0; j < nall; j++)
                printf("%s\n", all_benches[j]);
            return 0;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-') {
            usage(stderr);
            return 2;
        } else
            names[nnames++] = argv[i];
    }
    if (reps <= 0)
        reps = quick ? 5 : 15;
    if (nnames == 0)
        for (size_t j = 0; j < nall; j++)
            names[nnames++] = all_benches[j];
    /* mem first: it needs a process in which no pool thread exists yet. */
    for (int i = 0; i < nnames; i++)
        if (!strcmp(names[i], "mem"))
            run_bench("mem", reps, quick);
    for (int i = 0; i < nnames; i++)
        if (strcmp(names[i], "mem"))
            run_bench(names[i], reps, quick);
    free(names);
    return 0;
}
