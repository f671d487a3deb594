/*
 * fault.c - fault injection for tests (built with EG_FAULT_INJECTION only).
 *
 * Each kind has a countdown: when it reaches zero the call fails. The
 * countdowns are atomics so tests may arm them while pool threads run.
 */
#include <sched.h>

#include "internal.h"

#ifdef EG_FAULT_INJECTION

#include "fault.h"

static atomic_long countdown[EG_FAULT_KINDS]; /* 0 off, <0 always, n: nth */
static atomic_long calls[EG_FAULT_KINDS];

void eg_fault_set(int kind, long nth)
{
    if (kind >= 0 && kind < EG_FAULT_KINDS)
        atomic_store(&countdown[kind], nth);
}

long eg_fault_calls(int kind)
{
    return (kind >= 0 && kind < EG_FAULT_KINDS) ? atomic_load(&calls[kind]) : 0;
}

/* True when this call of kind must fail. */
static bool fault_hit(int kind)
{
    atomic_fetch_add(&calls[kind], 1);
    long c = atomic_load(&countdown[kind]);
    for (;;) {
        if (c == 0)
            return false;
        if (c < 0)
            return true;
        if (atomic_compare_exchange_weak(&countdown[kind], &c, c - 1))
            return c == 1;
    }
}

void *eg__malloc(size_t n)
{
    return fault_hit(EG_FAULT_MALLOC) ? NULL : malloc(n);
}

void *eg__calloc(size_t n, size_t size)
{
    return fault_hit(EG_FAULT_MALLOC) ? NULL : calloc(n, size);
}

int eg__pthread_create(pthread_t *t, const pthread_attr_t *a, void *(*fn)(void *),
                       void *arg)
{
    if (!fault_hit(EG_FAULT_THREAD))
        return pthread_create(t, a, fn, arg);
    /* A real failing pthread_create maps (and unmaps) a stack first: it
     * takes tens of microseconds, during which other threads run. */
    int64_t until = eg_now() + 30 * EG_NSEC_PER_USEC;
    while (eg_now() < until)
        sched_yield();
    return EAGAIN;
}

bool eg__fault_fd(void)
{
    return fault_hit(EG_FAULT_FD);
}

#else
/* ISO C forbids an empty translation unit. */
typedef int eg__fault_unused;
#endif
