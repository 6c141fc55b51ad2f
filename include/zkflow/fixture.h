/* Fixtures: sample records and the results a script must give for them, in
 * the `zkflow test` formats (JSON lines: see README, "Trying a transform").
 *
 * `zkflow test` runs a script on records and prints or compares the results;
 * `zkflow check` and every reload run the fixtures kept beside a script
 * (NAME.records.jsonl, NAME.expected.jsonl) and refuse a version that fails
 * them. */
#ifndef ZKFLOW_FIXTURE_H
#define ZKFLOW_FIXTURE_H

#include <stddef.h>
#include <stdio.h>

#include "zkflow/error.h"
#include "zkflow/script.h"

/* The lines of an expected-results file (blank and # comment lines left
 * out), each checked to be JSON. */
typedef struct zf_expected zf_expected_t;

/* Parse expected results from `text` (len bytes), named `name` in errors.
 * Returns ZF_OK and a new list in *out (free with zf_expected_free), or
 * ZF_ECONFIG with "NAME:LINE: reason" in err, or ZF_ENOMEM. */
zf_err_t zf_expected_parse(const char *name, const char *text, size_t len,
                           zf_expected_t **out, char *err, size_t errlen);

/* Read and parse an expected-results file ("-" is stdin). As
 * zf_expected_parse; also ZF_ECONFIG with "FILE: cannot open: ..." */
zf_err_t zf_expected_read(const char *path, zf_expected_t **out, char *err,
                          size_t errlen);

void zf_expected_free(zf_expected_t *e); /* accepts NULL */

/* One record's outcome, as zf_fixture_run reports it. */
typedef struct zf_fixture_line {
    size_t index;         /* the record's number, from 0 */
    const char *actual;   /* its result line; NULL once records ran out and
                             an expected line is left over */
    const char *expected; /* the expected line; NULL without expectations,
                             or once they ran out */
    int expected_line;    /* where `expected` is (or would be) in its file */
    int failed;           /* the transform failed on this record */
    int matched;          /* expected given, and equal to actual as JSON */
} zf_fixture_line_t;

/* Called once per record, then once per expected line left over. Return
 * nonzero to stop the run there. */
typedef int zf_fixture_fn(void *ctx, const zf_fixture_line_t *line);

typedef struct zf_fixture_stats {
    size_t records;  /* records transformed */
    size_t failed;   /* ... of which the transform failed */
    size_t matched;  /* results equal to their expected line */
    size_t differed; /* results that were not equal (or had no line) */
    size_t expected; /* expected lines given */
} zf_fixture_stats_t;

/* Transform every record line read from `records` (named `name` in
 * errors) with s, one at a time, and compare each result with the expected
 * line of the same rank when `exp` is not NULL. fn (may be NULL) sees each
 * outcome as it comes. Returns ZF_OK once the records are used up or fn
 * stopped the run (st says how it went), ZF_ECONFIG with "NAME:LINE:
 * reason" for a malformed record line or a read error, or ZF_ENOMEM. */
zf_err_t zf_fixture_run(zf_script_t *s, FILE *records, const char *name,
                        const zf_expected_t *exp, zf_fixture_fn *fn,
                        void *ctx, zf_fixture_stats_t *st, char *err,
                        size_t errlen);

/* Fixture text in memory: for scripts kept in a file, the contents of the
 * files beside it; for scripts kept in a znode, of the znodes beside it. */
typedef struct zf_fixture_text {
    const char *records_name;  /* names for messages; NULL text: absent */
    const char *records;
    size_t records_len;
    const char *expected_name;
    const char *expected;
    size_t expected_len;
} zf_fixture_text_t;

/* Check s against its fixtures:
 * - records and expected results: every result must equal its line;
 * - records alone: every record must transform without error;
 * - neither: nothing to check.
 * All the records together must be done within budget_ms (0: no bound): the
 * check stops at the first record that ends later, so it takes at most
 * budget_ms plus one record's time limit.
 * Returns ZF_OK with the number of records checked in *nrecords, or
 * ZF_ERECORD with the first problem in err, e.g.
 * "devices.expected.jsonl:3: expected {...}, got {...}" (also for expected
 * results without records, for malformed lines, and "devices.records.jsonl:
 * stopped at record 12: the fixtures took 1043 ms, over fixtures_timeout_ms
 * = 1000 ..."), or ZF_ENOMEM. */
zf_err_t zf_fixture_check(zf_script_t *s, const zf_fixture_text_t *fx,
                          int budget_ms, size_t *nrecords, char *err,
                          size_t errlen);

/* zf_fixture_check with the files beside `script_file`: for dir/NAME.lua,
 * dir/NAME.records.jsonl and dir/NAME.expected.jsonl. Unreadable files are
 * ZF_ERECORD with the reason. */
zf_err_t zf_fixture_check_files(zf_script_t *s, const char *script_file,
                                int budget_ms, size_t *nrecords, char *err,
                                size_t errlen);

/* The path of a fixture file beside a script: for dir/NAME.lua and
 * ".records.jsonl", dir/NAME.records.jsonl. New string (caller frees), or
 * NULL when out of memory. */
char *zf_fixture_path(const char *script_file, const char *suffix);

#endif
