#include "zkflow/zkstore.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#ifndef THREADED
#define THREADED /* the synchronous calls of the multi-threaded client */
#endif
#include <zookeeper/zookeeper.h>

#include "zkflow/clock.h"
#include "zkflow/log.h"
#include "zkflow/zk.h"
#include "zkflow/zkauth.h"

static const char *const LOG = "zkstore";

/* A list of owned paths without duplicates. */
typedef struct paths {
    char **v;
    size_t n, cap;
} paths_t;

struct zf_zkstore {
    zhandle_t *zh;
    char *connect;
    int session_timeout_ms, connect_timeout_ms;
    int efd;
    pthread_mutex_t lock; /* guards the three fields below */
    paths_t fired;        /* watches fired, from the library thread */
    int expired;          /* the session expired */
    int reconnected;      /* connected again since the last read */
    paths_t watched;      /* engine thread: paths watched (for expiry) */
    paths_t unarmed;      /* engine thread: watch wanted, read failed */
    char *auth;           /* [zookeeper] auth, or NULL */
    struct ACL_vector *acl;
};

static int paths_add(paths_t *p, const char *path) {
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i], path) == 0)
            return 0;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        char **v = realloc(p->v, cap * sizeof *v);
        if (!v)
            return -1;
        p->v = v;
        p->cap = cap;
    }
    if (!(p->v[p->n] = strdup(path)))
        return -1;
    p->n++;
    return 0;
}

static void paths_remove(paths_t *p, const char *path) {
    for (size_t i = 0; i < p->n; i++) {
        if (strcmp(p->v[i], path) == 0) {
            free(p->v[i]);
            p->v[i] = p->v[--p->n];
            return;
        }
    }
}

static void paths_free(paths_t *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
    *p = (paths_t){0};
}

static void wake(zf_zkstore_t *zs) {
    uint64_t one = 1;
    ssize_t w = write(zs->efd, &one, sizeof one);
    (void)w; /* a full counter still leaves the fd readable */
}

/* The library's thread: note what happened and wake the engine thread. */
static void on_event(zhandle_t *zh, int type, int state, const char *path,
                     void *ctx) {
    (void)zh;
    zf_zkstore_t *zs = ctx;
    pthread_mutex_lock(&zs->lock);
    if (type == ZOO_SESSION_EVENT) {
        if (state == ZOO_EXPIRED_SESSION_STATE)
            zs->expired = 1;
        else if (state == ZOO_CONNECTED_STATE)
            zs->reconnected = 1;
    } else if (path && *path && paths_add(&zs->fired, path) != 0) {
        zf_error(LOG, "out of memory noting a change of %s", path);
    }
    pthread_mutex_unlock(&zs->lock);
    wake(zs);
}

/* Open a session and wait until it is connected. */
static int open_session(zf_zkstore_t *zs, char *err, size_t errlen) {
    zoo_set_debug_level(zf_log_get_level() >= ZF_LOG_DEBUG ? ZOO_LOG_LEVEL_INFO
                                                           : ZOO_LOG_LEVEL_WARN);
    zs->zh = zookeeper_init2(zs->connect, on_event, zs->session_timeout_ms,
                             NULL, zs, 0, zf_zk_client_log);
    if (!zs->zh) {
        snprintf(err, errlen, "cannot use ZooKeeper connection string '%s': "
                              "%s",
                 zs->connect, strerror(errno));
        return -1;
    }
    if (zf_zkauth_add(zs->zh, zs->auth, err, errlen) != 0)
        return -1;
    int64_t deadline = zf_now_ms() + zs->connect_timeout_ms;
    while (zoo_state(zs->zh) != ZOO_CONNECTED_STATE) {
        if (zf_now_ms() >= deadline) {
            snprintf(err, errlen, "cannot reach ZooKeeper at %s within %d ms "
                                  "(scripts kept in znodes)",
                     zs->connect, zs->connect_timeout_ms);
            return -1;
        }
        poll(NULL, 0, 10);
    }
    return 0;
}

zf_zkstore_t *zf_zkstore_new(const char *connect, int session_timeout_ms,
                             int connect_timeout_ms, const char *auth,
                             const char *acl, char *err, size_t errlen) {
    zf_zkstore_t *zs = calloc(1, sizeof *zs);
    if (!zs || !(zs->connect = strdup(connect)) ||
        (auth && *auth && !(zs->auth = strdup(auth)))) {
        snprintf(err, errlen, "out of memory");
        free(zs);
        return NULL;
    }
    zs->session_timeout_ms = session_timeout_ms;
    zs->acl = zf_zkauth_acl(acl);
    zs->connect_timeout_ms = connect_timeout_ms;
    pthread_mutex_init(&zs->lock, NULL);
    zs->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (zs->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        zf_zkstore_destroy(zs);
        return NULL;
    }
    if (open_session(zs, err, errlen) != 0) {
        zf_zkstore_destroy(zs);
        return NULL;
    }
    return zs;
}

void zf_zkstore_destroy(zf_zkstore_t *zs) {
    if (!zs)
        return;
    if (zs->zh)
        zookeeper_close(zs->zh);
    if (zs->efd >= 0)
        close(zs->efd);
    pthread_mutex_destroy(&zs->lock);
    paths_free(&zs->fired);
    paths_free(&zs->watched);
    paths_free(&zs->unarmed);
    free(zs->connect);
    if (zs->auth)
        memset(zs->auth, 0, strlen(zs->auth));
    free(zs->auth);
    free(zs);
}

/* Read one znode's data into a new NUL-terminated buffer. Returns a ZooKeeper
 * code; ZOK with *out set. */
static int read_node(zf_zkstore_t *zs, const char *path, int watch,
                     char **out, size_t *len) {
    *out = NULL;
    for (int attempt = 0; attempt < 5; attempt++) {
        struct Stat st;
        int rc = zoo_exists(zs->zh, path, watch, &st);
        if (rc != ZOK)
            return rc; /* ZNONODE: the watch waits for its creation */
        int cap = st.dataLength + 1;
        char *buf = malloc((size_t)cap + 1);
        if (!buf)
            return ZSYSTEMERROR;
        int n = cap;
        rc = zoo_get(zs->zh, path, watch, buf, &n, &st);
        if (rc != ZOK) {
            free(buf);
            return rc;
        }
        if (n < cap) { /* not cut short: it did not grow meanwhile */
            buf[n < 0 ? 0 : n] = '\0';
            *out = buf;
            *len = n < 0 ? 0 : (size_t)n;
            return ZOK;
        }
        free(buf);
    }
    return ZSYSTEMERROR;
}

void zf_zkscript_free(zf_zkscript_t *s) {
    free(s->text);
    free(s->records);
    free(s->expected);
    free(s->records_name);
    free(s->expected_name);
    *s = (zf_zkscript_t){0};
}

zf_fixture_text_t zf_zkscript_fixtures(const zf_zkscript_t *s) {
    return (zf_fixture_text_t){
        .records_name = s->records_name,
        .records = s->records,
        .records_len = s->records_len,
        .expected_name = s->expected_name,
        .expected = s->expected,
        .expected_len = s->expected_len,
    };
}

zf_err_t zf_zkstore_get(zf_zkstore_t *zs, const char *path, int watch,
                        zf_zkscript_t *out, char *err, size_t errlen) {
    *out = (zf_zkscript_t){0};
    if (watch && paths_add(&zs->watched, path) != 0) {
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    char *rpath = NULL, *epath = NULL;
    if (asprintf(&rpath, "%s.records.jsonl", path) < 0)
        rpath = NULL;
    if (asprintf(&epath, "%s.expected.jsonl", path) < 0)
        epath = NULL;
    if (!rpath || !epath ||
        asprintf(&out->records_name, "zk:%s", rpath) < 0 ||
        asprintf(&out->expected_name, "zk:%s", epath) < 0) {
        free(rpath);
        free(epath);
        zf_zkscript_free(out);
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    const char *failed = path;
    int rc = read_node(zs, path, watch, &out->text, &out->len);
    if (rc == ZOK) {
        failed = rpath;
        rc = read_node(zs, rpath, 0, &out->records, &out->records_len);
    }
    if (rc == ZOK || rc == ZNONODE) {
        failed = epath;
        rc = read_node(zs, epath, 0, &out->expected, &out->expected_len);
    }
    zf_err_t status = ZF_OK;
    if (!out->text) {
        status = rc == ZNONODE ? ZF_ENOENT : ZF_EZK;
        snprintf(err, errlen, "zk:%s: %s", path,
                 rc == ZNONODE ? "no such znode" : zerror(rc));
    } else if (rc != ZOK && rc != ZNONODE) {
        status = ZF_EZK;
        snprintf(err, errlen, "zk:%s: %s", failed, zerror(rc));
    }
    /* The watch is armed once the script znode was asked about. */
    if (watch && (status == ZF_EZK && !out->text))
        paths_add(&zs->unarmed, path);
    else if (watch)
        paths_remove(&zs->unarmed, path);
    free(rpath);
    free(epath);
    if (status != ZF_OK && status != ZF_ENOENT)
        zf_zkscript_free(out);
    return status;
}

int zf_zkstore_fd(const zf_zkstore_t *zs) { return zs->efd; }

void zf_zkstore_read(zf_zkstore_t *zs,
                     void (*changed)(void *ctx, const char *path), void *ctx) {
    uint64_t count;
    ssize_t rd = read(zs->efd, &count, sizeof count);
    (void)rd;
    pthread_mutex_lock(&zs->lock);
    paths_t fired = zs->fired;
    zs->fired = (paths_t){0};
    int expired = zs->expired, reconnected = zs->reconnected;
    zs->expired = zs->reconnected = 0;
    pthread_mutex_unlock(&zs->lock);

    if (expired) {
        /* Watches died with the session: a new one, then read everything
         * again (which watches again). */
        char err[512];
        zf_warn(LOG, "session expired; opening a new one");
        zookeeper_close(zs->zh);
        zs->zh = NULL;
        if (open_session(zs, err, sizeof err) != 0) {
            zf_error(LOG, "%s; trying again later", err);
            pthread_mutex_lock(&zs->lock);
            zs->expired = 1;
            pthread_mutex_unlock(&zs->lock);
        }
        for (size_t i = 0; i < zs->watched.n; i++)
            paths_add(&fired, zs->watched.v[i]);
    } else if (reconnected) {
        for (size_t i = 0; i < zs->unarmed.n; i++)
            paths_add(&fired, zs->unarmed.v[i]);
    }
    for (size_t i = 0; i < fired.n; i++)
        changed(ctx, fired.v[i]);
    paths_free(&fired);
}

/* Add to ops what makes `path` hold `data` (NULL: not exist). Returns a
 * ZooKeeper code. */
static int plan_node(zf_zkstore_t *zs, zoo_op_t *ops, int *n,
                     const char *path, const char *data, size_t len) {
    zhandle_t *zh = zs->zh;
    struct Stat st;
    int rc = zoo_exists(zh, path, 0, &st);
    if (rc != ZOK && rc != ZNONODE)
        return rc;
    if (data && rc == ZOK)
        zoo_set_op_init(&ops[(*n)++], path, data, (int)len, st.version, NULL);
    else if (data)
        zoo_create_op_init(&ops[(*n)++], path, data, (int)len,
                           zs->acl, 0, NULL, 0);
    else if (rc == ZOK)
        zoo_delete_op_init(&ops[(*n)++], path, st.version);
    return ZOK;
}

zf_err_t zf_zkstore_publish(zf_zkstore_t *zs, const char *path,
                            const char *text, size_t len,
                            const char *records, size_t records_len,
                            const char *expected, size_t expected_len,
                            char *err, size_t errlen) {
    char *rpath = NULL, *epath = NULL;
    if (asprintf(&rpath, "%s.records.jsonl", path) < 0)
        rpath = NULL;
    if (asprintf(&epath, "%s.expected.jsonl", path) < 0)
        epath = NULL;
    if (!rpath || !epath) {
        free(rpath);
        free(epath);
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    int rc = ZOK;
    /* Versions are read first and checked by the multi: a concurrent
     * publisher makes it fail (ZBADVERSION / ZNODEEXISTS), never mixes. */
    for (int attempt = 0; attempt < 3; attempt++) {
        zoo_op_t ops[3];
        zoo_op_result_t res[3];
        int n = 0;
        if ((rc = zf_zkauth_create_parents(zs->zh, zs->acl, path)) != ZOK ||
            (rc = plan_node(zs, ops, &n, rpath, records, records_len)) !=
                ZOK ||
            (rc = plan_node(zs, ops, &n, epath, expected, expected_len)) !=
                ZOK ||
            (rc = plan_node(zs, ops, &n, path, text, len)) != ZOK)
            break;
        /* The script last: one transaction, so watchers never see the new
         * script with the old fixtures. */
        rc = zoo_multi(zs->zh, n, ops, res);
        if (rc != ZBADVERSION && rc != ZNODEEXISTS && rc != ZNONODE)
            break;
    }
    if (rc != ZOK)
        snprintf(err, errlen, "zk:%s: cannot publish: %s", path, zerror(rc));
    free(rpath);
    free(epath);
    return rc == ZOK ? ZF_OK : ZF_EZK;
}
