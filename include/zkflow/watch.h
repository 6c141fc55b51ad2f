/* Watch: notices when script files change on disk (inotify).
 *
 * Directories are watched rather than files, so both ways editors save a
 * file work: writing it in place, and writing a new file then renaming it
 * over the old one. */
#ifndef ZKFLOW_WATCH_H
#define ZKFLOW_WATCH_H

#include <stddef.h>

typedef struct zf_watch zf_watch_t;

/* A new watcher; NULL with the reason in err. */
zf_watch_t *zf_watch_new(char *err, size_t errlen);

/* Free the watcher; accepts NULL. */
void zf_watch_destroy(zf_watch_t *w);

/* Watch `file` (copied) and report changes to it as `id`. Returns 0, or -1
 * with the reason in err (e.g. its directory cannot be watched). */
int zf_watch_add(zf_watch_t *w, const char *file, int id, char *err,
                 size_t errlen);

/* A descriptor that becomes readable when changes are waiting. */
int zf_watch_fd(const zf_watch_t *w);

/* Read waiting events without blocking and call changed(ctx, id) for each
 * watched file written, created, or renamed into place (possibly more than
 * once per file). */
void zf_watch_read(zf_watch_t *w, void (*changed)(void *ctx, int id),
                   void *ctx);

#endif
