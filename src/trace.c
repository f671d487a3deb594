/*
 * trace.c - the per-task trace of a group: an append-only array of
 * eg_trace_entry in finishing order. The group's lock guards it; nothing
 * here locks.
 */
#include <string.h>

#include "internal.h"

void eg__trace_append(eg__trace *t, const eg_trace_entry *e)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        eg_trace_entry *v = eg__malloc(cap * sizeof *v);
        if (!v)
            return; /* documented: an entry that cannot be stored is left out */
        if (t->n)
            memcpy(v, t->v, t->n * sizeof *v);
        free(t->v);
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = *e;
}

size_t eg__trace_copy(const eg__trace *t, eg_trace_entry *out, size_t cap)
{
    size_t n = t->n < cap ? t->n : cap;
    if (out && n)
        memcpy(out, t->v, n * sizeof *out);
    return t->n;
}

void eg__trace_free(eg__trace *t)
{
    free(t->v);
    *t = (eg__trace){0};
}

const char *eg_outcome_name(eg_outcome outcome)
{
    switch (outcome) {
    case EG_OUTCOME_OK:
        return "ok";
    case EG_OUTCOME_FAILED:
        return "failed";
    case EG_OUTCOME_CANCELLED:
        return "cancelled";
    }
    return "unknown";
}
