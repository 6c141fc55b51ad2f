#include "zkflow/fixture.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "zkflow/clock.h"
#include "zkflow/file.h"
#include "zkflow/jsonl.h"

typedef struct expected_line {
    char *text; /* without its newline */
    int line;   /* line number in its file */
} expected_line_t;

struct zf_expected {
    expected_line_t *v;
    size_t n;
    int nlines; /* lines in the file, so missing results can be placed */
};

/* Read a line into *buf without its "\n" or "\r\n". Returns its length,
 * or -1 at the end of the input or on a read error (see ferror). */
static ssize_t read_line(FILE *fp, char **buf, size_t *cap) {
    ssize_t n = getline(buf, cap, fp);
    if (n < 0)
        return -1;
    if (n > 0 && (*buf)[n - 1] == '\n')
        (*buf)[--n] = '\0';
    if (n > 0 && (*buf)[n - 1] == '\r')
        (*buf)[--n] = '\0';
    return n;
}

void zf_expected_free(zf_expected_t *e) {
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i].text);
    free(e->v);
    free(e);
}

/* Parse expected lines from an open stream. */
static zf_err_t parse_stream(FILE *fp, const char *name, zf_expected_t **out,
                             char *err, size_t errlen) {
    zf_expected_t *e = calloc(1, sizeof *e);
    size_t cap = 0, bufcap = 0;
    char *buf = NULL, why[512];
    zf_err_t rc = e ? ZF_OK : ZF_ENOMEM;
    ssize_t len;
    while (rc == ZF_OK && (len = read_line(fp, &buf, &bufcap)) >= 0) {
        int lineno = ++e->nlines;
        if (zf_jsonl_is_blank(buf, (size_t)len))
            continue;
        if (strlen(buf) != (size_t)len) {
            snprintf(err, errlen, "%s:%d: the line contains a NUL byte", name,
                     lineno);
            rc = ZF_ECONFIG;
            break;
        }
        /* Compared with itself, a line fails only when it is not JSON. */
        if (zf_jsonl_equal(buf, buf, why, sizeof why) < 0) {
            snprintf(err, errlen, "%s:%d: %s", name, lineno, why);
            rc = ZF_ECONFIG;
            break;
        }
        if (e->n == cap) {
            cap = cap ? cap * 2 : 64;
            expected_line_t *v = realloc(e->v, cap * sizeof *v);
            if (!v) {
                rc = ZF_ENOMEM;
                break;
            }
            e->v = v;
        }
        if (!(e->v[e->n].text = strdup(buf))) {
            rc = ZF_ENOMEM;
            break;
        }
        e->v[e->n++].line = lineno;
    }
    if (rc == ZF_OK && ferror(fp)) {
        snprintf(err, errlen, "%s: cannot read: %s", name, strerror(errno));
        rc = ZF_ECONFIG;
    }
    if (rc == ZF_ENOMEM)
        snprintf(err, errlen, "%s: out of memory", name);
    free(buf);
    if (rc != ZF_OK) {
        zf_expected_free(e);
        e = NULL;
    }
    *out = e;
    return rc;
}

zf_err_t zf_expected_parse(const char *name, const char *text, size_t len,
                           zf_expected_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (len == 0) /* fmemopen refuses an empty buffer */
        return (*out = calloc(1, sizeof **out)) ? ZF_OK : ZF_ENOMEM;
    FILE *fp = fmemopen((void *)text, len, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: out of memory", name);
        return ZF_ENOMEM;
    }
    zf_err_t rc = parse_stream(fp, name, out, err, errlen);
    fclose(fp);
    return rc;
}

zf_err_t zf_expected_read(const char *path, zf_expected_t **out, char *err,
                          size_t errlen) {
    *out = NULL;
    int std = strcmp(path, "-") == 0;
    FILE *fp = std ? stdin : fopen(path, "r");
    if (!fp) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return ZF_ECONFIG;
    }
    zf_err_t rc = parse_stream(fp, std ? "<stdin>" : path, out, err, errlen);
    if (!std)
        fclose(fp);
    return rc;
}

zf_err_t zf_fixture_run(zf_script_t *s, FILE *records, const char *name,
                        const zf_expected_t *exp, zf_fixture_fn *fn,
                        void *ctx, zf_fixture_stats_t *st, char *err,
                        size_t errlen) {
    *st = (zf_fixture_stats_t){.expected = exp ? exp->n : 0};
    zf_err_t rc = ZF_OK;
    size_t bufcap = 0;
    char *buf = NULL, why[4096];
    int lineno = 0, stopped = 0;
    ssize_t len;
    zf_oplist_t ops = {0};
    while (!stopped && (len = read_line(records, &buf, &bufcap)) >= 0) {
        lineno++;
        zf_jsonl_record_t *r;
        rc = zf_jsonl_parse_record(buf, (size_t)len, (int64_t)st->records, &r,
                                   why, sizeof why);
        if (rc != ZF_OK) {
            snprintf(err, errlen, "%s:%d: %s", name, lineno, why);
            if (rc == ZF_ERECORD)
                rc = ZF_ECONFIG;
            break;
        }
        if (!r)
            continue; /* blank or comment */
        zf_err_t trc = zf_script_transform(s, &r->rec, &ops, why, sizeof why);
        char *out = zf_jsonl_format_result(r->rec.offset, &ops,
                                           trc == ZF_OK ? NULL : why);
        zf_oplist_clear(&ops);
        zf_jsonl_record_free(r);
        if (!out) {
            snprintf(err, errlen, "%s:%d: out of memory", name, lineno);
            rc = ZF_ENOMEM;
            break;
        }
        size_t i = st->records++;
        zf_fixture_line_t l = {.index = i, .actual = out,
                               .failed = trc != ZF_OK};
        st->failed += l.failed;
        if (exp) {
            if (i < exp->n) {
                l.expected = exp->v[i].text;
                l.expected_line = exp->v[i].line;
                l.matched = zf_jsonl_equal(out, l.expected, why,
                                           sizeof why) == 1;
            } else {
                l.expected_line = exp->nlines + (int)(i - exp->n) + 1;
            }
            if (l.matched)
                st->matched++;
            else
                st->differed++;
        }
        stopped = fn && fn(ctx, &l);
        free(out);
    }
    if (rc == ZF_OK && !stopped && ferror(records)) {
        snprintf(err, errlen, "%s: cannot read: %s", name, strerror(errno));
        rc = ZF_ECONFIG;
    }
    for (size_t i = st->records; rc == ZF_OK && !stopped && exp && i < exp->n;
         i++) {
        zf_fixture_line_t l = {.index = i, .expected = exp->v[i].text,
                               .expected_line = exp->v[i].line};
        stopped = fn && fn(ctx, &l);
    }
    zf_oplist_free(&ops);
    free(buf);
    return rc;
}

/* zf_fixture_check's view of the first problem. */
typedef struct first_problem {
    const zf_fixture_text_t *fx;
    int expecting;
    int budget_ms;      /* 0: no bound */
    int64_t started_ms; /* when the records started */
    char *err;
    size_t errlen;
    int found;
} first_problem_t;

static int note_problem(void *ctx, const zf_fixture_line_t *l) {
    first_problem_t *p = ctx;
    if (p->expecting ? l->matched : !l->failed) {
        int64_t took = zf_now_ms() - p->started_ms;
        if (!p->budget_ms || !l->actual || took <= p->budget_ms)
            return 0;
        snprintf(p->err, p->errlen, "%s: stopped at record %zu: the fixtures "
                                    "took %lld ms, over fixtures_timeout_ms "
                                    "= %d (all fixture records together)",
                 p->fx->records_name, l->index + 1, (long long)took,
                 p->budget_ms);
    } else if (!p->expecting)
        snprintf(p->err, p->errlen, "%s: record %zu: %s", p->fx->records_name,
                 l->index + 1, l->actual);
    else if (!l->actual)
        snprintf(p->err, p->errlen, "%s:%d: expected %s, but the records "
                                    "ran out",
                 p->fx->expected_name, l->expected_line, l->expected);
    else
        snprintf(p->err, p->errlen, "%s:%d: expected %s, got %s",
                 p->fx->expected_name, l->expected_line,
                 l->expected ? l->expected : "nothing (no more lines)",
                 l->actual);
    p->found = 1;
    return 1;
}

zf_err_t zf_fixture_check(zf_script_t *s, const zf_fixture_text_t *fx,
                          int budget_ms, size_t *nrecords, char *err,
                          size_t errlen) {
    *nrecords = 0;
    if (!fx->records) {
        if (!fx->expected)
            return ZF_OK;
        snprintf(err, errlen, "%s: expected results without records (%s)",
                 fx->expected_name, fx->records_name);
        return ZF_ERECORD;
    }
    zf_expected_t *exp = NULL;
    zf_err_t rc = ZF_OK;
    if (fx->expected &&
        (rc = zf_expected_parse(fx->expected_name, fx->expected,
                                fx->expected_len, &exp, err, errlen)) != ZF_OK)
        return rc == ZF_ENOMEM ? rc : ZF_ERECORD;
    /* fmemopen refuses an empty buffer; /dev/null reads as empty. */
    FILE *fp = fx->records_len ? fmemopen((void *)fx->records,
                                          fx->records_len, "r")
                               : fopen("/dev/null", "r");
    if (!fp) {
        zf_expected_free(exp);
        snprintf(err, errlen, "%s: out of memory", fx->records_name);
        return ZF_ENOMEM;
    }
    first_problem_t p = {fx, exp != NULL, budget_ms, zf_now_ms(), err, errlen,
                         0};
    zf_fixture_stats_t st;
    rc = zf_fixture_run(s, fp, fx->records_name, exp, note_problem, &p, &st,
                        err, errlen);
    fclose(fp);
    zf_expected_free(exp);
    if (rc == ZF_ECONFIG || (rc == ZF_OK && p.found))
        return ZF_ERECORD;
    *nrecords = st.records;
    return rc;
}

char *zf_fixture_path(const char *script_file, const char *suffix) {
    size_t n = strlen(script_file);
    if (n > 4 && strcmp(script_file + n - 4, ".lua") == 0)
        n -= 4;
    char *path;
    if (asprintf(&path, "%.*s%s", (int)n, script_file, suffix) < 0)
        return NULL;
    return path;
}

/* Read a fixture file beside a script; NULL and *ok 1 when it does not
 * exist, NULL and *ok 0 with err set when it cannot be read. */
static char *read_optional(const char *path, size_t *len, int *ok, char *err,
                           size_t errlen) {
    char *text = zf_read_file(path, len, err, errlen);
    *ok = text || errno == ENOENT;
    return text;
}

zf_err_t zf_fixture_check_files(zf_script_t *s, const char *script_file,
                                int budget_ms, size_t *nrecords, char *err,
                                size_t errlen) {
    *nrecords = 0;
    char *rname = zf_fixture_path(script_file, ".records.jsonl");
    char *ename = zf_fixture_path(script_file, ".expected.jsonl");
    zf_err_t rc = ZF_ENOMEM;
    zf_fixture_text_t fx = {.records_name = rname, .expected_name = ename};
    char *rtext = NULL, *etext = NULL;
    int ok = 0;
    if (!rname || !ename) {
        snprintf(err, errlen, "%s: out of memory", script_file);
        goto out;
    }
    rc = ZF_ERECORD;
    if (!(rtext = read_optional(rname, &fx.records_len, &ok, err, errlen)) &&
        !ok)
        goto out;
    if (!(etext = read_optional(ename, &fx.expected_len, &ok, err, errlen)) &&
        !ok)
        goto out;
    fx.records = rtext;
    fx.expected = etext;
    rc = zf_fixture_check(s, &fx, budget_ms, nrecords, err, errlen);
out:
    free(rtext);
    free(etext);
    free(rname);
    free(ename);
    return rc;
}
