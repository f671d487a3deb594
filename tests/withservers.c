/*
 * withservers - runs a command with Redis and PostgreSQL test servers up.
 *
 *   withservers PROGRAM ARGS...
 *
 * Starts both servers (servers.h), replaces @REDIS_PORT@ and @PG_CONNINFO@
 * in the arguments, runs the program, stops the servers by PID and exits
 * with the program's exit code (1 when a server could not start).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "servers.h"

static char *substitute(const char *arg, const char *key, const char *value)
{
    const char *at = strstr(arg, key);
    if (!at)
        return strdup(arg);
    size_t n = strlen(arg) - strlen(key) + strlen(value) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%.*s%s%s", (int)(at - arg), arg, value, at + strlen(key));
    return out;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: withservers PROGRAM ARGS...\n");
        return 2;
    }
    testsrv redis, pg;
    if (testsrv_redis_start(&redis) < 0)
        return 1;
    if (testsrv_pg_start(&pg) < 0) {
        testsrv_stop(&redis);
        return 1;
    }
    char port[16];
    snprintf(port, sizeof port, "%d", redis.port);
    char **args = calloc((size_t)argc, sizeof *args);
    for (int i = 1; args && i < argc; i++) {
        char *a = substitute(argv[i], "@REDIS_PORT@", port);
        args[i - 1] = a ? substitute(a, "@PG_CONNINFO@", pg.conninfo) : NULL;
        free(a);
    }
    int code = 1;
    pid_t pid = args ? fork() : -1;
    if (pid == 0) {
        execv(args[0], args);
        perror(args[0]);
        _exit(127);
    }
    int status;
    if (pid > 0 && waitpid(pid, &status, 0) == pid)
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    for (int i = 0; args && i < argc; i++)
        free(args[i]);
    free(args);
    testsrv_stop(&pg);
    testsrv_stop(&redis);
    return code;
}
