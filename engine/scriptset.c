#include "zkflow/scriptset.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "zkflow/clock.h"
#include "zkflow/file.h"
#include "zkflow/fixture.h"
#include "zkflow/log.h"
#include "zkflow/metrics.h"
#include "zkflow/watch.h"
#include "zkflow/zkstore.h"

/* Editors write a file in several steps: reload once it has been quiet. */
#define SETTLE_MS 50

static const char *const LOG = "scripts";

typedef struct slot {
    const zf_script_conf_t *conf; /* in set->cfg */
    zf_script_t *script;
    int64_t due; /* reload due then (ms), or 0 */
    uint64_t reloads, rejected;
} slot_t;

struct zf_scriptset {
    const zf_config_t *cfg; /* in force */
    zf_config_t *owned;     /* cfg, when the set loaded it */
    slot_t *slots;          /* one per cfg->scripts[i] */
    size_t n;
    int watching;
    zf_watch_t *watch;      /* script files; NULL without inotify */
    zf_zkstore_t *store;    /* NULL until a script lives in a znode */
    int epfd;               /* watch and store descriptors */
    uint64_t reloads, rejected;
};

zf_script_opts_t zf_scriptset_opts(const zf_script_conf_t *sc) {
    return (zf_script_opts_t){
        .root = sc->root,
        .ops = sc->ops,
        .params = sc->params,
        .nparams = sc->nparams,
        .timeout_ms = sc->timeout_ms,
        .memory_mb = sc->memory_mb,
        .config = sc->config,
    };
}

/* The store, opened on first use. Returns NULL with err set. */
static zf_zkstore_t *store(zf_scriptset_t *set, char *err, size_t errlen) {
    if (set->store)
        return set->store;
    const zf_config_t *c = set->cfg;
    set->store = zf_zkstore_new(c->zk_connect, c->zk_session_timeout_ms,
                                c->zk_connect_timeout_ms, c->zk_auth,
                                c->zk_acl, err, errlen);
    if (set->store && set->epfd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 1};
        epoll_ctl(set->epfd, EPOLL_CTL_ADD, zf_zkstore_fd(set->store), &ev);
    }
    return set->store;
}

/* Load a script's source, compile and initialise it, and check it against
 * its fixtures; when fixtures ran, load it once more so the running version
 * starts from a fresh state. Returns the script, or NULL with err set and
 * *code saying why (ZF_ECONFIG: the script is bad; ZF_EZK: it could not be
 * read from ZooKeeper; ZF_ENOMEM). */
static zf_script_t *load(zf_scriptset_t *set, const zf_script_conf_t *sc,
                         zf_err_t *code, char *err, size_t errlen) {
    const zf_script_opts_t opts = zf_scriptset_opts(sc);
    zf_zkscript_t zs = {0};
    zf_script_t *s = NULL;
    size_t checked = 0;
    *code = ZF_ECONFIG;
    if (sc->zk_path) {
        zf_zkstore_t *st = store(set, err, errlen);
        zf_err_t rc = st ? zf_zkstore_get(st, sc->zk_path, set->watching, &zs,
                                          err, errlen)
                         : ZF_EZK;
        if (rc != ZF_OK) {
            *code = rc == ZF_ENOENT ? ZF_ECONFIG : rc;
            goto out;
        }
        /* A server with a larger jute.maxbuffer holds larger znodes: the
         * limit of script files holds here too. */
        if (zf_too_large(sc->source, zs.len, err, errlen) ||
            zf_too_large(zs.records_name, zs.records_len, err, errlen) ||
            zf_too_large(zs.expected_name, zs.expected_len, err, errlen))
            goto out;
        s = zf_script_new_text(sc->name, sc->source, zs.text, zs.len, &opts,
                               err, errlen);
        const zf_fixture_text_t fx = zf_zkscript_fixtures(&zs);
        if (s && zf_fixture_check(s, &fx, sc->fixtures_timeout_ms, &checked,
                                  err, errlen) != ZF_OK)
            goto bad;
        if (s && checked) {
            zf_script_destroy(s);
            s = zf_script_new_text(sc->name, sc->source, zs.text, zs.len,
                                   &opts, err, errlen);
        }
    } else {
        s = zf_script_new(sc->name, sc->file, &opts, err, errlen);
        if (s && zf_fixture_check_files(s, sc->file, sc->fixtures_timeout_ms,
                                        &checked, err, errlen) != ZF_OK)
            goto bad;
        if (s && checked) {
            zf_script_destroy(s);
            s = zf_script_new(sc->name, sc->file, &opts, err, errlen);
        }
    }
    if (s && checked)
        zf_debug(LOG, "script %s: version %s passed %zu fixture record(s)",
                 sc->name, zf_script_version(s), checked);
    goto out;
bad:
    /* err holds the fixture's problem; say whose it is. */
    {
        char why[2048];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "version %s fails its fixtures: %.1900s",
                 zf_script_version(s), why);
    }
    zf_script_destroy(s);
    s = NULL;
out:
    zf_zkscript_free(&zs);
    return s;
}

/* (Re)build the file watcher for the scripts in force. */
static void watch_files(zf_scriptset_t *set) {
    if (!set->watching)
        return;
    if (set->watch) {
        epoll_ctl(set->epfd, EPOLL_CTL_DEL, zf_watch_fd(set->watch), NULL);
        zf_watch_destroy(set->watch);
        set->watch = NULL;
    }
    char err[512];
    int any = 0;
    for (size_t i = 0; i < set->n; i++)
        any |= set->slots[i].conf->file != NULL;
    if (!any)
        return;
    if (!(set->watch = zf_watch_new(err, sizeof err))) {
        zf_warn(LOG, "%s: script files reload on SIGHUP only", err);
        return;
    }
    for (size_t i = 0; i < set->n; i++) {
        const zf_script_conf_t *sc = set->slots[i].conf;
        if (sc->file && zf_watch_add(set->watch, sc->file, (int)i, err,
                                     sizeof err) != 0)
            zf_warn(LOG, "script %s: %s: it reloads on SIGHUP only",
                    sc->name, err);
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    epoll_ctl(set->epfd, EPOLL_CTL_ADD, zf_watch_fd(set->watch), &ev);
}

static const char *where(const zf_script_conf_t *sc) {
    return sc->file ? sc->file : sc->source;
}

zf_err_t zf_scriptset_new(const zf_config_t *cfg, int watch,
                          zf_scriptset_t **out, char *err, size_t errlen) {
    *out = NULL;
    zf_scriptset_t *set = calloc(1, sizeof *set);
    if (!set || !(set->slots = calloc(cfg->nscripts + 1, sizeof *set->slots))) {
        free(set);
        snprintf(err, errlen, "out of memory");
        return ZF_ENOMEM;
    }
    set->cfg = cfg;
    set->watching = watch;
    set->epfd = -1;
    if (watch && (set->epfd = epoll_create1(EPOLL_CLOEXEC)) < 0) {
        snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
        zf_scriptset_destroy(set);
        return ZF_ESYS;
    }
    for (size_t i = 0; i < cfg->nscripts; i++) {
        const zf_script_conf_t *sc = &cfg->scripts[i];
        char why[2048];
        zf_err_t code;
        set->slots[i].conf = sc;
        if (!(set->slots[i].script = load(set, sc, &code, why, sizeof why))) {
            snprintf(err, errlen, "%s:%d: [script %s]: %s", cfg->path,
                     sc->file_line, sc->name, why);
            zf_scriptset_destroy(set);
            return code;
        }
        set->n = i + 1;
        zf_info(LOG, "script %s: version %s from %s", sc->name,
                zf_script_version(set->slots[i].script), where(sc));
    }
    watch_files(set);
    *out = set;
    return ZF_OK;
}

void zf_scriptset_destroy(zf_scriptset_t *set) {
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++)
        zf_script_destroy(set->slots[i].script);
    free(set->slots);
    zf_watch_destroy(set->watch);
    zf_zkstore_destroy(set->store);
    if (set->epfd >= 0)
        close(set->epfd);
    zf_config_destroy(set->owned);
    free(set);
}

const zf_config_t *zf_scriptset_config(const zf_scriptset_t *set) {
    return set->cfg;
}

zf_script_t *zf_scriptset_for_topic(const zf_scriptset_t *set,
                                    const char *topic) {
    const zf_script_conf_t *sc = zf_config_script_for_topic(set->cfg, topic);
    return sc ? set->slots[sc - set->cfg->scripts].script : NULL;
}

int zf_scriptset_fd(const zf_scriptset_t *set) { return set->epfd; }

int zf_scriptset_timeout_ms(const zf_scriptset_t *set) {
    int64_t now = zf_now_ms(), next = -1;
    for (size_t i = 0; i < set->n; i++) {
        int64_t due = set->slots[i].due;
        if (due && (next < 0 || due - now < next))
            next = due <= now ? 0 : due - now;
    }
    return (int)next;
}

void zf_scriptset_reload_all(zf_scriptset_t *set) {
    for (size_t i = 0; i < set->n; i++)
        set->slots[i].due = zf_now_ms();
}

static void on_file_changed(void *ctx, int id) {
    zf_scriptset_t *set = ctx;
    if ((size_t)id < set->n)
        set->slots[id].due = zf_now_ms() + SETTLE_MS;
}

static void on_znode_changed(void *ctx, const char *path) {
    zf_scriptset_t *set = ctx;
    for (size_t i = 0; i < set->n; i++) {
        const char *zp = set->slots[i].conf->zk_path;
        if (zp && strcmp(zp, path) == 0)
            set->slots[i].due = zf_now_ms(); /* one write: no settling */
    }
}

/* Load slot i again and swap it in if it loads, passes its fixtures and
 * differs. Returns 1 when swapped. */
static int reload(zf_scriptset_t *set, slot_t *sl) {
    const zf_script_conf_t *sc = sl->conf;
    const char *old = zf_script_version(sl->script);
    char err[2048];
    zf_err_t code;
    zf_script_t *s = load(set, sc, &code, err, sizeof err);
    if (!s) {
        sl->rejected++;
        set->rejected++;
        zf_metric_inc(zf_m.script_reloads, 1, sc->name, "rejected");
        zf_error(LOG, "script %s: reload rejected, version %s keeps running: "
                      "%s",
                 sc->name, old, err);
        return 0;
    }
    if (strcmp(zf_script_version(s), old) == 0) {
        zf_debug(LOG, "script %s: unchanged (version %s)", sc->name, old);
        zf_script_destroy(s);
        return 0;
    }
    sl->reloads++;
    set->reloads++;
    zf_metric_inc(zf_m.script_reloads, 1, sc->name, "ok");
    zf_metrics_zkflow_script(sc->name, zf_script_version(s), old);
    zf_info(LOG, "script %s: reloaded, version %s -> %s", sc->name, old,
            zf_script_version(s));
    zf_script_destroy(sl->script);
    sl->script = s;
    return 1;
}

size_t zf_scriptset_process(zf_scriptset_t *set) {
    if (set->epfd >= 0) {
        struct epoll_event ev[2];
        int n = epoll_wait(set->epfd, ev, 2, 0);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.u32 == 0 && set->watch)
                zf_watch_read(set->watch, on_file_changed, set);
            else if (ev[i].data.u32 == 1 && set->store)
                zf_zkstore_read(set->store, on_znode_changed, set);
        }
    }
    size_t swapped = 0;
    int64_t now = zf_now_ms();
    for (size_t i = 0; i < set->n; i++) {
        slot_t *sl = &set->slots[i];
        if (sl->due && sl->due <= now) {
            sl->due = 0;
            swapped += (size_t)reload(set, sl);
        }
    }
    return swapped;
}

/* The slot of the section named `name` in the set, or NULL. */
static slot_t *slot_named(zf_scriptset_t *set, const char *name) {
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->slots[i].conf->name, name) == 0)
            return &set->slots[i];
    return NULL;
}

static int same_topics(const zf_config_t *a, const zf_config_t *b) {
    size_t na = 0, nb = 0;
    for (size_t i = 0; i < a->nscripts; i++) {
        na += a->scripts[i].ntopics;
        for (size_t t = 0; t < a->scripts[i].ntopics; t++)
            if (!zf_config_script_for_topic(b, a->scripts[i].topic[t]))
                return 0;
    }
    for (size_t i = 0; i < b->nscripts; i++)
        nb += b->scripts[i].ntopics;
    return na == nb;
}

static void append(char *buf, size_t size, const char *name) {
    size_t len = strlen(buf);
    snprintf(buf + len, size - len, "%s%s", len ? ", " : "", name);
}

static int has_section(const zf_config_t *cfg, const char *name) {
    for (size_t i = 0; i < cfg->nscripts; i++)
        if (strcmp(cfg->scripts[i].name, name) == 0)
            return 1;
    return 0;
}

/* Log what a new configuration changes, before the switch. */
static void log_changes(zf_scriptset_t *set, const zf_config_t *nc,
                        const slot_t *ns) {
    char added[512] = "", changed[512] = "", removed[512] = "";
    for (size_t i = 0; i < nc->nscripts; i++) {
        const zf_script_conf_t *sc = &nc->scripts[i];
        slot_t *old = slot_named(set, sc->name);
        if (!old) {
            append(added, sizeof added, sc->name);
            zf_metrics_zkflow_script(sc->name, zf_script_version(ns[i].script),
                                     NULL);
            zf_info(LOG, "script %s: version %s from %s", sc->name,
                    zf_script_version(ns[i].script), where(sc));
        } else if (old->script != ns[i].script) {
            append(changed, sizeof changed, sc->name);
            zf_metric_inc(zf_m.script_reloads, 1, sc->name, "ok");
            zf_metrics_zkflow_script(sc->name, zf_script_version(ns[i].script),
                                     zf_script_version(old->script));
            zf_info(LOG, "script %s: section changed, version %s -> %s",
                    sc->name, zf_script_version(old->script),
                    zf_script_version(ns[i].script));
        }
    }
    for (size_t j = 0; j < set->n; j++) {
        const slot_t *gone = &set->slots[j];
        if (has_section(nc, gone->conf->name))
            continue;
        append(removed, sizeof removed, gone->conf->name);
        if (zf_m.reg)
            zf_series_hide(zf_metric_series(zf_m.script_info, gone->conf->name,
                                            zf_script_version(gone->script)));
    }
    zf_info(LOG, "configuration reloaded from %s: %zu script(s); added: %s; "
                 "changed: %s; removed: %s",
            nc->path, nc->nscripts, *added ? added : "none",
            *changed ? changed : "none", *removed ? removed : "none");
}

int zf_scriptset_reconfigure(zf_scriptset_t *set, int *topics_changed) {
    *topics_changed = 0;
    char err[4096];
    zf_config_t *nc;
    if (zf_config_load(set->cfg->path, &nc, err, sizeof err) != ZF_OK) {
        set->rejected++;
        zf_error(LOG, "configuration reload rejected, the running one stays: "
                      "%s",
                 err);
        return 0;
    }
    slot_t *ns = calloc(nc->nscripts + 1, sizeof *ns);
    if (!ns) {
        zf_error(LOG, "configuration reload: out of memory");
        zf_config_destroy(nc);
        return 0;
    }
    /* Keep unchanged sections' scripts; load the others. */
    size_t i;
    for (i = 0; i < nc->nscripts; i++) {
        const zf_script_conf_t *sc = &nc->scripts[i];
        slot_t *old = slot_named(set, sc->name);
        ns[i].conf = sc;
        if (old && strcmp(old->conf->sig, sc->sig) == 0) {
            ns[i].script = old->script;
            ns[i].reloads = old->reloads;
            ns[i].rejected = old->rejected;
            continue;
        }
        zf_err_t code;
        char why[2048];
        if (!(ns[i].script = load(set, sc, &code, why, sizeof why))) {
            snprintf(err, sizeof err, "%s:%d: [script %s]: %s", nc->path,
                     sc->file_line, sc->name, why);
            break;
        }
        if (old) {
            ns[i].reloads = old->reloads + 1;
            ns[i].rejected = old->rejected;
        }
    }
    if (i < nc->nscripts) {
        for (size_t j = 0; j < i; j++)
            if (!slot_named(set, nc->scripts[j].name) ||
                slot_named(set, nc->scripts[j].name)->script != ns[j].script)
                zf_script_destroy(ns[j].script);
        free(ns);
        zf_config_destroy(nc);
        set->rejected++;
        zf_error(LOG, "configuration reload rejected, the running one stays: "
                      "%s",
                 err);
        return 0;
    }
    if (strcmp(nc->restart_sig ? nc->restart_sig : "",
               set->cfg->restart_sig ? set->cfg->restart_sig : "") != 0)
        zf_warn(LOG, "configuration reload: changes to [kafka], [zookeeper] "
                     "or [engine] take effect only after a restart; ignored");
    log_changes(set, nc, ns);
    for (size_t j = 0; j < set->n; j++) {
        const slot_t *old = &set->slots[j];
        int kept = 0;
        for (size_t k = 0; k < nc->nscripts; k++)
            kept |= ns[k].script == old->script;
        if (!kept) {
            if (has_section(nc, old->conf->name))
                set->reloads++;
            zf_script_destroy(old->script);
        }
    }
    *topics_changed = !same_topics(set->cfg, nc);
    free(set->slots);
    set->slots = ns;
    set->n = nc->nscripts;
    zf_config_destroy(set->owned);
    set->owned = nc;
    set->cfg = nc;
    watch_files(set);
    return 1;
}

void zf_scriptset_counts(const zf_scriptset_t *set, uint64_t *reloads,
                         uint64_t *rejected) {
    *reloads = set->reloads;
    *rejected = set->rejected;
}

size_t zf_scriptset_count(const zf_scriptset_t *set) { return set->n; }

zf_scriptset_entry_t zf_scriptset_entry(const zf_scriptset_t *set, size_t i) {
    const slot_t *sl = &set->slots[i];
    return (zf_scriptset_entry_t){sl->conf, sl->script, sl->reloads,
                                  sl->rejected};
}
