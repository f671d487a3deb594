/*
 * chan.c - channels of fixed-size elements (Go's chan).
 *
 * A channel is a ring buffer of cap elements plus two FIFO queues of blocked
 * callers: senders waiting for room (or, at cap 0, for a receiver) and
 * receivers waiting for an element. Every field below is guarded by ch->mu.
 *
 *   buf[(head + i) % cap], i < len   buffered elements, oldest first
 *   sendq   blocked senders; each node points at the sender's element
 *   recvq   blocked receivers; each node points at the receiver's buffer
 *   closed  set once by eg_chan_close, never cleared
 *
 * Invariants, whenever mu is free:
 *   recvq non-empty => len == 0 and sendq is empty
 *   sendq non-empty => len == cap and recvq is empty
 *   closed          => sendq and recvq are empty
 * so an arriving caller that finds a queue of its own kind non-empty could
 * not have completed either, and queues behind it: FIFO both ways.
 *
 * A blocked caller's node lives in its own stack frame and moves once, under
 * mu, out of WAITING:
 *
 *   WAITING --peer transferred the element--> DONE    (call returns 0)
 *   WAITING --eg_chan_close-----------------> CLOSED  (call returns -EPIPE)
 *   WAITING --caller's context ended--------> unlinked by its own thread
 *                                             (call returns the ctx error)
 *
 * Whoever moves a node out of WAITING also unlinks it and performs the copy,
 * so the outcome is exact: a send whose context ends before a receiver took
 * the element returns the context's error and delivered nothing; one whose
 * element was taken returns 0 even if its context ended meanwhile. A peer
 * unparks the node's parker while holding mu, so the node cannot be
 * destroyed before the unpark has returned; a cancel unparks it without any
 * lock (eg__wait_parked).
 *
 * Lock order: ch->mu is the channel's only lock and is taken before any
 * context lock (eg__wait_parked registers with the context while mu is held).
 * No user code runs under it.
 */
#include <string.h>

#include "exec.h"
#include "list.h"

enum { CHAN_WAITING, CHAN_DONE, CHAN_CLOSED };

typedef struct chan_waiter chan_waiter;
struct chan_waiter {
    eg__link link; /* in sendq or recvq */
    eg__parker parker;
    const void *src; /* a sender's element */
    void *dst;       /* a receiver's destination, NULL to drop the element */
    int state;
};

typedef eg__list chan_queue;

struct eg_chan {
    pthread_mutex_t mu;
    size_t cap, elem_size;
    size_t head, len;
    chan_queue sendq, recvq;
    bool closed;
    unsigned char buf[]; /* cap * elem_size bytes */
};

static void queue_push(chan_queue *q, chan_waiter *w)
{
    eg__list_push(q, &w->link);
}

static void queue_unlink(chan_queue *q, chan_waiter *w)
{
    eg__list_unlink(q, &w->link);
}

/* Unlinks and returns the oldest waiter of q, or NULL. Called with mu held. */
static chan_waiter *queue_pop(chan_queue *q)
{
    eg__link *l = eg__list_pop(q);
    return l ? EG__CONTAINER_OF(l, chan_waiter, link) : NULL;
}

/* Settles an unlinked waiter. Called with mu held, so the waiter cannot see
 * its new state (and free its node) before the unpark returned. */
static void waiter_finish(chan_waiter *w, int state)
{
    w->state = state;
    eg__unpark(&w->parker);
}

static unsigned char *slot(eg_chan *ch, size_t i)
{
    return ch->buf + ((ch->head + i) % ch->cap) * ch->elem_size;
}

eg_chan *eg_chan_new(size_t cap, size_t elem_size)
{
    if (elem_size == 0 || (cap && elem_size > (SIZE_MAX - sizeof(eg_chan)) / cap))
        return NULL;
    eg_chan *ch = eg__malloc(sizeof *ch + cap * elem_size);
    if (!ch)
        return NULL;
    memset(ch, 0, sizeof *ch);
    if (pthread_mutex_init(&ch->mu, NULL) != 0) {
        free(ch);
        return NULL;
    }
    ch->cap = cap;
    ch->elem_size = elem_size;
    eg__live(+1);
    return ch;
}

/* One send attempt that never blocks. Called with mu held. */
static int send_locked(eg_chan *ch, const void *elem)
{
    if (ch->closed)
        return -EPIPE;
    chan_waiter *r = queue_pop(&ch->recvq);
    if (r) {
        if (r->dst)
            memcpy(r->dst, elem, ch->elem_size);
        waiter_finish(r, CHAN_DONE);
        return 0;
    }
    if (ch->len < ch->cap) {
        memcpy(slot(ch, ch->len), elem, ch->elem_size);
        ch->len++;
        return 0;
    }
    return -EAGAIN;
}

/* One receive attempt that never blocks. Called with mu held. */
static int recv_locked(eg_chan *ch, void *elem)
{
    if (ch->len > 0) {
        if (elem)
            memcpy(elem, slot(ch, 0), ch->elem_size);
        ch->head = (ch->head + 1) % ch->cap;
        ch->len--;
        /* The freed slot goes to the oldest blocked sender, keeping the
         * buffer full while senders wait (the invariant above). */
        chan_waiter *s = queue_pop(&ch->sendq);
        if (s) {
            memcpy(slot(ch, ch->len), s->src, ch->elem_size);
            ch->len++;
            waiter_finish(s, CHAN_DONE);
        }
        return 0;
    }
    chan_waiter *s = queue_pop(&ch->sendq);
    if (s) {
        if (elem)
            memcpy(elem, s->src, ch->elem_size);
        waiter_finish(s, CHAN_DONE);
        return 0;
    }
    return ch->closed ? -EPIPE : -EAGAIN;
}

/* Queues w on q and waits until a peer or eg_chan_close settles it, or ctx
 * ends first. Called and returns with mu held. */
static int wait_settled(eg_ctx *ctx, eg_chan *ch, chan_queue *q, chan_waiter *w)
{
    w->state = CHAN_WAITING;
    queue_push(q, w);
    int rc = 0;
    while (w->state == CHAN_WAITING) {
        int err = eg__wait_parked(ctx, &ch->mu, &w->parker);
        if (err && w->state == CHAN_WAITING) {
            queue_unlink(q, w);
            rc = err;
            break;
        }
    }
    if (w->state == CHAN_CLOSED)
        rc = -EPIPE;
    return rc;
}

int eg_chan_send(eg_ctx *ctx, eg_chan *ch, const void *elem)
{
    if (!ctx || !ch || !elem)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;
    pthread_mutex_lock(&ch->mu);
    int rc = send_locked(ch, elem);
    if (rc == -EAGAIN) {
        chan_waiter w = {.src = elem};
        rc = wait_settled(ctx, ch, &ch->sendq, &w);
    }
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

int eg_chan_recv(eg_ctx *ctx, eg_chan *ch, void *elem)
{
    if (!ctx || !ch)
        return -EINVAL;
    int err = eg_ctx_err(ctx);
    if (err)
        return err;
    pthread_mutex_lock(&ch->mu);
    int rc = recv_locked(ch, elem);
    if (rc == -EAGAIN) {
        chan_waiter w = {.dst = elem};
        rc = wait_settled(ctx, ch, &ch->recvq, &w);
    }
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

int eg_chan_try_send(eg_chan *ch, const void *elem)
{
    if (!ch || !elem)
        return -EINVAL;
    pthread_mutex_lock(&ch->mu);
    int rc = send_locked(ch, elem);
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

int eg_chan_try_recv(eg_chan *ch, void *elem)
{
    if (!ch)
        return -EINVAL;
    pthread_mutex_lock(&ch->mu);
    int rc = recv_locked(ch, elem);
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

void eg_chan_close(eg_chan *ch)
{
    if (!ch)
        return;
    pthread_mutex_lock(&ch->mu);
    if (!ch->closed) {
        ch->closed = true;
        /* Blocked receivers imply an empty buffer, so they get -EPIPE now;
         * blocked senders never get their element in. */
        chan_waiter *w;
        while ((w = queue_pop(&ch->recvq)))
            waiter_finish(w, CHAN_CLOSED);
        while ((w = queue_pop(&ch->sendq)))
            waiter_finish(w, CHAN_CLOSED);
    }
    pthread_mutex_unlock(&ch->mu);
}

size_t eg_chan_len(eg_chan *ch)
{
    if (!ch)
        return 0;
    pthread_mutex_lock(&ch->mu);
    size_t len = ch->len;
    pthread_mutex_unlock(&ch->mu);
    return len;
}

void eg_chan_free(eg_chan *ch)
{
    if (!ch)
        return;
    pthread_mutex_destroy(&ch->mu);
    free(ch);
    eg__live(-1);
}
