#include "zkflow/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int zf_too_large(const char *name, size_t len, char *err, size_t errlen) {
    if (len <= ZF_FILE_MAX_BYTES)
        return 0;
    snprintf(err, errlen, "%s: larger than 1 MiB (%d bytes), the limit for "
                          "a script or fixture (ZooKeeper's for a znode)",
             name, ZF_FILE_MAX_BYTES);
    return 1;
}

char *zf_read_file(const char *path, size_t *len, char *err, size_t errlen) {
    /* O_NONBLOCK: opening a FIFO nobody writes to returns at once. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    FILE *fp = NULL;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int saved = errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        errno = saved;
        return NULL;
    }
    int refused = 0;
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file (a script or fixture "
                              "is read from one)",
                 path);
        refused = EINVAL;
    } else if (zf_too_large(path, (size_t)st.st_size, err, errlen)) {
        refused = EFBIG;
    }
    if (refused) {
        close(fd);
        errno = refused;
        return NULL;
    }
    if (!(fp = fdopen(fd, "rb"))) {
        int saved = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        errno = saved;
        return NULL;
    }
    char *buf = NULL;
    size_t cap = 0, n = 0;
    /* One byte past the limit tells a file at the limit from a larger one,
     * should it grow while it is read. */
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
