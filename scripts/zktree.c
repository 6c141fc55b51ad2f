/* zktree: print (or delete) a ZooKeeper subtree, for the demo and tests.
 *
 *   zktree CONNECT PATH           one line per znode: "PATH<TAB>DATA", sorted
 *   zktree --delete CONNECT PATH  remove PATH and everything below it
 *   zktree --put CONNECT PATH     set PATH's data to stdin, creating it and
 *                                 its parents when missing (as an operator
 *                                 with zkCli would: no checks at all)
 *
 * With ZK_AUTH=SCHEME:CREDENTIALS in the environment, the session adds that
 * authentication first (for znodes whose ACL needs it).
 *
 * DATA is printed with backslash escapes for \n, \t, \\ and bytes outside
 * printable ASCII (\xNN); a znode without data prints nothing after the tab.
 * Exit status: 0 done (an absent PATH prints nothing), 1 ZooKeeper error,
 * 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zookeeper/zookeeper.h>

static zhandle_t *zh;

static int cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_escaped(const char *s, int n) {
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\\')
            fputs("\\\\", stdout);
        else if (c < 0x20 || c >= 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
}

static int child_path(char *out, size_t size, const char *path,
                      const char *name) {
    return snprintf(out, size, "%s/%s", strcmp(path, "/") ? path : "", name) <
                   (int)size
               ? 0
               : -1;
}

/* Visit path and its subtree; print before descending or delete after. */
static int walk(const char *path, int delete) {
    static char buf[1 << 20];
    int len = sizeof buf;
    int rc = delete ? ZOK : zoo_get(zh, path, 0, buf, &len, NULL);
    if (rc == ZNONODE)
        return ZOK;
    if (rc != ZOK)
        return rc;
    if (!delete) {
        fputs(path, stdout);
        putchar('\t');
        print_escaped(buf, len);
        putchar('\n');
    }
    struct String_vector kids = {0};
    rc = zoo_get_children(zh, path, 0, &kids);
    if (rc == ZNONODE)
        return ZOK;
    if (rc != ZOK)
        return rc;
    qsort(kids.data, (size_t)kids.count, sizeof *kids.data, cmp);
    for (int i = 0; i < kids.count && rc == ZOK; i++) {
        char child[4096];
        if (child_path(child, sizeof child, path, kids.data[i]) != 0)
            rc = ZBADARGUMENTS;
        else
            rc = walk(child, delete);
    }
    deallocate_String_vector(&kids);
    if (rc == ZOK && delete && strcmp(path, "/") != 0 &&
        strcmp(path, "/zookeeper") != 0) {
        rc = zoo_delete(zh, path, -1);
        if (rc == ZNONODE)
            rc = ZOK;
    }
    return rc;
}

/* Set path's data to `data`, creating the path and its parents. */
static int put(const char *path, const char *data, int len) {
    int rc = zoo_set(zh, path, data, len, -1);
    if (rc != ZNONODE)
        return rc;
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", path);
    for (char *s = strchr(parent + 1, '/'); s; s = strchr(s + 1, '/')) {
        *s = '\0';
        rc = zoo_create(zh, parent, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
        *s = '/';
        if (rc != ZOK && rc != ZNODEEXISTS)
            return rc;
    }
    rc = zoo_create(zh, path, data, len, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    return rc == ZNODEEXISTS ? zoo_set(zh, path, data, len, -1) : rc;
}

int main(int argc, char **argv) {
    int delete = argc == 4 && strcmp(argv[1], "--delete") == 0;
    int putting = argc == 4 && strcmp(argv[1], "--put") == 0;
    if (argc != 3 + (delete || putting)) {
        fprintf(stderr, "usage: zktree [--delete | --put] CONNECT PATH\n");
        return 2;
    }
    static char data[1 << 20];
    size_t len = putting ? fread(data, 1, sizeof data, stdin) : 0;
    int at = 1 + (delete || putting); /* CONNECT's position */
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zh = zookeeper_init(argv[at], NULL, 10000, NULL, NULL, 0);
    if (!zh) {
        perror("zookeeper_init");
        return 1;
    }
    const char *auth = getenv("ZK_AUTH");
    const char *colon = auth ? strchr(auth, ':') : NULL;
    if (colon) {
        char scheme[64];
        snprintf(scheme, sizeof scheme, "%.*s", (int)(colon - auth), auth);
        zoo_add_auth(zh, scheme, colon + 1, (int)strlen(colon + 1), NULL,
                     NULL);
    }
    int rc = putting ? put(argv[at + 1], data, (int)len)
                     : walk(argv[at + 1], delete);
    zookeeper_close(zh);
    if (rc != ZOK) {
        fprintf(stderr, "zktree: %s: %s\n", argv[at + 1], zerror(rc));
        return 1;
    }
    return 0;
}
