/*
 * curl.c - libcurl transfers that listen to a context.
 *
 * eg_curl_perform is curl_easy_perform with one more thing to wait for:
 * it adds the easy handle to a multi handle of its own and drives it until
 * the transfer finishes or the context is done. When the context is done
 * the handle is removed from the multi handle mid-transfer, and libcurl
 * closes that connection rather than returning it to its cache.
 *
 * Two ways to drive a multi handle:
 *
 *   sockets  (Linux) libcurl's multi-socket interface. Each multi handle
 *            has an epoll fd, into which CURLMOPT_SOCKETFUNCTION adds,
 *            modifies and removes libcurl's sockets, and a timerfd in that
 *            epoll set, which CURLMOPT_TIMERFUNCTION arms with libcurl's
 *            next timeout (a timeout of 0 sets run_timeout instead: act
 *            at once). The caller waits with eg_poll(ctx, epfd, POLLIN): a
 *            thread sleeps in poll(2) on the epoll fd and the context's fd,
 *            a coroutine is parked on its carrier's poller and costs
 *            nothing until a socket or the timer is ready. Then a
 *            zero-timeout epoll_wait says which, and curl_multi_socket_action
 *            runs each.
 *   polling  curl_multi_perform / curl_multi_poll with the context's fd
 *            (eg_ctx_fd) as an extra descriptor; a coroutine instead runs
 *            curl_multi_perform every CORO_POLL_MS, parked in eg_sleep in
 *            between, so it never holds its carrier in a poll(2). Used
 *            where epoll is missing, when the epoll fd or the timerfd
 *            cannot be made (EMFILE, ENOMEM), and for the rest of a
 *            transfer whose eg_poll or epoll_ctl failed for another reason
 *            than the context (a context without an fd on a thread:
 *            EMFILE).
 *
 * The multi handles are cached per thread, up to MULTI_CACHE of them, on a
 * free list (a thread-local head plus a pthread key whose destructor frees
 * the list when the thread exits): making one costs allocations and
 * descriptors, and keeping it lets sequential transfers on a thread reuse
 * connections and DNS entries, as curl_easy_perform does with the handle
 * libcurl keeps inside each easy handle. A transfer takes a handle off the
 * list (or makes one) and puts it back when it ends, so a handle is never
 * shared: a nested call (eg_curl_perform from inside a curl callback) and
 * the other coroutines of a carrier thread, which run while a transfer of
 * theirs is parked, take other handles. Several handles rather than one
 * let a carrier's concurrent tasks each keep their connections between
 * sequential transfers; the bound keeps a thread's idle connections and
 * descriptors few. A handle is owned by its transfer alone, so it may go
 * back to another thread's list than the one it came from.
 *
 * A multi handle's epoll set mirrors what libcurl asked for through the
 * socket callback for as long as the handle lives (also between
 * transfers, while it sits on the free list), so a cached handle's next
 * transfer finds it true. A handle whose mirror may be wrong (an epoll_ctl
 * failed: "broken") is freed instead of cached.
 *
 * Only the public API of the library is used here: the adapter sits on
 * top of the core like any other program.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef __linux__
#include <sys/epoll.h>
#include <sys/timerfd.h>
#define HAVE_EPOLL 1
#endif

#include "eg/curl.h"
#include "eg/io.h"
#include "eg/pool.h"

/* How long one curl_multi_poll may sleep when only curl can wake it (the
 * context can never be done). libcurl shortens it to its own next timeout. */
#define IDLE_POLL_MS 1000
/* The fallback when the context has no fd (eg_ctx_fd failed, as with
 * EMFILE): poll curl for this long, then check eg_ctx_err. This bounds how
 * late a cancellation is noticed. */
#define FALLBACK_POLL_MS 1
/* On a coroutine, polling: the pause between two curl_multi_perform. */
#define CORO_POLL_MS 1
/* Idle multi handles kept per thread. */
#define MULTI_CACHE 4
/* Events taken from the epoll fd per wake-up; more stay ready for the next. */
#define EVENTS_PER_WAKE 32

/* A multi handle and, with sockets, its poller. epfd < 0: polling. */
struct multi {
    CURLM *curlm;
    int epfd;           /* epoll set of libcurl's sockets and tfd */
    int tfd;            /* timerfd: libcurl's next timeout */
    bool run_timeout;   /* libcurl asked for a timeout of 0 */
    bool broken;        /* an epoll_ctl failed: epfd may miss a socket */
    struct multi *next; /* on the free list */
};

/* ---- the poller ------------------------------------------------------------ */

#ifdef HAVE_EPOLL
/* CURLMOPT_SOCKETFUNCTION: mirror libcurl's wishes into the epoll set. */
static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    (void)easy;
    (void)socketp;
    struct multi *m = userp;
    if (what == CURL_POLL_REMOVE) {
        /* ENOENT/EBADF: libcurl closed it already, which removed it. */
        epoll_ctl(m->epfd, EPOLL_CTL_DEL, s, NULL);
        return 0;
    }
    struct epoll_event ev = {.events = 0, .data.fd = s};
    if (what & CURL_POLL_IN)
        ev.events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        ev.events |= EPOLLOUT;
    /* libcurl says IN/OUT for a new socket and for a changed one alike; a
     * closed socket left the set by itself, and its number may come back. */
    int rc = epoll_ctl(m->epfd, EPOLL_CTL_MOD, s, &ev);
    if (rc != 0 && errno == ENOENT)
        rc = epoll_ctl(m->epfd, EPOLL_CTL_ADD, s, &ev);
    if (rc != 0)
        m->broken = true;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 disarms, 0 means now, else arm tfd. */
static int on_timer(CURLM *curlm, long timeout_ms, void *userp)
{
    (void)curlm;
    struct multi *m = userp;
    struct itimerspec its = {{0, 0}, {0, 0}};
    m->run_timeout = timeout_ms == 0;
    if (timeout_ms > 0) {
        its.it_value.tv_sec = timeout_ms / 1000;
        its.it_value.tv_nsec = (timeout_ms % 1000) * 1000000L;
    }
    if (timerfd_settime(m->tfd, 0, &its, NULL) != 0)
        m->broken = true; /* EINVAL/ENOMEM: never seen */
    return 0;
}

/* Gives m a poller; leaves it polling (epfd -1) when a descriptor or the
 * options cannot be had. */
static void poller_open(struct multi *m)
{
    m->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (m->epfd < 0)
        return;
    m->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = m->tfd};
    if (m->tfd < 0 || epoll_ctl(m->epfd, EPOLL_CTL_ADD, m->tfd, &ev) != 0 ||
        curl_multi_setopt(m->curlm, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(m->curlm, CURLMOPT_SOCKETDATA, m) != CURLM_OK ||
        curl_multi_setopt(m->curlm, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(m->curlm, CURLMOPT_TIMERDATA, m) != CURLM_OK) {
        curl_multi_setopt(m->curlm, CURLMOPT_SOCKETFUNCTION, NULL);
        curl_multi_setopt(m->curlm, CURLMOPT_TIMERFUNCTION, NULL);
        if (m->tfd >= 0)
            close(m->tfd);
        close(m->epfd);
        m->epfd = m->tfd = -1;
    }
}

static void poller_close(struct multi *m)
{
    if (m->epfd >= 0) {
        close(m->tfd);
        close(m->epfd);
    }
}
#else
static void poller_open(struct multi *m)
{
    (void)m;
}
static void poller_close(struct multi *m)
{
    (void)m;
}
#endif

/* ---- the per-thread free list ------------------------------------------------
 *
 * Invariant: thread_free is the head of this thread's idle multi handles
 * (thread_nfree of them, at most MULTI_CACHE); once it was ever non-empty,
 * multi_key holds a non-NULL value for this thread, so the key's destructor
 * frees the list at thread exit. (The thread that runs main does not run
 * key destructors when the process exits; its handles stay reachable
 * through thread_free until then.)
 */
static pthread_once_t multi_key_once = PTHREAD_ONCE_INIT;
static pthread_key_t multi_key;
static bool multi_key_ok;

static _Thread_local struct multi *thread_free;
static _Thread_local int thread_nfree;
static _Thread_local bool thread_key_set;

static void multi_free(struct multi *m)
{
    curl_multi_cleanup(m->curlm); /* may still call on_socket: epfd is open */
    poller_close(m);
    free(m);
}

static void free_thread_list(void *unused)
{
    (void)unused;
    struct multi *m;
    while ((m = thread_free) != NULL) {
        thread_free = m->next;
        multi_free(m);
    }
    thread_nfree = 0;
    thread_key_set = false;
}

static void make_multi_key(void)
{
    multi_key_ok = pthread_key_create(&multi_key, free_thread_list) == 0;
}

/* A multi handle with no easy handle in it, for one transfer on this
 * thread: an idle one of the thread's, else a new one. NULL when out of
 * memory. */
static struct multi *multi_get(void)
{
    struct multi *m = thread_free;
    if (m) {
        thread_free = m->next;
        thread_nfree--;
        return m;
    }
    m = malloc(sizeof *m);
    if (!m)
        return NULL;
    *m = (struct multi){.curlm = curl_multi_init(), .epfd = -1, .tfd = -1};
    if (!m->curlm) {
        free(m);
        return NULL;
    }
    poller_open(m);
    return m;
}

/* Back on the thread's list, or freed when the list is full, the handle is
 * broken, or the list cannot be freed at thread exit. */
static void multi_put(struct multi *m)
{
    if (!m->broken && thread_nfree < MULTI_CACHE && !thread_key_set) {
        thread_key_set = pthread_once(&multi_key_once, make_multi_key) == 0 &&
                         multi_key_ok &&
                         pthread_setspecific(multi_key, &thread_free) == 0;
    }
    if (m->broken || thread_nfree >= MULTI_CACHE || !thread_key_set) {
        multi_free(m);
        return;
    }
    m->next = thread_free;
    thread_free = m;
    thread_nfree++;
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

/* Polling: sleeps until curl has work or ctx may be done. done_fd is
 * eg_ctx_fd(ctx): the fd, -EINVAL when ctx can never be done, or another
 * error (then poll briefly and let the caller check eg_ctx_err). */
static CURLMcode wait_for_work(eg_ctx *ctx, CURLM *multi, int done_fd)
{
    if (eg_task_executor() == EG_EXEC_CORO) {
        /* On a coroutine a curl_multi_poll that sleeps would hold the
         * carrier and every coroutine parked on it: sleep parked instead,
         * and let the next curl_multi_perform find what arrived. */
        eg_sleep(ctx, CORO_POLL_MS * EG_NSEC_PER_MSEC);
        return CURLM_OK;
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

/* Polling: runs easy (already added to multi) until it finishes or ctx is
 * done. A finished transfer wins over a context that became done
 * meanwhile: its real result is more useful to the caller than an abort. */
static CURLcode drive_polling(eg_ctx *ctx, CURLM *multi, CURL *easy)
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
        mc = wait_for_work(ctx, multi, done_fd);
        if (mc != CURLM_OK)
            return easy_code(mc);
    }
}

#ifdef HAVE_EPOLL
/* Runs what the epoll set says is ready: each ready socket, and the timeout
 * when tfd expired. Never blocks. */
static CURLMcode run_ready(struct multi *m, int *running)
{
    struct epoll_event ev[EVENTS_PER_WAKE];
    int n;
    do
        n = epoll_wait(m->epfd, ev, EVENTS_PER_WAKE, 0);
    while (n < 0 && errno == EINTR);
    for (int i = 0; i < n; i++) {
        CURLMcode mc;
        if (ev[i].data.fd == m->tfd) {
            uint64_t ticks;
            ssize_t r = read(m->tfd, &ticks, sizeof ticks); /* rearms POLLIN */
            (void)r;
            m->run_timeout = false;
            mc = curl_multi_socket_action(m->curlm, CURL_SOCKET_TIMEOUT, 0, running);
        } else {
            /* A socket removed by an earlier action in this loop is
             * ignored by libcurl. */
            int mask = 0;
            if (ev[i].events & EPOLLIN)
                mask |= CURL_CSELECT_IN;
            if (ev[i].events & EPOLLOUT)
                mask |= CURL_CSELECT_OUT;
            if (ev[i].events & (EPOLLERR | EPOLLHUP))
                mask |= CURL_CSELECT_ERR;
            mc = curl_multi_socket_action(m->curlm, ev[i].data.fd, mask, running);
        }
        if (mc != CURLM_OK)
            return mc;
    }
    while (m->run_timeout) {
        m->run_timeout = false;
        CURLMcode mc =
            curl_multi_socket_action(m->curlm, CURL_SOCKET_TIMEOUT, 0, running);
        if (mc != CURLM_OK)
            return mc;
    }
    return CURLM_OK;
}

/* Sockets: runs easy (already added to m) until it finishes or ctx is
 * done; as drive_polling otherwise. *fell_back set: the poller cannot be
 * trusted or waited on any more (the return value is then meaningless):
 * the caller polls for the rest of the transfer. */
static CURLcode drive_sockets(eg_ctx *ctx, struct multi *m, CURL *easy, bool *fell_back)
{
    int running = 1;
    /* Adding easy asked for a timeout of 0: start it. */
    m->run_timeout = false;
    CURLMcode mc = curl_multi_socket_action(m->curlm, CURL_SOCKET_TIMEOUT, 0, &running);
    for (;;) {
        if (mc == CURLM_OK && m->run_timeout)
            mc = run_ready(m, &running);
        if (mc != CURLM_OK)
            return easy_code(mc);
        CURLcode rc;
        if (transfer_done(m->curlm, easy, &rc))
            return rc;
        if (eg_ctx_done(ctx))
            return CURLE_ABORTED_BY_CALLBACK;
        if (running == 0)
            return CURLE_FAILED_INIT; /* as in drive_polling */
        if (m->broken) {
            *fell_back = true;
            return CURLE_OK;
        }
        int r = eg_poll(ctx, m->epfd, POLLIN);
        if (r < 0 && !eg_ctx_done(ctx)) {
            /* Not the context: the carrier's poller is full (ENOMEM,
             * ENOSPC), or, on a thread, the context has no fd (EMFILE). */
            *fell_back = true;
            return CURLE_OK;
        }
        /* Also when ctx is done: what finished meanwhile still wins. */
        mc = run_ready(m, &running);
    }
}
#endif

CURLcode eg_curl_perform(eg_ctx *ctx, CURL *easy)
{
    if (!ctx || !easy)
        return CURLE_BAD_FUNCTION_ARGUMENT;
    if (eg_ctx_done(ctx))
        return CURLE_ABORTED_BY_CALLBACK;

    struct multi *m = multi_get();
    if (!m)
        return CURLE_OUT_OF_MEMORY;
    CURLMcode mc = curl_multi_add_handle(m->curlm, easy);
    if (mc != CURLM_OK) {
        multi_put(m);
        return easy_code(mc);
    }

    bool polling = m->epfd < 0;
    CURLcode rc = CURLE_OK;
#ifdef HAVE_EPOLL
    if (!polling)
        rc = drive_sockets(ctx, m, easy, &polling);
#endif
    /* curl_multi_perform keeps calling on_socket and on_timer, so the
     * poller stays true unless it is broken already. */
    if (polling)
        rc = drive_polling(ctx, m->curlm, easy);

    /* Detaching an unfinished transfer makes libcurl close its connection
     * (the peer sees EOF); a finished one leaves its connection in the
     * multi handle's cache for the thread's next transfer. Either way easy
     * is free to be reused or cleaned up. */
    curl_multi_remove_handle(m->curlm, easy);
    multi_put(m);
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
