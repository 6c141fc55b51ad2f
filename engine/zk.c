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

/* Tries of an upsert that keeps racing with other writers before giving up. */
#define UPSERT_MAX_ROUNDS 10
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000
/* How often the client may look the server names up again (DNS changes). */
#define RESOLVE_DELAY_MS 30000

typedef enum step {
    STEP_SET,     /* set data; for upsert, absent leads to STEP_PARENTS */
    STEP_CREATE,  /* plain create */
    STEP_DELETE,
    STEP_PARENTS, /* create each missing ancestor, then the node itself */
} step_t;

typedef struct req {
    struct zf_zk *zk;
    const zf_op_t *op;
    zf_zk_done_fn *done;
    void *ctx;
    step_t step;
    int pending;    /* calls of this step still to complete */
    int first_err;  /* PARENTS: first unexpected ancestor result */
    int sync_err;   /* a call of this step failed before it was sent */
    int rounds;     /* upsert rounds lost to concurrent writers */
    int retries;    /* consecutive connection-loss retries */
    int64_t due_ms; /* when waiting for a retry */
    struct req *next_retry;
} req_t;

/* What the library threads hand over: a completion, or a session event. */
typedef struct event {
    req_t *req; /* NULL for a session state change */
    int rc;     /* completion code, or the new state */
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
static void post(zf_zk_t *zk, req_t *req, int rc) {
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
    q->v[q->n++] = (event_t){req, rc};
    pthread_mutex_unlock(&zk->lock);
    uint64_t one = 1;
    ssize_t w = write(zk->efd, &one, sizeof one);
    (void)w; /* a full counter still leaves the fd readable */
}

static void on_void(int rc, const void *data) {
    req_t *r = (req_t *)data;
    post(r->zk, r, rc);
}

static void on_stat(int rc, const struct Stat *stat, const void *data) {
    (void)stat;
    on_void(rc, data);
}

static void on_string(int rc, const char *value, const void *data) {
    (void)value;
    on_void(rc, data);
}

static void on_session(zhandle_t *zh, int type, int state, const char *path,
                       void *ctx) {
    (void)zh;
    (void)path;
    if (type == ZOO_SESSION_EVENT)
        post(ctx, NULL, state);
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

static void send_step(zf_zk_t *zk, req_t *r);

static void finish(zf_zk_t *zk, req_t *r, int rc) {
    char why[512] = "";
    zf_err_t err = ZF_OK;
    if (rc != ZOK) {
        err = (rc == ZSESSIONEXPIRED || rc == ZINVALIDSTATE ||
               rc == ZCLOSING || rc == ZAUTHFAILED)
                  ? ZF_EZK
                  : ZF_ERECORD;
        snprintf(why, sizeof why,
                 err == ZF_EZK ? "ZooKeeper session lost during %s %s (%s): "
                                 "outcome unknown"
                               : "ZooKeeper refused %s %s: %s",
                 zf_op_name(r->op->type), r->op->path, zerror(rc));
    }
    zk->inflight--;
    r->done(r->ctx, err, why);
    free(r);
}

static void schedule_retry(zf_zk_t *zk, req_t *r) {
    int shift = r->retries < 6 ? r->retries : 6;
    int delay = RETRY_MIN_MS << shift;
    r->retries++;
    r->due_ms = zf_now_ms() + (delay < RETRY_MAX_MS ? delay : RETRY_MAX_MS);
    r->next_retry = zk->retries;
    zk->retries = r;
}

/* The result of a whole step is known: decide what comes next. */
static void step_done(zf_zk_t *zk, req_t *r, int rc) {
    if (is_retryable(rc)) {
        /* Unknown outcome; every op here is safe to send again. */
        schedule_retry(zk, r);
        return;
    }
    r->retries = 0;
    switch (r->step) {
    case STEP_SET:
        if (rc == ZNONODE && r->op->type == ZF_OP_UPSERT) {
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
        if ((rc == ZNODEEXISTS || rc == ZNONODE) &&
            ++r->rounds < UPSERT_MAX_ROUNDS) {
            /* Another writer created the node (set it instead) or removed a
             * parent (create again) in between. */
            r->step = rc == ZNODEEXISTS ? STEP_SET : STEP_PARENTS;
            send_step(zk, r);
            return;
        }
        if (rc == ZNONODE && r->first_err)
            rc = r->first_err; /* the ancestor's refusal is the cause */
        break;
    }
    finish(zk, r, rc);
}

static void call_failed(zf_zk_t *zk, req_t *r, int rc) {
    if (!r->sync_err)
        r->sync_err = rc;
    if (r->pending == 0) {
        r->pending = 1; /* the posted event stands for the failed call */
        post(zk, r, rc);
    }
}

static void send_step(zf_zk_t *zk, req_t *r) {
    const zf_op_t *op = r->op;
    const char *data = op->data;
    int len = op->data ? (int)op->datalen : -1;
    int rc = ZOK;
    r->pending = 0;
    r->first_err = 0;
    r->sync_err = 0;
    switch (r->step) {
    case STEP_SET:
        rc = zoo_aset(zk->zh, op->path, data, len, -1, on_stat, r);
        break;
    case STEP_CREATE:
        rc = zoo_acreate(zk->zh, op->path, data, len, &ZOO_OPEN_ACL_UNSAFE,
                         ZOO_PERSISTENT, on_string, r);
        break;
    case STEP_DELETE:
        rc = zoo_adelete(zk->zh, op->path, -1, on_void, r);
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
    }
    if (rc != ZOK) {
        call_failed(zk, r, rc);
        return;
    }
    r->pending++;
}

void zf_zk_apply(zf_zk_t *zk, const zf_op_t *op, zf_zk_done_fn *done,
                 void *ctx) {
    req_t *r = calloc(1, sizeof *r);
    if (!r) {
        zf_error("zookeeper", "out of memory");
        abort();
    }
    r->zk = zk;
    r->op = op;
    r->done = done;
    r->ctx = ctx;
    switch (op->type) {
    case ZF_OP_UPSERT:
    case ZF_OP_SET: r->step = STEP_SET; break;
    case ZF_OP_CREATE: r->step = STEP_CREATE; break;
    case ZF_OP_DELETE: r->step = STEP_DELETE; break;
    }
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
    if (r->step == STEP_PARENTS && rc != ZOK && rc != ZNODEEXISTS &&
        !r->first_err)
        r->first_err = rc;
    if (--r->pending > 0)
        return;
    if (r->sync_err)
        rc = r->sync_err;
    else if (r->step == STEP_PARENTS && is_retryable(r->first_err))
        rc = r->first_err; /* the node's create may not have been sent */
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
        free(r);
    }
    if (zk->efd >= 0)
        close(zk->efd);
    pthread_mutex_destroy(&zk->lock);
    free(zk->incoming.v);
    free(zk->work.v);
    free(zk->connect);
    free(zk);
}
