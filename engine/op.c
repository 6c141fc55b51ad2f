#include "zkflow/op.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[] = {
    [ZF_OP_UPSERT] = "upsert",
    [ZF_OP_CREATE] = "create",
    [ZF_OP_SET] = "set",
    [ZF_OP_DELETE] = "delete",
};

const char *zf_op_name(zf_op_type_t type) {
    if ((size_t)type < sizeof op_names / sizeof op_names[0])
        return op_names[type];
    return "?";
}

int zf_op_parse_type(const char *name, zf_op_type_t *out) {
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++) {
        if (strcmp(name, op_names[i]) == 0) {
            *out = (zf_op_type_t)i;
            return 0;
        }
    }
    return -1;
}

zf_err_t zf_path_check(const char *path, size_t len, char *err, size_t errlen) {
    if (len == 0 || path[0] != '/') {
        snprintf(err, errlen, "path must start with '/'");
        return ZF_ERECORD;
    }
    if (len == 1)
        return ZF_OK;
    if (path[len - 1] == '/') {
        snprintf(err, errlen, "path must not end with '/'");
        return ZF_ERECORD;
    }
    size_t comp = 1; /* start of the current component */
    for (size_t i = 1; i <= len; i++) {
        if (i < len && path[i] != '/') {
            unsigned char c = (unsigned char)path[i];
            if (c < 0x20 || c == 0x7f) {
                snprintf(err, errlen,
                         "path has a control character at byte %zu", i);
                return ZF_ERECORD;
            }
            continue;
        }
        size_t clen = i - comp;
        if (clen == 0) {
            snprintf(err, errlen, "path has an empty component ('//')");
            return ZF_ERECORD;
        }
        if ((clen == 1 && path[comp] == '.') ||
            (clen == 2 && path[comp] == '.' && path[comp + 1] == '.')) {
            snprintf(err, errlen, "path has a '.' or '..' component");
            return ZF_ERECORD;
        }
        comp = i + 1;
    }
    return ZF_OK;
}

int zf_path_is_under(const char *path, const char *root) {
    size_t rlen = strlen(root);
    if (rlen == 1)
        return 1;
    return strncmp(path, root, rlen) == 0 &&
           (path[rlen] == '\0' || path[rlen] == '/');
}

zf_err_t zf_op_validate(const zf_op_t *op, const char *root, char *err,
                        size_t errlen) {
    size_t plen = strlen(op->path);
    if (zf_path_check(op->path, plen, err, errlen) != ZF_OK)
        return ZF_ERECORD;
    if (!zf_path_is_under(op->path, root)) {
        snprintf(err, errlen, "path %s is outside the script's root %s",
                 op->path, root);
        return ZF_ERECORD;
    }
    if (op->type == ZF_OP_DELETE && strcmp(op->path, "/") == 0) {
        snprintf(err, errlen, "cannot delete '/'");
        return ZF_ERECORD;
    }
    if (plen + op->datalen > ZF_OP_MAX_BYTES) {
        snprintf(err, errlen,
                 "payload of %zu bytes is over the limit (%d bytes with the "
                 "path)",
                 op->datalen, ZF_OP_MAX_BYTES);
        return ZF_ERECORD;
    }
    return ZF_OK;
}

void zf_op_clear(zf_op_t *op) {
    free(op->path);
    free(op->data);
    memset(op, 0, sizeof *op);
}
