/*
 * proc.c - process containment: spawning, the reaper and the final sweep.
 *
 * Every waitpid() call in egrun is made here, by the main thread: egrun is a
 * child subreaper (PR_SET_CHILD_SUBREAPER), so besides the shells it started
 * it inherits every orphan of their trees (a `setsid` daemon, a double
 * fork), and one owner of waitpid(-1) is the only way to reap those without
 * stealing a shell's status from the task that waits for it. The reaper
 * hands a shell's status to its task (under cmd_table_mu, then a write to
 * the task's eventfd) and simply reaps anything else.
 *
 * Spawning holds cmd_table_mu from posix_spawn() until the command is in the
 * table, so the reaper can never reap a shell it does not know yet.
 *
 * Each command is the leader of a new process group (POSIX_SPAWN_SETPGROUP,
 * done in the child before exec, and complete when posix_spawn returns), so
 * egrun signals a command and everything it started in that group at once.
 *
 * Lock order: cmd_table_mu -> nothing.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "eg/common.h"
#include "egrun.h"

extern char **environ;

static pthread_mutex_t cmd_table_mu = PTHREAD_MUTEX_INITIALIZER;
static egrun_cmd *live; /* under cmd_table_mu: spawned, task not done */
static int sig_fd = -1;
static bool hup_ignored; /* started under nohup: keep SIGHUP ignored */

int proc_init(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigaction(SIGHUP, NULL, &sa);
    hup_ignored = sa.sa_handler == SIG_IGN;

#ifdef PR_SET_CHILD_SUBREAPER
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0)
        fprintf(stderr,
                "egrun: warning: cannot become a child subreaper: %s; "
                "processes that leave their group may escape\n",
                strerror(errno));
#endif

    /* SIGCHLD must not be ignored (children would be auto-reaped) and the
     * stop signals must not be either (a background job of a
     * non-interactive shell starts with SIGINT ignored). They are blocked
     * below, so the default action never runs: signalfd takes them. */
    signal(SIGCHLD, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (!hup_ignored)
        signal(SIGHUP, SIG_DFL);
    signal(SIGPIPE, SIG_IGN);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (!hup_ignored)
        sigaddset(&set, SIGHUP);
    /* Before any thread exists: every library thread inherits the mask,
     * so these signals reach only the signalfd. */
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    return sig_fd < 0 ? -errno : 0;
}

int proc_signalfd(void)
{
    return sig_fd;
}

int proc_spawn(egrun_cmd *c, int out_fd, int err_fd, int in_fd)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int err = posix_spawn_file_actions_init(&fa);
    if (err)
        return -err;
    err = posix_spawnattr_init(&at);
    if (err) {
        posix_spawn_file_actions_destroy(&fa);
        return -err;
    }
    if (in_fd != 0)
        err = posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    if (!err)
        err = posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    if (!err)
        err = posix_spawn_file_actions_adddup2(&fa, err_fd, 2);

    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    static const int reset[] = {SIGINT,  SIGTERM, SIGQUIT, SIGPIPE, SIGCHLD, SIGTTIN,
                                SIGTTOU, SIGTSTP, SIGUSR1, SIGUSR2, SIGALRM};
    for (size_t i = 0; i < sizeof reset / sizeof reset[0]; i++)
        sigaddset(&dfl, reset[i]);
    if (!hup_ignored)
        sigaddset(&dfl, SIGHUP);
    if (!err)
        err = posix_spawnattr_setflags(
            &at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    if (!err)
        err = posix_spawnattr_setpgroup(&at, 0);
    if (!err)
        err = posix_spawnattr_setsigmask(&at, &none);
    if (!err)
        err = posix_spawnattr_setsigdefault(&at, &dfl);

    if (!err) {
        char *argv[] = {"sh", "-c", (char *)c->text, NULL};
        pid_t pid;
        pthread_mutex_lock(&cmd_table_mu);
        err = posix_spawn(&pid, "/bin/sh", &fa, &at, argv, environ);
        if (!err) {
            c->pid = pid;
            c->exited = false;
            c->next_live = live;
            live = c;
        }
        pthread_mutex_unlock(&cmd_table_mu);
    }
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return -err;
}

void proc_forget(egrun_cmd *c)
{
    pthread_mutex_lock(&cmd_table_mu);
    for (egrun_cmd **pp = &live; *pp; pp = &(*pp)->next_live)
        if (*pp == c) {
            *pp = c->next_live;
            break;
        }
    pthread_mutex_unlock(&cmd_table_mu);
}

static void notify(egrun_cmd *c)
{
    uint64_t one = 1;
    ssize_t r;
    do
        r = write(c->notify_fd, &one, sizeof one);
    while (r < 0 && errno == EINTR);
}

void proc_reap(void)
{
    pthread_mutex_lock(&cmd_table_mu);
    for (;;) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            break;
        for (egrun_cmd *c = live; c; c = c->next_live)
            if (c->pid == pid) {
                c->exited = true;
                c->wstatus = st;
                notify(c);
                break;
            }
        /* Not a shell of ours: an inherited orphan, now reaped. */
    }
    pthread_mutex_unlock(&cmd_table_mu);
}

void proc_wake_all(void)
{
    pthread_mutex_lock(&cmd_table_mu);
    for (egrun_cmd *c = live; c; c = c->next_live)
        notify(c);
    pthread_mutex_unlock(&cmd_table_mu);
}

bool proc_exited(egrun_cmd *c, int *wstatus)
{
    pthread_mutex_lock(&cmd_table_mu);
    bool e = c->exited;
    if (e && wstatus)
        *wstatus = c->wstatus;
    pthread_mutex_unlock(&cmd_table_mu);
    return e;
}

/* Children of this process (ppid == getpid()), from /proc/<pid>/stat, with
 * their process groups. Returns how many were stored (at most cap). */
static size_t list_children(pid_t *pids, pid_t *pgids, size_t cap)
{
    DIR *d = opendir("/proc");
    if (!d)
        return 0;
    pid_t self = getpid();
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) && n < cap) {
        if (de->d_name[0] < '1' || de->d_name[0] > '9')
            continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", de->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        ssize_t r = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (r <= 0)
            continue;
        buf[r] = '\0';
        /* pid (comm) state ppid pgrp ...; comm may hold spaces and ')' */
        char *rp = strrchr(buf, ')');
        char state;
        int ppid, pgrp;
        if (!rp || sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) != 3)
            continue;
        if (ppid != self)
            continue;
        pids[n] = (pid_t)atoi(de->d_name);
        pgids[n] = pgrp;
        n++;
    }
    closedir(d);
    return n;
}

#define SWEEP_MAX 4096

int proc_sweep(const egrun_cmd *cmds, int ncmds, int64_t grace_ns)
{
    static pid_t pids[SWEEP_MAX], pgids[SWEEP_MAX];
    static pid_t done[SWEEP_MAX]; /* already sent the stop signal */
    size_t ndone = 0;
    int swept = 0;
    int64_t now = eg_now();
    int64_t deadline = grace_ns > INT64_MAX - now ? INT64_MAX : now + grace_ns;
    for (;;) {
        proc_reap();
        size_t n = list_children(pids, pgids, SWEEP_MAX);
        if (n == 0)
            break;
        now = eg_now();
        bool kill_all =
            now >= deadline || atomic_load_explicit(&g_kill_now, memory_order_relaxed);
        int sig = atomic_load_explicit(&g_stop_signal, memory_order_relaxed);
        for (size_t i = 0; i < n; i++) {
            bool seen = false;
            for (size_t j = 0; j < ndone && !seen; j++)
                seen = done[j] == pids[i];
            /* A member of a group egrun already signalled got its one stop
             * signal then: never a second. */
            for (int k = 0; k < ncmds && !seen; k++)
                seen = cmds[k].signalled && cmds[k].pid == pgids[i];
            if (!seen) {
                swept++;
                kill(pids[i], sig);
                if (sig != SIGKILL && sig != SIGCONT)
                    kill(pids[i], SIGCONT);
                if (ndone < SWEEP_MAX)
                    done[ndone++] = pids[i];
            }
            if (kill_all)
                kill(pids[i], SIGKILL);
        }
        /* Sleep until a child changes state, a signal comes, or 50 ms. */
        int64_t left = deadline - now;
        int ms = left <= 0                          ? 50
                 : left / EG_NSEC_PER_MSEC + 1 < 50 ? (int)(left / EG_NSEC_PER_MSEC + 1)
                                                    : 50;
        struct pollfd pfd = {.fd = sig_fd, .events = POLLIN};
        poll(&pfd, 1, ms);
        egrun_drain_signals();
    }
    return swept;
}
