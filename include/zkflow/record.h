/* A Kafka record as the engine hands it to a script.
 *
 * Every pointer is borrowed from the consumer's message and valid only while
 * that message is; nothing here is owned. */
#ifndef ZKFLOW_RECORD_H
#define ZKFLOW_RECORD_H

#include <stddef.h>
#include <stdint.h>

typedef struct zf_header {
    const char *name;
    const void *value; /* NULL for a header without a value */
    size_t len;
} zf_header_t;

typedef struct zf_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    int64_t timestamp;  /* milliseconds since the epoch, -1 when unknown */
    const void *key;    /* NULL for a null key */
    size_t key_len;
    const void *value;  /* NULL for a null value (tombstone) */
    size_t value_len;
    const zf_header_t *headers; /* in record order, duplicates kept */
    size_t nheaders;
} zf_record_t;

#endif
