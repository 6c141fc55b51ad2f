#include "zkflow/op.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[ZF_OP_NTYPES] = {
    [ZF_OP_UPSERT] = "upsert", [ZF_OP_CREATE] = "create",
    [ZF_OP_SET] = "set",       [ZF_OP_DELETE] = "delete",
    [ZF_OP_CHECK] = "check",
};

static const char *const mode_names[] = {
    [ZF_MODE_PERSISTENT] = "persistent",
    [ZF_MODE_SEQUENTIAL] = "sequential",
    [ZF_MODE_CONTAINER] = "container",
    [ZF_MODE_TTL] = "ttl",
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int find_name(const char *const *names, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(name, names[i]) == 0)
            return (int)i;
    return -1;
}

const char *zf_op_name(zf_op_type_t type) {
    return (size_t)type < COUNT(op_names) ? op_names[type] : "?";
}

int zf_op_parse_type(const char *name, zf_op_type_t *out) {
    int i = find_name(op_names, COUNT(op_names), name);
    if (i < 0)
        return -1;
    *out = (zf_op_type_t)i;
    return 0;
}

const char *zf_mode_name(zf_create_mode_t mode) {
    return (size_t)mode < COUNT(mode_names) ? mode_names[mode] : "?";
}

int zf_mode_parse(const char *name, zf_create_mode_t *out) {
    int i = find_name(mode_names, COUNT(mode_names), name);
    if (i < 0)
        return -1;
    *out = (zf_create_mode_t)i;
    return 0;
}

/* ---------------------------------------------------------------- paths */

size_t zf_utf8_char(const char *str, size_t len, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
        n = 2, v = c & 0x1f, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, v = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* The ZooKeeper server refuses these in a path (PathUtils.validatePath
 * checks UTF-16 units: a character above U+FFFF is a surrogate pair). */
static int zk_refuses(uint32_t cp) {
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) ||
           (cp >= 0xd800 && cp <= 0xf8ff) || cp >= 0xfff0;
}

/* A C0 or C1 control character, or DEL: escaped in messages. */
static int is_control(uint32_t cp) {
    return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f);
}

/* The character at s[i] as zf_op_escape writes it: into esc (room for 16
 * bytes), returning its length; *n is set to the bytes of s it covers. */
static size_t escape_char(const unsigned char *s, size_t len, size_t i,
                          char *esc, size_t *n) {
    static const char hex[] = "0123456789abcdef";
    uint32_t cp = s[i];
    size_t k = 0, m = 1;
    if (!(m = zf_utf8_char((const char *)s + i, len - i, &cp)))
        m = 1, cp = 0; /* not UTF-8: this byte, escaped */
    if (s[i] == '\\') {
        esc[k++] = '\\';
        esc[k++] = '\\';
    } else if (is_control(cp)) {
        for (size_t j = i; j < i + m; j++) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[s[j] >> 4];
            esc[k++] = hex[s[j] & 15];
        }
    } else {
        memcpy(esc, s + i, m);
        k = m;
    }
    *n = m;
    return k;
}

const char *zf_op_escape(const char *s, size_t len, char *out,
                         size_t outlen) {
    const unsigned char *u = (const unsigned char *)s;
    size_t room = outlen - 1, full = 0, n;
    char esc[16];
    for (size_t i = 0; i < len; i += n)
        full += escape_char(u, len, i, esc, &n);
    /* When it does not fit: the head up to `head` bytes, "...", and the
     * characters whose escapes add up to at most `tail` bytes at the end. */
    size_t head = room, tail = 0;
    if (full > room) {
        head = room > 3 ? (room - 3) * 2 / 3 : 0;
        tail = room > 3 ? room - 3 - head : 0;
    }
    size_t o = 0, before = 0; /* escaped length of s[0..i) */
    int cut = 0;
    for (size_t i = 0; i < len; i += n) {
        size_t k = escape_char(u, len, i, esc, &n);
        if (!cut && o + k <= head) {
            memcpy(out + o, esc, k);
            o += k;
        } else if (!cut) {
            cut = 1;
            if (o + 3 <= room) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
        }
        if (cut && full - before <= tail && o + k <= room) {
            memcpy(out + o, esc, k);
            o += k;
        }
        before += k;
    }
    out[o] = '\0';
    return out;
}

#define BYTES(b) (0x0101010101010101ull * (b))

/* The high bit of each byte of w that is special in a path: below 0x20,
 * 0x7f, '/', or 0x80 and up (not ASCII); the other bits clear. Exact per
 * byte (no borrow runs from one byte into the next), so the bits can be
 * walked one by one. */
static uint64_t special_bytes(uint64_t w) {
    uint64_t low7 = w & BYTES(0x7f);
    uint64_t ctl = ~(low7 + BYTES(0x60)) & ~w;  /* below 0x20 */
    uint64_t x = w ^ BYTES(0x7f), y = w ^ BYTES('/');
    uint64_t del = ~(((x & BYTES(0x7f)) + BYTES(0x7f)) | x); /* == 0x7f */
    uint64_t slash = ~(((y & BYTES(0x7f)) + BYTES(0x7f)) | y); /* == '/' */
    return (ctl | del | slash | w) & BYTES(0x80);
}

/* Room for a path in a message: paths may be long, messages are not. */
#define SHOWN 160

/* Room for why a path is invalid (without the path). */
#define WHY 96

/* Set why to the formatted reason; returns ZF_ERECORD. */
static zf_err_t bad_path(char *why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static zf_err_t bad_path(char *why, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, WHY, fmt, ap);
    va_end(ap);
    return ZF_ERECORD;
}

/* The component path[at..at+len): not empty, "." or "..". */
static zf_err_t check_component(const char *path, size_t len, char *why) {
    if (len == 0)
        return bad_path(why, "has an empty component ('//')");
    if ((len == 1 && path[0] == '.') ||
        (len == 2 && path[0] == '.' && path[1] == '.'))
        return bad_path(why, "has a '.' or '..' component");
    return ZF_OK;
}

/* The character at path[i], not '/' but special (special_bytes): the
 * reason it is refused, or ZF_OK with *next just past it. */
static zf_err_t check_char(const char *path, size_t len, size_t i,
                           size_t *next, char *why) {
    const unsigned char *u = (const unsigned char *)path;
    uint32_t cp = u[i];
    size_t n = 1;
    if (u[i] >= 0x80 && !(n = zf_utf8_char(path + i, len - i, &cp)))
        return bad_path(why, "is not valid UTF-8 at byte %zu", i);
    if (cp == 0)
        return bad_path(why, "has a NUL byte at byte %zu", i);
    if (is_control(cp))
        return bad_path(why, "has a control character at byte %zu", i);
    if (zk_refuses(cp))
        return bad_path(why,
                        "has a character ZooKeeper refuses in paths (U+%04X) "
                        "at byte %zu",
                        (unsigned)cp, i);
    *next = i + n;
    return ZF_OK;
}

/* zf_path_check's verdict, the reason in why (WHY bytes) without the path
 * and the word "path". */
static zf_err_t path_problem(const char *path, size_t len, char *why) {
    if (len == 0 || path[0] != '/')
        return bad_path(why, "must start with '/'");
    if (len == 1)
        return ZF_OK;
    if (path[len - 1] == '/')
        return bad_path(why, "must not end with '/'");
    /* Eight bytes at a time; the last few loaded into a word padded with
     * '/' (which is cut off below). Only the special bytes are looked at:
     * a '/' ends a component; anything else is an error, or the start of
     * a multibyte character, whose other bytes are then passed over. */
    size_t comp = 1; /* start of the current component */
    size_t next = 1; /* first byte not inside a character looked at */
    for (size_t at = 1; at < len; at += 8) {
        uint64_t w;
        size_t n = len - at;
        if (n >= 8) {
            memcpy(&w, path + at, 8);
        } else {
            unsigned char pad[8];
            memset(pad, '/', sizeof pad);
            memcpy(pad, path + at, n);
            memcpy(&w, pad, 8);
        }
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        w = __builtin_bswap64(w); /* byte i of the path in bits 8i..8i+7 */
#endif
        uint64_t m = special_bytes(w);
        if (n < 8)
            m &= (1ull << (8 * n)) - 1; /* not the padding */
        for (; m; m &= m - 1) {
            size_t i = at + (size_t)__builtin_ctzll(m) / 8;
            if (i < next)
                continue; /* inside a multibyte character */
            if (path[i] != '/') {
                if (check_char(path, len, i, &next, why) != ZF_OK)
                    return ZF_ERECORD;
                continue;
            }
            /* Only a component of 2 bytes or fewer can be refused. */
            if (i - comp <= 2 &&
                check_component(path + comp, i - comp, why) != ZF_OK)
                return ZF_ERECORD;
            comp = i + 1;
        }
    }
    return check_component(path + comp, len - comp, why);
}

zf_err_t zf_path_check(const char *path, size_t len, char *err,
                       size_t errlen) {
    char why[WHY];
    if (path_problem(path, len, why) == ZF_OK)
        return ZF_OK;
    snprintf(err, errlen, "path %s", why);
    return ZF_ERECORD;
}

zf_err_t zf_path_explain(const char *path, size_t len, char *err,
                         size_t errlen) {
    char why[WHY], shown[SHOWN];
    if (len == 0) {
        snprintf(err, errlen, "path is empty (it must start with '/')");
        return ZF_ERECORD;
    }
    if (path_problem(path, len, why) == ZF_OK)
        return ZF_OK;
    snprintf(err, errlen, "path %s %s",
             zf_op_escape(path, len, shown, sizeof shown), why);
    return ZF_ERECORD;
}

/* zf_path_is_under, with both lengths known. */
static int is_under(const char *path, size_t plen, const char *root,
                    size_t rlen) {
    if (rlen == 1)
        return 1;
    return plen >= rlen && memcmp(path, root, rlen) == 0 &&
           (plen == rlen || path[rlen] == '/');
}

int zf_path_is_under(const char *path, const char *root) {
    return is_under(path, strlen(path), root, strlen(root));
}

/* ZooKeeper's counter on a sequential node's name: 10 characters, "%010d"
 * of a signed 32-bit number. */
#define SEQ_DIGITS 10

/* True when a sequential create at path[0..plen) can make a node in the
 * subtree `tree` (not "/"): when the path lies below it (not at it: the
 * node is then a sibling of the subtree), or when the tree is the path plus
 * a counter. */
static int seq_can_reach(const char *path, size_t plen, const char *tree,
                         size_t tlen) {
    if (plen > tlen)
        return is_under(path, plen, tree, tlen);
    if (tlen != plen + SEQ_DIGITS || memcmp(tree, path, plen) != 0)
        return 0;
    for (size_t i = plen; i < tlen; i++)
        if ((tree[i] < '0' || tree[i] > '9') && tree[i] != '-')
            return 0;
    return 1;
}

/* ZooKeeper's own subtree: quotas, the ensemble's configuration. */
static const zf_reserved_t zookeeper_subtree = {"/zookeeper",
                                                "ZooKeeper's own subtree"};

/* The op touches the reserved subtree r (see zf_op_rules_t)? Sets err. */
static int touches_reserved(const zf_op_t *op, size_t plen,
                            const zf_reserved_t *r, char *err,
                            size_t errlen) {
    char shown[SHOWN];
    size_t rlen = strlen(r->path);
    if (op->type == ZF_OP_CREATE && op->mode == ZF_MODE_SEQUENTIAL) {
        if (!seq_can_reach(op->path, plen, r->path, rlen))
            return 0;
        snprintf(err, errlen,
                 "a sequential create at %s can make a node in %s (%s), "
                 "which scripts may not write",
                 zf_op_escape(op->path, plen, shown, sizeof shown), r->path,
                 r->owner);
        return 1;
    }
    if (is_under(op->path, plen, r->path, rlen)) {
        snprintf(err, errlen,
                 "path %s is in %s (%s), which scripts may not write",
                 zf_op_escape(op->path, plen, shown, sizeof shown), r->path,
                 r->owner);
        return 1;
    }
    if (op->type == ZF_OP_DELETE && op->recursive &&
        is_under(r->path, rlen, op->path, plen)) {
        snprintf(err, errlen,
                 "a recursive delete of %s would delete %s (%s), which "
                 "scripts may not write",
                 zf_op_escape(op->path, plen, shown, sizeof shown), r->path,
                 r->owner);
        return 1;
    }
    return 0;
}

/* Which optional fields each op type takes. */
static zf_err_t check_fields(const zf_op_t *op, char *err, size_t errlen) {
    const char *name = zf_op_name(op->type);
    int takes_version = op->type == ZF_OP_SET || op->type == ZF_OP_DELETE ||
                        op->type == ZF_OP_CHECK;
    if (op->version != ZF_VERSION_ANY && !takes_version) {
        snprintf(err, errlen, "%s takes no version", name);
        return ZF_ERECORD;
    }
    if (op->version < ZF_VERSION_ANY) {
        snprintf(err, errlen, "version must be 0 or more");
        return ZF_ERECORD;
    }
    if (op->type == ZF_OP_CHECK && op->version == ZF_VERSION_ANY) {
        snprintf(err, errlen, "check needs a version");
        return ZF_ERECORD;
    }
    if (op->mode != ZF_MODE_PERSISTENT && op->type != ZF_OP_CREATE) {
        snprintf(err, errlen, "%s takes no mode (only create does)", name);
        return ZF_ERECORD;
    }
    if ((op->mode == ZF_MODE_TTL) != (op->ttl_ms != 0)) {
        snprintf(err, errlen, op->mode == ZF_MODE_TTL
                                  ? "mode ttl needs a ttl (milliseconds)"
                                  : "ttl goes with mode ttl only");
        return ZF_ERECORD;
    }
    if (op->ttl_ms < 0) {
        snprintf(err, errlen, "ttl must be more than 0 ms");
        return ZF_ERECORD;
    }
    if (op->ttl_ms > ZF_OP_MAX_TTL_MS) {
        snprintf(err, errlen,
                 "ttl must be at most %lld ms (ZooKeeper's limit, about 34 "
                 "years)",
                 (long long)ZF_OP_MAX_TTL_MS);
        return ZF_ERECORD;
    }
    if (op->recursive && op->type != ZF_OP_DELETE) {
        snprintf(err, errlen, "%s takes no recursive flag", name);
        return ZF_ERECORD;
    }
    if (op->recursive && op->version != ZF_VERSION_ANY) {
        snprintf(err, errlen, "a recursive delete takes no version");
        return ZF_ERECORD;
    }
    if (op->data && (op->type == ZF_OP_DELETE || op->type == ZF_OP_CHECK)) {
        snprintf(err, errlen, "%s takes no data", name);
        return ZF_ERECORD;
    }
    return ZF_OK;
}

/* zf_op_validate, with root's length known; sets *plen to the path's. */
static zf_err_t op_validate(const zf_op_t *op, const zf_op_rules_t *rules,
                            size_t rlen, size_t *plen, char *err,
                            size_t errlen) {
    if ((unsigned)op->type >= ZF_OP_NTYPES) {
        snprintf(err, errlen, "unknown op");
        return ZF_ERECORD;
    }
    if (!(rules->allowed & ZF_OP_BIT(op->type))) {
        snprintf(err, errlen, "op %s is not allowed for this script",
                 zf_op_name(op->type));
        return ZF_ERECORD;
    }
    if (!op->path) {
        snprintf(err, errlen, "%s needs a path", zf_op_name(op->type));
        return ZF_ERECORD;
    }
    *plen = strlen(op->path);
    char why[WHY], shown[SHOWN];
    if (path_problem(op->path, *plen, why) != ZF_OK)
        return zf_path_explain(op->path, *plen, err, errlen);
    const char *root = rules->root;
    if (!is_under(op->path, *plen, root, rlen)) {
        snprintf(err, errlen, "path %s is outside the script's root %s",
                 zf_op_escape(op->path, *plen, shown, sizeof shown), root);
        return ZF_ERECORD;
    }
    if (op->type == ZF_OP_DELETE && *plen == 1) {
        snprintf(err, errlen, "cannot delete '/'");
        return ZF_ERECORD;
    }
    if (op->type == ZF_OP_CREATE && op->mode == ZF_MODE_SEQUENTIAL) {
        if (*plen == 1) {
            snprintf(err, errlen, "a sequential node needs a name prefix");
            return ZF_ERECORD;
        }
        /* The node is the path plus a counter: at the root itself, that
         * is a sibling of the root, outside it. */
        if (rlen > 1 && *plen == rlen) {
            snprintf(err, errlen,
                     "a sequential create at %s makes %s0000000001 and so "
                     "on, outside the script's root %s (name a node below "
                     "it, e.g. %s/n-)",
                     root, root, root, root);
            return ZF_ERECORD;
        }
    }
    /* Touching a subtree takes the same first character as its path (the
     * op's path is not "/" here, nor is the subtree's): most ops are done
     * with each after one comparison. */
    const zf_reserved_t *zk = &zookeeper_subtree;
    if (op->path[1] == zk->path[1] &&
        touches_reserved(op, *plen, zk, err, errlen))
        return ZF_ERECORD;
    for (size_t i = 0; i < rules->nreserved; i++) {
        const zf_reserved_t *r = &rules->reserved[i];
        if (op->path[1] == r->path[1] &&
            touches_reserved(op, *plen, r, err, errlen))
            return ZF_ERECORD;
    }
    return check_fields(op, err, errlen);
}

zf_err_t zf_op_validate(const zf_op_t *op, const zf_op_rules_t *rules,
                        char *err, size_t errlen) {
    size_t plen;
    return op_validate(op, rules, strlen(rules->root), &plen, err, errlen);
}

size_t zf_op_request_bytes(zf_op_type_t type, const char *path, size_t plen,
                           size_t datalen) {
    size_t n = plen + datalen + ZF_OP_OVERHEAD;
    if (type == ZF_OP_UPSERT)
        for (size_t k = 1; k < plen; k++)
            if (path[k] == '/')
                n += k + ZF_OP_OVERHEAD; /* a create of path[0..k) */
    return n;
}

zf_err_t zf_op_check_bytes(size_t bytes, char *err, size_t errlen) {
    if (bytes <= ZF_OP_MAX_BYTES)
        return ZF_OK;
    snprintf(err, errlen,
             "%zu bytes of ZooKeeper request (paths, data, %d per op, the "
             "parents an upsert may create), over the limit of %d bytes per "
             "record (ZooKeeper's request limit)",
             bytes, ZF_OP_OVERHEAD, ZF_OP_MAX_BYTES);
    return ZF_ERECORD;
}

zf_err_t zf_oplist_validate(zf_oplist_t *l, const zf_op_rules_t *rules,
                            char *err, size_t errlen) {
    size_t bytes = 0, rlen = strlen(rules->root);
    for (size_t i = 0; i < l->n; i++) {
        const zf_op_t *op = &l->ops[i];
        char why[512];
        size_t plen;
        if (op_validate(op, rules, rlen, &plen, why, sizeof why) != ZF_OK) {
            if (l->n == 1)
                snprintf(err, errlen, "%s", why);
            else
                snprintf(err, errlen, "op %zu: %s", i + 1, why);
            return ZF_ERECORD;
        }
        if ((op->mode == ZF_MODE_TTL || op->mode == ZF_MODE_CONTAINER) &&
            l->n > 1) {
            /* The 3.8 C client's zoo_create_op_init has no TTL argument, and
             * it aborts (deserialize_multi: Assertion `entry') on the result
             * of a container create inside a multi. */
            snprintf(err, errlen, "op %zu: a %s node cannot be created in a "
                                  "list of ops (ZooKeeper's C client cannot "
                                  "do it in a multi); return it alone",
                     i + 1, zf_mode_name(op->mode));
            return ZF_ERECORD;
        }
        bytes += zf_op_request_bytes(op->type, op->path, plen, op->datalen);
    }
    l->bytes = bytes;
    return zf_op_check_bytes(bytes, err, errlen);
}

/* Packed lists of up to PACKED_SMALL bytes all take blocks of that size,
 * and freed ones wait in `spare_blocks` (linked through their first bytes)
 * for the next record: the engine frees a whole batch of records at once,
 * more than glibc's per-thread cache keeps, so each malloc and free would
 * otherwise sort chunks through its bins (a few hundred instructions each,
 * per record). The spares never outnumber the blocks once in use together,
 * which max_queued_records bounds. Shared by every thread, hence the lock. */
#define PACKED_SMALL 256
enum { PACKED_EXACT = 1, PACKED_BLOCK = 2 }; /* values of zf_oplist_t.packed */

static struct {
    pthread_mutex_t lock;
    void *head;
} spare_blocks = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void *block_get(void) {
    pthread_mutex_lock(&spare_blocks.lock);
    void *b = spare_blocks.head;
    if (b)
        memcpy(&spare_blocks.head, b, sizeof b);
    pthread_mutex_unlock(&spare_blocks.lock);
    return b ? b : malloc(PACKED_SMALL);
}

static void block_put(void *b) {
    pthread_mutex_lock(&spare_blocks.lock);
    memcpy(b, &spare_blocks.head, sizeof b);
    spare_blocks.head = b;
    pthread_mutex_unlock(&spare_blocks.lock);
}

/* A packed list's op gets strings of its own and an array of its own. */
static int unpack(zf_oplist_t *l) {
    zf_op_t *v = malloc(2 * sizeof *v);
    if (!v)
        return -1;
    v[0] = l->ops[0];
    v[0].path = strdup(l->ops[0].path);
    v[0].data = NULL;
    if (l->ops[0].data && (v[0].data = malloc(l->ops[0].datalen + 1)))
        memcpy(v[0].data, l->ops[0].data, l->ops[0].datalen + 1);
    if (!v[0].path || (l->ops[0].data && !v[0].data)) {
        free(v[0].path);
        free(v[0].data);
        free(v);
        return -1;
    }
    if (l->packed == PACKED_BLOCK)
        block_put(l->ops);
    else
        free(l->ops);
    l->ops = v;
    l->cap = 2;
    l->packed = 0;
    return 0;
}

zf_op_t *zf_oplist_push(zf_oplist_t *l) {
    if (l->packed && unpack(l) != 0)
        return NULL;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 1; /* most records have one op */
        zf_op_t *v = realloc(l->ops, cap * sizeof *v);
        if (!v)
            return NULL;
        l->ops = v;
        l->cap = cap;
    }
    zf_op_t *op = &l->ops[l->n++];
    memset(op, 0, sizeof *op);
    op->version = ZF_VERSION_ANY;
    return op;
}

zf_op_t *zf_oplist_push_packed(zf_oplist_t *l, const char *path, size_t plen,
                               const char *data, size_t datalen) {
    if (l->n)
        return NULL;
    size_t size = sizeof(zf_op_t) + plen + 1 + (data ? datalen + 1 : 0);
    int small = size <= PACKED_SMALL;
    zf_op_t *op = small ? block_get() : malloc(size);
    if (!op)
        return NULL;
    memset(op, 0, sizeof *op);
    op->version = ZF_VERSION_ANY;
    op->path = (char *)(op + 1);
    memcpy(op->path, path, plen);
    op->path[plen] = '\0';
    if (data) {
        op->data = op->path + plen + 1;
        memcpy(op->data, data, datalen);
        op->data[datalen] = '\0';
        op->datalen = datalen;
    }
    free(l->ops); /* a cleared list's buffer */
    l->ops = op;
    l->n = l->cap = 1;
    l->packed = small ? PACKED_BLOCK : PACKED_EXACT;
    return op;
}

void zf_oplist_clear(zf_oplist_t *l) {
    if (l->packed) { /* the op and its strings go together */
        if (l->packed == PACKED_BLOCK)
            block_put(l->ops);
        else
            free(l->ops);
        l->ops = NULL;
        l->n = l->cap = 0;
        l->packed = 0;
        return;
    }
    for (size_t i = 0; i < l->n; i++)
        zf_op_clear(&l->ops[i]);
    l->n = 0;
}

void zf_oplist_free(zf_oplist_t *l) {
    zf_oplist_clear(l);
    free(l->ops);
    l->ops = NULL;
    l->cap = 0;
}

void zf_op_clear(zf_op_t *op) {
    free(op->path);
    free(op->data);
    memset(op, 0, sizeof *op);
    op->version = ZF_VERSION_ANY;
}

/* The path of a record that coalescing may replace or leave out: exactly
 * one set or upsert without a version. NULL otherwise. */
static const char *coalescable(const zf_oplist_t *l) {
    if (l->n != 1)
        return NULL;
    const zf_op_t *op = &l->ops[0];
    if ((op->type != ZF_OP_SET && op->type != ZF_OP_UPSERT) ||
        op->version != ZF_VERSION_ANY)
        return NULL;
    return op->path;
}

/* True when a and b are the same path or one lies below the other. */
static int related(const char *a, size_t la, const char *b, size_t lb) {
    if (la > lb)
        return related(b, lb, a, la);
    if (memcmp(a, b, la) != 0)
        return 0;
    return la == lb || b[la] == '/' || la == 1; /* la == 1: a is "/" */
}

static int touches(const zf_oplist_t *l, const char *path, size_t len) {
    for (size_t i = 0; i < l->n; i++)
        if (related(l->ops[i].path, strlen(l->ops[i].path), path, len))
            return 1;
    return 0;
}

size_t zf_oplist_coalesce(const zf_oplist_t **lists, size_t n,
                          unsigned char *drop) {
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        drop[i] = 0;
        const char *path = coalescable(lists[i]);
        if (!path)
            continue;
        size_t len = strlen(path);
        zf_op_type_t type = lists[i]->ops[0].type;
        size_t end = n - i - 1 > ZF_COALESCE_WINDOW ? i + 1 + ZF_COALESCE_WINDOW
                                                     : n;
        for (size_t j = i + 1; j < end; j++) {
            if (!touches(lists[j], path, len))
                continue;
            const char *later = coalescable(lists[j]);
            if (later && lists[j]->ops[0].type == type &&
                strcmp(later, path) == 0) {
                drop[i] = 1;
                dropped++;
            }
            break; /* the next record that touches the path decides */
        }
    }
    return dropped;
}
