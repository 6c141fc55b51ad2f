/* The one logger: levelled lines on stderr, safe to call from any thread.
 * librdkafka's and the ZooKeeper client's logs are routed through it.
 *
 * Two formats: text, "TIMESTAMP LEVEL component: message", and JSON, one
 * object per line: {"ts":"...","level":"info","component":"...","msg":"..."}
 * with the message escaped as JSON (control characters as \n, \t or \u00XX;
 * bytes that are not UTF-8 as \ufffd). In both, the component and message
 * can never make more than one line, whatever they hold (a record's value in
 * an error message): text writes control characters (C0, DEL, and C1 as
 * UTF-8) as \n, \r, \t or \xHH per byte, and bytes that are not UTF-8 as
 * \xHH; a backslash stays as it is. */
#ifndef ZKFLOW_LOG_H
#define ZKFLOW_LOG_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/time.h>

typedef enum zf_log_level {
    ZF_LOG_ERROR = 0,
    ZF_LOG_WARN,
    ZF_LOG_INFO,
    ZF_LOG_DEBUG,
} zf_log_level_t;

typedef enum zf_log_format {
    ZF_LOG_TEXT = 0,
    ZF_LOG_JSON,
} zf_log_format_t;

/* The level of a syslog(3) level (0 emergency .. 7 debug), as librdkafka
 * gives them to its log callback. Never fails. */
zf_log_level_t zf_log_level_of_syslog(int level);

/* Lines above this level are dropped. Default ZF_LOG_INFO. */
void zf_log_set_level(zf_log_level_t level);
zf_log_level_t zf_log_get_level(void);

/* Default ZF_LOG_TEXT. Set before other threads log. */
void zf_log_set_format(zf_log_format_t format);

/* "error", "warn", "info" or "debug" into *level: returns 0, or -1 for any
 * other name (*level unchanged). Never fails otherwise. */
int zf_log_parse_level(const char *name, zf_log_level_t *level);

/* "text" or "json" into *format: returns 0, or -1 (*format unchanged). */
int zf_log_parse_format(const char *name, zf_log_format_t *format);

/* Format one log line (with its newline) into buf, at most cap bytes
 * (cap >= 128) with a NUL after it, and return its length (without the NUL);
 * never fails. Component and message are escaped as above. A message too
 * long for buf is cut between two characters (never inside an escape; in
 * JSON the object stays whole). Trailing newlines of msg are left out. This is what zf_log writes; exposed for tests. */
size_t zf_log_format_line(char *buf, size_t cap, zf_log_format_t format,
                          const struct timeval *tv, zf_log_level_t level,
                          const char *component, const char *msg);

/* Write one line in the current format. Appends the newline.
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
