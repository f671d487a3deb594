/*
 * report.c - what happened: the summary table (stderr), --joblog, --json.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "eg/common.h"
#include "egrun.h"

const char *egrun_end_name(egrun_end e)
{
    switch (e) {
    case END_OK:
        return "ok";
    case END_FAILED:
        return "failed";
    case END_STOPPED:
        return "stopped";
    case END_NEVER_STARTED:
        break;
    }
    return "never-started";
}

static double secs(int64_t ns)
{
    return (double)ns / 1e9;
}

static double duration(const egrun_cmd *c)
{
    return c->end == END_NEVER_STARTED ? 0 : secs(c->end_ns - c->start_ns);
}

static const char *reason_name(int code)
{
    switch (atomic_load(&g_reason)) {
    case REASON_FAILURE:
        return "failure";
    case REASON_SUCCESS:
        return "success";
    case REASON_SIGNAL:
        return "signal";
    default:
        return code == EGRUN_EXIT_TIMEOUT ? "timeout" : "completed";
    }
}

void report_summary(const egrun_cmd *cmds, int n, int code, int swept)
{
    char head[256];
    int who = atomic_load(&g_reason_cmd);
    const egrun_cmd *w = who > 0 ? &cmds[who - 1] : NULL;
    switch (atomic_load(&g_reason)) {
    case REASON_FAILURE:
        snprintf(head, sizeof head, "%s failed first (status %d)", w->name, w->status);
        break;
    case REASON_SUCCESS:
        snprintf(head, sizeof head, "%s succeeded first (--success first)", w->name);
        break;
    case REASON_SIGNAL:
        snprintf(head, sizeof head, "stopped by SIG%s",
                 egrun_signal_name(atomic_load(&g_reason_signal)));
        break;
    default:
        if (code == EGRUN_EXIT_TIMEOUT)
            snprintf(head, sizeof head, "stopped: --timeout reached");
        else
            snprintf(head, sizeof head, "all %d command%s succeeded", n,
                     n == 1 ? "" : "s");
    }
    int width = 4;
    for (int i = 0; i < n; i++) {
        int l = (int)strlen(cmds[i].name);
        width = l > width ? l : width;
    }
    /* One block, so it is not cut by anything else written to stderr. */
    size_t cap = 512 + (size_t)n * (size_t)(width + 96);
    char *b = malloc(cap);
    if (!b)
        return;
    size_t o = 0;
    o += (size_t)snprintf(b + o, cap - o, "egrun: %s; exit %d\n", head, code);
    o += (size_t)snprintf(b + o, cap - o, "  %3s  %-*s  %-26s %6s %10s\n", "#", width,
                          "NAME", "RESULT", "STATUS", "TIME");
    for (int i = 0; i < n && o < cap; i++) {
        const egrun_cmd *c = &cmds[i];
        char res[64], st[16];
        switch (c->end) {
        case END_STOPPED:
            if (WIFSIGNALED(c->wstatus))
                snprintf(res, sizeof res, "stopped by egrun (%s)",
                         egrun_signal_name(WTERMSIG(c->wstatus)));
            else
                snprintf(res, sizeof res, "stopped by egrun");
            break;
        case END_NEVER_STARTED:
            snprintf(res, sizeof res, "never started");
            break;
        default:
            snprintf(res, sizeof res, "%s%s", egrun_end_name(c->end),
                     c->first ? " (first)" : "");
        }
        if (c->status >= 0)
            snprintf(st, sizeof st, "%d", c->status);
        else
            snprintf(st, sizeof st, "-");
        char t[32];
        if (c->end == END_NEVER_STARTED)
            snprintf(t, sizeof t, "-");
        else
            snprintf(t, sizeof t, "%.3fs", duration(c));
        o += (size_t)snprintf(b + o, cap - o, "  %3d  %-*s  %-26s %6s %10s\n", c->index,
                              width, c->name, res, st, t);
    }
    if (swept > 0 && o < cap)
        o += (size_t)snprintf(b + o, cap - o, "egrun: stopped %d leftover process%s\n",
                              swept, swept == 1 ? "" : "es");
    out_write(2, b, o < cap ? o : cap - 1);
    free(b);
}

/* Tabs, newlines and backslashes as \t \n \\ so a line stays a line. */
static void put_field(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '\t')
            fputs("\\t", f);
        else if (*s == '\n')
            fputs("\\n", f);
        else if (*s == '\\')
            fputs("\\\\", f);
        else
            fputc(*s, f);
    }
}

int report_joblog(const char *path, const egrun_cmd *cmds, int n)
{
    FILE *f = fopen(path, "we");
    if (!f)
        return -errno;
    fputs("index\tname\tstart\tduration\tstatus\tend\tfirst\tcommand\n", f);
    for (int i = 0; i < n; i++) {
        const egrun_cmd *c = &cmds[i];
        fprintf(f, "%d\t", c->index);
        put_field(f, c->name);
        if (c->end == END_NEVER_STARTED)
            fputs("\t-\t-", f);
        else
            fprintf(f, "\t%.3f\t%.3f", secs(c->start_real_ns), duration(c));
        if (c->status >= 0)
            fprintf(f, "\t%d", c->status);
        else
            fputs("\t-", f);
        fprintf(f, "\t%s\t%s\t", egrun_end_name(c->end), c->first ? "yes" : "no");
        put_field(f, c->text);
        fputc('\n', f);
    }
    int err = ferror(f) ? -EIO : 0;
    if (fclose(f) != 0 && !err)
        err = -errno;
    return err;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

void report_json(const egrun_cmd *cmds, int n, int code)
{
    /* Built in memory and written whole: the last line of stdout. */
    char *doc = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&doc, &len);
    if (!f)
        return;
    int sig = atomic_load(&g_reason_signal);
    int who = atomic_load(&g_reason_cmd);
    fprintf(f, "{\"version\":\"%d.%d.%d\",\"exit_status\":%d,\"reason\":\"%s\"",
            EG_VERSION_MAJOR, EG_VERSION_MINOR, EG_VERSION_PATCH, code,
            reason_name(code));
    if (sig)
        fprintf(f, ",\"signal\":\"SIG%s\"", egrun_signal_name(sig));
    else
        fputs(",\"signal\":null", f);
    fprintf(f, ",\"first\":%d,\"commands\":[", who);
    for (int i = 0; i < n; i++) {
        const egrun_cmd *c = &cmds[i];
        fprintf(f, "%s{\"index\":%d,\"name\":", i ? "," : "", c->index);
        json_str(f, c->name);
        fputs(",\"command\":", f);
        json_str(f, c->text);
        fprintf(f, ",\"end\":\"%s\",\"first\":%s", egrun_end_name(c->end),
                c->first ? "true" : "false");
        if (c->status >= 0)
            fprintf(f, ",\"status\":%d", c->status);
        else
            fputs(",\"status\":null", f);
        if (c->end != END_NEVER_STARTED && c->pid > 0 && WIFSIGNALED(c->wstatus))
            fprintf(f, ",\"signal\":\"SIG%s\"", egrun_signal_name(WTERMSIG(c->wstatus)));
        else
            fputs(",\"signal\":null", f);
        if (c->end == END_NEVER_STARTED)
            fputs(",\"pid\":null,\"start\":null,\"duration\":null}", f);
        else
            fprintf(f, ",\"pid\":%d,\"start\":%.3f,\"duration\":%.3f}", (int)c->pid,
                    secs(c->start_real_ns), duration(c));
    }
    fputs("]}\n", f);
    fclose(f);
    out_write(1, doc, len);
    free(doc);
}
