/*
 * servers.h - real Redis and PostgreSQL servers for the adapter tests.
 *
 * Each server runs on 127.0.0.1 on a free port, with its files in a fresh
 * temporary directory, as a child of the test process; testsrv_stop ends it
 * by PID and removes the directory. Never a system service.
 *
 * PostgreSQL refuses to run as root: when the test runs as root the server
 * (initdb and postgres) runs as the user "nobody" (or EG_TEST_PG_USER),
 * which owns the temporary directory. Binaries: EG_TEST_REDIS_SERVER
 * (default /usr/bin/redis-server) and EG_TEST_PG_BINDIR (default: the
 * newest /usr/lib/postgresql/N/bin).
 *
 * Start functions return 0, or a negative errno after printing why (and the
 * server's log) to stderr: a test whose server cannot start must fail.
 */
#ifndef EG_TEST_SERVERS_H
#define EG_TEST_SERVERS_H

#include <sys/types.h>

typedef struct testsrv {
    pid_t pid; /* the server process; 0 when not running */
    int port;
    char dir[256];      /* temporary directory */
    char conninfo[512]; /* PostgreSQL: libpq conninfo (user postgres) */
    int is_pg;
} testsrv;

int testsrv_redis_start(testsrv *s);
/* initdb in a fresh directory, then postgres with max_connections 200. */
int testsrv_pg_start(testsrv *s);
/* Kills the server at once (Redis: SIGKILL; PostgreSQL: SIGQUIT, the
 * immediate shutdown, which ends every backend) and reaps it. */
void testsrv_kill(testsrv *s);
/* Stops the server (if still running), reaps it and removes its
 * directory. Safe on a zeroed or already stopped testsrv. */
void testsrv_stop(testsrv *s);

#endif
