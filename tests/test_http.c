/* The HTTP endpoint on a real socket (ports 9471-9479 on loopback): each
 * route's status, type and body, readiness both ways, 404 and 405, a port
 * already in use, listen address parsing, and the port freed on stop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <dirent.h>
#include <unistd.h>

#include "zkflow/http.h"
#include "zkflow/metrics.h"

#define ADDR "127.0.0.1:9472"

static atomic_int is_ready;

static int ready(void *ctx, char *why, size_t whylen) {
    (void)ctx;
    if (atomic_load(&is_ready))
        return 1;
    snprintf(why, whylen, "ZooKeeper session not connected\nsecond line");
    return 0;
}

/* Send a request to port and return the whole response (static buffer). */
static const char *request(int port, const char *method, const char *path) {
    static char resp[65536];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[256];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n\r\n",
                     method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t got = 0;
    ssize_t r;
    while ((r = read(fd, resp + got, sizeof resp - 1 - got)) > 0)
        got += (size_t)r;
    resp[got] = '\0';
    close(fd);
    return resp;
}

static const char *body(const char *resp) {
    const char *b = strstr(resp, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static void expect_status(const char *resp, const char *status) {
    if (strncmp(resp, status, strlen(status)) != 0)
        fail_msg("expected %s, got:\n%s", status, resp);
}

/* Open descriptors of this process. */
static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

static void test_routes(void **state) {
    (void)state;
    char err[256];
    int fds = open_fds();
    zf_metrics_t *m = zf_metrics_new();
    zf_metric_t *c = zf_metrics_counter(m, "hits_total", "Hits.", "path");
    zf_metric_inc(c, 42, "/a\"b");
    zf_http_t *h = zf_http_start(ADDR, m, ready, NULL, err, sizeof err);
    if (!h)
        fail_msg("%s", err);

    const char *r = request(9472, "GET", "/metrics");
    expect_status(r, "HTTP/1.1 200");
    assert_non_null(strstr(r, "Content-Type: text/plain; version=0.0.4"));
    assert_string_equal(body(r), "# HELP hits_total Hits.\n"
                                 "# TYPE hits_total counter\n"
                                 "hits_total{path=\"/a\\\"b\"} 42\n");

    r = request(9472, "GET", "/healthz");
    expect_status(r, "HTTP/1.1 200");
    assert_string_equal(body(r), "ok\n");

    atomic_store(&is_ready, 0);
    r = request(9472, "GET", "/readyz");
    expect_status(r, "HTTP/1.1 503");
    assert_string_equal(body(r), "ZooKeeper session not connected\n");
    atomic_store(&is_ready, 1);
    r = request(9472, "GET", "/readyz");
    expect_status(r, "HTTP/1.1 200");
    assert_string_equal(body(r), "ready\n");

    r = request(9472, "HEAD", "/healthz");
    expect_status(r, "HTTP/1.1 200");
    assert_string_equal(body(r), "");

    r = request(9472, "GET", "/nope");
    expect_status(r, "HTTP/1.1 404");
    assert_non_null(strstr(body(r), "/nope: not found"));

    r = request(9472, "POST", "/metrics");
    expect_status(r, "HTTP/1.1 405");

    /* The port is taken now: a second endpoint says so, naming it. */
    zf_http_t *h2 = zf_http_start(ADDR, m, NULL, NULL, err, sizeof err);
    assert_null(h2);
    assert_string_equal(err, "cannot listen on " ADDR
                             ": Address already in use");

    zf_http_stop(h);
    /* Stopped: the port is free again. */
    h = zf_http_start(ADDR, NULL, NULL, NULL, err, sizeof err);
    if (!h)
        fail_msg("%s", err);
    r = request(9472, "GET", "/metrics");
    expect_status(r, "HTTP/1.1 200");
    assert_string_equal(body(r), "");
    r = request(9472, "GET", "/readyz"); /* no readiness function: ready */
    expect_status(r, "HTTP/1.1 200");
    zf_http_stop(h);
    zf_http_stop(NULL);
    assert_int_equal(open_fds(), fds); /* the listen socket too is closed */
    zf_metrics_destroy(m);
}

static void test_ipv6(void **state) {
    (void)state;
    char err[256];
    zf_http_t *h = zf_http_start("[::1]:9473", NULL, NULL, NULL, err,
                                 sizeof err);
    if (!h)
        skip(); /* no IPv6 loopback on this machine */
    zf_http_stop(h);
}

static void test_parse_listen(void **state) {
    (void)state;
    char why[256];
    struct sockaddr_storage ss;
    socklen_t len;
    assert_int_equal(zf_http_parse_listen("127.0.0.1:9464", &ss, &len, why,
                                          sizeof why),
                     0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 9464);
    assert_int_equal(zf_http_parse_listen("0.0.0.0:1", NULL, NULL, why,
                                          sizeof why),
                     0);
    assert_int_equal(zf_http_parse_listen("localhost:65535", &ss, &len, why,
                                          sizeof why),
                     0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(zf_http_parse_listen("[::1]:9464", &ss, &len, why,
                                          sizeof why),
                     0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(len, sizeof(struct sockaddr_in6));

    static const struct {
        const char *in, *why;
    } bad[] = {
        {"9464", "is not HOST:PORT"},
        {":9464", "is not HOST:PORT"},
        {"127.0.0.1:", "is not HOST:PORT"},
        {"127.0.0.1:0", "from 1 to 65535"},
        {"127.0.0.1:65536", "from 1 to 65535"},
        {"127.0.0.1:-1", "from 1 to 65535"},
        {"127.0.0.1:80x", "from 1 to 65535"},
        {"example.org:80", "'example.org' is not an IPv4 address"},
        {"300.0.0.1:80", "is not an IPv4 address"},
        {"[::g]:80", "'::g' is not an IPv6 address"},
        {"::1:80", "is not an IPv4 address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        why[0] = '\0';
        if (zf_http_parse_listen(bad[i].in, &ss, &len, why, sizeof why) !=
                -1 ||
            !strstr(why, bad[i].why))
            fail_msg("%s: expected '%s', got '%s'", bad[i].in, bad[i].why,
                     why);
    }
    char err[256];
    assert_null(zf_http_start("nonsense", NULL, NULL, NULL, err, sizeof err));
    assert_string_equal(err, "cannot listen on nonsense: 'nonsense' is not "
                             "HOST:PORT (e.g. 127.0.0.1:9464)");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_ipv6),
        cmocka_unit_test(test_parse_listen),
    };
    return cmocka_run_group_tests_name("http", tests, NULL, NULL);
}
