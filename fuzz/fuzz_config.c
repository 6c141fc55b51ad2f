/* fuzz_config: engine/config.c, the INI loader (inih), with environment
 * references (FUZZ_A=a, FUZZ_EMPTY= and FUZZ_SECRET=s3cret are set), then
 * the Kafka keys through librdkafka as `zkflow check` does
 * (zf_source_check_config). An accepted file must have no NUL byte in a
 * line that is not a comment, must give each script a file or a source and
 * valid roots, must route each topic to a script that lists it, and
 * zf_config_redact must hide each secret value (one without '*') in a
 * message. The text is loaded from a memfd through /proc/self/fd. */
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "zkflow/config.h"
#include "zkflow/op.h"
#include "zkflow/source.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if ((fd = memfd_create("fuzz.ini", 0)) < 0)
        FUZZ_FAIL("memfd_create failed");
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    setenv("FUZZ_A", "a", 1);
    setenv("FUZZ_EMPTY", "", 1);
    setenv("FUZZ_SECRET", "s3cret", 1);
    return 0;
}

/* A NUL byte in a line whose first non-blank byte is not ';' or '#'. */
static int nul_outside_comments(const uint8_t *p, size_t n) {
    int start = 1, comment = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            start = 1;
            comment = 0;
        } else if (start && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r')) {
            continue;
        } else {
            if (start)
                comment = p[i] == ';' || p[i] == '#';
            start = 0;
            if (p[i] == '\0' && !comment)
                return 1;
        }
    }
    return 0;
}

static void check_redacted(const zf_config_t *cfg, const char *secret) {
    if (!*secret || strchr(secret, '*'))
        return;
    size_t len = strlen(secret) * 3 + 16;
    char *msg = malloc(len);
    if (!msg)
        FUZZ_FAIL("out of memory");
    snprintf(msg, len, "<%s>", secret);
    zf_config_redact(cfg, msg, len);
    if (strstr(msg, secret))
        FUZZ_FAIL("secret %s not redacted: %s", secret, msg);
    free(msg);
}

static void check_config(const zf_config_t *cfg) {
    char why[256];
    if (zf_path_check(cfg->offsets_root, strlen(cfg->offsets_root), why,
                      sizeof why) != ZF_OK)
        FUZZ_FAIL("offsets_root %s accepted: %s", cfg->offsets_root, why);
    for (size_t i = 0; i < cfg->nscripts; i++) {
        const zf_script_conf_t *s = &cfg->scripts[i];
        if (!s->file == !s->source)
            FUZZ_FAIL("[script %s]: file and source both or neither",
                      s->name);
        if (zf_path_check(s->root, strlen(s->root), why, sizeof why) != ZF_OK)
            FUZZ_FAIL("[script %s]: root %s accepted: %s", s->name, s->root,
                      why);
        for (size_t t = 0; t < s->ntopics; t++) {
            const zf_script_conf_t *o =
                zf_config_script_for_topic(cfg, s->topic[t]);
            size_t k = 0;
            while (o && k < o->ntopics && strcmp(o->topic[k], s->topic[t]))
                k++;
            if (!o || k == o->ntopics)
                FUZZ_FAIL("topic %s is not routed to a script listing it",
                          s->topic[t]);
        }
        for (size_t j = 0; j < s->nparams; j++) {
            char key[256];
            snprintf(key, sizeof key, "param.%s", s->params[j].key);
            if (zf_config_key_is_secret("script", key))
                check_redacted(cfg, s->params[j].value);
        }
    }
    for (size_t i = 0; i < cfg->nkafka; i++)
        if (zf_config_key_is_secret("kafka", cfg->kafka[i].key))
            check_redacted(cfg, cfg->kafka[i].value);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (ftruncate(fd, 0) != 0 ||
        pwrite(fd, data, size, 0) != (ssize_t)size)
        FUZZ_FAIL("cannot write the memfd");
    zf_config_t *cfg;
    char err[4096];
    zf_err_t rc = zf_config_load(path, &cfg, err, sizeof err);
    if (rc != ZF_OK && rc != ZF_ECONFIG)
        FUZZ_FAIL("zf_config_load returned %s", zf_strerror(rc));
    if (rc != ZF_OK) {
        if (cfg)
            FUZZ_FAIL("a failed load left a config");
        return 0;
    }
    if (nul_outside_comments(data, size))
        FUZZ_FAIL("a file with a NUL byte outside comments was accepted");
    check_config(cfg);
    if (zf_source_check_config(cfg, err, sizeof err) == ZF_OK)
        zf_config_secret_exposed(cfg, err, sizeof err);
    zf_config_destroy(cfg);
    return 0;
}
