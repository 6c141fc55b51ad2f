#include "zkflow/jsonl.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * A growable byte buffer, always NUL-terminated when non-empty. */

typedef struct buf {
    char *p;
    size_t n, cap;
    int oom;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t len) {
    if (b->oom)
        return;
    if (b->n + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->n + len + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, len);
    b->n += len;
    b->p[b->n] = '\0';
}

static void buf_puts(buf_t *b, const char *s) { buf_add(b, s, strlen(s)); }

/* ------------------------------------------------------------------------
 * UTF-8 and base64 */

/* s[0..len) as a JSON string value, every byte that is not part of valid
 * UTF-8 replaced by U+FFFD. NULL when out of memory. */
static json_t *json_string_lossy(const char *s, size_t len) {
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    buf_t b = {0};
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = zf_utf8_char(s + i, len - i, &cp);
        if (n) {
            buf_add(&b, s + i, n);
            i += n;
        } else {
            buf_puts(&b, "\xef\xbf\xbd");
            i++;
        }
    }
    j = b.oom ? NULL : json_stringn(b.p ? b.p : "", b.n);
    free(b.p);
    return j;
}

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *zf_jsonl_base64_encode(const void *src, size_t len) {
    const unsigned char *s = src;
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    char *o = out;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = b64[(v >> 6) & 63];
        *o++ = b64[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)s[i + 1] << 8;
        *o++ = b64[v >> 18];
        *o++ = b64[(v >> 12) & 63];
        *o++ = i + 1 < len ? b64[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

char *zf_jsonl_base64_decode(const char *text, size_t len, size_t *outlen) {
    while (len > 0 && text[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return NULL;
    char *out = malloc(len / 4 * 3 + 3);
    if (!out)
        return NULL;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = text[i] ? strchr(b64, text[i]) : NULL;
        if (!p) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (uint32_t)(p - b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    out[n] = '\0';
    *outlen = n;
    return out;
}

/* ------------------------------------------------------------------------
 * Record lines */

int zf_jsonl_is_blank(const char *line, size_t len) {
    for (size_t i = 0; i < len; i++) {
        if (line[i] == '#')
            return 1;
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' &&
            line[i] != '\n')
            return 0;
    }
    return 1;
}

void zf_jsonl_record_free(zf_jsonl_record_t *r) {
    if (!r)
        return;
    for (size_t i = 0; i < r->rec.nheaders; i++) {
        free((char *)r->headers[i].name);
        free((void *)r->headers[i].value);
    }
    free(r->headers);
    free(r->topic);
    free(r->key);
    free(r->value);
    free(r);
}

typedef struct parse {
    char *err;
    size_t errlen;
    int oom;
} parse_t;

static int fail(parse_t *ps, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Record the reason the line is malformed; returns -1. */
static int fail(parse_t *ps, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err, ps->errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static int nomem(parse_t *ps) {
    ps->oom = 1;
    return fail(ps, "out of memory");
}

/* What a JSON value is, for messages. */
static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number with a fraction";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* A malloc'd copy of s[0..len) plus a NUL; NULL when out of memory. */
static char *dup_bytes(const char *s, size_t len) {
    char *p = malloc(len + 1);
    if (p) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

/* The shortest %g text that reads back as exactly d, JSON-shaped. */
static void add_real(buf_t *b, double d) {
    char tmp[64];
    if (!isfinite(d)) { /* jansson never parses these; be safe anyway */
        buf_puts(b, "null");
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (strtod(tmp, NULL) == d)
            break;
    }
    buf_puts(b, tmp);
    if (!strpbrk(tmp, ".eE"))
        buf_puts(b, ".0");
}

/* Compact JSON text of v, keeping object key order. Numbers are written
 * in their shortest exact form (21.3, not jansson's 21.300000000000001),
 * which is what someone writing a sample expects. */
static void encode_compact(buf_t *b, const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        json_t *m;
        int first = 1;
        buf_puts(b, "{");
        json_object_foreach((json_t *)v, k, m) {
            if (!first)
                buf_puts(b, ",");
            first = 0;
            json_t *ks = json_string(k);
            char *kt = ks ? json_dumps(ks, JSON_ENCODE_ANY) : NULL;
            if (!kt)
                b->oom = 1;
            else
                buf_puts(b, kt);
            free(kt);
            json_decref(ks);
            buf_puts(b, ":");
            encode_compact(b, m);
        }
        buf_puts(b, "}");
        break;
    }
    case JSON_ARRAY:
        buf_puts(b, "[");
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                buf_puts(b, ",");
            encode_compact(b, json_array_get(v, i));
        }
        buf_puts(b, "]");
        break;
    case JSON_REAL:
        add_real(b, json_real_value(v));
        break;
    default: {
        char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!t)
            b->oom = 1;
        else
            buf_puts(b, t);
        free(t);
    }
    }
}

/* Take a byte field: a string, null (absent), with `text_ok` any other
 * JSON value as its compact JSON text; or, from the field `name`_base64,
 * the decoded bytes. *dst stays NULL for null. */
static int take_bytes(parse_t *ps, json_t *v, const char *name, int base64,
                      int text_ok, char **dst, size_t *len) {
    if (json_is_null(v))
        return 0;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        if (base64) {
            if (!(*dst = zf_jsonl_base64_decode(s, n, len)))
                return fail(ps, "%s_base64 is not valid base64", name);
            return 0;
        }
        if (!(*dst = dup_bytes(s, n)))
            return nomem(ps);
        *len = n;
        return 0;
    }
    if (!text_ok || base64)
        return fail(ps, "%s%s must be a string or null, not %s", name,
                    base64 ? "_base64" : "", json_kind(v));
    buf_t b = {0};
    encode_compact(&b, v);
    if (b.oom) {
        free(b.p);
        return nomem(ps);
    }
    *dst = b.p;
    *len = b.n;
    return 0;
}

/* Append one header; name and value are copied. */
static int add_header(parse_t *ps, zf_jsonl_record_t *r, const char *name,
                      size_t namelen, json_t *value, const char *where) {
    if (strlen(name) != namelen)
        return fail(ps, "%s: header name contains a NUL byte", where);
    if (value && !json_is_string(value) && !json_is_null(value))
        return fail(ps, "%s: header value must be a string or null, not %s",
                    where, json_kind(value));
    zf_header_t *h = &r->headers[r->rec.nheaders];
    if (!(h->name = dup_bytes(name, namelen)))
        return nomem(ps);
    r->rec.nheaders++;
    if (value && json_is_string(value)) {
        h->len = json_string_length(value);
        if (!(h->value = dup_bytes(json_string_value(value), h->len)))
            return nomem(ps);
    }
    return 0;
}

static int take_headers(parse_t *ps, zf_jsonl_record_t *r, json_t *v) {
    char where[64];
    if (json_is_object(v)) {
        if (!(r->headers = calloc(json_object_size(v) + 1, sizeof *r->headers)))
            return nomem(ps);
        const char *name;
        json_t *val;
        json_object_foreach(v, name, val) {
            snprintf(where, sizeof where, "headers.%.40s", name);
            if (add_header(ps, r, name, strlen(name), val, where) != 0)
                return -1;
        }
        return 0;
    }
    if (!json_is_array(v))
        return fail(ps, "headers must be an array of {\"name\": ..., "
                        "\"value\": ...} or an object, not %s",
                    json_kind(v));
    if (!(r->headers = calloc(json_array_size(v) + 1, sizeof *r->headers)))
        return nomem(ps);
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *h = json_array_get(v, i);
        snprintf(where, sizeof where, "headers[%zu]", i);
        if (!json_is_object(h))
            return fail(ps, "%s must be an object with name and value, "
                            "not %s",
                        where, json_kind(h));
        const char *k;
        json_t *m;
        json_object_foreach(h, k, m) {
            if (strcmp(k, "name") != 0 && strcmp(k, "value") != 0)
                return fail(ps, "%s: unknown field '%s' (fields are name "
                                "and value)",
                            where, k);
        }
        json_t *name = json_object_get(h, "name");
        if (!name)
            return fail(ps, "%s has no name", where);
        if (!json_is_string(name))
            return fail(ps, "%s: name must be a string, not %s", where,
                        json_kind(name));
        if (add_header(ps, r, json_string_value(name),
                       json_string_length(name), json_object_get(h, "value"),
                       where) != 0)
            return -1;
    }
    return 0;
}

/* The integer field v in [min, max] into *out. */
static int take_int(parse_t *ps, json_t *v, const char *name, int64_t min,
                    int64_t max, int64_t *out) {
    if (!json_is_integer(v))
        return fail(ps, "%s must be an integer, not %s", name, json_kind(v));
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return fail(ps, "%s %" JSON_INTEGER_FORMAT " is out of range (%" PRId64
                        "..%" PRId64 ")",
                    name, n, min, max);
    *out = n;
    return 0;
}

static const char *const record_fields[] = {
    "topic", "partition", "offset", "timestamp", "key", "key_base64",
    "value", "value_base64", "headers", NULL,
};

static int take_record(parse_t *ps, zf_jsonl_record_t *r, json_t *o,
                       int64_t index) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        size_t i = 0;
        while (record_fields[i] && strcmp(record_fields[i], k) != 0)
            i++;
        if (!record_fields[i])
            return fail(ps, "unknown field '%s' (fields are topic, "
                            "partition, offset, timestamp, key, value, "
                            "headers, key_base64, value_base64)",
                        k);
    }
    zf_record_t *rec = &r->rec;
    int64_t n;
    if ((v = json_object_get(o, "topic"))) {
        if (!json_is_string(v))
            return fail(ps, "topic must be a string, not %s", json_kind(v));
        if (json_string_length(v) == 0 ||
            strlen(json_string_value(v)) != json_string_length(v))
            return fail(ps, "topic must be a non-empty string without NUL");
        r->topic = strdup(json_string_value(v));
    } else {
        r->topic = strdup("test");
    }
    if (!r->topic)
        return nomem(ps);
    rec->topic = r->topic;
    rec->partition = 0;
    if ((v = json_object_get(o, "partition"))) {
        if (take_int(ps, v, "partition", 0, INT32_MAX, &n) != 0)
            return -1;
        rec->partition = (int32_t)n;
    }
    rec->offset = index;
    if ((v = json_object_get(o, "offset")) &&
        take_int(ps, v, "offset", 0, INT64_MAX, &rec->offset) != 0)
        return -1;
    rec->timestamp = -1;
    if ((v = json_object_get(o, "timestamp")) && !json_is_null(v) &&
        take_int(ps, v, "timestamp", -1, INT64_MAX, &rec->timestamp) != 0)
        return -1;

    static const char *const bytes[] = {"key", "value"};
    for (int i = 0; i < 2; i++) {
        char b64name[32];
        snprintf(b64name, sizeof b64name, "%s_base64", bytes[i]);
        json_t *plain = json_object_get(o, bytes[i]);
        json_t *coded = json_object_get(o, b64name);
        if (plain && coded)
            return fail(ps, "%s and %s cannot both be given", bytes[i],
                        b64name);
        char **dst = i ? &r->value : &r->key;
        size_t *len = i ? &rec->value_len : &rec->key_len;
        if ((plain || coded) &&
            take_bytes(ps, plain ? plain : coded, bytes[i], coded != NULL,
                       i == 1, dst, len) != 0)
            return -1;
    }
    rec->key = r->key;
    rec->value = r->value;
    if ((v = json_object_get(o, "headers")) && take_headers(ps, r, v) != 0)
        return -1;
    rec->headers = r->headers;
    return 0;
}

zf_err_t zf_jsonl_parse_record(const char *line, size_t len, int64_t index,
                               zf_jsonl_record_t **out, char *err,
                               size_t errlen) {
    *out = NULL;
    if (zf_jsonl_is_blank(line, len))
        return ZF_OK;
    parse_t ps = {err, errlen, 0};
    json_error_t je;
    json_t *o = json_loadb(line, len,
                           JSON_DECODE_ANY | JSON_REJECT_DUPLICATES |
                               JSON_ALLOW_NUL,
                           &je);
    if (!o) {
        /* jansson counts columns in characters, from 1. */
        fail(&ps, "invalid JSON at column %d: %s", je.column, je.text);
        return ZF_ERECORD;
    }
    zf_jsonl_record_t *r = NULL;
    if (!json_is_object(o)) {
        fail(&ps, "a record must be a JSON object, not %s", json_kind(o));
    } else if (!(r = calloc(1, sizeof *r))) {
        nomem(&ps);
    } else if (take_record(&ps, r, o, index) == 0) {
        json_decref(o);
        *out = r;
        return ZF_OK;
    }
    zf_jsonl_record_free(r);
    json_decref(o);
    return ps.oom ? ZF_ENOMEM : ZF_ERECORD;
}

/* ------------------------------------------------------------------------
 * Result lines */

/* Set o[key] = v, taking v; a NULL v (allocation failed) or a failed set
 * counts in *oom. */
static void put(json_t *o, const char *key, json_t *v, int *oom) {
    if (!v || json_object_set_new(o, key, v) != 0)
        *oom = 1;
}

static json_t *format_op(const zf_op_t *op, int *oom) {
    json_t *o = json_object();
    if (!o) {
        *oom = 1;
        return NULL;
    }
    put(o, "op", json_string(zf_op_name(op->type)), oom);
    put(o, "path", json_string_lossy(op->path, strlen(op->path)), oom);
    if (op->data) {
        json_t *d = json_stringn(op->data, op->datalen);
        if (d) {
            put(o, "data", d, oom);
        } else {
            char *t = zf_jsonl_base64_encode(op->data, op->datalen);
            put(o, "data_base64", t ? json_string(t) : NULL, oom);
            free(t);
        }
    }
    if (op->version != ZF_VERSION_ANY)
        put(o, "version", json_integer(op->version), oom);
    if (op->type == ZF_OP_CREATE && op->mode != ZF_MODE_PERSISTENT)
        put(o, "mode", json_string(zf_mode_name(op->mode)), oom);
    if (op->type == ZF_OP_CREATE && op->mode == ZF_MODE_TTL)
        put(o, "ttl", json_integer(op->ttl_ms), oom);
    if (op->recursive)
        put(o, "recursive", json_true(), oom);
    return o;
}

char *zf_jsonl_format_result(int64_t offset, const zf_oplist_t *ops,
                             const char *error) {
    int oom = 0;
    json_t *o = json_object();
    if (!o)
        return NULL;
    put(o, "offset", json_integer(offset), &oom);
    if (error) {
        put(o, "error", json_string_lossy(error, strlen(error)), &oom);
    } else if (!ops || ops->n == 0) {
        put(o, "skip", json_true(), &oom);
    } else {
        json_t *a = json_array();
        for (size_t i = 0; a && i < ops->n; i++) {
            json_t *op = format_op(&ops->ops[i], &oom);
            if (!op || json_array_append_new(a, op) != 0)
                oom = 1;
        }
        put(o, "ops", a, &oom);
    }
    /* Objects keep insertion order, so keys come out as added. */
    char *line = oom ? NULL : json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return line;
}

/* ------------------------------------------------------------------------
 * Comparison */

/* Replace each op's "data" that holds a JSON document (a string of JSON
 * text, or any non-string value) by {"json": document}, so documents
 * compare by value. Plain strings stay as they are. Returns -1 when out of
 * memory. */
static int normalize(json_t *line) {
    json_t *ops = json_is_object(line) ? json_object_get(line, "ops") : NULL;
    if (!json_is_array(ops))
        return 0;
    for (size_t i = 0; i < json_array_size(ops); i++) {
        json_t *op = json_array_get(ops, i);
        json_t *data = json_is_object(op) ? json_object_get(op, "data") : NULL;
        if (!data)
            continue;
        json_t *doc;
        if (json_is_string(data)) {
            doc = json_loadb(json_string_value(data), json_string_length(data),
                             JSON_DECODE_ANY, NULL);
            if (!doc)
                continue; /* not JSON text: compare the strings */
        } else {
            doc = json_incref(data);
        }
        json_t *wrap = json_pack("{so}", "json", doc); /* takes doc */
        if (!wrap || json_object_set_new(op, "data", wrap) != 0)
            return -1;
    }
    return 0;
}

int zf_jsonl_equal(const char *actual, const char *expected, char *err,
                   size_t errlen) {
    json_error_t je;
    json_t *e = json_loads(expected, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!e) {
        snprintf(err, errlen, "invalid JSON at column %d: %s", je.column,
                 je.text);
        return -1;
    }
    json_t *a = json_loads(actual, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    int rc = 0;
    if (normalize(e) != 0 || (a && normalize(a) != 0)) {
        snprintf(err, errlen, "out of memory");
        rc = -1;
    } else if (a) {
        rc = json_equal(a, e) ? 1 : 0;
    }
    json_decref(a);
    json_decref(e);
    return rc;
}
