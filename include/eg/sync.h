/*
 * eg/sync.h - WaitGroup and Once (Go's sync.WaitGroup and sync.Once).
 *
 * Both are plain values: declare them static with the initializer, or call
 * the init function, and never copy one that is in use.
 *
 * Thread-safety: every function may be called from any thread at the same
 * time on the same object (init/destroy excepted: once, with no other call
 * running). Neither listens to a context: eg_wg_wait ignores every context
 * (a task blocked in it is not woken by its group's cancellation; cancel
 * the work the WaitGroup counts instead), as eg_once_do does.
 */
#ifndef EG_SYNC_H
#define EG_SYNC_H

#include <pthread.h>

#include "eg/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A counter of outstanding work. Fields are private. */
typedef struct eg_wg {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    long count;
    int waiters;
} eg_wg;

#define EG_WG_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}

/* Initializes wg to zero. Returns 0 or -ENOMEM/-EAGAIN from pthread init. */
EG_EXPORT int eg_wg_init(eg_wg *wg);
/* Frees what eg_wg_init allocated. Undefined behaviour that is not
 * detected: destroying or copying a WaitGroup that has waiters or a
 * non-zero count. */
EG_EXPORT void eg_wg_destroy(eg_wg *wg);
/* Adds delta (may be negative) to the counter; when it reaches zero every
 * eg_wg_wait returns. Returns 0, or -EINVAL and no change if the counter
 * would go below zero (Go panics) or wg is NULL. */
EG_EXPORT int eg_wg_add(eg_wg *wg, int delta);
/* eg_wg_add(wg, -1). */
EG_EXPORT int eg_wg_done(eg_wg *wg);
/* Blocks until the counter is zero. Blocks: on the counter only; it listens
 * to no context. */
EG_EXPORT void eg_wg_wait(eg_wg *wg);
/* Go 1.25's WaitGroup.Go: adds one, runs fn(arg) on the pool, then done.
 * Returns 0 once started; -EINVAL, -ENOMEM or -EAGAIN and no change if not
 * (arg then still belongs to the caller). */
EG_EXPORT int eg_wg_go(eg_wg *wg, void (*fn)(void *), void *arg);

/* Runs a function once. Fields are private. */
typedef struct eg_once {
    pthread_mutex_t mu;
    int done;
} eg_once;

#define EG_ONCE_INIT {PTHREAD_MUTEX_INITIALIZER, 0}

/* Runs fn(arg) if no call on this once has run a function yet. Concurrent
 * callers return only after that function returned. fn must not call
 * eg_once_do on the same once: that deadlocks, as in Go, and is not
 * detected. */
EG_EXPORT void eg_once_do(eg_once *once, void (*fn)(void *), void *arg);

#ifdef __cplusplus
}
#endif
#endif
