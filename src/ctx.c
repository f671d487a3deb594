/*
 * ctx.c - the context tree.
 *
 * Kinds: BACKGROUND (the static root), CANCEL (eg_with_cancel/_deadline/
 * _timeout and groups), VALUE (eg_with_value) and WITHOUT (eg_without_cancel).
 * Only CANCEL contexts have state. Every context points at its "canceller":
 * the nearest CANCEL context among itself and its ancestors, stopping at a
 * WITHOUT or the root (NULL then: it can never be done). The canceller's
 * state is the context's state, so a VALUE context costs no lock.
 *
 * A CANCEL context's state machine (err only ever goes from 0 to non-zero):
 *
 *   live (err == 0) --eg_cancel / parent cancelled / deadline--> done
 *
 * Going done happens once, under the context's lock: store cause, then err
 * (release; eg_ctx_err reads it lock-free with acquire), take the children
 * off the list (each with a reference of the cancelling walk), call every
 * waiter's wake(), wake eg_ctx_wait sleepers, signal the fd, disarm the
 * timer; then, still holding the lock, the walk does the same to each child
 * (depth first, without recursion: any depth in constant stack). As in Go, a context is seen done before its children
 * are: a child seen done with its parent's cause has a parent seen done, but
 * a thread that sees the parent done may still cancel a child first.
 *
 * Tree links: a CANCEL context is linked into the children list of its
 * parent's canceller (its "attach"), unless that was already done at
 * creation. The list is guarded by the attach's lock. A child holds a
 * reference to its parent, so the attach outlives it; the parent's list
 * holds no reference. The child's destructor unlinks itself under the
 * attach's lock, so a cancelling parent never reaches a freed child.
 *
 * Lock order: parent's lock -> child's lock (cancellation walks down, as
 * deep as the tree); context lock -> pool lock (eg_after_func posts) -> nothing;
 * context lock -> timer lock; context lock -> a user mutex only with
 * trylock (cond.c). Nothing takes a parent's lock while holding a child's.
 */
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

#include "exec.h"

enum { K_BACKGROUND, K_CANCEL, K_VALUE, K_WITHOUT };

#define NO_DEADLINE INT64_MAX

struct eg_ctx {
    atomic_long refs;
    int kind;
    eg_ctx *parent;    /* holds a reference; NULL for the root */
    eg_ctx *canceller; /* see above; NULL: never done */
    int64_t deadline;  /* effective deadline, NO_DEADLINE if none */
    const void *key;   /* VALUE */
    void *value;

    /* CANCEL only. */
    atomic_int err;
    int cause; /* written before err is released */
    pthread_mutex_t mu;
    atomic_int nwait;  /* eg_ctx_wait sleepers on err (eg__futex_wait) */
    eg_ctx *attach;    /* whose children list holds this one */
    bool linked;       /* in attach->children; guarded by attach->mu */
    eg__link sib;      /* in attach->children */
    eg__list children; /* of eg_ctx, through sib */
    eg__list waiters;  /* of eg__waiter, through link */
    int fd, wfd;       /* eg_ctx_fd: eventfd (wfd == fd) or pipe; -1 until asked */
    bool has_timer;
    int deadline_cause;
    eg__timer timer;
    /* do_cancel's walk, under this context's lock while it is on the path: */
    eg_ctx *walk;        /* children not visited yet (through cancel_next) */
    eg_ctx *walk_up;     /* the parent on the walk's path */
    eg_ctx *cancel_next; /* next in its parent's walk list / the visited list */
};

static eg_ctx background = {.kind = K_BACKGROUND, .deadline = NO_DEADLINE};

eg_ctx *eg_background(void)
{
    return &background;
}

/* ---- reference counting ------------------------------------------------ */

eg_ctx *eg_ctx_retain(eg_ctx *ctx)
{
    if (ctx && ctx->kind != K_BACKGROUND)
        /* Relaxed: the caller already holds a reference. */
        atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
    return ctx;
}

/* Frees c and returns its parent, whose reference the caller now drops. */
static eg_ctx *ctx_destroy(eg_ctx *c)
{
    if (c->kind == K_CANCEL) {
        eg_ctx *a = c->attach;
        if (a) {
            pthread_mutex_lock(&a->mu);
            if (c->linked) {
                eg__list_unlink(&a->children, &c->sib);
                c->linked = false;
            }
            pthread_mutex_unlock(&a->mu);
        }
        /* A deadline may be firing right now: it must finish with c first. */
        if (c->has_timer && !eg__timer_del(&c->timer))
            eg__timer_wait(&c->timer);
        if (c->fd >= 0)
            close(c->fd);
        if (c->wfd >= 0 && c->wfd != c->fd)
            close(c->wfd);
        pthread_mutex_destroy(&c->mu);
    }
    eg_ctx *parent = c->parent;
    free(c);
    eg__live(-1);
    return parent;
}

void eg_ctx_release(eg_ctx *ctx)
{
    /* A loop over the parent chain, not recursion: freeing the last
     * reference to a chain a million deep uses constant stack. */
    while (ctx && ctx->kind != K_BACKGROUND) {
        /* acq_rel: the last owner must see every other owner's writes
         * before it frees. */
        if (atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
            return;
        ctx = ctx_destroy(ctx);
    }
}

/* Takes a reference to c unless its count already reached zero (c is being
 * destroyed then, and has no descendants: each holds a reference to it). */
static bool ctx_try_retain(eg_ctx *c)
{
    long r = atomic_load_explicit(&c->refs, memory_order_relaxed);
    while (r > 0)
        /* Relaxed: as eg_ctx_retain; the caller holds c's attach lock, so
         * c is not freed meanwhile. */
        if (atomic_compare_exchange_weak_explicit(
                &c->refs, &r, r + 1, memory_order_relaxed, memory_order_relaxed))
            return true;
    return false;
}

/* ---- cancellation ------------------------------------------------------ */

static void signal_fd(eg_ctx *c)
{
    if (c->wfd < 0)
        return;
#ifdef __linux__
    if (c->wfd == c->fd) {
        uint64_t one = 1;
        ssize_t r = write(c->wfd, &one, sizeof one);
        (void)r; /* EAGAIN: already signalled */
        return;
    }
#endif
    char b = 1;
    ssize_t r = write(c->wfd, &b, 1);
    (void)r;
}

/* eg_ctx_wait sleeps on the err word itself (eg__futex_wait, for threads
 * and coroutines alike): one wake releases every sleeper, and none has to
 * take the context's lock again to leave. The word only ever goes from 0 to
 * an error, so a sleeper that sees 0 and sleeps on 0 cannot miss it. */
static atomic_uint *err_word(eg_ctx *c)
{
    return (atomic_uint *)(void *)&c->err;
}

static void wake_sleepers(eg_ctx *c)
{
    eg__futex_wake(err_word(c), INT_MAX);
}

/* Sleeps while err == 0, until deadline_ns (NO_DEADLINE: no limit). */
static int sleep_on_err(eg_ctx *c, int64_t deadline_ns)
{
    int err;
    /* Seq_cst increment, then seq_cst load of err: pairs with do_cancel's
     * store of err, seq_cst fence, load of nwait (Dekker): either we see
     * err, or the canceller sees us counted and wakes us. */
    atomic_fetch_add_explicit(&c->nwait, 1, memory_order_seq_cst);
    while (!(err = atomic_load_explicit(&c->err, memory_order_seq_cst))) {
        if (eg__futex_wait(err_word(c), 0, deadline_ns) == -ETIMEDOUT)
            break;
    }
    atomic_fetch_sub_explicit(&c->nwait, 1, memory_order_relaxed);
    return err;
}

/* Marks c done; c's lock is held and c is not done yet. c's children move
 * to c->walk, each with a reference of the walk's own. */
static void mark_done_locked(eg_ctx *c, int err, int cause)
{
    c->cause = cause;
    /* Release: a reader that sees err also sees cause. */
    atomic_store_explicit(&c->err, err, memory_order_release);

    /* Unlinked under c's lock: a child's destructor then finds it unlinked
     * and does not touch c's list; the walk's reference keeps it alive (a
     * child whose count already reached zero is being destroyed and has no
     * descendants: it is skipped). */
    /* Newest first, children and waiters alike. */
    eg_ctx **tail = &c->walk;
    eg__link *l;
    while ((l = eg__list_pop_last(&c->children))) {
        eg_ctx *ch = EG__CONTAINER_OF(l, eg_ctx, sib);
        ch->linked = false;
        if (ctx_try_retain(ch)) {
            *tail = ch;
            tail = &ch->cancel_next;
        }
    }
    *tail = NULL;

    while ((l = eg__list_pop_last(&c->waiters))) {
        eg__waiter *w = EG__CONTAINER_OF(l, eg__waiter, link);
        w->linked = 0;
        w->wake(w);
    }

    /* The fence orders the store of err before the load of nwait; it pairs
     * with sleep_on_err's increment then load of err (Dekker): either the
     * sleeper sees err, or we see it counted. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&c->nwait, memory_order_relaxed))
        wake_sleepers(c);
    signal_fd(c);
    if (c->has_timer)
        eg__timer_del(&c->timer);
}

/* Marks c done and cancels its subtree. The caller holds a reference to c,
 * or is c's timer. A depth-first walk without recursion: the path from c to
 * the context being cancelled is a list through walk_up, each context's
 * unvisited children a list through cancel_next (c->walk), so any depth
 * uses constant stack. As in the recursive form (and Go), each context's
 * lock is held until its whole subtree is done: a context is seen done
 * before its children, and a concurrent eg_cancel of a context in the
 * subtree waits for that lock, so it too returns only once every
 * descendant is done. The walk's references are dropped after the last
 * lock, since dropping one may free a context, which takes its parent's
 * lock. */
static void do_cancel(eg_ctx *c, int err, int cause)
{
    pthread_mutex_lock(&c->mu);
    if (atomic_load_explicit(&c->err, memory_order_relaxed)) {
        pthread_mutex_unlock(&c->mu);
        return;
    }
    mark_done_locked(c, err, cause);
    c->walk_up = NULL;
    eg_ctx *visited = NULL; /* holds the walk's references, via cancel_next */
    for (eg_ctx *cur = c; cur;) {
        eg_ctx *ch = cur->walk;
        if (!ch) {
            eg_ctx *up = cur->walk_up;
            pthread_mutex_unlock(&cur->mu);
            cur = up;
            continue;
        }
        cur->walk = ch->cancel_next;
        ch->cancel_next = visited;
        visited = ch;
        pthread_mutex_lock(&ch->mu); /* parent's lock -> child's lock */
        if (atomic_load_explicit(&ch->err, memory_order_relaxed)) {
            pthread_mutex_unlock(&ch->mu); /* done by a walk that has finished it */
            continue;
        }
        mark_done_locked(ch, err, cause);
        ch->walk_up = cur;
        cur = ch;
    }
    while (visited) {
        eg_ctx *next = visited->cancel_next;
        eg_ctx_release(visited);
        visited = next;
    }
}

void eg_cancel(eg_ctx *ctx, int cause)
{
    if (!ctx || ctx->kind != K_CANCEL)
        return;
    /* Coroutines released by the cancel: one wake per carrier. */
    eg__coro_batch_begin();
    do_cancel(ctx, -ECANCELED, cause ? cause : -ECANCELED);
    eg__coro_batch_end();
}

static void on_deadline(eg__timer *t)
{
    eg_ctx *c = EG__CONTAINER_OF(t, eg_ctx, timer);
    eg__coro_batch_begin();
    do_cancel(c, -ETIMEDOUT, c->deadline_cause);
    eg__coro_batch_end();
}

/* ---- construction ------------------------------------------------------ */

static eg_ctx *ctx_alloc(eg_ctx *parent, int kind)
{
    eg_ctx *c = eg__calloc(1, sizeof *c);
    if (!c)
        return NULL;
    atomic_init(&c->refs, 1);
    c->kind = kind;
    c->parent = eg_ctx_retain(parent);
    c->deadline = parent->deadline;
    eg__live(+1);
    return c;
}

/* Links c, not yet visible to anyone, into the children of its parent's
 * canceller under that one's lock, or makes c done with its error when it
 * is done already. c's own fields need no lock here. */
static void link_to_parent(eg_ctx *c, eg_ctx *parent)
{
    eg_ctx *a = parent->canceller;
    if (!a)
        return;
    pthread_mutex_lock(&a->mu);
    int perr = atomic_load_explicit(&a->err, memory_order_relaxed);
    if (perr) {
        c->cause = a->cause;
        atomic_store_explicit(&c->err, perr, memory_order_relaxed);
    } else {
        c->attach = a;
        c->linked = true;
        eg__list_push(&a->children, &c->sib);
    }
    pthread_mutex_unlock(&a->mu);
}

/* Cancels c now if its deadline has passed, else arms its timer. Returns 0,
 * or the error of eg__timer_add (c is not armed then). */
static int arm_deadline(eg_ctx *c)
{
    if (c->deadline <= eg_now()) {
        do_cancel(c, -ETIMEDOUT, c->deadline_cause);
        return 0;
    }
    /* c is linked: a cancelling parent may run do_cancel(c) now. Arm under
     * c's lock (context lock -> timer lock), so do_cancel either sees
     * has_timer and disarms, or ran before and we do not arm. */
    int rc = 0;
    pthread_mutex_lock(&c->mu);
    if (!atomic_load_explicit(&c->err, memory_order_relaxed)) {
        c->timer.when = c->deadline;
        c->has_timer = true;
        rc = eg__timer_add(&c->timer);
        if (rc < 0)
            c->has_timer = false;
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static eg_ctx *new_cancel(eg_ctx *parent, int64_t deadline, int cause)
{
    if (!parent)
        parent = &background;
    eg_ctx *c = ctx_alloc(parent, K_CANCEL);
    if (!c)
        return NULL;
    c->canceller = c;
    c->fd = c->wfd = -1;
    c->timer.index = SIZE_MAX;
    c->timer.fire = on_deadline;
    pthread_mutex_init(&c->mu, NULL);

    bool own_deadline = deadline < parent->deadline;
    if (own_deadline) {
        c->deadline = deadline;
        c->deadline_cause = cause ? cause : -ETIMEDOUT;
    }
    link_to_parent(c, parent);
    if (own_deadline && !atomic_load_explicit(&c->err, memory_order_relaxed) &&
        arm_deadline(c) < 0) {
        eg_ctx_release(c);
        return NULL;
    }
    return c;
}

eg_ctx *eg_with_cancel(eg_ctx *parent)
{
    return new_cancel(parent, NO_DEADLINE, 0);
}

eg_ctx *eg_with_deadline(eg_ctx *parent, int64_t deadline_ns)
{
    return new_cancel(parent, deadline_ns, 0);
}

eg_ctx *eg_with_deadline_cause(eg_ctx *parent, int64_t deadline_ns, int cause)
{
    return new_cancel(parent, deadline_ns, cause);
}

static int64_t add_timeout(int64_t timeout_ns)
{
    int64_t d = eg__deadline_after(timeout_ns);
    return d == NO_DEADLINE ? NO_DEADLINE - 1 : d;
}

eg_ctx *eg_with_timeout(eg_ctx *parent, int64_t timeout_ns)
{
    return new_cancel(parent, add_timeout(timeout_ns), 0);
}

eg_ctx *eg_with_timeout_cause(eg_ctx *parent, int64_t timeout_ns, int cause)
{
    return new_cancel(parent, add_timeout(timeout_ns), cause);
}

eg_ctx *eg_with_value(eg_ctx *parent, const void *key, void *value)
{
    if (!parent)
        parent = &background;
    eg_ctx *c = ctx_alloc(parent, K_VALUE);
    if (!c)
        return NULL;
    c->canceller = parent->canceller;
    c->key = key;
    c->value = value;
    return c;
}

eg_ctx *eg_without_cancel(eg_ctx *parent)
{
    if (!parent)
        parent = &background;
    eg_ctx *c = ctx_alloc(parent, K_WITHOUT);
    if (!c)
        return NULL;
    c->canceller = NULL;
    c->deadline = NO_DEADLINE;
    return c;
}

/* ---- queries ----------------------------------------------------------- */

int eg_ctx_err(eg_ctx *ctx)
{
    if (!ctx)
        return -EINVAL;
    eg_ctx *c = ctx->canceller;
    return c ? atomic_load_explicit(&c->err, memory_order_acquire) : 0;
}

bool eg_ctx_done(eg_ctx *ctx)
{
    return eg_ctx_err(ctx) != 0;
}

int eg_ctx_cause(eg_ctx *ctx)
{
    if (!ctx)
        return -EINVAL;
    eg_ctx *c = ctx->canceller;
    if (!c || !atomic_load_explicit(&c->err, memory_order_acquire))
        return 0;
    return c->cause;
}

bool eg_ctx_deadline(eg_ctx *ctx, int64_t *deadline_ns)
{
    if (!ctx || ctx->deadline == NO_DEADLINE)
        return false;
    if (deadline_ns)
        *deadline_ns = ctx->deadline;
    return true;
}

void *eg_ctx_value(eg_ctx *ctx, const void *key)
{
    for (; ctx; ctx = ctx->parent)
        if (ctx->kind == K_VALUE && ctx->key == key)
            return ctx->value;
    return NULL;
}

/* ---- waiting ------------------------------------------------------------- */

int eg_ctx_wait_until(eg_ctx *ctx, int64_t deadline_ns)
{
    if (!ctx)
        return -EINVAL;
    eg_ctx *c = ctx->canceller;
    if (!c) {
        /* Never done: only the waiter's own deadline ends the wait. The
         * word is the waiter's and nobody wakes it. */
        atomic_uint never = 0;
        while (eg__futex_wait(&never, 0, deadline_ns) != -ETIMEDOUT)
            ;
        return 0;
    }
    int err = atomic_load_explicit(&c->err, memory_order_acquire);
    if (err)
        return err;
    return sleep_on_err(c, deadline_ns);
}

int eg_ctx_wait(eg_ctx *ctx)
{
    return eg_ctx_wait_until(ctx, NO_DEADLINE);
}

int eg__ctx_watch(eg_ctx *ctx, eg__waiter *w)
{
    eg_ctx *c = ctx->canceller;
    if (!c)
        return 1;
    pthread_mutex_lock(&c->mu);
    int err = atomic_load_explicit(&c->err, memory_order_relaxed);
    if (!err) {
        eg__list_push(&c->waiters, &w->link);
        w->linked = 1;
    }
    pthread_mutex_unlock(&c->mu);
    return err;
}

bool eg__ctx_unwatch(eg_ctx *ctx, eg__waiter *w)
{
    eg_ctx *c = ctx->canceller;
    if (!c)
        return true;
    pthread_mutex_lock(&c->mu);
    bool was = w->linked;
    if (was) {
        eg__list_unlink(&c->waiters, &w->link);
        w->linked = 0;
    }
    pthread_mutex_unlock(&c->mu);
    return was;
}

/* ---- eg_ctx_fd ------------------------------------------------------------ */

static int make_notify_fd(int *wfd)
{
    if (eg__fault_fd())
        return -EMFILE;
#ifdef __linux__
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0)
        return -errno;
    *wfd = fd;
    return fd;
#else
    int p[2];
    if (pipe(p) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        fcntl(p[i], F_SETFD, FD_CLOEXEC);
        fcntl(p[i], F_SETFL, O_NONBLOCK);
    }
    *wfd = p[1];
    return p[0];
#endif
}

int eg_ctx_fd(eg_ctx *ctx)
{
    if (!ctx || !ctx->canceller)
        return -EINVAL;
    eg_ctx *c = ctx->canceller;
    pthread_mutex_lock(&c->mu);
    if (c->fd < 0) {
        int saved = errno;
        int wfd = -1;
        int fd = make_notify_fd(&wfd);
        errno = saved;
        if (fd < 0) {
            pthread_mutex_unlock(&c->mu);
            return fd;
        }
        c->fd = fd;
        c->wfd = wfd;
        if (atomic_load_explicit(&c->err, memory_order_relaxed))
            signal_fd(c);
    }
    int fd = c->fd;
    pthread_mutex_unlock(&c->mu);
    return fd;
}

/* ---- eg_after_func ------------------------------------------------------ */

enum { AFTER_ARMED, AFTER_RUN, AFTER_STOPPED };

/* Two owners: the eg_after_stop caller, and a posted run (refs 2 then). */
struct eg_after {
    eg__waiter waiter;
    eg__task task;
    eg_ctx *ctx;
    void (*fn)(void *);
    void *arg;
    atomic_int state;
    atomic_int refs;
    unsigned fork_gen; /* eg__fork_gen at creation: a parent's never runs in a child */
};

static void after_put(eg_after *a)
{
    if (atomic_fetch_sub_explicit(&a->refs, 1, memory_order_acq_rel) == 1) {
        eg_ctx_release(a->ctx);
        free(a);
        eg__live(-1);
    }
}

static void after_run(eg__task *t)
{
    eg_after *a = EG__CONTAINER_OF(t, eg_after, task);
    a->fn(a->arg);
    after_put(a);
}

/* Claims the run (ARMED -> RUN) and posts it; loses to eg_after_stop.
 * The run's reference is taken before the claim: once the claim is visible,
 * eg_after_stop may drop its own reference at once. */
static void after_fire(eg_after *a)
{
    atomic_fetch_add_explicit(&a->refs, 1, memory_order_relaxed);
    int s = AFTER_ARMED;
    if (a->fork_gen != atomic_load_explicit(&eg__fork_gen, memory_order_relaxed))
        after_put(a); /* armed in the parent of this process: never runs here */
    else if (atomic_compare_exchange_strong(&a->state, &s, AFTER_RUN))
        eg__pool_post(&a->task);
    else
        after_put(a); /* never the last: the stopper waits in unwatch */
}

static void after_wake(eg__waiter *w)
{
    after_fire(EG__CONTAINER_OF(w, eg_after, waiter));
}

eg_after *eg_after_func(eg_ctx *ctx, void (*fn)(void *), void *arg)
{
    if (!ctx || !fn)
        return NULL;
    eg_after *a = eg__calloc(1, sizeof *a);
    if (!a)
        return NULL;
    eg__live(+1);
    a->ctx = eg_ctx_retain(ctx);
    a->fn = fn;
    a->arg = arg;
    a->task.run = after_run;
    a->waiter.wake = after_wake;
    atomic_init(&a->state, AFTER_ARMED);
    atomic_init(&a->refs, 1);
    eg__fork_init();
    a->fork_gen = atomic_load_explicit(&eg__fork_gen, memory_order_relaxed);
    if (eg__ctx_watch(ctx, &a->waiter) < 0)
        after_fire(a); /* already done */
    return a;
}

bool eg_after_stop(eg_after *a)
{
    if (!a)
        return false;
    int s = AFTER_ARMED;
    bool stopped = atomic_compare_exchange_strong(&a->state, &s, AFTER_STOPPED);
    if (stopped)
        eg__ctx_unwatch(a->ctx, &a->waiter);
    after_put(a);
    return stopped;
}
