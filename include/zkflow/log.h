/* The one logger: levelled lines on stderr, safe to call from any thread.
 * librdkafka's and the ZooKeeper client's logs are routed through it. */
#ifndef ZKFLOW_LOG_H
#define ZKFLOW_LOG_H

#include <stdarg.h>

typedef enum zf_log_level {
    ZF_LOG_ERROR = 0,
    ZF_LOG_WARN,
    ZF_LOG_INFO,
    ZF_LOG_DEBUG,
} zf_log_level_t;

/* Lines above this level are dropped. Default ZF_LOG_INFO. */
void zf_log_set_level(zf_log_level_t level);
zf_log_level_t zf_log_get_level(void);

/* Write one line "TIMESTAMP LEVEL component: message". Appends the newline.
 * One write(2) per line, so lines from several threads never interleave. */
void zf_log(zf_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void zf_logv(zf_log_level_t level, const char *component, const char *fmt,
             va_list ap) __attribute__((format(printf, 3, 0)));

#define zf_error(comp, ...) zf_log(ZF_LOG_ERROR, comp, __VA_ARGS__)
#define zf_warn(comp, ...) zf_log(ZF_LOG_WARN, comp, __VA_ARGS__)
#define zf_info(comp, ...) zf_log(ZF_LOG_INFO, comp, __VA_ARGS__)
#define zf_debug(comp, ...) zf_log(ZF_LOG_DEBUG, comp, __VA_ARGS__)

#endif
