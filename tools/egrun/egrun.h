/*
 * egrun.h - shared state of egrun, shell commands run as one errgroup.
 *
 * Threads: the main thread owns the signalfd and every waitpid() call (the
 * reaper, proc.c); a launcher thread starts one group task per command
 * (eg_go, so the group's limit is -j) and then waits for the group; each task
 * (egrun.c) spawns its command, multiplexes its output (out.c) and stops it
 * when the group's context is done.
 *
 * Lock order: cmd_table_mu (proc.c) -> nothing; out_mu (out.c) -> nothing.
 * A task never holds both.
 */
#ifndef EGRUN_H
#define EGRUN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "eg/ctx.h"

enum egrun_exit {
    EGRUN_EXIT_TIMEOUT = 124,
    EGRUN_EXIT_USAGE = 125,
    EGRUN_EXIT_CANNOT_EXEC = 126,
};

typedef enum egrun_end {
    END_NEVER_STARTED, /* queued, and the run was stopped before its turn */
    END_OK,            /* exited 0 on its own */
    END_FAILED,        /* exited non-zero or died of a signal on its own */
    END_STOPPED,       /* egrun signalled it before it ended */
} egrun_end;

typedef struct egrun_opts {
    int jobs;           /* 0: no limit */
    int64_t timeout_ns; /* 0: none */
    int64_t grace_ns;
    int stop_signal;
    bool success_first;
    bool prefix;
    int color; /* 0 never, 1 always, 2 auto */
    const char *joblog;
    bool json;
    bool summary;
    int stdin_cmd; /* 1-based; 0: every command gets /dev/null */
    char **names;  /* from --names, may be shorter than ncmds */
    int nnames;
    char **cmds;
    int ncmds;
} egrun_opts;

/* One command. Written by its task; exit fields by the reaper under
 * cmd_table_mu; read by the main thread after the group's eg_wait. */
typedef struct egrun_cmd {
    int index; /* 1-based */
    const char *text;
    char name[64];
    int color;      /* ANSI colour number */
    pid_t pid;      /* also its process group id; 0 before spawn */
    int notify_fd;  /* eventfd: the reaper saw the shell exit */
    char *iobuf;    /* the task's read buffer */
    bool exited;    /* under cmd_table_mu */
    int wstatus;    /* under cmd_table_mu */
    bool signalled; /* egrun sent it its stop signal */
    bool killed;    /* egrun sent it SIGKILL */
    egrun_end end;
    int status;                  /* exit status as a shell reports it, -1 none */
    bool first;                  /* its end decided the run */
    int64_t start_real_ns;       /* CLOCK_REALTIME at spawn */
    int64_t start_ns, end_ns;    /* eg_now() */
    struct egrun_cmd *next_live; /* in the reaper's table */
} egrun_cmd;

/* Why the run ended; the first to set it wins. */
enum egrun_reason {
    REASON_NONE,
    REASON_FAILURE, /* a command failed; reason_cmd says which */
    REASON_SUCCESS, /* --success first: a command exited 0 */
    REASON_SIGNAL,  /* egrun received reason_signal */
};

extern egrun_opts g_opts;
extern atomic_int g_reason;        /* enum egrun_reason */
extern atomic_int g_reason_cmd;    /* index of the deciding command, or 0 */
extern atomic_int g_reason_signal; /* the signal egrun received first */
extern atomic_int g_stop_signal;   /* what tasks send: --signal, or the
                                    * forwarded one */
extern atomic_bool g_kill_now;     /* a second SIGINT: no more grace */

/* opts.c */
int egrun_parse_opts(int argc, char **argv, egrun_opts *o);
int egrun_parse_duration(const char *s, int64_t *ns);
int egrun_parse_signal(const char *s);
const char *egrun_signal_name(int sig);

/* out.c: line-whole output. */
typedef struct egrun_linebuf {
    char *buf;
    size_t len, cap;
    int fd; /* 1 or 2: where lines go */
} egrun_linebuf;
void out_init(void);
void out_set_name_width(int w);
void out_feed(egrun_linebuf *lb, const egrun_cmd *c, const char *data, size_t n);
void out_flush_partial(egrun_linebuf *lb, const egrun_cmd *c);
void out_free(egrun_linebuf *lb);
/* Writes text whole to fd under the output lock. */
void out_write(int fd, const char *s, size_t n);

/* proc.c: spawning, the reaper and the sweep. */
int proc_init(void); /* subreaper, signal mask, signalfd */
int proc_signalfd(void);
int proc_spawn(egrun_cmd *c, int out_fd, int err_fd, int in_fd);
void proc_forget(egrun_cmd *c); /* the task is done with c */
void proc_reap(void);           /* waitpid loop, dispatches */
void proc_wake_all(void);       /* writes every live notify_fd */
/* Stops and reaps what is left (orphans, leftover group members) after
 * every task returned; returns how many processes it had to signal. */
int proc_sweep(const egrun_cmd *cmds, int ncmds, int64_t grace_ns);
bool proc_exited(egrun_cmd *c, int *wstatus);

/* egrun.c: reads the signalfd, reaps, handles INT/TERM/HUP. */
void egrun_drain_signals(void);

/* report.c */
void report_summary(const egrun_cmd *cmds, int n, int exit_code, int swept);
int report_joblog(const char *path, const egrun_cmd *cmds, int n);
void report_json(const egrun_cmd *cmds, int n, int exit_code);
const char *egrun_end_name(egrun_end e);

#endif
