/*
 * eg/sync.h - WaitGroup and Once (Go's sync.WaitGroup and sync.Once).
 *
 * Both are plain values: declare them static with the initializer, or call
 * the init function, and never copy one that is in use.
 *
 * Thread-safety: every function may be called from any thread at the same
 * time on the same object (init and destroy excepted: once each, with no
 * other call running). Neither listens to a context: eg_wg_wait() ignores
 * every context (a task blocked in it is not woken by its group's
 * cancellation; cancel the work the WaitGroup counts instead), and so does
 * eg_once_do().
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

/* clang-format off */
#define EG_WG_INIT {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0}
/* clang-format on */

/**
 * eg_wg_init() - initialize a WaitGroup
 *
 * Sets wg's counter to zero. A static WaitGroup may use EG_WG_INIT instead.
 *
 * Returns: 0; -ENOMEM or -EAGAIN when the pthread objects could not be
 * initialized; -EINVAL for NULL.
 * Blocks: No.
 * Thread-safety: Before any other use of wg, by one thread.
 * Ownership: wg is the caller's memory; release with eg_wg_destroy().
 * NULL: Returns -EINVAL.
 * See also: eg_wg_destroy
 */
EG_EXPORT int eg_wg_init(eg_wg *wg);
/**
 * eg_wg_destroy() - release what eg_wg_init() set up
 *
 * Returns: Nothing.
 * Blocks: No.
 * Thread-safety: The last call on wg. Undefined behaviour that is not
 * detected: destroying or copying a WaitGroup that has waiters or a
 * non-zero count.
 * Ownership: wg's memory stays the caller's.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_wg_destroy(eg_wg *wg);
/**
 * eg_wg_add() - add to a WaitGroup's counter
 *
 * Adds delta (which may be negative) to the counter (Go's wg.Add); when it
 * reaches zero every eg_wg_wait() returns.
 *
 * Returns: 0; -EINVAL and no change if the counter would go below zero
 * (where Go panics) or wg is NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: Nothing passes.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_wg_add(eg_wg *wg, int delta);
/**
 * eg_wg_done() - count one unit of a WaitGroup's work done
 *
 * eg_wg_add(wg, -1) (Go's wg.Done).
 *
 * Returns: As eg_wg_add(): 0, or -EINVAL when the counter is already zero
 * or wg is NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: Nothing passes.
 * NULL: Returns -EINVAL.
 */
EG_EXPORT int eg_wg_done(eg_wg *wg);
/**
 * eg_wg_wait() - wait until a WaitGroup's counter is zero
 *
 * Go's wg.Wait. It does not listen to a context: to give up early, use a
 * group (eg_wait()) or a channel.
 *
 * Returns: Nothing.
 * Blocks: Until the counter is zero (at once if it is).
 * Thread-safety: Any thread, any number of waiters.
 * Ownership: Nothing passes.
 * NULL: Returns at once.
 */
EG_EXPORT void eg_wg_wait(eg_wg *wg);
/**
 * eg_wg_go() - run a function on the pool, counted by a WaitGroup
 *
 * Go 1.25's wg.Go: adds one to the counter, runs fn(arg) on the pool, then
 * counts it done.
 *
 * Returns: 0 once fn is started; on failure the counter is unchanged and fn
 * does not run:
 * - -EINVAL: wg or fn is NULL;
 * - -ENOMEM: out of memory;
 * - -EAGAIN: no thread could be started to run it.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently.
 * Ownership: arg passes to fn when 0 is returned; otherwise it still
 * belongs to the caller.
 * NULL: wg or fn NULL returns -EINVAL; arg may be NULL.
 */
EG_EXPORT int eg_wg_go(eg_wg *wg, void (*fn)(void *), void *arg);

/* Runs a function once. Fields are private. */
typedef struct eg_once {
    pthread_mutex_t mu;
    int done;
} eg_once;

/* clang-format off */
#define EG_ONCE_INIT {PTHREAD_MUTEX_INITIALIZER, 0}
/* clang-format on */

/**
 * eg_once_do() - run a function once
 *
 * Go's once.Do: runs fn(arg) if no call on this once has run a function
 * yet.
 *
 * Returns: Nothing.
 * Blocks: While another caller runs the function: concurrent callers
 * return only after it returned, and see its effects.
 * Thread-safety: Any thread, concurrently. fn must not call eg_once_do()
 * on the same once: that deadlocks, as in Go, and is not detected.
 * Ownership: arg is passed to fn and stays the caller's.
 * NULL: once or fn NULL does nothing.
 */
EG_EXPORT void eg_once_do(eg_once *once, void (*fn)(void *), void *arg);

#ifdef __cplusplus
}
#endif
#endif
