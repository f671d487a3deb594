/*
 * stubrun - runs a program against in-process HTTP stubs (httpstub.h).
 *
 *   stubrun STATUS... -- PROGRAM ARG...
 *
 * Starts one stub per STATUS (200, 500, ...; STATUS@MS answers after MS
 * milliseconds), runs PROGRAM with every ARG of the form {N} replaced by
 * the URL of stub N, and exits with PROGRAM's exit status. For tests of
 * examples that take URLs, such as handler.
 */
#include "httpstub.h"

#include <errgroup.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv)
{
    httpstub *stubs[16];
    char urls[16][64];
    int n = 0, i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        char *at = strchr(argv[i], '@');
        int64_t latency = at ? atoll(at + 1) * EG_NSEC_PER_MSEC : 0;
        if (n == 16 || httpstub_start(&stubs[n], atoi(argv[i]), latency) != 0) {
            fprintf(stderr, "stubrun: cannot start a stub for %s\n", argv[i]);
            return 125;
        }
        snprintf(urls[n], sizeof urls[n], "http://127.0.0.1:%d/",
                 httpstub_port(stubs[n]));
        n++;
    }
    if (i + 1 >= argc) {
        fprintf(stderr, "usage: stubrun STATUS... -- PROGRAM ARG...\n");
        return 125;
    }
    char **args = argv + i + 1;
    for (char **a = args; *a; a++) {
        int k;
        char close;
        if (sscanf(*a, "{%d%c", &k, &close) == 2 && close == '}' && k >= 0 && k < n)
            *a = urls[k];
    }
    pid_t pid;
    int status = 0, rc = posix_spawnp(&pid, args[0], NULL, NULL, args, environ);
    if (rc != 0 || waitpid(pid, &status, 0) < 0) {
        fprintf(stderr, "stubrun: cannot run %s\n", args[0]);
        return 125;
    }
    for (int k = 0; k < n; k++)
        httpstub_stop(stubs[k]);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 126;
}
