/* Configuration: the INI file read into plain structs, validated.
 *
 * Every [zookeeper], [engine] and [script NAME] key is declared once in a table
 * in config.c, which both parses the file and prints the key reference
 * (zf_config_print_keys). [kafka] keys are kept as written, with their line
 * numbers, and handed to librdkafka by the source module. */
#ifndef ZKFLOW_CONFIG_H
#define ZKFLOW_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "zkflow/error.h"

typedef struct zf_kv {
    char *key;
    char *value;
    int line;
} zf_kv_t;

typedef struct zf_script_conf {
    char *name;     /* from the section header [script NAME] */
    int line;       /* line of the section header */
    char *file;     /* script path, resolved against the config file's dir */
    int file_line;  /* line of the file = key */
    char *topics;   /* comma-separated list as written */
    char **topic;   /* parsed list, ntopics entries */
    size_t ntopics;
    char *root;     /* znode subtree the script may write, "/" by default */
    char *ops_list; /* the ops= key as written */
    unsigned ops;   /* the same as ZF_OP_BIT flags */
    int timeout_ms; /* per-record time limit, 0 = none */
    int memory_mb;  /* memory limit of the script's state, 0 = none */
    int coalesce;   /* 1: drop a lone set/upsert that a later one of the same
                       path in the batch replaces (zf_oplist_coalesce) */
    zf_kv_t *params; /* param.NAME = value keys, NAME without "param." */
    size_t nparams;
} zf_script_conf_t;

typedef struct zf_config {
    char *path;            /* the file read */
    zf_kv_t *kafka;        /* [kafka] keys in file order */
    size_t nkafka;
    int kafka_line;        /* line of the [kafka] header, 0 if absent */
    char *zk_connect;
    int zk_session_timeout_ms;
    int zk_connect_timeout_ms;
    int zk_line;           /* line of the [zookeeper] header, 0 if absent */
    char *delivery;        /* "at_least_once" */
    int max_queued_records;
    int batch_max_ops;     /* ops per ZooKeeper multi */
    int batch_max_bytes;   /* paths + data per ZooKeeper multi */
    zf_script_conf_t *scripts;
    size_t nscripts;
} zf_config_t;

/* Read and validate the configuration file at `path`.
 * On success returns ZF_OK and stores a new config in *out (caller frees it
 * with zf_config_destroy). On failure returns ZF_ECONFIG (or ZF_ENOMEM), *out
 * is NULL and `err` holds "FILE:LINE: message" (LINE omitted when the file
 * cannot be read at all). Script files are only resolved here, not read. */
zf_err_t zf_config_load(const char *path, zf_config_t **out, char *err,
                        size_t errlen);

/* Free a config; accepts NULL. */
void zf_config_destroy(zf_config_t *cfg);

/* The script section that lists `topic`, or NULL. Never fails. */
const zf_script_conf_t *zf_config_script_for_topic(const zf_config_t *cfg,
                                                   const char *topic);

/* Print every declared key with its default and description (for --help). */
void zf_config_print_keys(FILE *out);

#endif
