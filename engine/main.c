/* zkflow command line: run, check, test, --help, --version. */
#include <errno.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <luajit.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zookeeper/zookeeper_version.h>

#include "zkflow/config.h"
#include "zkflow/engine.h"
#include "zkflow/error.h"
#include "zkflow/file.h"
#include "zkflow/fixture.h"
#include "zkflow/jsonl.h"
#include "zkflow/log.h"
#include "zkflow/op.h"
#include "zkflow/script.h"
#include "zkflow/scriptset.h"
#include "zkflow/source.h"
#include "zkflow/zkstore.h"

#ifndef ZKFLOW_VERSION
#define ZKFLOW_VERSION "0.1.0"
#endif

static void usage(FILE *out) {
    fprintf(out,
        "usage: zkflow run -c FILE [--exit-on-eof] [--dry-run] [-v | -q]\n"
        "       zkflow check -c FILE\n"
        "       zkflow publish -c FILE NAME SCRIPT.lua\n"
        "       zkflow test SCRIPT.lua [RECORDS.jsonl] [--expect EXPECTED.jsonl]\n"
        "                   [--param NAME=VALUE]... [--root PATH]\n"
        "       zkflow --help | --version\n"
        "\n"
        "Streams Kafka records into ZooKeeper through Lua transforms.\n"
        "\n"
        "commands:\n"
        "  run          consume the configured topics and apply each record's\n"
        "               ops to ZooKeeper, exactly once: each batch also writes\n"
        "               its partition's position to a znode, and a restart\n"
        "               starts there (or, with delivery = at_least_once, at\n"
        "               Kafka offsets committed once the writes of every\n"
        "               earlier record of the partition are acknowledged)\n"
        "  check        validate the configuration, compile its scripts and\n"
        "               check each against its fixtures (NAME.records.jsonl\n"
        "               and NAME.expected.jsonl beside NAME.lua)\n"
        "  publish      check SCRIPT.lua as a reload would (the options of\n"
        "               [script NAME], its fixtures), then write it and its\n"
        "               fixtures to that section's source = zk:/PATH znodes in\n"
        "               one transaction: every instance running the config\n"
        "               reloads it\n"
        "  test         run a script, in the same sandbox as the daemon, on\n"
        "               sample records (JSON lines; stdin when RECORDS is\n"
        "               absent or -) and print one result line per record:\n"
        "                 {\"offset\":N,\"ops\":[{\"op\":\"set\",\"path\":...},...]}\n"
        "                 {\"offset\":N,\"skip\":true}\n"
        "                 {\"offset\":N,\"error\":\"FILE:LINE: reason\"}\n"
        "               a record line holds topic, partition, offset,\n"
        "               timestamp, key, value, headers (all optional; value\n"
        "               may be a JSON object, used as its JSON text); blank\n"
        "               lines and # comments are ignored. No Kafka, no\n"
        "               ZooKeeper.\n"
        "\n"
        "options:\n"
        "  -c, --config FILE  configuration file (INI)\n"
        "  --exit-on-eof      exit once every assigned partition has been\n"
        "                     consumed up to the end it had when assigned,\n"
        "                     applied and committed; shows progress (records\n"
        "                     done of total, rate, ETA) once a second on a\n"
        "                     terminal, every 10 s in the log otherwise\n"
        "  --dry-run          (run) consume and print each record's ops as\n"
        "                     JSON lines (the zkflow test format) instead of\n"
        "                     writing them; commits nothing\n"
        "  --expect FILE      (test) compare the results with FILE line by\n"
        "                     line, as JSON (key order and spacing do not\n"
        "                     matter; nor do they inside JSON payloads); print\n"
        "                     each difference and a summary instead of the\n"
        "                     results\n"
        "  --param NAME=VALUE (test) set params.NAME for the script, like\n"
        "                     param.NAME in a [script] section; repeatable\n"
        "  --root PATH        (test) the subtree the script may write, like\n"
        "                     root in a [script] section (default /)\n"
        "  -v, --verbose      debug logging;  -q, --quiet  warnings and errors\n"
        "  -h, --help         this text;  -V, --version  versions\n"
        "\n"
        "signals: SIGINT/SIGTERM finish the writes in flight, commit, exit 0\n"
        "         (check and publish: stop at once, by that signal).\n"
        "         SIGHUP reads the configuration's [script] sections and every\n"
        "         script again (a script also reloads when its file or znode\n"
        "         changes); a version that fails to load or fails its\n"
        "         fixtures is rejected and the running one stays.\n"
        "\n"
        "exit status: 0 done; 1 runtime failure (a record failed, ZooKeeper\n"
        "or Kafka unusable); 2 bad command line, configuration or script.\n"
        "test: 0 every record transformed (with --expect: everything\n"
        "matched); 1 a record failed (with --expect: a difference); 2 bad\n"
        "command line, a script that does not load, or a malformed line.\n"
        "\n"
        "configuration keys:\n");
    zf_config_print_keys(out);
}

static void version(void) {
    printf("zkflow %s\n", ZKFLOW_VERSION);
    printf("librdkafka %s\n", rd_kafka_version_str());
    printf("zookeeper client %s\n", ZOO_VERSION);
    printf("%s\n", LUAJIT_VERSION);
}

/* check and publish: SIGINT or SIGTERM stops them at once, wherever they
 * wait (ZooKeeper, fixtures), on whichever thread it lands, with a
 * message; the process then ends by that signal. */
static char stop_msg[2][64]; /* [0]: SIGINT, [1]: SIGTERM */

static void on_stop_signal(int sig) {
    const char *m = stop_msg[sig == SIGTERM];
    ssize_t w = write(STDERR_FILENO, m, strlen(m));
    (void)w;
    raise(sig); /* the default action again (SA_RESETHAND): the end */
}

static void stop_on_signals(const char *cmd) {
    snprintf(stop_msg[0], sizeof stop_msg[0], "zkflow %s: stopped by SIGINT\n",
             cmd);
    snprintf(stop_msg[1], sizeof stop_msg[1],
             "zkflow %s: stopped by SIGTERM\n", cmd);
    struct sigaction sa = {.sa_handler = on_stop_signal,
                           .sa_flags = SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

/* Load the configuration and every script; print what is wrong.
 * Returns ZF_EXIT_OK, or ZF_EXIT_USAGE after printing "FILE:LINE: ...". */
static int load(const char *path, zf_config_t **cfg) {
    char err[2048];
    if (zf_config_load(path, cfg, err, sizeof err) != ZF_OK ||
        zf_source_check_config(*cfg, err, sizeof err) != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        zf_config_destroy(*cfg);
        *cfg = NULL;
        return ZF_EXIT_USAGE;
    }
    if (zf_config_secret_exposed(*cfg, err, sizeof err))
        zf_warn("config", "%s", err);
    return ZF_EXIT_OK;
}

/* `zkflow check`: the configuration, and every script compiled,
 * initialised and checked against its fixtures. */
static int cmd_check(zf_config_t *cfg) {
    char err[4096];
    zf_scriptset_t *set;
    zf_err_t rc = zf_scriptset_new(cfg, 0, &set, err, sizeof err);
    if (rc != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        return rc == ZF_ECONFIG ? ZF_EXIT_USAGE : ZF_EXIT_FAILURE;
    }
    zf_scriptset_destroy(set);
    printf("%s: ok (%zu script(s))\n", cfg->path, cfg->nscripts);
    return ZF_EXIT_OK;
}

/* `zkflow publish`: check a script file the way a reload would (compiled,
 * initialised, its fixtures passed, with the options of [script NAME]), then
 * write it and its fixtures to the section's znode in one transaction.
 * Every instance running that configuration reloads it. */
static int cmd_publish(zf_config_t *cfg, const char *name, const char *file) {
    const zf_script_conf_t *sc = NULL;
    for (size_t i = 0; i < cfg->nscripts; i++)
        if (strcmp(cfg->scripts[i].name, name) == 0)
            sc = &cfg->scripts[i];
    if (!sc || !sc->zk_path) {
        fprintf(stderr, "%s: %s\n", cfg->path,
                sc ? "this [script] section has no source = zk:/PATH to "
                     "publish to"
                   : "no [script] section of that name");
        return ZF_EXIT_USAGE;
    }
    char err[4096];
    const zf_script_opts_t opts = zf_scriptset_opts(sc);
    zf_script_t *s = zf_script_new(sc->name, file, &opts, err, sizeof err);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        return ZF_EXIT_USAGE;
    }
    int status = ZF_EXIT_FAILURE;
    size_t checked;
    char *text = NULL, *rec = NULL, *exp = NULL;
    char *rpath = zf_fixture_path(file, ".records.jsonl");
    char *epath = zf_fixture_path(file, ".expected.jsonl");
    size_t len = 0, rlen = 0, elen = 0;
    zf_zkstore_t *zs = NULL;
    if (zf_fixture_check_files(s, file, sc->fixtures_timeout_ms, &checked,
                               err, sizeof err) != ZF_OK) {
        fprintf(stderr, "%s: not published: %s\n", file, err);
        goto out;
    }
    if (!rpath || !epath || !(text = zf_read_file(file, &len, err, sizeof err)) ||
        (!(rec = zf_read_file(rpath, &rlen, err, sizeof err)) && errno != ENOENT) ||
        (!(exp = zf_read_file(epath, &elen, err, sizeof err)) && errno != ENOENT)) {
        fprintf(stderr, "%s\n", rpath && epath ? err : "out of memory");
        goto out;
    }
    if (!(zs = zf_zkstore_new(cfg->zk_connect, cfg->zk_session_timeout_ms,
                              cfg->zk_connect_timeout_ms, cfg->zk_auth,
                              cfg->zk_acl, err, sizeof err)) ||
        zf_zkstore_publish(zs, sc->zk_path, text, len, rec, rlen, exp, elen,
                           err, sizeof err) != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        goto out;
    }
    printf("published %s version %s to %s (%zu fixture record(s) passed)\n",
           file, zf_script_version(s), sc->source, checked);
    status = ZF_EXIT_OK;
out:
    zf_zkstore_destroy(zs);
    free(text);
    free(rec);
    free(exp);
    free(rpath);
    free(epath);
    zf_script_destroy(s);
    return status;
}

/* ------------------------------------------------------------------------
 * zkflow test */

typedef struct test_args {
    const char *script;
    const char *records; /* NULL or "-": stdin */
    const char *expect;  /* NULL: print the results */
    const char *root;
    zf_kv_t *params;     /* keys and values point into argv */
    size_t nparams;
} test_args_t;

/* A label for the script's log lines: its file name without ".lua". */
static void script_label(const char *file, char *out, size_t outlen) {
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    size_t n = strlen(base);
    if (n > 4 && strcmp(base + n - 4, ".lua") == 0)
        n -= 4;
    snprintf(out, outlen, "%.*s", (int)n, base);
}

/* How `zkflow test` shows each outcome: the result lines, or with --expect
 * the differences. */
static int show_result(void *ctx, const zf_fixture_line_t *l) {
    const test_args_t *a = ctx;
    if (!a->expect) {
        /* One line at a time, so results appear as records are typed. */
        printf("%s\n", l->actual);
        fflush(stdout);
    } else if (!l->matched) {
        /* Line numbers are the expected file's: where the result is, or
         * where it would go. */
        printf("line %d: expected %s\n", l->expected_line,
               l->expected ? l->expected : "nothing (no more lines)");
        printf("line %d: actual   %s\n", l->expected_line,
               l->actual ? l->actual : "nothing (no more records)");
    }
    return 0;
}

/* `zkflow test`: see usage(). Returns an exit status. */
static int cmd_test(const test_args_t *a) {
    zf_script_opts_t opts = zf_script_opts_default;
    if (a->root)
        opts.root = a->root;
    opts.params = a->params;
    opts.nparams = a->nparams;

    char err[4096], label[256];
    script_label(a->script, label, sizeof label);
    zf_script_t *s = zf_script_new(label, a->script, &opts, err, sizeof err);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        return ZF_EXIT_USAGE;
    }
    zf_expected_t *exp = NULL;
    zf_err_t rc;
    if (a->expect &&
        (rc = zf_expected_read(a->expect, &exp, err, sizeof err)) != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        zf_script_destroy(s);
        return rc == ZF_ENOMEM ? ZF_EXIT_FAILURE : ZF_EXIT_USAGE;
    }
    int from_stdin = !a->records || strcmp(a->records, "-") == 0;
    FILE *fp = from_stdin ? stdin : fopen(a->records, "r");
    if (!fp) {
        fprintf(stderr, "%s: cannot open: %s\n", a->records, strerror(errno));
        zf_expected_free(exp);
        zf_script_destroy(s);
        return ZF_EXIT_USAGE;
    }
    zf_fixture_stats_t st;
    rc = zf_fixture_run(s, fp, from_stdin ? "<stdin>" : a->records, exp,
                        show_result, (void *)a, &st, err, sizeof err);
    int status = ZF_EXIT_OK;
    if (rc != ZF_OK) {
        fprintf(stderr, "%s\n", err);
        status = rc == ZF_ENOMEM ? ZF_EXIT_FAILURE : ZF_EXIT_USAGE;
    } else if (a->expect) {
        if (st.expected != st.records)
            printf("expected %zu result(s), got %zu\n", st.expected,
                   st.records);
        printf("%zu records: %zu matched, %zu differed\n", st.records,
               st.matched, st.differed);
        if (st.differed || st.expected != st.records)
            status = ZF_EXIT_FAILURE;
    } else if (st.failed) {
        status = ZF_EXIT_FAILURE;
    }
    if (fp != stdin)
        fclose(fp);
    zf_expected_free(exp);
    zf_script_destroy(s);
    return status;
}

/* Add --param NAME=VALUE to a->params, splitting `arg` in place.
 * Returns 0, or -1 after printing what is wrong. */
static int add_param(test_args_t *a, char *arg) {
    char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        fprintf(stderr, "zkflow: --param %s: expected NAME=VALUE\n", arg);
        return -1;
    }
    *eq = '\0';
    for (size_t i = 0; i < a->nparams; i++) {
        if (strcmp(a->params[i].key, arg) == 0) {
            fprintf(stderr, "zkflow: --param %s given twice\n", arg);
            return -1;
        }
    }
    zf_kv_t *p = realloc(a->params, (a->nparams + 1) * sizeof *p);
    if (!p) {
        fprintf(stderr, "zkflow: out of memory\n");
        return -1;
    }
    a->params = p;
    p[a->nparams++] = (zf_kv_t){.key = arg, .value = eq + 1, .line = 0};
    return 0;
}

/* Check the command line of `zkflow test`. Returns NULL when it is fine,
 * else what is wrong. */
static const char *test_usage_error(const test_args_t *a, int npos) {
    static char why[256];
    char err[200];
    if (npos < 1)
        return "test: missing SCRIPT";
    if (npos > 2)
        return "test: unexpected argument";
    if (a->root && zf_path_check(a->root, strlen(a->root), err,
                                 sizeof err) != ZF_OK) {
        snprintf(why, sizeof why, "--root %s: %s", a->root, err);
        return why;
    }
    if (a->expect && strcmp(a->expect, "-") == 0 &&
        (!a->records || strcmp(a->records, "-") == 0))
        return "test: records and --expect cannot both be read from stdin";
    return NULL;
}

enum {
    OPT_EXIT_ON_EOF = 'e',
    OPT_DRY_RUN = 256,
    OPT_EXPECT,
    OPT_PARAM,
    OPT_ROOT,
};

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"exit-on-eof", no_argument, NULL, OPT_EXIT_ON_EOF},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        {"expect", required_argument, NULL, OPT_EXPECT},
        {"param", required_argument, NULL, OPT_PARAM},
        {"root", required_argument, NULL, OPT_ROOT},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    zf_run_opts_t opts = {0};
    test_args_t targs = {0};
    /* Options that belong to one command only, for the usage check. */
    const char *run_only = NULL, *test_only = NULL;
    int status = ZF_EXIT_USAGE;
    int level_set = 0; /* -v or -q given: log_level does not apply */
    int c;
    while ((c = getopt_long(argc, argv, "c:vqhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case OPT_EXIT_ON_EOF: opts.exit_on_eof = 1; break;
        case OPT_DRY_RUN:
            opts.dry_run = 1;
            run_only = "--dry-run";
            break;
        case OPT_EXPECT:
            targs.expect = optarg;
            test_only = "--expect";
            break;
        case OPT_PARAM:
            if (add_param(&targs, optarg) != 0) {
                usage(stderr);
                goto out;
            }
            test_only = "--param";
            break;
        case OPT_ROOT:
            targs.root = optarg;
            test_only = "--root";
            break;
        case 'v':
            zf_log_set_level(ZF_LOG_DEBUG);
            level_set = 1;
            break;
        case 'q':
            zf_log_set_level(ZF_LOG_WARN);
            level_set = 1;
            break;
        case 'h':
            usage(stdout);
            status = ZF_EXIT_OK;
            goto out;
        case 'V':
            version();
            status = ZF_EXIT_OK;
            goto out;
        default: usage(stderr); goto out;
        }
    }
    const char *cmd = optind < argc ? argv[optind++] : NULL;
    if (cmd && strcmp(cmd, "test") == 0) {
        const char *why = NULL;
        int npos = argc - optind;
        targs.script = npos > 0 ? argv[optind] : NULL;
        targs.records = npos > 1 ? argv[optind + 1] : NULL;
        if (config)
            why = "test takes a script, not -c FILE";
        else if (run_only || opts.exit_on_eof)
            why = "--dry-run and --exit-on-eof are options of run";
        else
            why = test_usage_error(&targs, npos);
        if (why) {
            fprintf(stderr, "zkflow: %s\n", why);
            usage(stderr);
            goto out;
        }
        status = cmd_test(&targs);
        goto out;
    }
    char why[128] = "";
    int publish = cmd && strcmp(cmd, "publish") == 0;
    if (!cmd)
        snprintf(why, sizeof why, "missing command");
    else if (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0 && !publish)
        snprintf(why, sizeof why, "unknown command '%s'", cmd);
    else if (!config)
        snprintf(why, sizeof why, "missing -c FILE");
    else if (publish && argc - optind != 2)
        snprintf(why, sizeof why, "publish: expected NAME SCRIPT.lua");
    else if (!publish && optind != argc)
        snprintf(why, sizeof why, "unexpected argument");
    else if (test_only)
        snprintf(why, sizeof why, "%s is an option of test", test_only);
    else if (run_only && strcmp(cmd, "run") != 0)
        snprintf(why, sizeof why, "%s is an option of run", run_only);
    if (why[0]) {
        fprintf(stderr, "zkflow: %s\n", why);
        usage(stderr);
        goto out;
    }

    if (strcmp(cmd, "run") == 0) {
        /* Block the signals the engine takes through its signalfd before
         * any library starts a thread, so no thread receives them instead. */
        sigset_t sigs;
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        sigaddset(&sigs, SIGHUP);
        sigprocmask(SIG_BLOCK, &sigs, NULL);
    } else {
        stop_on_signals(cmd);
    }

    /* check and publish print their outcome; their logs are for -v. */
    if (!level_set && strcmp(cmd, "run") != 0)
        zf_log_set_level(ZF_LOG_WARN);
    zf_config_t *cfg;
    status = load(config, &cfg);
    if (status != ZF_EXIT_OK)
        goto out;
    zf_log_level_t level;
    zf_log_format_t format;
    if (!level_set && strcmp(cmd, "run") == 0 &&
        zf_log_parse_level(cfg->log_level, &level) == 0)
        zf_log_set_level(level);
    if (zf_log_parse_format(cfg->log_format, &format) == 0)
        zf_log_set_format(format);
    status = publish ? cmd_publish(cfg, argv[optind], argv[optind + 1])
             : strcmp(cmd, "check") == 0 ? cmd_check(cfg)
                                         : zf_engine_run(cfg, &opts);
    zf_config_destroy(cfg);
out:
    free(targs.params);
    return status;
}
