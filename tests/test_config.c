/* Configuration parsing: good files, and every kind of bad input reported as
 * FILE:LINE with the reason. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <cmocka.h>

#ifndef THREADED
#define THREADED /* the multi-threaded client, as zkflow links it */
#endif
#include <zookeeper/zookeeper.h>

#include "helpers.h"
#include "zkflow/config.h"
#include "zkflow/op.h"
#include "zkflow/source.h"

#define GOOD_KAFKA "[kafka]\nbootstrap.servers = 127.0.0.1:9092\ngroup.id = g\n"
#define GOOD_ZK "[zookeeper]\nconnect = 127.0.0.1:2181\n"
#define GOOD_SCRIPT "[script s]\nfile = s.lua\ntopics = t\n"

static char err[2048];

/* Load `text` as x.ini and expect a failure whose message starts with
 * "PATH:LINE: " and contains `what`. */
static void expect_error(const char *text, int line, const char *what) {
    const char *path = write_temp("x.ini", text);
    zf_config_t *cfg = (zf_config_t *)1;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_ECONFIG);
    assert_null(cfg);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
    if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, what))
        fail_msg("expected '%s...%s', got '%s'", prefix, what, err);
}

static void test_good(void **state) {
    (void)state;
    const char *path = write_temp(
        "good.ini", "; comment\n" GOOD_KAFKA "auto.offset.reset = latest\n\n"
                    "[zookeeper]\nconnect = h1:2181,h2:2181/chroot\n"
                    "session_timeout_ms = 5000\n"
                    "[engine]\nmax_queued_records = 10\n"
                    "[script devices]\nfile = lua/devices.lua\n"
                    "topics = a, b ,c\nroot = /devices\n"
                    "[script other]\nfile = /abs/o.lua\ntopics = d\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(cfg->nkafka, 3);
    assert_string_equal(cfg->kafka[2].key, "auto.offset.reset");
    assert_string_equal(cfg->kafka[2].value, "latest");
    assert_int_equal(cfg->kafka[2].line, 5);
    assert_string_equal(cfg->zk_connect, "h1:2181,h2:2181/chroot");
    assert_int_equal(cfg->zk_session_timeout_ms, 5000);
    assert_int_equal(cfg->zk_connect_timeout_ms, 15000); /* default */
    assert_string_equal(cfg->delivery, "exactly_once"); /* default */
    assert_string_equal(cfg->offsets_root, "/zkflow/offsets");
    assert_int_equal(cfg->max_queued_records, 10);
    assert_int_equal(cfg->nscripts, 2);

    const zf_script_conf_t *s = &cfg->scripts[0];
    assert_string_equal(s->name, "devices");
    char want[512];
    snprintf(want, sizeof want, "%.*s/lua/devices.lua",
             (int)(strrchr(path, '/') - path), path);
    assert_string_equal(s->file, want); /* relative to the config's dir */
    assert_int_equal(s->file_line, 13);
    assert_int_equal(s->ntopics, 3);
    assert_string_equal(s->topic[1], "b");
    assert_string_equal(s->root, "/devices");
    assert_string_equal(cfg->scripts[1].file, "/abs/o.lua");
    assert_string_equal(cfg->scripts[1].root, "/");
    assert_ptr_equal(zf_config_script_for_topic(cfg, "c"), &cfg->scripts[0]);
    assert_ptr_equal(zf_config_script_for_topic(cfg, "d"), &cfg->scripts[1]);
    assert_null(zf_config_script_for_topic(cfg, "e"));
    assert_int_equal(zf_source_check_config(cfg, err, sizeof err), ZF_OK);
    zf_config_destroy(cfg);
}

static void test_missing_file(void **state) {
    (void)state;
    zf_config_t *cfg;
    assert_int_equal(
        zf_config_load("/nonexistent/zkflow.ini", &cfg, err, sizeof err),
        ZF_ECONFIG);
    assert_string_equal(err,
                        "/nonexistent/zkflow.ini: cannot open: No such file "
                        "or directory");
}

static void test_unknown_section(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "[zoo]\nconnect = x\n" GOOD_SCRIPT, 6,
                 "unknown section [zoo]");
    /* An empty unknown section is still found. */
    expect_error(GOOD_KAFKA "[nothing]\n" GOOD_ZK GOOD_SCRIPT, 4,
                 "unknown section [nothing]");
}

static void test_unknown_key(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\nfiles = x\n", 8,
                 "unknown key 'files' in [script]");
    expect_error(GOOD_KAFKA GOOD_ZK "timeout = 3\n" GOOD_SCRIPT, 6,
                 "unknown key 'timeout' in [zookeeper]");
    expect_error("connect = x\n" GOOD_KAFKA GOOD_ZK GOOD_SCRIPT, 1,
                 "outside any section");
}

static void test_bad_numbers(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "session_timeout_ms = ten\n" GOOD_SCRIPT, 6,
                 "session_timeout_ms: 'ten' is not a whole number");
    expect_error(GOOD_KAFKA GOOD_ZK "session_timeout_ms = 10s\n" GOOD_SCRIPT, 6,
                 "is not a whole number");
    expect_error(GOOD_KAFKA GOOD_ZK "session_timeout_ms = 5\n" GOOD_SCRIPT, 6,
                 "5 is out of range");
    expect_error(GOOD_KAFKA GOOD_ZK "[engine]\nmax_queued_records = 0\n"
                     GOOD_SCRIPT,
                 7, "out of range");
}

static void test_bad_values(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "[engine]\ndelivery = maybe\n" GOOD_SCRIPT,
                 7, "delivery: 'maybe' is not one of: exactly_once at_least_once");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "root = devices\n", 9,
                 "root: 'devices': path must start with '/'");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "root = /a//b\n", 9,
                 "empty component");
    expect_error(GOOD_KAFKA GOOD_ZK "[script bad name]\nfile = a\ntopics = t\n",
                 6, "script name 'bad name'");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect =\n" GOOD_SCRIPT, 5,
                 "connect has an empty value");
}

static void test_missing_required(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_SCRIPT, 6, "[zookeeper] needs a 'connect' key");
    expect_error(GOOD_KAFKA "[zookeeper]\nsession_timeout_ms = 2000\n"
                     GOOD_SCRIPT,
                 4, "[zookeeper] needs a 'connect' key");
    expect_error(GOOD_ZK GOOD_SCRIPT, 5, "missing section [kafka]");
    expect_error("[kafka]\ngroup.id = g\n" GOOD_ZK GOOD_SCRIPT, 1,
                 "needs 'bootstrap.servers'");
    expect_error("[kafka]\nbootstrap.servers = b\n" GOOD_ZK GOOD_SCRIPT, 1,
                 "needs 'group.id'");
    expect_error(GOOD_KAFKA GOOD_ZK, 5, "no [script NAME] section");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\ntopics = t\n", 6,
                 "[script s] needs a 'file' or a 'source' key");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\n", 6,
                 "[script s] needs a 'topics' key");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\ntopics = ,\n", 8,
                 "lists no topics");
}

static void test_duplicates(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "[script s]\nfile = b\n", 9,
                 "[script s] appears twice (first on line 6)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "[script u]\nfile = b\n"
                                                "topics = x, t\n",
                 11, "topic 't' is routed to both [script s] and [script u]");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = a\ntopics = t,t\n", 8,
                 "topic 't' is listed twice");
    expect_error(GOOD_KAFKA GOOD_ZK "connect = again\n" GOOD_SCRIPT, 6,
                 "connect is set twice");
    expect_error(GOOD_KAFKA "group.id = h\n" GOOD_ZK GOOD_SCRIPT, 4,
                 "group.id is set twice (first on line 3)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT GOOD_ZK, 9,
                 "section [zookeeper] appears twice (first on line 4)");
}

static void test_syntax(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA "this is not ini\n" GOOD_ZK GOOD_SCRIPT, 4,
                 "syntax error");
    char text[1024];
    snprintf(text, sizeof text, GOOD_KAFKA GOOD_ZK "[script s]\nfile = %0300d\n",
             0);
    expect_error(text, 7, "line is longer than");
}

/* Load len bytes of `text` (NULs too) as n.ini and expect a failure at
 * `line` saying `what`. */
static void expect_error_bytes(const char *text, size_t len, int line,
                               const char *what) {
    const char *path = write_temp("n.ini", "");
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    fclose(fp);
    zf_config_t *cfg = NULL;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_ECONFIG);
    char want[512];
    snprintf(want, sizeof want, "%s:%d: %s", path, line, what);
    assert_string_equal(err, want);
}

/* A NUL byte is an error at its line, wherever it is: in the last line it
 * used to cut the value silently, elsewhere to read as a line too long. */
static void test_nul_byte(void **state) {
    (void)state;
    static const char last[] = GOOD_KAFKA GOOD_ZK
        "[script s]\nfile = s.lua\ntopics = t\0,u";
    expect_error_bytes(last, sizeof last - 1, 8,
                       "the line contains a NUL byte");
    static const char last_nl[] = GOOD_KAFKA GOOD_ZK
        "[script s]\nfile = s.lua\ntopics = t\0,u\n";
    expect_error_bytes(last_nl, sizeof last_nl - 1, 8,
                       "the line contains a NUL byte");
    static const char middle[] = GOOD_KAFKA
        "[zookeeper]\nconnect = 127.0.0.1:2181\0/x\n" GOOD_SCRIPT;
    expect_error_bytes(middle, sizeof middle - 1, 5,
                       "the line contains a NUL byte");
    static const char alone[] = GOOD_KAFKA "\0\n" GOOD_ZK GOOD_SCRIPT;
    expect_error_bytes(alone, sizeof alone - 1, 4,
                       "the line contains a NUL byte");
}

/* What the ZooKeeper client (zookeeper_init, as `run` calls it) makes of
 * a connection string: a handle, or none. */
static int client_takes(const char *connect) {
    zhandle_t *zh = zookeeper_init(connect, NULL, 10000, NULL, NULL, 0);
    if (zh)
        zookeeper_close(zh);
    return zh != NULL;
}

/* What `check` (and `run`, before it connects) makes of it. */
static int config_takes(const char *connect) {
    char text[512];
    snprintf(text, sizeof text, GOOD_KAFKA "[zookeeper]\nconnect = %s\n"
                                GOOD_SCRIPT,
             connect);
    zf_config_t *cfg = NULL;
    zf_err_t rc = zf_config_load(write_temp("c.ini", text), &cfg, err,
                                 sizeof err);
    zf_config_destroy(cfg);
    return rc == ZF_OK;
}

/* [zookeeper] connect is taken or refused as the ZooKeeper client takes
 * or refuses it, so `check` passes no string that `run` refuses; where the
 * client takes a string that cannot work, check refuses it too. */
static void test_connect(void **state) {
    (void)state;
    zoo_set_debug_level(0); /* the client's own complaints */
    static const struct {
        const char *connect;
        int ok;
    } both[] = {
        {"127.0.0.1:2181", 1},
        {"127.0.0.1:2181,127.0.0.2:2182,127.0.0.3:2183", 1},
        {"127.0.0.1:2181, 127.0.0.2:2182", 1}, /* blanks before a host */
        {"127.0.0.1:2181,", 1},                /* empty entries skipped */
        {"127.0.0.1:2181,,127.0.0.2:2182", 1},
        {"127.0.0.1:2181, ,127.0.0.2:2182", 0}, /* but not blank ones */
        {"127.0.0.1:2181/", 1},
        {"127.0.0.1:2181/apps/zk-1", 1},
        {"127.0.0.1:2181,127.0.0.2:2182/apps", 1},
        {"127.0.0.1", 0},                      /* no port */
        {"127.0.0.1:", 0},
        {"127.0.0.1:0", 0},
        {"127.0.0.1:-1", 0},
        {"127.0.0.1:abc", 0},
        {"127.0.0.1:2181x", 0},
        {"127.0.0.1:02181", 0},                /* octal to the client */
        {"127.0.0.1:2181,127.0.0.2", 0},
        {":2181", 0},
        {"[::1]:2181", 0},
        {",", 0},
        {"127.0.0.1:2181/apps/", 0},
        {"127.0.0.1:2181/apps//zk", 0},
        {"127.0.0.1:2181/apps/./zk", 0},
        {"127.0.0.1:2181/apps/..", 0},
        {"127.0.0.1:2181/a\x01z", 0},
    };
    for (size_t i = 0; i < sizeof both / sizeof both[0]; i++) {
        const char *c = both[i].connect;
        if (client_takes(c) != both[i].ok)
            fail_msg("the client %s '%s'", both[i].ok ? "refuses" : "takes",
                     c);
        if (config_takes(c) != both[i].ok)
            fail_msg("config %s '%s': %s", both[i].ok ? "refuses" : "takes",
                     c, both[i].ok ? err : "");
    }
    /* Names and IPv6 addresses (split at the last ':'), which the client
     * looks up: whether it finds them depends on the machine. */
    assert_true(config_takes("localhost:2181,zk-2.example.com:2181"));
    assert_true(config_takes("::1:2181,fe80::1%eth0:2181"));
    /* The client takes these, but they cannot work: port 70000 is 4464 to
     * it, a name with a blank is never found, a DEL in the chroot makes
     * the server refuse every request, no host is never connected. */
    static const char *const stricter[] = {
        "127.0.0.1:70000", "127.0.0.1:+2181", "my host:2181",
        "127.0.0.1:2181/a\x7fz", "/apps",
    };
    for (size_t i = 0; i < sizeof stricter / sizeof stricter[0]; i++) {
        const char *c = stricter[i];
        if (!strchr(c, ' ') && !client_takes(c))
            fail_msg("the client refuses '%s'", c);
        if (config_takes(c))
            fail_msg("config takes '%s'", c);
    }
    /* The messages: FILE:LINE, the key, the string, the reason. */
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = zk1:2181,zk2\n"
                 GOOD_SCRIPT,
                 5, "connect: 'zk1:2181,zk2': 'zk2' has no port (HOST:PORT)");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = zk1:70000\n" GOOD_SCRIPT,
                 5, "connect: 'zk1:70000': 'zk1:70000': the port must be a "
                    "number from 1 to 65535");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = [::1]:2181\n" GOOD_SCRIPT,
                 5, "'[::1]' is not a host name or address (IPv6 without "
                    "brackets: ::1:2181)");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = zk1:2181/apps/\n"
                 GOOD_SCRIPT,
                 5, "connect: 'zk1:2181/apps/': the chroot /apps/: path must "
                    "not end with '/'");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = /apps\n" GOOD_SCRIPT, 5,
                 "connect: '/apps': no HOST:PORT before the chroot");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = zk1:2181, ,zk2:2181\n"
                 GOOD_SCRIPT,
                 5, "connect: 'zk1:2181, ,zk2:2181': an entry is blank");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = zk1:65536\n" GOOD_SCRIPT,
                 5, "'zk1:65536': the port must be a number from 1 to 65535");
    assert_true(config_takes("zk1:65535,zk2:1"));
}

/* Topics are checked as Kafka checks names, at the line of the key. */
static void test_topic_names(void **state) {
    (void)state;
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\n"
                                    "topics = a, b c\n",
                 8, "topics: 'b c' is not a Kafka topic name (1 to 249 of "
                    "letters, digits, '.', '_' and '-'; not '.' or '..')");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\ntopics = ..\nfile = s.lua\n",
                 7, "topics: '..' is not a Kafka topic name");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\ntopics = .\n",
                 8, "topics: '.' is not a Kafka topic name");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\n"
                                    "topics = caf\xc3\xa9\n",
                 8, "is not a Kafka topic name");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nfile = s.lua\n"
                                    "topics = a/b\n",
                 8, "topics: 'a/b' is not a Kafka topic name");
    /* Lines are shorter than a long name: it comes from the environment. */
    const char *text = GOOD_KAFKA GOOD_ZK
        "[script s]\nfile = s.lua\ntopics = ..a,${ZF_T_TOPIC}\n";
    char name[251];
    memset(name, 'x', 250);
    name[250] = '\0';
    setenv("ZF_T_TOPIC", name, 1);
    expect_error(text, 8, "is not a Kafka topic name");
    /* 249 characters of every kind Kafka allows are fine. */
    name[249] = '\0';
    memcpy(name, "Az09._-", 7);
    setenv("ZF_T_TOPIC", name, 1);
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(write_temp("t.ini", text), &cfg, err,
                                    sizeof err),
                     ZF_OK);
    unsetenv("ZF_T_TOPIC");
    assert_int_equal(cfg->scripts[0].ntopics, 2);
    assert_string_equal(cfg->scripts[0].topic[1], name);
    zf_config_destroy(cfg);
}

static void test_kafka_keys(void **state) {
    (void)state;
    const char *path = write_temp(
        "k.ini", GOOD_KAFKA "no.such.property = 1\n" GOOD_ZK GOOD_SCRIPT);
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(zf_source_check_config(cfg, err, sizeof err), ZF_ECONFIG);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s:4: ", path);
    assert_memory_equal(err, prefix, strlen(prefix));
    assert_non_null(strstr(err, "no.such.property"));
    zf_config_destroy(cfg);

    path = write_temp("m.ini", GOOD_KAFKA "enable.auto.offset.store = true\n"
                                   GOOD_ZK GOOD_SCRIPT);
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(zf_source_check_config(cfg, err, sizeof err), ZF_ECONFIG);
    assert_non_null(strstr(err, ":4: enable.auto.offset.store is managed"));
    zf_config_destroy(cfg);
}

static void test_script_keys(void **state) {
    (void)state;
    const char *path = write_temp(
        "keys.ini", GOOD_KAFKA GOOD_ZK "[engine]\nbatch_max_ops = 50\n"
                    "[script s]\nfile = s.lua\ntopics = t\n"
                    "ops = set, delete\ntimeout_ms = 0\nmemory_mb = 8\n"
                    "coalesce = true\n"
                    "param.root = /flags\nparam.x-y = 1 2\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(cfg->batch_max_ops, 50);
    assert_int_equal(cfg->batch_max_bytes, 512000); /* default */
    assert_int_equal(cfg->max_queued_records, 10000);
    const zf_script_conf_t *sc = &cfg->scripts[0];
    assert_int_equal(sc->ops, ZF_OP_BIT(ZF_OP_SET) | ZF_OP_BIT(ZF_OP_DELETE));
    assert_int_equal(sc->timeout_ms, 0);
    assert_int_equal(sc->memory_mb, 8);
    assert_int_equal(sc->coalesce, 1);
    assert_int_equal(sc->nparams, 2);
    assert_string_equal(sc->params[0].key, "root");
    assert_string_equal(sc->params[0].value, "/flags");
    assert_string_equal(sc->params[1].key, "x-y");
    assert_string_equal(sc->params[1].value, "1 2");
    zf_config_destroy(cfg);

    path = write_temp("defaults.ini", GOOD_KAFKA GOOD_ZK GOOD_SCRIPT);
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_int_equal(cfg->scripts[0].ops, ZF_OP_ALL);
    assert_int_equal(cfg->scripts[0].timeout_ms, 100);
    assert_int_equal(cfg->scripts[0].memory_mb, 64);
    assert_int_equal(cfg->scripts[0].coalesce, 0);
    assert_int_equal(cfg->scripts[0].nparams, 0);
    zf_config_destroy(cfg);

    /* A script kept in a znode; a section's signature changes with it. */
    path = write_temp("zk.ini", GOOD_KAFKA GOOD_ZK
                      "[script z]\nsource = zk:/zkflow/scripts/z\ntopics = t\n");
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_null(cfg->scripts[0].file);
    assert_string_equal(cfg->scripts[0].zk_path, "/zkflow/scripts/z");
    assert_non_null(strstr(cfg->scripts[0].sig, "source = zk:/zkflow"));
    assert_null(strstr(cfg->restart_sig, "source"));
    assert_non_null(strstr(cfg->restart_sig, "[kafka] group.id = "));
    zf_config_destroy(cfg);
    /* [zookeeper] auth and acl. */
    path = write_temp("auth.ini", GOOD_KAFKA
                      "[zookeeper]\nconnect = h:1\nauth = digest:u:p:w\n"
                      "acl = creator_all\n" GOOD_SCRIPT);
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_string_equal(cfg->zk_auth, "digest:u:p:w");
    assert_string_equal(cfg->zk_acl, "creator_all");
    zf_config_destroy(cfg);
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = h:1\nacl = creator_all\n"
                 GOOD_SCRIPT, 4, "[zookeeper] acl = creator_all needs an auth");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = h:1\nauth = nocolon\n"
                 GOOD_SCRIPT, 4, "[zookeeper] auth: expected SCHEME:CREDENTIALS");
    expect_error(GOOD_KAFKA "[zookeeper]\nconnect = h:1\nacl = closed\n"
                 GOOD_SCRIPT, 6, "acl: 'closed' is not one of: open creator_all");

    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "source = zk:/a\n", 9,
                 "[script s] has both file and source");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nsource = /a\ntopics = t\n",
                 7, "source: '/a' is not zk:/PATH");
    expect_error(GOOD_KAFKA GOOD_ZK "[script s]\nsource = zk:a/\ntopics = t\n",
                 7, "source: 'a/':");

    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "ops = set, remove\n", 6,
                 "[script s] ops: unknown op 'remove'");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a b = 1\n", 9,
                 "param.a b: a parameter name is letters");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a = 1\nparam.a = 2\n",
                 10, "param.a is set twice (first on line 9)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "coalesce = yes\n", 9,
                 "coalesce: 'yes' is not true or false");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "timeout_ms = -1\n", 9,
                 "timeout_ms: -1 is out of range");
    expect_error(GOOD_KAFKA GOOD_ZK "[engine]\nbatch_max_bytes = 2000000\n"
                     GOOD_SCRIPT,
                 7, "batch_max_bytes: 2000000 is out of range");
}

/* on_error and dlq_topic: defaults, the three policies, and each way of
 * getting them wrong, reported on the line of the key at fault. */
static void test_error_policy(void **state) {
    (void)state;
    zf_config_t *cfg;
    const char *path = write_temp("policy.ini", GOOD_KAFKA GOOD_ZK GOOD_SCRIPT);
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_string_equal(cfg->scripts[0].on_error, "stop"); /* default */
    assert_null(cfg->scripts[0].dlq_topic);
    zf_config_destroy(cfg);

    path = write_temp("policy.ini", GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                      "on_error = skip\n"
                      "[script d]\nfile = d.lua\ntopics = u\n"
                      "on_error = dlq\ndlq_topic = u.dead-letters_1\n");
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_string_equal(cfg->scripts[0].on_error, "skip");
    assert_null(cfg->scripts[0].dlq_topic);
    assert_string_equal(cfg->scripts[1].on_error, "dlq");
    assert_string_equal(cfg->scripts[1].dlq_topic, "u.dead-letters_1");
    assert_int_equal(cfg->scripts[1].on_error_line, 13);
    assert_int_equal(cfg->scripts[1].dlq_topic_line, 14);
    /* Part of the section's signature, so a reload sees a change. */
    assert_non_null(strstr(cfg->scripts[1].sig, "dlq_topic = u.dead"));
    zf_config_destroy(cfg);

    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "on_error = retry\n", 9,
                 "on_error: 'retry' is not one of: stop skip dlq");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "on_error = dlq\n", 9,
                 "[script s] on_error = dlq needs a 'dlq_topic' key");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "dlq_topic = dead\n", 9,
                 "[script s] dlq_topic is only used with on_error = dlq "
                 "(on_error is stop)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "dlq_topic = dead\non_error = skip\n",
                 9, "dlq_topic is only used with on_error = dlq "
                    "(on_error is skip)");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "on_error = dlq\ndlq_topic = dead letters\n",
                 10, "dlq_topic: 'dead letters' is not a Kafka topic name");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "on_error = dlq\ndlq_topic = ..\n",
                 10, "dlq_topic: '..' is not a Kafka topic name");
    /* Dead letters of s would be read again: by s itself, or by d. */
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "on_error = dlq\ndlq_topic = t\n",
                 10, "dlq_topic: 't' is a topic zkflow consumes ([script s])");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "on_error = dlq\ndlq_topic = u\n"
                 "[script d]\nfile = d.lua\ntopics = u\n",
                 10, "is a topic zkflow consumes ([script d])");
}

/* ${NAME}, ${NAME:-DEFAULT} and $$ in every section. */
static void test_env(void **state) {
    (void)state;
    setenv("ZF_T_HOST", "kafka1", 1);
    setenv("ZF_T_PORT", "9093", 1);
    setenv("ZF_T_TIMEOUT", "250", 1);
    setenv("ZF_T_EMPTY", "", 1);
    unsetenv("ZF_T_UNSET");
    const char *path = write_temp(
        "env.ini",
        "[kafka]\nbootstrap.servers = ${ZF_T_HOST}:${ZF_T_PORT}\n"
        "group.id = g-${ZF_T_UNSET:-default}\n"
        "client.id = ${ZF_T_EMPTY:-fallback}\n"
        "[zookeeper]\nconnect = ${ZF_T_UNSET:-127.0.0.1:2181}/${ZF_T_HOST}\n"
        "[script s]\nfile = s.lua\ntopics = t\ntimeout_ms = ${ZF_T_TIMEOUT}\n"
        "param.price = $$5 and $$${ZF_T_PORT}\nparam.lone = a$b $ {c}\n"
        "param.empty_default = x${ZF_T_UNSET:-}y\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_string_equal(cfg->kafka[0].value, "kafka1:9093");
    assert_string_equal(cfg->kafka[1].value, "g-default");
    assert_string_equal(cfg->kafka[2].value, "fallback"); /* empty: default */
    assert_string_equal(cfg->zk_connect, "127.0.0.1:2181/kafka1");
    const zf_script_conf_t *sc = &cfg->scripts[0];
    assert_int_equal(sc->timeout_ms, 250);
    assert_string_equal(sc->params[0].value, "$5 and $9093");
    assert_string_equal(sc->params[1].value, "a$b $ {c}");
    assert_string_equal(sc->params[2].value, "xy");
    assert_int_equal(cfg->secret_line, 0);
    zf_config_destroy(cfg);

    expect_error(GOOD_KAFKA GOOD_ZK "[engine]\nbatch_max_ops = ${ZF_T_UNSET}\n"
                     GOOD_SCRIPT,
                 7, "environment variable ZF_T_UNSET is not set");
    expect_error(GOOD_KAFKA "sasl.password = ${ZF_T_UNSET}\n" GOOD_ZK
                     GOOD_SCRIPT,
                 4, "environment variable ZF_T_UNSET is not set");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a = ${ZF_T_HOST\n", 9,
                 "unterminated '${'");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a = ${1X}\n", 9,
                 "'${1X}': an environment variable name is letters");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a = ${A-B}\n", 9,
                 "'${A-B}': an environment variable name is letters");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a = ${}\n", 9,
                 "'${}': an environment variable name");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "param.a = ${ZF_T_EMPTY}\n", 9,
                 "param.a is empty once environment variables are "
                 "substituted");
    /* A substituted number is checked like a written one. */
    setenv("ZF_T_BAD", "ten", 1);
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "timeout_ms = ${ZF_T_BAD}\n",
                 9, "timeout_ms: 'ten' is not a whole number");
}

static void test_secret_keys(void **state) {
    (void)state;
    assert_true(zf_config_key_is_secret("kafka", "sasl.password"));
    assert_true(zf_config_key_is_secret("kafka", "ssl.key.password"));
    assert_true(zf_config_key_is_secret("kafka", "ssl.keystore.password"));
    assert_true(zf_config_key_is_secret("kafka",
                                        "sasl.oauthbearer.client.secret"));
    assert_true(zf_config_key_is_secret("kafka", "sasl.oauthbearer.config"));
    assert_true(zf_config_key_is_secret("kafka", "ssl.key.pem"));
    assert_true(zf_config_key_is_secret("zookeeper", "auth"));
    assert_true(zf_config_key_is_secret("script", "param.api_secret"));
    assert_false(zf_config_key_is_secret("kafka", "sasl.username"));
    assert_false(zf_config_key_is_secret("kafka", "ssl.ca.location"));
    assert_false(zf_config_key_is_secret("kafka", "bootstrap.servers"));
    assert_false(zf_config_key_is_secret("script", "param.auth"));
}

/* Load `text` (written with mode `mode`) and return its secret_line; the
 * warning, when there is one, goes to `warn`. */
static int secret_line(const char *text, mode_t mode, char *warn,
                       size_t len) {
    const char *path = write_temp("secret.ini", text);
    assert_int_equal(chmod(path, mode), 0);
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    int line = cfg->secret_line;
    warn[0] = '\0';
    int exposed = zf_config_secret_exposed(cfg, warn, len);
    assert_int_equal(exposed, warn[0] != '\0');
    zf_config_destroy(cfg);
    return line;
}

static void test_secret_warning(void **state) {
    (void)state;
    char warn[512];
    setenv("ZF_T_PW", "hunter2", 1);
    unsetenv("ZF_T_UNSET");
    /* Written in the file, readable by others: a warning naming the line,
     * never the secret. */
    assert_int_equal(secret_line(GOOD_KAFKA "sasl.username = u\n"
                                            "sasl.password = hunter2\n"
                                     GOOD_ZK GOOD_SCRIPT,
                                 0644, warn, sizeof warn),
                     5);
    assert_non_null(strstr(warn, "secret.ini:5: this file holds a secret "
                                 "and is readable by others (mode 0644)"));
    assert_null(strstr(warn, "hunter2"));
    /* Readable by the group only. */
    secret_line(GOOD_KAFKA "sasl.password = hunter2\n" GOOD_ZK GOOD_SCRIPT,
                0640, warn, sizeof warn);
    assert_non_null(strstr(warn, "readable by its group (mode 0640)"));
    /* Owner only: no warning, though the file holds a secret. */
    assert_int_equal(secret_line(GOOD_KAFKA "sasl.password = hunter2\n"
                                     GOOD_ZK GOOD_SCRIPT,
                                 0600, warn, sizeof warn),
                     4);
    assert_string_equal(warn, "");
    /* Only references: the file holds no secret, even world-readable. */
    assert_int_equal(secret_line(GOOD_KAFKA "sasl.password = ${ZF_T_PW}\n"
                                            "ssl.key.password = "
                                            "${ZF_T_PW:-unused}\n"
                                     GOOD_ZK GOOD_SCRIPT,
                                 0644, warn, sizeof warn),
                     0);
    assert_string_equal(warn, "");
    /* A default that is used is written in the file. */
    assert_int_equal(secret_line(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                                 "param.token_secret = ${ZF_T_UNSET:-s3}\n",
                                 0604, warn, sizeof warn),
                     9);
    assert_non_null(strstr(warn, ":9: this file holds a secret"));
    /* Non-secret keys never count. */
    assert_int_equal(secret_line(GOOD_KAFKA "sasl.username = admin\n" GOOD_ZK
                                     GOOD_SCRIPT,
                                 0644, warn, sizeof warn),
                     0);
}

/* Secret values never reach a message, whatever a library echoes. */
static void test_redact(void **state) {
    (void)state;
    setenv("ZF_T_PW", "hunter2", 1);
    const char *path = write_temp(
        "redact.ini", GOOD_KAFKA "sasl.password = ${ZF_T_PW}\n"
                                 "sasl.username = hunter2\n" GOOD_ZK
                                 GOOD_SCRIPT "param.db_password = pw42\n");
    zf_config_t *cfg;
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    char msg[128] = "Invalid value \"hunter2\" for \"x\"; hunter2hunter2 pw42!";
    zf_config_redact(cfg, msg, sizeof msg);
    assert_string_equal(msg, "Invalid value \"***\" for \"x\"; ****** ***!");
    /* Cut to fit: a tiny buffer still ends in a NUL. */
    char tiny[6] = "ahunt";
    zf_config_redact(cfg, tiny, sizeof tiny);
    assert_string_equal(tiny, "ahunt");
    char four[4] = "pw4";
    strcpy(four, "pw4"); /* not the secret pw42: kept */
    zf_config_redact(cfg, four, sizeof four);
    assert_string_equal(four, "pw4");
    char small[8] = "xhunter";
    strcpy(small, "hunter2");
    zf_config_redact(cfg, small, sizeof small);
    assert_string_equal(small, "***");
    zf_config_destroy(cfg);
}

/* [engine] metrics_listen, log_level, log_format: defaults, good values,
 * and bad ones reported at their line. */
static void test_operations_keys(void **state) {
    (void)state;
    zf_config_t *cfg;
    const char *path = write_temp("ops.ini", GOOD_KAFKA GOOD_ZK GOOD_SCRIPT);
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_string_equal(cfg->metrics_listen, ""); /* off by default */
    assert_string_equal(cfg->log_level, "info");
    assert_string_equal(cfg->log_format, "text");
    zf_config_destroy(cfg);

    path = write_temp("ops.ini", GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                      "[engine]\nmetrics_listen = [::1]:9464\n"
                      "log_level = debug\nlog_format = json\n");
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_string_equal(cfg->metrics_listen, "[::1]:9464");
    assert_string_equal(cfg->log_level, "debug");
    assert_string_equal(cfg->log_format, "json");
    zf_config_destroy(cfg);

    /* Empty is allowed for the listen address only: it means off. */
    path = write_temp("ops.ini", GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                      "[engine]\nmetrics_listen =\n");
    assert_int_equal(zf_config_load(path, &cfg, err, sizeof err), ZF_OK);
    assert_string_equal(cfg->metrics_listen, "");
    zf_config_destroy(cfg);
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT "[engine]\nlog_level =\n",
                 10, "log_level has an empty value");

    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "[engine]\nmetrics_listen = 9464\n",
                 10, "metrics_listen: '9464' is not HOST:PORT");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "[engine]\nmetrics_listen = 127.0.0.1:99999\n",
                 10, "metrics_listen: '127.0.0.1:99999': the port must be a "
                    "number from 1 to 65535");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "[engine]\nmetrics_listen = metrics.local:9464\n",
                 10, "is not an IPv4 address, [IPv6] address or localhost");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "[engine]\n\nlog_level = verbose\n",
                 11, "log_level: 'verbose' is not one of: error warn info "
                     "debug");
    expect_error(GOOD_KAFKA GOOD_ZK GOOD_SCRIPT
                 "[engine]\nlog_format = xml\n",
                 10, "log_format: 'xml' is not one of: text json");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_unknown_section),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_bad_numbers),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_syntax),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_connect),
        cmocka_unit_test(test_topic_names),
        cmocka_unit_test(test_kafka_keys),
        cmocka_unit_test(test_script_keys),
        cmocka_unit_test(test_error_policy),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_secret_keys),
        cmocka_unit_test(test_secret_warning),
        cmocka_unit_test(test_redact),
        cmocka_unit_test(test_operations_keys),
    };
    return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
