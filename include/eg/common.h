/*
 * eg/common.h - version, export macro, clock and error text.
 *
 * Error model (every header): functions return 0 on success and a negative
 * errno value on failure (-EINVAL, -ENOMEM, ...). A cancelled context reports
 * -ECANCELED and a passed deadline -ETIMEDOUT. errno is never used to carry a
 * result between threads.
 *
 * Times are int64_t nanoseconds on eg_now() (CLOCK_MONOTONIC).
 */
#ifndef EG_COMMON_H
#define EG_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EG_VERSION_MAJOR 0
#define EG_VERSION_MINOR 1
#define EG_VERSION_PATCH 0
#define EG_VERSION_HEX \
    ((EG_VERSION_MAJOR << 16) | (EG_VERSION_MINOR << 8) | EG_VERSION_PATCH)
#define EG_VERSION_STRING "0.1.0"

#if defined(EG_STATIC)
#define EG_EXPORT
#elif defined(__GNUC__)
#define EG_EXPORT __attribute__((visibility("default")))
#else
#define EG_EXPORT
#endif

#if defined(__GNUC__)
#define EG_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define EG_PRINTF(f, a)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version as EG_VERSION_HEX packs it; compare with the header's
 * to detect a header/library mismatch. */
EG_EXPORT unsigned eg_version(void);
/* The library's version as "MAJOR.MINOR.PATCH". Static storage. */
EG_EXPORT const char *eg_version_string(void);

/* Nanoseconds on CLOCK_MONOTONIC. Never fails, never blocks. */
EG_EXPORT int64_t eg_now(void);

/* Text for a result code: "Operation canceled" for -ECANCELED, strerror text
 * for other negative errno values, "Success" for 0. Static storage; thread-safe. */
EG_EXPORT const char *eg_strerror(int err);

/* Library objects alive now: contexts (other than eg_background), groups,
 * eg_after handles, channels and semaphores. For leak checks in tests and
 * diagnostics; 0 once a program released everything it made. */
EG_EXPORT long eg_live_objects(void);

#define EG_NSEC_PER_USEC INT64_C(1000)
#define EG_NSEC_PER_MSEC INT64_C(1000000)
#define EG_NSEC_PER_SEC INT64_C(1000000000)

#ifdef __cplusplus
}
#endif
#endif
