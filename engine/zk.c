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
#ifndef THREADED
#define THREADED /* the synchronous calls of the multi-threaded client */
#endif
#include <zookeeper/zookeeper.h>

#include "zkflow/clock.h"
#include "zkflow/log.h"
#include "zkflow/zkauth.h"
#include "zkflow/metrics.h"

/* Rounds of a batch lost to other writers before a record is given up. */
#define MAX_ROUNDS 64
#define RETRY_MIN_MS 50
#define RETRY_MAX_MS 2000
/* How often the client may look the server names up again (DNS changes). */
#define RESOLVE_DELAY_MS 30000
/* After an expiry, how long to wait for the old handle's outstanding calls
 * before closing it anyway, and how often to look. */
#define RENEW_WAIT_MS 10000
#define RENEW_POLL_MS 20
/* Paths remembered as existing, to plan upserts without asking. */
#define KNOWN_MAX 200000
/* Guessing (zf_zk_t.guess): an upsert of a path nothing is known of is
 * planned as what most such paths turned out to need. GUESS_SET: a set,
 * which ZooKeeper refuses (NONODE) if the node is absent. GUESS_CREATE: a
 * create, after creates of its ancestors not known to exist, refused
 * (NODEEXISTS) if one of them exists. A refused guess plans its batch again
 * with exists probes, and guessing stops (GUESS_NONE) until GUESS_SAMPLE
 * probes have answered: at least GUESS_PERCENT of them found their path,
 * and sets are guessed again; at most 100 - GUESS_PERCENT, creates. Each
 * probe costs the server about as much as a multi, so a restart over an
 * existing tree and a first load of a new one both save one probe per path
 * (and parent), for one refused round trip now and then. */
#define GUESS_SAMPLE 1000
#define GUESS_PERCENT 95
typedef enum guess { GUESS_NONE, GUESS_SET, GUESS_CREATE } guess_t;

/* How a batch is applied.
 *
 * The ops of a batch's records become a plan of multi ops. zkflow's op
 * semantics (upsert creates what is missing, create of an existing node and
 * delete of an absent one succeed) depend on what exists, so planning uses
 * what is known: paths this session saw exist (`known`), what earlier ops of
 * the same batch do, a guess for upserts (GUESS_*), and, for the rest, one
 * round of pipelined `exists` probes (STEP_PROBE). The plan is sent as one
 * multi (STEP_MULTI). If another writer changed the tree meanwhile and the
 * multi fails on an op whose failure the semantics turn into success, the
 * plan is rewritten and sent again; a multi is all or nothing, so nothing
 * was half applied. A record whose op fails for real is cut out: the
 * records before it are sent again alone, it is reported refused, the ones
 * after it not attempted.
 *
 * Two kinds of record go alone, outside batches: a ttl or container create
 * (the 3.8 C client cannot do those inside a multi: STEP_CREATE), and a
 * recursive delete, whose subtree is listed first (STEP_LIST).
 *
 * Exactly-once: a batch with a fence also sets the partition's position
 * znode, last in the multi, with the version this owner last wrote; a stale
 * owner's multi fails on it, whole. When a multi's connection is lost its
 * outcome is unknown: the position is read back (STEP_READBACK) and the
 * multi sent again only if the position is still the old one. (A solo
 * create is followed by a multi that only writes the position.) */

typedef enum step {
    STEP_CREATE, /* one ttl or container create, as a plain call */
    STEP_LIST,   /* listing the subtrees of recursive deletes */
    STEP_PROBE,  /* asking whether paths the plan needs exist */
    STEP_MULTI,  /* the plan, as one multi */
    STEP_READBACK, /* reading the position after a lost multi */
} step_t;

typedef enum plan_flag {
    PLAN_EXISTS_OK = 1, /* create: NODEEXISTS means done, drop it */
    PLAN_ABSENT_OK = 2, /* delete: NONODE means done, drop it */
    PLAN_UPSERT = 4,    /* set, or create when absent: the node's own op */
    PLAN_RECURSIVE = 8, /* delete whose subtree is listed first */
    PLAN_PARENT = 16,   /* create of an ancestor for an upsert: no data */
    PLAN_OWNED = 32,    /* path is the plan's own copy (else src->path) */
    PLAN_KNOWN = 64,    /* planned as a set because `known` had the path:
                           nothing to learn when it applies */
    PLAN_GUESS = 128,   /* planned as a set, or created (with the parents
                           so marked), though nothing was known of the
                           path (zf_zk_t.guess) */
} plan_flag_t;

typedef struct plan_op {
    zf_op_type_t type; /* create, set, delete or check */
    const char *path;  /* with PLAN_OWNED an owned copy; else the path of
                          src, which lives as long as the request (its
                          record's ops stay until `done`), so not copied */
    const zf_op_t *src; /* the script's op: data, version, mode */
    size_t item;       /* which record of the batch it belongs to */
    int flags;
    int depth;         /* listed descendants: depth below the deleted node */
} plan_op_t;

typedef struct plan {
    plan_op_t *v;
    size_t n, cap;
    size_t deletes; /* delete ops among them */
} plan_t;

/* Existence of a path as far as planning knows. */
typedef enum known { UNKNOWN = 0, EXISTS, ABSENT } known_t;

typedef struct probe {
    char *path;
    known_t state;
} probe_t;

/* A request, and the buffers it keeps when it goes back to the pool of
 * spare requests (zf_zk_t.spare) for the next batch: a multi of 100 ops
 * otherwise allocates and frees several arrays of a few kilobytes, and
 * each such allocation makes glibc consolidate its small free chunks. */
typedef struct req {
    struct zf_zk *zk;
    zf_zk_item_t *items; /* copied array, owned */
    size_t nitems, capitems;
    zf_zk_done_fn *done;
    step_t step;
    int pending;     /* calls of this step still to complete */
    int first_err;   /* LIST, PROBE: first unexpected result */
    int sync_err;    /* a call of this step failed before it was sent */
    int rounds;      /* rounds lost to concurrent writers */
    int planned;     /* the plan is built: send it as it is */
    int no_guess;    /* a guess missed: plan with probes (zf_zk_t.guess) */
    int retries;     /* consecutive connection-loss retries */
    int64_t due_ms;  /* when waiting for a retry */
    struct timespec started; /* when zf_zk_apply took it (metrics) */
    size_t nops;     /* ops of its records (metrics) */
    struct req *next_retry;
    plan_t plan;
    probe_t *probes; /* answers of STEP_PROBE, and what still needs asking */
    size_t nprobes, capprobes;
    size_t failed_item; /* nitems, or the record cut out of the batch */
    int failed_rc;
    char failed_what[512];
    zoo_op_t *zops;  /* STEP_MULTI: the multi being sent */
    zoo_op_result_t *results;
    size_t capzops;  /* room in zops and in results */
    char (*names)[512]; /* created names (sequential nodes) */
    size_t capnames;
    zf_zk_fence_t *fence; /* exactly-once, or NULL */
    char position[24];    /* the position the multi writes, as text */
    int64_t position_next; /* the same, as a number */
    int fenced;           /* another owner wrote the position */
    char read[24];        /* STEP_READBACK: what the position holds */
    int read_len;
    int32_t read_version;
} req_t;

/* A listing's completion, carrying the children's names across threads. */
typedef struct listing {
    req_t *req;
    char *path;    /* the node listed (owned) */
    int depth;
    char **names;  /* children, filled on the completion thread */
    int count;
} listing_t;

/* An exists probe's completion. */
typedef struct asked {
    req_t *req;
    size_t probe; /* index into req->probes */
} asked_t;

/* What the library threads hand over: a completion, or a session event. */
typedef struct event {
    req_t *req;         /* NULL for a session state change */
    int rc;             /* completion code, or the new state */
    listing_t *listing; /* STEP_LIST completions */
    asked_t *asked;     /* STEP_PROBE completions */
    const zhandle_t *zh; /* session changes: the handle they concern */
} event_t;

typedef struct queue {
    event_t *v;
    size_t n, cap;
} queue_t;

/* A set of paths (open addressing, tombstones on removal). */
typedef struct pathset {
    char **slot; /* NULL empty, TOMBSTONE removed, else an owned path */
    size_t cap, used, live;
} pathset_t;

struct zf_zk {
    zhandle_t *zh;
    char *connect;
    int session_timeout_ms;
    int renew;        /* the session expired: open a new one */
    int64_t renew_since; /* when the expiry was seen (ms) */
    int calls;        /* async calls not yet called back (atomic) */
    int efd;
    pthread_mutex_t lock;
    queue_t incoming; /* filled on library threads, under lock */
    queue_t work;     /* swapped with incoming by zf_zk_process */
    int connected;
    int fatal;
    char fatal_msg[256];
    size_t inflight;  /* records applied and not yet reported */
    size_t inflight_ops; /* their ops (zkflow_inflight_ops) */
    size_t requests;  /* zf_zk_apply calls not yet reported */
    req_t *retries;   /* waiting for their due time, unsorted */
    req_t *spare;     /* finished requests kept for reuse (next_retry) */
    size_t nspare;
    pathset_t known;  /* paths seen to exist in this session */
    guess_t guess;    /* how upserts of unknown paths are planned */
    unsigned answers, existed; /* probes answered, and paths found, since
                                  guessing stopped */
    int refusal;      /* code of the refusal `done` is reporting, or ZOK */
    struct ACL_vector *acl; /* of the znodes zkflow creates */
    char *auth;       /* [zookeeper] auth, added to every new handle */
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

void zf_zk_client_log(const char *message) {
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
static void post_event(zf_zk_t *zk, event_t ev) {
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
    q->v[q->n++] = ev;
    pthread_mutex_unlock(&zk->lock);
    uint64_t one = 1;
    ssize_t w = write(zk->efd, &one, sizeof one);
    (void)w; /* a full counter still leaves the fd readable */
}

static void post(zf_zk_t *zk, req_t *req, int rc, listing_t *listing,
                 asked_t *asked) {
    post_event(zk, (event_t){req, rc, listing, asked, NULL});
}

/* An async call was made, or (end) called back or refused at once. */
static void call_begin(zf_zk_t *zk) {
    __atomic_add_fetch(&zk->calls, 1, __ATOMIC_SEQ_CST);
}

static void call_end(zf_zk_t *zk) {
    __atomic_sub_fetch(&zk->calls, 1, __ATOMIC_SEQ_CST);
}

static void on_void(int rc, const void *data) {
    req_t *r = (req_t *)data;
    call_end(r->zk);
    post(r->zk, r, rc, NULL, NULL);
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
    call_end(l->req->zk);
    post(l->req->zk, l->req, rc, l, NULL);
}

static void on_exists(int rc, const struct Stat *stat, const void *data) {
    (void)stat;
    asked_t *a = (asked_t *)data;
    call_end(a->req->zk);
    post(a->req->zk, a->req, rc, NULL, a);
}

/* STEP_READBACK's answer: kept in the request, which nothing else touches
 * until the event is handled. */
static void on_data(int rc, const char *value, int len, const struct Stat *st,
                    const void *data) {
    req_t *r = (req_t *)data;
    r->read_len = 0;
    if (rc == ZOK && value && len > 0) {
        r->read_len = len < (int)sizeof r->read - 1 ? len
                                                    : (int)sizeof r->read - 1;
        memcpy(r->read, value, (size_t)r->read_len);
    }
    r->read[r->read_len] = '\0';
    r->read_version = rc == ZOK && st ? st->version : -1;
    call_end(r->zk);
    post(r->zk, r, rc, NULL, NULL);
}

static void on_session(zhandle_t *zh, int type, int state, const char *path,
                       void *ctx) {
    (void)path;
    if (type == ZOO_SESSION_EVENT)
        post_event(ctx, (event_t){NULL, state, NULL, NULL, zh});
}

/* A new handle on zk's connection string, or NULL with errno set. */
static zhandle_t *open_handle(zf_zk_t *zk) {
    zhandle_t *zh = zookeeper_init2(zk->connect, on_session,
                                    zk->session_timeout_ms, NULL, zk, 0,
                                    zf_zk_client_log);
    /* By default the client resolves the server names again every time it
     * polls its socket, i.e. about once per request: a getaddrinfo per op. */
    if (zh)
        zoo_set_servers_resolution_delay(zh, RESOLVE_DELAY_MS);
    char err[256];
    if (zh && zf_zkauth_add(zh, zk->auth, err, sizeof err) != 0)
        zf_error("zookeeper", "%s", err); /* then ops fail with ZNOAUTH */
    return zh;
}

static void set_fatal(zf_zk_t *zk, const char *msg);

zf_zk_t *zf_zk_new(const char *connect, int session_timeout_ms, char *err,
                   size_t errlen) {
    zf_zk_t *zk = calloc(1, sizeof *zk);
    if (!zk || !(zk->connect = strdup(connect))) {
        snprintf(err, errlen, "out of memory");
        free(zk);
        return NULL;
    }
    zk->guess = GUESS_SET;
    zk->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    zk->session_timeout_ms = session_timeout_ms;
    pthread_mutex_init(&zk->lock, NULL);
    if (zk->efd < 0) {
        snprintf(err, errlen, "eventfd: %s", strerror(errno));
        goto err;
    }
    zoo_set_debug_level(zf_log_get_level() >= ZF_LOG_DEBUG ? ZOO_LOG_LEVEL_INFO
                                                           : ZOO_LOG_LEVEL_WARN);
    if (!(zk->zh = open_handle(zk))) {
        snprintf(err, errlen, "cannot use ZooKeeper connection string '%s': %s",
                 connect, strerror(errno));
        goto err;
    }
    zk->acl = zf_zkauth_acl(NULL);
    return zk;
err:
    zf_zk_destroy(zk);
    return NULL;
}

/* The session expired: close the dead handle and open a new one. Runs on
 * the caller's thread, never inside a library callback, and only once the
 * old handle has called back every call made on it: on expiry the client
 * fails them all with a session error (which step_done sends again on the
 * new handle: outcome unknown, as after a connection loss), but a
 * completion still queued when zookeeper_close stops the library's threads
 * is never called (ZOOKEEPER-2894), and its record would wait forever. */
static void renew_session(zf_zk_t *zk) {
    int calls = __atomic_load_n(&zk->calls, __ATOMIC_SEQ_CST);
    if (calls > 0) {
        if (zf_now_ms() - zk->renew_since < RENEW_WAIT_MS)
            return; /* zf_zk_next_timeout_ms asks to be called again */
        zf_warn("zookeeper", "%d call(s) of the expired session never came "
                             "back; opening a new one anyway", calls);
    }
    zk->renew = 0;
    zookeeper_close(zk->zh);
    if (!(zk->zh = open_handle(zk))) {
        char msg[256];
        snprintf(msg, sizeof msg, "cannot open a new ZooKeeper session: %s",
                 strerror(errno));
        set_fatal(zk, msg);
    }
}

/* ------------------------------------------------------------ known paths */

static char tombstone;
#define TOMBSTONE (&tombstone)

/* Eight bytes at a time (a byte at a time cost more than the rest of
 * planning an upsert), then mixed so that every byte reaches the low bits,
 * which pick the slot: paths often differ only in their last bytes. */
static uint64_t hash_path(const char *s) {
    size_t len = strlen(s), n = len;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len, w = 0;
    for (; n >= 8; s += 8, n -= 8) {
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    if (n && len >= 8) {
        memcpy(&w, s + n - 8, 8); /* the last 8 bytes, overlapping */
    } else {
        w = 0;
        memcpy(&w, s, n); /* a path under 8 bytes */
    }
    h ^= w;
    h ^= h >> 33; /* MurmurHash3's finalizer: every bit reaches the low ones */
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

static void pathset_clear(pathset_t *set) {
    for (size_t i = 0; i < set->cap; i++)
        if (set->slot[i] && set->slot[i] != TOMBSTONE)
            free(set->slot[i]);
    free(set->slot);
    memset(set, 0, sizeof *set);
}

/* The slot holding path, or where it would go; -1 when the table is full. */
static ssize_t pathset_find(const pathset_t *set, const char *path,
                            int for_insert) {
    if (!set->cap)
        return -1;
    size_t mask = set->cap - 1, i = hash_path(path) & mask;
    ssize_t free_slot = -1;
    for (size_t n = 0; n < set->cap; n++, i = (i + 1) & mask) {
        char *s = set->slot[i];
        if (!s)
            return for_insert && free_slot >= 0 ? free_slot : (ssize_t)i;
        if (s == TOMBSTONE) {
            if (free_slot < 0)
                free_slot = (ssize_t)i;
        } else if (strcmp(s, path) == 0) {
            return (ssize_t)i;
        }
    }
    return for_insert ? free_slot : -1;
}

static int pathset_has(const pathset_t *set, const char *path) {
    ssize_t i = pathset_find(set, path, 0);
    return i >= 0 && set->slot[i] && set->slot[i] != TOMBSTONE;
}

/* Remember path. Forgets everything once KNOWN_MAX paths are held, which
 * bounds memory and costs only probes. Out of memory: forget, never fail. */
static void pathset_add(pathset_t *set, const char *path) {
    if (set->live >= KNOWN_MAX)
        pathset_clear(set);
    if ((set->used + 1) * 2 > set->cap) {
        pathset_t bigger = {.cap = set->cap ? set->cap * 2 : 1024};
        if (set->live * 4 < set->cap)
            bigger.cap = set->cap; /* mostly tombstones: same size, rehash */
        bigger.slot = calloc(bigger.cap, sizeof *bigger.slot);
        if (!bigger.slot) {
            pathset_clear(set);
            return;
        }
        for (size_t i = 0; i < set->cap; i++) {
            char *s = set->slot[i];
            if (s && s != TOMBSTONE) {
                bigger.slot[pathset_find(&bigger, s, 1)] = s;
                bigger.used++;
                bigger.live++;
            }
        }
        free(set->slot);
        *set = bigger;
    }
    ssize_t i = pathset_find(set, path, 1);
    if (set->slot[i] && set->slot[i] != TOMBSTONE)
        return;
    char *copy = strdup(path);
    if (!copy)
        return;
    if (!set->slot[i])
        set->used++;
    set->slot[i] = copy;
    set->live++;
}

static void pathset_remove(pathset_t *set, const char *path) {
    ssize_t i = pathset_find(set, path, 0);
    if (i < 0 || !set->slot[i] || set->slot[i] == TOMBSTONE)
        return;
    free(set->slot[i]);
    set->slot[i] = TOMBSTONE;
    set->live--;
}

/* ------------------------------------------------------------------ plans */

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

static void plan_op_free(plan_op_t *op) {
    if (op->flags & PLAN_OWNED)
        free((char *)op->path);
}

static void plan_clear(plan_t *p) {
    for (size_t i = 0; i < p->n; i++)
        plan_op_free(&p->v[i]);
    p->n = 0;
    p->deletes = 0;
}

/* Insert a plan op at position `at`. Its path is src->path itself when
 * flags lack PLAN_OWNED; with PLAN_OWNED, path (malloc'd) becomes the
 * plan's. Out of memory aborts: a half-built plan could not be applied
 * correctly. */
static void plan_put(plan_t *p, size_t at, zf_op_type_t type,
                     const char *path, const zf_op_t *src, size_t item,
                     int flags, int depth) {
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        plan_op_t *v = realloc(p->v, cap * sizeof *v);
        if (!v)
            abort();
        p->v = v;
        p->cap = cap;
    }
    if (at < p->n)
        memmove(&p->v[at + 1], &p->v[at], (p->n - at) * sizeof *p->v);
    p->v[at] = (plan_op_t){type, path, src, item, flags, depth};
    p->n++;
    p->deletes += type == ZF_OP_DELETE;
}

/* A plan op on the whole path of its script op (src->path, not copied). */
static void plan_insert(plan_t *p, size_t at, zf_op_type_t type,
                        const zf_op_t *src, size_t item, int flags,
                        int depth) {
    plan_put(p, at, type, src->path, src, item, flags & ~PLAN_OWNED, depth);
}

/* A plan op on another path (an ancestor, a listed child): a copy. */
static void plan_insert_copy(plan_t *p, size_t at, zf_op_type_t type,
                             const char *path, const zf_op_t *src,
                             size_t item, int flags, int depth) {
    char *copy = strdup(path);
    if (!copy)
        abort();
    plan_put(p, at, type, copy, src, item, flags | PLAN_OWNED, depth);
}

static void plan_remove(plan_t *p, size_t at) {
    p->deletes -= p->v[at].type == ZF_OP_DELETE;
    plan_op_free(&p->v[at]);
    memmove(&p->v[at], &p->v[at + 1], (p->n - at - 1) * sizeof *p->v);
    p->n--;
}

static void probes_clear(req_t *r) {
    for (size_t i = 0; i < r->nprobes; i++)
        free(r->probes[i].path);
    r->nprobes = 0;
}

static void req_free(req_t *r) {
    plan_clear(&r->plan);
    free(r->plan.v);
    probes_clear(r);
    free(r->probes);
    free(r->zops);
    free(r->results);
    free(r->names);
    free(r->items);
    free(r);
}

/* Spare requests kept: about one per partition with a batch in flight. */
#define SPARE_MAX 64

/* A zeroed request for n items, its items array with room for them; taken
 * from the spares (keeping their buffers) when there is one. */
static req_t *req_new(zf_zk_t *zk, size_t n) {
    req_t *r = zk->spare;
    if (r) {
        zk->spare = r->next_retry;
        zk->nspare--;
        req_t keep = *r;
        memset(r, 0, sizeof *r);
        r->items = keep.items;
        r->capitems = keep.capitems;
        r->plan.v = keep.plan.v;
        r->plan.cap = keep.plan.cap;
        r->probes = keep.probes;
        r->capprobes = keep.capprobes;
        r->zops = keep.zops;
        r->results = keep.results;
        r->capzops = keep.capzops;
        r->names = keep.names;
        r->capnames = keep.capnames;
    } else if (!(r = calloc(1, sizeof *r))) {
        return NULL;
    }
    if (n > r->capitems) {
        zf_zk_item_t *v = realloc(r->items, n * sizeof *v);
        if (!v) {
            req_free(r);
            return NULL;
        }
        r->items = v;
        r->capitems = n;
    }
    r->zk = zk;
    return r;
}

/* A finished request: emptied and kept as a spare, or freed. */
static void req_done(zf_zk_t *zk, req_t *r) {
    if (zk->nspare >= SPARE_MAX) {
        req_free(r);
        return;
    }
    plan_clear(&r->plan);
    probes_clear(r);
    r->next_retry = zk->spare;
    zk->spare = r;
    zk->nspare++;
}

static probe_t *probe_find(req_t *r, const char *path) {
    for (size_t i = 0; i < r->nprobes; i++)
        if (strcmp(r->probes[i].path, path) == 0)
            return &r->probes[i];
    return NULL;
}

/* What planning knows of path at plan position `upto`: earlier ops of the
 * plan first (the latest wins), then the probes, then the known set. */
static known_t known_at(req_t *r, const char *path, size_t upto) {
    if (strcmp(path, "/") == 0)
        return EXISTS;
    /* Without deletes in the plan, nothing in it can make a known path
     * absent: skip the scan (the common case, all upserts of known nodes). */
    if (!r->plan.deletes && pathset_has(&r->zk->known, path))
        return EXISTS;
    size_t len = strlen(path);
    for (size_t i = upto; i-- > 0;) {
        const plan_op_t *p = &r->plan.v[i];
        size_t n = strlen(p->path);
        if (strcmp(p->path, path) == 0) {
            if (p->type == ZF_OP_CREATE || p->type == ZF_OP_SET)
                return EXISTS;
            if (p->type == ZF_OP_DELETE)
                return ABSENT;
        } else if (p->type == ZF_OP_CREATE &&
                   strncmp(p->path, path, len) == 0 && p->path[len] == '/') {
            return EXISTS; /* an ancestor of something created */
        } else if (p->type == ZF_OP_DELETE && strncmp(path, p->path, n) == 0 &&
                   path[n] == '/') {
            return ABSENT; /* below something deleted */
        }
    }
    probe_t *pr = probe_find(r, path);
    if (pr && pr->state != UNKNOWN)
        return pr->state;
    return pathset_has(&r->zk->known, path) ? EXISTS : UNKNOWN;
}

/* Note that the plan needs to know whether path exists. */
static void need_probe(req_t *r, const char *path) {
    if (probe_find(r, path))
        return;
    if (r->nprobes == r->capprobes) {
        size_t cap = r->capprobes ? r->capprobes * 2 : 16;
        probe_t *v = realloc(r->probes, cap * sizeof *v);
        if (!v)
            abort();
        r->probes = v;
        r->capprobes = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        abort();
    r->probes[r->nprobes++] = (probe_t){copy, UNKNOWN};
}

/* Plan an upsert of op (item i) at the end of the plan. Returns 0, or -1 when
 * a probe is needed first. */
static int plan_upsert(req_t *r, const zf_op_t *op, size_t item) {
    /* The common case first: a known node, and no delete in the plan that
     * could have removed it (as in known_at). */
    if (!r->plan.deletes && pathset_has(&r->zk->known, op->path)) {
        plan_insert(&r->plan, r->plan.n, ZF_OP_SET, op, item,
                    PLAN_UPSERT | PLAN_KNOWN, 0);
        return 0;
    }
    known_t k = known_at(r, op->path, r->plan.n);
    zf_zk_t *zk = r->zk;
    guess_t g = r->no_guess ? GUESS_NONE : zk->guess;
    if (k == UNKNOWN && g == GUESS_SET) {
        plan_insert(&r->plan, r->plan.n, ZF_OP_SET, op, item,
                    PLAN_UPSERT | PLAN_GUESS, 0);
        return 0;
    }
    if (k == UNKNOWN && g == GUESS_CREATE) {
        char *path = op->path; /* cut at each '/' in turn, then restored */
        for (char *slash = strchr(path + 1, '/'); slash;
             slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            if (known_at(r, path, r->plan.n) != EXISTS)
                plan_insert_copy(&r->plan, r->plan.n, ZF_OP_CREATE, path, op,
                                 item,
                                 PLAN_EXISTS_OK | PLAN_PARENT | PLAN_GUESS, 0);
            *slash = '/';
        }
        plan_insert(&r->plan, r->plan.n, ZF_OP_CREATE, op, item,
                    PLAN_UPSERT | PLAN_GUESS, 0);
        return 0;
    }
    if (k == EXISTS) {
        plan_insert(&r->plan, r->plan.n, ZF_OP_SET, op, item, PLAN_UPSERT,
                    0);
        return 0;
    }
    if (k == UNKNOWN) {
        /* Ask about the ancestors too, in the same round: if the node is
         * absent, the plan will need to know which of them are. */
        need_probe(r, op->path);
        char *path = op->path;
        for (char *slash = strchr(path + 1, '/'); slash;
             slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            if (known_at(r, path, r->plan.n) == UNKNOWN)
                need_probe(r, path);
            *slash = '/';
        }
        return -1;
    }
    /* Absent: create it, after the ancestors that are absent too. */
    int missing = 0;
    char *path = op->path; /* cut at each '/' in turn, then restored */
    for (char *slash = strchr(path + 1, '/'); slash;
         slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        known_t a = known_at(r, path, r->plan.n);
        if (a == UNKNOWN) {
            need_probe(r, path);
            missing = 1;
        } else if (a == ABSENT && !missing) {
            plan_insert_copy(&r->plan, r->plan.n, ZF_OP_CREATE, path, op,
                             item, PLAN_EXISTS_OK | PLAN_PARENT, 0);
        }
        *slash = '/';
    }
    if (missing)
        return -1;
    plan_insert(&r->plan, r->plan.n, ZF_OP_CREATE, op, item, PLAN_UPSERT, 0);
    return 0;
}

/* Build the plan from the batch's records. Returns 1 when it is complete,
 * 0 when probes must answer first (they are listed in r->probes). */
static int plan_build(req_t *r) {
    plan_clear(&r->plan);
    int complete = 1;
    for (size_t item = 0; item < r->nitems && item < r->failed_item; item++) {
        const zf_oplist_t *ops = r->items[item].ops;
        for (size_t i = 0; i < ops->n; i++) {
            const zf_op_t *op = &ops->ops[i];
            known_t k;
            switch (op->type) {
            case ZF_OP_UPSERT:
                if (plan_upsert(r, op, item) != 0)
                    complete = 0;
                break;
            case ZF_OP_CREATE:
                k = op->mode == ZF_MODE_SEQUENTIAL
                        ? ABSENT
                        : known_at(r, op->path, r->plan.n);
                if (k == UNKNOWN)
                    need_probe(r, op->path);
                if (k != EXISTS) /* existing already: success, nothing to do */
                    plan_insert(&r->plan, r->plan.n, ZF_OP_CREATE, op, item,
                                op->mode == ZF_MODE_SEQUENTIAL
                                    ? 0
                                    : PLAN_EXISTS_OK,
                                0);
                break;
            case ZF_OP_DELETE:
                k = op->recursive ? UNKNOWN : known_at(r, op->path, r->plan.n);
                if (k != ABSENT) /* absent already: success */
                    plan_insert(&r->plan, r->plan.n, ZF_OP_DELETE, op, item,
                                PLAN_ABSENT_OK |
                                    (op->recursive ? PLAN_RECURSIVE : 0),
                                0);
                break;
            default: /* set, check */
                plan_insert(&r->plan, r->plan.n, op->type, op, item, 0, 0);
                break;
            }
        }
    }
    return complete;
}

/* --------------------------------------------------------------- outcomes */

/* "set /a", or "op 2 of 3 (set /a)" for a record with several ops. */
static void describe(const req_t *r, const plan_op_t *p, char *buf,
                     size_t len) {
    const zf_oplist_t *ops = r->items[p->item].ops;
    const char *name = zf_op_name(p->src->type);
    if (ops->n > 1)
        snprintf(buf, len, "op %zu of %zu (%s %s)",
                 (size_t)(p->src - ops->ops) + 1, ops->n, name, p->path);
    else
        snprintf(buf, len, "%s %s", name, p->path);
}

static const char *hint(int rc) {
    if (rc == ZUNIMPLEMENTED)
        return " (container and TTL nodes need the server started with "
               "-Dzookeeper.extendedTypesEnabled=true)";
    if (rc == ZNOTEMPTY)
        return " (it has children: delete with recursive = true)";
    if (rc == ZNONODE)
        return " (a parent is missing, or the node is: upsert creates parents)";
    if (rc == ZNOAUTH)
        return " (the znode's ACL does not admit this identity: check "
               "[zookeeper] auth)";
    return "";
}

static int session_gone(int rc) {
    return rc == ZSESSIONEXPIRED || rc == ZINVALIDSTATE || rc == ZCLOSING ||
           rc == ZAUTHFAILED;
}

/* Remember what the probes found and what the applied plan made exist or
 * removed. */
static void learn(zf_zk_t *zk, const req_t *r) {
    for (size_t i = 0; i < r->nprobes; i++)
        if (r->probes[i].state == EXISTS)
            pathset_add(&zk->known, r->probes[i].path);
    for (size_t i = 0; i < r->plan.n; i++) {
        const plan_op_t *p = &r->plan.v[i];
        if (p->type == ZF_OP_DELETE)
            pathset_remove(&zk->known, p->path);
        else if (p->flags & PLAN_KNOWN)
            continue; /* in the set already (when not forgotten since,
                         which only costs a probe) */
        else if ((p->type == ZF_OP_CREATE &&
                  p->src->mode != ZF_MODE_SEQUENTIAL) ||
                 p->type == ZF_OP_SET)
            pathset_add(&zk->known, p->path);
    }
}

/* ------------------------------------------------------------- metrics */

/* The metric label of a ZooKeeper result: "ok" or the error's name. */
static const char *result_name(int rc) {
    switch (rc) {
    case ZOK: return "ok";
    case ZNONODE: return "nonode";
    case ZNODEEXISTS: return "nodeexists";
    case ZBADVERSION: return "badversion";
    case ZNOTEMPTY: return "notempty";
    case ZNOCHILDRENFOREPHEMERALS: return "nochildrenforephemerals";
    case ZCONNECTIONLOSS: return "connectionloss";
    case ZOPERATIONTIMEOUT: return "operationtimeout";
    case ZSESSIONEXPIRED: return "sessionexpired";
    case ZINVALIDSTATE: return "invalidstate";
    case ZCLOSING: return "closing";
    case ZAUTHFAILED: return "authfailed";
    case ZNOAUTH: return "noauth";
    case ZBADARGUMENTS: return "badarguments";
    case ZUNIMPLEMENTED: return "unimplemented";
    case ZRUNTIMEINCONSISTENCY: return "runtimeinconsistency";
    case ZMARSHALLINGERROR: return "marshallingerror";
    }
    return "other";
}

static void count_request(const req_t *r, int rc) {
    static const char *const names[] = {"create", "get_children", "exists",
                                        "multi"};
    if (!zf_m.zk_requests || (r->step == STEP_MULTI && r->plan.n == 0))
        return; /* off, or nothing was sent: the plan was already done */
    zf_series_inc(zf_metric_series(zf_m.zk_requests, names[r->step],
                                   result_name(rc)),
                  1);
}

static void set_inflight(zf_zk_t *zk, size_t nops, int add) {
    zk->inflight_ops = add ? zk->inflight_ops + nops : zk->inflight_ops - nops;
    zk->requests = add ? zk->requests + 1 : zk->requests - 1;
    zf_series_set(zf_metric_series(zf_m.inflight_ops),
                  (double)zk->inflight_ops);
}

/* Count the ops of the batch's records by type and outcome, and its time. */
static void count_outcome(zf_zk_t *zk, const req_t *r, int rc) {
    set_inflight(zk, r->nops, 0);
    if (!zf_m.zk_ops)
        return;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    zf_series_observe(zf_metric_series(zf_m.zk_write_seconds),
                      (double)(now.tv_sec - r->started.tv_sec) +
                          (double)(now.tv_nsec - r->started.tv_nsec) / 1e9);
    uint64_t n[ZF_OP_NTYPES][3] = {{0}}; /* applied, refused, session_lost */
    for (size_t i = 0; i < r->nitems && i <= r->failed_item; i++) {
        int code = i < r->failed_item ? rc : r->failed_rc;
        int k = code == ZOK ? 0 : session_gone(code) ? 2 : 1;
        const zf_oplist_t *ops = r->items[i].ops;
        for (size_t j = 0; j < ops->n; j++)
            n[ops->ops[j].type][k]++;
    }
    static const char *const results[] = {"applied", "refused",
                                          "session_lost"};
    for (int t = 0; t < ZF_OP_NTYPES; t++)
        for (int k = 0; k < 3; k++)
            if (n[t][k])
                zf_series_inc(zf_metric_series(zf_m.zk_ops,
                                               zf_op_name((zf_op_type_t)t),
                                               results[k]),
                              n[t][k]);
}

/* Report every record of the batch and free the request. rc is the outcome
 * of what was sent (the records before failed_item); failed_item, if any,
 * was refused with failed_rc; the records after it were not attempted. */
static void finish(zf_zk_t *zk, req_t *r, int rc) {
    if (rc == ZOK)
        learn(zk, r);
    count_outcome(zk, r, rc);
    char why[1024];
    for (size_t i = 0; i < r->nitems; i++) {
        zf_err_t err = ZF_OK;
        why[0] = '\0';
        int code = i < r->failed_item ? rc : i == r->failed_item ? r->failed_rc
                                                                 : ZOK;
        if (r->fenced) {
            err = ZF_EFENCED;
            snprintf(why, sizeof why, "another owner wrote the position %s",
                     r->fence->path);
        } else if (i > r->failed_item) {
            err = ZF_EAGAIN;
        } else if (code != ZOK) {
            if (session_gone(code)) {
                err = ZF_EZK;
                snprintf(why, sizeof why, "ZooKeeper session lost (%s): "
                                          "outcome unknown",
                         zerror(code));
            } else {
                err = ZF_ERECORD;
                snprintf(why, sizeof why, "ZooKeeper refused %s: %s%s",
                         i == r->failed_item ? r->failed_what : "the batch",
                         zerror(code), hint(code));
            }
        }
        zk->inflight--;
        zk->refusal = err == ZF_ERECORD ? code : ZOK;
        r->done(r->items[i].ctx, err, why);
        zk->refusal = ZOK;
    }
    req_done(zk, r);
}

const char *zf_zk_refusal(const zf_zk_t *zk) {
    return zk->refusal == ZOK ? NULL : zf_zk_code_name(zk->refusal);
}

const char *zf_zk_code_name(int rc) {
    switch (rc) {
    case ZOK: return "ZOK";
    case ZSYSTEMERROR: return "ZSYSTEMERROR";
    case ZRUNTIMEINCONSISTENCY: return "ZRUNTIMEINCONSISTENCY";
    case ZDATAINCONSISTENCY: return "ZDATAINCONSISTENCY";
    case ZCONNECTIONLOSS: return "ZCONNECTIONLOSS";
    case ZMARSHALLINGERROR: return "ZMARSHALLINGERROR";
    case ZUNIMPLEMENTED: return "ZUNIMPLEMENTED";
    case ZOPERATIONTIMEOUT: return "ZOPERATIONTIMEOUT";
    case ZBADARGUMENTS: return "ZBADARGUMENTS";
    case ZINVALIDSTATE: return "ZINVALIDSTATE";
    case ZNEWCONFIGNOQUORUM: return "ZNEWCONFIGNOQUORUM";
    case ZRECONFIGINPROGRESS: return "ZRECONFIGINPROGRESS";
    case ZSSLCONNECTIONERROR: return "ZSSLCONNECTIONERROR";
    case ZAPIERROR: return "ZAPIERROR";
    case ZNONODE: return "ZNONODE";
    case ZNOAUTH: return "ZNOAUTH";
    case ZBADVERSION: return "ZBADVERSION";
    case ZNOCHILDRENFOREPHEMERALS: return "ZNOCHILDRENFOREPHEMERALS";
    case ZNODEEXISTS: return "ZNODEEXISTS";
    case ZNOTEMPTY: return "ZNOTEMPTY";
    case ZSESSIONEXPIRED: return "ZSESSIONEXPIRED";
    case ZINVALIDCALLBACK: return "ZINVALIDCALLBACK";
    case ZINVALIDACL: return "ZINVALIDACL";
    case ZAUTHFAILED: return "ZAUTHFAILED";
    case ZCLOSING: return "ZCLOSING";
    case ZNOTHING: return "ZNOTHING";
    case ZSESSIONMOVED: return "ZSESSIONMOVED";
    case ZNOTREADONLY: return "ZNOTREADONLY";
    case ZEPHEMERALONLOCALSESSION: return "ZEPHEMERALONLOCALSESSION";
    case ZNOWATCHER: return "ZNOWATCHER";
    case ZRECONFIGDISABLED: return "ZRECONFIGDISABLED";
    case ZSESSIONCLOSEDREQUIRESASLAUTH: return "ZSESSIONCLOSEDREQUIRESASLAUTH";
    case ZTHROTTLEDOP: return "ZTHROTTLEDOP";
    }
    return "ZUNKNOWN";
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
        post(zk, r, rc, NULL, NULL);
    }
}

static void send_step(zf_zk_t *zk, req_t *r);

/* ------------------------------------------------- a ttl/container create */

static void send_create(zf_zk_t *zk, req_t *r) {
    const zf_op_t *op = &r->items[0].ops->ops[0];
    int len = op->data ? (int)op->datalen : -1;
    call_begin(zk);
    int rc = op->mode == ZF_MODE_TTL
                 ? zoo_acreate_ttl(zk->zh, op->path, op->data, len,
                                   zk->acl, create_flags(op->mode),
                                   op->ttl_ms, on_string, r)
                 : zoo_acreate(zk->zh, op->path, op->data, len,
                               zk->acl, create_flags(op->mode),
                               on_string, r);
    if (rc != ZOK) {
        call_end(zk);
        call_failed(zk, r, rc);
        return;
    }
    r->pending = 1;
}

/* --------------------------------------------- listing recursive deletes */

static void list_children(zf_zk_t *zk, req_t *r, const char *path,
                          int depth) {
    listing_t *l = calloc(1, sizeof *l);
    if (!l || !(l->path = strdup(path)))
        abort();
    l->req = r;
    l->depth = depth;
    call_begin(zk);
    int rc = zoo_aget_children(zk->zh, path, 0, on_children, l);
    if (rc != ZOK) {
        call_end(zk);
        free(l->path);
        free(l);
        call_failed(zk, r, rc);
        return;
    }
    r->pending++;
}

static void send_list(zf_zk_t *zk, req_t *r) {
    plan_build(r); /* a recursive delete goes alone: nothing to probe */
    r->planned = 1;
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
            snprintf(child, n, "%s/%s", strcmp(l->path, "/") ? l->path : "",
                     l->names[i]);
            plan_put(&r->plan, at, ZF_OP_DELETE, child, r->plan.v[at].src,
                     r->plan.v[at].item, PLAN_ABSENT_OK | PLAN_OWNED,
                     l->depth + 1);
            list_children(zk, r, child, l->depth + 1); /* owned by the plan */
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

/* ---------------------------------------------------------------- probes */

static void send_probes(zf_zk_t *zk, req_t *r) {
    for (size_t i = 0; i < r->nprobes && !r->sync_err; i++) {
        if (r->probes[i].state != UNKNOWN)
            continue;
        asked_t *a = malloc(sizeof *a);
        if (!a)
            abort();
        *a = (asked_t){r, i};
        call_begin(zk);
        int rc = zoo_aexists(zk->zh, r->probes[i].path, 0, on_exists, a);
        if (rc != ZOK) {
            call_end(zk);
            free(a);
            call_failed(zk, r, rc);
            return;
        }
        r->pending++;
    }
    if (r->pending == 0 && !r->sync_err) {
        r->step = STEP_MULTI;
        send_step(zk, r);
    }
}

static void probe_done(req_t *r, asked_t *a, int rc) {
    zf_zk_t *zk = r->zk;
    if (rc == ZOK || rc == ZNONODE) {
        r->probes[a->probe].state = rc == ZOK ? EXISTS : ABSENT;
        if (zk->guess == GUESS_NONE) { /* the sample for the next guess */
            zk->existed += rc == ZOK;
            if (++zk->answers == GUESS_SAMPLE) {
                unsigned pct = zk->existed * 100 / GUESS_SAMPLE;
                zk->guess = pct >= GUESS_PERCENT         ? GUESS_SET
                            : pct <= 100 - GUESS_PERCENT ? GUESS_CREATE
                                                         : GUESS_NONE;
                zk->answers = zk->existed = 0;
            }
        }
    } else if (!r->first_err) {
        r->first_err = rc;
    }
    free(a);
}

/* ------------------------------------------------------------- the multi */

static void send_multi(zf_zk_t *zk, req_t *r) {
    if (!r->planned) {
        if (!plan_build(r)) {
            r->step = STEP_PROBE; /* some paths must be asked about first */
            send_step(zk, r);
            return;
        }
        r->planned = 1;
    }
    size_t n = r->plan.n;
    if (r->fence) {
        /* The position after the last record this multi applies. */
        int64_t next = -1;
        for (size_t i = 0; i < r->nitems && i < r->failed_item; i++)
            if (r->items[i].next_offset > next)
                next = r->items[i].next_offset;
        r->position_next = next;
        if (next < 0)
            r->position[0] = '\0'; /* no record left: nothing to write */
        else
            snprintf(r->position, sizeof r->position, "%lld",
                     (long long)next);
    }
    size_t total = n + (r->fence && r->position[0]);
    if (total == 0) {
        r->pending = 1; /* everything turned out done already */
        post(zk, r, ZOK, NULL, NULL);
        return;
    }
    /* The client writes each created node's name into a buffer; only
     * creates need one (512 bytes each: most batches are all sets). The
     * arrays stay with the request (and its successors: req_new). */
    size_t ncreates = 0, k = 0;
    for (size_t i = 0; i < n; i++)
        ncreates += r->plan.v[i].type == ZF_OP_CREATE;
    if (total > r->capzops) {
        free(r->zops);
        free(r->results);
        r->zops = malloc(total * sizeof *r->zops);
        r->results = malloc(total * sizeof *r->results);
        if (!r->zops || !r->results)
            abort();
        r->capzops = total;
    }
    if (ncreates > r->capnames) {
        free(r->names);
        if (!(r->names = malloc(ncreates * sizeof *r->names)))
            abort();
        r->capnames = ncreates;
    }
    /* Zeroed as before each multi: a multi that fails before the server
     * answers leaves them as they are (ZOK), which multi_done relies on. */
    memset(r->zops, 0, total * sizeof *r->zops);
    memset(r->results, 0, total * sizeof *r->results);
    for (size_t i = 0; i < n; i++) {
        const plan_op_t *p = &r->plan.v[i];
        const zf_op_t *src = p->src;
        const char *data = src->data;
        int len = src->data ? (int)src->datalen : -1;
        if (p->flags & PLAN_PARENT)
            data = NULL, len = -1;
        switch (p->type) {
        case ZF_OP_CREATE:
            zoo_create_op_init(&r->zops[i], p->path, data, len,
                               zk->acl,
                               src->type == ZF_OP_CREATE
                                   ? create_flags(src->mode)
                                   : ZOO_PERSISTENT,
                               r->names[k], sizeof r->names[k]);
            k++;
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
    if (total > n && r->fence->version < 0)
        zoo_create_op_init(&r->zops[n], r->fence->path, r->position,
                           (int)strlen(r->position), zk->acl,
                           ZOO_PERSISTENT, NULL, 0);
    else if (total > n)
        zoo_set_op_init(&r->zops[n], r->fence->path, r->position,
                        (int)strlen(r->position), r->fence->version, NULL);
    zf_series_observe(zf_metric_series(zf_m.zk_batch_ops), (double)n);
    call_begin(zk);
    int rc = zoo_amulti(zk->zh, (int)total, r->zops, r->results, on_void, r);
    if (rc != ZOK) {
        call_end(zk);
        call_failed(zk, r, rc);
        return;
    }
    r->pending = 1;
}

/* The multi failed on plan op i with rc: rewrite the plan when zkflow's
 * semantics say that failure means "already done" or "not there yet" (the
 * tree changed since planning). Returns 1 when the plan should be resent. */
static int rewrite(zf_zk_t *zk, req_t *r, size_t i, int rc) {
    plan_op_t *p = &r->plan.v[i];
    if ((p->flags & PLAN_GUESS) &&
        (rc == ZNONODE || (rc == ZNODEEXISTS && p->type == ZF_OP_CREATE))) {
        /* A guess missed: plan the batch again, asking this time. */
        if (rc == ZNODEEXISTS)
            pathset_add(&zk->known, p->path);
        zk->guess = GUESS_NONE;
        r->no_guess = 1;
        r->planned = 0;
        return 1;
    }
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
        /* The node (or a parent) is absent: create the ancestors too. */
        pathset_remove(&zk->known, p->path);
        p->type = ZF_OP_CREATE;
        p->flags &= ~PLAN_KNOWN;
        char *path = strdup(p->path);
        const zf_op_t *src = p->src;
        size_t item = p->item, at = i;
        if (!path)
            abort();
        for (char *slash = strchr(path + 1, '/'); slash;
             slash = strchr(slash + 1, '/')) {
            *slash = '\0';
            plan_insert_copy(&r->plan, at++, ZF_OP_CREATE, path, src, item,
                             PLAN_EXISTS_OK | PLAN_PARENT, 0);
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

/* The position this request wrote is in place, with that version. */
static void position_written(req_t *r, int32_t version) {
    if (r->fence && r->position[0]) {
        r->fence->version = version;
        r->fence->next = r->position_next;
    }
}

static void multi_done(zf_zk_t *zk, req_t *r, int rc) {
    size_t total = r->plan.n + (r->fence && r->position[0]);
    if (rc == ZOK) {
        position_written(r, r->fence ? r->fence->version + 1 : 0);
        finish(zk, r, ZOK);
        return;
    }
    size_t i = 0;
    while (i < total && (r->results[i].err == ZOK ||
                         r->results[i].err == ZRUNTIMEINCONSISTENCY))
        i++;
    if (i == r->plan.n && i < total) {
        /* The position op failed: another owner moved it. */
        zf_warn("zookeeper", "%s: %s, expected version %d: fenced",
                r->fence->path, zerror(r->results[i].err),
                (int)r->fence->version);
        r->fenced = 1;
        finish(zk, r, r->results[i].err);
        return;
    }
    if (i < r->plan.n) {
        rc = r->results[i].err;
        if (++r->rounds < MAX_ROUNDS && rewrite(zk, r, i, rc)) {
            send_step(zk, r);
            return;
        }
    }
    if (i >= r->plan.n || session_gone(rc)) {
        finish(zk, r, rc); /* the whole batch shares this outcome */
        return;
    }
    /* A real refusal: cut its record out, send the records before it (a
     * later refusal among those moves the cut further forward). */
    size_t item = r->plan.v[i].item;
    describe(r, &r->plan.v[i], r->failed_what, sizeof r->failed_what);
    r->failed_item = item;
    r->failed_rc = rc;
    r->rounds = 0;
    r->planned = 0;
    probes_clear(r);
    r->step = STEP_MULTI;
    send_step(zk, r);
}

/* ------------------------------------------------------ reading back */

static void send_readback(zf_zk_t *zk, req_t *r) {
    call_begin(zk);
    int rc = zoo_aget(zk->zh, r->fence->path, 0, on_data, r);
    if (rc != ZOK) {
        call_end(zk);
        call_failed(zk, r, rc);
        return;
    }
    r->pending = 1;
}

/* What the position says about the lost multi: applied (it holds this
 * multi's position, one version on), not applied (unchanged), or written
 * by another owner. */
static void readback_done(zf_zk_t *zk, req_t *r, int rc) {
    int32_t had = r->fence->version;
    if (rc == ZOK && r->read_version == had + 1 &&
        strcmp(r->read, r->position) == 0) {
        position_written(r, r->read_version);
        finish(zk, r, ZOK);
        return;
    }
    if ((rc == ZOK && r->read_version == had) ||
        (rc == ZNONODE && had < 0)) {
        r->step = STEP_MULTI; /* not applied: send it again */
        send_step(zk, r);
        return;
    }
    if (rc != ZOK && rc != ZNONODE) {
        finish(zk, r, rc);
        return;
    }
    zf_warn("zookeeper", "%s holds %s (version %d) after a lost multi, "
                         "expected version %d: fenced",
            r->fence->path, rc == ZOK ? r->read : "nothing",
            (int)r->read_version, (int)had);
    r->fenced = 1;
    finish(zk, r, rc);
}

/* ---------------------------------------------------------------- steps */

static void send_step(zf_zk_t *zk, req_t *r) {
    r->pending = 0;
    r->first_err = 0;
    r->sync_err = 0;
    switch (r->step) {
    case STEP_CREATE: send_create(zk, r); break;
    case STEP_LIST: send_list(zk, r); break;
    case STEP_PROBE: send_probes(zk, r); break;
    case STEP_MULTI: send_multi(zk, r); break;
    case STEP_READBACK: send_readback(zk, r); break;
    }
}

/* The result of a whole step is known: decide what comes next. */
static void step_done(zf_zk_t *zk, req_t *r, int rc) {
    /* Unknown outcome; every step here is safe to send again. An expired
     * session is followed by a new one (renew_session), unless a fatal
     * error (failed authentication) ended the handle for good. */
    if (is_retryable(rc) || (rc != ZAUTHFAILED && session_gone(rc) &&
                             !zk->fatal)) {
        if (r->fence && r->step == STEP_MULTI && r->position[0])
            r->step = STEP_READBACK; /* its position says whether it applied */
        schedule_retry(zk, r);
        return;
    }
    r->retries = 0;
    switch (r->step) {
    case STEP_CREATE:
        if (rc != ZOK && rc != ZNODEEXISTS) {
            const zf_op_t *op = &r->items[0].ops->ops[0];
            snprintf(r->failed_what, sizeof r->failed_what, "create %s",
                     op->path);
            r->failed_item = 0;
            r->failed_rc = rc;
        }
        if (r->fence && r->failed_item > 0) {
            r->step = STEP_MULTI; /* now the position, alone */
            r->planned = 1;
            send_step(zk, r);
            return;
        }
        finish(zk, r, ZOK); /* existing already: success */
        return;
    case STEP_LIST:
    case STEP_PROBE:
        if (rc != ZOK) {
            finish(zk, r, rc);
            return;
        }
        r->step = STEP_MULTI;
        if (r->nprobes)
            r->planned = 0; /* plan again, now with the answers */
        send_step(zk, r);
        return;
    case STEP_MULTI:
        multi_done(zk, r, rc);
        return;
    case STEP_READBACK:
        readback_done(zk, r, rc);
        return;
    }
}

size_t zf_zk_coalesce(zf_zk_item_t *items, size_t n) {
    static const zf_oplist_t none = {0};
    const zf_oplist_t **lists = malloc(n * sizeof *lists);
    unsigned char *drop = malloc(n);
    size_t dropped = 0;
    if (lists && drop) { /* else: not coalescing is always correct */
        for (size_t i = 0; i < n; i++)
            lists[i] = items[i].ops;
        dropped = zf_oplist_coalesce(lists, n, drop);
        for (size_t i = 0; i < n; i++)
            if (drop[i])
                items[i].ops = &none;
    }
    free(lists);
    free(drop);
    return dropped;
}

int zf_zk_batchable(const zf_oplist_t *ops) {
    for (size_t i = 0; i < ops->n; i++)
        if (ops->ops[i].mode == ZF_MODE_TTL ||
            ops->ops[i].mode == ZF_MODE_CONTAINER || ops->ops[i].recursive)
            return 0;
    return 1;
}

void zf_zk_apply(zf_zk_t *zk, const zf_zk_item_t *items, size_t n,
                 zf_zk_fence_t *fence, zf_zk_done_fn *done) {
    req_t *r = req_new(zk, n);
    if (!r) {
        zf_error("zookeeper", "out of memory");
        abort();
    }
    memcpy(r->items, items, n * sizeof *items);
    r->nitems = n;
    r->failed_item = n;
    r->done = done;
    r->fence = fence;
    const zf_oplist_t *first = items[0].ops;
    if (n == 1 && first->n == 1 && (first->ops[0].mode == ZF_MODE_TTL ||
                                    first->ops[0].mode == ZF_MODE_CONTAINER))
        r->step = STEP_CREATE;
    else if (n == 1 && !zf_zk_batchable(first))
        r->step = STEP_LIST;
    else
        r->step = STEP_MULTI;
    zk->inflight += n;
    clock_gettime(CLOCK_MONOTONIC, &r->started);
    for (size_t i = 0; i < n; i++)
        r->nops += items[i].ops->n;
    set_inflight(zk, r->nops, 1);
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
    zf_series_set(zf_metric_series(zf_m.zk_session_state),
                  state == ZOO_CONNECTED_STATE ? ZF_ZK_STATE_CONNECTED
                  : state == ZOO_EXPIRED_SESSION_STATE ||
                          state == ZOO_AUTH_FAILED_STATE
                      ? ZF_ZK_STATE_EXPIRED
                      : ZF_ZK_STATE_CONNECTING);
    if (state == ZOO_CONNECTED_STATE) {
        if (!zk->connected)
            zf_info("zookeeper", "connected to %s (session 0x%llx)",
                    zoo_get_current_server(zk->zh),
                    (unsigned long long)zoo_client_id(zk->zh)->client_id);
        zk->connected = 1;
    } else if (state == ZOO_EXPIRED_SESSION_STATE) {
        zk->connected = 0;
        if (!zk->renew) {
            zf_warn("zookeeper", "session expired; opening a new one (writes "
                                 "whose outcome is unknown are sent again)");
            zk->renew_since = zf_now_ms();
        }
        zk->renew = 1;
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
        if (e->zh == zk->zh) /* not a late word from a replaced handle */
            session_event(zk, e->rc);
        return;
    }
    req_t *r = e->req;
    int rc = e->rc;
    if (e->listing)
        listing_done(zk, r, e->listing, rc);
    else if (e->asked)
        probe_done(r, e->asked, rc);
    count_request(r, rc);
    if (--r->pending > 0)
        return;
    if (r->sync_err)
        rc = r->sync_err;
    else if (r->step == STEP_LIST || r->step == STEP_PROBE)
        rc = r->first_err;
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
    if (zk->renew && !zk->fatal)
        renew_session(zk);

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
    if (zk->renew && !zk->fatal)
        return RENEW_POLL_MS; /* waiting for the old handle's last calls */
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

size_t zf_zk_requests_inflight(const zf_zk_t *zk) { return zk->requests; }

zf_err_t zf_zk_status(const zf_zk_t *zk, char *err, size_t errlen) {
    if (!zk->fatal)
        return ZF_OK;
    snprintf(err, errlen, "%s", zk->fatal_msg);
    return ZF_EZK;
}

zf_err_t zf_zk_secure(zf_zk_t *zk, const char *auth, const char *acl,
                      char *err, size_t errlen) {
    zk->acl = zf_zkauth_acl(acl);
    if (!auth || !*auth)
        return ZF_OK;
    /* Kept for the sessions that replace an expired one. */
    if (!(zk->auth = strdup(auth))) {
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    return zf_zkauth_add(zk->zh, auth, err, errlen) == 0 ? ZF_OK : ZF_EZK;
}

zf_err_t zf_zk_read_position(zf_zk_t *zk, zf_zk_fence_t *fence,
                             int create_parents, int64_t *next_offset,
                             char *err, size_t errlen) {
    char buf[32];
    struct Stat st;
    int rc, len = 0;
    /* A lost connection leaves time to reconnect: about the session's. */
    for (int attempt = 0; attempt < 100; attempt++) {
        len = (int)sizeof buf - 1;
        rc = zoo_get(zk->zh, fence->path, 0, buf, &len, &st);
        if (!is_retryable(rc))
            break;
        poll(NULL, 0, 100);
    }
    if (rc == ZNONODE) {
        /* The first batch creates it; its parents are made now. */
        rc = create_parents ? zf_zkauth_create_parents(zk->zh, zk->acl,
                                                       fence->path)
                            : ZOK;
        fence->version = -1;
        fence->next = *next_offset = -1;
        if (rc == ZOK)
            return ZF_OK;
    }
    if (rc != ZOK) {
        snprintf(err, errlen, "cannot read the position %s: %s", fence->path,
                 zerror(rc));
        return ZF_EZK;
    }
    buf[len < 0 ? 0 : len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || end == buf || *end || v < 0) {
        snprintf(err, errlen, "the position %s holds '%s', not an offset",
                 fence->path, buf);
        return ZF_EZK;
    }
    fence->version = st.version;
    fence->next = *next_offset = v;
    return ZF_OK;
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
    while (zk->spare) {
        req_t *r = zk->spare;
        zk->spare = r->next_retry;
        req_free(r);
    }
    pathset_clear(&zk->known);
    if (zk->efd >= 0)
        close(zk->efd);
    pthread_mutex_destroy(&zk->lock);
    free(zk->incoming.v);
    free(zk->work.v);
    free(zk->connect);
    if (zk->auth)
        memset(zk->auth, 0, strlen(zk->auth));
    free(zk->auth);
    free(zk);
}
