/* The engine: wires source → script → zk → tracker → commit, and runs the
 * event loop on the calling thread until a signal, --exit-on-eof, or a
 * failure ends it. */
#ifndef ZKFLOW_ENGINE_H
#define ZKFLOW_ENGINE_H

#include "zkflow/config.h"

typedef struct zf_run_opts {
    int exit_on_eof; /* stop once every assigned partition is caught up */
    int dry_run;     /* print each record's ops instead of writing them */
} zf_run_opts_t;

/* Run the daemon. SIGINT, SIGTERM and SIGHUP must already be blocked in
 * every thread (the engine takes them through a signalfd).
 * Returns an exit status: ZF_EXIT_OK, ZF_EXIT_FAILURE or ZF_EXIT_USAGE. */
int zf_engine_run(const zf_config_t *cfg, const zf_run_opts_t *opts);

#endif
