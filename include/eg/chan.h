/*
 * eg/chan.h - channels of fixed-size elements for pipelines (Go's chan).
 *
 * A channel of capacity cap buffers up to cap elements; capacity 0 is an
 * unbuffered rendezvous: a send returns once a receiver took the element.
 * Elements are copied in and out (elem_size bytes). Senders and receivers
 * are served in FIFO order. All calls are thread-safe; eg_chan_free must
 * be the last call on a channel.
 */
#ifndef EG_CHAN_H
#define EG_CHAN_H

#include "eg/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eg_chan eg_chan;

/**
 * eg_chan_new() - a new channel
 *
 * A channel of elements of elem_size bytes that buffers up to cap of them;
 * cap 0 makes an unbuffered rendezvous.
 *
 * Returns: The channel; NULL when memory ran out, elem_size is 0 or
 * cap * elem_size overflows.
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: The caller owns the channel and frees it with eg_chan_free().
 * NULL: No pointer arguments.
 * See also: eg_chan_send, eg_chan_recv, eg_chan_close
 */
EG_EXPORT eg_chan *eg_chan_new(size_t cap, size_t elem_size);
/**
 * eg_chan_send() - send an element, listening to a context
 *
 * Copies elem_size bytes from elem into the channel (Go's ch <- v).
 * Senders are served in FIFO order.
 *
 * Returns: 0 once the element is in the channel (for cap 0: taken by a
 * receiver);
 * - -EPIPE: the channel is closed, also when it closes while the send
 *   waits;
 * - the context's error: ctx is done, and the element was not sent;
 * - -EINVAL: a NULL argument.
 * Blocks: While the channel is full (for cap 0: until a receiver takes the
 * element), until ctx is done.
 * Thread-safety: Any thread, concurrently with every call but
 * eg_chan_free().
 * Ownership: The element is copied: elem stays the caller's.
 * NULL: ctx, ch or elem NULL returns -EINVAL.
 */
EG_EXPORT int eg_chan_send(eg_ctx *ctx, eg_chan *ch, const void *elem);
/**
 * eg_chan_recv() - receive an element, listening to a context
 *
 * Copies the oldest element into elem (Go's v, ok := <-ch). Receivers are
 * served in FIFO order.
 *
 * Returns: 0 with the element received; -EPIPE once the channel is closed
 * and drained; the context's error (nothing received); -EINVAL for NULL
 * ctx or ch.
 * Blocks: While the channel is empty, until ctx is done.
 * Thread-safety: Any thread, concurrently with every call but
 * eg_chan_free().
 * Ownership: elem is the caller's buffer of elem_size bytes.
 * NULL: elem NULL receives and drops the element; ctx or ch NULL returns
 * -EINVAL.
 */
EG_EXPORT int eg_chan_recv(eg_ctx *ctx, eg_chan *ch, void *elem);
/**
 * eg_chan_try_send(), eg_chan_try_recv() - send or receive without blocking
 *
 * The non-blocking twins of eg_chan_send() and eg_chan_recv() (Go's select
 * with a default case).
 *
 * Returns: 0 when the element was sent or received; -EAGAIN where the
 * blocking call would block; -EPIPE where it would return -EPIPE (closed;
 * for receive: closed and drained); -EINVAL for NULL arguments.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently with every call but
 * eg_chan_free().
 * Ownership: As the blocking calls: elements are copied.
 * NULL: ch NULL returns -EINVAL, as does elem NULL for a send; a receive
 * with elem NULL drops the element.
 */
EG_EXPORT int eg_chan_try_send(eg_chan *ch, const void *elem);
EG_EXPORT int eg_chan_try_recv(eg_chan *ch, void *elem);
/**
 * eg_chan_close() - close a channel
 *
 * Go's close(ch): pending and later sends get -EPIPE; receivers drain what
 * is buffered, then get -EPIPE. Closing twice is harmless (where Go
 * panics).
 *
 * Returns: Nothing.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently with sends and receives.
 * Ownership: The channel stays the caller's: free it with eg_chan_free().
 * NULL: Does nothing.
 */
EG_EXPORT void eg_chan_close(eg_chan *ch);
/**
 * eg_chan_len() - the number of elements buffered in a channel
 *
 * Returns: The elements buffered now (Go's len(ch)); 0 for NULL.
 * Blocks: No.
 * Thread-safety: Any thread; a snapshot that may change at once.
 * Ownership: Nothing passes.
 * NULL: Returns 0.
 */
EG_EXPORT size_t eg_chan_len(eg_chan *ch);
/**
 * eg_chan_free() - free a channel
 *
 * Buffered elements are dropped.
 *
 * Returns: Nothing.
 * Blocks: No.
 * Thread-safety: The last call on the channel. Undefined behaviour that is
 * not detected: freeing a channel a call is still blocked on, or using it
 * after this call.
 * Ownership: Frees the channel.
 * NULL: Does nothing.
 */
EG_EXPORT void eg_chan_free(eg_chan *ch);

#ifdef __cplusplus
}
#endif
#endif
