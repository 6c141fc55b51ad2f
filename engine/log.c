#include "zkflow/log.h"

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile zf_log_level_t log_level = ZF_LOG_INFO;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};

void zf_log_set_level(zf_log_level_t level) { log_level = level; }
zf_log_level_t zf_log_get_level(void) { return log_level; }

void zf_logv(zf_log_level_t level, const char *component, const char *fmt,
             va_list ap) {
    if (level > log_level)
        return;
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03ldZ %-5s %s: ",
                          (long)(tv.tv_usec / 1000), level_names[level],
                          component);
    if (n < sizeof line) {
        int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
        n = m < 0 ? n : n + (size_t)m;
    }
    if (n >= sizeof line - 1)
        n = sizeof line - 2; /* truncated: keep the newline */
    /* Messages from the libraries often end in a newline of their own. */
    while (n > 0 && line[n - 1] == '\n')
        n--;
    line[n++] = '\n';
    /* One write per line keeps lines from concurrent threads whole. */
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

void zf_log(zf_log_level_t level, const char *component, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    zf_logv(level, component, fmt, ap);
    va_end(ap);
}
