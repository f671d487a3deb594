/*
 * eg/pool.h - the process-wide elastic thread pool that runs tasks.
 *
 * Tasks (eg_go, eg_wg_go, eg_after_func callbacks) run on pool threads. A
 * task never waits for a free thread: when no thread is idle a new one
 * starts, up to max_threads; at that maximum tasks queue (FIFO across
 * groups) until a thread frees. Threads idle for idle_timeout_ns exit.
 *
 * Defaults: max_threads 4096, stack_size 256 KiB, idle_timeout 10 s. The
 * environment variables EG_MAX_THREADS, EG_STACK_SIZE (bytes, or with a K or
 * M suffix) and EG_IDLE_TIMEOUT_MS override the defaults when the pool first
 * starts; eg_pool_configure overrides both.
 *
 * fork(): in the child the pool starts empty (threads do not survive fork);
 * tasks queued in the parent are not run in the child.
 */
#ifndef EG_POOL_H
#define EG_POOL_H

#include "eg/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What runs a group's tasks. EG_EXEC_THREADS: the thread pool below, a
 * task is a pool thread while it runs. EG_EXEC_CORO: small-stack
 * coroutines on a few carrier threads, where every blocking point of the
 * library parks the coroutine instead of its thread. EG_EXEC_DEFAULT: the
 * process default (EG_EXECUTOR=threads|coro, read once; threads if unset). */
typedef enum eg_executor {
    EG_EXEC_DEFAULT = 0,
    EG_EXEC_THREADS = 1,
    EG_EXEC_CORO = 2,
} eg_executor;

/**
 * eg_yield() - let other tasks run
 *
 * Go's runtime.Gosched. On a coroutine, a switch to the next runnable task
 * of its carrier; on a thread, sched_yield(2).
 *
 * Returns: Nothing.
 * Blocks: No (the caller runs again once the others had their turn).
 * Thread-safety: Any thread.
 * Ownership: Nothing passes.
 * NULL: No pointer arguments.
 */
EG_EXPORT void eg_yield(void);

/**
 * eg_task_executor() - what runs the calling task
 *
 * For adapters that must not block a carrier in foreign code (eg/curl.h
 * polls libcurl in short slices on a coroutine).
 *
 * Returns: EG_EXEC_CORO on a coroutine of the coroutine executor;
 *   EG_EXEC_THREADS anywhere else (a pool thread, any thread of the program).
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: Nothing passes.
 * NULL: No pointer arguments.
 */
EG_EXPORT eg_executor eg_task_executor(void);

typedef struct eg_pool_config {
    int max_threads;         /* >= 1 */
    size_t stack_size;       /* >= 64 KiB; 0 keeps the current value */
    int64_t idle_timeout_ns; /* >= 0; 0 means threads exit as soon as idle */
    /* The process default executor for groups created later (overrides
     * EG_EXECUTOR); EG_EXEC_DEFAULT keeps the current one. */
    eg_executor executor;
} eg_pool_config;

/**
 * eg_pool_configure() - configure the thread pool
 *
 * Applies cfg: max_threads >= 1 (0 keeps the current value), stack_size
 * >= 64 KiB (0 keeps the current value), idle_timeout_ns >= 0 (0: threads
 * exit as soon as they are idle), executor (EG_EXEC_DEFAULT keeps the
 * process default; EG_EXEC_THREADS or EG_EXEC_CORO sets it for groups
 * created later, overriding EG_EXECUTOR). Running threads keep their stacks; the
 * new values apply to threads started later. It overrides the defaults and
 * the EG_MAX_THREADS, EG_STACK_SIZE and EG_IDLE_TIMEOUT_MS environment
 * variables.
 *
 * Returns: 0; -EINVAL and nothing changed for a value out of range or NULL;
 *   -ENOTSUP (executor EG_EXEC_CORO, and this build has none).
 * Blocks: No (takes the pool's lock briefly).
 * Thread-safety: Any thread, concurrently with running tasks.
 * Ownership: cfg is read during the call only.
 * NULL: Returns -EINVAL.
 * See also: eg_pool_get_config, eg_pool_get_stats
 */
EG_EXPORT int eg_pool_configure(const eg_pool_config *cfg);
/**
 * eg_pool_get_config() - the thread pool's configuration
 *
 * Fills *cfg with the configuration in force: the defaults, the
 * environment and eg_pool_configure() applied.
 *
 * Returns: Nothing.
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: *cfg is the caller's memory.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_pool_get_config(eg_pool_config *cfg);

typedef struct eg_pool_stats {
    int threads;      /* pool threads alive */
    int idle;         /* of which not running a task */
    int queued;       /* tasks waiting for a thread */
    uint64_t started; /* threads started since process start */
} eg_pool_stats;

/**
 * eg_pool_get_stats() - a snapshot of the thread pool's counters
 *
 * For monitoring: threads alive, idle threads, queued tasks, threads
 * started since the process started. The counters may change as soon as
 * the call returns.
 *
 * Returns: Nothing.
 * Blocks: No (takes the pool's lock briefly).
 * Thread-safety: Any thread.
 * Ownership: *stats is the caller's memory.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_pool_get_stats(eg_pool_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
