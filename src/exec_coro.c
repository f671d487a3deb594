/*
 * exec_coro.c - the coroutine executor's side of the seam (exec.h): the
 * executor itself, the futex for coroutines (a parking lot), and waiting
 * for a descriptor with a context.
 *
 * Parking lot. A coroutine that waits on a word queues a node (on its own
 * stack) in the bucket its address hashes to, after checking the word
 * under the bucket's lock, then parks (coro.c). eg__coro_futex_wake takes
 * nodes of that word out of the bucket under the lock and ends their parks
 * with a CAS; the coroutines it must make runnable are readied after the
 * lock is released (a node may die as soon as its park ended, so the
 * waker keeps only the coroutine, which stays valid until it resumes).
 * Node states: queued (linked) -> taken by a waker (unlinked, park ended)
 * or -> timed out (the owner unlinks itself under the lock).
 *
 * Every eg__futex_wake of the library calls in here first, threads' too:
 * a bucket with no coroutine node is skipped with one load after a fence.
 *
 * Lock order: bucket locks are leaves (nothing is called while one is held
 * but the park-ending CAS).
 */
#include <poll.h>

#include "coro.h"
#include "list.h"

/* ---- the executor ------------------------------------------------------------ */

static int coro_exec_submit(eg__queue *q, eg__task *t)
{
    return eg__coro_submit_q(q, t);
}

const eg__exec eg__exec_coro = {
    .kind = EG_EXEC_CORO,
    .submit = coro_exec_submit,
    .help = eg__coro_help,
};

/* ---- the parking lot ------------------------------------------------------------ */

#define NBUCKETS 256

typedef struct lot_node lot_node;
struct lot_node {
    eg__link link; /* in its bucket's list, under the bucket lock */
    atomic_uint *word;
    eg__coro *co;
    atomic_uint st; /* the park (EG__CPARK_*) */
    bool linked;    /* under the bucket lock */
};

static struct bucket {
    pthread_mutex_t mu;
    atomic_int n; /* nodes queued: lets wakes skip an empty bucket unlocked */
    eg__list nodes;
    char pad[64];
} lot[NBUCKETS];

static pthread_once_t lot_once = PTHREAD_ONCE_INIT;

/* A forked child has none of the parent's coroutines: empty buckets, and
 * locks another thread may have held. */
static void lot_atfork_child(void)
{
    for (int i = 0; i < NBUCKETS; i++) {
        pthread_mutex_init(&lot[i].mu, NULL);
        lot[i].nodes = (eg__list){0};
        atomic_store(&lot[i].n, 0);
    }
}

static void lot_init(void)
{
    for (int i = 0; i < NBUCKETS; i++)
        pthread_mutex_init(&lot[i].mu, NULL);
    pthread_atfork(NULL, NULL, lot_atfork_child);
}

static struct bucket *bucket_of(const void *w)
{
    uintptr_t a = (uintptr_t)w;
    a ^= a >> 17;
    a *= 0x9E3779B97F4A7C15ull;
    return &lot[(a >> 32) % NBUCKETS];
}

static void unlink_locked(struct bucket *b, lot_node *n)
{
    eg__list_unlink(&b->nodes, &n->link);
    n->linked = false;
    atomic_fetch_sub_explicit(&b->n, 1, memory_order_relaxed);
}

int eg__coro_futex_wait(atomic_uint *word, unsigned expected, int64_t deadline_ns)
{
    eg__coro *co = eg__coro_current();
    if (!co)
        return -EINVAL;
    pthread_once(&lot_once, lot_init);
    struct bucket *b = bucket_of(word);
    lot_node n = {.word = word, .co = co, .st = EG__CPARK_WAITING};
    /* seq_cst: the count goes up before we read the word; pairs with the
     * waker's store of the word, fence, read of the count. */
    atomic_fetch_add(&b->n, 1);
    pthread_mutex_lock(&b->mu);
    if (atomic_load(word) != expected) {
        atomic_fetch_sub_explicit(&b->n, 1, memory_order_relaxed);
        pthread_mutex_unlock(&b->mu);
        return -EAGAIN;
    }
    eg__list_push(&b->nodes, &n.link);
    n.linked = true;
    pthread_mutex_unlock(&b->mu);

    int r = eg__coro_park(&n.st, deadline_ns);
    if (r != 0) {
        pthread_mutex_lock(&b->mu);
        if (n.linked)
            unlink_locked(b, &n);
        pthread_mutex_unlock(&b->mu);
    }
    return r;
}

int eg__coro_futex_wake(atomic_uint *word, int n)
{
    if (n <= 0)
        return 0;
    pthread_once(&lot_once, lot_init);
    struct bucket *b = bucket_of(word);
    /* The caller changed the word before calling: ordered before the
     * count read, against the waiter's count++ then word check. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&b->n, memory_order_relaxed) == 0)
        return 0;
    int woken = 0;
    eg__coro_batch_begin();
    pthread_mutex_lock(&b->mu);
    for (eg__link *l = b->nodes.head, *next; l && woken < n; l = next) {
        next = l->next;
        lot_node *x = EG__CONTAINER_OF(l, lot_node, link);
        if (x->word != word)
            continue;
        unlink_locked(b, x);
        /* Ends the park; a park already switched out is readied here,
         * which never blocks (a push and at most one eventfd write,
         * deferred to the batch's end). */
        if (eg__coro_unpark(&x->st, x->co))
            woken++;
    }
    pthread_mutex_unlock(&b->mu);
    eg__coro_batch_end();
    return woken;
}

/* ---- waiting for a descriptor --------------------------------------------------- */

typedef struct {
    eg__waiter w;
    atomic_uint *st;
    eg__coro *co;
} fd_watch;

static void fd_watch_wake(eg__waiter *w)
{
    fd_watch *f = EG__CONTAINER_OF(w, fd_watch, w);
    eg__coro_unpark(f->st, f->co);
}

int eg__coro_wait_fd(eg_ctx *ctx, int fd, short events, int64_t deadline_ns)
{
    eg__coro *co = eg__coro_current();
    if (!co)
        return -EINVAL;
    atomic_uint st = EG__CPARK_WAITING;
    fd_watch fw = {.w.wake = fd_watch_wake, .st = &st, .co = co};
    int watched = 1;
    if (ctx) {
        watched = eg__ctx_watch(ctx, &fw.w);
        if (watched < 0)
            return watched; /* already done */
    }
    int r = eg__coro_poll_fd(fd, events, deadline_ns, &st);
    if (watched == 0)
        eg__ctx_unwatch(ctx, &fw.w); /* false: wake() has completed */
    /* The context wins a tie, as on the thread path. */
    if (ctx) {
        int err = eg_ctx_err(ctx);
        if (err && (r >= 0 || r == -ECANCELED))
            return err;
    }
    if (r == -ECANCELED)
        return -ECANCELED; /* not reached: only the context unparks st */
    return r;
}
