#include "zkflow/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *zf_read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int saved = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        errno = saved;
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (cap - n < 2) {
            cap = cap ? cap * 2 : 8192;
            char *b = realloc(buf, cap);
            if (!b) {
                snprintf(err, errlen, "%s: out of memory", path);
                free(buf);
                fclose(fp);
                errno = ENOMEM;
                return NULL;
            }
            buf = b;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, fp);
        n += r;
        if (r == 0)
            break;
    }
    if (ferror(fp)) {
        int saved = errno;
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        free(buf);
        fclose(fp);
        errno = saved;
        return NULL;
    }
    fclose(fp);
    buf[n] = '\0';
    *len = n;
    return buf;
}
