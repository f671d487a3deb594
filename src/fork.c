/*
 * fork.c - what survives fork(): one pthread_atfork registration for the
 * whole library, so the order of the locks taken around fork() is the lock
 * order (pool lock -> timer lock) whatever module started first.
 *
 * Prepare takes the pool and timer locks, so the child inherits consistent
 * queues and a consistent heap; the parent releases them; the child resets
 * every internal lock and drops the parent's queued tasks and armed timers
 * (nothing but the forking thread runs in the child, as in Go). Contexts
 * stay usable; their deadlines do not fire in the child (eg/pool.h).
 */
#include "internal.h"

/* Relaxed: read and written by the one thread that exists in the child
 * while fork handlers run; other readers only compare stamps taken later. */
atomic_uint eg__fork_gen;

static void prepare(void)
{
    eg__pool_atfork_prepare();
    eg__timer_atfork_prepare();
}

static void parent(void)
{
    eg__timer_atfork_parent();
    eg__pool_atfork_parent();
}

static void child(void)
{
    atomic_fetch_add_explicit(&eg__fork_gen, 1, memory_order_relaxed);
    eg__timer_atfork_child();
    eg__pool_atfork_child();
    eg__io_atfork_child();
    eg__cond_atfork_child();
}

static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void fork_init_once(void)
{
    pthread_atfork(prepare, parent, child);
}

void eg__fork_init(void)
{
    pthread_once(&fork_once, fork_init_once);
}
