/*
 * eg/curl.h - libcurl transfers that listen to a context.
 *
 * Part of the optional errgroup-curl library (link with
 * `pkg-config --libs errgroup-curl`); the core library never needs libcurl.
 *
 * Set-up, as libcurl requires of every program: call
 * curl_global_init(CURL_GLOBAL_DEFAULT) once before starting threads, and
 * curl_global_cleanup only when no transfer runs any more. This adapter
 * never calls either. Set CURLOPT_NOSIGNAL on easy handles used from
 * several threads, as libcurl advises.
 *
 * Each thread that calls eg_curl_perform keeps up to four idle libcurl
 * multi handles (freed when the thread exits), so sequential transfers on a
 * thread reuse connections as curl_easy_perform does; a transfer takes one
 * for itself, so concurrent transfers on one thread (coroutines sharing a
 * carrier thread, a nested call) each have their own, and at most four of
 * those handles, with their connections, are kept when they end. Tasks of
 * a group run on pool or carrier threads: an idle connection may stay open
 * there until the thread exits or the server closes it; send
 * "Connection: close" or set CURLOPT_FORBID_REUSE where that matters.
 * CURLOPT_SHARE works as usual.
 *
 * On Linux a transfer waits with eg_poll() on an epoll set of libcurl's
 * sockets and timer (libcurl's multi-socket interface): on the coroutine
 * executor a waiting transfer is parked and leaves its carrier to other
 * tasks. Elsewhere, and when the epoll set cannot be made (EMFILE), it
 * polls libcurl (on a coroutine every millisecond, parked in between).
 */
#ifndef EG_CURL_H
#define EG_CURL_H

#include <curl/curl.h>

#include "eg/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * eg_curl_perform() - curl_easy_perform that listens to a context
 *
 * Performs the transfer set up on easy, like curl_easy_perform(3), on the
 * calling thread (or coroutine), and aborts it as soon as ctx is done
 * (within about a millisecond where it polls; the connection is closed). A transfer that finished as ctx became
 * done reports its own result. It may be called from a curl callback of
 * another transfer.
 *
 * Returns: CURLE_OK; curl's error; CURLE_ABORTED_BY_CALLBACK when ctx
 * ended the transfer, or was already done at entry (the transfer is then
 * not started): eg_curl_err() tells why; CURLE_BAD_FUNCTION_ARGUMENT for
 * NULL arguments; CURLE_OUT_OF_MEMORY when no multi handle could be made.
 * Blocks: For the transfer, until ctx is done.
 * Thread-safety: Any thread; each thread keeps its own idle multi handles
 * (freed when the thread exits). curl_global_init() must have been called.
 * Ownership: easy stays the caller's and reusable: it is in no multi
 * handle when this returns, and must not be in one of the caller's.
 * NULL: ctx or easy NULL returns CURLE_BAD_FUNCTION_ARGUMENT.
 * See also: eg_curl_err
 */
EG_EXPORT CURLcode eg_curl_perform(eg_ctx *ctx, CURL *easy);

/**
 * eg_curl_err() - map a curl result to this library's error codes
 *
 * HTTP statuses are not errors to curl: check CURLINFO_RESPONSE_CODE (or
 * set CURLOPT_FAILONERROR, then the result maps to -EIO).
 *
 * Check this result FIRST, before the response code: after a transfer the
 * context aborted, CURLINFO_RESPONSE_CODE still reads what the headers said
 * (200 when they had arrived) and curl_easy_strerror(rc) only says "aborted
 * by an application callback"; eg_curl_err(ctx, rc) is what tells
 * -ECANCELED or -ETIMEDOUT.
 *
 * Returns:
 * - 0: CURLE_OK;
 * - the context's error (-ECANCELED or -ETIMEDOUT): CURLE_ABORTED_BY_CALLBACK
 *   when ctx ended the transfer; -ECANCELED when a callback of the caller's
 *   aborted it;
 * - -ETIMEDOUT: curl's own timeouts (CURLOPT_TIMEOUT,
 *   CURLOPT_CONNECTTIMEOUT);
 * - -ECONNREFUSED: a failed connect (CURLE_COULDNT_CONNECT: curl does not
 *   say why, ask CURLINFO_OS_ERRNO);
 * - -EHOSTUNREACH: a name that did not resolve;
 * - -ENOMEM: CURLE_OUT_OF_MEMORY;
 * - -EINVAL: CURLE_BAD_FUNCTION_ARGUMENT;
 * - -EIO: other transfer errors.
 * Blocks: No.
 * Thread-safety: Any thread.
 * Ownership: Nothing passes.
 * NULL: ctx may be NULL when rc is not CURLE_ABORTED_BY_CALLBACK.
 */
EG_EXPORT int eg_curl_err(eg_ctx *ctx, CURLcode rc);

#ifdef __cplusplus
}
#endif
#endif
