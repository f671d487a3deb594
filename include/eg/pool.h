/*
 * eg/pool.h - the process-wide elastic thread pool that runs tasks.
 *
 * Tasks (eg_go, eg_wg_go, eg_after_func callbacks) run on pool threads. A
 * task never waits for a free thread: when no thread is idle a new one
 * starts, up to max_threads; at that maximum tasks queue (FIFO across
 * groups) until a thread frees. Threads idle for idle_timeout_ns exit.
 *
 * Defaults: stack_size 256 KiB (virtual: a blocked thread keeps only the
 * pages it touched resident), idle_timeout 10 s, stall warning on, and
 * max_threads what the machine allows for blocked threads, read once when
 * the pool starts: the smallest of RLIMIT_NPROC, half of
 * /proc/sys/kernel/threads-max, a quarter of /proc/sys/vm/max_map_count (a
 * thread stack is two mappings) and a quarter of physical memory at 64 KiB
 * per thread; at least 64, at most 2^20; 4096 where none of these can be
 * read, and on 32-bit systems. (A machine with 24 GiB and vm.max_map_count
 * 65530 gets 16382.) The environment variables EG_MAX_THREADS,
 * EG_STACK_SIZE (bytes, or with a K or M suffix), EG_IDLE_TIMEOUT_MS and
 * EG_STALL_WARN (0 turns the warning off) override the defaults when the
 * pool first starts; a value that does not parse or is out of range is
 * rejected with one line on stderr and the default kept. eg_pool_configure
 * overrides both.
 *
 * Stall warning: at the maximum, tasks queue until a running one returns;
 * if the running ones wait for the queued ones, the program hangs. When
 * tasks have been queued for more than a second with every pool thread busy
 * at the maximum, the library writes one line to stderr naming the maximum
 * and how to raise it, once per stall (a stall ends when the queue's oldest
 * task waited less than a second). eg_pool_get_stats reports the longest
 * current queue wait either way.
 *
 * fork(): nothing of the parent runs in the child but the thread that
 * called fork(), as in Go. The child starts with no pool thread, no queued
 * task (tasks queued in the parent are dropped, neither run nor freed, so a
 * group with tasks queued or running at the fork must not be waited on in
 * the child), no armed timer and no eg_after_func callback of the parent
 * (it never runs in the child, whatever happens to its context), and every
 * internal lock reset. Contexts inherited from the parent may be used
 * (cancelled, waited on, derived from) when no other thread was using them
 * at the fork, but their deadlines do not fire in the child: derive a new
 * context with eg_with_deadline to get one. New groups, contexts and
 * deadlines work as in any process.
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
 * For adapters that must not block a carrier in foreign code (eg/curl.h,
 * where it cannot wait on its epoll set, polls libcurl in short slices
 * parked in eg_sleep on a coroutine).
 *
 * Returns: EG_EXEC_CORO on a coroutine of the coroutine executor;
 *   EG_EXEC_THREADS anywhere else (a pool thread, any thread of the program).
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: Nothing passes.
 * NULL: No pointer arguments.
 */
EG_EXPORT eg_executor eg_task_executor(void);

/* idle_timeout_ns value: idle threads never exit. */
#define EG_IDLE_FOREVER INT64_C(-1)

/* In eg_pool_configure every field set to 0 keeps its current value. */
typedef struct eg_pool_config {
    int max_threads;         /* 1 .. 2^20 */
    size_t stack_size;       /* >= 64 KiB */
    int64_t idle_timeout_ns; /* > 0 (1: exit as soon as idle), or EG_IDLE_FOREVER;
                                huge values saturate (never) */
    int stall_warning;       /* 1: on, -1: off (see the stall warning above) */
    /* The process default executor for groups created later (overrides
     * EG_EXECUTOR); EG_EXEC_DEFAULT (0) keeps the current one. */
    eg_executor executor;
} eg_pool_config;

/**
 * eg_pool_configure() - configure the thread pool
 *
 * Applies cfg: each non-zero field replaces the current value, each zero
 * field keeps it (max_threads 1 .. 2^20, stack_size >= 64 KiB,
 * idle_timeout_ns > 0 or EG_IDLE_FOREVER, stall_warning 1 or -1). Running
 * threads keep their stacks; the new values apply to threads started later
 * (a new idle timeout applies at once). It overrides the defaults and the
 * EG_MAX_THREADS, EG_STACK_SIZE, EG_IDLE_TIMEOUT_MS and EG_STALL_WARN
 * environment variables. executor (EG_EXEC_THREADS or EG_EXEC_CORO) sets
 * the process default for groups created later, overriding EG_EXECUTOR.
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
    int64_t
        longest_wait_ns; /* how long the oldest queued task has waited, to a few ms (0: none) */
} eg_pool_stats;

/**
 * eg_pool_get_stats() - a snapshot of the thread pool's counters
 *
 * For monitoring: threads alive, idle threads, queued tasks, threads
 * started since the process started, and how long the oldest queued task
 * has waited. The counters may change as soon as
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
