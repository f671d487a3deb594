/*
 * md5all.c - Go's errgroup pipeline example (MD5All) in C.
 *
 * Prints the MD5 sum of every regular file under DIR, like md5sum, sorted
 * by path. Three stages, one group:
 *
 *   walk ---paths---> 20 digesters ---results---> main: collect, sort, print
 *
 * The walk sends each file's path on an unbuffered channel and closes it
 * when done; each digester reads paths, hashes the file and sends a result.
 * A task that fails (an unreadable directory or file) cancels the group's
 * context: the other stages' channel operations then return the context's
 * error and the whole pipeline winds down. eg_wait reports the first error.
 *
 * Symbolic links: a link to a regular file is hashed (as `md5sum LINK`
 * would); links to anything else are skipped, so the walk never loops; a
 * dangling link is an error, as it is for md5sum.
 *
 * Ownership: a path is a malloc'd string owned by whoever holds it: the
 * walk until a send succeeds, then the digester, then the result, then
 * main. A task that fails to pass it on frees it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <errgroup.h>

#define NUM_DIGESTERS 20
#define MD5_LEN 16

struct result {
    char *path;
    unsigned char sum[MD5_LEN];
};

struct pipeline {
    eg_group *g;
    const char *root;
    eg_chan *paths;   /* char *; closed by the walk when it returns */
    eg_chan *results; /* struct result; closed once every task returned */
};

/* Errors with the path they concern, as the group's error text. */
static int path_error(int err, const char *path)
{
    return eg_errorf(err, "%s: %s", path, eg_strerror(err));
}

/* ---- stage 1: the walk -------------------------------------------------- */

static char *join(const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    const char *sep = dl > 0 && dir[dl - 1] == '/' ? "" : "/";
    char *path;
    if (asprintf(&path, "%s%s%s", dir, sep, name) < 0)
        return NULL;
    return path;
}

static int visit(eg_ctx *ctx, struct pipeline *p, char *path, bool is_root);

static int walk_dir(eg_ctx *ctx, struct pipeline *p, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return path_error(-errno, dir);
    int err = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno != 0)
                err = path_error(-errno, dir);
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *path = join(dir, e->d_name);
        err = path ? visit(ctx, p, path, false) : -ENOMEM;
        if (err != 0)
            break;
    }
    closedir(d);
    return err;
}

/* True for a regular file; for a link, true when it points to a regular
 * file or to nothing (then the digester reports the error). */
static bool wanted(const char *path, const struct stat *st)
{
    if (S_ISREG(st->st_mode))
        return true;
    if (!S_ISLNK(st->st_mode))
        return false;
    struct stat target;
    return stat(path, &target) != 0 || S_ISREG(target.st_mode);
}

/* Walks path (a directory) or sends it (a file). Takes ownership of path. */
static int visit(eg_ctx *ctx, struct pipeline *p, char *path, bool is_root)
{
    struct stat st;
    /* The root is followed if it is a link; entries are not. */
    int rc = is_root ? stat(path, &st) : lstat(path, &st);
    int err = 0;
    if (rc != 0) {
        err = path_error(-errno, path);
    } else if (S_ISDIR(st.st_mode)) {
        err = walk_dir(ctx, p, path);
    } else if (wanted(path, &st)) {
        err = eg_chan_send(ctx, p->paths, &path);
        if (err == 0)
            return 0; /* path now belongs to a digester */
    }
    free(path);
    return err;
}

static int walk(eg_ctx *ctx, void *arg)
{
    struct pipeline *p = arg;
    char *root = strdup(p->root);
    int err = root ? visit(ctx, p, root, true) : -ENOMEM;
    eg_chan_close(p->paths); /* Go: defer close(paths) */
    return err;
}

/* ---- stage 2: the digesters -------------------------------------------- */

static int md5_file(eg_ctx *ctx, const char *path, unsigned char sum[MD5_LEN])
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return path_error(-errno, path);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md || !EVP_DigestInit_ex(md, EVP_md5(), NULL)) {
        EVP_MD_CTX_free(md);
        close(fd);
        return -ENOMEM;
    }
    char buf[16384];
    ssize_t n;
    /* eg_read checks ctx before each read: a cancelled pipeline stops
     * hashing a large file at the next chunk. */
    while ((n = eg_read(ctx, fd, buf, sizeof buf)) > 0)
        EVP_DigestUpdate(md, buf, (size_t)n);
    int err = 0;
    if (n < 0)
        err = eg_ctx_done(ctx) ? (int)n : path_error((int)n, path);
    else
        EVP_DigestFinal_ex(md, sum, NULL);
    EVP_MD_CTX_free(md);
    close(fd);
    return err;
}

static int digester(eg_ctx *ctx, void *arg)
{
    struct pipeline *p = arg;
    char *path;
    int err;
    while ((err = eg_chan_recv(ctx, p->paths, &path)) == 0) {
        struct result r = {.path = path};
        err = md5_file(ctx, path, r.sum);
        if (err == 0)
            err = eg_chan_send(ctx, p->results, &r);
        if (err != 0) {
            free(path);
            return err;
        }
    }
    return err == -EPIPE ? 0 : err; /* -EPIPE: the walk is over */
}

/* Go: go func() { g.Wait(); close(c) }() */
static void close_results_when_done(void *arg)
{
    struct pipeline *p = arg;
    eg_wait(p->g);
    eg_chan_close(p->results);
}

/* ---- stage 3: collect ---------------------------------------------------- */

static int by_path(const void *a, const void *b)
{
    return strcmp(((const struct result *)a)->path, ((const struct result *)b)->path);
}

/* Digests every regular file under root. Returns 0 and *out (n results,
 * sorted by path; free each path and the array), or the first error with
 * its text in errmsg. */
static int md5_all(eg_ctx *ctx, const char *root, struct result **out, size_t *n,
                   char *errmsg, size_t errlen)
{
    struct pipeline p = {.root = root};
    p.g = eg_group_new(ctx);
    p.paths = eg_chan_new(0, sizeof(char *));
    p.results = eg_chan_new(0, sizeof(struct result));
    eg_wg closer;
    bool have_closer = false;
    int err = -ENOMEM;
    if (!p.g || !p.paths || !p.results || eg_wg_init(&closer) != 0)
        goto out;
    have_closer = true;

    /* Start the stages. If one cannot start, cancel the others so they
     * wind down; the walk must run (or its channel be closed) for the
     * digesters to see the end of the paths. */
    err = eg_go(p.g, walk, &p);
    if (err != 0)
        eg_chan_close(p.paths);
    for (int i = 0; i < NUM_DIGESTERS && err == 0; i++)
        err = eg_go(p.g, digester, &p);
    if (err != 0)
        eg_cancel(eg_group_ctx(p.g), err);
    if (eg_wg_go(&closer, close_results_when_done, &p) != 0) {
        eg_cancel(eg_group_ctx(p.g), -EAGAIN);
        close_results_when_done(&p);
        err = err ? err : -EAGAIN;
    }

    /* Receive until the closer closes results: every task has returned. */
    struct result *all = NULL;
    size_t count = 0, cap = 0;
    struct result r;
    while (eg_chan_recv(eg_background(), p.results, &r) == 0) {
        if (count == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            struct result *grown = realloc(all, ncap * sizeof *all);
            if (!grown) {
                free(r.path);
                eg_cancel(eg_group_ctx(p.g), -ENOMEM);
                err = err ? err : -ENOMEM;
                continue; /* keep draining so the digesters can return */
            }
            all = grown;
            cap = ncap;
        }
        all[count++] = r;
    }
    eg_wg_wait(&closer);

    int werr = eg_wait(p.g);
    if (err == 0 && werr != 0) {
        err = werr;
        snprintf(errmsg, errlen, "%s", eg_group_errmsg(p.g));
    }
    if (err == 0) {
        qsort(all, count, sizeof *all, by_path);
        *out = all;
        *n = count;
    } else {
        for (size_t i = 0; i < count; i++)
            free(all[i].path);
        free(all);
    }
out:
    if (err != 0 && errmsg[0] == '\0')
        snprintf(errmsg, errlen, "%s", eg_strerror(err));
    if (have_closer)
        eg_wg_destroy(&closer);
    eg_group_free(p.g);
    eg_chan_free(p.paths);
    eg_chan_free(p.results);
    return err;
}

int main(int argc, char **argv)
{
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "usage: md5all DIR\n"
                        "Prints the MD5 sum of every file under DIR, like "
                        "md5sum, sorted by path.\n");
        return 2;
    }
    struct result *all;
    size_t n;
    char errmsg[EG_ERRMSG_MAX] = "";
    int err = md5_all(eg_background(), argv[1], &all, &n, errmsg, sizeof errmsg);
    if (err != 0) {
        fprintf(stderr, "md5all: %s\n", errmsg);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < MD5_LEN; k++)
            printf("%02x", all[i].sum[k]);
        printf("  %s\n", all[i].path);
        free(all[i].path);
    }
    free(all);
    return 0;
}
