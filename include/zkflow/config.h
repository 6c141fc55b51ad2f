/* Configuration: the INI file read into plain structs, validated.
 *
 * Every [zookeeper], [engine] and [script NAME] key is declared once in a table
 * in config.c, which both parses the file and prints the key reference
 * (zf_config_print_keys). [kafka] keys are kept as written, with their line
 * numbers, and handed to librdkafka by the source module.
 *
 * Every value, in every section, may hold environment references, replaced
 * while the file is read: ${NAME} (an error when NAME is not set),
 * ${NAME:-DEFAULT} (DEFAULT when NAME is unset or empty) and $$ (one '$').
 * Any other '$' is kept as it is. Some keys name secrets
 * (zf_config_key_is_secret): their values are never put in a message. */
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
    char *file;     /* script path, resolved against the config file's dir,
                       or NULL when the script is kept in a znode */
    char *source;   /* "zk:/PATH" as written, or NULL (then file is set) */
    const char *zk_path; /* the PATH inside source, or NULL */
    int file_line;  /* line of the file = or source = key */
    char *topics;   /* comma-separated list as written */
    int topics_line; /* line of the topics key */
    char **topic;   /* parsed list, ntopics entries */
    size_t ntopics;
    char *root;     /* znode subtree the script may write, "/" by default */
    char *ops_list; /* the ops= key as written */
    unsigned ops;   /* the same as ZF_OP_BIT flags */
    int timeout_ms; /* per-record time limit, 0 = none */
    int memory_mb;  /* memory limit of the script's state, 0 = none */
    int fixtures_timeout_ms; /* time limit of all fixture records together
                                at each load (zf_fixture_check) */
    char *on_error; /* "stop" (default), "skip" or "dlq": what a record
                       that fails (transform, validation or ZooKeeper) does */
    char *dlq_topic; /* on_error = dlq: the dead-letter topic, else NULL */
    int on_error_line; /* lines of those keys, 0 when not written */
    int dlq_topic_line;
    int coalesce;   /* 1: drop a lone set/upsert that a later one of the same
                       path in the batch replaces (zf_oplist_coalesce) */
    zf_kv_t *params; /* param.NAME = value keys, NAME without "param." */
    size_t nparams;
    char *sig;      /* every key = value of the section: equal signatures,
                       equal sections */
    const struct zf_config *config; /* the configuration it belongs to */
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
    char *zk_auth;         /* "SCHEME:CREDENTIALS", or NULL */
    char *zk_acl;          /* open, creator_all or read_only_world */
    char *delivery;        /* "exactly_once" or "at_least_once" */
    char *offsets_root;    /* exactly_once: where positions are kept */
    int max_queued_records;
    int batch_max_ops;     /* ops per ZooKeeper multi */
    int batch_max_bytes;   /* paths + data per ZooKeeper multi */
    char *metrics_listen;  /* HTTP endpoint address; "" when off */
    char *log_level;       /* "error", "warn", "info" or "debug" */
    char *log_format;      /* "text" or "json" */
    zf_script_conf_t *scripts;
    size_t nscripts;
    char *restart_sig; /* every key = value of [kafka], [zookeeper] and
                          [engine]: what a reload cannot change */
    unsigned file_mode;    /* permission bits of the file when it was read */
    int secret_line;       /* first line whose secret value is written in the
                              file itself (not only ${NAME}), 0 if none */
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

/* 1 when the key `key` of section `section` ("kafka", "zookeeper", "engine"
 * or "script"; for a script parameter the key is "param.NAME") names a
 * secret, else 0: its name contains "password" or "secret", or it is
 * sasl.oauthbearer.config, ssl.key.pem or ssl_key, or [zookeeper] auth.
 * Never fails. */
int zf_config_key_is_secret(const char *section, const char *key);

/* When the file holds a secret written in it (cfg->secret_line) and is
 * readable by its group or by others, write a one-line warning (without the
 * secret) into msg and return 1; else return 0. Never fails. */
int zf_config_secret_exposed(const zf_config_t *cfg, char *msg, size_t len);

/* Replace every occurrence of a secret value of cfg ([kafka] keys and script
 * parameters that zf_config_key_is_secret names) in
 * the NUL-terminated `msg` (a buffer of `len` bytes) by "***", cutting the
 * result to fit. For messages of libraries that may echo a value (librdkafka
 * rejecting a property). Never fails. */
void zf_config_redact(const zf_config_t *cfg, char *msg, size_t len);

/* Print every declared key with its default and description (for --help). */
void zf_config_print_keys(FILE *out);

#endif
