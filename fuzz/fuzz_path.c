/* fuzz_path: engine/op.c, path validation (zf_path_check's eight bytes at a
 * time), op and op list validation, packed lists and coalescing. The input
 * is lines, each an op: a flags byte (type 0-7 with 5-7 unknown, mode,
 * recursive, data, version), a byte choosing the root, version and ttl,
 * and joining the op to the previous line's list, then the path's bytes.
 * zf_path_check is held to ZooKeeper's path rules (what passes, a server
 * takes) and must pass printable ASCII outside /zookeeper; an accepted op
 * to what op.h says of each type, to its root (a sequential create of the
 * root itself would make a node outside it), to the server's largest ttl,
 * and must not touch the reserved subtrees (op.h's zf_op_rules_t) nor
 * write in /zookeeper; a packed op must validate as the same op unpacked,
 * and a list of it only if the op does;
 * zf_oplist_coalesce to its contract in op.h. */
#include <stddef.h>
#include <stdint.h>

#include "fuzz.h"
#include "zkflow/op.h"

static const char *const roots[] = {
    "/", "/t", "/tenant-a", "/a/b", "/zookeeper", "/t/\xc3\xa9", "/x.y",
    "/0",
};
static const int32_t versions[] = {ZF_VERSION_ANY, 0, 5, -2};
static const int64_t ttls[] = {0, 1000, -1, (int64_t)1 << 40};
/* Subtrees refused to the ops, as zkflow's own znodes are; the second is
 * what a sequential create at /t/s can make. */
static const zf_reserved_t reserved[] = {
    {"/zkflow/offsets", "[engine] offsets_root"},
    {"/t/s0000000007", "a script in a znode"},
};
#define NRESERVED (sizeof reserved / sizeof reserved[0])

static zf_op_rules_t rules_for(const char *root) {
    return (zf_op_rules_t){.root = root, .allowed = ZF_OP_ALL,
                           .reserved = reserved, .nreserved = NRESERVED};
}

/* The largest ttl a ZooKeeper server takes (EphemeralType.TTL.maxValue),
 * written out here as the check's reference. */
#define ZK_MAX_TTL (((int64_t)1 << 40) - 1)

/* ZooKeeper's own rules (PathUtils.validatePath on the path the server
 * decodes from UTF-8): '/' first, no trailing '/', no empty, '.' or '..'
 * component, and no character in U+0000-U+001F, U+007F-U+009F,
 * U+D800-U+F8FF or U+FFF0-U+FFFF of UTF-16; bytes that are not UTF-8 decode
 * to U+FFFD, and a character past U+FFFF to a surrogate pair, so both are
 * refused too. */
static int zk_rules(const unsigned char *p, size_t n) {
    if (n == 0 || p[0] != '/')
        return 0;
    if (n == 1)
        return 1;
    size_t comp = 1;
    for (size_t i = 1; i <= n;) {
        if (i == n || p[i] == '/') {
            size_t len = i - comp;
            if (len == 0 || (len == 1 && p[comp] == '.') ||
                (len == 2 && p[comp] == '.' && p[comp + 1] == '.'))
                return 0;
            comp = ++i;
            continue;
        }
        unsigned c = p[i];
        size_t k = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2
                              : c >= 0xe0 && c <= 0xef ? 3 : 0;
        if (k == 0 || i + k > n)
            return 0; /* not UTF-8, or past U+FFFF */
        uint32_t v = k == 1 ? c : c & (k == 2 ? 0x1f : 0x0f);
        for (size_t j = 1; j < k; j++) {
            if ((p[i + j] & 0xc0) != 0x80)
                return 0;
            v = v << 6 | (p[i + j] & 0x3f);
        }
        if ((k == 3 && v < 0x800) || v <= 0x1f || (v >= 0x7f && v <= 0x9f) ||
            (v >= 0xd800 && v <= 0xf8ff) || v >= 0xfff0)
            return 0;
        i += k;
    }
    return 1;
}

/* Printable ASCII, not /zookeeper or below: any ZooKeeper takes it. */
static int plainly_fine(const unsigned char *p, size_t n) {
    if (n > 1000 || !zk_rules(p, n))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] >= 0x7f)
            return 0;
    return !(n >= 10 && memcmp(p, "/zookeeper", 10) == 0 &&
             (n == 10 || p[10] == '/'));
}

static int under(const char *path, const char *root) {
    size_t r = strlen(root);
    return r == 1 || (strncmp(path, root, r) == 0 &&
                      (path[r] == '\0' || path[r] == '/'));
}

static int related(const char *a, const char *b) {
    return under(a, b) || under(b, a);
}

/* The op reaches the subtree `tree`: its path is in it (for a sequential
 * create: the node, the path and a 10-digit counter), or it is a recursive
 * delete above it. */
static int touches(const zf_op_t *op, const char *tree) {
    size_t n = strlen(op->path), t = strlen(tree);
    if (op->type == ZF_OP_CREATE && op->mode == ZF_MODE_SEQUENTIAL)
        return (n > t && under(op->path, tree)) ||
               (t == n + 10 && strncmp(tree, op->path, n) == 0 &&
                strspn(tree + n, "0123456789") == 10);
    return under(op->path, tree) ||
           (op->type == ZF_OP_DELETE && op->recursive && under(tree, op->path));
}

/* An accepted op against op.h. */
static void check_accepted(const zf_op_t *op, const char *root) {
    char why[256];
    size_t n = strlen(op->path);
    if (zf_path_check(op->path, n, why, sizeof why) != ZF_OK)
        FUZZ_FAIL("op accepted with the invalid path %s: %s", op->path, why);
    if (!under(op->path, root) || !zf_path_is_under(op->path, root))
        FUZZ_FAIL("op accepted outside its root: %s, root %s", op->path,
                  root);
    if ((unsigned)op->type >= ZF_OP_NTYPES)
        FUZZ_FAIL("op of unknown type %d accepted", (int)op->type);
    if (op->type != ZF_OP_CHECK && touches(op, "/zookeeper"))
        FUZZ_FAIL("%s of %s accepted: the server refuses writes in "
                  "/zookeeper",
                  zf_op_name(op->type), op->path);
    for (size_t i = 0; i < NRESERVED; i++)
        if (touches(op, reserved[i].path))
            FUZZ_FAIL("%s of %s (mode %s) accepted: it reaches the reserved "
                      "%s",
                      zf_op_name(op->type), op->path, zf_mode_name(op->mode),
                      reserved[i].path);
    if (op->type == ZF_OP_CREATE && op->mode == ZF_MODE_SEQUENTIAL &&
        strcmp(op->path, root) == 0)
        FUZZ_FAIL("sequential create of the root %s accepted: ZooKeeper "
                  "makes %s0000000000, outside it",
                  root, root);
    if (op->type == ZF_OP_DELETE && n == 1)
        FUZZ_FAIL("delete of / accepted");
    int versioned = op->type == ZF_OP_SET || op->type == ZF_OP_DELETE ||
                    op->type == ZF_OP_CHECK;
    if ((op->version != ZF_VERSION_ANY && !versioned) || op->version < -1 ||
        (op->type == ZF_OP_CHECK && op->version == ZF_VERSION_ANY))
        FUZZ_FAIL("%s with version %d accepted", zf_op_name(op->type),
                  (int)op->version);
    if (op->mode != ZF_MODE_PERSISTENT && op->type != ZF_OP_CREATE)
        FUZZ_FAIL("%s with mode %s accepted", zf_op_name(op->type),
                  zf_mode_name(op->mode));
    if ((op->mode == ZF_MODE_TTL) != (op->ttl_ms > 0) || op->ttl_ms < 0 ||
        op->ttl_ms > ZK_MAX_TTL)
        FUZZ_FAIL("mode %s with ttl %lld accepted", zf_mode_name(op->mode),
                  (long long)op->ttl_ms);
    if (op->recursive &&
        (op->type != ZF_OP_DELETE || op->version != ZF_VERSION_ANY))
        FUZZ_FAIL("recursive %s accepted", zf_op_name(op->type));
    if (op->data && (op->type == ZF_OP_DELETE || op->type == ZF_OP_CHECK))
        FUZZ_FAIL("%s with data accepted", zf_op_name(op->type));
}

#define MAXLISTS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    zf_oplist_t lists[MAXLISTS] = {{0}};
    const char *list_root[MAXLISTS];
    size_t nlists = 0;
    char why[256], why2[256];
    for (size_t at = 0; at < size;) {
        const uint8_t *line = data + at;
        const uint8_t *nl = memchr(line, '\n', size - at);
        size_t len = nl ? (size_t)(nl - line) : size - at;
        at += len + 1;
        if (len < 2)
            continue;
        unsigned f = line[0], r = line[1];
        const char *path = (const char *)line + 2;
        size_t plen = len - 2;

        /* The path alone, in a buffer of its own size (ASan sees any read
         * past it). */
        char *p = malloc(plen ? plen : 1);
        if (!p)
            FUZZ_FAIL("out of memory");
        memcpy(p, path, plen);
        zf_err_t rc = zf_path_check(p, plen, why, sizeof why);
        if (rc == ZF_OK && !zk_rules((unsigned char *)p, plen))
            FUZZ_FAIL("path %.*s accepted: ZooKeeper refuses it", (int)plen,
                      p);
        if (rc != ZF_OK && plainly_fine((unsigned char *)p, plen))
            FUZZ_FAIL("path %.*s refused: %s", (int)plen, p, why);
        free(p);

        /* The op, unpacked and packed. */
        const char *root = roots[r & 7];
        int has_data = f >> 6 & 1;
        zf_oplist_t packed = {0}, plain = {0};
        zf_op_t *a = zf_oplist_push_packed(&packed, path, plen,
                                           has_data ? path : NULL, plen / 2);
        zf_op_t *b = zf_oplist_push(&plain);
        if (!a || !b || !(b->path = strndup(path, plen)) ||
            (has_data && !(b->data = strndup(path, plen / 2))))
            FUZZ_FAIL("out of memory");
        b->datalen = has_data ? strlen(b->data) : 0;
        if (has_data)
            a->datalen = strlen(a->data); /* as a C string, like b's */
        zf_op_t *ops[2] = {a, b};
        for (int i = 0; i < 2; i++) {
            ops[i]->type = (zf_op_type_t)(f & 7);
            ops[i]->mode = (zf_create_mode_t)(f >> 3 & 3);
            ops[i]->recursive = f >> 5 & 1;
            ops[i]->version = versions[r >> 3 & 3];
            ops[i]->ttl_ms = ttls[r >> 5 & 3];
        }
        zf_op_rules_t rules = rules_for(root);
        rc = zf_op_validate(a, &rules, why, sizeof why);
        zf_err_t rc2 = zf_op_validate(b, &rules, why2, sizeof why2);
        if (rc != rc2 || (rc != ZF_OK && strcmp(why, why2) != 0))
            FUZZ_FAIL("packed and plain ops differ: %s / %s",
                      rc ? why : "ok", rc2 ? why2 : "ok");
        if (rc == ZF_OK)
            check_accepted(a, root);
        /* A list adds its byte budget to what the op must pass. */
        if (zf_oplist_validate(&packed, &rules, why, sizeof why) == ZF_OK &&
            rc != ZF_OK)
            FUZZ_FAIL("a list of one op accepted, the op refused: %s", why2);

        /* Into the lists: its own, or the previous line's. */
        if (nlists == 0 || !(r & 0x80)) {
            if (nlists == MAXLISTS) {
                zf_oplist_free(&packed);
                zf_oplist_free(&plain);
                break;
            }
            list_root[nlists] = root;
            lists[nlists++] = packed;
            packed = (zf_oplist_t){0};
        } else {
            zf_oplist_t *l = &lists[nlists - 1];
            zf_op_t *c = zf_oplist_push(l);
            if (!c)
                FUZZ_FAIL("out of memory");
            *c = *b;
            *b = (zf_op_t){0};
        }
        zf_oplist_free(&packed);
        zf_oplist_free(&plain);
    }

    /* Each list against its ops; coalescing of lists valid under "/". */
    const zf_oplist_t *cl[MAXLISTS];
    size_t ncl = 0;
    for (size_t i = 0; i < nlists; i++) {
        zf_op_rules_t rules = rules_for(list_root[i]);
        zf_err_t rc = zf_oplist_validate(&lists[i], &rules, why, sizeof why);
        size_t bytes = 0;
        for (size_t k = 0; rc == ZF_OK && k < lists[i].n; k++) {
            const zf_op_t *op = &lists[i].ops[k];
            if (zf_op_validate(op, &rules, why2, sizeof why2) != ZF_OK)
                FUZZ_FAIL("list accepted with op %zu invalid: %s", k + 1,
                          why2);
            if (lists[i].n > 1 && (op->mode == ZF_MODE_TTL ||
                                   op->mode == ZF_MODE_CONTAINER))
                FUZZ_FAIL("a %s create accepted in a multi",
                          zf_mode_name(op->mode));
            /* What op.h says a request holds at least: path, data and
             * overhead, and for an upsert each ancestor's path. */
            size_t plen = strlen(op->path);
            bytes += plen + op->datalen + ZF_OP_OVERHEAD;
            for (size_t c = 1; op->type == ZF_OP_UPSERT && c < plen; c++)
                if (op->path[c] == '/')
                    bytes += c;
        }
        if (rc == ZF_OK &&
            (bytes > lists[i].bytes || lists[i].bytes > ZF_OP_MAX_BYTES))
            FUZZ_FAIL("list accepted as %zu bytes of request (at least %zu, "
                      "at most %d)",
                      lists[i].bytes, bytes, ZF_OP_MAX_BYTES);
        rules = rules_for("/");
        if (zf_oplist_validate(&lists[i], &rules, why, sizeof why) == ZF_OK)
            cl[ncl++] = &lists[i];
    }
    unsigned char drop[MAXLISTS];
    size_t dropped = zf_oplist_coalesce(cl, ncl, drop);
    size_t count = 0;
    for (size_t i = 0; i < ncl; i++) {
        /* op.h: dropped when exactly one set or upsert without a version,
         * and the next list touching its path (same, above, below) within
         * the window is exactly one op of that type on that path, without
         * a version. */
        int want = 0;
        const zf_op_t *op = &cl[i]->ops[0];
        if (cl[i]->n == 1 && op->version == ZF_VERSION_ANY &&
            (op->type == ZF_OP_SET || op->type == ZF_OP_UPSERT)) {
            for (size_t j = i + 1; j < ncl && j - i <= ZF_COALESCE_WINDOW;
                 j++) {
                int touch = 0;
                for (size_t k = 0; k < cl[j]->n; k++)
                    touch |= related(cl[j]->ops[k].path, op->path);
                if (!touch)
                    continue;
                const zf_op_t *later = &cl[j]->ops[0];
                want = cl[j]->n == 1 && later->type == op->type &&
                       later->version == ZF_VERSION_ANY &&
                       strcmp(later->path, op->path) == 0;
                break;
            }
        }
        if (drop[i] != want)
            FUZZ_FAIL("coalesce: list %zu (%s %s) %s", i,
                      zf_op_name(op->type), op->path,
                      want ? "kept" : "dropped");
        count += drop[i];
    }
    if (count != dropped)
        FUZZ_FAIL("coalesce said %zu dropped, marked %zu", dropped, count);
    for (size_t i = 0; i < nlists; i++)
        zf_oplist_free(&lists[i]);
    return 0;
}
