#include "zkflow/zk.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zookeeper/zookeeper.h>

#include "zkflow/clock.h"
#include "zkflow/log.h"

/* Rounds of a record lost to concurrent writers before giving up. */
#define MAX_ROUNDS 32
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000
/* How often the client may look the server names up again (DNS changes). */
#define RESOLVE_DELAY_MS 30000

/* A record's ops go one of two ways:
 * - one plain op (upsert, set, create, delete) is sent as that call, so an
 *   upsert of a new node costs two round trips whatever its depth;
 * - a list, a check, or a recursive delete becomes a plan of multi ops, sent
 *   as one zoo_amulti; when the multi fails on an op whose failure zkflow's
 *   semantics turn into success (create of an existing node, delete of an
 *   absent one, upsert of an absent node), the plan is rewritten and sent
 *   again. A multi is all or nothing, so the record stays atomic. */

typedef enum step {
    STEP_SET,     /* set data; for upsert, absent leads to STEP_PARENTS */
    STEP_CREATE,
    STEP_DELETE,
    STEP_PARENTS, /* create each missing ancestor, then the node itself */
    STEP_LIST,    /* listing subtrees of recursive deletes */
    STEP_MULTI,   /* the plan, as one multi */
} step_t;

typedef enum plan_flag {
    PLAN_EXISTS_OK = 1, /* create: NODEEXISTS means done, drop it */
    PLAN_ABSENT_OK = 2, /* delete: NONODE means done, drop it */
    PLAN_UPSERT = 4,    /* set that becomes creates when the node is absent */
    PLAN_RECURSIVE = 8, /* delete whose subtree must be listed first */
} plan_flag_t;

typedef struct plan_op {
    zf_op_type_t type; /* create, set, delete or check */
    char *path;        /* owned */
    const zf_op_t *src; /* the script's op: data, version, mode, ttl */
    int flags;
    int depth;         /* listed descendants: depth below the deleted node */
} plan_op_t;

typedef struct plan {
    plan_op_t *v;
    size_t n, cap;
} plan_t;

typedef struct req {
    struct zf_zk *zk;
    const zf_oplist_t *ops;
    zf_zk_done_fn *done;
    void *ctx;
    step_t step;
    int pending;    /* calls of this step still to complete */
    int first_err;  /* PARENTS, LIST: first unexpected result */
    int sync_err;   /* a call of this step failed before it was sent */
    int rounds;     /* rounds lost to concurrent writers */
    int retries;    /* consecutive connection-loss retries */
    int64_t due_ms; /* when waiting for a retry */
    struct req *next_retry;
    plan_t plan;                /* STEP_LIST, STEP_MULTI */
    zoo_op_t *zops;             /* STEP_MULTI: the multi being sent */
    zoo_op_result_t *results;
    char (*names)[1024];        /* created names (sequential nodes) */
    size_t failed_at;           /* STEP_MULTI: index of the failing op */
} req_t;

/* A listing's completion, carrying the children's names across threads. */
typedef struct listing {
    req_t *req;
    char *path;    /* the node listed (owned) */
    int depth;
    char **names;  /* children, filled on the completion thread */
    int count;
} listing_t;

/* What the library threads hand over: a completion, or a session event. */
typedef struct event {
    req_t *req;         /* NULL for a session state change */
    int rc;             /* completion code, or the new state */
    listing_t *listing; /* STEP_LIST completions */
} event_t;

typedef struct queue {
    event_t *v;
    size_t n, cap;
} queue_t;

struct zf_zk {
    zhandle_t *zh;
    char *connect;
    int efd;
    pthread_mutex_t lock;
    queue_t incoming; /* filled on library threads, under lock */
    queue_t work;     /* swapped with incoming by zf_zk_process */
    int connected;
    int fatal;
    char fatal_msg[256];
    size_t inflight;
    req_t *retries; /* waiting for their due time, unsorted */
};

/* The client's lines look like
 *   "DATE TIME,ms:PID(0xTID):ZOO_WARN@function@line: text"
 * and repeat every few hundred ms while a server is down. Keep the level and
 * the text, and print a line seen in the last LOG_REPEAT_MS only once. */
#define LOG_REPEAT_MS 10000
#define LOG_RECENT 4

static struct {
    pthread_mutex_t lock;
    struct {
        char text[256];
        int64_t since_ms;
        unsigned repeats;
    } recent[LOG_RECENT];
} zk_log_state = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void zk_log(const char *message) {
    zf_log_level_t level = ZF_LOG_WARN;
    const char *text = message;
    const char *tag = strstr(message, "):ZOO_");
    if (tag) {
        tag += 6;
        level = strncmp(tag, "ERROR", 5) == 0  ? ZF_LOG_ERROR
                : strncmp(tag, "WARN", 4) == 0 ? ZF_LOG_WARN
                : strncmp(tag, "INFO", 4) == 0 ? ZF_LOG_INFO
                                               : ZF_LOG_DEBUG;
        const char *colon = strstr(tag, ": ");
        text = colon ? colon + 2 : tag;
    }
    if (level > zf_log_get_level())
        return;
    int64_t now = zf_now_ms();
    unsigned repeats = 0;
    pthread_mutex_lock(&zk_log_state.lock);
    size_t slot = 0;
    for (size_t i = 0; i < LOG_RECENT; i++) {
        if (strncmp(zk_log_state.recent[i].text, text,
                    sizeof zk_log_state.recent[i].text - 1) == 0) {
            slot = i;
            if (now - zk_log_state.recent[i].since_ms < LOG_REPEAT_MS) {
                zk_log_state.recent[i].repeats++;
                pthread_mutex_unlock(&zk_log_state.lock);
                return;
            }
            break;
        }
        if (zk_log_state.recent[i].since_ms < zk_log_state.recent[slot].since_ms)
            slot = i; /* the oldest, unless the text is found */
    }
    repeats = zk_log_state.recent[slot].repeats;
    snprintf(zk_log_state.recent[slot].text,
             sizeof zk_log_state.recent[slot].text, "%s", text);
    zk_log_state.recent[slot].since_ms = now;
    zk_log_state.recent[slot].repeats = 0;
    pthread_mutex_unlock(&zk_log_state.lock);
    if (repeats)
        zf_log(level, "zookeeper", "%s (%u more like it before)", text,
               repeats);
    else
        zf_log(level, "zookeeper", "%s", text);
}

/* Runs on a library thread: queue and wake. Must never block for long. */
static void post(zf_zk_t *zk, req_t *req, int rc, listing_t *listing) {
    pthread_mutex_lock(&zk->lock);
    queue_t *q = &zk->incoming;
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        event_t *v = realloc(q->v, cap * sizeof *v);
        if (!v) {
            /* Losing an event would hang an op forever: nothing sane left. */
            zf_error("zookeeper", "out of memory queueing a completion");
            abort();
        }
        q->v = v;
        q->cap = cap;
    }
    q->v[q->n++] = (event_t){req, rc, listing};
    pthread_mutex_unlock(&zk->lock);
    uint64_t one = 1;
    ssize_t w = write(zk->efd, &one, sizeof one);
    (void)w; /* a full counter still leaves the fd readable */
}

static void on_void(int rc, const void *data) {
    req_t *r = (req_t *)data;
    post(r->zk, r, rc, NULL);
}

static void on_stat(int rc, const struct Stat *stat, const void *data) {
    (void)stat;
    on_void(rc, data);
}

static void on_string(int rc, const char *value, const void *data) {
    (void)value;
    on_void(rc, data);
}

static void on_children(int rc, const struct String_vector *kids,
                        const void *data) {
    listing_t *l = (listing_t *)data;
    if (rc == ZOK && kids && kids->count > 0) {
        l->names = calloc((size_t)kids->count, sizeof *l->names);
        for (int i = 0; l->names && i < kids->count; i++)
            if ((l->names[i] = strdup(kids->data[i])))
                l->count = i + 1;
        if (l->count != kids->count)
            rc = ZSYSTEMERROR; /* out of memory: reported as a failure */
    }
    post(l->req->zk, l->req, rc, l);
}

static void on_session(zhandle_t *zh, int type, int state, const char *path,
                       void *ctx) {
    (void)zh;
    (void)path;
    if (type == ZOO_SESSION_EVENT)
        post(ctx, NULL, state, NULL);
}

zf_zk_t *zf_zk_new(const char *connect, int session_timeout_ms, char *err,
                   size_t errlen) {
    zf_zk_t *zk = calloc(1, sizeof *zk);
    if (!zk || !(zk->connect = strdup(connect))) {
        snprintf(err, errlen, "out of memory");
        free(zk);
        return NULL;
    }
    zk->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&zk->lock, NULL);
    if (zk->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto err;
    }
    zoo_set_debug_level(zf_log_get_level() >= ZF_LOG_DEBUG ? ZOO_LOG_LEVEL_INFO
                                                           : ZOO_LOG_LEVEL_WARN);
    zk->zh = zookeeper_init2(connect, on_session, session_timeout_ms, NULL, zk,
                             0, zk_log);
    if (!zk->zh) {
        snprintf(err, errlen, "cannot use ZooKeeper connection string '%s': %s",
                 connect, strerror(errno));
        goto err;
    }
    /* By default the client resolves the server names again every time it
     * polls its socket, i.e. about once per request: a getaddrinfo per op. */
    zoo_set_servers_resolution_delay(zk->zh, RESOLVE_DELAY_MS);
    return zk;
err:
    zf_zk_destroy(zk);
    return NULL;
}

static int is_retryable(int rc) {
    return rc == ZCONNECTIONLOSS || rc == ZOPERATIONTIMEOUT;
}

static int create_flags(zf_create_mode_t mode) {
    switch (mode) {
    case ZF_MODE_SEQUENTIAL: return ZOO_PERSISTENT_SEQUENTIAL;
    case ZF_MODE_CONTAINER: return ZOO_CONTAINER;
    case ZF_MODE_TTL: return ZOO_PERSISTENT_WITH_TTL;
    case ZF_MODE_PERSISTENT: break;
    }
    return ZOO_PERSISTENT;
}

static void plan_clear(plan_t *p) {
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i].path);
    p->n = 0;
}

/* Insert a plan op at position `at` (owning a copy of path). Aborts when out
 * of memory: a half-built plan could not be applied correctly. */
static void plan_insert(plan_t *p, size_t at, zf_op_type_t type,
                        const char *path, const zf_op_t *src, int flags,
                        int depth) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        plan_op_t *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            abort();
        p->v = v;
        p->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        abort();
    memmove(&p->v[at + 1], &p->v[at], (p->n - at) * sizeof *p->v);
    p->v[at] = (plan_op_t){type, copy, src, flags, depth};
    p->n++;
}

static void plan_remove(plan_t *p, size_t at) {
    free(p->v[at].path);
    memmove(&p->v[at], &p->v[at + 1], (p->n - at - 1) * sizeof *p->v);
    p->n--;
}

/* The record's ops as a plan: what the first multi will try. */
static void plan_build(req_t *r) {
    plan_clear(&r->plan);
    for (size_t i = 0; i < r->ops->n; i++) {
        const zf_op_t *op = &r->ops->ops[i];
        zf_op_type_t type = op->type;
        int flags = 0;
        switch (op->type) {
        case ZF_OP_UPSERT:
            type = ZF_OP_SET;
            flags = PLAN_UPSERT;
            break;
        case ZF_OP_CREATE:
            flags = op->mode == ZF_MODE_SEQUENTIAL ? 0 : PLAN_EXISTS_OK;
            break;
        case ZF_OP_DELETE:
            flags = PLAN_ABSENT_OK | (op->recursive ? PLAN_RECURSIVE : 0);
            break;
        default:
            break;
        }
        plan_insert(&r->plan, r->plan.n, type, op->path, op, flags, 0);
    }
}

static void req_free(req_t *r) {
    plan_clear(&r->plan);
    free(r->plan.v);
    free(r->zops);
    free(r->results);
    free(r->names);
    free(r);
}

/* The op a failure is about, for messages: "set /a" or "op 2 of 3 (set /a)". */
static void describe(const req_t *r, const plan_op_t *p, char *buf,
                     size_t len) {
    const char *name = p ? zf_op_name(p->src->type) : "";
    const char *path = p ? p->path : r->ops->ops[0].path;
    if (!p)
        name = zf_op_name(r->ops->ops[0].type);
    if (r->ops->n > 1 && p)
        snprintf(buf, len, "op %zu of %zu (%s %s)",
                 (size_t)(p->src - r->ops->ops) + 1, r->ops->n, name, path);
    else
        snprintf(buf, len, "%s %s", name, path);
}

static const char *hint(int rc) {
    if (rc == ZUNIMPLEMENTED)
        return " (container and TTL nodes need the server started with "
               "-Dzookeeper.extendedTypesEnabled=true)";
    if (rc == ZNOTEMPTY)
        return " (it has children: delete with recursive = true)";
    if (rc == ZNONODE)
        return " (a parent is missing, or the node is: upsert creates parents)";
    return "";
}

static void finish(zf_zk_t *zk, req_t *r, int rc, const plan_op_t *failed) {
    char why[1024] = "";
    zf_err_t err = ZF_OK;
    if (rc != ZOK) {
        char what[512];
        describe(r, failed, what, sizeof what);
        err = (rc == ZSESSIONEXPIRED || rc == ZINVALIDSTATE ||
               rc == ZCLOSING || rc == ZAUTHFAILED)
                  ? ZF_EZK
                  : ZF_ERECORD;
        if (err == ZF_EZK)
            snprintf(why, sizeof why, "ZooKeeper session lost during %s (%s): "
                                      "outcome unknown",
                     what, zerror(rc));
        else
            snprintf(why, sizeof why, "ZooKeeper refused %s: %s%s", what,
                     zerror(rc), hint(rc));
    }
    zk->inflight--;
    r->done(r->ctx, err, why);
    req_free(r);
}

static void schedule_retry(zf_zk_t *zk, req_t *r) {
    int shift = r->retries < 6 ? r->retries : 6;
    int delay = RETRY_MIN_MS << shift;
    r->retries++;
    r->due_ms = zf_now_ms() + (delay < RETRY_MAX_MS ? delay : RETRY_MAX_MS);
    r->next_retry = zk->retries;
    zk->retries = r;
}

/* A call could not even be sent: its outcome stands for the whole step. */
static void call_failed(zf_zk_t *zk, req_t *r, int rc) {
    if (!r->sync_err)
        r->sync_err = rc;
    if (r->pending == 0) {
        r->pending = 1; /* the posted event stands for the failed call */
        post(zk, r, rc, NULL);
    }
}

static void send_step(zf_zk_t *zk, req_t *r);

/* ------------------------------------------------------------ one plain op */

static void send_single(zf_zk_t *zk, req_t *r) {
    const zf_op_t *op = &r->ops->ops[0];
    const char *data = op->data;
    int len = op->data ? (int)op->datalen : -1;
    int rc = ZOK;
    switch (r->step) {
    case STEP_SET:
        rc = zoo_aset(zk->zh, op->path, data, len, op->version, on_stat, r);
        break;
    case STEP_CREATE:
        if (op->mode == ZF_MODE_TTL)
            rc = zoo_acreate_ttl(zk->zh, op->path, data, len,
                                 &ZOO_OPEN_ACL_UNSAFE, create_flags(op->mode),
                                 op->ttl_ms, on_string, r);
        else
            rc = zoo_acreate(zk->zh, op->path, data, len, &ZOO_OPEN_ACL_UNSAFE,
                             create_flags(op->mode), on_string, r);
        break;
    case STEP_DELETE:
        rc = zoo_adelete(zk->zh, op->path, op->version, on_void, r);
        break;
    case STEP_PARENTS: {
        /* One session applies requests in order, so the ancestors exist
         * before the node's own create is applied. */
        char *path = op->path; /* cut at each '/' in turn, then restored */
        for (char *slash = strchr(path + 1, '/'); slash;
             slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            rc = zoo_acreate(zk->zh, path, NULL, -1, &ZOO_OPEN_ACL_UNSAFE,
                             ZOO_PERSISTENT, on_string, r);
            *slash = '/';
            if (rc != ZOK) {
                call_failed(zk, r, rc);
                return;
            }
            r->pending++;
        }
        rc = zoo_acreate(zk->zh, op->path, data, len, &ZOO_OPEN_ACL_UNSAFE,
                         ZOO_PERSISTENT, on_string, r);
        break;
    }
    default:
        abort(); /* list steps never reach here */
    }
    if (rc != ZOK) {
        call_failed(zk, r, rc);
        return;
    }
    r->pending++;
}

static void single_done(zf_zk_t *zk, req_t *r, int rc) {
    const zf_op_t *op = &r->ops->ops[0];
    switch (r->step) {
    case STEP_SET:
        if (rc == ZNONODE && op->type == ZF_OP_UPSERT) {
            r->step = STEP_PARENTS;
            send_step(zk, r);
            return;
        }
        break;
    case STEP_CREATE:
        if (rc == ZNODEEXISTS)
            rc = ZOK; /* replays and retries find their own node */
        break;
    case STEP_DELETE:
        if (rc == ZNONODE)
            rc = ZOK;
        break;
    case STEP_PARENTS:
        if ((rc == ZNODEEXISTS || rc == ZNONODE) && ++r->rounds < MAX_ROUNDS) {
            /* Another writer created the node (set it instead) or removed a
             * parent (create again) in between. */
            r->step = rc == ZNODEEXISTS ? STEP_SET : STEP_PARENTS;
            send_step(zk, r);
            return;
        }
        if (rc == ZNONODE && r->first_err)
            rc = r->first_err; /* the ancestor's refusal is the cause */
        break;
    default:
        break;
    }
    finish(zk, r, rc, NULL);
}

/* ------------------------------------------------------- lists, as a multi */

/* List the children of a node to delete recursively. */
static void list_children(zf_zk_t *zk, req_t *r, const char *path,
                          int depth) {
    listing_t *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path)))
        abort();
    l->req = r;
    l->depth = depth;
    int rc = zoo_aget_children(zk->zh, path, 0, on_children, l);
    if (rc != ZOK) {
        free(l->path);
        free(l);
        call_failed(zk, r, rc);
        return;
    }
    r->pending++;
}

static void send_list(zf_zk_t *zk, req_t *r) {
    plan_build(r);
    for (size_t i = 0; i < r->plan.n && !r->sync_err; i++)
        if (r->plan.v[i].flags & PLAN_RECURSIVE)
            list_children(zk, r, r->plan.v[i].path, 0);
    if (r->pending == 0 && !r->sync_err) {
        r->step = STEP_MULTI;
        send_step(zk, r);
    }
}

/* A listing came back: plan deletes for the children, list them in turn. */
static void listing_done(zf_zk_t *zk, req_t *r, listing_t *l, int rc) {
    if (rc == ZOK) {
        /* A node's delete must come after its descendants'. Its own delete
         * is already in the group of deletes before the recursive op, so
         * inserting its children at the front of that group suffices. */
        size_t at = 0;
        for (size_t i = 0; i < r->plan.n; i++)
            if ((r->plan.v[i].flags & PLAN_RECURSIVE) &&
                zf_path_is_under(l->path, r->plan.v[i].path))
                at = i;
        while (at > 0 && r->plan.v[at - 1].depth > 0)
            at--;
        for (int i = 0; i < l->count; i++) {
            size_t n = strlen(l->path) + strlen(l->names[i]) + 2;
            char *child = malloc(n);
            if (!child)
                abort();
            snprintf(child, n, "%s/%s", l->path, l->names[i]);
            plan_insert(&r->plan, at, ZF_OP_DELETE, child, r->plan.v[at].src,
                        PLAN_ABSENT_OK, l->depth + 1);
            list_children(zk, r, child, l->depth + 1);
            free(child);
        }
    } else if (rc != ZNONODE && !r->first_err) {
        r->first_err = rc; /* NONODE: already gone, nothing below it */
    }
    for (int i = 0; i < l->count; i++)
        free(l->names[i]);
    free(l->names);
    free(l->path);
    free(l);
}

static void send_multi(zf_zk_t *zk, req_t *r) {
    size_t n = r->plan.n;
    if (n == 0) {
        r->pending = 1; /* everything turned out done already */
        post(zk, r, ZOK, NULL);
        return;
    }
    free(r->zops);
    free(r->results);
    free(r->names);
    r->zops = calloc(n, sizeof *r->zops);
    r->results = calloc(n, sizeof *r->results);
    r->names = calloc(n, sizeof *r->names);
    if (!r->zops || !r->results || !r->names)
        abort();
    for (size_t i = 0; i < n; i++) {
        const plan_op_t *p = &r->plan.v[i];
        const zf_op_t *src = p->src;
        const char *data = src->data;
        int len = src->data ? (int)src->datalen : -1;
        switch (p->type) {
        case ZF_OP_CREATE:
            if (strcmp(p->path, src->path) != 0) /* an upsert's ancestor */
                data = NULL, len = -1;
            zoo_create_op_init(&r->zops[i], p->path, data, len,
                               &ZOO_OPEN_ACL_UNSAFE,
                               src->type == ZF_OP_CREATE
                                   ? create_flags(src->mode)
                                   : ZOO_PERSISTENT,
                               r->names[i], sizeof r->names[i]);
            break;
        case ZF_OP_SET:
            zoo_set_op_init(&r->zops[i], p->path, data, len, src->version,
                            NULL);
            break;
        case ZF_OP_DELETE:
            zoo_delete_op_init(&r->zops[i], p->path,
                               p->depth ? -1 : src->version);
            break;
        case ZF_OP_CHECK:
            zoo_check_op_init(&r->zops[i], p->path, src->version);
            break;
        default:
            abort();
        }
    }
    int rc = zoo_amulti(zk->zh, (int)n, r->zops, r->results, on_void, r);
    if (rc != ZOK) {
        call_failed(zk, r, rc);
        return;
    }
    r->pending = 1;
}

/* The multi failed on plan op i with rc: rewrite the plan when zkflow's
 * semantics say that failure means "already done" or "not yet there".
 * Returns 1 when the plan changed and should be sent again. */
static int rewrite(req_t *r, size_t i, int rc) {
    plan_op_t *p = &r->plan.v[i];
    if (rc == ZNODEEXISTS && p->type == ZF_OP_CREATE) {
        if (p->flags & PLAN_UPSERT) {
            p->type = ZF_OP_SET; /* the upserted node exists after all */
            return 1;
        }
        if (p->flags & PLAN_EXISTS_OK) {
            plan_remove(&r->plan, i);
            return 1;
        }
    }
    if (rc == ZNONODE && p->type == ZF_OP_DELETE &&
        (p->flags & PLAN_ABSENT_OK)) {
        plan_remove(&r->plan, i);
        return 1;
    }
    if (rc == ZNONODE && (p->flags & PLAN_UPSERT)) {
        /* Absent (or a parent is): create the ancestors, then the node. */
        p->type = ZF_OP_CREATE;
        char *path = strdup(p->path);
        const zf_op_t *src = p->src;
        if (!path)
            abort();
        size_t at = i;
        for (char *slash = strchr(path + 1, '/'); slash;
             slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            plan_insert(&r->plan, at++, ZF_OP_CREATE, path, src,
                        PLAN_EXISTS_OK, 0);
            *slash = '/';
        }
        free(path);
        return 1;
    }
    if (rc == ZNOTEMPTY && ((p->flags & PLAN_RECURSIVE) || p->depth > 0)) {
        r->step = STEP_LIST; /* a child appeared after the listing */
        return 1;
    }
    return 0;
}

static void multi_done(zf_zk_t *zk, req_t *r, int rc) {
    if (rc == ZOK) {
        finish(zk, r, ZOK, NULL);
        return;
    }
    size_t i = 0;
    while (i < r->plan.n && (r->results[i].err == ZOK ||
                             r->results[i].err == ZRUNTIMEINCONSISTENCY))
        i++;
    if (i == r->plan.n) {
        finish(zk, r, rc, NULL);
        return;
    }
    rc = r->results[i].err;
    if (++r->rounds < MAX_ROUNDS && rewrite(r, i, rc)) {
        send_step(zk, r);
        return;
    }
    plan_op_t failed = r->plan.v[i];
    finish(zk, r, rc, &failed);
}

/* ---------------------------------------------------------------- steps */

static void send_step(zf_zk_t *zk, req_t *r) {
    r->pending = 0;
    r->first_err = 0;
    r->sync_err = 0;
    if (r->step == STEP_LIST)
        send_list(zk, r);
    else if (r->step == STEP_MULTI)
        send_multi(zk, r);
    else
        send_single(zk, r);
}

/* The result of a whole step is known: decide what comes next. */
static void step_done(zf_zk_t *zk, req_t *r, int rc) {
    if (is_retryable(rc)) {
        /* Unknown outcome; every step here is safe to send again. */
        schedule_retry(zk, r);
        return;
    }
    r->retries = 0;
    if (r->step == STEP_MULTI) {
        multi_done(zk, r, rc);
    } else if (r->step == STEP_LIST) {
        if (rc != ZOK) {
            finish(zk, r, rc, NULL);
            return;
        }
        r->step = STEP_MULTI;
        send_step(zk, r);
    } else {
        single_done(zk, r, rc);
    }
}

void zf_zk_apply(zf_zk_t *zk, const zf_oplist_t *ops, zf_zk_done_fn *done,
                 void *ctx) {
    req_t *r = calloc(1, sizeof *r);
    if (!r) {
        zf_error("zookeeper", "out of memory");
        abort();
    }
    r->zk = zk;
    r->ops = ops;
    r->done = done;
    r->ctx = ctx;
    const zf_op_t *op = &ops->ops[0];
    if (ops->n != 1 || op->type == ZF_OP_CHECK || op->recursive)
        r->step = STEP_LIST; /* lists with nothing to list go to the multi */
    else if (op->type == ZF_OP_UPSERT || op->type == ZF_OP_SET)
        r->step = STEP_SET;
    else
        r->step = op->type == ZF_OP_CREATE ? STEP_CREATE : STEP_DELETE;
    zk->inflight++;
    send_step(zk, r);
}
static void set_fatal(zf_zk_t *zk, const char *msg) {
    if (zk->fatal)
        return;
    zk->fatal = 1;
    snprintf(zk->fatal_msg, sizeof zk->fatal_msg, "%s", msg);
    zf_error("zookeeper", "%s", msg);
}

static void session_event(zf_zk_t *zk, int state) {
    if (state == ZOO_CONNECTED_STATE) {
        if (!zk->connected)
            zf_info("zookeeper", "connected to %s (session 0x%llx)",
                    zoo_get_current_server(zk->zh),
                    (unsigned long long)zoo_client_id(zk->zh)->client_id);
        zk->connected = 1;
    } else if (state == ZOO_EXPIRED_SESSION_STATE) {
        zk->connected = 0;
        set_fatal(zk, "ZooKeeper session expired");
    } else if (state == ZOO_AUTH_FAILED_STATE) {
        zk->connected = 0;
        set_fatal(zk, "ZooKeeper authentication failed");
    } else if (zk->connected) {
        zk->connected = 0;
        zf_warn("zookeeper", "connection to %s lost, reconnecting",
                zk->connect);
    }
}

static void handle_event(zf_zk_t *zk, const event_t *e) {
    if (!e->req) {
        session_event(zk, e->rc);
        return;
    }
    req_t *r = e->req;
    int rc = e->rc;
    if (e->listing)
        listing_done(zk, r, e->listing, rc);
    else if (r->step == STEP_PARENTS && rc != ZOK && rc != ZNODEEXISTS &&
             !r->first_err)
        r->first_err = rc;
    if (--r->pending > 0)
        return;
    if (r->sync_err)
        rc = r->sync_err;
    else if ((r->step == STEP_PARENTS && is_retryable(r->first_err)) ||
             r->step == STEP_LIST)
        rc = r->first_err; /* PARENTS: the node's create may be unsent */
    step_done(zk, r, rc);
}

void zf_zk_process(zf_zk_t *zk) {
    uint64_t count;
    ssize_t rd = read(zk->efd, &count, sizeof count);
    (void)rd; /* EAGAIN: nothing posted since the last call */

    pthread_mutex_lock(&zk->lock);
    queue_t tmp = zk->work;
    zk->work = zk->incoming;
    zk->incoming = tmp;
    zk->incoming.n = 0;
    pthread_mutex_unlock(&zk->lock);
    for (size_t i = 0; i < zk->work.n; i++)
        handle_event(zk, &zk->work.v[i]);
    zk->work.n = 0;

    int64_t now = zf_now_ms();
    req_t **pp = &zk->retries;
    while (*pp) {
        req_t *r = *pp;
        if (r->due_ms > now) {
            pp = &r->next_retry;
            continue;
        }
        *pp = r->next_retry;
        send_step(zk, r);
    }
}

int zf_zk_next_timeout_ms(const zf_zk_t *zk) {
    if (!zk->retries)
        return -1;
    int64_t now = zf_now_ms(), best = INT64_MAX;
    for (const req_t *r = zk->retries; r; r = r->next_retry)
        if (r->due_ms < best)
            best = r->due_ms;
    return best <= now ? 0 : (int)(best - now);
}

int zf_zk_fd(const zf_zk_t *zk) { return zk->efd; }

size_t zf_zk_inflight(const zf_zk_t *zk) { return zk->inflight; }

zf_err_t zf_zk_status(const zf_zk_t *zk, char *err, size_t errlen) {
    if (!zk->fatal)
        return ZF_OK;
    snprintf(err, errlen, "%s", zk->fatal_msg);
    return ZF_EZK;
}

zf_err_t zf_zk_wait_connected(zf_zk_t *zk, int timeout_ms, char *err,
                              size_t errlen) {
    int64_t deadline = zf_now_ms() + timeout_ms;
    while (!zk->connected && !zk->fatal) {
        int64_t left = deadline - zf_now_ms();
        if (left <= 0) {
            snprintf(err, errlen, "cannot reach ZooKeeper at %s within %d ms",
                     zk->connect, timeout_ms);
            return ZF_EZK;
        }
        struct pollfd pfd = {.fd = zk->efd, .events = POLLIN};
        poll(&pfd, 1, (int)left);
        zf_zk_process(zk);
    }
    return zf_zk_status(zk, err, errlen);
}

void zf_zk_destroy(zf_zk_t *zk) {
    if (!zk)
        return;
    if (zk->zh)
        zookeeper_close(zk->zh); /* the one close: joins the library threads */
    while (zk->retries) {
        req_t *r = zk->retries;
        zk->retries = r->next_retry;
        req_free(r);
    }
    if (zk->efd >= 0)
        close(zk->efd);
    pthread_mutex_destroy(&zk->lock);
    free(zk->incoming.v);
    free(zk->work.v);
    free(zk->connect);
    free(zk);
}
