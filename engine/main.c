/* zkflow command line: run, check, --help, --version. */
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <luajit.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zookeeper/zookeeper_version.h>

#include "zkflow/config.h"
#include "zkflow/engine.h"
#include "zkflow/error.h"
#include "zkflow/log.h"
#include "zkflow/source.h"

#ifndef ZKFLOW_VERSION
#define ZKFLOW_VERSION "0.1.0"
#endif

static void usage(FILE *out) {
    fprintf(out,
        "usage: zkflow run -c FILE [--exit-on-eof] [-v | -q]\n"
        "       zkflow check -c FILE\n"
        "       zkflow --help | --version\n"
        "\n"
        "Streams Kafka records into ZooKeeper through Lua transforms.\n"
        "\n"
        "commands:\n"
        "  run          consume the configured topics and apply each record's\n"
        "               op to ZooKeeper; offsets are committed only after the\n"
        "               writes of every earlier record of the partition are\n"
        "               acknowledged (at-least-once)\n"
        "  check        validate the configuration and compile its scripts\n"
        "\n"
        "options:\n"
        "  -c, --config FILE  configuration file (INI)\n"
        "  --exit-on-eof      exit once every assigned partition has been\n"
        "                     consumed up to the end it had when assigned,\n"
        "                     applied and committed\n"
        "  -v, --verbose      debug logging;  -q, --quiet  warnings and errors\n"
        "  -h, --help         this text;  -V, --version  versions\n"
        "\n"
        "signals: SIGINT/SIGTERM finish the writes in flight, commit, exit 0.\n"
        "\n"
        "exit status: 0 done; 1 runtime failure (a record failed, ZooKeeper\n"
        "or Kafka unusable); 2 bad command line, configuration or script.\n"
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
    return ZF_EXIT_OK;
}

static int cmd_check(zf_config_t *cfg) {
    char err[2048];
    struct zf_script **s = zf_engine_scripts_load(cfg, err, sizeof err);
    if (!s) {
        fprintf(stderr, "%s\n", err);
        return ZF_EXIT_USAGE;
    }
    zf_engine_scripts_free(cfg, s);
    printf("%s: ok (%zu script(s))\n", cfg->path, cfg->nscripts);
    return ZF_EXIT_OK;
}

int main(int argc, char **argv) {
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"exit-on-eof", no_argument, NULL, 'e'},
        {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL;
    zf_run_opts_t opts = {0};
    int c;
    while ((c = getopt_long(argc, argv, "c:vqhV", longopts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'e': opts.exit_on_eof = 1; break;
        case 'v': zf_log_set_level(ZF_LOG_DEBUG); break;
        case 'q': zf_log_set_level(ZF_LOG_WARN); break;
        case 'h': usage(stdout); return ZF_EXIT_OK;
        case 'V': version(); return ZF_EXIT_OK;
        default: usage(stderr); return ZF_EXIT_USAGE;
        }
    }
    const char *cmd = optind < argc ? argv[optind++] : NULL;
    if (!cmd || optind != argc || !config ||
        (strcmp(cmd, "run") != 0 && strcmp(cmd, "check") != 0)) {
        fprintf(stderr, "zkflow: %s\n",
                !cmd ? "missing command" : !config ? "missing -c FILE"
                : optind != argc ? "unexpected argument" : "unknown command");
        usage(stderr);
        return ZF_EXIT_USAGE;
    }

    /* Block the signals the engine takes through its signalfd before any
     * library starts a thread, so no thread receives them instead. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);

    zf_config_t *cfg;
    int status = load(config, &cfg);
    if (status != ZF_EXIT_OK)
        return status;
    status = strcmp(cmd, "check") == 0 ? cmd_check(cfg)
                                        : zf_engine_run(cfg, &opts);
    zf_config_destroy(cfg);
    return status;
}
