/*
 * common.c - version, clock, error text and the live-object counter.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

unsigned eg_version(void)
{
    return EG_VERSION_HEX;
}

const char *eg_version_string(void)
{
    return EG_VERSION_STRING;
}

int64_t eg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * EG_NSEC_PER_SEC + ts.tv_nsec;
}

void eg__ts_from_ns(struct timespec *ts, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    ts->tv_sec = (time_t)(ns / EG_NSEC_PER_SEC);
    ts->tv_nsec = (long)(ns % EG_NSEC_PER_SEC);
}

void eg__condattr_monotonic(pthread_condattr_t *attr)
{
    pthread_condattr_init(attr);
    pthread_condattr_setclock(attr, CLOCK_MONOTONIC);
}

const char *eg_strerror(int err)
{
    if (err == 0)
        return "Success";
    if (err > 0)
        return "Unknown error (positive code)";
    if (err == INT_MIN)
        return "Unknown error"; /* -INT_MIN does not exist */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    /* strerrordesc_np returns static, locale-independent text: thread-safe. */
    const char *s = strerrordesc_np(-err);
    return s ? s : "Unknown error";
#else
    return strerror(-err);
#endif
}

void eg__errtext(int err, char *buf, size_t len)
{
    snprintf(buf, len, "%s", eg_strerror(err));
}

/* Relaxed: the counter is a diagnostic read after the objects' owners
 * synchronised with each other (joined threads, eg_wait). */
static atomic_long live_objects;

void eg__live(long delta)
{
    atomic_fetch_add_explicit(&live_objects, delta, memory_order_relaxed);
}

long eg_live_objects(void)
{
    return atomic_load_explicit(&live_objects, memory_order_relaxed);
}
