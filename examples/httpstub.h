/*
 * httpstub.h - a tiny HTTP/1.1 server on a loopback port, for the examples.
 *
 * A stub answers every request the same way: a fixed status after a fixed
 * latency, with the body "ok <path>\n" ("error <path>\n" for a status of
 * 400 and above), then closes the connection. While the answer is not yet due it
 * watches the connection, so it notices a client that gives up, and it
 * keeps a record of how each connection ended. It runs as a group of tasks
 * on the library's pool (one accepting, one per connection).
 */
#ifndef HTTPSTUB_H
#define HTTPSTUB_H

#include <stdint.h>

typedef struct httpstub httpstub;

enum httpstub_outcome {
    HTTPSTUB_ANSWERED,      /* the answer was sent when due */
    HTTPSTUB_CLIENT_CLOSED, /* the client closed before the answer was due */
    HTTPSTUB_NO_REQUEST,    /* closed before a complete request arrived */
    HTTPSTUB_STOPPED,       /* httpstub_stop ended the connection */
};

/* How one connection ended. after_ns counts from the end of the request to
 * the answer or to the client's close. */
typedef struct httpstub_record {
    enum httpstub_outcome outcome;
    int64_t after_ns;
} httpstub_record;

/* Starts a stub on 127.0.0.1 and an ephemeral port that answers with
 * status (200, 500, ...) latency_ns after each request. Returns 0 and
 * *out, or a negative errno. */
int httpstub_start(httpstub **out, int status, int64_t latency_ns);

/* The port the stub listens on. */
int httpstub_port(const httpstub *s);

/* Takes the record of the oldest connection not yet taken, waiting up to
 * timeout_ns for one to end. Returns 0, or -ETIMEDOUT. */
int httpstub_next(httpstub *s, httpstub_record *r, int64_t timeout_ns);

/* Copies how many connections ended each way so far (counts[outcome]);
 * unlike httpstub_next, never forgets one. */
void httpstub_counts(httpstub *s, long counts[HTTPSTUB_STOPPED + 1]);

/* How many connections have sent their request and wait for its answer
 * now. */
long httpstub_pending(httpstub *s);

/* Stops accepting, ends open connections, waits for the stub's tasks and
 * frees it. NULL-safe. */
void httpstub_stop(httpstub *s);

/* "answered", "client closed", ... */
const char *httpstub_outcome_name(enum httpstub_outcome o);

#endif
