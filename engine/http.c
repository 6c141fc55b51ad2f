#include "zkflow/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zkflow/log.h"

#if MHD_VERSION < 0x00097100
typedef int zf_mhd_result;
#else
typedef enum MHD_Result zf_mhd_result;
#endif

struct zf_http {
    struct MHD_Daemon *d;
    int fd;
    zf_metrics_t *m;
    zf_http_ready_fn *ready;
    void *ctx;
};

int zf_http_parse_listen(const char *listen, struct sockaddr_storage *ss,
                         socklen_t *len, char *why, size_t whylen) {
    struct sockaddr_storage tmp;
    if (!ss)
        ss = &tmp;
    memset(ss, 0, sizeof *ss);
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || !colon[1]) {
        snprintf(why, whylen, "'%s' is not HOST:PORT (e.g. 127.0.0.1:9464)",
                 listen);
        return -1;
    }
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (errno || *end || port < 1 || port > 65535 || colon[1] == '-' ||
        colon[1] == '+' || colon[1] == ' ') {
        snprintf(why, whylen, "'%s': the port must be a number from 1 to "
                              "65535",
                 listen);
        return -1;
    }
    char host[64];
    size_t hn = (size_t)(colon - listen);
    if (hn >= sizeof host) {
        snprintf(why, whylen, "'%s': the host is too long", listen);
        return -1;
    }
    memcpy(host, listen, hn);
    host[hn] = '\0';
    if (host[0] == '[' && host[hn - 1] == ']') {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        host[hn - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &a->sin6_addr) != 1) {
            snprintf(why, whylen, "'%s': '%s' is not an IPv6 address", listen,
                     host + 1);
            return -1;
        }
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (len)
            *len = sizeof *a;
        return 0;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
        snprintf(why, whylen, "'%s': '%s' is not an IPv4 address, [IPv6] "
                              "address or localhost",
                 listen, host);
        return -1;
    }
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (len)
        *len = sizeof *a;
    return 0;
}

/* Queue a response; `body` is malloc'd and handed over (NULL: out of
 * memory, answered with 500). */
static zf_mhd_result answer(struct MHD_Connection *c, unsigned status,
                            char *body, const char *type) {
    if (!body) {
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        body = strdup("out of memory\n");
        if (!body)
            return MHD_NO;
        type = "text/plain; charset=utf-8";
    }
    struct MHD_Response *r = MHD_create_response_from_buffer(
        strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    zf_mhd_result rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static char *text(const char *fmt, const char *arg) {
    char *s = NULL;
    if (asprintf(&s, fmt, arg) < 0)
        return NULL;
    return s;
}

static zf_mhd_result on_request(void *cls, struct MHD_Connection *c,
                                const char *url, const char *method,
                                const char *version, const char *upload,
                                size_t *upload_size, void **state) {
    (void)version;
    (void)upload;
    zf_http_t *h = cls;
    static const char *const plain = "text/plain; charset=utf-8";
    if (*upload_size) {
        *upload_size = 0; /* no route takes a body: ignore it */
        return MHD_YES;
    }
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                      text("%s: only GET and HEAD\n", method), plain);
    if (strcmp(url, "/metrics") == 0) {
        char *body = h->m ? zf_metrics_render(h->m, NULL) : strdup("");
        return answer(c, MHD_HTTP_OK, body,
                      "text/plain; version=0.0.4; charset=utf-8");
    }
    if (strcmp(url, "/healthz") == 0)
        return answer(c, MHD_HTTP_OK, strdup("ok\n"), plain);
    if (strcmp(url, "/readyz") == 0) {
        char why[256] = "not ready";
        if (!h->ready || h->ready(h->ctx, why, sizeof why))
            return answer(c, MHD_HTTP_OK, strdup("ready\n"), plain);
        why[strcspn(why, "\r\n")] = '\0'; /* one line */
        return answer(c, MHD_HTTP_SERVICE_UNAVAILABLE, text("%s\n", why),
                      plain);
    }
    return answer(c, MHD_HTTP_NOT_FOUND,
                  text("%s: not found (routes: /metrics /healthz /readyz)\n",
                       url),
                  plain);
}

/* libmicrohttpd's own complaints (e.g. a malformed request) go to the log. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    zf_logv(ZF_LOG_DEBUG, "http", fmt, ap);
}

zf_http_t *zf_http_start(const char *addr, zf_metrics_t *m,
                         zf_http_ready_fn *ready, void *ctx, char *err,
                         size_t errlen) {
    struct sockaddr_storage ss;
    socklen_t sslen;
    char why[256];
    if (zf_http_parse_listen(addr, &ss, &sslen, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr, why);
        return NULL;
    }
    zf_http_t *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "cannot listen on %s: out of memory", addr);
        return NULL;
    }
    h->m = m;
    h->ready = ready;
    h->ctx = ctx;
    /* Bound here rather than by the library, so a port in use is reported
     * with its errno. */
    h->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (h->fd < 0 ||
        setsockopt(h->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(h->fd, (struct sockaddr *)&ss, sslen) != 0 ||
        listen(h->fd, 64) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", addr,
                 strerror(errno));
        goto err;
    }
    h->d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
            (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, on_request, h, MHD_OPTION_LISTEN_SOCKET, h->fd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
        MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_END);
    if (!h->d) {
        snprintf(err, errlen, "cannot listen on %s: the HTTP server did not "
                              "start",
                 addr);
        goto err;
    }
    return h;
err:
    if (h->fd >= 0)
        close(h->fd);
    free(h);
    return NULL;
}

void zf_http_stop(zf_http_t *h) {
    if (!h)
        return;
    if (h->d)
        MHD_stop_daemon(h->d); /* joins the thread */
    /* MHD_stop_daemon closes a listen socket handed to it. */
    free(h);
}
