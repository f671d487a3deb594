/*
 * egrun - run shell commands as one errgroup.
 *
 * Each command is a task of one eg_group whose context is a child of `root`
 * (a cancellable context egrun owns, under the --timeout deadline). A task
 * spawns its command as a new process group, relays its output line by line
 * and waits for the reaper to report the shell's exit. A task whose command
 * fails returns non-zero, so the group cancels its context; every other task
 * sees that on eg_ctx_fd() and stops its command: the stop signal once to
 * the whole process group, SIGKILL after --grace. Signals to egrun and
 * --success first cancel `root` instead. The launcher thread admits tasks
 * with eg_go (the group's limit is -j) and a task that starts after the
 * context is done never spawns, so no queued command starts after a failure.
 *
 * Task states: queued -> never started | running -> [signalled -> [killed]]
 *   -> shell reaped -> pipes drained (and, if signalled, its group empty or
 *   killed) -> ended (ok / failed / stopped).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eg/ctx.h"
#include "eg/group.h"
#include "eg/pool.h"
#include "egrun.h"

egrun_opts g_opts;
/* Relaxed or seq_cst alike: each is read after eg_wait (which orders every
 * task's writes before it) or only for its own value. */
atomic_int g_reason;
atomic_int g_reason_cmd;
atomic_int g_reason_signal;
atomic_int g_stop_signal;
atomic_bool g_kill_now;

static eg_ctx *timeout_ctx; /* NULL without --timeout */
static eg_ctx *root;
static eg_group *grp;
static egrun_cmd *cmds;
static int devnull_fd = -1;
static int done_fd = -1;

static bool claim(int reason, int cmd)
{
    int none = REASON_NONE;
    if (!atomic_compare_exchange_strong(&g_reason, &none, reason))
        return false;
    atomic_store(&g_reason_cmd, cmd);
    return true;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    return b > INT64_MAX - a ? INT64_MAX : a + b;
}

static int64_t realtime_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * EG_NSEC_PER_SEC + ts.tv_nsec;
}

/* The one stop signal to c's process group (and SIGCONT, so a stopped
 * process can act on it, as timeout(1) does). */
static void stop_group(egrun_cmd *c)
{
    int sig = atomic_load(&g_kill_now) ? SIGKILL : atomic_load(&g_stop_signal);
    if (kill(-c->pid, sig) != 0)
        return; /* the group is gone: it ended on its own */
    if (sig != SIGKILL && sig != SIGCONT)
        kill(-c->pid, SIGCONT);
    c->signalled = true;
    c->killed = sig == SIGKILL;
}

/* Reads what fd has now into lb (at most 1 MiB when !all, so one busy
 * command cannot starve its other pipe); false at end of file or error. */
#define PUMP_BUF 65536
static bool pump(int fd, egrun_linebuf *lb, egrun_cmd *c, bool all)
{
    char *buf = c->iobuf;
    for (int rounds = 0; rounds < (all ? 64 : 16); rounds++) {
        ssize_t n = read(fd, buf, PUMP_BUF);
        if (n > 0) {
            out_feed(lb, c, buf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return true;
        return false;
    }
    return true;
}

static void drain_eventfd(int fd)
{
    uint64_t v;
    while (read(fd, &v, sizeof v) > 0)
        ;
}

static int run_cmd(eg_ctx *ctx, void *arg)
{
    egrun_cmd *c = arg;
    if (eg_ctx_done(ctx))
        return 0; /* the run was stopped while this command was queued */

    int po[2] = {-1, -1}, pe[2] = {-1, -1};
    c->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    c->iobuf = malloc(PUMP_BUF); /* not on the stack: spawn runs on it */
    int err = 0;
    if (!c->iobuf)
        err = -ENOMEM;
    else if (c->notify_fd < 0 || pipe2(po, O_CLOEXEC) || pipe2(pe, O_CLOEXEC))
        err = -errno;
    c->start_real_ns = realtime_ns();
    c->start_ns = eg_now();
    if (!err) {
        int in_fd = g_opts.stdin_cmd == c->index ? 0 : devnull_fd;
        err = proc_spawn(c, po[1], pe[1], in_fd);
    }
    if (po[1] >= 0)
        close(po[1]);
    if (pe[1] >= 0)
        close(pe[1]);
    if (err) {
        char msg[256];
        int len = snprintf(msg, sizeof msg, "egrun: cannot start %s: %s\n", c->name,
                           strerror(-err));
        out_write(2, msg, (size_t)len < sizeof msg ? (size_t)len : sizeof msg - 1);
        for (int i = 0; i < 2; i++) {
            if (po[i] >= 0)
                close(po[i]);
            if (pe[i] >= 0)
                close(pe[i]);
        }
        if (c->notify_fd >= 0)
            close(c->notify_fd);
        c->notify_fd = -1;
        free(c->iobuf);
        c->iobuf = NULL;
        c->end_ns = eg_now();
        c->end = END_FAILED;
        c->status = EGRUN_EXIT_CANNOT_EXEC;
        if (!eg_ctx_done(ctx) && claim(REASON_FAILURE, c->index))
            c->first = true;
        return eg_errorf(-EIO, "%s: cannot start", c->name);
    }
    fcntl(po[0], F_SETFL, O_NONBLOCK);
    fcntl(pe[0], F_SETFL, O_NONBLOCK);
    int ctx_fd = eg_ctx_fd(ctx); /* < 0: fall back to a 100 ms check */

    egrun_linebuf lo = {.fd = 1}, le = {.fd = 2};
    bool o_open = true, e_open = true;
    int64_t kill_at = INT64_MAX;
    int wst = 0;
    for (;;) {
        if (proc_exited(c, &wst))
            break;
        int64_t now = eg_now();
        if (!c->signalled && eg_ctx_done(ctx)) {
            stop_group(c);
            kill_at = add_sat(now, g_opts.grace_ns);
        }
        if (c->signalled && !c->killed && (atomic_load(&g_kill_now) || now >= kill_at)) {
            kill(-c->pid, SIGKILL);
            c->killed = true;
        }
        struct pollfd p[4];
        int np = 0;
        p[np++] = (struct pollfd){.fd = c->notify_fd, .events = POLLIN};
        int ip_ctx = -1, ip_o = -1, ip_e = -1;
        if (!c->signalled && ctx_fd >= 0) {
            ip_ctx = np;
            p[np++] = (struct pollfd){.fd = ctx_fd, .events = POLLIN};
        }
        if (o_open) {
            ip_o = np;
            p[np++] = (struct pollfd){.fd = po[0], .events = POLLIN};
        }
        if (e_open) {
            ip_e = np;
            p[np++] = (struct pollfd){.fd = pe[0], .events = POLLIN};
        }
        int ms = -1;
        if (c->signalled && !c->killed) {
            int64_t left = (kill_at - now) / EG_NSEC_PER_MSEC + 1;
            ms = left > 1000 ? 1000 : (int)left;
        } else if (!c->signalled && ctx_fd < 0) {
            ms = 100;
        }
        (void)ip_ctx;
        if (poll(p, (nfds_t)np, ms) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            drain_eventfd(c->notify_fd);
        if (ip_o >= 0 && p[ip_o].revents && !pump(po[0], &lo, c, false))
            o_open = false;
        if (ip_e >= 0 && p[ip_e].revents && !pump(pe[0], &le, c, false))
            e_open = false;
    }
    /* The shell is gone. What it wrote is in the pipes now; processes it
     * left behind may hold them open, so read what is there, no more. */
    if (o_open)
        o_open = pump(po[0], &lo, c, true);
    if (e_open)
        e_open = pump(pe[0], &le, c, true);

    /* A stopped command's group may outlive its shell (a child ignoring
     * the signal): it gets the rest of the grace, then SIGKILL. */
    if (c->signalled) {
        int64_t give_up = INT64_MAX;
        while (kill(-c->pid, 0) == 0) {
            int64_t now = eg_now();
            if (!c->killed && (atomic_load(&g_kill_now) || now >= kill_at)) {
                kill(-c->pid, SIGKILL);
                c->killed = true;
                give_up = add_sat(now, 2 * EG_NSEC_PER_SEC);
            }
            if (now >= give_up)
                break; /* left to the final sweep */
            struct pollfd p = {.fd = c->notify_fd, .events = POLLIN};
            poll(&p, 1, 20);
            if (p.revents)
                drain_eventfd(c->notify_fd);
            if (o_open && !pump(po[0], &lo, c, false))
                o_open = false;
            if (e_open && !pump(pe[0], &le, c, false))
                e_open = false;
        }
    }
    out_flush_partial(&lo, c);
    out_flush_partial(&le, c);
    out_free(&lo);
    out_free(&le);
    close(po[0]);
    close(pe[0]);
    proc_forget(c);
    close(c->notify_fd);
    c->notify_fd = -1;
    free(c->iobuf);
    c->iobuf = NULL;

    c->end_ns = eg_now();
    c->wstatus = wst;
    if (WIFEXITED(wst))
        c->status = WEXITSTATUS(wst);
    else if (WIFSIGNALED(wst))
        c->status = 128 + WTERMSIG(wst);
    else
        c->status = 255;

    if (c->signalled) {
        c->end = END_STOPPED;
        return -ECANCELED;
    }
    if (c->status == 0) {
        c->end = END_OK;
        if (g_opts.success_first && !eg_ctx_done(ctx) &&
            claim(REASON_SUCCESS, c->index)) {
            c->first = true;
            eg_cancel(root, -ECANCELED);
        }
        return 0;
    }
    c->end = END_FAILED;
    if (!eg_ctx_done(ctx) && claim(REASON_FAILURE, c->index))
        c->first = true;
    return eg_errorf(-EIO, "%s: exit status %d", c->name, c->status);
}

static void *launcher(void *arg)
{
    (void)arg;
    for (int i = 0; i < g_opts.ncmds; i++) {
        if (eg_ctx_done(eg_group_ctx(grp)))
            break;
        int r = eg_go_named(grp, cmds[i].name, run_cmd, &cmds[i]);
        if (r) {
            fprintf(stderr, "egrun: cannot start a task for %s: %s\n", cmds[i].name,
                    eg_strerror(r));
            cmds[i].end = END_FAILED;
            cmds[i].status = EGRUN_EXIT_USAGE;
            if (claim(REASON_FAILURE, cmds[i].index))
                cmds[i].first = true;
            eg_cancel(root, r);
            break;
        }
    }
    eg_wait(grp);
    uint64_t one = 1;
    ssize_t w;
    do
        w = write(done_fd, &one, sizeof one);
    while (w < 0 && errno == EINTR);
    return NULL;
}

void egrun_drain_signals(void)
{
    struct signalfd_siginfo si;
    while (read(proc_signalfd(), &si, sizeof si) == (ssize_t)sizeof si) {
        int sig = (int)si.ssi_signo;
        if (sig == SIGCHLD)
            continue;
        int expected = 0;
        if (atomic_compare_exchange_strong(&g_reason_signal, &expected, sig)) {
            /* The first: forwarded once to every command, as the stop
             * signal. Ctrl-C is never success, so it replaces a
             * --success first win still being wound down. */
            int prev = REASON_SUCCESS;
            if (!claim(REASON_SIGNAL, 0) &&
                atomic_compare_exchange_strong(&g_reason, &prev, REASON_SIGNAL))
                atomic_store(&g_reason_cmd, 0);
            atomic_store(&g_stop_signal, sig);
            eg_cancel(root, -EINTR);
        } else {
            /* A second one: no more grace. */
            atomic_store(&g_kill_now, true);
            proc_wake_all();
        }
    }
    proc_reap();
}

/* "1:make" for "make -j8 all", "2:run-tests.sh" for "./ci/run-tests.sh". */
static void default_name(egrun_cmd *c)
{
    const char *s = c->text;
    while (*s == ' ' || *s == '\t' || *s == '\n')
        s++;
    const char *e = s;
    while (*e && !strchr(" \t\n;&|()<>", *e))
        e++;
    const char *b = s;
    for (const char *p = s; p < e; p++)
        if (*p == '/' && p + 1 < e)
            b = p + 1;
    int len = (int)(e - b);
    if (len > 40)
        len = 40;
    snprintf(c->name, sizeof c->name, "%d:%.*s", c->index, len, b);
}

int main(int argc, char **argv)
{
    egrun_parse_opts(argc, argv, &g_opts);
    atomic_store(&g_stop_signal, g_opts.stop_signal);
    int r = proc_init();
    if (r) {
        fprintf(stderr, "egrun: cannot set up signals: %s\n", strerror(-r));
        return EGRUN_EXIT_USAGE;
    }
    out_init();

    int n = g_opts.ncmds;
    cmds = calloc((size_t)n, sizeof *cmds);
    if (!cmds) {
        fputs("egrun: out of memory\n", stderr);
        return EGRUN_EXIT_USAGE;
    }
    static const int colors[] = {36, 33, 32, 35, 34, 31};
    int width = 0;
    for (int i = 0; i < n; i++) {
        egrun_cmd *c = &cmds[i];
        c->index = i + 1;
        c->text = g_opts.cmds[i];
        c->notify_fd = -1;
        c->status = -1;
        c->end = END_NEVER_STARTED;
        c->color = colors[i % 6];
        if (i < g_opts.nnames && g_opts.names[i][0])
            snprintf(c->name, sizeof c->name, "%s", g_opts.names[i]);
        else
            default_name(c);
        int w = (int)strlen(c->name);
        width = w > width ? w : width;
    }
    out_set_name_width(width);

    /* Each running command holds one pool thread for its whole life, and
     * spawns from it (posix_spawn may use the caller's stack). */
    eg_pool_config pc;
    eg_pool_get_config(&pc);
    if (pc.max_threads < n + 8)
        pc.max_threads = n + 8;
    if (pc.stack_size < 1024 * 1024)
        pc.stack_size = 1024 * 1024;
    eg_pool_configure(&pc);

    devnull_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (g_opts.timeout_ns > 0)
        timeout_ctx = eg_with_timeout(NULL, g_opts.timeout_ns);
    root = eg_with_cancel(timeout_ctx);
    grp = root ? eg_group_new(root) : NULL;
    if (devnull_fd < 0 || done_fd < 0 || (g_opts.timeout_ns > 0 && !timeout_ctx) ||
        !root || !grp) {
        fprintf(stderr, "egrun: cannot start: %s\n", strerror(errno ? errno : ENOMEM));
        return EGRUN_EXIT_USAGE;
    }
    if (g_opts.jobs > 0)
        eg_set_limit(grp, g_opts.jobs);

    pthread_t lt;
    if ((r = pthread_create(&lt, NULL, launcher, NULL)) != 0) {
        fprintf(stderr, "egrun: cannot start: %s\n", strerror(r));
        return EGRUN_EXIT_USAGE;
    }
    /* The main thread is the reaper and the signal handler. */
    for (;;) {
        struct pollfd p[2] = {
            {.fd = proc_signalfd(), .events = POLLIN},
            {.fd = done_fd, .events = POLLIN},
        };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        egrun_drain_signals();
        if (p[1].revents)
            break;
    }
    pthread_join(lt, NULL);
    int swept = proc_sweep(cmds, n, g_opts.grace_ns);

    int code = 0;
    switch (atomic_load(&g_reason)) {
    case REASON_FAILURE:
        code = cmds[atomic_load(&g_reason_cmd) - 1].status;
        break;
    case REASON_SUCCESS:
        code = 0;
        break;
    case REASON_SIGNAL:
        code = 128 + atomic_load(&g_reason_signal);
        break;
    default:
        if (timeout_ctx && eg_ctx_err(timeout_ctx) == -ETIMEDOUT)
            code = EGRUN_EXIT_TIMEOUT;
        break;
    }

    if (g_opts.summary)
        report_summary(cmds, n, code, swept);
    if (g_opts.joblog && report_joblog(g_opts.joblog, cmds, n) != 0) {
        fprintf(stderr, "egrun: cannot write the joblog %s: %s\n", g_opts.joblog,
                strerror(errno));
        if (code == 0)
            code = EGRUN_EXIT_USAGE;
    }
    if (g_opts.json)
        report_json(cmds, n, code);

    eg_group_free(grp);
    eg_ctx_release(root);
    eg_ctx_release(timeout_ctx);
    close(devnull_fd);
    close(done_fd);
    free(cmds);
    free(g_opts.names);
    return code;
}
