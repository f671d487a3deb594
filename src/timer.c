/*
 * timer.c - deadlines: one thread and a min-heap of armed timers.
 *
 * The thread starts on the first eg__timer_add and then sleeps on a
 * CLOCK_MONOTONIC condition variable until the earliest deadline. A timer
 * is armed (index < SIZE_MAX, in the heap), firing (T.firing == t, its
 * callback running on the timer thread with T.mu released), or idle.
 *
 * Lock order: callers may hold a context lock when they add or delete a
 * timer (ctx.c: context lock -> T.mu); fire callbacks run without T.mu, so
 * they may take context locks.
 */
#include <string.h>

#include "internal.h"

#define NOT_ARMED SIZE_MAX

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cond;      /* the thread sleeps here */
    pthread_cond_t idle_cond; /* eg__timer_wait sleeps here */
    eg__timer **heap;
    size_t len, cap;
    eg__timer *firing;
    bool started;
} T = {.mu = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t timer_once = PTHREAD_ONCE_INIT;

static void init_conds(void)
{
    pthread_condattr_t attr;
    eg__condattr_monotonic(&attr);
    pthread_cond_init(&T.cond, &attr);
    pthread_cond_init(&T.idle_cond, &attr);
    pthread_condattr_destroy(&attr);
}

void eg__timer_atfork_prepare(void)
{
    pthread_mutex_lock(&T.mu);
}

void eg__timer_atfork_parent(void)
{
    pthread_mutex_unlock(&T.mu);
}

/* The thread is gone in the child, and the parent's timers do not fire
 * there: the heap is emptied (each timer reads as not armed, so deleting it
 * later is a no-op) and the next eg__timer_add starts a new thread. */
void eg__timer_atfork_child(void)
{
    for (size_t i = 0; i < T.len; i++)
        T.heap[i]->index = NOT_ARMED;
    T.len = 0;
    T.mu = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER;
    init_conds();
    T.firing = NULL;
    T.started = false;
}

static void timer_init_once(void)
{
    init_conds();
    eg__fork_init();
}

static void heap_swap(size_t a, size_t b)
{
    eg__timer *t = T.heap[a];
    T.heap[a] = T.heap[b];
    T.heap[b] = t;
    T.heap[a]->index = a;
    T.heap[b]->index = b;
}

static void heap_up(size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (T.heap[p]->when <= T.heap[i]->when)
            break;
        heap_swap(i, p);
        i = p;
    }
}

static void heap_down(size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < T.len && T.heap[l]->when < T.heap[m]->when)
            m = l;
        if (r < T.len && T.heap[r]->when < T.heap[m]->when)
            m = r;
        if (m == i)
            return;
        heap_swap(i, m);
        i = m;
    }
}

static void heap_remove(eg__timer *t)
{
    size_t i = t->index;
    T.len--;
    if (i != T.len) {
        T.heap[i] = T.heap[T.len];
        T.heap[i]->index = i;
        heap_down(i);
        heap_up(i);
    }
    t->index = NOT_ARMED;
}

/* True on the timer thread: a fire callback may free other contexts whose
 * destructor waits for their timer (eg__timer_wait). */
static _Thread_local bool on_timer_thread;

static void *timer_main(void *arg)
{
    (void)arg;
    on_timer_thread = true;
    pthread_mutex_lock(&T.mu);
    for (;;) {
        if (T.len == 0) {
            pthread_cond_wait(&T.cond, &T.mu);
            continue;
        }
        eg__timer *t = T.heap[0];
        int64_t now = eg_now();
        if (t->when > now) {
            struct timespec ts;
            eg__ts_from_ns(&ts, t->when);
            pthread_cond_timedwait(&T.cond, &T.mu, &ts);
            continue;
        }
        heap_remove(t);
        T.firing = t;
        pthread_mutex_unlock(&T.mu);
        t->fire(t);
        pthread_mutex_lock(&T.mu);
        T.firing = NULL;
        pthread_cond_broadcast(&T.idle_cond);
    }
    return NULL;
}

/* Called with T.mu held. */
static int start_thread_locked(void)
{
    pthread_attr_t attr;
    pthread_t tid;
    int rc = pthread_attr_init(&attr);
    if (rc)
        return -rc;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    rc = eg__pthread_create(&tid, &attr, timer_main, NULL);
    pthread_attr_destroy(&attr);
    if (rc)
        return -rc;
    T.started = true;
    return 0;
}

int eg__timer_add(eg__timer *t)
{
    pthread_once(&timer_once, timer_init_once);
    pthread_mutex_lock(&T.mu);
    if (!T.started) {
        int rc = start_thread_locked();
        if (rc) {
            pthread_mutex_unlock(&T.mu);
            t->index = NOT_ARMED;
            return rc;
        }
    }
    if (T.len == T.cap) {
        size_t cap = T.cap ? 2 * T.cap : 64;
        eg__timer **h = eg__malloc(cap * sizeof *h);
        if (!h) {
            pthread_mutex_unlock(&T.mu);
            t->index = NOT_ARMED;
            return -ENOMEM;
        }
        if (T.len)
            memcpy(h, T.heap, T.len * sizeof *h);
        free(T.heap);
        T.heap = h;
        T.cap = cap;
    }
    t->index = T.len;
    T.heap[T.len++] = t;
    heap_up(t->index);
    /* Only an earlier first deadline changes how long the thread sleeps. */
    if (T.heap[0] == t)
        pthread_cond_signal(&T.cond);
    pthread_mutex_unlock(&T.mu);
    return 0;
}

bool eg__timer_del(eg__timer *t)
{
    pthread_mutex_lock(&T.mu);
    bool armed = t->index != NOT_ARMED;
    if (armed)
        heap_remove(t);
    pthread_mutex_unlock(&T.mu);
    return armed;
}

void eg__timer_wait(eg__timer *t)
{
    /* From a fire callback, t is the timer firing on this very thread (no
     * other one fires meanwhile): its callback frees it and does not touch
     * it after that, so there is nothing to wait for. */
    if (on_timer_thread)
        return;
    pthread_mutex_lock(&T.mu);
    while (T.firing == t)
        pthread_cond_wait(&T.idle_cond, &T.mu);
    pthread_mutex_unlock(&T.mu);
}
