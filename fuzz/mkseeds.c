/* mkseeds OUTDIR FILE...: seed corpora for the fuzz harnesses, from the
 * examples' files, into OUTDIR/NAME/ (json, jsonl, config, path,
 * transform):
 * - NAME.records.jsonl, NAME.expected.jsonl: the whole file (jsonl); each
 *   line that is not blank or a comment (json); each expected op list as a
 *   transform's return value, its JSON documents written as strings
 *   (transform), and its ops as fuzz_path lines (path);
 * - *.ini: the whole file (config).
 * Built with the ordinary compiler: it only reads and writes files. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "zkflow/op.h"

static const char *outdir;

static void die(const char *what, const char *name) {
    fprintf(stderr, "mkseeds: %s: %s\n", name, what);
    exit(1);
}

/* Write OUTDIR/harness/base-n. */
static void put(const char *harness, const char *base, int n, const void *p,
                size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, harness);
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        die(strerror(errno), path);
    snprintf(path, sizeof path, "%s/%s/%s-%d", outdir, harness, base, n);
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(p, 1, len, fp) != len || fclose(fp) != 0)
        die("cannot write", path);
}

static char *slurp(const char *name, size_t *len) {
    FILE *fp = fopen(name, "rb");
    if (!fp)
        die(strerror(errno), name);
    char *p = NULL;
    size_t cap = 0, n = 0, got;
    do {
        if (n + 4096 > cap && !(p = realloc(p, cap = 2 * cap + 4096)))
            die("out of memory", name);
        got = fread(p + n, 1, cap - n, fp);
        n += got;
    } while (got > 0);
    fclose(fp);
    *len = n;
    return p;
}

/* The expected line's ops: as a transform's return value (JSON, with
 * documents as strings) and as fuzz_path lines. */
static void expected_ops(const char *base, int n, const char *line) {
    json_t *o = json_loads(line, 0, NULL);
    json_t *ops = o ? json_object_get(o, "ops") : NULL;
    if (!json_is_array(ops)) {
        json_decref(o);
        return;
    }
    size_t i;
    json_t *op;
    char paths[8192];
    size_t plen = 0;
    json_array_foreach(ops, i, op) {
        json_t *data = json_object_get(op, "data");
        if (data && !json_is_string(data)) {
            char *text = json_dumps(data, JSON_COMPACT | JSON_ENCODE_ANY);
            json_object_set_new(op, "data", json_string(text));
            free(text);
        }
        const char *name = json_string_value(json_object_get(op, "op"));
        const char *path = json_string_value(json_object_get(op, "path"));
        zf_op_type_t type = ZF_OP_UPSERT;
        if (!path || (name && zf_op_parse_type(name, &type) != 0))
            continue;
        /* Flags: the type, data for the ops that take it; root "/", no
         * version or ttl; the ops after the first join its list. */
        int with_data = type == ZF_OP_UPSERT || type == ZF_OP_CREATE ||
                        type == ZF_OP_SET;
        int w = snprintf(paths + plen, sizeof paths - plen, "%c%c%s\n",
                         (char)(type | (with_data ? 0x40 : 0)),
                         (char)(i ? 0x80 : 0x00), path);
        if (w > 0 && (size_t)w < sizeof paths - plen)
            plen += (size_t)w;
    }
    char *text = json_dumps(ops, JSON_COMPACT);
    if (text)
        put("transform", base, n, text, strlen(text));
    free(text);
    if (plen)
        put("path", base, n, paths, plen);
    json_decref(o);
}

static void jsonl_file(const char *name, const char *base, int expected) {
    size_t len;
    char *text = slurp(name, &len);
    put("jsonl", base, 0, text, len);
    int n = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        n++;
        if (line[strspn(line, " \t\r")] == '#' || !line[strspn(line, " \t\r")])
            continue;
        put("json", base, n, line, strlen(line));
        if (expected)
            expected_ops(base, n, line);
    }
    free(text);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: mkseeds OUTDIR FILE...\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0777) != 0 && errno != EEXIST)
        die(strerror(errno), outdir);
    static const char *const harnesses[] = {"json", "jsonl", "config", "path",
                                            "transform"};
    for (size_t i = 0; i < sizeof harnesses / sizeof *harnesses; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", outdir, harnesses[i]);
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            die(strerror(errno), path);
    }
    for (int i = 2; i < argc; i++) {
        const char *base = strrchr(argv[i], '/');
        base = base ? base + 1 : argv[i];
        if (ends_with(argv[i], ".records.jsonl")) {
            jsonl_file(argv[i], base, 0);
        } else if (ends_with(argv[i], ".expected.jsonl")) {
            jsonl_file(argv[i], base, 1);
        } else if (ends_with(argv[i], ".ini")) {
            size_t len;
            char *text = slurp(argv[i], &len);
            put("config", base, 0, text, len);
            free(text);
        } else {
            die("not a .records.jsonl, .expected.jsonl or .ini file",
                argv[i]);
        }
    }
    return 0;
}
