/* zktree: print (or delete) a ZooKeeper subtree, for the demo and tests.
 *
 *   zktree CONNECT PATH           one line per znode: "PATH<TAB>DATA", sorted
 *   zktree --delete CONNECT PATH  remove PATH and everything below it
 *   zktree --count CONNECT PATH   print the number of PATH's children (0 when
 *                                 PATH is absent): one request, for polling
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
 * 2 usage.
 *
 * The children of a node are read (or deleted) with pipelined asynchronous
 * requests, WINDOW at a time: the fault tests read trees of tens of
 * thousands of nodes, which one synchronous round trip per node makes slow. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zookeeper/zookeeper.h>

#define WINDOW 1000

static zhandle_t *zh;

/* Completions in flight, signalled on the client's completion thread. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t idle = PTHREAD_COND_INITIALIZER;
static int inflight;

/* One child's answer. */
typedef struct answer {
    int rc;
    char *data; /* owned copy (get) */
    int len;
    int kids;   /* its number of children (get) */
} answer_t;

/* The session's last state (0 before any), set by on_session under lock
 * and signalled on idle. */
static int session_state;

static void on_session(zhandle_t *h, int type, int state, const char *path,
                       void *ctx) {
    (void)h, (void)path, (void)ctx;
    if (type != ZOO_SESSION_EVENT)
        return;
    pthread_mutex_lock(&lock);
    session_state = state;
    pthread_cond_broadcast(&idle);
    pthread_mutex_unlock(&lock);
}

/* Wait up to `seconds` for the session to be made (or refused: expired,
 * authentication failed). Requests sent before then fail with a
 * connection loss when the first server the client tries is down (an
 * ensemble with a server killed), although it then moves on to the next
 * one. With no server up, zktree fails after the wait. */
static void wait_session(int seconds) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += seconds;
    pthread_mutex_lock(&lock);
    while ((session_state == 0 || session_state == ZOO_CONNECTING_STATE ||
            session_state == ZOO_ASSOCIATING_STATE) &&
           pthread_cond_timedwait(&idle, &lock, &until) == 0)
        ;
    pthread_mutex_unlock(&lock);
}

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

static void print_node(const char *path, const char *data, int len) {
    fputs(path, stdout);
    putchar('\t');
    print_escaped(data, len);
    putchar('\n');
}

static int child_path(char *out, size_t size, const char *path,
                      const char *name) {
    return snprintf(out, size, "%s/%s", strcmp(path, "/") ? path : "", name) <
                   (int)size
               ? 0
               : -1;
}

static void completed(void) {
    pthread_mutex_lock(&lock);
    if (--inflight == 0)
        pthread_cond_signal(&idle);
    pthread_mutex_unlock(&lock);
}

static void wait_idle(void) {
    pthread_mutex_lock(&lock);
    while (inflight > 0)
        pthread_cond_wait(&idle, &lock);
    pthread_mutex_unlock(&lock);
}

static void on_data(int rc, const char *value, int len,
                    const struct Stat *stat, const void *ctx) {
    answer_t *a = (answer_t *)ctx;
    a->rc = rc;
    if (rc == ZOK) {
        a->kids = stat->numChildren;
        a->len = value && len > 0 ? len : 0;
        if (a->len && (a->data = malloc((size_t)a->len)))
            memcpy(a->data, value, (size_t)a->len);
        else if (a->len)
            a->rc = ZSYSTEMERROR;
    }
    completed();
}

static void on_deleted(int rc, const void *ctx) {
    ((answer_t *)ctx)->rc = rc;
    completed();
}

/* Send one request per child, WINDOW at a time; a[i] gets child i's answer.
 * Returns a synchronous error, or ZOK. */
static int fan_out(const char *path, const struct String_vector *kids,
                   answer_t *a, int delete) {
    for (int i = 0; i < kids->count; i++) {
        char child[4096];
        if (child_path(child, sizeof child, path, kids->data[i]) != 0)
            return ZBADARGUMENTS;
        if (i % WINDOW == 0)
            wait_idle();
        pthread_mutex_lock(&lock);
        inflight++;
        pthread_mutex_unlock(&lock);
        int rc = delete ? zoo_adelete(zh, child, -1, on_deleted, &a[i])
                        : zoo_aget(zh, child, 0, on_data, &a[i]);
        if (rc != ZOK) {
            completed();
            wait_idle();
            return rc;
        }
    }
    wait_idle();
    return ZOK;
}

/* Print (or delete) the children of path and their subtrees, in order. */
static int walk_children(const char *path, int delete) {
    struct String_vector kids = {0};
    int rc = zoo_get_children(zh, path, 0, &kids);
    if (rc == ZNONODE)
        return ZOK;
    if (rc != ZOK)
        return rc;
    qsort(kids.data, (size_t)kids.count, sizeof *kids.data, cmp);
    answer_t *a = calloc((size_t)kids.count + 1, sizeof *a);
    if (!a)
        rc = ZSYSTEMERROR;
    else
        rc = fan_out(path, &kids, a, delete);
    for (int i = 0; i < kids.count && rc == ZOK; i++) {
        char child[4096];
        child_path(child, sizeof child, path, kids.data[i]);
        if (delete) {
            /* A node with children comes back NOTEMPTY: empty it first. */
            if (a[i].rc == ZNOTEMPTY && (rc = walk_children(child, 1)) == ZOK)
                rc = zoo_delete(zh, child, -1);
            else if (a[i].rc != ZOK)
                rc = a[i].rc;
            if (rc == ZNONODE)
                rc = ZOK;
            continue;
        }
        if (a[i].rc == ZNONODE)
            continue; /* removed since the listing */
        if ((rc = a[i].rc) != ZOK)
            break;
        print_node(child, a[i].data, a[i].len);
        if (a[i].kids > 0)
            rc = walk_children(child, 0);
    }
    for (int i = 0; a && i < kids.count; i++)
        free(a[i].data);
    free(a);
    deallocate_String_vector(&kids);
    return rc;
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
    if (!delete)
        print_node(path, buf, len);
    rc = walk_children(path, delete);
    if (rc == ZOK && delete && strcmp(path, "/") != 0 &&
        strcmp(path, "/zookeeper") != 0) {
        rc = zoo_delete(zh, path, -1);
        if (rc == ZNONODE)
            rc = ZOK;
    }
    return rc;
}

/* Print the number of children of path (0 when it is absent). */
static int count(const char *path) {
    struct Stat st;
    int rc = zoo_exists(zh, path, 0, &st);
    if (rc == ZNONODE) {
        puts("0");
        return ZOK;
    }
    if (rc == ZOK)
        printf("%d\n", st.numChildren);
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
    int counting = argc == 4 && strcmp(argv[1], "--count") == 0;
    int putting = argc == 4 && strcmp(argv[1], "--put") == 0;
    int opt = delete || counting || putting;
    if (argc != 3 + opt) {
        fprintf(stderr,
                "usage: zktree [--delete | --count | --put] CONNECT PATH\n");
        return 2;
    }
    static char data[1 << 20];
    size_t len = putting ? fread(data, 1, sizeof data, stdin) : 0;
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zh = zookeeper_init(argv[1 + opt], on_session, 10000, NULL, NULL, 0);
    if (!zh) {
        perror("zookeeper_init");
        return 1;
    }
    /* Otherwise the client looks the server names up again about once per
     * request. */
    zoo_set_servers_resolution_delay(zh, 30000);
    const char *auth = getenv("ZK_AUTH");
    const char *colon = auth ? strchr(auth, ':') : NULL;
    if (colon) {
        char scheme[64];
        snprintf(scheme, sizeof scheme, "%.*s", (int)(colon - auth), auth);
        zoo_add_auth(zh, scheme, colon + 1, (int)strlen(colon + 1), NULL,
                     NULL);
    }
    wait_session(3);
    int rc = counting  ? count(argv[2 + opt])
             : putting ? put(argv[2 + opt], data, (int)len)
                       : walk(argv[2 + opt], delete);
    zookeeper_close(zh);
    if (rc != ZOK) {
        fprintf(stderr, "zktree: %s: %s\n", argv[2 + opt], zerror(rc));
        return 1;
    }
    return 0;
}
