#include "zkflow/watch.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

typedef struct watched {
    int wd;     /* the directory's watch */
    char *name; /* the file's name within it */
    int id;
} watched_t;

struct zf_watch {
    int fd;
    watched_t *v;
    size_t n;
};

zf_watch_t *zf_watch_new(char *err, size_t errlen) {
    zf_watch_t *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (w->fd < 0) {
        snprintf(err, errlen, "inotify: %s", strerror(errno));
        free(w);
        return NULL;
    }
    return w;
}

void zf_watch_destroy(zf_watch_t *w) {
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        free(w->v[i].name);
    free(w->v);
    close(w->fd);
    free(w);
}

int zf_watch_add(zf_watch_t *w, const char *file, int id, char *err,
                 size_t errlen) {
    const char *slash = strrchr(file, '/');
    char *dir = slash ? strndup(file, (size_t)(slash - file) + 1)
                      : strdup("./");
    char *name = strdup(slash ? slash + 1 : file);
    watched_t *v = realloc(w->v, (w->n + 1) * sizeof *v);
    if (!dir || !name || !v) {
        snprintf(err, errlen, "out of memory");
        free(dir);
        free(name);
        if (v)
            w->v = v;
        return -1;
    }
    w->v = v;
    /* The same directory gives the same watch descriptor back. */
    int wd = inotify_add_watch(w->fd, dir,
                               IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE);
    if (wd < 0) {
        snprintf(err, errlen, "cannot watch %s: %s", dir, strerror(errno));
        free(dir);
        free(name);
        return -1;
    }
    free(dir);
    w->v[w->n++] = (watched_t){wd, name, id};
    return 0;
}

int zf_watch_fd(const zf_watch_t *w) { return w->fd; }

void zf_watch_read(zf_watch_t *w, void (*changed)(void *ctx, int id),
                   void *ctx) {
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    ssize_t n;
    while ((n = read(w->fd, buf, sizeof buf)) > 0) {
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            for (size_t i = 0; ev->len && i < w->n; i++)
                if (w->v[i].wd == ev->wd && strcmp(w->v[i].name, ev->name) == 0)
                    changed(ctx, w->v[i].id);
            p += sizeof *ev + ev->len;
        }
    }
}
