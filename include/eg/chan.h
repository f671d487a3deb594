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

/* A new channel, or NULL on ENOMEM or elem_size 0. */
EG_EXPORT eg_chan *eg_chan_new(size_t cap, size_t elem_size);
/* Copies *elem into the channel, blocking while it is full (for cap 0:
 * until a receiver takes it). Returns 0, -EPIPE if the channel is closed
 * (also when it closes while the send waits), the context's error (the
 * element was not sent), or -EINVAL. */
EG_EXPORT int eg_chan_send(eg_ctx *ctx, eg_chan *ch, const void *elem);
/* Receives into *elem (may be NULL to drop it), blocking while the channel
 * is empty. Returns 0, -EPIPE once the channel is closed and drained, the
 * context's error, or -EINVAL. */
EG_EXPORT int eg_chan_recv(eg_ctx *ctx, eg_chan *ch, void *elem);
/* Non-blocking twins: -EAGAIN where the blocking call would block, -EPIPE
 * where it would return -EPIPE (closed; for receive: closed and drained). */
EG_EXPORT int eg_chan_try_send(eg_chan *ch, const void *elem);
EG_EXPORT int eg_chan_try_recv(eg_chan *ch, void *elem);
/* Closes the channel: pending and later sends get -EPIPE; receivers drain
 * what is buffered, then get -EPIPE. Closing twice is harmless. */
EG_EXPORT void eg_chan_close(eg_chan *ch);
/* Elements buffered now. */
EG_EXPORT size_t eg_chan_len(eg_chan *ch);
/* Frees the channel. No call may be blocked on it. NULL-safe.
 * Undefined behaviour that is not detected: freeing a channel a call is
 * still blocked on, or using it after this call. */
EG_EXPORT void eg_chan_free(eg_chan *ch);

#ifdef __cplusplus
}
#endif
#endif
