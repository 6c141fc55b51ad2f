/* The script set: the running script of every [script] section, and
 * everything that replaces one while the daemon runs.
 *
 * A script is reloaded when its file changes (inotify on its directory, so
 * both ways editors save work), when its znode changes (source = zk:/PATH),
 * and on zf_scriptset_reload_all (SIGHUP). A new version is compiled and
 * initialised in a fresh sandbox and checked against its fixtures
 * (NAME.records.jsonl / NAME.expected.jsonl beside it; all of them within
 * the section's fixtures_timeout_ms, as they hold the engine thread; a
 * script and each fixture at most ZF_FILE_MAX_BYTES); only then is it
 * swapped in, as a new sandbox whose init ran once more (so fixture records
 * leave no trace in its state). Any failure keeps the running version and
 * is logged with the reason (FILE:LINE). Every swap and rejection is logged
 * with the old and new versions and counted per script.
 *
 * The set also re-reads the configuration file (zf_scriptset_reconfigure):
 * [script] sections added, removed or changed take effect; changes elsewhere
 * need a restart and are reported, not applied.
 *
 * Single-threaded: every function runs on the engine thread. */
#ifndef ZKFLOW_SCRIPTSET_H
#define ZKFLOW_SCRIPTSET_H

#include <stddef.h>
#include <stdint.h>

#include "zkflow/config.h"
#include "zkflow/error.h"
#include "zkflow/script.h"

typedef struct zf_scriptset zf_scriptset_t;

/* The sandbox options a [script] section asks for (pointers into sc). */
zf_script_opts_t zf_scriptset_opts(const zf_script_conf_t *sc);

/* Load every script of cfg (borrowed; it must outlive the set) and check
 * each against its fixtures. With `watch`, also watch the scripts' files
 * and znodes for changes. Returns ZF_OK and the set in *out, or:
 * ZF_ECONFIG with "CONFIG:LINE: [script NAME]: reason" in err when a script
 * does not load or fails its fixtures; ZF_EZK when a znode-stored script
 * cannot be read; ZF_ENOMEM. */
zf_err_t zf_scriptset_new(const zf_config_t *cfg, int watch,
                          zf_scriptset_t **out, char *err, size_t errlen);

/* Free the set, its scripts and any configuration it loaded; accepts NULL. */
void zf_scriptset_destroy(zf_scriptset_t *set);

/* The configuration in force: the one given to zf_scriptset_new until a
 * zf_scriptset_reconfigure succeeds. Owned by the set or its creator. */
const zf_config_t *zf_scriptset_config(const zf_scriptset_t *set);

/* The script for records of `topic`, or NULL when no section lists it. The
 * pointer stays valid until the next zf_scriptset_process or
 * zf_scriptset_reconfigure that reports a change. */
zf_script_t *zf_scriptset_for_topic(const zf_scriptset_t *set,
                                    const char *topic);

/* A descriptor that becomes readable when a watched file or znode changed
 * (-1 when nothing is watched). */
int zf_scriptset_fd(const zf_scriptset_t *set);

/* Milliseconds until a reload is due (0: now), or -1 when none is. */
int zf_scriptset_timeout_ms(const zf_scriptset_t *set);

/* Reload every script soon (SIGHUP). */
void zf_scriptset_reload_all(zf_scriptset_t *set);

/* Take waiting change events and run the reloads that are due. Returns the
 * number of scripts swapped (pointers from zf_scriptset_for_topic are then
 * stale). Never fails: a rejected reload is logged and counted. */
size_t zf_scriptset_process(zf_scriptset_t *set);

/* Read the configuration file again (the path of the config in force).
 * When it is valid and every new or changed [script] section loads and
 * passes its fixtures, it takes effect at once: returns 1, and
 * *topics_changed says whether the set of topics differs (re-subscribe).
 * Otherwise nothing changes: returns 0 and logs why. Sections whose keys
 * are unchanged keep their running script and its state. */
int zf_scriptset_reconfigure(zf_scriptset_t *set, int *topics_changed);

/* Totals over the run: versions swapped in and reloads rejected (scripts
 * and configuration). */
void zf_scriptset_counts(const zf_scriptset_t *set, uint64_t *reloads,
                         uint64_t *rejected);

/* Script i of the configuration in force, with its counts. */
typedef struct zf_scriptset_entry {
    const zf_script_conf_t *conf;
    const zf_script_t *script;
    uint64_t reloads, rejected;
} zf_scriptset_entry_t;

size_t zf_scriptset_count(const zf_scriptset_t *set);
zf_scriptset_entry_t zf_scriptset_entry(const zf_scriptset_t *set, size_t i);

#endif
