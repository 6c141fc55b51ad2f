/* The ZooKeeper write ceiling for `make bench`: the writes zkflow makes for
 * the benchmark's records, issued straight to ZooKeeper with zoo_amulti.
 *
 *   bench_ceiling [-z CONNECT] [-r PARENT] [-k KEYS] [-n OPS] [-b BATCH] [-d DEPTH]
 *   bench_ceiling -P [-z CONNECT] [-r PARENT] [-k KEYS]
 *   bench_ceiling -C [-z CONNECT] [-r PARENT] [-n RECORDS] [-b BATCH] [-d DEPTH]
 *
 * Run: OPS `set` ops, op i on PARENT/dev-(i % KEYS) with the payload the
 * benchmark's transform makes for record i (~60 bytes of JSON), BATCH ops per
 * multi, at most DEPTH multis in flight. Prints one line,
 *   ops=... batch=... depth=... seconds=... ops_per_s=...
 * timed from the first multi sent to the last one acknowledged. Exit 1 if
 * any op fails.
 *
 * -P (prepare): makes PARENT and its KEYS znodes, missing ones created, and
 * sets every one to the initial payload (seq -1), so that a later run can
 * tell which nodes it wrote. The run mode expects them to be there.
 *
 * -C (create): the writes of the new-tree benchmark (bench/newtree.lua):
 * for record i, a create of PARENT/dev-i (no data) and of
 * PARENT/dev-i/state (the payload), BATCH records (2 x BATCH ops) per
 * multi, at most DEPTH in flight. PARENT must exist and hold none of them;
 * the line printed counts records as ops.
 *
 * Defaults: 127.0.0.1:2181, /bench/devices, 10000 keys, 1000000 ops,
 * batch 100, depth 6. */
#define THREADED
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#define PATH_MAX_LEN 256
#define DATA_MAX_LEN 128
/* Plain async ops in flight while preparing. */
#define PREPARE_WINDOW 1000

/* One multi's worth of ops; its results are written by the completion
 * thread, so a slot is reused only once its multi has completed. */
typedef struct slot {
    int n;
    zoo_op_t *ops;
    zoo_op_result_t *results;
    struct Stat *stats;
    char (*paths)[PATH_MAX_LEN];
    char (*data)[DATA_MAX_LEN];
    struct slot *next_free;
} slot_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int connected;
static int inflight;
static long failed;
static int first_error = ZOK;
static slot_t *free_slots;

static const char *parent = "/bench/devices";
static int creating; /* -C */

static void die(const char *what, int rc) {
    fprintf(stderr, "bench_ceiling: %s: %s\n", what, zerror(rc));
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* What bench/devices.lua makes of record `seq` of bench/run.sh's dataset,
 * byte for byte (lua-cjson's key order); seq -1 marks a prepared node. */
static int payload(char *buf, long seq, long keys) {
    long i = seq < 0 ? 0 : seq, k = i % keys;
    return snprintf(buf, DATA_MAX_LEN,
                    "{\"site\":\"site-%ld\",\"status\":\"%s\",\"fw\":\"1.%ld.%ld\",\"seq\":%ld}",
                    i % 37, i % 10 ? "online" : "offline", k % 4, k % 10, seq);
}

static void key_path(char *buf, long key) {
    snprintf(buf, PATH_MAX_LEN, "%s/dev-%ld", parent, key);
}

static void on_session(zhandle_t *zh, int type, int state, const char *path, void *ctx) {
    (void)zh, (void)path, (void)ctx;
    if (type != ZOO_SESSION_EVENT)
        return;
    pthread_mutex_lock(&mu);
    connected = state == ZOO_CONNECTED_STATE ? 1 : state == ZOO_CONNECTING_STATE ? 0 : -1;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static zhandle_t *connect_zk(const char *connect) {
    zoo_set_debug_level(ZOO_LOG_LEVEL_ERROR);
    zhandle_t *zh = zookeeper_init(connect, on_session, 10000, NULL, NULL, 0);
    if (!zh) {
        perror("bench_ceiling: zookeeper_init");
        exit(1);
    }
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 15;
    pthread_mutex_lock(&mu);
    while (connected == 0)
        if (pthread_cond_timedwait(&cv, &mu, &deadline) == ETIMEDOUT)
            break;
    int ok = connected == 1;
    pthread_mutex_unlock(&mu);
    if (!ok)
        die(connect, ZCONNECTIONLOSS);
    return zh;
}

/* Counts a failure; called with `mu` held. */
static void note_error(int rc) {
    if (rc != ZOK) {
        failed++;
        if (first_error == ZOK)
            first_error = rc;
    }
}

/* Waits until fewer than `limit` requests are in flight, then takes one. */
static void window_enter(int limit) {
    pthread_mutex_lock(&mu);
    while (inflight >= limit)
        pthread_cond_wait(&cv, &mu);
    inflight++;
    pthread_mutex_unlock(&mu);
}

static void window_leave(int rc) {
    pthread_mutex_lock(&mu);
    note_error(rc);
    inflight--;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

static void window_drain(void) {
    pthread_mutex_lock(&mu);
    while (inflight > 0)
        pthread_cond_wait(&cv, &mu);
    pthread_mutex_unlock(&mu);
}

/* ---------------------------------------------------------------- prepare */

static char *exists_flags; /* per key: its create found it there */

static void on_stat(int rc, const struct Stat *stat, const void *data) {
    (void)stat, (void)data;
    window_leave(rc);
}

static void on_create(int rc, const char *value, const void *data) {
    (void)value;
    if (rc == ZNODEEXISTS) {
        exists_flags[(intptr_t)data] = 1;
        rc = ZOK;
    }
    window_leave(rc);
}

/* Creates `path` if it is missing (its parent must exist). */
static void ensure(zhandle_t *zh, const char *path) {
    int rc = zoo_create(zh, path, NULL, -1, &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
    if (rc != ZOK && rc != ZNODEEXISTS)
        die(path, rc);
}

static void prepare(zhandle_t *zh, long keys) {
    char path[PATH_MAX_LEN], data[DATA_MAX_LEN];
    int len = payload(data, -1, keys);

    /* Every ancestor of the parent, then the parent. */
    snprintf(path, sizeof path, "%s", parent);
    for (char *p = strchr(path + 1, '/'); p; p = strchr(p + 1, '/')) {
        *p = '\0';
        ensure(zh, path);
        *p = '/';
    }
    ensure(zh, path);

    exists_flags = calloc(keys, 1);
    if (!exists_flags)
        die("calloc", ZSYSTEMERROR);
    for (long k = 0; k < keys; k++) {
        key_path(path, k);
        window_enter(PREPARE_WINDOW);
        int rc = zoo_acreate(zh, path, data, len, &ZOO_OPEN_ACL_UNSAFE, 0, on_create,
                             (const void *)(intptr_t)k);
        if (rc != ZOK)
            window_leave(rc);
    }
    window_drain();
    for (long k = 0; k < keys; k++) {
        if (!exists_flags[k])
            continue;
        key_path(path, k);
        window_enter(PREPARE_WINDOW);
        int rc = zoo_aset(zh, path, data, len, -1, on_stat, NULL);
        if (rc != ZOK)
            window_leave(rc);
    }
    window_drain();
    free(exists_flags);
    if (failed)
        die("prepare", first_error);
}

/* ---------------------------------------------------------------- run */

static void on_multi(int rc, const void *data) {
    slot_t *s = (slot_t *)data;
    pthread_mutex_lock(&mu);
    note_error(rc);
    s->next_free = free_slots;
    free_slots = s;
    inflight--;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
}

/* The slots live until the program exits. */
static void slots_new(int depth, int batch) {
    slot_t *v = calloc(depth, sizeof *v);
    if (!v)
        die("calloc", ZSYSTEMERROR);
    for (int i = 0; i < depth; i++) {
        slot_t *s = &v[i];
        int nops = creating ? 2 * batch : batch;
        s->ops = calloc(nops, sizeof *s->ops);
        s->results = calloc(nops, sizeof *s->results);
        s->stats = calloc(batch, sizeof *s->stats);
        s->paths = calloc(nops, sizeof *s->paths);
        s->data = calloc(batch, sizeof *s->data);
        if (!s->ops || !s->results || !s->stats || !s->paths || !s->data)
            die("calloc", ZSYSTEMERROR);
        s->next_free = free_slots;
        free_slots = s;
    }
}

static double run(zhandle_t *zh, long keys, long ops, int batch, int depth) {
    slots_new(depth, batch);
    double start = now_s();
    for (long i = 0; i < ops;) {
        pthread_mutex_lock(&mu);
        while (!free_slots && !failed)
            pthread_cond_wait(&cv, &mu);
        if (failed) { /* stop sending after a failure */
            pthread_mutex_unlock(&mu);
            break;
        }
        slot_t *s = free_slots;
        free_slots = s->next_free;
        inflight++;
        pthread_mutex_unlock(&mu);

        s->n = 0;
        for (int r = 0; r < batch && i < ops; r++, i++) {
            int len = payload(s->data[r], i, creating ? ops : keys);
            if (!creating) {
                key_path(s->paths[s->n], i % keys);
                zoo_set_op_init(&s->ops[s->n], s->paths[s->n], s->data[r], len, -1,
                                &s->stats[r]);
                s->n++;
                continue;
            }
            key_path(s->paths[s->n], i);
            zoo_create_op_init(&s->ops[s->n], s->paths[s->n], NULL, -1,
                               &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
            size_t plen = strlen(s->paths[s->n]);
            memcpy(s->paths[s->n + 1], s->paths[s->n], plen);
            memcpy(s->paths[s->n + 1] + plen, "/state", sizeof "/state");
            zoo_create_op_init(&s->ops[s->n + 1], s->paths[s->n + 1], s->data[r], len,
                               &ZOO_OPEN_ACL_UNSAFE, 0, NULL, 0);
            s->n += 2;
        }
        int rc = zoo_amulti(zh, s->n, s->ops, s->results, on_multi, s);
        if (rc != ZOK)
            on_multi(rc, s);
    }
    window_drain();
    return now_s() - start;
}

static long number(const char *opt, const char *s, long min) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < min) {
        fprintf(stderr, "bench_ceiling: -%s: '%s' is not a whole number >= %ld\n", opt, s, min);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    const char *connect = "127.0.0.1:2181";
    long keys = 10000, ops = 1000000, batch = 100, depth = 6;
    int do_prepare = 0, c;

    while ((c = getopt(argc, argv, "z:r:k:n:b:d:PCh")) != -1) {
        switch (c) {
        case 'z': connect = optarg; break;
        case 'r': parent = optarg; break;
        case 'k': keys = number("k", optarg, 1); break;
        case 'n': ops = number("n", optarg, 1); break;
        case 'b': batch = number("b", optarg, 1); break;
        case 'd': depth = number("d", optarg, 1); break;
        case 'P': do_prepare = 1; break;
        case 'C': creating = 1; break;
        default:
            fprintf(stderr, "usage: bench_ceiling [-z CONNECT] [-r PARENT] [-k KEYS] "
                            "[-n OPS] [-b BATCH] [-d DEPTH] | -P [-z CONNECT] [-r PARENT] [-k KEYS]"
                            " | -C [-z CONNECT] [-r PARENT] [-n RECORDS] [-b BATCH] [-d DEPTH]\n");
            return c == 'h' ? 0 : 2;
        }
    }
    if (optind != argc || parent[0] != '/' || strlen(parent) > PATH_MAX_LEN - 32) {
        fprintf(stderr, "bench_ceiling: bad arguments (see the comment in bench/ceiling.c)\n");
        return 2;
    }

    zhandle_t *zh = connect_zk(connect);
    if (do_prepare) {
        prepare(zh, keys);
    } else {
        double secs = run(zh, keys, ops, (int)batch, (int)depth);
        if (failed) {
            fprintf(stderr, "bench_ceiling: %ld multis failed, the first with: %s\n", failed,
                    zerror(first_error));
            zookeeper_close(zh);
            return 1;
        }
        printf("ops=%ld batch=%ld depth=%ld seconds=%.3f ops_per_s=%.0f\n", ops, batch, depth,
               secs, ops / secs);
    }
    zookeeper_close(zh);
    return 0;
}
