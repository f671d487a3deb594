/*
 * out.c - output multiplexing: whole lines, each with its command's prefix.
 *
 * Each command's stdout and stderr come through a pipe into a line buffer
 * (egrun_linebuf). Complete lines are copied, prefixed, into one block and
 * written under out_mu with a write loop, so a line of one command is never
 * cut by another's. A line longer than LINE_MAX_BYTES is split there (each
 * piece ends in a newline and gets a prefix); a last line without a newline
 * is completed with one when the command's pipes close.
 *
 * Lock order: out_mu -> nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "egrun.h"

#define LINE_MAX_BYTES (1u << 20)

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;
static bool out_broken[3]; /* under out_mu: EPIPE seen on fd 1 or 2 */
static bool use_color[3];
static int name_width;

void out_init(void)
{
    for (int fd = 1; fd <= 2; fd++) {
        if (g_opts.color == 1)
            use_color[fd] = true;
        else if (g_opts.color == 2) {
            const char *term = getenv("TERM");
            use_color[fd] =
                isatty(fd) && !getenv("NO_COLOR") && !(term && !strcmp(term, "dumb"));
        }
    }
    name_width = 0;
}

void out_set_name_width(int w)
{
    name_width = w;
}

/* Called with out_mu held. */
static void write_locked(int fd, const char *s, size_t n)
{
    while (n && !out_broken[fd]) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* A closed reader (egrun ... | head) is not the commands'
             * failure: drop the rest of the output, keep running. */
            out_broken[fd] = true;
            break;
        }
        s += w;
        n -= (size_t)w;
    }
}

void out_write(int fd, const char *s, size_t n)
{
    pthread_mutex_lock(&out_mu);
    write_locked(fd, s, n);
    pthread_mutex_unlock(&out_mu);
}

/* Appends "prefix + line + \n" blocks for n bytes of complete lines. */
static void emit(const egrun_cmd *c, int fd, const char *lines, size_t n,
                 bool add_newline)
{
    char pre[128];
    int plen = 0;
    if (g_opts.prefix) {
        if (use_color[fd])
            plen = snprintf(pre, sizeof pre, "\033[%dm%-*s |\033[0m ", c->color,
                            name_width, c->name);
        else
            plen = snprintf(pre, sizeof pre, "%-*s | ", name_width, c->name);
        if (plen < 0)
            plen = 0;
        if ((size_t)plen >= sizeof pre)
            plen = sizeof pre - 1;
    }
    size_t nlines = add_newline ? 1 : 0;
    for (size_t i = 0; i < n; i++)
        nlines += lines[i] == '\n';
    size_t total = n + nlines * (size_t)plen + (add_newline ? 1 : 0);
    char *blk = malloc(total);
    if (!blk) {
        /* Out of memory: the same lines, written piece by piece under
         * one hold of the lock. */
        const char *p = lines, *e = lines + n;
        pthread_mutex_lock(&out_mu);
        while (p < e) {
            const char *nl = memchr(p, '\n', (size_t)(e - p));
            size_t len = nl ? (size_t)(nl - p + 1) : (size_t)(e - p);
            write_locked(fd, pre, (size_t)plen);
            write_locked(fd, p, len);
            p += len;
        }
        if (add_newline)
            write_locked(fd, "\n", 1);
        pthread_mutex_unlock(&out_mu);
        return;
    }
    size_t o = 0;
    const char *p = lines, *e = lines + n;
    while (p < e) {
        const char *nl = memchr(p, '\n', (size_t)(e - p));
        size_t len = nl ? (size_t)(nl - p + 1) : (size_t)(e - p);
        memcpy(blk + o, pre, (size_t)plen);
        o += (size_t)plen;
        memcpy(blk + o, p, len);
        o += len;
        p += len;
    }
    if (add_newline)
        blk[o++] = '\n';
    out_write(fd, blk, o);
    free(blk);
}

void out_feed(egrun_linebuf *lb, const egrun_cmd *c, const char *data, size_t n)
{
    while (n) {
        if (lb->len + n > lb->cap) {
            size_t cap = lb->cap ? lb->cap : 4096;
            while (cap < lb->len + n && cap < LINE_MAX_BYTES)
                cap *= 2;
            if (cap > lb->cap) {
                char *nb = realloc(lb->buf, cap);
                if (nb) {
                    lb->buf = nb;
                    lb->cap = cap;
                }
            }
        }
        size_t room = lb->cap - lb->len;
        size_t take = n < room ? n : room;
        if (take == 0) {
            /* Full (LINE_MAX_BYTES, or no memory to grow): split here. */
            emit(c, lb->fd, lb->buf, lb->len, true);
            lb->len = 0;
            if (!lb->cap) {
                emit(c, lb->fd, data, n, data[n - 1] != '\n');
                return;
            }
            continue;
        }
        size_t old = lb->len;
        memcpy(lb->buf + lb->len, data, take);
        lb->len += take;
        data += take;
        n -= take;
        /* Everything up to the last newline goes out now (the bytes that
         * were buffered before hold none). */
        char *last = NULL;
        for (size_t i = lb->len; i > old; i--)
            if (lb->buf[i - 1] == '\n') {
                last = lb->buf + i;
                break;
            }
        if (last) {
            size_t done = (size_t)(last - lb->buf);
            emit(c, lb->fd, lb->buf, done, false);
            memmove(lb->buf, last, lb->len - done);
            lb->len -= done;
        }
    }
}

void out_flush_partial(egrun_linebuf *lb, const egrun_cmd *c)
{
    if (lb->len) {
        emit(c, lb->fd, lb->buf, lb->len, true);
        lb->len = 0;
    }
}

void out_free(egrun_linebuf *lb)
{
    free(lb->buf);
    lb->buf = NULL;
    lb->len = lb->cap = 0;
}
