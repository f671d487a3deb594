/*
 * stack.c - coroutine stacks: reserved in slabs with mmap, committed by the
 * kernel page by page as they are touched, reused through a free list.
 *
 * Layout. A stack is EG_CORO_STACK bytes of address space (default 64 KiB,
 * rounded up to pages). Only the pages a coroutine touches cost memory: a
 * task blocked a few calls deep holds one or two pages. Slabs are mapped
 * MAP_NORESERVE (no commit charge for the untouched part) and
 * MADV_NOHUGEPAGE (a huge page would commit 2 MiB for one touched byte).
 *
 * Guard pages and vm.max_map_count. A PROT_NONE page below a stack splits
 * the mapping, so each guarded stack costs two kernel mappings, and the
 * default limit of 65,530 mappings would cap a process near 32,000
 * coroutines. So there are two kinds of slab:
 *
 *   guarded:   64 stacks, each with its own guard page below it. An overflow
 *              faults (SIGSEGV) at once and corrupts nothing. 128 mappings.
 *   unguarded: 256 stacks back to back with one guard page below the slab.
 *              An overflow of the lowest stack faults; an overflow of any
 *              other runs into the top of its neighbour. 2 mappings.
 *
 * Guarded slabs are made while they use at most a quarter of
 * vm.max_map_count (16,320 stacks at the default limit), unguarded ones
 * after that; EG_CORO_GUARD=all makes every slab guarded (the process then
 * needs a higher vm.max_map_count for more coroutines) and EG_CORO_GUARD=N
 * sets the number of guarded stacks. Stacks are handed out lowest slab
 * first, and freed stacks are reused before fresh ones, so a process with
 * fewer live coroutines than the guarded count runs every coroutine on a
 * guarded stack.
 *
 * Free stacks: a LIFO (most recently used first, its pages are warm), plus
 * a bump pointer into the newest slab for stacks never touched. The LIFO is
 * a list of bundles: a bundle lives in the top bytes of a free stack (a page
 * every used stack has touched) and lists up to BUNDLE more free stacks, so
 * taking a batch reads one or two cache lines instead of chasing a link
 * through every stack. The coroutine scheduler keeps a
 * small per-carrier cache in front of this (coro.c) and refills or spills
 * it several stacks at a time (eg__stack_get_n/put_n), so the lock here is
 * taken once per batch, not once per coroutine.
 *
 * Slabs are mapped with S.mu released (under S.grow_mu, which only the
 * thread filling the empty bump range holds), so a slab's mmap and its 64
 * mprotects do not stall the threads that take and free stacks meanwhile.
 *
 * Lock order: S.grow_mu -> S.mu; S.mu is a leaf otherwise.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coro.h"

#define DEFAULT_STACK (64 * 1024)
#define MIN_STACK (16 * 1024)
#define MAX_STACK (256L * 1024 * 1024)
#define GUARDED_PER_SLAB 64
#define UNGUARDED_PER_SLAB 256
#define BUNDLE 30

/* At the top of a free stack: it and lo[0..n) are free. */
typedef struct bundle {
    struct bundle *next;
    size_t n;
    void *lo[BUNDLE];
} bundle;

static struct {
    pthread_mutex_t mu;
    pthread_mutex_t grow_mu; /* making a slab; guarded_left */
    size_t page, size;       /* page size; usable bytes per stack */
    long guarded_left;       /* guarded stacks that may still be made */
    char *bump, *bump_end;   /* fresh stacks of the newest slab */
    size_t bump_step;        /* distance between fresh stacks' lows */
    bundle *free;            /* LIFO of free stacks */
    size_t nfree, total, guarded_total;
    bool ready;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .grow_mu = PTHREAD_MUTEX_INITIALIZER};

static long read_max_map_count(void)
{
    long v = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    if (f) {
        if (fscanf(f, "%ld", &v) != 1 || v <= 0)
            v = 65530;
        fclose(f);
    }
    return v;
}

static void stack_setup_locked(void)
{
    if (S.ready)
        return;
    long pg = sysconf(_SC_PAGESIZE);
    S.page = pg > 0 ? (size_t)pg : 4096;
    long sz = eg__env_size("EG_CORO_STACK", DEFAULT_STACK);
    if (sz < MIN_STACK)
        sz = MIN_STACK;
    if (sz > MAX_STACK)
        sz = MAX_STACK;
    S.size = ((size_t)sz + S.page - 1) & ~(S.page - 1);
    const char *g = getenv("EG_CORO_GUARD");
    if (g && !strcmp(g, "all")) {
        S.guarded_left = LONG_MAX;
    } else {
        long n = -1;
        if (g && *g) {
            char *end;
            n = strtol(g, &end, 10);
            if (*end || n < 0)
                n = -1;
        }
        /* Two mappings per guarded stack, a quarter of the limit. */
        S.guarded_left = n >= 0 ? n : read_max_map_count() / 4 / 2;
    }
    S.ready = true;
}

size_t eg__stack_size(void)
{
    pthread_mutex_lock(&S.mu);
    stack_setup_locked();
    size_t s = S.size;
    pthread_mutex_unlock(&S.mu);
    return s;
}

typedef struct {
    char *lo;    /* the first stack's lowest usable address */
    size_t n;    /* stacks */
    size_t step; /* distance between stacks' lows */
    bool guarded;
} slab;

/* Maps a new slab: one mmap, and a guard page per stack (guarded) or below
 * the slab. Under S.grow_mu only: the system calls run while other threads
 * take and free stacks under S.mu. */
static int new_slab(slab *sl)
{
    bool guarded = S.guarded_left >= GUARDED_PER_SLAB;
    size_t n = guarded ? GUARDED_PER_SLAB : UNGUARDED_PER_SLAB;
    size_t step = guarded ? S.size + S.page : S.size;
    size_t len = n * step + (guarded ? 0 : S.page);
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
#ifdef MADV_NOHUGEPAGE
    (void)madvise(m, len, MADV_NOHUGEPAGE);
#endif
    if (guarded) {
        for (size_t i = 0; i < n; i++) {
            if (mprotect(m + i * step, S.page, PROT_NONE) != 0) {
                /* Out of mappings: give the slab back, make unguarded
                 * ones from now on. */
                munmap(m, len);
                S.guarded_left = 0;
                return new_slab(sl);
            }
        }
        S.guarded_left -= (long)n;
    } else if (mprotect(m, S.page, PROT_NONE) != 0) {
        munmap(m, len);
        return -ENOMEM;
    }
    *sl = (slab){.lo = m + S.page, .n = n, .step = step, .guarded = guarded};
    return 0;
}

/* Points the bump range at a new slab when it is empty. Called and returns
 * under S.mu, which it drops while the slab is mapped. Returns 0 when the
 * bump range has stacks. */
static int grow_locked(void)
{
    pthread_mutex_unlock(&S.mu);
    pthread_mutex_lock(&S.grow_mu);
    pthread_mutex_lock(&S.mu);
    int r = 0;
    if (S.bump == S.bump_end) {
        /* Only the holder of S.grow_mu fills the bump range: it stays
         * empty while the slab is mapped. */
        pthread_mutex_unlock(&S.mu);
        slab sl;
        r = new_slab(&sl);
        pthread_mutex_lock(&S.mu);
        if (r == 0) {
            S.bump = sl.lo;
            S.bump_step = sl.step;
            S.bump_end = sl.lo + sl.n * sl.step;
            S.total += sl.n;
            if (sl.guarded)
                S.guarded_total += sl.n;
        }
    }
    pthread_mutex_unlock(&S.grow_mu);
    return r;
}

/* Pops one free stack, or a fresh one. Under S.mu. */
static void *get_locked(void)
{
    bundle *b = S.free;
    if (b) {
        S.nfree--;
        if (b->n)
            return b->lo[--b->n];
        S.free = b->next;
        return (char *)(b + 1) - S.size;
    }
    if (S.bump != S.bump_end || grow_locked() == 0) {
        char *lo = S.bump;
        S.bump += S.bump_step;
        return lo;
    }
    return NULL;
}

static void put_locked(void *lo)
{
    bundle *b = S.free;
    S.nfree++;
    if (b && b->n < BUNDLE) {
        b->lo[b->n++] = lo;
        return;
    }
    b = (bundle *)((char *)lo + S.size) - 1;
    b->next = S.free;
    b->n = 0;
    S.free = b;
}

void *eg__stack_get(void)
{
    void *lo;
    return eg__stack_get_n(&lo, 1) ? lo : NULL;
}

int eg__stack_get_n(void **out, int n)
{
    pthread_mutex_lock(&S.mu);
    stack_setup_locked();
    int got = 0;
    while (got < n && (out[got] = get_locked()))
        got++;
    pthread_mutex_unlock(&S.mu);
    return got;
}

void eg__stack_put(void *lo)
{
    if (lo)
        eg__stack_put_n(&lo, 1);
}

void eg__stack_put_n(void *const *lo, int n)
{
    pthread_mutex_lock(&S.mu);
    /* In reverse: the first of lo is the next one handed out. */
    for (int i = n; i-- > 0;)
        put_locked(lo[i]);
    pthread_mutex_unlock(&S.mu);
}

void eg__stack_stats(size_t *total, size_t *guarded, size_t *nfree)
{
    pthread_mutex_lock(&S.mu);
    if (total)
        *total = S.total;
    if (guarded)
        *guarded = S.guarded_total;
    if (nfree)
        *nfree = S.nfree;
    pthread_mutex_unlock(&S.mu);
}

void eg__stack_atfork_child(void)
{
    /* The child has one thread: the free list is as the fork left it, but
     * the lock may have been held by a thread that does not exist here. */
    pthread_mutex_init(&S.mu, NULL);
    pthread_mutex_init(&S.grow_mu, NULL);
}
