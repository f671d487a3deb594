/*
 * eg/curl.h - libcurl transfers that listen to a context.
 *
 * Part of the optional errgroup-curl library (link with
 * `pkg-config --libs errgroup-curl`); the core library never needs libcurl.
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
 * eg_curl_err() tells why). easy stays owned by the caller and reusable.
 * Returns CURLE_BAD_FUNCTION_ARGUMENT for NULL arguments and
 * CURLE_OUT_OF_MEMORY when no multi handle could be made. */
EG_EXPORT CURLcode eg_curl_perform(eg_ctx *ctx, CURL *easy);

/* Maps a result of eg_curl_perform to this library's error model: 0 for
 * CURLE_OK, the context's error when ctx ended the transfer, -ETIMEDOUT for
 * curl's own timeouts, -ECONNREFUSED, -EHOSTUNREACH, -ENOMEM, and -EIO for
 * other transfer errors. */
EG_EXPORT int eg_curl_err(eg_ctx *ctx, CURLcode rc);

#ifdef __cplusplus
}
#endif
#endif
