/* Whole-file reads (scripts, fixtures, configs' neighbours). */
#ifndef ZKFLOW_FILE_H
#define ZKFLOW_FILE_H

#include <stddef.h>

/* Read the file at `path` into a new NUL-terminated buffer (caller frees);
 * *len is its length without the NUL. Returns NULL with "PATH: reason" in
 * err on failure, errno then says why (ENOENT: no such file). */
char *zf_read_file(const char *path, size_t *len, char *err, size_t errlen);

#endif
