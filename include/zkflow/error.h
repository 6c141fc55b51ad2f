/* zkflow error codes: one enum for the whole engine.
 *
 * librdkafka, ZooKeeper and Lua error codes are translated into these at the
 * module boundary; the detailed text travels in a caller-supplied buffer. */
#ifndef ZKFLOW_ERROR_H
#define ZKFLOW_ERROR_H

typedef enum zf_err {
    ZF_OK = 0,
    ZF_ECONFIG,   /* bad configuration or script source: exit status 2 */
    ZF_ERECORD,   /* a record could not be transformed or applied */
    ZF_EZK,       /* ZooKeeper unreachable, session lost, or refused */
    ZF_EKAFKA,    /* Kafka client failure */
    ZF_ESYS,      /* operating system call failed (errno set) */
    ZF_ENOMEM,    /* allocation failed */
    ZF_EAGAIN,    /* not attempted (an earlier record of its batch failed) */
    ZF_ENOENT,    /* no such thing (e.g. a znode that does not exist) */
    ZF_EFENCED,   /* another owner wrote a partition's position */
} zf_err_t;

/* Short English name of an error code; never NULL, never fails. */
const char *zf_strerror(zf_err_t err);

/* Process exit statuses, documented in README and --help. */
enum {
    ZF_EXIT_OK = 0,      /* finished: stopped by a signal, or --exit-on-eof */
    ZF_EXIT_FAILURE = 1, /* runtime failure: a record failed, a service failed */
    ZF_EXIT_USAGE = 2,   /* bad command line, configuration or script */
};

#endif
