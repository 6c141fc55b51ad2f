/* The HTTP endpoint for operators: /metrics (Prometheus text), /healthz and
 * /readyz, served by libmicrohttpd on a thread of its own.
 *
 * Routes (GET or HEAD; anything else is 405, other paths 404):
 *   /metrics  200, the registry rendered (text/plain; version=0.0.4)
 *   /healthz  200 "ok" while the process runs and the thread answers
 *   /readyz   200 "ready", or 503 with the one-line reason the readiness
 *             function gives
 * The requests are answered on the HTTP thread: the registry is safe to
 * render there (see metrics.h) and the readiness function must be too. */
#ifndef ZKFLOW_HTTP_H
#define ZKFLOW_HTTP_H

#include <stddef.h>
#include <sys/socket.h>

#include "zkflow/metrics.h"

typedef struct zf_http zf_http_t;

/* Readiness, asked on the HTTP thread for each /readyz: returns 1 when
 * ready, else 0 with a one-line reason in why. Must only read state that is
 * safe to read from another thread (atomics, e.g. metric values). */
typedef int zf_http_ready_fn(void *ctx, char *why, size_t whylen);

/* Parse a listen address: "IPV4:PORT", "[IPV6]:PORT" or "localhost:PORT",
 * PORT 1-65535 (host names other than localhost are not looked up).
 * Returns 0 with the address in *ss and its size in *len, or -1 with what
 * is wrong in why. ss and len may be NULL to only check. Never blocks. */
int zf_http_parse_listen(const char *listen, struct sockaddr_storage *ss,
                         socklen_t *len, char *why, size_t whylen);

/* Bind `listen` and start serving. `m` (may be NULL: /metrics is then
 * empty) and `ready` (NULL: always ready) must outlive the endpoint.
 * Returns NULL with "cannot listen on ADDRESS: reason" in err (bad address,
 * port in use, no permission, library failure). */
zf_http_t *zf_http_start(const char *listen, zf_metrics_t *m,
                         zf_http_ready_fn *ready, void *ctx, char *err,
                         size_t errlen);

/* Stop serving (joins the thread, closes the socket) and free; accepts
 * NULL. Requests under way are finished or dropped first. */
void zf_http_stop(zf_http_t *h);

#endif
