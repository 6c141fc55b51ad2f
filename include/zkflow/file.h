/* Whole-file reads (scripts, fixtures, configs' neighbours). */
#ifndef ZKFLOW_FILE_H
#define ZKFLOW_FILE_H

#include <stddef.h>

/* The largest file zf_read_file reads: 1 MiB, ZooKeeper's own limit for a
 * znode (jute.maxbuffer), so every script or fixture that loads from a file
 * also fits a zk: source, and no file can fill memory. */
#define ZF_FILE_MAX_BYTES (1 << 20)

/* When len is over ZF_FILE_MAX_BYTES: 1, with "NAME: larger than 1 MiB
 * ..." in err. Else 0 (err untouched). */
int zf_too_large(const char *name, size_t len, char *err, size_t errlen);

/* Read the regular file at `path` into a new NUL-terminated buffer (caller
 * frees); *len is its length without the NUL. Never blocks on what is not
 * a regular file (a FIFO nobody writes to, a device such as /dev/zero):
 * that is refused. Returns NULL with "PATH: reason" in err on failure,
 * errno then says why (ENOENT: no such file; EINVAL: not a regular file;
 * EFBIG: longer than ZF_FILE_MAX_BYTES, of which at most one byte more was
 * read). */
char *zf_read_file(const char *path, size_t *len, char *err, size_t errlen);

#endif
