/* Monotonic time, for timeouts, backoff and accounting. Never fails. */
#ifndef ZKFLOW_CLOCK_H
#define ZKFLOW_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline int64_t zf_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t zf_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
