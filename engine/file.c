#include "zkflow/file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int zf_too_large(const char *name, size_t len, char *err, size_t errlen) {
    if (len <= ZF_FILE_MAX_BYTES)
        return 0;
    snprintf(err, errlen, "%s: larger than 1 MiB (%d bytes), the limit for "
                          "a script or fixture (ZooKeeper's for a znode)",
             name, ZF_FILE_MAX_BYTES);
    return 1;
}

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
    /* One byte past the limit tells a file at the limit from a larger one,
     * without reading more of an endless one (/dev/zero, a pipe). */
    while (n <= ZF_FILE_MAX_BYTES) {
        if (cap - n < 2) {
            cap = cap ? cap * 2 : 8192;
            if (cap > ZF_FILE_MAX_BYTES + 2)
                cap = ZF_FILE_MAX_BYTES + 2;
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
    if (zf_too_large(path, n, err, errlen) || ferror(fp)) {
        int saved = n > ZF_FILE_MAX_BYTES ? EFBIG : errno;
        if (saved != EFBIG)
            snprintf(err, errlen, "%s: cannot read: %s", path,
                     strerror(saved));
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
