#include "zkflow/log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile zf_log_level_t log_level = ZF_LOG_INFO;
static volatile zf_log_format_t log_format = ZF_LOG_TEXT;

static const char *const level_names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
static const char *const level_words[] = {"error", "warn", "info", "debug"};

void zf_log_set_level(zf_log_level_t level) { log_level = level; }
zf_log_level_t zf_log_get_level(void) { return log_level; }
void zf_log_set_format(zf_log_format_t format) { log_format = format; }

int zf_log_parse_level(const char *name, zf_log_level_t *level) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_words[i]) == 0) {
            *level = (zf_log_level_t)i;
            return 0;
        }
    }
    return -1;
}

int zf_log_parse_format(const char *name, zf_log_format_t *format) {
    if (strcmp(name, "text") == 0 || strcmp(name, "json") == 0) {
        *format = name[0] == 't' ? ZF_LOG_TEXT : ZF_LOG_JSON;
        return 0;
    }
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s (1-4), or 0 when the bytes
 * there are not one (overlong forms, surrogates and cut sequences too). */
static size_t utf8_len(const unsigned char *s, size_t left) {
    unsigned char c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (left < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return n;
}

/* Append s[0..len) to buf escaped for `format`, stopping before a
 * character whose escaped form does not fit below `limit`; returns the new
 * length. Both formats escape control characters (C0, DEL and the C1 range
 * U+0080-U+009F), so a message is always one line that cannot forge others
 * or drive a terminal: JSON as a JSON string's inside (\n, \t, \r, \b, \f,
 * \uXXXX, \" and \\; bytes that are not UTF-8 as \ufffd), text as \n, \t,
 * \r or \xHH per byte (bytes that are not UTF-8 too). */
static size_t escape(char *buf, size_t n, size_t limit, zf_log_format_t format,
                     const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    const int json = format == ZF_LOG_JSON;
    size_t i = 0;
    while (i < len) {
        char esc[16];
        const char *out = (const char *)&p[i];
        size_t outn, take = 1;
        unsigned char c = p[i];
        /* A C1 control is U+0080-U+009F, as UTF-8 0xC2 0x80-0x9F. */
        int c1 = c == 0xC2 && i + 1 < len && p[i + 1] >= 0x80 &&
                 p[i + 1] <= 0x9F;
        if (json && (c == '"' || c == '\\')) {
            esc[0] = '\\', esc[1] = (char)c, out = esc, outn = 2;
        } else if (c == '\n' || c == '\t' || c == '\r' ||
                   (json && (c == '\b' || c == '\f'))) {
            esc[0] = '\\';
            esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : c == '\r' ? 'r'
                   : c == '\b' ? 'b' : 'f';
            out = esc, outn = 2;
        } else if (c1 && json) {
            outn = (size_t)snprintf(esc, sizeof esc, "\\u%04x", p[i + 1]);
            out = esc, take = 2;
        } else if (c1) {
            memcpy(esc, "\\xc2\\x", 6);
            esc[6] = hex[p[i + 1] >> 4], esc[7] = hex[p[i + 1] & 15];
            out = esc, outn = 8, take = 2;
        } else if (c < 0x20 || c == 0x7F) {
            outn = json ? (size_t)snprintf(esc, sizeof esc, "\\u%04x", c)
                        : (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
            out = esc;
        } else if (c < 0x80) {
            outn = 1;
        } else if ((take = utf8_len(p + i, len - i)) > 0) {
            outn = take;
        } else if (json) {
            out = "\\ufffd", outn = 6, take = 1;
        } else {
            outn = (size_t)snprintf(esc, sizeof esc, "\\x%02x", c);
            out = esc, take = 1;
        }
        if (n + outn > limit)
            break;
        memcpy(buf + n, out, outn);
        n += outn;
        i += take;
    }
    return n;
}

size_t zf_log_format_line(char *buf, size_t cap, zf_log_format_t format,
                          const struct timeval *tv, zf_log_level_t level,
                          const char *component, const char *msg) {
    struct tm tm;
    char ts[32];
    time_t secs = tv->tv_sec;
    gmtime_r(&secs, &tm);
    size_t t = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + t, sizeof ts - t, ".%03ldZ", (long)(tv->tv_usec / 1000));
    size_t mlen = strlen(msg);
    /* Messages from the libraries often end in a newline of their own. */
    while (mlen > 0 && (msg[mlen - 1] == '\n' || msg[mlen - 1] == '\r'))
        mlen--;
    size_t n;
    if (format == ZF_LOG_JSON) {
        n = (size_t)snprintf(buf, cap, "{\"ts\":\"%s\",\"level\":\"%s\","
                                       "\"component\":\"",
                             ts, level_words[level]);
        /* Room is kept for the closing "}\n at every step. */
        n = escape(buf, n, cap - 24, format, component, strlen(component));
        memcpy(buf + n, "\",\"msg\":\"", 9);
        n = escape(buf, n + 9, cap - 4, format, msg, mlen);
        memcpy(buf + n, "\"}\n", 4); /* with the NUL */
        return n + 3;
    }
    n = (size_t)snprintf(buf, cap, "%s %-5s ", ts, level_names[level]);
    /* Room is kept for ": " and the newline at every step. */
    n = escape(buf, n, cap - 4, format, component, strlen(component));
    memcpy(buf + n, ": ", 2);
    n = escape(buf, n + 2, cap - 2, format, msg, mlen);
    memcpy(buf + n, "\n", 2); /* with the NUL */
    return n + 1;
}

void zf_logv(zf_log_level_t level, const char *component, const char *fmt,
             va_list ap) {
    if (level > log_level)
        return;
    char msg[4096], line[8192];
    struct timeval tv;
    gettimeofday(&tv, NULL);
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = zf_log_format_line(line, sizeof line, log_format, &tv, level,
                                  component, msg);
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

zf_log_level_t zf_log_level_of_syslog(int level) {
    return level <= 3   ? ZF_LOG_ERROR
           : level == 4 ? ZF_LOG_WARN
           : level <= 6 ? ZF_LOG_INFO
                        : ZF_LOG_DEBUG;
}
