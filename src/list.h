/*
 * list.h - an intrusive doubly linked list, for the library's
 * waiter queues (channels, semaphores, groups, cond.c, contexts), a
 * context's children, the pool's task queues, ready list and sleepers,
 * and the coroutine parking lot's buckets.
 * A node embeds an eg__link; EG__CONTAINER_OF gets the node back. Nodes are
 * pushed at the tail; eg__list_pop takes the oldest (FIFO), eg__list_pop_last
 * the newest (LIFO). No allocation; the caller's lock guards the list.
 */
#ifndef EG_LIST_H
#define EG_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct eg__link eg__link;
struct eg__link {
    eg__link *next, *prev;
};

typedef struct eg__list {
    eg__link *head, *tail;
} eg__list;

#define EG__CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void eg__list_push(eg__list *l, eg__link *n)
{
    n->next = NULL;
    n->prev = l->tail;
    if (l->tail)
        l->tail->next = n;
    else
        l->head = n;
    l->tail = n;
}

static inline void eg__list_unlink(eg__list *l, eg__link *n)
{
    if (n->prev)
        n->prev->next = n->next;
    else
        l->head = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->tail = n->prev;
    n->next = n->prev = NULL;
}

static inline bool eg__list_empty(const eg__list *l)
{
    return !l->head;
}

/* Unlinks and returns the oldest node, or NULL. */
static inline eg__link *eg__list_pop(eg__list *l)
{
    eg__link *n = l->head;
    if (n)
        eg__list_unlink(l, n);
    return n;
}

/* Unlinks and returns the newest node, or NULL. */
static inline eg__link *eg__list_pop_last(eg__list *l)
{
    eg__link *n = l->tail;
    if (n)
        eg__list_unlink(l, n);
    return n;
}

#endif
