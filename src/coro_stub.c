/*
 * coro_stub.c - the coroutine executor's side of the seam (exec.h) for
 * builds without it: no caller is ever a coroutine, and EG_EXEC_CORO is not
 * available (eg_group_set_executor returns -ENOTSUP).
 */
#include "exec.h"

const eg__exec eg__exec_coro = {.kind = EG_EXEC_CORO};

void *eg__coro_self(void)
{
    return NULL;
}

int eg__coro_futex_wait(atomic_uint *word, unsigned expected, int64_t deadline_ns)
{
    return -ENOTSUP;
}

int eg__coro_futex_wake(atomic_uint *word, int n)
{
    return 0;
}

int eg__coro_wait_fd(eg_ctx *ctx, int fd, short events, int64_t deadline_ns)
{
    return -ENOTSUP;
}

void eg__coro_blocking_begin(void) {}
void eg__coro_blocking_end(void) {}
void eg__coro_yield(void) {}
void eg__coro_batch_begin(void) {}
void eg__coro_batch_end(void) {}
void eg__coro_watch_begin(void) {}
void eg__coro_watch_end(void) {}
