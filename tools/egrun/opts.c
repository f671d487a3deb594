/*
 * opts.c - egrun's command line: options, durations and signal names.
 *
 * Every mistake is one line on stderr and exit status 125, so a script can
 * tell "egrun was misused" from "a command failed".
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eg/common.h"
#include "egrun.h"

static const char usage_text[] =
    "Usage: egrun [OPTIONS] [--] COMMAND...\n"
    "Run each COMMAND (one argument each, run by /bin/sh -c) at the same time,\n"
    "as one errgroup: the first to fail stops the others, and egrun exits with\n"
    "its status. Everything egrun starts is stopped and reaped before it exits.\n"
    "\n"
    "Options:\n"
    "  -j, --jobs N          run at most N commands at once (0: no limit, the\n"
    "                        default); the rest start in order as slots free,\n"
    "                        and none starts after the run was stopped\n"
    "      --timeout DUR     stop everything after DUR and exit 124 (0: none)\n"
    "      --grace DUR       time between the stop signal and SIGKILL (5s)\n"
    "      --signal SIG      stop signal, sent once to each command's process\n"
    "                        group (TERM); a name (TERM, SIGINT) or a number\n"
    "      --success MODE    all: the run succeeds when every command exits 0\n"
    "                        (default); first: the first command to end stops\n"
    "                        the rest, and if it exited 0 so does egrun\n"
    "      --names A,B,...   names of the commands, in order (default: the\n"
    "                        index and the first word, as 1:make)\n"
    "      --prefix          prefix every output line with the name (default)\n"
    "      --no-prefix       do not prefix output lines (lines stay whole)\n"
    "      --color WHEN      colour the prefixes: auto (default), always, never\n"
    "      --joblog FILE     write one line per command to FILE: name, start,\n"
    "                        duration, exit status, how it ended, command\n"
    "      --json            print the same as one JSON document, the last line\n"
    "                        on stdout\n"
    "      --stdin N         give egrun's stdin to command N (1-based); the\n"
    "                        others, and by default all, read /dev/null\n"
    "      --no-summary      do not print the summary table on stderr\n"
    "  -h, --help            print this help and exit\n"
    "  -V, --version         print the version and exit\n"
    "\n"
    "DUR is a number with an optional unit: ms, s (the default), m or h,\n"
    "as in 250ms, 5s, 2m, 1.5.\n"
    "\n"
    "Exit status: 0 when the run succeeded; the first failing command's status\n"
    "(128+N for a death by signal N; 126/127 as the shell reports a command it\n"
    "cannot execute or find); 124 after --timeout; 130/143/129 after SIGINT,\n"
    "SIGTERM, SIGHUP (forwarded once to every command; a second SIGINT kills at\n"
    "once); 125 for a usage error. Commands egrun stopped never count as\n"
    "failures. See egrun(1).\n";

static void usage_error(const char *fmt, const char *arg)
{
    fputs("egrun: ", stderr);
    fprintf(stderr, fmt, arg);
    fputs(" (try 'egrun --help')\n", stderr);
    exit(EGRUN_EXIT_USAGE);
}

int egrun_parse_duration(const char *s, int64_t *ns)
{
    if (!s || !*s)
        return -EINVAL;
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (end == s || errno || !isfinite(v) || v < 0 || *s == '-' || *s == '+')
        return -EINVAL;
    double unit;
    if (!*end || !strcmp(end, "s"))
        unit = 1e9;
    else if (!strcmp(end, "ms"))
        unit = 1e6;
    else if (!strcmp(end, "m"))
        unit = 60e9;
    else if (!strcmp(end, "h"))
        unit = 3600e9;
    else
        return -EINVAL;
    double t = v * unit;
    /* Saturate: a huge duration means "practically never". */
    *ns = t >= 9.2e18 ? INT64_MAX : (int64_t)t;
    return 0;
}

static const struct {
    int sig;
    const char *name;
} sigtab[] = {
    {SIGHUP, "HUP"},       {SIGINT, "INT"},   {SIGQUIT, "QUIT"},   {SIGILL, "ILL"},
    {SIGTRAP, "TRAP"},     {SIGABRT, "ABRT"}, {SIGBUS, "BUS"},     {SIGFPE, "FPE"},
    {SIGKILL, "KILL"},     {SIGUSR1, "USR1"}, {SIGSEGV, "SEGV"},   {SIGUSR2, "USR2"},
    {SIGPIPE, "PIPE"},     {SIGALRM, "ALRM"}, {SIGTERM, "TERM"},   {SIGCHLD, "CHLD"},
    {SIGCONT, "CONT"},     {SIGSTOP, "STOP"}, {SIGTSTP, "TSTP"},   {SIGTTIN, "TTIN"},
    {SIGTTOU, "TTOU"},     {SIGURG, "URG"},   {SIGXCPU, "XCPU"},   {SIGXFSZ, "XFSZ"},
    {SIGVTALRM, "VTALRM"}, {SIGPROF, "PROF"}, {SIGWINCH, "WINCH"}, {SIGSYS, "SYS"},
};

int egrun_parse_signal(const char *s)
{
    if (!s || !*s)
        return -EINVAL;
    if (*s >= '0' && *s <= '9') {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (*end || errno || v < 1 || v >= NSIG)
            return -EINVAL;
        return (int)v;
    }
    if (!strncasecmp(s, "SIG", 3))
        s += 3;
    for (size_t i = 0; i < sizeof sigtab / sizeof sigtab[0]; i++)
        if (!strcasecmp(s, sigtab[i].name))
            return sigtab[i].sig;
    return -EINVAL;
}

const char *egrun_signal_name(int sig)
{
    for (size_t i = 0; i < sizeof sigtab / sizeof sigtab[0]; i++)
        if (sigtab[i].sig == sig)
            return sigtab[i].name;
    return "?";
}

static int parse_count(const char *s, const char *what, int min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > INT_MAX)
        usage_error(what, s);
    return (int)v;
}

/* Splits a,b,c in place. */
static void parse_names(char *s, egrun_opts *o)
{
    int n = 1;
    for (char *p = s; *p; p++)
        n += *p == ',';
    o->names = calloc((size_t)n, sizeof *o->names);
    if (!o->names) {
        fputs("egrun: out of memory\n", stderr);
        exit(EGRUN_EXIT_USAGE);
    }
    o->nnames = 0;
    for (char *tok = s;;) {
        char *comma = strchr(tok, ',');
        if (comma)
            *comma = '\0';
        o->names[o->nnames++] = tok;
        if (!comma)
            break;
        tok = comma + 1;
    }
}

enum {
    OPT_TIMEOUT = 256,
    OPT_GRACE,
    OPT_SIGNAL,
    OPT_SUCCESS,
    OPT_NAMES,
    OPT_PREFIX,
    OPT_NO_PREFIX,
    OPT_COLOR,
    OPT_JOBLOG,
    OPT_JSON,
    OPT_STDIN,
    OPT_NO_SUMMARY
};

int egrun_parse_opts(int argc, char **argv, egrun_opts *o)
{
    static const struct option longopts[] = {
        {"jobs", required_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"grace", required_argument, NULL, OPT_GRACE},
        {"signal", required_argument, NULL, OPT_SIGNAL},
        {"success", required_argument, NULL, OPT_SUCCESS},
        {"names", required_argument, NULL, OPT_NAMES},
        {"prefix", no_argument, NULL, OPT_PREFIX},
        {"no-prefix", no_argument, NULL, OPT_NO_PREFIX},
        {"color", required_argument, NULL, OPT_COLOR},
        {"colour", required_argument, NULL, OPT_COLOR},
        {"joblog", required_argument, NULL, OPT_JOBLOG},
        {"json", no_argument, NULL, OPT_JSON},
        {"stdin", required_argument, NULL, OPT_STDIN},
        {"no-summary", no_argument, NULL, OPT_NO_SUMMARY},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof *o);
    o->grace_ns = 5 * EG_NSEC_PER_SEC;
    o->stop_signal = SIGTERM;
    o->prefix = true;
    o->color = 2;
    o->summary = true;

    opterr = 0;
    int c;
    /* "+": options end at the first command, as in env(1) and timeout(1). */
    while ((c = getopt_long(argc, argv, "+:j:hV", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            o->jobs = parse_count(optarg, "-j/--jobs: not a count: '%s'", 0);
            break;
        case OPT_TIMEOUT:
            if (egrun_parse_duration(optarg, &o->timeout_ns))
                usage_error("--timeout: not a duration: '%s'", optarg);
            break;
        case OPT_GRACE:
            if (egrun_parse_duration(optarg, &o->grace_ns))
                usage_error("--grace: not a duration: '%s'", optarg);
            break;
        case OPT_SIGNAL: {
            int s = egrun_parse_signal(optarg);
            if (s < 0)
                usage_error("--signal: not a signal: '%s'", optarg);
            o->stop_signal = s;
            break;
        }
        case OPT_SUCCESS:
            if (!strcmp(optarg, "first"))
                o->success_first = true;
            else if (!strcmp(optarg, "all"))
                o->success_first = false;
            else
                usage_error("--success: expected 'first' or 'all', not '%s'", optarg);
            break;
        case OPT_NAMES:
            parse_names(optarg, o);
            break;
        case OPT_PREFIX:
            o->prefix = true;
            break;
        case OPT_NO_PREFIX:
            o->prefix = false;
            break;
        case OPT_COLOR:
            if (!strcmp(optarg, "never"))
                o->color = 0;
            else if (!strcmp(optarg, "always"))
                o->color = 1;
            else if (!strcmp(optarg, "auto"))
                o->color = 2;
            else
                usage_error("--color: expected auto, always or never, not '%s'", optarg);
            break;
        case OPT_JOBLOG:
            o->joblog = optarg;
            break;
        case OPT_JSON:
            o->json = true;
            break;
        case OPT_STDIN:
            o->stdin_cmd = parse_count(optarg, "--stdin: not a command number: '%s'", 1);
            break;
        case OPT_NO_SUMMARY:
            o->summary = false;
            break;
        case 'h':
            fputs(usage_text, stdout);
            exit(0);
        case 'V':
            printf("egrun (errgroup) %d.%d.%d\n", EG_VERSION_MAJOR, EG_VERSION_MINOR,
                   EG_VERSION_PATCH);
            exit(0);
        case ':':
            usage_error("option '%s' needs an argument", argv[optind - 1]);
            break;
        default:
            if (optopt && optopt < 256) {
                char opt[3] = {'-', (char)optopt, '\0'};
                usage_error("unknown option '%s'", opt);
            }
            usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    o->cmds = argv + optind;
    o->ncmds = argc - optind;
    if (o->ncmds == 0)
        usage_error("no command given%s", "");
    char num[16];
    for (int i = 0; i < o->ncmds; i++)
        if (!o->cmds[i][0]) {
            snprintf(num, sizeof num, "%d", i + 1);
            usage_error("command %s is empty", num);
        }
    if (o->nnames > o->ncmds)
        usage_error("--names: more names than commands%s", "");
    if (o->stdin_cmd > o->ncmds) {
        snprintf(num, sizeof num, "%d", o->stdin_cmd);
        usage_error("--stdin: there is no command %s", num);
    }
    return 0;
}
