/*
 * curl.c - libcurl transfers that listen to a context.
 *
 * eg_curl_perform is curl_easy_perform with one more thing to wait for:
 * it adds the easy handle to a multi handle and loops on
 * curl_multi_perform / curl_multi_poll, with the context's fd (eg_ctx_fd)
 * as an extra descriptor of the poll. When the context is done the poll
 * wakes, the handle is removed from the multi handle mid-transfer, and
 * libcurl closes that connection rather than returning it to its cache.
 *
 * The multi handle is cached per thread (a thread-local pointer plus a
 * pthread key whose destructor frees it when the thread exits): making one
 * costs allocations and a wake-up socketpair, and keeping it lets
 * sequential transfers on a thread reuse connections and DNS entries, as
 * curl_easy_perform does with the handle libcurl keeps inside each easy
 * handle. The cached handle is busy while a transfer runs on it; a nested
 * call (eg_curl_perform from inside a curl callback) uses a fresh multi
 * handle of its own.
 *
 * Only the public API of the library is used here: the adapter sits on
 * top of the core like any other program.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include "eg/curl.h"
#include "eg/pool.h"

/* How long one curl_multi_poll may sleep when only curl can wake it (the
 * context can never be done). libcurl shortens it to its own next timeout. */
#define IDLE_POLL_MS 1000
/* The fallback when the context has no fd (eg_ctx_fd failed, as with
 * EMFILE): poll curl for this long, then check eg_ctx_err. This bounds how
 * late a cancellation is noticed. */
#define FALLBACK_POLL_MS 1
/* On a coroutine: the longest curl_multi_poll between two yields. */
#define CORO_POLL_MS 1

/* ---- the per-thread multi handle ----------------------------------------
 *
 * Invariant: thread_multi is NULL or the value stored under multi_key for
 * this thread; the key's destructor frees it at thread exit. (The thread
 * that runs main does not run key destructors when the process exits; its
 * handle stays reachable through thread_multi until then.)
 */
static pthread_once_t multi_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t multi_key;
static bool multi_key_ok;

static _Thread_local CURLM *thread_multi;
static _Thread_local bool thread_multi_busy;

static void free_thread_multi(void *multi)
{
    thread_multi = NULL;
    curl_multi_cleanup(multi);
}

static void make_multi_key(void)
{
    multi_key_ok = pthread_key_create(&multi_key, free_thread_multi) == 0;
}

/* A multi handle with no easy handle in it, for one transfer on this
 * thread: the cached one if it is free (*cached set), else a new one. NULL
 * when out of memory. */
static CURLM *multi_get(bool *cached)
{
    *cached = false;
    if (thread_multi_busy)
        return curl_multi_init();
    if (!thread_multi) {
        if (pthread_once(&multi_key_once, make_multi_key) != 0 || !multi_key_ok)
            return curl_multi_init();
        CURLM *multi = curl_multi_init();
        if (!multi)
            return NULL;
        if (pthread_setspecific(multi_key, multi) != 0)
            return multi; /* not cached: multi_put frees it */
        thread_multi = multi;
    }
    thread_multi_busy = true;
    *cached = true;
    return thread_multi;
}

static void multi_put(CURLM *multi, bool cached)
{
    if (cached)
        thread_multi_busy = false;
    else
        curl_multi_cleanup(multi);
}

/* ---- the transfer -------------------------------------------------------- */

static CURLcode easy_code(CURLMcode mc)
{
    switch (mc) {
    case CURLM_OUT_OF_MEMORY:
        return CURLE_OUT_OF_MEMORY;
    case CURLM_BAD_EASY_HANDLE:
    case CURLM_ADDED_ALREADY:
    case CURLM_RECURSIVE_API_CALL:
        return CURLE_BAD_FUNCTION_ARGUMENT;
    default:
        return CURLE_FAILED_INIT;
    }
}

/* True and *rc set once libcurl reports easy's transfer finished. The
 * multi handle holds easy alone, so any DONE message is easy's. */
static bool transfer_done(CURLM *multi, CURL *easy, CURLcode *rc)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        if (msg->msg == CURLMSG_DONE && msg->easy_handle == easy) {
            *rc = msg->data.result;
            return true;
        }
    }
    return false;
}

/* Sleeps until curl has work or ctx may be done. done_fd is eg_ctx_fd(ctx):
 * the fd, -EINVAL when ctx can never be done, or another error (then poll
 * briefly and let the caller check eg_ctx_err). */
static CURLMcode wait_for_work(CURLM *multi, int done_fd)
{
    if (eg_task_executor() == EG_EXEC_CORO) {
        /* On a coroutine a long curl_multi_poll would hold the carrier and
         * every coroutine parked on it: poll in short slices and let the
         * carrier run its other tasks in between. */
        struct curl_waitfd extra = {
            .fd = done_fd, .events = CURL_WAIT_POLLIN, .revents = 0};
        CURLMcode mc = curl_multi_poll(multi, done_fd >= 0 ? &extra : NULL,
                                       done_fd >= 0 ? 1 : 0, CORO_POLL_MS, NULL);
        eg_yield();
        return mc;
    }
    if (done_fd >= 0) {
        struct curl_waitfd extra = {
            .fd = done_fd, .events = CURL_WAIT_POLLIN, .revents = 0};
        return curl_multi_poll(multi, &extra, 1, IDLE_POLL_MS, NULL);
    }
    if (done_fd == -EINVAL)
        return curl_multi_poll(multi, NULL, 0, IDLE_POLL_MS, NULL);
    return curl_multi_poll(multi, NULL, 0, FALLBACK_POLL_MS, NULL);
}

/* Runs easy (already added to multi) until it finishes or ctx is done. A
 * finished transfer wins over a context that became done meanwhile: its
 * real result is more useful to the caller than an abort. */
static CURLcode drive(eg_ctx *ctx, CURLM *multi, CURL *easy)
{
    int done_fd = eg_ctx_fd(ctx);
    for (;;) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(multi, &running);
        if (mc != CURLM_OK)
            return easy_code(mc);
        CURLcode rc;
        if (transfer_done(multi, easy, &rc))
            return rc;
        if (eg_ctx_done(ctx))
            return CURLE_ABORTED_BY_CALLBACK;
        if (running == 0)
            return CURLE_FAILED_INIT; /* not running, yet no result: never
                                         seen; do not spin on it */
        mc = wait_for_work(multi, done_fd);
        if (mc != CURLM_OK)
            return easy_code(mc);
    }
}

CURLcode eg_curl_perform(eg_ctx *ctx, CURL *easy)
{
    if (!ctx || !easy)
        return CURLE_BAD_FUNCTION_ARGUMENT;
    if (eg_ctx_done(ctx))
        return CURLE_ABORTED_BY_CALLBACK;

    bool cached;
    CURLM *multi = multi_get(&cached);
    if (!multi)
        return CURLE_OUT_OF_MEMORY;
    CURLMcode mc = curl_multi_add_handle(multi, easy);
    if (mc != CURLM_OK) {
        multi_put(multi, cached);
        return easy_code(mc);
    }

    CURLcode rc = drive(ctx, multi, easy);

    /* Detaching an unfinished transfer makes libcurl close its connection
     * (the peer sees EOF); a finished one leaves its connection in the
     * multi handle's cache for the thread's next transfer. Either way easy
     * is free to be reused or cleaned up. */
    curl_multi_remove_handle(multi, easy);
    multi_put(multi, cached);
    return rc;
}

int eg_curl_err(eg_ctx *ctx, CURLcode rc)
{
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_ABORTED_BY_CALLBACK: {
        /* The context's error when it ended the transfer; a callback of the
         * caller's own (progress, write) that aborted counts as cancelled. */
        int err = ctx ? eg_ctx_err(ctx) : 0;
        return err < 0 ? err : -ECANCELED;
    }
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_BAD_FUNCTION_ARGUMENT:
        return -EINVAL;
    default:
        return -EIO;
    }
}
