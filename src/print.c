/*
 * print.c - eg_group_print: a group's trace (or its errors) as a table a
 * person reads at a glance. Works on a snapshot taken under the group's
 * lock (eg__group_print_info), so printing never holds that lock.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* The task column: its name, else its arg. */
static void task_label(const eg_trace_entry *e, char *buf, size_t len)
{
    if (e->name)
        snprintf(buf, len, "%s", e->name);
    else
        snprintf(buf, len, "%p", e->arg);
}

static const char *result_text(const eg_trace_entry *e)
{
    if (e->outcome == EG_OUTCOME_OK)
        return "-";
    return e->errmsg && e->errmsg[0] ? e->errmsg : "?";
}

static const char *mark(const eg__print_info *pi, size_t i)
{
    const eg_trace_entry *e = &pi->v[i];
    if (e->outcome == EG_OUTCOME_DETACHED)
        return "<- detached";
    if (i == pi->winner_index)
        return "<- winner";
    if (e->first_error && !pi->has_winner)
        return "<- first error";
    return "";
}

static int width(int w, const char *s)
{
    int n = (int)strlen(s);
    return n > w ? n : w;
}

/* ms with one decimal, relative to base. */
static void ms_cell(int64_t t, int64_t base, char *buf, size_t len)
{
    if (t == 0) {
        snprintf(buf, len, "-");
        return;
    }
    int64_t us = (t - base) / 1000;
    snprintf(buf, len, "%lld.%lld", (long long)(us / 1000),
             (long long)((us % 1000) / 100));
}

int eg_group_print(eg_group *g, FILE *f)
{
    if (!g || !f)
        return -EINVAL;
    eg__print_info pi;
    eg__group_print_info(g, &pi);
    if (!pi.v && pi.n)
        return -ENOMEM;

    /* The earliest start; without tracing, the earliest end. */
    int64_t base = INT64_MAX;
    for (size_t i = 0; i < pi.n; i++) {
        int64_t t = pi.v[i].start_ns ? pi.v[i].start_ns : pi.v[i].end_ns;
        if (t && t < base)
            base = t;
    }

    char label[64], st[32], en[32];
    int wt = (int)strlen("task"), wo = (int)strlen("outcome"), wr = (int)strlen("result");
    int ws = (int)strlen("start ms"), we = (int)strlen("end ms");
    for (size_t i = 0; i < pi.n; i++) {
        task_label(&pi.v[i], label, sizeof label);
        ms_cell(pi.v[i].start_ns, base, st, sizeof st);
        ms_cell(pi.v[i].end_ns, base, en, sizeof en);
        wt = width(wt, label);
        wo = width(wo, eg_outcome_name(pi.v[i].outcome));
        wr = width(wr, result_text(&pi.v[i]));
        ws = width(ws, st);
        we = width(we, en);
    }

    int bad = 0;
    bad |= fprintf(f, "%-*s  %-*s  %-*s  %*s  %*s\n", wt, "task", wo, "outcome", wr,
                   "result", ws, "start ms", we, "end ms") < 0;
    for (size_t i = 0; i < pi.n; i++) {
        const eg_trace_entry *e = &pi.v[i];
        task_label(e, label, sizeof label);
        ms_cell(e->start_ns, base, st, sizeof st);
        ms_cell(e->end_ns, base, en, sizeof en);
        const char *m = mark(&pi, i);
        bad |= fprintf(f, "%-*s  %-*s  %-*s  %*s  %*s%s%s\n", wt, label, wo,
                       eg_outcome_name(e->outcome), wr, result_text(e), ws, st, we, en,
                       m[0] ? "  " : "", m) < 0;
    }
    if (!pi.tracing)
        bad |=
            fprintf(f,
                    "(tracing off: failed tasks only, times from the first failure)\n") <
            0;
    size_t listed = 0;
    for (size_t i = 0; i < pi.n; i++)
        listed += pi.v[i].outcome == EG_OUTCOME_DETACHED;
    if (!pi.tracing && pi.ndetached)
        bad |= fprintf(f, "%zu task%s detached, still running\n", pi.ndetached,
                       pi.ndetached == 1 ? "" : "s") < 0;
    else if (pi.ndetached > listed)
        bad |= fprintf(f, "%zu more detached before they started\n",
                       pi.ndetached - listed) < 0;
    if (pi.err)
        bad |=
            fprintf(f, "result: %s (%s)\n", eg_group_errmsg(g), eg_strerror(pi.err)) < 0;
    else
        bad |= fprintf(f, "result: ok%s\n", pi.has_winner ? " (a task won)" : "") < 0;
    free(pi.v);
    return bad ? -EIO : 0;
}
