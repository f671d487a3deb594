/*
 * eg/sem.h - weighted semaphore (golang.org/x/sync/semaphore).
 *
 * Acquirers are served in FIFO order: a large request at the head of the
 * queue is not starved by smaller ones behind it. Thread-safe; eg_sem_free
 * must be the last call.
 */
#ifndef EG_SEM_H
#define EG_SEM_H

#include "eg/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eg_sem eg_sem;

/**
 * eg_sem_new() - a new weighted semaphore
 *
 * Returns: A semaphore of total weight n; NULL when memory ran out or
 * n <= 0.
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: The caller owns the semaphore and frees it with
 * eg_sem_free().
 * NULL: No pointer arguments.
 * See also: eg_sem_acquire, eg_sem_release
 */
EG_EXPORT eg_sem *eg_sem_new(int64_t n);
/**
 * eg_sem_acquire() - acquire weight, listening to a context
 *
 * Acquirers are served in FIFO order. As in x/sync since Go 1.22, a
 * context that is done when the waiter wakes wins even if the weight was
 * granted meanwhile (it is given back), and a context already done fails
 * the call even when it would not block.
 *
 * Returns: 0 with weight n acquired; the context's error (nothing
 * acquired); -EINVAL for NULL ctx or s, n < 0, or n larger than the
 * semaphore's total (it could never succeed).
 * Blocks: Until weight n is available and every earlier waiter is served,
 * or ctx is done.
 * Thread-safety: Any thread, concurrently with every call but
 * eg_sem_free().
 * Ownership: The caller holds the acquired weight until eg_sem_release().
 * NULL: ctx or s NULL returns -EINVAL.
 */
EG_EXPORT int eg_sem_acquire(eg_ctx *ctx, eg_sem *s, int64_t n);
/**
 * eg_sem_try_acquire() - acquire weight without blocking
 *
 * Returns: True with weight n acquired; false when waiters are queued
 * ahead, the weight is not available, n < 0 or s is NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently with every call but
 * eg_sem_free().
 * Ownership: On true, the caller holds the weight until eg_sem_release().
 * NULL: Returns false.
 */
EG_EXPORT bool eg_sem_try_acquire(eg_sem *s, int64_t n);
/**
 * eg_sem_release() - release weight
 *
 * Releases weight n and wakes the waiters it satisfies, in FIFO order
 * (n == 0 only wakes). Releasing more than is held is a bug: assert()
 * fails in debug builds; with NDEBUG the held weight is clamped to zero.
 *
 * Returns: Nothing.
 * Blocks: No.
 * Thread-safety: Any thread, also one that did not acquire the weight.
 * Ownership: The caller gives back weight it held.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_sem_release(eg_sem *s, int64_t n);
/**
 * eg_sem_free() - free a semaphore
 *
 * Returns: Nothing.
 * Blocks: No.
 * Thread-safety: The last call on the semaphore. Undefined behaviour that
 * is not detected: freeing a semaphore a call is still blocked on, or
 * using it after this call.
 * Ownership: Frees the semaphore.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_sem_free(eg_sem *s);

#ifdef __cplusplus
}
#endif
#endif
