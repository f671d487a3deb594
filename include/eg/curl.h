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
 * Each thread that calls eg_curl_perform keeps one libcurl multi handle
 * (freed when the thread exits), so sequential transfers on a thread reuse
 * connections as curl_easy_perform does. Tasks of a group run on pool
 * threads: an idle connection may stay open in a pool thread until it
 * exits (the pool's idle timeout); send "Connection: close" or set
 * CURLOPT_FORBID_REUSE where that matters. CURLOPT_SHARE works as usual.
 */
#ifndef EG_CURL_H
#define EG_CURL_H

#include <curl/curl.h>

#include "eg/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Performs the transfer set up on easy like curl_easy_perform, on the
 * calling thread, and aborts it within about a millisecond once ctx is
 * done (the connection is closed). Returns CURLE_OK, curl's error, or
 * CURLE_ABORTED_BY_CALLBACK when ctx ended the transfer (then
 * eg_curl_err() tells why); a ctx already done at entry gives
 * CURLE_ABORTED_BY_CALLBACK without starting the transfer. A transfer that
 * finished as ctx became done reports its own result. easy stays owned by
 * the caller and reusable (it is in no multi handle when this returns); it
 * must not be in a multi handle of the caller's. May be called from a curl
 * callback of another transfer. Returns CURLE_BAD_FUNCTION_ARGUMENT for
 * NULL arguments and CURLE_OUT_OF_MEMORY when no multi handle could be
 * made. */
EG_EXPORT CURLcode eg_curl_perform(eg_ctx *ctx, CURL *easy);

/* Maps a result of eg_curl_perform to this library's error model: 0 for
 * CURLE_OK; for CURLE_ABORTED_BY_CALLBACK the context's error when ctx
 * ended the transfer (-ECANCELED or -ETIMEDOUT), else -ECANCELED (a
 * callback of the caller's aborted it); -ETIMEDOUT for curl's own timeouts
 * (CURLOPT_TIMEOUT, CURLOPT_CONNECTTIMEOUT); -ECONNREFUSED for a failed
 * connect (CURLE_COULDNT_CONNECT: curl does not say why, ask
 * CURLINFO_OS_ERRNO); -EHOSTUNREACH for a name that did not resolve;
 * -ENOMEM; -EINVAL for CURLE_BAD_FUNCTION_ARGUMENT; -EIO for other transfer
 * errors. HTTP statuses are not errors to curl: check
 * CURLINFO_RESPONSE_CODE (or set CURLOPT_FAILONERROR, then -EIO). ctx may
 * be NULL when rc is not CURLE_ABORTED_BY_CALLBACK.
 *
 * Check this result FIRST, before the response code: after a transfer the
 * context aborted, CURLINFO_RESPONSE_CODE still reads what the headers said
 * (200 when they had arrived) and curl_easy_strerror(rc) only says "aborted
 * by an application callback"; eg_curl_err(ctx, rc) is what tells
 * -ECANCELED or -ETIMEDOUT. */
EG_EXPORT int eg_curl_err(eg_ctx *ctx, CURLcode rc);

#ifdef __cplusplus
}
#endif
#endif
