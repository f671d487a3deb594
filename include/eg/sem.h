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

/* A semaphore of total weight n (> 0), or NULL on ENOMEM or n <= 0. */
EG_EXPORT eg_sem *eg_sem_new(int64_t n);
/* Acquires weight n, blocking until it is available. Returns 0, the
 * context's error (nothing acquired), or -EINVAL (n < 0, or n larger than
 * the semaphore's total: it could never succeed). As in Go since 1.22's
 * x/sync, a context that is done when the waiter wakes wins even if the
 * weight was granted meanwhile (it is given back), and a context already
 * done fails the call even when it would not block. */
EG_EXPORT int eg_sem_acquire(eg_ctx *ctx, eg_sem *s, int64_t n);
/* Acquires n without blocking: true on success. False when waiters are
 * queued ahead or the weight is not available. */
EG_EXPORT bool eg_sem_try_acquire(eg_sem *s, int64_t n);
/* Releases weight n and wakes the waiters it satisfies (n == 0 only wakes).
 * Returns 0, or -EINVAL with nothing changed when s is NULL, n < 0 or n is
 * more than is held (misuse is an error, not a crash). Thread-safe. */
EG_EXPORT int eg_sem_release(eg_sem *s, int64_t n);
/* Frees the semaphore. No call may be blocked on it. NULL-safe.
 * Undefined behaviour that is not detected: freeing a semaphore a call is
 * still blocked on, or using it after this call. */
EG_EXPORT void eg_sem_free(eg_sem *s);

#ifdef __cplusplus
}
#endif
#endif
