/*
 * servers.c - real Redis and PostgreSQL servers for the adapter tests
 * (see servers.h).
 */
#include "servers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

#define START_TRIES 3
#define READY_WAIT_MS 30000
#define STOP_WAIT_MS 15000

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A port nothing listens on right now (the kernel's pick for port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -EADDRNOTAVAIL;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static int can_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void print_log(const char *dir)
{
    char path[300];
    snprintf(path, sizeof path, "%s/log", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s\n", path);
    char line[512];
    while (fgets(line, sizeof line, f))
        fputs(line, stderr);
    fclose(f);
    fprintf(stderr, "----\n");
}

/* The unprivileged user PostgreSQL runs as when we are root. */
static int pg_user(uid_t *uid, gid_t *gid)
{
    const char *name = getenv("EG_TEST_PG_USER");
    struct passwd *pw = getpwnam(name && *name ? name : "nobody");
    if (!pw)
        return -ENOENT;
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    return 0;
}

/* Runs argv as a child (unprivileged if as_user), output to dir/log.
 * Returns the pid or -errno. */
static pid_t spawn(const char *dir, char *const argv[], int as_user)
{
    uid_t uid = 0;
    gid_t gid = 0;
    if (as_user && geteuid() == 0 && pg_user(&uid, &gid) < 0)
        return -ENOENT;
    char log[300];
    snprintf(log, sizeof log, "%s/log", dir);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        if (uid != 0 &&
            (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0)) {
            perror("servers: dropping privileges");
            _exit(126);
        }
        if (chdir(dir) != 0)
            _exit(126);
        /* The test process may block signals (pool threads); the server
         * must see SIGTERM/SIGQUIT. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], argv);
        fprintf(stderr, "servers: exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* Waits up to ms for pid to exit; its status, or -ETIMEDOUT. */
static int reap(pid_t pid, int ms)
{
    for (int waited = 0;; waited += 10) {
        int status;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -errno;
        if (waited >= ms)
            return -ETIMEDOUT;
        nap_ms(10);
    }
}

static int make_dir(testsrv *s, const char *what, int for_user)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(s->dir, sizeof s->dir, "%s/eg-%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", what);
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "servers: mkdtemp %s: %s\n", s->dir, strerror(errno));
        s->dir[0] = 0;
        return -errno;
    }
    if (for_user && geteuid() == 0) {
        uid_t uid;
        gid_t gid;
        if (pg_user(&uid, &gid) < 0) {
            fprintf(stderr, "servers: no unprivileged user to run PostgreSQL as\n");
            return -ENOENT;
        }
        if (chown(s->dir, uid, gid) != 0)
            return -errno;
    }
    return 0;
}

/* ---- Redis --------------------------------------------------------------- */

int testsrv_redis_start(testsrv *s)
{
    memset(s, 0, sizeof *s);
    int rc = make_dir(s, "redis", 0);
    if (rc < 0)
        return rc;
    const char *bin = getenv("EG_TEST_REDIS_SERVER");
    if (!bin || !*bin)
        bin = "/usr/bin/redis-server";
    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        int port = free_port();
        if (port < 0)
            return port;
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", port);
        char *argv[] = {(char *)bin, "--port",       portstr, "--bind",
                        "127.0.0.1", "--save",       "",      "--appendonly",
                        "no",        "--dir",        s->dir,  "--daemonize",
                        "no",        "--maxclients", "1000",  NULL};
        pid_t pid = spawn(s->dir, argv, 0);
        if (pid < 0)
            return (int)pid;
        for (int waited = 0; waited < READY_WAIT_MS; waited += 10) {
            if (can_connect(port)) {
                s->pid = pid;
                s->port = port;
                return 0;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                pid = 0;
                break; /* exited: the port may have been taken, try again */
            }
            nap_ms(10);
        }
        if (pid > 0) {
            kill(pid, SIGKILL);
            reap(pid, STOP_WAIT_MS);
        }
    }
    fprintf(stderr, "servers: redis-server (%s) did not start\n", bin);
    print_log(s->dir);
    testsrv_stop(s);
    return -EIO;
}

/* ---- PostgreSQL ---------------------------------------------------------- */

static void pg_bindir(char *out, size_t n)
{
    const char *env = getenv("EG_TEST_PG_BINDIR");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return;
    }
    int best = 0;
    DIR *d = opendir("/usr/lib/postgresql");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            int v = atoi(e->d_name);
            if (v > best)
                best = v;
        }
        closedir(d);
    }
    snprintf(out, n, "/usr/lib/postgresql/%d/bin", best ? best : 15);
}

/* The postmaster writes "ready" on line 8 of postmaster.pid once it
 * accepts connections (the status pg_ctl waits for). */
static int pg_ready(const char *dir)
{
    char path[300];
    snprintf(path, sizeof path, "%s/data/postmaster.pid", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[256];
    int ready = 0;
    for (int i = 1; fgets(line, sizeof line, f); i++) {
        if (i == 8) {
            ready = strncmp(line, "ready", 5) == 0;
            break;
        }
    }
    fclose(f);
    return ready;
}

int testsrv_pg_start(testsrv *s)
{
    memset(s, 0, sizeof *s);
    s->is_pg = 1;
    int rc = make_dir(s, "pg", 1);
    if (rc < 0) {
        testsrv_stop(s);
        return rc;
    }
    char bindir[200], initdb[260], postgres[260], data[300];
    pg_bindir(bindir, sizeof bindir);
    snprintf(initdb, sizeof initdb, "%s/initdb", bindir);
    snprintf(postgres, sizeof postgres, "%s/postgres", bindir);
    snprintf(data, sizeof data, "%s/data", s->dir);

    char *init_argv[] = {initdb,  "-D", data,   "-U",         "postgres",  "-A",
                         "trust", "-E", "UTF8", "--locale=C", "--no-sync", NULL};
    pid_t pid = spawn(s->dir, init_argv, 1);
    int status = pid < 0 ? (int)pid : reap(pid, 120000);
    if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "servers: %s failed (status %d)\n", initdb, status);
        print_log(s->dir);
        testsrv_stop(s);
        return -EIO;
    }

    for (int attempt = 0; attempt < START_TRIES; attempt++) {
        int port = free_port();
        if (port < 0)
            return port;
        char portstr[16];
        snprintf(portstr, sizeof portstr, "%d", port);
        char *argv[] = {postgres,
                        "-D",
                        data,
                        "-p",
                        portstr,
                        "-k",
                        s->dir,
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        "max_connections=200",
                        "-c",
                        "shared_buffers=16MB",
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "logging_collector=off",
                        NULL};
        pid = spawn(s->dir, argv, 1);
        if (pid < 0)
            return (int)pid;
        for (int waited = 0; waited < READY_WAIT_MS; waited += 10) {
            if (pg_ready(s->dir) && can_connect(port)) {
                s->pid = pid;
                s->port = port;
                snprintf(s->conninfo, sizeof s->conninfo,
                         "hostaddr=127.0.0.1 port=%d user=postgres dbname=postgres "
                         "connect_timeout=10",
                         port);
                return 0;
            }
            if (waitpid(pid, NULL, WNOHANG) == pid) {
                pid = 0;
                break;
            }
            nap_ms(10);
        }
        if (pid > 0) {
            kill(pid, SIGQUIT);
            reap(pid, STOP_WAIT_MS);
        }
    }
    fprintf(stderr, "servers: postgres (%s) did not start\n", postgres);
    print_log(s->dir);
    testsrv_stop(s);
    return -EIO;
}

/* ---- stopping ------------------------------------------------------------ */

void testsrv_kill(testsrv *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, s->is_pg ? SIGQUIT : SIGKILL);
    if (reap(s->pid, STOP_WAIT_MS) == -ETIMEDOUT) {
        kill(s->pid, SIGKILL);
        reap(s->pid, STOP_WAIT_MS);
    }
    s->pid = 0;
}

void testsrv_stop(testsrv *s)
{
    if (s->pid > 0) {
        /* PostgreSQL: SIGINT is the fast shutdown (ends sessions). */
        kill(s->pid, s->is_pg ? SIGINT : SIGTERM);
        if (reap(s->pid, STOP_WAIT_MS) == -ETIMEDOUT) {
            kill(s->pid, s->is_pg ? SIGQUIT : SIGKILL);
            if (reap(s->pid, STOP_WAIT_MS) == -ETIMEDOUT) {
                kill(s->pid, SIGKILL);
                reap(s->pid, STOP_WAIT_MS);
            }
        }
        s->pid = 0;
    }
    if (s->dir[0]) {
        nftw(s->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        s->dir[0] = 0;
    }
}
