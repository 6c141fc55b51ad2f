#include "zkflow/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "zkflow/http.h"
#include "zkflow/op.h"

typedef enum key_type {
    KEY_STRING, /* any non-empty string */
    KEY_INT,    /* integer within [min, max] */
    KEY_FILE,   /* a path, resolved against the config file's directory */
    KEY_ZNODE,  /* an absolute znode path */
    KEY_ENUM,   /* one of the words in `choices` */
    KEY_LISTEN, /* HOST:PORT to listen on, or empty (off) */
    KEY_BOOL,   /* true or false, stored as an int (1 or 0) */
    KEY_CONNECT, /* a ZooKeeper connection string (check_connect) */
} key_type_t;

typedef enum key_owner { OWNER_CONFIG, OWNER_SCRIPT } key_owner_t;

typedef struct config_key {
    const char *section; /* "zookeeper", "engine" or "script" */
    const char *name;
    key_type_t type;
    key_owner_t owner;   /* which struct `offset` points into */
    size_t offset;
    const char *def;     /* default as text; NULL when required, "" when
                            optional without a default */
    long min, max;       /* KEY_INT bounds */
    const char *choices; /* KEY_ENUM: space-separated words */
    const char *doc;
} config_key_t;

#define CFG(field) OWNER_CONFIG, offsetof(zf_config_t, field)
#define SCR(field) OWNER_SCRIPT, offsetof(zf_script_conf_t, field)

/* The one declaration of every key: parsing, defaults and --help use it. */
static const config_key_t keys[] = {
    {"zookeeper", "connect", KEY_CONNECT, CFG(zk_connect), NULL, 0, 0, NULL,
     "host:port[,host:port...][/chroot], the ZooKeeper connection string "
     "(IPv6 without brackets: ::1:2181)"},
    {"zookeeper", "session_timeout_ms", KEY_INT, CFG(zk_session_timeout_ms),
     "10000", 1000, 600000, NULL, "ZooKeeper session timeout"},
    {"zookeeper", "connect_timeout_ms", KEY_INT, CFG(zk_connect_timeout_ms),
     "15000", 100, 600000, NULL,
     "how long start-up waits for a ZooKeeper session before giving up"},
    {"zookeeper", "auth", KEY_STRING, CFG(zk_auth), "", 0, 0, NULL,
     "SCHEME:CREDENTIALS added to every ZooKeeper session, e.g. "
     "digest:zkflow:${ZK_PASSWORD}"},
    {"zookeeper", "acl", KEY_ENUM, CFG(zk_acl), "open", 0, 0,
     "open creator_all read_only_world",
     "ACL of the znodes zkflow creates: open (anyone), creator_all (only "
     "the auth identity), read_only_world (the identity; anyone may read)"},
    {"engine", "delivery", KEY_ENUM, CFG(delivery), "exactly_once", 0, 0,
     "exactly_once at_least_once",
     "exactly_once: each batch also writes its partition's position to a "
     "znode under offsets_root, checked by version; at_least_once: "
     "positions are Kafka's committed offsets only"},
    {"engine", "offsets_root", KEY_ZNODE, CFG(offsets_root), "/zkflow/offsets",
     0, 0, NULL,
     "exactly_once: positions are kept in OFFSETS_ROOT/GROUP/TOPIC/PARTITION"},
    {"engine", "max_queued_records", KEY_INT, CFG(max_queued_records),
     "10000", 1, 1000000, NULL,
     "records waiting per partition before it is paused (backpressure)"},
    {"engine", "batch_max_ops", KEY_INT, CFG(batch_max_ops), "100", 1, 10000,
     NULL, "ops of consecutive records sent together as one ZooKeeper multi"},
    {"engine", "batch_max_bytes", KEY_INT, CFG(batch_max_bytes), "512000",
     1024, 1000000, NULL,
     "bytes of request per multi: paths, data, 128 per op, parents "
     "(ZooKeeper's limit is 1 MiB)"},
    {"engine", "metrics_listen", KEY_LISTEN, CFG(metrics_listen), "", 0, 0,
     NULL, "IPV4:PORT, [IPV6]:PORT or localhost:PORT for /metrics, /healthz "
     "and /readyz, e.g. 127.0.0.1:9464; empty: no HTTP endpoint"},
    {"engine", "log_level", KEY_ENUM, CFG(log_level), "info", 0, 0,
     "error warn info debug", "lowest level logged (-v and -q override it)"},
    {"engine", "log_format", KEY_ENUM, CFG(log_format), "text", 0, 0,
     "text json", "log lines on stderr: text, or one JSON object per line "
     "(ts, level, component, msg)"},
    {"script", "file", KEY_FILE, SCR(file), "", 0, 0, NULL,
     "the Lua transform; relative paths start at the config file's directory"},
    {"script", "source", KEY_STRING, SCR(source), "", 0, 0, NULL,
     "zk:/PATH: the Lua transform is kept in that znode instead of a file "
     "(give file or source)"},
    {"script", "topics", KEY_STRING, SCR(topics), NULL, 0, 0, NULL,
     "comma-separated Kafka topics routed to this script (names of 1 to 249 "
     "of [a-zA-Z0-9._-])"},
    {"script", "root", KEY_ZNODE, SCR(root), "/", 0, 0, NULL,
     "the script may only write znodes at or below this path"},
    {"script", "ops", KEY_STRING, SCR(ops_list),
     "upsert, create, set, delete, check", 0, 0, NULL,
     "comma-separated ops the script may return"},
    {"script", "timeout_ms", KEY_INT, SCR(timeout_ms), "100", 0, 60000, NULL,
     "time limit of one transform call (0: none)"},
    {"script", "memory_mb", KEY_INT, SCR(memory_mb), "64", 0, 65536, NULL,
     "memory limit of the script's Lua state (0: none)"},
    {"script", "fixtures_timeout_ms", KEY_INT, SCR(fixtures_timeout_ms),
     "1000", 1, 60000, NULL,
     "time limit of all the script's fixture records together, each time it "
     "loads (check, reload, publish)"},
    {"script", "on_error", KEY_ENUM, SCR(on_error), "stop", 0, 0,
     "stop skip dlq",
     "a record that fails: stop (uncommitted, exit 1), skip it, or dlq "
     "(produce it to dlq_topic)"},
    {"script", "dlq_topic", KEY_STRING, SCR(dlq_topic), "", 0, 0, NULL,
     "the dead-letter topic; required with on_error = dlq, only then"},
    {"script", "coalesce", KEY_BOOL, SCR(coalesce), "false", 0, 0, NULL,
     "within one batch, skip a lone set/upsert that a later one of the same "
     "path replaces (fewer writes; watchers see fewer versions)"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* Parser state shared by the line reader and the key handler. */
typedef struct parse {
    zf_config_t *cfg;
    FILE *fp;
    char *dir;           /* config file's directory, with trailing '/' */
    int line;            /* line number of the text inih is handling */
    int lines_done;      /* complete lines read so far */
    int err_line;        /* line of the first error, 0 if none */
    char *err;
    size_t errlen;
    const char *section; /* current section kind, NULL if unknown */
    zf_script_conf_t *script; /* current [script] section */
    unsigned char seen[NKEYS]; /* keys set in the current section */
    int seen_kafka, seen_zk, seen_engine;
} parse_t;

/* Append "[section] key = value\n" to a section signature. */
static int sig_add(char **sig, const char *section, const char *name,
                   const char *value) {
    char *s = NULL;
    if (asprintf(&s, "%s[%s] %s = %s\n", *sig ? *sig : "", section, name,
                 value) < 0)
        return -1;
    free(*sig);
    *sig = s;
    return 0;
}

static void fail(parse_t *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error only: later ones are often its consequences. */
static void fail(parse_t *p, int line, const char *fmt, ...) {
    if (p->err_line)
        return;
    p->err_line = line;
    int n = snprintf(p->err, p->errlen, "%s:%d: ", p->cfg->path, line);
    if (n < 0 || (size_t)n >= p->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int valid_name(const char *s) {
    if (!*s)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("_.-", *s))
            return 0;
    return 1;
}

/* A section header starts a new section; inih only tells us about sections
 * that hold keys, so headers are recognised here, on the raw line. */
static void section_begin(parse_t *p, char *header) {
    zf_config_t *cfg = p->cfg;
    p->section = NULL;
    p->script = NULL;
    memset(p->seen, 0, sizeof p->seen);

    static const char *const fixed[] = {"kafka", "zookeeper", "engine"};
    int *seen[] = {&p->seen_kafka, &p->seen_zk, &p->seen_engine};
    int *header_line[] = {&cfg->kafka_line, &cfg->zk_line, NULL};
    for (size_t i = 0; i < 3; i++) {
        if (strcmp(header, fixed[i]) != 0)
            continue;
        if (*seen[i])
            fail(p, p->line, "section [%s] appears twice (first on line %d)",
                 header, *seen[i]);
        *seen[i] = p->line;
        if (header_line[i])
            *header_line[i] = p->line;
        p->section = fixed[i];
        return;
    }
    if (strncmp(header, "script", 6) == 0 && isspace((unsigned char)header[6])) {
        char *name = trim(header + 6);
        if (!valid_name(name)) {
            fail(p, p->line,
                 "script name '%s' must be letters, digits, '_', '.' or '-'",
                 name);
            return;
        }
        for (size_t i = 0; i < cfg->nscripts; i++) {
            if (strcmp(cfg->scripts[i].name, name) == 0) {
                fail(p, p->line, "[script %s] appears twice (first on line %d)",
                     name, cfg->scripts[i].line);
                return;
            }
        }
        zf_script_conf_t *v = realloc(cfg->scripts,
                                      (cfg->nscripts + 1) * sizeof *v);
        if (!v) {
            fail(p, p->line, "out of memory");
            return;
        }
        cfg->scripts = v;
        p->script = &v[cfg->nscripts++];
        memset(p->script, 0, sizeof *p->script);
        p->script->timeout_ms = p->script->memory_mb = INT_MIN; /* not set */
        p->script->fixtures_timeout_ms = INT_MIN;
        p->script->coalesce = INT_MIN;
        p->script->name = strdup(name);
        p->script->line = p->line;
        p->script->config = cfg;
        p->section = "script";
        return;
    }
    fail(p, p->line,
         "unknown section [%s] (expected kafka, zookeeper, engine or "
         "script NAME)",
         header);
}

/* inih's line source: counts lines and spots section headers. A line is
 * read byte by byte, so that a NUL in it is seen (inih and fgets would
 * take it for the end of the line, and drop the rest). */
static char *read_line(char *buf, int size, void *user) {
    parse_t *p = user;
    int n = 0, c = 0, nul = 0;
    while (n < size - 1 && c != '\n' && (c = getc(p->fp)) != EOF) {
        nul |= c == '\0';
        buf[n++] = (char)c;
    }
    if (n == 0)
        return NULL; /* the end, or a read error (see zf_config_load) */
    buf[n] = '\0';
    p->line = p->lines_done + 1;
    if (nul) {
        fail(p, p->line, "the line contains a NUL byte");
        return NULL;
    }
    if (buf[n - 1] == '\n') {
        p->lines_done++;
    } else if (c != EOF && (c = getc(p->fp)) != EOF) {
        fail(p, p->line, "line is longer than %d characters", size - 2);
        return NULL;
    }
    char *s = buf;
    while (isspace((unsigned char)*s))
        s++;
    if (*s == '[') {
        char *end = strchr(s, ']');
        if (end) {
            char header[256];
            size_t len = (size_t)(end - s - 1);
            if (len >= sizeof header)
                len = sizeof header - 1;
            memcpy(header, s + 1, len);
            header[len] = '\0';
            section_begin(p, trim(header));
        }
    }
    return buf;
}

static void *field(const config_key_t *k, zf_config_t *cfg,
                   zf_script_conf_t *sc) {
    return (char *)(k->owner == OWNER_CONFIG ? (void *)cfg : (void *)sc) +
           k->offset;
}

static char *resolve_file(const parse_t *p, const char *value) {
    if (value[0] == '/' || !p->dir[0])
        return strdup(value);
    size_t n = strlen(p->dir) + strlen(value) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s", p->dir, value);
    return s;
}

/* A ZooKeeper connection string, checked as the ZooKeeper 3.8 C client
 * parses it (zookeeper_init), so that check refuses what run would: from
 * the first '/' on, the chroot, a valid path; before it, HOST:PORT entries
 * separated by commas (empty entries are skipped, blanks before a host
 * allowed, blanks alone are not), split at the last ':' (so ::1:2181 is IPv6 without brackets,
 * which the client does not take). Stricter than the client where it
 * would take a string that cannot work: a port is 1 to 65535 in decimal
 * (it reads 70000 as 4464 and 010 as octal), a host a name or address
 * (it would fail to look it up), a chroot a path ZooKeeper accepts (it
 * only refuses some control characters), and at least one entry. Names
 * are not looked up here. Returns 0, or -1 with the reason in why. */
static int check_connect(const char *value, char *why, size_t whylen) {
    const char *chroot = strchr(value, '/');
    size_t hlen = chroot ? (size_t)(chroot - value) : strlen(value);
    char perr[256];
    if (chroot && zf_path_check(chroot, strlen(chroot), perr, sizeof perr) !=
                      ZF_OK) {
        snprintf(why, whylen, "the chroot %s: %s", chroot, perr);
        return -1;
    }
    size_t entries = 0;
    const char *e = value;
    while (e < value + hlen) {
        size_t elen = strcspn(e, ",");
        if (e + elen > value + hlen)
            elen = (size_t)(value + hlen - e);
        const char *end = e + elen, *colon = NULL;
        for (const char *c = e; c < end; c++)
            if (*c == ':')
                colon = c;
        if (e < end) { /* blanks alone are an entry without a port */
            entries++;
            while (e < end && isspace((unsigned char)*e))
                e++;
            if (e == end || !colon) {
                if (e == end)
                    snprintf(why, whylen, "an entry is blank");
                else
                    snprintf(why, whylen, "'%.*s' has no port (HOST:PORT)",
                             (int)(end - e), e);
                return -1;
            }
            /* Digits only, no leading 0: ',' and '/' end them. */
            const char *port = colon + 1;
            size_t plen = (size_t)(end - port);
            if (plen == 0 || plen > 5 || port[0] == '0' ||
                strspn(port, "0123456789") < plen ||
                strtol(port, NULL, 10) > 65535) {
                snprintf(why, whylen, "'%.*s': the port must be a number "
                                      "from 1 to 65535",
                         (int)(end - e), e);
                return -1;
            }
            size_t ok = 0;
            while (e + ok < colon &&
                   (isalnum((unsigned char)e[ok]) || strchr(".-_:%", e[ok])))
                ok++;
            if (colon == e || e + ok < colon) {
                snprintf(why, whylen, "'%.*s': '%.*s' is not a host name or "
                                      "address (IPv6 without brackets: "
                                      "::1:2181)",
                         (int)(end - e), e, (int)(colon - e), e);
                return -1;
            }
        }
        e = end + 1;
    }
    if (!entries) {
        snprintf(why, whylen, "no HOST:PORT before the chroot");
        return -1;
    }
    return 0;
}

/* Convert `value` for key k and store it. Returns 0, or -1 after fail(). */
static int set_value(parse_t *p, const config_key_t *k, const char *value,
                     int line) {
    void *dst = field(k, p->cfg, p->script);
    char *s = NULL;
    switch (k->type) {
    case KEY_INT: {
        char *end;
        errno = 0;
        long v = strtol(value, &end, 10);
        if (errno || end == value || *end) {
            fail(p, line, "%s: '%s' is not a whole number", k->name, value);
            return -1;
        }
        if (v < k->min || v > k->max) {
            fail(p, line, "%s: %ld is out of range [%ld, %ld]", k->name, v,
                 k->min, k->max);
            return -1;
        }
        *(int *)dst = (int)v;
        return 0;
    }
    case KEY_BOOL:
        if (strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
            fail(p, line, "%s: '%s' is not true or false", k->name, value);
            return -1;
        }
        *(int *)dst = value[0] == 't';
        return 0;
    case KEY_ENUM: {
        size_t n = strlen(value);
        const char *c = k->choices;
        while (c && *c) {
            size_t w = strcspn(c, " ");
            if (w == n && strncmp(c, value, n) == 0)
                break;
            c += w;
            c += strspn(c, " ");
        }
        if (!c || !*c) {
            fail(p, line, "%s: '%s' is not one of: %s", k->name, value,
                 k->choices);
            return -1;
        }
        s = strdup(value);
        break;
    }
    case KEY_ZNODE: {
        char why[128];
        if (zf_path_check(value, strlen(value), why, sizeof why) != ZF_OK) {
            fail(p, line, "%s: '%s': %s", k->name, value, why);
            return -1;
        }
        s = strdup(value);
        break;
    }
    case KEY_FILE:
        s = resolve_file(p, value);
        break;
    case KEY_LISTEN: {
        char why[256];
        if (*value && zf_http_parse_listen(value, NULL, NULL, why,
                                           sizeof why) != 0) {
            fail(p, line, "%s: %s", k->name, why);
            return -1;
        }
        s = strdup(value);
        break;
    }
    case KEY_CONNECT: {
        char why[512];
        if (check_connect(value, why, sizeof why) != 0) {
            fail(p, line, "%s: '%s': %s", k->name, value, why);
            return -1;
        }
        s = strdup(value);
        break;
    }
    case KEY_STRING:
        s = strdup(value);
        break;
    }
    if (!s) {
        fail(p, line, "out of memory");
        return -1;
    }
    free(*(char **)dst);
    *(char **)dst = s;
    return 0;
}

/* Append name = value to a key/value list (`what` prefixes the name in
 * messages). Returns 1, or 0 after fail(). */
static int add_kv(parse_t *p, zf_kv_t **list, size_t *n, const char *what,
                  const char *name, const char *value) {
    for (size_t i = 0; i < *n; i++) {
        if (strcmp((*list)[i].key, name) == 0) {
            fail(p, p->line, "%s%s is set twice (first on line %d)", what,
                 name, (*list)[i].line);
            return 0;
        }
    }
    zf_kv_t *v = realloc(*list, (*n + 1) * sizeof *v);
    if (!v) {
        fail(p, p->line, "out of memory");
        return 0;
    }
    *list = v;
    zf_kv_t *kv = &v[(*n)++];
    kv->key = strdup(name);
    kv->value = strdup(value);
    kv->line = p->line;
    if (!kv->key || !kv->value) {
        fail(p, p->line, "out of memory");
        return 0;
    }
    return 1;
}

static void free_kvs(zf_kv_t *list, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (list[i].value) /* it may be a secret */
            memset(list[i].value, 0, strlen(list[i].value));
        free(list[i].key);
        free(list[i].value);
    }
    free(list);
}

int zf_config_key_is_secret(const char *section, const char *key) {
    if (strstr(key, "password") || strstr(key, "secret"))
        return 1;
    if (strcmp(section, "kafka") == 0)
        return strcmp(key, "sasl.oauthbearer.config") == 0 ||
               strcmp(key, "ssl.key.pem") == 0 || strcmp(key, "ssl_key") == 0;
    return strcmp(section, "zookeeper") == 0 && strcmp(key, "auth") == 0;
}

/* A growing string for expand(). */
typedef struct buf {
    char *s;
    size_t len, cap;
} buf_t;

static int buf_add(buf_t *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *v = realloc(b->s, cap);
        if (!v)
            return -1;
        b->s = v;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
    return 0;
}

/* Replace the environment references in `value` (see config.h): ${NAME},
 * ${NAME:-DEFAULT}, $$. Returns a new string, or NULL after fail(). Sets
 * *literal when any byte of the result comes from the file itself (text
 * outside references, or a DEFAULT that was used) rather than from the
 * environment. Messages quote the reference as written, never a value. */
static char *expand(parse_t *p, const char *value, int *literal) {
    buf_t b = {0};
    *literal = 0;
    const char *s = value;
    while (*s) {
        const char *dollar = strchr(s, '$');
        size_t n = dollar ? (size_t)(dollar - s) : strlen(s);
        if (n && buf_add(&b, s, n) != 0)
            goto nomem;
        if (n)
            *literal = 1;
        if (!dollar)
            break;
        s = dollar;
        if (s[1] != '{') {
            /* "$$" is one '$'; a '$' before anything else stays as it is. */
            if (buf_add(&b, "$", 1) != 0)
                goto nomem;
            *literal = 1;
            s += s[1] == '$' ? 2 : 1;
            continue;
        }
        const char *name = s + 2;
        const char *close = strchr(name, '}');
        if (!close) {
            fail(p, p->line, "unterminated '${' in the value (write $$ for "
                             "a literal '$')");
            goto err;
        }
        size_t nlen = strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                   "qrstuvwxyz0123456789_");
        const char *def = NULL;
        if (name + nlen < close && strncmp(name + nlen, ":-", 2) == 0)
            def = name + nlen + 2;
        else if (name + nlen != close)
            nlen = 0; /* not a plain name: reported below */
        if (!nlen || isdigit((unsigned char)name[0])) {
            fail(p, p->line, "'%.*s': an environment variable name is "
                             "letters, digits and '_', not starting with a "
                             "digit (write $$ for a literal '$')",
                 (int)(close - s + 1), s);
            goto err;
        }
        char var[256];
        if (nlen >= sizeof var) {
            fail(p, p->line, "environment variable name too long");
            goto err;
        }
        memcpy(var, name, nlen);
        var[nlen] = '\0';
        const char *env = getenv(var);
        if (def && (!env || !*env)) {
            if (buf_add(&b, def, (size_t)(close - def)) != 0)
                goto nomem;
            if (close > def)
                *literal = 1;
        } else if (!env) {
            fail(p, p->line, "environment variable %s is not set", var);
            goto err;
        } else if (buf_add(&b, env, strlen(env)) != 0) {
            goto nomem;
        }
        s = close + 1;
    }
    if (!b.s && buf_add(&b, "", 0) != 0)
        goto nomem;
    return b.s;
nomem:
    fail(p, p->line, "out of memory");
err:
    if (b.s) /* scrub what may be a secret before freeing it */
        memset(b.s, 0, b.cap);
    free(b.s);
    return NULL;
}

static int on_value(parse_t *p, const char *name, const char *value);

/* Only a listen address may be empty (it then means off). */
static int empty_allowed(const char *section, const char *name) {
    for (size_t i = 0; i < NKEYS; i++)
        if (keys[i].type == KEY_LISTEN && strcmp(keys[i].section, section) == 0 &&
            strcmp(keys[i].name, name) == 0)
            return 1;
    return 0;
}

static int on_key(void *user, const char *section, const char *name,
                  const char *value) {
    parse_t *p = user;
    (void)section; /* p->section is what read_line recognised */
    if (!p->section) {
        /* Inside an unknown section that error came first and stays. */
        fail(p, p->line, "key '%s' is outside any section", name);
        return 0;
    }
    if (!*value && !empty_allowed(p->section, name)) {
        fail(p, p->line, "%s has an empty value", name);
        return 0;
    }
    /* As written: ${NAME} stays, so no secret is copied. */
    if (sig_add(p->script ? &p->script->sig : &p->cfg->restart_sig,
                p->section, name, value) != 0) {
        fail(p, p->line, "out of memory");
        return 0;
    }
    int literal;
    char *expanded = expand(p, value, &literal);
    if (!expanded)
        return 0;
    int secret = zf_config_key_is_secret(p->section, name);
    if (secret && literal && !p->cfg->secret_line)
        p->cfg->secret_line = p->line;
    int ok = on_value(p, name, expanded);
    memset(expanded, 0, strlen(expanded));
    free(expanded);
    return ok;
}

/* The rest of on_key, once `value` is expanded. */
static int on_value(parse_t *p, const char *name, const char *value) {
    if (!*value && !empty_allowed(p->section, name)) {
        fail(p, p->line, "%s is empty once environment variables are "
                         "substituted",
             name);
        return 0;
    }
    if (strcmp(p->section, "kafka") == 0)
        return add_kv(p, &p->cfg->kafka, &p->cfg->nkafka, "", name, value);
    if (strcmp(p->section, "script") == 0 &&
        strncmp(name, "param.", 6) == 0) {
        /* param.NAME = value reaches the script as params.NAME. */
        if (!valid_name(name + 6)) {
            fail(p, p->line, "%s: a parameter name is letters, digits, '_', "
                             "'.' or '-'",
                 name);
            return 0;
        }
        return add_kv(p, &p->script->params, &p->script->nparams, "param.",
                      name + 6, value);
    }
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcmp(keys[i].section, p->section) != 0 ||
            strcmp(keys[i].name, name) != 0)
            continue;
        if (p->seen[i]) {
            fail(p, p->line, "%s is set twice in this section", name);
            return 0;
        }
        p->seen[i] = 1;
        if (p->script && (strcmp(name, "file") == 0 ||
                          strcmp(name, "source") == 0))
            p->script->file_line = p->line;
        if (p->script && strcmp(name, "on_error") == 0)
            p->script->on_error_line = p->line;
        if (p->script && strcmp(name, "dlq_topic") == 0)
            p->script->dlq_topic_line = p->line;
        if (p->script && strcmp(name, "topics") == 0)
            p->script->topics_line = p->line;
        return set_value(p, &keys[i], value, p->line) == 0;
    }
    fail(p, p->line, "unknown key '%s' in [%s]", name, p->section);
    return 0;
}

/* Fill the defaults of one owner's keys, then complain about missing ones. */
static void apply_defaults(parse_t *p, key_owner_t owner, zf_script_conf_t *sc,
                           const char *section, int line) {
    for (size_t i = 0; i < NKEYS; i++) {
        const config_key_t *k = &keys[i];
        if (k->owner != owner || strcmp(k->section, section) != 0)
            continue;
        void *dst = field(k, p->cfg, sc);
        int unset = k->type == KEY_INT || k->type == KEY_BOOL
                        ? *(int *)dst == INT_MIN
                        : *(char **)dst == NULL;
        if (!unset)
            continue;
        if (k->def && !*k->def && k->type != KEY_LISTEN)
            continue; /* optional */
        if (!k->def) {
            fail(p, line, "[%s%s%s] needs a '%s' key", section, sc ? " " : "",
                 sc ? sc->name : "", k->name);
            return;
        }
        zf_script_conf_t *saved = p->script;
        p->script = sc;
        set_value(p, k, k->def, line);
        p->script = saved;
    }
}

/* A Kafka topic name, as Kafka checks it: 1 to 249 of [a-zA-Z0-9._-],
 * not "." or "..". */
#define NOT_A_TOPIC                                                           \
    "is not a Kafka topic name (1 to 249 of letters, digits, '.', '_' and "  \
    "'-'; not '.' or '..')"

static int valid_topic(const char *t) {
    size_t n = strlen(t);
    if (n == 0 || n > 249 || strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
        return 0;
    return strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._-") == n;
}

static int split_topics(parse_t *p, zf_script_conf_t *sc) {
    char *copy = strdup(sc->topics), *save = NULL;
    if (!copy)
        return -1;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = trim(t);
        if (!*t)
            continue;
        const zf_script_conf_t *other = zf_config_script_for_topic(p->cfg, t);
        if (!valid_topic(t)) {
            fail(p, sc->topics_line, "topics: '%s' %s", t, NOT_A_TOPIC);
            break;
        }
        if (other == sc) {
            fail(p, sc->topics_line, "topic '%s' is listed twice", t);
            break;
        }
        if (other) {
            fail(p, sc->topics_line, "topic '%s' is routed to both [script "
                                     "%s] and [script %s]",
                 t, other->name, sc->name);
            break;
        }
        char **v = realloc(sc->topic, (sc->ntopics + 1) * sizeof *v);
        if (!v || !(v[sc->ntopics] = strdup(t))) {
            free(v ? (void *)v : NULL);
            free(copy);
            return -1;
        }
        sc->topic = v;
        sc->ntopics++;
    }
    free(copy);
    if (!sc->ntopics)
        fail(p, sc->topics_line, "[script %s] lists no topics", sc->name);
    return 0;
}

static void parse_ops(parse_t *p, zf_script_conf_t *sc) {
    char *copy = strdup(sc->ops_list), *save = NULL;
    if (!copy) {
        fail(p, sc->line, "out of memory");
        return;
    }
    sc->ops = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        zf_op_type_t type;
        t = trim(t);
        if (zf_op_parse_type(t, &type) != 0) {
            fail(p, sc->line, "[script %s] ops: unknown op '%s' (expected "
                              "upsert, create, set, delete, check)",
                 sc->name, t);
            break;
        }
        sc->ops |= ZF_OP_BIT(type);
    }
    free(copy);
    if (!sc->ops && !p->err_line)
        fail(p, sc->line, "[script %s] ops lists no op", sc->name);
}

/* Exactly one of file and source; source is zk:/PATH. */
static void check_source(parse_t *p, zf_script_conf_t *sc) {
    if (!sc->file == !sc->source) {
        fail(p, sc->file ? sc->file_line : sc->line,
             sc->file ? "[script %s] has both file and source: give one"
                      : "[script %s] needs a 'file' or a 'source' key",
             sc->name);
        return;
    }
    if (!sc->source)
        return;
    char why[128];
    if (strncmp(sc->source, "zk:", 3) != 0) {
        fail(p, sc->file_line, "source: '%s' is not zk:/PATH (a script in a "
                               "file is given with file =)",
             sc->source);
        return;
    }
    sc->zk_path = sc->source + 3;
    if (zf_path_check(sc->zk_path, strlen(sc->zk_path), why, sizeof why) !=
        ZF_OK)
        fail(p, sc->file_line, "source: '%s': %s", sc->zk_path, why);
}

/* on_error = dlq needs a dlq_topic, and a dlq_topic needs on_error = dlq;
 * dead letters must not flow back into a script. Runs once every section's
 * topics are known. */
static void check_dlq(parse_t *p, zf_script_conf_t *sc) {
    int dlq = strcmp(sc->on_error, "dlq") == 0;
    if (dlq && !sc->dlq_topic) {
        fail(p, sc->on_error_line, "[script %s] on_error = dlq needs a "
                                   "'dlq_topic' key",
             sc->name);
        return;
    }
    if (!dlq && sc->dlq_topic) {
        fail(p, sc->dlq_topic_line, "[script %s] dlq_topic is only used with "
                                    "on_error = dlq (on_error is %s)",
             sc->name, sc->on_error);
        return;
    }
    if (!dlq)
        return;
    if (!valid_topic(sc->dlq_topic)) {
        fail(p, sc->dlq_topic_line, "dlq_topic: '%s' %s", sc->dlq_topic,
             NOT_A_TOPIC);
        return;
    }
    const zf_script_conf_t *reader =
        zf_config_script_for_topic(p->cfg, sc->dlq_topic);
    if (reader)
        fail(p, sc->dlq_topic_line, "dlq_topic: '%s' is a topic zkflow "
                                    "consumes ([script %s]): dead letters "
                                    "would come back",
             sc->dlq_topic, reader->name);
}

static int kafka_has(const zf_config_t *cfg, const char *key) {
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (strcmp(cfg->kafka[i].key, key) == 0)
            return 1;
    return 0;
}

static void validate(parse_t *p) {
    zf_config_t *cfg = p->cfg;
    int last = p->lines_done ? p->lines_done : 1;
    apply_defaults(p, OWNER_CONFIG, NULL, "zookeeper", cfg->zk_line ? cfg->zk_line : last);
    apply_defaults(p, OWNER_CONFIG, NULL, "engine", last);
    if (cfg->zk_auth && (!strchr(cfg->zk_auth, ':') || cfg->zk_auth[0] == ':'))
        fail(p, cfg->zk_line, "[zookeeper] auth: expected SCHEME:CREDENTIALS, "
                              "e.g. digest:user:password");
    else if (!cfg->zk_auth && cfg->zk_acl && strcmp(cfg->zk_acl, "open") != 0)
        fail(p, cfg->zk_line, "[zookeeper] acl = %s needs an auth key (the "
                              "identity the ACL names)",
             cfg->zk_acl);
    if (!cfg->kafka_line)
        fail(p, last, "missing section [kafka]");
    else if (!kafka_has(cfg, "bootstrap.servers"))
        fail(p, cfg->kafka_line, "[kafka] needs 'bootstrap.servers'");
    else if (!kafka_has(cfg, "group.id"))
        fail(p, cfg->kafka_line, "[kafka] needs 'group.id'");
    if (!cfg->nscripts)
        fail(p, last, "no [script NAME] section: nothing to run");
    for (size_t i = 0; i < cfg->nscripts && !p->err_line; i++) {
        zf_script_conf_t *sc = &cfg->scripts[i];
        apply_defaults(p, OWNER_SCRIPT, sc, "script", sc->line);
        if (!p->err_line)
            check_source(p, sc);
        if (!p->err_line && split_topics(p, sc) != 0)
            fail(p, sc->line, "out of memory");
        if (!p->err_line)
            parse_ops(p, sc);
    }
    for (size_t i = 0; i < cfg->nscripts && !p->err_line; i++)
        check_dlq(p, &cfg->scripts[i]);
}

static char *dir_of(const char *path) {
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path + 1) : 0;
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

zf_err_t zf_config_load(const char *path, zf_config_t **out, char *err,
                        size_t errlen) {
    *out = NULL;
    zf_config_t *cfg = calloc(1, sizeof *cfg);
    parse_t p = {.cfg = cfg, .err = err, .errlen = errlen};
    if (!cfg || !(cfg->path = strdup(path)) || !(p.dir = dir_of(path))) {
        snprintf(err, errlen, "%s: out of memory", path);
        zf_config_destroy(cfg);
        return ZF_ENOMEM;
    }
    cfg->zk_session_timeout_ms = INT_MIN; /* INT_MIN marks "not set" */
    cfg->zk_connect_timeout_ms = INT_MIN;
    cfg->max_queued_records = INT_MIN;
    cfg->batch_max_ops = cfg->batch_max_bytes = INT_MIN;

    p.fp = fopen(path, "r");
    if (!p.fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        free(p.dir);
        zf_config_destroy(cfg);
        return ZF_ECONFIG;
    }
    struct stat st;
    if (fstat(fileno(p.fp), &st) == 0)
        cfg->file_mode = st.st_mode & 07777;
    int rc = ini_parse_stream(read_line, &p, on_key, &p);
    if (ferror(p.fp) && !p.err_line)
        fail(&p, p.lines_done + 1, "cannot read: %s", strerror(errno));
    fclose(p.fp);
    if (rc > 0 && (!p.err_line || rc < p.err_line)) {
        p.err_line = 0; /* inih's syntax error comes first */
        fail(&p, rc, "syntax error: expected [section], key = value or a "
                     "comment");
    } else if (rc < 0 && !p.err_line) {
        fail(&p, 0, "cannot read the file");
    }
    if (!p.err_line)
        validate(&p);
    free(p.dir);
    if (p.err_line) {
        zf_config_destroy(cfg);
        return ZF_ECONFIG;
    }
    *out = cfg;
    return ZF_OK;
}

void zf_config_destroy(zf_config_t *cfg) {
    if (!cfg)
        return;
    free_kvs(cfg->kafka, cfg->nkafka);
    for (size_t i = 0; i < cfg->nscripts; i++) {
        zf_script_conf_t *sc = &cfg->scripts[i];
        for (size_t t = 0; t < sc->ntopics; t++)
            free(sc->topic[t]);
        free(sc->topic);
        free(sc->name);
        free(sc->file);
        free(sc->source);
        free(sc->sig);
        free(sc->topics);
        free(sc->root);
        free(sc->ops_list);
        free(sc->on_error);
        free(sc->dlq_topic);
        free_kvs(sc->params, sc->nparams);
    }
    free(cfg->scripts);
    free(cfg->restart_sig);
    free(cfg->zk_connect);
    if (cfg->zk_auth)
        memset(cfg->zk_auth, 0, strlen(cfg->zk_auth));
    free(cfg->zk_auth);
    free(cfg->zk_acl);
    free(cfg->delivery);
    free(cfg->offsets_root);
    free(cfg->metrics_listen);
    free(cfg->log_level);
    free(cfg->log_format);
    free(cfg->path);
    free(cfg);
}

const zf_script_conf_t *zf_config_script_for_topic(const zf_config_t *cfg,
                                                   const char *topic) {
    for (size_t i = 0; i < cfg->nscripts; i++)
        for (size_t t = 0; t < cfg->scripts[i].ntopics; t++)
            if (strcmp(cfg->scripts[i].topic[t], topic) == 0)
                return &cfg->scripts[i];
    return NULL;
}

int zf_config_secret_exposed(const zf_config_t *cfg, char *msg, size_t len) {
    if (!cfg->secret_line || !(cfg->file_mode & (S_IRGRP | S_IROTH)))
        return 0;
    snprintf(msg, len,
             "%s:%d: this file holds a secret and is readable by %s (mode "
             "%04o): chmod 600 it, or take the secret from the environment "
             "with ${NAME}",
             cfg->path, cfg->secret_line,
             (cfg->file_mode & S_IROTH) ? "others" : "its group",
             cfg->file_mode);
    return 1;
}

/* Replace each occurrence of `secret` in `msg` by "***". */
static void redact_one(char *msg, size_t len, const char *secret) {
    size_t n = strlen(secret);
    if (!n || !len)
        return;
    char *out = malloc(len);
    if (!out) { /* cannot rebuild: drop the message rather than leak */
        snprintf(msg, len, "(message hidden: it may hold a secret)");
        return;
    }
    size_t o = 0;
    for (const char *s = msg; *s && o + 1 < len;) {
        if (strncmp(s, secret, n) == 0) {
            size_t k = o + 3 < len - 1 ? 3 : len - 1 - o;
            memcpy(out + o, "***", k);
            o += k;
            s += n;
        } else {
            out[o++] = *s++;
        }
    }
    out[o] = '\0';
    memcpy(msg, out, o + 1);
    free(out);
}

void zf_config_redact(const zf_config_t *cfg, char *msg, size_t len) {
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (zf_config_key_is_secret("kafka", cfg->kafka[i].key))
            redact_one(msg, len, cfg->kafka[i].value);
    for (size_t i = 0; i < cfg->nscripts; i++) {
        for (size_t j = 0; j < cfg->scripts[i].nparams; j++) {
            const zf_kv_t *kv = &cfg->scripts[i].params[j];
            char key[256];
            snprintf(key, sizeof key, "param.%s", kv->key);
            if (zf_config_key_is_secret("script", key))
                redact_one(msg, len, kv->value);
        }
    }
}

void zf_config_print_keys(FILE *out) {
    const char *section = "";
    fprintf(out, "any value may use ${NAME} (an environment variable; an "
                 "error when unset),\n${NAME:-DEFAULT} (DEFAULT when NAME is "
                 "unset or empty) and $$ (a literal $)\n");
    fprintf(out, "[kafka]\n  any librdkafka consumer property, passed on "
                 "unchanged; bootstrap.servers and group.id are required\n");
    int script_params = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        const config_key_t *k = &keys[i];
        if (strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(out, "[%s%s]\n", section,
                    strcmp(section, "script") == 0 ? " NAME" : "");
        }
        fprintf(out, "  %-20s %s (%s%s)\n", k->name, k->doc,
                !k->def ? "required" : *k->def ? "default " : "optional",
                k->def ? k->def : "");
        if (strcmp(section, "script") == 0 && !script_params++)
            fprintf(out, "  %-20s reaches the script as params.NAME (a "
                         "string)\n",
                    "param.NAME");
    }
}
