/*
 * eg/common.h - version, export macro, clock and error text.
 *
 * Error model (every header): functions return 0 on success and a negative
 * errno value on failure (-EINVAL, -ENOMEM, ...). A cancelled context reports
 * -ECANCELED and a passed deadline -ETIMEDOUT. errno is never used to carry a
 * result between threads. Every header includes <errno.h> for the codes.
 *
 * Times are int64_t nanoseconds on eg_now() (CLOCK_MONOTONIC).
 */
#ifndef EG_COMMON_H
#define EG_COMMON_H

/* Results are negative errno values: every user needs the E* codes. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The one place the version is set: CMakeLists.txt reads these three. */
#define EG_VERSION_MAJOR 0
#define EG_VERSION_MINOR 2
#define EG_VERSION_PATCH 0
#define EG_VERSION_HEX \
    ((EG_VERSION_MAJOR << 16) | (EG_VERSION_MINOR << 8) | EG_VERSION_PATCH)
#define EG__STR2(x) #x
#define EG__STR(x) EG__STR2(x)
#define EG_VERSION_STRING \
    EG__STR(EG_VERSION_MAJOR) "." EG__STR(EG_VERSION_MINOR) "." EG__STR(EG_VERSION_PATCH)

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

/**
 * eg_version() - the library's version as a number
 *
 * The version of the library the program runs with, packed as
 * EG_VERSION_HEX packs the header's: compare the two to detect a program
 * compiled against other headers than the library it loaded.
 *
 * Returns: (MAJOR << 16) | (MINOR << 8) | PATCH. Never fails.
 * Blocks: No.
 * Thread-safety: Any thread, any time.
 * Ownership: Nothing to own.
 * NULL: No pointer arguments.
 * See also: eg_version_string
 */
EG_EXPORT unsigned eg_version(void);
/**
 * eg_version_string() - the library's version as text
 *
 * Returns: "MAJOR.MINOR.PATCH" of the loaded library, as EG_VERSION_STRING
 * spells the header's. Never NULL.
 * Blocks: No.
 * Thread-safety: Any thread, any time.
 * Ownership: The string is static storage: do not free or modify it.
 * NULL: No pointer arguments.
 */
EG_EXPORT const char *eg_version_string(void);

/**
 * eg_now() - the library's clock, in nanoseconds
 *
 * Every deadline in this library (eg_with_deadline(), eg_ctx_wait_until(),
 * eg_cond_timedwait(), ...) is a value of this clock: CLOCK_MONOTONIC in
 * nanoseconds. EG_NSEC_PER_USEC, EG_NSEC_PER_MSEC and EG_NSEC_PER_SEC help
 * write durations.
 *
 * Returns: The time in nanoseconds. Never fails.
 * Blocks: No (no system call on the vDSO fast path).
 * Thread-safety: Any thread, any time.
 * Ownership: Nothing to own.
 * NULL: No pointer arguments.
 */
EG_EXPORT int64_t eg_now(void);

/**
 * eg_strerror() - text for a result code
 *
 * Returns: "Success" for 0, "Operation canceled" for -ECANCELED, the
 * strerror(3) text of -err for other negative errno values, and a text
 * starting "Unknown error" for positive and unknown values. Never NULL.
 * Blocks: No.
 * Thread-safety: Any thread, concurrently, with glibc 2.32 or later (the
 * text is static, never a shared buffer); elsewhere as strerror(3).
 * Ownership: The string is static storage: do not free or modify it.
 * NULL: No pointer arguments.
 * See also: eg_group_errmsg
 */
EG_EXPORT const char *eg_strerror(int err);

/**
 * eg_live_objects() - count the library objects alive now
 *
 * Counts contexts (other than eg_background()), groups, eg_after handles,
 * channels and semaphores: for leak checks in tests and for diagnostics.
 * A program that released everything it made sees 0.
 *
 * Returns: The number of live objects (>= 0). Never fails.
 * Blocks: No.
 * Thread-safety: Any thread; the count is a snapshot that other threads
 * may change at once.
 * Ownership: Nothing to own.
 * NULL: No pointer arguments.
 */
EG_EXPORT long eg_live_objects(void);

#define EG_NSEC_PER_USEC INT64_C(1000)
#define EG_NSEC_PER_MSEC INT64_C(1000000)
#define EG_NSEC_PER_SEC INT64_C(1000000000)

#ifdef __cplusplus
}
#endif
#endif
